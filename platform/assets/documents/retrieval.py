"""Finding the pages of a document that a question is about: the one analyser, BM25, pinning.

``tokenize`` is the one analyser: page retrieval (chat, ``/v1``, extraction) and the
department's document search (``assets.documents.search``) both use it, so a word found by one
is found by the other. Chinese runs are segmented with jieba in its search mode (a word and its
parts: 专用发票 gives 专用, 发票 and 专用发票), Latin text is folded (NFKC, lower case), digits
are kept whole (thousands separators dropped: 1,234.56 is 1234.56), and a short list of stop
words is left out.

``rank_pages`` scores the usable pages of a ``DocumentText`` against a query with BM25
(``bm25s``). The index of a document is built in memory on first use and kept in a small LRU
cache keyed by the document's content (a digest of its pages' text: a new text layer is a new
key); it is never written anywhere — it holds business text. ``index_cache_info`` says how the
cache has fared since it was last cleared (``index_cache_clear``): hits, indexes built, size.

``pinned_pages`` reads the pages a person names in a question ("p. 23–25", "pages 7 and 9",
"第23-25页", "第7页"), so that they are sent to the model whatever BM25 thinks.
"""

from __future__ import annotations

import atexit
import hashlib
import logging
import re
import shutil
import tempfile
import threading
import unicodedata
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

from assets.documents.lru import lru_put
from assets.documents.pages import DocumentText

logger = logging.getLogger(__name__)

# How many documents' indexes are kept in memory (each holds its pages' token statistics).
INDEX_CACHE_SIZE = 16

# Minimal stop words: the words of a question that say nothing of the page it is about.
STOP_WORDS = frozenset(
    {
        # English
        "a", "an", "the", "of", "to", "in", "on", "at", "by", "for", "from", "with", "and", "or",
        "is", "are", "was", "were", "be", "been", "it", "its", "this", "that", "these", "those",
        "what", "which", "who", "whom", "how", "when", "where", "why", "does", "do", "did",
        "can", "could", "would", "should", "will", "there", "their", "as", "about", "me", "i",
        "we", "you", "please", "tell",
        # Chinese (jieba's tokens)
        "的", "了", "是", "在", "和", "与", "及", "或", "吗", "呢", "吧", "啊", "么", "什么",
        "哪", "哪些", "哪个", "怎么", "怎样", "如何", "多少", "请", "请问", "一下", "这个", "那个",
        "这", "那", "有", "为", "对", "中", "里", "上", "下", "也", "都", "就", "被", "把", "我", "你",
        "我们", "告诉",
    }
)  # fmt: skip

_HAN = r"\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"
# A run of Chinese characters, or a Latin/digit word (a number keeps its decimal point).
_RUNS = re.compile(rf"[{_HAN}]+|[0-9]+(?:[.,][0-9]+)*|[^\W\d_{_HAN}]+(?:'[^\W\d_{_HAN}]+)?")


