"""Three personas against the department portal: admin and member enter, the outsider gets 404."""

import pytest
from django.urls import reverse

from compliance.events import EventType, Outcome
from compliance.models import AuditEntry

pytestmark = pytest.mark.django_db


def home_url(personas):
    return reverse("chat:home", args=[personas.department_a.slug])


def test_department_admin_sees_home_with_role(client, personas):
    client.force_login(personas.admin)
    response = client.get(home_url(personas), HTTP_ACCEPT_LANGUAGE="en")
    assert response.status_code == 200
    assert "财务部 Finance" in response.content.decode()
    assert response.context["membership"].role == "admin"


def test_member_sees_home_with_role(client, personas):
    client.force_login(personas.member)
    response = client.get(home_url(personas))
    assert response.status_code == 200
    assert response.context["department"] == personas.department_a
    assert response.context["membership"].role == "member"


def test_outsider_gets_404_and_the_denial_is_audited(client, personas):
    client.force_login(personas.outsider)
    before = AuditEntry.objects.count()
    response = client.get(home_url(personas), REMOTE_ADDR="10.1.2.3")
    assert response.status_code == 404
    entry = AuditEntry.objects.order_by("-sequence").first()
    assert AuditEntry.objects.count() == before + 1
    assert entry.event_type == EventType.ACCESS_DENIED
    assert entry.outcome == Outcome.DENIED
    assert entry.actor_name == "charlie"
    assert entry.object_repr == "finance"
    assert entry.source_ip == "10.1.2.3"
    assert entry.request_id == response["X-Request-ID"]


def test_unknown_department_is_indistinguishable_from_a_foreign_one(client, personas):
    client.force_login(personas.outsider)
    foreign = client.get(home_url(personas))
    unknown = client.get(reverse("chat:home", args=["no-such-dept"]))
    assert foreign.status_code == unknown.status_code == 404


def test_inactive_department_answers_404_even_to_members(client, personas):
    personas.department_a.is_active = False
    personas.department_a.save()
    client.force_login(personas.member)
    assert client.get(home_url(personas)).status_code == 404


def test_anonymous_is_sent_to_login(client, personas):
    response = client.get(home_url(personas))
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("login"))


def test_picker_lists_only_own_departments(client, personas):
    client.force_login(personas.outsider)
    response = client.get(reverse("departments:picker"))
    assert response.status_code == 200
    slugs = [m.department.slug for m in response.context["memberships"]]
    assert slugs == ["quality"]


def test_login_page_then_portal(client, personas):
    response = client.get(reverse("login"))
    assert response.status_code == 200
    response = client.post(reverse("login"), {"username": "bob", "password": "Correct-Horse-9"}, follow=True)
    # bob has one department: he lands in it, with no picker to click through.
    assert response.redirect_chain[-1][0] == reverse("chat:home", args=["finance"])
    assert AuditEntry.objects.filter(event_type=EventType.LOGIN, actor_name="bob").exists()


def test_failed_login_is_audited_without_the_password(client, personas):
    response = client.post(reverse("login"), {"username": "bob", "password": "wrong-password-1"})
    assert response.status_code == 200
    entry = AuditEntry.objects.filter(event_type=EventType.LOGIN_FAILED).get()
    assert entry.outcome == Outcome.FAILURE
    assert entry.details == {"username": "bob"}
    assert "wrong-password-1" not in str(entry.details)


def test_language_switch_to_english(client, personas):
    client.force_login(personas.member)
    client.post(reverse("set_language"), {"language": "en", "next": "/d/"})
    response = client.get(reverse("departments:picker"))
    assert "Choose a department" in response.content.decode()
    client.post(reverse("set_language"), {"language": "zh-hans", "next": "/d/"})
    response = client.get(reverse("departments:picker"))
    assert "选择部门" in response.content.decode()
