"""One ``generate`` call for several requests, each streamed, stopped and counted on its own.

The per-row work happens in a StoppingCriteria, which transformers calls after every decoding
step with the whole ``input_ids``: it reads each row's newest token, streams that row's new
text to its handle, and answers "finished" per row (end of turn, stop string, its own
``max_new_tokens``, cancellation, timeout). A finished row is padded by generate from then on,
and the call returns as soon as every row is finished, so a lone cancelled request frees the
model at the next step. A LogitsProcessor holds back end-of-turn for rows below their
``min_new_tokens`` (benchmarks use it for comparable token counts).
"""

from __future__ import annotations

import gc
import logging
import time
from dataclasses import dataclass, field
from typing import Any

from inference.engine.errors import GENERATION_FAILED, OUT_OF_MEMORY, PROMPT_TOO_LONG
from inference.engine.handles import Done, GenerationHandle, Token, Usage
from inference.engine.inputs import GenerationRequest
from inference.engine.loading import LoadedModel
from inference.engine.prompting import model_inputs, place_inputs

logger = logging.getLogger(__name__)


@dataclass
class Row:
    request: GenerationRequest
    handle: GenerationHandle
    prompt_tokens: int = 0
    generated: list[int] = field(default_factory=list)
    emitted_chars: int = 0
    text: str = ""  # the answer decoded so far (incrementally: see ``decode_new``)
    prefix_offset: int = 0
    read_offset: int = 0
    finished: bool = False
    first_token_at: float | None = None
    started_at: float = 0.0
    batch_size: int = 1
    on_finish: Any = None

    def decode_new(self, tokenizer: Any, *, final: bool = False) -> str:
        """The answer's text so far, decoding only a short window of the newest tokens.

        Decoding the whole answer at every step is quadratic in its length. A token's text can
        depend on its neighbours (byte-level pieces of one character, a word's leading space), so
        the window starts a few tokens back (``prefix_offset``): what it adds beyond the text of
        the tokens already committed (up to ``read_offset``) is the new tail. A tail that ends in
        an incomplete UTF-8 sequence (U+FFFD) is shown without those trailing characters and
        stays uncommitted until it completes (or the answer ends, ``final``). The result is the
        whole answer's decode, less its trailing U+FFFD until the end (tested).
        """
        generated = self.generated
        if self.read_offset >= len(generated):
            return self.text
        before = tokenizer.decode(generated[self.prefix_offset : self.read_offset], skip_special_tokens=True)
        window = tokenizer.decode(generated[self.prefix_offset :], skip_special_tokens=True)
        tail = window[len(before) :]
        if final or not tail.endswith("\ufffd"):
            self._commit(tail, len(generated))
            return self.text
        if len(generated) - self.read_offset > _PENDING_TOKENS:
            # A long run of bytes that never completes (random weights do that): commit all but
            # its last few tokens, where a character can still be incomplete, at a clean boundary.
            for cut in range(len(generated) - 1, len(generated) - 5, -1):
                part = tokenizer.decode(generated[self.prefix_offset : cut], skip_special_tokens=True)
                if not part.endswith("\ufffd") and window.startswith(part) and len(part) >= len(before):
                    self._commit(part[len(before) :], cut)
                    tail = window[len(part) :]
                    break
        return self.text + tail.rstrip("\ufffd")

    def _commit(self, text: str, upto: int) -> None:
        self.text += text
        self.prefix_offset = self.read_offset
        self.read_offset = upto


# Uncommitted tokens after which decode_new commits the part of them that is complete.
_PENDING_TOKENS = 16


def _held_back(text: str, stops: tuple[str, ...]) -> int:
    """How many trailing characters might be the start of a stop string (not safe to send yet)."""
    longest = 0
    for stop in stops:
        for length in range(min(len(stop) - 1, len(text)), 0, -1):
            if text.endswith(stop[:length]):
                longest = max(longest, length)
                break
    return longest


