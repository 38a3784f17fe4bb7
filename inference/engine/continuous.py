"""Iteration-level batching: requests join the running batch at the next decoding step and leave
it the step they finish.

transformers' own continuous batching takes token ids only; ours carries images and each
family's rotary positions, so it is built here from the model's ``forward`` and a
``DynamicCache``:

- **Prefill into its own cache.** A newcomer's prompt (its images through the vision tower,
  once) goes into a cache of its own, with the position ids ``generate`` itself would build
  (Qwen-VL and GLM-V families: four rows, text and the three multimodal rotary positions; LLaVA
  and Idefics3: one). Its first token comes from the last prompt position's logits, and its
  cache then joins the batch's.
- **Decode together.** One forward per step for every running row: each feeds its newest token
  at its own next position (the last prompt position plus one per step, as ``generate`` counts),
  against one cache whose rows are left-padded to a common length and masked.
- **Leave at once.** A finished, cancelled or timed-out row is dropped from the cache and the
  mask before the next step, and columns that only held padding are trimmed.
- **Chunked prefill, fused with decoding.** While others are running, a newcomer's prompt goes
  in one chunk per step, in the *same forward* as the running rows' decoding step: one packed
  sequence (the chunk's tokens, then each row's newest token, each at its own position), a
  4-D mask that keeps each token to its own sequence, and a cache view (``FusedCache``) that
  appends each part to its own cache. One forward's fixed cost per step instead of two, so
  neither the running streams nor the newcomer wait for the other's forward. The text before
  the first image is a chunk of its own; the chunk with the images holds exactly the image
  positions (the vision tower runs whole, once, in that forward); the rest is text. A chunk
  holds ``prefill_chunk_tokens`` when configured, else as many tokens as make the fused step
  cost about ``FUSED_STEP_BUDGET`` decoding steps, from this machine's measured step times
  (vLLM's token budget per iteration). With nothing running, a newcomer is prefilled whole,
  exactly as ``generate`` does.

Greedy answers equal a bare ``generate`` of each request alone (same positions, padding masked;
in fp32 token for token, chunked and fused prefill included), whatever joins or leaves:
tests/inference/test_continuous.py.
"""

from __future__ import annotations

import inspect
import logging
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from inference.engine.errors import GENERATION_FAILED, OUT_OF_MEMORY, PROMPT_TOO_LONG
from inference.engine.generation import Row, RowTracker, _free_memory, _image_count, _input_device
from inference.engine.loading import LoadedModel
from inference.engine.prompting import model_inputs, place_inputs

logger = logging.getLogger(__name__)


@dataclass
class Running:
    """A row in the decoding batch: its next token to feed and that token's position."""

    row: Row
    next_token: int
    position: Any  # tensor: (4,) for multimodal rotary positions, (1,) for plain ones
    generator: Any = None  # a seeded request's own random stream
    warpers: list[Any] = field(default_factory=list)
    prompt_ids: list[int] = field(default_factory=list)  # for the model's repetition penalty


@dataclass
class Prefill:
    """A newcomer's prompt on its way into its own cache, one chunk at a time."""

    row: Row
    input_ids: Any  # (1, prompt length)
    position_ids: Any  # as generate builds them, cut with each chunk (None: the model counts)
    along: dict[str, Any]  # tensors along the prompt (token type ids), cut with each chunk
    images: dict[str, Any]  # image tensors and grids, given with the first chunk
    cache: Any
    # The chunk that reaches the first image position carries the images and every image
    # position (the model fills them from the vision tower's output in one forward).
    image_span: tuple[int, int]
    done: int = 0  # prompt positions already in the cache
    chunks: int = 0


