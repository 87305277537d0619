"""The run output directory contract, read by other tools and checks.

``summary.json`` (:class:`~consensus.types.RunSummary`), ``decisions.jsonl`` (one outcome per
line, written as each decision is made), ``decisions.csv`` (one row per ballot) and ``votes.csv``
(one row per vote: request id, candidate id, judge, label, confidence, abstain reason).

Example:
    >>> import tempfile, pathlib
    >>> from consensus.types import Outcome
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> with DecisionLog(d / "decisions.jsonl") as log:
    ...     log.write(Outcome(request_id="q", action="block"))
    >>> (d / "decisions.jsonl").read_text().count("\\n")
    1
"""

from __future__ import annotations

import csv
import json
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType

from consensus.types import Outcome, RunSummary

DECISION_COLUMNS = ("request_id", "subject", "label", "probability", "strategy", "tie",
                    "quorum_met", "n_valid", "n_abstained", "margin", "entropy", "unanimous",
                    "action", "accepted_candidate", "reason")
VOTE_COLUMNS = ("request_id", "candidate_id", "judge", "label", "confidence", "abstain_kind",
                "abstain_reason", "latency_s", "cost_usd", "violations")


class DecisionLog:
    """Append-only JSONL of outcomes, flushed after every line."""

    def __init__(self, path: Path):
        path.parent.mkdir(parents=True, exist_ok=True)
        self._fh = path.open("a", encoding="utf-8")

    def write(self, outcome: Outcome) -> None:
        self._fh.write(outcome.model_dump_json() + "\n")
        self._fh.flush()

    def close(self) -> None:
        self._fh.close()

    def __enter__(self) -> DecisionLog:
        return self

    def __exit__(self, et: type[BaseException] | None, e: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()


def write_summary(path: Path, summary: RunSummary) -> None:
    path.write_text(json.dumps(summary.model_dump(mode="json"), indent=2) + "\n",
                    encoding="utf-8")


def write_decisions_csv(path: Path, outcomes: Sequence[Outcome]) -> None:
    with path.open("w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(DECISION_COLUMNS)
        for o in outcomes:
            for d in o.decisions:
                a = d.agreement
                w.writerow([o.request_id, d.subject, d.label or "", _num(d.probability),
                            d.strategy, d.tie, d.quorum_met, a.n_valid if a else "",
                            a.n_abstained if a else "", _num(a.margin if a else None),
                            _num(a.entropy if a else None), a.unanimous if a else "",
                            o.action, o.accepted_candidate or "", d.reason])


def write_votes_csv(path: Path, outcomes: Sequence[Outcome]) -> None:
    with path.open("w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(VOTE_COLUMNS)
        for o in outcomes:
            for v in o.votes:
                w.writerow([v.request_id, v.candidate_id, v.judge, v.label or "",
                            _num(v.confidence), v.abstain_kind or "", v.abstain_reason or "",
                            f"{v.latency_s:.4f}", _num(v.cost_usd),
                            ";".join(x.principle for x in v.violations)])


def _num(x: float | None) -> str:
    return "" if x is None else f"{x:.6g}"
