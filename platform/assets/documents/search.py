"""Full-text search over a department's documents: their text layers, page by page.

The index is the department's pages, tokenised by the one analyser (``retrieval.tokenize``) and
ranked with BM25 (``bm25s``) across all of its documents, so that a page of one file competes
with the pages of every other. It holds business text, so it lives **only in memory**, built
from the decrypted text layers (``document_text``) when a search needs it; it is never written
to a column or a file.

Its memory is bounded three ways (each a setting with the default below, docs/assets.md
"Retrieval and search"):

- ``DOCUMENT_SEARCH_MAX_PAGES`` pages per department index: the newest documents first, whole
  documents only; a department with more says so (``SearchResults.documents_left_out``);
- ``DOCUMENT_SEARCH_DEPARTMENTS`` department indexes kept at once (least recently used goes);
- ``DOCUMENT_SEARCH_TOKEN_CACHE`` tokens of per-document analyses kept to rebuild an index
  cheaply after a document is added or removed (least recently used goes).

An index is keyed by its documents and their text layers' versions (when each was finished):
a new, changed or deleted document makes the next search rebuild it, so a deleted file is
never found. Snippets are cut from the hit pages' text, HTML-escaped, then the query's terms are
wrapped in ``<mark>``.
"""

from __future__ import annotations

import re
import threading
import unicodedata
from collections import OrderedDict
from dataclasses import dataclass, field

from django.conf import settings
from django.utils.html import escape
from django.utils.safestring import SafeString, mark_safe

from assets.documents.retrieval import _HAN, STOP_WORDS, tokenize

# Memory bounds (module docstring); a deployment may set them in its settings.
DEFAULT_MAX_PAGES = 20_000
DEFAULT_DEPARTMENTS = 4
DEFAULT_TOKEN_CACHE = 1_000_000


def _bound(name: str, default: int) -> int:
    return int(getattr(settings, name, default))


MAX_QUERY_CHARS = 200
SNIPPET_CHARS = 180
PAGES_PER_DOCUMENT = 5  # page hits listed under one document

QUERY_TOO_LONG = "A search may be at most {limit} characters long."


class SearchQueryInvalid(ValueError):
    """A query that cannot be searched; ``str()`` is safe to show."""


@dataclass(frozen=True)
class PageHit:
    page: int
    score: float
    snippet: str  # plain text, as on the page (NFKC)
    highlights: tuple[tuple[int, int], ...]  # [start, end) of each matched term in ``snippet``

    @property
    def snippet_html(self) -> SafeString:
        """The snippet escaped, then its matches wrapped in ``<mark>``."""
        parts, position = [], 0
        for start, end in self.highlights:
            parts.append(escape(self.snippet[position:start]))
            parts.append(f"<mark>{escape(self.snippet[start:end])}</mark>")
            position = end
        parts.append(escape(self.snippet[position:]))
        return mark_safe("".join(parts))  # noqa: S308 - every piece is escaped above


@dataclass
class DocumentHit:
    asset: object
    score: float
    pages: list[PageHit] = field(default_factory=list)


@dataclass
class SearchResults:
    query_length: int
    documents: list[DocumentHit] = field(default_factory=list)
    documents_searched: int = 0
    documents_left_out: int = 0  # beyond DOCUMENT_SEARCH_MAX_PAGES (the oldest)

    @property
    def page_hits(self) -> int:
        return sum(len(document.pages) for document in self.documents)


# --- the in-memory index ------------------------------------------------------------------------


@dataclass
class _DepartmentIndex:
    signature: tuple  # ((asset id, layer version), …) of the documents indexed
    refs: list[tuple[str, int]]  # (asset id, page) per indexed page, in corpus order
    retriever: object | None
    left_out: int


_indexes: OrderedDict[object, _DepartmentIndex] = OrderedDict()
_tokens: OrderedDict[tuple[str, str], list[tuple[int, list[str]]]] = OrderedDict()
_token_count = 0
_lock = threading.Lock()


