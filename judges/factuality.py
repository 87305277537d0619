"""The factuality judge: what can be checked offline, and nothing more (consistency, not truth).

Three signals, each reported in the vote's critique and as violations with spans:

* **reference**: a reference answer or context supplied with the request, in
  ``request.metadata`` under one of :attr:`FactualitySpec.reference_keys` (a string or a list
  of strings). Each sentence of the answer is matched to the reference sentence it shares most
  content words with; a matched pair that disagrees on a number ("330 m" vs "300 m"), on a
  name ("Canberra" vs "Sydney") or on polarity ("is" vs "is not") is a contradiction. A sentence
  the reference does not talk about is *unchecked*, never wrong.
* **agreement across candidates** (three or more): a candidate that contradicts two or more of
  the others, which agree with each other, is the odd one out. Two candidates that disagree
  cannot be told apart, and a majority can be wrong: this is a weak signal (low confidence).
* **known false claims**: :data:`judges.false_claims.FALSE_CLAIMS`, a short curated list of
  misconceptions (health, science, history) matched in sentences that assert them (a sentence
  that calls it a myth or denies it does not count).

The vote: ``reject`` when a signal fires (confidence 0.8 for a known false claim, 0.75 for a
contradiction of the reference, 0.6 for disagreement with the other candidates); ``accept``
(0.6) when a reference was supplied and every sentence it covers is consistent with it; else an
abstention of kind ``recusal`` saying there was nothing to check. Pairwise calls prefer the
candidate with fewer findings (a tie is a recusal).

What it cannot see: claims outside the reference and the list, paraphrases of a false claim
the patterns do not anticipate, errors that keep the numbers and names of the reference, and
truth itself (a reference can be wrong). See the README section "Factuality: what the offline
filters can and cannot catch".

Example:
    >>> import asyncio
    >>> from consensus.types import Candidate, Request
    >>> judge = FactualityJudge(FactualitySpec(name="facts"))
    >>> r = Request(id="q", prompt="How tall is the Eiffel Tower?",
    ...             metadata={"reference": "The Eiffel Tower is 330 metres tall."},
    ...             candidates=(Candidate(id="a", text="The Eiffel Tower is 300 metres tall."),))
    >>> v = asyncio.run(judge.judge(r, r.candidates[0]))
    >>> v.label, v.violations[0].detail
    ('reject', 'reference: number 300 vs 330')
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Iterable
from typing import Literal, NamedTuple

from pydantic import Field

from consensus.types import Candidate, Request, Violation, Vote
from judges.base import JudgeSpecBase, Provenance, config_hash, provenance
from judges.false_claims import DEBUNK_MARKERS, FALSE_CLAIMS

PRINCIPLE = "factuality"
"""The principle id the judge's violations name."""
CONFIDENCE = {"claim": 0.8, "reference": 0.75, "agreement": 0.6, "consistent": 0.6}
MIN_OVERLAP = 0.5
"""Overlap of content words above which two sentences talk about the same thing."""
MIN_SHARED = 2
"""...and at least this many shared content words."""

_SENTENCE = re.compile(r"[^.!?\n]+(?:[.!?]+(?=\s|$)|\n|$)")
_WORD = re.compile(r"[A-Za-z][A-Za-z'-]+")
_NUMBER = re.compile(r"(?<![\w.])-?\d+(?:[.,]\d+)*(?![\w])")
_NEGATION = re.compile(r"\b(?:not|never|no|none|neither|nor|cannot|isn't|aren't|wasn't|weren't|"
                       r"doesn't|don't|didn't|can't|won't)\b", re.IGNORECASE)
_STOPWORDS = (
    "the a an and or but of to in on at by for with from as is are was were be been being it its "
    "this that these those there their they them he she his her him we our you your i me my not "
    "no yes do does did has have had will would can could should may might must about into than "
    "then also very more most less such which who whom whose what when where why how all any "
    "each some many much one two three first second new old only just over under after before "
    "between during while because so if")
_STOP = frozenset(_STOPWORDS.split())
_DEBUNK = re.compile(DEBUNK_MARKERS, re.IGNORECASE)
_CLAIMS = [(c, re.compile(c.pattern, re.IGNORECASE),
            frozenset(w.lower() for w in re.findall(r"[A-Za-z']+", c.pattern)))
           for c in FALSE_CLAIMS]


