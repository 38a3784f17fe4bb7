"""The department portal's chat pages under ``/d/<slug>/`` (the middleware has checked membership
and opened the department scope before any of these run).

The chat itself runs over the websocket (``inference.chat.consumer``); these views render the page,
rename and delete conversations, report the model's status, take chat uploads, and give the
department administrator the conversation metadata, the content when the policy allows it, and
the task templates.
"""

from __future__ import annotations

from django.contrib import messages
from django.core.exceptions import ValidationError
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseNotAllowed, JsonResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.translation import gettext as _
from django.views.decorators.csrf import csrf_exempt, csrf_protect
from django.views.decorators.http import require_GET, require_POST

from accounts.activity import background
from accounts.permissions import Action, allowed, authorize_request, department_object_get, requires
from assets.models import Asset
from assets.names import content_disposition
from assets.selectors import asset_list
from assets.uploads import RequestUpload
from compliance.events import EventType
from compliance.services import audit_record
from inference.chat import protocol
from inference.chat.export import FORMATS as EXPORT_FORMATS
from inference.chat.export import conversation_export
from inference.chat.forms import ConversationRenameForm, TaskTemplateForm
from inference.chat.selectors import (
    chat_policy_admin_may_read,
    conversation_get_for_owner,
    conversation_list_for_admin,
    conversation_list_for_owner,
    conversation_messages,
    task_template_list,
    task_template_list_active,
)
from inference.chat.services import chat_upload_mark, conversation_delete, conversation_rename
from inference.extraction.forms import operator_choices, rule_rows_from_post, rule_rows_from_rules, rules_from_rows
from inference.extraction.services import task_template_rules_set, templates_builtin_ensure
from inference.extraction.templates import task_template_create, task_template_delete, task_template_update
from inference.models import TaskTemplate
from inference.registry.selectors import model_infos_for_department
from inference.runtime import current_engine, engines_loaded

PICKER_FILES = 24


@requires(Action.CHAT)
@require_GET
def chat_home(request: HttpRequest, department_slug: str) -> HttpResponse:
    department = request.department
    conversations = list(conversation_list_for_owner(department=department, user=request.user)[:200])
    current = None
    history = []
    if request.GET.get("c"):
        current = conversation_get_for_owner(
            department=department, user=request.user, conversation_id=request.GET["c"], purpose="view"
        )
        history = list(conversation_messages(conversation=current))
    engine = current_engine()
    models = model_infos_for_department(department)
    files = [a for a in asset_list(department=department)[:PICKER_FILES]]
    templates_builtin_ensure(department=department)  # the built-in chips, there from the start
    templates = list(task_template_list_active(department=department))
    return render(
        request,
        "inference/chat.html",
        {
            "department": department,
            "membership": request.membership,
            "conversations": conversations,
            "current": current,
            "history": history,
            "files": files,
            "templates": templates,
            "model_info": engine.info() if engine is not None else None,
            # The selector: the loaded models the department may use (shown when there are several),
            # the conversation's own model chosen (remembered by its answers' model version).
            "model_choices": models,
            "model_chosen": _model_chosen(models, history),
            "limits": {
                "max_text_chars": protocol.MAX_TEXT_CHARS,
                "max_assets": protocol.MAX_ASSETS_PER_TURN,
            },
            "rename_form": ConversationRenameForm(initial={"title": current.title if current else ""}),
            "is_department_admin": allowed(
                request.user, Action.CONVERSATION_VIEW_ANY, department=department, membership=request.membership
            ),
            "chat_texts": chat_texts(),
        },
    )


def _model_chosen(models: list, history: list) -> str:
    """The name of the model that last answered in this conversation, if it is still a choice;
    else the department's default (the first choice)."""
    by_sha256 = {info.manifest_sha256: info.name for info in models}
    for message in reversed(history):
        name = by_sha256.get(getattr(message, "model_sha256", None) or "")
        if name:
            return name
    return models[0].name if models else ""


