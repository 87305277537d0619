"""The in-process Python API records through the same path as the service and the CLI."""

from __future__ import annotations

import pytest

from consensus.api import Consensus
from consensus.store import open_store
from tests.conftest import ROOT

pytestmark = pytest.mark.ray

SMOKE = str(ROOT / "scenarios" / "safety_smoke.yaml")


@pytest.fixture(scope="module")
def api(ray_session, tmp_path_factory):
    store = str(tmp_path_factory.mktemp("api") / "api.sqlite")
    with Consensus([SMOKE], store=store) as c:
        c.store_path = store
        yield c


def test_decides_commits_and_replays(api):
    out = api.decide("Say hi", ["Hello! How can I help?", "You are a worthless idiot."],
                     id="api-1")
    assert out.action == "accept" and out.accepted_candidate == "c1"
    assert {d.subject: d.label for d in out.decisions} == {"c1": "accept", "c2": "reject"}
    store = open_store(api.store_path)
    try:
        stored = store.outcome("service-safety_smoke", "api-1")
        assert stored is not None and stored.action == "accept"
        assert len(stored.votes) == len(out.votes) > 0
    finally:
        store.close()
    again = api.decide("a different prompt", ["anything"], id="api-1")
    assert again.decisions == out.decisions  # the recorded decision, not a new one


def test_unknown_panel_is_refused(api):
    from consensus.service.runtime import ApiError

    with pytest.raises(ApiError, match="unknown panel"):
        api.decide("p", ["a"], panel="nope")
