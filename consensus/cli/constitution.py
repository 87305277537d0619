"""``consensus constitution lint|diff``: the constitution as a living document.

Examples::

    consensus constitution lint scenarios/constitutions/default.yaml --scenario scenarios/safety_smoke.yaml
    consensus constitution diff old.yaml new.yaml --on scenarios/safety_smoke.yaml
    consensus constitution diff old.yaml new.yaml --on out/safety_smoke --json

``lint`` exits 1 when it finds errors (with ``--strict``, warnings too), 0 otherwise; a file
that is not a constitution at all exits 2, as everywhere.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from consensus.log import configure_logging

if TYPE_CHECKING:
    from consensus.constitution_diff import DiffReport

app = typer.Typer(help="Lint a constitution, or show what a change to it would do.",
                  no_args_is_help=True)


@app.command("lint")
def lint(
    files: Annotated[list[Path], typer.Argument(help="Constitution YAML files.")],
    corpus: Annotated[list[Path] | None, typer.Option(
        help="Texts to test the checks on: JSONL requests, JSONL {\"text\": ...} or plain text "
             "(one per line); repeatable. Default: the safety smoke dataset and the example "
             "files beside the constitution (*_examples.jsonl in its folder).")] = None,
    scenario: Annotated[list[Path] | None, typer.Option(
        help="Scenarios whose judges read the constitution (for unused principles); "
             "repeatable.")] = None,
    no_probe: Annotated[bool, typer.Option(
        "--no-probe", help="Static checks only: no timed regex probes, no corpus.")] = False,
    strict: Annotated[bool, typer.Option("--strict", help="Warnings fail too (exit 1).")]
        = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the findings as JSON.")] = False,
) -> None:
    """Find duplicate ids, bad or risky patterns, dead or overbroad checks, conflicting and
    unused principles; each finding with file, line and field path."""
    from consensus.lint_corpus import load_corpus
    from consensus.lint_file import lint_file

    def texts(f: Path) -> list[Any]:
        if no_probe:
            return []
        return load_corpus(corpus or [], constitution=None if corpus else f)

    reports = [lint_file(f, scenarios=scenario or [], probe=not no_probe, texts=texts(f))
               for f in files]
    if as_json:
        print(json.dumps([r.as_json() for r in reports], indent=2))
    else:
        for r in reports:
            for f in r.findings:
                typer.echo(f.text())
            warnings = len(r.findings) - r.errors
            typer.echo(f"{r.file}: {r.errors} error(s), {warnings} warning(s) "
                       f"({r.n_principles} principles, {r.n_texts} corpus texts)")
    failed = any(r.errors or (strict and r.findings) for r in reports)
    if failed:
        raise typer.Exit(1)


@app.command("diff")
def diff(
    old: Annotated[Path, typer.Argument(help="The constitution in force.")],
    new: Annotated[Path, typer.Argument(help="The changed constitution.")],
    on: Annotated[Path, typer.Option(
        "--on", help="A scenario YAML (its panel runs in-process) or a run's output folder "
                     "(its votes are replayed).")],
    judge: Annotated[list[str] | None, typer.Option(
        help="Rules judge(s) to re-run (default: those whose constitution is OLD).")] = None,
    scenario: Annotated[Path | None, typer.Option(
        help="With a run folder: the run's scenario, for the texts of its requests (default "
             "scenarios/<name>.yaml).")] = None,
    limit: Annotated[int | None, typer.Option(min=1, help="Only the first N requests.")] = None,
    show: Annotated[int, typer.Option(min=0, help="Flips listed (all are in --json).")] = 30,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
    log_level: Annotated[str, typer.Option(help="debug, info, warning, error.")] = "warning",
) -> None:
    """Decide the requests under OLD and under NEW: the decisions that flip, per principle, and
    the change in safety score, over-refusal, false-block rate and accuracy."""
    configure_logging(log_level)
    from consensus.constitution_diff import diff_constitutions

    report = diff_constitutions(old, new, on, judges=judge or [], scenario=scenario, limit=limit)
    if as_json:
        print(report.model_dump_json(indent=2))
    else:
        show_diff(report, show)


def _num(x: float | None) -> str:
    return "—" if x is None else f"{x:.3f}"


def show_diff(r: DiffReport, show: int = 30) -> None:
    """Print a diff report for people."""
    from rich.console import Console
    from rich.table import Table

    console = Console()
    console.print(f"[bold]{r.old} → {r.new}[/bold] on {r.on} ({r.mode}, {r.n_requests} "
                  f"requests); re-run: {', '.join(r.rerun)}; replayed: "
                  f"{', '.join(r.replayed) or 'none'}")
    changes = [f"{what} {', '.join(ids)}" for what, ids in (
        ("added", r.principles_added), ("removed", r.principles_removed),
        ("changed", r.principles_changed)) if ids]
    console.print("principles: " + ("; ".join(changes) or "no change"))
    console.print(f"[bold]{len(r.flips)} of {r.n_requests} decisions flip[/bold]")
    if r.flips:
        t = Table(show_header=True)
        for col in ("request", "category", "before", "after", "gold", "principles"):
            t.add_column(col)
        for f in r.flips[:show]:
            gold = ", ".join(f"{k}={v}" for k, v in (f.gold or {}).items())
            t.add_row(f.request_id, f.category or "", f.before, f.after, gold,
                      " ".join(f.principles))
        if len(r.flips) > show:
            t.caption = f"first {show} of {len(r.flips)}; all in --json"
        console.print(t)
    moved = [p for p in r.per_principle if p.flips or p.hits_before != p.hits_after]
    if moved:
        t = Table(title="per principle")
        for col in ("principle", "flips", "newly withheld", "newly delivered", "hits before",
                    "hits after"):
            t.add_column(col, justify="left" if col == "principle" else "right")
        for p in moved:
            t.add_row(p.principle, str(p.flips), str(p.newly_withheld), str(p.newly_delivered),
                      str(p.hits_before), str(p.hits_after))
        console.print(t)
    t = Table(title="figures")
    for col in ("figure", "OLD", "NEW", "change"):
        t.add_column(col, justify="left" if col == "figure" else "right")
    for k, b in r.before.items():
        a = r.after.get(k)
        delta = "—" if a is None or b is None else f"{a - b:+.3f}"
        t.add_row(k.replace("_", " "), _num(b), _num(a), delta)
    console.print(t)
    for note in r.notes:
        console.print(f"[dim]note: {note}[/dim]")
