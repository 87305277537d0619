"""Judges learn from reviews: Beta counts per class from the real store, used by later requests.

Every test runs on a real SQLite store file and the real strategies and coordinator; the panel
is an in-process stand-in that casts scripted votes (no Ray, no network).
"""

from __future__ import annotations

import asyncio
import tempfile
from itertools import pairwise
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from consensus.competence import (
    DEFAULT_PRIOR,
    PAIRWISE_CLASS,
    BetaPrior,
    CompetenceSource,
    competence,
    learned_weight,
    update_from_reviews,
)
from consensus.coordinator import Coordinator
from consensus.errors import ConfigError
from consensus.policy import Policy
from consensus.store import Store
from consensus.types import Ballot, Candidate, Decision, Escalation, Outcome, Request, Vote
from strategies.calibrated import Calibrated
from strategies.log_odds import LogOdds
from strategies.majority import Majority
from strategies.registry import build_strategy
from strategies.weighted import Weighted

RUN = "run1"
JUDGES = ("boss", "a", "b")


class ScriptedPanel:
    """Casts the votes scripted per request id (a label, or None for a timeout abstention)."""

    def __init__(self, judges: tuple[str, ...] = JUDGES):
        self.judges = judges
        self.script: dict[str, tuple[str | None, ...]] = {}
        self.size = len(judges)

    async def poll(self, request: Request) -> tuple[Vote, ...]:
        labels = self.script[request.id]
        out = []
        for subject in request.subjects():
            for judge, label in zip(self.judges, labels, strict=True):
                out.append(Vote(judge=judge, request_id=request.id, candidate_id=subject,
                                label=label) if label is not None else
                           Vote.abstain(judge=judge, request_id=request.id,
                                        candidate_id=subject, kind="timeout", reason="slow"))
        return tuple(out)


def request(rid: str, n: int = 1, task: str = "verdict") -> Request:
    return Request(id=rid, prompt=f"prompt {rid}", task=task,  # type: ignore[arg-type]
                   candidates=tuple(Candidate(id=c, text=f"{rid} {c}") for c in "xy"[:n]))


def decide(coord: Coordinator, store: Store, req: Request, votes: tuple[str | None, ...],
           audit: bool = True) -> Outcome:
    """Decide ``req`` on the scripted votes and record it (escalated for a spot-check review)."""
    coord.panel.script[req.id] = votes
    out = asyncio.run(coord.decide(req))
    if audit and out.escalation is None:
        out = out.model_copy(update={"escalation": Escalation(priority=1, reason="spot check")})
    store.record(RUN, out, req)
    return out


def review(store: Store, rid: str, verdict: str, chosen: str | None = None,
           reviewer: str = "ann") -> int:
    assert store.claim(reviewer, RUN, rid) is not None
    revision = "a safer answer" if verdict == "revise" else None
    return store.submit_review(RUN, rid, reviewer, verdict, chosen=chosen, revision=revision)


@pytest.fixture
def store(tmp_path: Path) -> Store:
    s = Store(tmp_path / "consensus.sqlite")
    s.ensure_run(RUN, scenario="reviews", strategy="weighted", config={})
    return s


def weights_of(out: Outcome) -> dict[str, float]:
    return out.decisions[0].diagnostics["competences"]["weights"]


