"""The typer app and its entry point; configuration errors exit 2 without a traceback.

Example::

    consensus run scenarios/safety_smoke.yaml --out out/smoke
    consensus validate scenarios/*.yaml
"""

from __future__ import annotations

import os
import sys

import typer
from pydantic import ValidationError

from consensus.errors import ConfigError
from consensus.redact import register_secrets_from_env

app = typer.Typer(
    name="consensus",
    help="Panels of independent judges vote on LLM outputs; strategies aggregate the votes.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


INTERRUPTED = 130
"""Exit code of a run stopped by Ctrl-C (128 + SIGINT)."""


def _register() -> None:
    # Explicit, not by import side effect: each module exposes a plain function.
    if app.registered_commands:
        return
    from consensus.cli import (
        audit,
        compare,
        constitution,
        info,
        run,
        serve,
        train,
        tune,
        validate,
    )

    app.command("run")(run.run)
    app.command("compare")(compare.compare)
    app.command("tune")(tune.tune)
    app.command("audit")(audit.audit)
    app.command("validate")(validate.validate)
    app.command("serve")(serve.serve)
    app.add_typer(constitution.app, name="constitution")
    app.command("strategies")(info.strategies)
    app.command("judges")(info.judges)
    app.command("schema")(info.schema)
    app.command("train-harm")(train.train_harm)
    from consensus.cli import export, report

    app.command("export")(export.export)
    app.command("report")(report.report)
    from consensus.cli import review

    app.command("review")(review.review)


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point: exit 0 on success, 2 for bad input or configuration (with
    the file, field and problem, never a traceback), 130 when interrupted, 1 otherwise."""
    _register()
    register_secrets_from_env()  # the edge: from here on, their values are masked everywhere
    try:
        code = app(args=argv, standalone_mode=False)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
    except ValidationError as exc:  # a model built from user input outside the loaders
        err = exc.errors()[0]
        where = ".".join(str(p) for p in err["loc"])
        print(f"error: {where + ': ' if where else ''}{err['msg']}", file=sys.stderr)
        sys.exit(2)
    except (typer.Abort, KeyboardInterrupt):
        code = INTERRUPTED
    except typer.TyperException as exc:  # usage errors: unknown option, bad value, ...
        message = getattr(exc, "format_message", None)
        if type(exc).__name__ == "NoArgsIsHelpError" or not callable(message):
            show = getattr(exc, "show", None)
            if callable(show):
                show()
        else:
            ctx = getattr(exc, "ctx", None)
            where = (f"consensus {ctx.info_name} --help" if ctx is not None and ctx.parent
                     is not None else "consensus --help")
            print(f"error: {message()} (see `{where}`)", file=sys.stderr)
        sys.exit(getattr(exc, "exit_code", 2))
    except RecursionError:
        print("error: the input is nested too deeply", file=sys.stderr)
        sys.exit(2)
    except Exception as exc:
        if os.environ.get("CONSENSUS_DEBUG"):
            raise
        print(f"error: internal error: {type(exc).__name__}: {str(exc)[:500]} (set "
              "CONSENSUS_DEBUG=1 for the traceback, and please report it)", file=sys.stderr)
        sys.exit(1)
    if code == INTERRUPTED:  # typer turns Ctrl-C into this exit code
        print("interrupted; decisions made so far are in the store and in decisions.jsonl, "
              "and summary.json says status interrupted", file=sys.stderr)
    sys.exit(code if isinstance(code, int) else 0)


if __name__ == "__main__":
    main()
