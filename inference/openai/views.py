"""The OpenAI-compatible endpoints: ``GET /v1/models`` and ``POST /v1/chat/completions``.

They work with the official ``openai`` client unchanged (``base_url=".../v1"``, the API key as
the client's key). Differences from the hosted service, all answered with OpenAI-shaped errors:
images come inline (``data:`` URLs) or as department files (``asset://<id>``) — remote URLs are
refused; one choice per request (``n`` = 1); no tools. Every call is audited through
``inference.model_calls`` (channel ``v1``): ``inference.call`` with the prompt's SHA-256, a masked
preview, token counts, latency and outcome; a stream writes ``inference.start`` first.
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from asgiref.sync import sync_to_async
from django.conf import settings
from django.http import Http404, StreamingHttpResponse
from drf_spectacular.utils import OpenApiResponse, extend_schema, inline_serializer
from rest_framework import exceptions, serializers
from rest_framework.response import Response

from accounts.permissions import Action
from assets.content import DecodeBusy
from assets.reading import AssetUnreadable
from compliance.context import current_request_context, request_context
from compliance.events import Outcome
from config.strict_json import StrictJSONParser
from departments.api_keys.authentication import ApiKeyView
from inference.engine.errors import EngineBusy, GenerationFailed, InferenceError, InvalidRequest, ModelUnavailable
from inference.engine.handles import Done, Error, Result, Token
from inference.engine.inputs import Message
from inference.engine.structured import SchemaInvalid, instruction_for, schema_check, structured_generate
from inference.image_budget import ImageBudget, ImageBudgetExceeded
from inference.model_calls import (
    Channel,
    ModelCall,
    ModelCallResult,
    PromptMessage,
    error_code,
    milliseconds,
    model_call_record,
    model_call_start_record,
    prompt_of,
)
from inference.openai.images import DecodedImages, ImageRefused, image_source_resolve
from inference.registry.selectors import model_infos_for_department
from inference.registry.services import ModelNotEnabled, ModelNotFound, VersionNotApproved, model_engine_for
from inference.runtime import require_engine

BODY_NOT_OBJECT = "The request body must be a JSON object."
FIELD_REQUIRED = "'{name}' is required."
FIELD_TYPE = "'{name}' must be {kind}."
MODEL_NOT_FOUND = "The model '{model}' does not exist on this server; GET /v1/models lists the models it serves."
ROLE_UNSUPPORTED = "Unsupported message role '{role}' (use system, user or assistant)."
PART_UNSUPPORTED = "Unsupported content part type '{type}' (use text or image_url)."
N_UNSUPPORTED = "Only n=1 is supported."
TOOLS_UNSUPPORTED = "Tools and function calling are not supported by this server."
RESPONSE_FORMAT_INVALID = "response_format.type must be text, json_object or json_schema (with json_schema.schema)."
RESPONSE_FORMAT_UNSATISFIED = (
    "The model did not produce output matching response_format after {attempts} attempts (last problem: {problem})."
)

_ROLES = {"system": "system", "developer": "system", "user": "user", "assistant": "assistant"}


class OpenAIError(Exception):
    def __init__(
        self,
        message: str,
        *,
        status: int = 400,
        type: str = "invalid_request_error",
        param: str | None = None,
        code: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.message, self.status, self.type, self.param, self.code = message, status, type, param, code
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}


def openai_error_from(exc: Exception) -> OpenAIError | None:
    """Map the engine's and DRF's exceptions to the OpenAI error shape and status."""
    if isinstance(exc, OpenAIError):
        return exc
    if isinstance(exc, ImageRefused):
        return OpenAIError(str(exc), status=exc.status, param="messages", code=exc.code)
    if isinstance(exc, ImageBudgetExceeded):
        return OpenAIError(str(exc), status=exc.status, param="messages", code=exc.code)
    if isinstance(exc, AssetUnreadable):
        return OpenAIError(str(exc), status=400, param="messages", code=exc.code)
    if isinstance(exc, DecodeBusy | EngineBusy):
        return OpenAIError(
            str(exc),
            status=429,
            type="rate_limit_error",
            code="decode_busy" if isinstance(exc, DecodeBusy) else "engine_busy",
            headers={"Retry-After": str(exc.retry_after)},
        )
    if isinstance(exc, InvalidRequest):
        return OpenAIError(str(exc), status=400, code="invalid_request")
    if isinstance(exc, ModelUnavailable):
        return OpenAIError(
            str(exc), status=503, type="server_error", code="model_unavailable", headers={"Retry-After": "5"}
        )
    if isinstance(exc, GenerationFailed):
        status = {"prompt_too_long": 400, "timeout": 504}.get(exc.code, 503)
        kind = "invalid_request_error" if status == 400 else "server_error"
        return OpenAIError(str(exc), status=status, type=kind, code=exc.code)
    if isinstance(exc, exceptions.Throttled):
        return OpenAIError(
            str(exc.detail),
            status=429,
            type="rate_limit_error",
            code="rate_limit_exceeded",
            headers={"Retry-After": str(int(exc.wait or 60))},
        )
    if isinstance(exc, exceptions.NotAuthenticated | exceptions.AuthenticationFailed):
        return OpenAIError(
            str(exc.detail), status=401, code="invalid_api_key", headers={"WWW-Authenticate": 'Bearer realm="api"'}
        )
    if isinstance(exc, exceptions.PermissionDenied):
        return OpenAIError(str(exc.detail), status=403, type="permission_error", code="insufficient_scope")
    if isinstance(exc, exceptions.NotFound | Http404):
        return OpenAIError(str(getattr(exc, "detail", exc)) or "Not found.", status=404, code="not_found")
    if isinstance(exc, exceptions.APIException):
        return OpenAIError(str(exc.detail), status=exc.status_code, code=exc.default_code)
    return None


class OpenAIView(ApiKeyView):
    parser_classes = [StrictJSONParser]

    def handle_exception(self, exc):
        error = openai_error_from(exc)
        if error is None:
            return super().handle_exception(exc)
        return Response(error.body(), status=error.status, headers=error.headers)


# --- schema components (documentation; the views validate by hand to answer OpenAI-shaped errors) ---

ErrorSerializer = inline_serializer(
    "OpenAIError",
    {
        "error": inline_serializer(
            "OpenAIErrorBody",
            {
                "message": serializers.CharField(),
                "type": serializers.CharField(),
                "param": serializers.CharField(allow_null=True),
                "code": serializers.CharField(allow_null=True),
            },
        )
    },
)
_ERRORS = {status: OpenApiResponse(ErrorSerializer) for status in (400, 401, 403, 404, 413, 422, 429, 503, 504)}

ModelSerializer = inline_serializer(
    "Model",
    {
        "id": serializers.CharField(),
        "object": serializers.CharField(),
        "created": serializers.IntegerField(),
        "owned_by": serializers.CharField(),
        "metadata": serializers.DictField(help_text="is_demo, label (shown for a demo model), family, quantization…"),
    },
)
ModelListSerializer = inline_serializer(
    "ModelList", {"object": serializers.CharField(), "data": ModelSerializer.__class__(many=True)}
)

ChatRequestSerializer = inline_serializer(
    "ChatCompletionCreate",
    {
        "model": serializers.CharField(),
        "messages": serializers.ListField(
            child=serializers.DictField(),
            help_text="OpenAI messages; content is a string or a list of {type: text} / {type: image_url, "
            "image_url: {url: 'data:image/png;base64,…' or 'asset://<id>'}} parts. http(s) URLs are refused.",
        ),
        "stream": serializers.BooleanField(required=False),
        "stream_options": serializers.DictField(required=False),
        "max_tokens": serializers.IntegerField(required=False, min_value=1),
        "max_completion_tokens": serializers.IntegerField(required=False, min_value=1),
        "temperature": serializers.FloatField(required=False, min_value=0, max_value=2),
        "top_p": serializers.FloatField(required=False, min_value=0, max_value=1),
        "stop": serializers.JSONField(required=False, help_text="A string or up to 4 strings."),
        "seed": serializers.IntegerField(required=False),
        "n": serializers.IntegerField(required=False),
        "response_format": serializers.DictField(
            required=False, help_text="{type: text | json_object | json_schema, json_schema: {name, schema}}"
        ),
    },
)
ChatResponseSerializer = inline_serializer(
    "ChatCompletion",
    {
        "id": serializers.CharField(),
        "object": serializers.CharField(),
        "created": serializers.IntegerField(),
        "model": serializers.CharField(),
        "choices": serializers.ListField(child=serializers.DictField()),
        "usage": serializers.DictField(),
        "pages": serializers.ListField(
            child=serializers.DictField(),
            help_text="The department PDF pages the model was shown: [{asset: <id>, page: n}] (not OpenAI's).",
        ),
    },
)


def _model_object(info) -> dict[str, Any]:
    return {
        "id": info.name,
        "object": "model",
        "created": 0,
        "owned_by": "platform",
        "metadata": {
            "is_demo": info.is_demo,
            "label": info.label,
            "family": info.family,
            "quantization": info.quantization,
            "device": info.device,
            "max_context": info.max_context,
            "max_new_tokens_cap": info.max_new_tokens_cap,
            "manifest_sha256": info.manifest_sha256,
        },
    }


def model_engine(view: ApiKeyView, requested: str):
    """The engine of the loaded model a request names, if the key's department may use it
    (docs/inference.md, "Several models at once"); each refusal is recorded as access.denied by
    the registry: no such model or not enabled → 404 ``model_not_found``, a version that is not
    approved → 403 ``model_not_approved``, approved and enabled but not loaded here → 503."""
    where = {"path": view.request.path, "method": view.request.method}
    try:
        return model_engine_for(
            subject=view.api_key, department=view.department, requested=requested, action=Action.API_CHAT, **where
        )
    except ModelNotFound as exc:
        raise OpenAIError(
            MODEL_NOT_FOUND.format(model=requested), status=404, param="model", code="model_not_found"
        ) from exc
    except ModelNotEnabled as exc:
        raise OpenAIError(str(exc), status=404, param="model", code="model_not_found") from exc
    except VersionNotApproved as exc:
        raise OpenAIError(
            str(exc), status=403, type="permission_error", param="model", code="model_not_approved"
        ) from exc


class ModelListView(OpenAIView):
    required_action = Action.API_CHAT

    @extend_schema(
        operation_id="listModels",
        summary="The loaded models the key's department may use (OpenAI format)",
        responses={200: ModelListSerializer, **_ERRORS},
    )
    def get(self, request):
        require_engine()  # 503 while the default model loads
        infos = model_infos_for_department(self.department)
        return Response({"object": "list", "data": [_model_object(info) for info in infos]})


class ModelDetailView(OpenAIView):
    required_action = Action.API_CHAT

    @extend_schema(
        operation_id="retrieveModel", summary="One model (OpenAI format)", responses={200: ModelSerializer, **_ERRORS}
    )
    def get(self, request, model_id: str):
        return Response(_model_object(model_engine(self, model_id).info()))


# --- request parsing ----------------------------------------------------------------------------


@dataclass
class ChatRequest:
    model: str
    messages: list[Message]
    stream: bool = False
    include_usage: bool = False
    params: dict[str, Any] = field(default_factory=dict)
    response_format: str = "text"
    schema: dict | None = None
    images: DecodedImages = field(default_factory=DecodedImages)
    prompt: tuple[PromptMessage, ...] = ()  # the messages as the audit's prompt hash sees them


def _require(body: dict, name: str, kind: type | tuple, description: str, *, required: bool = False) -> Any:
    value = body.get(name)
    if value is None:
        if required:
            raise OpenAIError(FIELD_REQUIRED.format(name=name), param=name, code="missing_required_parameter")
        return None
    if not isinstance(value, kind) or (kind is not bool and isinstance(value, bool)):
        raise OpenAIError(FIELD_TYPE.format(name=name, kind=description), param=name, code="invalid_type")
    return value


@dataclass
class _MessageShape:
    """A message as validated, its images still unresolved: ``(param, url)`` per image part."""

    role: str
    text: str
    images: list[tuple[str, Any]] = field(default_factory=list)


def _message_shape(raw: Any, index: int) -> _MessageShape:
    param = f"messages[{index}]"
    if not isinstance(raw, dict):
        raise OpenAIError(FIELD_TYPE.format(name=param, kind="an object"), param=param, code="invalid_type")
    role = _ROLES.get(raw.get("role"))
    if role is None:
        raise OpenAIError(ROLE_UNSUPPORTED.format(role=raw.get("role")), param=f"{param}.role", code="invalid_value")
    content = raw.get("content")
    if content is None or isinstance(content, str):
        return _MessageShape(role, content or "")
    if not isinstance(content, list):
        raise OpenAIError(
            FIELD_TYPE.format(name=f"{param}.content", kind="a string or a list of parts"),
            param=f"{param}.content",
            code="invalid_type",
        )
    texts, images = [], []
    for part_index, part in enumerate(content):
        part_param = f"{param}.content[{part_index}]"
        kind = part.get("type") if isinstance(part, dict) else None
        if kind == "text" and isinstance(part.get("text"), str):
            texts.append(part["text"])
        elif kind == "image_url":
            image_url = part.get("image_url")
            images.append((part_param, image_url.get("url") if isinstance(image_url, dict) else image_url))
        else:
            raise OpenAIError(PART_UNSUPPORTED.format(type=kind), param=part_param, code="invalid_value")
    return _MessageShape(role, "\n".join(texts), images)


def _image_call(param: str, call):
    """Run one step of an image's resolution or decoding, answering its refusals OpenAI-style."""
    try:
        return call()
    except ImageRefused as refused:
        raise OpenAIError(str(refused), status=refused.status, param=param, code=refused.code) from None
    except AssetUnreadable as unreadable:
        raise OpenAIError(str(unreadable), param=param, code=unreadable.code) from None


