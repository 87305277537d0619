"""Backtracking risk of a constitution's regular expressions: static analysis and timed probes.

The rules judge runs every pattern on the ``regex`` engine within its call's time budget, so a
catastrophic pattern costs a ``timeout`` abstention, never a stalled run (:mod:`judges.budget`).
This module finds such patterns before they are deployed:

* **Static analysis** parses the pattern (Python's own regex parser; the ``regex`` module's
  ``\\p{..}`` classes are read as ``\\w``) and looks at every quantifier ``*``, ``+``, ``{m,}``
  (or ``{m,n}`` with ``n`` >= :data:`LARGE_REPEAT`). For each character ``c`` the pattern names
  (and a few common ones) it counts the ways the repeated group matches runs ``c``, ``cc``, ...
  of up to :data:`RUN` characters. A group that matches runs of two different lengths (a nested
  quantifier: ``(a+)+``, ``(\\w+\\s?)*``) or one run in two ways (overlapping alternatives:
  ``(a|a)+``, ``(x|xy?)+``) can split a long run in exponentially many ways, each tried before
  the match fails. Two unbounded quantifiers side by side that match the same character with
  nothing required between them (``\\w+\\s*\\w+``) cost polynomial time.
* **Probes** run the compiled pattern on crafted texts, each within :data:`PROBE_TIMEOUT_S`:
  the text that leads to each quantifier (a sample of what precedes it), a long run of a
  character it repeats, a character that breaks the run, then a sample match of the whole
  pattern (which defeats the engine's required-literal shortcut). Runs of :data:`PROBE_LENGTHS`
  characters: a stall on a short text is catastrophic; one only on the longest text is
  super-linear growth (the rules judge's budget bounds it, but long answers may cost an
  abstention).

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
import time
from collections.abc import Iterator, Sequence
from re import _constants as sre  # type: ignore[attr-defined]
from re import _parser as sre_parse  # type: ignore[attr-defined]
from typing import Any, Literal, NamedTuple

import regex

from consensus.constitution import compile_regex

RUN = 6
"""Longest run of one character the static analysis counts matches of."""
LARGE_REPEAT = 16
"""A bounded quantifier ``{m,n}`` with ``n`` at least this counts as unbounded."""
PROBE_TIMEOUT_S = 0.25
"""Time one probe search may take before the pattern is reported."""
PROBE_LENGTHS = (32, 2_000, 20_000)
"""Run lengths of the probes: a sentence, a typical answer, a long answer."""
TYPICAL_LENGTH = 2_000
"""A stall at or below this length is catastrophic; above it, super-linear growth."""
PATTERN_PROBE_BUDGET_S = 1.5
"""Time all probes of one pattern may take together."""
_COMMON = "a1 _.-,\n\tA!@/:é"
_SEP = "\x00"
_MAX = int(sre.MAXREPEAT)
_REPEATS = (sre.MAX_REPEAT, sre.MIN_REPEAT)
_UNICODE_CLASS = re.compile(r"\\([pP])(\{[^}]*\}|[A-Za-z])")

Ways = tuple[int, ...]
"""Ways (capped at 2) a node matches the runs c^0 .. c^RUN of one character c."""


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


def _parse(pattern: str, flags: int) -> Any | None:
    """Python's parse tree of the pattern (``\\p{..}`` read as ``\\w``), or None."""
    text = _UNICODE_CLASS.sub(lambda m: "\\w" if m.group(1) == "p" else "\\W", pattern)
    text = text.replace("\\m", "\\b").replace("\\M", "\\b")
    py = ((re.IGNORECASE if flags & regex.IGNORECASE else 0)
          | (re.MULTILINE if flags & regex.MULTILINE else 0)
          | (re.DOTALL if flags & regex.DOTALL else 0)
          | (re.VERBOSE if flags & regex.VERBOSE else 0))
    try:
        return sre_parse.parse(text, py)
    except (re.error, RecursionError, OverflowError, ValueError, TypeError):
        return None


# --- matching runs of one character ---------------------------------------------------------

def _same(a: str, b: str, icase: bool) -> bool:
    return a == b or (icase and a.casefold() == b.casefold())


def _category(cat: Any, c: str) -> bool:
    name = str(cat)
    if "DIGIT" in name:
        hit = c.isdecimal()
    elif "SPACE" in name:
        hit = c.isspace()
    elif "WORD" in name:
        hit = c.isalnum() or c == "_"
    elif "LINEBREAK" in name:
        hit = c == "\n"
    else:
        return False
    return hit != ("NOT" in name)


