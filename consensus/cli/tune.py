"""``consensus tune``: sweep a strategy's accept threshold on a labelled scenario.

Example::

    consensus tune scenarios/xstest.yaml --strategy mean_score --max-harm 0.10
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from consensus.errors import ConfigError
from consensus.files import output_dir
from consensus.log import configure_logging
from consensus.scenario import load_scenario


def tune(
    scenario: Annotated[Path, typer.Argument(help="Labelled scenario (gold, prompt_safe).")],
    strategy: Annotated[str | None, typer.Option(help="Strategy (default: the scenario's).")]
        = None,
    max_harm: Annotated[float | None, typer.Option(
        help="Target: harmful candidates delivered / harmful, at most this.")] = None,
    max_false_block: Annotated[float | None, typer.Option(
        help="Target: acceptable requests blocked / acceptable requests, at most this.")]
        = None,
    out: Annotated[Path | None, typer.Option(help="Directory for tune.csv / tune.json.")] = None,
    address: Annotated[str | None, typer.Option(help="Join an existing Ray cluster.")] = None,
    log_level: Annotated[str, typer.Option(help="debug, info, warning, error.")] = "warning",
) -> None:
    """Trade harmful content let through against safe content blocked; recommend a threshold."""
    configure_logging(log_level)
    from consensus.runner import poll_scenario
    from consensus.tuning import accept_probabilities, recommend, sweep

    if max_harm is None and max_false_block is None:
        max_harm = 0.05
    if max_harm is not None and max_false_block is not None:
        raise ConfigError("give one target: --max-harm or --max-false-block")
    for option, value in (("--max-harm", max_harm), ("--max-false-block", max_false_block)):
        if value is not None and not 0.0 <= value <= 1.0:  # NaN fails too
            raise ConfigError(f"{option} is a rate in [0, 1], got {value}")
    sc = load_scenario(scenario, strategy=strategy)
    if not any(r.gold for r in sc.requests):
        raise ConfigError("tuning needs gold labels, and this scenario's requests have none",
                          source=str(scenario), field="dataset")
    out_dir = output_dir(out or Path("out") / f"tune-{sc.name}")
    from strategies.debate import Debate

    if isinstance(sc.strategy, Debate):  # tune on the debate's final rounds
        polled = poll_scenario(sc, address=address, debates=[sc.strategy]).debated[0]
    else:
        polled = poll_scenario(sc, address=address)
    points = sweep(polled, accept_probabilities(polled, sc.strategy, sc.file.policy))
    best = recommend(points, max_harm=max_harm, max_false_block=max_false_block)
    with (out_dir / "tune.csv").open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(points[0].row()))
        w.writeheader()
        w.writerows(p.row() for p in points)
    target = {"max_harm": max_harm, "max_false_block": max_false_block}
    (out_dir / "tune.json").write_text(json.dumps(
        {"scenario": sc.name, "strategy": sc.strategy.name, "target": target,
         "recommended": best.row() if best else None,
         "sweep": [p.row() for p in points]}, indent=2))
    console = Console(width=None if Console().is_terminal else 120)
    t = Table(title=f"{sc.name} · {sc.strategy.name}: accept iff P(accept) >= threshold")
    for col in ("threshold", "harm let through", "safe blocked", "over-refusal",
                "interventions", "accuracy"):
        t.add_column(col, justify="right")
    shown = [p for p in points if round(p.threshold * 20) == p.threshold * 20] or points
    f = (lambda x: "—" if x is None else f"{x:.3f}")
    for p in shown:
        style = "bold green" if best and p.threshold == best.threshold else None
        t.add_row(f"{p.threshold:.2f}", f(p.harm_rate), f(p.false_block_rate),
                  f(p.over_refusal_rate),
                  f(p.intervention_rate), f(p.accuracy), style=style)
    if best and best not in shown:
        t.add_row(f"{best.threshold:.3f}", f(best.harm_rate), f(best.false_block_rate),
                  f(best.over_refusal_rate),
                  f(best.intervention_rate), f(best.accuracy), style="bold green")
    console.print(t)
    if best is None:
        console.print(f"[red]no threshold meets {target}[/red]")
        raise typer.Exit(1)
    console.print(f"recommended threshold {best.threshold:.3f}: harm {f(best.harm_rate)}, "
                  f"safe blocked {f(best.false_block_rate)}, "
                  f"over-refusal {f(best.over_refusal_rate)} (target {target}); "
                  f"wrote {out_dir}/tune.csv, tune.json")
