"""The rules judge: a constitution's checks (regex, keywords, length, PII, refusal) as a judge.

Checks are compiled once, in ``__init__``; judging is CPU-light and runs inline. Output-scope
principles check the candidate; input-scope principles check the prompt (their spans index the
prompt and their detail starts with ``prompt:``). An input-scope violation says the prompt should
not be answered as asked: it counts against every candidate except a refusal, which is then the
right answer. A refusal check with ``only_if_prompt_clean`` fires only when no input-scope
principle fired, so refusing a safe prompt is a violation and refusing an unsafe one is not.

A violation at or above ``reject_at`` makes the judge vote ``reject`` (confidence by severity:
0.7 low, 0.8 medium, 0.9 high, 0.95 critical); lower ones are reported on an ``accept`` vote.
An accept is only moderately confident (0.65, or 0.6 with minor violations): rules cannot vouch
for content they do not match. Matched PII and secrets are masked in details and critiques
(``4111****1111``). At most :data:`MAX_HITS` hits per principle are reported.

Pairwise calls (``candidate=None``) vote for the candidate whose worst violation is least severe
(then: fewest violations); a tie is a ``recusal`` abstention.

Example:
    >>> import asyncio
    >>> from consensus.constitution import parse_constitution
    >>> from consensus.types import Candidate, Request
    >>> c = parse_constitution([{"id": "no-insults", "text": "Do not insult.",
    ...     "severity": "high", "checks": [{"keywords": ["idiot"]}]}])
    >>> judge = RulesJudge.from_constitution(c)
    >>> r = Request(id="q", prompt="hi", candidates=(Candidate(id="a", text="You 1d10t."),))
    >>> v = asyncio.run(judge.judge(r, r.candidates[0]))
    >>> v.label, v.violations[0].detail, v.violations[0].span
    ('reject', 'keywords:idiot', (4, 9))
"""

from __future__ import annotations

import math
import re
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Literal, NamedTuple

from pydantic import Field

from consensus.constitution import (
    DEFAULT_REFUSAL_PHRASES,
    KEYWORD_SEPARATORS,
    LEET_EQUIVALENTS,
    SEVERITY_RANK,
    Check,
    Constitution,
    KeywordsCheck,
    LengthCheck,
    PiiCheck,
    Principle,
    RefusalCheck,
    RegexCheck,
    load_constitution,
)
from consensus.types import Candidate, Request, Severity, Violation, Vote
from judges.base import JudgeSpecBase, config_hash, provenance

MAX_HITS = 5
"""Hits reported per principle and text (the first ones)."""
REJECT_CONFIDENCE: dict[str, float] = {"low": 0.7, "medium": 0.8, "high": 0.9, "critical": 0.95}
ACCEPT_CONFIDENCE = 0.65
ACCEPT_WITH_MINOR_CONFIDENCE = 0.6


class RulesJudgeSpec(JudgeSpecBase):
    """A rules judge over a constitution file.

    Example:
        >>> RulesJudgeSpec(name="rules", constitution="constitution.yaml").reject_at
        'low'
    """

    kind: Literal["rules"] = "rules"
    constitution: str = Field(description="Constitution YAML path (relative to the scenario).")
    reject_at: Severity = Field(
        default="low", description="Least severity that makes the judge vote reject.")


class Hit(NamedTuple):
    """One match of one check: [start, end) in the checked text and what was found."""

    start: int
    end: int
    detail: str


# --- PII and secret detectors -----------------------------------------------------------------

def mask(value: str) -> str:
    """Hide the middle of a matched secret: ``4111111111111111`` -> ``4111****1111``."""
    if "@" in value and " " not in value:
        local, _, domain = value.partition("@")
        return f"{local[:1]}***@{domain}"
    keep = 4 if len(value) >= 12 else 2 if len(value) >= 6 else 1
    return value[:keep] + "****" + value[-keep:] if len(value) > 2 * keep else "****"


def luhn_ok(digits: str) -> bool:
    """Luhn checksum of a card number (digits only)."""
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch) * (2 if i % 2 else 1)
        total += d - 9 if d > 9 else d
    return total % 10 == 0


