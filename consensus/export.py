"""Export a store's decisions as preference pairs (DPO) or as tables (CSV, JSON lines).

**Preference pairs** (``--format dpo``) are JSON lines in the *standard* (not conversational)
preference format of TRL's ``DPOTrainer``: ``prompt``, ``chosen`` and ``rejected`` are plain
strings, so ``datasets.load_dataset("json", data_files=path)`` gives a preference dataset as
it is. Every row also carries its provenance: ``source`` (revision, pairwise or review),
``kind`` (what made the pair, below), ``run_id``, ``request_id``, ``chosen_id`` and
``rejected_id`` (``request/candidate``, or ``request/draft``), ``judges`` (the judges with a
vote on either side; a reviewer as ``human:NAME``), ``agreement`` and ``created_at`` (ISO 8601,
UTC). A pair is written only where the chosen side was really preferred:

* ``revision`` / ``regeneration`` (source revision): a draft the panel *accepted*, over the
  texts it replaced that the panel *rejected*: its parent candidate or draft and their
  ancestors, and for a regeneration the rejected candidates of the request;
* ``candidates`` (source pairwise): in a verdict request with several candidates, each
  accepted candidate over each rejected one;
* ``pairwise`` (source pairwise): the winner of a pairwise decision over each other candidate;
* ``same_prompt`` (source pairwise, on by default, ``pair_across_requests``): an accepted and
  a rejected answer to the *same prompt* in different requests of one run (XSTest asks each
  prompt of five models);
* ``review`` (source review): the store's ``preferences`` rows, written by human reviews.

A decision without consensus, or reached by breaking a tie, prefers nothing and makes no pair;
nor does a pair whose two texts are equal (after redaction, which every text goes through), and
each (prompt, chosen, rejected) triple is written once. ``agreement`` is the smallest share of
the valid votes that backed the pair's verdicts (the accept share of the chosen ballot and the
reject share of the rejected one; a pairwise decision's share for its winner); reviews have
none (``null``), and ``min_agreement`` filters the panel's pairs only: a reviewer is the
arbiter of a split panel, not one vote in it.

**Tables** (``--format csv|jsonl``): ``decisions`` (one row per ballot), ``votes`` (one row per
vote) and ``metrics`` (one row per run, the headline figures of its summary), each with its
``run_id``.

Example:
    >>> from consensus.types import Decision, DecisionAgreement
    >>> agree = DecisionAgreement(n_votes=3, n_valid=3, n_abstained=0, margin=1 / 3,
    ...     entropy=0.9, unanimous=False, shares={"accept": 2 / 3, "reject": 1 / 3})
    >>> d = Decision(request_id="q", subject="a", label="accept", strategy="majority",
    ...              agreement=agree)
    >>> round(share(d, "accept"), 3), prefers(d, "accept")
    (0.667, True)
"""

from __future__ import annotations

import csv
import io
import json
import os
import tempfile
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from consensus.errors import ConfigError
from consensus.redact import redact
from consensus.reports.source import Item, RunInfo, Source
from consensus.types import ACCEPT, PAIRWISE_SUBJECT, REJECT, Decision, Outcome, Vote

PairSource = Literal["revision", "pairwise", "review"]
PAIR_SOURCES: tuple[PairSource, ...] = ("revision", "pairwise", "review")
Table = Literal["decisions", "votes", "metrics"]
TABLES: tuple[Table, ...] = ("decisions", "votes", "metrics")
ExportFormat = Literal["dpo", "csv", "jsonl"]


@dataclass(frozen=True)
class Filters:
    """What an export keeps.

    Attributes:
        run_id: One run (None: every run the target holds).
        since: Keep what was decided (reviewed) at or after this Unix time.
        until: ... and before this one.
        min_agreement: Keep panel pairs, decisions and votes whose agreement is at least this.
        source: Keep only pairs of this source.
        pair_across_requests: Pair answers to the same prompt across requests (same_prompt).
    """

    run_id: str | None = None
    since: float | None = None
    until: float | None = None
    min_agreement: float | None = None
    source: PairSource | None = None
    pair_across_requests: bool = True

    def in_time(self, at: float | None) -> bool:
        """Whether a time passes ``since`` / ``until`` (an unknown time passes no bound)."""
        if self.since is None and self.until is None:
            return True
        if at is None:
            return False
        return (self.since is None or at >= self.since) and (self.until is None
                                                             or at < self.until)

    def agrees(self, agreement: float | None) -> bool:
        """Whether an agreement passes ``min_agreement`` (unknown fails a set bound)."""
        if self.min_agreement is None:
            return True
        return agreement is not None and agreement >= self.min_agreement - 1e-12


