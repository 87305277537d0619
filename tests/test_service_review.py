"""The review queue over HTTP: /v1/reviews (list, claim, details, submit, release, undo) on a
real service (Ray Serve on loopback), the reviewer being the bearer token's name."""

from __future__ import annotations

import concurrent.futures

import httpx
import pytest

from consensus.service.auth import Tokens
from consensus.store import open_store
from tests.conftest import ROOT
from tests.service_support import running_service, write_yaml

pytestmark = pytest.mark.ray

TOKEN_A = "team-a-token-0123456789abcdef"
TOKEN_B = "team-b-token-fedcba9876543210"
TOKEN_C = "team-c-token-00112233445566778899"
RUN = "service-esc"
HARM = "You are a worthless idiot."


@pytest.fixture(scope="module")
def service(ray_session, tmp_path_factory):
    """The offline smoke panel with a policy that escalates every rejection."""
    folder = tmp_path_factory.mktemp("service-review")
    doc = {"panels": {"esc": {"scenario": str(ROOT / "scenarios" / "safety_smoke.yaml"),
                              "policy": {"quorum": 0.5, "on_reject": "escalate",
                                         "use_principle_interventions": False}},
                      "spot": {"scenario": str(ROOT / "scenarios" / "safety_smoke.yaml"),
                               "policy": {"quorum": 0.5, "spot_check_rate": 1.0}}},
           "default_panel": "esc",
           "access": {"team-c": {"panels": ["spot"]}}}
    cfg = write_yaml(folder / "service.yaml", doc)
    tokens = Tokens.parse(f"team-a:{TOKEN_A},team-b:{TOKEN_B},team-c:{TOKEN_C}")
    store = str(folder / "service.sqlite")
    with running_service([cfg], store=store, tokens=tokens) as svc:
        svc.store_path = store
        for i in range(1, 7):  # six escalated decisions; e-1 has two candidates
            cands = [HARM, f"You are an idiot, {i}."] if i == 1 else [f"{HARM} ({i})"]
            r = call(svc, "post", "/v1/consensus",
                     {"id": f"e-{i}", "prompt": f"Describe me ({i})", "candidates": cands})
            assert r.status_code == 200 and r.json()["decision"] == "escalate", r.text
        yield svc


def call(service, method, path, body=None, token=TOKEN_A, **kw):
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    if body is not None:
        kw["json"] = body
    return httpx.request(method, service.url + path, headers=headers, timeout=60, **kw)


def error_of(r: httpx.Response) -> str:
    return r.json()["error"]["message"]


def test_the_queue_lists_escalated_decisions(service):
    r = call(service, "get", "/v1/reviews", params={"run_id": RUN})
    assert r.status_code == 200, r.text
    items = r.json()["items"]
    assert [i["request_id"] for i in items][:6] == [f"e-{i}" for i in range(1, 7)]
    assert all(i["status"] == "pending" and i["priority"] >= 1 for i in items)
    assert "every candidate rejected" in items[0]["reason"]
    bad = call(service, "get", "/v1/reviews", params={"status": "done"})
    assert bad.status_code == 400 and "status is one of" in error_of(bad)
    assert call(service, "get", "/v1/reviews", token=None).status_code == 401


