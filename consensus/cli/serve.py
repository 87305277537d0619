"""``consensus serve``: the HTTP service on Ray Serve (see :mod:`consensus.service`)."""

from __future__ import annotations

import os
import shutil
import signal
import threading
from enum import Enum
from pathlib import Path
from typing import Annotated

import typer

from consensus.errors import ConfigError


class Ingress(str, Enum):
    """How HTTP reaches the replicas."""

    serve = "serve"
    haproxy = "haproxy"


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
    ingress: Annotated[Ingress, typer.Option(help="serve: Ray Serve's Python proxy; haproxy: "
                                                  "Serve's HAProxy ingress straight to the "
                                                  "replicas (about 10 ms and half the CPU "
                                                  "less per request; for a Ray this "
                                                  "command starts).")] = Ingress.serve,
) -> None:
    """Serve panels over HTTP: /v1/consensus, an OpenAI-compatible /v1/chat/completions
    guardrail proxy, /v1/panels, /healthz, /readyz, /metrics."""
    try:
        from consensus.service.auth import Tokens, require_tokens
        from consensus.service.config import load_service
        from consensus.service.serve import haproxy_env, start_service
    except ImportError as exc:
        raise ConfigError(f"the service needs the serve extra ({exc.name} is missing): "
                          "pip install 'consensus-panel[serve]'", field="serve") from None
    tokens = Tokens.load(env=tokens_env, file=tokens_file)
    # before Ray starts: a refusal costs nothing. With HAProxy, some ports listen on every
    # interface whatever --host says (serve.haproxy_env)
    require_tokens("0.0.0.0" if ingress is Ingress.haproxy else host, tokens,
                   why="--ingress haproxy" if ingress is Ingress.haproxy else None)
    config = load_service(files, store=store)
    made: dict[str, str] = {}
    if ingress is Ingress.haproxy:
        if address is not None:
            raise ConfigError("--ingress haproxy applies to a Ray this command starts; on a "
                              "cluster, start Ray with RAY_SERVE_ENABLE_HA_PROXY=1",
                              field="--ingress")
        made = haproxy_env()
        for name, value in made.items():  # before Ray starts: its processes inherit them
            os.environ.setdefault(name, value)
    # the handlers first: the service answers /readyz while start_service still finishes
    # (its last panels, the default route), and a Ctrl-C or SIGTERM in that window once exited
    # 130 (a supervisor that stops what it saw ready); now it stops cleanly once started
    stop = threading.Event()

    def ask_stop(*_: object) -> None:  # Ctrl-C or SIGTERM: a clean stop, exit 0
        stop.set()
        typer.echo("stopping (Ctrl-C again interrupts it)", err=True)
        signal.signal(signal.SIGINT, signal.default_int_handler)

    signal.signal(signal.SIGTERM, ask_stop)
    signal.signal(signal.SIGINT, ask_stop)
    try:
        svc = start_service(config, address=address, host=host, port=port, tokens=tokens)
        try:
            if not stop.is_set():
                typer.echo(f"consensus is serving {', '.join(config.panels)} at {svc.url} "
                           f"(OpenAPI: {svc.url}/docs); Ctrl-C stops it")
            stop.wait()
        finally:
            svc.stop()
    finally:
        if made:  # HAProxy's private directory (sockets, config, state)
            shutil.rmtree(made["RAY_SERVE_HAPROXY_SERVER_STATE_BASE"], ignore_errors=True)
