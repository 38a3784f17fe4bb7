"""Page retrieval on a generated 200-page manual: is the answer page among the pages sent?

The document (generated, seeded): 2 contents pages listing every component, 18 service-bulletin
pages each naming 10 components with the same maintenance words ("inspection", "supplier",
"part number"), and 180 component pages, half English and half Chinese. A component is named
by three words drawn from shared lists (system x part x sub-part: "hydraulic pump seal",
"液压泵密封圈"), so every word of a name appears on many other pages (distractors share the
vocabulary; the contents pages hold all of it); each page states the same kinds of facts
(inspection hours, part number, temperature, supplier). One question per component page,
paraphrased rather than copied (the words reordered and the verbs changed: "How often does the
seal of the hydraulic pump need checking?" for "Inspect the hydraulic pump seal every 500
operating hours"; "液压泵的密封圈多久需要检查？" for "液压泵密封圈的维护：每500个运行小时检验
一次"), so a Chinese question only meets its page through segmentation.

"Sent" is what a chat turn or a /v1 call sends of a PDF (``assets.documents.model_pages.
pages_choose``, the real code: pinned pages, then BM25 over the text layer, at most
``MODEL_PAGES_PER_FILE`` = 4 pages, else the first pages), against two baselines measured in the
same run on the same questions:

- first pages: the rule before retrieval (pages 1–4 of every PDF);
- substring: the 4 pages holding the most of the question's words as plain substrings (words
  split on spaces and punctuation, no segmentation), the first pages when none is found.

Figures: the fraction of questions whose answer page was sent (goal >= 95 %), per language, and
for each baseline; top-1 as a finer measure; index build and per-question time.

    .venv/bin/python bench/retrieval.py [--seed 7]
"""

from __future__ import annotations

import argparse
import os
import random
import re
import sys
import time
from pathlib import Path
from types import SimpleNamespace

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "platform")]

PAGES = 200
CONTENTS_PAGES = 2
BULLETIN_PAGES = 18
SENT = 4  # MODEL_PAGES_PER_FILE, checked against the real constant below

EN_SYSTEMS = "hydraulic cooling fuel brake steering lubrication exhaust intake transmission electrical".split()
EN_PARTS = "pump valve filter hose sensor motor compressor tank".split()
EN_SUBPARTS = "seal bearing gasket housing connector bracket impeller".split()
ZH_SYSTEMS = ["液压", "冷却", "燃油", "制动", "转向", "润滑", "排气", "进气", "传动", "电气"]
ZH_PARTS = ["泵", "阀", "滤清器", "软管", "传感器", "电机", "压缩机", "油箱"]
ZH_SUBPARTS = ["密封圈", "轴承", "垫片", "壳体", "接头", "支架", "叶轮"]
SUPPLIERS = ["Acme", "Bosch", "Parker", "Denso", "SKF", "Timken"]
ZH_SUPPLIERS = ["华东机械", "北方精工", "南方液压", "中原轴承", "东海密封"]

EN_PAGE = (
    "Section {number}: {system} {part} {sub}\n"
    "Maintenance of the {system} {part} {sub}: inspect it every {hours} operating hours.\n"
    "Replacement part number {pn}. Maximum operating temperature {temp} degrees.\n"
    "Supplier: {supplier}. Torque the fasteners of the {part} housing to {torque} Nm.\n"
    "Record every inspection in the maintenance log of the {system} system."
)
EN_QUESTIONS = (
    ("hours", "How often does the {sub} of the {system} {part} need checking?"),
    ("pn", "Which spare number do I order for the {sub} in the {system} {part}?"),
    ("temp", "What is the highest temperature the {system} {part}'s {sub} tolerates?"),
)
ZH_PAGE = (
    "第{number}节：{system}{part}{sub}\n"
    "{system}{part}{sub}的维护：每{hours}个运行小时检验一次。\n"
    "备件编号{pn}。最高工作温度{temp}摄氏度。\n"
    "供应商：{supplier}。{part}壳体螺栓的拧紧力矩为{torque}牛米。\n"
    "每次检验都应记入{system}系统的维护记录。"
)
ZH_QUESTIONS = (
    ("hours", "{system}{part}的{sub}多久需要检查？"),
    ("pn", "{system}{part}上的{sub}应订购哪个零件号？"),
    ("temp", "{system}{part}里的{sub}最多能耐受多高温度？"),
)