def search_cache_clear() -> None:
    global _token_count
    with _lock:
        _indexes.clear()
        _tokens.clear()
        _token_count = 0


def _document_tokens(asset, version: str) -> list[tuple[int, list[str]]]:
    """The usable pages of ``asset`` as (page, tokens), from the cache or its text layer."""
    global _token_count
    key = (str(asset.pk), version)
    with _lock:
        cached = _tokens.get(key)
        if cached is not None:
            _tokens.move_to_end(key)
            return cached
    from assets.documents.selectors import document_text

    document = document_text(asset)
    pages = [] if document is None else [(page.number, tokenize(page.text)) for page in document.pages if page.usable]
    size = sum(len(tokens) for _number, tokens in pages)
    with _lock:
        if key not in _tokens:
            _tokens[key] = pages
            _token_count += size
        while _token_count > _bound("DOCUMENT_SEARCH_TOKEN_CACHE", DEFAULT_TOKEN_CACHE) and len(_tokens) > 1:
            _old_key, old = _tokens.popitem(last=False)
            _token_count -= sum(len(tokens) for _number, tokens in old)
    return pages


def _searchable(department) -> list[tuple[object, str]]:
    """(asset, text-layer version) of the department's documents with a finished text layer,
    newest first."""
    from assets.documents.models import TextLayer, TextLayerStatus
    from assets.selectors import asset_list

    versions = dict(
        TextLayer.objects.filter(department=department, status=TextLayerStatus.DONE).values_list(
            "asset_id", "finished_at"
        )
    )
    assets = asset_list(department=department).filter(pk__in=list(versions))
    return [(asset, versions[asset.pk].isoformat() if versions[asset.pk] else "") for asset in assets]


def _department_index(department) -> tuple[_DepartmentIndex, dict[str, object]]:
    documents = _searchable(department)
    limit = _bound("DOCUMENT_SEARCH_MAX_PAGES", DEFAULT_MAX_PAGES)
    chosen, pages_total = [], 0
    for asset, version in documents:  # newest first; whole documents within the page bound
        if pages_total + asset.page_count > limit:
            break
        chosen.append((asset, version))
        pages_total += asset.page_count
    signature = tuple((str(asset.pk), version) for asset, version in chosen)
    assets = {str(asset.pk): asset for asset, _version in chosen}
    with _lock:
        found = _indexes.get(department.pk)
        if found is not None and found.signature == signature:
            _indexes.move_to_end(department.pk)
            return found, assets
    refs, corpus = [], []
    for asset, version in chosen:
        for number, tokens in _document_tokens(asset, version):
            refs.append((str(asset.pk), number))
            corpus.append(tokens)
    retriever = None
    if any(corpus):
        import bm25s

        retriever = bm25s.BM25()
        retriever.index(corpus, show_progress=False)
    built = _DepartmentIndex(signature=signature, refs=refs, retriever=retriever, left_out=len(documents) - len(chosen))
    with _lock:
        _indexes[department.pk] = built
        _indexes.move_to_end(department.pk)
        while len(_indexes) > _bound("DOCUMENT_SEARCH_DEPARTMENTS", DEFAULT_DEPARTMENTS):
            _indexes.popitem(last=False)
    return built, assets


# --- snippets -----------------------------------------------------------------------------------


def _term_pattern(query: str) -> re.Pattern | None:
    """A pattern of the query's terms as they appear in a page (case-insensitive; a Latin word
    with any ending, since the analyser folds plurals)."""
    terms = set()
    for term in tokenize(query):
        terms.add(term)
    folded = unicodedata.normalize("NFKC", query).lower()
    # The query's Chinese runs whole too (a highlight of the phrase, not only of its parts).
    terms |= {run for run in re.findall(rf"[{_HAN}]{{2,}}", folded) if run not in STOP_WORDS}
    if not terms:
        return None
    alternatives = []
    for term in sorted(terms, key=len, reverse=True):
        if re.fullmatch(r"[a-z]+", term):
            alternatives.append(rf"(?<![a-z]){re.escape(term)}[a-z]*")
        else:
            alternatives.append(re.escape(term))
    return re.compile("|".join(alternatives), re.IGNORECASE)


