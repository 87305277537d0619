"""``consensus serve``: the Ray Serve application, started on a local or joined Ray cluster.

The starting process (the driver) reads and checks every file, starts each panel's judge hosts
once (long-lived actors every replica shares), fits a panel's learning strategy on its
``fit_on`` scenario, starts the metrics hub, and deploys the ingress: a Ray Serve deployment
with a FastAPI app (:mod:`consensus.service.app`), replicas autoscaled between
``replicas.min`` and ``replicas.max``.

Concurrency (see docs/service.md): a replica is one asyncio process whose requests wait on the
judges and the upstream, not on its CPU, so ``max_ongoing_requests`` is 256, not Serve's 5 (with
5, a sixth request queues in the proxy although the replica is idle), and the autoscaler aims at
``target_ongoing_requests`` (64) per replica. Judge hosts are async actors with
``max_concurrency`` 1000; they are spread over the nodes (``SPREAD``) so a lost node takes a
share of the panel, not all of it, and restart elsewhere (``max_restarts``).

Example (needs Ray)::

    svc = start_service(load_service(["scenarios/safety_smoke.yaml"]), port=8000)
    ...  # POST http://127.0.0.1:8000/v1/consensus
    svc.stop()
"""

from __future__ import annotations

import os
import time
import urllib.request
from dataclasses import dataclass, field, replace
from typing import Any

import ray
import structlog

from consensus.coordinator import Panel
from consensus.errors import ConfigError
from consensus.runner import ensure_ray, fit_beforehand
from consensus.service.auth import Tokens, require_tokens
from consensus.service.config import ServiceConfig
from consensus.service.metrics import start_hub

log = structlog.get_logger("consensus.service")

APP_NAME = "consensus"
READY_TIMEOUT_S = 120.0


def _deployment() -> Any:
    from ray import serve

    from consensus.service.app import build_app
    from consensus.service.runtime import Runtime

    @serve.deployment(name="ingress")
    @serve.ingress()
    class Ingress:
        """One replica: a Runtime and its FastAPI app."""

        def __init__(self, config: ServiceConfig, panels: dict[str, Any], hub: Any,
                     tokens: Tokens):
            from consensus.log import configure_logging

            configure_logging()
            self.runtime = Runtime(config, panels, hub)
            self.tokens = tokens

        def __serve_build_asgi_app__(self) -> Any:
            return build_app(self.runtime, self.tokens)

        def __del__(self) -> None:
            runtime = getattr(self, "runtime", None)
            if runtime is not None:
                runtime.close()

    return Ingress


@dataclass
class Service:
    """A running service: its URL, panels and hub (stop it with :meth:`stop`)."""

    url: str
    config: ServiceConfig
    panels: dict[str, Panel] = field(default_factory=dict)
    hub: Any = None
    name: str = APP_NAME

    def stop(self) -> None:
        """Delete the application, stop the judge hosts and the hub."""
        from ray import serve

        try:
            serve.delete(self.name)
        except Exception as exc:  # noqa: BLE001 - stopping goes on whatever Serve says
            log.warning("serve_delete_failed", error=str(exc)[:200])
        for p in self.panels.values():
            p.shutdown()
        self.panels.clear()
        if self.hub is not None:
            ray.kill(self.hub)
            self.hub = None


def start_panels(config: ServiceConfig, into: dict[str, Panel], *,
                 address: str | None = None) -> None:
    """Start each panel's judge hosts once (into ``into``, so a failure part-way leaves the
    started ones to stop), after fitting a learning strategy on its ``fit_on`` scenario."""
    for pname, served in config.panels.items():
        sc = served.scenario
        if sc.file.fit_on is not None:
            fitted, about = fit_beforehand(sc, address=address)
            served = replace(served, scenario=replace(sc, strategy=fitted))
            config.panels[pname] = served
            log.info("panel_fitted", panel=pname, on=about)
        panel = Panel.start(sc.judges, sc.base_dir, payloads=sc.payloads)
        into[pname] = panel
        if not panel.specs:
            raise ConfigError(f"no judge of panel {pname!r} can run: {panel.disabled}",
                              source=str(sc.source), field="panel")
        short = served.policy.check_panel(panel.size)
        if short:
            log.warning("quorum_unreachable", panel=pname, reason=short)


