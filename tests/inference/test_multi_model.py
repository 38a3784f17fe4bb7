"""Several approved models loaded at once: the system administrator marks approved
versions to be loaded beside the active one (within MODEL_MAX_LOADED, audited as model.activate),
the runtime loads each into its own engine after a memory check, /readyz lists them, and every
channel routes a request by the model it names — the websocket chat, /v1/chat/completions and
the extraction API — refusing (and recording) a model the department may not use, with the
reason: not approved, or not enabled.

Two tiny demo models of different families (qwen2_5_vl, the installation model, and qwen2_vl),
both really loaded by the runtime: the stored rows' model versions prove which engine answered.
"""

from __future__ import annotations

import json
import shutil
from unittest import mock

import pytest
from asgiref.sync import sync_to_async
from django.core.exceptions import PermissionDenied, ValidationError
from django.test import Client, RequestFactory
from django.utils import translation

from accounts.roles import AdminRole
from compliance.context import RequestContext, request_context
from compliance.events import EventType, Outcome
from compliance.models import AuditEntry
from departments.tenancy import department_scope
from inference.engine.demo_model import DemoModelSpec
from inference.engine.errors import MODEL_LOADING, ModelLoadError, ModelUnavailable
from inference.engine.manifest import manifest_write
from inference.registry.models import ActivationKind, ModelActivation, ModelVersion
from inference.registry.selectors import model_version_active, model_versions_additional
from inference.registry.services import (
    VERSION_NOT_APPROVED,
    VersionNotApproved,
    department_model_access_set,
    model_version_approve,
    model_version_load,
    model_version_register,
    model_version_unload,
)
from inference.runtime import (
    MODEL_DOES_NOT_FIT,
    MODEL_LOAD_FAILED,
    MODEL_NOT_LOADED,
    MODEL_STILL_LOADING,
    MemoryFree,
    ModelNotLoaded,
    ModelStillLoading,
    engine_override,
    engines_load,
    engines_loaded,
    get_engine,
    load_engine_from_settings,
    memory_fit_check,
    model_beside_override,
    model_readiness,
    models_report,
    require_engine,
    reset_engine,
)

SECOND = "qwen2-vl-small"


@pytest.fixture
def configured(configured):
    configured.MODEL_MAX_LOADED = 2
    return configured


@pytest.fixture
def admins(make_user):
    return {
        "system": make_user("sys", admin_role=AdminRole.SYSTEM),
        "security": make_user("sec", admin_role=AdminRole.SECURITY),
    }


@pytest.fixture
def installed(configured, system_context):
    """The first engine start: MODEL_PATH registered as approved and active by the system."""
    engine = load_engine_from_settings()
    sha256 = engine.info().manifest_sha256
    engine.shutdown()
    return ModelVersion.objects.get(manifest_sha256=sha256)


@pytest.fixture
def second(installed, demo_model_factory, admins, system_context):
    """A second family's demo model, registered and approved (not loaded yet)."""
    path = demo_model_factory(DemoModelSpec(family="qwen2_vl"))
    version = model_version_register(path=path, name=SECOND, acting_user=admins["system"])
    return model_version_approve(version=version, acting_user=admins["security"])


@pytest.fixture
def third_dir(shared_demo_model_dir, tmp_path):
    """Another version: the shared model with one more configuration key (another manifest)."""
    target = tmp_path / "third"
    shutil.copytree(shared_demo_model_dir, target)
    (target / "MANIFEST.sha256").unlink()
    config = json.loads((target / "config.json").read_text())
    (target / "config.json").write_text(json.dumps({**config, "platform_note": "third"}))
    manifest_write(target)
    return target


def denials():
    return AuditEntry.objects.filter(event_type=EventType.ACCESS_DENIED).order_by("-sequence")


@pytest.fixture
def runtime_reset():
    reset_engine()
    yield
    reset_engine()


# --- the registry: load beside the active version ---------------------------------------------------


@pytest.mark.django_db
def test_loading_beside_the_active_version_is_audited_limited_and_refused_when_unapproved(
    second, third_dir, admins, configured, system_context
):
    system = admins["system"]
    activation = model_version_load(version=second, acting_user=system)
    assert activation.kind == ActivationKind.LOAD
    assert model_versions_additional() == [second]
    assert model_version_active().installation  # the active (default) version did not change
    entry = AuditEntry.objects.filter(event_type=EventType.MODEL_ACTIVATE).latest("sequence")
    assert entry.details["kind"] == "load" and entry.object_id == second.manifest_sha256
    assert entry.actor_name == "sys" and entry.details["takes_effect"] == "next engine start"

    # An unapproved version is refused, and the refusal recorded.
    third = model_version_register(path=third_dir, name="third", acting_user=system)
    with pytest.raises(VersionNotApproved):
        model_version_load(version=third, acting_user=system)
    denial = denials().first()
    assert denial.details["reason"] == "the model version is not approved" and denial.object_id == third.manifest_sha256
    # Approved, it still does not fit in MODEL_MAX_LOADED = 2 (the active one + the second).
    model_version_approve(version=third, acting_user=admins["security"])
    with pytest.raises(ValidationError) as refused:
        model_version_load(version=third, acting_user=system)
    assert refused.value.code == "load_limit_reached"
    # Only the system administrator chooses (the security administrator is refused, recorded).
    with pytest.raises(PermissionDenied):
        model_version_unload(version=second, acting_user=admins["security"])
    assert denials().first().details["action"] == "model.activate"

    model_version_unload(version=second, acting_user=system)
    assert model_versions_additional() == []
    assert ModelActivation.objects.filter(kind=ActivationKind.UNLOAD).count() == 1
    configured.MODEL_MAX_LOADED = 1  # the default: the active version alone
    with pytest.raises(ValidationError):
        model_version_load(version=third, acting_user=system)