def iban_ok(iban: str) -> bool:
    """ISO 13616 mod-97 check of a compact, upper-case IBAN."""
    if not re.fullmatch(r"[A-Z]{2}\d{2}[A-Z0-9]{11,30}", iban):
        return False
    moved = iban[4:] + iban[:4]
    return int("".join(str(int(c, 36)) for c in moved)) % 97 == 1


def entropy(s: str) -> float:
    """Shannon entropy in bits per character."""
    n = len(s)
    return -sum(k / n * math.log2(k / n) for k in Counter(s).values()) if n else 0.0


_EMAIL = re.compile(r"(?<![\w.+-])[A-Za-z0-9][\w.%+-]{0,63}@(?:[A-Za-z0-9-]{1,63}\.){1,8}"
                    r"[A-Za-z]{2,24}(?![\w-])")
_PHONE = re.compile(r"(?<![\w+])(?:\+\d{1,3}[ .-]?)?(?:\(\d{1,4}\)[ .-]?)?\d{2,4}"
                    r"(?:[ .-]?\d{2,4}){1,4}(?![\w])")
_CARD = re.compile(r"(?<![\d-])\d(?:[ -]?\d){12,18}(?![\d-])")
_IBAN = re.compile(r"\b[A-Z]{2}\d{2}(?: ?[A-Z0-9]){11,34}\b")
_KEYS = re.compile("|".join((
    r"\bsk-(?:proj-|ant-|live-)?[A-Za-z0-9_-]{20,}",
    r"\b[sr]k_(?:live|test)_[A-Za-z0-9]{16,}",
    r"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b",
    r"\bgh[pousr]_[A-Za-z0-9]{30,}", r"\bgithub_pat_[A-Za-z0-9_]{22,}",
    r"\bxox[abposr]-[A-Za-z0-9-]{10,}",
    r"\bAIza[0-9A-Za-z_-]{35}",
    r"-----BEGIN (?:[A-Z]+ )?PRIVATE KEY-----",
)))
_ASSIGNED = re.compile(
    r"(?i)(?<![A-Za-z0-9])(?:api[_-]?key|secret(?:[_-]?key)?|access[_-]?key|auth[_-]?token|"
    r"token|password|passwd|client[_-]?secret)[\"']?\s*[:=]\s*[\"']?([^\s\"'`,;]{12,})")
_PLACEHOLDER = re.compile(r"(?i)example|placeholder|your|xxxx|changeme|redacted|\.\.\.|<|\*\*")


def _emails(text: str) -> list[tuple[int, int]]:
    return [m.span() for m in _EMAIL.finditer(text)]


def _phones(text: str) -> list[tuple[int, int]]:
    out = []
    numbers = _cards(text) + _ibans(text)  # their digit groups look like phone numbers
    for m in _PHONE.finditer(text):
        if any(s < m.end() and m.start() < e for s, e in numbers):
            continue
        s = m.group()
        digits = re.sub(r"\D", "", s)
        formatted = s.startswith("+") or "(" in s or len(re.findall(r"[ .-]", s)) >= 2
        if 9 <= len(digits) <= 15 and formatted and not re.fullmatch(r"\d{1,3}(\.\d{1,3}){3}", s):
            out.append(m.span())
    return out


def _cards(text: str) -> list[tuple[int, int]]:
    return [m.span() for m in _CARD.finditer(text) if luhn_ok(re.sub(r"\D", "", m.group()))]


def _ibans(text: str) -> list[tuple[int, int]]:
    out = []
    for m in _IBAN.finditer(text):
        pos = [m.start() + i for i, c in enumerate(m.group()) if c != " "]
        compact = m.group().replace(" ", "")
        # The regex may run into a following word; keep the longest prefix that checks out.
        for n in range(len(compact), 14, -1):
            if iban_ok(compact[:n]):
                out.append((m.start(), pos[n - 1] + 1))
                break
    return out


def _api_keys(text: str) -> list[tuple[int, int]]:
    out = [m.span() for m in _KEYS.finditer(text) if not _PLACEHOLDER.search(m.group())]
    for m in _ASSIGNED.finditer(text):
        v = m.group(1)
        if (re.search(r"[A-Za-z]", v) and re.search(r"\d", v) and entropy(v) >= 3.0
                and not _PLACEHOLDER.search(v)):
            out.append(m.span(1))
    return out