def test_overruled_judge_loses_weight_and_stops_deciding(store: Store):
    panel = ScriptedPanel()
    coord = Coordinator(panel, Weighted(weights={"boss": 3.0}, from_reviews=True),
                        Policy(quorum=1), competences=store)
    boss_says_accept = ("accept", "reject", "reject")
    first = decide(coord, store, request("r0"), boss_says_accept)
    assert first.action == "accept"  # weight 3 against 1 + 1: the boss decides alone
    assert weights_of(first) == {"boss": 3.0, "a": 1.0, "b": 1.0}  # no reviews: as configured

    boss_weights, boss_reject = [weights_of(first)["boss"]], []
    n = 8
    for i in range(n):  # every later request: the boss decides, a reviewer overrules it
        rid = f"r{i}"
        if i:
            decide(coord, store, request(rid), boss_says_accept)
        table = update_from_reviews(store, review(store, rid, "reject"))
        a, b = table["boss"]["reject"]
        boss_reject.append(a / (a + b))
        boss_weights.append(3.0 * learned_weight(table, "boss", ("accept", "reject")))
    assert table["boss"]["reject"] == (2.0, 1.0 + n)  # the prior plus n wrong votes
    assert table["a"]["reject"] == (2.0 + n, 1.0) and "accept" not in table["a"]
    # the decline is monotone over the reviews, to 0 once the boss is at or below chance
    assert all(x > y for x, y in pairwise(boss_reject))
    assert all(x >= y for x, y in pairwise(boss_weights))
    assert boss_weights[-1] == 0.0 and boss_weights[1] > 0.0
    # the history keeps every step, one row per review, in order
    history = [h for h in store.competence_history("boss") if h["label"] == "reject"]
    assert [h["alpha"] / (h["alpha"] + h["beta"]) for h in history] == boss_reject
    ids = [r["review_id"] for r in store.reviews()]
    assert [h["review_id"] for h in history] == ids

    later = decide(coord, store, request("later"), boss_says_accept)  # same coordinator
    assert later.action == "block" and later.decisions[0].label == "reject"
    w = weights_of(later)
    assert w["boss"] == 0.0 and w["a"] == w["b"] > 1.0  # the others gained what it lost
    # the boss alone for accept, the others silent: it no longer decides anything
    alone = decide(coord, store, request("alone"), ("accept", None, None), audit=False)
    assert alone.decisions[0].label is None and alone.action == "block"
    assert "at or below chance" in alone.decisions[0].reason


def test_log_odds_follows_the_reviews(store: Store):
    panel = ScriptedPanel()
    strategy = LogOdds(competences={"boss": 0.95, "a": 0.6, "b": 0.6}, from_reviews=True)
    coord = Coordinator(panel, strategy, Policy(), competences=CompetenceSource(store))
    assert decide(coord, store, request("r0"), ("accept", "reject", "reject")).action == \
        "accept"
    update_from_reviews(store, review(store, "r0", "reject"))
    for i in range(1, 10):
        decide(coord, store, request(f"r{i}"), ("accept", "reject", "reject"))
        update_from_reviews(store, review(store, f"r{i}", "reject"))
    later = decide(coord, store, request("later"), ("accept", "reject", "reject"))
    assert later.decisions[0].label == "reject"
    w = weights_of(later)
    assert w["boss"] < w["a"] == w["b"]


def test_competences_never_read_backwards_by_log_odds(store: Store):
    table = {"bad": {"accept": (2.0, 40.0), "reject": (2.0, 40.0)}}
    store.set_competence("bad", "accept", *table["bad"]["accept"])
    store.set_competence("bad", "reject", *table["bad"]["reject"])
    src = CompetenceSource(store)
    src.refresh()
    b = Ballot(request_id="q", subject="x", labels=("accept", "reject"), votes=(
        Vote(judge="bad", request_id="q", candidate_id="x", label="reject"),
        Vote(judge="ok", request_id="q", candidate_id="x", label="reject")))
    strat, weights = src.strategy_for(LogOdds(from_reviews=True), b)
    assert isinstance(strat, LogOdds) and strat.competences is not None
    assert strat.competences["bad"] == 0.5 and weights == {"bad": 0.0, "ok": pytest.approx(
        0.6931, abs=1e-3)}
    assert competence(table, "bad", ("accept", "reject")) < 0.1


def test_update_is_idempotent_and_undo_restores(store: Store):
    coord = Coordinator(ScriptedPanel(), Weighted(from_reviews=True), competences=store)
    for i in range(3):
        decide(coord, store, request(f"r{i}"), ("accept", "accept", "reject"))
    update_from_reviews(store, review(store, "r0", "accept"))
    before = update_from_reviews(store, review(store, "r1", "reject"))
    rows = len(store.competence_history())
    assert update_from_reviews(store) == before  # again: the same table, nothing written
    assert len(store.competence_history()) == rows and store.competences() == before

    third = review(store, "r2", "reject")
    after = update_from_reviews(store, third)
    assert after != before and after["boss"]["reject"] == (2.0, 3.0)
    store.undo_review(third, "ann")
    assert update_from_reviews(store, third) == before
    assert store.competences() == before

    # undoing every review takes each row back to the prior
    store.undo_review(store.reviews()[-1]["review_id"], "ann")
    store.undo_review(store.reviews()[-1]["review_id"], "ann")
    empty = update_from_reviews(store)
    assert all(v == DEFAULT_PRIOR.counts for rows_ in empty.values() for v in rows_.values())


