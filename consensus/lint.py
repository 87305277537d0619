"""Lint of a constitution: principles that match the same content but disagree.

Two principles of the same scope overlap when their checks would match the same text: a shared
keyword (one phrase inside another, compared the way keyword matching folds case and
leetspeak), a regex that matches another's keyword, identical regexes, a shared PII detector,
two length bounds of the same side, two refusal checks. Overlapping principles that demand
contradictory interventions (``flag`` delivers the text; ``block``/``revise``/``regenerate``/
``escalate`` withhold it) or different severities are reported.

The checks are indexed rather than compared pair by pair: canonical keyword phrases and their
sub-phrases, PII detectors, length sides and regexes are keys; each distinct regex is compiled
once and run once over all the keyword phrases of its scope (joined into one text, match
positions mapped back to phrases). Only principles that share a key are compared, so linting
takes time linear in the size of the file plus the number of overlapping pairs. At most
:data:`MAX_WARNINGS` warnings are listed, then a final ``... and N more warnings`` line. A
regex too slow to compare with the keywords (a catastrophic pattern) is reported, not waited
for.

Example:
    >>> from consensus.constitution import parse_constitution
    >>> c = parse_constitution([
    ...     {"id": "a", "text": "t", "severity": "high", "checks": [{"keywords": ["x"]}]},
    ...     {"id": "b", "text": "t", "severity": "high", "intervention": "flag",
    ...      "checks": [{"keywords": ["X"]}]}])
    >>> len(lint(c))
    1
"""

from __future__ import annotations

import re
import time
from bisect import bisect_right
from collections.abc import Iterable
from typing import NamedTuple

import regex

from consensus.constitution import (
    Constitution,
    KeywordsCheck,
    LengthCheck,
    PiiCheck,
    Principle,
    RefusalCheck,
    RegexCheck,
    compile_regex,
)
from consensus.constitution_checks import LEET_EQUIVALENTS

MAX_WARNINGS = 100
"""Warnings listed before the final ``... and N more warnings`` line."""
REGEX_BUDGET_S = 2.0
"""Time one regex may take to be compared with the keyword phrases of its scope."""
TOTAL_REGEX_BUDGET_S = 20.0
"""Time all regexes together may take (a file of many slow regexes still lints in bounded time)."""

_DELIVERS = {"flag"}
_WITHHOLDS = {"block", "revise", "regenerate", "escalate"}
_FOLD = {c: k for k, vs in LEET_EQUIVALENTS.items() for c in vs if k != "l"}
# Constructs whose meaning changes when a phrase is searched inside a longer joined text
# (absolute anchors, lookaround, pruning by atomic groups or possessive quantifiers, \K):
# such regexes are run phrase by phrase instead (a false alarm only costs time).
_NOT_JOINABLE = re.compile(r"\\[AZzGBK]|\(\?(?:[=!>(|]|<[=!]|[A-Za-z]*[-rV])|[*+?}]\+|\(\*")

Canon = tuple[str, ...]
RegexKey = tuple[str, tuple[str, ...]]
Key = tuple[str, object]


def _canon(phrase: str) -> Canon:
    """A phrase folded the way keyword matching folds it: words of canonical letters."""
    words = regex.split(r"[^\p{L}\p{M}\p{N}@$!|+]+", phrase.lower())
    return tuple("".join(_FOLD.get(c, c) for c in w).replace("l", "i") for w in words if w)


def _rkey(check: RegexCheck) -> RegexKey:
    return check.pattern, check.flags