class _Segmenter:
    """jieba's tokenizer, its dictionary loaded once, on first use, quietly, under a lock.

    jieba keeps its parsed dictionary (not business text, 9 MB) in a cache file that it reads
    back with ``marshal``: it lives in ``DATA_DIR/jieba`` (the service's own, private directory,
    shared by its processes and kept across restarts), never in a shared /tmp where another
    user could plant one; without Django settings, in a private temporary directory removed
    at exit."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._tokenizer = None

    @staticmethod
    def _cache_directory() -> str:
        try:
            from django.conf import settings

            directory = Path(settings.DATA_DIR) / "jieba"
            directory.mkdir(mode=0o700, parents=True, exist_ok=True)
            return str(directory)
        except Exception:  # no Django settings (a script), or DATA_DIR not writable
            directory = tempfile.mkdtemp(prefix="jieba-")
            atexit.register(shutil.rmtree, directory, True)
            return directory

    def tokenizer(self):
        if self._tokenizer is None:
            with self._lock:
                if self._tokenizer is None:
                    import jieba

                    jieba.setLogLevel(logging.WARNING)
                    tokenizer = jieba.Tokenizer()
                    tokenizer.tmp_dir = self._cache_directory()
                    tokenizer.initialize()
                    self._tokenizer = tokenizer
        return self._tokenizer

    def cut(self, run: str) -> list[str]:
        return self.tokenizer().lcut_for_search(run)


_segmenter = _Segmenter()


def _stem(word: str) -> str:
    """A light English plural/inflection fold, so that "payments" meets "payment"."""
    if len(word) > 4 and word.endswith("ies"):
        return word[:-3] + "y"
    if len(word) > 4 and word.endswith(("sses", "xes", "ches", "shes")):
        return word[:-2]
    if len(word) > 3 and word.endswith("s") and not word.endswith(("ss", "us", "is")):
        return word[:-1]
    return word


def tokenize(text: str) -> list[str]:
    """The analyser's tokens of ``text`` (module docstring), in order; repeats kept."""
    folded = unicodedata.normalize("NFKC", text or "").lower()
    tokens: list[str] = []
    for match in _RUNS.finditer(folded):
        run = match.group()
        first = run[0]
        if first.isdigit():
            tokens.append(run.replace(",", ""))
        elif re.match(rf"[{_HAN}]", first):
            tokens.extend(word for word in _segmenter.cut(run) if word not in STOP_WORDS)
        elif run not in STOP_WORDS:
            tokens.append(_stem(run))
    return tokens


# --- BM25 over a document's pages ---------------------------------------------------------------


@dataclass
class _PageIndex:
    numbers: list[int]  # the indexed pages' numbers, in corpus order
    retriever: object | None  # bm25s.BM25, or None when no page has a token


class IndexCacheInfo(NamedTuple):
    hits: int  # questions answered with a cached index
    builds: int  # indexes built: one per question that found no cached index
    size: int  # indexes held now, at most INDEX_CACHE_SIZE


_cache: OrderedDict[str, _PageIndex] = OrderedDict()
_cache_lock = threading.Lock()
_hits = 0
_builds = 0


def _digest(document: DocumentText) -> str:
    digest = hashlib.sha256()
    for page in document.pages:
        digest.update(f"\x00{page.number}:{int(page.usable)}\x00".encode())
        digest.update(page.text.encode("utf-8", "surrogatepass"))
    return digest.hexdigest()


def _build(document: DocumentText) -> _PageIndex:
    import bm25s

    numbers, corpus = [], []
    for page in document.pages:
        if not page.usable:
            continue
        numbers.append(page.number)
        corpus.append(tokenize(page.text))
    if not any(corpus):
        return _PageIndex(numbers=numbers, retriever=None)
    retriever = bm25s.BM25()
    retriever.index(corpus, show_progress=False)
    return _PageIndex(numbers=numbers, retriever=retriever)


def _index(document: DocumentText) -> _PageIndex:
    global _hits, _builds
    key = _digest(document)
    with _cache_lock:
        found = _cache.get(key)
        if found is not None:
            _cache.move_to_end(key)
            _hits += 1
            return found
    built = _build(document)  # outside the lock: a long document does not hold up the others
    with _cache_lock:
        _builds += 1
        lru_put(_cache, key, built, INDEX_CACHE_SIZE)
    return built


def index_cache_clear() -> None:
    """Empty the cache and start its counts (``index_cache_info``) again."""
    global _hits, _builds
    with _cache_lock:
        _cache.clear()
        _hits = _builds = 0


def index_cache_info() -> IndexCacheInfo:
    """The cache's hits and index builds since ``index_cache_clear``, and its size now."""
    with _cache_lock:
        return IndexCacheInfo(hits=_hits, builds=_builds, size=len(_cache))