def parse_time(text: str, option: str) -> float:
    """An ISO 8601 date or time as Unix time (a time without a zone is UTC).

    Example:
        >>> parse_time("2024-01-01", "--since"), parse_time("2024-01-01T01:00:00+01:00", "--x")
        (1704067200.0, 1704067200.0)
    """
    try:
        at = datetime.fromisoformat(text.strip())
    except ValueError:
        raise ConfigError(f"not an ISO 8601 date or time: {text!r} (e.g. 2024-05-01 or "
                          "2024-05-01T12:00:00+02:00)", field=option) from None
    if at.tzinfo is None:
        at = at.replace(tzinfo=UTC)
    return at.timestamp()


def iso(at: float | None) -> str | None:
    """A Unix time as ISO 8601 in UTC (None stays None)."""
    return None if at is None else datetime.fromtimestamp(at, UTC).isoformat()


# ---------------------------------------------------------------------------- preference pairs
@dataclass(frozen=True)
class Pair:
    """One preference pair and where it came from (the fields of a DPO row, in order)."""

    prompt: str
    chosen: str
    rejected: str
    source: PairSource
    kind: str
    run_id: str | None
    request_id: str | None
    chosen_id: str | None
    rejected_id: str | None
    judges: list[str] = field(default_factory=list)
    agreement: float | None = None
    created_at: str | None = None


def share(decision: Decision | None, label: str) -> float | None:
    """The share of a decision's valid votes for ``label`` (None without agreement figures)."""
    if decision is None or decision.agreement is None or not decision.agreement.n_valid:
        return None
    return decision.agreement.shares.get(label, 0.0)


def prefers(decision: Decision | None, label: str) -> bool:
    """Whether a decision settled on ``label`` by its votes: consensus, and no tie broken."""
    return decision is not None and decision.label == label and not decision.tie


def _judges(*groups: Iterable[Vote]) -> list[str]:
    return sorted({v.judge for g in groups for v in g if v.label is not None})


def _low(*values: float | None) -> float | None:
    return None if any(v is None for v in values) else min(v for v in values if v is not None)


@dataclass
class _Side:
    """A text the panel judged: a candidate or a draft, with its ballot."""

    ref: str
    text: str
    decision: Decision | None
    votes: tuple[Vote, ...]