def generate(seed: int):
    """The pages' texts and the questions: [(question, answer page, language)]."""
    rng = random.Random(seed)
    per_language = (PAGES - CONTENTS_PAGES - BULLETIN_PAGES) // 2
    english = rng.sample([(s, p, u) for s in EN_SYSTEMS for p in EN_PARTS for u in EN_SUBPARTS], per_language)
    chinese = rng.sample([(s, p, u) for s in ZH_SYSTEMS for p in ZH_PARTS for u in ZH_SUBPARTS], per_language)
    components = [("en", name) for name in english] + [("zh", name) for name in chinese]
    rng.shuffle(components)
    pages, questions = [], []
    for index, (language, (system, part, sub)) in enumerate(components):
        number = CONTENTS_PAGES + index + 1
        facts = {
            "number": number,
            "system": system,
            "part": part,
            "sub": sub,
            "hours": rng.choice([250, 500, 750, 1000, 1500, 2000]),
            "pn": f"{rng.randint(100, 999)}-{rng.randint(1000, 9999)}",
            "temp": rng.choice([80, 95, 110, 120, 150]),
            "torque": rng.choice([12, 18, 25, 40]),
            "supplier": rng.choice(SUPPLIERS if language == "en" else ZH_SUPPLIERS),
        }
        pages.append((EN_PAGE if language == "en" else ZH_PAGE).format(**facts))
        _fact, template = rng.choice(EN_QUESTIONS if language == "en" else ZH_QUESTIONS)
        questions.append((template.format(**facts), number, language))
    names = [
        f"{system} {part} {sub}" if language == "en" else f"{system}{part}{sub}"
        for language, (system, part, sub) in components
    ]
    half = len(names) // 2
    head = ["Contents / 目录\n" + "\n".join(names[:half]), "Contents / 目录 (continued)\n" + "\n".join(names[half:])]
    # Service bulletins: distractors naming components with the words of the questions' facts.
    bulletins = []
    for index in range(BULLETIN_PAGES):
        lines = [f"Service bulletin {index + 1} / 服务通告"]
        for name in rng.sample(names, 10):
            lines.append(
                f"From serial 4000 the {name} comes from a new supplier; the inspection interval, part number "
                f"and temperature limit stay as stated. / "
                f"{name}自序列号4000起更换供应商，检验周期、零件号和温度上限不变。"
            )
        bulletins.append("\n".join(lines))
    # The bulletins go among the component pages (the answer pages move down accordingly).
    slots = sorted(rng.sample(range(len(pages) + 1), BULLETIN_PAGES))
    body: list[str] = []
    renumber = {}
    cursor = 0
    for original, text in enumerate(pages):
        while cursor < len(slots) and slots[cursor] == original:
            body.append(bulletins[cursor])
            cursor += 1
        renumber[CONTENTS_PAGES + original + 1] = CONTENTS_PAGES + len(body) + 1
        body.append(text)
    body += bulletins[cursor:]
    questions = [(question, renumber[answer], language) for question, answer, language in questions]
    return head + body, questions


def document_of(texts: list[str]):
    from assets.documents.pages import DocumentText, Line, PageText, TextSource

    return DocumentText(
        pages=tuple(
            PageText(
                number=number,
                lines=tuple(Line(line, (0, 0, 0, 0)) for line in text.split("\n")),
                source=TextSource.PDF,
            )
            for number, text in enumerate(texts, start=1)
        )
    )


_WORDS = re.compile(r"[\w']+")