def test_abstentions_count_for_neither(store: Store):
    coord = Coordinator(ScriptedPanel(), Weighted(from_reviews=True), Policy(quorum=1),
                        competences=store)
    decide(coord, store, request("r0"), ("reject", None, "reject"))
    decide(coord, store, request("r1"), ("reject", "accept", None))
    update_from_reviews(store, review(store, "r0", "reject"))
    table = update_from_reviews(store, review(store, "r1", "reject"))
    assert table["boss"]["reject"] == (4.0, 1.0)
    assert table["a"]["reject"] == (2.0, 2.0)  # its abstention on r0 is not counted
    assert table["b"]["reject"] == (3.0, 1.0)  # nor its abstention on r1


def test_prefer_and_pairwise_gold(store: Store):
    verdict = Coordinator(ScriptedPanel(), Weighted(from_reviews=True), competences=store)
    decide(verdict, store, request("two", n=2), ("accept", "reject", "accept"))
    table = update_from_reviews(store, review(store, "two", "prefer", chosen="y"))
    # y is accept, x is reject: every judge voted the same on both candidates
    assert table["boss"] == {"accept": (3.0, 1.0), "reject": (2.0, 2.0)}
    assert table["a"] == {"accept": (2.0, 2.0), "reject": (3.0, 1.0)}

    pairwise = Coordinator(ScriptedPanel(), Weighted(from_reviews=True), competences=store)
    decide(pairwise, store, request("pair", n=2, task="pairwise"), ("x", "y", "y"))
    table = update_from_reviews(store, review(store, "pair", "prefer", chosen="y"))
    assert table["boss"][PAIRWISE_CLASS] == (2.0, 2.0)
    assert table["a"][PAIRWISE_CLASS] == (3.0, 1.0)


def test_calibrated_fits_the_reviews_as_gold(store: Store):
    coord = Coordinator(ScriptedPanel(), Calibrated(from_reviews=True, n_repeats=1),
                        competences=store)
    script = [("accept", "reject", "reject", "reject"), ("reject", "accept", "accept", "accept")]
    for i in range(12):  # the boss is always wrong, the others always right
        votes, gold = script[i % 2][:3], script[i % 2][3]
        decide(coord, store, request(f"r{i}"), votes)
        update_from_reviews(store, review(store, f"r{i}", gold))
    src = coord.competences
    assert src is not None
    src.refresh()  # the coordinator does this before each decision
    ballot = Ballot(request_id="q", subject="x", labels=("accept", "reject"), votes=tuple(
        Vote(judge=j, request_id="q", candidate_id="x", label=lab)
        for j, lab in zip(JUDGES, ("accept", "reject", "reject"), strict=True)))
    fitted, _ = src.strategy_for(coord.strategy, ballot)
    assert isinstance(fitted, Calibrated) and fitted.n_gold_ == 12
    assert fitted.weights_["boss"] < fitted.weights_["a"]
    later = decide(coord, store, request("later"), ("accept", "reject", "reject"))
    assert later.decisions[0].label == "reject"


def test_bad_configuration_is_refused(store: Store):
    with pytest.raises(ConfigError, match="from_reviews needs a store"):
        Coordinator(ScriptedPanel(), Weighted(from_reviews=True))
    with pytest.raises(ConfigError, match="cannot take competences"):
        Coordinator(ScriptedPanel(), Majority(), competences=store)
    with pytest.raises(ConfigError, match="must be a store"):
        Coordinator(ScriptedPanel(), Weighted(), competences={"boss": 0.9})
    with pytest.raises(ConfigError, match="alpha"):
        BetaPrior(alpha=1.0, beta=2.0)
    with pytest.raises(ConfigError, match="finite"):
        BetaPrior(alpha=float("nan"))
    with pytest.raises(ConfigError) as exc:
        build_strategy({"name": "weighted", "from_reviews": "sometimes"})
    assert exc.value.field == "strategy.from_reviews"
    built = build_strategy({"name": "log_odds", "from_reviews": True})
    assert isinstance(built, LogOdds) and built.from_reviews


