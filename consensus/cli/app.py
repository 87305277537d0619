"""The typer app and its entry point; configuration errors exit 2 without a traceback.

Example::

    consensus run scenarios/safety_smoke.yaml --out out/smoke
    consensus validate scenarios/*.yaml
"""

from __future__ import annotations

import sys

import typer

from consensus.errors import ConfigError

app = typer.Typer(
    name="consensus",
    help="Panels of independent judges vote on LLM outputs; strategies aggregate the votes.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


def _register() -> None:
    # Explicit, not by import side effect: each module exposes a plain function.
    from consensus.cli import compare, info, run, tune, validate

    app.command("run")(run.run)
    app.command("compare")(compare.compare)
    app.command("tune")(tune.tune)
    app.command("validate")(validate.validate)
    app.command("strategies")(info.strategies)
    app.command("judges")(info.judges)
    app.command("schema")(info.schema)


def main() -> None:
    """Console-script entry point."""
    _register()
    try:
        app()
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print("interrupted; decisions made so far are in the store", file=sys.stderr)
        sys.exit(130)


if __name__ == "__main__":
    main()