def rank_pages(document: DocumentText, query: str, *, limit: int) -> list[tuple[int, float]]:
    """The usable pages that match ``query``, best first, with their BM25 scores (> 0), at most
    ``limit``; ties keep page order. Empty when nothing matches."""
    if limit <= 0 or document is None or not document.pages:
        return []
    terms = tokenize(query)
    if not terms:
        return []
    index = _index(document)
    if index.retriever is None:
        return []
    scores = index.retriever.get_scores(terms)
    ranked = sorted(
        ((number, float(score)) for number, score in zip(index.numbers, scores, strict=True) if score > 0),
        key=lambda item: (-item[1], item[0]),
    )
    return ranked[:limit]


# --- pages named in a question ------------------------------------------------------------------

_DASH = r"(?:-|‐|‑|–|—|~|～|〜|to|through|thru|到|至)"
_EN_PAGES = re.compile(
    rf"(?<![a-z])(?:pages?|pgs?\.?|pp\.?|p\.)\s*(\d+(?:\s*{_DASH}\s*\d+)?(?:\s*(?:,|&|and|/)\s*\d+(?:\s*{_DASH}\s*\d+)?)*)"
)
_ZH_NUMERALS = "零〇一二两三四五六七八九十百"
_ZH_PAGES = re.compile(
    rf"第\s*([0-9{_ZH_NUMERALS}]+(?:\s*页?\s*(?:{_DASH}|[、,，和及与])\s*第?\s*[0-9{_ZH_NUMERALS}]+)*)\s*页"
)
_ITEM = re.compile(rf"(\d+)(?:\s*页?\s*{_DASH}\s*第?\s*(\d+))?")
_ZH_RUN = re.compile(rf"[{_ZH_NUMERALS}]+")
_ZH_DIGITS = {
    "零": 0,
    "〇": 0,
    "一": 1,
    "二": 2,
    "两": 2,
    "三": 3,
    "四": 4,
    "五": 5,
    "六": 6,
    "七": 7,
    "八": 8,
    "九": 9,
}


def _zh_number(numeral: str) -> str:
    """三 → 3, 十二 → 12, 二十五 → 25, 一百零八 → 108; a digit-by-digit run (一〇八) too."""
    if "十" not in numeral and "百" not in numeral:
        return "".join(str(_ZH_DIGITS[char]) for char in numeral)
    total, digit = 0, 0
    for char in numeral:
        if char == "百":
            total += max(digit, 1) * 100
            digit = 0
        elif char == "十":
            total += max(digit, 1) * 10
            digit = 0
        else:
            digit = _ZH_DIGITS[char]
    return str(total + digit)


def _span(first: str, last: str | None, page_count: int) -> range:
    if len(first) > 6 or (last and len(last) > 6):  # no document has a millionth page
        return range(0)
    start, end = int(first), int(last) if last else int(first)
    if start > end:
        start, end = end, start
    # Never more pages than the document has, whatever the range says.
    return range(max(start, 1), min(end, page_count) + 1)


def pinned_pages(query: str, page_count: int) -> list[int]:
    """The pages ``query`` names, in the order named, without repeats, within 1..page_count."""
    if not query or page_count < 1:
        return []
    text = unicodedata.normalize("NFKC", query).lower()
    found: list[tuple[int, str, str | None]] = []  # (position, first, last)
    for match in _EN_PAGES.finditer(text):
        base = match.start(1)
        found += [(base + item.start(), item.group(1), item.group(2)) for item in _ITEM.finditer(match.group(1))]
    for match in _ZH_PAGES.finditer(text):
        named = _ZH_RUN.sub(lambda run: _zh_number(run.group()), match.group(1))
        found += [(match.start(1), item.group(1), item.group(2)) for item in _ITEM.finditer(named)]
    pages: list[int] = []
    for _position, first, last in sorted(found):
        for page in _span(first, last, page_count):
            if page not in pages:
                pages.append(page)
    return pages
