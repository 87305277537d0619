"""The review queue: escalated decisions, claimed and reviewed by humans.

The policy escalates a decision (low agreement or margin, no quorum, a severe principle with a
split panel, a spot check of delivered outputs; :mod:`consensus.policy`); the store keeps it
pending with a priority and a reason. :class:`ReviewQueue` is the one place that reads and
changes the queue, for the terminal UI (``consensus review``, :mod:`consensus.review_tui`), the
HTTP routes (``/v1/reviews``) and Python callers alike:

* :meth:`ReviewQueue.list`: the queue, most urgent first;
* :meth:`ReviewQueue.claim`: the next item (or a named one) for one reviewer. Claims are atomic
  in the store, so two reviewers never hold the same item;
* :meth:`ReviewQueue.details`: what a reviewer needs to judge: the prompt, the candidates, each
  judge's vote with its confidence and critique, the agreement figures of each decision, the
  escalation's reason and priority;
* :meth:`ReviewQueue.submit`: accept (a candidate), reject, prefer (the better candidate) or
  revise (an edited text), with a note; only by the reviewer holding the claim;
* :meth:`ReviewQueue.undo`: the reviewer's last review (the item is theirs again);
* :meth:`ReviewQueue.release`: give a claimed item back to the queue.

Reviews are gold: after every submit and undo the judges' competences are updated from it
(``consensus.competence.update_from_reviews``). Mistakes are the store's
:class:`~consensus.store.ReviewError`, whose ``code`` the HTTP layer maps to a status (invalid
400, unknown 404, claimed 409).

Example:
    >>> import tempfile, pathlib
    >>> from consensus.store import open_store
    >>> q = ReviewQueue(open_store(pathlib.Path(tempfile.mkdtemp()) / "c.sqlite"))
    >>> q.list(), q.claim("ana")
    ([], None)
"""

from __future__ import annotations

from typing import Any, Literal, get_args

import structlog

from consensus.store import ReviewError
from consensus.types import Outcome

__all__ = ["MAX_NOTE_CHARS", "MAX_REVISION_CHARS", "VERDICTS", "ReviewError", "ReviewQueue",
           "Rows", "Status", "Verdict"]

log = structlog.get_logger("consensus.review")

Verdict = Literal["accept", "reject", "prefer", "revise"]
"""What a reviewer says: accept a candidate, reject them all, prefer one over the others, or
revise one into an edited text."""
VERDICTS: tuple[str, ...] = get_args(Verdict)
Status = Literal["pending", "claimed", "reviewed"]
Rows = list[dict[str, Any]]
"""Queue rows or reviews, as the store gives them (plain dicts)."""
MAX_NOTE_CHARS = 10_000
MAX_REVISION_CHARS = 200_000