def chat_texts() -> dict[str, str]:
    """The translated texts chat.js shows (handed over with json_script: no inline script)."""
    return {
        "connected": _("Connected."),
        "connecting": _("Connecting…"),
        "disconnected": _("Disconnected. Reconnecting…"),
        "session_ended": _("Your session has ended. Please sign in again."),
        "access_revoked": _("Your access to this department has changed. Reload the page."),
        "stopped": _("Stopped"),
        "failed": _("Failed"),
        "queued": _("Waiting for the model: position {position} in the queue"),
        "thinking": _("The model is answering…"),
        "uploading": _("Uploading {name}…"),
        "upload_failed": _("Upload refused: {detail}"),
        "too_many_files": _("At most {limit} files per question."),
        "remove": _("Remove"),
        "untitled": _("Untitled"),
        "usage": _("{tokens} tokens · {tps} tokens/s · {seconds} s"),
        "model_version": _("model version {version}"),
        "loading": _("The model is loading…"),
        "queue": _("{depth} waiting ({here} from this department)"),
        "active": _("{active} of {max}"),
        "gpu_memory": _("GPU memory"),
        "gpu_load": _("GPU temperature / load"),
        "host_memory": _("Host memory"),
        "host_load": _("Machine CPU (all processes)"),
        "error": _("Error: {message}"),
        "error_rate_limited": _("Too many questions in a minute; try again in {retry_after} s."),
        "error_busy": _("The model is busy; try again in {retry_after} s."),
        "error_model_not_enabled": _("Your department's administrator has not enabled this model."),
        "error_model_not_approved": _(
            "This model version is not approved: the security administrator approves a version before it can be used."
        ),
        "error_model_not_found": _("This model does not exist on this server."),
        "error_model_unavailable": _("The model is not available right now."),
        "error_not_found": _("That conversation or file is not available."),
        "error_turn_in_progress": _("Wait for the current answer, or stop it."),
        "error_timeout": _("The answer took too long and was stopped."),
        "error_out_of_memory": _("The model ran out of memory; try fewer images or fewer tokens."),
        "error_prompt_too_long": _("The conversation is too long for the model; start a new one."),
        "error_unreadable_file": _(
            "A file of this question could not be read: it is damaged. Remove it and try again."
        ),
        "error_too_many_pixels": _("These images are too large to read together; send fewer or smaller images."),
    }


def _owned(request: HttpRequest, conversation_id: int, purpose: str):
    return conversation_get_for_owner(
        department=request.department, user=request.user, conversation_id=conversation_id, purpose=purpose
    )


@requires(Action.CONVERSATION_OWN)
@require_POST
def conversation_rename_view(request: HttpRequest, department_slug: str, conversation_id: int) -> HttpResponse:
    conversation = _owned(request, conversation_id, "rename")
    form = ConversationRenameForm(request.POST)
    if form.is_valid():
        conversation_rename(conversation=conversation, title=form.cleaned_data["title"], acting_user=request.user)
        messages.success(request, _("Conversation renamed."))
    else:
        messages.error(request, _("A title has at most 200 characters."))
    return redirect(f"{reverse('chat:home', args=[department_slug])}?c={conversation.pk}")


@requires(Action.CONVERSATION_OWN)
@require_POST
def conversation_delete_view(request: HttpRequest, department_slug: str, conversation_id: int) -> HttpResponse:
    conversation = _owned(request, conversation_id, "delete")
    conversation_delete(conversation=conversation, acting_user=request.user)
    messages.success(request, _("Conversation deleted."))
    return redirect("chat:home", department_slug=department_slug)


@background
@requires(Action.CHAT)
@require_GET
def chat_status(request: HttpRequest, department_slug: str) -> JsonResponse:
    """The status panel's figures, polled by chat.js: a background poll, never activity. With
    ``?model=<name>``: that loaded model's, if the department may use it (else the default's)."""
    engine = current_engine()
    if engine is None:  # loading (the first chat turn or /readyz starts it) or failed
        return JsonResponse({"ready": False})
    chosen = request.GET.get("model", "")
    if chosen and chosen != engine.info().name:
        usable = {info.name for info in model_infos_for_department(request.department)}
        engine = next((e for e in engines_loaded() if e.info().name == chosen and chosen in usable), engine)
    stats = engine.stats()
    model = stats["model"]
    payload = {
        "ready": True,
        "model": {key: model[key] for key in ("name", "family", "quantization", "device", "is_demo", "label")},
        "queue_depth": stats["queue_depth"],
        "queue_here": stats["queue_by_department"].get(request.department.slug, 0),
        "active_generations": stats["active_generations"],
        "max_concurrent_generations": stats["max_concurrent_generations"],
        "tokens_per_second": stats["tokens_per_second"],
        "device": stats.get("device", {}),
    }
    return JsonResponse(payload, json_dumps_params={"ensure_ascii": False})


