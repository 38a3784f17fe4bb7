"""Signing in to a served platform with an HTTP client, the way a browser posts the sign-in form."""

from __future__ import annotations

import re

import httpx

CSRF_FIELD = re.compile(r'name="csrfmiddlewaretoken" value="([^"]+)"')


def csrf_token(page: httpx.Response) -> str:
    """The CSRF token of the form on ``page``."""
    return CSRF_FIELD.search(page.text).group(1)


def form_sign_in(
    client: httpx.Client, username: str, password: str, *, page: httpx.Response | None = None
) -> httpx.Response:
    """Post the sign-in form with the token of ``page`` (the sign-in page, fetched when not given)
    and that page as the Referer."""
    page = page or client.get("/accounts/login/")
    return client.post(
        "/accounts/login/",
        data={"csrfmiddlewaretoken": csrf_token(page), "username": username, "password": password},
        headers={"Referer": str(page.url)},
    )


def signed_in_client(base_url: str, username: str, password: str, **client_options) -> httpx.Client:
    """A client of ``base_url`` holding ``username``'s session."""
    client = httpx.Client(base_url=base_url, timeout=30, **client_options)
    response = form_sign_in(client, username, password)
    assert response.status_code == 302, response.text[:1000]
    return client
