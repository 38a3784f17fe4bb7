"""Relay overhead of the websocket chat: what a client sees vs the engine's own figures.

For each turn, the client measures from sending ``turn.start`` to the first ``token`` frame and
to the ``done`` frame; the engine reports, for the same request, its time to first token and its
latency from submission (``done.usage``). The difference is everything the chat adds: session and
membership checks, rate limit, conversation and history reads, submission, the relay through the
websocket, and (for the total) storing the turn with its audit entry.

Goal: ≤ 10 ms extra to the first token, ≤ 5 % extra in total.

    .venv/bin/python bench/chat_relay.py [--turns 20] [--tokens 64] [--db postgres|sqlite] [--model DIR]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics

from chat_common import chat_server, create_users, measure_turns, percentile, sign_in


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--turns", type=int, default=20)
    parser.add_argument("--tokens", type=int, default=64)
    parser.add_argument("--db", choices=("postgres", "sqlite"), default="postgres")
    parser.add_argument("--model")
    parser.add_argument(
        "--conn-max-age",
        type=int,
        default=0,
        help="DB_CONN_MAX_AGE of the server (0, the default setting, opens a connection per database call)",
    )
    args = parser.parse_args()
    env = {"CHAT_TURNS_PER_MINUTE": "10000", "DB_CONN_MAX_AGE": str(args.conn_max_age)}
    with chat_server(args.model, db=args.db, env=env) as server:
        (user,) = create_users(server, 1)
        results = asyncio.run(measure_turns(server, sign_in(server.base_url, user), args.turns, args.tokens))
    extra_ttft = [(r.ttft - r.done["usage"]["time_to_first_token"]) * 1000 for r in results]
    extra_total = [(r.total - r.done["usage"]["latency"]) * 1000 for r in results]
    ratio_total = [r.total / r.done["usage"]["latency"] for r in results]
    ratio_ttft = [r.ttft / r.done["usage"]["time_to_first_token"] for r in results]
    engine_ttft = [r.done["usage"]["time_to_first_token"] * 1000 for r in results]
    engine_total = [r.done["usage"]["latency"] * 1000 for r in results]
    print(
        f"turns: {len(results)} x {args.tokens} tokens, database {args.db} (DB_CONN_MAX_AGE={args.conn_max_age}),"
        " one uvicorn process"
    )
    print(
        f"engine   TTFT median {statistics.median(engine_ttft):8.1f} ms"
        f"   total median {statistics.median(engine_total):8.1f} ms"
    )
    print(
        f"client   TTFT median {statistics.median([r.ttft * 1000 for r in results]):8.1f} ms"
        f"   total median {statistics.median([r.total * 1000 for r in results]):8.1f} ms"
    )
    print(
        f"extra TTFT (client - engine): median {statistics.median(extra_ttft):6.1f} ms,"
        f" p95 {percentile(extra_ttft, 95):6.1f} ms   ratio median {statistics.median(ratio_ttft):.3f}"
        "   (goal <= 10 ms)"
    )
    print(
        f"extra total (client - engine): median {statistics.median(extra_total):6.1f} ms,"
        f" p95 {percentile(extra_total, 95):6.1f} ms   ratio median {statistics.median(ratio_total):.3f}"
        f" (+{(statistics.median(ratio_total) - 1) * 100:.1f} %, goal <= 5 %)"
    )
    # Where the extra TTFT goes (the server reports its side in done.relay):
    accept = [r.done["relay"]["accept"] * 1000 for r in results]
    held = [(r.done["relay"]["first_text"] - r.done["usage"]["time_to_first_token"]) * 1000 for r in results]
    wire = [(r.ttft - r.done["relay"]["accept"] - r.done["relay"]["first_text"]) * 1000 for r in results]
    print(
        f"  of which: before the model (checks, rate limit, history) median {statistics.median(accept):6.1f} ms;"
        f" engine's first token -> its first text event median {statistics.median(held):6.1f} ms;"
        f" relay + websocket + client median {statistics.median(wire):6.1f} ms"
    )


if __name__ == "__main__":
    main()