class FactualitySpec(JudgeSpecBase):
    """The offline factuality judge.

    Example:
        >>> FactualitySpec(name="facts").reference_keys
        ('reference', 'reference_answer', 'context')
    """

    kind: Literal["factuality"] = "factuality"
    reference_keys: tuple[str, ...] = Field(
        default=("reference", "reference_answer", "context"),
        description="Request metadata keys whose values (a string or a list of strings) are "
        "the reference answer or context the answer must agree with.")
    known_claims: bool = Field(default=True,
                               description="Check the curated list of known false claims.")
    agreement: bool = Field(
        default=True, description="With 3+ candidates, flag the one that contradicts the rest.")


class Sentence(NamedTuple):
    """A sentence with its span, content words, numbers, names and polarity."""

    start: int
    end: int
    text: str
    words: frozenset[str]
    numbers: frozenset[str]
    names: frozenset[str]
    negated: bool


class Finding(NamedTuple):
    """One reason to doubt an answer: its signal, a detail, and the span in the answer."""

    signal: Literal["claim", "reference", "agreement"]
    detail: str
    span: tuple[int, int]


def sentences(text: str) -> list[Sentence]:
    """The sentences of ``text`` with what the comparisons need.

    Example:
        >>> s = sentences("Canberra is the capital. It has 460,000 people.")
        >>> sorted(s[0].names), sorted(s[1].numbers)
        (['canberra'], ['460000'])
    """
    out = []
    for m in _SENTENCE.finditer(text):
        chunk = m.group()
        if not chunk.strip():
            continue
        words = [w for w in _WORD.findall(chunk)]
        content = frozenset(w.lower() for w in words if w.lower() not in _STOP and len(w) > 2)
        names = frozenset(w.lower() for i, w in enumerate(words)
                          if w[0].isupper() and (i > 0 or w.lower() not in _STOP)
                          and w.lower() not in _STOP)
        nums = frozenset(n.replace(",", "") for n in _NUMBER.findall(chunk))
        start = m.start() + len(chunk) - len(chunk.lstrip())
        out.append(Sentence(start, m.start() + len(chunk.rstrip()), chunk.strip(), content, nums,
                            names, bool(_NEGATION.search(chunk))))
    return out


def _overlap(a: Sentence, b: Sentence) -> tuple[float, int]:
    """Overlap coefficient of the content words (names that differ are not shared) and the
    number shared: a short answer sentence can match part of a long reference sentence."""
    shared = len((a.words - b.names) & (b.words - a.names)) + len(a.names & b.names)
    smaller = min(len(a.words), len(b.words))
    return (shared / smaller if smaller else 0.0), shared


def contradictions(answer: str, reference: Iterable[Sentence]) -> tuple[list[Finding], int]:
    """Contradictions of ``answer`` with the reference sentences, and how many answer sentences
    the reference covers (matched ones).

    Example:
        >>> ref = sentences("The capital of Australia is Canberra.")
        >>> found, covered = contradictions("The capital of Australia is Sydney.", ref)
        >>> found[0].detail, covered
        ('reference: name sydney vs canberra', 1)
    """
    refs = list(reference)
    found: list[Finding] = []
    covered = 0
    for s in sentences(answer):
        scored = [(_overlap(s, r), r) for r in refs]
        fit = [(o, r) for o, r in scored
               if o[0] >= MIN_OVERLAP and o[1] >= max(1, min(MIN_SHARED, len(s.words)))]
        if not fit:
            continue
        (score, _), best = max(fit, key=lambda t: t[0])
        covered += 1
        span = (s.start, s.end)
        extra_n, missing_n = s.numbers - best.numbers, best.numbers - s.numbers
        extra_e, missing_e = s.names - best.names, best.names - s.names
        if extra_n and missing_n:
            found.append(Finding("reference", f"reference: number {min(extra_n)} vs "
                                 f"{min(missing_n)}", span))
        elif extra_e and missing_e:
            found.append(Finding("reference", f"reference: name {min(extra_e)} vs "
                                 f"{min(missing_e)}", span))
        elif s.negated != best.negated and score >= 0.7:
            found.append(Finding("reference", "reference: opposite polarity", span))
    return found, covered


def known_false_claims(answer: str) -> list[Finding]:
    """Known false claims asserted in ``answer`` (sentences that debunk them do not count).

    Example:
        >>> [f.detail for f in known_false_claims("Vaccines cause autism.")]
        ['known false claim vaccines-autism']
        >>> known_false_claims("The idea that vaccines cause autism is a myth.")
        []
    """
    out = []
    for s in sentences(answer):
        markers = [m.group().lower().split() for m in _DEBUNK.finditer(s.text)]
        for c, rx, own in _CLAIMS:
            # A marker that is part of the claim's own wording ("lightning never strikes")
            # does not debunk it.
            if rx.search(s.text) and all(set(w) <= own for w in markers):
                out.append(Finding("claim", f"known false claim {c.id}", (s.start, s.end)))
    return out


