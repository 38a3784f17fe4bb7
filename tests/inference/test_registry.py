"""The model registry: installation through MODEL_PATH, approval by the security administrator,
activation and rollback by the system administrator, each audited; refusals of the wrong role
and of unapproved versions recorded; a department's choice of models; /v1 following it."""

from __future__ import annotations

import ipaddress
import json
import shutil

import pytest
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import Http404
from django.test import Client
from django.urls import clear_url_caches, include, path

from accounts.roles import AdminRole
from compliance.events import EventType, Outcome
from compliance.models import AuditEntry
from inference.engine.demo_model import DemoModelSpec
from inference.engine.errors import MANIFEST_MISMATCH, ManifestError, ModelLoadError
from inference.registry.models import ActivationKind, ModelActivation, ModelVersion
from inference.registry.selectors import (
    model_access_allowed,
    model_registry_state,
    model_version_active,
    model_versions_for_department,
)
from inference.registry.services import (
    NO_PREVIOUS_VERSION,
    VERSION_NOT_APPROVED,
    department_model_access_set,
    model_installation_record,
    model_version_activate,
    model_version_approve,
    model_version_register,
    model_version_rollback,
)
from inference.runtime import VERSION_MANIFEST_CHANGED, VERSION_NOT_APPROVED_LOAD, load_engine_from_settings
from tests.accounts.conftest import sign_in_with_totp

pytestmark = pytest.mark.django_db


@pytest.fixture
def second_model_dir(demo_model_factory):
    return demo_model_factory(DemoModelSpec(family="qwen2_vl"))


@pytest.fixture
def admins(make_user):
    return {
        "system": make_user("sys", admin_role=AdminRole.SYSTEM),
        "security": make_user("sec", admin_role=AdminRole.SECURITY),
        "audit": make_user("aud", admin_role=AdminRole.AUDIT),
    }


def start_engine():
    """An engine start as the process makes it (what reset_engine + get_engine do), shut down after."""
    engine = load_engine_from_settings()
    info = engine.info()
    engine.shutdown()
    return info


def entries(event_type):
    return list(AuditEntry.objects.filter(event_type=event_type).order_by("sequence"))


def last_denial():
    return AuditEntry.objects.filter(event_type=EventType.ACCESS_DENIED).order_by("-sequence").first()


@pytest.fixture
def installed(configured, system_context):
    """The first engine start: MODEL_PATH registered as approved and active by the system."""
    info = start_engine()
    return ModelVersion.objects.get(manifest_sha256=info.manifest_sha256)


def test_the_first_start_registers_model_path_as_approved_and_active_by_the_system(installed):
    version = installed
    assert version.installation and version.is_approved and version.approved_by_name == "system"
    assert version.family == "qwen2_5_vl" and version.name == "demo-qwen2_5_vl"
    assert model_version_active() == version
    assert ModelActivation.objects.get().kind == ActivationKind.INSTALLATION
    for event_type in (EventType.MODEL_REGISTER, EventType.MODEL_APPROVE, EventType.MODEL_ACTIVATE):
        (entry,) = entries(event_type)
        assert entry.actor_type == "system" and entry.outcome == Outcome.SUCCESS
        assert entry.object_id == version.manifest_sha256 and entry.details["installation"] is True
    assert entries(EventType.MODEL_LOAD)[0].object_id == version.manifest_sha256
    # The next start loads the active version again, and registers nothing new.
    assert start_engine().manifest_sha256 == version.manifest_sha256
    assert ModelVersion.objects.count() == 1 and ModelActivation.objects.count() == 1


def test_a_second_worker_starting_on_the_empty_registry_finds_the_first_ones_installation(installed):
    # What a worker that loaded MODEL_PATH at the same time as the first one records afterwards.
    again = model_installation_record(
        manifest_sha256=installed.manifest_sha256, name=installed.name, path=installed.path, family=installed.family
    )
    assert again == installed
    assert ModelActivation.objects.count() == 1 and len(entries(EventType.MODEL_ACTIVATE)) == 1


