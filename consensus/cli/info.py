"""``consensus strategies | judges | schema``: what is available, and the JSON Schemas."""

from __future__ import annotations

import json
from typing import Annotated, Literal

import typer

from judges.registry import judge_kinds
from strategies.base import learns
from strategies.registry import build_strategy, strategy_class, strategy_table


def strategies() -> None:
    """List the registered strategies with their one-line description."""
    names = list(strategy_table())
    width = max(map(len, names))
    for name in names:
        doc = (strategy_class(name).__doc__ or "").strip().splitlines()[0].replace("``", "`")
        learner = "learns" if learns(build_strategy(name)) else ""  # with default parameters
        typer.echo(f"{name:{width}s}  {learner:6s}  {doc}")


def judges() -> None:
    """List the judge kinds and how they are hosted."""
    for kind, jk in judge_kinds().items():
        host = "shared async actor" if jk.shared_host else "own actor"
        typer.echo(f"{kind:11s} {jk.module}.{jk.judge} ({host})")


def schema(
    what: Annotated[Literal["scenario", "constitution"], typer.Argument()] = "scenario",
) -> None:
    """Print the JSON Schema of a scenario or constitution file (for editor completion)."""
    if what == "scenario":
        from consensus.scenario import scenario_json_schema

        typer.echo(json.dumps(scenario_json_schema(), indent=2))
    else:
        from consensus.constitution import constitution_json_schema

        typer.echo(json.dumps(constitution_json_schema(), indent=2))
