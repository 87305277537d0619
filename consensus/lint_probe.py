"""Timed probes of a regular expression: crafted texts that make a backtracking pattern stall.

:func:`probe` runs the compiled pattern, as the rules judge compiles it, on texts made of a
prefix (a sample of what leads to a quantifier), a long run of a character the quantifier
repeats, :data:`SEP` (which breaks the run) and a tail (a sample match of the whole pattern, which
defeats the engine's required-literal shortcut), each search within :data:`PROBE_TIMEOUT_S`.
Runs of :data:`PROBE_LENGTHS` characters: a stall on a short text is catastrophic; one only on
the longest text is super-linear growth. :mod:`consensus.lint_regex` turns the result into
findings. Unlike the static analysis, a probe's result depends on the machine and its load; so
a stall on a text longer than :data:`TYPICAL_LENGTH` is reported only when a second measurement
confirms super-linear growth: the search on the text is more than :data:`GROWTH_LIMIT` times
slower than on a quarter of it (a linear pattern is 4 times slower, a quadratic one 16 times),
both timed in the same run, so a loaded machine slows both alike. A large but linear pattern
(hundreds of alternatives) is not reported for being slow on a busy machine.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any, NamedTuple

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
GROWTH_LIMIT = 8.0
"""Slow-down from a quarter of a long probe's text to all of it beyond which growth is
super-linear (linear: 4, quadratic: 16)."""
CONFIRM_TIMEOUT_S = 5.0
"""Bound on each search of the confirming measurement."""


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
            def text_of(k: int, prefix: str = prefix, pump: str = pump) -> str:
                return prefix + pump * max(1, k // len(pump)) + SEP + tail

            text = text_of(n)
            try:
                rx.search(text, timeout=PROBE_TIMEOUT_S)
            except TimeoutError:
                if n <= TYPICAL_LENGTH or _grows(rx, text_of(n // 4), text):
                    return Probe(n, text)
            if time.perf_counter() - start > PATTERN_PROBE_BUDGET_S:
                return None
    return None


def _grows(rx: Any, quarter: str, whole: str) -> bool:
    """Whether the search slows down super-linearly from ``quarter`` to ``whole`` (the best of
    two timings of the quarter, one of the whole; a search that outlives
    :data:`CONFIRM_TIMEOUT_S` counts as growth)."""
    def best(text: str, repeats: int = 2) -> float | None:
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            try:
                rx.search(text, timeout=CONFIRM_TIMEOUT_S)
            except TimeoutError:
                return None
            times.append(time.perf_counter() - t0)
        return min(times)

    small = best(quarter)
    big = best(whole, repeats=1) if small is not None else None
    if small is None or big is None:
        return True
    return big > GROWTH_LIMIT * max(small, 1e-3)
