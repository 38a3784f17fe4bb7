"""Every page, for every role that may see it, speaks one language: no English words in the
``zh-hans`` rendering outside a short reviewed allow-list, and no Chinese in the ``en`` rendering.

The pages are not a hand-picked list: the test walks the URL resolver (includes, the admin
console's model pages and the department pages alike) and fills each route's parameters from the
fixture's objects, whose names are language-neutral ("d1", "u3", numbers), so whatever words a
page shows come from the code and the templates, not from the data.

Which routes and responses are checked, by rule:

- roles: a route bound to an administration action is requested by the three administrators
  (signed in with their authenticator, from an administration network); any other non-public
  route by a department member and by the department administrator; a public route anonymously;
- only GET is sent: a route that needs POST answers 405 and is skipped, as is any response that is
  not ``text/html`` (JSON, CSV, files, the API and its schema) and any redirect;
- a page a role may not see renders the styled 403/404 page, and that page is checked too;
- the visible text is what a reader sees: tag text (not scripts, styles or templates) plus the
  ``title``, ``placeholder``, ``aria-label`` and ``alt`` attributes and the label of submit
  buttons; the content of ``code``/``kbd``/``samp``/``pre`` is data (keys, hashes, JSON details);
- identifiers are not words: tokens with a digit, a slash, ``@``, ``*`` or ``_``, options
  (``--write``) and dotted names (``manage.py``, ``auth.login``);
- pages whose text belongs to other work are listed in ``OWNED_ELSEWHERE``, and words whose source
  lies outside this work in ``KNOWN_GAPS``, each with where it comes from.

The console's actions (POST) and the trail's whole vocabulary are checked by the tests below it.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from html.parser import HTMLParser

import pytest
from django.contrib import admin
from django.test import Client
from django.urls import reverse

from accounts.permissions import POLICY, Action
from accounts.roles import AdminRole, MembershipRole
from tests.accounts.conftest import sign_in_with_totp
from tests.assets.samples import image_bytes
from tests.support.routes import routes

pytestmark = pytest.mark.django_db

LANGUAGES = ("zh-hans", "en")

# Words allowed in the Chinese pages, reviewed: names of products, standards and formats, units
# and abbreviations that Chinese readers use as they are.
ALLOWED_IN_CHINESE = {
    # the other language's own name, in the language switch; the product's name (多模态 AI 平台)
    *"English AI".split(),
    # products, protocols, formats and standards, as Chinese readers write them
    *"API REST OpenAI JSON JSONL CSV XLSX PDF PNG JPEG WebP WEBP BMP GIF TIFF DICOM HTML HTTP HTTPS URL".split(),
    *"LDAP AD DN TOTP OTP SHA AES GCM UTC IP ID OCR GPU CPU Django Markdown OpenAPI UUID NF token".split(),
    # authenticator apps named on the two-factor page; the office-automation (OA) systems of the API
    *"Google Authenticator FreeOTP OA".split(),
    # keys of the keyboard (the chat's hint) and units
    *"Enter Shift B KB MB GB px s ms".split(),
}

# Text allowed in the English pages: the other language's own name in the language switch, and
# the official Chinese names of the classification levels, shown beside the English ones on
# purpose ("Internal (内部)": departments.models.Classification).
ALLOWED_CJK_IN_ENGLISH = {"简体中文", "公开", "内部", "秘密", "机密"}

# Pages whose text belongs to other work, not checked here (path prefix: why). Each is a gap
# that work must close; it is listed, not silently skipped.
OWNED_ELSEWHERE = {
    "/compliance/report/": "the compliance report's own translation belongs to the compliance issue",
    "/api/docs/": "Swagger UI's own interface is English; its title is SPECTACULAR_SETTINGS in config/settings",
}

# Words still shown in English on a page, each a known gap in code outside this work (path prefix:
# the words, and where they come from). Remove an entry when its source is translated.
KNOWN_GAPS: dict[str, tuple[set[str], str]] = {}

ENGLISH_WORD = re.compile(r"[A-Za-z][A-Za-z'’-]*[A-Za-z]|[A-Za-z]")
TOKEN = re.compile(r"[\w.:/@*+-]+")
# Ideographs, CJK punctuation and the full-width punctuation of Chinese prose (not symbols like ＋).
CJK = re.compile(r"[\u3400-\u9fff\uf900-\ufaff\u3000-\u303f\uff01\uff08\uff09\uff0c\uff1a\uff1b\uff1f]+")
SEEN_ATTRIBUTES = {"title", "placeholder", "aria-label", "alt"}
INVISIBLE = {"script", "style", "template", "noscript"}
# Data, not prose: one-time keys, hashes, JSON details, code samples.
DATA = {"code", "kbd", "samp", "pre"}
# Django's admin hard-codes the alt text of its own icons ("True", "False", "Search" in
# admin_list._boolean_icon and admin/search_form.html): beside the icon, in every language.
DJANGO_ICONS = "/admin/img/"


class VisibleText(HTMLParser):
    """The text a reader sees on a page, as a list of strings."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self._hidden = 0

    def handle_starttag(self, tag, attrs):
        if tag in INVISIBLE | DATA:
            self._hidden += 1
        values = dict(attrs)
        if tag == "img" and DJANGO_ICONS in (values.get("src") or ""):
            values.pop("alt", None)
        for name in SEEN_ATTRIBUTES & values.keys():
            self.parts.append(values[name] or "")
        if tag == "input" and values.get("type") in {"submit", "button", "reset"} and values.get("value"):
            self.parts.append(values["value"])  # a <button>'s value is sent, not shown

    def handle_endtag(self, tag):
        if tag in INVISIBLE | DATA and self._hidden:
            self._hidden -= 1

    def handle_data(self, data):
        if not self._hidden and data.strip():
            self.parts.append(data)