def _messages_with_images(shapes: list[_MessageShape], *, department, key, into: DecodedImages) -> list[Message]:
    """Every image of the request counted and costed before any is decoded (image_budget), then
    decoded in order. ``into`` collects the images' sources for the audit entry."""
    budget = ImageBudget()
    budget.refuse_count(sum(len(shape.images) for shape in shapes))
    sources = []
    last_user_text = next((shape.text for shape in reversed(shapes) if shape.role == "user"), "")
    for shape in shapes:
        # A PDF's pages are chosen by its own message's text (else the last user text).
        query = shape.text or last_user_text
        for param, url in shape.images:
            resolve = partial(
                image_source_resolve, url, department=department, actor=key, query=query, limit=budget.images_left
            )
            source = _image_call(param, resolve)
            budget.take(source.cost)
            sources.append((param, source))
    messages, position = [], 0
    for shape in shapes:
        images = []
        for param, source in sources[position : position + len(shape.images)]:
            images.extend(_image_call(param, source.decode))
            into.sha256.append(source.sha256)
            if source.asset_id is not None:
                into.asset_ids.append(source.asset_id)
            into.pages.extend(source.pages)
        position += len(shape.images)
        into.images.extend(images)
        messages.append(Message(shape.role, shape.text, images=tuple(images)))
    return messages