class ReviewQueue:
    """The queue over a store (see the module docstring).

    Args:
        store: A :class:`consensus.store.Store` (or ``PgStore``) at schema version 3 or later.
    """

    def __init__(self, store: Any):
        self.store = store

    # ------------------------------------------------------------------ reading
    def list(self, run_id: str | None = None, status: Status = "pending",
             limit: int = 100) -> Rows:
        """Items of the queue with ``status``, most urgent first (each: run_id, request_id,
        priority, reason, principles, status, claimed_by, claimed_at).

        Raises:
            ReviewError: invalid status or limit (code ``invalid``).
        """
        if status not in get_args(Status):
            raise ReviewError(f"status is one of {', '.join(get_args(Status))}, got "
                              f"{status!r}", code="invalid")
        if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= 10_000:
            raise ReviewError(f"limit lies in [1, 10000], got {limit!r}", code="invalid")
        return self.store.queue(run_id=run_id, status=status, limit=limit)

    def item(self, run_id: str, request_id: str) -> dict[str, Any]:
        """The queue row of one item, whatever its status.

        Raises:
            ReviewError: ``unknown`` when the decision was never escalated.
        """
        row = self.store.escalation(run_id, request_id)
        if row is None:
            raise ReviewError(f"no escalated decision {run_id}/{request_id} in the review "
                              "queue", code="unknown")
        return dict(row)

    def details(self, run_id: str, request_id: str) -> dict[str, Any]:
        """Everything a reviewer needs to judge one item (see the module docstring): the queue
        row plus ``task``, ``prompt``, ``candidates`` [{id, text, generator}], ``action``,
        ``accepted_candidate``, ``output``, ``outcome_reason``, ``decisions`` (label,
        probability and agreement figures per subject), ``votes`` (judge, candidate, label,
        confidence, critique, violations, abstained) and ``drafts``.

        Raises:
            ReviewError: ``unknown`` item.
        """
        row = self.item(run_id, request_id)
        outcome: Outcome | None = self.store.outcome(run_id, request_id)
        if outcome is None:
            raise ReviewError(f"no decision {run_id}/{request_id} in the store", code="unknown")
        req = self.store.request_row(run_id, request_id) or {}
        meta = req.get("meta") or {}
        pairwise = any(d.subject == "*" for d in outcome.decisions)
        return {
            **row,
            "task": meta.get("task") or ("pairwise" if pairwise else "verdict"),
            "prompt": req.get("prompt"),
            "candidates": [dict(c) for c in req.get("candidates", [])],
            "action": outcome.action,
            "accepted_candidate": outcome.accepted_candidate,
            "output": outcome.output,
            "outcome_reason": outcome.reason,
            "decisions": [{
                "subject": d.subject, "label": d.label, "probability": d.probability,
                "strategy": d.strategy, "reason": d.reason, "quorum_met": d.quorum_met,
                "agreement": d.agreement.model_dump() if d.agreement else None,
            } for d in outcome.decisions],
            "votes": [{
                "judge": v.judge, "candidate": v.candidate_id, "label": v.label,
                "confidence": v.confidence, "critique": v.critique or v.abstain_reason or "",
                "violations": [x.principle for x in v.violations],
                "abstained": v.abstain_kind,
            } for v in outcome.votes],
            "drafts": [{"id": d.id, "kind": d.kind, "text": d.text, "accepted": d.accepted}
                       for d in outcome.drafts],
        }

    def reviews(self, run_id: str | None = None,
                include_undone: bool = False) -> Rows:
        """Reviews recorded, in the order they were made."""
        return self.store.reviews(run_id=run_id, include_undone=include_undone)

    # ------------------------------------------------------------------ claiming
    def claim(self, reviewer: str, run_id: str | None = None,
              request_id: str | None = None) -> dict[str, Any] | None:
        """Claim ``request_id`` (of ``run_id``), or the most urgent pending item (of ``run_id``
        when given): its :meth:`details`, or None when nothing is left. Claiming an item one
        holds already returns it again.

        Raises:
            ReviewError: ``unknown`` item; ``claimed`` (held by another reviewer, or reviewed
                already); ``invalid`` (a request id without its run id, no reviewer).
        """
        who = _reviewer(reviewer)
        if request_id is None:
            got = self.store.claim(who, run_id=run_id)
            if got is None:
                return None
        else:
            if run_id is None:
                raise ReviewError("name the run of the request to claim", code="invalid")
            self._free(self.item(run_id, request_id), who)
            got = self.store.claim(who, run_id=run_id, request_id=request_id)
            if got is None:  # lost a race since the check: say to whom
                self._free(self.item(run_id, request_id), who)
                raise ReviewError(f"{run_id}/{request_id} could not be claimed",
                                  code="claimed")
        log.info("review_claimed", run_id=got["run_id"], request_id=got["request_id"],
                 reviewer=who)
        return self.details(got["run_id"], got["request_id"])

    def release(self, run_id: str, request_id: str, reviewer: str) -> None:
        """Give a claimed item back to the queue (pending again).

        Raises:
            ReviewError: ``unknown`` item, or ``claimed`` when ``reviewer`` does not hold it.
        """
        who = _reviewer(reviewer)
        self._held(self.item(run_id, request_id), who)
        if not self.store.release(run_id, request_id, who):
            self._held(self.item(run_id, request_id), who)  # changed since: say how
        log.info("review_released", run_id=run_id, request_id=request_id, reviewer=who)

    # ------------------------------------------------------------------ reviewing
    def submit(self, run_id: str, request_id: str, reviewer: str, verdict: str, *,
               chosen: str | None = None, revision: str | None = None,
               note: str = "") -> int:
        """Record a review of an item ``reviewer`` holds; the review id.

        ``accept`` approves ``chosen`` (default: the delivered candidate, else the only one);
        ``reject`` rejects ``chosen`` (default as for accept; with several candidates and none
        delivered, all of them); ``prefer`` names the better candidate (needs two or more);
        ``revise`` replaces ``chosen`` (default as for accept) by ``revision``. The store
        writes the preference pairs the review implies in the same transaction; the judges'
        competences learn from it.

        Raises:
            ReviewError: ``invalid`` (verdict, candidate, empty revision, note too long, an
                accept or revise that does not say of which candidate), ``unknown`` item,
                ``claimed`` (not claimed by ``reviewer``).
        """
        who = _reviewer(reviewer)
        if verdict not in VERDICTS:
            raise ReviewError(f"verdict is one of {', '.join(VERDICTS)}, got {verdict!r}",
                              code="invalid")
        if not isinstance(note, str) or len(note) > MAX_NOTE_CHARS:
            raise ReviewError(f"a note is a text of at most {MAX_NOTE_CHARS} characters",
                              code="invalid")
        if revision is not None and verdict != "revise":
            raise ReviewError(f"a revision goes with verdict revise, not {verdict}",
                              code="invalid")
        if verdict == "revise" and (not isinstance(revision, str) or not revision.strip()):
            raise ReviewError("revise needs the edited text (revision)", code="invalid")
        if revision is not None and len(revision) > MAX_REVISION_CHARS:
            raise ReviewError(f"a revision is at most {MAX_REVISION_CHARS} characters",
                              code="invalid")
        self._held(self.item(run_id, request_id), who)
        info = self.details(run_id, request_id)
        ids = [c["id"] for c in info["candidates"]]
        where = f"{run_id}/{request_id}"
        if chosen is not None and ids and chosen not in ids:
            raise ReviewError(f"{where} has no candidate {chosen!r} (candidates: "
                              f"{', '.join(ids)})", code="invalid")
        if verdict == "prefer":
            if chosen is None:
                raise ReviewError("prefer names the better candidate (chosen)", code="invalid")
            if len(ids) < 2:
                raise ReviewError("prefer needs two or more candidates; accept, reject or "
                                  "revise this one", code="invalid")
        if verdict in ("accept", "revise") and chosen is None \
                and info["accepted_candidate"] is None and len(ids) > 1:
            raise ReviewError(f"{where} has {len(ids)} candidates and none was delivered: "
                              f"name the one to {verdict} (chosen), or prefer one",
                              code="invalid")
        review_id = int(self.store.submit_review(run_id, request_id, who, verdict,
                                                 chosen=chosen, revision=revision, note=note))
        log.info("review_submitted", run_id=run_id, request_id=request_id, reviewer=who,
                 verdict=verdict, review_id=review_id)
        self._learn(review_id)
        return review_id

    def last_review(self, reviewer: str) -> dict[str, Any] | None:
        """The reviewer's last review that is not undone, or None."""
        who = _reviewer(reviewer)
        mine = [r for r in self.store.reviews() if r["reviewer"] == who]
        return mine[-1] if mine else None

    def undo(self, reviewer: str) -> dict[str, Any]:
        """Undo the reviewer's last review: it is marked undone, its preference pairs go, the
        item is claimed by the reviewer again, the competences are recomputed. The undone
        review (a dict, ``undone`` True).

        Raises:
            ReviewError: ``unknown`` when the reviewer has no review left to undo.
        """
        who = _reviewer(reviewer)
        last = self.last_review(who)
        if last is None:
            raise ReviewError(f"{who} has no review to undo", code="unknown")
        self.store.undo_review(last["review_id"], who)
        log.info("review_undone", run_id=last["run_id"], request_id=last["request_id"],
                 reviewer=who, review_id=last["review_id"])
        self._learn(int(last["review_id"]))
        return {**last, "undone": True}

    # ------------------------------------------------------------------ helpers
    @staticmethod
    def _held(row: dict[str, Any], who: str) -> None:
        """Refuse unless ``who`` holds the item."""
        where = f"{row['run_id']}/{row['request_id']}"
        if row["status"] == "reviewed":
            raise ReviewError(f"{where} is reviewed already", code="claimed")
        if row["status"] != "claimed":
            raise ReviewError(f"{where} is not claimed; claim it first", code="claimed")
        if row.get("claimed_by") != who:
            raise ReviewError(f"{where} is claimed by {row.get('claimed_by')}", code="claimed")

    @staticmethod
    def _free(row: dict[str, Any], who: str) -> None:
        """Refuse when someone else holds the item, or it is reviewed."""
        where = f"{row['run_id']}/{row['request_id']}"
        if row["status"] == "reviewed":
            raise ReviewError(f"{where} is reviewed already", code="claimed")
        if row["status"] == "claimed" and row.get("claimed_by") != who:
            raise ReviewError(f"{where} is claimed by {row.get('claimed_by')}", code="claimed")

    def _learn(self, review_id: int) -> None:
        """Update the judges' competences from a review (or its undoing)."""
        try:
            from consensus.competence import update_from_reviews
        except ImportError:
            log.info("competence_update_skipped", review_id=review_id,
                     why="consensus.competence.update_from_reviews is not available")
            return
        update_from_reviews(self.store, review_id)


def _reviewer(name: Any) -> str:
    if not isinstance(name, str) or not name.strip() or len(name) > 200:
        raise ReviewError("a reviewer is a name of 1 to 200 characters", code="invalid")
    return name.strip()
