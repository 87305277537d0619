"""Simulated judges: seeded synthetic voters with known competence, bias and correlation.

The generative model, per judge ``j`` and subject with gold label ``y``:

1. with probability ``abstain_rate`` the judge abstains;
2. else, with probability ``copy_prob``, it copies the vote of the judge named in
   ``correlated_with`` (a correlated group; the copied vote may be an abstention);
3. else it is right with probability ``accuracy[y]`` (``default_accuracy`` for unlisted labels);
   when wrong it says ``bias_label`` if set, else a label drawn uniformly among the other ones.

Every draw is a pure function of (seed, judge, request, subject), so results do not depend on call
order or on which actor hosts the judge. Because the model is known, :func:`panel_posterior`
computes the exact Bayes posterior of the gold label given a panel's votes: the ceiling any
strategy can reach on a simulated panel (:class:`consensus.oracle.BayesOracle` turns it into a strategy). Subjects without gold get an abstention. :mod:`judges.simulated_offline` draws
the same votes in process, without Ray (benchmarks, tests).

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
import math
from collections.abc import Mapping, Sequence
from typing import Annotated, ClassVar, Literal

from pydantic import Field

from consensus.types import Candidate, PeerView, Request, Vote
from judges.base import JudgeSpecBase, provenance, subject_of


class SimulatedJudgeSpec(JudgeSpecBase):
    """A synthetic judge.

    In YAML ``correlated_with`` names another judge of the panel; the scenario loader replaces
    the name by that judge's spec, so the host can replay the copied vote exactly.

    Example:
        >>> SimulatedJudgeSpec(name="s", accuracy={"reject": 0.9}).default_accuracy
        0.8
    """

    kind: Literal["simulated"] = "simulated"
    accuracy: dict[str, Annotated[float, Field(ge=0, le=1)]] = Field(
        default_factory=dict, description="P(correct | gold label) per label, each in [0, 1].")
    default_accuracy: float = Field(default=0.8, ge=0, le=1,
                                    description="P(correct) for labels not in `accuracy`.")
    bias_label: str | None = Field(default=None, description="Label chosen when wrong.")
    correlated_with: str | SimulatedJudgeSpec | None = Field(
        default=None, description="Judge (name in the panel) whose vote this one copies sometimes.")
    copy_prob: float = Field(default=0.0, ge=0, le=1,
                             description="P(copy the correlated judge's vote).")
    abstain_rate: float = Field(default=0.0, ge=0, le=1, description="P(abstain).")
    confidence: float | None = Field(default=None, ge=0, le=1,
                                     description="Stated confidence (default: mean accuracy).")
    seed: int = Field(default=0, description="Seed of the judge's draws.")
    delay_s: float = Field(default=0.0, ge=0, description="Simulated latency of each call.")
    conformity: float = Field(
        default=0.0, ge=0, le=1, description="Debate: P(adopt the peers' strict majority "
        "label) per round, when it differs from the judge's own (herding).")
    truth_advantage: float = Field(
        default=0.0, ge=0, le=1, description="Debate: how much more arguments for the true "
        "label persuade: a judge whose vote is wrong switches to the true label with "
        "probability truth_advantage x (share of peers voting it), on top of conformity.")

    DELIBERATES: ClassVar[bool] = True

    def p_switch(self, own: str, gold: str, peer_labels: Sequence[str]) -> dict[str, float]:
        """P(switch to each other label) in a debate round, given the peers' valid votes.

        ``conformity`` pulls towards the peers' strict majority (a tie pulls nowhere);
        ``truth_advantage`` pulls a wrong judge towards the truth in proportion to the peers
        who voted it. The pulls add up (scaled down if they would exceed 1); both zero: no
        judge ever changes its vote.

        Example:
            >>> s = SimulatedJudgeSpec(name="s", conformity=0.5)
            >>> s.p_switch("accept", "accept", ["reject", "reject", "accept"])
            {'reject': 0.5}
            >>> s.p_switch("accept", "accept", ["reject", "accept"])  # a tie pulls nowhere
            {}
        """
        if not peer_labels:
            return {}
        counts: dict[str, int] = {}
        for lab in peer_labels:
            counts[lab] = counts.get(lab, 0) + 1
        pull: dict[str, float] = {}
        top, n_top = max(counts.items(), key=lambda kv: kv[1])
        if self.conformity and 2 * n_top > len(peer_labels) and top != own:
            pull[top] = self.conformity
        if self.truth_advantage and own != gold and counts.get(gold):
            pull[gold] = pull.get(gold, 0.0) + self.truth_advantage * counts[gold] / len(
                peer_labels)
        total = sum(pull.values())
        return {k: v / total for k, v in pull.items()} if total > 1 else pull

    def p_vote(self, vote: str | None, gold: str, labels: Sequence[str]) -> float:
        """P(independent draw = ``vote`` | gold), abstention and copying aside."""
        acc = self.accuracy.get(gold, self.default_accuracy)
        if vote == gold:
            return acc
        if vote is None or vote not in labels:
            return 0.0
        others = [lab for lab in labels if lab != gold]
        if self.bias_label in others:
            return (1.0 - acc) if vote == self.bias_label else 0.0
        return (1.0 - acc) / len(others)


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
    parent = spec.correlated_with
    if isinstance(parent, SimulatedJudgeSpec) and _uniform(*key, "copy") < spec.copy_prob:
        return simulate_label(parent, request, subject)
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
        # The stated confidence must not depend on the gold label, or it would leak it.
        conf = spec.confidence
        if conf is None:
            accs = list(spec.accuracy.values()) or [spec.default_accuracy]
            conf = sum(accs) / len(accs)
        self.stated_confidence = conf

    async def judge(self, request: Request, candidate: Candidate | None) -> Vote:
        if self.spec.delay_s:
            await asyncio.sleep(self.spec.delay_s)
        return self.vote(request, candidate)

    async def deliberate(self, request: Request, candidate: Candidate | None, previous: Vote,
                         peers: Sequence[PeerView], round: int) -> Vote:
        """A debate round under the declared deliberation model (:meth:`SimulatedJudgeSpec.
        p_switch`); the draw is a pure function of (seed, judge, request, subject, round)."""
        if self.spec.delay_s:
            await asyncio.sleep(self.spec.delay_s)
        return self.reconsider(request, candidate, previous, peers, round)

    def reconsider(self, request: Request, candidate: Candidate | None, previous: Vote,
                   peers: Sequence[PeerView], round: int) -> Vote:
        """What :meth:`deliberate` returns, without the simulated latency."""
        subject = subject_of(candidate)
        gold = (request.gold or {}).get(subject)
        own = previous.label
        if own is None or gold is None:
            return previous
        pull = self.spec.p_switch(own, gold, [p.label for p in peers if p.label is not None])
        u = _uniform(self.spec.seed, self.spec.name, request.id, subject, "debate", round)
        for label, p in sorted(pull.items()):
            if u < p:
                return previous.model_copy(update={
                    "label": label, "critique": f"changed to {label} in round {round}"})
            u -= p
        return previous

    def vote(self, request: Request, candidate: Candidate | None) -> Vote:
        """The vote :meth:`judge` returns, without the simulated latency (for in-process runs)."""
        common = provenance(self, request, candidate)
        label = simulate_label(self.spec, request, subject_of(candidate))
        if label is None:
            return Vote.abstain(kind="recusal", reason="simulated abstention (or no gold)",
                                **common)
        return Vote(label=label, confidence=self.stated_confidence, **common)


def panel_posterior(
    specs: Mapping[str, SimulatedJudgeSpec],
    votes: Mapping[str, str | None],
    labels: Sequence[str],
    prior: Mapping[str, float],
) -> dict[str, float]:
    """Exact P(gold = y | the panel's votes) under the simulation model.

    ``votes`` maps every judge of ``specs`` to its label (None = abstained). A copying judge's
    likelihood conditions on its parent's observed vote, so the parent must be in the panel.

    Example:
        >>> s = {"a": SimulatedJudgeSpec(name="a", default_accuracy=0.9)}
        >>> round(panel_posterior(s, {"a": "reject"}, ("accept", "reject"),
        ...                       {"accept": 0.5, "reject": 0.5})["reject"], 3)
        0.9
    """
    logp = {}
    for y in labels:
        lp = math.log(max(prior.get(y, 0.0), 1e-300))
        for name, spec in specs.items():
            v = votes.get(name)
            p_own = (1.0 - spec.abstain_rate) * spec.p_vote(v, y, labels)
            parent = spec.correlated_with
            if isinstance(parent, SimulatedJudgeSpec) and spec.copy_prob:
                copied = float(votes.get(parent.name) == v)
                p_own = (1.0 - spec.abstain_rate) * (
                    spec.copy_prob * copied + (1.0 - spec.copy_prob) * spec.p_vote(v, y, labels))
            p = p_own + (spec.abstain_rate if v is None else 0.0)
            lp += math.log(max(p, 1e-300))
        logp[y] = lp
    top = max(logp.values())
    z = sum(math.exp(v - top) for v in logp.values())
    return {y: math.exp(v - top) / z for y, v in logp.items()}


def resolve_correlations(specs: Sequence[JudgeSpecBase]) -> list[JudgeSpecBase]:
    """Replace ``correlated_with`` names by the named judges' specs (parents first).

    Raises:
        ValueError: an unknown name, a non-simulated parent, or a cycle.
    """
    by_name = {s.name: s for s in specs}
    resolved: dict[str, JudgeSpecBase] = {}

    def resolve(name: str, trail: tuple[str, ...]) -> JudgeSpecBase:
        if name in resolved:
            return resolved[name]
        spec = by_name[name]
        parent = getattr(spec, "correlated_with", None)
        if isinstance(parent, str):
            if parent in trail:
                raise ValueError(f"correlation cycle: {' -> '.join((*trail, parent))}")
            if parent not in by_name or not isinstance(by_name[parent], SimulatedJudgeSpec):
                raise ValueError(f"judge {name!r} copies {parent!r}, which is not a simulated "
                                 f"judge of the panel")
            spec = spec.model_copy(update={"correlated_with": resolve(parent, (*trail, name))})
        resolved[name] = spec
        return spec

    return [resolve(s.name, ()) for s in specs]
