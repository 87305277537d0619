"""``consensus export``: preference pairs (DPO) or tables (CSV, JSON lines) from a store.

Example::

    consensus export out/smoke --format dpo --out prefs.jsonl --min-agreement 0.8
    consensus export --store consensus.sqlite --format csv --what votes --out votes.csv
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, cast

import typer
from rich.console import Console

from consensus.errors import ConfigError
from consensus.export import (
    PAIR_SOURCES,
    TABLES,
    ExportFormat,
    Filters,
    PairSource,
    Table,
    parse_time,
)
from consensus.export import (
    export as run_export,
)
from consensus.reports.source import open_source

FORMATS = ("dpo", "csv", "jsonl")


def _choice(value: str | None, allowed: tuple[str, ...], option: str) -> str | None:
    if value is None:
        return None
    v = value.strip().lower()
    if v not in allowed:
        raise ConfigError(f"{option} is one of {', '.join(allowed)}, got {value!r}",
                          field=option)
    return v


def export(
    target: Annotated[str | None, typer.Argument(
        help="A run folder, or a store (SQLite file or postgresql:// DSN); or use --store.",
        metavar="[RUN_DIR]")] = None,
    fmt: Annotated[str, typer.Option("--format", help="dpo (preference pairs, JSON lines), "
                                     "csv or jsonl (a table: see --what).")] = "dpo",
    out: Annotated[Path | None, typer.Option(help="File to write.")] = None,
    store: Annotated[str | None, typer.Option(help="The store (SQLite file or DSN).")] = None,
    run: Annotated[str | None, typer.Option("--run", help="Only this run.")] = None,
    since: Annotated[str | None, typer.Option(
        help="Only what was decided (or reviewed) at or after this ISO 8601 time (UTC when "
        "no zone is given).")] = None,
    until: Annotated[str | None, typer.Option(help="... and before this time.")] = None,
    min_agreement: Annotated[float | None, typer.Option(
        help="Only pairs, decisions and votes whose panel agreement is at least this (0-1); "
        "review pairs are kept.")] = None,
    source: Annotated[str | None, typer.Option(
        help="Only pairs from revision, pairwise or review (dpo only).")] = None,
    what: Annotated[str | None, typer.Option(
        help="The table of csv/jsonl: decisions (default), votes or metrics.")] = None,
    across_requests: Annotated[bool, typer.Option(
        "--across-requests/--within-requests",
        help="Also pair an accepted and a rejected answer to the same prompt in different "
        "requests of a run (dpo).")] = True,
    as_json: Annotated[bool, typer.Option("--json", help="Print what was written as JSON.")]
        = False,
) -> None:
    """Export preference pairs (--format dpo) or decisions, votes and run metrics (csv, jsonl).

    Exit codes: 0 written (also when no row passed the filters); 2 bad input.
    """
    fmt_ = cast(ExportFormat, _choice(fmt, FORMATS, "--format"))
    if out is None:
        raise ConfigError("name the file to write with --out", field="--out")
    if min_agreement is not None and not 0.0 <= min_agreement <= 1.0:
        raise ConfigError(f"--min-agreement is a share in [0, 1], got {min_agreement:g}",
                          field="--min-agreement")
    filters = Filters(
        run_id=run, since=parse_time(since, "--since") if since else None,
        until=parse_time(until, "--until") if until else None, min_agreement=min_agreement,
        source=cast(PairSource | None, _choice(source, PAIR_SOURCES, "--source")),
        pair_across_requests=across_requests)
    if filters.since is not None and filters.until is not None and filters.until <= filters.since:
        raise ConfigError("--until must be later than --since", field="--until")
    table = cast(Table | None, _choice(what, TABLES, "--what"))
    with open_source(target, store=store, option="RUN_DIR") as src:
        result = run_export(src, fmt=fmt_, out=out, filters=filters, what=table)
    if as_json:
        print(json.dumps({"path": str(result.path), "rows": result.rows,
                          "by_kind": result.by_source, "skipped": result.skipped}, indent=2))
        return
    console = Console(stderr=True)
    kinds = ", ".join(f"{k} {n}" for k, n in sorted(result.by_source.items()))
    noun = "preference pairs" if fmt_ == "dpo" else f"{table or 'decisions'} rows"
    console.print(f"wrote {result.rows} {noun}" + (f" ({kinds})" if kinds else "")
                  + f" to {result.path}")
    for why, n in sorted(result.skipped.items()):
        console.print(f"[dim]not written: {n} ({why})[/dim]")
