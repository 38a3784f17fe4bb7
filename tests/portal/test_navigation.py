"""Where each role lands after signing in, and what the header's user menu offers it.

Every link the menu shows is one the policy layer allows (accounts/navigation.py asks
``allowed``); these tests check, role by role, that the menu shows exactly the pages the person
may open, that each of them opens, and that the landing page is the person's work.
"""

from __future__ import annotations

import re

import pytest
from django.urls import reverse

from tests.accounts.conftest import sign_in_with_totp

pytestmark = pytest.mark.django_db

MENU = re.compile(r'<details class="user-menu".*?</details>', re.S)
NAV_KEY = re.compile(r'data-nav="([^"]+)"')
ACCOUNT = ["profile", "password", "two-factor"]
LANGUAGE_AND_SIGN_OUT = ["language", "sign-out"]


def menu_keys(response) -> list[str]:
    assert "{#" not in response.content.decode() and "{%" not in response.content.decode()  # template text leaked
    match = MENU.search(response.content.decode())
    assert match, "no user menu on the page"
    return NAV_KEY.findall(match.group(0))


def sign_in(client, username: str):
    return client.post(reverse("login"), {"username": username, "password": "Correct-Horse-9"})


def test_member_of_one_department_goes_straight_into_it(client, personas):
    response = sign_in(client, "bob")
    assert response["Location"] == reverse("chat:home", args=["finance"])


def test_sign_in_started_from_the_entry_lands_in_the_one_department(client, personas):
    response = client.get("/", follow=True)
    assert response.redirect_chain[-1][0].startswith(reverse("login"))
    response = client.post(
        reverse("login"), {"username": "charlie", "password": "Correct-Horse-9", "next": reverse("departments:picker")}
    )
    assert response["Location"] == reverse("chat:home", args=["quality"])


def test_an_asked_for_page_wins_over_the_landing(client, personas):
    files = reverse("assets:list", args=["finance"])
    response = client.post(reverse("login"), {"username": "bob", "password": "Correct-Horse-9", "next": files})
    assert response["Location"] == files


def test_member_of_two_departments_chooses(client, personas):
    from departments.services import membership_add

    membership_add(user=personas.member, department=personas.department_b, acting_user="system")
    response = sign_in(client, "bob")
    assert response["Location"] == reverse("departments:picker")
    page = client.get(response["Location"])
    assert [m.department.slug for m in page.context["memberships"]] == ["finance", "quality"]


@pytest.mark.parametrize(
    ("role", "consoles"),
    [("system", ["console", "usage"]), ("security", ["console", "report"]), ("audit", ["console", "audit", "report"])],
)
def test_administrator_lands_on_the_consoles_and_each_link_opens(client, make_admin, role, consoles):
    user, device = make_admin(role)
    response = sign_in_with_totp(client, user, device)
    assert response["Location"] == reverse("departments:picker")
    page = client.get(response["Location"])
    content = page.content.decode()
    assert page.status_code == 200
    assert "You are not a member of any department" not in content
    landing = re.search(r'<ul class="console-cards".*?</ul>', content, re.S).group(0)
    assert NAV_KEY.findall(landing) == consoles
    assert menu_keys(page) == ACCOUNT + consoles + LANGUAGE_AND_SIGN_OUT
    for url in re.findall(r'href="([^"]+)"', landing):
        assert client.get(url).status_code == 200, url


def test_administrator_outside_the_admin_networks_sees_no_console_link(client, make_admin):
    user, device = make_admin("audit")
    sign_in_with_totp(client, user, device, REMOTE_ADDR="10.9.8.7")
    page = client.get(reverse("departments:picker"), REMOTE_ADDR="10.9.8.7")
    assert page.status_code == 200
    assert 'class="console-cards"' not in page.content.decode()
    assert menu_keys(page) == ACCOUNT + LANGUAGE_AND_SIGN_OUT


