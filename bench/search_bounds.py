"""Document search's bounds (assets.documents.search), each figure against a baseline of the same run.

- Snippet: ``snippet_cut`` on one page line of 40,000 copies of "aa" searched for "aa" (the
  security review's case), and on 2,000 copies against the quadratic choice it replaced (every
  window counted from scratch; 40,000 copies took ~44 s with it, too long to rerun each time).
- Rebuild: what a department's index rebuild costs in the search request at the token bound —
  ``bm25s`` indexing a generated corpus (pages of ``--page-tokens`` tokens from a 20,000-word
  vocabulary, each token a fresh string interned as the index's analyses are) of ``--tokens``
  tokens: seconds, and the process's peak RSS growth (token lists included). Reading and
  analysing the documents' text layers (decryption, jieba) comes on top for every document whose
  analysis is not cached.

    .venv/bin/python bench/search_bounds.py [--rounds 5] [--tokens 5000000] [--page-tokens 250]
"""

from __future__ import annotations

import argparse
import random
import resource
import statistics
import sys
import time
import unicodedata
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "platform")]


def quadratic_snippet(text, pattern, width):
    """The choice before the fix: every match counts all the others."""
    text = " ".join(unicodedata.normalize("NFKC", text).split())
    matches = [(match.start(), match.end()) for match in pattern.finditer(text)]
    best_start, best_count = matches[0][0], 0
    for start, _end in matches:
        count = sum(1 for other, end in matches if start <= other and end <= start + width)
        if count > best_count:
            best_start, best_count = start, count
    return best_start


def median_seconds(function, rounds):
    times = []
    for _round in range(rounds):
        began = time.perf_counter()
        function()
        times.append(time.perf_counter() - began)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--tokens", type=int, default=5_000_000)
    parser.add_argument("--page-tokens", type=int, default=250)
    args = parser.parse_args()

    from assets.documents import search

    pattern = search._term_pattern("aa")
    big, small = "aa " * 40_000, "aa " * 2_000
    new_big = median_seconds(lambda: search.snippet_cut(big, pattern), args.rounds)
    new_small = median_seconds(lambda: search.snippet_cut(small, pattern), args.rounds)
    old_small = median_seconds(lambda: quadratic_snippet(small, pattern, search.SNIPPET_CHARS), args.rounds)
    print(f"snippet, 40,000 matches: {new_big * 1000:.2f} ms (cap {search.SNIPPET_MAX_MATCHES} matches)")
    print(
        f"snippet, 2,000 matches: {new_small * 1000:.2f} ms against {old_small * 1000:.1f} ms quadratic "
        f"(ratio {new_small / old_small:.4f})"
    )

    import bm25s

    generator = random.Random(7)
    vocabulary = [f"w{number}" for number in range(20_000)]
    pages = args.tokens // args.page_tokens
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    began = time.perf_counter()
    # Fresh strings per token, as the analyser returns them, interned as the index keeps them.
    corpus = [
        [sys.intern("".join(word)) for word in generator.choices(vocabulary, k=args.page_tokens)]
        for _page in range(pages)
    ]
    made = time.perf_counter() - began
    began = time.perf_counter()
    retriever = bm25s.BM25()
    retriever.index(corpus, show_progress=False)
    indexed = time.perf_counter() - began
    began = time.perf_counter()
    retriever.get_scores(["w1", "w2"])
    scored = time.perf_counter() - began
    grown = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    print(
        f"rebuild, {args.tokens:,} tokens on {pages:,} pages: bm25s index {indexed:.2f} s "
        f"(generating the token lists {made:.2f} s), one query's scores {scored * 1000:.1f} ms, "
        f"peak RSS +{grown:.0f} MiB"
    )


if __name__ == "__main__":
    main()
