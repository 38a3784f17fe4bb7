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
from accounts.roles import AdminRole
from compliance.events import EventType
from compliance.models import AuditEntry
from config.websocket import websocket_urlpatterns
from departments.api_keys.services import api_key_create
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
            methods = {m.upper() for m in ("get", "post", "delete") if hasattr(cls, m)}
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

_SAMPLE = {"int": "1", "uuid": str(uuid.UUID(int=1)), "slug": "finance", "str": "x1", "path": "x1"}


def _concrete(text: str) -> str | None:
    """A concrete path for a route's pattern (None for the console's regex routes)."""
    if "(?P<" in text or "^" in text:
        return None

    def fill(match: re.Match) -> str:
        converter, name = (match.group(1) or "str"), match.group(2)
        return "finance" if name == "department_slug" else _SAMPLE[converter]

    return "/" + re.sub(r"<(?:(\w+):)?(\w+)>", fill, text)


def _rest_method(callback) -> str:
    cls = _view_class(callback)
    for method in ("get", "post", "delete"):
        if cls is None or hasattr(cls, method):
            return method
    return "get"


def _denials() -> int:
    return AuditEntry.objects.filter(event_type=EventType.ACCESS_DENIED).count()


def _last_denial():
    return AuditEntry.objects.filter(event_type=EventType.ACCESS_DENIED).latest("sequence")


@pytest.fixture
def outsiders(personas, make_user, make_admin, system_context):
    """Per kind of action, the person (or key) who must be refused, and how."""
    clients = {"anonymous": Client(), "foreign_network": Client(REMOTE_ADDR=FOREIGN_ADDRESS)}
    for role in (AdminRole.SYSTEM, AdminRole.AUDIT):
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
    # A finance key with a scope no route of the walk needs for itself, and one with none of use.
    clients["key_chat"] = api_key_create(
        department=personas.department_a, name="ERP", scopes=["chat"], created_by=personas.admin, expires_at=None
    ).raw_key
    clients["key_extract"] = api_key_create(
        department=personas.department_a, name="OA", scopes=["extract"], created_by=personas.admin, expires_at=None
    ).raw_key
    return clients


def _expectations(action: Action) -> list[tuple[str, int]]:
    """(persona, the status it must get) for a route bound to ``action``."""
    grant = POLICY[action]
    if grant.public:
        return []
    if grant.api_scope and not (grant.department_roles or grant.owner_roles or grant.admin_roles):
        # A REST route: no key → 401; a key of the department without the scope → 403.
        lacking = "key_extract" if grant.api_scope != "extract" else "key_chat"
        return [("anonymous", 401), (lacking, 403)]
    anonymous = ("anonymous", 302)  # to the sign-in page
    if grant.administration:
        wrong_role = "audit" if AdminRole.AUDIT not in grant.admin_roles else "system"
        wrong = [(wrong_role, 403)] if action != Action.CONSOLE_ENTER else [("member", 403)]
        return [("foreign_network", 404), anonymous, *wrong]
    if grant.signed_in:
        return [anonymous]
    expected = [anonymous, ("outsider", 404)]
    if _member_lacks(grant):
        expected.append(("member", 403))
    return expected


def _member_lacks(grant) -> bool:
    return "member" not in grant.department_roles and "member" not in grant.owner_roles


@pytest.fixture(autouse=True)
def loopback_is_an_admin_network(settings):
    settings.ADMIN_ALLOWED_NETWORKS = [ipaddress.ip_network("127.0.0.0/8")]


