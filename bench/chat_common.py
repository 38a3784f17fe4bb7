"""Shared set-up of the chat benchmarks: the platform served by uvicorn (one process) on loopback
with a bench-sized demo model, users signed in through the real login view, and a websocket
client speaking protocol v1."""

from __future__ import annotations

import asyncio
import contextlib
import http.cookiejar
import json
import re
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from inference_common import REPO, bench_model_dir

sys.path[:0] = [str(REPO / "scripts")]

from tests.support.live_server import LiveServer  # noqa: E402


@contextlib.contextmanager
def chat_server(model: str | None, *, db: str, env: dict[str, str]):
    """A LiveServer (own database, uvicorn subprocess) with the model loaded and ready."""
    import os

    from throwaway_services import postgres_server

    with contextlib.ExitStack() as stack:
        if db == "postgres":
            os.environ["DATABASE_URL"] = stack.enter_context(postgres_server())
        else:
            os.environ.pop("DATABASE_URL", None)
        directory = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="chat-bench-")))
        server = LiveServer(
            directory,
            model_path=bench_model_dir(model),
            env={"MODEL_READINESS_CHECK": "true", "LOG_LEVEL": "WARNING", **env},
        )
        stack.enter_context(server)
        server.wait_for("/readyz", timeout=300)  # the model loads in the background
        yield server


def create_users(server: LiveServer, count: int) -> list[str]:
    code = f"""
from accounts.models import User
from departments.services import department_create, membership_add
finance = department_create(slug="finance", name="Finance", acting_user="system")
for i in range({count}):
    user = User(username=f"user{{i}}")
    user.set_password("Correct-Horse-9")
    user.save()
    membership_add(user=user, department=finance, acting_user="system")
print("ok")
"""
    assert server.shell(code) == "ok"
    return [f"user{i}" for i in range(count)]


def sign_in(base_url: str, username: str) -> str:
    """The session cookie header of a real login (CSRF token from the form, as a browser does)."""
    jar = http.cookiejar.CookieJar()
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
    page = opener.open(f"{base_url}/accounts/login/", timeout=30).read().decode()
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page).group(1)
    data = urllib.parse.urlencode(
        {"csrfmiddlewaretoken": token, "username": username, "password": "Correct-Horse-9"}
    ).encode()
    request = urllib.request.Request(f"{base_url}/accounts/login/", data=data, headers={"Referer": base_url})  # noqa: S310
    opener.open(request, timeout=30).read()
    cookies = {cookie.name: cookie.value for cookie in jar}
    if "sessionid" not in cookies:
        raise RuntimeError(f"login of {username} failed")
    return "; ".join(f"{name}={value}" for name, value in cookies.items())


@dataclass
class TurnResult:
    prompt: str
    sent_at: float
    first_token_at: float | None = None
    done_at: float | None = None
    tokens: list[str] = field(default_factory=list)
    done: dict | None = None
    error: dict | None = None
    conversation: int | None = None

    @property
    def ttft(self) -> float:
        return self.first_token_at - self.sent_at

    @property
    def total(self) -> float:
        return self.done_at - self.sent_at


async def open_socket(server: LiveServer, cookie: str):
    import websockets

    socket = await websockets.connect(
        f"{server.ws_url}/ws/d/finance/chat/",
        additional_headers={"Cookie": cookie},
        origin=server.base_url,
        max_size=2**20,
    )
    hello = json.loads(await socket.recv())
    assert hello["type"] == "hello", hello
    return socket


async def run_turn(socket, prompt: str, *, max_new_tokens: int, conversation: int | None = None) -> TurnResult:
    frame = {"v": 1, "type": "turn.start", "text": prompt, "conversation": conversation}
    frame["params"] = {"temperature": 0, "max_new_tokens": max_new_tokens}
    result = TurnResult(prompt=prompt, sent_at=time.perf_counter())
    await socket.send(json.dumps(frame))
    while True:
        message = json.loads(await asyncio.wait_for(socket.recv(), 600))
        now = time.perf_counter()
        kind = message["type"]
        if kind == "turn.accepted":
            result.conversation = message["conversation"]
        elif kind == "token":
            if result.first_token_at is None:
                result.first_token_at = now
            result.tokens.append(message["text"])
        elif kind == "done":
            result.done_at, result.done = now, message
            return result
        elif kind == "error":
            result.done_at, result.error = now, message
            return result


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


async def measure_turns(server: LiveServer, cookie: str, turns: int, tokens: int) -> list[TurnResult]:
    """``turns`` end-to-end turns of ``tokens`` tokens over one socket, after a warm-up: a fresh
    conversation every other turn, so both paths run (create, continue with history)."""
    socket = await open_socket(server, cookie)
    results = []
    try:
        await run_turn(socket, "warm-up", max_new_tokens=4)
        conversation = None
        for n in range(turns):
            result = await run_turn(socket, f"Describe item {n}.", max_new_tokens=tokens, conversation=conversation)
            assert result.done is not None, result.error
            conversation = None if n % 2 else result.conversation
            results.append(result)
    finally:
        await socket.close()
    return results