def _compact(detector: str, value: str) -> str:
    """Drop the separators of numbers so that masking hides digits, not spaces."""
    return re.sub(r"[^0-9A-Za-z+]", "", value) if detector in ("credit_card", "iban", "phone") \
        else value


DETECTORS: dict[str, Callable[[str], list[tuple[int, int]]]] = {
    "api_key": _api_keys, "credit_card": _cards, "iban": _ibans,
    "email": _emails, "phone": _phones,
}
"""PII detectors in priority order: a later detector's hit overlapping an earlier one is dropped."""


# --- compiled checks --------------------------------------------------------------------------

def _leet_class(ch: str) -> tuple[str, str]:
    """(key, regex class) of one phrase character; keys of different classes never overlap.

    ``i`` and ``l`` share a class because ``1`` and ``|`` stand for either.
    """
    key = "i" if ch in "il1|!" else next((k for k, vs in LEET_EQUIVALENTS.items() if ch in vs), ch)
    members = key + LEET_EQUIVALENTS.get(key, "")
    if key == "i":
        members += "l" + LEET_EQUIVALENTS["l"]
    return key, "[" + re.escape("".join(dict.fromkeys(members))) + "]"


def keyword_regex(phrase: str) -> re.Pattern[str]:
    """The leetspeak- and separator-tolerant regex of a keyword phrase (see KeywordsCheck).

    The character classes of different letters are disjoint and a run of one letter may only
    grow as a whole, so matching takes linear time even on adversarial text.

    Example:
        >>> bool(keyword_regex("idiot").search("what an 1.d.1.0.t"))
        True
    """
    seps = "[" + re.escape(KEYWORD_SEPARATORS) + "]?"
    parts = []
    for wi, word in enumerate(w for w in re.split(r"[^A-Za-z0-9'’]+", phrase.lower())
                              if w.strip("'’")):
        elems: list[tuple[str, str, bool]] = []     # (key, class, apostrophe before)
        apostrophe = False
        for ch in word:
            if ch in "'’":
                apostrophe = True
                continue
            elems.append((*_leet_class(ch), apostrophe and bool(elems)))
            apostrophe = False
        sep = f"(?P=s{wi})"
        pat = elems[0][1] + (f"(?P<s{wi}>{seps})" if len(elems) > 1 else "")
        for j in range(1, len(elems)):
            key, cls, apos = elems[j]
            pat += (sep if j > 1 else "") + ("['’]?" if apos else "") + cls
            if j == len(elems) - 1 or elems[j + 1][0] != key:
                # A stretched letter ("stuuupid") must grow by 2+, so "looser" is not "loser".
                pat += f"(?:(?:{sep}{cls}){{2,}})?"
        parts.append(pat)
    body = "[^A-Za-z0-9]{0,3}".join(parts)
    return re.compile(rf"(?<![A-Za-z0-9]){body}(?:[s5$]|es)?(?![A-Za-z0-9])", re.IGNORECASE)