def test_every_route_refuses_its_outsiders_and_records_it(outsiders):
    checked, problems = 0, []
    for text, pattern in routes():
        path = _concrete(text)
        if path is None:
            continue
        actions = bound_actions(pattern.callback)
        cls = _view_class(pattern.callback)
        method = _rest_method(pattern.callback)
        action = next(iter(actions))
        if isinstance(getattr(cls, "required_action", None), dict):
            action = cls.required_action[method.upper()]
        for persona, status in _expectations(action):
            before = _denials()
            if persona.startswith("key_"):
                client = Client(HTTP_AUTHORIZATION=f"Bearer {outsiders[persona]}")
            else:
                client = outsiders[persona]
            response = getattr(client, method)(path)
            checked += 1
            if response.status_code != status:
                problems.append(f"{path} as {persona}: {response.status_code}, expected {status}")
            elif _denials() != before + 1:
                problems.append(f"{path} as {persona}: {_denials() - before} refusal entries, expected 1")
            elif _last_denial().details.get("action") not in {str(action), "console.enter", "department.enter"}:
                problems.append(f"{path} as {persona}: refusal recorded for {_last_denial().details.get('action')}")
    assert problems == []
    assert checked > 80  # the walk really walked


@pytest.mark.parametrize("label", sorted(CONSOLE))
def test_every_console_page_refuses_the_wrong_administrator_and_records_it(outsiders, label):
    granted = {role for action in CONSOLE[label].values() for role in POLICY[action].admin_roles}
    wrong = "audit" if AdminRole.AUDIT not in granted else "system"
    app_label, model = label.split(".")
    before = _denials()
    response = outsiders[wrong].get(f"/admin/{app_label}/{model}/")
    assert response.status_code == 403
    assert _denials() == before + 1
    assert _last_denial().details["path"] == f"/admin/{app_label}/{model}/"


@pytest.mark.django_db(transaction=True)
def test_the_websocket_refuses_outsiders_and_records_it(personas, settings):
    from asgiref.sync import async_to_sync

    from tests.chat.conftest import communicator, session_cookie, sign_in

    settings.CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}

    async def refused(cookie) -> bool:
        chat = communicator(cookie, "finance")
        connected, _ = await chat.connect(timeout=10)
        return not connected

    for cookie, reason in (
        (None, "not signed in"),
        (session_cookie(sign_in("charlie")), "not a member of this department"),
    ):
        before = _denials()
        assert async_to_sync(refused)(cookie)
        assert _denials() == before + 1
        denial = _last_denial()
        assert (denial.details["action"], denial.details["reason"]) == (Action.CHAT.value, reason)


def _role_comparisons(path) -> list[str]:
    """Comparisons that decide on a role: a person's role against a role value or a set of roles
    (a role compared with the same person's earlier role, to notice a change, decides nothing)."""
    import ast

    def names_a_role(node) -> bool:
        return any(
            (isinstance(n, ast.Attribute) and n.attr == "admin_role")
            or (isinstance(n, ast.Attribute) and n.attr == "role" and "membership" in ast.unparse(n.value).lower())
            or (
                isinstance(n, ast.Call)
                and getattr(n.func, "id", "") == "getattr"
                and any(isinstance(a, ast.Constant) and a.value in ("admin_role", "role") for a in n.args)
            )
            for n in ast.walk(node)
        )

    def a_role_value(node) -> bool:
        return isinstance(node, ast.Constant | ast.Set | ast.Tuple | ast.List | ast.Name) or any(
            isinstance(n, ast.Name) and n.id in {"AdminRole", "MembershipRole"} for n in ast.walk(node)
        )

    tree = ast.parse(path.read_text(), filename=str(path))
    found = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Compare):
            continue
        parts = (node.left, *node.comparators)
        if any(names_a_role(part) for part in parts) and any(
            a_role_value(part) or isinstance(op, ast.In | ast.NotIn)
            for part, op in zip(parts[1:], node.ops, strict=True)
        ):
            found.append(f"{path}:{node.lineno}: {ast.unparse(node)}")
    return found


def test_no_role_is_compared_outside_the_policy_layer():
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    sources = [*root.joinpath("platform").rglob("*.py"), *root.joinpath("inference").rglob("*.py")]
    sources += list(root.joinpath("compliance").rglob("*.py"))
    found = [
        comparison
        for path in sources
        if "migrations" not in path.parts and path.name != "permissions.py"
        for comparison in _role_comparisons(path)
    ]
    assert found == []
    # ... and the check finds one where it is:
    assert _role_comparisons(root / "platform" / "accounts" / "permissions.py")
