"""Debate rounds (``strategy: debate``): judges see their peers' anonymised votes and vote again.

:func:`run_debate` takes a request's round-1 votes (the ordinary poll) and runs rounds 2, 3, ...
on the panel, until the debate's ``stop`` rule or ``rounds`` ends it
(:class:`strategies.debate.Debate`). In each round, for every subject and every judge whose kind
deliberates (``JudgeSpecBase.DELIBERATES``: LLM and simulated judges), the judge gets

* its own previous vote, and
* its peers: every other judge's current vote on the same subject, as :class:`PeerView` values
  with aliases (Judge A, Judge B, ...) in an order shuffled per (request, subject, judge, round)
  from the debate's seed: never a peer's name, model or family. With ``share: critiques`` the
  peers' critiques are shared too, after :class:`SelfMask` masked what would identify a judge
  (panel judge names, model names and families, well-known model names); the masks are counted
  per round.

Judges that do not deliberate (rules, classifier, replay) keep their votes without a call, and
so does a judge that recused itself (it is not shown to its peers either). A debate call that
fails (timeout, provider error, unparseable reply) keeps the judge's previous vote and is
counted as ``failed``: a failure in a later round never turns a reject into an abstention that
lets a candidate through. A panel of non-deliberating judges only never changes a vote.

The rounds are recorded (:class:`~consensus.types.DebateRound`): votes, votes changed, calls,
tokens, cost, latency, masks and unanimity per subject. The coordinator adds each round's
decision by the final strategy and whether the final decision differs from round 1's.

Example:
    >>> m = SelfMask(["gpt-4o-mini", "claude-haiku"])
    >>> m.apply("As Claude I agree with gpt-4o-mini.")
    ('As [judge] I agree with [judge].', 2)
"""

from __future__ import annotations

import random
import re
import string
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Any, Protocol

from consensus.types import (
    PAIRWISE_SUBJECT,
    Ballot,
    DebateRound,
    Deliberation,
    PeerView,
    Request,
    StopReason,
    Vote,
)
from judges.actor import DebateCall
from judges.base import JudgeSpecBase
from strategies.base import agreement_of
from strategies.debate import Debate

WELL_KNOWN = ("gpt", "chatgpt", "openai", "claude", "anthropic", "gemini", "gemma", "llama",
              "mistral", "mixtral", "qwen", "deepseek", "grok")
"""Model and maker names masked in shared critiques even when no judge of the panel is one
(not "meta" or "google": they are ordinary words too)."""


MAX_CRITIQUE = 1500
"""Characters of a peer's critique shared in a debate round (the rest is cut)."""


class DebatePanel(Protocol):
    """What a debate needs of a panel: its specs and a way to run one round's calls."""

    @property
    def specs(self) -> Sequence[JudgeSpecBase]:
        """The enabled judges, in panel order."""
        ...

    def debate(self, request: Request, round: int, calls: Sequence[DebateCall],
               version: str | None = None) -> Awaitable[tuple[Vote, ...]]:
        """The votes of ``calls`` (same order)."""
        ...


class SelfMask:
    """Masks text that identifies a judge: the given terms and :data:`WELL_KNOWN` names, as
    whole words (case-insensitive), each by ``[judge]``."""

    def __init__(self, terms: Iterable[str]):
        words = {t.strip().lower() for t in (*terms, *WELL_KNOWN) if len(t.strip()) >= 2}
        # longest first, so "gpt-4o-mini" is masked whole rather than as "gpt" plus a tail
        alternatives = "|".join(re.escape(w) for w in sorted(words, key=len, reverse=True))
        # one optional digit tail ("gpt4o"), then separator-led parts ("-4o-mini"): every
        # repetition starts with a separator, so no text makes the search backtrack
        self._re = re.compile(rf"(?<![\w-])(?:{alternatives})(?:\d\w*)?(?:[-.:/]\w+)*(?![\w-])",
                              re.IGNORECASE) if alternatives else None

    @classmethod
    def for_panel(cls, specs: Sequence[JudgeSpecBase]) -> SelfMask:
        terms: list[str] = []
        for s in specs:
            terms += [s.name, s.model_name() or "", s.model_family() or ""]
            model = getattr(s, "model", None)
            if isinstance(model, str):
                terms += [model, *model.split("/")]
        return cls(t for t in terms if t)

    def apply(self, text: str) -> tuple[str, int]:
        """``text`` with identifying mentions masked, and how many were."""
        if not text or self._re is None:
            return text, 0
        return self._re.subn("[judge]", text)


def alias(i: int) -> str:
    """The alias of the ``i``-th peer (0-based): Judge A ... Judge Z, then Judge 27, ..."""
    return f"Judge {string.ascii_uppercase[i]}" if i < 26 else f"Judge {i + 1}"


