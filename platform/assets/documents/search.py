"""Full-text search over a department's documents: their text layers, page by page.

The index is the department's pages, tokenised by the one analyser (``retrieval.tokenize``) and
ranked with BM25 (``bm25s``) across all of its documents, so that a page of one file competes
with the pages of every other. It holds business text, so it lives **only in memory**, built
from the decrypted text layers (``document_text``) when a search needs it; it is never written
to a column or a file.

Its memory and its work are bounded (each a setting with the default below, docs/assets.md
"Retrieval and search"):

- ``DOCUMENT_SEARCH_MAX_PAGES`` pages per department index: the newest documents first, whole
  documents only (one that does not fit in what is left is skipped and the next, older one
  tried, so one huge document never empties the index); a department with more says so
  (``SearchResults.documents_left_out``);
- ``DOCUMENT_SEARCH_PAGE_CHARS`` characters of each page are indexed (and cut snippets): the rest
  of a longer page is not searchable, the page itself still is;
- ``DOCUMENT_SEARCH_MAX_TOKENS`` tokens per department index: the newest documents first, whole
  documents only, skipped like the page bound when they do not fit (counted in
  ``documents_left_out``);
- ``DOCUMENT_SEARCH_DEPARTMENTS`` department indexes kept at once (least recently used goes);
- ``DOCUMENT_SEARCH_TOKEN_CACHE`` tokens of per-document analyses kept to rebuild an index
  cheaply after a document is added or removed: each department keeps at most its share
  (the cache divided by ``DOCUMENT_SEARCH_DEPARTMENTS``), its own least recently used documents
  going first, so one department's rebuild never flushes the others' analyses; past the whole
  cache the least recently used department's analyses go.

A snippet considers at most ``SNIPPET_MAX_MATCHES`` matches of its page (the first ones) and
finds their densest window in one pass (two pointers), so a page made of one repeated word costs
linear time, not quadratic. Searches of the same department that find its index stale wait for
one rebuild instead of each building their own; ``index_builds`` counts the department indexes
built since the caches were last cleared (``search_cache_clear``).

An index is keyed by its documents and their text layers' versions (when each was finished):
a new, changed or deleted document makes the next search rebuild it, so a deleted file is
never found. Snippets are cut from the hit pages' text, HTML-escaped, then the query's terms are
wrapped in ``<mark>``.
"""

from __future__ import annotations

import re
import sys
import threading
import unicodedata
from collections import OrderedDict
from dataclasses import dataclass, field
from itertools import islice

from django.conf import settings
from django.utils.html import escape
from django.utils.safestring import SafeString, mark_safe

from assets.documents.retrieval import _HAN, STOP_WORDS, tokenize

# Memory bounds (module docstring); a deployment may set them in its settings.
DEFAULT_MAX_PAGES = 20_000
DEFAULT_DEPARTMENTS = 4
DEFAULT_TOKEN_CACHE = 1_000_000
DEFAULT_PAGE_CHARS = 20_000
DEFAULT_MAX_TOKENS = 5_000_000


def _bound(name: str, default: int) -> int:
    return int(getattr(settings, name, default))


MAX_QUERY_CHARS = 200
SNIPPET_CHARS = 180
PAGES_PER_DOCUMENT = 5  # page hits listed under one document
SNIPPET_MAX_MATCHES = 500  # matches of a page a snippet considers (the first ones)

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
    documents_left_out: int = 0  # beyond DOCUMENT_SEARCH_MAX_PAGES / _MAX_TOKENS (the oldest)

    @property
    def page_hits(self) -> int:
        return sum(len(document.pages) for document in self.documents)


# --- the in-memory index ------------------------------------------------------------------------


@dataclass
class _DepartmentIndex:
    signature: tuple  # (bounds, (asset id, layer version), …) of the documents within the page bound
    refs: list[tuple[str, int]]  # (asset id, page) per indexed page, in corpus order
    retriever: object | None
    left_out: int
    searched: int = 0  # documents indexed (within the page and token bounds)


