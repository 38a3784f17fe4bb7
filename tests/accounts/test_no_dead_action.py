"""Every action of the policy table is taken somewhere: a route, REST view, websocket or service
names it (``Action.X``), a console operation maps to it, or it is public (STATIC: served before
any route). An action that nothing binds is a grant nobody can check against the code.
"""

from __future__ import annotations

import ast
from pathlib import Path

from accounts.permissions import CONSOLE, POLICY, Action

ROOT = Path(__file__).resolve().parents[2]
PERMISSIONS = ROOT / "platform" / "accounts" / "permissions.py"
# The table itself, and the compliance report's reading of it, take no action.
NOT_A_BINDING = {"Action", "POLICY", "CONSOLE"}


def _named_actions(tree: ast.AST, skip: set[int]) -> set[str]:
    return {
        node.attr
        for node in ast.walk(tree)
        if id(node) not in skip
        and isinstance(node, ast.Attribute)
        and isinstance(node.value, ast.Name)
        and node.value.id == "Action"
    }


def _actions_named_in(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    skip: set[int] = set()
    if path == PERMISSIONS:  # the functions of the policy layer may take an action; the table does not
        for statement in tree.body:
            targets = getattr(statement, "targets", None) or [getattr(statement, "target", None)]
            named = {getattr(t, "id", None) for t in targets} | {getattr(statement, "name", None)}
            if named & NOT_A_BINDING:
                skip.update(id(n) for n in ast.walk(statement))
    return _named_actions(tree, skip)


def actions_named_in_code() -> set[str]:
    return {
        name
        for top in ("platform", "inference", "compliance")
        for path in ROOT.joinpath(top).rglob("*.py")
        if "migrations" not in path.parts and "report_checks" not in path.parts
        for name in _actions_named_in(path)
    }


def unbound_actions(table, console, named: set[str]) -> list[str]:
    consoled = {action for operations in console.values() for action in operations.values()}
    return sorted(
        action.name
        for action, grant in table.items()
        if not grant.public and action not in consoled and action.name not in named
    )


def test_every_action_of_the_table_is_taken_somewhere():
    assert unbound_actions(POLICY, CONSOLE, actions_named_in_code()) == []


def test_an_action_nothing_takes_is_found():
    named = actions_named_in_code() - {Action.USAGE_VIEW_ALL.name}
    assert unbound_actions(POLICY, CONSOLE, named) == [Action.USAGE_VIEW_ALL.name]
    # ... and the table's own listing of an action is not a use of it; a function of the policy
    # layer that takes one is (department_access_holder_authorize: DEPARTMENT_ACCESS_HOLD)
    in_the_policy_layer = _actions_named_in(PERMISSIONS)
    assert Action.ASSET_METADATA_VIEW.name not in in_the_policy_layer  # in POLICY and CONSOLE only
    assert Action.DEPARTMENT_ACCESS_HOLD.name in in_the_policy_layer