class ContinuousBatch:
    """The running rows of one model and their shared cache; driven by one thread."""

    def __init__(self, loaded: LoadedModel, *, prefill_chunk_tokens: int = 0) -> None:
        self.loaded = loaded
        self.model = loaded.model
        self.tokenizer = getattr(loaded.processor, "tokenizer", loaded.processor)
        self.tracker = RowTracker([], self.tokenizer, loaded.eos_token_ids)
        # Prompt tokens per chunk: fixed when configured, else sized from measured step times.
        self.fixed_chunk_tokens = prefill_chunk_tokens
        self.chunk_tokens = prefill_chunk_tokens or default_chunk_tokens(loaded)
        # Recent measurements: a decoding step's seconds, and what one prompt token adds to it.
        self._decode_times: deque[float] = deque(maxlen=MEASUREMENTS)
        self._token_times: deque[float] = deque(maxlen=MEASUREMENTS)
        self.waiting: list[Row] = []  # admitted, not yet prefilled
        self.prefilling: Prefill | None = None
        self.running: list[Running] = []
        self.cache: Any = None
        self.mask: Any = None  # (rows, cache length) long: 1 = a real position, 0 = padding
        self.steps = 0
        self.fused_steps = 0  # of which a newcomer's prompt chunk shared the forward
        self.fused_image_steps = 0  # ... a chunk with images (the vision tower ran in it)
        parameters = set(inspect.signature(self.model.forward).parameters)
        self._takes_positions = "position_ids" in parameters
        self._takes_logits_to_keep = "logits_to_keep" in parameters
        # A newcomer's chunk shares the running rows' forward where attention takes a 4-D mask.
        text_config = getattr(self.model.config, "text_config", None) or self.model.config
        attention = getattr(text_config, "_attn_implementation", None) or "eager"
        self._fuses = self._takes_positions and attention in ("sdpa", "eager")
        self._bool_mask = attention == "sdpa"
        self._placeholders = _placeholder_ids(self.model.config)
        # generate applies the model's own repetition penalty (generation_config.json; Qwen-VL
        # checkpoints ship one) over prompt and answer: so does each row here.
        penalty = getattr(self.model.generation_config, "repetition_penalty", None)
        self.repetition = None
        if penalty is not None and float(penalty) != 1.0:
            from transformers import RepetitionPenaltyLogitsProcessor

            self.repetition = RepetitionPenaltyLogitsProcessor(float(penalty))
        # ... and never chooses a token the model's generation config suppresses (suppress_tokens).
        suppressed = getattr(self.model.generation_config, "suppress_tokens", None) or ()
        self.suppressed = sorted({int(token) for token in suppressed})

    # --- the scheduler's side -------------------------------------------------------------------
    def add(self, row: Row) -> None:
        self.waiting.append(row)

    @property
    def busy(self) -> bool:
        return bool(self.waiting or self.running or self.prefilling is not None)

    def work(self) -> None:
        """One round: drop rows that ended, prefill (a chunk), then one decoding step."""
        import torch

        self._drop_ended()
        steps = self.steps
        if self.running:
            # One chunk's worth of prompt per newcomer waiting for its first token, in the same
            # forward as the running rows' decoding step (``_fused_step``): a lone newcomer costs
            # the running streams one chunk per step, a burst of them is not prefilled at a trickle.
            newcomers = len(self.waiting) + (self.prefilling is not None)
            if newcomers:
                self._prefill_some(whole=False, fuse=True, share=newcomers)
        else:
            while self.waiting or self.prefilling is not None:  # nobody is waiting on a step
                self._prefill_some(whole=True)
        self._drop_ended()
        if not self.running or self.steps != steps:  # none left, or their step ran with the chunk
            return
        try:
            self._decode_step()
        except torch.OutOfMemoryError:
            logger.warning("out of memory in a decoding step of %d rows", len(self.running))
            self._fail_running(OUT_OF_MEMORY, "out_of_memory")
        except Exception as exc:  # one bad step fails the rows in it, not the engine
            logger.exception("a decoding step of %d rows failed", len(self.running))
            self._fail_running(GENERATION_FAILED.format(error=type(exc).__name__), "generation_failed")

    def fail_all(self, message: str, code: str) -> None:
        rows = [*self.waiting, *(r.row for r in self.running)]
        if self.prefilling is not None:
            rows.append(self.prefilling.row)
        for row in rows:
            self._fail_row(row, message, code)
        self.waiting.clear()
        self.prefilling = None
        self._reset()

    # --- prefill --------------------------------------------------------------------------------
    def _prefill_some(self, *, whole: bool, fuse: bool = False, share: int = 1) -> None:
        """Start the next newcomer's prefill if none is under way, and run one chunk of it (or
        all of it, ``whole``; with the running rows' decoding step where it can, ``fuse``); a
        failure fails that request alone."""
        import torch

        state = self.prefilling
        try:
            with torch.inference_mode():
                if state is None:
                    if not self.waiting:
                        return
                    row = self.waiting.pop(0)
                    row.started_at = time.perf_counter()
                    if self._ended(row):
                        return
                    state = self.prefilling = self._prefill_start(row)
                    if state is None:
                        return
                if self._prefill_chunk(state, whole=whole, fuse=fuse, share=share):
                    self.prefilling = None
        except Exception as exc:
            failed = state.row if state is not None else row
            self.prefilling = None
            if isinstance(exc, torch.OutOfMemoryError):
                logger.warning("out of memory in a prefill")
                self._fail_row(failed, OUT_OF_MEMORY, "out_of_memory")
            else:
                logger.exception("a prefill failed")
                self._fail_row(failed, GENERATION_FAILED.format(error=type(exc).__name__), "generation_failed")
            _free_memory(torch)

    def _prefill_start(self, row: Row) -> Prefill | None:
        from transformers import DynamicCache

        loaded, model = self.loaded, self.model
        inputs = model_inputs(loaded, [row.request.messages])
        length = int(inputs["attention_mask"].sum()) + loaded.image_extra_tokens * _image_count(row)
        if length + row.request.params.max_new_tokens > loaded.max_positions:
            self._fail_row(row, PROMPT_TOO_LONG.format(tokens=length, limit=loaded.max_positions), "prompt_too_long")
            return None
        row.prompt_tokens = length
        vision_dtype, vision_device = loaded.vision_dtype_device
        placed = place_inputs(
            inputs,
            input_device=_input_device(model),
            vision_dtype=vision_dtype,
            vision_device=vision_device,
            image_keys=loaded.profile.image_keys,
        )
        input_ids = placed.pop("input_ids")
        position_ids = None
        if self._takes_positions:
            # Exactly what generate builds: Qwen-VL / GLM-V models compute their multimodal
            # positions (and rope deltas) here, plain models count the attention mask.
            position_ids = model._prepare_position_ids_for_generation(input_ids, {"input_ids": input_ids, **placed})
        placed.pop("attention_mask", None)  # one unpadded row: generate drops an all-ones mask too
        total = input_ids.shape[1]
        # Tensors along the prompt (token type ids) are cut with it; the rest (images) go whole
        # with the first chunk, which reaches past the last image position.
        along = {k: v for k, v in placed.items() if hasattr(v, "shape") and v.ndim == 2 and v.shape[-1] == total}
        images = {k: v for k, v in placed.items() if k not in along}
        return Prefill(
            row=row,
            input_ids=input_ids,
            position_ids=position_ids,
            along=along,
            images=images,
            cache=DynamicCache(config=model.config),
            image_span=self._image_span(input_ids, along) if _image_count(row) else (-1, -1),
        )

    def _image_span(self, input_ids: Any, along: dict[str, Any]) -> tuple[int, int]:
        """The prompt positions from the first image position to past the last one (the whole
        prompt when this model does not say which positions are images)."""
        kinds = along.get("mm_token_type_ids")
        if kinds is not None:
            marked = kinds[0].nonzero()
        else:
            config = self.model.config
            image_id = getattr(config, "image_token_id", None)
            if image_id is None:
                image_id = getattr(config, "image_token_index", None)
            marked = [] if image_id is None else (input_ids[0] == image_id).nonzero()
        if not len(marked):
            return 0, input_ids.shape[1]
        return int(marked[0]), int(marked[-1]) + 1

    def _prefill_chunk(self, state: Prefill, *, whole: bool, fuse: bool = False, share: int = 1) -> bool:
        """Run the next piece of the prompt into the newcomer's cache; True when it is done (its
        first token chosen and, unless that ended it, the row joined the batch).

        ``fuse``: the chunk goes into one forward with the running rows' decoding step
        (``_fused_step``); the chunk that carries images holds just the image positions then.
        ``share``: newcomers waiting, each of whom this chunk may take a chunk's worth for."""
        import torch

        total = state.input_ids.shape[1]
        begin = state.done
        end = total if whole else min(total, begin + self.chunk_size() * share)
        first_image, past_images = state.image_span
        if not whole and 0 <= begin < first_image < end:
            end = first_image  # the text before the images is a chunk of its own
        with_images = first_image < 0 and begin == 0 or begin <= first_image < end
        if with_images and first_image >= 0:
            # Every image position in one chunk; with others running, no text after them.
            end = past_images if fuse else max(end, past_images)
        images = state.images if with_images else {}
        fusable = fuse and self._fuses and bool(self.running) and state.position_ids is not None
        if fusable and images:
            # The model finds image positions by their placeholder token: no running row may be
            # feeding one (a random-weight model can choose it) in the same forward.
            fusable = not any(entry.next_token in self._placeholders for entry in self.running)
        if fusable:
            logits = self._fused_step(state, begin, end, images)
            if logits is None:
                return False
        else:
            if end - begin < total:
                cut = slice(begin, end)
                kwargs = {k: v[..., cut] for k, v in state.along.items()}
                kwargs.update(images)
                input_ids = state.input_ids[:, cut]
                position_ids = None if state.position_ids is None else state.position_ids[..., cut]
            else:
                kwargs = {**state.along, **state.images}
                input_ids, position_ids = state.input_ids, state.position_ids
            if position_ids is not None:
                kwargs["position_ids"] = position_ids
            if self._takes_logits_to_keep:
                kwargs["logits_to_keep"] = 1
            output = self.model(input_ids=input_ids, past_key_values=state.cache, use_cache=True, **kwargs)
            state.cache = output.past_key_values
            state.done = end
            state.chunks += 1
            if end < total:
                return False
            logits = output.logits[0, -1, :].to(copy=True, dtype=torch.float32)
        if state.position_ids is None:
            position = torch.tensor([total - 1], dtype=torch.long, device=state.input_ids.device)
        elif state.position_ids.ndim == 3:
            position = state.position_ids[:, 0, -1].clone()
        else:
            position = state.position_ids[0, -1:].clone()
        row = state.row
        entry = Running(row=row, next_token=0, position=position)
        if self.repetition is not None:
            entry.prompt_ids = state.input_ids[0].tolist()
        params = row.request.params
        if params.do_sample:
            entry.warpers = _warpers(params)
            if params.seed is not None:
                entry.generator = torch.Generator(device=logits.device).manual_seed(params.seed)
        row.batch_size = max(row.batch_size, len(self.running) + 1)
        token = self._choose(entry, logits)
        self.tracker._advance(row, token, time.perf_counter())
        if not row.finished:
            entry.next_token = token
            self._join(entry, state.cache, total)
        return True

    def _fused_step(self, state: Prefill, begin: int, end: int, images: dict[str, Any]) -> Any:
        """One forward for a newcomer's prompt chunk and the running rows' decoding step.

        The batch is one packed sequence: the chunk's tokens, then each running row's newest
        token, each at its own position (``generate``'s multimodal rotary positions for the
        chunk, the row's next one for the others). ``FusedCache`` appends the chunk's keys and
        values to the newcomer's cache and each row's to its row of the shared cache, and hands
        attention both side by side; a 4-D mask lets each token see only its own sequence (the
        chunk: its prompt so far, causally; a row: its unpadded past). Without this, the running
        streams would wait for a separate chunk forward each step, and the newcomer for their
        decoding forwards — two fixed costs per chunk instead of one.

        The running rows advance by one token; returns the newcomer's last-position logits when
        the chunk ends its prompt (else None). A failure leaves the running rows as they were.
        """
        import torch

        running = self.running
        rows, width = len(running), end - begin
        device = state.input_ids.device
        started = time.perf_counter()
        fresh = [entry.next_token for entry in running]
        input_ids = torch.cat(
            [state.input_ids[:, begin:end], torch.tensor([fresh], dtype=torch.long, device=device)], 1
        )
        previous = [entry.position for entry in running]
        for entry in running:
            entry.position = entry.position + 1
        chunk_positions = state.position_ids[..., begin:end]
        positions = torch.stack([entry.position for entry in running], dim=-1).to(device)  # (P, rows)
        if chunk_positions.ndim == 3:
            positions = positions.unsqueeze(1)  # (P, 1, rows)
        kwargs: dict[str, Any] = {"position_ids": torch.cat([chunk_positions, positions], dim=-1), **images}
        for key, value in state.along.items():  # token type ids: the running rows' are text
            kwargs[key] = torch.cat([value[..., begin:end], value.new_zeros((value.shape[0], rows))], dim=-1)
        row_mask = torch.cat([self.mask, self.mask.new_ones((rows, 1))], dim=1)
        kwargs["attention_mask"] = self._fused_mask(begin, width, row_mask, device)
        if self._takes_logits_to_keep:
            kwargs["logits_to_keep"] = rows + 1
        kept = [(layer.keys, layer.values) for layer in self.cache.layers]
        cache = _fused_cache(self.cache, state.cache, width)
        try:
            with torch.inference_mode():
                output = self.model(input_ids=input_ids, past_key_values=cache, use_cache=True, **kwargs)
        except BaseException:
            for layer, (keys, values) in zip(self.cache.layers, kept, strict=True):
                layer.keys, layer.values = keys, values
            for entry, position in zip(running, previous, strict=True):
                entry.position = position
            raise
        logits = output.logits[0, -(rows + 1) :, :].to(copy=True, dtype=torch.float32)
        self.mask = row_mask
        state.done = end
        state.chunks += 1
        self.steps += 1
        self.fused_steps += 1
        self.fused_image_steps += bool(images)
        now = time.perf_counter()
        for index, entry in enumerate(running, start=1):
            row = entry.row
            row.batch_size = max(row.batch_size, rows + 1)
            token = self._choose(entry, logits[index])
            self.tracker._advance(row, token, now)
            entry.next_token = token
        # Measured once the tokens are chosen (on a GPU, that waits for the forward to finish);
        # a chunk with images also ran the vision tower, which is no prompt token's cost.
        if not images:
            self._measure_fused(time.perf_counter() - started, width)
        return logits[0] if end == state.input_ids.shape[1] else None

    def _fused_mask(self, begin: int, width: int, row_mask: Any, device: Any) -> Any:
        """(1, 1, chunk + rows, newcomer keys + rows × row keys): what each packed token sees."""
        import torch

        rows, length = row_mask.shape
        seen = begin + width
        causal = torch.arange(seen, device=device)[None, :] <= torch.arange(begin, seen, device=device)[:, None]
        own = torch.zeros((rows, rows, length), dtype=torch.bool, device=device)
        index = torch.arange(rows, device=device)
        own[index, index] = row_mask.to(device=device, dtype=torch.bool)
        mask = torch.cat(
            [
                torch.cat([causal, causal.new_zeros((width, rows * length))], dim=1),
                torch.cat([causal.new_zeros((rows, seen)), own.view(rows, rows * length)], dim=1),
            ],
            dim=0,
        )[None, None]
        if self._bool_mask:
            return mask
        dtype = self.model.dtype if self.model.dtype.is_floating_point else torch.float32
        return torch.zeros(mask.shape, dtype=dtype, device=device).masked_fill(~mask, torch.finfo(dtype).min)

    def _join(self, entry: Running, cache: Any, length: int) -> None:
        import torch

        ones = torch.ones((1, length), dtype=torch.long, device=self._mask_device(cache))
        if self.cache is None:
            self.cache, self.mask = _growing(cache), ones
            self.running = [entry]
            return
        total = max(self.mask.shape[1], length)
        grow_batch, grow_new = total - self.mask.shape[1], total - length
        for layer, new in zip(self.cache.layers, cache.layers, strict=True):
            layer.keys = torch.cat([_pad_left(layer.keys, grow_batch), _pad_left(new.keys, grow_new)], dim=0)
            layer.values = torch.cat([_pad_left(layer.values, grow_batch), _pad_left(new.values, grow_new)], dim=0)
        self.mask = torch.cat([_pad_left(self.mask, grow_batch), _pad_left(ones, grow_new)], dim=0)
        self.running.append(entry)

    # --- chunk size --------------------------------------------------------------------------------
    def chunk_size(self) -> int:
        """Prompt tokens for the next chunk: the configured number, or as many as make a fused
        step cost about ``FUSED_STEP_BUDGET`` decoding steps (vLLM's token budget per iteration,
        from this machine's measured times: a GPU fits hundreds, a CPU a few dozen)."""
        if self.fixed_chunk_tokens:
            return self.fixed_chunk_tokens
        if self._decode_times and self._token_times:
            # A busy machine stretches single steps at random, never shortens them: the low
            # quartile of recent steps is this machine's own cost, for a decoding step and for
            # what a prompt token adds to it; the chunk at most doubles or halves at a time.
            step, token = _low_quartile(self._decode_times), _low_quartile(self._token_times)
            room = (FUSED_STEP_BUDGET - 1.0) * step / token if token > 0 else MAX_CHUNK_TOKENS
            room = min(2 * self.chunk_tokens, max(self.chunk_tokens // 2, room))
            self.chunk_tokens = int(min(MAX_CHUNK_TOKENS, max(MIN_CHUNK_TOKENS, room)))
        return self.chunk_tokens

    def _measure_fused(self, seconds: float, width: int) -> None:
        if self._decode_times:
            self._token_times.append(max(seconds - _low_quartile(self._decode_times), 0.0) / width)

    @staticmethod
    def _mask_device(cache: Any) -> Any:
        return cache.layers[0].keys.device

    # --- decoding -------------------------------------------------------------------------------
    def _decode_step(self) -> None:
        import torch

        running = self.running
        device = self.mask.device
        input_ids = torch.tensor([[entry.next_token] for entry in running], dtype=torch.long, device=device)
        for entry in running:
            entry.position = entry.position + 1
        positions = torch.stack([entry.position for entry in running], dim=-1)  # (P, rows)
        if positions.shape[0] == 1:
            position_ids = positions.reshape(len(running), 1)  # (rows, 1)
        else:
            position_ids = positions.unsqueeze(-1)  # (4, rows, 1)
        self.mask = torch.cat([self.mask, torch.ones((len(running), 1), dtype=torch.long, device=device)], dim=1)
        kwargs: dict[str, Any] = {}
        if not bool(self.mask.all()):
            kwargs["attention_mask"] = self.mask  # a lone or equal-length batch needs none, like generate
        if self._takes_positions:
            kwargs["position_ids"] = position_ids.to(device)
        if self._takes_logits_to_keep:
            kwargs["logits_to_keep"] = 1
        started = time.perf_counter()
        with torch.inference_mode():
            output = self.model(input_ids=input_ids, past_key_values=self.cache, use_cache=True, **kwargs)
        self.cache = output.past_key_values
        logits = output.logits[:, -1, :].to(copy=True, dtype=torch.float32)
        self.steps += 1
        now = time.perf_counter()
        for index, entry in enumerate(running):
            row = entry.row
            row.batch_size = max(row.batch_size, len(running))
            token = self._choose(entry, logits[index])
            self.tracker._advance(row, token, now)
            entry.next_token = token
        self._decode_times.append(time.perf_counter() - started)  # as a fused step is measured

    def _choose(self, entry: Running, scores: Any) -> int:
        import torch

        row = entry.row
        scores = scores.unsqueeze(0)
        if self.repetition is not None:
            seen = torch.tensor([entry.prompt_ids + row.generated], dtype=torch.long, device=scores.device)
            scores = self.repetition(seen, scores)
        if self.suppressed:
            scores[:, self.suppressed] = float("-inf")
        if len(row.generated) < row.request.params.min_new_tokens and self.tracker.eos_list:
            scores[:, self.tracker.eos_list] = float("-inf")
        if not entry.warpers:
            return int(scores.argmax(dim=-1))
        ids = torch.tensor([row.generated], dtype=torch.long, device=scores.device)
        for warper in entry.warpers:
            scores = warper(ids, scores)
        probabilities = torch.nn.functional.softmax(scores, dim=-1)
        return int(torch.multinomial(probabilities, num_samples=1, generator=entry.generator))

    # --- leaving --------------------------------------------------------------------------------
    def _ended(self, row: Row) -> bool:
        """Finish a row whose handle was cancelled or timed out; True if the row is finished."""
        if row.finished:
            return True
        now = time.perf_counter()
        if row.handle.cancelled:
            self.tracker.finish(row, "cancelled", now)
        elif row.handle.timed_out(now):
            row.handle.fail_timeout()
            self.tracker.finish(row, None, now)
        return row.finished

    def _drop_ended(self) -> None:
        import torch

        self.waiting = [row for row in self.waiting if not self._ended(row)]
        if self.prefilling is not None and self._ended(self.prefilling.row):
            self.prefilling = None
        keep = [index for index, entry in enumerate(self.running) if not self._ended(entry.row)]
        if len(keep) == len(self.running):
            return
        if not keep:
            self._reset()
            return
        index = torch.tensor(keep, dtype=torch.long, device=self.mask.device)
        mask = self.mask.index_select(0, index)
        # Columns that were padding for every remaining row are dropped with the rows that left.
        first = int(mask.any(dim=0).to(torch.long).argmax())
        self.mask = mask[:, first:]
        for layer in self.cache.layers:
            layer.keys = layer.keys.index_select(0, index.to(layer.keys.device))[:, :, first:]
            layer.values = layer.values.index_select(0, index.to(layer.values.device))[:, :, first:]
        self.running = [self.running[i] for i in keep]

    def _reset(self) -> None:
        self.running = []
        self.cache = self.mask = None

    def _fail_row(self, row: Row, message: str, code: str) -> None:
        if not row.finished:
            row.handle.fail(message, code)
            self.tracker.finish(row, None)

    def _fail_running(self, message: str, code: str) -> None:
        import torch

        for entry in self.running:
            self._fail_row(entry.row, message, code)
        self._reset()
        _free_memory(torch)


def _low_quartile(values: Any) -> float:
    ordered = sorted(values)
    return ordered[len(ordered) // 4]


def _placeholder_ids(config: Any) -> set[int]:
    """The token ids a model replaces with image or video embeddings."""
    names = ("image_token_id", "image_token_index", "video_token_id", "video_token_index")
    found = set()
    for part in (config, getattr(config, "text_config", None)):
        for name in names:
            value = getattr(part, name, None)
            if isinstance(value, int):
                found.add(value)
    return found


def _fused_cache_class() -> Any:
    from transformers.cache_utils import Cache

    class FusedCache(Cache):
        """What one fused forward's attention layers see (``ContinuousBatch._fused_step``).

        The packed keys and values of a layer are the chunk's, then one per running row;
        ``update`` appends the chunk's to the newcomer's cache and each row's to its row of
        the shared cache, and returns the newcomer's whole prompt so far followed by every
        row's past, flattened into one sequence (the 4-D mask keeps each to its own).
        """

        def __init__(self, shared: Any, newcomer: Any, width: int) -> None:
            super().__init__(layers=shared.layers)
            self.shared, self.newcomer, self.width = shared, newcomer, width

        def update(self, key_states: Any, value_states: Any, layer_idx: int, *args: Any, **kwargs: Any) -> Any:
            import torch

            width = self.width
            # (1, heads, rows, dim) -> (rows, heads, 1, dim): each row's one new position
            row_keys = key_states[:, :, width:].permute(2, 1, 0, 3)
            row_values = value_states[:, :, width:].permute(2, 1, 0, 3)
            new_keys, new_values = self.newcomer.update(key_states[:, :, :width], value_states[:, :, :width], layer_idx)
            keys, values = self.shared.update(row_keys, row_values, layer_idx)
            rows, heads, length, dim = keys.shape
            packed_keys = keys.transpose(0, 1).reshape(1, heads, rows * length, dim)
            packed_values = values.transpose(0, 1).reshape(1, heads, rows * length, values.shape[-1])
            return torch.cat([new_keys, packed_keys], dim=2), torch.cat([new_values, packed_values], dim=2)

        def get_seq_length(self, layer_idx: int = 0) -> int:
            return self.newcomer.get_seq_length(layer_idx)

    return FusedCache


_FUSED_CACHE: Any = None


def _fused_cache(shared: Any, newcomer: Any, width: int) -> Any:
    """A FusedCache (its class is made on first use: torch and transformers load lazily)."""
    global _FUSED_CACHE
    if _FUSED_CACHE is None:
        _FUSED_CACHE = _fused_cache_class()
    return _FUSED_CACHE(shared, newcomer, width)


def _growing_layer_class() -> Any:
    from transformers.cache_utils import DynamicLayer

    class GrowingLayer(DynamicLayer):
        """A DynamicLayer whose keys and values are views of a buffer with room to grow: a
        decoding step writes its position in place instead of copying the whole cache
        (``torch.cat`` of every row's past, every layer, every step). Whoever replaces
        ``keys``/``values`` (rows joining or leaving) gets a fresh buffer at the next update."""

        buffers: tuple[Any, Any] | None = None

        def update(self, key_states: Any, value_states: Any, *args: Any, **kwargs: Any) -> Any:
            if not self.is_initialized or self.keys.numel() == 0:
                return super().update(key_states, value_states, *args, **kwargs)
            keys, values = self.keys, self.values
            length, adding = keys.shape[-2], key_states.shape[-2]
            buffers = self.buffers
            if (
                buffers is None
                or keys.data_ptr() != buffers[0].data_ptr()
                or values.data_ptr() != buffers[1].data_ptr()
                or keys.shape[:2] != buffers[0].shape[:2]
                or length + adding > buffers[0].shape[-2]
            ):
                room = length + adding + max(GROW_POSITIONS, length // 2)
                buffers = tuple(_with_room(tensor, room) for tensor in (keys, values))
                self.buffers = buffers
            end = length + adding
            buffers[0][:, :, length:end] = key_states
            buffers[1][:, :, length:end] = value_states
            self.keys, self.values = buffers[0][:, :, :end], buffers[1][:, :, :end]
            return self.keys, self.values

    return GrowingLayer


_GROWING_LAYER: Any = None
GROW_POSITIONS = 64  # spare positions a cache buffer gets at least when it is (re)made


def _growing(cache: Any) -> Any:
    """``cache`` (a DynamicCache) with its layers made GrowingLayers, their states kept."""
    global _GROWING_LAYER
    if _GROWING_LAYER is None:
        _GROWING_LAYER = _growing_layer_class()
    for index, layer in enumerate(cache.layers):
        if type(layer).__name__ == "DynamicLayer":
            grown = _GROWING_LAYER()
            grown.__dict__.update(layer.__dict__)
            cache.layers[index] = grown
    return cache


def _with_room(tensor: Any, length: int) -> Any:
    """A (batch, heads, ``length``, dim) buffer that starts with ``tensor``'s positions."""
    import torch

    shape = list(tensor.shape)
    shape[-2] = length
    buffer = torch.empty(shape, dtype=tensor.dtype, device=tensor.device)
    buffer[:, :, : tensor.shape[-2]] = tensor
    return buffer


def _pad_left(tensor: Any, width: int) -> Any:
    """``tensor`` with ``width`` zero columns before its sequence dimension (-2 for a cache's
    keys and values, -1 for a mask)."""
    import torch

    if width <= 0:
        return tensor
    dim = -1 if tensor.ndim == 2 else -2
    shape = list(tensor.shape)
    shape[dim] = width
    return torch.cat([torch.zeros(shape, dtype=tensor.dtype, device=tensor.device), tensor], dim=dim)


def _warpers(params: Any) -> list[Any]:
    """transformers' own warpers, in generate's order: temperature, then top-p."""
    from transformers import TemperatureLogitsWarper, TopPLogitsWarper

    warpers = [TemperatureLogitsWarper(params.temperature)]
    if params.top_p < 1.0:
        warpers.append(TopPLogitsWarper(params.top_p))
    return warpers


# A fused step (a newcomer's chunk with the running rows' decoding step) may cost this many
# decoding steps: the running streams' worst gap while newcomers join stays near it (goal ≤ 3×).
FUSED_STEP_BUDGET = 2.5
MIN_CHUNK_TOKENS, MAX_CHUNK_TOKENS = 16, 2048
MEASUREMENTS = 32  # recent steps the chunk size is taken from


def default_chunk_tokens(loaded: LoadedModel) -> int:
    """Prompt tokens per prefill chunk: a GPU runs a few hundred in about the time of one
    decoding step (both read all the weights once); a CPU computes each, so far fewer."""
    return 512 if str(loaded.device).startswith("cuda") else 32