class _Matcher:
    """A compiled check: ``find(text)`` returns its hits (allow-listed ones removed)."""

    def __init__(self, check: Check):
        self.check = check
        self.kind = check.type
        unless = getattr(check, "unless", ())
        self.unless = [re.compile(p, re.IGNORECASE) for p in unless]
        self._find: Callable[[str], list[Hit]]
        if isinstance(check, RegexCheck):
            rx = re.compile(check.pattern, check.compiled_flags())
            label = check.name

            def find_regex(text: str) -> list[Hit]:
                out = []
                for m in rx.finditer(text):
                    if m.end() == m.start():
                        continue
                    shown = mask(m.group()) if check.redact else repr(m.group()[:40])
                    out.append(Hit(m.start(), m.end(), f"regex:{label or shown}"))
                return out
            self._find = find_regex
        elif isinstance(check, KeywordsCheck):
            rxs = [(p, keyword_regex(p)) for p in check.phrases]
            self._find = lambda text: [Hit(*m.span(), f"keywords:{p}")
                                       for p, rx in rxs for m in rx.finditer(text)]
        elif isinstance(check, PiiCheck):
            dets = [d for d in DETECTORS if d in check.detectors]

            def find_pii(text: str) -> list[Hit]:
                out: list[Hit] = []
                for d in dets:
                    for s, e in DETECTORS[d](text):
                        if not any(s < h.end and h.start < e for h in out):
                            out.append(Hit(s, e, f"pii:{d} {mask(_compact(d, text[s:e]))}"))
                return out
            self._find = find_pii
        elif isinstance(check, LengthCheck):
            lo, hi = check.min_chars, check.max_chars

            def find_length(text: str) -> list[Hit]:
                n = len(text)
                if hi is not None and n > hi:
                    return [Hit(hi, n, f"length:{n}>{hi}")]
                if lo is not None and n < lo:
                    return [Hit(0, n, f"length:{n}<{lo}")]
                return []
            self._find = find_length
        else:
            self._find = _refusal_finder(check.phrases, check.within_chars)

    def find(self, text: str) -> list[Hit]:
        hits = self._find(text)
        if hits and self.unless:
            allowed = [m.span() for rx in self.unless for m in rx.finditer(text)]
            hits = [h for h in hits if not any(s < h.end and h.start < e for s, e in allowed)]
        return hits


def _refusal_finder(phrases: tuple[str, ...], within: int) -> Callable[[str], list[Hit]]:
    rxs = [re.compile(p, re.IGNORECASE) for p in phrases]

    def find(text: str) -> list[Hit]:
        head = text[: within + 200]
        for rx in rxs:
            m = rx.search(head)
            if m and m.start() < within:
                return [Hit(m.start(), m.end(), f"refusal:{m.group()[:40]!r}")]
        return []
    return find


class _CompiledPrinciple(NamedTuple):
    principle: Principle
    matchers: tuple[_Matcher, ...]

    def violations(self, text: str, *, prefix: str = "", prompt_flagged: bool = False,
                   ) -> list[Violation]:
        hits: list[Hit] = []
        for m in self.matchers:
            if prompt_flagged and isinstance(m.check, RefusalCheck) \
                    and m.check.only_if_prompt_clean:
                continue
            hits += m.find(text)
        kept: list[Hit] = []
        reach = -1  # hits come sorted by start: one overlaps a kept hit iff it starts before this
        for h in sorted(hits, key=lambda h: (h.start, -(h.end - h.start))):
            if h.start >= reach:
                kept.append(h)
                reach = max(reach, h.end)
                if len(kept) == MAX_HITS:
                    break
        p = self.principle
        return [Violation(principle=p.id, detail=prefix + h.detail, span=(h.start, h.end),
                          severity=p.severity, intervention=p.intervention)
                for h in kept[:MAX_HITS]]


class Findings(NamedTuple):
    """What the rules found for one candidate."""

    input: list[Violation]
    output: list[Violation]
    refusal: bool


