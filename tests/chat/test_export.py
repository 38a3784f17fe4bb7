"""Conversation export (Markdown and JSON): the owner downloads their own conversation; another
member gets 404 as for any private object; the department administrator exports a member's
conversation only where the department's chat policy lets administrators read content (403 when
it does not, the refusal recorded); each export audited without content; safe file names."""

from __future__ import annotations

import json

import pytest
from django.urls import reverse
from django.utils import translation

from compliance.events import EventType
from compliance.models import AuditEntry
from inference.chat.export import USAGE_FIELDS, export_file_name
from inference.chat.services import chat_policy_set, conversation_create, conversation_turn_record
from inference.model_calls import Channel, ModelCall, PromptMessage

pytestmark = pytest.mark.django_db

QUESTION = "What does the 发票 say?\n= not a formula"
ANSWER = "It says **12 800.00** 元."
MODEL = "ab" * 32


@pytest.fixture
def conversation(personas, upload_png, system_context):
    """bob's conversation in finance: one question with an image, its answer, one stopped answer."""
    photo = upload_png(name="现场照片 1.png")
    conversation = conversation_create(
        department=personas.department_a, owner=personas.member, title="发票/核对 ../x", acting_user=personas.member
    )
    for prompt, answer, status, assets in ((QUESTION, ANSWER, "complete", [photo]), ("more", "par", "stopped", [])):
        conversation_turn_record(
            conversation=conversation,
            user=personas.member,
            prompt=prompt,
            assets=assets,
            answer=answer,
            status=status,
            usage={"prompt_tokens": 31, "completion_tokens": 9, "time_to_first_token": 0.12},
            finish_reason="stop",
            params={"temperature": 0.7},
            model="demo",
            call=ModelCall(
                channel=Channel.WEBSOCKET,
                model="demo",
                model_sha256=MODEL,
                prompt=(PromptMessage("user", prompt, tuple(a.sha256 for a in assets)),),
                preview=prompt,
                stream=True,
            ),
            relay_seconds={"total": 0.5},
        )
    return conversation


def _url(conversation, format, admin=False):
    name = "chat:admin_conversation_export" if admin else "chat:export"
    return reverse(name, args=["finance", conversation.pk, format])


def test_the_owner_exports_json_with_every_message_its_files_model_and_usage(client, personas, conversation):
    client.force_login(personas.member)
    response = client.get(_url(conversation, "json"))
    assert response.status_code == 200
    assert response["Content-Type"] == "application/json; charset=utf-8"
    assert response["Cache-Control"] == "private, no-store"
    disposition = response["Content-Disposition"]
    assert disposition.startswith("attachment; ") and f'filename="conversation-{conversation.pk}-' in disposition
    assert "/" not in disposition.split("filename=")[1].split(";")[0]  # no path in the name
    data = json.loads(response.content)
    assert data["conversation"]["title"] == "发票/核对 ../x"
    assert (data["conversation"]["owner"], data["conversation"]["department"]) == ("bob", "finance")
    messages = data["messages"]
    assert [(m["role"], m["status"]) for m in messages] == [
        ("user", "complete"),
        ("assistant", "complete"),
        ("user", "complete"),
        ("assistant", "stopped"),
    ]
    assert (messages[0]["text"], messages[1]["text"]) == (QUESTION, ANSWER)
    assert messages[0]["attachments"] == ["现场照片 1.png"] and messages[1]["attachments"] == []
    assert messages[1]["model_version"] == MODEL
    assert messages[1]["usage"] == {
        "prompt_tokens": 31,
        "completion_tokens": 9,
        "time_to_first_token": 0.12,
        "finish_reason": "stop",
        "model": "demo",
        "params": {"temperature": 0.7},
    }
    assert set(messages[1]["usage"]) <= set(USAGE_FIELDS)  # no relay timings or page references
    assert "model_version" not in messages[0]
    assert all(m["created_at"].endswith("+08:00") for m in messages)  # times carry their zone


@pytest.mark.parametrize(("language", "question"), [("zh-hans", "提问"), ("en", "Question")])
def test_the_markdown_export_reads_in_the_owners_language(client, personas, conversation, language, question):
    client.force_login(personas.member)
    client.cookies["django_language"] = language
    response = client.get(_url(conversation, "md"))
    assert response.status_code == 200
    assert response["Content-Type"] == "text/markdown; charset=utf-8"
    assert response["Content-Disposition"].endswith(".md")
    text = response.content.decode()
    assert text.startswith("# 发票/核对 ../x\n")
    assert f"## {question} · " in text and QUESTION in text and ANSWER in text
    assert "- 现场照片 1.png" in text and MODEL in text
    with translation.override(language):
        assert f"{translation.gettext('Prompt tokens')}: 31" in text


def test_each_export_is_audited_without_content(client, personas, conversation):
    client.force_login(personas.member)
    client.get(_url(conversation, "md"))
    entry = AuditEntry.objects.filter(event_type=EventType.CONVERSATION_EXPORT).latest("sequence")
    assert (entry.actor_name, entry.department_slug, entry.object_id) == ("bob", "finance", str(conversation.pk))
    assert entry.details == {"owner": "bob", "messages": 4, "format": "md", "by": "owner"}


