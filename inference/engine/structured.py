"""JSON answers the caller can rely on: parse, validate against a JSON schema, and ask again.

Used by ``response_format`` in ``/v1/chat/completions`` and by structured extraction. A small
model does not always answer with valid JSON; instead of constrained decoding (which the engine
does not offer) the answer is checked with ``jsonschema`` and, when it fails, the model is shown
its answer and the error and asked again, at most ``attempts`` times
(the callers pass the ``STRUCTURED_OUTPUT_ATTEMPTS`` setting). The
follow-up turn changes the prompt, so even greedy decoding gets a genuinely new try.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError

from inference.engine.handles import Result
from inference.engine.inputs import Message

SCHEMA_INVALID = "The JSON schema is not valid: {error}"
NOT_JSON = "the answer is not JSON: {error}"
NOT_OBJECT = "the answer must be a JSON object"
SCHEMA_MISMATCH = "the answer does not match the schema at {path}: {error}"
RETRY_PROMPT = (
    "Your previous answer was rejected because {problem}. Answer again with only the JSON value, "
    "no explanation and no code fence."
)
SCHEMA_INSTRUCTION = "Answer with only a JSON value that matches this JSON schema:\n{schema}"
OBJECT_INSTRUCTION = "Answer with only a JSON object."

_FENCE = re.compile(r"\A\s*```(?:json)?\s*(.*?)\s*```\s*\Z", re.DOTALL | re.IGNORECASE)


class SchemaInvalid(ValueError):
    pass


def schema_check(schema: Any) -> Draft202012Validator:
    if not isinstance(schema, dict):
        raise SchemaInvalid(SCHEMA_INVALID.format(error="a schema must be a JSON object"))
    try:
        Draft202012Validator.check_schema(schema)
    except SchemaError as exc:
        raise SchemaInvalid(SCHEMA_INVALID.format(error=exc.message)) from None
    return Draft202012Validator(schema)


def answer_check(text: str, *, validator: Draft202012Validator | None, require_object: bool) -> tuple[Any, str]:
    """(value, "") when the answer is acceptable, else (None, the problem in words)."""
    fenced = _FENCE.match(text)
    candidate = fenced.group(1) if fenced else text.strip()
    try:
        value = json.loads(candidate)
    except ValueError as exc:
        return None, NOT_JSON.format(error=exc)
    if require_object and not isinstance(value, dict):
        return None, NOT_OBJECT
    if validator is not None:
        error = next(iter(sorted(validator.iter_errors(value), key=lambda e: list(e.path))), None)
        if error is not None:
            path = "/" + "/".join(str(part) for part in error.absolute_path)
            return None, SCHEMA_MISMATCH.format(path=path, error=error.message[:300])
    return value, ""


@dataclass
class StructuredOutcome:
    value: Any = None
    text: str = ""
    valid: bool = False
    attempts: int = 0
    problems: list[str] = field(default_factory=list)
    results: list[Result] = field(default_factory=list)

    @property
    def prompt_tokens(self) -> int:
        return sum(r.usage.prompt_tokens for r in self.results if r.usage)

    @property
    def completion_tokens(self) -> int:
        return sum(r.usage.completion_tokens for r in self.results if r.usage)

    @property
    def finish_reason(self) -> str:
        return self.results[-1].finish_reason if self.results else "stop"


def structured_generate(
    messages: list[Message],
    *,
    generate: Callable[[list[Message]], Result],
    schema: dict | None,
    attempts: int,
    require_object: bool = True,
) -> StructuredOutcome:
    """Call ``generate`` (which submits ``messages`` to the engine and waits) until the answer
    validates or ``attempts`` answers were rejected (callers pass ``STRUCTURED_OUTPUT_ATTEMPTS``).
    The schema must have been checked by the caller."""
    validator = Draft202012Validator(schema) if schema is not None else None
    outcome = StructuredOutcome()
    conversation = list(messages)
    for _attempt in range(attempts):
        result = generate(conversation)
        outcome.results.append(result)
        outcome.attempts += 1
        outcome.text = result.text
        value, problem = answer_check(result.text, validator=validator, require_object=require_object)
        if not problem:
            outcome.value, outcome.valid = value, True
            return outcome
        outcome.problems.append(problem)
        conversation = [
            *conversation,
            Message("assistant", result.text or "(empty)"),
            Message("user", RETRY_PROMPT.format(problem=problem)),
        ]
    return outcome


def instruction_for(schema: dict | None) -> str:
    if schema is None:
        return OBJECT_INSTRUCTION
    return SCHEMA_INSTRUCTION.format(schema=json.dumps(schema, ensure_ascii=False, separators=(",", ":")))