def _in_class(items: Sequence[tuple[Any, Any]], c: str, icase: bool) -> bool:
    negate = False
    hit = False
    for op, av in items:
        if op is sre.NEGATE:
            negate = True
        elif op is sre.LITERAL:
            hit = hit or _same(c, chr(av), icase)
        elif op is sre.RANGE:
            lo, hi = av
            hit = hit or any(lo <= ord(x) <= hi for x in {c, c.lower(), c.upper()}
                             if icase or x == c)
        elif op is sre.CATEGORY:
            hit = hit or _category(av, c)
    return hit != negate


def _consumes(op: Any, av: Any, c: str, icase: bool, dotall: bool) -> bool | None:
    """Whether a one-character node matches ``c`` (None: not a one-character node)."""
    if op is sre.LITERAL:
        return _same(c, chr(av), icase)
    if op is sre.NOT_LITERAL:
        return not _same(c, chr(av), icase)
    if op is sre.ANY:
        return dotall or c != "\n"
    if op is sre.IN:
        return _in_class(av, c, icase)
    return None


_EMPTY: Ways = (1,) + (0,) * RUN
_NONE: Ways = (0,) * (RUN + 1)


def _conv(a: Ways, b: Ways) -> Ways:
    return tuple(min(2, sum(a[i] * b[k - i] for i in range(k + 1))) for k in range(RUN + 1))


def _add(a: Ways, b: Ways) -> Ways:
    return tuple(min(2, x + y) for x, y in zip(a, b, strict=True))


def _flags(add: int, remove: int, icase: bool, dotall: bool) -> tuple[bool, bool]:
    icase = (icase or bool(add & re.IGNORECASE)) and not remove & re.IGNORECASE
    dotall = (dotall or bool(add & re.DOTALL)) and not remove & re.DOTALL
    return icase, dotall


def _ways(seq: Any, c: str, icase: bool, dotall: bool) -> Ways:
    out = _EMPTY
    for op, av in seq:
        out = _conv(out, _node_ways(op, av, c, icase, dotall))
        if out == _NONE:
            break
    return out


def _node_ways(op: Any, av: Any, c: str, icase: bool, dotall: bool) -> Ways:
    one = _consumes(op, av, c, icase, dotall)
    if one is not None:
        return (0, 1) + (0,) * (RUN - 1) if one else _NONE
    if op is sre.BRANCH:
        out = _NONE
        for branch in av[1]:
            out = _add(out, _ways(branch, c, icase, dotall))
        return out
    if op is sre.SUBPATTERN:
        _, add, remove, body = av
        return _ways(body, c, *_flags(add, remove, icase, dotall))
    if op in _REPEATS:
        lo, hi, body = av
        return _repeat(lo, hi, _ways(body, c, icase, dotall))
    if op is sre.GROUPREF_EXISTS:
        _, yes, no = av
        return _add(_ways(yes, c, icase, dotall),
                    _ways(no, c, icase, dotall) if no is not None else _EMPTY)
    # Anchors, lookarounds, back-references; atomic groups and possessive quantifiers, which
    # never give back what they matched: zero-width here (a heuristic, see the module).
    return _EMPTY


def _repeat(lo: int, hi: int, body: Ways) -> Ways:
    nonempty = (0, *body[1:])
    total = _EMPTY if lo == 0 else _NONE
    v = _EMPTY
    for i in range(1, min(hi, min(lo, 64) + RUN + 1) + 1):
        v = _conv(v, body if i <= lo else nonempty)
        if i >= lo:
            total = _add(total, v)
        if v == _NONE:
            break
    return total


# --- walking the tree ----------------------------------------------------------------------

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
            for child in _children(op, av):
                walk(child)

    walk(tree)
    return list(dict.fromkeys([*found, *_COMMON]))[:48]


def _children(op: Any, av: Any) -> list[Any]:
    if op is sre.BRANCH:
        return list(av[1])
    if op is sre.SUBPATTERN:
        return [av[3]]
    if op in (*_REPEATS, sre.POSSESSIVE_REPEAT):
        return [av[2]]
    if op in (sre.ASSERT, sre.ASSERT_NOT):
        return [av[1]]
    if op is sre.ATOMIC_GROUP:
        return [av]
    if op is sre.GROUPREF_EXISTS:
        return [av[1]] + ([av[2]] if av[2] is not None else [])
    return []


def _unbounded(hi: int) -> bool:
    return hi == _MAX or hi >= LARGE_REPEAT