@pytest.mark.django_db
def test_the_default_of_one_loads_the_active_version_alone(second, admins, configured, runtime_reset, system_context):
    model_version_load(version=second, acting_user=admins["system"])
    configured.MODEL_MAX_LOADED = 1  # lowered after the choice: the next start loads one model
    engines = engines_load()
    assert [engine.info().name for engine in engines] == ["demo-qwen2_5_vl"]
    assert [entry["name"] for entry in models_report()] == ["demo-qwen2_5_vl"]
    with pytest.raises(ModelNotLoaded):
        require_engine(SECOND)


# --- the memory check ---------------------------------------------------------------------------------


def test_the_memory_check_compares_the_weights_with_what_is_free():
    memory_fit_check(name="m", weights_bytes=1000, free=MemoryFree(1200, "the host's RAM"))  # 1000 × 1.2 fits
    with pytest.raises(ModelLoadError) as refused:
        memory_fit_check(name="m", weights_bytes=1000, free=MemoryFree(1199, "the host's RAM"))
    assert "is not loaded: it needs about" in str(refused.value) and "the host's RAM has 0 MiB free" in str(
        refused.value
    )
    mib = 1024 * 1024
    with pytest.raises(ModelLoadError) as refused:
        memory_fit_check(name="big", weights_bytes=100 * mib, free=MemoryFree(50 * mib, "the GPU memory (CUDA)"))
    assert str(refused.value) == MODEL_DOES_NOT_FIT.format(
        name="big", needed=120, weights=100, headroom=1.2, where="the GPU memory (CUDA)", free=50
    )


@pytest.mark.django_db
def test_a_model_that_does_not_fit_is_refused_and_the_default_one_serves(
    second, admins, runtime_reset, monkeypatch, system_context
):
    import inference.runtime as runtime

    model_version_load(version=second, acting_user=admins["system"])
    # The check's input (the free memory) is injected; the check and the load run as in production.
    monkeypatch.setattr(runtime, "memory_probe", lambda: MemoryFree(64 * 1024, "the host's RAM"))
    engines = engines_load()
    assert len(engines) == 1
    report = {entry["name"]: entry for entry in models_report()}
    assert report["demo-qwen2_5_vl"]["ok"] and report["demo-qwen2_5_vl"]["default"]
    assert not report[SECOND]["ok"] and "is not loaded: it needs about" in report[SECOND]["detail"]
    ready, detail = model_readiness()
    assert ready and f"{SECOND} (load failed:" in detail
    failure = AuditEntry.objects.filter(event_type=EventType.MODEL_LOAD, outcome=Outcome.FAILURE).latest("sequence")
    assert "the host's RAM has 0 MiB free" in failure.details["error"]
    with pytest.raises(ModelNotLoaded) as refused:
        require_engine(SECOND)
    # Why it failed is the operators' (the log, /readyz, the audit entry), not the caller's.
    assert str(refused.value) == MODEL_LOAD_FAILED.format(model=SECOND) and "MiB" not in str(refused.value)


@pytest.mark.django_db
def test_naming_a_model_still_loading_is_decided_and_recorded_before_the_wait(
    second, admins, personas, runtime_reset, system_context
):
    """A model beside the default one that is still loading: a department that may not use it is
    refused as for any model (recorded); one that may is told to wait (503), recorded too."""
    from accounts.permissions import Action
    from inference.registry.services import ModelNotEnabled, model_engine_for

    get_engine()
    asked = {"subject": personas.member, "department": personas.department_a, "requested": SECOND}
    with model_beside_override(SECOND, second.manifest_sha256):
        with pytest.raises(ModelNotEnabled):
            model_engine_for(**asked, action=Action.CHAT)
        assert denials().first().details["reason"] == "the model is not enabled for the department"
        department_model_access_set(
            department=personas.department_a, version=second, enabled=True, acting_user=personas.admin
        )
        with pytest.raises(ModelStillLoading) as waiting:
            model_engine_for(**asked, action=Action.CHAT)
        assert waiting.value.code == "model_unavailable"
        assert str(waiting.value) == MODEL_STILL_LOADING.format(model=SECOND)
        assert denials().first().details["reason"] == "the model is not loaded"


