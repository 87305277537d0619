"""Fault tolerance of the service on a multi-node Ray cluster (three nodes on one machine).

One module-scoped cluster (``ray.cluster_utils.Cluster``: a head and two worker nodes of 2 CPUs
each, on loopback), one PostgreSQL server (the store a service on many nodes shares; SQLite in
the module's folder when no server binaries are installed), one loopback LLM server (the
judges' provider and the upstream) and one running service: a panel of five LLM judges, each on
its own host actor (spread over the nodes), quorum 4, so a request that loses two judges fails
closed. The tests run in file order and share the cluster: the node lost in the second test
stays lost.

An LLM judge on a local ``api_base`` may queue for a slot, so the coordinator waits for its host
``timeout_s + queue_timeout_s`` (+ 2 s): with the default ``queue_timeout_s`` (300 s) a judge
whose actor died would hold its request for minutes. The judges here queue at most 3 s.

The cluster keeps its files (and the ``ray_current_cluster`` address file every Cluster writes)
under a ``RAY_TMPDIR`` of its own, so a ``ray.init()`` of another process on this machine never
finds it and joins it.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from consensus.store import open_store
from tests.loopback import loopback
from tests.service_support import free_port, llm_panel_scenario, write_yaml

pytestmark = pytest.mark.ray

PANEL = "faults"
RUN_ID = f"service-{PANEL}"
JUDGES = 5
QUORUM = 4
JUDGE_TIMEOUT_S = 5.0
QUEUE_TIMEOUT_S = 3.0
HANG_TIMEOUT_S = 2.0
"""The timeout of j4 alone, the judge whose model hangs in ``test_a_hanging_judge_...``."""
UPSTREAM_TIMEOUT_S = 3.0
JUDGE_BOUND_S = JUDGE_TIMEOUT_S + QUEUE_TIMEOUT_S + 2.0
"""The longest the coordinator waits for a judge's host (its grace period is 2 s)."""
FAIL_CLOSED = frozenset({"block", "no_consensus"})


# ------------------------------------------------------------------ the client
@dataclass
class Answer:
    """One request as the client saw it: its last response and how many attempts it took."""

    id: str
    status: int
    body: dict[str, Any]
    attempts: int
    elapsed_s: float


class RetryingClient:
    """Posts a body, retrying transport errors and 5xx answers with the SAME body (so the same
    request id), with exponential backoff: what a client of an idempotent service does."""

    def __init__(self, url: str, *, attempts: int = 20, first_backoff_s: float = 0.25,
                 max_backoff_s: float = 4.0, timeout_s: float = 60.0):
        self.http = httpx.Client(base_url=url, timeout=timeout_s,
                                 limits=httpx.Limits(max_connections=64))
        self.attempts, self.first, self.cap = attempts, first_backoff_s, max_backoff_s

    def post(self, path: str, body: dict[str, Any]) -> Answer:
        start = time.monotonic()
        status, data = 0, {}
        for attempt in range(1, self.attempts + 1):
            try:
                r = self.http.post(path, json=body)
                status, data = r.status_code, r.json()
                if status < 500:
                    return Answer(body.get("id", ""), status, data, attempt,
                                  time.monotonic() - start)
            except (httpx.TransportError, ValueError) as exc:  # ValueError: a body not JSON
                status, data = 0, {"transport_error": type(exc).__name__}
            if attempt < self.attempts:
                time.sleep(min(self.first * 2 ** (attempt - 1), self.cap))
        return Answer(body.get("id", ""), status, data, self.attempts, time.monotonic() - start)

    def close(self) -> None:
        self.http.close()