def _walk(seq: Any, prefix: str, pumps: list[str], icase: bool, dotall: bool,
          out: list[_Static], repeats: list[tuple[str, str]]) -> None:
    """Collect the risky constructs of ``seq``; ``repeats`` gets (prefix, pump) per quantifier."""
    items = list(seq)
    for i, (op, av) in enumerate(items):
        before = prefix + sample(items[:i])
        if op in _REPEATS and _unbounded(av[1]):
            body = av[2]
            matched = [c for c in pumps if _ways(body, c, icase, dotall)[1:] != _NONE[1:]]
            if matched:
                repeats.append((before, matched[0]))
            for c in matched:
                w = _ways(body, c, icase, dotall)
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
            sub = _flags(av[1], av[2], icase, dotall)
            _walk(av[3], before, pumps, *sub, out, repeats)
        elif op in (sre.ASSERT, sre.ASSERT_NOT):
            _walk(av[1], before, pumps, icase, dotall, out, repeats)
        else:
            for child in _children(op, av):
                _walk(child, before, pumps, icase, dotall, out, repeats)
    _adjacent(items, prefix, pumps, icase, dotall, out)


def _adjacent(items: list[tuple[Any, Any]], prefix: str, pumps: list[str], icase: bool,
              dotall: bool, out: list[_Static]) -> None:
    """Two unbounded quantifiers matching one character, nothing required between them."""
    for i, (op, av) in enumerate(items):
        if op not in _REPEATS or av[1] != _MAX:
            continue
        for j in range(i + 1, len(items)):
            op2, av2 = items[j]
            if op2 in _REPEATS and av2[1] == _MAX:
                for c in sorted(pumps, key=lambda ch: ch not in _COMMON):
                    if _ways(av[2], c, icase, dotall)[1] and _ways(av2[2], c, icase, dotall)[1] \
                            and all(_node_ways(o, a, c, icase, dotall)[0]
                                    for o, a in items[i + 1:j]):
                        out.append(_Static(
                            "polynomial", render(items[i:j + 1]),
                            f"two unbounded quantifiers both match {c!r} with nothing required "
                            "between them", prefix + sample(items[:i]), c))
                        return
            if not _node_ways(op2, av2, _SEP, icase, dotall)[0]:
                break  # something is required between them


def sample(seq: Any) -> str:
    """A short text the parse-tree items ``seq`` match (best effort: lookarounds are ignored).

    Example:
        >>> sample(sre_parse.parse(r"ab\\d{2}(?:x|y)"))
        'ab11x'
    """
    out = []
    for op, av in seq:
        if op is sre.LITERAL:
            out.append(chr(av))
        elif op is sre.NOT_LITERAL:
            out.append("a" if chr(av) != "a" else "b")
        elif op is sre.ANY:
            out.append("a")
        elif op is sre.IN:
            out.append(next((c for c in _COMMON + "bcdxyz0" if _in_class(av, c, False)), ""))
        elif op is sre.BRANCH:
            out.append(sample(av[1][0]) if av[1] else "")
        elif op is sre.SUBPATTERN:
            out.append(sample(av[3]))
        elif op in (*_REPEATS, sre.POSSESSIVE_REPEAT):
            out.append(sample(av[2]) * min(av[0], 64))
        elif op is sre.ATOMIC_GROUP:
            out.append(sample(av))
    return "".join(out)


_AT = {"AT_BEGINNING": "^", "AT_BEGINNING_STRING": "\\A", "AT_END": "$", "AT_END_STRING": "\\Z",
       "AT_BOUNDARY": "\\b", "AT_NON_BOUNDARY": "\\B"}
_CATEGORY = {"CATEGORY_DIGIT": "\\d", "CATEGORY_NOT_DIGIT": "\\D", "CATEGORY_SPACE": "\\s",
             "CATEGORY_NOT_SPACE": "\\S", "CATEGORY_WORD": "\\w", "CATEGORY_NOT_WORD": "\\W"}


