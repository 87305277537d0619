"""Simulated judges: seeded synthetic voters with known competence, bias and correlation.

A simulated judge knows the gold label of each subject and answers correctly with probability
``accuracy[gold]`` (per class; ``default_accuracy`` otherwise), wrongly otherwise (uniformly among
the other labels, or always ``bias_label``). With probability ``copy_prob`` it instead copies the
vote of the judge named in ``correlated_with`` (a correlated group). ``abstain_rate`` makes it
abstain. Every draw is a pure function of (seed, judge, request, subject), so results do not depend
on call order or on which actor hosts the judge. Subjects without gold get an abstention.

Example:
    >>> import asyncio
    >>> from consensus.types import Candidate, Request
    >>> r = Request(id="q", prompt="p", candidates=(Candidate(id="a", text="t"),),
    ...             gold={"a": "reject"})
    >>> j = SimulatedJudge(SimulatedJudgeSpec(name="perfect", default_accuracy=1.0))
    >>> asyncio.run(j.judge(r, r.candidates[0])).label
    'reject'
"""

from __future__ import annotations

import asyncio
import hashlib
from typing import Literal

from pydantic import Field

from consensus.types import Candidate, Request, Vote
from judges.base import JudgeSpecBase, subject_of


class SimulatedJudgeSpec(JudgeSpecBase):
    """A synthetic judge.

    Example:
        >>> SimulatedJudgeSpec(name="s", accuracy={"reject": 0.9}).default_accuracy
        0.8
    """

    kind: Literal["simulated"] = "simulated"
    accuracy: dict[str, float] = Field(default_factory=dict,
                                       description="P(correct | gold label) per label.")
    default_accuracy: float = Field(default=0.8, ge=0, le=1,
                                    description="P(correct) for labels not in `accuracy`.")
    bias_label: str | None = Field(default=None, description="Label chosen when wrong.")
    correlated_with: "SimulatedJudgeSpec | None" = Field(
        default=None, description="Spec of the judge whose vote this one copies sometimes.")
    copy_prob: float = Field(default=0.0, ge=0, le=1,
                             description="P(copy the correlated judge's vote).")
    abstain_rate: float = Field(default=0.0, ge=0, le=1, description="P(abstain).")
    confidence: float | None = Field(default=None, ge=0, le=1,
                                     description="Stated confidence (default: mean accuracy).")
    seed: int = Field(default=0, description="Seed of the judge's draws.")
    delay_s: float = Field(default=0.0, ge=0, description="Simulated latency of each call.")


def _uniform(*parts: object) -> float:
    """A uniform draw in [0, 1) that is a pure function of its arguments."""
    digest = hashlib.blake2b(repr(parts).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64


def simulate_label(spec: SimulatedJudgeSpec, request: Request, subject: str) -> str | None:
    """The label ``spec`` gives ``subject`` of ``request`` (None: abstain or no gold)."""
    gold = (request.gold or {}).get(subject)
    if gold is None:
        return None
    key = (spec.seed, spec.name, request.id, subject)
    if spec.abstain_rate and _uniform(*key, "abstain") < spec.abstain_rate:
        return None
    if spec.correlated_with is not None and _uniform(*key, "copy") < spec.copy_prob:
        return simulate_label(spec.correlated_with, request, subject)
    acc = spec.accuracy.get(gold, spec.default_accuracy)
    if _uniform(*key, "correct") < acc:
        return gold
    others = [lab for lab in request.labels() if lab != gold]
    if spec.bias_label in others:
        return spec.bias_label
    return others[int(_uniform(*key, "wrong") * len(others))]


class SimulatedJudge:
    """Votes drawn from a known competence model (see module docstring)."""

    def __init__(self, spec: SimulatedJudgeSpec):
        self.spec = spec
        self.name = spec.name
        self.version = spec.version()

    async def judge(self, request: Request, candidate: Candidate | None) -> Vote:
        subject = subject_of(candidate)
        common = {"judge": self.name, "judge_version": self.version,
                  "request_id": request.id, "candidate_id": subject}
        if self.spec.delay_s:
            await asyncio.sleep(self.spec.delay_s)
        label = simulate_label(self.spec, request, subject)
        if label is None:
            return Vote.abstain(kind="recusal", reason="simulated abstention (or no gold)",
                                **common)
        # The stated confidence must not depend on the gold label, or it would leak it.
        conf = self.spec.confidence
        if conf is None:
            accs = list(self.spec.accuracy.values()) or [self.spec.default_accuracy]
            conf = sum(accs) / len(accs)
        return Vote(label=label, confidence=conf, **common)