def test_unreadable_store_fails_closed(tmp_path: Path):
    s = Store(tmp_path / "c.sqlite")
    s.close()
    coord = Coordinator(ScriptedPanel(), Weighted(from_reviews=True), competences=s)
    coord.panel.script["r"] = ("accept", "accept", "accept")
    out = asyncio.run(coord.decide(request("r")))
    assert out.action == "block" and "competences unreadable" in out.decisions[0].reason


def test_every_judge_at_chance_fails_closed(store: Store):
    coord = Coordinator(ScriptedPanel(), Weighted(default_weight=0.0, weights={"boss": 1.0},
                                                  from_reviews=True), competences=store)
    for i in range(6):  # only the boss has weight, and it is always wrong
        decide(coord, store, request(f"r{i}"), ("accept", "reject", "reject"))
        update_from_reviews(store, review(store, f"r{i}", "reject"))
    out = decide(coord, store, request("later"), ("accept", "accept", "accept"), audit=False)
    assert out.action == "block" and out.decisions[0].label is None


VOTE = st.sampled_from(["accept", "reject", None])
STEP = st.tuples(st.tuples(VOTE, VOTE, VOTE),
                 st.sampled_from(["accept", "reject", "revise", "prefer", "undo"]))


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(STEP, min_size=1, max_size=8))
def test_competences_and_weights_stay_in_range(steps):
    with tempfile.TemporaryDirectory() as d:
        store = Store(Path(d) / "c.sqlite")
        store.ensure_run(RUN, scenario="p", strategy="weighted", config={})
        coord = Coordinator(ScriptedPanel(), Weighted(weights={"boss": 3.0}, from_reviews=True),
                            Policy(quorum=1), competences=store)
        live: list[int] = []
        for i, (votes, verdict) in enumerate(steps):
            if verdict == "undo":
                if live:
                    rid = live.pop()
                    store.undo_review(rid, "ann")
                    store.release(*_item_of(store, rid), "ann")
                    table = update_from_reviews(store, rid)
                continue
            decide(coord, store, request(f"r{i}"), votes)
            rid = review(store, f"r{i}", verdict, chosen="x" if verdict == "prefer" else None)
            live.append(rid)
            table = update_from_reviews(store, rid)
            assert update_from_reviews(store) == table  # idempotent at every step
        table = update_from_reviews(store)
        for judge in (*JUDGES, "unseen"):
            p = competence(table, judge, ("accept", "reject"))
            assert 0.0 <= p <= 1.0
            assert learned_weight(table, judge, ("accept", "reject")) >= 0.0
        for rows in table.values():
            for a, b in rows.values():
                assert a >= DEFAULT_PRIOR.alpha and b >= DEFAULT_PRIOR.beta
        out = decide(coord, store, request("final"), ("accept", "reject", "accept"),
                     audit=False)
        assert all(w >= 0.0 for w in weights_of(out).values())
        store.close()


def _item_of(store: Store, review_id: int) -> tuple[str, str]:
    r = next(r for r in store.reviews(include_undone=True) if r["review_id"] == review_id)
    return r["run_id"], r["request_id"]


def reviewed_coordinator(store: Store) -> Coordinator:
    """A calibrated-from-reviews coordinator after 12 decided and reviewed requests (the boss
    always wrong, the others always right); the last review changed the table since the last
    fit."""
    coord = Coordinator(ScriptedPanel(), Calibrated(from_reviews=True, n_repeats=1),
                        competences=store)
    script = [("accept", "reject", "reject", "reject"), ("reject", "accept", "accept", "accept")]
    for i in range(12):
        decide(coord, store, request(f"r{i}"), script[i % 2][:3])
        update_from_reviews(store, review(store, f"r{i}", script[i % 2][3]))
    return coord