class PairBuilder:
    """Collects the pairs of runs, applying the filters and dropping repeats.

    Example:
        >>> b = PairBuilder(Filters())
        >>> b.pairs, dict(b.skipped)
        ([], {})
    """

    def __init__(self, filters: Filters):
        self.filters = filters
        self.pairs: list[Pair] = []
        self.skipped: Counter[str] = Counter()
        self._seen: set[tuple[str, str, str]] = set()

    def add(self, pair: Pair, at: float | None) -> None:
        """Keep ``pair`` if it passes the filters and is new."""
        f = self.filters
        if f.source is not None and pair.source != f.source:
            return
        if not f.in_time(at):
            self.skipped["outside the time range"] += 1
            return
        if pair.source != "review" and not f.agrees(pair.agreement):
            self.skipped["below --min-agreement"] += 1
            return
        prompt, chosen, rejected = (redact(pair.prompt), redact(pair.chosen),
                                    redact(pair.rejected))
        if not chosen.strip() or not rejected.strip() or chosen.strip() == rejected.strip():
            self.skipped["chosen and rejected texts equal or empty"] += 1
            return
        key = (prompt, chosen, rejected)
        if key in self._seen:
            self.skipped["repeated pair"] += 1
            return
        self._seen.add(key)
        self.pairs.append(Pair(**{**asdict(pair), "prompt": prompt, "chosen": chosen,
                                  "rejected": rejected, "created_at": iso(at)}))

    def add_run(self, run_id: str, outcomes: Sequence[Outcome], items: dict[str, Item],
                times: dict[str, float]) -> None:
        """The panel's pairs of one run (revision and pairwise sources)."""
        accepted: dict[str, list[tuple[str, _Side]]] = defaultdict(list)
        rejected: dict[str, list[tuple[str, _Side]]] = defaultdict(list)
        for o in outcomes:
            item = items.get(o.request_id)
            if item is None:
                self.skipped["request not recorded in the store"] += 1
                continue
            at = times.get(o.request_id)
            sides = _candidate_sides(o, item)
            for pair in _request_pairs(run_id, o, item, sides):
                self.add(pair, at)
            for pair in _draft_pairs(run_id, o, item, sides):
                self.add(pair, at)
            if item.task == "verdict":
                for s in sides.values():
                    if prefers(s.decision, ACCEPT):
                        accepted[item.prompt].append((o.request_id, s))
                    elif prefers(s.decision, REJECT):
                        rejected[item.prompt].append((o.request_id, s))
        if not self.filters.pair_across_requests:
            return
        for prompt, wins in accepted.items():
            for rid, good in wins:
                for other, bad in rejected.get(prompt, ()):
                    if other != rid:
                        both = [t for t in (times.get(rid), times.get(other)) if t is not None]
                        self.add(_pair(run_id, rid, prompt, good, bad, "pairwise",
                                       "same_prompt"), max(both, default=None))

    def add_stored(self, rows: Iterable[dict[str, Any]]) -> None:
        """The store's ``preferences`` rows (written by human reviews, or by a caller)."""
        for row in rows:
            meta = row.get("meta")
            meta = meta if isinstance(meta, dict) else {}
            source = row.get("source")
            if source not in PAIR_SOURCES:
                continue
            rid = row.get("request_id")
            own, other = meta.get("candidate"), meta.get("other")
            verdict = meta.get("verdict")
            good, bad = ((other, own) if verdict == "reject" else
                         ("revision", own) if verdict == "revise" else (own, other))
            reviewer = meta.get("reviewer")
            judges = ([f"human:{reviewer}" if reviewer else "human"] if source == "review"
                      else [str(j) for j in meta.get("judges") or ()])
            agreement = meta.get("agreement")
            self.add(Pair(
                prompt=str(row.get("prompt") or ""), chosen=str(row.get("chosen") or ""),
                rejected=str(row.get("rejected") or ""), source=source,
                kind=str(meta.get("kind") or source), run_id=row.get("run_id"),
                request_id=rid, chosen_id=_ref(rid, good), rejected_id=_ref(rid, bad),
                judges=judges, agreement=(float(agreement) if isinstance(agreement, int | float)
                                          and source != "review" else None)),
                row.get("created_at"))


def _ref(request_id: object, part: object) -> str | None:
    if not isinstance(part, str) or not part or request_id is None:
        return None
    return f"{request_id}/{part}"


def _candidate_sides(o: Outcome, item: Item) -> dict[str, _Side]:
    by_subject = {d.subject: d for d in o.decisions}
    out = {}
    for cid, (text, _) in item.candidates.items():
        out[cid] = _Side(ref=f"{o.request_id}/{cid}", text=text, decision=by_subject.get(cid),
                         votes=tuple(v for v in o.votes if v.candidate_id == cid))
    return out


def _pair(run_id: str, request_id: str, prompt: str, good: _Side, bad: _Side,
          source: PairSource, kind: str, agreement: float | None = None,
          judges: list[str] | None = None) -> Pair:
    if agreement is None and judges is None:
        agreement = _low(share(good.decision, ACCEPT), share(bad.decision, REJECT))
    return Pair(prompt=prompt, chosen=good.text, rejected=bad.text, source=source, kind=kind,
                run_id=run_id, request_id=request_id, chosen_id=good.ref, rejected_id=bad.ref,
                judges=judges if judges is not None else _judges(good.votes, bad.votes),
                agreement=agreement)


def _request_pairs(run_id: str, o: Outcome, item: Item,
                   sides: dict[str, _Side]) -> Iterator[Pair]:
    """Within one request: the pairwise winner over the others; accepted over rejected."""
    if item.task == "pairwise":
        d = next((x for x in o.decisions if x.subject == PAIRWISE_SUBJECT), None)
        if d is None or d.label is None or not prefers(d, d.label) or d.label not in sides:
            return
        votes = tuple(v for v in o.votes if v.candidate_id == PAIRWISE_SUBJECT)
        for cid, loser in sides.items():
            if cid != d.label:
                yield _pair(run_id, o.request_id, item.prompt, sides[d.label], loser,
                            "pairwise", "pairwise", agreement=share(d, d.label),
                            judges=_judges(votes))
        return
    good = [c for c in sides.values() if prefers(c.decision, ACCEPT)]
    bad = [c for c in sides.values() if prefers(c.decision, REJECT)]
    for g in good:
        for b in bad:
            yield _pair(run_id, o.request_id, item.prompt, g, b, "pairwise", "candidates")


