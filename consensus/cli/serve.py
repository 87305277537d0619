"""``consensus serve``: the HTTP service on Ray Serve (see :mod:`consensus.service`)."""

from __future__ import annotations

import signal
import threading
from pathlib import Path
from typing import Annotated

import typer

from consensus.errors import ConfigError


def serve(
    files: Annotated[list[Path], typer.Argument(help="Scenario YAML files (a panel each) or one "
                                                "service YAML.")],
    host: Annotated[str, typer.Option(help="Address to bind; anything but loopback needs "
                                           "tokens.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535, help="HTTP port.")] = 8000,
    address: Annotated[str | None, typer.Option(help="Ray cluster to join: auto or host:port "
                                                     "(default: a local Ray).")] = None,
    store: Annotated[str | None, typer.Option(help="SQLite file or postgresql:// DSN "
                                                   "(default: the user data directory).")] = None,
    tokens_env: Annotated[str, typer.Option(help="Environment variable holding the bearer "
                                                 "tokens (name:token, comma-separated).")]
    = "CONSENSUS_API_TOKENS",
    tokens_file: Annotated[Path | None, typer.Option(help="File of bearer tokens, one "
                                                          "name:token per line.")] = None,
) -> None:
    """Serve panels over HTTP: /v1/consensus, an OpenAI-compatible /v1/chat/completions
    guardrail proxy, /v1/panels, /healthz, /readyz, /metrics."""
    try:
        from consensus.service.auth import Tokens, require_tokens
        from consensus.service.config import load_service
        from consensus.service.serve import start_service
    except ImportError as exc:
        raise ConfigError(f"the service needs the serve extra ({exc.name} is missing): "
                          "pip install 'consensus-panel[serve]'", field="serve") from None
    tokens = Tokens.load(env=tokens_env, file=tokens_file)
    require_tokens(host, tokens)  # before Ray starts: a refusal costs nothing
    config = load_service(files, store=store)
    svc = start_service(config, address=address, host=host, port=port, tokens=tokens)
    typer.echo(f"consensus is serving {', '.join(config.panels)} at {svc.url} "
               f"(OpenAPI: {svc.url}/docs); Ctrl-C stops it")
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        stop.wait()
    except KeyboardInterrupt:
        pass
    finally:
        svc.stop()
