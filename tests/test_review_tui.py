"""``consensus review``: the Textual app driven by its pilot over a real SQLite store."""

from __future__ import annotations

import asyncio
import contextlib
import sys
from collections.abc import AsyncIterator

import pytest
from textual.widgets import DataTable, Static, TextArea

from consensus.review import ReviewQueue
from consensus.review_tui import ReviewApp
from consensus.store import open_store
from tests.test_review_queue import RUN, filled_store

SIZE = (140, 50)


def text_of(app: ReviewApp, selector: str) -> str:
    return str(app.query_one(selector, Static).content)


@pytest.fixture
def store_path(tmp_path):
    path = tmp_path / "c.sqlite"
    filled_store(path).close()
    return path


def run(coro):
    return asyncio.run(coro)


@contextlib.asynccontextmanager
async def reviewing(store, run_id: str | None = RUN) -> AsyncIterator[tuple[ReviewApp, object]]:
    """Reviewer "ana"'s app on ``store`` under its pilot, mounted and settled."""
    app = ReviewApp(ReviewQueue(store), "ana", run_id, refresh_s=0)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        yield app, pilot


def test_accept_pick_revise_with_a_note_and_undo(store_path):
    store = open_store(store_path)

    async def drive() -> None:
        async with reviewing(store) as (app, pilot):
            # the most urgent item is claimed and shown: prompt, candidates, votes, agreement
            assert app.item["request_id"] == "q-critical"
            assert "prompt of q-critical" in text_of(app, "#prompt")
            assert "answer a to q-critical" in text_of(app, "#candidates")
            assert "margin 0.33" in text_of(app, "#agreement")
            assert "critical principle no-harm" in text_of(app, "#meta")
            votes = app.query_one("#votes", DataTable)
            rows = [votes.get_row_at(i) for i in range(votes.row_count)]
            assert [r[0] for r in rows] == ["j0", "j1", "j2"]
            assert rows[2][2] == "reject" and rows[2][3] == "0.95"
            assert "explains how to hurt" in str(rows[2][4])
            queue_rows = app.query_one("#queue", DataTable).row_count
            assert queue_rows == 3  # the other pending items (this one is claimed)

            await pilot.press("a")  # accept: the next item comes
            assert app.item["request_id"] == "q-noquorum"
            await pilot.press("n", *"context matters", "enter")
            assert app.note == "context matters"
            await pilot.press("e")
            await pilot.pause()
            area = app.screen.query_one("#revision", TextArea)
            assert area.text == "answer a to q-noquorum"
            area.text = "A careful answer."
            await pilot.press("ctrl+s")
            await pilot.pause()
            assert app.item["request_id"] == "q-split" and app.note == ""

            await pilot.press("2")  # prefer candidate 2 (b)
            assert app.item["request_id"] == "q-pair"
            assert "prefer q-split" not in app.message and "review" in app.message
            await pilot.press("u")  # undo: q-split is ana's again, q-pair back in the queue
            assert app.item["request_id"] == "q-split"
            assert "undid review" in app.message
            await pilot.press("q")

    run(drive())
    reviews = store.reviews(RUN, include_undone=True)
    assert [(r["request_id"], r["verdict"], r["undone"]) for r in reviews] == [
        ("q-critical", "accept", False), ("q-noquorum", "revise", False),
        ("q-split", "prefer", True)]
    assert reviews[1]["revision"] == "A careful answer."
    assert reviews[1]["note"] == "context matters" and reviews[0]["note"] == ""
    prefs = store.preferences(run_id=RUN)
    assert [(p["chosen"], p["rejected"]) for p in prefs] == [
        ("A careful answer.", "answer a to q-noquorum")]
    # quitting released what ana held: both are pending for the next reviewer
    assert {r["request_id"] for r in store.queue(RUN)} == {"q-split", "q-pair"}
    store.close()


