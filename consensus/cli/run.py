"""``consensus run SCENARIO``: run a scenario on Ray and write the output directory."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from consensus.files import output_dir
from consensus.log import configure_logging
from consensus.scenario import load_scenario
from consensus.store import default_store_path
from consensus.types import RunSummary


def run(
    scenario: Annotated[Path, typer.Argument(help="Scenario YAML file.")],
    out: Annotated[Path | None, typer.Option(help="Output directory (default out/<name>).")] = None,
    strategy: Annotated[str | None, typer.Option(help="Override the scenario's strategy.")] = None,
    address: Annotated[str | None, typer.Option(
        help="Join an existing Ray cluster ('auto' or host:port); default: start a local one.")]
        = None,
    store: Annotated[str | None, typer.Option(
        help="SQLite file or postgresql:// DSN (default: consensus.sqlite in the user's data "
        "directory, e.g. ~/.local/share/consensus).")] = None,
    resume: Annotated[bool, typer.Option(
        "--resume", help="Continue the latest unfinished run of SCENARIO in the store, "
        "deciding only what it did not commit.")] = False,
    resume_run: Annotated[str | None, typer.Option(
        "--resume-run", metavar="RUN_ID", help="Continue the run RUN_ID (as --resume).")]
        = None,
    limit: Annotated[int | None, typer.Option(min=1, help="Decide only the first N requests.")]
        = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print summary.json to stdout.")] = False,
    log_level: Annotated[str, typer.Option(help="debug, info, warning, error.")] = "warning",
    fail_on_abstain_rate: Annotated[float | None, typer.Option(
        min=0.0, max=1.0, help="Exit 3 when any judge failed to vote on more than this share "
        "of its calls (e.g. 0.5: a judge that could not vote most of the time fails the run; "
        "recusals, a judge with nothing to judge, do not count).")]
        = None,
) -> None:
    """Run SCENARIO: every request through the panel, strategy and policy.

    The store (printed at the start) keeps every decision as it is committed; a run that was
    killed or stopped continues with ``consensus run SCENARIO --resume`` (the latest
    unfinished run of SCENARIO) or ``--resume-run RUN_ID``.

    Exit codes: 0 done; 2 bad input (also: nothing to resume, or the scenario changed since
    the run to resume started); 3 a judge abstained above --fail-on-abstain-rate;
    130 interrupted.
    """
    configure_logging(log_level)
    sc = load_scenario(scenario, strategy=strategy)
    if limit is not None:
        sc = sc.limited(limit)
    out_dir = output_dir(out or Path("out") / sc.name)  # a bad --out fails before Ray starts
    console = Console(stderr=True)
    from consensus.runner import RunStart, run_scenario  # imports Ray: only when running

    with Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                  TimeElapsedColumn(), console=console, transient=True) as progress:
        task = progress.add_task(f"{sc.name} ({sc.strategy.name})", total=len(sc.requests))

        def started(s: RunStart) -> None:
            again = f", resuming: {s.resumed} decided, {s.todo} to go" if s.resumed else ""
            console.print(f"[dim]run {s.run_id}{again}; store {s.store}[/dim]", soft_wrap=True)
            progress.advance(task, s.resumed)

        result = run_scenario(sc, out_dir, address=address,
                              store_path=store or default_store_path(),
                              resume=resume_run or ("latest" if resume else None),
                              on_start=started, on_progress=lambda *_: progress.advance(task))
    if as_json:
        print(json.dumps(result.summary.model_dump(mode="json"), indent=2))
    else:
        show_summary(Console(), result.summary)
        Console().print(f"[dim]wrote {out_dir}/summary.json, decisions.jsonl, decisions.csv, "
                        f"votes.csv, report.html (run {result.run_id}; store {result.store})"
                        "[/dim]")
    for line in result.summary.warnings:  # on stderr, even with --json
        console.print(f"[bold yellow]warning: {line}[/bold yellow]")
    if fail_on_abstain_rate is not None:
        over = {n: j.failure_rate() for n, j in result.summary.per_judge.items()
                if j.failure_rate() > fail_on_abstain_rate}
        if over:
            worst = ", ".join(f"{n} {r:.0%}" for n, r in sorted(over.items()))
            console.print(f"[bold red]abstention rate above {fail_on_abstain_rate:g}: "
                          f"{worst}[/bold red]")
            raise typer.Exit(3)


def _fmt(x: object) -> str:
    if x is None:
        return "—"
    if isinstance(x, float):
        return f"{x:.3f}"
    return str(x)


def show_summary(console: Console, s: RunSummary) -> None:
    """Render the headline figures and the per-judge table."""
    from consensus.runner import summary_rows

    t = Table(title=f"{s.scenario} · {s.strategy}", show_header=False)
    for k, v in summary_rows(s):
        t.add_row(k, _fmt(v))
    t.add_row("actions", ", ".join(f"{a} {n}" for a, n in sorted(s.actions.items())))
    console.print(t)
    jt = Table(title="judges")
    jt.add_column("judge", no_wrap=True)
    parsed = any(j.parse_paths for j in s.per_judge.values())
    for col in ("agreement w/ consensus", "accuracy", "abstention", "mean latency (s)",
                *(("parsed strict/fallback/none",) if parsed else ())):
        jt.add_column(col, justify="right")
    rows = sorted(s.per_judge.items(), key=lambda kv: -(kv[1].accuracy or 0))
    for name, j in rows[:25]:
        p = j.parse_paths
        jt.add_row(name, _fmt(j.agreement_with_consensus), _fmt(j.accuracy),
                   _fmt(j.abstention_rate), _fmt(j.mean_latency_s),
                   *((f"{p.get('strict', 0)}/{p.get('fallback', 0)}/"
                      f"{p.get('unparseable', 0)}" if p else "—",) if parsed else ()))
    if len(rows) > 25:
        jt.caption = f"top 25 of {len(rows)} judges by accuracy; all in summary.json"
    console.print(jt)
    for name, why in s.disabled_judges.items():
        console.print(f"[yellow]judge {name} not run: {why}[/yellow]")
    if s.debate.get("rounds"):
        show_debate(console, s.debate)
    if s.recused:
        console.print("[dim]recused (own model family or model): "
                      + ", ".join(f"{j} {n}" for j, n in s.recused.items()) + "[/dim]")


def show_debate(console: Console, d: dict) -> None:
    """Convergence per round of a debate (see consensus.debate_metrics)."""
    t = Table(title="debate convergence (round 1 = the independent poll)")
    for col in ("round", "acc", "alpha", "n_eff", "unan.", "chg", "w→r", "r→w", "calls"):
        t.add_column(col, justify="right")
    for r in d["rounds"]:
        t.add_row(str(r["round"]), _fmt(r["accuracy"]), _fmt(r["krippendorff_alpha"]),
                  _fmt(r["effective_judges"]), _fmt(r["unanimous"]), str(r["changed"]),
                  str(r["wrong_to_right"]), str(r["right_to_wrong"]), str(r["calls"]))
    f, lone = d["flipped_from_round1"], d["lone_right"]
    t.caption = (f"decisions changed from round 1: {f['n']} ({f['fixed']} fixed, "
                 f"{f['broken']} broken); lone right answers kept {lone['kept']}, lost "
                 f"{lone['lost']}; stops: "
                 + ", ".join(f"{k} {n}" for k, n in d["stop_reasons"].items()))
    console.print(t)