class _Scope:
    """The index of the checks of one scope's principles."""

    def __init__(self, principles: list[tuple[int, Principle]], deadline: float):
        self.owners: dict[Key, list[int]] = {}
        self.canon: dict[str, Canon] = {}
        regexes: dict[RegexKey, tuple[RegexCheck, str]] = {}  # with the first principle using it
        for i, p in principles:
            for c in p.checks:
                if isinstance(c, KeywordsCheck):
                    for ph in c.phrases:
                        if ph not in self.canon:
                            self.canon[ph] = _canon(ph)
                elif isinstance(c, RegexCheck):
                    regexes.setdefault(_rkey(c), (c, p.id))
                for key in self._own_keys(c):
                    owners = self.owners.setdefault(key, [])
                    if not owners or owners[-1] != i:
                        owners.append(i)
        self.inside = self._containment(set(self.canon.values()))  # canon -> canons inside it
        self.around: dict[Canon, list[Canon]] = {}                  # canon -> canons around it
        for big, smalls in self.inside.items():
            for small in smalls:
                self.around.setdefault(small, []).append(big)
        self.slow: list[tuple[str, str]] = []      # (pattern, principle id) not compared
        self.deadline = deadline
        self.phrases = list(self.canon)
        self.joined = "\n".join(self.phrases)
        self.starts = [0]
        for ph in self.phrases[:-1]:
            self.starts.append(self.starts[-1] + len(ph) + 1)
        self.matched = {k: self._matches(*c) for k, c in regexes.items()}  # regex -> phrases
        self.matching: dict[str, list[RegexKey]] = {}                     # phrase -> regexes
        for k, phrases in self.matched.items():
            for ph in phrases:
                self.matching.setdefault(ph, []).append(k)

    def _own_keys(self, c: object) -> Iterable[Key]:
        if isinstance(c, KeywordsCheck):
            yield from (("phrase", ph) for ph in c.phrases)
            yield from (("canon", self.canon[ph]) for ph in c.phrases)
        elif isinstance(c, RegexCheck):
            yield "regex", _rkey(c)
        elif isinstance(c, PiiCheck):
            yield from (("pii", d) for d in c.detectors)
        elif isinstance(c, LengthCheck):
            if c.max_chars:
                yield "length", "max"
            if c.min_chars:
                yield "length", "min"
        elif isinstance(c, RefusalCheck):
            yield "refusal", ""

    @staticmethod
    def _containment(canons: set[Canon]) -> dict[Canon, list[Canon]]:
        """For every canon, the canons equal to one of its runs of words (itself included)."""
        lengths = sorted({len(c) for c in canons})
        out: dict[Canon, list[Canon]] = {}
        for big in canons:
            found = {big[s:s + n] for n in lengths if n <= len(big)
                     for s in range(len(big) - n + 1)} & canons
            out[big] = sorted(found)
        return out

    def _matches(self, check: RegexCheck, owner: str) -> set[str]:
        """The phrases of this scope that ``check``'s regex finds something in."""
        if not self.phrases:
            return set()
        flags = check.compiled_flags()
        # MULTILINE changes nothing on a phrase without a newline, so one compiled pattern
        # serves the joined text and the confirmation of most phrases.
        lines = compile_regex(check.pattern, flags | regex.MULTILINE)
        plain: list[regex.Pattern[str]] = []
        deadline = min(time.perf_counter() + REGEX_BUDGET_S, self.deadline)
        try:
            if _NOT_JOINABLE.search(check.pattern):
                candidates = self.phrases
            else:
                candidates = self._prefilter(lines, deadline - REGEX_BUDGET_S / 2)
            if not candidates:
                return set()
            out = set()
            for ph in candidates:
                rx = lines
                if "\n" in ph:
                    plain = plain or [compile_regex(check.pattern, flags)]
                    rx = plain[0]
                if rx.search(ph, timeout=_left(deadline)) is not None:
                    out.add(ph)
            return out
        except TimeoutError:
            self.slow.append((check.pattern, owner))
            return set()

    def _prefilter(self, rx: regex.Pattern[str], deadline: float) -> list[str]:
        """Phrases in which a match of the regex may start: one search over the joined text.

        With MULTILINE added, a match in a phrase alone is also a match, from the same start, in
        the phrases joined by newlines, so no phrase is missed; a candidate is then confirmed on
        the phrase alone. After a hit the search resumes at the next phrase.
        """
        text, starts, phrases = self.joined, self.starts, self.phrases
        try:
            out, pos = [], 0
            while pos <= len(text):
                m = rx.search(text, pos, timeout=_left(deadline))
                if m is None:
                    break
                k = bisect_right(starts, m.start()) - 1
                out.append(phrases[k])
                if k + 1 == len(phrases):
                    break
                pos = starts[k + 1]
            return out
        except TimeoutError:  # a pattern slow on the long joined text: try phrase by phrase
            return phrases

    def partners(self, i: int, p: Principle) -> list[int]:
        """Principles after ``i`` (index order) that overlap principle ``i``."""
        keys: list[Key] = []
        for c in p.checks:
            if isinstance(c, KeywordsCheck):
                for ph in c.phrases:
                    mine = self.canon[ph]
                    keys += [("canon", o) for o in self.inside[mine]]
                    keys += [("canon", o) for o in self.around.get(mine, ())]
                    keys += [("regex", k) for k in self.matching.get(ph, ())]
            elif isinstance(c, RegexCheck):
                keys.append(("regex", _rkey(c)))
                keys += [("phrase", ph) for ph in self.matched[_rkey(c)]]
            else:
                keys += self._own_keys(c)
        found: set[int] = set()
        for key in keys:
            owners = self.owners.get(key, [])
            found.update(owners[bisect_right(owners, i):])
        return sorted(found)

    def holds(self, phrase: str, others: set[Canon], *, strict: bool) -> bool:
        """Whether ``phrase`` contains one of ``others`` (strict: other than itself)."""
        mine = self.canon[phrase]
        return any(o in others and not (strict and o == mine) for o in self.inside[mine])

    def describe(self, a: Principle, b: Principle) -> list[str]:
        """Descriptions of content both principles' checks would match."""
        out: list[str] = []
        for ca in a.checks:
            for cb in b.checks:
                for x, y in ((ca, cb), (cb, ca)):
                    if isinstance(x, KeywordsCheck) and isinstance(y, KeywordsCheck):
                        others = {self.canon[q] for q in y.phrases}
                        out += [f"keyword {ph!r}" for ph in x.phrases
                                if self.holds(ph, others, strict=x is not ca)]
                    if isinstance(x, RegexCheck) and isinstance(y, KeywordsCheck):
                        hit = self.matched[_rkey(x)]
                        out += [f"keyword {q!r} (matched by regex {x.pattern!r})"
                                for q in y.phrases if q in hit]
                if isinstance(ca, RegexCheck) and isinstance(cb, RegexCheck) \
                        and _rkey(ca) == _rkey(cb):
                    out.append(f"regex {ca.pattern!r}")
                if isinstance(ca, PiiCheck) and isinstance(cb, PiiCheck):
                    out += [f"pii detector {d!r}" for d in ca.detectors if d in cb.detectors]
                if isinstance(ca, LengthCheck) and isinstance(cb, LengthCheck) and (
                        (ca.max_chars and cb.max_chars) or (ca.min_chars and cb.min_chars)):
                    out.append("length bound")
                if isinstance(ca, RefusalCheck) and isinstance(cb, RefusalCheck):
                    out.append("refusal")
        return list(dict.fromkeys(out))


