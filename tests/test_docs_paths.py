"""The docs cite only paths that exist: every repository path a ``docs/*.md`` file names in
backticks (``inference/chat/consumer.py``, ``platform/assets/``, ``accounts/permissions.py``)
is a file or folder of the checkout. A path counts as a repository path when it starts with a
top-level folder of the repository, or with an app folder under ``platform/`` (the source root:
``accounts/...`` is ``platform/accounts/...``), and ends with ``.py``, ``.md``, ``.html``, ``.js``
or ``/``. A ``:line`` or ``::name`` after the path is allowed and ignored."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SOURCE_ROOT = ROOT / "platform"
DOCS = sorted((ROOT / "docs").glob("*.md"))

FENCE = re.compile(r"^(```|~~~).*?^\1", re.DOTALL | re.MULTILINE)
INLINE = re.compile(r"`([^`\n]+)`")
PATH = re.compile(r"(?P<path>[A-Za-z0-9_.\-/]+(?:\.py|\.md|\.html|\.js|/))(?::\d+(?:-\d+)?|::[\w.]+)?")


def _folders(base: Path) -> set[str]:
    return {path.name for path in base.iterdir() if path.is_dir() and not path.name.startswith((".", "__"))}


TOP_LEVEL = _folders(ROOT)
APP_LEVEL = _folders(SOURCE_ROOT)


def cited_paths(text: str) -> list[str]:
    """The repository paths ``text`` cites in inline backticks (fenced code blocks are left out)."""
    found = []
    for match in INLINE.finditer(FENCE.sub("", text)):
        candidate = PATH.fullmatch(match.group(1).strip())
        if candidate is None:
            continue
        path = candidate.group("path")
        if path.split("/", 1)[0] in TOP_LEVEL | APP_LEVEL and "/" in path.rstrip("/"):
            found.append(path)
    return found


def path_exists(path: str) -> bool:
    return any((base / path).exists() for base in (ROOT, SOURCE_ROOT))


def test_the_docs_are_found():
    names = {doc.name for doc in DOCS}
    assert {"architecture.md", "chat.md", "inference.md"} <= names


def test_the_scan_recognises_repository_paths():
    text = (
        "see `inference/chat/consumer.py`, `accounts/permissions.py:40`, `platform/assets/`,\n"
        "`tests/test_layout.py::test_platform_folder_has_no_init_py`, but not `STRUCTURED_OUTPUT_ATTEMPTS`,\n"
        "`reading.py`, `inference/` or `python -m pytest tests/x.py`\n"
        "```\n`inference/in_a_fence.py`\n```\n"
    )
    assert cited_paths(text) == [
        "inference/chat/consumer.py",
        "accounts/permissions.py",
        "platform/assets/",
        "tests/test_layout.py",
    ]
    assert path_exists("accounts/permissions.py") and path_exists("inference/chat/consumer.py")
    assert not path_exists("inference/chat/consumers.py")


@pytest.mark.parametrize("doc", DOCS, ids=[doc.name for doc in DOCS])
def test_every_cited_path_exists(doc):
    missing = sorted({path for path in cited_paths(doc.read_text(encoding="utf-8")) if not path_exists(path)})
    assert missing == [], f"docs/{doc.name} cites paths that do not exist: {missing}"
