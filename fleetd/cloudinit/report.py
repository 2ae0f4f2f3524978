"""Problems found in a cloud-config, each with the line it is on."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

import yaml


class Severity(enum.Enum):
    """The severity of a problem; an error stops the file from being applied."""

    ERROR = "error"
    WARNING = "warning"


@dataclass(frozen=True, order=True)
class Problem:
    """One problem; ``line`` is 1-based, 0 when it concerns the whole file."""

    line: int
    severity: Severity = field(compare=False)
    message: str = field(compare=True)

    def format(self, source: str) -> str:
        """Return ``source:line: severity: message``, as compilers print it."""
        where = f"{source}:{self.line}" if self.line else source
        return f"{where}: {self.severity.value}: {self.message}"


def line_of(node: yaml.Node | None) -> int:
    """Return the 1-based line a YAML node starts on (0 for no node)."""
    if node is None:
        return 0
    return int(node.start_mark.line) + 1


class Report:
    """The problems collected while reading one cloud-config."""

    def __init__(self) -> None:
        self.problems: list[Problem] = []

    def error(self, where: yaml.Node | int | None, message: str) -> None:
        """Record an error at a node or a 1-based line."""
        self._add(where, Severity.ERROR, message)

    def warning(self, where: yaml.Node | int | None, message: str) -> None:
        """Record a warning at a node or a 1-based line."""
        self._add(where, Severity.WARNING, message)

    @property
    def errors(self) -> list[Problem]:
        """The errors, in line order."""
        return [p for p in self.sorted() if p.severity is Severity.ERROR]

    @property
    def warnings(self) -> list[Problem]:
        """The warnings, in line order."""
        return [p for p in self.sorted() if p.severity is Severity.WARNING]

    def sorted(self) -> list[Problem]:
        """Return every problem ordered by line, in the order found per line."""
        return sorted(self.problems, key=lambda problem: problem.line)

    def _add(
        self, where: yaml.Node | int | None, severity: Severity, message: str
    ) -> None:
        line = where if isinstance(where, int) else line_of(where)
        self.problems.append(Problem(line, severity, message))