class RowTracker:
    """Both the StoppingCriteria and the LogitsProcessor of one batched call."""

    def __init__(self, rows: list[Row], tokenizer: Any, eos_token_ids: tuple[int, ...]) -> None:
        self.rows = rows
        self.tokenizer = tokenizer
        self.eos = set(eos_token_ids)
        self.eos_list = list(eos_token_ids)
        self.steps = 0

    # LogitsProcessor protocol
    def process_logits(self, input_ids: Any, scores: Any) -> Any:
        for index, row in enumerate(self.rows):
            if not row.finished and len(row.generated) < row.request.params.min_new_tokens and self.eos_list:
                scores[index, self.eos_list] = float("-inf")
        return scores

    # StoppingCriteria protocol
    def criteria(self, input_ids: Any, scores: Any = None, **kwargs: Any) -> Any:
        import torch

        self.steps += 1
        now = time.perf_counter()
        newest = input_ids[:, -1].tolist()
        done = []
        for index, row in enumerate(self.rows):
            if not row.finished:
                self._advance(row, newest[index], now)
            done.append(row.finished)
        return torch.tensor(done, dtype=torch.bool, device=input_ids.device)

    def _advance(self, row: Row, token: int, now: float) -> None:
        handle = row.handle
        if handle.cancelled:
            self.finish(row, "cancelled", now)
            return
        if handle.timed_out(now):
            handle.fail_timeout()
            self.finish(row, None, now)
            return
        if token in self.eos:
            self.finish(row, "stop", now)
            return
        if row.first_token_at is None:
            row.first_token_at = now
        row.generated.append(token)
        final = len(row.generated) >= row.request.params.max_new_tokens
        text = row.decode_new(self.tokenizer, final=final)
        stops = row.request.params.stop
        cut = min((i for i in (text.find(s, max(0, row.emitted_chars - len(s))) for s in stops) if i >= 0), default=-1)
        if cut >= 0:
            self._emit(row, text[:cut])
            self.finish(row, "stop", now)
            return
        if final:
            self._emit(row, text)
            self.finish(row, "length", now)
            return
        # An incomplete UTF-8 sequence decodes to U+FFFD until its last byte arrives.
        safe = len(text.rstrip("\ufffd"))
        if stops:
            safe = min(safe, len(text) - _held_back(text, stops))
        self._emit(row, text[:safe])

    def _emit(self, row: Row, text: str) -> None:
        if len(text) > row.emitted_chars:
            row.handle._push(Token(text[row.emitted_chars :]))
            row.emitted_chars = len(text)

    def finish(self, row: Row, reason: str | None, now: float | None = None) -> None:
        """Mark the row finished; ``reason`` None means the handle already got its Error."""
        if row.finished:
            return
        row.finished = True
        now = now or time.perf_counter()
        if reason is not None:
            handle = row.handle
            decode_seconds = max(now - row.started_at, 1e-9)
            usage = Usage(
                prompt_tokens=row.prompt_tokens,
                completion_tokens=len(row.generated),
                queue_seconds=round(row.started_at - handle.submitted_at, 6),
                time_to_first_token=None
                if row.first_token_at is None
                else round(row.first_token_at - handle.submitted_at, 6),
                latency=round(now - handle.submitted_at, 6),
                tokens_per_second=round(len(row.generated) / decode_seconds, 3),
                batch_size=row.batch_size,
            )
            handle._push(Done(usage, reason))
        if row.on_finish is not None:
            row.on_finish(row)


def _free_memory(torch: Any) -> None:
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def _image_count(row: Row) -> int:
    return sum(len(message.images) for message in row.request.messages)


def _input_device(model: Any) -> Any:
    embeddings = model.get_input_embeddings()
    return embeddings.weight.device if embeddings is not None else next(model.parameters()).device


