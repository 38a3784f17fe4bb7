"""A conversation as a file: Markdown for people, JSON for programs (docs/chat.md, "Export").

Both hold the title, then every message with its role, time (ISO 8601 with the platform's time
zone), status and text, the names of its attached files, and, for an answer, the model version
(manifest SHA-256) and its usage figures. Attached files themselves are not included: they are
the department's files, downloaded from the files page by whoever may.

The Markdown's labels are in the reader's language; the JSON's keys are fixed (a format).
"""

from __future__ import annotations

import json
import re
import unicodedata
from dataclasses import dataclass
from typing import Any

from django.utils import timezone
from django.utils.translation import gettext as _

from inference.models import Conversation, ConversationMessage, MessageRole

FORMATS = ("md", "json")
FORMAT_VERSION = 1
# The generation figures of an answer that an export carries (the rest of ``usage`` is the
# server's own bookkeeping: relay timings, page references).
USAGE_FIELDS = (
    "prompt_tokens",
    "completion_tokens",
    "total_tokens",
    "time_to_first_token",
    "tokens_per_second",
    "finish_reason",
    "model",
    "params",
    "error",
)
_NAME_UNSAFE = re.compile(r"[^\w\- ]+")
_NAME_MAX = 60


@dataclass(frozen=True)
class ConversationFile:
    name: str
    content: str
    content_type: str


def _time(value) -> str:
    return timezone.localtime(value).isoformat(timespec="seconds")


def _usage(message: ConversationMessage) -> dict[str, Any]:
    usage = message.usage if isinstance(message.usage, dict) else {}
    return {name: usage[name] for name in USAGE_FIELDS if name in usage}


def conversation_export_data(*, conversation: Conversation, messages: list[ConversationMessage]) -> dict[str, Any]:
    """The export as plain data (the JSON file, and what the Markdown is written from)."""
    return {
        "format": "conversation-export",
        "format_version": FORMAT_VERSION,
        "exported_at": _time(timezone.now()),
        "conversation": {
            "id": conversation.pk,
            "title": conversation.title,
            "department": conversation.department.slug,
            "owner": conversation.owner.get_username(),
            "created_at": _time(conversation.created_at),
            "updated_at": _time(conversation.updated_at),
        },
        "messages": [
            {
                "role": message.role,
                "status": message.status,
                "created_at": _time(message.created_at),
                "text": message.content,
                "attachments": [asset.original_name for asset in message.assets.all()],
                **(
                    {"model_version": message.model_sha256, "usage": _usage(message)}
                    if message.role == MessageRole.ASSISTANT
                    else {}
                ),
            }
            for message in messages
        ],
    }


_MARKDOWN_ACTIVE = re.compile(r"([\\`*_\[\]<>!|~#])")
_BACKTICK_RUNS = re.compile(r"`+")


def _inline(text: Any) -> str:
    """A name or title as plain text on one Markdown line: what would start a link, an image (a
    remote fetch when the file is opened), HTML or emphasis is escaped, line breaks become spaces."""
    return _MARKDOWN_ACTIVE.sub(r"\\\1", " ".join(str(text).split()))


def _fenced(text: str) -> list[str]:
    """A message as a code block whose fence is longer than any run of backticks in it: what the
    model or a person wrote is shown as written, never read as links, images, HTML or headings
    (a message could otherwise forge another turn of the conversation)."""
    longest = max((len(run) for run in _BACKTICK_RUNS.findall(text)), default=0)
    fence = "`" * max(3, longest + 1)
    return [f"{fence}text", text, fence]


def _markdown(data: dict[str, Any]) -> str:
    conversation = data["conversation"]
    lines = [
        f"# {_inline(conversation['title'] or _('Untitled'))}",
        "",
        f"- {_('Department')}: {_inline(conversation['department'])}",
        f"- {_('Owner')}: {_inline(conversation['owner'])}",
        f"- {_('Created')}: {conversation['created_at']}",
        f"- {_('Last activity')}: {conversation['updated_at']}",
        f"- {_('Exported')}: {data['exported_at']}",
        "",
    ]
    roles = {MessageRole.USER: _("Question"), MessageRole.ASSISTANT: _("Answer")}
    for message in data["messages"]:
        lines += ["---", "", f"## {roles.get(message['role'], message['role'])} · {message['created_at']}", ""]
        if message["status"] != "complete":
            lines += [f"*{_('Status')}: {message['status']}*", ""]
        lines += [*_fenced(message["text"] or ""), ""]
        if message["attachments"]:
            lines.append(f"{_('Attachments')}:")
            lines += [f"- {_inline(name)}" for name in message["attachments"]]
            lines.append("")
        if message["role"] == MessageRole.ASSISTANT:
            usage = message["usage"]
            figures = [
                f"{_('Model version')}: {message['model_version'] or '—'}",
                f"{_('Prompt tokens')}: {usage.get('prompt_tokens', '—')}",
                f"{_('Completion tokens')}: {usage.get('completion_tokens', '—')}",
            ]
            lines += [f"> {' · '.join(figures)}", ""]
    return "\n".join(lines)


def export_file_name(conversation: Conversation, format: str) -> str:
    """``conversation-<id>-<title>.<format>``: the title made safe for any file system (the
    header's ASCII fallback is made by ``assets.names.content_disposition``)."""
    title = unicodedata.normalize("NFC", conversation.title or "")
    title = _NAME_UNSAFE.sub("_", title).strip(" _-")[:_NAME_MAX].strip()
    return f"conversation-{conversation.pk}{'-' + title if title else ''}.{format}"


def conversation_export(
    *, conversation: Conversation, messages: list[ConversationMessage], format: str
) -> ConversationFile:
    if format not in FORMATS:
        raise ValueError(f"unknown export format {format!r}")
    data = conversation_export_data(conversation=conversation, messages=messages)
    if format == "json":
        content = json.dumps(data, ensure_ascii=False, indent=2) + "\n"
        content_type = "application/json; charset=utf-8"
    else:
        content = _markdown(data)
        content_type = "text/markdown; charset=utf-8"
    return ConversationFile(export_file_name(conversation, format), content, content_type)