# ------------------------------------------------------------------ fixtures
@pytest.fixture(scope="module")
def cluster() -> Iterator[Any]:
    """Head + two workers, 2 CPUs each, the driver connected; all stopped after the module."""
    import ray
    from ray.cluster_utils import Cluster

    root = tempfile.mkdtemp(prefix="rayft-", dir="/tmp")  # short: socket paths have a limit
    saved = {k: os.environ.get(k) for k in ("RAY_TMPDIR", "RAY_USAGE_STATS_ENABLED")}
    os.environ["RAY_TMPDIR"] = root
    os.environ["RAY_USAGE_STATS_ENABLED"] = "0"
    c = Cluster(initialize_head=True, head_node_args={"num_cpus": 2, "include_dashboard": False})
    try:
        for _ in range(2):
            c.add_node(num_cpus=2)
        c.wait_for_nodes()
        ray.init(address=c.address, logging_level=logging.ERROR)
        yield c
    finally:
        ray.shutdown()
        c.shutdown()
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="module")
def store_target(tmp_path_factory) -> Iterator[str]:
    """A PostgreSQL database when server binaries exist (one store for every node), else an
    SQLite file in the module's folder (nodes on one machine share it too)."""
    from tests.pg_support import Server, server_bin

    bindir = server_bin()
    if bindir is None:
        yield str(tmp_path_factory.mktemp("faults-store") / "service.sqlite")
        return
    root = Path(tempfile.mkdtemp(prefix="consensus-pg-"))
    server = Server(bindir, root)
    try:
        server.start()
        yield server.new_database()
    finally:
        server.stop()
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="module")
def srv():
    with loopback() as s:
        s.script["hang"] = "valid"  # j4's model: it hangs only in the test that says so
        yield s


@pytest.fixture(scope="module")
def service(cluster, srv, store_target, tmp_path_factory):
    """The service: five LLM judges on five host actors, quorum 4, the parrot upstream."""
    from consensus.service.config import load_service
    from consensus.service.serve import start_service

    folder = tmp_path_factory.mktemp("faults")
    path = llm_panel_scenario(folder, srv.base_url, name=PANEL, judges=JUDGES,
                              timeout_s=JUDGE_TIMEOUT_S, hosts=True,
                              policy={"quorum": QUORUM})
    doc = yaml.safe_load(path.read_text())
    for judge in doc["panel"]:
        judge["queue_timeout_s"] = QUEUE_TIMEOUT_S
    doc["panel"][4].update(model="openai/hang", timeout_s=HANG_TIMEOUT_S)
    write_yaml(path, doc)
    cfg = write_yaml(folder / "service.yaml", {
        "panels": {PANEL: str(path)},
        "upstream": {"model": "openai/parrot", "api_base": srv.base_url,
                     "timeout_s": UPSTREAM_TIMEOUT_S, "retries": 0},
        "limits": {"request_timeout_s": 60},
        "replicas": {"min": 1, "max": 1},
        "store": store_target,
    })
    started = time.monotonic()
    svc = start_service(load_service([cfg]), host="127.0.0.1", port=free_port(),
                        name="faults")
    print(f"\n[faults] store={store_target.split('://')[0] if '://' in store_target else 'sqlite'}"
          f" service started in {time.monotonic() - started:.1f}s")
    try:
        yield svc
    finally:
        svc.stop()


@pytest.fixture(scope="module")
def client(service) -> Iterator[RetryingClient]:
    c = RetryingClient(service.url)
    yield c
    c.close()


@pytest.fixture
def store(store_target):
    s = open_store(store_target)
    yield s
    s.close()


# ------------------------------------------------------------------ helpers
def actor_info(handle: Any) -> dict[str, Any]:
    """The GCS's record of an actor (state, node, restarts); works without the dashboard."""
    import ray

    return ray._private.state.actors(actor_id=handle._actor_id.hex())


def node_of_host(service: Any) -> dict[str, str]:
    """Host name -> the node id its actor runs on."""
    return {h: actor_info(a)["Address"]["NodeID"] for h, a in service.panels[PANEL].hosts.items()}


def ingress_nodes() -> list[str]:
    import ray

    return [a["Address"]["NodeID"] for a in ray._private.state.actors().values()
            if a["ActorClassName"].startswith("ServeReplica:faults") and a["State"] == "ALIVE"]


def judge_for_host(service: Any, host: str) -> str:
    return next(j for j, h in service.panels[PANEL].routes.items() if h == host)