def chat_request_parse(body: Any, *, served_model: str, department, key) -> ChatRequest:
    if not isinstance(body, dict):
        raise OpenAIError(BODY_NOT_OBJECT, code="invalid_body")
    model = _require(body, "model", str, "a string", required=True)
    if model != served_model:  # the view chose the engine by this name (model_engine)
        raise OpenAIError(MODEL_NOT_FOUND.format(model=model), status=404, param="model", code="model_not_found")
    raw_messages = _require(body, "messages", list, "a list", required=True)
    if body.get("n") not in (None, 1):
        raise OpenAIError(N_UNSUPPORTED, param="n", code="unsupported_value")
    for name in ("tools", "functions", "tool_choice", "function_call"):
        if body.get(name):
            raise OpenAIError(TOOLS_UNSUPPORTED, param=name, code="unsupported_parameter")
    request = ChatRequest(model=model, messages=[])
    shapes = [_message_shape(raw, index) for index, raw in enumerate(raw_messages)]
    request.stream = bool(_require(body, "stream", bool, "a boolean"))
    options = _require(body, "stream_options", dict, "an object") or {}
    request.include_usage = bool(options.get("include_usage"))
    max_tokens = body.get("max_completion_tokens", body.get("max_tokens"))
    request.params = {
        "max_new_tokens": max_tokens,
        "temperature": body.get("temperature", 0.0) if body.get("temperature") is not None else 0.0,
        "top_p": body.get("top_p") if body.get("top_p") is not None else 1.0,
        "stop": body.get("stop"),
        "seed": body.get("seed"),
    }
    response_format = _require(body, "response_format", dict, "an object")
    if response_format is not None:
        kind = response_format.get("type")
        if kind == "json_schema":
            spec = response_format.get("json_schema")
            schema = spec.get("schema") if isinstance(spec, dict) else None
            try:
                request.schema = schema_check(schema).schema if schema is not None else None
            except SchemaInvalid as exc:
                raise OpenAIError(str(exc), param="response_format.json_schema.schema", code="invalid_schema") from None
            if request.schema is None:
                raise OpenAIError(RESPONSE_FORMAT_INVALID, param="response_format", code="invalid_value")
        elif kind not in ("text", "json_object"):
            raise OpenAIError(RESPONSE_FORMAT_INVALID, param="response_format", code="invalid_value")
        request.response_format = kind
    # The images last, once everything cheap to check is checked.
    request.messages = _messages_with_images(shapes, department=department, key=key, into=request.images)
    # Per message: the files its images came from (the audit's prompt hash names them).
    image_sha256: list[tuple[str, ...]] = []
    position = 0
    for shape in shapes:
        image_sha256.append(tuple(request.images.sha256[position : position + len(shape.images)]))
        position += len(shape.images)
    if request.response_format != "text":
        _add_instruction(request.messages, instruction_for(request.schema))
        if len(request.messages) > len(image_sha256):  # a system message was put first
            image_sha256.insert(0, ())
    request.prompt = prompt_of(request.messages, image_sha256)
    return request


