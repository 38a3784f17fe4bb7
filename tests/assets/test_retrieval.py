"""The analyser, BM25 page ranking and page pinning (assets.documents.retrieval): no database."""

from __future__ import annotations

import threading

import pytest

from assets.documents import retrieval
from assets.documents.pages import DocumentText, Line, PageText
from assets.documents.retrieval import pinned_pages, rank_pages, tokenize


def document(*texts: str, unusable: tuple[int, ...] = ()) -> DocumentText:
    return DocumentText(
        pages=tuple(
            PageText(
                number=number,
                lines=tuple(Line(line, (0, 0, 10, 10)) for line in text.split("\n")),
                usable=number not in unusable,
            )
            for number, text in enumerate(texts, start=1)
        )
    )


# --- the analyser -------------------------------------------------------------------------------


def test_chinese_is_segmented_into_words_and_their_parts():
    tokens = tokenize("增值税专用发票的保修期为两年")
    # jieba's search mode: the compound and the words inside it; a whole-run split would give
    # one token for the whole sentence and match nothing.
    assert {"增值税", "专用", "发票", "专用发票", "保修", "保修期"} <= set(tokens)
    assert "的" not in tokens  # a stop word
    assert "增值税专用发票的保修期为两年" not in tokens


def test_latin_is_folded_digits_kept_whole():
    tokens = tokenize("The PAYMENTS are due within Ｎｅｔ 30 days: total 1,234.56 USD; ref A-17")
    assert tokens == [
        "payment",
        "due",
        "within",
        "net",
        "30",
        "day",
        "total",
        "1234.56",
        "usd",
        "ref",
        "17",
    ]  # "a" is a stop word


def test_empty_and_punctuation_only_text_has_no_tokens():
    assert tokenize("") == [] and tokenize("。，!? --- ") == [] and tokenize(None) == []


def test_the_dictionary_loads_once_under_concurrency_its_cache_in_data_dir(settings, tmp_path):
    settings.DATA_DIR = tmp_path
    fresh = retrieval._Segmenter()
    seen = []

    def cut():
        seen.append(fresh.tokenizer())

    threads = [threading.Thread(target=cut) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert len(seen) == 4 and all(tokenizer is seen[0] for tokenizer in seen)
    # jieba's parsed dictionary is cached in the service's own directory, not in a shared /tmp.
    assert (tmp_path / "jieba" / "jieba.cache").stat().st_size > 1_000_000
    assert (tmp_path / "jieba").stat().st_mode & 0o777 == 0o700


# --- ranking ------------------------------------------------------------------------------------

PAGES = (
    "Table of contents\nWarranty, payment, delivery",
    "付款方式：银行转账。买方应在收到发票后三十天内付清货款。",
    "Delivery\nGoods are delivered to the buyer's warehouse within 14 days of the order.",
    "保修条款：本产品的保修期为两年，自交货之日起计算。",
    "Payment terms\nThe buyer pays the invoice total within 30 days by bank transfer.",
    "Warranty\nThe seller repairs defects free of charge for two years after delivery.",
)


def test_the_page_about_the_question_ranks_first_english():
    ranked = rank_pages(document(*PAGES), "How long does the seller repair defects for free?", limit=3)
    assert ranked[0][0] == 6
    assert all(score > 0 for _page, score in ranked)
    assert [score for _page, score in ranked] == sorted((score for _page, score in ranked), reverse=True)


def test_a_chinese_question_needs_segmentation_to_find_its_page():
    # "保修多久" shares no whole run with page 4: only its segmented word 保修 does.
    ranked = rank_pages(document(*PAGES), "这个产品保修多久？", limit=2)
    assert ranked and ranked[0][0] == 4
    ranked = rank_pages(document(*PAGES), "货款怎么付款", limit=2)
    assert ranked and ranked[0][0] == 2


def test_unusable_pages_are_never_ranked_and_limit_is_kept():
    pages = document(*PAGES, unusable=(6,))
    ranked = rank_pages(pages, "warranty repairs defects two years", limit=10)
    assert 6 not in [page for page, _score in ranked]
    assert len(rank_pages(document(*PAGES), "warranty payment delivery buyer", limit=2)) == 2


def test_no_match_no_terms_no_text():
    assert rank_pages(document(*PAGES), "photosynthesis", limit=4) == []
    assert rank_pages(document(*PAGES), "the of and ？", limit=4) == []
    assert rank_pages(document("", "   "), "warranty", limit=4) == []
    assert rank_pages(DocumentText(), "warranty", limit=4) == []
    assert rank_pages(document(*PAGES), "warranty", limit=0) == []


def test_the_index_is_cached_per_text_and_bounded():
    retrieval.index_cache_clear()
    assert retrieval.index_cache_info() == retrieval.IndexCacheInfo(hits=0, builds=0, size=0)
    pages = document(*PAGES)
    rank_pages(pages, "warranty", limit=2)
    rank_pages(pages, "payment", limit=2)
    # The second question reuses the index.
    assert retrieval.index_cache_info() == retrieval.IndexCacheInfo(hits=1, builds=1, size=1)
    changed = document(*PAGES[:-1], "Warranty\nThree years.")  # a new text layer: a new index
    assert rank_pages(changed, "three years warranty", limit=1)[0][0] == 6
    assert retrieval.index_cache_info() == retrieval.IndexCacheInfo(hits=1, builds=2, size=2)
    for number in range(retrieval.INDEX_CACHE_SIZE + 5):
        rank_pages(document(f"page {number} warranty"), "warranty", limit=1)
    assert retrieval.index_cache_info().size == retrieval.INDEX_CACHE_SIZE
    retrieval.index_cache_clear()
    assert retrieval.index_cache_info() == retrieval.IndexCacheInfo(hits=0, builds=0, size=0)


# --- pinning ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("question", "expected"),
    [
        ("What does p. 23–25 say?", [23, 24, 25]),
        ("see pp. 3-5 and page 9", [3, 4, 5, 9]),
        ("Summarise pages 7 and 9", [7, 9]),
        ("page 12", [12]),
        ("pages 4, 6-7", [4, 6, 7]),
        ("p.2~4", [2, 3, 4]),
        ("pages 5 to 3", [3, 4, 5]),
        ("第23-25页讲了什么", [23, 24, 25]),
        ("第7页的金额", [7]),
        ("第23页到第25页", [23, 24, 25]),
        ("第2至3页", [2, 3]),
        ("第3、5页", [3, 5]),
        ("第三到第五页", [3, 4, 5]),
        ("第十二页", [12]),
        ("第７页", [7]),  # full-width digits
        ("page 9 and page 9 again, p. 9", [9]),
    ],
)
def test_pinned_pages_are_read_in_english_and_chinese(question, expected):
    assert pinned_pages(question, 30) == expected


@pytest.mark.parametrize(
    ("question", "expected"),
    [
        ("page 31", []),  # beyond the document: ignored
        ("page 0", []),
        ("pages 28-40", [28, 29, 30]),  # cut at the last page
        ("the top 5 stamps and 3 pages", []),  # no page named
        ("共7页", []),  # "7 pages in all" names no page
        ("step 4", []),
        ("page " + "9" * 5000, []),  # longer than Python converts to an integer: never an error
        ("第" + "9" * 5000 + "页", []),
        ("", []),
    ],
)
def test_pinned_pages_outside_the_document_or_not_named_are_ignored(question, expected):
    assert pinned_pages(question, 30) == expected


def test_pinned_pages_of_an_empty_document():
    assert pinned_pages("page 1", 0) == []
