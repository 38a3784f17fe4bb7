"""The department chat over a websocket: ``/ws/d/<slug>/chat/`` (docs/chat.md).

Connect: an authenticated, live session (``SessionBoundConsumerMixin``: the user's group, closed on
``session.terminate``), an active membership of the department. Origins are checked by
``AllowedHostsOriginValidator`` around the whole websocket stack (config/asgi.py).

Every received frame re-checks the session and the membership (a user disabled, removed or
demoted since the handshake is disconnected); only ``turn.start`` counts as activity, never a
ping or a stop frame. A watchdog repeats both checks while the socket is quiet, so an idle socket
closes when the session's idle time runs out, even while it is pinged.

One turn at a time per socket: validated (``inference.chat.protocol``), rate limited per user, the
conversation's history and images gathered, submitted to the engine, tokens relayed as they come.
``turn.stop`` cancels generation, and so does the client going away. The turn — complete, stopped
or failed — is stored and audited in one transaction
(``inference.chat.services.conversation_turn_record``).
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from dataclasses import asdict, dataclass, field
from typing import Any

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncWebsocketConsumer
from django.conf import settings
from django.db import DatabaseError

from accounts.login_policy import current_policy
from accounts.permissions import Action, allowed, decide, refusal_record
from accounts.websocket import CLOSE_SESSION_ENDED, SessionBoundConsumerMixin
from assets.content import MODEL_PAGES_PER_FILE, DecodeBusy
from assets.reading import AssetUnreadable
from compliance.context import RequestContext, request_context
from compliance.middleware import client_address
from compliance.services import AuditWriteError
from departments.models import Membership
from departments.tenancy import department_scope
from inference.chat import protocol
from inference.chat.rate_limits import chat_turn_admit
from inference.chat.selectors import (
    ConversationNotFound,
    conversation_get_for_owner,
    conversation_history,
    task_template_list_active,
)
from inference.chat.services import (
    conversation_turn_record,
    inference_refusal_record,
    inference_start_record,
    template_model_text,
)
from inference.engine.core import ModelInfo
from inference.engine.errors import EngineBusy, InferenceError, InvalidRequest, ModelUnavailable
from inference.engine.handles import Done, Error, GenerationHandle, Queued, Token
from inference.engine.inputs import MAX_IMAGES, Message
from inference.image_budget import ImageBudget, ImageBudgetExceeded
from inference.model_calls import Channel, ModelCall, PromptMessage, prompt_of
from inference.models import Conversation, MessageStatus
from inference.registry.selectors import model_infos_for_department
from inference.registry.services import ModelNotEnabled, ModelNotFound, VersionNotApproved, model_engine_for
from inference.runtime import current_engine, require_engine

logger = logging.getLogger(__name__)

CLOSE_ACCESS_REVOKED = 4403  # no longer a member (removed, demoted, department closed)


class TemplateNotFound(protocol.ProtocolError):
    """The turn names a task template that is not active in the department (audited)."""


# Refusals of a prepared turn's files, audited as inference.call with the code as its error.
_REFUSED_BEFORE_THE_MODEL = frozenset(
    {protocol.CODE_TOO_MANY_PIXELS, protocol.CODE_TOO_MANY_IMAGES, protocol.CODE_UNREADABLE_FILE, protocol.CODE_BUSY}
)
MAX_PDF_PAGES_PER_FILE = MODEL_PAGES_PER_FILE  # what the model sees of a PDF unless more pages are pinned
MAX_IMAGES_PER_FILE = MAX_IMAGES  # pinned pages: at most the engine's image count
STORE_TIMEOUT_SECONDS = 60


@dataclass
class Prepared:
    conversation: Conversation | None  # None: a new conversation, created when the turn is stored
    assets: list[Any]
    messages: list[Message]
    image_sha256: list[tuple[str, ...]]  # per message: the files its images came from
    call: ModelCall | None = None  # what is submitted to the model, as audited
    engine: Any = None  # the engine of the model the turn goes to (the named one, or the default)
    # The PDF pages the turn's own files sent ([{"asset": id, "page": n}]): recorded in the
    # answer's usage and in the audit entry (assets.documents.model_pages).
    pages: list[dict] = field(default_factory=list)


@dataclass
class Turn:
    request: protocol.TurnStart
    prepared: Prepared
    handle: GenerationHandle
    request_id: str
    started: float
    params: dict[str, Any]
    model: str
    stop_reason: str = ""  # "stop" (the button), "disconnect", "access revoked"
    parts: list[str] = field(default_factory=list)
    first_token_at: float | None = None


def _pages_drawn(answered) -> dict[str, list[int]]:
    """The pages an earlier answer recorded per file ({asset id: [page, …]})."""
    drawn: dict[str, list[int]] = {}
    usage = getattr(answered, "usage", None)
    for ref in (usage or {}).get("pages", ()) if isinstance(usage, dict) else ():
        if isinstance(ref, dict) and isinstance(ref.get("page"), int):
            drawn.setdefault(str(ref.get("asset")), []).append(ref["page"])
    return drawn


def _headers(scope: dict) -> dict[str, str]:
    return {name.decode("latin-1").lower(): value.decode("latin-1") for name, value in scope.get("headers", [])}


class ChatConsumer(SessionBoundConsumerMixin, AsyncWebsocketConsumer):
    required_action = Action.CHAT  # the policy layer's action this route is bound to
    # How often a quiet socket re-checks its session and membership (tests shorten it).
    watchdog_seconds: float | None = None

    # --- lifecycle ------------------------------------------------------------------------------
    async def connect(self) -> None:
        self.closed = False
        self.turn: Turn | None = None
        self.turn_task: asyncio.Task | None = None
        self.watchdog: asyncio.Task | None = None
        self.user = self.scope.get("user")
        self.slug = str(self.scope["url_route"]["kwargs"].get("department_slug", ""))[:50]
        headers = _headers(self.scope)
        client = self.scope.get("client") or (None, None)
        self.source_ip = client_address(
            {"REMOTE_ADDR": client[0] or "", "HTTP_X_FORWARDED_FOR": headers.get("x-forwarded-for", "")}
        )
        self.user_agent = headers.get("user-agent", "")[:512]
        self.connection_id = uuid.uuid4().hex
        if not await self.session_join():
            if not (self.user is not None and self.user.is_authenticated):
                await database_sync_to_async(self._refusal_record)("not signed in")
            await self.close()
            return
        membership = await database_sync_to_async(self._membership_on_connect)()
        if membership is None:
            await self.session_leave()
            await self.close()
            return
        self.department = membership.department
        self.department_id = membership.department_id
        self.role = membership.role
        await self.accept()
        await self.send(text_data=await database_sync_to_async(self._hello)())
        self.watchdog = asyncio.ensure_future(self._watch())

    async def disconnect(self, code: int) -> None:
        self.closed = True
        if self.watchdog is not None:
            self.watchdog.cancel()
        await self._finish_turn("disconnect")
        await self.session_leave()

    async def close(self, code: int | bool | None = None, reason: str | None = None) -> None:
        # Whoever closes (session ended, access revoked), a running turn stops with it.
        if self.turn is not None and not self.turn.stop_reason:
            self.turn.stop_reason = "closed by the server"
            self.turn.handle.cancel()
        await super().close(code=code, reason=reason)

    async def _finish_turn(self, reason: str) -> None:
        turn, task = self.turn, self.turn_task
        if turn is None or task is None or task.done():
            return
        turn.stop_reason = turn.stop_reason or reason
        turn.handle.cancel()
        try:
            # The relay stores the partial turn; shielded so that the store survives our own end.
            await asyncio.wait_for(asyncio.shield(task), STORE_TIMEOUT_SECONDS)
        except (TimeoutError, asyncio.CancelledError):
            logger.error("chat turn %s did not finish storing in time", turn.request_id)

    def _context(self, request_id: str | None = None) -> RequestContext:
        return RequestContext(
            request_id=request_id or self.connection_id,
            source_ip=self.source_ip,
            user_agent=self.user_agent,
            user=self.user,
        )

    # --- access ---------------------------------------------------------------------------------
    def _membership_query(self):
        return Membership.objects.filter(
            user_id=self.user.pk, user__is_active=True, department__slug=self.slug, department__is_active=True
        ).select_related("department")

    def _membership_on_connect(self) -> Membership | None:
        membership = self._membership_query().first()
        department = membership.department if membership is not None else None
        decision = decide(self.user, self.required_action, department=department, membership=membership)
        if not decision:
            self._refusal_record(decision.reason)
            return None
        return membership

    def _refusal_record(self, reason: str) -> None:
        with request_context(self._context()):
            refusal_record(
                action=self.required_action,
                reason=reason,
                actor=self.user if self.user is not None and self.user.is_authenticated else None,
                object_type="departments.department",
                object_repr=self.slug,
                path=self.scope.get("path", ""),
                method="WEBSOCKET",
            )

    def _gate(self, touch: bool) -> int | None:
        """The close code if the socket must end now, else None (runs on a database thread).

        The session (logged out, idle, too old; ``touch``: the frame was a turn, which counts as
        activity) and the membership: any change since the handshake (removed, demoted,
        department or user disabled) ends the socket, and the person reconnects to be checked
        afresh.
        """
        if self._session_check(touch):
            return CLOSE_SESSION_ENDED
        # Any change of the membership since the handshake (removed, role changed, department or
        # user disabled) ends the socket; the person reconnects and is decided afresh.
        membership = self._membership_query().filter(role=self.role).first()
        if membership is None or not allowed(self.user, self.required_action, membership=membership):
            return CLOSE_ACCESS_REVOKED
        return None

    async def _checks_pass(self, *, touch: bool) -> bool:
        code = await database_sync_to_async(self._gate)(touch)
        if code is not None:
            await self.close(code=code)
            return False
        return True

    async def _watch(self) -> None:
        interval = self.watchdog_seconds or max(5.0, min(60.0, settings.SESSION_IDLE_SECONDS / 10))
        try:
            while not self.closed:
                await asyncio.sleep(interval)
                if self.closed or not await self._checks_pass(touch=False):
                    return
        except asyncio.CancelledError:
            pass
        except Exception:  # a failing check must not leave an unchecked socket open
            logger.exception("chat watchdog failed; closing the socket")
            await self.close(code=1011)

    # --- frames ---------------------------------------------------------------------------------
    async def _send_frame(self, frame: str) -> None:
        if not self.closed:
            try:
                await self.send(text_data=frame)
            except Exception:  # the socket went away between the check and the send
                self.closed = True

    async def _error(self, code: str, message: str, **fields: Any) -> None:
        await self._send_frame(protocol.error_frame(code, message, **fields))

    def _hello(self) -> str:
        # The loaded models this department may use, its default (where a turn naming none goes)
        # first; none while the default model loads, or when the department may use none of them.
        models = model_infos_for_department(self.department) if current_engine() is not None else []
        return protocol.server_frame(
            "hello",
            department=self.slug,
            model=models[0].as_dict() if models else None,
            models=[info.as_dict() for info in models],
            limits={
                "max_text_chars": protocol.MAX_TEXT_CHARS,
                "max_assets": protocol.MAX_ASSETS_PER_TURN,
                "max_frame_bytes": protocol.MAX_FRAME_BYTES,
                "max_new_tokens_cap": settings.MAX_NEW_TOKENS_CAP,
                "default_max_new_tokens": settings.DEFAULT_MAX_NEW_TOKENS,
                "turns_per_minute": settings.CHAT_TURNS_PER_MINUTE,
                "idle_seconds": current_policy().session_idle_seconds,
            },
        )

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        if self.closed:
            return
        received = time.perf_counter()
        try:
            frame = protocol.parse_client_frame(text_data, max_new_tokens_cap=settings.MAX_NEW_TOKENS_CAP)
        except protocol.ProtocolError as problem:
            if await self._checks_pass(touch=False):
                await self._error(problem.code, str(problem))
            return
        if frame.type == "turn.start":
            # Sending a turn is activity (accounts.activity): _start checks with touch=True.
            # The access checks run in the same database round trip as the turn's preparation.
            await self._start(frame.turn, received)
            return
        # Pings and stop frames are checked, but keep no session alive (accounts.activity).
        if not await self._checks_pass(touch=False):
            return
        if frame.type == "ping":
            await self._send_frame(protocol.server_frame("pong"))
        elif frame.type == "turn.stop":
            if self.turn is None or self.turn_task is None or self.turn_task.done():
                await self._error(protocol.CODE_NO_TURN, protocol.NO_TURN_RUNNING)
            else:
                self.turn.stop_reason = self.turn.stop_reason or "stop"
                self.turn.handle.cancel()

    # --- a turn ---------------------------------------------------------------------------------
    async def _start(self, request: protocol.TurnStart, received: float) -> None:
        if self.turn_task is not None and not self.turn_task.done():
            if await self._checks_pass(touch=True):
                await self._error(protocol.CODE_TURN_IN_PROGRESS, protocol.TURN_IN_PROGRESS)
            return
        request_id = uuid.uuid4().hex
        try:
            engine = require_engine()
        except ModelUnavailable as exc:
            if await self._checks_pass(touch=True):
                await self._refuse(request, request_id, protocol.CODE_MODEL_UNAVAILABLE, str(exc))
            return
        # One database round trip before the model starts: access checks, rate limit, history,
        # and the audit entry of the start. If that entry cannot be written, the turn does not
        # start (AU-4): an error frame, nothing streamed.
        try:
            outcome = await database_sync_to_async(self._begin)(request, request_id, engine.info())
        except (AuditWriteError, DatabaseError):
            logger.exception("chat turn %s not started: its audit entry could not be written", request_id)
            await self._error(protocol.CODE_INTERNAL, protocol.INTERNAL_ERROR, ref=request.ref)
            return
        if isinstance(outcome, int):
            await self.close(code=outcome)
            return
        if isinstance(outcome, protocol.ProtocolError):
            await self._error(outcome.code, str(outcome), ref=request.ref, **outcome.fields)
            return
        prepared = outcome
        engine = prepared.engine or engine  # the model the turn named, or the department's default
        params = {"temperature": request.temperature, "max_new_tokens": request.max_new_tokens}
        try:
            handle = engine.submit(
                prepared.messages,
                department=self.slug,
                max_new_tokens=request.max_new_tokens,
                temperature=request.temperature,
                request_id=request_id,
            )
        except EngineBusy as exc:
            await self._refuse(
                request, request_id, protocol.CODE_BUSY, str(exc), call=prepared.call, retry_after=exc.retry_after
            )
            return
        except InvalidRequest as exc:
            await self._refuse(request, request_id, protocol.CODE_INVALID_REQUEST, str(exc), call=prepared.call)
            return
        except InferenceError as exc:
            await self._refuse(request, request_id, protocol.CODE_MODEL_UNAVAILABLE, str(exc), call=prepared.call)
            return
        self.turn = Turn(
            request=request,
            prepared=prepared,
            handle=handle,
            request_id=request_id,
            started=received,
            params=params,
            model=engine.info().name,
        )
        conversation = prepared.conversation
        self.turn_task = asyncio.ensure_future(self._relay(self.turn))
        await self._send_frame(
            protocol.server_frame(
                "turn.accepted",
                ref=request.ref,
                request_id=request_id,
                conversation=conversation.pk if conversation else None,
                title=conversation.title if conversation else "",
                created=conversation is None,
            )
        )

    def _model_call(
        self, request: protocol.TurnStart, info: ModelInfo | None, prepared: Prepared | None = None
    ) -> ModelCall:
        """The turn's model call as audited; before the turn is prepared (a refusal) its prompt
        is the new message alone, since its files and history were not read."""
        if prepared is not None:
            prompt = prompt_of(prepared.messages, prepared.image_sha256)
        else:
            prompt = (PromptMessage("user", request.text),)
        return ModelCall(
            channel=Channel.WEBSOCKET,
            model=info.name if info is not None else "",
            model_sha256=info.manifest_sha256 if info is not None else "",
            prompt=prompt,
            preview=request.text,
            params={"temperature": request.temperature, "max_new_tokens": request.max_new_tokens},
            stream=True,
            asset_ids=tuple(str(asset.pk) for asset in prepared.assets) if prepared is not None else (),
            pages=tuple(prepared.pages) if prepared is not None else (),
        )

    def _begin(
        self, request: protocol.TurnStart, request_id: str, info: ModelInfo
    ) -> int | protocol.ProtocolError | Prepared:
        """Close code, refusal, or the prepared turn."""
        code = self._gate(True)
        if code is not None:
            return code
        retry_after = chat_turn_admit(user=self.user, limit=settings.CHAT_TURNS_PER_MINUTE)
        if retry_after:
            with request_context(self._context(request_id)):
                inference_refusal_record(
                    department=self.department,
                    user=self.user,
                    reason="rate_limited",
                    call=self._model_call(request, info),
                )
            limit = settings.CHAT_TURNS_PER_MINUTE
            return protocol.ProtocolError(
                protocol.RATE_LIMITED.format(limit=limit, retry_after=retry_after),
                protocol.CODE_RATE_LIMITED,
                retry_after=retry_after,
            )
        try:
            # The model the turn names (or the department's default): only a loaded one the
            # department's administrator enabled (each refusal recorded by the registry).
            with request_context(self._context(request_id)):
                engine = model_engine_for(
                    subject=self.user, department=self.department, requested=request.model, action=Action.CHAT
                )
        except ModelNotEnabled as refused:
            return protocol.ProtocolError(str(refused), protocol.CODE_MODEL_NOT_ENABLED)
        except VersionNotApproved as refused:
            return protocol.ProtocolError(str(refused), protocol.CODE_MODEL_NOT_APPROVED)
        except ModelNotFound as refused:
            return protocol.ProtocolError(str(refused), protocol.CODE_MODEL_NOT_FOUND)
        except ModelUnavailable as refused:  # not loaded here (recorded), or still loading
            return protocol.ProtocolError(str(refused), protocol.CODE_MODEL_UNAVAILABLE)
        info = engine.info()
        try:
            prepared = self._prepare(request, request_id)
        except ConversationNotFound:
            return protocol.ProtocolError(protocol.CONVERSATION_NOT_FOUND, protocol.CODE_NOT_FOUND)
        except protocol.ProtocolError as problem:
            if problem.code in _REFUSED_BEFORE_THE_MODEL or isinstance(problem, TemplateNotFound):
                # The turn's files (or its template) cannot be used: refused like a busy engine, audited.
                with request_context(self._context(request_id)):
                    inference_refusal_record(
                        department=self.department,
                        user=self.user,
                        reason="template_not_found" if isinstance(problem, TemplateNotFound) else problem.code,
                        call=self._model_call(request, info),
                    )
            return problem  # (a file id not in this department was recorded by asset_get)
        prepared.call = self._model_call(request, info, prepared)
        prepared.engine = engine
        # Before the first token leaves: if this entry cannot be written, nothing is sent (AU-4).
        with request_context(self._context(request_id)):
            inference_start_record(
                department=self.department, user=self.user, call=prepared.call, conversation=prepared.conversation
            )
        return prepared

    async def _refuse(
        self,
        request: protocol.TurnStart,
        request_id: str,
        code: str,
        message: str,
        *,
        call: ModelCall | None = None,
        **fields,
    ) -> None:
        def record() -> None:
            with request_context(self._context(request_id)):
                inference_refusal_record(
                    department=self.department,
                    user=self.user,
                    reason=code,
                    call=call or self._model_call(request, None),
                )

        await database_sync_to_async(record)()
        await self._error(code, message, ref=request.ref, **fields)

    def _prepare(self, request: protocol.TurnStart, request_id: str) -> Prepared:
        from assets.selectors import AssetNotFound, asset_get

        with request_context(self._context(request_id)), department_scope(self.department_id):
            department = self.department
            model_text = self._model_text(request)  # an unknown template is refused before any file is read
            assets = []
            for asset_id in request.asset_ids:
                try:
                    assets.append(asset_get(department=department, asset_id=asset_id, actor=self.user, purpose="chat"))
                except AssetNotFound:  # audited by asset_get; the same answer for every refusal
                    raise protocol.ProtocolError(protocol.FILE_NOT_FOUND, protocol.CODE_NOT_FOUND) from None
            if request.conversation_id is None:
                # Created with the turn's record, in its transaction: a turn that never reaches
                # the model leaves no empty conversation behind.
                conversation = None
                history = []
            else:
                conversation = conversation_get_for_owner(
                    department=department, user=self.user, conversation_id=request.conversation_id, purpose="chat"
                )
                history = conversation_history(conversation=conversation, turns=settings.CHAT_HISTORY_TURNS)
            try:
                return self._prepare_images(request, model_text, assets, conversation, history)
            except ImageBudgetExceeded as over:
                raise protocol.ProtocolError(str(over), over.code) from None
            except AssetUnreadable as unreadable:
                raise protocol.ProtocolError(str(unreadable), protocol.CODE_UNREADABLE_FILE) from None
            except DecodeBusy as busy:
                raise protocol.ProtocolError(str(busy), protocol.CODE_BUSY, retry_after=busy.retry_after) from None

    def _model_text(self, request: protocol.TurnStart) -> str:
        """The turn's text as the model gets it: with its task template's schema, if it names one
        (looked up in this department: an unknown or inactive one is refused)."""
        if not request.template:
            return request.text
        template = task_template_list_active(department=self.department).filter(slug=request.template).first()
        if template is None:
            raise TemplateNotFound(protocol.TEMPLATE_NOT_FOUND, protocol.CODE_NOT_FOUND)
        return template_model_text(template, request.text)

    def _prepare_images(
        self, request: protocol.TurnStart, model_text: str, assets: list, conversation, history
    ) -> Prepared:
        """The turn's images and the history's, counted and costed from the files' stored sizes
        before any is decoded (inference.image_budget): the turn's own files must fit. A PDF
        sends the pages the question pins or is about (assets.documents.model_pages: pinned,
        then BM25 over its text layer, else its first pages), within the image count; earlier
        turns' files send again the pages their answers drew on, newest first, while both the
        count and the pixels last, and older ones travel as text."""
        from assets.documents.model_pages import (
            page_refs,
            pages_choose,
            pages_cost,
            pages_images,
            pages_recorded,
            pages_unusable,
        )

        budget = ImageBudget()
        query = request.text or model_text
        current: list[tuple[Any, Any]] = []  # (asset, the pages to decode)
        for asset in assets:
            choice = pages_choose(
                asset, query, limit=min(budget.images_left, MAX_IMAGES_PER_FILE), per_file=MAX_PDF_PAGES_PER_FILE
            )
            if choice.pages:
                budget.take(pages_cost(asset, choice))  # refuses the turn
                current.append((asset, choice))
        earlier_plans: list[tuple[Any, list[tuple[Any, Any]]]] = []  # newest first
        for asked, answered in reversed(history):
            plan = []
            drawn = _pages_drawn(answered)
            for asset in asked.assets.all():
                choice = pages_recorded(asset, drawn.get(str(asset.pk), ()), limit=budget.images_left)
                cost = pages_cost(asset, choice)
                if not choice.pages or not budget.fits(cost):
                    break
                if pages_unusable(asset, choice) is None:  # a damaged earlier file stays out
                    budget.take(cost)
                    plan.append((asset, choice))
            earlier_plans.append(((asked, answered), plan))
        current_images, current_sha256 = [], []
        for asset, choice in current:
            images = pages_images(asset, choice)
            current_images.extend(images)
            current_sha256 += [asset.sha256] if images else []
        earlier: list[Message] = []
        earlier_sha256: list[tuple[str, ...]] = []  # the audit's prompt hash names each image's file
        for (asked, answered), plan in earlier_plans:
            images, sha256 = [], []
            for asset, choice in plan:
                try:
                    decoded = pages_images(asset, choice)
                except AssetUnreadable:  # now marked unusable; the earlier image stays out
                    continue
                images.extend(decoded)
                sha256 += [asset.sha256] if decoded else []
            if not asked.content and not images:  # nothing left to send of that question
                continue
            pair = [Message("user", asked.content, images=tuple(images))]
            # An answer may be empty (stopped before its first token, or the model ended at once):
            # the question still travels; an empty message would be refused by the engine.
            pair += [Message("assistant", answered.content)] if answered.content else []
            earlier[:0] = pair
            earlier_sha256[:0] = [tuple(sha256), ()][: len(pair)]
        messages = [*earlier, Message("user", model_text, images=tuple(current_images))]
        image_sha256 = [*earlier_sha256, tuple(current_sha256)]
        pages = [ref for asset, choice in current for ref in page_refs(asset, choice)]
        return Prepared(
            conversation=conversation, assets=assets, messages=messages, image_sha256=image_sha256, pages=pages
        )

    async def _relay(self, turn: Turn) -> None:
        final: Done | Error | None = None
        try:
            async for event in turn.handle:
                if isinstance(event, Token):
                    if turn.first_token_at is None:
                        turn.first_token_at = time.perf_counter()
                    turn.parts.append(event.text)
                    await self._send_frame(protocol.server_frame("token", text=event.text))
                elif isinstance(event, Queued):
                    await self._send_frame(protocol.server_frame("queued", position=event.position))
                else:
                    final = event
        except asyncio.CancelledError:
            turn.stop_reason = turn.stop_reason or "cancelled"
            await asyncio.shield(self._store(turn, None))
            raise
        except Exception:
            logger.exception("chat relay of %s failed", turn.request_id)
        await self._store(turn, final)

    async def _store(self, turn: Turn, final: Done | Error | None) -> None:
        usage: dict[str, Any] = {}
        error_code = ""
        if isinstance(final, Done):
            usage = {**asdict(final.usage), "total_tokens": final.usage.total_tokens}
            finish_reason = final.finish_reason
            status = MessageStatus.STOPPED if finish_reason == "cancelled" else MessageStatus.COMPLETE
        elif isinstance(final, Error):
            finish_reason, status, error_code = "error", MessageStatus.FAILED, final.code
        else:
            finish_reason, status, error_code = "cancelled", MessageStatus.FAILED, "relay_interrupted"
        if turn.prepared.pages:  # the pages the answer drew on (shown under it as thumbnails)
            usage["pages"] = turn.prepared.pages
        now = time.perf_counter()
        submitted = turn.handle.submitted_at
        # Where the time went, for the relay benchmark and the curious: before the model (checks,
        # rate limit, history, images), the engine until its first text, and end to end.
        relay = {
            "accept": round(submitted - turn.started, 6),
            "first_text": round(turn.first_token_at - submitted, 6) if turn.first_token_at else None,
            "total": round(now - turn.started, 6),
        }
        answer = "".join(turn.parts)

        def store():
            with request_context(self._context(turn.request_id)):
                return conversation_turn_record(
                    conversation=turn.prepared.conversation,
                    department=self.department,
                    user=self.user,
                    prompt=turn.request.text,
                    assets=turn.prepared.assets,
                    answer=answer,
                    status=status,
                    usage=usage,
                    finish_reason=finish_reason,
                    params={**turn.params, **({"stopped_by": turn.stop_reason} if turn.stop_reason else {})},
                    model=turn.model,
                    call=turn.prepared.call,
                    error_code=error_code,
                    stopped_by=turn.stop_reason if finish_reason == "cancelled" else "",
                    relay_seconds=relay,
                )

        try:
            asked, answered = await database_sync_to_async(store)()
        except Exception:
            logger.exception("could not store chat turn %s", turn.request_id)
            await self._error(protocol.CODE_INTERNAL, protocol.INTERNAL_ERROR, ref=turn.request.ref)
            return
        if isinstance(final, Error):
            await self._error(
                final.code,
                final.message,
                ref=turn.request.ref,
                message_id=answered.pk,
                conversation=asked.conversation_id,
            )
            return
        await self._send_frame(
            protocol.server_frame(
                "done",
                ref=turn.request.ref,
                request_id=turn.request_id,
                conversation=asked.conversation_id,
                title=asked.conversation.title,
                status=status,
                finish_reason=finish_reason,
                usage=usage,
                relay=relay,
                message_ids=[asked.pk, answered.pk],
                model_sha256=answered.model_sha256 or "",
            )
        )