def test_approve_activate_roll_back_and_refuse_an_unapproved_model(installed, second_model_dir, admins):
    system, security = admins["system"], admins["security"]
    first = installed
    second = model_version_register(path=second_model_dir, name="qwen2-vl-v2", note="pilot", acting_user=system)
    assert not second.is_approved and second.family == "qwen2_vl"
    (registered,) = [e for e in entries(EventType.MODEL_REGISTER) if e.actor_name == "sys"]
    assert registered.object_id == second.manifest_sha256 and registered.details["note"] == "pilot"

    # Unapproved: refused, and the refusal recorded.
    with pytest.raises(PermissionDenied, match=VERSION_NOT_APPROVED):
        model_version_activate(version=second, acting_user=system)
    denial = last_denial()
    assert denial.details["action"] == "model.activate" and denial.object_id == second.manifest_sha256
    assert denial.actor_name == "sys" and denial.outcome == Outcome.DENIED
    assert model_version_active() == first

    second = model_version_approve(version=second, acting_user=security)
    assert second.is_approved and second.approved_by_name == "sec"
    assert entries(EventType.MODEL_APPROVE)[-1].actor_name == "sec"

    model_version_activate(version=second, acting_user=system)
    assert model_version_active() == second
    activated = entries(EventType.MODEL_ACTIVATE)[-1]
    assert activated.actor_name == "sys" and activated.object_id == second.manifest_sha256
    assert activated.details["previous_manifest_sha256"] == first.manifest_sha256
    # The running engine is not swapped: the next start loads the activated version.
    info = start_engine()
    assert info.manifest_sha256 == second.manifest_sha256 and info.family == "qwen2_vl" and info.name == "qwen2-vl-v2"

    model_version_rollback(acting_user=system)
    assert model_version_active() == first
    (rolled_back,) = entries(EventType.MODEL_ROLLBACK)
    assert rolled_back.actor_name == "sys" and rolled_back.object_id == first.manifest_sha256
    assert rolled_back.details["previous_manifest_sha256"] == second.manifest_sha256
    assert start_engine().manifest_sha256 == first.manifest_sha256
    # A second rollback goes forward again (the previous version is the second one).
    model_version_rollback(acting_user=system)
    assert model_version_active() == second
    state = model_registry_state()
    assert (state.versions, state.approved, state.active) == (2, 2, second)
    assert state.active_since.kind == ActivationKind.ROLLBACK and state.active_since.activated_by_name == "sys"
    assert state.activations_of_unapproved == []


def test_rollback_needs_an_earlier_version(installed, admins):
    with pytest.raises(ValidationError, match=NO_PREVIOUS_VERSION):
        model_version_rollback(acting_user=admins["system"])
    assert not entries(EventType.MODEL_ROLLBACK)


@pytest.mark.parametrize(
    ("role", "step"),
    [
        ("security", "register"),
        ("audit", "register"),
        ("system", "approve"),
        ("audit", "approve"),
        ("security", "activate"),
        ("audit", "activate"),
        ("security", "rollback"),
    ],
)
def test_each_step_is_refused_to_the_other_roles_and_recorded(installed, second_model_dir, admins, role, step):
    system, security = admins["system"], admins["security"]
    version = model_version_register(path=second_model_dir, name="v2", acting_user=system)
    if step in ("activate", "rollback"):
        model_version_approve(version=version, acting_user=security)
    if step == "rollback":
        model_version_activate(version=version, acting_user=system)
    calls = {
        "register": lambda user: model_version_register(path=second_model_dir, name="v3", acting_user=user),
        "approve": lambda user: model_version_approve(version=version, acting_user=user),
        "activate": lambda user: model_version_activate(version=version, acting_user=user),
        "rollback": lambda user: model_version_rollback(acting_user=user),
    }
    active_before = model_version_active()
    with pytest.raises(PermissionDenied):
        calls[step](admins[role])
    denial = last_denial()
    assert denial.actor_name == admins[role].username
    assert denial.details["action"] == {"register": "model.register", "approve": "model.approve"}.get(
        step, "model.activate"
    )
    version.refresh_from_db()
    assert version.is_approved == (step in ("activate", "rollback"))
    assert model_version_active() == active_before