def _left(deadline: float) -> float:
    left = deadline - time.perf_counter()
    if left <= 0:
        raise TimeoutError
    return left


def _contradict(a: Principle, b: Principle) -> bool:
    acts = {a.intervention, b.intervention}
    return bool(acts & _DELIVERS and acts & _WITHHOLDS)


def _warning(a: Principle, b: Principle, what: str) -> str:
    if _contradict(a, b):
        return (f"principles {a.id!r} ({a.intervention}) and {b.id!r} ({b.intervention}) match "
                f"the same content ({what}) but demand contradictory interventions")
    return (f"principles {a.id!r} ({a.severity}) and {b.id!r} ({b.severity}) match the "
            f"same content ({what}) with different severities")


class Overlap(NamedTuple):
    """Two principles (by index) whose checks match the same content but disagree."""

    first: int
    second: int
    what: str
    """The shared content, e.g. ``keyword 'idiot'``."""
    contradictory: bool
    """True: their interventions contradict (flag vs. withhold); False: their severities differ."""
    message: str


class Overlaps(NamedTuple):
    """What :func:`overlaps` found."""

    found: list[Overlap]
    more: int
    """Overlapping pairs beyond the ``limit``, counted and not described."""
    slow: list[tuple[str, str]]
    """(pattern, principle id) of regexes too slow to compare with the keywords."""


