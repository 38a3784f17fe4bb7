"""Only the policy layer (``accounts.permissions``, with the role enums of ``accounts.roles``)
compares roles: no other module compares a role, filters accounts or memberships by a role value,
or names one of the roles (an enum member or its string) in a comparison. Elsewhere the code asks
the policy layer (``administrators_filter``, ``administrator_role_holders``, ``decide``…).

Nor does any other module decide whose account an action may be on: no console page refuses an
object (``has_<op>_permission(request, obj)``) but through the policy layer, and no code compares
the person acting with the account acted on ("not on oneself"): ``decide``'s ``account`` and the
table's grants do.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from accounts.roles import AdminRole, MembershipRole

ROOT = Path(__file__).resolve().parents[2]
POLICY_LAYER = {ROOT / "platform" / "accounts" / "permissions.py", ROOT / "platform" / "accounts" / "roles.py"}
ROLE_ENUMS = {"AdminRole", "MembershipRole"}
ROLE_STRINGS = {value for value in (*AdminRole.values, *MembershipRole.values) if value}
# The grant's role sets: ``role in grant.admin_roles`` reads the table outside the layer.
GRANT_ROLE_FIELDS = {"admin_roles", "department_roles", "owner_roles"}
# The calls whose keyword arguments are look-ups (a filter on a role column decides on the role).
LOOKUP_CALLS = {"filter", "exclude", "get", "get_or_create", "Q"}
# A database constraint defines which values a column may hold; it decides nothing about a person.
CONSTRAINT_CALLS = {"CheckConstraint", "UniqueConstraint"}


def _called_name(call: ast.Call) -> str:
    return call.func.attr if isinstance(call.func, ast.Attribute) else getattr(call.func, "id", "")


def _role_member(node: ast.AST) -> bool:
    """``AdminRole.SECURITY`` and the like (not ``AdminRole.values``: whether a value is a role at all)."""
    return (
        isinstance(node, ast.Attribute)
        and isinstance(node.value, ast.Name)
        and node.value.id in ROLE_ENUMS
        and node.attr.isupper()
    )


def _names_role_member(node: ast.AST) -> bool:
    return any(_role_member(n) for n in ast.walk(node))


def _role_string(node: ast.AST) -> bool:
    return any(isinstance(n, ast.Constant) and n.value in ROLE_STRINGS for n in ast.walk(node))


def _names_a_role(node: ast.AST) -> bool:
    """A person's role (or a variable holding one), or a grant's role set."""
    for n in ast.walk(node):
        if isinstance(n, ast.Attribute) and (
            n.attr == "admin_role"
            or n.attr in GRANT_ROLE_FIELDS
            or (n.attr == "role" and "membership" in ast.unparse(n.value).lower())
        ):
            return True
        if isinstance(n, ast.Name) and (n.id in {"role", "admin_role"} or n.id.endswith("_role")):
            return True
        if (
            isinstance(n, ast.Call)
            and getattr(n.func, "id", "") == "getattr"
            and any(isinstance(a, ast.Constant) and a.value in ("admin_role", "role") for a in n.args)
        ):
            return True
    return False


def _validation(node: ast.AST) -> bool:
    """``AdminRole.values`` / ``MembershipRole.values`` (or ``.choices``, ``.names``): is a value a role at all."""
    return (
        isinstance(node, ast.Attribute)
        and isinstance(node.value, ast.Name)
        and node.value.id in ROLE_ENUMS
        and node.attr in {"values", "choices", "names"}
    )


def _a_role_value(node: ast.AST) -> bool:
    if _validation(node):
        return False
    return _names_role_member(node) or isinstance(node, ast.Constant | ast.Set | ast.Tuple | ast.List | ast.Name)


def _role_lookup(keyword: str) -> bool:
    parts = keyword.split("__")
    return "admin_role" in parts or "role" in parts


def role_decisions(source: str, filename: str = "<source>") -> list[str]:
    """Where ``source`` decides on a role itself: a comparison of a role with a role value, a
    comparison or set operation naming a role enum member, or a query filtering on a role column
    by a role value (a literal, an enum member, a variable; not the answer of a call to the policy
    layer). A role compared with the same membership's earlier one, to notice a change, decides
    nothing and is left alone."""
    tree = ast.parse(source, filename=filename)
    skipped = {
        id(n)
        for call in ast.walk(tree)
        if isinstance(call, ast.Call) and _called_name(call) in CONSTRAINT_CALLS
        for n in ast.walk(call)
    }
    found = []
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.Compare):
            parts = (node.left, *node.comparators)
            # ``role is None``: whether there is one at all, not which one
            person = any(_names_a_role(part) for part in parts) and not all(
                isinstance(op, ast.Is | ast.IsNot) for op in node.ops
            )
            compared = any(
                _a_role_value(part) or (isinstance(op, ast.In | ast.NotIn) and not _validation(part))
                for part, op in zip(parts[1:], node.ops, strict=True)
            )
            if (person and compared) or any(_names_role_member(part) for part in parts):
                found.append(f"{filename}:{node.lineno}: {ast.unparse(node)}")
        elif isinstance(node, ast.BinOp) and _names_role_member(node):
            found.append(f"{filename}:{node.lineno}: {ast.unparse(node)}")
        elif isinstance(node, ast.Call) and _called_name(node) in LOOKUP_CALLS:
            for keyword in node.keywords:
                if keyword.arg and _role_lookup(keyword.arg) and _a_role_value(keyword.value):
                    found.append(f"{filename}:{node.lineno}: {keyword.arg}={ast.unparse(keyword.value)}")
    return found


# The policy layer's answers a console page may pass its object to.
POLICY_CALLS = {"allowed", "decide", "authorize", "authorize_request", "console_decide"}
CONSOLE_PERMISSION_METHOD = re.compile(r"^has_[a-z_]*permission$")
# Who acts: the request's person, or a service's ``acting_user``.
ACTING = {"request.user", "request.user.pk", "request.user.id", "acting_user", "acting_user.pk", "acting_user.id"}


def _console_object_uses(function: ast.FunctionDef) -> list[ast.Name]:
    """The uses of a console permission method's ``obj`` other than handing it to ``super()`` or
    to the policy layer, or asking whether there is one (``obj is None``)."""
    if "obj" not in {arg.arg for arg in function.args.args}:
        return []
    handed = set()
    for node in ast.walk(function):
        if isinstance(node, ast.Call):
            to_super = isinstance(node.func, ast.Attribute) and ast.unparse(node.func.value) == "super()"
            if to_super or _called_name(node) in POLICY_CALLS:
                handed.update(id(a) for a in (*node.args, *(k.value for k in node.keywords)))
        elif isinstance(node, ast.Compare) and all(isinstance(op, ast.Is | ast.IsNot) for op in node.ops):
            if all(isinstance(c, ast.Constant) and c.value is None for c in node.comparators):
                handed.add(id(node.left))
    return [
        n
        for n in ast.walk(function)
        if isinstance(n, ast.Name) and n.id == "obj" and isinstance(n.ctx, ast.Load) and id(n) not in handed
    ]


def _acting_compared(node: ast.AST) -> list[ast.Compare]:
    """Comparisons of the person acting with anything but a constant (``acting_user != "system"``
    is the system actor, not an account)."""
    return [
        c
        for c in ast.walk(node)
        if isinstance(c, ast.Compare)
        and any(ast.unparse(part) in ACTING for part in (c.left, *c.comparators))
        and not any(isinstance(part, ast.Constant) for part in (c.left, *c.comparators))
    ]


def account_decisions(source: str, filename: str = "<source>") -> list[str]:
    """Where ``source`` decides itself whose account an action may be on: a console permission
    method deciding on its object other than through the policy layer, or a condition (or an
    answer returned) comparing the person acting with another account. A comparison recorded as
    a detail decides nothing and is left alone."""
    tree = ast.parse(source, filename=filename)
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef) and CONSOLE_PERMISSION_METHOD.match(node.name):
            found += [f"{filename}:{n.lineno}: {node.name} decides on obj" for n in _console_object_uses(node)]
        tested = (
            node.test
            if isinstance(node, ast.If | ast.IfExp | ast.While | ast.Assert)
            else node.value
            if isinstance(node, ast.Return) and node.value is not None
            else None
        )
        if tested is not None:
            found += [f"{filename}:{c.lineno}: {ast.unparse(c)}" for c in _acting_compared(tested)]
    return sorted(set(found))


def _sources() -> list[Path]:
    paths = [path for top in ("platform", "inference", "compliance") for path in ROOT.joinpath(top).rglob("*.py")]
    return [path for path in paths if "migrations" not in path.parts and path not in POLICY_LAYER]


def test_no_module_but_the_policy_layer_decides_on_a_role():
    found = [hit for path in _sources() for hit in role_decisions(path.read_text(), str(path.relative_to(ROOT)))]
    assert found == []


def test_the_policy_layer_itself_is_found_deciding():
    assert role_decisions((ROOT / "platform" / "accounts" / "permissions.py").read_text())


@pytest.mark.parametrize(
    "source",
    [
        "user.admin_role == AdminRole.SECURITY",
        "roles.get(pk) != AdminRole.SECURITY",
        "grant.admin_roles != frozenset({AdminRole.SECURITY})",
        "role in grant.admin_roles",
        "missing = {AdminRole.SYSTEM, AdminRole.SECURITY, AdminRole.AUDIT} - roles",
        "membership.role == 'admin'",
        "role not in ('member', 'admin')",
        "getattr(user, 'admin_role', '') in roles",
        "User.objects.exclude(admin_role='')",
        "users().filter(is_active=True, admin_role=role)",
        "Membership.objects.filter(role=MembershipRole.ADMIN)",
        "User.objects.filter(memberships__role__in=['admin'])",
        "Q(admin_role='system')",
    ],
)
def test_each_kind_of_role_decision_is_found(source):
    assert role_decisions(source)


@pytest.mark.parametrize(
    "source",
    [
        "role not in MembershipRole.values",  # is it a role at all: the enum's own list
        "User.objects.filter(admin_role__in=administrator_roles())",  # the policy layer's answer
        "administrator_role_holders(users(), AdminRole.SECURITY)",  # asking the policy layer
        "models.CheckConstraint(condition=models.Q(admin_role__in=['', 'system']), name='x')",
        "acting_user != 'system'",  # the system actor, not a role
        "message.role == 'system'",  # a chat message's role
        "role is None",  # is there one at all
        "role != membership.role",  # a change of the same membership's role
        "self._membership_query().filter(role=self.role)",  # the role it had at the handshake
        "membership_add(user=user, department=department, role=MembershipRole.MEMBER)",
    ],
)
def test_what_is_not_a_role_decision_is_left_alone(source):
    assert role_decisions(source) == []


def test_no_module_but_the_policy_layer_decides_whose_account_an_action_is_on():
    found = [hit for path in _sources() for hit in account_decisions(path.read_text(), str(path.relative_to(ROOT)))]
    assert found == []


@pytest.mark.parametrize(
    "source",
    [
        # the console's rules before they moved into the policy layer
        """