def test_a_file_that_differs_from_the_approved_manifest_refuses_the_load(
    installed, shared_demo_model_dir, admins, tmp_path
):
    copy = tmp_path / "copy"
    shutil.copytree(shared_demo_model_dir, copy)
    config = json.loads((copy / "config.json").read_text())
    (copy / "config.json").write_text(json.dumps({**config, "note": "v2"}))
    from inference.engine.manifest import manifest_write

    manifest_write(copy)
    version = model_version_register(path=copy, name="copy", acting_user=admins["system"])
    model_version_approve(version=version, acting_user=admins["security"])
    model_version_activate(version=version, acting_user=admins["system"])
    (copy / "generation_config.json").write_text('{"do_sample": true}')  # after approval
    with pytest.raises(ManifestError, match="generation_config.json"):
        start_engine()
    failure = entries(EventType.MODEL_LOAD)[-1]
    assert failure.outcome == Outcome.FAILURE
    assert failure.details["error"] == MANIFEST_MISMATCH.format(name="generation_config.json")
    # A rewritten manifest is another version: the approved hash pins the load.
    rewritten = manifest_write(copy)
    with pytest.raises(ManifestError) as refused:
        start_engine()
    assert str(refused.value) == VERSION_MANIFEST_CHANGED.format(
        path=version.path, actual=rewritten, name="copy", sha256=version.manifest_sha256
    )
    assert entries(EventType.MODEL_LOAD)[-1].details["error"] == str(refused.value)


def test_an_active_version_without_approval_is_not_loaded(installed):
    # Written around the services (they never activate an unapproved version): the load refuses.
    ModelVersion.objects.filter(pk=installed.pk).update(approved_at=None, approved_by_name="")
    with pytest.raises(ModelLoadError) as refused:
        start_engine()
    assert str(refused.value) == VERSION_NOT_APPROVED_LOAD.format(name=installed.name, sha256=installed.manifest_sha256)
    failure = entries(EventType.MODEL_LOAD)[-1]
    assert failure.outcome == Outcome.FAILURE and failure.details["error"] == str(refused.value)
    assert model_registry_state().activations_of_unapproved == [
        f"{installed.name} ({ModelActivation.objects.get().activated_at:%Y-%m-%d %H:%M})"
    ]


def test_a_directory_that_fails_its_manifest_cannot_be_registered(installed, shared_demo_model_dir, admins, tmp_path):
    copy = tmp_path / "tampered"
    shutil.copytree(shared_demo_model_dir, copy)
    (copy / "extra.py").write_text("print('planted')")
    with pytest.raises(ValidationError, match="extra.py"):
        model_version_register(path=copy, name="tampered", acting_user=admins["system"])
    assert ModelVersion.objects.count() == 1


def test_departments_use_the_models_their_administrator_enabled(installed, second_model_dir, admins, personas):
    first = installed
    department = personas.department_a
    second = model_version_register(path=second_model_dir, name="v2", acting_user=admins["system"])
    # No choice made yet: the installation model only.
    assert list(model_versions_for_department(department)) == [first]
    assert not model_access_allowed(department=department, manifest_sha256=second.manifest_sha256)

    with pytest.raises(PermissionDenied, match=VERSION_NOT_APPROVED):
        department_model_access_set(department=department, version=second, enabled=True, acting_user=personas.admin)
    assert last_denial().details["action"] == "department.model_manage"

    model_version_approve(version=second, acting_user=admins["security"])
    department_model_access_set(department=department, version=second, enabled=True, acting_user=personas.admin)
    assert set(model_versions_for_department(department)) == {first, second}  # enabling takes nothing away
    department_model_access_set(department=department, version=first, enabled=False, acting_user=personas.admin)
    assert list(model_versions_for_department(department)) == [second]
    assert not model_access_allowed(department=department, manifest_sha256=first.manifest_sha256)
    changes = entries(EventType.MODEL_ACCESS_CHANGE)
    assert [(e.actor_name, e.department_slug, e.details["enabled"]) for e in changes] == [
        ("alice", "finance", True),
        ("alice", "finance", False),
    ]
    # The other department's choice is its own.
    assert list(model_versions_for_department(personas.department_b)) == [first]

    # A member may not choose (403), an outsider does not see the department (404); recorded.
    with pytest.raises(PermissionDenied):
        department_model_access_set(department=department, version=first, enabled=True, acting_user=personas.member)
    assert last_denial().actor_name == "bob"
    with pytest.raises(Http404):
        department_model_access_set(department=department, version=first, enabled=True, acting_user=personas.outsider)
    assert last_denial().actor_name == "charlie"
    # Neither may an administrator of the platform (they hold no department access).
    with pytest.raises(Http404):
        department_model_access_set(department=department, version=first, enabled=True, acting_user=admins["system"])
    assert list(model_versions_for_department(department)) == [second]


