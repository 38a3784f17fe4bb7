"""Cost of sealing chat text at rest: extra time per turn vs plaintext, same run.

Two measurements against one server and one PostgreSQL database:

1. **A turn**, end to end as a client sees it: ``turn.start`` → ``done`` over the real websocket
   on the bench demo model (``--tokens`` new tokens; half the turns continue a conversation, so
   history is read). Every stored turn is sealed, as in production.
2. **The chat path's database work of a turn**, in a process of the same installation
   (``manage.py shell``): what the consumer does before and after the model — fetch the
   conversation, read its history and the history's text, store the question and the answer with
   their ``inference.call`` entry (``conversation_turn_record``) — once with sealing as shipped,
   once with the sealed fields switched to plaintext pass-through (the baseline: what the columns
   were before), rounds interleaved so that drift hits both alike. The pure cryptography of a
   turn (unwrap the conversation's key, open the history, seal two messages) is timed apart.

The extra time per turn is the difference of the medians of (2); the goal is ≤ 2 % of the median
turn of (1).

    .venv/bin/python bench/chat_encryption.py [--turns 20] [--tokens 64] [--rounds 200] [--history 6]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics

from chat_common import chat_server, create_users, measure_turns, percentile, sign_in

STORAGE_PATH = r"""
import json, statistics, time, uuid
from django.conf import settings
from django.db import models
from assets import text_crypto
from accounts.models import User
from compliance.context import RequestContext, request_context
from departments.models import Department
from departments.tenancy import department_scope
from inference.chat.selectors import conversation_get_for_owner, conversation_history
from inference.chat.services import conversation_create, conversation_turn_record
from inference.model_calls import Channel, ModelCall, PromptMessage

ROUNDS, HISTORY, ANSWER_CHARS = {rounds}, {history}, {answer_chars}
settings.CHAT_HISTORY_TURNS = HISTORY
user = User.objects.get(username="user0")
department = Department.objects.get(slug="finance")
prompt = "请根据附件核对本月差旅报销的金额与发票是否一致, and list anything that does not match."
answer = "经核对, 报销单合计 12,800.00 元与发票一致。 The totals match; one receipt lacks a tax id. "
answer = (answer * 40)[:ANSWER_CHARS]

sealed = {{
    "pre_save": text_crypto._Sealed.pre_save,
    "unseal": text_crypto._Sealed.unseal,
    "save": text_crypto.TextKeyOwner.save,
}}

def plain_pre_save(self, instance, add):
    value = instance.__dict__.get(self.attname)
    if isinstance(value, text_crypto.SealedValue) or self.is_empty(value):
        return value
    return text_crypto.SealedValue(self.text_of(value))  # stored as it is: plaintext

def plain_save(self, *args, **kwargs):
    models.Model.save(self, *args, **kwargs)

def plain_unseal(self, instance, value):
    return self.value_of(value.text)

plain = {{"pre_save": plain_pre_save, "unseal": plain_unseal, "save": plain_save}}

def mode(name):
    chosen = sealed if name == "sealed" else plain
    text_crypto._Sealed.pre_save = chosen["pre_save"]
    text_crypto._Sealed.unseal = chosen["unseal"]
    text_crypto.TextKeyOwner.save = chosen["save"]

def call():
    return ModelCall(channel=Channel.WEBSOCKET, model="bench", model_sha256="0" * 64,
                     prompt=(PromptMessage("user", prompt),), preview=prompt,
                     params={{"max_new_tokens": 64, "temperature": 0.0}}, stream=True)

def turn(conversation_id):
    # What the consumer does around the model: _prepare (conversation, history, its text) and
    # _store (conversation_turn_record), each in its own database round trip.
    started = time.perf_counter()
    with department_scope(department):
        conversation = conversation_get_for_owner(
            department=department, user=user, conversation_id=conversation_id, purpose="chat"
        )
        history = conversation_history(conversation=conversation, turns=HISTORY)
        text = [(asked.content, answered.content) for asked, answered in history]
        assert all(a and b for a, b in text)
    with request_context(RequestContext(request_id=uuid.uuid4().hex)), department_scope(department):
        conversation_turn_record(
            conversation=conversation, department=department, user=user, prompt=prompt, assets=[],
            answer=answer, status="complete", usage={{"prompt_tokens": 40, "completion_tokens": 64}},
            finish_reason="length", params={{}}, model="bench", call=call(), relay_seconds={{"total": 1.0}},
        )
    return time.perf_counter() - started