def test_one_model_beside_the_default_is_overridden_and_put_back(loaded_models):
    """``model_beside_override``: one model beside the default engine, served or still loading,
    nested in ``engine_override``; what stood for its manifest before comes back after."""
    from inference.engine.core import Engine, EngineLimits

    first = Engine(loaded_models["qwen2_5_vl"], EngineLimits())
    other = Engine(loaded_models["qwen2_vl"], EngineLimits())
    name, sha256 = other.info().name, other.info().manifest_sha256
    assert name != first.info().name  # else require_engine(name) would answer the default engine
    try:
        with engine_override(first):
            with model_beside_override(name, sha256, other):
                assert engines_loaded() == [first, other] and require_engine(name) is other
                with model_beside_override(name, sha256):  # the same model, still loading
                    with pytest.raises(ModelStillLoading):
                        require_engine(name)
                    ready, detail = model_readiness()
                    assert not ready and name in detail
                    assert engines_loaded() == [first]
                assert require_engine(name) is other  # what stood before is back
            assert engines_loaded() == [first]
            with pytest.raises(ModelNotLoaded) as gone:
                require_engine(name)
            assert str(gone.value) == MODEL_NOT_LOADED.format(model=name)
            with pytest.raises(ValueError, match="not another$"):  # the engine must be the model it serves as
                with model_beside_override("another", sha256, other):
                    pass
            assert engines_loaded() == [first]
    finally:
        first.shutdown()
        other.shutdown()


# --- two models loaded at once, each channel routed by the model it names -----------------------------


@pytest.fixture
def two_loaded(second, admins, personas, runtime_reset, system_context):
    """Both models loaded by the runtime (the real path: registry → memory check → load), both
    enabled for finance."""
    model_version_load(version=second, acting_user=admins["system"])
    engines = engines_load()
    assert len(engines) == 2, models_report()
    installed = model_version_active()
    for version in (installed, second):
        department_model_access_set(
            department=personas.department_a, version=version, enabled=True, acting_user=personas.admin
        )
    return {"default": installed, "second": second, "engines": engines}


@pytest.mark.django_db
def test_readyz_lists_every_loaded_model(two_loaded):
    from config import health

    with health.readiness_check_registered("model", model_readiness):
        answer = Client().get("/readyz").json()
        model = answer["checks"]["model"]
        assert model["ok"] and answer["status"] == "ready"
        listed = {entry["name"]: entry for entry in model["models"]}
        assert set(listed) == {"demo-qwen2_5_vl", SECOND}
        assert listed["demo-qwen2_5_vl"]["default"] and not listed[SECOND]["default"]
        assert listed[SECOND]["manifest_sha256"] == two_loaded["second"].manifest_sha256 and listed[SECOND]["ok"]


@pytest.mark.django_db
def test_metrics_label_every_loaded_models_scheduler(two_loaded):
    from prometheus_client import REGISTRY, generate_latest

    from inference.metrics import register_metrics

    register_metrics()
    text = generate_latest(REGISTRY).decode()
    infos = [line for line in text.splitlines() if line.startswith("platform_model_info{")]
    assert len(infos) == 2
    assert any('name="demo-qwen2_5_vl"' in line and 'default="true"' in line for line in infos)
    assert any(f'name="{SECOND}"' in line and 'default="false"' in line for line in infos)
    for name in ("demo-qwen2_5_vl", SECOND):
        assert f'platform_inference_queue_depth{{model="{name}"}} 0.0' in text
        assert f'platform_inference_requests_total{{model="{name}"}}' in text
    assert [line for line in text.splitlines() if line.startswith("platform_host_cpu_percent")] != []
    assert len([line for line in text.splitlines() if line.startswith("platform_host_cpu_percent")]) == 1


@pytest.fixture
def api(personas, system_context):
    from rest_framework.test import APIClient

    from departments.api_keys.services import api_key_create

    raw = api_key_create(
        department=personas.department_a,
        name="ERP",
        scopes=["chat", "extract"],
        created_by=personas.admin,
        expires_at=None,
    ).raw_key
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {raw}")
    return client


class _Calls(list):
    def count(self) -> int:
        return len(self)


def _calls(model_sha256: str) -> _Calls:
    """The inference.call entries of a model version (the audit details are canonical JSON text)."""
    entries = AuditEntry.objects.filter(event_type=EventType.INFERENCE)
    return _Calls(e for e in entries if e.details.get("model_sha256") == model_sha256)