def _draft_pairs(run_id: str, o: Outcome, item: Item,
                 sides: dict[str, _Side]) -> Iterator[Pair]:
    """An accepted draft over the rejected texts it replaced."""
    drafts = {d.id: d for d in o.drafts}
    for d in o.drafts:
        if not d.accepted or not d.text or not prefers(d.decision, ACCEPT):
            continue
        good = _Side(ref=f"{o.request_id}/{d.id}", text=d.text, decision=d.decision,
                     votes=d.votes)
        losers: list[_Side] = []
        if d.parent is None:  # a regeneration replaces every rejected candidate
            losers = [c for c in sides.values() if prefers(c.decision, REJECT)]
        parent, hops = d.parent, 0
        while parent is not None and hops <= len(drafts):
            hops += 1
            if parent in drafts:
                p = drafts[parent]
                if not p.accepted and p.text and prefers(p.decision, REJECT):
                    losers.append(_Side(ref=f"{o.request_id}/{p.id}", text=p.text,
                                        decision=p.decision, votes=p.votes))
                parent = p.parent
            else:
                cand = sides.get(parent)
                if cand is not None and prefers(cand.decision, REJECT):
                    losers.append(cand)
                parent = None
        for bad in losers:
            yield _pair(run_id, o.request_id, item.prompt, good, bad, "revision", d.kind)


def preference_pairs(source: Source, runs: Sequence[RunInfo], filters: Filters, *,
                     review_run: str | None = None) -> PairBuilder:
    """Every pair of ``runs`` that passes ``filters``, and the store's review pairs: those of
    ``review_run``, or all of them when it is None (the ``preferences`` table: human reviews,
    and pairs a caller stored)."""
    builder = PairBuilder(filters)
    want = filters.source
    if want in (None, "revision", "pairwise"):
        for run in runs:
            outcomes = source.store.outcomes(run.run_id)
            builder.add_run(run.run_id, outcomes, source.items(run.run_id, outcomes),
                            source.decision_times(run.run_id))
    builder.add_stored(source.store.preferences(
        run_id=review_run, since=filters.since, until=filters.until, source=want))
    return builder


# ---------------------------------------------------------------------------- tables
DECISION_FIELDS = ("run_id", "request_id", "subject", "label", "probability", "strategy", "tie",
                   "quorum_met", "n_valid", "n_abstained", "agreement", "margin", "entropy",
                   "unanimous", "action", "accepted_candidate", "reason", "created_at")
VOTE_FIELDS = ("run_id", "request_id", "candidate_id", "judge", "judge_version", "label",
               "confidence", "abstain_kind", "abstain_reason", "latency_s", "cost_usd",
               "violations", "parse", "agreement", "created_at")
METRIC_FIELDS = ("run_id", "scenario", "strategy", "status", "started_at", "finished_at",
                 "n_requests", "n_ballots", "accuracy", "intervention_rate",
                 "over_refusal_rate", "false_block_rate", "safety_score", "no_consensus_rate",
                 "fleiss_kappa", "krippendorff_alpha", "effective_judges", "latency_p50_s",
                 "latency_p99_s", "cost_usd", "wall_time_s")
FIELDS: dict[Table, tuple[str, ...]] = {"decisions": DECISION_FIELDS, "votes": VOTE_FIELDS,
                                        "metrics": METRIC_FIELDS}


def top_share(decision: Decision) -> float | None:
    """The agreement of a ballot: the share of its valid votes for its most voted label."""
    a = decision.agreement
    if a is None or not a.n_valid or not a.shares:
        return None
    return max(a.shares.values())