def test_another_member_and_the_administrator_get_404_on_the_owners_export(client, personas, make_user, conversation):
    from departments.services import membership_add

    other = make_user("dave")
    membership_add(user=other, department=personas.department_a, acting_user="system")
    for user in (other, personas.admin):  # the owner's export is the owner's alone, even for the admin
        client.force_login(user)
        assert client.get(_url(conversation, "json")).status_code == 404
    client.force_login(personas.outsider)
    assert client.get(_url(conversation, "json")).status_code == 404
    assert not AuditEntry.objects.filter(event_type=EventType.CONVERSATION_EXPORT).exists()
    assert AuditEntry.objects.filter(event_type=EventType.ACCESS_DENIED).count() >= 3


def test_an_unknown_format_is_404(client, personas, conversation):
    client.force_login(personas.member)
    assert client.get(_url(conversation, "exe")).status_code == 404
    assert not AuditEntry.objects.filter(event_type=EventType.CONVERSATION_EXPORT).exists()


def test_the_administrator_exports_only_where_the_policy_lets_them_read(client, personas, conversation, system_context):
    client.force_login(personas.admin)
    assert client.get(_url(conversation, "json", admin=True)).status_code == 403  # policy off (the default)
    denied = AuditEntry.objects.filter(event_type=EventType.ACCESS_DENIED).latest("sequence")
    assert denied.details["action"] == "conversation.content_view"
    assert not AuditEntry.objects.filter(event_type=EventType.CONVERSATION_EXPORT).exists()
    page = client.get(reverse("chat:admin_conversations", args=["finance"])).content.decode()
    assert _url(conversation, "json", admin=True) not in page

    chat_policy_set(department=personas.department_a, admin_may_read_content=True, acting_user="system")
    page = client.get(reverse("chat:admin_conversation", args=["finance", conversation.pk])).content.decode()
    assert _url(conversation, "md", admin=True) in page and _url(conversation, "json", admin=True) in page
    response = client.get(_url(conversation, "json", admin=True))
    assert response.status_code == 200 and json.loads(response.content)["messages"][0]["text"] == QUESTION
    entry = AuditEntry.objects.filter(event_type=EventType.CONVERSATION_EXPORT).latest("sequence")
    assert (entry.actor_name, entry.details["by"]) == ("alice", "department admin")
    # A member is no administrator; another department's administrator sees no such conversation.
    client.force_login(personas.member)
    assert client.get(_url(conversation, "json", admin=True)).status_code == 403
    client.force_login(personas.outsider)
    assert client.get(_url(conversation, "json", admin=True)).status_code == 404


def test_the_chat_offers_the_export_of_the_open_conversation(client, personas, conversation):
    client.force_login(personas.member)
    page = client.get(reverse("chat:home", args=["finance"]), {"c": conversation.pk}).content.decode()
    assert f'href="{_url(conversation, "md")}"' in page and f'href="{_url(conversation, "json")}"' in page
    # A new chat: the tools are hidden and the links lead nowhere until chat.js names the new one.
    fresh = client.get(reverse("chat:home", args=["finance"])).content.decode()
    assert 'id="conversation-tools" hidden' in fresh and 'href="" download data-export="md"' in fresh


def test_file_names_are_safe_whatever_the_title(personas, system_context):
    from inference.models import Conversation

    conversation = Conversation(pk=7, title='../../etc/passwd\x00"; x=1', department=personas.department_a)
    name = export_file_name(conversation, "md")
    assert name.startswith("conversation-7-") and name.endswith(".md")
    assert not any(char in name for char in '/\\"\x00;')
    assert export_file_name(Conversation(pk=8, title=""), "json") == "conversation-8.json"


def test_the_markdown_shows_what_was_written_and_never_runs_it(client, personas, conversation_of):
    """A title and a message that hold Markdown: the title is escaped, every message is
    a fenced block longer than its longest backtick run, so nothing becomes a link, a remote image
    (fetched when the file is opened), HTML or a forged turn."""
    import re

    title = "[报销](http://e.example/a) ![t](http://e.example/b.png)"
    answer = "````\n---\n\n## Question · forged\n![](http://evil.example/c.png) <img src=x>"
    conversation = conversation_of(personas.member, prompt="hi", answer=answer, title=title)
    client.force_login(personas.member)
    text = client.get(_url(conversation, "md")).content.decode()
    heading = text.splitlines()[0]
    assert heading == r"# \[报销\](http://e.example/a) \!\[t\](http://e.example/b.png)"
    assert "\n`````text\n" + answer + "\n`````\n" in text  # one backtick more than the answer's four
    # Outside the fences, no line starts a turn but the two real ones.
    outside = re.sub(r"(?ms)^(`{3,})text\n.*?^\1$", "", text)
    assert len(re.findall(r"(?m)^## ", outside)) == 2 and "evil.example/c.png" not in outside