conversations = {{}}
for name in ("sealed", "plain"):
    mode(name)
    with request_context(RequestContext(request_id="bench-setup")), department_scope(department):
        conversations[name] = conversation_create(department=department, owner=user, title=prompt, acting_user=user).pk
    for _ in range(HISTORY + 2):
        turn(conversations[name])  # history to read, and warm-up

times = {{"sealed": [], "plain": []}}
for index in range(ROUNDS):
    for name in (("sealed", "plain") if index % 2 == 0 else ("plain", "sealed")):
        mode(name)
        times[name].append(turn(conversations[name]))
mode("sealed")

# The cryptography alone: a fresh conversation instance (its key unwrapped), the history's text
# opened, two messages sealed.
crypto = []
with department_scope(department):
    for _ in range(ROUNDS):
        conversation = conversation_get_for_owner(
            department=department, user=user, conversation_id=conversations["sealed"], purpose="chat"
        )
        messages = list(conversation_history(conversation=conversation, turns=HISTORY))
        loaded = time.perf_counter()
        for asked, answered in messages:
            asked.content, answered.content
        opened = time.perf_counter()
        cipher, ref = conversation.text_cipher(), conversation.text_key_ref
        for text in (prompt, answer):
            text_crypto.seal_text(
                cipher, text, label="inference.conversationmessage", field="content", owner_ref=ref, row="r"
            )
        done = time.perf_counter()
        crypto.append((opened - loaded) + (done - opened))

print(json.dumps({{"sealed": times["sealed"], "plain": times["plain"], "crypto": crypto}}))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--turns", type=int, default=20, help="end-to-end turns over the websocket")
    parser.add_argument("--tokens", type=int, default=64, help="new tokens per turn")
    parser.add_argument("--rounds", type=int, default=200, help="storage-path turns per mode (sealed, plaintext)")
    parser.add_argument("--history", type=int, default=6, help="CHAT_HISTORY_TURNS for the storage path")
    parser.add_argument("--model")
    args = parser.parse_args()
    env = {"CHAT_TURNS_PER_MINUTE": "10000"}
    with chat_server(args.model, db="postgres", env=env) as server:
        (user,) = create_users(server, 1)
        results = asyncio.run(measure_turns(server, sign_in(server.base_url, user), args.turns, args.tokens))
        code = STORAGE_PATH.format(rounds=args.rounds, history=args.history, answer_chars=args.tokens * 4)
        figures = json.loads(server.shell(code).splitlines()[-1])
    turn_ms = statistics.median([r.total * 1000 for r in results])
    sealed = [t * 1000 for t in figures["sealed"]]
    plain = [t * 1000 for t in figures["plain"]]
    crypto_ms = [t * 1000 for t in figures["crypto"]]
    extra = statistics.median(sealed) - statistics.median(plain)
    print(f"end-to-end turns: {len(results)} x {args.tokens} tokens on the demo model, PostgreSQL, one uvicorn process")
    p95 = percentile([r.total * 1000 for r in results], 95)
    print(f"  turn (client, turn.start -> done): median {turn_ms:8.1f} ms, p95 {p95:8.1f} ms")
    print(f"chat-path database work per turn ({args.rounds} rounds each, history {args.history} turns, interleaved):")
    print(f"  plaintext columns: median {statistics.median(plain):7.3f} ms, p95 {percentile(plain, 95):7.3f} ms")
    print(f"  sealed columns:    median {statistics.median(sealed):7.3f} ms, p95 {percentile(sealed, 95):7.3f} ms")
    print(f"  cryptography alone (unwrap, open history, seal 2): median {statistics.median(crypto_ms) * 1000:7.1f} us")
    print(
        f"extra per turn (sealed - plaintext medians): {extra:+.3f} ms = {100 * extra / turn_ms:+.2f} % of a turn"
        f"   (cryptography alone: {100 * statistics.median(crypto_ms) / turn_ms:.3f} %; goal <= 2 %)"
    )


if __name__ == "__main__":
    main()
