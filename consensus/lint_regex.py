"""Backtracking risk of a constitution's regular expressions: static analysis and timed probes.

The rules judge runs every pattern on the ``regex`` engine within its call's time budget, so a
catastrophic pattern costs a ``timeout`` abstention, never a stalled run (:mod:`judges.budget`).
This module finds such patterns before they are deployed:

* **Static analysis** parses the pattern (Python's own regex parser; the ``regex`` module's
  ``\\p{..}`` classes are read as ``\\w``; :mod:`consensus.lint_regex_tree`) and looks at every
  quantifier ``*``, ``+``, ``{m,}`` (or ``{m,n}`` with ``n`` >= :data:`LARGE_REPEAT`). For each
  character ``c`` the pattern names (and a few common ones) it counts the ways the repeated group
  matches runs ``c``, ``cc``, ... of up to :data:`~consensus.lint_regex_tree.RUN` characters. A
  group that matches runs of two different lengths (a nested quantifier: ``(a+)+``,
  ``(\\w+\\s?)*``) or one run in two ways (overlapping alternatives: ``(a|a)+``, ``(x|xy?)+``)
  can split a long run in exponentially many ways, each tried before the match fails. Two
  unbounded quantifiers side by side that match the same character with nothing required
  between them (``\\w+\\s*\\w+``) cost polynomial time.
* **Probes** (:mod:`consensus.lint_probe`) run the compiled pattern on crafted texts, each within
  :data:`~consensus.lint_probe.PROBE_TIMEOUT_S`: the text that leads to each quantifier (a sample
  of what precedes it), a long run of a character it repeats, a character that breaks the run,
  then a sample match of the whole pattern (which defeats the engine's required-literal
  shortcut). Runs of :data:`~consensus.lint_probe.PROBE_LENGTHS` characters: a stall on a short
  text is catastrophic; one only on the longest text is super-linear growth (the rules judge's
  budget bounds it, but long answers may cost an abstention).

Findings (:func:`regex_risks`): ``catastrophic-backtracking`` is an error when a probe stalls
within the typical answer length, or static analysis finds exponential ambiguity and a probe
confirms it; a warning when only static analysis finds it. ``polynomial-backtracking`` is a
warning. Static analysis is a heuristic (single-character runs only); the probes cover some of
what it misses.

Example:
    >>> [r.code for r in static_risks(r"(\\w+\\s?)+$")]
    ['catastrophic-backtracking']
    >>> static_risks(r"\\b(?:so|such)\\s+\\w+")
    []
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from re import _constants as sre  # type: ignore[attr-defined]
from typing import Any, Literal, NamedTuple

import regex

from consensus.lint_probe import PROBE_LENGTHS, SEP, TYPICAL_LENGTH, Probe, probe
from consensus.lint_regex_tree import (
    COMMON,
    MAXREPEAT,
    NONE,
    REPEATS,
    RUN,
    children,
    node_ways,
    parse,
    render,
    sample,
    scoped_flags,
    ways,
)

LARGE_REPEAT = 16
"""A bounded quantifier ``{m,n}`` with ``n`` at least this counts as unbounded."""


class RegexRisk(NamedTuple):
    """One finding about a pattern."""

    severity: Literal["error", "warning"]
    code: Literal["catastrophic-backtracking", "polynomial-backtracking"]
    message: str


class _Static(NamedTuple):
    kind: Literal["exponential", "polynomial"]
    what: str           # the construct, rendered
    why: str
    prefix: str         # a sample of what precedes it
    pump: str           # the character to repeat


# --- static analysis -----------------------------------------------------------------------

def _pumps(tree: Any) -> list[str]:
    """Characters worth trying: the pattern's own literals and range starts, then common ones."""
    found: list[str] = []

    def walk(seq: Any) -> None:
        for op, av in seq:
            if op is sre.LITERAL:
                found.append(chr(av))
            elif op is sre.IN:
                found.extend(chr(a) if o is sre.LITERAL else chr(a[0])
                             for o, a in av if o in (sre.LITERAL, sre.RANGE))
            for child in children(op, av):
                walk(child)

    walk(tree)
    return list(dict.fromkeys([*found, *COMMON]))[:48]


