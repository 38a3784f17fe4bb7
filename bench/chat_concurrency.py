"""50 websocket clients streaming at once against one server process.

Every client is a different user signed in through the real login view, sends one distinct
prompt at the same moment and reads its stream. Checked afterwards in the database: every turn
complete, stored once, in its owner's conversation, with exactly the text that client received
(nothing lost, nothing mixed up), and audited (one inference.call per turn, same request id).
Reported: p50/p95 time to first token seen by the clients, against the engine's own figures for
the same requests, and the wall time.

    .venv/bin/python bench/chat_concurrency.py [--clients 50] [--tokens 32] [--db postgres|sqlite]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time

from chat_common import chat_server, create_users, open_socket, percentile, run_turn, sign_in

CHECK = """
import json
from compliance.models import AuditEntry
from departments.tenancy import all_departments
from inference.models import ConversationMessage
with all_departments(reason="benchmark check"):
    rows = [
        [m.conversation_id, m.conversation.owner.username, m.role, m.content, m.status]
        for m in ConversationMessage.objects.select_related("conversation__owner").order_by("pk")
    ]
calls = [
    [e.actor_name, e.request_id, e.details["finish_reason"]]
    for e in AuditEntry.objects.filter(event_type="inference.call")
]
print(json.dumps({"messages": rows, "calls": calls}, ensure_ascii=False))
"""


async def one_client(server, cookie: str, prompt: str, tokens: int, start: asyncio.Event):
    socket = await open_socket(server, cookie)
    try:
        await start.wait()
        return await run_turn(socket, prompt, max_new_tokens=tokens)
    finally:
        await socket.close()


async def run(server, cookies: list[str], tokens: int):
    start = asyncio.Event()
    tasks = [
        asyncio.ensure_future(one_client(server, cookie, f"Client {n}: describe item {n * 7}.", tokens, start))
        for n, cookie in enumerate(cookies)
    ]
    await asyncio.sleep(2)  # every socket open and waiting
    began = time.perf_counter()
    start.set()
    results = await asyncio.gather(*tasks)
    return results, time.perf_counter() - began


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--tokens", type=int, default=32)
    parser.add_argument("--db", choices=("postgres", "sqlite"), default="postgres")
    parser.add_argument("--model")
    args = parser.parse_args()
    # The queue must hold every client at once (MAX_QUEUE defaults to 32): refusing is not what
    # this measures. Batches of up to 8 (the defaults of MAX_BATCH_SIZE / MAX_CONCURRENT_GENERATIONS).
    env = {"CHAT_TURNS_PER_MINUTE": "10000", "MAX_QUEUE": str(args.clients + 8)}
    with chat_server(args.model, db=args.db, env=env) as server:
        users = create_users(server, args.clients)
        cookies = [sign_in(server.base_url, user) for user in users]
        results, wall = asyncio.run(run(server, cookies, args.tokens))
        stored = json.loads(server.shell(CHECK))
        log = server.log()

    failures = [r.error for r in results if r.done is None]
    by_conversation: dict[int, list] = {}
    for conversation, owner, role, content, status in stored["messages"]:
        by_conversation.setdefault(conversation, []).append((owner, role, content, status))
    lost = mixed = 0
    for n, result in enumerate(results):
        if result.done is None:
            continue
        messages = by_conversation.get(result.done["conversation"], [])
        expected = [
            (f"user{n}", "user", result.prompt, "complete"),
            (f"user{n}", "assistant", "".join(result.tokens), result.done["status"]),
        ]
        if not messages:
            lost += 1
        elif messages != expected:
            mixed += 1
    request_ids = {r.done["request_id"] for r in results if r.done}
    audited = [call for call in stored["calls"] if call[1] in request_ids]
    ttft = [r.ttft * 1000 for r in results if r.done]
    engine_ttft = [r.done["usage"]["time_to_first_token"] * 1000 for r in results if r.done]
    first_text = [(r.done["relay"]["accept"] + r.done["relay"]["first_text"]) * 1000 for r in results if r.done]
    batches = [r.done["usage"]["batch_size"] for r in results if r.done]

    print(f"{args.clients} clients x {args.tokens} tokens, one uvicorn process, database {args.db}")
    print(
        f"turns complete: {len(results) - len(failures)}/{len(results)}; stored conversations: "
        f"{len(by_conversation)}; lost: {lost}; mixed up: {mixed}; audited: {len(audited)}/{len(request_ids)}"
    )
    print(f"wall time {wall:.2f} s; batch sizes seen {sorted(set(batches))}")
    print(
        f"client TTFT  p50 {percentile(ttft, 50):8.1f} ms   p95 {percentile(ttft, 95):8.1f} ms"
        f"   (engine's own: p50 {percentile(engine_ttft, 50):8.1f} ms, p95 {percentile(engine_ttft, 95):8.1f} ms)"
    )
    extra = [c - e for c, e in zip(ttft, first_text, strict=True)]
    print(
        f"client TTFT minus the server's time to its first text event: median {statistics.median(extra):.1f} ms,"
        f" p95 {percentile(extra, 95):.1f} ms (relay + websocket + client under load)"
    )
    if failures:
        print("failures:", failures[:5])
    errors = [line for line in log.splitlines() if "Traceback" in line or "ERROR" in line]
    if errors:
        print(f"server log: {len(errors)} error lines, e.g. {errors[:3]}")
    ok = not failures and not lost and not mixed and len(audited) == len(request_ids) == args.clients
    print("RESULT:", "ok" if ok else "FAILED")
    raise SystemExit(0 if ok else 1)


if __name__ == "__main__":
    main()
