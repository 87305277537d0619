"""Judges learn from reviews: competences per class from human verdicts, used by later requests.

**Reviews are gold.** A live (not undone) review gives the true label of the candidates it is
about, and every judge vote on such a candidate is evidence of the judge's competence for that
class (:func:`review_gold`):

* ``accept``: the reviewed candidate is ``accept``; ``reject``: it is ``reject``;
* ``prefer``: the chosen candidate is ``accept`` and every other one ``reject`` (in a pairwise
  ballot the chosen candidate is the winner);
* ``revise``: the revised candidate is ``reject`` (it could not go out as it was).

The reviewed candidate is the review's ``chosen`` one, else what the panel delivered (a
draft of a revision or regeneration, judged as a candidate of its own, or a candidate), else
the request's only candidate (the store's defaults for a review, too). A ``reject`` or ``revise`` of a request with several
candidates and none delivered rejects them all (nothing was fit to go out); an ``accept`` of
such a request says nothing about which one and is skipped. In a pairwise ballot a ``reject``
of the winner makes the other candidate the winner when there are two, and is skipped with
more. When a request has several live reviews, the latest one is its gold (a second review
corrects the first; undoing it brings the first back).

**Beta counts per class.** Judge ``j``'s competence for class ``c`` (``accept``, ``reject``, or
``pairwise`` for preference ballots, whose labels are candidate ids that mean nothing across
requests) is ``P(j votes c | truth is c) ~ Beta(alpha, beta)``, starting from the prior
``Beta(2, 1)`` (:data:`DEFAULT_PRIOR`: mean 2/3, better than chance until shown otherwise,
worth three votes of evidence). Each vote on a candidate of gold ``c`` adds 1 to ``alpha`` when
it says ``c``, else 1 to ``beta``; abstentions count for neither. :func:`update_from_reviews`
recomputes the whole table from all live reviews (so it is idempotent, and an undo followed by
a call restores the earlier values) and writes the rows that changed with
``store.set_competence``, which appends each change to the competence history.

**Later requests use them.** A judge's competence on a ballot is the mean of its posterior
means over the ballot's classes (balanced accuracy: a judge that accepts everything scores 1 on
``accept`` and 0 on ``reject``, i.e. chance, whatever the mix of the stream). A
:class:`CompetenceSource` reads the table before each decision (one SELECT of a small table;
the strategies derived from it are cached until it changes) and turns it into parameters:

* ``weighted``: each judge's configured weight times ``max(0, w(p)) / w(p0)``, with
  ``w(p) = log(p (K - 1) / (1 - p))`` the log-odds weight and ``p0`` the prior mean: an
  unreviewed judge keeps its configured weight, a judge at or below chance gets weight 0 and
  stops deciding outcomes, one the reviews confirm gains weight. With equal configured weights
  this is the log-odds weighted vote (scaling every weight by one constant changes nothing).
* ``log_odds``: competences, floored at chance ``1/K``: a judge the reviewers keep overruling is
  ignored, not read backwards (a judge whose vote counted *against* its label would be a lever
  for anyone who can make it vote for harm). A configured competence replaces the prior's mean
  (with the prior's strength) for that judge.
* ``calibrated``: gold evidence: it is fitted on the reviewed ballots (the run's unlabelled
  ballots too, when the coordinator has them) whenever the table changes.

Fail closed: when every judge that voted on a ballot has weight 0 (``weighted``, ``log_odds``),
the decision is no consensus and the policy blocks; a table that cannot be read is no consensus
too until it can (the last table read stays in use if there was one).

Example:
    >>> table = {"boss": {"accept": (2.0, 6.0), "reject": (2.0, 6.0)}}
    >>> round(competence(table, "boss", ("accept", "reject")), 3)
    0.25
    >>> round(competence(table, "new", ("accept", "reject")), 3)  # no reviews: the prior mean
    0.667
    >>> learned_weight(table, "boss", ("accept", "reject"))  # below chance: no say
    0.0
"""

from __future__ import annotations

import asyncio
import dataclasses
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple, Protocol

import structlog