def has_change_permission(self, request, obj=None):
    if obj is not None and (is_administrator(obj) or obj.pk == request.user.pk):
        return False
    return super().has_change_permission(request, obj)
""",
        """
def has_change_permission(self, request, obj=None):
    if obj is not None and obj.pk == request.user.pk:
        return False
    return super().has_change_permission(request, obj)
""",
        "def has_delete_permission(self, request, obj=None):\n    return obj is None or obj.is_active",
        "if acting_user == user:\n    refusal = 'own'",
        "action = Action.OWN_ACCOUNT if acting_user == user else Action.TWO_FACTOR_RESET",
        "def mine(obj, request):\n    return obj.owner_id == request.user.pk",
    ],
)
def test_each_kind_of_account_decision_is_found(source):
    assert account_decisions(source)


@pytest.mark.parametrize(
    "source",
    [
        """
def has_change_permission(self, request, obj=None):
    if obj is not None and not allowed(request.user, Action.USER_MANAGE, account=obj):
        return False
    return super().has_change_permission(request, obj)
""",
        "def has_add_permission(self, request):\n    return super().has_add_permission(request) and not rows.exists()",
        "def has_delete_permission(self, request, obj=None):\n    return False",
        "audit_record(details={'by_administrator': acting_user != user})",  # recorded, not decided
        "if acting_user != 'system':\n    authorize(acting_user, action)",  # the system actor
        "if acting_user is None:\n    pass",
    ],
)
def test_what_is_not_an_account_decision_is_left_alone(source):
    assert account_decisions(source) == []
