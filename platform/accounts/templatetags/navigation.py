"""``{% user_menu %}``: the header's menu for the signed-in person (accounts/navigation.py)."""

from __future__ import annotations

from django import template

from accounts.navigation import account_links, api_key_links, console_links, department_links, model_links
from departments.views import landing_url

register = template.Library()


@register.inclusion_tag("navigation/user_menu.html", takes_context=True)
def user_menu(context) -> dict:
    request = context.get("request")
    user = getattr(request, "user", None) if request is not None else None
    if user is None or not user.is_authenticated:
        return {"show": False}
    return {
        "show": True,
        "home_url": landing_url(request),
        "request": request,
        "user": user,
        "account_links": account_links(request),
        "api_key_links": api_key_links(request),
        "model_links": model_links(request),
        "console_links": console_links(request),
        "language_next": context.get("language_next") or request.get_full_path(),
        "csrf_token": context.get("csrf_token"),
        "LANGUAGE_CODE": context.get("LANGUAGE_CODE"),
    }


@register.inclusion_tag("navigation/department_nav.html", takes_context=True)
def department_nav(context, department, current: str = "") -> dict:
    """``{% department_nav department "files" %}``: the department's pages, the current one marked."""
    request = context.get("request")
    return {
        "links": department_links(request, department, context.get("membership")) if request is not None else [],
        "current": current,
    }