from consensus.errors import ConfigError
from consensus.types import (
    ACCEPT,
    PAIRWISE_SUBJECT,
    REJECT,
    VERDICT_LABELS,
    Ballot,
    Decision,
    Outcome,
    Vote,
)
from strategies.base import Strategy, agreement_of, fit_strategy, no_consensus
from strategies.calibrated import Calibrated
from strategies.log_odds import LogOdds, log_odds_weight
from strategies.weighted import Weighted

log = structlog.get_logger("consensus.competence")

PAIRWISE_CLASS = "pairwise"
"""The class of a preference ballot's votes (its labels are candidate ids)."""

Table = dict[str, dict[str, tuple[float, float]]]
"""Judge -> class -> (alpha, beta)."""

VERDICTS = ("accept", "reject", "prefer", "revise")
"""The verdicts a review can give."""

LEARNING_STRATEGIES = (Weighted, LogOdds, Calibrated)
"""The strategies that take competences from reviews."""


@dataclass(frozen=True)
class BetaPrior:
    """The Beta prior of every judge's competence for every class.

    Attributes:
        alpha: Pseudo-count of right votes, finite and > 0.
        beta: Pseudo-count of wrong votes, finite, > 0 and below ``alpha`` (a prior at or below
            chance would give every new judge weight 0: a new panel could decide nothing).

    Example:
        >>> BetaPrior().mean
        0.6666666666666666
        >>> BetaPrior(alpha=1.0, beta=1.0)
        Traceback (most recent call last):
        ...
        consensus.errors.ConfigError: competences.prior: alpha (1) must exceed beta (1): ...
    """

    alpha: float = 2.0
    beta: float = 1.0

    def __post_init__(self) -> None:
        for name in ("alpha", "beta"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v) \
                    or v <= 0:
                raise ConfigError(f"{name} must be a finite number > 0, got {v!r}",
                                  field="competences.prior")
        if self.alpha <= self.beta:
            raise ConfigError(f"alpha ({self.alpha:g}) must exceed beta ({self.beta:g}): a "
                              "prior at or below chance gives every new judge weight 0",
                              field="competences.prior")

    @property
    def counts(self) -> tuple[float, float]:
        """``(alpha, beta)``."""
        return (float(self.alpha), float(self.beta))

    @property
    def mean(self) -> float:
        """The prior mean competence."""
        return self.alpha / (self.alpha + self.beta)


DEFAULT_PRIOR = BetaPrior()


class ReviewStore(Protocol):
    """What this module reads from and writes to the store (``consensus.store.Store``)."""

    def reviews(self, run_id: str | None = None, include_undone: bool = False
                ) -> list[dict[str, Any]]: ...

    def outcome(self, run_id: str, request_id: str) -> Outcome | None: ...

    def request_row(self, run_id: str, request_id: str) -> dict[str, Any] | None: ...

    def competences(self) -> dict[str, dict[str, tuple[float, float]]]: ...

    def set_competence(self, judge: str, label: str, alpha: float, beta: float,
                       review_id: int | None = None) -> None: ...


# ---------------------------------------------------------------------------- gold from reviews
def _is_pairwise(outcome: Outcome) -> bool:
    return any(d.subject == PAIRWISE_SUBJECT for d in outcome.decisions) or any(
        v.candidate_id == PAIRWISE_SUBJECT for v in outcome.votes)


def _candidates(outcome: Outcome, row: Mapping[str, Any] | None) -> list[str]:
    """The request's candidate ids: from its stored row, else from the verdict ballots."""
    if row and row.get("candidates"):
        return [str(c["id"]) for c in row["candidates"]]
    return [d.subject for d in outcome.decisions if d.subject != PAIRWISE_SUBJECT]


