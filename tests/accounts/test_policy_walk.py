"""The walk: every URL route, websocket route, REST view and console model is bound to an action
of the policy table — and each one, called as the outsider persona, refuses with the right status
and leaves the refusal's ``access.denied`` entry. Declarations alone would not fail this test.
"""

from __future__ import annotations

import ipaddress
import re
import uuid

import pytest
from django.contrib import admin
from django.test import Client

from accounts.permissions import CONSOLE, POLICY, Action
from accounts.roles import AdminRole, MembershipRole
from compliance.events import EventType
from compliance.models import AuditEntry
from config.websocket import websocket_urlpatterns
from departments.api_keys.services import api_key_create
from departments.services import membership_add
from tests.accounts.conftest import sign_in_with_totp
from tests.support.routes import routes

pytestmark = pytest.mark.django_db

FOREIGN_ADDRESS = "203.0.113.9"  # outside every administration network


def _view_class(callback):
    return getattr(callback, "view_class", None) or getattr(callback, "cls", None)


def bound_actions(callback) -> set[Action]:
    """The actions a route's view is bound to: a function view's ``policy_action``, or a REST
    view's ``required_action`` (one per HTTP method)."""
    action = getattr(callback, "policy_action", None)
    if action is not None:
        return {action}
    cls = _view_class(callback)
    required = getattr(cls, "required_action", None)
    if isinstance(required, dict):
        return set(required.values())
    return {required} if required is not None else set()


def test_every_route_is_bound_to_an_action_of_the_table():
    unbound = [text for text, pattern in routes() if not bound_actions(pattern.callback) <= set(POLICY)]
    unbound += [text for text, pattern in routes() if not bound_actions(pattern.callback)]
    assert unbound == []


def test_every_rest_method_is_bound():
    for text, pattern in routes():
        cls = _view_class(pattern.callback)
        required = getattr(cls, "required_action", None)
        if isinstance(required, dict):
            methods = {m.upper() for m in allowed_methods(pattern.callback)}
            assert methods <= set(required), text


def test_every_websocket_route_is_bound():
    for route in websocket_urlpatterns:
        consumer = getattr(route.callback, "consumer_class", None)
        assert getattr(consumer, "required_action", None) in POLICY, route.pattern


def test_every_console_model_is_in_the_table():
    assert {model._meta.label_lower for model in admin.site._registry} <= set(CONSOLE)


def test_static_files_are_served_before_any_route(settings):
    from django.urls import Resolver404, resolve

    with pytest.raises(Resolver404):  # WhiteNoise serves STATIC_URL; no route may shadow it
        resolve(settings.STATIC_URL + "css/portal.css")
    assert POLICY[Action.STATIC].public


# --- enforcement --------------------------------------------------------------------------------

ADMIN_ROLES = (AdminRole.SYSTEM, AdminRole.SECURITY, AdminRole.AUDIT)
HTTP_METHODS = ("get", "post", "put", "patch", "delete")
_SAMPLE = {"int": "1", "uuid": str(uuid.UUID(int=1)), "slug": "finance", "str": "x1", "path": "x1"}
# Parameters of the REST routes that name an object of a department: a key of another department
# must find none of them (404, recorded), however real the object.
REST_OBJECT_PARAMETERS = frozenset({"asset_id", "extraction_id", "batch_id", "slug"})
_PARAMETER = re.compile(r"<(?:(\w+):)?(\w+)>")
_REGEX_GROUP = re.compile(r"\(\?P<(\w+)>([^)]*)\)")


def _concrete(text: str, ids: dict[str, str]) -> list[str]:
    """Concrete paths for a route's pattern: its parameters filled from ``ids`` (real objects where
    the walk made one) or samples; a regular expression's named group gives one path per
    alternative it lists (an app of the console), or a sample for an open one."""

    def fill(match: re.Match) -> str:
        converter, name = (match.group(1) or "str"), match.group(2)
        return ids.get(name, _SAMPLE[converter])

    path = "/" + _PARAMETER.sub(fill, text)
    if "(?P<" not in path:
        return [path]
    path = path.replace("^", "").replace("$", "")
    group = _REGEX_GROUP.search(path)
    alternatives = group.group(2).split("|") if re.fullmatch(r"[\w|]+", group.group(2)) else ["x1/"]
    return [path[: group.start()] + alternative + path[group.end() :] for alternative in alternatives]


