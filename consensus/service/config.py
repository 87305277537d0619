"""The service's configuration: which panels it serves, the upstream model, limits, access.

``consensus serve`` takes either scenario files (each one a panel named after the scenario, with
its judges, strategy, policy and generator) or one service file:

.. code-block:: yaml

    panels:                              # name -> scenario file (its panel, strategy, policy)
      smoke: scenarios/safety_smoke.yaml
      xstest: scenarios/xstest.yaml
    default_panel: smoke
    policies:                            # extra policies a request may name (``policy``)
      strict: {quorum: 1.0, on_no_consensus: block}
    upstream: {model: openai/gpt-4o-mini, api_key_env: OPENAI_API_KEY}
    access:                              # token name -> what it may choose (default: all)
      team-a: {panels: [smoke], policies: [default]}
    limits: {max_body_bytes: 1048576, max_candidates: 16}
    replicas: {min: 1, max: 4, max_ongoing_requests: 256, target_ongoing_requests: 64}

The service file holds no secret: bearer tokens come from an environment variable or a file
(:mod:`consensus.service.auth`), provider keys from the environment named by ``api_key_env``.
Files are read here, in the process that starts the service; replicas get what was read.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import structlog
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from consensus.errors import ConfigError
from consensus.files import read_yaml
from consensus.generator import GeneratorSpec
from consensus.policy import Policy
from consensus.scenario import Scenario, load_scenario
from judges.registry import config_error_from
from strategies.base import learns

log = structlog.get_logger("consensus.service")

DEFAULT_POLICY = "default"
"""The name a request uses for its panel's own policy."""


class Limits(BaseModel):
    """What one request may carry."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    max_body_bytes: int = Field(default=1 << 20, ge=1024, le=64 << 20,
                                description="Largest request body, in bytes (413 above).")
    max_candidates: int = Field(default=16, ge=1, le=256,
                                description="Most candidates in one /v1/consensus request.")
    max_text_chars: int = Field(default=200_000, ge=100,
                                description="Longest prompt or candidate text.")
    request_timeout_s: float = Field(default=120.0, gt=0, le=3600,
                                     description="Bound on one request, upstream included.")


class Replicas(BaseModel):
    """Ray Serve settings of the ingress (see docs/service.md for why these values)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    min: int = Field(default=1, ge=1, le=64, description="Fewest ingress replicas.")
    max: int = Field(default=2, ge=1, le=256, description="Most ingress replicas.")
    max_ongoing_requests: int = Field(
        default=256, ge=1, le=10_000,
        description="Requests one replica takes at once (Serve's default, 5, starves an "
                    "I/O-bound async ingress: its requests mostly wait on judges).")
    target_ongoing_requests: float = Field(
        default=64, gt=0, description="Autoscaling target of ongoing requests per replica.")
    num_cpus: float = Field(default=0.25, ge=0, le=64,
                            description="CPUs a replica reserves (mostly waits on I/O).")

    @model_validator(mode="after")
    def _bounds(self) -> Replicas:
        if self.max < self.min:
            raise ValueError(f"replicas.max ({self.max}) is below replicas.min ({self.min})")
        if self.target_ongoing_requests > self.max_ongoing_requests:
            raise ValueError("replicas.target_ongoing_requests is above max_ongoing_requests: "
                             "the autoscaler could never reach its target")
        return self


class Access(BaseModel):
    """What a token may choose (names of panels and policies; absent: all)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    panels: tuple[str, ...] | None = None
    policies: tuple[str, ...] | None = None


class PanelEntry(BaseModel):
    """A panel of the service: a scenario file, optionally with another strategy or policy."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    scenario: str = Field(min_length=1, description="Scenario YAML (its panel is served).")
    strategy: str | dict[str, Any] | None = Field(default=None, description="Override.")
    policy: Policy | None = Field(default=None, description="Override of the scenario's policy.")


