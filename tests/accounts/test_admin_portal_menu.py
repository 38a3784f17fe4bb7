"""The administrators' console inside the portal: every console page a role may open shows the
portal's header — its name linking home, the user menu with the role's own consoles, the account
pages, the language switch and signing out — in both languages (templates/admin/base_site.html)."""

from __future__ import annotations

import ipaddress
import re

import pytest
from django.contrib import admin
from django.test import Client
from django.urls import reverse

from accounts.roles import AdminRole
from tests.accounts.conftest import sign_in_with_totp

pytestmark = pytest.mark.django_db

NAV_KEY = re.compile(r'data-nav="([\w-]+)"')
# The consoles each role's menu offers (accounts.navigation.console_links, from the policy table).
CONSOLES = {
    AdminRole.SYSTEM: ["console", "usage"],
    AdminRole.SECURITY: ["console", "report"],
    AdminRole.AUDIT: ["console", "audit", "report"],
}
SIGN_OUT = {"zh-hans": "退出登录", "en": "Log out"}


@pytest.fixture
def consoles(make_admin, settings):
    settings.ADMIN_ALLOWED_NETWORKS = [ipaddress.ip_network("127.0.0.0/8")]
    clients = {}
    for role in CONSOLES:
        user, device = make_admin(role)
        client = Client()
        sign_in_with_totp(client, user, device)
        clients[role] = client
    return clients


def _menu(content: str) -> str:
    match = re.search(r'<details class="user-menu" id="user-menu">.*?</details>', content, re.S)
    assert match, "no user menu on the console page"
    return match.group(0)


def _pages(client) -> list[str]:
    """The console's index and the list of every model the role may view."""
    index = client.get(reverse("admin:index"))
    models = [model["admin_url"] for app in index.context["app_list"] for model in app["models"]]
    return [reverse("admin:index"), *models]


@pytest.mark.parametrize("language", ["zh-hans", "en"])
@pytest.mark.parametrize("role", list(CONSOLES))
def test_every_console_page_shows_the_portal_header_and_menu(consoles, role, language):
    client = consoles[role]
    client.cookies["django_language"] = language
    pages = _pages(client)
    assert len(pages) > 1, pages
    for path in pages:
        response = client.get(path)
        assert response.status_code == 200, path
        content = response.content.decode()
        assert 'data-nav="portal"' in content and 'href="/"' in content, path
        keys = NAV_KEY.findall(_menu(content))
        assert keys[:3] == ["profile", "password", "two-factor"], (path, keys)
        assert [key for key in keys if key in {"console", "usage", "audit", "report"}] == CONSOLES[role], path
        assert keys[-2:] == ["language", "sign-out"], path
        assert SIGN_OUT[language] in content, path
        assert 'id="logout-form"' not in content  # Django's own user links are replaced by the menu
        assert "/static/js/menu.js" in content and "/static/css/admin_portal.css" in content


def test_the_language_switch_returns_to_the_console_page(consoles):
    client = consoles[AdminRole.SYSTEM]
    path = reverse("admin:accounts_user_changelist")
    content = client.get(path).content.decode()
    assert f'name="next" value="{path}"' in _menu(content)
    response = client.post(reverse("set_language"), {"language": "en", "next": path})
    assert response.status_code == 302 and response["Location"] == path
    assert '<html lang="en"' in client.get(path).content.decode()


def test_every_registered_model_page_renders_with_the_menu_for_its_roles(consoles):
    """Each model's list, for the roles that may view it (the others get the styled 403)."""
    shown = set()
    for model in admin.site._registry:
        url = reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_changelist")
        for client in consoles.values():
            response = client.get(url)
            if response.status_code == 200:
                shown.add(url)
                assert 'id="user-menu"' in response.content.decode(), url
    assert len(shown) == len(admin.site._registry)