@pytest.mark.django_db
def test_v1_routes_by_model_and_refuses_with_the_reason(two_loaded, api, personas, admins, third_dir):
    default, second = two_loaded["default"], two_loaded["second"]
    assert {m["id"] for m in api.get("/v1/models").json()["data"]} == {default.name, SECOND}
    assert api.get(f"/v1/models/{SECOND}").json()["metadata"]["manifest_sha256"] == second.manifest_sha256
    for version in (default, second):
        body = {"model": version.name, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2}
        response = api.post("/v1/chat/completions", body, format="json")
        assert response.status_code == 200, response.content
        assert response.json()["model"] == version.name
        assert _calls(version.manifest_sha256).count() == 1  # the call's entry names the version that answered

    # Not enabled for the department: refused and recorded, not listed.
    department_model_access_set(
        department=personas.department_a, version=second, enabled=False, acting_user=personas.admin
    )
    body = {"model": SECOND, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2}
    response = api.post("/v1/chat/completions", body, format="json")
    assert response.status_code == 404 and response.json()["error"]["code"] == "model_not_found"
    assert response.json()["error"]["message"] == f"The model '{SECOND}' is not enabled for this department."
    denial = denials().first()
    assert (denial.details["action"], denial.object_id) == ("api.chat", second.manifest_sha256)
    assert denial.details["reason"] == "the model is not enabled for the department"
    assert [m["id"] for m in api.get("/v1/models").json()["data"]] == [default.name]
    assert _calls(second.manifest_sha256).count() == 1  # no call reached the model

    # A registered version that is not approved: the person is told so.
    model_version_register(path=third_dir, name="third", acting_user=admins["system"])
    response = api.post("/v1/chat/completions", {**body, "model": "third"}, format="json")
    assert response.status_code == 403 and response.json()["error"]["code"] == "model_not_approved"
    assert response.json()["error"]["message"] == VERSION_NOT_APPROVED
    assert denials().first().details["reason"] == "the model version is not approved"
    # No such model at all.
    response = api.post("/v1/chat/completions", {**body, "model": "gpt-4o"}, format="json")
    assert response.status_code == 404 and response.json()["error"]["code"] == "model_not_found"
    assert denials().first().object_repr == "gpt-4o"


@pytest.fixture
def invoices(personas, settings, tmp_path, system_context):
    """``make(by, count=1)``: small invoice images uploaded to finance by ``by``, with short
    extraction answers (one attempt, 8 tokens) and a storage of the test's own."""
    from assets.services import asset_upload
    from tests.api.conftest import png_bytes

    settings.EXTRACTION_MAX_NEW_TOKENS = 8
    settings.STRUCTURED_OUTPUT_ATTEMPTS = 1
    settings.ASSET_STORAGE_DIR = tmp_path / "assets"
    settings.ASSET_MASTER_KEY_FILE = tmp_path / "asset-keys"

    def make(by, count=1):
        with department_scope(personas.department_a):
            return [
                asset_upload(
                    department=personas.department_a,
                    uploaded_by=by,
                    stream=iter([png_bytes((64, 48))]),
                    original_name=f"invoice-{n}.png",
                )
                for n in range(count)
            ]

    return make


@pytest.mark.django_db
def test_extraction_names_its_model(two_loaded, api, personas, invoices):
    from inference.extraction.models import Extraction

    (asset,) = invoices(personas.admin)
    api.get("/api/v1/templates")  # the built-in templates
    request = {"asset": str(asset.pk), "template": "vat-invoice"}
    second = two_loaded["second"]
    for name, version in ((None, two_loaded["default"]), (SECOND, second)):
        answered = api.post("/api/v1/extractions", {**request, **({"model": name} if name else {})}, format="json")
        assert answered.status_code == 201, answered.content
        with department_scope(personas.department_a):
            assert Extraction.objects.get(pk=answered.json()["id"]).model_sha256 == version.manifest_sha256

    department_model_access_set(
        department=personas.department_a, version=second, enabled=False, acting_user=personas.admin
    )
    refused = api.post("/api/v1/extractions", {**request, "model": SECOND}, format="json")
    assert refused.status_code == 403 and refused.json()["code"] == "model_not_enabled"
    unknown = api.post("/api/v1/extractions", {**request, "model": "gpt-4o"}, format="json")
    assert unknown.status_code == 404 and unknown.json()["code"] == "model_not_found"
    assert denials().first().object_repr == "gpt-4o"
    denial = denials().all()[1]
    assert (denial.details["action"], denial.object_id) == ("api.extract", second.manifest_sha256)
    with department_scope(personas.department_a):
        assert Extraction.objects.count() == 2  # nothing stored for the refused call


