"""Debate against its baselines on simulated panels (issue 13's herding and helping settings).

Five simulated judges at 0.65 accuracy, 2,000 balanced verdict items, debate with ``final:
majority``, run in process (:class:`consensus.local_panel.LocalPanel`: the same coordinator code
as on Ray, ``tests/test_debate.py`` checks they agree). Every debate figure stands beside:

* **round-1 majority**: the same run's independent poll, decided by majority;
* **best round-1**: the round-1 votes weighted by the judges' true log-odds accuracies (the
  Bayes decision for independent judges; equal to majority when the accuracies are equal);
* **equal budget**: majority of as many independent votes per item as the debate made calls
  on it (more simulated judges of the same accuracy, fresh seeds);
* **best single judge**: the judge with the highest round-1 accuracy.

Accuracies carry 95% bootstrap intervals (items resampled, 2,000 times) and exact McNemar
p-values against round-1 majority (paired by item). ``--rounds`` sets the debate length; each
setting also runs with ``stop: unanimity`` to show the calls it saves.

    .venv/bin/python benchmarks/debate.py            # both settings, 3 and 5 rounds
    .venv/bin/python benchmarks/debate.py --json out.json
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import math
import time
from collections.abc import Sequence

import numpy as np
import structlog

from consensus.coordinator import Coordinator
from consensus.datasets import SimulatedDataset
from consensus.experiments import mcnemar_exact
from consensus.local_panel import LocalPanel
from consensus.metrics import summarize
from consensus.types import Outcome, Request
from judges.simulated import SimulatedJudgeSpec
from strategies.debate import Debate
from strategies.majority import Majority
from strategies.weighted import Weighted

SETTINGS = {"herding": (0.5, 0.0), "helping": (0.3, 0.5)}
N_JUDGES, ACCURACY = 5, 0.65


def bootstrap_ci(hits: Sequence[bool], reps: int = 2000, seed: int = 0) -> tuple[float, float]:
    x = np.asarray(hits, float)
    rng = np.random.default_rng(seed)
    means = x[rng.integers(0, len(x), size=(reps, len(x)))].mean(axis=1)
    lo, hi = np.percentile(means, [2.5, 97.5])
    return float(lo), float(hi)


def specs(n: int, conformity: float = 0.0, truth: float = 0.0) -> list[SimulatedJudgeSpec]:
    return [SimulatedJudgeSpec(name=f"j{i}", default_accuracy=ACCURACY, seed=i,
                               conformity=conformity, truth_advantage=truth) for i in range(n)]


def run(panel: list[SimulatedJudgeSpec], strategy, reqs: Sequence[Request]) -> list[Outcome]:
    return asyncio.run(Coordinator(LocalPanel(panel), strategy).run(reqs))


def hits_of(reqs: Sequence[Request], labels: Sequence[str | None]) -> list[bool]:
    return [lab == r.gold["a"] for r, lab in zip(reqs, labels, strict=True)]


def setting(name: str, rounds: int, n_items: int, seed: int) -> dict:
    conformity, truth = SETTINGS[name]
    reqs = SimulatedDataset(n_items=n_items, seed=seed).generate()
    panel = specs(N_JUDGES, conformity, truth)
    t0 = time.perf_counter()
    fixed = run(panel, Debate(rounds=rounds, stop="none"), reqs)
    t_fixed = time.perf_counter() - t0
    stopped = run(panel, Debate(rounds=rounds, stop="unanimity"), reqs)
    summary = summarize(scenario=name, strategy="debate", run_id="bench", requests=reqs,
                        outcomes=fixed, judges=[s.name for s in panel]).debate

    debate_hits = hits_of(reqs, [o.decisions[0].label for o in fixed])
    stop_hits = hits_of(reqs, [o.decisions[0].label for o in stopped])
    first = [o.deliberation.rounds[0] for o in fixed if o.deliberation]
    r1_hits = hits_of(reqs, [r.labels["a"] for r in first])
    # best round-1: true log-odds weights over the round-1 votes
    logodds = {s.name: math.log(ACCURACY / (1 - ACCURACY)) for s in panel}
    best = Weighted(weights=logodds)
    coord = Coordinator(LocalPanel(panel), best)
    best_hits = hits_of(reqs, [coord.decide_ballots(r, rec.votes)[0].label
                               for r, rec in zip(reqs, first, strict=True)])
    # equal budget: majority of as many independent votes as the debate made calls per item
    calls = [o.deliberation.calls for o in fixed if o.deliberation]
    wide = specs(max(calls))
    polls = asyncio.run(_polls(LocalPanel(wide), reqs))
    maj = Majority()
    from consensus.types import Ballot

    budget_hits = hits_of(reqs, [
        maj.aggregate(Ballot.for_subject(r, "a", votes[:k])).label
        for r, votes, k in zip(reqs, polls, calls, strict=True)])
    singles = {s.name: np.mean([v.label == r.gold["a"] for r, rec in zip(reqs, first, strict=True)
                                for v in rec.votes if v.judge == s.name]) for s in panel}
    best_judge = max(singles, key=lambda j: singles[j])
    single_hits = [next(v.label for v in rec.votes if v.judge == best_judge) == r.gold["a"]
                   for r, rec in zip(reqs, first, strict=True)]

    def row(label: str, hits: list[bool], calls_per_item: float) -> dict:
        lo, hi = bootstrap_ci(hits)
        return {"contender": label, "accuracy": float(np.mean(hits)), "ci": [lo, hi],
                "mcnemar_p_vs_round1": mcnemar_exact(hits, r1_hits),
                "calls_per_item": calls_per_item}

    stop_calls = sum(o.deliberation.calls for o in stopped if o.deliberation) / len(reqs)
    rows = [
        row(f"debate ({rounds} rounds)", debate_hits, sum(calls) / len(reqs)),
        row(f"debate ({rounds} rounds, stop at unanimity)", stop_hits, stop_calls),
        row("round-1 majority", r1_hits, N_JUDGES),
        row("best round-1 (true log-odds weights)", best_hits, N_JUDGES),
        row(f"equal budget (majority of {sum(calls) / len(reqs):.0f} independent votes)",
            budget_hits, sum(calls) / len(reqs)),
        row(f"best single judge ({best_judge})", single_hits, 1),
    ]
    return {"setting": name, "conformity": conformity, "truth_advantage": truth,
            "rounds": rounds, "n_items": n_items, "rows": rows,
            "per_round": summary["rounds"], "flipped_from_round1": summary["flipped_from_round1"],
            "lone_right": summary["lone_right"],
            "calls_saved_by_unanimity": 1 - stop_calls / (sum(calls) / len(reqs)),
            "seconds_fixed_run": t_fixed}


async def _polls(panel: LocalPanel, reqs: Sequence[Request]):
    return [await panel.poll(r) for r in reqs]


def show(res: dict) -> None:
    print(f"\n## {res['setting']}: conformity {res['conformity']}, truth advantage "
          f"{res['truth_advantage']}, {res['rounds']} rounds, {res['n_items']} items")
    print(f"{'contender':58} {'accuracy':>8} {'95% CI':>17} {'McNemar p':>10} {'calls':>6}")
    for r in res["rows"]:
        print(f"{r['contender']:58} {r['accuracy']:8.4f} [{r['ci'][0]:.4f}, {r['ci'][1]:.4f}] "
              f"{r['mcnemar_p_vs_round1']:10.3g} {r['calls_per_item']:6.2f}")
    print("round  accuracy  alpha  eff.judges  changed  wrong→right  right→wrong")
    for r in res["per_round"]:
        print(f"{r['round']:5}  {r['accuracy']:8.4f}  {r['krippendorff_alpha']:5.3f}  "
              f"{r['effective_judges']:10.2f}  {r['changed']:7}  {r['wrong_to_right']:11}  "
              f"{r['right_to_wrong']:11}")
    f, lone = res["flipped_from_round1"], res["lone_right"]
    print(f"decisions changed from round 1: {f['n']} ({f['fixed']} fixed, {f['broken']} broken);"
          f" lone right answers kept {lone['kept']}, lost {lone['lost']}; stop at unanimity "
          f"saves {100 * res['calls_saved_by_unanimity']:.1f}% of the calls")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--items", type=int, default=2000)
    ap.add_argument("--rounds", type=int, nargs="+", default=[3, 5])
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--json", help="write the figures here too")
    args = ap.parse_args()
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    out = [setting(name, rounds, args.items, args.seed)
           for name in SETTINGS for rounds in args.rounds]
    for res in out:
        show(res)
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(out, fh, indent=2)


if __name__ == "__main__":
    main()
