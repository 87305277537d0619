"""Shared fixtures: one Ray session per test module, toy ballots, the shared datasets."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from consensus.types import Ballot, Vote

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data"


@pytest.fixture(scope="session", autouse=True)
def private_data_dir(tmp_path_factory):
    """The user data directory (where `consensus run` and `consensus serve` keep their store
    without --store) is a temporary one for the whole test session, child processes included:
    tests never write to the real ~/.local/share/consensus."""
    folder = tmp_path_factory.mktemp("xdg-data")
    old = os.environ.get("XDG_DATA_HOME")
    os.environ["XDG_DATA_HOME"] = str(folder)
    yield folder
    if old is None:
        os.environ.pop("XDG_DATA_HOME", None)
    else:
        os.environ["XDG_DATA_HOME"] = old


@pytest.fixture(scope="module")
def ray_session():
    """A local Ray cluster for the module (about 5 s to start), shut down after it."""
    import ray

    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    ray.init(num_cpus=2, include_dashboard=False, logging_level="ERROR",
             ignore_reinit_error=True)
    yield ray
    ray.shutdown()


@pytest.fixture
def shared_data() -> Path:
    """../shared/data if present (it is not part of the repository); skip otherwise."""
    if not SHARED_DATA.exists():
        pytest.skip("../shared/data is absent")
    return SHARED_DATA


def ballot(*labels: str | None, subject: str = "a", space=("accept", "reject"),
           gold: str | None = None, request_id: str = "q") -> Ballot:
    """A toy ballot: one judge per label, None = abstention."""
    votes = tuple(
        Vote(judge=f"j{i}", request_id=request_id, candidate_id=subject, label=lab)
        if lab is not None else
        Vote.abstain(judge=f"j{i}", request_id=request_id, candidate_id=subject,
                     kind="timeout", reason="slow")
        for i, lab in enumerate(labels)
    )
    return Ballot(request_id=request_id, subject=subject, labels=space, votes=votes,
                  panel_size=len(votes), gold=gold)


@pytest.fixture
def unanimous() -> Ballot:
    return ballot("accept", "accept", "accept")


@pytest.fixture
def split() -> Ballot:
    return ballot("accept", "accept", "reject")


@pytest.fixture
def tie() -> Ballot:
    return ballot("accept", "reject")


@pytest.fixture
def all_abstain() -> Ballot:
    return ballot(None, None, None)