@pytest.mark.django_db
def test_the_portal_extraction_names_its_model(two_loaded, personas, invoices):
    """The extraction page offers the loaded models the department may use and runs the chosen
    one; a model no longer enabled is refused with its reason shown, nothing stored."""
    from inference.extraction.models import Extraction

    (asset,) = invoices(personas.member)
    client = Client()
    client.force_login(personas.member)
    url = f"/d/{personas.department_a.slug}/extract/"
    page = client.get(url, HTTP_ACCEPT_LANGUAGE="en").content.decode()
    assert 'name="model"' in page and f'value="{SECOND}"' in page
    second = two_loaded["second"]
    for name, version in (("", two_loaded["default"]), (SECOND, second)):
        answered = client.post(url, {"template": "vat-invoice", "assets": [str(asset.pk)], "model": name})
        assert answered.status_code == 302, answered.content.decode()[-2000:]
        with department_scope(personas.department_a):
            latest = Extraction.objects.order_by("-created_at").first()
            assert latest.model_sha256 == version.manifest_sha256
    department_model_access_set(
        department=personas.department_a, version=second, enabled=False, acting_user=personas.admin
    )
    refused = client.post(
        url, {"template": "vat-invoice", "assets": [str(asset.pk)], "model": SECOND}, HTTP_ACCEPT_LANGUAGE="en"
    )
    assert refused.status_code == 200  # the form again, with the reason
    assert "not enabled for this department" in refused.content.decode()
    denial = denials().first()
    assert (denial.details["action"], denial.object_id) == ("extraction.run", second.manifest_sha256)
    unknown = client.post(
        url, {"template": "vat-invoice", "assets": [str(asset.pk)], "model": "gpt-4o"}, HTTP_ACCEPT_LANGUAGE="en"
    )
    assert "No such model is loaded" in unknown.content.decode() and denials().first().object_repr == "gpt-4o"
    with department_scope(personas.department_a):
        assert Extraction.objects.count() == 2


@pytest.mark.django_db
def test_a_batch_names_its_model_for_every_file(
    two_loaded, api, personas, invoices, django_capture_on_commit_callbacks
):
    """A batch (API or portal) runs every file on the model it named, checked before anything is
    stored and again when the runner takes it up: a model disabled meanwhile stops the batch."""
    from inference.extraction.batch_jobs import batch_run
    from inference.extraction.models import BatchJob, Extraction

    assets = invoices(personas.member, count=2)
    ids = [str(asset.pk) for asset in assets]
    second = two_loaded["second"]
    api.get("/api/v1/templates")  # the built-in templates
    with django_capture_on_commit_callbacks(execute=False):
        created = api.post(
            "/api/v1/batches", {"assets": ids, "template": "vat-invoice", "model": SECOND}, format="json"
        )
    assert created.status_code == 202, created.content
    assert created.json()["model"] == SECOND
    job = batch_run(created.json()["id"])  # what the runner thread does, with no engine handed in
    assert job.status == "done" and job.processed == 2, job.error
    with department_scope(personas.department_a):
        shas = set(Extraction.objects.filter(batch_id=job.pk).values_list("model_sha256", flat=True))
    assert shas == {second.manifest_sha256}
    # An unknown model: refused and recorded, no job stored.
    with django_capture_on_commit_callbacks(execute=False):
        unknown = api.post(
            "/api/v1/batches", {"assets": ids, "template": "vat-invoice", "model": "gpt-4o"}, format="json"
        )
    assert unknown.status_code == 404 and unknown.json()["code"] == "model_not_found"
    assert denials().first().object_repr == "gpt-4o"

    # The portal's batch names the chosen model and its owner.
    client = Client()
    client.force_login(personas.member)
    url = f"/d/{personas.department_a.slug}/extract/"
    with django_capture_on_commit_callbacks(execute=False):
        started = client.post(url, {"template": "vat-invoice", "assets": ids, "model": SECOND, "batch": ""})
    assert started.status_code == 302, started.content.decode()[-2000:]
    with department_scope(personas.department_a):
        portal_job = BatchJob.objects.get(requested_by=personas.member)
        assert BatchJob.objects.count() == 2
    assert portal_job.model_name == SECOND and portal_job.created_by_name == personas.member.username
    # Disabled before the runner takes it up: the batch stops with the reason, recorded, no file run.
    department_model_access_set(
        department=personas.department_a, version=second, enabled=False, acting_user=personas.admin
    )
    stopped = batch_run(portal_job.pk)
    assert stopped.status == "failed" and "not enabled" in stopped.error and stopped.processed == 0
    denial = denials().first()
    assert (denial.details["action"], denial.object_id) == ("extraction.run", second.manifest_sha256)
    assert denial.details["batch"] == str(portal_job.pk)
    # And the portal refuses a new batch on it with the reason, storing nothing.
    refused = client.post(
        url, {"template": "vat-invoice", "assets": ids, "model": SECOND, "batch": ""}, HTTP_ACCEPT_LANGUAGE="en"
    )
    assert refused.status_code == 200 and "not enabled for this department" in refused.content.decode()
    with department_scope(personas.department_a):
        assert BatchJob.objects.count() == 2

    # Disabled while the batch runs, after its first file: asked again before the next one.
    department_model_access_set(
        department=personas.department_a, version=second, enabled=True, acting_user=personas.admin
    )
    with django_capture_on_commit_callbacks(execute=False):
        client.post(url, {"template": "vat-invoice", "assets": ids, "model": SECOND, "batch": ""})
    with department_scope(personas.department_a):
        running = BatchJob.objects.filter(requested_by=personas.member).order_by("-created_at").first()
    with disabled_after_the_first_file(personas, second):
        halted = batch_run(running.pk)
    assert halted.status == "failed" and "not enabled" in halted.error and halted.processed == 1
    assert denials().first().details["batch"] == str(running.pk)