def _add_instruction(messages: list[Message], instruction: str) -> None:
    if messages and messages[0].role == "system":
        first = messages[0]
        messages[0] = Message("system", f"{first.text}\n\n{instruction}".strip(), images=first.images)
    else:
        messages.insert(0, Message("system", instruction))


# --- the view -----------------------------------------------------------------------------------


def _sse(payload: dict[str, Any]) -> bytes:
    return b"data: " + json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode("utf-8") + b"\n\n"


class ChatCompletionsView(OpenAIView):
    required_action = Action.API_CHAT

    @extend_schema(
        operation_id="createChatCompletion",
        summary="Chat completion (OpenAI format; stream=true answers server-sent events ending with [DONE])",
        request=ChatRequestSerializer,
        responses={200: ChatResponseSerializer, **_ERRORS},
    )
    def post(self, request):
        key, department = self.api_key, self.department
        started = time.perf_counter()
        body = request.data  # parsed first: an oversized or malformed body is refused before anything else
        engine = require_engine()
        if isinstance(body, dict) and isinstance(body.get("model"), str):
            engine = model_engine(self, body["model"])  # routed by the request's model
        info = engine.info()
        chat = chat_request_parse(body, served_model=info.name, department=department, key=key)
        call = ModelCall(
            channel=Channel.V1,
            model=info.name,
            model_sha256=info.manifest_sha256,
            prompt=chat.prompt,
            preview=_last_user_text(chat.messages),
            params={k: v for k, v in chat.params.items() if v is not None},
            stream=chat.stream,
            response_format=chat.response_format,
            asset_ids=tuple(chat.images.asset_ids),
            pages=tuple(chat.images.pages),
        )
        audit = _AuditDraft(context=current_request_context(), department=department, call=call, started=started)
        request_id = getattr(request._request, "request_id", None)
        completion_id = f"chatcmpl-{request_id or int(time.time() * 1000)}"
        created = int(time.time())
        submit = dict(department=department.slug, request_id=request_id, **chat.params)
        try:
            if chat.response_format != "text":
                outcome = self._structured(engine, chat, submit, audit)
                text, finish, prompt_tokens, completion_tokens = outcome
                if chat.stream:
                    return self._stream_text(
                        completion_id, created, chat, text, finish, prompt_tokens, completion_tokens
                    )
                return Response(
                    _with_pages(
                        _completion_body(
                            completion_id, created, chat.model, text, finish, prompt_tokens, completion_tokens
                        ),
                        chat,
                    )
                )
            if chat.stream:
                # Before the first token leaves: if this entry cannot be written, nothing is sent
                # (AU-4). The inference.call entry with the outcome follows when the stream ends.
                model_call_start_record(call, department=department)
            handle = engine.submit(chat.messages, **submit)
        except Exception as exc:
            audit.record(outcome=Outcome.FAILURE, error=exc)
            raise
        if chat.stream:
            response = StreamingHttpResponse(
                _stream_events(handle, completion_id, created, chat, audit), content_type="text/event-stream"
            )
            response["Cache-Control"] = "no-cache"
            response["X-Accel-Buffering"] = "no"  # nginx: pass tokens on as they come
            return response
        try:
            result = handle.result()
        except GenerationFailed as exc:
            audit.record(outcome=Outcome.FAILURE, error=exc)
            raise
        audit.record(outcome=Outcome.SUCCESS, result=result)
        usage = result.usage
        return Response(
            _with_pages(
                _completion_body(
                    completion_id,
                    created,
                    chat.model,
                    result.text,
                    result.finish_reason,
                    usage.prompt_tokens if usage else 0,
                    usage.completion_tokens if usage else 0,
                ),
                chat,
            )
        )

    def _structured(self, engine, chat: ChatRequest, submit: dict, audit: _AuditDraft):
        def generate(messages: list[Message]) -> Result:
            return engine.submit(messages, **submit).result()

        outcome = structured_generate(
            chat.messages,
            generate=generate,
            schema=chat.schema,
            attempts=settings.STRUCTURED_OUTPUT_ATTEMPTS,
            require_object=chat.response_format == "json_object",
        )
        audit.structured = outcome  # counted in the entry even when the answer is refused
        if not outcome.valid:
            raise OpenAIError(
                RESPONSE_FORMAT_UNSATISFIED.format(attempts=outcome.attempts, problem=outcome.problems[-1]),
                status=422,
                param="response_format",
                code="response_format_unsatisfied",
            )
        audit.record(outcome=Outcome.SUCCESS, finish_reason=outcome.finish_reason)
        return outcome.text, outcome.finish_reason, outcome.prompt_tokens, outcome.completion_tokens

    def _stream_text(self, completion_id, created, chat, text, finish, prompt_tokens, completion_tokens):
        chunks = [
            _chunk(completion_id, created, chat.model, {"role": "assistant", "content": ""}),
            _chunk(completion_id, created, chat.model, {"content": text}),
            _with_pages(_chunk(completion_id, created, chat.model, {}, finish), chat),
        ]
        if chat.include_usage:
            chunks.append(_usage_chunk(completion_id, created, chat.model, prompt_tokens, completion_tokens))
        body = b"".join(_sse(chunk) for chunk in chunks) + b"data: [DONE]\n\n"
        return StreamingHttpResponse([body], content_type="text/event-stream")