class ServiceFile(BaseModel):
    """A service YAML file (see the module docstring)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    panels: dict[str, str | PanelEntry] = Field(min_length=1)
    default_panel: str | None = None
    policies: dict[str, Policy] = Field(default_factory=dict)
    upstream: GeneratorSpec | None = Field(
        default=None, description="The model /v1/chat/completions forwards to (litellm string).")
    access: dict[str, Access] = Field(default_factory=dict)
    limits: Limits = Field(default_factory=Limits)
    replicas: Replicas = Field(default_factory=Replicas)
    store: str | None = Field(default=None, description="SQLite file or postgresql:// DSN.")


@dataclass(frozen=True)
class ServedPanel:
    """One panel as the replicas need it (its scenario without the dataset's requests)."""

    name: str
    scenario: Scenario
    run_id: str

    @property
    def policy(self) -> Policy:
        return self.scenario.file.policy


@dataclass(frozen=True)
class ServiceConfig:
    """Everything a replica needs, read and checked in the starting process."""

    panels: dict[str, ServedPanel]
    default_panel: str
    policies: dict[str, Policy] = field(default_factory=dict)
    upstream: GeneratorSpec | None = None
    access: dict[str, Access] = field(default_factory=dict)
    limits: Limits = field(default_factory=Limits)
    replicas: Replicas = field(default_factory=Replicas)
    store: str | None = None
    source: str = ""

    def policy_names(self) -> list[str]:
        return [DEFAULT_POLICY, *self.policies]


def _panel(name: str, entry: str | PanelEntry, base: Path, src: str, where: str) -> ServedPanel:
    spec = entry if isinstance(entry, PanelEntry) else PanelEntry(scenario=entry)
    path = Path(spec.scenario)
    scenario = load_scenario(path if path.is_absolute() else base / path,
                             strategy=spec.strategy)
    if spec.policy is not None:
        scenario = Scenario(scenario.source, scenario.file.model_copy(
            update={"policy": spec.policy}), scenario.judges, scenario.requests,
            scenario.strategy, scenario.payloads, scenario.constitution_files)
    if learns(scenario.strategy) and scenario.file.fit_on is None:
        raise ConfigError(
            f"strategy {scenario.strategy.name!r} learns from a batch of requests; a service "
            "decides one request at a time, so give the scenario `fit_on:` (a labelled "
            "scenario to fit on at start) or serve a strategy that does not learn",
            source=src, field=f"{where}.strategy")
    # replicas get the panel, not the dataset (it can be large, and is not served)
    return ServedPanel(name=name, scenario=replace(scenario, requests=()),
                       run_id=f"service-{name}")


def _warn_slow_hosts(panel: ServedPanel, request_timeout_s: float) -> None:
    """Warn when the coordinator may wait longer for a judge's host than a request may last:
    such requests fail closed at ``request_timeout_s`` instead of getting the judge's
    abstention. An LLM judge on a local api_base queues for a slot, so its wait is timeout_s +
    queue_timeout_s (300 s by default)."""
    from consensus.coordinator import GRACE_S

    slow = {j.name: j.max_wait_s() + GRACE_S for j in panel.scenario.judges
            if j.max_wait_s() + GRACE_S > request_timeout_s}
    if slow:
        log.warning("host_wait_over_request_timeout", panel=panel.name,
                    request_timeout_s=request_timeout_s, judges=slow,
                    hint="lower queue_timeout_s / timeout_s, or raise limits.request_timeout_s")


def load_service(paths: Sequence[str | Path], *, store: str | None = None) -> ServiceConfig:
    """Read scenario files (one panel each) or one service file into a :class:`ServiceConfig`.

    A file is a service file when it has ``panels:`` as a mapping; errors name the file and the
    field path (exit code 2 in the CLI).
    """
    if not paths:
        raise ConfigError("name a service YAML or at least one scenario YAML", field="FILES")
    docs = [(Path(p), read_yaml(Path(p))) for p in paths]
    services = [(p, d) for p, d in docs if isinstance(d, dict) and isinstance(d.get("panels"), dict)]
    if services and len(docs) > 1:
        raise ConfigError("a service file names its panels itself; give it alone",
                          source=str(services[0][0]), field="panels")
    if services:
        path, data = services[0]
        src = str(path)
        try:
            doc = ServiceFile.model_validate(data)
        except ValidationError as exc:
            raise config_error_from(exc, source=src, prefix="", data=data) from None
        panels = {name: _panel(name, entry, path.parent, src, f"panels.{name}")
                  for name, entry in doc.panels.items()}
        default = doc.default_panel or next(iter(panels))
        if default not in panels:
            raise ConfigError(f"unknown panel {default!r}; the service has "
                              f"{', '.join(panels)}", source=src, field="default_panel")
        if DEFAULT_POLICY in doc.policies:
            raise ConfigError(f"{DEFAULT_POLICY!r} names each panel's own policy; pick another "
                              "name", source=src, field=f"policies.{DEFAULT_POLICY}")
        known_policies = [DEFAULT_POLICY, *doc.policies]
        for token, acc in doc.access.items():
            for kind, one, allowed, known in (
                    ("panels", "panel", acc.panels, list(panels)),
                    ("policies", "policy", acc.policies, known_policies)):
                for n in allowed or ():
                    if n not in known:
                        raise ConfigError(f"unknown {one} {n!r}; known: "
                                          f"{', '.join(known)}", source=src,
                                          field=f"access.{token}.{kind}")
        for pname, pol in doc.policies.items():
            for panel in panels.values():
                short = pol.check_panel(len(panel.scenario.judges))
                if short:
                    raise ConfigError(f"panel {panel.name!r}: {short}", source=src,
                                      field=f"policies.{pname}.quorum")
        for panel in panels.values():
            _warn_slow_hosts(panel, doc.limits.request_timeout_s)
        return ServiceConfig(panels=panels, default_panel=default, policies=dict(doc.policies),
                             upstream=doc.upstream, access=dict(doc.access), limits=doc.limits,
                             replicas=doc.replicas, store=store or doc.store, source=src)
    panels = {}
    for path, _ in docs:
        scenario_panel = _panel("", str(path.resolve()), Path("/"), str(path), "panel")
        name = scenario_panel.scenario.name
        if name in panels:
            raise ConfigError(f"two scenarios are named {name!r}", source=str(path), field="name")
        panels[name] = replace(scenario_panel, name=name, run_id=f"service-{name}")
    first = next(iter(panels.values()))
    for panel in panels.values():
        _warn_slow_hosts(panel, Limits().request_timeout_s)
    return ServiceConfig(panels=panels, default_panel=first.name,
                         upstream=first.scenario.file.generator, store=store,
                         source=str(docs[0][0]))