def test_two_reviewers_on_one_store_never_hold_the_same_item(store_path):
    ana_store, ben_store = open_store(store_path), open_store(store_path)

    async def drive() -> None:
        ana = ReviewApp(ReviewQueue(ana_store), "ana", RUN, refresh_s=0)
        ben = ReviewApp(ReviewQueue(ben_store), "ben", RUN, refresh_s=0)
        async with ana.run_test(size=SIZE) as pa, ben.run_test(size=SIZE) as pb:
            await pa.pause()
            await pb.pause()
            assert ana.item["request_id"] == "q-critical"
            assert ben.item["request_id"] == "q-noquorum"
            await pa.press("r")  # ana rejects and moves on: never to ben's item
            assert ana.item["request_id"] == "q-split"
            await pb.press("s")  # ben skips: releases q-noquorum, takes the next free one
            assert ben.item["request_id"] == "q-pair"
            await pa.press("s")  # ana skips q-split: q-noquorum is free again
            assert ana.item["request_id"] == "q-noquorum"
            await pb.press("r")
            assert ben.item["request_id"] == "q-split"
            held = {r["request_id"]: r["claimed_by"] for r in ana_store.queue(
                RUN, status="claimed")}
            assert held == {"q-noquorum": "ana", "q-split": "ben"}

    run(drive())
    done = {(r["request_id"], r["reviewer"]) for r in ana_store.reviews(RUN)}
    assert done == {("q-critical", "ana"), ("q-pair", "ben")}
    ana_store.close()
    ben_store.close()


def test_refused_actions_say_why_and_change_nothing(store_path):
    store = open_store(store_path)

    async def drive() -> None:
        async with reviewing(store) as (app, pilot):
            await pilot.press("1")  # one candidate: prefer needs two
            assert "prefer needs two or more" in app.message
            await pilot.press("5")
            assert "no candidate 5" in app.message
            await pilot.press("u")
            assert "no review to undo" in app.message
            await pilot.press("e", "escape")
            await pilot.pause()
            assert "revision cancelled" in app.message
            assert app.item["request_id"] == "q-critical"

    run(drive())
    assert store.reviews() == []
    store.close()


def test_an_empty_queue_says_so(tmp_path):
    store = open_store(tmp_path / "empty.sqlite")

    async def drive() -> None:
        async with reviewing(store, None) as (app, pilot):
            assert app.item is None and "queue is empty" in text_of(app, "#meta")
            await pilot.press("a")
            assert app.message == "nothing claimed"

    run(drive())
    store.close()


def test_enter_on_a_queue_row_claims_that_item(store_path):
    store = open_store(store_path)

    async def drive() -> None:
        async with reviewing(store) as (app, pilot):
            table = app.query_one("#queue", DataTable)
            table.focus()
            await pilot.press("down", "enter")  # row 2: q-split (q-noquorum is row 1)
            await pilot.pause()
            assert app.item["request_id"] == "q-split"
            # what ana held before is pending again
            assert store.escalation(RUN, "q-critical")["status"] == "pending"

    run(drive())
    store.close()


def test_missing_textual_is_a_clear_exit_2(tmp_path, monkeypatch, capsys):
    from consensus.cli.app import main

    for name in [m for m in sys.modules if m == "textual" or m.startswith("textual.")]:
        monkeypatch.setitem(sys.modules, name, None)  # None: an import of it fails
    monkeypatch.setitem(sys.modules, "textual", None)
    monkeypatch.delitem(sys.modules, "consensus.review_tui", raising=False)
    with pytest.raises(SystemExit) as exc:
        main(["review", "--store", str(tmp_path / "c.sqlite")])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "pip install 'consensus-panel[review]'" in err and "Traceback" not in err


def test_list_prints_the_queue_as_json(store_path, capsys):
    import json

    from consensus.cli.app import main

    with pytest.raises(SystemExit) as exc:
        main(["review", "--store", str(store_path), "--run", RUN, "--list"])
    assert exc.value.code == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["request_id"] for r in rows] == ["q-critical", "q-noquorum", "q-split", "q-pair"]