def allowed_methods(callback) -> list[str]:
    """The HTTP methods a route answers: a class view's handlers, or the list a function view gave
    ``require_http_methods`` (``require_GET``, ``require_POST``…); any method (GET and POST are
    walked) for a function view that restricts none."""
    cls = _view_class(callback)
    if cls is not None:
        return [method for method in HTTP_METHODS if hasattr(cls, method)]
    function = callback
    while function is not None:
        for cell in function.__closure__ or ():
            try:
                value = cell.cell_contents
            except ValueError:  # an empty cell
                continue
            if (
                isinstance(value, list | tuple)
                and value
                and all(isinstance(v, str) and v.lower() in {*HTTP_METHODS, "head"} for v in value)
            ):
                return [v.lower() for v in value if v.lower() in HTTP_METHODS]
        function = getattr(function, "__wrapped__", None)
    return ["get", "post"]


def _route_action(callback, method: str) -> Action:
    required = getattr(_view_class(callback), "required_action", None)
    if isinstance(required, dict):
        return required[method.upper()]
    return next(iter(bound_actions(callback)))


def _denials() -> int:
    return AuditEntry.objects.filter(event_type=EventType.ACCESS_DENIED).count()


def _last_denial():
    return AuditEntry.objects.filter(event_type=EventType.ACCESS_DENIED).latest("sequence")


@pytest.fixture
def outsiders(personas, make_user, make_admin, system_context):
    """Per kind of action, the person (or key) who must be refused, and how."""
    clients = {"anonymous": Client(), "foreign_network": Client(REMOTE_ADDR=FOREIGN_ADDRESS)}
    for role in ADMIN_ROLES:
        user, device = make_admin(role)
        client = Client()
        sign_in_with_totp(client, user, device)
        clients[str(role)] = client
    member = Client()
    member.force_login(personas.member)  # of finance, without its administrator role
    clients["member"] = member
    outsider = Client()
    outsider.force_login(personas.outsider)  # of quality, not of finance
    clients["outsider"] = outsider

    def key(department, name, scopes):
        raw = api_key_create(
            department=department, name=name, scopes=scopes, created_by=personas.admin, expires_at=None
        ).raw_key
        return Client(HTTP_AUTHORIZATION=f"Bearer {raw}")

    # A finance key with a scope no route of the walk needs for itself, and one with none of use.
    clients["key_chat"] = key(personas.department_a, "ERP", ["chat"])
    clients["key_extract"] = key(personas.department_a, "OA", ["extract"])
    # A key of quality holding every scope: finance's objects are not there for it.
    membership_add(
        user=personas.admin, department=personas.department_b, role=MembershipRole.ADMIN, acting_user="system"
    )
    clients["foreign_key"] = key(personas.department_b, "QMS", ["chat", "assets:read", "assets:write", "extract"])
    return clients


@pytest.fixture
def walk_objects(personas, system_context, outsiders):
    """Real objects for the routes' parameters: finance's file, extraction, batch and template (for
    the key of quality to be refused on), and one object of each console model."""
    from departments.tenancy import department_scope
    from inference.extraction.models import BatchJob, Extraction
    from inference.extraction.services import templates_builtin_ensure
    from inference.models import TaskTemplate
    from tests.api.conftest import png_bytes
    from tests.support.assets import asset_upload_bytes

    finance = personas.department_a
    templates_builtin_ensure(department=finance)
    asset = asset_upload_bytes(png_bytes(), "walk.png", department=finance, uploaded_by=personas.member)
    with department_scope(finance):
        job = BatchJob.objects.create(department=finance, template_slug="vat-invoice", asset_ids=[str(asset.pk)])
        extraction = Extraction.objects.create(
            department=finance, template_slug="vat-invoice", asset=asset, asset_ref=str(asset.pk), status="invalid"
        )
        # a template of finance alone (both departments have the built-in ones, each its own)
        template = TaskTemplate.objects.get(department=finance, slug="vat-invoice")
        template.pk, template.slug = None, "finance-walk"
        template.save()
    ids = {
        "department_slug": finance.slug,
        "asset_id": str(asset.pk),
        "extraction_id": str(extraction.pk),
        "batch_id": str(job.pk),
        "slug": template.slug,
    }
    with department_scope(finance):
        return ids, _console_objects(personas)