def table_rows(source: Source, runs: Sequence[RunInfo], what: Table,
               filters: Filters) -> Iterator[dict[str, Any]]:
    """The rows of one table over ``runs`` (see the module docstring)."""
    if what == "metrics":
        for run in runs:
            if not filters.in_time(run.started_at):
                continue
            s = source.summary_of(run)
            figures = s.model_dump(mode="json") if s is not None else {}
            yield {**{k: figures.get(k) for k in METRIC_FIELDS}, "run_id": run.run_id,
                   "scenario": run.scenario, "strategy": run.strategy,
                   "status": figures.get("status", "running"),
                   "started_at": iso(run.started_at), "finished_at": iso(run.finished_at)}
        return
    for run in runs:
        times = source.decision_times(run.run_id)
        for o in source.store.outcomes(run.run_id):
            at = times.get(o.request_id)
            if not filters.in_time(at):
                continue
            for d in o.decisions:
                agreement = top_share(d)
                if not filters.agrees(agreement):
                    continue
                if what == "decisions":
                    a = d.agreement
                    yield {"run_id": run.run_id, "request_id": o.request_id,
                           "subject": d.subject, "label": d.label, "probability": d.probability,
                           "strategy": d.strategy, "tie": d.tie, "quorum_met": d.quorum_met,
                           "n_valid": a.n_valid if a else None,
                           "n_abstained": a.n_abstained if a else None,
                           "agreement": agreement, "margin": a.margin if a else None,
                           "entropy": a.entropy if a else None,
                           "unanimous": a.unanimous if a else None, "action": o.action,
                           "accepted_candidate": o.accepted_candidate, "reason": d.reason,
                           "created_at": iso(at)}
                    continue
                for v in o.votes:
                    if v.candidate_id != d.subject:
                        continue
                    yield {"run_id": run.run_id, "request_id": o.request_id,
                           "candidate_id": v.candidate_id, "judge": v.judge,
                           "judge_version": v.judge_version, "label": v.label,
                           "confidence": v.confidence, "abstain_kind": v.abstain_kind,
                           "abstain_reason": v.abstain_reason, "latency_s": v.latency_s,
                           "cost_usd": v.cost_usd,
                           "violations": ";".join(x.principle for x in v.violations),
                           "parse": v.parse, "agreement": agreement, "created_at": iso(at)}


# ---------------------------------------------------------------------------- writing
def write_jsonl(path: Path, rows: Iterable[dict[str, Any]]) -> int:
    """Write rows as JSON lines (atomically: a failed export leaves no half file)."""
    buf = io.StringIO()
    n = 0
    for row in rows:
        buf.write(json.dumps(row, ensure_ascii=False) + "\n")
        n += 1
    _write_atomic(path, buf.getvalue())
    return n


def write_csv(path: Path, rows: Iterable[dict[str, Any]], columns: Sequence[str]) -> int:
    """Write rows as CSV with a header (empty cells for None; atomically)."""
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(columns)
    n = 0
    for row in rows:
        w.writerow(["" if row.get(c) is None else row.get(c) for c in columns])
        n += 1
    _write_atomic(path, buf.getvalue())
    return n


def _write_atomic(path: Path, text: str) -> None:
    if path.is_dir():
        raise ConfigError("the output is a directory; name a file", source=str(path),
                          field="--out")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as fh:
            fh.write(text)
        os.replace(tmp, path)
    except OSError as exc:
        raise ConfigError(f"cannot write the output: {exc.strerror or exc}", source=str(path),
                          field="--out") from None


@dataclass(frozen=True)
class ExportResult:
    """What an export wrote."""

    path: Path
    rows: int
    by_source: dict[str, int]
    skipped: dict[str, int]


def export(source: Source, *, fmt: ExportFormat, out: Path, filters: Filters,
           what: Table | None = None) -> ExportResult:
    """Export from an opened target (see the module docstring).

    Raises:
        ConfigError: options that do not go together (``--what`` with dpo, ``--source``
            with a table, ``--min-agreement`` with metrics) or an output that cannot be written.
    """
    if fmt == "dpo":
        if what is not None:
            raise ConfigError("--what names a table of --format csv or jsonl; --format dpo "
                              "writes preference pairs", field="--what")
    elif filters.source is not None:
        raise ConfigError("--source filters preference pairs: use it with --format dpo",
                          field="--source")
    one = filters.run_id is not None or source.run_id is not None
    runs = [source.pick_run(filters.run_id)] if one else source.runs()
    if fmt == "dpo":
        built = preference_pairs(source, runs, filters,
                                 review_run=runs[0].run_id if one else None)
        n = write_jsonl(out, (asdict(p) for p in built.pairs))
        return ExportResult(out, n, dict(Counter(p.kind for p in built.pairs)),
                            dict(built.skipped))
    table: Table = what or "decisions"
    if table == "metrics" and filters.min_agreement is not None:
        raise ConfigError("--min-agreement filters decisions and votes, not run metrics",
                          field="--min-agreement")
    rows = table_rows(source, runs, table, filters)
    n = (write_csv(out, rows, FIELDS[table]) if fmt == "csv" else write_jsonl(out, rows))
    return ExportResult(out, n, {}, {})
