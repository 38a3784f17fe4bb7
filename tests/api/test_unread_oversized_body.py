"""A body declaring more than its endpoint accepts is refused (413) without being read (IP-2;
``config.request_body.UnreadOversizedBody``).

Two levels: the project's ASGI application driven directly with a ``receive`` that counts every
read (not one happens), and the platform served for real (``manage.py serve``) with a raw socket
that sends the headers only — the answer comes while the body has not been sent at all. On the
code without the guarantee Django waits for a body that never comes: the socket's deadline runs
out and the test fails."""

from __future__ import annotations

import asyncio
import json
import socket

import pytest
from asgiref.sync import sync_to_async
from django.conf import settings

from tests.api.conftest import LIVE_PREPARE

GIB = 1024**3
DEADLINE_SECONDS = 15


class CountingReceive:
    """An ASGI ``receive`` that delivers 64 KiB a read (``chunks`` of them, or without end), and
    counts how often it is asked."""

    def __init__(self, chunks: int | None = None) -> None:
        self.reads = 0
        self.chunks = chunks

    async def __call__(self) -> dict:
        self.reads += 1
        more = self.chunks is None or self.reads < self.chunks
        return {"type": "http.request", "body": b"x" * 65536, "more_body": more}


async def _drive(path: str, headers: list[tuple[bytes, bytes]], receive) -> tuple[int, dict]:
    from config.asgi import application

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [(b"host", b"testserver"), *headers],
        "client": ("127.0.0.1", 50000),
        "server": ("testserver", 80),
    }
    sent: list[dict] = []

    async def send(message: dict) -> None:
        sent.append(message)

    await asyncio.wait_for(application(scope, receive, send), timeout=DEADLINE_SECONDS)
    start = next(message for message in sent if message["type"] == "http.response.start")
    body = b"".join(message.get("body", b"") for message in sent if message["type"] == "http.response.body")
    return start["status"], json.loads(body or b"{}")


@pytest.fixture
def bearer(make_key) -> bytes:
    return f"Bearer {make_key()[0]}".encode()


@pytest.mark.parametrize(
    ("path", "content_type", "has_code"),
    [
        ("/v1/chat/completions", b"application/json", lambda body: body["error"]["code"] == "request_too_large"),
        ("/api/v1/assets", b"multipart/form-data; boundary=xyz", lambda body: body["code"] == "too_large"),
    ],
    ids=["json_body", "upload"],
)
@pytest.mark.django_db(transaction=True)
async def test_a_body_over_the_limit_is_answered_413_without_a_read(bearer, path, content_type, has_code):
    receive = CountingReceive(chunks=64)  # finite: without the guarantee it would all be read
    headers = [
        (b"authorization", bearer),
        (b"content-type", content_type),
        (b"content-length", str(GIB).encode()),
    ]
    status, body = await _drive(path, headers, receive)
    assert status == 413 and has_code(body), body
    assert receive.reads == 0


@pytest.mark.django_db(transaction=True)
async def test_a_body_within_the_limit_is_read_as_usual(bearer):
    """The control: the same path reads a body that declares what it carries."""
    raw = b'{"model": "none", "messages": []}'
    reads = 0

    async def receive() -> dict:
        nonlocal reads
        reads += 1
        if reads == 1:
            return {"type": "http.request", "body": raw, "more_body": False}
        await asyncio.Event().wait()  # then only a disconnect would come

    headers = [
        (b"authorization", bearer),
        (b"content-type", b"application/json"),
        (b"content-length", str(len(raw)).encode()),
    ]
    status, body = await _drive("/v1/chat/completions", headers, receive)
    assert reads >= 1 and status != 413, body
    assert json.loads(raw) and settings.API_MAX_BODY_MB * 1024 * 1024 > len(raw)