def _last_user_text(messages: list[Message]) -> str:
    for message in reversed(messages):
        if message.role == "user":
            return message.text
    return ""


def _completion_body(completion_id, created, model, text, finish, prompt_tokens, completion_tokens) -> dict[str, Any]:
    return {
        "id": completion_id,
        "object": "chat.completion",
        "created": created,
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": text},
                "finish_reason": finish if finish in ("stop", "length") else "stop",
                "logprobs": None,
            }
        ],
        "usage": {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        },
    }


def _with_pages(body: dict[str, Any], chat: ChatRequest) -> dict[str, Any]:
    """The document pages the answer drew on, as an extra top-level field ``pages``
    ([{"asset": id, "page": n}], empty without a department PDF): OpenAI clients ignore it."""
    body["pages"] = list(chat.images.pages)
    return body


def _chunk(completion_id, created, model, delta, finish=None) -> dict[str, Any]:
    return {
        "id": completion_id,
        "object": "chat.completion.chunk",
        "created": created,
        "model": model,
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}],
    }


def _usage_chunk(completion_id, created, model, prompt_tokens, completion_tokens) -> dict[str, Any]:
    return {
        "id": completion_id,
        "object": "chat.completion.chunk",
        "created": created,
        "model": model,
        "choices": [],
        "usage": {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        },
    }


