"""Timed probes of a regular expression: crafted texts that make a backtracking pattern stall.

:func:`probe` runs the compiled pattern, as the rules judge compiles it, on texts made of a
prefix (a sample of what leads to a quantifier), a long run of a character the quantifier
repeats, :data:`SEP` (which breaks the run) and a tail (a sample match of the whole pattern, which
defeats the engine's required-literal shortcut), each search within :data:`PROBE_TIMEOUT_S`.
Runs of :data:`PROBE_LENGTHS` characters: a stall on a short text is catastrophic; one only on
the longest text is super-linear growth. :mod:`consensus.lint_regex` turns the result into
findings. Unlike the static analysis, a probe's result depends on the machine and its load.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import NamedTuple

from consensus.constitution import compile_regex

PROBE_TIMEOUT_S = 0.25
"""Time one probe search may take before the pattern is reported."""
PROBE_LENGTHS = (32, 2_000, 20_000)
"""Run lengths of the probes: a sentence, a typical answer, a long answer."""
TYPICAL_LENGTH = 2_000
"""A stall at or below this length is catastrophic; above it, super-linear growth."""
PATTERN_PROBE_BUDGET_S = 1.5
"""Time all probes of one pattern may take together."""
SEP = "\x00"
"""Ends the run of a probe: a character almost no pattern matches."""


class Probe(NamedTuple):
    """A probe that outlived :data:`PROBE_TIMEOUT_S`."""

    length: int
    text: str

    def said(self) -> str:
        """The clause a finding quotes this probe with."""
        shown = self.text[:24] + ("…" if len(self.text) > 24 else "")
        return (f"a probe search took over {PROBE_TIMEOUT_S:g}s on a {len(self.text):,}-character "
                f"text ({shown!r})")


def probe(pattern: str, flags: int, probes: Sequence[tuple[str, str]], tail: str = "",
          lengths: Sequence[int] = PROBE_LENGTHS) -> Probe | None:
    """The first probe text (``prefix + pump * n + separator + tail``) that stalls the pattern.

    Shorter runs are tried first; all probes together stop after
    :data:`PATTERN_PROBE_BUDGET_S`.

    Example:
        >>> import regex
        >>> probe(r"(a|a)+$", regex.IGNORECASE, [("", "a")]).length
        32
        >>> probe(r"\\bhello\\b", regex.IGNORECASE, [("", "a")]) is None
        True
    """
    rx = compile_regex(pattern, flags)
    start = time.perf_counter()
    for n in lengths:
        for prefix, pump in probes:
            text = prefix + pump * max(1, n // len(pump)) + SEP + tail
            try:
                rx.search(text, timeout=PROBE_TIMEOUT_S)
            except TimeoutError:
                return Probe(n, text)
            if time.perf_counter() - start > PATTERN_PROBE_BUDGET_S:
                return None
    return None