def review_gold(review: Mapping[str, Any], outcome: Outcome,
                row: Mapping[str, Any] | None = None) -> dict[str, str]:
    """Ballot subject -> true label, as ``review`` says (see the module docstring); ``{}`` when
    the review says nothing a vote can be scored on.

    Example:
        >>> from consensus.types import Decision
        >>> out = Outcome(request_id="q", action="escalate", decisions=(Decision(
        ...     request_id="q", subject="a", label=None, strategy="majority"),))
        >>> review_gold({"verdict": "revise", "chosen": None}, out)
        {'a': 'reject'}
    """
    verdict, chosen = review.get("verdict"), review.get("chosen")
    cands = _candidates(outcome, row)
    if _is_pairwise(outcome):
        target = next((c for c in (chosen, outcome.accepted_candidate) if c in cands), None)
        if verdict == "prefer" and chosen in cands:
            return {PAIRWISE_SUBJECT: str(chosen)}
        if verdict == "accept" and target is not None:
            return {PAIRWISE_SUBJECT: target}
        if verdict in ("reject", "revise") and target is not None and len(cands) == 2:
            return {PAIRWISE_SUBJECT: next(c for c in cands if c != target)}
        return {}
    # a revision's or regeneration's drafts were judged as candidates of their own
    known = [*cands, *(d.id for d in outcome.drafts if d.id not in cands)]
    delivered = outcome.delivered_draft or outcome.accepted_candidate
    target = next((c for c in (chosen, delivered) if c in known), None)
    if target is None and len(cands) == 1:
        target = cands[0]
    if verdict == "prefer":
        return {c: ACCEPT if c == chosen else REJECT for c in known} if chosen in known else {}
    if verdict == "accept":
        return {target: ACCEPT} if target is not None else {}
    if verdict in ("reject", "revise"):
        return {target: REJECT} if target is not None else dict.fromkeys(cands, REJECT)
    return {}


@dataclass(frozen=True)
class Reviewed:
    """One reviewed request: its latest live review, its recorded outcome and the gold."""

    review: Mapping[str, Any]
    outcome: Outcome
    gold: Mapping[str, str]
    """Ballot subject -> true label."""
    row: Mapping[str, Any] | None = None
    """The stored request (prompt, meta, candidates), when the store has it."""


def reviewed(store: ReviewStore) -> list[Reviewed]:
    """Every request with a live review, its latest live review as gold (in review order)."""
    latest: dict[tuple[str, str], Mapping[str, Any]] = {}
    rows = store.reviews(include_undone=False)
    for r in sorted(rows, key=lambda r: (r.get("created_at") or 0.0, r.get("review_id") or 0)):
        if r.get("undone"):
            continue
        if r.get("verdict") not in VERDICTS:
            log.warning("review_skipped", review_id=r.get("review_id"),
                        why=f"unknown verdict {r.get('verdict')!r}")
            continue
        latest[(str(r["run_id"]), str(r["request_id"]))] = r
    out = []
    for (run_id, request_id), rev in latest.items():
        outcome = store.outcome(run_id, request_id)
        if outcome is None:
            log.warning("review_skipped", review_id=rev.get("review_id"),
                        why="no recorded outcome")
            continue
        row = store.request_row(run_id, request_id)
        gold = review_gold(rev, outcome, row)
        if gold:
            out.append(Reviewed(rev, outcome, gold, row))
    return out


def votes_of(outcome: Outcome) -> tuple[Vote, ...]:
    """Every vote of an outcome: the panel's first poll and its votes on each draft."""
    return (*outcome.votes, *(v for d in outcome.drafts for v in d.votes))


def count_competences(items: Iterable[Reviewed], prior: BetaPrior = DEFAULT_PRIOR) -> Table:
    """The Beta counts per judge and class: ``prior`` plus one per scored vote.

    Example:
        >>> from consensus.types import Vote
        >>> out = Outcome(request_id="q", action="accept", votes=(
        ...     Vote(judge="x", request_id="q", candidate_id="a", label="accept"),
        ...     Vote.abstain(judge="y", request_id="q", candidate_id="a", kind="timeout",
        ...                  reason="slow")))
        >>> count_competences([Reviewed({}, out, {"a": "reject"})])
        {'x': {'reject': (2.0, 2.0)}}
    """
    table: Table = {}
    for item in items:
        for v in votes_of(item.outcome):
            truth = item.gold.get(v.candidate_id)
            if truth is None or v.label is None:  # not reviewed, or an abstention
                continue
            cls = PAIRWISE_CLASS if v.candidate_id == PAIRWISE_SUBJECT else truth
            a, b = table.setdefault(v.judge, {}).get(cls, prior.counts)
            table[v.judge][cls] = (a + 1.0, b) if v.label == truth else (a, b + 1.0)
    return table