def visible_text(html: str) -> list[str]:
    parser = VisibleText()
    parser.feed(html)
    parser.close()
    return parser.parts


IDENTIFIER = re.compile(r"\d|[/@*_]|^--|[A-Za-z]\.[A-Za-z]")


def english_words(text: str) -> set[str]:
    """Words in Latin letters, leaving out identifiers the page shows as data or names: tokens
    with a digit (hashes, keys, dates, versions), paths and addresses, masked values, snake_case
    names (settings, commands), command-line options and dotted names (manage.py, auth.login)."""
    words = set()
    for token in TOKEN.findall(text):
        if IDENTIFIER.search(token):
            continue
        words.update(word for word in ENGLISH_WORD.findall(token) if word not in ALLOWED_IN_CHINESE)
    return words


def chinese_text(text: str) -> set[str]:
    return {run for run in CJK.findall(text) if run not in ALLOWED_CJK_IN_ENGLISH}


# --- the routes ---------------------------------------------------------------------------------


def route_action(callback) -> Action | None:
    action = getattr(callback, "policy_action", None)
    if action is not None:
        return action
    cls = getattr(callback, "view_class", None) or getattr(callback, "cls", None)
    required = getattr(cls, "required_action", None)
    if isinstance(required, dict):
        return required.get("GET")
    return required


def roles_for(action: Action | None) -> list[str]:
    """The roles that may see a route, from the policy table."""
    if action is None:
        return []
    grant = POLICY[action]
    if grant.public:
        return ["anonymous"]
    if grant.api_scope and not (grant.department_roles or grant.owner_roles or grant.admin_roles):
        return []  # REST only: answers JSON
    if grant.administration:
        return [str(role) for role in (AdminRole.SYSTEM, AdminRole.SECURITY, AdminRole.AUDIT)]
    return ["member", "department_admin"]


@dataclass
class Fixture:
    """The objects whose ids fill route parameters, and a client per role."""

    values: dict[str, str]
    clients: dict[str, Client]


def admin_object_id(pattern_name: str | None) -> str | None:
    """The pk of an object of the console model a route like ``app_model_change`` is for."""
    for model in admin.site._registry:
        prefix = f"{model._meta.app_label}_{model._meta.model_name}_"
        if pattern_name and pattern_name.startswith(prefix):
            obj = model._base_manager.order_by("pk").first()
            return str(obj.pk) if obj is not None else None
    return None


def concrete_path(text: str, pattern, values: dict[str, str]) -> str | None:
    if "(?P<" in text or "^" in text:  # the console's catch-all and app-index regex routes
        return None

    def fill(match: re.Match) -> str:
        name = match.group(2)
        if name == "object_id":
            value = admin_object_id(pattern.name)
        else:
            value = values.get(name)
        if value is None:
            raise LookupError(name)
        return value

    try:
        return "/" + re.sub(r"<(?:(\w+):)?(\w+)>", fill, text)
    except LookupError:
        return None