def _unbounded(hi: int) -> bool:
    return hi == MAXREPEAT or hi >= LARGE_REPEAT


def _walk(seq: Any, prefix: str, pumps: list[str], icase: bool, dotall: bool,
          out: list[_Static], repeats: list[tuple[str, str]]) -> None:
    """Collect the risky constructs of ``seq``; ``repeats`` gets (prefix, pump) per quantifier."""
    items = list(seq)
    for i, (op, av) in enumerate(items):
        before = prefix + sample(items[:i])
        if op in REPEATS and _unbounded(av[1]):
            body = av[2]
            matched = [c for c in pumps if ways(body, c, icase, dotall)[1:] != NONE[1:]]
            if matched:
                repeats.append((before, matched[0]))
            for c in matched:
                w = ways(body, c, icase, dotall)
                lengths = [k for k in range(1, RUN + 1) if w[k]]
                twice = [k for k in lengths if w[k] >= 2]
                if twice:
                    out.append(_Static("exponential", render([(op, av)]),
                                       f"its alternatives match the same text {c * twice[0]!r}",
                                       before, c))
                    break
                if len(lengths) >= 2:
                    out.append(_Static("exponential", render([(op, av)]),
                                       f"the repeated group itself matches runs of {c!r} of "
                                       f"different lengths ({lengths[0]} and {lengths[1]})",
                                       before, c))
                    break
        if op is sre.SUBPATTERN:
            sub = scoped_flags(av[1], av[2], icase, dotall)
            _walk(av[3], before, pumps, *sub, out, repeats)
        elif op in (sre.ASSERT, sre.ASSERT_NOT):
            _walk(av[1], before, pumps, icase, dotall, out, repeats)
        else:
            for child in children(op, av):
                _walk(child, before, pumps, icase, dotall, out, repeats)
    _adjacent(items, prefix, pumps, icase, dotall, out)


def _adjacent(items: list[tuple[Any, Any]], prefix: str, pumps: list[str], icase: bool,
              dotall: bool, out: list[_Static]) -> None:
    """Two unbounded quantifiers matching one character, nothing required between them."""
    for i, (op, av) in enumerate(items):
        if op not in REPEATS or av[1] != MAXREPEAT:
            continue
        for j in range(i + 1, len(items)):
            op2, av2 = items[j]
            if op2 in REPEATS and av2[1] == MAXREPEAT:
                for c in sorted(pumps, key=lambda ch: ch not in COMMON):
                    if ways(av[2], c, icase, dotall)[1] and ways(av2[2], c, icase, dotall)[1] \
                            and all(node_ways(o, a, c, icase, dotall)[0]
                                    for o, a in items[i + 1:j]):
                        out.append(_Static(
                            "polynomial", render(items[i:j + 1]),
                            f"two unbounded quantifiers both match {c!r} with nothing required "
                            "between them", prefix + sample(items[:i]), c))
                        return
            if not node_ways(op2, av2, SEP, icase, dotall)[0]:
                break  # something is required between them


# --- findings -------------------------------------------------------------------------------

def _static(pattern: str, flags: int) -> tuple[list[_Static], list[tuple[str, str]], str]:
    tree = parse(pattern, flags)
    if tree is None:
        return [], [], ""
    out: list[_Static] = []
    repeats: list[tuple[str, str]] = []
    icase = bool(tree.state.flags & re.IGNORECASE)
    dotall = bool(tree.state.flags & re.DOTALL)
    _walk(tree, "", _pumps(tree), icase, dotall, out, repeats)
    return out, repeats, sample(tree)


def static_risks(pattern: str, flags: int = regex.IGNORECASE) -> list[RegexRisk]:
    """What static analysis alone says about ``pattern`` (no probe is run).

    Example:
        >>> static_risks(r"(a|a)+$")[0].message.split(": ")[0]
        'nested quantifier or overlapping alternatives in (a(?:|))+'
    """
    found, _, _ = _static(pattern, flags)
    return [_static_risk(s, None, probed=False) for s in found]