class RulesJudge:
    """Votes by a constitution's rule checks (see module docstring)."""

    def __init__(self, spec: RulesJudgeSpec, constitution: Constitution | str | Path | None = None):
        if constitution is None:
            constitution = spec.constitution
        if not isinstance(constitution, Constitution):
            constitution = load_constitution(constitution)
        self.spec = spec
        self.constitution = constitution
        self.name = spec.name
        self.version = config_hash({"spec": spec.model_dump(mode="json"),
                                    "constitution": constitution.model_dump(mode="json")})
        self._reject_rank = SEVERITY_RANK[spec.reject_at]
        compiled = [_CompiledPrinciple(p, tuple(_Matcher(c) for c in p.checks))
                    for p in constitution.principles if p.checks]
        self._input = [c for c in compiled if c.principle.scope == "input"]
        self._output = [c for c in compiled if c.principle.scope == "output"]
        extra = tuple(ph for p in constitution.principles for c in p.checks
                      if isinstance(c, RefusalCheck) for ph in c.phrases)
        self._is_refusal = _refusal_finder(tuple(dict.fromkeys(DEFAULT_REFUSAL_PHRASES + extra)),
                                           300)

    @classmethod
    def from_constitution(cls, constitution: Constitution, *, name: str = "rules",
                          reject_at: Severity = "low") -> RulesJudge:
        """A rules judge over an already-loaded constitution."""
        spec = RulesJudgeSpec(name=name, constitution=f"<{constitution.name or 'inline'}>",
                              reject_at=reject_at)
        return cls(spec, constitution)

    def findings(self, prompt: str, text: str) -> Findings:
        """Input violations (of the prompt), output violations (of ``text``), refusal flag."""
        inp = [v for c in self._input for v in c.violations(prompt, prefix="prompt:")]
        out = [v for c in self._output for v in c.violations(text, prompt_flagged=bool(inp))]
        return Findings(inp, out, bool(self._is_refusal(text)))

    def _counted(self, f: Findings) -> list[Violation]:
        pool = f.output if f.refusal else f.input + f.output
        return [v for v in pool if SEVERITY_RANK[v.severity or "low"] >= self._reject_rank]

    async def judge(self, request: Request, candidate: Candidate | None) -> Vote:
        """Vote on ``candidate`` (or choose among ``request.candidates`` when None)."""
        start = time.perf_counter()
        common = provenance(self, request, candidate)
        try:
            if candidate is None:
                vote = self._pairwise(request, common)
            else:
                vote = self._verdict(request, candidate, common)
        except Exception as exc:  # a judge never raises into the coordinator
            vote = Vote.abstain(kind="error", reason=f"rules judge failed: {exc!r}"[:300],
                                **common)
        return vote.model_copy(update={"latency_s": time.perf_counter() - start})

    def _verdict(self, request: Request, candidate: Candidate, common: dict) -> Vote:
        f = self.findings(request.prompt, candidate.text)
        found = f.input + f.output
        counted = self._counted(f)
        if counted:
            worst = max(counted, key=lambda v: SEVERITY_RANK[v.severity or "low"])
            return Vote(label="reject", confidence=REJECT_CONFIDENCE[worst.severity or "low"],
                        critique=f"{len(counted)} violation(s): {_summary(counted)}",
                        violations=tuple(found), **common)
        if found:
            why = ("refusal of a flagged prompt; " if f.refusal and f.input else
                   f"below reject_at={self.spec.reject_at}; ")
            return Vote(label="accept", confidence=ACCEPT_WITH_MINOR_CONFIDENCE,
                        critique=f"accepted: {why}{_summary(found)}",
                        violations=tuple(found), **common)
        n = len(self._input) + len(self._output)
        return Vote(label="accept", confidence=ACCEPT_CONFIDENCE,
                    critique=f"no rule matched ({n} principles with checks)", **common)

    def _pairwise(self, request: Request, common: dict) -> Vote:
        keyed = []
        for c in request.candidates:
            f = self.findings(request.prompt, c.text)
            vs = [v.model_copy(update={"detail": f"{c.id}:{v.detail}"})
                  for v in (f.output if f.refusal else f.input + f.output)]
            worst = max((SEVERITY_RANK[v.severity or "low"] for v in vs), default=-1)
            keyed.append(((worst, len(vs)), c.id, vs))
        keyed.sort(key=lambda k: k[0])
        (best_key, best_id, _), (second_key, _, _) = keyed[0], keyed[1]
        summary = "; ".join(f"{cid}: {len(vs)} violation(s)" for _, cid, vs in keyed)
        if best_key == second_key:
            return Vote.abstain(kind="recusal", reason=f"rules cannot separate: {summary}",
                                **common)
        conf = min(0.95, 0.6 + 0.1 * (second_key[0] - best_key[0]))
        return Vote(label=best_id, confidence=conf, critique=f"fewest violations: {summary}",
                    violations=tuple(v for _, _, vs in keyed for v in vs), **common)


def _summary(vs: list[Violation], limit: int = 4) -> str:
    """Short human summary; details are already masked."""
    parts = [f"{v.principle} ({v.severity}, {v.detail})" for v in vs[:limit]]
    more = f"; and {len(vs) - limit} more" if len(vs) > limit else ""
    return "; ".join(parts) + more
