"""Prometheus metrics of the service, one registry for all replicas.

Every ingress replica counts what it serves; a replica's counts alone would make ``/metrics``
answer differently per replica (Serve routes each scrape to any of them). So the registry lives
in one :class:`MetricsHub` actor per service, and replicas send it each request's events as one
fire-and-forget call (no request waits on it). ``/metrics`` returns the hub's exposition text.

The series (all prefixed ``consensus_``):

* ``requests_total{endpoint,status}``, ``request_latency_seconds{endpoint}``
* ``decisions_total{panel,decision}``, ``interventions_total{panel,action}``
* ``abstentions_total{panel,judge,reason}``, ``judge_latency_seconds{panel,judge}``
* ``quorum_misses_total{panel}``, ``fail_open_total{panel}``, ``input_blocks_total{panel}``
* ``upstream_errors_total{kind}``, ``upstream_tokens_total{panel,kind}``

``fail_open_total`` counts outcomes that delivered content although the panel missed its quorum;
the policy refuses every setting that would do so (``on_no_consensus`` must withhold), so it
stays 0: it is the alarm that says otherwise.
"""

from __future__ import annotations

from typing import Any

import ray

from consensus.service.schemas import decision_of
from consensus.types import Outcome

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
                   10.0, 30.0, 60.0)

Event = tuple[str, str, dict[str, str], float]
"""(kind: inc|observe, series name, labels, value)."""


def outcome_events(panel: str, outcome: Outcome) -> list[Event]:
    """The events one decision adds."""
    decision = decision_of(outcome)
    out: list[Event] = [("inc", "decisions_total", {"panel": panel, "decision": decision}, 1.0),
                        ("inc", "interventions_total", {"panel": panel,
                                                        "action": outcome.action}, 1.0)]
    if decision == "input_blocked":
        out.append(("inc", "input_blocks_total", {"panel": panel}, 1.0))
    missed = any(not d.quorum_met for d in outcome.decisions)
    if missed:
        out.append(("inc", "quorum_misses_total", {"panel": panel}, 1.0))
        if outcome.action in ("accept", "flag"):
            out.append(("inc", "fail_open_total", {"panel": panel}, 1.0))
    for v in outcome.votes:
        if v.label is None:
            out.append(("inc", "abstentions_total", {"panel": panel, "judge": v.judge,
                                                     "reason": v.abstain_kind or "unknown"}, 1.0))
        if v.abstain_kind != "recusal":
            out.append(("observe", "judge_latency_seconds", {"panel": panel, "judge": v.judge},
                        v.latency_s))
    return out


def _build(registry: Any) -> dict[str, Any]:
    from prometheus_client import Counter, Histogram

    def c(name: str, doc: str, labels: list[str]) -> Any:
        return Counter(f"consensus_{name.removesuffix('_total')}", doc, labels,
                       registry=registry)

    def h(name: str, doc: str, labels: list[str]) -> Any:
        return Histogram(f"consensus_{name}", doc, labels, buckets=LATENCY_BUCKETS,
                         registry=registry)

    return {
        "requests_total": c("requests_total", "HTTP requests answered.", ["endpoint", "status"]),
        "request_latency_seconds": h("request_latency_seconds", "Time to answer a request.",
                                     ["endpoint"]),
        "decisions_total": c("decisions_total", "Decisions, by outcome.", ["panel", "decision"]),
        "interventions_total": c("interventions_total", "Interventions taken, by action.",
                                 ["panel", "action"]),
        "abstentions_total": c("abstentions_total", "Judge abstentions, by reason.",
                               ["panel", "judge", "reason"]),
        "judge_latency_seconds": h("judge_latency_seconds", "Judge call latency.",
                                   ["panel", "judge"]),
        "quorum_misses_total": c("quorum_misses_total", "Ballots short of the quorum.",
                                 ["panel"]),
        "fail_open_total": c("fail_open_total", "Content delivered without a quorum.",
                             ["panel"]),
        "input_blocks_total": c("input_blocks_total", "Prompts blocked on input.", ["panel"]),
        "upstream_errors_total": c("upstream_errors_total", "Upstream model failures.",
                                   ["kind"]),
        "upstream_tokens_total": c("upstream_tokens_total", "Tokens the upstream billed.",
                                   ["panel", "kind"]),
    }


class Registry:
    """The series above in a private prometheus-client registry."""

    def __init__(self) -> None:
        from prometheus_client import CollectorRegistry

        self.registry = CollectorRegistry()
        self.series = _build(self.registry)
        for panel_less in ("fail_open_total",):  # present at 0 before anything happens
            self.series[panel_less].labels(panel="*")

    def apply(self, events: list[Event]) -> None:
        for kind, name, labels, value in events:
            metric = self.series.get(name)
            if metric is None:
                continue
            child = metric.labels(**labels)
            if kind == "inc":
                child.inc(value)
            else:
                child.observe(value)

    def text(self) -> bytes:
        from prometheus_client import generate_latest

        return bytes(generate_latest(self.registry))


@ray.remote(num_cpus=0, max_restarts=-1, max_task_retries=-1)
class MetricsHub:
    """The service's one registry (see the module docstring)."""

    def __init__(self) -> None:
        self.reg = Registry()

    def record(self, events: list[Event]) -> None:
        self.reg.apply(events)

    def exposition(self) -> bytes:
        return self.reg.text()


def start_hub(name: str) -> Any:
    """The hub named ``name``, started when absent."""
    return MetricsHub.options(  # type: ignore[attr-defined]
        name=name, get_if_exists=True).remote()