def test_a_refit_on_new_reviews_runs_off_the_event_loop_once(store: Store, monkeypatch):
    """Three requests decided at once after the reviews changed: one calibrated fit, in a worker
    thread (a task ticking every 20 ms never waits as long as the 1 s fit), and all three use
    it. Inline, the fit held up the loop for its whole length."""
    import consensus.competence as competence_module

    coord = reviewed_coordinator(store)
    real, fits = competence_module.fit_strategy, []

    def slow_fit(strategy, ballots):
        fits.append(len(ballots))
        import time
        time.sleep(1.0)
        return real(strategy, ballots)

    monkeypatch.setattr(competence_module, "fit_strategy", slow_fit)

    async def main(rids: tuple[str, ...]) -> tuple[list[Outcome], list[float]]:
        for rid in rids:
            coord.panel.script[rid] = ("accept", "reject", "reject")
        ticks: list[float] = []
        loop = asyncio.get_running_loop()

        async def tick() -> None:
            while True:
                ticks.append(loop.time())
                await asyncio.sleep(0.02)

        ticker = asyncio.create_task(tick())
        await asyncio.sleep(0)
        outs = await asyncio.gather(*(coord.decide(request(r)) for r in rids))
        ticker.cancel()
        return list(outs), ticks

    outs, ticks = asyncio.run(main(("n0", "n1", "n2")))
    assert fits == [12]  # one fit, on the 12 reviewed ballots
    assert [o.decisions[0].label for o in outs] == ["reject"] * 3  # the boss is contradicted
    assert ticks[-1] - ticks[0] >= 1.0 and max(b - a for a, b in pairwise(ticks)) < 0.5
    # another review, then the same again on a new event loop (a lock serves one loop)
    store.record(RUN, outs[0].model_copy(update={"escalation": Escalation(
        priority=1, reason="spot check")}), request("n0"))
    update_from_reviews(store, review(store, "n0", "reject"))
    outs, _ = asyncio.run(main(("m0", "m1", "m2")))
    assert fits == [12, 13] and [o.decisions[0].label for o in outs] == ["reject"] * 3


def test_a_refit_is_shared_survives_a_cancelled_caller_and_never_runs_inline(store: Store,
                                                                              monkeypatch):
    """While a refit runs in its worker thread: a synchronous decision (a draft's, say) uses
    the last fit instead of fitting on the loop; a caller cancelled mid-fit leaves the fit to
    the next caller instead of starting another; and the fit is a copy, so the strategy that
    decisions read is never half-fitted."""
    import threading
    import time as time_module

    import consensus.competence as competence_module

    coord = reviewed_coordinator(store)
    src = coord.competences
    assert src is not None
    real, fits = competence_module.fit_strategy, []

    def slow_fit(strategy, ballots):
        fits.append((threading.current_thread() is threading.main_thread(), len(ballots)))
        time_module.sleep(0.5)
        return real(strategy, ballots)

    monkeypatch.setattr(competence_module, "fit_strategy", slow_fit)
    ballot = Ballot(request_id="q", subject="x", labels=("accept", "reject"), votes=tuple(
        Vote(judge=j, request_id="q", candidate_id="x", label=lab)
        for j, lab in zip(JUDGES, ("accept", "reject", "reject"), strict=True)))

    async def main() -> Decision:
        first = asyncio.create_task(src.prepare(coord.strategy))
        await asyncio.sleep(0.1)  # the refit on 12 reviews is under way
        meanwhile = src.decide(coord.strategy, ballot)  # synchronous: the last fit (11 reviews)
        first.cancel()
        await src.prepare(coord.strategy)  # takes over the shielded fit
        with pytest.raises(asyncio.CancelledError):
            await first
        return meanwhile

    meanwhile = asyncio.run(main())
    assert fits == [(False, 12)]  # one fit, in a worker thread
    assert meanwhile.label == "reject"
    fitted, _ = src.strategy_for(coord.strategy, ballot)
    assert isinstance(fitted, Calibrated) and fitted.n_gold_ == 12
    assert fitted is not coord.strategy and coord.strategy.method_ is None  # fitted a copy