@pytest.mark.django_db(transaction=True)
async def test_a_body_without_a_length_is_read_only_up_to_the_limit(api_engine, bearer, settings):
    """Chunked (no Content-Length): Django would spool any amount before the view; the wrapper
    passes on the endpoint's limit and ends the body there, the rest is never asked for."""
    settings.API_MAX_BODY_MB = 1
    receive = CountingReceive(chunks=64)  # 4 MiB (finite: without the cap it would all be spooled)
    headers = [
        (b"authorization", bearer),
        (b"content-type", b"application/json"),
        (b"transfer-encoding", b"chunked"),
    ]
    status, _ = await _drive("/v1/chat/completions", headers, receive)
    assert 400 <= status < 500
    assert receive.reads == 1024 * 1024 // 65536 + 1  # the limit, and the read that passed it


@pytest.fixture(scope="module")
def live_keys_server(tmp_path_factory):
    from tests.support.live_server import LiveServer

    server = LiveServer(tmp_path_factory.mktemp("unread-body"), env={"API_KEY_RATE_PER_MINUTE": "100000"})
    server.start()
    try:
        server.keys = json.loads(server.shell(LIVE_PREPARE).splitlines()[-1])
        yield server
    finally:
        server.stop()


def _headers_only(server, path: str, content_type: str, length: int) -> bytes:
    """Send a request's headers, none of its body, and return what the server answers first."""
    request = (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\n"
        f"Authorization: Bearer {server.keys['finance']}\r\n"
        f"Content-Type: {content_type}\r\nContent-Length: {length}\r\n\r\n"
    ).encode()
    with socket.create_connection(("127.0.0.1", server.port), timeout=DEADLINE_SECONDS) as connection:
        connection.sendall(request)
        answer = b""
        while b"\r\n\r\n" not in answer:
            piece = connection.recv(65536)  # raises socket.timeout at the deadline
            if not piece:
                break
            answer += piece
    return answer


@pytest.mark.parametrize(
    ("path", "content_type"),
    [("/v1/chat/completions", "application/json"), ("/api/v1/assets", "multipart/form-data; boundary=xyz")],
)
def test_a_live_server_answers_413_to_the_headers_alone(live_keys_server, path, content_type):
    answer = _headers_only(live_keys_server, path, content_type, 10 * GIB)
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]


async def test_the_asgi_wrapper_is_the_http_application():
    """What the ASGI tests drive is what the server runs."""
    from config.asgi import application
    from config.request_body import UnreadOversizedBody

    assert isinstance(await sync_to_async(lambda: application.application_mapping["http"])(), UnreadOversizedBody)


@pytest.mark.django_db
@pytest.mark.parametrize("path", ["/v1/chat/completions", "/api/v1/extractions"])
def test_a_json_body_within_its_limit_is_parsed_whatever_django_s_form_limit(
    api_engine, make_key, client_for, settings, path
):
    """JSON endpoints have their own limit (API_MAX_BODY_MB, e.g. for inline images); Django's
    DATA_UPLOAD_MAX_MEMORY_SIZE, meant for forms, does not refuse them with a 400 first."""
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1000
    raw = json.dumps({"model": "no-such-model", "messages": [], "asset": "x", "padding": "x" * 5000})
    response = client_for(make_key()[0]).post(path, data=raw, content_type="application/json")
    assert response.status_code in (400, 404), response.content[:300]
    body = response.json()
    # Parsed: the answer is about the request's fields, not about its size.
    if path.startswith("/v1"):
        assert body["error"]["code"] == "model_not_found"
    else:
        assert set(body) >= {"template"}


@pytest.mark.django_db
def test_a_json_body_over_its_limit_is_413_in_process_too(make_key, client_for, settings):
    settings.API_MAX_BODY_MB = 1
    raw = json.dumps({"model": "m", "padding": "x" * (1024 * 1024)})
    response = client_for(make_key()[0]).post("/v1/chat/completions", data=raw, content_type="application/json")
    assert response.status_code == 413 and response.json()["error"]["code"] == "request_too_large"