def overlaps(constitution: Constitution, limit: int = MAX_WARNINGS) -> Overlaps:
    """Pairs of principles that match the same content but disagree (module docstring).

    Example:
        >>> from consensus.constitution import parse_constitution
        >>> c = parse_constitution([
        ...     {"id": "a", "text": "t", "severity": "high", "checks": [{"keywords": ["x"]}]},
        ...     {"id": "b", "text": "t", "severity": "high", "intervention": "flag",
        ...      "checks": [{"keywords": ["X"]}]}])
        >>> [(o.first, o.second, o.what, o.contradictory) for o in overlaps(c).found]
        [(0, 1, "keyword 'x'", True)]
    """
    ps = constitution.principles
    deadline = time.perf_counter() + TOTAL_REGEX_BUDGET_S
    scopes = {s: _Scope([(i, p) for i, p in enumerate(ps) if p.scope == s], deadline)
              for s in dict.fromkeys(p.scope for p in ps)}
    slow = [entry for sc in scopes.values() for entry in sc.slow]
    found: list[Overlap] = []
    more = 0
    for i, a in enumerate(ps):
        sc = scopes[a.scope]
        for j in sc.partners(i, a):
            b = ps[j]
            if not _contradict(a, b) and a.severity == b.severity:
                continue
            if len(found) >= limit:
                more += 1  # counted, not described: a pathological file stays cheap to lint
                continue
            both = sc.describe(a, b)
            what = ", ".join(both[:3]) + (f" and {len(both) - 3} more" if len(both) > 3 else "")
            found.append(Overlap(i, j, what, _contradict(a, b), _warning(a, b, what)))
    return Overlaps(found, more, slow)


def lint(constitution: Constitution) -> list[str]:
    """Warnings about principles that match the same content but disagree (module docstring).

    Example:
        >>> from consensus.constitution import parse_constitution
        >>> c = parse_constitution([
        ...     {"id": "a", "text": "t", "severity": "high", "checks": [{"length": 10}]},
        ...     {"id": "b", "text": "t", "severity": "low", "checks": [{"length": 20}]}])
        >>> lint(c)  # doctest: +NORMALIZE_WHITESPACE
        ["principles 'a' (high) and 'b' (low) match the same content (length bound)
          with different severities"]
    """
    result = overlaps(constitution, limit=MAX_WARNINGS)
    out = [slow_message(pattern, owner) for pattern, owner in result.slow]
    more = max(0, len(out) - MAX_WARNINGS)
    del out[MAX_WARNINGS:]
    room = MAX_WARNINGS - len(out)
    out += [o.message for o in result.found[:room]]
    more += result.more + max(0, len(result.found) - room)
    if more:
        out.append(f"... and {more} more warnings")
    return out


def slow_message(pattern: str, owner: str) -> str:
    """The warning about a regex too slow to compare with the keywords."""
    return (f"regex {pattern[:80]!r} of principle {owner!r} is too slow to compare with the "
            f"keywords of the other principles (over {REGEX_BUDGET_S:g}s, or the lint's "
            f"{TOTAL_REGEX_BUDGET_S:g}s for all regexes ran out); not compared (the rules judge "
            "may time out on it too)")
