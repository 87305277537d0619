"""Intervention policy: quorum, and the map from decisions to an action.

Fail closed: a ballot that misses its quorum, or that the strategy leaves undecided, leads to
``on_no_consensus`` (``block`` by default) and the outcome says why.

For verdict tasks the best accepted candidate (highest decision probability) is delivered;
``flag_below`` turns a low-confidence acceptance into ``flag`` (delivered and recorded). When every
candidate is rejected, the interventions named by the violated principles of the rejecting votes
decide (the most severe wins: block > escalate > revise > regenerate), raised to at least
``severity_actions[severity]`` of each violated principle's severity, else ``on_reject``; a
rejection decided with a probability below ``escalate_below`` goes to a human (``escalate``)
instead. A principle asking for ``flag`` never delivers a rejected candidate: it flags a candidate
the panel accepts (a violation below a judge's reject bar), which is delivered and recorded.

Escalation to the review queue (:mod:`consensus.review`) has four causes, each with a priority
(0 low .. 3 most urgent) and a reason:

* no quorum / no consensus: ``on_no_consensus: escalate`` (priority 2);
* low agreement: a decided ballot whose vote margin (top share minus second) is below
  ``escalate_margin_below``, or a rejection decided with probability below ``escalate_below``
  (priority 1, or the principle's severity);
* a severe principle with a split panel: a vote names a violated principle of at least
  ``escalate_split_severity`` on a candidate other valid votes accept (priority by severity:
  high 2, critical 3). A candidate the panel accepted is withheld (escalate); a principle's
  block stands, with the escalation attached for review;
* spot checks: a deterministic, seeded sample (``spot_check_rate``, ``spot_check_seed``) of
  delivered outputs is queued with priority 0 and reason ``spot check``; the action stays.

The last two attach an :class:`~consensus.types.Escalation` to the :class:`Choice` without
changing a delivering (or blocking) action; the coordinator copies it onto the outcome.

The policy only chooses; :mod:`consensus.interventions` carries ``revise`` and ``regenerate`` out
(a generator, or the offline redaction of located spans, at most ``max_rounds`` revisions or
``max_attempts`` regenerations, each judged again by the panel) and falls back to ``fallback``
when no draft is accepted. A block delivers ``refusal_message``, naming the principle that
caused it.

Example:
    >>> Policy(quorum=2).min_valid(panel_size=5)
    2
    >>> Policy(quorum=0.5).min_valid(panel_size=5)
    3
    >>> Policy().refusal_for("no-dangerous-instructions")
    "I can't help with that request. (Policy: no-dangerous-instructions.)"
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence
from typing import Any, Literal, NamedTuple

from pydantic import BaseModel, ConfigDict, Field, field_validator

from consensus.constitution import SEVERITY_RANK
from consensus.types import (
    ACCEPT,
    REJECT,
    Action,
    Decision,
    Escalation,
    Request,
    Severity,
    Vote,
)

SEVERITY_OF_ACTION: dict[str, int] = {
    "block": 5, "escalate": 4, "revise": 3, "regenerate": 2, "flag": 1, "accept": 0,
}
DEFAULT_REFUSAL = "I can't help with that request."
SPOT_CHECK = "spot check"
"""Reason of a spot-check escalation (priority 0; the action is unchanged)."""

Withhold = Literal["block", "escalate", "revise", "regenerate"]
"""Actions that deliver no candidate: the only ones allowed when the panel rejects or cannot
decide (``accept`` or ``flag`` there would deliver content nobody approved)."""


class Choice(NamedTuple):
    """What the policy chose for one request.

    ``principle`` and ``severity`` name the violated principle that chose the action (None when
    the action comes from the policy itself); ``target`` is the candidate a ``revise`` rewrites;
    ``escalation`` queues the decision for review without changing its action (spot checks, a
    principle's block over a split panel).
    """

    action: Action
    candidate: str | None
    text: str | None
    reason: str
    principle: str | None = None
    severity: Severity | None = None
    target: str | None = None
    escalation: Escalation | None = None


class Policy(BaseModel):
    """What to do with a panel's decisions.

    Example:
        >>> Policy().on_no_consensus
        'block'
    """

    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)

    quorum: int | float = Field(
        default=0.5,
        description="Valid votes needed per ballot: an int >= 1 is a count; a float in (0, 1] is "
        "a share of the enabled panel (rounded up, at least 1). Zero, negative and boolean "
        "values are refused: a quorum that nothing can miss would let an empty panel decide.",
    )
    on_reject: Withhold = Field(
        default="block", description="Action when every candidate fails (never delivers it).")
    on_no_consensus: Withhold = Field(
        default="block",
        description="Action when no decision could be reached: fail closed (block, escalate, "
        "revise, regenerate; never accept or flag).",
    )
    flag_below: float | None = Field(
        default=None, ge=0, le=1,
        description="Accepted with probability below this: flag (deliver and record).",
    )
    use_principle_interventions: bool = Field(
        default=True, description="Let violated principles choose the intervention."
    )
    refusal_message: str = Field(default=DEFAULT_REFUSAL, min_length=1,
                                 description="Text a block delivers.")
    name_principle: bool = Field(
        default=True, description="A block caused by a principle names it after the "
        "refusal message (\"... (Policy: no-secrets.)\").")
    severity_actions: dict[Severity, Withhold] = Field(
        default_factory=dict, description="Least action for a rejection that violates a "
        "principle of this severity, e.g. {critical: block}: a principle asking for less is "
        "raised to it (never lowered).")
    escalate_below: float | None = Field(
        default=None, ge=0, le=1, description="A rejection decided with probability below "
        "this goes to a human (escalate) instead of its action: the panel is unsure.")
    max_rounds: int = Field(default=2, ge=1, le=10, description="revise: drafts at most, "
                            "each judged by the panel again.")
    max_attempts: int = Field(default=2, ge=1, le=10, description="regenerate: attempts at "
                              "most, each judged; the first accepted one is delivered.")
    fallback: Literal["block", "escalate"] = Field(
        default="block", description="What a revise or regenerate does when no draft is "
        "accepted (or none can be made: no generator, nothing to redact).")
    screen_input: bool = Field(
        default=False, description="Check the prompt on the input-scope principles before the "
        "candidates are judged; a blocked prompt is not judged. The prompt is always screened "
        "before a generator is asked for a draft.")

    escalate_margin_below: float | None = Field(
        default=None, ge=0, le=1, description="A decided ballot whose vote margin (top share "
        "minus the second) is below this goes to a human (escalate): the panel is split. An "
        "accepted candidate is withheld until reviewed; a principle's block stands.")
    escalate_split_severity: Severity | None = Field(
        default=None, description="A vote naming a violated principle of at least this "
        "severity on a candidate other valid votes accept (a split panel) goes to a human: an "
        "accepted candidate is withheld (escalate), a principle's block stands and is queued "
        "for review.")
    spot_check_rate: float = Field(
        default=0.0, ge=0, le=1, description="Share of delivered outputs (accept, flag) also "
        "queued for review (priority 0, reason 'spot check'); the action stays. The sample "
        "is deterministic: a hash of spot_check_seed and the request id.")
    spot_check_seed: int = Field(default=0, description="Seed of the spot-check sample.")

    recusal: Literal["family", "model", "off"] = Field(
        default="family", description="A judge abstains (kind recusal, without a call) on a "
        "candidate generated by its own model family (family) or its own model (model); "
        "off: never. A candidate names its generator in `generator` or `metadata.model`; "
        "judges without a model family (rules, classifier) never recuse.")
    min_families: int | None = Field(
        default=None, ge=1, le=100, description="Valid votes from at least this many model "
        "families per ballot, else no consensus (fail closed); judges without a family do "
        "not count.")

    @field_validator("quorum", mode="before")
    @classmethod
    def _valid_quorum(cls, v: Any) -> Any:
        if isinstance(v, bool) or not isinstance(v, int | float):
            raise ValueError(  # noqa: TRY004 - pydantic reports ValueError, not TypeError
                f"quorum must be a count (int >= 1) or a share in (0, 1], got {v!r}")
        if isinstance(v, int) and v < 1:
            raise ValueError(f"a quorum count must be at least 1, got {v}")
        if isinstance(v, float) and not 0.0 < v <= 1.0:
            raise ValueError(f"a quorum share must lie in (0, 1], got {v}")
        return v

    @field_validator("spot_check_rate", "escalate_margin_below", "flag_below",
                     "escalate_below", mode="before")
    @classmethod
    def _no_bool(cls, v: Any) -> Any:
        if isinstance(v, bool):
            raise ValueError(  # noqa: TRY004 - pydantic reports ValueError, not TypeError
                f"expected a number in [0, 1], got {v!r}")
        return v

    def check_panel(self, panel_size: int) -> str | None:
        """Why this policy cannot work with a panel of ``panel_size`` judges (None: it can)."""
        if isinstance(self.quorum, int) and self.quorum > panel_size:
            return (f"quorum {self.quorum} is larger than the panel ({panel_size} judge(s)): "
                    "every ballot would miss it")
        return None

    def check_families(self, families: Sequence[str | None]) -> str | None:
        """Why ``min_families`` cannot be met by judges of these families (None: it can)."""
        have = {f for f in families if f}
        if self.min_families is not None and self.min_families > len(have):
            return (f"min_families {self.min_families} is more than the panel's model families "
                    f"({len(have)}: {', '.join(sorted(have)) or 'none'}): every ballot would "
                    "miss it")
        return None

    def min_valid(self, panel_size: int) -> int:
        """Valid votes a ballot needs."""
        if isinstance(self.quorum, int) and not isinstance(self.quorum, bool):
            return max(1, self.quorum)
        return max(1, math.ceil(self.quorum * panel_size - 1e-9))

    def decide_action(
        self, request: Request, decisions: Sequence[Decision], votes: Sequence[Vote]
    ) -> tuple[Action, str | None, str | None, str]:
        """Map decisions to (action, accepted candidate id, delivered text, reason)."""
        return self.choose(request, decisions, votes)[:4]

    def choose(self, request: Request, decisions: Sequence[Decision],
               votes: Sequence[Vote]) -> Choice:
        """Map decisions to a :class:`Choice` (see the module docstring)."""
        choice = self._choose(request, decisions, votes)
        if choice.action not in ("accept", "flag") or choice.candidate is None:
            return choice
        return self._review_delivery(request, decisions, votes, choice)

    def spot_checked(self, request_id: str) -> bool:
        """Whether the seeded spot-check sample holds ``request_id`` (the same answer on
        every replica and every resumed run).

        Example:
            >>> Policy(spot_check_rate=1.0).spot_checked("q1"), Policy().spot_checked("q1")
            (True, False)
        """
        if self.spot_check_rate <= 0.0:
            return False
        digest = hashlib.sha256(f"{self.spot_check_seed}:{request_id}".encode()).digest()
        return int.from_bytes(digest[:8], "big") / 2.0**64 < self.spot_check_rate

    def _review_delivery(self, request: Request, decisions: Sequence[Decision],
                         votes: Sequence[Vote], choice: Choice) -> Choice:
        """A delivery the panel is split on goes to a human instead; else a spot check may
        queue it for review (the action stays)."""
        cid = choice.candidate or ""
        subject = "*" if request.task == "pairwise" else cid
        d = next((d for d in decisions if d.subject == subject), None)
        severe = self._severe_split(votes, [cid] if request.task == "verdict" else [])
        if severe is not None:  # the most urgent reason first: it sets the priority
            pid, sev, why = severe
            return Choice("escalate", None, None, f"{choice.reason}; {why}: escalate", pid,
                          sev)
        split = self._thin_margin([d] if d is not None else [])
        if split:
            return Choice("escalate", None, None, f"{choice.reason}; {split}: escalate")
        if self.spot_checked(request.id):
            return choice._replace(escalation=Escalation(priority=0, reason=SPOT_CHECK))
        return choice

    def _thin_margin(self, decisions: Sequence[Decision]) -> str | None:
        """Why the panel is split on one of ``decisions`` (margin below
        ``escalate_margin_below``), else None."""
        if self.escalate_margin_below is None:
            return None
        for d in decisions:
            if d.label is not None and d.agreement is not None \
                    and d.agreement.margin < self.escalate_margin_below:
                return (f"the panel is split on {d.subject} (vote margin "
                        f"{d.agreement.margin:.2f} < {self.escalate_margin_below})")
        return None

    def _severe_split(self, votes: Sequence[Vote],
                      subjects: Sequence[str]) -> tuple[str, Severity, str] | None:
        """(principle, severity, why) of the most severe principle at or above
        ``escalate_split_severity`` that a vote names on one of ``subjects`` while another
        valid vote accepts it; None when there is none."""
        if self.escalate_split_severity is None or not subjects:
            return None
        bar = SEVERITY_RANK[self.escalate_split_severity]
        found: list[tuple[int, str, Severity, str]] = []
        for cid in subjects:
            on = [v for v in votes if v.candidate_id == cid and v.label is not None]
            if not any(v.label == ACCEPT for v in on):
                continue  # the panel is not split on it
            for v in on:
                for viol in v.violations:
                    sev = viol.severity
                    if v.label != ACCEPT and sev is not None and SEVERITY_RANK[sev] >= bar:
                        found.append((SEVERITY_RANK[sev], viol.principle, sev, cid))
        if not found:
            return None
        _, pid, sev, cid = max(found, key=lambda t: (t[0], t[1]))
        n_acc = sum(v.label == ACCEPT for v in votes if v.candidate_id == cid)
        return pid, sev, (f"split panel on {cid} over {sev} principle {pid} ({n_acc} valid "
                          "vote(s) accept it)")

    def _choose(self, request: Request, decisions: Sequence[Decision],
                votes: Sequence[Vote]) -> Choice:
        if request.task == "pairwise":
            (d,) = decisions
            if d.label is None:
                return self._fail_closed(d.reason)
            return self._deliver(request, d.label, d, f"{d.label} preferred: {d.reason}", votes)
        accepted = [d for d in decisions if d.label == ACCEPT]
        if accepted:
            order = {c.id: i for i, c in enumerate(request.candidates)}
            best = max(accepted, key=lambda d: (d.probability or 0.0, -order[d.subject]))
            return self._deliver(request, best.subject, best, f"accepted: {best.reason}", votes)
        undecided = [d for d in decisions if d.label is None]
        if undecided:
            return self._fail_closed("; ".join(f"{d.subject}: {d.reason}" for d in undecided))
        return self._reject(request, decisions, votes)

    def _deliver(self, request: Request, cid: str, d: Decision, reason: str,
                 votes: Sequence[Vote] = ()) -> Choice:
        text = request.candidate(cid).text
        flags = sorted({viol.principle for v in votes if v.candidate_id in (cid, "*")
                        for viol in v.violations if viol.intervention == "flag"})
        if flags and self.use_principle_interventions:
            why = f"{reason}; principle(s) {', '.join(flags)} ask for flag: delivered and flagged"
            return Choice("flag", cid, text, why, flags[0])
        if self.flag_below is not None and (d.probability or 0.0) < self.flag_below:
            return Choice("flag", cid, text,
                          f"{reason} (probability {d.probability or 0:.2f} < {self.flag_below})")
        return Choice("accept", cid, text, reason)

    def _fail_closed(self, why: str) -> Choice:
        action = self.on_no_consensus
        return Choice(action, None, self._text_for(action), f"no consensus ({why}); {action}")

    def _reject(self, request: Request, decisions: Sequence[Decision],
                votes: Sequence[Vote]) -> Choice:
        action: Action = self.on_reject
        why = "every candidate rejected"
        principle: str | None = None
        severity: Severity | None = None
        target: str | None = None
        rejected = [d.subject for d in decisions if d.label == REJECT]
        if self.use_principle_interventions:
            named = [(viol.intervention, viol.principle, viol.severity, v.candidate_id)
                     for v in votes if v.label == REJECT and v.candidate_id in rejected
                     for viol in v.violations if viol.intervention]
            raised = [(self._raised(a, sev), pid, sev, cid) for a, pid, sev, cid in named]
            withholding = [t for t in raised if t[0] != "flag"]
            if withholding:
                rank = {c.id: i for i, c in enumerate(request.candidates)}
                action, principle, severity, target = max(
                    withholding, key=lambda t: (SEVERITY_OF_ACTION[t[0]],
                                                SEVERITY_RANK.get(t[2] or "low", 0),
                                                -rank.get(t[3], 0)))
                why += f"; principle {principle} asks for {action}"
            elif named:  # flag delivers, and nothing the panel rejected is ever delivered
                why += (f"; principle {named[0][1]} asks for flag, but a rejected candidate is "
                        f"not delivered: {action}")
        # a principle's block stands however unsure the panel is; anything else may escalate
        if self.escalate_below is not None and not (action == "block" and principle):
            sure = max((d.probability or 0.0 for d in decisions if d.label == REJECT),
                       default=0.0)
            if sure < self.escalate_below:
                why += (f"; the panel is unsure (reject probability {sure:.2f} < "
                        f"{self.escalate_below}): escalate")
                action = "escalate"
        escalation: Escalation | None = None
        if action != "escalate":
            split = self._thin_margin([d for d in decisions if d.label == REJECT])
            severe = self._severe_split(votes, rejected)
            if action == "block" and principle and (split or severe):
                # the block stands (fail closed); a human still looks at the split panel
                pid, sev = (severe[0], severe[1]) if severe else (principle, severity)
                note = severe[2] if severe else split or ""
                escalation = Escalation(priority=SEVERITY_RANK.get(sev or "", 1),
                                        reason=f"{why}; {note}", principles=(pid,))
            elif severe is not None:
                principle, severity = severe[0], severe[1]
                why += f"; {severe[2]}: escalate"
                action = "escalate"
            elif split:
                why += f"; {split}: escalate"
                action = "escalate"
        if action == "revise" and target is None:
            target = rejected[0] if rejected else None
        return Choice(action, None, self._text_for(action, principle), why, principle,
                      severity, target, escalation)

    def _raised(self, action: Action, severity: Severity | None) -> Action:
        """``action``, raised to the least action the policy declares for ``severity``."""
        least = self.severity_actions.get(severity) if severity else None
        if least is not None and SEVERITY_OF_ACTION[least] > SEVERITY_OF_ACTION[action]:
            return least
        return action

    def refusal_for(self, principle: str | None = None) -> str:
        """The refusal a block delivers, naming ``principle`` when ``name_principle`` is on."""
        if principle and self.name_principle:
            return f"{self.refusal_message} (Policy: {principle}.)"
        return self.refusal_message

    def _text_for(self, action: Action, principle: str | None = None) -> str | None:
        if action in ("block", "revise", "regenerate"):
            return self.refusal_for(principle)
        return None
