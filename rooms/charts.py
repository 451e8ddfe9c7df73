"""Charts of a report, drawn with matplotlib (its object API, no pyplot: no global state, safe in
a worker thread): one PNG for the chat network (``!report`` on a phone), SVG for the dashboard
(inline, so the page makes no other request). Colours are the Okabe–Ito palette, which reads
for people with colour-vision deficiencies; every chart has a title and labelled axes.

Drawing takes a few hundred milliseconds: call these from a worker thread.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from typing import TYPE_CHECKING

from rooms.reports import WAIT_BUCKETS, WEEKDAYS, Report

if TYPE_CHECKING:  # matplotlib is imported when a chart is drawn: not at start, not in memory
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

ANSWERED = "#009E73"
MISSED = "#D55E00"
OFFLINE = "#56B4E9"
OVER = "#E69F00"
INK = "#222222"
GRID = "#DDDDDD"


def _integers():  # type: ignore[no-untyped-def]
    from matplotlib.ticker import MaxNLocator

    return MaxNLocator(integer=True)


def _figure(size: tuple[float, float]) -> Figure:
    from matplotlib.figure import Figure

    return Figure(figsize=size, layout="constrained")


def _style(ax: Axes, title: str, ylabel: str = "") -> None:
    ax.set_title(title, loc="left", fontsize=12, fontweight="bold", color=INK)
    ax.set_ylabel(ylabel, color=INK)
    ax.spines[["top", "right"]].set_visible(False)
    ax.grid(axis="y", color=GRID, linewidth=0.8)
    ax.set_axisbelow(True)
    ax.set_ylim(bottom=0, top=max(1.0, ax.get_ylim()[1]))  # counts: never below zero
    ax.tick_params(colors=INK, labelsize=9)


def volume(ax: Axes, report: Report) -> None:
    days = [d for d, *_ in report.per_day]
    answered = [a for _, a, _, _ in report.per_day]
    missed = [m for _, _, m, _ in report.per_day]
    offline = [o for _, _, _, o in report.per_day]
    x = range(len(days))
    ax.bar(x, answered, color=ANSWERED, label="answered")
    ax.bar(x, missed, bottom=answered, color=MISSED, label="missed")
    ax.bar(x, offline, bottom=[a + m for a, m in zip(answered, missed, strict=True)],
           color=OFFLINE, label="offline")  # fmt: skip
    step = max(1, len(days) // 10)
    ax.set_xticks(list(x)[::step], [f"{d:%d %b}" for d in days][::step])
    ax.yaxis.set_major_locator(_integers())
    ax.legend(frameon=False, ncols=3, fontsize=9, loc="lower right", bbox_to_anchor=(1, 1))
    _style(ax, "Chats per day", "chats")


def waits(ax: Axes, report: Report) -> None:
    labels = [label for label, _ in WAIT_BUCKETS]
    colours = [ANSWERED if bound <= report.target else OVER for _, bound in WAIT_BUCKETS]
    bars = ax.bar(labels, report.wait_distribution, color=colours)
    ax.bar_label(bars, fontsize=9, color=INK)
    ax.yaxis.set_major_locator(_integers())
    _style(ax, f"Wait for the first reply (target {report.target // 60} min)", "chats")


def heatmap(ax: Axes, report: Report) -> None:
    """Weekday × hour; the hours shown run from the earliest with a chat (08 at the latest) to
    the last (17 at the earliest): a night of empty columns says nothing."""
    busy = [h for row in report.heatmap for h, n in enumerate(row) if n]
    first, last = min([8, *busy]), max([17, *busy])
    grid = [row[first : last + 1] for row in report.heatmap]
    image = ax.imshow(
        grid, aspect="auto", cmap="Blues", interpolation="nearest",
        extent=(first - 0.5, last + 0.5, 6.5, -0.5),
    )  # fmt: skip
    ax.set_yticks(range(7), WEEKDAYS)
    ax.set_xticks(range(first, last + 1), [f"{h:02d}" for h in range(first, last + 1)])
    ax.set_xlabel(f"hour ({report.timezone})", color=INK)
    ax.figure.colorbar(image, ax=ax, label="chats started", fraction=0.03, pad=0.01)
    ax.set_title("When visitors ask", loc="left", fontsize=12, fontweight="bold", color=INK)
    ax.tick_params(colors=INK, labelsize=9)


def ratings(ax: Axes, report: Report) -> None:
    bars = ax.bar(range(1, 6), report.ratings, color=ANSWERED)
    ax.set_xticks(range(1, 6), [str(n) for n in range(1, 6)])
    ax.bar_label(bars, fontsize=9, color=INK)
    ax.yaxis.set_major_locator(_integers())
    _style(ax, "Ratings (1–5)", "chats")
    ax.set_xlabel("rating", color=INK)


def topics(ax: Axes, report: Report, labels: dict[str, str]) -> None:
    shown = report.by_topic[:8][::-1]
    bars = ax.barh([labels.get(t, t) for t, _ in shown], [n for _, n in shown], color=OFFLINE)
    ax.bar_label(bars, fontsize=9, color=INK, padding=2)
    ax.xaxis.set_major_locator(_integers())
    ax.spines[["top", "right"]].set_visible(False)
    ax.set_title("Topics", loc="left", fontsize=12, fontweight="bold", color=INK)
    ax.tick_params(colors=INK, labelsize=9)


def _render(fig: Figure, fmt: str) -> bytes:
    out = io.BytesIO()
    fig.savefig(out, format=fmt, dpi=110, metadata={"Date": None} if fmt == "svg" else None)
    return out.getvalue()


def summary_png(report: Report) -> bytes:
    """The chart for ``!report``: chats per day, the first-reply waits, when visitors ask."""
    fig = _figure((8, 10))
    fig.suptitle(f"{report.period.label}", fontsize=14, fontweight="bold", color=INK)
    top, middle, bottom = fig.subplots(3, 1)
    volume(top, report)
    waits(middle, report)
    heatmap(bottom, report)
    return _render(fig, "png")


def svg(draw: Callable[[Axes], None], size: tuple[float, float] = (7.0, 3.2)) -> str:
    """One chart for the dashboard as inline SVG (its XML declaration removed)."""
    fig = _figure(size)
    ax = fig.subplots()
    draw(ax)
    ax.set_title("", loc="left")  # the page's heading names the chart
    text = _render(fig, "svg").decode("utf-8")
    return text[text.index("<svg") :]