async def _stream_events(handle, completion_id, created, chat: ChatRequest, audit: _AuditDraft):
    """Tokens as OpenAI chunks while they are generated; ``data: [DONE]`` at the end. A client
    that goes away cancels the generation (leaving ``async for`` does)."""
    final = None
    try:
        yield _sse(_chunk(completion_id, created, chat.model, {"role": "assistant", "content": ""}))
        async for event in handle:
            if isinstance(event, Token):
                yield _sse(_chunk(completion_id, created, chat.model, {"content": event.text}))
            elif isinstance(event, Done):
                final = event
                finish = event.finish_reason if event.finish_reason in ("stop", "length") else "stop"
                yield _sse(_with_pages(_chunk(completion_id, created, chat.model, {}, finish), chat))
                if chat.include_usage:
                    usage = event.usage
                    yield _sse(
                        _usage_chunk(completion_id, created, chat.model, usage.prompt_tokens, usage.completion_tokens)
                    )
            elif isinstance(event, Error):
                final = event
                error = openai_error_from(GenerationFailed(event.message, event.code))
                yield _sse(error.body())
        yield b"data: [DONE]\n\n"
    finally:
        if isinstance(final, Done):
            kwargs = {"outcome": Outcome.SUCCESS, "done": final}
        elif isinstance(final, Error):
            kwargs = {"outcome": Outcome.FAILURE, "error": GenerationFailed(final.message, final.code)}
        else:
            kwargs = {"outcome": Outcome.FAILURE, "finish_reason": "cancelled", "stopped_by": "disconnect"}
        # Shielded: a cancelled stream (client gone) must still leave its audit entry.
        await asyncio.shield(sync_to_async(audit.record)(**kwargs))