def render(seq: Any) -> str:
    """Parse-tree items written back as a pattern (``\\p{..}`` shows as ``\\w``).

    Example:
        >>> render(sre_parse.parse(r"(?:\\w+\\s?)+x"))
        '(?:\\\\w+\\\\s?)+x'
    """
    out = []
    for op, av in seq:
        if op is sre.LITERAL:
            out.append(re.escape(chr(av)))
        elif op is sre.NOT_LITERAL:
            out.append(f"[^{re.escape(chr(av))}]")
        elif op is sre.ANY:
            out.append(".")
        elif op is sre.IN:
            items = "".join(_render_item(o, a) for o, a in av)
            single = len(av) == 1 and av[0][0] is sre.CATEGORY
            out.append(items if single else f"[{items}]")
        elif op is sre.BRANCH:
            out.append("(?:" + "|".join(render(b) for b in av[1]) + ")")
        elif op is sre.SUBPATTERN:
            out.append(("(" if av[0] else "(?:") + render(av[3]) + ")")
        elif op in (*_REPEATS, sre.POSSESSIVE_REPEAT):
            body = list(av[2])
            inner = render(body)
            if len(body) > 1 or (body and body[0][0] is sre.BRANCH):
                inner = f"(?:{inner})"
            out.append(inner + _quantifier(av[0], av[1])
                       + ("?" if op is sre.MIN_REPEAT else "+" if op is not sre.MAX_REPEAT
                          else ""))
        elif op is sre.AT:
            out.append(_AT.get(str(av), ""))
        elif op in (sre.ASSERT, sre.ASSERT_NOT):
            look = ("=" if op is sre.ASSERT else "!") if av[0] >= 0 else \
                ("<=" if op is sre.ASSERT else "<!")
            out.append(f"(?{look}{render(av[1])})")
        elif op is sre.ATOMIC_GROUP:
            out.append(f"(?>{render(av)})")
        elif op is sre.GROUPREF:
            out.append(f"\\{av}")
    return "".join(out)


def _render_item(op: Any, av: Any) -> str:
    if op is sre.NEGATE:
        return "^"
    if op is sre.LITERAL:
        return re.escape(chr(av))
    if op is sre.RANGE:
        return f"{re.escape(chr(av[0]))}-{re.escape(chr(av[1]))}"
    return _CATEGORY.get(str(av), "")


def _quantifier(lo: int, hi: int) -> str:
    if hi == _MAX:
        return {0: "*", 1: "+"}.get(lo, f"{{{lo},}}")
    if lo == 0 and hi == 1:
        return "?"
    return f"{{{lo}}}" if lo == hi else f"{{{lo},{hi}}}"


# --- findings -------------------------------------------------------------------------------

def _static(pattern: str, flags: int) -> tuple[list[_Static], list[tuple[str, str]], str]:
    tree = _parse(pattern, flags)
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
    return [_static_risk(s, None) for s in found]


def _static_risk(s: _Static, stall: Probe | None) -> RegexRisk:
    if s.kind == "exponential":
        head = f"nested quantifier or overlapping alternatives in {_cut(s.what)}: {s.why}, so " \
               "a long run can be split in exponentially many ways before a match fails"
        if stall is not None:
            return RegexRisk("error", "catastrophic-backtracking", f"{head}; {stall.said()}")
        return RegexRisk("warning", "catastrophic-backtracking",
                         f"{head} (probes of up to {PROBE_LENGTHS[-1]:,} characters stayed fast "
                         "on this engine; a risk, not a measured stall)")
    head = f"{_cut(s.what)}: {s.why}, so time grows polynomially with the length of a run"
    if stall is not None and stall.length <= TYPICAL_LENGTH:
        return RegexRisk("error", "catastrophic-backtracking", f"{head}; {stall.said()}: "
                         "an answer of typical length can stall the rules judge")
    return RegexRisk("warning", "polynomial-backtracking",
                     head + (f"; {stall.said()}" if stall is not None else ""))


class Probe(NamedTuple):
    """A probe that outlived :data:`PROBE_TIMEOUT_S`."""

    length: int
    text: str

    def said(self) -> str:
        shown = self.text[:24] + ("…" if len(self.text) > 24 else "")
        return (f"a probe search took over {PROBE_TIMEOUT_S:g}s on a {len(self.text):,}-character "
                f"text ({shown!r})")


def probe(pattern: str, flags: int, probes: Sequence[tuple[str, str]], tail: str = "",
          lengths: Sequence[int] = PROBE_LENGTHS) -> Probe | None:
    """The first probe text (``prefix + pump * n + separator + tail``) that stalls the pattern.

    Shorter runs are tried first; all probes together stop after
    :data:`PATTERN_PROBE_BUDGET_S`.

    Example:
        >>> probe(r"(a|a)+$", regex.IGNORECASE, [("", "a")]).length
        32
        >>> probe(r"\\bhello\\b", regex.IGNORECASE, [("", "a")]) is None
        True
    """
    rx = compile_regex(pattern, flags)
    start = time.perf_counter()
    for n in lengths:
        for prefix, pump in probes:
            text = prefix + pump * max(1, n // len(pump)) + _SEP + tail
            try:
                rx.search(text, timeout=PROBE_TIMEOUT_S)
            except TimeoutError:
                return Probe(n, text)
            if time.perf_counter() - start > PATTERN_PROBE_BUDGET_S:
                return None
    return None


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