def disabled_after_the_first_file(personas, version):
    """While in effect, a batch's first extracted file disables ``version`` for department A (the
    batch runner's call of the public ``extraction_run``, observed)."""
    import inference.extraction.batch_jobs as batch_jobs

    real = batch_jobs.extraction_run

    def first_then_disable(**kwargs):
        extraction = real(**kwargs)
        department_model_access_set(
            department=personas.department_a, version=version, enabled=False, acting_user=personas.admin
        )
        return extraction

    return mock.patch.object(batch_jobs, "extraction_run", first_then_disable)


@pytest.mark.django_db
def test_a_batch_that_named_no_model_keeps_the_one_it_started_on(
    two_loaded, api, personas, invoices, django_capture_on_commit_callbacks
):
    """With no model named, the batch runs on the department's default as it was when the runner
    took it up: the default disabled after the first file stops the batch, recorded; it never
    goes on with the other loaded model the department may still use."""
    import inference.extraction.batch_jobs as batch_jobs
    from inference.extraction.models import Extraction

    default = two_loaded["default"]
    ids = [str(asset.pk) for asset in invoices(personas.member, count=2)]
    api.get("/api/v1/templates")  # the built-in templates
    with django_capture_on_commit_callbacks(execute=False):
        created = api.post("/api/v1/batches", {"assets": ids, "template": "vat-invoice"}, format="json")
    assert created.status_code == 202, created.content
    with disabled_after_the_first_file(personas, default):
        halted = batch_jobs.batch_run(created.json()["id"])
    assert halted.model_name == default.name
    assert halted.status == "failed" and "not enabled" in halted.error and halted.processed == 1
    with department_scope(personas.department_a):
        shas = set(Extraction.objects.filter(batch_id=halted.pk).values_list("model_sha256", flat=True))
    assert shas == {default.manifest_sha256}
    assert denials().first().details["batch"] == str(halted.pk)
    assert api.get(f"/api/v1/batches/{halted.pk}").json()["model"] == default.name


# --- the websocket chat --------------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
async def test_the_chat_turn_names_its_model_and_each_answers_on_its_own_engine(
    configured, demo_model_factory, make_user, personas, settings, runtime_reset, tmp_path
):
    from tests.chat.conftest import SHORT_TURN, frame, open_chat, receive, receive_until

    settings.CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
    settings.ASSET_STORAGE_DIR = tmp_path / "assets"
    settings.ASSET_MASTER_KEY_FILE = tmp_path / "asset-keys"
    second_path = demo_model_factory(DemoModelSpec(family="qwen2_vl"))

    @sync_to_async
    def set_up():
        with request_context(RequestContext(request_id="test-set-up")):
            system = make_user("sys", admin_role=AdminRole.SYSTEM)
            security = make_user("sec", admin_role=AdminRole.SECURITY)
            engine = load_engine_from_settings()  # the installation
            engine.shutdown()
            version = model_version_register(path=second_path, name=SECOND, acting_user=system)
            version = model_version_approve(version=version, acting_user=security)
            model_version_load(version=version, acting_user=system)
            engines_load()
            installed = model_version_active()
            department_model_access_set(
                department=personas.department_a, version=installed, enabled=True, acting_user=personas.admin
            )
            return installed, version

    @sync_to_async
    def switch(version, enabled: bool):
        with request_context(RequestContext(request_id="test-switch")):
            department_model_access_set(
                department=personas.department_a, version=version, enabled=enabled, acting_user=personas.admin
            )

    async def enable(version):
        await switch(version, True)

    async def disable(version):
        await switch(version, False)

    @sync_to_async
    def stored_version(message_id: int) -> str | None:
        from inference.chat.models import ConversationMessage

        with department_scope(personas.department_a):
            return ConversationMessage.objects.get(pk=message_id).model_sha256

    @sync_to_async
    def last_denial():
        return denials().first()

    installed, second = await set_up()
    chat = await open_chat("bob")
    # The second model is not enabled for finance yet: refused with the reason, recorded.
    await chat.send_to(text_data=frame("turn.start", ref="no", text="hi", params=SHORT_TURN, model=SECOND))
    error = await receive(chat)
    assert (error["type"], error["code"], error["ref"]) == ("error", "model_not_enabled", "no")
    denial = await last_denial()
    assert (denial.details["action"], denial.object_id) == ("department.chat", second.manifest_sha256)

    await enable(second)
    answered = {}
    for ref, name in (("one", ""), ("two", SECOND), ("three", installed.name)):
        fields = {"model": name} if name else {}
        await chat.send_to(text_data=frame("turn.start", ref=ref, text="hi", params=SHORT_TURN, **fields))
        _frames, done = await receive_until(chat, {"done", "error"})
        assert done["type"] == "done", done
        assert await stored_version(done["message_ids"][1]) == done["model_sha256"]
        answered[ref] = done["model_sha256"]
    assert answered == {
        "one": installed.manifest_sha256,  # no name: the department's default
        "two": second.manifest_sha256,
        "three": installed.manifest_sha256,
    }
    # The portal's selector lists both and keeps the conversation's model.
    page = await sync_to_async(chat.http_client.get)(f"/d/finance/?c={done['conversation']}")
    content = page.content.decode()
    assert 'id="model-choice"' in content and f'<option value="{SECOND}">' in content
    assert f'<option value="{installed.name}" selected>' in content
    # The status panel follows the chosen model (and only a model the department may use).
    status = await sync_to_async(chat.http_client.get)(f"/d/finance/chat/status/?model={SECOND}")
    assert status.json()["model"]["name"] == SECOND
    status = await sync_to_async(chat.http_client.get)("/d/finance/chat/status/")
    assert status.json()["model"]["name"] == installed.name

    # Unknown and unapproved names: error frames, recorded.
    await chat.send_to(text_data=frame("turn.start", ref="x", text="hi", params=SHORT_TURN, model="gpt-4o"))
    assert (await receive(chat))["code"] == "model_not_found"
    assert (await last_denial()).object_repr == "gpt-4o"
    await chat.send_to(text_data=frame("turn.start", ref="y", text="hi", params=SHORT_TURN, model=7))
    assert (await receive(chat))["code"] == "bad_frame"
    await disable(second)
    await chat.send_to(text_data=frame("turn.start", ref="z", text="hi", params=SHORT_TURN, model=SECOND))
    assert (await receive(chat))["code"] == "model_not_enabled"
    status = await sync_to_async(chat.http_client.get)(f"/d/finance/chat/status/?model={SECOND}")
    assert status.json()["model"]["name"] == installed.name
    await chat.disconnect()