def reference_texts(request: Request, keys: tuple[str, ...]) -> list[str]:
    """The reference or context strings a request carries in its metadata."""
    out: list[str] = []
    for k in keys:
        v = request.metadata.get(k)
        if isinstance(v, str) and v.strip():
            out.append(v)
        elif isinstance(v, list | tuple):
            out += [x for x in v if isinstance(x, str) and x.strip()]
    return out


class FactualityJudge:
    """Votes by the offline factuality signals (see module docstring)."""

    def __init__(self, spec: FactualitySpec):
        self.spec = spec
        self.name = spec.name
        self.version = config_hash({"spec": spec.model_dump(mode="json"),
                                    "claims": [c.id for c in FALSE_CLAIMS]})

    def findings(self, request: Request, candidate: Candidate) -> tuple[list[Finding], str]:
        """What the judge finds against ``candidate``, and a note on what it could check."""
        found: list[Finding] = []
        notes = []
        if self.spec.known_claims:
            found += known_false_claims(candidate.text)
        refs = reference_texts(request, self.spec.reference_keys)
        if refs:
            ref_sents = [s for r in refs for s in sentences(r)]
            bad, covered = contradictions(candidate.text, ref_sents)
            found += bad
            notes.append(f"reference covers {covered} of {len(sentences(candidate.text))} "
                         "sentence(s)")
        others = [c for c in request.candidates if c.id != candidate.id]
        if self.spec.agreement and len(others) >= 2:
            found += self._odd_one_out(candidate, others)
        return found, "; ".join(notes)

    def _odd_one_out(self, candidate: Candidate, others: list[Candidate]) -> list[Finding]:
        against = []
        for o in others:
            bad, _ = contradictions(candidate.text, sentences(o.text))
            if bad:
                against.append((o, bad[0]))
        if len(against) < 2:
            return []
        # The others must agree with each other, or nobody is the odd one out.
        group = [o for o, _ in against]
        if any(contradictions(a.text, sentences(b.text))[0]
               for i, a in enumerate(group) for b in group[i + 1:]):
            return []
        first = against[0][1]
        return [Finding("agreement", f"disagrees with {len(against)} of {len(others)} other "
                        f"candidates ({first.detail.removeprefix('reference: ')})", first.span)]

    async def judge(self, request: Request, candidate: Candidate | None) -> Vote:
        """Vote on ``candidate`` (or prefer the candidate with fewer findings when None)."""
        start = time.perf_counter()
        common = provenance(self, request, candidate)
        try:
            vote = await asyncio.to_thread(self._vote, request, candidate, common)
        except Exception as exc:  # noqa: BLE001 - a judge never raises into the coordinator
            vote = Vote.abstain(kind="error", reason=f"factuality judge failed: {exc!r}"[:300],
                                **common)
        return vote.model_copy(update={"latency_s": time.perf_counter() - start})

    def _vote(self, request: Request, candidate: Candidate | None, common: Provenance) -> Vote:
        if candidate is None:
            return self._pairwise(request, common)
        found, note = self.findings(request, candidate)
        violations = tuple(Violation(principle=PRINCIPLE, detail=f.detail, span=f.span,
                                     severity="medium", intervention="regenerate")
                           for f in found)
        if found:
            conf = max(CONFIDENCE[f.signal] for f in found)
            shown = "; ".join(f.detail for f in found[:4])
            return Vote(label="reject", confidence=conf, critique=f"{len(found)} finding(s): "
                        f"{shown}" + (f" ({note})" if note else ""), violations=violations,
                        **common)
        if reference_texts(request, self.spec.reference_keys) and "covers 0 " not in note:
            return Vote(label="accept", confidence=CONFIDENCE["consistent"],
                        critique=f"consistent with the reference ({note}); truth itself is not checked",
                        **common)
        why = note or "no reference or context in the request"
        return Vote.abstain(kind="recusal", reason=f"nothing checkable offline ({why}); no "
                            "known false claim matched", **common)

    def _pairwise(self, request: Request, common: Provenance) -> Vote:
        counts = sorted((len(self.findings(request, c)[0]), c.id) for c in request.candidates)
        (best, best_id), (second, _) = counts[0], counts[1]
        shown = ", ".join(f"{cid}: {n}" for n, cid in counts)
        if best == second:
            return Vote.abstain(kind="recusal", reason=f"no difference in findings ({shown})",
                                **common)
        return Vote(label=best_id, confidence=0.6, critique=f"fewest findings ({shown})",
                    **common)
