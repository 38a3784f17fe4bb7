"""A server that never stalls: it answers while the model loads, and a SIGTERM drains it.

Both against the platform served for real (``manage.py serve``, tests/support/live_server.py).
"""

from __future__ import annotations

import asyncio
import json
import signal
import time
import urllib.error
import urllib.request

import httpx
import pytest
import websockets

from config.management.commands.serve import STORE_SECONDS
from inference.engine.core import SHUTTING_DOWN
from inference.engine.errors import MODEL_LOADING
from inference.runtime import LOAD_STAGE_WEIGHTS, TEST_LOAD_DELAY_VARIABLE
from inference.shutdown import RELAY_SECONDS, SEAL_SECONDS, STREAM_ENDED
from inference.shutdown import SHUTTING_DOWN as SHUTTING_DOWN_MESSAGE
from tests.support.form_sign_in import signed_in_client
from tests.support.waiting import wait_until, wait_until_async

PASSWORD = "Never-Stalls-Passw0rd!"
PREPARE = (
    "from django.contrib.auth import get_user_model; from django.utils import timezone; "
    "from departments.services import department_create, membership_add; "
    "d = department_create(slug='finance', name='Finance', acting_user='system'); "
    f"u = get_user_model().objects.create_user('stall-user', password={PASSWORD!r}); "
    "u.password_changed_at = timezone.now(); u.save(); "
    "membership_add(user=u, department=d, acting_user='system')"
)


def timed_get(url: str, *, headers: dict[str, str] | None = None) -> tuple[float, int, bytes]:
    request = urllib.request.Request(url, headers=headers or {})  # noqa: S310 - loopback
    started = time.perf_counter()
    try:
        with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310 - loopback
            body, status = response.read(), response.status
    except urllib.error.HTTPError as error:
        body, status = error.read(), error.code
    return time.perf_counter() - started, status, body


def _stopping(base_url: str) -> bool:
    _seconds, status, body = timed_get(f"{base_url}/readyz")
    return status == 503 and json.loads(body)["checks"]["model"]["detail"] == SHUTTING_DOWN_MESSAGE


def login(base_url: str) -> httpx.Client:
    return signed_in_client(base_url, "stall-user", PASSWORD)