@pytest.fixture
def site(make_user, make_admin, django_user_model, settings, tmp_path):
    from compliance.context import RequestContext, request_context

    settings.ADMIN_ALLOWED_NETWORKS = [ipaddress.ip_network("127.0.0.0/8")]
    settings.ASSET_STORAGE_DIR = tmp_path / "assets"
    settings.ASSET_MASTER_KEY_FILE = tmp_path / "asset-keys"

    roles = (AdminRole.SYSTEM, AdminRole.SECURITY, AdminRole.AUDIT)
    admins = {role: make_admin(role, username=f"a{n}") for n, role in enumerate(roles, start=1)}
    # The trail these pages show is the fixture's own: its actors and addresses are neutral too.
    with request_context(RequestContext(request_id="r1", source_ip="127.0.0.1", user_agent="u9")):
        values = _objects(admins, make_user, tmp_path)
    clients = {"anonymous": Client()}
    for role, (user, device) in admins.items():
        client = Client()
        sign_in_with_totp(client, user, device)
        clients[str(role)] = client
    for name, username in (("member", "u1"), ("department_admin", "u2")):
        client = Client()
        client.force_login(django_user_model.objects.get(username=username))
        clients[name] = client
    return Fixture(values, clients)


def _objects(admins, make_user, tmp_path) -> dict[str, str]:
    """One object of each kind a route names, created by the people who would."""
    from django.utils import timezone

    from assets.services import asset_upload
    from compliance.models import AuditEntry
    from compliance.verify_runs import AuditVerifyRun, RunState
    from departments.api_keys.services import api_key_create
    from departments.services import department_create, membership_add
    from departments.tenancy import department_scope
    from inference.chat.services import conversation_create
    from inference.extraction.templates import task_template_create
    from inference.registry.models import ModelVersion

    system_admin, security_admin = admins[AdminRole.SYSTEM][0], admins[AdminRole.SECURITY][0]
    department = department_create(slug="d1", name="d1", acting_user=system_admin)
    member = make_user("u1", password_changed_at=timezone.now())
    department_admin = make_user("u2", password_changed_at=timezone.now())
    membership_add(user=member, department=department, acting_user=security_admin)
    membership_add(user=department_admin, department=department, role=MembershipRole.ADMIN, acting_user=security_admin)
    key = api_key_create(
        department=department, name="k1", scopes=["chat"], created_by=department_admin, expires_at=None
    )
    with department_scope(department):
        asset = asset_upload(
            department=department, uploaded_by=member, stream=iter([image_bytes("PNG", (8, 8))]), original_name="f1.png"
        )
        conversation = conversation_create(department=department, owner=member, title="c1", acting_user=member)
    template = task_template_create(
        department=department,
        name="t1",
        instruction="1",
        json_schema=None,
        is_active=True,
        acting_user=department_admin,
    )
    version = ModelVersion.objects.create(
        manifest_sha256="0" * 64, name="m1", path=str(tmp_path), family="qwen2_vl", registered_by_name="u9"
    )
    extraction, batch = _extraction_and_batch(department, member, asset)
    run = AuditVerifyRun.objects.create(
        requested_by_id=str(admins[AdminRole.AUDIT][0].pk),
        requested_by_name="a3",
        requested_at=timezone.now(),
        started_at=timezone.now(),
        finished_at=timezone.now(),
        state=RunState.DONE,
        ok=True,
        entries=1,
        first_sequence=1,
        last_sequence=1,
        head_sequence=1,
        message="1",
    )
    return {
        "department_slug": "d1",
        "asset_id": str(asset.pk),
        "conversation_id": str(conversation.pk),
        "template_id": str(template.pk),
        "key_id": str(key.key.pk),
        "version_id": str(version.pk),
        "sequence": str(AuditEntry.objects.order_by("sequence").first().sequence),
        "id": str(member.pk),
        "extraction_id": str(extraction.pk),
        "batch_id": str(batch.pk),
        "pk": str(run.pk),  # a finished chain verification (its page); no archive has it
        "part": "1",
    }