def substring_pages(texts: list[str], question: str) -> list[int]:
    words = [word.lower() for word in _WORDS.findall(question) if len(word) > 1]
    scored = []
    for number, text in enumerate(texts, start=1):
        folded = text.lower()
        hits = sum(1 for word in words if word in folded)
        if hits:
            scored.append((-hits, number))
    return [number for _hits, number in sorted(scored)[:SENT]] or list(range(1, SENT + 1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    os.environ.setdefault("PLATFORM_PROFILE", "test")
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    import django

    django.setup()
    from assets import content
    from assets.documents import model_pages, retrieval

    assert content.MODEL_PAGES_PER_FILE == SENT
    texts, questions = generate(args.seed)
    document = document_of(texts)
    # A PDF of that document as pages_choose sees it: its text layer is the generated one.
    asset = SimpleNamespace(is_pdf=True, page_count=len(texts), unusable_pages=[], pk="bench")
    model_pages._document_text = lambda _asset: document

    started = time.perf_counter()
    retrieval.tokenize("预热 warm-up")  # jieba's dictionary, loaded once per process
    loaded = time.perf_counter()
    retrieval.rank_pages(document, "warm-up", limit=1)  # builds and caches the index
    built = time.perf_counter()

    found = {"retrieval": {"en": 0, "zh": 0}, "first pages": {"en": 0, "zh": 0}, "substring": {"en": 0, "zh": 0}}
    top1 = {"en": 0, "zh": 0}
    asked = {"en": 0, "zh": 0}
    misses = []
    timing = time.perf_counter()
    for question, answer, language in questions:
        asked[language] += 1
        choice = model_pages.pages_choose(asset, question, limit=16)
        assert len(choice.pages) <= SENT
        if answer in choice.pages:
            found["retrieval"][language] += 1
        else:
            misses.append((question, answer, choice.pages))
        ranked = retrieval.rank_pages(document, question, limit=1)
        top1[language] += bool(ranked) and ranked[0][0] == answer
        found["first pages"][language] += answer in range(1, SENT + 1)
        found["substring"][language] += answer in substring_pages(texts, question)
    per_question = (time.perf_counter() - timing) / len(questions)

    total = len(questions)
    print(
        f"document: {len(texts)} pages ({CONTENTS_PAGES} contents, {BULLETIN_PAGES} bulletins), {total} questions "
        f"({asked['en']} English, {asked['zh']} Chinese), seed {args.seed}; pages sent per question: <= {SENT}"
    )
    print(
        f"jieba dictionary load: {loaded - started:.2f} s; index build (200 pages): {built - loaded:.2f} s; "
        f"per question (choose pages, incl. a top-1 ranking): {per_question * 1000:.1f} ms"
    )
    print(f"{'rule':<14} {'all':>8} {'English':>9} {'Chinese':>9}")
    for rule, counts in found.items():
        all_ = (counts["en"] + counts["zh"]) / total
        print(f"{rule:<14} {all_:>8.1%} {counts['en'] / asked['en']:>9.1%} {counts['zh'] / asked['zh']:>9.1%}")
    print(
        f"{'top-1 (BM25)':<14} {(top1['en'] + top1['zh']) / total:>8.1%} "
        f"{top1['en'] / asked['en']:>9.1%} {top1['zh'] / asked['zh']:>9.1%}"
    )
    retrieved = (found["retrieval"]["en"] + found["retrieval"]["zh"]) / total
    for rule in ("first pages", "substring"):
        baseline = (found[rule]["en"] + found[rule]["zh"]) / total
        ratio = f"{retrieved / baseline:.1f}x" if baseline else "inf (baseline found none)"
        print(f"answer page sent: retrieval / {rule} = {ratio}")
    print(f"goal: >= 95 % of answer pages sent -> {'met' if retrieved >= 0.95 else 'NOT met'} ({retrieved:.1%})")
    for question, answer, pages in misses[:5]:
        print(f"  missed: {question!r} answer p.{answer}, sent {list(pages)}")


if __name__ == "__main__":
    main()