def test_claim_submit_conflicts_and_undo(service):
    a = call(service, "post", "/v1/reviews/claim", {"run_id": RUN, "request_id": "e-1"})
    assert a.status_code == 200, a.text
    item = a.json()["item"]
    assert a.json()["reviewer"] == "team-a" and item["claimed_by"] == "team-a"
    assert item["prompt"] == "Describe me (1)"
    assert [c["text"] for c in item["candidates"]] == [HARM, "You are an idiot, 1."]
    assert {v["judge"] for v in item["votes"]} >= {"rules"}
    assert item["decisions"][0]["agreement"]["n_valid"] >= 1
    # team-b cannot take it, nor review it
    taken = call(service, "post", "/v1/reviews/claim", {"run_id": RUN, "request_id": "e-1"},
                 token=TOKEN_B)
    assert taken.status_code == 409 and "claimed by team-a" in error_of(taken)
    assert taken.json()["error"]["code"] == "review_conflict"
    steal = call(service, "post", f"/v1/reviews/{RUN}/e-1", {"verdict": "reject"},
                 token=TOKEN_B)
    assert steal.status_code == 409
    # bad bodies and names
    for body, status, fragment in [
        ({"verdict": "approve"}, 400, "verdict"),
        ({"verdict": "prefer", "chosen": "zz"}, 400, "no candidate 'zz'"),
        ({"verdict": "reject", "colour": "red"}, 400, "colour"),
        ({"verdict": "reject", "reviewer": "team-b"}, 403, "the bearer token's name"),
    ]:
        r = call(service, "post", f"/v1/reviews/{RUN}/e-1", body)
        assert r.status_code == status and fragment in error_of(r), r.text
    missing = call(service, "post", f"/v1/reviews/{RUN}/nope", {"verdict": "reject"})
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "review_not_found"
    assert call(service, "post", "/v1/reviews/claim", {"run_id": RUN, "request_id": "nope"}
                ).status_code == 404
    # the review itself
    ok = call(service, "post", f"/v1/reviews/{RUN}/e-1",
              {"verdict": "prefer", "chosen": "c2", "note": "milder"})
    assert ok.status_code == 200, ok.text
    review_id = ok.json()["review_id"]
    store = open_store(service.store_path)
    try:
        (rev,) = [r for r in store.reviews(RUN) if r["review_id"] == review_id]
        assert (rev["reviewer"], rev["verdict"], rev["chosen"], rev["note"]) == (
            "team-a", "prefer", "c2", "milder")
        prefs = [p for p in store.preferences(run_id=RUN) if p["review_id"] == review_id]
        assert [(p["chosen"], p["rejected"]) for p in prefs] == [("You are an idiot, 1.", HARM)]
        assert store.escalation(RUN, "e-1")["status"] == "reviewed"
    finally:
        store.close()
    again = call(service, "post", f"/v1/reviews/{RUN}/e-1", {"verdict": "reject"})
    assert again.status_code == 409 and "reviewed already" in error_of(again)
    # undo: the item is team-a's again, the pair is gone
    undo = call(service, "post", "/v1/reviews/undo")
    assert undo.status_code == 200 and undo.json()["undone"]["review_id"] == review_id
    detail = call(service, "get", f"/v1/reviews/{RUN}/e-1").json()["item"]
    assert (detail["status"], detail["claimed_by"]) == ("claimed", "team-a")
    store = open_store(service.store_path)
    try:
        assert not [p for p in store.preferences(run_id=RUN) if p["review_id"] == review_id]
    finally:
        store.close()
    nothing = call(service, "post", "/v1/reviews/undo", token=TOKEN_B)
    assert nothing.status_code == 404 and "team-b has no review to undo" in error_of(nothing)
    rel = call(service, "post", f"/v1/reviews/{RUN}/e-1/release")
    assert rel.status_code == 200 and rel.json()["status"] == "pending"
    assert call(service, "post", f"/v1/reviews/{RUN}/e-1/release").status_code == 409


def test_parallel_claims_over_http_never_share_an_item(service):
    def claim(token: str) -> str | None:
        r = call(service, "post", "/v1/reviews/claim", {"run_id": RUN}, token=token)
        assert r.status_code == 200, r.text
        item = r.json()["item"]
        return None if item is None else item["request_id"]

    pending = len(call(service, "get", "/v1/reviews", params={"run_id": RUN}).json()["items"])
    assert pending >= 4
    tokens = [TOKEN_A, TOKEN_B] * pending  # more claims than items
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        got = list(pool.map(claim, tokens))
    claimed = [g for g in got if g is not None]
    # a reviewer who claims twice may get an item it holds back; across reviewers, never
    by_token: dict[str, set[str]] = {}
    for token, rid in zip(tokens, got, strict=True):
        if rid is not None:
            by_token.setdefault(token, set()).add(rid)
    assert not by_token.get(TOKEN_A, set()) & by_token.get(TOKEN_B, set())
    assert len(set(claimed)) == pending
    empty = call(service, "post", "/v1/reviews/claim", {"run_id": RUN}, token=TOKEN_B)
    assert empty.status_code == 200 and empty.json()["item"] is None


def test_a_spot_check_passes_and_is_queued_and_access_limits_the_queue(service):
    """A pass sampled for a spot check is delivered (decision pass) and queued with priority 0;
    a token whose access allows only that panel sees and claims only its run's items, and is
    refused the others' (their prompts are not its to read)."""
    r = call(service, "post", "/v1/consensus", {"id": "s-1", "prompt": "Say hi", "candidates":
                                                 ["Hello there!"], "panel": "spot"})
    assert r.status_code == 200 and r.json()["decision"] == "pass", r.text
    spot_run = "service-spot"
    items = call(service, "get", "/v1/reviews", token=TOKEN_C).json()["items"]
    assert [(i["run_id"], i["request_id"], i["priority"], i["reason"]) for i in items] == [
        (spot_run, "s-1", 0, "spot check")]
    assert call(service, "get", "/v1/reviews", params={"run_id": RUN},
                token=TOKEN_C).status_code == 403
    assert call(service, "get", f"/v1/reviews/{RUN}/e-2", token=TOKEN_C).status_code == 403
    assert call(service, "post", f"/v1/reviews/{RUN}/e-2", {"verdict": "reject"},
                token=TOKEN_C).status_code == 403
    got = call(service, "post", "/v1/reviews/claim", token=TOKEN_C)
    assert got.status_code == 200 and got.json()["item"]["request_id"] == "s-1", got.text
    done = call(service, "post", f"/v1/reviews/{spot_run}/s-1", {"verdict": "accept"},
                token=TOKEN_C)
    assert done.status_code == 200, done.text
    assert call(service, "post", "/v1/reviews/claim", token=TOKEN_C).json()["item"] is None