def _extraction_and_batch(department, member, asset):
    """A stored result of the built-in VAT-invoice template (values are numbers: neutral) with a
    grounded field and a rule flag, and a finished batch of it, both the member's."""
    from departments.tenancy import department_scope
    from inference.extraction.models import BatchJob, BatchStatus
    from inference.extraction.services import templates_builtin_ensure
    from inference.models import TaskTemplate
    from tests.support.extractions import vat_invoice_result

    templates_builtin_ensure(department=department)
    with department_scope(department):
        template = TaskTemplate.objects.get(slug="vat-invoice")
        batch = BatchJob.objects.create(
            department=department,
            template=template,
            template_slug=template.slug,
            asset_ids=[str(asset.pk)],
            status=BatchStatus.DONE,
            total=1,
            processed=1,
            succeeded=1,
            requested_by=member,
            created_by_name="u1",
        )
    extraction = vat_invoice_result(
        department=department,
        asset=asset,
        result={"invoice_number": "1", "total_amount": 1, "tax_amount": 9, "amount_excluding_tax": 1},
        requested_by=member,
        batch=batch,
        usage={"pages": [1], "grounding": {"total_amount": {"page": 1, "box": [1, 1, 4, 4], "width": 8, "height": 8}}},
    )
    return extraction, batch


def rendered_pages(site, skip: tuple[str, ...] = ()):
    """(path, role, language, response) of every HTML page the walk renders: each route of the
    resolver, for every role that may ask for it, in both languages (redirects, 405s and answers
    that are not HTML left out)."""
    for text, pattern in routes():
        path = concrete_path(text, pattern, site.values)
        if path is None or (skip and path.startswith(skip)):
            continue
        for role in roles_for(route_action(pattern.callback)):
            client = site.clients[role]
            for language in LANGUAGES:
                client.cookies["django_language"] = language
                response = client.get(path)
                if response.status_code in {301, 302, 405} or "text/html" not in response.get("Content-Type", ""):
                    continue
                yield path, role, language, response


def test_every_page_speaks_the_readers_language(site):
    problems: dict[str, set[str]] = {}
    checked, shown = 0, set()
    for path, role, language, response in rendered_pages(site, skip=tuple(OWNED_ELSEWHERE)):
        checked += 1
        if response.status_code == 200:
            shown.add(path)
        page = " ".join(visible_text(response.content.decode()))
        found = english_words(page) if language == "zh-hans" else chinese_text(page)
        for prefix, (words, _source) in KNOWN_GAPS.items():
            if path.startswith(prefix):
                found -= words
        if found:
            key = f"{language} {path} as {role} ({response.status_code})"
            problems[key] = found
    # The walk reached the pages themselves, not only redirects and refusals: every console model's
    # list and the department's pages among them.
    assert checked > 100, checked
    changelists = {reverse(f"admin:{m._meta.app_label}_{m._meta.model_name}_changelist") for m in admin.site._registry}
    department_pages = {path for path in shown if path.startswith("/d/d1/")}
    assert changelists <= shown, changelists - shown
    assert len(department_pages) >= 8, department_pages
    report = "\n".join(f"{key}: {' '.join(sorted(words))}" for key, words in sorted(problems.items()))
    assert not problems, f"{len(problems)} pages in the wrong language:\n{report}"


def test_the_text_extraction_sees_what_a_reader_sees():
    html = (
        '<html><head><title>标题</title><style>.a{color:red}</style><script>var word = "hidden";</script></head>'
        '<body><p class="English">中文 Visible</p><input placeholder="Typed"><img alt="Picture" src="x.png">'
        '<input type="submit" value="Go"><button type="submit" name="language" value="en">发送</button>'
        '<code>KHTE RXOH</code><img src="/static/admin/img/icon-yes.svg" alt="True"></body></html>'
    )
    assert english_words(" ".join(visible_text(html))) == {"Visible", "Typed", "Picture", "Go"}
    assert chinese_text(" ".join(visible_text(html))) == {"标题", "中文", "发送"}


def test_identifiers_and_allowed_words_are_not_english_prose():
    assert english_words("SHA-256 3fa9bc01 f1.txt /d/d1/ a@b.example cj****** API JSON") == set()
    assert english_words("manage.py model_manifest --write MODEL_QUANTIZATION auth.login") == set()
    assert english_words("Add user") == {"Add", "user"}
    assert chinese_text("简体中文 Language") == set()
    assert chinese_text("Department 部门") == {"部门"}


def test_the_audit_console_names_events_in_the_readers_language(site):
    client = site.clients[str(AdminRole.AUDIT)]
    for language, name in (("zh-hans", "创建部门"), ("en", "Department created")):
        client.cookies["django_language"] = language
        page = client.get("/admin/compliance/auditentry/").content.decode()
        assert f"{name} <code>department.create</code>" in page


MESSAGES = re.compile(r'<ul class="messagelist">.*?</ul>', re.S)


