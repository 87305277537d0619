"""`strategy: {name: weighted, from_reviews: true}` in a real run: the store's competences (set
by reviews) decide whom the panel follows, and a run without them follows the YAML weights."""

from __future__ import annotations

import csv
from contextlib import closing

import pytest

from consensus.errors import ConfigError
from consensus.scenario import load_scenario
from consensus.store import Store

pytestmark = pytest.mark.ray


def scenario(folder, *, from_reviews: bool = True):
    """Three replayed judges on 4 requests: boss (weight 3) accepts, a and b reject."""
    (folder / "data.jsonl").write_text("".join(
        f'{{"id": "r{i}", "prompt": "p{i}", "candidates": [{{"id": "c", "text": "t{i}"}}]}}\n'
        for i in range(4)))
    with (folder / "votes.csv").open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["request_id", "candidate_id", "judge", "label", "reason"])
        for i in range(4):
            for judge, label in (("boss", "accept"), ("a", "reject"), ("b", "reject")):
                w.writerow([f"r{i}", "c", judge, label, "because"])
    path = folder / "s.yaml"
    path.write_text(
        "name: learned\ndataset: data.jsonl\npanel:\n"
        "  - {name: boss, kind: replay, source: votes.csv, weight: 3}\n"
        "  - {name: a, kind: replay, source: votes.csv}\n"
        "  - {name: b, kind: replay, source: votes.csv}\n"
        f"strategy: {{name: weighted, from_reviews: {str(from_reviews).lower()}}}\n")
    return path


def test_a_run_follows_the_reviewed_competences(ray_session, tmp_path):
    from consensus.runner import run_scenario

    path = scenario(tmp_path)
    store_path = tmp_path / "store.sqlite"
    fresh = run_scenario(load_scenario(path), tmp_path / "out1", store_path=store_path)
    assert {o.action for o in fresh.outcomes} == {"accept"}  # no reviews: boss's weight rules
    with closing(Store(store_path)) as st:
        for label in ("accept", "reject"):  # reviewers overruled boss, agreed with a and b
            st.set_competence("boss", label, 2.0, 12.0)
            st.set_competence("a", label, 12.0, 1.0)
            st.set_competence("b", label, 12.0, 1.0)
    learned = run_scenario(load_scenario(path), tmp_path / "out2", store_path=store_path)
    assert {o.action for o in learned.outcomes} != {"accept"}
    assert all(d.label == "reject" for o in learned.outcomes for d in o.decisions)


def test_without_from_reviews_the_store_changes_nothing(ray_session, tmp_path):
    from consensus.runner import run_scenario

    path = scenario(tmp_path, from_reviews=False)
    store_path = tmp_path / "store.sqlite"
    with closing(Store(store_path)) as st:
        st.set_competence("boss", "accept", 2.0, 12.0)
    out = run_scenario(load_scenario(path), tmp_path / "out", store_path=store_path)
    assert {o.action for o in out.outcomes} == {"accept"}


def test_from_reviews_on_a_strategy_that_cannot_use_it_is_refused(tmp_path):
    path = scenario(tmp_path)
    path.write_text(path.read_text().replace("weighted", "majority"))
    with pytest.raises(ConfigError):
        load_scenario(path)