@csrf_exempt  # CSRF is checked by _chat_upload, after the encrypting upload handler is in place
@requires(Action.ASSET_UPLOAD)
def chat_upload(request: HttpRequest, department_slug: str) -> HttpResponse:
    """The assets upload path (validated, hashed, encrypted, audited there), each stored file
    remembered as uploaded for the chat so that deleting or expiring the conversation removes it."""
    if request.method != "POST":
        return HttpResponseNotAllowed(["POST"])
    with RequestUpload(request) as upload:  # before anything (the CSRF check) reads the body
        return _chat_upload(request, upload)


@csrf_protect
def _chat_upload(request: HttpRequest, upload: RequestUpload) -> JsonResponse:
    department = request.department
    result = upload.store(department=department, uploaded_by=request.user)
    for item in result.stored:
        # Every stored file is this uploader's own reference (also when its bytes were stored
        # already): deleting the conversation removes that reference, never another upload.
        chat_upload_mark(department=department, asset=item.asset)

    def links(asset: Asset) -> dict[str, str]:
        return {
            "url": reverse("assets:detail", args=[department.slug, asset.pk]),
            "thumbnail": reverse("assets:thumbnail", args=[department.slug, asset.pk]),
        }

    payload = result.as_dict(links)
    return JsonResponse(
        payload, status=result.status, headers=result.headers, json_dumps_params={"ensure_ascii": False}
    )


def _export_response(request: HttpRequest, conversation, *, format: str, by: str) -> HttpResponse:
    """The conversation as a Markdown or JSON download, its export recorded (never its content)."""
    if format not in EXPORT_FORMATS:
        raise Http404(_("Unknown export format."))
    history = list(conversation_messages(conversation=conversation))
    exported = conversation_export(conversation=conversation, messages=history, format=format)
    audit_record(
        event_type=EventType.CONVERSATION_EXPORT,
        department=request.department,
        obj=conversation,
        object_repr=f"conversation {conversation.pk}",
        details={"owner": conversation.owner.get_username(), "messages": len(history), "format": format, "by": by},
    )
    response = HttpResponse(exported.content, content_type=exported.content_type)
    response["Content-Disposition"] = content_disposition(exported.name)
    response["Cache-Control"] = "private, no-store"
    response["X-Content-Type-Options"] = "nosniff"
    return response


@requires(Action.CONVERSATION_EXPORT)
@require_GET
def conversation_export_view(
    request: HttpRequest, department_slug: str, conversation_id: int, format: str
) -> HttpResponse:
    """One's own conversation (another member's answers 404, as for any private object)."""
    conversation = _owned(request, conversation_id, "export")
    authorize_request(request, Action.CONVERSATION_EXPORT, owner_id=conversation.owner_id, obj=conversation)
    return _export_response(request, conversation, format=format, by="owner")


# --- the department administrator ---------------------------------------------------------------


@requires(Action.CONVERSATION_VIEW_ANY)
@require_GET
def admin_conversations(request: HttpRequest, department_slug: str) -> HttpResponse:
    return render(
        request,
        "inference/admin_conversations.html",
        {
            "department": request.department,
            "conversations": conversation_list_for_admin(department=request.department)[:500],
            "may_read": chat_policy_admin_may_read(department=request.department),
        },
    )


def _member_conversation_readable(request: HttpRequest, conversation_id: int):
    """A member's conversation of the department (404, recorded, otherwise) whose content the
    department administrator may read: only where the department's chat policy allows it (403,
    recorded, otherwise)."""
    conversation = department_object_get(
        request,
        conversation_list_for_admin(department=request.department),
        conversation_id,
        action=Action.CONVERSATION_CONTENT_VIEW,
        noun="conversation",
    )
    authorize_request(request, Action.CONVERSATION_CONTENT_VIEW, obj=conversation)
    return conversation


