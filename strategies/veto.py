"""Veto: any valid vote for the veto label decides it (the conservative layered-defence mode).

For verdict ballots, one ``reject`` blocks. Where the veto label is not in the ballot's label
space (pairwise ballots, whose labels are candidate ids), veto means *unanimity required*: a
label wins only if every valid vote chose it, otherwise there is no consensus.

Example:
    >>> from consensus.types import Ballot, Vote
    >>> vs = (Vote(judge="x", request_id="q", candidate_id="a", label="accept"),
    ...       Vote(judge="y", request_id="q", candidate_id="a", label="reject", confidence=0.7))
    >>> d = Veto().aggregate(Ballot(request_id="q", subject="a",
    ...                             labels=("accept", "reject"), votes=vs))
    >>> (d.label, d.diagnostics["vetoed_by"])
    ('reject', ['y'])
"""

from __future__ import annotations

from dataclasses import dataclass

from consensus.types import ACCEPT, REJECT, Ballot, Decision
from strategies.base import agreement_of, no_consensus, without_votes


@dataclass(frozen=True)
class Veto:
    """Any vote for ``veto_label`` wins; otherwise the unanimous label, else no consensus.

    Attributes:
        veto_label: The label any single judge can impose (default ``reject``).
    """

    veto_label: str = REJECT
    name: str = "veto"

    def __post_init__(self) -> None:
        if self.veto_label == ACCEPT:
            raise ValueError("veto_label 'accept' would let any single judge deliver a "
                             "candidate the others reject; a veto is for 'reject' (or, in "
                             "pairwise tasks, a candidate id)")

    def aggregate(self, ballot: Ballot) -> Decision:
        empty = without_votes(ballot, self.name)
        if empty is not None:
            return empty
        agreement = agreement_of(ballot)
        valid = ballot.valid_votes
        vetoes = [v for v in valid if v.label == self.veto_label]
        if vetoes:
            # Probability that the veto is right, if vetoes were independent: 1 - prod(1 - c).
            miss = 1.0
            for v in vetoes:
                miss *= 1.0 - (1.0 if v.confidence is None else v.confidence)
            p = 1.0 - miss
            probs = {lab: (p if lab == self.veto_label else (1 - p) / (len(ballot.labels) - 1))
                     for lab in ballot.labels}
            return Decision(
                request_id=ballot.request_id, subject=ballot.subject, label=self.veto_label,
                probability=p, probabilities=probs, strategy=self.name,
                reason=f"vetoed by {', '.join(v.judge for v in vetoes)}",
                diagnostics={"vetoed_by": [v.judge for v in vetoes]}, agreement=agreement,
            )
        labels = {v.label for v in valid if v.label is not None}  # all of them: valid votes
        if len(labels) > 1:
            return no_consensus(ballot, strategy=self.name, agreement=agreement,
                                reason=f"veto mode needs unanimity; votes split over "
                                       f"{', '.join(sorted(labels))}")
        (label,) = labels
        p = min((1.0 if v.confidence is None else v.confidence) for v in valid)
        probs = {lab: (p if lab == label else (1 - p) / (len(ballot.labels) - 1))
                 for lab in ballot.labels}
        return Decision(
            request_id=ballot.request_id, subject=ballot.subject, label=label, probability=p,
            probabilities=probs, strategy=self.name,
            reason=f"no veto; all {len(valid)} valid votes for {label}",
            diagnostics={"vetoed_by": []}, agreement=agreement,
        )
