"""Only a person's actions keep a session alive (IA-2): page views, form posts and the "keep me
signed in" answer count; the status panel's poll, the idle warning's own look at the session and
any other JSON poll do not. The real middleware, views and session store on the test database."""

from __future__ import annotations

import time

import pytest
from django.contrib.sessions.models import Session
from django.http import HttpResponse, JsonResponse
from django.test import Client, RequestFactory
from django.urls import reverse

from accounts.activity import (
    background,
    idle_warning_seconds,
    last_seen_write_interval,
    request_is_activity,
    request_note_view,
)
from accounts.sessions import SESSION_LAST_SEEN_KEY
from compliance.events import EventType
from compliance.models import AuditEntry
from tests.accounts.conftest import TEST_PASSWORD

pytestmark = pytest.mark.django_db

MINIMUM_IDLE = 60  # the shortest idle limit production allows


@pytest.fixture
def short_idle(settings):
    settings.SESSION_IDLE_SECONDS = MINIMUM_IDLE
    return MINIMUM_IDLE


def sign_in(username: str = "bob") -> Client:
    client = Client()
    assert client.post(reverse("login"), {"username": username, "password": TEST_PASSWORD}).status_code == 302
    return client


def seen_ago(client: Client) -> float:
    stored = Session.objects.get(session_key=client.session.session_key).get_decoded()
    return time.time() - stored[SESSION_LAST_SEEN_KEY]


def age(client: Client, seconds: float) -> None:
    session = client.session
    session[SESSION_LAST_SEEN_KEY] = time.time() - seconds
    session.save()


def status_url() -> str:
    return reverse("chat:status", kwargs={"department_slug": "finance"})


def test_the_idle_warning_and_the_write_interval_follow_the_idle_limit():
    # Activity is recorded at least every quarter of the limit, at most a minute apart; the warning
    # comes half the limit before the end, at most a minute before.
    assert last_seen_write_interval(60) == 15 and idle_warning_seconds(60) == 30
    assert last_seen_write_interval(1800) == 60 and idle_warning_seconds(1800) == 60


def test_background_polls_do_not_move_the_idle_clock_and_a_page_view_does(personas, short_idle):
    client = sign_in()
    age(client, 40)
    assert client.get(status_url()).status_code == 200
    state = client.get(reverse("session-state"), HTTP_ACCEPT="application/json").json()
    assert state["signed_in"] and state["idle_seconds"] == MINIMUM_IDLE
    assert 15 < state["idle_remaining_seconds"] <= 20 and state["warn_seconds"] == 30
    assert seen_ago(client) >= 40  # neither poll counted
    assert client.get(reverse("chat:home", kwargs={"department_slug": "finance"})).status_code == 200
    assert seen_ago(client) < 5  # the page view did


def test_a_polled_tab_still_ends_when_idle(personas, short_idle):
    client = sign_in()
    age(client, MINIMUM_IDLE - 10)
    for _ in range(3):  # an open tab polling: the session stays as idle as it was
        assert client.get(status_url()).status_code == 200
    assert seen_ago(client) >= MINIMUM_IDLE - 10
    age(client, MINIMUM_IDLE + 1)
    response = client.get(status_url())
    assert response.status_code == 302 and response["Location"].startswith(reverse("login"))
    assert AuditEntry.objects.get(event_type=EventType.SESSION_EXPIRED).details == {"reason": "idle"}
    # The warning's own look at the session says it is over, without a redirect or a refusal.
    assert client.get(reverse("session-state")).json() == {"signed_in": False}


def test_activity_is_recorded_every_quarter_of_the_shortest_idle_limit(personas, short_idle):
    client = sign_in()
    page = reverse("departments:picker")
    age(client, 10)  # recorded less than a quarter of the limit ago: no write needed
    client.get(page)
    assert seen_ago(client) >= 10
    age(client, 16)  # more than a quarter ago: an active person's session moves on
    client.get(page)
    assert seen_ago(client) < 5


def test_a_form_post_counts_as_activity(personas, short_idle):
    client = sign_in()
    age(client, 20)
    client.post(reverse("set_language"), {"language": "en", "next": "/"})
    assert seen_ago(client) < 5


def test_keep_me_signed_in_extends_the_session_at_once(personas, short_idle):
    client = sign_in()
    age(client, 5)  # even inside the write interval: the explicit answer is always recorded
    state = client.post(reverse("session-keep-alive"), HTTP_ACCEPT="application/json").json()
    assert state["signed_in"] and state["idle_remaining_seconds"] > MINIMUM_IDLE - 5
    assert seen_ago(client) < 5


def test_keep_me_signed_in_needs_the_csrf_token(personas):
    signed_in = sign_in()
    csrf_checked = Client(enforce_csrf_checks=True)
    csrf_checked.cookies = signed_in.cookies
    assert csrf_checked.post(reverse("session-keep-alive")).status_code == 403


@pytest.mark.parametrize(
    ("method", "response", "marked", "counts"),
    [
        ("GET", HttpResponse("<html>", content_type="text/html; charset=utf-8"), False, True),  # a page view
        ("GET", JsonResponse({"any": "poll"}), False, False),  # a JSON poll nobody marked
        ("GET", HttpResponse(b"png", content_type="image/png"), False, False),  # a thumbnail
        ("HEAD", HttpResponse("", content_type="text/html"), False, False),
        ("POST", JsonResponse({"stored": 1}), False, True),  # an upload, a form post
        ("GET", HttpResponse("<html>", content_type="text/html"), True, False),  # a marked view
    ],
)
def test_what_counts_as_activity(method, response, marked, counts):
    request = RequestFactory().generic(method, "/x/")
    request_note_view(request, background(lambda request: None) if marked else (lambda request: None))
    assert request_is_activity(request, response) is counts