@pytest.mark.django_db(transaction=True)
async def test_a_turn_naming_an_unapproved_version_is_told_so(
    configured, make_user, personas, settings, runtime_reset, tmp_path, third_dir
):
    from tests.chat.conftest import frame, open_chat, receive

    settings.CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}

    @sync_to_async
    def set_up():
        with request_context(RequestContext(request_id="test-set-up")):
            engines_load()
            return model_version_register(
                path=third_dir, name="third", acting_user=make_user("sys", admin_role=AdminRole.SYSTEM)
            )

    third = await set_up()
    chat = await open_chat("bob")
    await chat.send_to(text_data=frame("turn.start", ref="u", text="hi", model="third"))
    error = await receive(chat)
    assert (error["code"], error["message"]) == ("model_not_approved", VERSION_NOT_APPROVED)
    denial = await sync_to_async(lambda: denials().first())()
    assert (denial.object_id, denial.details["action"]) == (third.manifest_sha256, "department.chat")
    await chat.disconnect()


# --- the portal's refusal page, and the drain on SIGTERM ---------------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("language", "approved_reason", "enabled_reason"),
    [
        (
            "en",
            "This model version is not approved: the security administrator approves a version before it can be used.",
            "This model is not enabled for your department.",
        ),
        ("zh-hans", "此模型版本未经批准：安全管理员批准一个版本后才能使用。", "您的部门未启用此模型。"),
    ],
)
def test_the_portal_error_page_gives_the_models_refusal_reason(personas, language, approved_reason, enabled_reason):
    from django.contrib.auth.models import AnonymousUser

    from config.error_pages import permission_denied
    from inference.registry.services import MODEL_NOT_ENABLED, ModelNotEnabled

    request = RequestFactory().get("/d/finance/extraction/")
    request.user = AnonymousUser()
    with translation.override(language):
        for refusal, reason in (
            (VersionNotApproved(VERSION_NOT_APPROVED), approved_reason),
            (ModelNotEnabled(MODEL_NOT_ENABLED.format(model="x")), enabled_reason),
        ):
            page = permission_denied(request, refusal)
            assert page.status_code == 403
            assert f'<p class="reason" id="error-reason">{reason}</p>' in page.content.decode()


def test_a_shutdown_drains_every_loaded_model(loaded_models):
    from inference.engine.core import Engine, EngineLimits
    from inference.engine.inputs import Message
    from inference.runtime import stopping_set
    from inference.shutdown import SHUTTING_DOWN, stop_taking_turns

    first = Engine(loaded_models["qwen2_5_vl"], EngineLimits())
    other = Engine(loaded_models["qwen2_vl"], EngineLimits())
    try:
        with engine_override(first, others=(other,)):
            assert engines_loaded() == [first, other]
            assert require_engine(other.info().name) is other
            stop_taking_turns()
            try:
                for name in (None, other.info().name):
                    with pytest.raises(ModelUnavailable, match="shutting down"):
                        require_engine(name)
                with pytest.raises(ModelUnavailable, match="shutting down"):
                    other.submit([Message("user", "hi")], department="finance")
                assert str(SHUTTING_DOWN).startswith("the server is shutting down")
            finally:
                stopping_set("")
    finally:
        first.shutdown()
        other.shutdown()