def haproxy_env() -> dict[str, str]:
    """The environment that turns on Ray Serve's HAProxy ingress: HTTP goes from HAProxy (C)
    straight to each replica's own uvicorn, not through Serve's Python proxy and a Ray call per
    request (benchmarks/README.md, Service: about 10 ms less per request, the Serve proxy's
    6 ms of CPU per request gone), with Serve's throughput settings (user code on the replica's
    own event loop). It must be set before Ray starts. HAProxy's files go to a private, short
    directory (it takes socket paths of at most 97 characters; Serve's default,
    /tmp/haproxy-serve, is one per machine) and its stats and metrics ports are free ones.
    The app cancels a request whose client left itself (``app.until_disconnect``): uvicorn
    only reports it. A replica that stops drains for 5 s, not Serve's 30 (time for HAProxy to
    take it out of its pool on this machine; Ctrl-C waits for it). HAProxy's stats and metrics
    ports listen on every interface (Ray's template), and on a cluster the replicas' own ports
    do too (HAProxy on other nodes must reach them), so the service then needs tokens."""
    import socket
    import tempfile

    folder = tempfile.mkdtemp(prefix="csh", dir="/tmp")
    ports = []
    for _ in range(2):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            ports.append(str(s.getsockname()[1]))
    return {"RAY_SERVE_ENABLE_HA_PROXY": "1", "RAY_SERVE_THROUGHPUT_OPTIMIZED": "1",
            "RAY_SERVE_HAPROXY_CONFIG_FILE_LOC": f"{folder}/haproxy.cfg",
            "RAY_SERVE_HAPROXY_SOCKET_PATH": f"{folder}/admin.sock",
            "RAY_SERVE_HAPROXY_METRICS_SOCKET_PATH": f"{folder}/metrics.sock",
            "RAY_SERVE_HAPROXY_SERVER_STATE_BASE": folder,
            "RAY_SERVE_HAPROXY_SERVER_STATE_FILE": f"{folder}/server-state",
            "RAY_SERVE_HAPROXY_STATS_PORT": ports[0], "RAY_SERVE_HAPROXY_METRICS_PORT": ports[1],
            "RAY_SERVE_DIRECT_INGRESS_MIN_DRAINING_PERIOD_S": "5"}


def start_service(config: ServiceConfig, *, address: str | None = None,
                  host: str = "127.0.0.1", port: int = 8000, tokens: Tokens | None = None,
                  name: str = APP_NAME, ready_timeout_s: float = READY_TIMEOUT_S) -> Service:
    """Start the service (see the module docstring) and wait until ``/readyz`` answers."""
    from ray import serve

    tokens = tokens or Tokens()
    if os.environ.get("RAY_SERVE_ENABLE_HA_PROXY") == "1":  # listens beyond loopback
        require_tokens("0.0.0.0", tokens, why="Serve's HAProxy ingress")
    require_tokens(host, tokens)
    ensure_ray(address)
    serve.start(http_options={"host": host, "port": port})
    service = Service(url=f"http://{host}:{port}", config=config, name=name)
    try:
        start_panels(config, service.panels, address=address)
        service.hub = start_hub(f"{name}-metrics")
        rep = config.replicas
        app = _deployment().options(
            max_ongoing_requests=rep.max_ongoing_requests,
            autoscaling_config={"min_replicas": rep.min, "max_replicas": rep.max,
                                "initial_replicas": rep.min,
                                "target_ongoing_requests": rep.target_ongoing_requests},
            ray_actor_options={"num_cpus": rep.num_cpus},
        ).bind(config, service.panels, service.hub, tokens)
        # one access-log line per request costs the replica ~1 ms; our metrics count requests
        serve.run(app, name=name, route_prefix="/",
                  logging_config={"enable_access_log": False, "log_level": "WARNING"})
        _wait_ready(service.url, ready_timeout_s)
    except BaseException:
        service.stop()
        raise
    log.info("service_ready", url=service.url, panels=list(config.panels),
             authenticated=bool(tokens))
    return service


def _wait_ready(url: str, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    last = ""
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"{url}/healthz", timeout=5) as resp:
                if resp.status == 200:
                    return
        except OSError as exc:
            last = str(exc)[:200]
        time.sleep(0.2)
    raise ConfigError(f"the service did not answer at {url} within {timeout_s:g}s ({last})",
                      field="--port")
