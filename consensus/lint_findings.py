"""What ``consensus constitution lint`` reports, and where: :class:`Finding` and :class:`LintReport`.

:mod:`consensus.lint_file` (the schema, regex, overlap and usage checks) and
:mod:`consensus.lint_corpus` (the checks run over a corpus) both report through a :class:`Sink`,
which locates each finding's field path (``principles.3.checks.0.pattern``) in the YAML text.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal, NamedTuple

import yaml
from pydantic import BaseModel, ConfigDict, Field

from consensus.constitution_checks import CHECK_TYPES

LintCode = Literal[
    "duplicate-id", "invalid-regex", "unknown-severity", "unknown-intervention", "invalid-field",
    "matches-everything", "catastrophic-backtracking", "polynomial-backtracking", "never-matches",
    "matches-benign", "overlap-conflict", "overlap-severity", "ineffective-check",
    "unused-principle",
]
"""Every kind of finding, in the order findings on one line are listed."""
_SHORT_KEY = {v: k for k, v in CHECK_TYPES.items() if v}  # pattern -> regex, ...


class Finding(BaseModel):
    """One problem of a constitution, with where it is.

    Example:
        >>> Finding(severity="error", code="duplicate-id", message="m", file="c.yaml", line=3,
        ...         field="principles.1.id").text()
        'c.yaml:3: error: duplicate-id: m (principles.1.id)'
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    severity: Literal["error", "warning"] = Field(description="error: exit 1; warning: exit 0.")
    code: LintCode = Field(description="What kind of problem (table in consensus.lint_file).")
    message: str = Field(description="The problem, in a sentence.")
    file: str = Field(description="The constitution file.")
    line: int | None = Field(default=None, description="1-based line in the YAML, if known.")
    field: str | None = Field(default=None, description="Field path, e.g. principles.3.id.")
    principle: str | None = Field(default=None, description="Principle id, if known.")

    def text(self) -> str:
        """``FILE:LINE: severity: code: message (field)``."""
        where = f"{self.file}:{self.line}" if self.line else self.file
        return f"{where}: {self.severity}: {self.code}: {self.message}" + (
            f" ({self.field})" if self.field else "")


class LintReport(NamedTuple):
    """The findings about one file."""

    file: str
    findings: list[Finding]
    n_principles: int
    n_texts: int
    """Corpus texts the checks ran on."""

    @property
    def errors(self) -> int:
        """Findings of severity error."""
        return sum(f.severity == "error" for f in self.findings)

    def as_json(self) -> dict[str, Any]:
        """The report as JSON data (``--json``)."""
        return {"file": self.file, "principles": self.n_principles, "corpus_texts": self.n_texts,
                "errors": self.errors, "warnings": len(self.findings) - self.errors,
                "findings": [f.model_dump(mode="json") for f in self.findings]}


# --- where things are -----------------------------------------------------------------------

class Lines:
    """Line numbers of field paths in a YAML text."""

    def __init__(self, text: str):
        try:
            self.root: yaml.Node | None = yaml.compose(text, Loader=yaml.SafeLoader)
        except yaml.YAMLError:
            self.root = None

    def line(self, path: Sequence[str | int]) -> int | None:
        """The line of a field path (of its deepest part found), or None if not YAML."""
        node = self.root
        if node is None:
            return None
        parts = list(path)
        if isinstance(node, yaml.SequenceNode) and parts[:1] == ["principles"]:
            parts = parts[1:]  # a bare list of principles
        for part in parts:
            child = self._child(node, part)
            if child is None:
                break
            node = child
        return node.start_mark.line + 1

    @staticmethod
    def _child(node: yaml.Node, part: str | int) -> yaml.Node | None:
        if isinstance(node, yaml.SequenceNode) and isinstance(part, int):
            return node.value[part] if 0 <= part < len(node.value) else None
        if isinstance(node, yaml.MappingNode):
            keys = {k.value: v for k, v in node.value if isinstance(k, yaml.ScalarNode)}
            if str(part) in keys:
                return keys[str(part)]
            short = _SHORT_KEY.get(str(part))  # {regex: PAT} holds the pattern
            if short in keys:
                inner = keys[short]
                return Lines._child(inner, part) or inner
        return None


class Sink:
    """Collects findings, locating each field path in the file."""

    def __init__(self, path: Path, lines: Lines):
        self.path, self.lines = path, lines
        self.found: list[Finding] = []

    def __call__(self, severity: Literal["error", "warning"], code: LintCode, message: str,
                 field: list[Any], pid: str | None) -> None:
        self.found.append(Finding(severity=severity, code=code, message=message,
                                  file=str(self.path), line=self.line(field) if field else None,
                                  field=".".join(map(str, field)) or None, principle=pid))

    def line(self, field: list[Any]) -> int | None:
        """The line of a field path."""
        return self.lines.line(field)


class CheckAt(NamedTuple):
    """A check that validates, with its principle (position, id, scope) and its index."""

    pos: int            # the principle's index in the file
    pid: str | None
    scope: str
    check_index: int
    check: Any