def snippet_cut(text: str, pattern: re.Pattern | None) -> tuple[str, tuple[tuple[int, int], ...]]:
    """The part of ``text`` around its densest run of matches, at most SNIPPET_CHARS long, with
    the matches' spans in it."""
    text = " ".join(unicodedata.normalize("NFKC", text).split())
    matches = [(match.start(), match.end()) for match in pattern.finditer(text)] if pattern else []
    if not matches:
        return text[:SNIPPET_CHARS], ()
    best_start, best_count = matches[0][0], 0
    for start, _end in matches:  # the window holding the most matches
        count = sum(1 for other, end in matches if start <= other and end <= start + SNIPPET_CHARS)
        if count > best_count:
            best_start, best_count = start, count
    begin = max(0, best_start - SNIPPET_CHARS // 4)
    end = min(len(text), begin + SNIPPET_CHARS)
    begin = max(0, min(begin, end - SNIPPET_CHARS))
    spans = tuple((start - begin, stop - begin) for start, stop in matches if begin <= start and stop <= end)
    prefix = "…" if begin > 0 else ""
    suffix = "…" if end < len(text) else ""
    shift = len(prefix)
    return (
        prefix + text[begin:end] + suffix,
        tuple((start + shift, stop + shift) for start, stop in spans),
    )


# --- the search ---------------------------------------------------------------------------------


def document_search(*, department, query: str, limit: int = 20) -> SearchResults:
    """The department's documents whose pages match ``query``, best first, each with its best
    pages and their snippets. Reads only the department's own files (its scope is open)."""
    query = (query or "").strip()
    if len(query) > MAX_QUERY_CHARS:
        raise SearchQueryInvalid(QUERY_TOO_LONG.format(limit=MAX_QUERY_CHARS))
    results = SearchResults(query_length=len(query))
    terms = tokenize(query)
    if not terms:
        return results
    index, assets = _department_index(department)
    results.documents_searched = len(index.signature)
    results.documents_left_out = index.left_out
    if index.retriever is None:
        return results
    scores = index.retriever.get_scores(terms)
    by_document: dict[str, list[tuple[int, float]]] = {}
    for (asset_id, page), score in zip(index.refs, scores, strict=True):
        if score > 0:
            by_document.setdefault(asset_id, []).append((page, float(score)))
    ranked = sorted(by_document.items(), key=lambda item: -max(score for _page, score in item[1]))[:limit]
    pattern = _term_pattern(query)
    from assets.documents.selectors import document_text

    for asset_id, pages in ranked:
        asset = assets[asset_id]
        pages.sort(key=lambda item: (-item[1], item[0]))
        document = document_text(asset)  # decrypted again for the snippets of its hit pages only
        hit = DocumentHit(asset=asset, score=pages[0][1])
        for number, score in pages[:PAGES_PER_DOCUMENT]:
            page = document.page(number) if document is not None else None
            snippet, highlights = snippet_cut(page.text if page else "", pattern)
            hit.pages.append(PageHit(page=number, score=score, snippet=snippet, highlights=highlights))
        results.documents.append(hit)
    return results


def search_audit_record(*, department, actor, results: SearchResults, via: str) -> None:
    """The search as an access to the department's files: the query's length and what it found,
    never the query (business text)."""
    from compliance.events import EventType
    from compliance.services import audit_record

    audit_record(
        event_type=EventType.ASSET_VIEW,
        actor=actor,
        department=department,
        object_type="assets.search",
        object_repr="document search",
        details={
            "view": "search",
            "via": via,
            "query_length": results.query_length,
            "documents": len(results.documents),
            "hits": results.page_hits,
        },
    )