def _console_objects(personas) -> dict[str, str]:
    """label → the id of an object of that console model (made where none exists yet), so each
    object page decides on a real object."""
    from django.utils import timezone

    from accounts.models import DirectoryGroupMapping, LoginThrottle, SecurityPolicy
    from compliance.models import AuditAnchor, AuditArchive, RetentionPolicy
    from inference.chat.models import ChatPolicy
    from inference.registry.models import ModelVersion

    DirectoryGroupMapping.objects.create(group_dn="cn=walk,dc=example", department=personas.department_a)
    LoginThrottle.objects.create(kind=LoginThrottle.Kind.values[0], key="walk", failures=1)
    SecurityPolicy.objects.get_or_create(id=1)
    RetentionPolicy.objects.get_or_create(department=personas.department_a)
    ChatPolicy.objects.get_or_create(department=personas.department_a)
    ModelVersion.objects.get_or_create(
        name="walk-model",
        defaults={"manifest_sha256": "0" * 64, "path": "/nonexistent", "family": "walk", "registered_by_name": "t"},
    )
    archive = AuditArchive.objects.create(format="jsonl", file_name="walk.jsonl", sha256="0" * 64, entry_count=0)
    AuditAnchor.objects.create(sequence=10**12, hash="0" * 64, archive=archive, removed=0, created_at=timezone.now())
    found = {}
    for model in admin.site._registry:
        obj = model._default_manager.order_by("pk").first()
        assert obj is not None, model._meta.label_lower
        found[model._meta.label_lower] = str(obj.pk)
    return found


# The operation of the console table each of a model's pages takes (a GET of a change page only
# views); the bare object URL only redirects to the change page, which is walked itself.
_PAGE_OPERATIONS = {
    "changelist_view": "view",
    "history_view": "view",
    "add_view": "add",
    "change_view": "change",
    "delete_view": "delete",
    "user_change_password": "change",
}


def _roles(action: Action | None) -> frozenset:
    return POLICY[action].admin_roles if action is not None else frozenset()


def _console_cases(text: str, callback, method: str) -> list[tuple[str, int, str]]:
    """(persona, status, the action its refusal names) for a console route."""
    enter = Action.CONSOLE_ENTER
    cases = [("foreign_network", 404, enter), ("anonymous", 302, enter), ("member", 403, enter)]
    action = _route_action(callback, method)
    page = getattr(callback, "__name__", "")
    parts = text.split("/")
    label = ".".join(parts[1:3]) if len(parts) > 3 else ""
    if action != enter:  # a page bound to an action of its own (the model registry's)
        granted, refused_as, status = _roles(action), action, 403
    elif label in CONSOLE and page in _PAGE_OPERATIONS:
        operation = _PAGE_OPERATIONS[page]
        if operation == "change" and page == "change_view" and method == "get":
            operation = "view"
        granted = _roles(CONSOLE[label].get(operation))
        if operation == "view":  # Django lets whoever may change a model view it
            granted |= _roles(CONSOLE[label].get("change"))
        refused_as, status = CONSOLE[label].get(operation, enter), 403
    elif page == "app_index":  # an app with no model of the role does not exist for it
        app_label = parts[1]
        granted = frozenset(
            role
            for label, operations in CONSOLE.items()
            if label.startswith(f"{app_label}.")
            for role in _roles(operations.get("view")) | _roles(operations.get("change"))
        )
        refused_as, status = enter, 404
    else:  # the console's own pages (index, sign-out…), and a model's bare object URL, which only
        # redirects to its change page (walked itself): any administrator
        return cases
    return cases + [(str(role), status, refused_as) for role in ADMIN_ROLES if role not in granted]


def _cases(text: str, callback, method: str) -> list[tuple[str, int, str]]:
    """(persona, the status it must get, the action its refusal must name) for one method of a
    route (``text``: its pattern)."""
    if text.startswith("admin/"):
        return _console_cases(text, callback, method)
    action = _route_action(callback, method)
    grant = POLICY[action]
    if grant.public:
        return []
    if grant.api_scope and not (grant.department_roles or grant.owner_roles or grant.admin_roles):
        # A REST route: no key → 401; a key of the department without the scope → 403; a key of
        # another department on this department's object → 404.
        lacking = "key_extract" if grant.api_scope != "extract" else "key_chat"
        cases = [("anonymous", 401, action), (lacking, 403, action)]
        if {name for _, name in _PARAMETER.findall(text)} & REST_OBJECT_PARAMETERS:
            cases.append(("foreign_key", 404, action))
        return cases
    if grant.administration:
        wrong = [(str(role), 403, action) for role in ADMIN_ROLES if role not in grant.admin_roles]
        return [("foreign_network", 404, action), ("anonymous", 302, action), ("member", 403, action), *wrong]
    if grant.signed_in:
        return [("anonymous", 302, action)]
    # Inside a department: whoever is not its member does not find it (administrators included).
    enter = Action.DEPARTMENT_ENTER
    cases = [("anonymous", 302, enter), ("outsider", 404, enter), *[(str(role), 404, enter) for role in ADMIN_ROLES]]
    if _member_lacks(grant):
        cases.append(("member", 403, action))
    return cases