_Pages = list[tuple[int, list[str]]]

_indexes: OrderedDict[object, _DepartmentIndex] = OrderedDict()
# Per-document analyses, per department: department → (asset id, version, page chars) → pages'
# tokens. Both levels are least recently used first.
_tokens: OrderedDict[object, OrderedDict[tuple[str, str, int], _Pages]] = OrderedDict()
_token_counts: dict[object, int] = {}  # tokens cached per department
_token_count = 0  # tokens cached in all
_lock = threading.Lock()
_build_locks: dict[object, threading.Lock] = {}  # one rebuild of a department at a time
_builds = 0  # department indexes built since search_cache_clear


def search_cache_clear() -> None:
    """Drop every index and analysis, and start the count of builds (``index_builds``) again."""
    global _token_count, _builds
    with _lock:
        _indexes.clear()
        _tokens.clear()
        _token_counts.clear()
        _token_count = 0
        _builds = 0


def index_builds() -> int:
    """Department indexes built since ``search_cache_clear``."""
    with _lock:
        return _builds


def _size(pages: _Pages) -> int:
    return sum(len(tokens) for _number, tokens in pages)


def _token_cache_put(department_key, key: tuple[str, str, int], pages: _Pages) -> None:
    """Keep ``pages`` within the department's share of the token cache (its own least recently
    used documents go first; a document larger than the share is not kept), then within the whole
    cache (the least recently used other departments' analyses go)."""
    global _token_count
    total = _bound("DOCUMENT_SEARCH_TOKEN_CACHE", DEFAULT_TOKEN_CACHE)
    share = max(1, total // max(1, _bound("DOCUMENT_SEARCH_DEPARTMENTS", DEFAULT_DEPARTMENTS)))
    size = _size(pages)
    if size > share:
        return
    own = _tokens.setdefault(department_key, OrderedDict())
    _tokens.move_to_end(department_key)
    if key in own:
        return
    own[key] = pages
    _token_counts[department_key] = _token_counts.get(department_key, 0) + size
    _token_count += size
    while _token_counts[department_key] > share:
        _old_key, old = own.popitem(last=False)
        _token_counts[department_key] -= _size(old)
        _token_count -= _size(old)
    while _token_count > total and len(_tokens) > 1:
        other, entries = next(iter(_tokens.items()))
        if other == department_key:  # cannot happen: it was just moved to the end
            break
        del _tokens[other]
        _token_count -= _token_counts.pop(other, 0)
        del entries


def _document_tokens(department_key, asset, version: str, budget: int) -> _Pages | None:
    """The usable pages of ``asset`` as (page, tokens) — the first DOCUMENT_SEARCH_PAGE_CHARS
    characters of each — from the cache or its text layer; None when they hold more than
    ``budget`` tokens (the analysis stops there)."""
    page_chars = _bound("DOCUMENT_SEARCH_PAGE_CHARS", DEFAULT_PAGE_CHARS)
    key = (str(asset.pk), version, page_chars)
    with _lock:
        own = _tokens.get(department_key)
        cached = own.get(key) if own is not None else None
        if cached is not None:
            own.move_to_end(key)
            _tokens.move_to_end(department_key)
            return cached if _size(cached) <= budget else None
    from assets.documents.selectors import document_text

    document = document_text(asset)
    pages, size = [], 0
    for page in document.pages if document is not None else ():
        if not page.usable:
            continue
        tokens = [sys.intern(token) for token in tokenize(page.text[:page_chars])]  # one string per word
        size += len(tokens)
        if size > budget:
            return None
        pages.append((page.number, tokens))
    with _lock:
        _token_cache_put(department_key, key, pages)
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
    global _builds
    documents = _searchable(department)
    limit = _bound("DOCUMENT_SEARCH_MAX_PAGES", DEFAULT_MAX_PAGES)
    chosen, pages_total = [], 0
    for asset, version in documents:  # newest first; whole documents within the page bound
        if pages_total + asset.page_count > limit:
            continue  # this one does not fit; an older, shorter one may
        chosen.append((asset, version))
        pages_total += asset.page_count
    bounds = (
        limit,
        _bound("DOCUMENT_SEARCH_PAGE_CHARS", DEFAULT_PAGE_CHARS),
        _bound("DOCUMENT_SEARCH_MAX_TOKENS", DEFAULT_MAX_TOKENS),
    )
    signature = (bounds, *((str(asset.pk), version) for asset, version in chosen))
    assets = {str(asset.pk): asset for asset, _version in chosen}

    def fresh() -> _DepartmentIndex | None:
        with _lock:
            found = _indexes.get(department.pk)
            if found is not None and found.signature == signature:
                _indexes.move_to_end(department.pk)
                return found
            return None

    found = fresh()
    if found is not None:
        return found, assets
    with _lock:
        build_lock = _build_locks.setdefault(department.pk, threading.Lock())
    with build_lock:  # a search that waited here finds the index another one just built
        found = fresh()
        if found is not None:
            return found, assets
        built = _department_build(department.pk, chosen, signature, len(documents))
        with _lock:  # stored before the build lock is let go, for the searches waiting on it
            _builds += 1
            _indexes[department.pk] = built
            _indexes.move_to_end(department.pk)
            while len(_indexes) > _bound("DOCUMENT_SEARCH_DEPARTMENTS", DEFAULT_DEPARTMENTS):
                _indexes.popitem(last=False)
    return built, assets


def _department_build(department_key, chosen, signature: tuple, documents: int) -> _DepartmentIndex:
    """The index of ``chosen`` (newest first), within DOCUMENT_SEARCH_MAX_TOKENS tokens: a
    document that does not fit in what is left is skipped (and counted), the next one tried."""
    _pages, _chars, budget = signature[0]  # the bounds the signature names
    refs, corpus, searched = [], [], 0
    for asset, version in chosen:
        if budget <= 0:
            break
        pages = _document_tokens(department_key, asset, version, budget)
        if pages is None:
            continue
        budget -= _size(pages)
        searched += 1
        for number, tokens in pages:
            refs.append((str(asset.pk), number))
            corpus.append(tokens)
    retriever = None
    if any(corpus):
        import bm25s

        retriever = bm25s.BM25()
        retriever.index(corpus, show_progress=False)
    return _DepartmentIndex(
        signature=signature, refs=refs, retriever=retriever, left_out=documents - searched, searched=searched
    )


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
    the matches' spans in it. Only the first SNIPPET_MAX_MATCHES matches count; the densest
    window is found in one pass over them."""
    text = " ".join(unicodedata.normalize("NFKC", text).split())
    found = islice(pattern.finditer(text), SNIPPET_MAX_MATCHES) if pattern else ()
    matches = [(match.start(), match.end()) for match in found]
    if not matches:
        return text[:SNIPPET_CHARS], ()
    # The window starting at a match holding the most matches (the first such). Matches do not
    # overlap and come in order, so their ends rise too: the matches a window starting at match
    # ``first`` holds are ``first .. last - 1``, and ``last`` only moves forward.
    best_start, best_count, last = matches[0][0], 0, 0
    for first, (start, _end) in enumerate(matches):
        last = max(last, first)
        while last < len(matches) and matches[last][1] <= start + SNIPPET_CHARS:
            last += 1
        if last - first > best_count:
            best_start, best_count = start, last - first
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
    results.documents_searched = index.searched
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
    page_chars = _bound("DOCUMENT_SEARCH_PAGE_CHARS", DEFAULT_PAGE_CHARS)
    from assets.documents.selectors import document_text

    for asset_id, pages in ranked:
        asset = assets[asset_id]
        pages.sort(key=lambda item: (-item[1], item[0]))
        document = document_text(asset)  # decrypted again for the snippets of its hit pages only
        hit = DocumentHit(asset=asset, score=pages[0][1])
        for number, score in pages[:PAGES_PER_DOCUMENT]:
            page = document.page(number) if document is not None else None
            snippet, highlights = snippet_cut(page.text[:page_chars] if page else "", pattern)
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