def test_a_refit_that_raises_is_not_retried_on_the_loop_until_the_reviews_change(
        store: Store, monkeypatch):
    """A refit that raises: the decisions meanwhile and after use the last fit, and none of
    them fits again (on the loop or off it) until the table changes; then a refit runs."""
    import threading

    import consensus.competence as competence_module

    coord = reviewed_coordinator(store)
    real, fits = competence_module.fit_strategy, []

    def failing_fit(strategy, ballots):
        fits.append((threading.current_thread() is threading.main_thread(), len(ballots)))
        if len(ballots) == 12:
            raise ValueError("singular matrix")
        return real(strategy, ballots)

    monkeypatch.setattr(competence_module, "fit_strategy", failing_fit)

    async def batch(rids: tuple[str, ...]) -> list[Outcome]:
        for rid in rids:
            coord.panel.script[rid] = ("accept", "reject", "reject")
        return list(await asyncio.gather(*(coord.decide(request(r)) for r in rids)))

    outs = asyncio.run(batch(("n0", "n1", "n2")))
    outs += asyncio.run(batch(("n3", "n4")))
    assert fits == [(False, 12)]  # one attempt, in the worker; none inline, none repeated
    # the last fit (11 reviews) decides meanwhile: the boss is still contradicted
    assert [o.decisions[0].label for o in outs] == ["reject"] * 5
    # another review: the table changed, so a refit is tried again (and succeeds)
    store.record(RUN, outs[0].model_copy(update={"escalation": Escalation(
        priority=1, reason="spot check")}), request("n0"))
    update_from_reviews(store, review(store, "n0", "reject"))
    asyncio.run(batch(("n5",)))
    assert fits == [(False, 12), (False, 13)]


def test_a_refit_dropped_by_new_unlabelled_ballots_is_not_cached(store: Store, monkeypatch):
    """New unlabelled ballots arrive while a refit runs: that refit (made without them) is
    neither cached nor the latest; the same prepare then fits again, with them."""
    import time as time_module

    import consensus.competence as competence_module

    coord = reviewed_coordinator(store)
    src = coord.competences
    assert src is not None
    before = src._latest
    real, fits, made = competence_module.fit_strategy, [], []

    def slow_fit(strategy, ballots):
        fits.append(len(ballots))
        time_module.sleep(0.3)
        made.append(real(strategy, ballots))
        return made[-1]

    monkeypatch.setattr(competence_module, "fit_strategy", slow_fit)
    extra = [Ballot(request_id=f"u{i}", subject="x", labels=("accept", "reject"), votes=tuple(
        Vote(judge=j, request_id=f"u{i}", candidate_id="x", label=lab)
        for j, lab in zip(JUDGES, ("accept", "reject", "reject"), strict=True)))
        for i in range(5)]

    async def main() -> None:
        first = asyncio.create_task(src.prepare(coord.strategy))
        await asyncio.sleep(0.1)
        src.use_unlabelled(extra)
        await first

    asyncio.run(main())
    assert fits == [12, 17] and before is not None
    assert src._cache[("calibrated",)][0] is made[1] and src._latest == (before[0] + 2, made[1])


def test_a_first_refit_that_raises_fails_closed_and_is_retried_off_the_loop(store: Store,
                                                                             monkeypatch):
    """With no earlier fit to serve, a refit that raises leaves the decision undecided (the
    policy blocks), and the next request tries again, in the worker, never on the loop."""
    import threading

    import consensus.competence as competence_module

    reviewed_coordinator(store)  # the reviews, in the store
    fresh = Coordinator(ScriptedPanel(), Calibrated(from_reviews=True, n_repeats=1),
                        competences=store)
    fits = []

    def failing_fit(strategy, ballots):
        fits.append(threading.current_thread() is threading.main_thread())
        raise ValueError("singular matrix")

    monkeypatch.setattr(competence_module, "fit_strategy", failing_fit)
    async def one_after_another() -> list[Outcome]:  # on one loop
        outs = []
        for rid in ("f0", "f1"):
            fresh.panel.script[rid] = ("accept", "reject", "reject")
            outs.append(await fresh.decide(request(rid)))
        return outs

    outs = asyncio.run(one_after_another())
    assert fits == [False, False]  # one try per request, both in the worker
    assert [o.decisions[0].label for o in outs] == [None, None]
    assert all("singular matrix" in (o.decisions[0].reason or "") for o in outs)
    assert {o.action for o in outs} == {"block"}