# --- the console pages ---------------------------------------------------------------------------

REGISTRY = "/admin/inference/modelversion/"


@pytest.fixture
def console(make_user, settings):
    """``console(role)``: a client signed in (password + TOTP) as an administrator of ``role``."""
    from django.utils import timezone
    from django_otp.plugins.otp_totp.models import TOTPDevice

    settings.ADMIN_ALLOWED_NETWORKS = [ipaddress.ip_network("127.0.0.0/8")]

    def sign_in(role: str):
        user = make_user(f"{role}-admin", admin_role=role, password_changed_at=timezone.now())
        device = TOTPDevice.objects.create(user=user, name="authenticator", confirmed=True)
        client = Client()
        sign_in_with_totp(client, user, device)
        return client

    return sign_in


def test_the_console_registers_approves_activates_and_rolls_back(installed, second_model_dir, console):
    system, security = console("system"), console("security")
    page = system.get(REGISTRY)
    assert page.status_code == 200 and b"demo-qwen2_5_vl" in page.content
    response = system.post(f"{REGISTRY}add/", {"path": str(second_model_dir), "name": "v2", "quantization": ""})
    assert response.status_code == 302
    second = ModelVersion.objects.get(name="v2")
    assert not second.is_approved

    # The system administrator cannot approve (SM-1): 403, recorded.
    assert system.post(f"{REGISTRY}{second.pk}/approve/").status_code == 403
    assert last_denial().details["action"] == "model.approve"
    # Activating before approval: refused, recorded, and said on the page.
    response = system.post(f"{REGISTRY}{second.pk}/activate/", follow=True, HTTP_ACCEPT_LANGUAGE="en")
    assert "This version is not approved" in response.content.decode()
    assert last_denial().details["action"] == "model.activate"

    assert security.post(f"{REGISTRY}{second.pk}/approve/").status_code == 302
    # The security administrator cannot activate (SM-2): 403, recorded.
    assert security.post(f"{REGISTRY}{second.pk}/activate/").status_code == 403
    assert last_denial().details["action"] == "model.activate"
    assert model_version_active() == installed

    assert system.post(f"{REGISTRY}{second.pk}/activate/").status_code == 302
    assert model_version_active() == second
    assert system.post(f"{REGISTRY}rollback/").status_code == 302
    assert model_version_active() == installed
    assert [e.actor_name for e in entries(EventType.MODEL_APPROVE)][-1] == "security-admin"
    assert [e.actor_name for e in entries(EventType.MODEL_ACTIVATE)][-1] == "system-admin"
    assert entries(EventType.MODEL_ROLLBACK)[-1].actor_name == "system-admin"
    # The audit administrator does not see the registry (SM-3).
    assert console("audit").get(REGISTRY).status_code == 403


def test_the_registry_page_speaks_chinese(installed, console):
    page = console("system").get(REGISTRY, HTTP_ACCEPT_LANGUAGE="zh-hans")
    text = page.content.decode()
    assert page.status_code == 200 and "模型版本" in text and "注册模型版本" in text


# --- the department administrator's page, and /v1 ------------------------------------------------