@pytest.mark.slow
def test_the_server_answers_while_the_model_loads(live_server_factory, demo_model_factory):
    from inference.engine.demo_model import DemoModelSpec

    # The bench-size demo model (a real load of 21 M parameters) behind the test profile's delay,
    # so that the load lasts long enough to be polled: before the fix /readyz, and every turn,
    # waited for the lock held through the whole load.
    model = demo_model_factory(DemoModelSpec(size="bench"))
    server = live_server_factory(
        model_path=model,
        env={"MODEL_READINESS_CHECK": "true", TEST_LOAD_DELAY_VARIABLE: "4"},
        prepare=lambda s: s.shell(PREPARE),
    )
    client = login(server.base_url)
    cookie = "; ".join(f"{name}={value}" for name, value in client.cookies.items())
    base = server.base_url

    latencies: dict[str, list[float]] = {
        "/healthz": [],
        "/readyz": [],
        "/d/finance/": [],
        "/d/finance/chat/status/": [],
    }
    progress: list[dict] = []
    statuses: list[bool] = []
    deadline = time.monotonic() + 120
    ready_body = None
    while time.monotonic() < deadline:  # a poll until the model is ready, not a fixed wait
        seconds, status, body = timed_get(f"{base}/readyz")
        latencies["/readyz"].append(seconds)
        if status == 200:
            ready_body = json.loads(body)
            break
        assert status == 503, body[:500]
        answer = json.loads(body)
        model_check = answer["checks"]["model"]
        assert model_check["detail"] == MODEL_LOADING and answer["status"] == "loading", answer
        progress.append(model_check["progress"])
        seconds, status, body = timed_get(f"{base}/healthz")
        assert (status, json.loads(body)) == (200, {"status": "ok"})
        latencies["/healthz"].append(seconds)
        seconds, status, body = timed_get(f"{base}/d/finance/", headers={"Cookie": cookie})
        assert status == 200, body[:500]
        latencies["/d/finance/"].append(seconds)
        seconds, status, body = timed_get(f"{base}/d/finance/chat/status/", headers={"Cookie": cookie})
        assert status == 200, body[:500]
        statuses.append(json.loads(body)["ready"])  # False: the page shows "model loading"
        latencies["/d/finance/chat/status/"].append(seconds)
    assert ready_body is not None and ready_body["checks"]["model"]["ok"], "the model did not load within 120 s"
    # The load was polled throughout (the delay alone is 4 s) and said where it was.
    assert len(progress) >= 5, progress
    # The chat page's status said "not ready" throughout (the model may be ready by the last look).
    assert statuses.count(False) >= len(statuses) - 1 and not statuses[0], statuses
    assert any(p["stage"] == LOAD_STAGE_WEIGHTS for p in progress), progress
    elapsed = [p["elapsed_seconds"] for p in progress]
    assert elapsed == sorted(elapsed) and elapsed[-1] >= 3, elapsed
    healthz = sorted(latencies["/healthz"])
    # Within 100 ms (the median and the 90th percentile; a single answer on a shared 2-core test
    # machine may wait for the CPU, so the worst is bounded at 0.5 s rather than 0.1 s).
    assert healthz[len(healthz) // 2] < 0.1 and healthz[int(len(healthz) * 0.9)] < 0.1, healthz
    for path, values in latencies.items():
        assert max(values) < 0.5, (path, sorted(values))


async def _turn(url: str, cookie: str, origin: str, *, ref: str, max_new_tokens: int, started: asyncio.Event, frames):
    async with websockets.connect(url, additional_headers={"Cookie": cookie, "Origin": origin}, open_timeout=30) as ws:
        assert json.loads(await asyncio.wait_for(ws.recv(), 30))["type"] == "hello"
        await ws.send(
            json.dumps(
                {
                    "v": 1,
                    "type": "turn.start",
                    "ref": ref,
                    "conversation": None,
                    "text": f"tell me everything ({ref})",
                    "params": {"max_new_tokens": max_new_tokens, "temperature": 0},
                }
            )
        )
        try:
            while True:
                frame = json.loads(await asyncio.wait_for(ws.recv(), 120))
                frames.append(frame)
                if frame["type"] == "token":
                    started.set()
                if frame["type"] in ("done", "error"):
                    break
        except websockets.ConnectionClosed as closed:
            frames.append({"type": "closed", "code": closed.rcvd.code if closed.rcvd else None})


@pytest.mark.slow
@pytest.mark.parametrize("runserver", [False, True], ids=["serve", "runserver"])
def test_sigterm_drains_streams_refuses_new_turns_stores_everything_and_exits(
    live_server_factory, endless_demo_model_dir, runserver
):
    """``manage.py serve`` (production: uvicorn) and ``manage.py runserver`` (make run: daphne)."""
    grace = 3
    server = live_server_factory(
        runserver=runserver,
        model_path=endless_demo_model_dir,
        env={"MODEL_READINESS_CHECK": "true", "SHUTDOWN_GRACE_SECONDS": str(grace), "MAX_NEW_TOKENS_CAP": "4000"},
        prepare=lambda s: s.shell(PREPARE),
    )
    server.wait_for("/readyz")
    client = login(server.base_url)
    cookie = "; ".join(f"{name}={value}" for name, value in client.cookies.items())
    url, origin = f"{server.ws_url}/ws/d/finance/chat/", server.base_url

    async def scenario() -> tuple[list, list, list, float]:
        endless, short, late = [], [], []
        endless_started, short_started = asyncio.Event(), asyncio.Event()
        long_task = asyncio.ensure_future(
            _turn(url, cookie, origin, ref="endless", max_new_tokens=4000, started=endless_started, frames=endless)
        )
        await asyncio.wait_for(endless_started.wait(), 120)  # tokens are streaming
        # A socket opened before the signal, whose turn comes after it.
        ws = await websockets.connect(url, additional_headers={"Cookie": cookie, "Origin": origin}, open_timeout=30)
        assert json.loads(await asyncio.wait_for(ws.recv(), 30))["type"] == "hello"
        short_task = asyncio.ensure_future(
            _turn(url, cookie, origin, ref="short", max_new_tokens=4, started=short_started, frames=short)
        )
        await asyncio.wait_for(short_started.wait(), 120)
        signalled = time.monotonic()
        server._process.send_signal(signal.SIGTERM)
        # The server notices the signal within its next tick; /readyz says so from then on.
        await wait_until_async(lambda: asyncio.to_thread(_stopping, server.base_url), timeout=10, interval=0.02)
        await ws.send(
            json.dumps(
                {
                    "v": 1,
                    "type": "turn.start",
                    "ref": "late",
                    "conversation": None,
                    "text": "too late",
                    "params": {"max_new_tokens": 4},
                }
            )
        )
        try:
            late.append(json.loads(await asyncio.wait_for(ws.recv(), 30)))
        except websockets.ConnectionClosed as closed:
            late.append({"type": "closed", "code": closed.rcvd.code if closed.rcvd else None})
        await ws.close()
        await asyncio.wait_for(asyncio.gather(long_task, short_task), grace + 30)
        return endless, short, late, signalled

    endless, short, late, signalled = asyncio.run(scenario())
    # The bound: the grace period, the relays' and the stores' waits, the audit seal, a moment to exit.
    bound = grace + RELAY_SECONDS + STORE_SECONDS + SEAL_SECONDS + 3
    exit_code = server._process.wait(timeout=bound + 30)
    took = time.monotonic() - signalled
    assert took < bound, took
    assert exit_code in (0, -signal.SIGTERM), exit_code

    # The short answer finished within the grace period; the endless one was ended with a clear
    # error when it ran out; the turn sent after the signal was refused, clearly.
    assert short[-1]["type"] == "done" and short[-1]["status"] == "complete", short[-3:]
    final = endless[-1]
    assert final["type"] == "error" and final["code"] == SHUTTING_DOWN, endless[-3:]
    assert final["message"] == STREAM_ENDED.format(seconds=grace)
    if runserver and late[0]["type"] == "closed":
        pass  # daphne cancels every connection's consumer on SIGTERM: that socket has no one to answer
    else:
        assert late[0]["type"] == "error" and late[0]["message"] == SHUTTING_DOWN_MESSAGE, late

    stored = server.shell(
        "import json\n"
        "from departments.tenancy import all_departments\n"
        "from inference.models import ConversationMessage\n"
        "from compliance.models import AuditPending\n"
        "with all_departments(reason='shutdown test'):\n"
        "    rows = [[m.status, m.usage.get('error', ''), m.usage.get('finish_reason', '')]\n"
        "            for m in ConversationMessage.objects.filter(role='assistant').order_by('pk')]\n"
        "print(json.dumps({'rows': rows, 'pending': AuditPending.objects.count()}))"
    )
    result = json.loads(stored.splitlines()[-1])
    statuses = sorted(row[0] for row in result["rows"])
    assert statuses == ["complete", "failed"], result  # both turns stored, none lost or half-written
    assert ["failed", SHUTTING_DOWN] in [row[:2] for row in result["rows"]], result
    assert result["pending"] == 0, result  # the pending audit entries were chained before the exit
    verify = server.manage("audit_verify", check=False)
    assert verify.returncode == 0, verify.stdout + verify.stderr


# --- the engine's side, in process ----------------------------------------------------------------
def test_a_drain_refuses_new_requests_ends_waiting_ones_and_then_running_ones(make_engine):
    from inference.engine.errors import ModelUnavailable
    from inference.engine.handles import Error, Token
    from inference.engine.inputs import Message

    engine = make_engine(max_concurrent=1)
    running = engine.submit([Message("user", "go on")], max_new_tokens=2000, min_new_tokens=2000)
    waiting = engine.submit([Message("user", "me next")], max_new_tokens=4)
    events = running.events()
    assert isinstance(next(e for e in events if isinstance(e, Token)), Token)  # it is generating
    assert engine.unfinished() == 2

    assert engine.drain_begin(SHUTTING_DOWN_MESSAGE) == 1
    assert waiting.final == Error(SHUTTING_DOWN_MESSAGE, SHUTTING_DOWN)
    with pytest.raises(ModelUnavailable, match="shutting down"):
        engine.submit([Message("user", "too late")])
    assert not running.finished and engine.unfinished() == 1  # the running answer goes on

    assert engine.end_running("ended") == 1
    assert running.final == Error("ended", SHUTTING_DOWN)
    # Its row leaves the batch at the next step: the place is free, the step thread idle.
    wait_until(lambda: engine.scheduler.active() == 0 and engine.unfinished() == 0, timeout=30)


def test_graceful_stop_waits_for_answers_that_finish_within_the_grace(make_engine, serve_engine):
    from inference.engine.handles import Done
    from inference.engine.inputs import Message
    from inference.runtime import require_engine, stopping_set
    from inference.shutdown import graceful_stop

    engine = make_engine()
    serve_engine(engine)
    handle = engine.submit([Message("user", "short")], max_new_tokens=48, min_new_tokens=48)
    wait_until(lambda: handle._history_text, timeout=30)  # admitted and generating
    try:
        report = asyncio.run(graceful_stop(60))
        assert report.finished_in_grace and report.running_ended == 0
        assert isinstance(handle.final, Done) and handle.final.finish_reason == "length"
        from inference.engine.errors import ModelUnavailable

        with pytest.raises(ModelUnavailable, match="shutting down"):
            require_engine()
    finally:
        stopping_set("")