def _member_lacks(grant) -> bool:
    return "member" not in grant.department_roles and "member" not in grant.owner_roles


@pytest.fixture(autouse=True)
def loopback_is_an_admin_network(settings):
    settings.ADMIN_ALLOWED_NETWORKS = [ipaddress.ip_network("127.0.0.0/8")]


def _walk_ids(text: str, ids: dict[str, str], console: dict[str, str]) -> dict[str, str]:
    parts = text.split("/")
    label = ".".join(parts[1:3]) if text.startswith("admin/") and len(parts) > 3 else ""
    if label in console:
        return {**ids, "object_id": console[label], "id": console[label], "version_id": console[label]}
    return ids


def test_every_route_refuses_its_outsiders_and_records_it(personas, outsiders, walk_objects):
    ids, console = walk_objects
    checked, problems, walked = 0, [], set()
    for text, pattern in routes():
        methods = allowed_methods(pattern.callback)
        assert methods, text
        for path in _concrete(text, _walk_ids(text, ids, console)):
            for method in methods:
                for persona, status, action in _cases(text, pattern.callback, method):
                    before = _denials()
                    response = getattr(outsiders[persona], method)(path)
                    checked += 1
                    walked.add((text, method))
                    where = f"{method.upper()} {path} as {persona}"
                    if response.status_code != status:
                        problems.append(f"{where}: {response.status_code}, expected {status}")
                    elif _denials() != before + 1:
                        problems.append(f"{where}: {_denials() - before} refusal entries, expected 1")
                    elif _last_denial().details.get("action") != str(action):
                        problems.append(
                            f"{where}: refusal recorded for {_last_denial().details.get('action')}, expected {action}"
                        )
    assert problems == [], "\n".join(problems)
    # The walk really walked: every method of the REST routes, and the regex routes too.
    assert ("api/v1/assets", "post") in walked and ("api/v1/assets/<str:asset_id>", "delete") in walked
    assert any("(?P<" in text for text, _ in walked)
    assert checked > 1000
    # ... and nothing a refused key asked for happened.
    from assets.models import Asset
    from departments.tenancy import department_scope
    from inference.extraction.models import BatchJob

    with department_scope(personas.department_a):
        assert Asset.objects.filter(pk=ids["asset_id"]).exists()
        assert not BatchJob.objects.get(pk=ids["batch_id"]).cancel_requested


@pytest.mark.django_db(transaction=True)
def test_every_websocket_route_refuses_its_outsiders_and_records_it(personas, make_admin, settings):
    from asgiref.sync import async_to_sync
    from channels.testing import WebsocketCommunicator

    from config.websocket import websocket_application
    from tests.chat.conftest import session_cookie, sign_in, with_client_address

    settings.CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
    administrators = {}
    for role in ADMIN_ROLES:
        user, device = make_admin(role)
        client = Client()
        sign_in_with_totp(client, user, device)
        administrators[str(role)] = session_cookie(client)

    async def refused(path: str, cookie) -> bool:
        headers = [(b"origin", b"http://testserver")]
        if cookie:
            headers.append((b"cookie", f"{settings.SESSION_COOKIE_NAME}={cookie}".encode()))
        socket = WebsocketCommunicator(with_client_address(websocket_application), path, headers=headers)
        connected, _ = await socket.connect(timeout=10)
        if connected:
            await socket.disconnect()
        return not connected

    outsiders = [
        (None, "not signed in"),
        (session_cookie(sign_in("charlie")), "not a member of this department"),  # of quality
        *((cookie, "an administrator account holds no department access") for cookie in administrators.values()),
    ]
    walked = 0
    for route in websocket_urlpatterns:
        action = route.callback.consumer_class.required_action
        for path in _concrete(str(route.pattern), {"department_slug": personas.department_a.slug}):
            for cookie, reason in outsiders:
                before = _denials()
                assert async_to_sync(refused)(path, cookie), (path, reason)
                assert _denials() == before + 1, (path, reason)
                denial = _last_denial()
                assert (denial.details["action"], denial.details["reason"]) == (str(action), reason)
                walked += 1
    assert walked >= len(outsiders)