def test_department_administrator_menu_offers_the_api_keys_and_no_console(client, personas):
    client.force_login(personas.admin)
    page = client.get(reverse("chat:home", args=["finance"]))
    assert menu_keys(page) == [*ACCOUNT, "api-keys-finance", "models-finance", *LANGUAGE_AND_SIGN_OUT]
    assert client.get(reverse("departments:api_keys", args=["finance"])).status_code == 200


@pytest.mark.parametrize("persona", ["member", "outsider"])
def test_member_menu_has_no_api_keys_and_no_console(client, personas, persona):
    client.force_login(getattr(personas, persona))
    page = client.get(reverse("departments:picker"))
    assert menu_keys(page) == ACCOUNT + LANGUAGE_AND_SIGN_OUT
    for url in re.findall(r'href="([^"]+)"', MENU.search(page.content.decode()).group(0)):
        assert client.get(url).status_code == 200, url


def test_directory_account_is_not_offered_a_password_change(rf, personas):
    from accounts.navigation import account_links

    personas.member.source = "directory"  # its password is changed in the directory
    request = rf.get("/")
    request.user, request.source_ip = personas.member, "127.0.0.1"
    assert [link.key for link in account_links(request)] == ["profile", "two-factor"]


def test_profile_shows_the_account_and_its_departments(client, personas):
    client.force_login(personas.admin)
    client.cookies["django_language"] = "en"
    content = client.get(reverse("profile")).content.decode()
    assert "alice" in content and "财务部 Finance" in content and "Department administrator" in content


def test_signed_out_visitor_gets_no_menu_but_the_language_switch(client, personas):
    page = client.get(reverse("login"))
    assert not MENU.search(page.content.decode())
    assert 'data-nav="language"' in page.content.decode()


def test_language_switch_on_the_login_page_keeps_next(client, personas):
    target = reverse("assets:list", args=["finance"])
    page = client.get(reverse("login"), {"next": target})
    language_next = re.search(r'name="next" value="([^"]+)"', page.content.decode()).group(1)
    response = client.post(reverse("set_language"), {"language": "en", "next": language_next.replace("&amp;", "&")})
    assert response.status_code == 302
    follow = client.get(response["Location"])
    assert follow.context["next"] == target
    # After a failed attempt the page's own address has no ?next= any more: the switch keeps it.
    failed = client.post(reverse("login"), {"username": "bob", "password": "wrong", "next": target})
    form_next = re.search(r'data-nav="language">.*?name="next" value="([^"]+)"', failed.content.decode(), re.S)
    assert form_next.group(1).replace("&amp;", "&") == f"{reverse('login')}?next={target.replace('/', '%2F')}"


def home_link(response) -> str:
    return re.search(r'<a href="([^"]+)" data-nav="home">', response.content.decode()).group(1)


def test_home_is_where_the_person_landed(client, personas, make_admin):
    from departments.services import membership_add

    client.force_login(personas.member)
    assert home_link(client.get(reverse("profile"))) == reverse("chat:home", args=["finance"])
    assert client.get(reverse("login"))["Location"] == reverse("chat:home", args=["finance"])  # signed in already
    membership_add(user=personas.member, department=personas.department_b, acting_user="system")
    assert home_link(client.get(reverse("profile"))) == reverse("departments:picker")
    user, device = make_admin("security")
    client.logout()
    sign_in_with_totp(client, user, device)
    assert home_link(client.get(reverse("profile"))) == reverse("departments:picker")


def test_the_one_time_key_page_is_never_cached(client, personas):
    client.force_login(personas.admin)
    response = client.post(
        reverse("departments:api_keys", args=["finance"]), {"name": "ERP", "scopes": ["chat"], "days": "30"}
    )
    assert response.status_code == 200 and response.context["created"].raw_key in response.content.decode()
    assert "no-store" in response["Cache-Control"]
    assert 'data-copy-target="new-key-value"' in response.content.decode()