def update_from_reviews(store: ReviewStore, review_id: int | None = None, *,
                        prior: BetaPrior = DEFAULT_PRIOR) -> Table:
    """Recompute every judge's competences from all live reviews and write what changed.

    Rows whose evidence is gone (their reviews were undone) go back to ``prior``; each write goes
    through ``store.set_competence(..., review_id=review_id)``, which appends to the history.

    Args:
        store: The store (``reviews``, ``outcome``, ``request_row``, ``competences``,
            ``set_competence``).
        review_id: The review (submitted or undone) that prompted the update, for the history.
        prior: The Beta prior of every (judge, class).

    Returns:
        The new table: judge -> class -> (alpha, beta), rows at the prior included.

    Example:
        update_from_reviews(store, review_id=12)  # after review 12 was submitted or undone
    """
    new = count_competences(reviewed(store), prior)
    old = store.competences()
    for judge in sorted(set(new) | set(old)):
        for cls in sorted(set(new.get(judge, {})) | set(old.get(judge, {}))):
            value = new.get(judge, {}).get(cls, prior.counts)
            before = old.get(judge, {}).get(cls, prior.counts)
            if (float(before[0]), float(before[1])) != value:
                store.set_competence(judge, cls, value[0], value[1], review_id=review_id)
            new.setdefault(judge, {})[cls] = value
    return new


def gold_ballots(store: ReviewStore) -> list[Ballot]:
    """The reviewed ballots with their gold from the reviews (for ``calibrated``)."""
    out = []
    for item in reviewed(store):
        labels: tuple[str, ...] = VERDICT_LABELS
        if _is_pairwise(item.outcome):  # the labels of a preference ballot are the request's candidates
            labels = tuple(dict.fromkeys([*_candidates(item.outcome, item.row),
                                          *(v.label for v in item.outcome.votes
                                            if v.label is not None)]))
        for subject, truth in item.gold.items():
            votes = tuple(v for v in votes_of(item.outcome) if v.candidate_id == subject)
            if len(labels) >= 2 and truth in labels:
                out.append(Ballot(request_id=item.outcome.request_id, subject=subject,
                                  labels=labels, votes=votes, panel_size=len(votes), gold=truth))
    return out


# ---------------------------------------------------------------------------- competences -> weights
def classes_of(ballot: Ballot) -> tuple[str, ...]:
    """The competence classes a ballot's votes are scored in."""
    return (PAIRWISE_CLASS,) if ballot.subject == PAIRWISE_SUBJECT else VERDICT_LABELS


def competence(table: Mapping[str, Mapping[str, tuple[float, float]]], judge: str,
               classes: Sequence[str], prior: BetaPrior = DEFAULT_PRIOR,
               prior_mean: float | None = None) -> float:
    """Mean over ``classes`` of the judge's posterior mean competence, in (0, 1).

    ``prior_mean`` replaces the prior's mean (same strength) for this judge: a configured
    competence that the reviews' evidence then moves.
    """
    rows = table.get(judge, {})
    n0 = prior.alpha + prior.beta
    m0 = prior.mean if prior_mean is None else prior_mean
    total = 0.0
    for cls in classes:
        a, b = rows.get(cls, prior.counts)
        right, wrong = max(a - prior.alpha, 0.0), max(b - prior.beta, 0.0)
        total += (m0 * n0 + right) / (n0 + right + wrong)
    return total / len(classes)


def learned_weight(table: Mapping[str, Mapping[str, tuple[float, float]]], judge: str,
                   classes: Sequence[str], prior: BetaPrior = DEFAULT_PRIOR,
                   n_labels: int = 2) -> float:
    """The factor a judge's configured weight is multiplied by: ``max(0, w(p)) / w(p0)``
    (1 for an unreviewed judge, 0 at or below chance; see the module docstring)."""
    p = competence(table, judge, classes, prior)
    return max(0.0, log_odds_weight(p, n_labels)) / log_odds_weight(prior.mean, n_labels)


def _weighted(base: Weighted, table: Table, ballot: Ballot, prior: BetaPrior,
              ) -> tuple[Strategy, dict[str, float]]:
    k, classes = len(ballot.labels), classes_of(ballot)
    judges = set(table) | set(base.weights) | {v.judge for v in ballot.votes}
    weights = {j: base.weights.get(j, base.default_weight)
               * learned_weight(table, j, classes, prior, k) for j in sorted(judges)}
    return dataclasses.replace(base, weights=weights), weights