@dataclass
class _AuditDraft:
    """The ``inference.call`` entry, written once the outcome is known (for a stream: at its end,
    outside the request's own context, hence the saved context)."""

    context: Any
    department: Any
    call: ModelCall
    started: float
    structured: Any = None  # the StructuredOutcome of a response_format call (attempts, tokens)
    written: bool = False

    def record(
        self,
        *,
        outcome: str,
        result: Result | None = None,
        done: Done | None = None,
        error: Exception | None = None,
        finish_reason: str | None = None,
        stopped_by: str = "",
    ) -> None:
        if self.written:
            return
        self.written = True
        usage = result.usage if result is not None else (done.usage if done is not None else None)
        finish = finish_reason or (result.finish_reason if result else (done.finish_reason if done else ""))
        # The model was asked once, unless the engine refused the request (busy, loading, invalid).
        attempts = 0 if error is not None and not isinstance(error, GenerationFailed) else 1
        prompt_tokens = usage.prompt_tokens if usage is not None else None
        completion_tokens = usage.completion_tokens if usage is not None else None
        structured = self.structured
        if structured is not None:  # a response_format call: every attempt counts
            attempts, finish = structured.attempts, finish or structured.finish_reason
            prompt_tokens, completion_tokens = structured.prompt_tokens, structured.completion_tokens
            usage = structured.results[0].usage if structured.results else None
        call_result = ModelCallResult(
            outcome=outcome,
            latency_ms=milliseconds(time.perf_counter() - self.started),
            finish_reason=finish or ("error" if error is not None and attempts else ""),
            prompt_tokens=prompt_tokens,
            completion_tokens=completion_tokens,
            time_to_first_token_ms=milliseconds(usage.time_to_first_token) if usage is not None else None,
            attempts=attempts,
            stopped_by=stopped_by,
            error=error_code(error) if error is not None else "",
        )
        if self.context is not None and current_request_context() is None:
            with request_context(self.context):
                model_call_record(self.call, call_result, department=self.department)
        else:
            model_call_record(self.call, call_result, department=self.department)


__all__ = ["ChatCompletionsView", "InferenceError", "ModelDetailView", "ModelListView", "OpenAIError"]