# --- the console ---------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_the_console_loads_a_version_beside_the_active_one_and_unloads_it(second, configured, make_user, settings):
    import ipaddress

    from django.utils import timezone
    from django_otp.plugins.otp_totp.models import TOTPDevice

    from tests.accounts.conftest import sign_in_with_totp

    settings.ADMIN_ALLOWED_NETWORKS = [ipaddress.ip_network("127.0.0.0/8")]

    def console(role: str) -> Client:
        user = make_user(f"{role}-admin", admin_role=role, password_changed_at=timezone.now())
        device = TOTPDevice.objects.create(user=user, name="authenticator", confirmed=True)
        client = Client()
        sign_in_with_totp(client, user, device)
        return client

    registry = "/admin/inference/modelversion/"
    system = console(AdminRole.SYSTEM)
    page = system.get(registry, HTTP_ACCEPT_LANGUAGE="en").content.decode()
    assert "Up to 2 model(s) may be loaded at once" in page and f"{second.pk}/load/" in page
    response = system.post(f"{registry}{second.pk}/load/", follow=True, HTTP_ACCEPT_LANGUAGE="zh-hans")
    assert f"服务下次启动时，{SECOND} 将与当前版本同时加载。" in response.content.decode()
    assert model_versions_additional() == [second]
    assert "与当前版本同时加载" in system.get(registry, HTTP_ACCEPT_LANGUAGE="zh-hans").content.decode()
    # The security administrator may not choose what is loaded (403, recorded).
    assert console(AdminRole.SECURITY).post(f"{registry}{second.pk}/unload/").status_code == 403
    assert denials().first().details["action"] == "model.activate"
    assert system.post(f"{registry}{second.pk}/unload/").status_code == 302
    assert model_versions_additional() == []
    # Unloading what is not loaded beside the active version: said on the page.
    response = system.post(f"{registry}{second.pk}/unload/", follow=True, HTTP_ACCEPT_LANGUAGE="en")
    assert "This version is not loaded beside the active one." in response.content.decode()


@pytest.mark.django_db
def test_a_version_loaded_beside_that_becomes_active_is_the_active_one_and_returns_after_a_rollback(
    second, installed, admins, system_context
):
    from inference.registry.services import model_version_activate, model_version_rollback

    system = admins["system"]
    model_version_load(version=second, acting_user=system)
    model_version_activate(version=second, acting_user=system)
    assert model_version_active() == second and model_versions_additional() == []
    model_version_rollback(acting_user=system)
    assert model_version_active() == installed and model_versions_additional() == [second]


@pytest.mark.django_db(transaction=True)
def test_the_background_load_of_the_serving_process_loads_both(second, admins, runtime_reset, system_context):
    """What the ASGI start-up does (start_loading): the default model, then the one beside it, on
    the loading thread; /readyz's model check is ready only once both are."""
    import threading

    import inference.registry.selectors as selectors
    from inference.runtime import start_loading
    from tests.support.waiting import wait_until

    # Hold the loading thread between publishing the default engine and reading which models go
    # beside it: /readyz must not say "ready" in that gap.
    reached, release = threading.Event(), threading.Event()
    real = selectors.model_versions_additional

    def held(limit):
        reached.set()
        release.wait(120)
        return real(limit)

    model_version_load(version=second, acting_user=admins["system"])
    with mock.patch.object(selectors, "model_versions_additional", held):
        start_loading()
        wait_until(reached.is_set, timeout=120, message="the default model is still loading")
        try:
            assert model_readiness() == (False, MODEL_LOADING)
        finally:
            release.set()
        wait_until(lambda: model_readiness()[0], timeout=120, message="both models are still loading")
    assert {entry["name"]: entry["ok"] for entry in models_report()} == {"demo-qwen2_5_vl": True, SECOND: True}
    assert require_engine(SECOND).info().manifest_sha256 == second.manifest_sha256


@pytest.mark.django_db
def test_serve_imports_the_code_of_every_family_it_will_load(second, admins, monkeypatch, system_context):
    """manage.py serve imports the model classes before it listens (docs/inference.md, "While the
    model loads"): with a model beside the default one, its family's class too."""
    import inference.engine.families as families
    from inference.runtime import model_code_import

    imported = []
    real = families.model_class
    monkeypatch.setattr(families, "model_class", lambda family: imported.append(family.model_type) or real(family))
    model_version_load(version=second, acting_user=admins["system"])
    model_code_import()
    assert imported == ["qwen2_5_vl", "qwen2_5_vl", "qwen2_vl"]  # MODEL_PATH's, then the registry's two
