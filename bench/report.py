"""Figures measured by the benchmarks, and the Markdown page that lists them."""

from __future__ import annotations

import json
import statistics
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path


@dataclass
class Figure:
    """One measured value, the target it is held against, and how it was taken.

    ``met`` is None when the figure has no target.
    """

    name: str
    value: str
    target: str = ""
    met: bool | None = None
    note: str = ""


@dataclass
class Section:
    """The figures of one scenario, with a paragraph on how it runs."""

    title: str
    method: str
    figures: list[Figure] = field(default_factory=list)
    error: str = ""


def save_sections(path: Path, sections: Sequence[tuple[str, Section, str]]) -> None:
    """Write (scenario, section, command) triples to ``path`` as JSON."""
    records = [
        {"scenario": name, "command": command, **asdict(section)}
        for name, section, command in sections
    ]
    path.write_text(json.dumps(records, indent=1) + "\n")


def load_sections(path: Path) -> list[tuple[str, Section, str]]:
    """Read what ``save_sections`` wrote: (scenario, section, command) triples."""
    found = []
    for record in json.loads(path.read_text()):
        figures = [Figure(**figure) for figure in record.pop("figures")]
        name = record.pop("scenario")
        command = record.pop("command")
        found.append((name, Section(figures=figures, **record), command))
    return found


def seconds(value: float) -> str:
    return f"{value:.2f} s"


def milliseconds(value: float) -> str:
    return f"{value * 1000:.0f} ms"


def percentile(values: Sequence[float], fraction: float) -> float:
    """Return the ``fraction`` quantile of ``values`` (nearest rank)."""
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, round(fraction * len(ordered) + 0.5) - 1))
    return ordered[rank]


def median(values: Sequence[float]) -> float:
    return statistics.median(values)


def render(
    command: str,
    machine: Sequence[tuple[str, str]],
    sections: Sequence[Section],
    preamble: str,
) -> str:
    """Return the Markdown page of a benchmark run."""
    lines = ["# Benchmarks", "", preamble.strip(), ""]
    lines += ["## How to run", "", f"    {command}", ""]
    lines += ["## Machine", "", "| | |", "|---|---|"]
    lines += [f"| {label} | {value} |" for label, value in machine]
    lines.append("")
    lines += ["## Summary", ""]
    lines += ["| figure | measured | target | met |", "|---|---|---|---|"]
    for section in sections:
        for figure in section.figures:
            if figure.target:
                met = {True: "yes", False: "**no**", None: ""}[figure.met]
                lines.append(
                    f"| {figure.name} | {figure.value} | {figure.target} | {met} |"
                )
    lines.append("")
    for section in sections:
        lines += [f"## {section.title}", "", section.method.strip(), ""]
        if section.error:
            lines += [f"Failed: {section.error}", ""]
        if section.figures:
            lines += ["| figure | measured | target | note |", "|---|---|---|---|"]
            for figure in section.figures:
                lines.append(
                    f"| {figure.name} | {figure.value} | {figure.target} "
                    f"| {figure.note} |"
                )
            lines.append("")
    return "\n".join(lines)