@pytest.mark.parametrize(
    ("role", "changelist", "action", "model"),
    [
        (AdminRole.SECURITY, "/admin/departments/apikey/", "revoke", "departments.ApiKey"),
        (AdminRole.SYSTEM, "/admin/accounts/user/", "unlock_accounts", "accounts.User"),
        (AdminRole.SYSTEM, "/admin/accounts/user/", "reset_two_factor", "accounts.User"),
    ],
)
def test_console_actions_and_their_messages_speak_the_readers_language(site, role, changelist, action, model):
    """The walk sends only GET: the console's actions are posted here, and their names (in the
    action menu) and their messages checked in both languages."""
    from django.apps import apps

    client = site.clients[str(role)]
    target = apps.get_model(model)._base_manager.order_by("pk").last()  # the key k1; the member u2
    for language in LANGUAGES:
        client.cookies["django_language"] = language
        response = client.post(changelist, {"action": action, "_selected_action": [target.pk]}, follow=True)
        assert response.status_code == 200
        shown = MESSAGES.search(response.content.decode())
        assert shown, f"{action}: no message"
        text = " ".join(visible_text(shown.group(0)))
        assert (english_words(text) if language == "zh-hans" else chinese_text(text)) == set(), text


def test_every_audit_event_outcome_and_actor_kind_has_its_chinese_name():
    """The trail's vocabulary appears on pages the walk may not reach with every value (the
    fixture writes only some kinds of entries): each name is checked in the catalogue itself."""
    from django.utils import translation

    from compliance.events import ActorType, EventType, Outcome

    untranslated = []
    for choices in (EventType, Outcome, ActorType):
        for value, label in choices.choices:
            with translation.override("zh-hans"):
                chinese = str(label)
            if english_words(chinese) or not chinese_text(chinese):
                untranslated.append(f"{value}: {chinese}")
    assert untranslated == []


# What makes a page too wide: its width, and the innermost elements that reach past the screen.
WIDEST_ELEMENTS = """() => [document.scrollingElement.scrollWidth, [...document.querySelectorAll("body *")]
    .filter((e) => e.getBoundingClientRect().right > window.innerWidth + 1
        && ![...e.children].some((c) => c.getBoundingClientRect().right > window.innerWidth + 1))
    .slice(0, 4).map((e) => `${e.tagName.toLowerCase()}${e.id ? "#" + e.id : ""}.${e.className}`)]"""


def test_no_page_scrolls_sideways_on_a_phone(site):
    """Every page of the same walk (URL resolver, every role that may see it, both languages),
    drawn by Chromium at 390 px wide with the project's own CSS and scripts: none is wider than
    the screen. The pages are rendered by Django first, then served to the browser from memory
    (static files from the finders; any other request is refused), so the browser sees exactly
    the HTML the test client got."""

    from django.contrib.staticfiles import finders

    from tests.support.browser import NO_SIDEWAYS_SCROLL, WIDTHS, browser_api, chromium

    sync_api = browser_api()
    pages: dict[str, str] = {}
    for path, role, language, response in rendered_pages(site):
        pages[f"{language} {path} as {role} ({response.status_code})"] = response.content.decode()
    assert len(pages) > 100, len(pages)

    showing = {"html": ""}

    def serve(route, request) -> None:
        url = request.url.split("?", 1)[0]
        if url == "http://testserver/page":
            route.fulfill(status=200, content_type="text/html; charset=utf-8", body=showing["html"])
        elif url.startswith("http://testserver/static/"):
            found = finders.find(url.removeprefix("http://testserver/static/"))
            if found is None:
                route.fulfill(status=404, body="")
            else:
                kind = "text/css" if found.endswith(".css") else "text/javascript" if found.endswith(".js") else None
                route.fulfill(status=200, path=found, **({"content_type": kind} if kind else {}))
        else:
            route.abort()  # the page's own polls and posts: nothing to answer here

    too_wide = {}
    with chromium(sync_api) as browser:
        context = browser.new_context(viewport=WIDTHS["phone"], java_script_enabled=True)
        page = context.new_page()
        page.route("**/*", serve)
        for name, html in pages.items():
            showing["html"] = html
            page.goto("http://testserver/page", wait_until="load")
            if not page.evaluate(NO_SIDEWAYS_SCROLL):
                too_wide[name] = page.evaluate(WIDEST_ELEMENTS)
    report = "\n".join(f"{name}: {widths}" for name, widths in sorted(too_wide.items()))
    assert not too_wide, f"{len(too_wide)} of {len(pages)} pages scroll sideways at 390 px:\n{report}"