@requires(Action.CONVERSATION_VIEW_ANY)
@require_GET
def admin_conversation(request: HttpRequest, department_slug: str, conversation_id: int) -> HttpResponse:
    conversation = _member_conversation_readable(request, conversation_id)
    history = list(conversation_messages(conversation=conversation))
    audit_record(
        event_type=EventType.CONVERSATION_VIEW,
        department=request.department,
        obj=conversation,
        object_repr=f"conversation {conversation.pk}",
        details={"owner": conversation.owner.get_username(), "messages": len(history), "by": "department admin"},
    )
    return render(
        request,
        "inference/admin_conversation.html",
        {"department": request.department, "conversation": conversation, "history": history},
    )


@requires(Action.CONVERSATION_VIEW_ANY)
@require_GET
def admin_conversation_export(
    request: HttpRequest, department_slug: str, conversation_id: int, format: str
) -> HttpResponse:
    """A member's conversation, for the department administrator: only where the department's
    chat policy lets administrators read content (as the conversation's page)."""
    conversation = _member_conversation_readable(request, conversation_id)
    return _export_response(request, conversation, format=format, by="department admin")


@requires(Action.TASK_TEMPLATE_MANAGE)
def template_list(request: HttpRequest, department_slug: str) -> HttpResponse:
    templates_builtin_ensure(department=request.department)  # the built-in ones, visible from the start
    form = TaskTemplateForm(request.POST if request.method == "POST" else None)
    rule_rows = rule_rows_from_post(request.POST) if request.method == "POST" else []
    if request.method == "POST":

        def create(**fields):
            return task_template_create(department=request.department, acting_user=request.user, **fields)

        saved = _template_save(request, form, rule_rows, create)
        if saved is not None:
            return saved
    return _template_page(
        request,
        "inference/templates.html",
        form,
        rule_rows,
        templates=task_template_list(department=request.department),
    )


def _template_save(request: HttpRequest, form, rule_rows, save) -> HttpResponse | None:
    """Save the posted template (``save(**fields)`` creates or updates it) and its rules: the
    redirect to the list, or None to show the form again with each problem beside its field/row."""
    rules, rules_usable = rules_from_rows(rule_rows)
    if not (form.is_valid() and rules_usable):
        return None
    try:
        template = save(**form.cleaned_data)
        task_template_rules_set(template=template, rules=rules, acting_user=request.user)
    except ValidationError as error:
        form.add_error(None, error)
        return None
    messages.success(request, _("Template saved."))
    return redirect("chat:templates", department_slug=request.department.slug)


def _template_page(request: HttpRequest, page: str, form, rule_rows, **context) -> HttpResponse:
    return render(
        request,
        page,
        {
            "department": request.department,
            "form": form,
            "rules_editor": {"rows": rule_rows, "operators": operator_choices()},
            **context,
        },
    )


def _template(request: HttpRequest, template_id: int) -> TaskTemplate:
    template = department_object_get(
        request,
        task_template_list(department=request.department),
        template_id,
        action=Action.TASK_TEMPLATE_MANAGE,
        noun="task template",
    )
    return template


@requires(Action.TASK_TEMPLATE_MANAGE)
def template_edit(request: HttpRequest, department_slug: str, template_id: int) -> HttpResponse:
    template = _template(request, template_id)
    form = TaskTemplateForm(request.POST if request.method == "POST" else None, template=template)
    # The extraction rules, edited as rows; each row's problems are shown beside it.
    rule_rows = rule_rows_from_post(request.POST) if request.method == "POST" else rule_rows_from_rules(template.rules)
    if request.method == "POST":

        def update(**fields):
            return task_template_update(template=template, acting_user=request.user, **fields)

        saved = _template_save(request, form, rule_rows, update)
        if saved is not None:
            return saved
    return _template_page(request, "inference/template_edit.html", form, rule_rows, template=template)


@requires(Action.TASK_TEMPLATE_MANAGE)
@require_POST
def template_delete(request: HttpRequest, department_slug: str, template_id: int) -> HttpResponse:
    template = _template(request, template_id)
    try:
        task_template_delete(template=template, acting_user=request.user)
    except ValidationError as error:
        messages.error(request, " ".join(error.messages))
    else:
        messages.success(request, _("Template deleted."))
    return redirect("chat:templates", department_slug=department_slug)