def _log_odds(base: LogOdds, table: Table, ballot: Ballot, prior: BetaPrior,
              ) -> tuple[Strategy, dict[str, float]]:
    k, classes = len(ballot.labels), classes_of(ballot)
    given = dict(base.competences or {})
    judges = set(table) | set(given) | {v.judge for v in ballot.votes}
    comp = {j: max(1.0 / k, competence(table, j, classes, prior, given.get(j)))
            for j in sorted(judges)}
    weights = {j: max(0.0, log_odds_weight(p, k)) for j, p in comp.items()}
    return dataclasses.replace(base, competences=comp), weights


class _Refit(NamedTuple):
    """A calibrated refit: for which table and strategy, its sequence number, and its task
    (None for a fit made inline)."""

    table: Table
    base: Strategy
    seq: int
    future: asyncio.Future[Strategy] | None


def _fit_calibrated(base: Calibrated, unlabelled: list[Ballot], gold: list[Ballot]) -> Strategy:
    """``base`` fitted on the reviewed ballots and the unlabelled ones, on a copy (``base``
    unchanged; without gold, ``base`` itself)."""
    return fit_strategy(dataclasses.replace(base), [*unlabelled, *gold]) if gold else base


@dataclass
class CompetenceSource:
    """Competences from a store's reviews, turned into a strategy's parameters per ballot.

    Args:
        store: Anything with ``competences()`` (and, for ``calibrated``, what
            :func:`gold_ballots` reads): usually :class:`consensus.store.Store`.
        prior: The prior :func:`update_from_reviews` used.

    Example:
        source = CompetenceSource(store)
        coord = Coordinator(panel, Weighted(weights={"gpt": 3.0}), policy, competences=source)
    """

    store: Any
    prior: BetaPrior = DEFAULT_PRIOR
    unlabelled: Sequence[Ballot] = ()
    """Ballots without gold a ``calibrated`` fit may use too (the coordinator sets the run's)."""
    _table: Table | None = field(default=None, init=False, repr=False)
    _error: str | None = field(default=None, init=False, repr=False)
    _base: Any = field(default=None, init=False, repr=False)
    _cache: dict[Any, tuple[Strategy, dict[str, float] | None]] = field(
        default_factory=dict, init=False, repr=False)
    _refit: _Refit | None = field(default=None, init=False, repr=False)
    """The calibrated refit :meth:`prepare` runs in a worker thread (one at a time)."""
    _latest: tuple[int, Strategy] | None = field(default=None, init=False, repr=False)
    """The last calibrated fit completed (with its sequence number): what decisions use while a
    refit for newer reviews is under way, or after one failed."""
    _failed: tuple[Table, Strategy, Exception] | None = field(default=None, init=False,
                                                               repr=False)
    """The last refit that raised, for which table and strategy (not retried until either
    changes)."""
    _fits: int = field(default=0, init=False, repr=False)

    def refresh(self) -> Table | None:
        """Read the table (one SELECT); a change drops the derived strategies. On a read error
        the last table stays in use (None if there never was one: decisions fail closed)."""
        try:
            raw = self.store.competences()
            table = {str(j): {str(c): (float(ab[0]), float(ab[1])) for c, ab in rows.items()}
                     for j, rows in raw.items()}
        except Exception as exc:  # noqa: BLE001 - a store error must not crash a decision
            self._error = f"{type(exc).__name__}: {str(exc)[:200]}"
            log.error("competences_unreadable", error=self._error, stale=self._table is not None)
            return self._table
        self._error = None
        if table != self._table:
            self._table, self._cache = table, {}
        return self._table

    @property
    def table(self) -> Table | None:
        """The last table read (reads it if it never was)."""
        return self._table if self._table is not None else self.refresh()

    def strategy_for(self, base: Strategy, ballot: Ballot
                     ) -> tuple[Strategy, dict[str, float] | None]:
        """``base`` with the reviews' parameters for this ballot, and the judges' weights (None
        for ``calibrated``, whose weights are its model's)."""
        table = self.table
        if table is None:
            raise LookupError(f"competences unreadable: {self._error}")
        self._rebase(base)
        key: Any = ("calibrated",) if isinstance(base, Calibrated) else (
            ballot.subject == PAIRWISE_SUBJECT, len(ballot.labels),
            frozenset(v.judge for v in ballot.votes))
        hit = self._cache.get(key)
        if hit is None:
            if isinstance(base, Weighted):
                hit = _weighted(base, table, ballot, self.prior)
            elif isinstance(base, LogOdds):
                hit = _log_odds(base, table, ballot, self.prior)
            elif isinstance(base, Calibrated):
                return self._calibrated(base, table), None
            else:
                raise ConfigError(f"strategy {base.name!r} cannot take competences from "
                                  "reviews; use weighted, log_odds or calibrated",
                                  field="strategy")
            self._cache[key] = hit
        return hit

    def _rebase(self, base: Strategy) -> None:
        """A new strategy (e.g. a new run's): the fits and parameters of the last are dropped."""
        if base is not self._base:
            self._base, self._cache, self._refit, self._latest, self._failed = (
                base, {}, None, None, None)

    def use_unlabelled(self, ballots: Sequence[Ballot]) -> None:
        """Ballots without gold a ``calibrated`` fit may use too (the coordinator sets the
        run's); the fits made without them are dropped (the last stays in use until the next)."""
        self.unlabelled, self._cache, self._refit, self._failed = ballots, {}, None, None

    def _calibrated(self, base: Calibrated, table: Table) -> Strategy:
        """The calibrated fit for ``table`` (the cache missed), for a synchronous caller: a
        refit that finished and was not yet collected; else, while :meth:`prepare` refits or
        after a refit for this table failed, the last fit; else a fit here, on this thread."""
        refit = self._refit
        fut = refit.future if refit is not None and refit.base is base else None
        if refit is not None and fut is not None:
            if fut.done() and not fut.cancelled() and fut.exception() is None and (
                    refit.table is table):
                return self._collect(refit, fut.result())
            if not fut.done() and self._latest is not None:  # prepare() is refitting
                return self._latest[1]
        failed = self._failed_for(table, base)
        if failed is not None:
            if self._latest is not None:
                return self._latest[1]
            raise failed.with_traceback(None)  # (a traceback per raise would pile up)
        self._fits += 1
        seq = self._fits
        try:
            fitted = _fit_calibrated(base, list(self.unlabelled), gold_ballots(self.store))
        except Exception as exc:
            self._failed = (table, base, exc)
            raise
        return self._collect(_Refit(table, base, seq, None), fitted)

    def _failed_for(self, table: Table, base: Strategy) -> Exception | None:
        """The error of the last refit, if it was for this table and strategy."""
        failed = self._failed
        return failed[2] if failed is not None and failed[0] is table and failed[1] is base else None

    def _collect(self, refit: _Refit, fitted: Strategy) -> Strategy:
        """Take a finished fit: the latest if no newer one was, cached if its table is current
        (not a refit dropped meanwhile, e.g. by :meth:`use_unlabelled`)."""
        if refit.base is self._base and (refit.future is None or self._refit is refit):
            if self._latest is None or self._latest[0] < refit.seq:
                self._latest = (refit.seq, fitted)
            if refit.table is self._table:
                self._cache[("calibrated",)] = (fitted, None)
        return fitted

    async def prepare(self, base: Strategy) -> None:
        """Read the table (one SELECT) and, for ``calibrated``, refit on the reviews in a worker
        thread when they changed, so that :meth:`decide` finds the fit cached. A fit takes up
        to seconds (the group search: 14 s at 12,000 ballots); run inline, it held up every
        other request of the event loop.

        One refit runs at a time, on a copy of the strategy (a fit sets its learned attributes
        in place, and decisions may be reading the last): callers wait for the one under way
        (shielded: a cancelled caller leaves it to the others), then start the next if reviews
        arrived meanwhile, for up to three rounds. A decision that cannot wait (a synchronous
        :meth:`strategy_for`) uses the last fit meanwhile. A refit that raises is not retried
        until the table changes while there is a last fit to use; without one, each call tries
        again (in the worker) and decisions fail as :meth:`decide` says.
        The store is read on the calling thread (an SQLite connection serves the thread that
        opened it)."""
        if self.refresh() is None or not isinstance(base, Calibrated):
            return
        calibrated: Calibrated = base
        self._rebase(base)
        loop = asyncio.get_running_loop()
        for round_ in range(3):
            if round_ and self.refresh() is None:  # did reviews arrive during the fit?
                return
            table = self._table
            if (self._base is not base or table is None or ("calibrated",) in self._cache
                    or (self._failed_for(table, base) is not None and self._latest is not None)):
                return  # a newer strategy took over, nothing to fit, or it failed (the last
                # fit serves; with none, each call tries again, off the loop)
            refit = self._refit
            if (refit is None or refit.future is None or refit.future.get_loop() is not loop
                    or refit.future.cancelled() or (refit.future.done() and (
                        refit.table is not table or refit.future.exception() is not None))):
                self._fits += 1
                work = asyncio.to_thread(_fit_calibrated, calibrated, list(self.unlabelled),
                                         gold_ballots(self.store))
                refit = self._refit = _Refit(table, base, self._fits, asyncio.ensure_future(work))
            assert refit.future is not None
            try:
                fitted = await asyncio.shield(refit.future)
            except Exception as exc:  # noqa: BLE001 - recorded; decisions fail as decide() says
                if self._refit is refit:
                    self._failed = (refit.table, refit.base, exc)
                log.error("calibrated_refit_failed", error=f"{type(exc).__name__}: "
                          f"{str(exc)[:200]}", stale=self._latest is not None)
                return
            self._collect(refit, fitted)

    def decide(self, base: Strategy, ballot: Ballot) -> Decision:
        """Decide ``ballot`` with ``base`` under the reviews' competences (fails closed when no
        voting judge has weight, or the table cannot be read)."""
        try:
            strategy, weights = self.strategy_for(base, ballot)
        except LookupError as exc:
            return no_consensus(ballot, strategy=base.name, reason=str(exc))
        except ValueError as exc:  # e.g. every weight 0 with default_weight 0: refused
            return no_consensus(ballot, strategy=base.name,
                                reason=f"competences from reviews refused: {exc}"[:300])
        info: dict[str, Any] = {"source": "reviews"}
        if weights is not None:
            voters = sorted({v.judge for v in ballot.valid_votes})
            info["weights"] = {j: weights.get(j, 0.0) for j in voters}
            if voters and not any(weights.get(j, 0.0) > 1e-12 for j in voters):
                return no_consensus(
                    ballot, strategy=base.name, agreement=agreement_of(ballot),
                    diagnostics={"competences": info},
                    reason="every judge that voted is at or below chance by the reviews "
                           f"(weight 0): {', '.join(voters)}")
        d = strategy.aggregate(ballot)
        return d.model_copy(update={"diagnostics": {**d.diagnostics, "competences": info}})