def votes_by_judge(body: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {v["judge"]: v for v in body["votes"]}


def ask(client: RetryingClient, rid: str, text: str = "Hello there!") -> Answer:
    return client.post("/v1/consensus", {"id": rid, "prompt": "Say hi", "candidates": [text]})


# ------------------------------------------------------------------ tests
def test_judge_hosts_are_spread_over_the_nodes(cluster, service, client):
    nodes = node_of_host(service)
    live = {n.node_id for n in cluster.list_all_nodes()}
    print(f"[faults] judge hosts per node: {sorted(Counter(nodes.values()).values())}; "
          f"ingress on {'head' if ingress_nodes() == [cluster.head_node.node_id] else 'a worker'}")
    assert set(nodes.values()) <= live
    assert len(set(nodes.values())) >= 2, nodes
    first = ask(client, "spread-1")  # the panel answers with every judge
    assert first.status == 200 and first.body["decision"] == "pass", first.body
    assert all(v["label"] == "accept" for v in first.body["votes"]), first.body["votes"]


def test_a_worker_node_killed_mid_run_loses_and_doubles_nothing(cluster, service, client,
                                                                 srv, store):
    """200 requests from 16 clients; after ~60 answers, a worker holding judge hosts is
    removed (the one with the ingress replica if it holds one: the harder case, requests in
    flight are lost and retried; else the one with the most hosts). Every id ends with a
    recorded decision, none is recorded twice."""
    total, kill_after = 200, 60
    hosts = node_of_host(service)
    per_node = Counter(hosts.values())
    ingress = set(ingress_nodes())
    victim = max((n for n in cluster.worker_nodes if n.node_id in per_node),
                 key=lambda n: (n.node_id in ingress, per_node[n.node_id]))
    lost_hosts = {h for h, n in hosts.items() if n == victim.node_id}
    ingress_lost = victim.node_id in ingress
    before = store.count_decisions(RUN_ID)
    ids = [f"kill-{i:03d}" for i in range(total)]
    done = threading.Semaphore(0)

    def one(rid: str) -> Answer:
        a = ask(client, rid)
        done.release()
        return a

    srv.script["valid"] = "latency:0.2"  # so requests are in flight when the node goes
    try:
        with ThreadPoolExecutor(16) as pool:
            futures = [pool.submit(one, rid) for rid in ids]
            for _ in range(kill_after):
                assert done.acquire(timeout=120), "the first requests did not finish"
            killed_at = time.monotonic()
            cluster.remove_node(victim)
            removal_s = time.monotonic() - killed_at
            results = [f.result(timeout=300) for f in futures]
    finally:
        srv.script.pop("valid")
    status = Counter(a.status for a in results)
    decisions = Counter(a.body.get("decision") for a in results)
    retried = sum(a.attempts > 1 for a in results)
    replayed = sum(bool(a.body.get("replayed")) for a in results)
    degraded = sum(any(v["label"] is None for v in a.body.get("votes", ())) for a in results)
    stored = {rid: store.outcome(RUN_ID, rid) for rid in ids}
    missing = [rid for rid, o in stored.items() if o is None]
    recorded = store.count_decisions(RUN_ID) - before
    wanted = set(ids)
    rows = Counter(o.request_id for o in store.outcomes(RUN_ID) if o.request_id in wanted)
    slowest_decision_s = max(a.body.get("latency_ms", 0) for a in results) / 1000
    print(f"[faults] node kill: {total} sent, statuses {dict(status)}, decisions "
          f"{dict(decisions)} ({degraded} with abstentions), {retried} retried ({replayed} "
          f"answered as replays), {len(missing)} lost, {sum(n - 1 for n in rows.values())} "
          f"recorded twice; the node held hosts {sorted(lost_hosts)} (ingress there: "
          f"{ingress_lost}); removal took {removal_s:.1f}s; slowest request "
          f"{max(a.elapsed_s for a in results):.1f}s, slowest decision {slowest_decision_s:.1f}s")
    assert status == {200: total}, [a for a in results if a.status != 200][:3]
    # a dead judge host costs abstentions within the coordinator's bound, never a stuck
    # decision (the client's wall time also holds the wait for a new ingress replica, if any)
    assert slowest_decision_s < JUDGE_BOUND_S + 5, slowest_decision_s
    assert {a.id for a in results} == wanted
    assert set(decisions) <= {"pass"} | FAIL_CLOSED, decisions
    assert not missing, missing[:5]
    assert recorded == total and all(n == 1 for n in rows.values()) and len(rows) == total
    for a in results:  # the client was told what the store holds
        o = stored[a.id]
        assert o is not None and o.action == a.body["action"], (a.id, a.body["action"])
        assert {v.judge for v in o.votes} == {f"j{i}" for i in range(JUDGES)}
    # the hosts of the lost node restarted on the surviving nodes, and judge again
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        infos = {h: actor_info(service.panels[PANEL].hosts[h]) for h in lost_hosts}
        if all(i["State"] == "ALIVE" for i in infos.values()):
            break
        time.sleep(0.5)
    assert all(i["State"] == "ALIVE" and i["Address"]["NodeID"] != victim.node_id
               for i in infos.values()), infos
    later = ask(client, "kill-after")
    assert later.status == 200 and later.body["decision"] == "pass", later.body
    labelled = {j for j, v in votes_by_judge(later.body).items() if v["label"] is not None}
    assert {judge_for_host(service, h) for h in lost_hosts} <= labelled, later.body["votes"]


def test_a_killed_judge_actor_restarts_and_judges_again(service, client):
    import ray

    host = service.panels[PANEL].routes["j1"]
    handle = service.panels[PANEL].hosts[host]
    restarts = actor_info(handle)["NumRestarts"]
    killed = time.monotonic()
    ray.kill(handle, no_restart=False)
    seen: list[tuple[str, float]] = []  # j1's vote and the request's latency
    back_after = None
    for i in range(120):
        a = ask(client, f"restart-{i}")
        assert a.status == 200 and a.attempts == 1, a.body
        assert a.body["decision"] == "pass", a.body  # four judges make the quorum
        assert a.elapsed_s < JUDGE_BOUND_S + 5, a.elapsed_s
        vote = votes_by_judge(a.body)["j1"]
        seen.append((vote["label"] or f"abstain:{vote['abstain_kind']}", round(a.elapsed_s, 1)))
        if vote["label"] is not None and actor_info(handle)["NumRestarts"] > restarts:
            back_after = time.monotonic() - killed
            break
        time.sleep(0.25)
    print(f"[faults] judge actor restart: j1 labels again {back_after:.1f}s after the kill; "
          f"(j1's vote, request latency) meanwhile: {seen}")
    assert back_after is not None and back_after < 60, seen
    assert actor_info(handle)["State"] == "ALIVE"


def test_a_hanging_judge_is_cut_off_by_its_timeout(service, client, srv):
    """j4's model hangs for 60 s; its timeout is 2 s: requests finish in about 2 s, j4's vote
    a timeout abstention, the other four judges' votes labels, eight requests at once."""
    srv.script["hang"] = "slow:60"
    try:
        with ThreadPoolExecutor(8) as pool:
            answers = list(pool.map(lambda i: ask(client, f"hang-{i}"), range(8)))
        after = ask(client, "hang-after")  # j4's breaker is open now: it abstains at once
    finally:
        srv.script["hang"] = "valid"
    slowest = max(a.elapsed_s for a in answers)
    print(f"[faults] hang: 8 concurrent requests, latency {min(a.elapsed_s for a in answers):.2f}"
          f"-{slowest:.2f}s (j4 timeout {HANG_TIMEOUT_S:g}s); the next one "
          f"{after.elapsed_s:.2f}s, j4 {votes_by_judge(after.body)['j4']['abstain_reason']!r}")
    for a in answers:
        assert a.status == 200 and a.attempts == 1, a.body
        assert a.elapsed_s < HANG_TIMEOUT_S + 5, a.elapsed_s
        votes = votes_by_judge(a.body)
        assert votes["j4"]["label"] is None and votes["j4"]["abstain_kind"] == "timeout", votes
        assert all(votes[f"j{i}"]["label"] == "accept" for i in range(4)), votes
        assert a.body["decision"] == "pass"
    assert after.status == 200 and after.elapsed_s < HANG_TIMEOUT_S + 5
    assert votes_by_judge(after.body)["j4"]["label"] is None


@pytest.mark.parametrize(("mode", "status"), [("error500", 502), ("slow:30", 504)])
def test_upstream_down_or_slow_is_a_clear_error_within_its_deadline(service, srv, mode, status):
    srv.script["parrot"] = mode
    try:
        start = time.monotonic()
        r = httpx.post(service.url + "/v1/chat/completions", timeout=60, json={
            "model": "m", "messages": [{"role": "user", "content": "Hi"}]})
        elapsed = time.monotonic() - start
    finally:
        srv.script.pop("parrot")
    print(f"[faults] upstream {mode}: HTTP {r.status_code} in {elapsed:.2f}s")
    assert r.status_code == status, r.text
    err = r.json()["error"]
    assert "upstream" in err["message"] and err["type"] == "upstream_error", err
    assert elapsed < UPSTREAM_TIMEOUT_S + 5