urlpatterns = [
    # /d/<slug>/models/ as config/urls.py mounts it (before the chat's routes)
    path("d/<slug:department_slug>/models/", include("inference.registry.urls")),
    path("", include("config.urls")),
]


@pytest.fixture
def portal_urls(settings):
    settings.ROOT_URLCONF = __name__
    clear_url_caches()
    yield
    clear_url_caches()


def test_the_department_administrator_enables_models_on_the_portal(
    installed, second_model_dir, admins, personas, portal_urls
):
    second = model_version_register(path=second_model_dir, name="v2", acting_user=admins["system"])
    model_version_approve(version=second, acting_user=admins["security"])
    alice = Client()
    alice.force_login(personas.admin)
    page = alice.get("/d/finance/models/")
    assert page.status_code == 200 and b"v2" in page.content
    assert alice.post(f"/d/finance/models/{second.pk}/", {"enabled": "1"}).status_code == 302
    assert set(model_versions_for_department(personas.department_a)) == {installed, second}
    assert entries(EventType.MODEL_ACCESS_CHANGE)[-1].actor_name == "alice"
    bob, charlie = Client(), Client()
    bob.force_login(personas.member)
    charlie.force_login(personas.outsider)
    assert bob.get("/d/finance/models/").status_code == 403
    assert charlie.get("/d/finance/models/").status_code == 404
    assert alice.post("/d/finance/models/999999/", {"enabled": "1"}).status_code == 404
    assert last_denial().actor_name == "alice"


@pytest.fixture
def served(installed, shared_demo_model):
    """The installation model served as the process's engine."""
    from inference.engine.core import Engine, EngineLimits
    from inference.runtime import engine_override

    engine = Engine(shared_demo_model, EngineLimits(batch_window_seconds=0.0))
    try:
        with engine_override(engine):
            yield engine
    finally:
        engine.shutdown()


def test_v1_follows_the_departments_choice(served, installed, second_model_dir, admins, personas, system_context):
    from rest_framework.test import APIClient

    from departments.api_keys.services import api_key_create

    raw = api_key_create(
        department=personas.department_a, name="ERP", scopes=["chat"], created_by=personas.admin, expires_at=None
    ).raw_key
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {raw}")
    name = served.info().name
    body = {"model": name, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2}

    assert [m["id"] for m in client.get("/v1/models").json()["data"]] == [name]
    assert client.post("/v1/chat/completions", body, format="json").status_code == 200

    # Another model: refused and recorded.
    response = client.post("/v1/chat/completions", {**body, "model": "gpt-4o"}, format="json")
    assert response.status_code == 404 and response.json()["error"]["code"] == "model_not_found"
    denial = last_denial()
    assert denial.object_repr == "gpt-4o" and denial.details["action"] == "api.chat"
    assert denial.department_slug == "finance"

    # The department switches the served model off: not listed, refused, recorded.
    second = model_version_register(path=second_model_dir, name="v2", acting_user=admins["system"])
    model_version_approve(version=second, acting_user=admins["security"])
    department_model_access_set(
        department=personas.department_a, version=second, enabled=True, acting_user=personas.admin
    )
    department_model_access_set(
        department=personas.department_a, version=installed, enabled=False, acting_user=personas.admin
    )
    assert client.get("/v1/models").json()["data"] == []
    response = client.post("/v1/chat/completions", body, format="json")
    assert response.status_code == 404 and response.json()["error"]["code"] == "model_not_found"
    denial = last_denial()
    assert denial.details["reason"] == "the model is not enabled for the department"
    assert denial.object_id == installed.manifest_sha256
    assert client.get(f"/v1/models/{name}").status_code == 404


def test_an_unknown_version_answers_404_and_the_refusal_is_recorded(installed, console):
    system, security = console("system"), console("security")
    assert security.post(f"{REGISTRY}999999/approve/").status_code == 404
    assert (last_denial().object_id, last_denial().details["action"]) == ("999999", "model.approve")
    assert system.post(f"{REGISTRY}999999/activate/").status_code == 404
    assert (last_denial().object_id, last_denial().details["action"]) == ("999999", "model.activate")