def as_source(competences: Any, prior: BetaPrior = DEFAULT_PRIOR) -> CompetenceSource | None:
    """A :class:`CompetenceSource` from what a caller passes the coordinator: a source, a store
    (anything with ``competences()``), or None."""
    if competences is None or isinstance(competences, CompetenceSource):
        return competences
    if not callable(getattr(competences, "competences", None)):
        raise ConfigError(f"competences must be a store or a CompetenceSource, got "
                          f"{type(competences).__name__}", field="competences")
    return CompetenceSource(competences, prior)


def wants_reviews(strategy: Any) -> bool:
    """Whether ``strategy`` asks for competences from reviews (``from_reviews: true``)."""
    return bool(getattr(strategy, "from_reviews", False))


def check_strategy(strategy: Strategy, source: CompetenceSource | None) -> None:
    """Refuse what cannot work: ``from_reviews`` without a store, a source for a strategy that
    cannot use it, or ``from_reviews`` on a strategy wrapped inside another."""
    if source is None:
        if wants_reviews(strategy):
            raise ConfigError("from_reviews needs a store to read the judges' competences from "
                              "(run with a store, or pass competences= to the Coordinator)",
                              field="strategy.from_reviews")
    elif not isinstance(strategy, LEARNING_STRATEGIES):
        raise ConfigError(f"strategy {strategy.name!r} cannot take competences from reviews; "
                          "use weighted, log_odds or calibrated", field="strategy")
    inner: Any = getattr(strategy, "_inner", None) or getattr(strategy, "final_", None)
    while inner is not None:
        if wants_reviews(inner):
            raise ConfigError("from_reviews applies to the top-level strategy only, not to one "
                              "wrapped in another (a debate's final, a base)",
                              field="strategy.from_reviews")
        inner = getattr(inner, "_inner", None) or getattr(inner, "final_", None)