def peers_for(judge: str, subject: str, request_id: str, round: int, current: Sequence[Vote],
              debate: Debate, mask: SelfMask) -> tuple[tuple[PeerView, ...], int]:
    """What ``judge`` sees of its peers on ``subject`` in ``round``, and the masks applied."""
    # a recused peer is left out: "abstained" would tell the judge who wrote the candidate
    others = [v for v in current if v.judge != judge and not v.recused]
    random.Random(f"{debate.seed}:{request_id}:{subject}:{judge}:{round}").shuffle(others)
    views, masked = [], 0
    for i, v in enumerate(others):
        critique = ""
        if debate.share == "critiques":
            critique, n = mask.apply(v.critique[:MAX_CRITIQUE])
            masked += n
        views.append(PeerView(alias=alias(i), label=v.label, confidence=v.confidence,
                              critique=critique))
    return tuple(views), masked


def unanimity(request: Request, votes: Sequence[Vote]) -> dict[str, bool]:
    """Per subject: at least one valid vote, and all valid votes agree."""
    labels = set(request.labels())
    out = {}
    for subject in request.subjects():
        valid = {v.label for v in votes if v.candidate_id == subject and v.label in labels}
        out[subject] = len(valid) == 1
    return out


def _round_record(round_no: int, votes: Sequence[Vote], fresh: Sequence[Vote], changed: int,
                  calls: int, latency_s: float, masked: int, request: Request,
                  failed: int = 0) -> DebateRound:
    tokens = [v.tokens for v in fresh if v.tokens is not None]
    return DebateRound(
        round=round_no, votes=tuple(votes), changed=changed, calls=calls, failed=failed,
        tokens=sum(tokens) if tokens else None,
        cost_usd=sum(v.cost_usd or 0.0 for v in fresh), latency_s=latency_s, masked=masked,
        unanimous=unanimity(request, votes),
        agreement={s: agreement_of(Ballot.for_subject(
            request, s, tuple(v for v in votes if v.candidate_id == s)))
            for s in request.subjects()})


async def run_debate(panel: DebatePanel, request: Request, first: Sequence[Vote],
                     debate: Debate, version: str | None = None, *,
                     first_latency_s: float = 0.0,
                     on_round: Callable[[int], Any] | None = None,
                     ) -> tuple[tuple[Vote, ...], Deliberation]:
    """Run the debate's later rounds on ``panel`` from the round-1 votes ``first``; returns
    the final votes (same order as ``first``) and the record (round labels still empty)."""
    specs = {s.name: s for s in panel.specs}
    mask = SelfMask.for_panel(list(panel.specs))
    votes = list(first)
    calls1 = sum(1 for v in first if not v.recused)
    rounds = [_round_record(1, votes, first, 0, calls1, first_latency_s, 0, request)]
    deliberating = [n for n, s in specs.items() if s.DELIBERATES]

    def stop_now(rec: DebateRound) -> StopReason | None:
        if debate.stop == "unanimity" and rec.unanimous and all(rec.unanimous.values()):
            return "unanimity"
        if debate.stop == "stable" and rec.round > 1 and rec.changed == 0:
            return "stable"
        return None

    reason: StopReason | None
    if debate.rounds == 1:
        reason = "single_round"
    elif not deliberating:
        reason = "no_deliberating_judge"
    else:
        reason = stop_now(rounds[0])
    round_no = 1
    while reason is None:
        round_no += 1
        start = time.perf_counter()
        calls: list[DebateCall] = []
        where: list[int] = []
        masked = 0
        by_subject: dict[str, list[Vote]] = {}
        for v in votes:
            by_subject.setdefault(v.candidate_id, []).append(v)
        for i, v in enumerate(votes):
            spec = specs.get(v.judge)
            if spec is None or not spec.DELIBERATES or v.abstain_kind == "recusal":
                continue
            peers, n = peers_for(v.judge, v.candidate_id, request.id, round_no,
                                 by_subject[v.candidate_id], debate, mask)
            masked += n
            target = None if v.candidate_id == PAIRWISE_SUBJECT else v.candidate_id
            calls.append((v.judge, target, v, peers))
            where.append(i)
        fresh = await panel.debate(request, round_no, calls, version) if calls else ()
        changed = failed = 0
        for i, new in zip(where, fresh, strict=True):
            if new.abstained and not votes[i].abstained:
                failed += 1  # a failed call keeps the judge's vote: it never unmakes a reject
                continue
            changed += new.label != votes[i].label
            votes[i] = new
        rec = _round_record(round_no, votes, fresh, changed, len(calls),
                            time.perf_counter() - start, masked, request, failed)
        rounds.append(rec)
        if on_round is not None:
            on_round(round_no)
        reason = stop_now(rec) or ("rounds" if round_no >= debate.rounds else None)
    return tuple(votes), Deliberation(rounds=tuple(rounds), stop_reason=reason)
