"""The links of the header's user menu and of the administrators' landing page.

Every link is shown only where the policy layer allows its action (``allowed``), asked with the
request's address as a request would be, so a link never leads to a refusal and no role is
compared here.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.http import HttpRequest
from django.urls import reverse
from django.utils.translation import gettext_lazy as _

from accounts.models import AccountSource
from accounts.permissions import Action, allowed


@dataclass(frozen=True)
class Link:
    key: str  # stable: tests and styles find a link by it, whatever the language
    label: str
    url: str
    description: str = ""


def _user(request: HttpRequest):
    user = getattr(request, "user", None)
    return user if user is not None and user.is_authenticated else None


def _allowed(request: HttpRequest, action: Action, **kwargs) -> bool:
    return allowed(_user(request), action, source_ip=getattr(request, "source_ip", None), check_network=True, **kwargs)


def console_links(request: HttpRequest) -> list[Link]:
    """The administrators' consoles the request's user may open from where they are."""
    if _user(request) is None:
        return []
    candidates = [
        (
            Action.CONSOLE_ENTER,
            Link(
                "console",
                _("Administration console"),
                reverse("admin:index"),
                _("Accounts, departments, memberships, policies and keys, as your role allows."),
            ),
        ),
        (
            Action.AUDIT_VIEW,
            Link(
                "audit",
                _("Audit console"),
                reverse("compliance:entry_list"),
                _("Review, filter and export the audit trail."),
            ),
        ),
        (
            Action.COMPLIANCE_REPORT_VIEW,
            Link(
                "report",
                _("Compliance report"),
                reverse("compliance-report"),
                _("The self-check against the protection requirements, with its evidence."),
            ),
        ),
        (
            Action.USAGE_VIEW_ALL,
            Link(
                "usage",
                _("Usage"),
                reverse("usage:page"),
                _("Requests and tokens per department and person, by day (counts only)."),
            ),
        ),
    ]
    return [link for action, link in candidates if _allowed(request, action)]


def account_links(request: HttpRequest) -> list[Link]:
    """The signed-in person's own pages: profile, password (local accounts), two-factor."""
    user = _user(request)
    if user is None or not _allowed(request, Action.OWN_ACCOUNT):
        return []
    links = [Link("profile", _("Profile"), reverse("profile"))]
    if user.source == AccountSource.LOCAL:
        # Directory accounts change their password in the directory: the page would only say so.
        links.append(Link("password", _("Change password"), reverse("password-change")))
    links.append(Link("two-factor", _("Two-factor authentication"), reverse("two-factor")))
    return links


def _membership_links(request: HttpRequest, *, action: Action, key_prefix: str, url_name: str) -> list[Link]:
    """A link to ``url_name`` for each department of the user's memberships where ``action`` is allowed."""
    from departments.selectors import membership_list_for_user

    user = _user(request)
    if user is None:
        return []
    return [
        Link(
            f"{key_prefix}-{membership.department.slug}",
            membership.department.name,
            reverse(url_name, args=[membership.department.slug]),
        )
        for membership in membership_list_for_user(user=user)
        if _allowed(request, action, department=membership.department, membership=membership)
    ]


def model_links(request: HttpRequest) -> list[Link]:
    """The model-choice pages of the departments whose approved models the user may enable."""
    return _membership_links(
        request, action=Action.DEPARTMENT_MODEL_MANAGE, key_prefix="models", url_name="department_models:page"
    )


def api_key_links(request: HttpRequest) -> list[Link]:
    """The API-key pages of the departments whose keys the user may manage."""
    return _membership_links(
        request, action=Action.DEPARTMENT_API_KEY_MANAGE, key_prefix="api-keys", url_name="departments:api_keys"
    )


def department_links(request: HttpRequest, department, membership=None) -> list[Link]:
    """The department's pages (the bar under its name) that the request's user may open.

    Each entry names its action; a page is listed only where ``allowed`` says so. A feature adds
    its page here, one entry, with the action its view asks.
    """
    if _user(request) is None:
        return []
    slug = department.slug
    candidates = [
        (Action.CHAT, Link("chat", _("Chat"), reverse("chat:home", args=[slug]))),
        (Action.ASSET_VIEW, Link("files", _("Files"), reverse("assets:list", args=[slug]))),
        (Action.DOCUMENT_SEARCH, Link("search", _("Search documents"), reverse("assets:search", args=[slug]))),
        (
            Action.CONVERSATION_VIEW_ANY,
            Link("conversations", _("Department conversations"), reverse("chat:admin_conversations", args=[slug])),
        ),
        (Action.TASK_TEMPLATE_MANAGE, Link("templates", _("Task templates"), reverse("chat:templates", args=[slug]))),
        (Action.USAGE_VIEW, Link("usage", _("Usage"), reverse("department_usage:page", args=[slug]))),
        (Action.EXTRACTION_RUN, Link("extract", _("Extraction"), reverse("extraction:home", args=[slug]))),
    ]
    return [
        link for action, link in candidates if _allowed(request, action, department=department, membership=membership)
    ]
