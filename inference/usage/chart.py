"""The usage page's bar chart, drawn on the server as SVG (no script: CSP ``script-src 'self'``).

One bar per day: prompt tokens at the bottom, completion tokens stacked on top, scaled to the
busiest day. The SVG stretches to the width of its box (``preserveAspectRatio="none"``), so a
phone shows the whole period without scrolling sideways; its labels are HTML around it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

from inference.usage.selectors import UsageFigures

SLOT = 10  # SVG units per day
BAR = 8  # the bar's width inside its slot
HEIGHT = 100


@dataclass(frozen=True)
class Bar:
    day: date
    figures: UsageFigures
    x: int
    width: int
    prompt_y: float
    prompt_height: float
    completion_y: float
    completion_height: float


@dataclass(frozen=True)
class Chart:
    bars: list[Bar]
    view_width: int
    view_height: int
    maximum: int  # the busiest day's tokens: the top of the scale

    @property
    def first_day(self) -> date | None:
        return self.bars[0].day if self.bars else None

    @property
    def last_day(self) -> date | None:
        return self.bars[-1].day if self.bars else None


def usage_chart(by_day: list[tuple[date, UsageFigures]]) -> Chart:
    maximum = max((figures.total_tokens for _, figures in by_day), default=0)
    bars = []
    for index, (day, figures) in enumerate(by_day):
        scale = HEIGHT / maximum if maximum else 0
        prompt_height = round(figures.prompt_tokens * scale, 2)
        completion_height = round(figures.completion_tokens * scale, 2)
        bars.append(
            Bar(
                day=day,
                figures=figures,
                x=index * SLOT + (SLOT - BAR) // 2,
                width=BAR,
                prompt_y=round(HEIGHT - prompt_height, 2),
                prompt_height=prompt_height,
                completion_y=round(HEIGHT - prompt_height - completion_height, 2),
                completion_height=completion_height,
            )
        )
    return Chart(bars=bars, view_width=max(len(by_day), 1) * SLOT, view_height=HEIGHT, maximum=maximum)