def run_batch(loaded: LoadedModel, rows: list[Row]) -> int:
    """Generate for every row in one call; every row's handle ends with Done or Error.

    Returns the number of decoding steps taken. Never raises: a failure fails these rows only.
    """
    import torch
    from transformers import LogitsProcessorList, StoppingCriteriaList

    tokenizer = getattr(loaded.processor, "tokenizer", loaded.processor)
    tracker = RowTracker(rows, tokenizer, loaded.eos_token_ids)
    started = time.perf_counter()
    for row in rows:
        row.started_at = started
        row.batch_size = len(rows)
    live = [row for row in rows if not row.finished]
    try:
        for row in live:
            if row.handle.cancelled:
                tracker.finish(row, "cancelled")
        live = [row for row in live if not row.finished]
        if not live:
            return 0
        if not loaded.profile.mixed_image_batches:
            with_images = [row for row in live if _image_count(row)]
            if with_images and len(with_images) < len(live):
                # This family's code takes an image tensor for every row or for none: two calls.
                text_only = [row for row in live if not _image_count(row)]
                return run_batch(loaded, with_images) + run_batch(loaded, text_only)
        inputs = model_inputs(loaded, [row.request.messages for row in live])
        lengths = [
            int(n) + loaded.image_extra_tokens * _image_count(row)
            for n, row in zip(inputs["attention_mask"].sum(dim=1).tolist(), live, strict=True)
        ]
        too_long = [
            (row, n)
            for row, n in zip(live, lengths, strict=True)
            if n + row.request.params.max_new_tokens > loaded.max_positions
        ]
        if too_long:
            for row, n in too_long:
                row.handle.fail(PROMPT_TOO_LONG.format(tokens=n, limit=loaded.max_positions), "prompt_too_long")
                tracker.finish(row, None)
            remaining = [row for row in live if not row.finished]
            tracker.rows = remaining
            return run_batch(loaded, remaining) if remaining else 0
        for row, n in zip(live, lengths, strict=True):
            row.prompt_tokens = int(n)
        tracker.rows = live
        vision_dtype, vision_device = loaded.vision_dtype_device
        placed = place_inputs(
            inputs,
            input_device=_input_device(loaded.model),
            vision_dtype=vision_dtype,
            vision_device=vision_device,
            image_keys=loaded.profile.image_keys,
        )
        params = live[0].request.params  # the batch key guarantees the decoding strategy is shared
        config = loaded.model.generation_config.__class__.from_dict(loaded.model.generation_config.to_dict())
        config.max_new_tokens = max(row.request.params.max_new_tokens for row in live)
        config.min_new_tokens = None
        config.pad_token_id = loaded.pad_token_id
        config.eos_token_id = list(loaded.eos_token_ids) or None
        config.do_sample = params.do_sample
        config.temperature = params.temperature if params.do_sample else None
        config.top_p = params.top_p if params.do_sample else None
        config.top_k = None
        if params.seed is not None:
            torch.manual_seed(params.seed)
        with torch.inference_mode():
            loaded.model.generate(
                **placed,
                generation_config=config,
                stopping_criteria=StoppingCriteriaList([_Criteria(tracker)]),
                logits_processor=LogitsProcessorList([_Logits(tracker)]),
            )
        now = time.perf_counter()
        for row in live:  # generate stopped on its own limit (e.g. max length) before our criteria
            if not row.finished:
                tracker.finish(row, "length", now)
        return tracker.steps
    except Exception as exc:  # one bad batch must not take the engine down
        if isinstance(exc, torch.OutOfMemoryError):
            logger.warning("out of memory in a batch of %d", len(rows))
            message, code = OUT_OF_MEMORY, "out_of_memory"
        else:
            logger.exception("generation failed for a batch of %d", len(rows))
            message, code = GENERATION_FAILED.format(error=type(exc).__name__), "generation_failed"
        for row in rows:
            if not row.finished:
                row.handle.fail(message, code)
                tracker.finish(row, None)
        _free_memory(torch)
        return tracker.steps


def _make_adapters():
    from transformers import LogitsProcessor, StoppingCriteria

    class Criteria(StoppingCriteria):
        def __init__(self, tracker: RowTracker) -> None:
            self.tracker = tracker

        def __call__(self, input_ids, scores, **kwargs):
            return self.tracker.criteria(input_ids, scores, **kwargs)

    class Logits(LogitsProcessor):
        def __init__(self, tracker: RowTracker) -> None:
            self.tracker = tracker

        def __call__(self, input_ids, scores):
            return self.tracker.process_logits(input_ids, scores)

    return Criteria, Logits


_Criteria, _Logits = _make_adapters()
