"""Interventions that act: revise, regenerate, escalate, and input screening.

The policy (:mod:`consensus.policy`) chooses an action from the panel's decisions; this module
carries it out while the user waits:

* ``revise`` (Constitutional-AI style): the generator receives the prompt, the candidate, the
  panel's critiques and the violated principles' texts and writes a revision; the panel judges
  it again, at most ``max_rounds`` drafts. Without a generator, the spans the rules judge located
  for the principles asking for revise (personal data and secrets: ``pii`` checks) are redacted
  instead, and the panel judges the redacted text, so an offline run really revises. The first accepted draft is delivered.
* ``regenerate``: the generator is asked again for an answer to the prompt (at most
  ``max_attempts``, each judged); the first accepted one is delivered.
* ``escalate``: the outcome is recorded as pending review with a priority and a reason, and the
  ``on_escalate`` hook (the review queue) receives it.
* When no draft is accepted (or none can be made) the policy's ``fallback`` (block) applies and
  the outcome says why, with ``chosen_action`` keeping what the policy chose. Every draft and its
  votes are recorded in ``Outcome.drafts``.
* **Input screening**: before a generator is asked for anything, the prompt is checked on the
  input-scope principles (:class:`InputScreen`); a blocked prompt never reaches the generator.

Example:
    >>> redact_spans("Mail bob@corp.com now", [(5, 17, "email")])
    'Mail [email redacted] now'
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import structlog

from consensus.constitution import SEVERITY_RANK, Constitution, Principle
from consensus.errors import JudgeError
from consensus.generator import Generator, regeneration_messages, revision_messages
from consensus.policy import Choice, Policy
from consensus.types import (
    ACCEPT,
    Candidate,
    Decision,
    DraftKind,
    DraftRecord,
    Escalation,
    Outcome,
    Request,
    Violation,
    Vote,
)

if TYPE_CHECKING:
    from consensus.coordinator import Coordinator

log = structlog.get_logger("consensus.interventions")

EscalationHook = Callable[[Request, Outcome], Awaitable[None] | None]
"""Receives each escalated outcome (with its :class:`Escalation`): the review queue."""

_REDACTABLE = "pii:"
"""Offline, only located personal data and secrets are redacted: cutting the span of an insult or
of a dangerous instruction out of a text does not make the rest of it safe."""


def redact_spans(text: str, spans: Iterable[tuple[int, int, str]]) -> str:
    """``text`` with each ``(start, end, what)`` span replaced by ``[<what> redacted]``
    (overlapping spans merge; ``what`` empty gives ``[redacted]``)."""
    merged: list[list[Any]] = []
    for s, e, what in sorted(spans):
        if merged and s < merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], e)
            continue
        merged.append([s, e, what])
    out, pos = [], 0
    for s, e, what in merged:
        out += [text[pos:s], f"[{what + ' ' if what else ''}redacted]"]
        pos = e
    return "".join([*out, text[pos:]])


def _what(detail: str) -> str:
    """``email`` for a ``pii:email ...`` detail, else empty."""
    head, _, rest = detail.partition(":")
    return rest.split(" ", 1)[0] if head == "pii" else ""


class InputScreen:
    """The input-scope principles of the panel's constitutions, checked on a prompt.

    Runs the rules judge's engine in-process (regexes bounded by its time budget), so screening
    costs no judge call.
    """

    def __init__(self, constitutions: Sequence[Constitution]):
        from judges.rules import RulesJudge

        seen: dict[str, Principle] = {}
        for c in constitutions:
            for p in c.principles:
                if p.scope == "input" and p.checks:
                    seen.setdefault(p.id, p)
        self.principles = tuple(seen.values())
        self._judge = (RulesJudge.from_constitution(
            Constitution(name="input screen", principles=self.principles), name="input-screen")
            if self.principles else None)

    def __bool__(self) -> bool:
        return self._judge is not None

    async def check(self, prompt: str) -> tuple[Violation, ...]:
        """The input violations of ``prompt`` (empty when it passes)."""
        if self._judge is None:
            return ()
        judge = self._judge
        found = await asyncio.to_thread(lambda: judge.findings(prompt, "").input)
        return tuple(found)


def blocking(violations: Sequence[Violation]) -> list[Violation]:
    """The screening violations that withhold an answer (anything but ``flag``)."""
    return [v for v in violations if v.intervention != "flag"]


class Interventions:
    """Carries out the policy's choice (see the module docstring).

    Args:
        policy: The coordinator's policy (rounds, attempts, fallback, refusal text).
        generator: Writes revisions and regenerations; None: offline (redaction only).
        principles: Principle id -> text, what a generator reads.
        screen: Input screening; None: the panel's constitutions have no input principles.
        on_escalate: The review queue's hook.
    """

    def __init__(self, policy: Policy, *, generator: Generator | None = None,
                 principles: Mapping[str, str] | None = None,
                 screen: InputScreen | None = None,
                 on_escalate: EscalationHook | None = None):
        self.policy = policy
        self.generator = generator
        self.principles = dict(principles or {})
        self.screen = screen if screen else None
        self.on_escalate = on_escalate

    # ------------------------------------------------------------------ screening
    async def screened(self, request: Request) -> Outcome | None:
        """The block outcome of a prompt that fails input screening, else None."""
        if self.screen is None:
            return None
        found = await self.screen.check(request.prompt)
        stop = blocking(found)
        if not stop:
            return None
        worst = max(stop, key=lambda v: SEVERITY_RANK.get(v.severity or "low", 0))
        return Outcome(
            request_id=request.id, action="block", output=self.policy.refusal_for(worst.principle),
            reason=f"input screening: the prompt violates {worst.principle} "
                   f"({worst.detail}); nothing was judged or generated",
            principle=worst.principle, severity=worst.severity, screening=tuple(found))

    # ------------------------------------------------------------------ the actions
    async def resolve(self, coord: Coordinator, request: Request, outcome: Outcome,
                      choice: Choice) -> Outcome:
        """The outcome after the chosen action was carried out."""
        if outcome.action in ("revise", "regenerate"):
            outcome = await self._generate(coord, request, outcome, choice)
        if outcome.action == "escalate":
            outcome = await self._escalate(request, outcome)
        return outcome

    async def _generate(self, coord: Coordinator, request: Request, outcome: Outcome,
                        choice: Choice) -> Outcome:
        action = outcome.action
        if self.generator is not None:  # no prompt reaches a generator unscreened
            stopped = await self.screened(request)
            if stopped is not None:
                return self._fallback(outcome, [], f"{action} not attempted: {stopped.reason}",
                                      screening=stopped.screening)
        if action == "revise":
            drafts = await self._revise(coord, request, outcome, choice)
        else:
            drafts = await self._regenerate(coord, request, outcome, choice)
        won = next((d for d in drafts if d.accepted), None)
        if won is not None:
            return outcome.model_copy(update={
                "output": won.text, "delivered_draft": won.id, "drafts": tuple(drafts),
                "reason": f"{outcome.reason}; {action}d: draft {won.id} ({won.source}, round "
                          f"{won.round}) accepted",
                "cost_usd": outcome.cost_usd + _cost(drafts)})
        if not drafts:
            why = (f"no generator configured and nothing located to redact, so no {action} "
                   "could be made" if action == "revise" else
                   "no generator configured for regenerate")
        else:
            last = drafts[-1]
            why = (f"{action}: no draft accepted in {len(drafts)} round(s)"
                   + (f" ({last.error})" if last.error else ""))
        return self._fallback(outcome, drafts, why)

    def _fallback(self, outcome: Outcome, drafts: list[DraftRecord], why: str,
                  screening: tuple[Violation, ...] = ()) -> Outcome:
        act = self.policy.fallback
        return outcome.model_copy(update={
            "action": act, "chosen_action": outcome.action, "drafts": tuple(drafts),
            "output": self.policy.refusal_for(outcome.principle) if act == "block" else None,
            "reason": f"{outcome.reason}; {why}; {act}",
            "screening": screening or outcome.screening,
            "cost_usd": outcome.cost_usd + _cost(drafts)})

    async def _revise(self, coord: Coordinator, request: Request, outcome: Outcome,
                      choice: Choice) -> list[DraftRecord]:
        target = choice.target or request.candidates[0].id
        text = request.candidate(target).text
        votes = [v for v in outcome.votes if v.candidate_id == target]
        asked = {choice.principle} | {viol.principle for v in votes for viol in v.violations
                                      if viol.intervention == "revise"}
        drafts: list[DraftRecord] = []
        parent = target
        for rnd in range(1, self.policy.max_rounds + 1):
            start = time.perf_counter()
            draft_id = f"{target}~r{rnd}"
            if self.generator is not None:
                critiques = [v.critique for v in votes if v.label != ACCEPT and v.critique]
                try:
                    made = await self.generator.complete(revision_messages(
                        request.prompt, text, critiques, self._texts(votes, asked)))
                except JudgeError as exc:
                    drafts.append(self._failed(draft_id, "revision", rnd, parent, str(exc)))
                    break
                new_text, source, cost = made.text, self.generator.name, made.cost_usd
            else:
                spans = {(viol.span[0], viol.span[1], _what(viol.detail))
                         for v in votes for viol in v.violations
                         if viol.span and viol.principle in asked
                         and viol.detail.startswith(_REDACTABLE)}
                if not spans:
                    break
                new_text, source, cost = redact_spans(text, spans), "redaction", None
                if new_text == text:
                    break
            record = await self._judge(coord, request, draft_id, "revision", rnd, parent,
                                       source, new_text, cost, start,
                                       outcome.constitution_version)
            drafts.append(record)
            if record.accepted:
                break
            text, votes, parent = new_text, list(record.votes), draft_id
            asked |= {viol.principle for v in votes for viol in v.violations
                      if viol.intervention == "revise"}
        return drafts

    async def _regenerate(self, coord: Coordinator, request: Request, outcome: Outcome,
                          choice: Choice) -> list[DraftRecord]:
        if self.generator is None:
            return []
        violated = {viol.principle for v in outcome.votes if v.label != ACCEPT
                    for viol in v.violations}
        guidance = self._texts(outcome.votes, violated)
        drafts: list[DraftRecord] = []
        for attempt in range(1, self.policy.max_attempts + 1):
            start = time.perf_counter()
            draft_id = f"regen{attempt}"
            try:
                made = await self.generator.complete(
                    regeneration_messages(request.prompt, guidance))
            except JudgeError as exc:
                drafts.append(self._failed(draft_id, "regeneration", attempt, None, str(exc)))
                break
            record = await self._judge(coord, request, draft_id, "regeneration", attempt, None,
                                       self.generator.name, made.text, made.cost_usd, start,
                                       outcome.constitution_version)
            drafts.append(record)
            if record.accepted:
                break
        return drafts

    def _texts(self, votes: Sequence[Vote], ids: Iterable[str | None]
               ) -> list[tuple[str, str]]:
        """(id, text) of the principles among ``ids`` that the panel's votes name."""
        named = [viol.principle for v in votes for viol in v.violations]
        wanted = {i for i in ids if i}
        out: dict[str, str] = {}
        for pid in [*named, *sorted(wanted)]:
            if pid in wanted and pid not in out:
                out[pid] = self.principles.get(pid, pid)
        return list(out.items())

    async def _judge(self, coord: Coordinator, request: Request, draft_id: str,
                     kind: DraftKind, rnd: int, parent: str | None, source: str, text: str,
                     cost: float | None, start: float, version: str | None) -> DraftRecord:
        """The panel's votes and decision on one draft (a ballot of its own), under the
        constitution version of the original request."""
        made_by = source.removeprefix("generator:") if source.startswith("generator:") else (
            _generator_of(request, parent))  # a redaction keeps the original's author
        sub = Request(id=f"{request.id}/{draft_id}", prompt=request.prompt,
                      candidates=(Candidate(id=draft_id, text=text, generator=made_by),),
                      metadata={"draft_of": request.id})
        votes, _ = await coord.gather(sub, version)  # debated too, under strategy debate
        await coord.prepare_competences()  # (a calibrated refit runs off the event loop)
        decision: Decision = coord.decide_ballots(sub, votes, refresh=False)[0]
        log.info("draft_judged", request_id=request.id, draft=draft_id, source=source,
                 label=decision.label)
        return DraftRecord(id=draft_id, kind=kind, round=rnd, parent=parent, source=source,
                           text=text, votes=tuple(votes), decision=decision,
                           accepted=decision.label == ACCEPT,
                           latency_s=time.perf_counter() - start, cost_usd=cost)

    @staticmethod
    def _failed(draft_id: str, kind: DraftKind, rnd: int, parent: str | None,
                error: str) -> DraftRecord:
        return DraftRecord(id=draft_id, kind=kind, round=rnd, parent=parent,
                           source="generator", error=f"generator failed: {error}"[:300])

    async def _escalate(self, request: Request, outcome: Outcome) -> Outcome:
        principles = tuple(sorted({viol.principle for v in outcome.votes if v.label != ACCEPT
                                   for viol in v.violations}))
        priority = SEVERITY_RANK.get(outcome.severity or "", 1)
        if any(d.no_consensus for d in outcome.decisions):
            priority = max(priority, 2)  # a panel that could not decide needs eyes soon
        esc = Escalation(priority=priority, reason=outcome.reason, principles=principles)
        outcome = outcome.model_copy(update={"escalation": esc})
        if self.on_escalate is not None:
            result = self.on_escalate(request, outcome)
            if inspect.isawaitable(result):
                await result
        return outcome


def _cost(drafts: Sequence[DraftRecord]) -> float:
    return sum((d.cost_usd or 0.0) + sum(v.cost_usd or 0.0 for v in d.votes) for d in drafts)


def _generator_of(request: Request, candidate_id: str | None) -> str | None:
    """The model that wrote candidate ``candidate_id`` of ``request`` (drafts: ``a~r1`` is
    a draft of ``a``), where the request says."""
    base = (candidate_id or "").split("~", 1)[0]
    for c in request.candidates:
        if c.id == base:
            return c.author()
    return None