def _static_risk(s: _Static, stall: Probe | None, *, probed: bool = True) -> RegexRisk:
    if s.kind == "exponential":
        head = f"nested quantifier or overlapping alternatives in {_cut(s.what)}: {s.why}, so " \
               "a long run can be split in exponentially many ways before a match fails"
        if stall is not None:
            return RegexRisk("error", "catastrophic-backtracking", f"{head}; {stall.said()}")
        said = (f"probes of up to {PROBE_LENGTHS[-1]:,} characters stayed fast on this engine"
                if probed else "not probed")
        return RegexRisk("warning", "catastrophic-backtracking",
                         f"{head} ({said}; a risk, not a measured stall)")
    head = f"{_cut(s.what)}: {s.why}, so time grows polynomially with the length of a run"
    if stall is not None and stall.length <= TYPICAL_LENGTH:
        return RegexRisk("error", "catastrophic-backtracking", f"{head}; {stall.said()}: "
                         "an answer of typical length can stall the rules judge")
    return RegexRisk("warning", "polynomial-backtracking",
                     head + (f"; {stall.said()}" if stall is not None else ""))


def regex_risks(pattern: str, flags: int = regex.IGNORECASE) -> list[RegexRisk]:
    """Static analysis and probes of one pattern, as the rules judge compiles it.

    Example:
        >>> [(r.severity, r.code) for r in regex_risks(r"(x+x+)+y")]
        [('error', 'catastrophic-backtracking')]
        >>> regex_risks(r"\\bDAN mode\\b")
        []
    """
    found, repeats, whole = _static(pattern, flags)
    targeted = [(s.prefix, s.pump) for s in found]
    generic = [(p, c) for p, c in repeats[:6]] + [("", c) for c in ("a", " ", "1", "a ", ".")]
    stall = probe(pattern, flags, list(dict.fromkeys(targeted + generic)), tail=whole)
    out = [_static_risk(s, stall) for s in found]
    if stall is not None and not found:
        if stall.length <= TYPICAL_LENGTH:
            out.append(RegexRisk("error", "catastrophic-backtracking",
                                 f"{stall.said()}: an answer of typical length can stall the "
                                 "rules judge until its budget runs out"))
        else:
            out.append(RegexRisk("warning", "polynomial-backtracking",
                                 f"super-linear time: {stall.said()}; the rules judge's budget "
                                 "bounds it, but a long answer may cost a timeout abstention"))
    return _unique(out)


def _unique(risks: list[RegexRisk]) -> list[RegexRisk]:
    """The most telling finding only: one line per pattern."""
    rank = {("error", "catastrophic-backtracking"): 0, ("warning", "catastrophic-backtracking"): 1,
            ("error", "polynomial-backtracking"): 1, ("warning", "polynomial-backtracking"): 2}
    return sorted(risks, key=lambda r: rank[(r.severity, r.code)])[:1]


def _cut(s: str, n: int = 70) -> str:
    return s if len(s) <= n else s[: n - 1] + "…"


def iter_patterns(check: Any) -> Iterator[tuple[str, str, int]]:
    """(field, pattern, flags) of every regex a check runs: ``pattern``, ``unless.N``,
    ``phrases.N`` of a refusal check (keyword regexes are built linear and not listed).

    Example:
        >>> from consensus.constitution import RegexCheck
        >>> [f for f, _, _ in iter_patterns(RegexCheck(pattern="x", unless=("y",)))]
        ['pattern', 'unless.0']
    """
    if getattr(check, "type", None) == "regex":
        yield "pattern", check.pattern, check.compiled_flags()
    for i, p in enumerate(getattr(check, "unless", ())):
        yield f"unless.{i}", p, regex.IGNORECASE
    if getattr(check, "type", None) == "refusal":
        for i, p in enumerate(check.phrases):
            yield f"phrases.{i}", p, regex.IGNORECASE
