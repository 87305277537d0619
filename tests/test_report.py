"""The HTML report: the smoke run's own report and `consensus report` of a run folder and of a
store with reviews and competence history, rendered in headless Chromium (Debian's package).

The browser is driven through the DevTools protocol (``--remote-debugging-port=0``, a websocket
from aiohttp): every console message, exception, log entry and network request is collected,
none may be an error or leave the machine, and a screenshot is written to the test's tmp dir.
Without chromium these tests skip, unless ``CONSENSUS_REQUIRE_CHROMIUM=1`` makes them fail.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import re
import shutil
import struct
import subprocess
import threading
import zlib
from pathlib import Path
from typing import Any

import pytest

from consensus.cli.app import main
from consensus.reports.html import render_report
from consensus.reports.source import open_source
from consensus.scenario import load_scenario
from consensus.store import Store
from consensus.types import (
    Ballot,
    Candidate,
    Outcome,
    Request,
    RunSummary,
    Vote,
)
from strategies.majority import Majority

ROOT = Path(__file__).resolve().parents[1]
SMOKE = ROOT / "scenarios" / "safety_smoke.yaml"
URL_LOAD = re.compile(r"""(?:\b(?:src|href|action|poster|data)\s*=\s*["']?\s*(?:https?:)?//)"""
                      r"""|url\(\s*["']?\s*(?:https?:)?//|@import""", re.IGNORECASE)


# ---------------------------------------------------------------------------- Chromium
def _chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found:
        return found
    if os.environ.get("CONSENSUS_REQUIRE_CHROMIUM") == "1":
        pytest.fail("CONSENSUS_REQUIRE_CHROMIUM=1 but no chromium on PATH "
                    "(apt-get install -y chromium)")
    pytest.skip("chromium is not installed (apt-get install -y chromium)")


class Page:
    """What the browser reported while loading one page."""

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []
        self.requests: list[str] = []
        self.evaluated: dict[str, Any] = {}
        self.png = b""

    def errors(self) -> list[str]:
        out = []
        for e in self.events:
            m, p = e["method"], e.get("params", {})
            if m == "Runtime.exceptionThrown":
                out.append(f"exception: {p['exceptionDetails'].get('text')} "
                           f"{p['exceptionDetails'].get('exception', {}).get('description')}")
            elif m == "Runtime.consoleAPICalled" and p.get("type") in ("error", "assert",
                                                                        "warning"):
                out.append(f"console.{p['type']}: "
                           + " ".join(str(a.get("value", a.get("description")))
                                      for a in p.get("args", [])))
            elif m == "Log.entryAdded" and p["entry"]["level"] in ("error", "warning"):
                out.append(f"log {p['entry']['level']}: {p['entry']['text']}")
            elif m == "Network.loadingFailed":
                out.append(f"load failed: {p.get('errorText')}")
        return out


async def _devtools(proc: subprocess.Popen[str], url: str, scripts: dict[str, str]) -> Page:
    import aiohttp

    page = Page()
    ws_url = await asyncio.wait_for(asyncio.to_thread(_ws_url, proc), 60)
    async with aiohttp.ClientSession() as http, http.ws_connect(ws_url, max_msg_size=0) as ws:
        ids = iter(range(1, 10**6))
        pending: dict[int, asyncio.Future[dict[str, Any]]] = {}
        loaded = asyncio.Event()

        async def reader() -> None:
            async for msg in ws:
                data = json.loads(msg.data)
                if "id" in data and data["id"] in pending:
                    pending.pop(data["id"]).set_result(data)
                elif "method" in data:
                    page.events.append(data)
                    if data["method"] == "Page.loadEventFired":
                        loaded.set()
                    if data["method"] == "Network.requestWillBeSent":
                        page.requests.append(data["params"]["request"]["url"])

        task = asyncio.create_task(reader())

        async def call(method: str, session: str | None = None, **params: Any) -> Any:
            i = next(ids)
            fut: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
            pending[i] = fut
            msg: dict[str, Any] = {"id": i, "method": method, "params": params}
            if session:
                msg["sessionId"] = session
            await ws.send_str(json.dumps(msg))
            reply = await asyncio.wait_for(fut, 60)
            assert "error" not in reply, reply
            return reply.get("result", {})

        target = (await call("Target.createTarget", url="about:blank"))["targetId"]
        sid = (await call("Target.attachToTarget", targetId=target, flatten=True))["sessionId"]
        for domain in ("Runtime", "Log", "Page", "Network"):
            await call(f"{domain}.enable", sid)
        await call("Emulation.setDeviceMetricsOverride", sid, width=1200, height=1800,
                   deviceScaleFactor=1, mobile=False)
        await call("Page.navigate", sid, url=url)
        await asyncio.wait_for(loaded.wait(), 60)
        await asyncio.sleep(0.5)  # late console messages
        for name, expr in scripts.items():
            res = await call("Runtime.evaluate", sid, expression=expr, returnByValue=True)
            page.evaluated[name] = res.get("result", {}).get("value")
        size = (await call("Page.getLayoutMetrics", sid))["cssContentSize"]
        await call("Emulation.setDeviceMetricsOverride", sid, width=1200,
                   height=min(12000, max(1800, int(size["height"]))), deviceScaleFactor=1,
                   mobile=False)
        shot = await call("Page.captureScreenshot", sid, format="png")
        page.png = base64.b64decode(shot["data"])
        await asyncio.sleep(0.2)
        try:
            await asyncio.wait_for(call("Browser.close"), 10)
        except (TimeoutError, ConnectionError, aiohttp.ClientError):
            pass
        task.cancel()
    return page


def _ws_url(proc: subprocess.Popen[str]) -> str:
    assert proc.stderr is not None
    for line in proc.stderr:
        m = re.search(r"DevTools listening on (ws://\S+)", line)
        if m:  # keep draining stderr, so a chatty browser never blocks on a full pipe
            threading.Thread(target=proc.stderr.read, daemon=True).start()
            return m.group(1)
    raise RuntimeError(f"chromium exited ({proc.wait()}) without a DevTools address")


def open_in_chromium(html: Path, tmp: Path, scripts: dict[str, str] | None = None) -> Page:
    """Load ``html`` in headless Chromium; the page's events and a screenshot (``*.png``)."""
    binary = _chromium()
    proc = subprocess.Popen(
        [binary, "--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run",
         "--no-default-browser-check", "--disable-extensions", "--disable-background-networking",
         "--remote-debugging-port=0", f"--user-data-dir={tmp / 'profile'}", "about:blank"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        page = asyncio.run(_devtools(proc, html.resolve().as_uri(), scripts or {}))
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)
        if proc.stderr:
            proc.stderr.close()
    (tmp / f"{html.stem}.png").write_bytes(page.png)
    return page


def png_facts(data: bytes) -> tuple[int, int, int]:
    """(width, height, distinct byte values of the decompressed image data) of a PNG."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    width, height = struct.unpack(">II", data[16:24])
    pos, idat = 8, b""
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos:pos + 4])
        kind = data[pos + 4:pos + 8]
        if kind == b"IDAT":
            idat += data[pos + 8:pos + 8 + length]
        pos += 12 + length
    return width, height, len(set(zlib.decompress(idat)))


SCRIPTS = {
    "ready": "document.body.getAttribute('data-ready')",
    "sections": "Array.from(document.querySelectorAll('section[id]')).map(s => s.id)",
    "svgs": "document.querySelectorAll('svg').length",
    # the heat map's switch: raw agreement shown, kappa hidden after one click
    "toggle": "(() => { const b = document.querySelector('button[data-show=agree-raw]');"
              " if (!b) return null; b.click(); return [document.getElementById('agree-raw')"
              ".hidden, document.getElementById('agree-kappa').hidden]; })()",
}


def assert_clean_page(page: Page) -> None:
    assert page.errors() == []
    remote = [u for u in page.requests if not u.startswith(("file:", "data:", "about:"))]
    assert remote == [], remote
    assert page.evaluated["ready"] == "1"  # the inline script ran to its end
    width, height, variety = png_facts(page.png)
    assert width == 1200 and height >= 1800 and len(page.png) > 20_000 and variety > 50


def assert_self_contained(html: str) -> None:
    assert not URL_LOAD.search(html), URL_LOAD.search(html)
    assert "default-src 'none'" in html  # the CSP: a viewer fetches nothing
    assert "<script src" not in html and "<link" not in html


# ---------------------------------------------------------------------------- the smoke run
@pytest.fixture(scope="module")
def smoke(ray_session, tmp_path_factory) -> tuple[Path, Any]:
    from consensus.runner import run_scenario

    out = tmp_path_factory.mktemp("smoke") / "out"
    result = run_scenario(load_scenario(SMOKE), out, store_path=out / "consensus.sqlite")
    return out, result


@pytest.mark.ray
def test_the_runs_own_report_loads_in_chromium_without_errors(smoke, tmp_path):
    out, result = smoke
    html = (out / "report.html").read_text(encoding="utf-8")
    assert_self_contained(html)
    assert result.run_id in html and "Intervention mix" in html and "a~r1" in html
    page = open_in_chromium(out / "report.html", tmp_path, SCRIPTS)
    assert_clean_page(page)
    assert {"summary", "judges", "agreement", "interventions", "calibration", "families",
            "competence", "disputed", "not-accepted"} <= set(page.evaluated["sections"])
    assert page.evaluated["toggle"] == [False, True]


@pytest.mark.ray
def test_consensus_report_of_the_run_folder(smoke, tmp_path, capsys):
    out, result = smoke
    target = tmp_path / "r" / "report.html"
    with pytest.raises(SystemExit) as done:
        main(["report", str(out), "--out", str(target)])
    assert done.value.code == 0
    html = target.read_text(encoding="utf-8")
    assert_self_contained(html)
    assert result.run_id in html and "no reviews yet" in html
    # the smoke run has gold and the rules judge states confidences: a calibration curve
    assert "calibration curves" in html and "no gold labels" not in html
    # both interventions of the principles appear in the breakdown, with their counts
    for pid, row in result.summary.interventions["by_principle"].items():
        assert pid in html and all(str(n) in html for n in row.values())
    page = open_in_chromium(target, tmp_path, SCRIPTS)
    assert_clean_page(page)


# ---------------------------------------------------------------------------- a reviewed store
GEN = {"a": "openai/gpt-4o-mini", "b": "anthropic/claude-3-5-haiku-latest"}
PANEL = [{"name": "gpt", "kind": "llm", "model": "openai/gpt-4o-mini"},
         {"name": "claude", "kind": "llm", "model": "anthropic/claude-3-5-haiku-latest"},
         {"name": "rules", "kind": "rules"}]


def _decide(request: Request, labels: dict[str, dict[str, tuple[str, float]]]) -> Outcome:
    votes = tuple(Vote(judge=j, request_id=request.id, candidate_id=c, label=lab,
                       confidence=conf)
                  for c, by_judge in labels.items() for j, (lab, conf) in by_judge.items())
    decisions = tuple(Majority().aggregate(Ballot.for_subject(
        request, c, tuple(v for v in votes if v.candidate_id == c))) for c in labels)
    accepted = [d.subject for d in decisions if d.label == "accept"]
    return Outcome(request_id=request.id, run_id="r1", action="accept" if accepted else "block",
                   accepted_candidate=accepted[0] if accepted else None, decisions=decisions,
                   votes=votes, reason="test")


@pytest.fixture
def reviewed_store(tmp_path) -> Path:
    """A store filled through the Store API: 12 two-candidate requests with gold, three
    judges of two families (and one without), a split panel escalated and reviewed, and the
    competence changes the reviews caused."""
    path = tmp_path / "reviewed.sqlite"
    store = Store(path)
    store.start_run("r1", scenario="reviewed", strategy="majority", config={"panel": PANEL})
    for i in range(12):
        req = Request(id=f"q{i}", prompt=f"question {i}?", gold={"a": "accept", "b": "reject"},
                      candidates=(Candidate(id="a", text=f"good answer {i}", generator=GEN["a"]),
                                  Candidate(id="b", text=f"poor answer {i}", generator=GEN["b"])))
        split = i % 3 == 0  # claude disagrees on these
        labels = {"a": {"gpt": ("accept", 0.9), "claude": ("reject" if split else "accept", 0.6),
                        "rules": ("accept", 0.7)},
                  "b": {"gpt": ("reject", 0.8), "claude": ("accept" if split else "reject", 0.7),
                        "rules": ("reject", 0.65)}}
        outcome = _decide(req, labels)
        if split:
            from consensus.types import Escalation

            outcome = outcome.model_copy(update={"action": "escalate", "escalation": Escalation(
                priority=2, reason="split panel")})
        store.record("r1", outcome, req)
    from consensus.metrics import summarize

    reqs = [Request(id=f"q{i}", prompt=f"question {i}?", gold={"a": "accept", "b": "reject"},
                    candidates=(Candidate(id="a", text="x"), Candidate(id="b", text="y")))
            for i in range(12)]
    store.finish_run("r1", summarize(scenario="reviewed", strategy="majority", run_id="r1",
                                     requests=reqs, outcomes=store.outcomes("r1"),
                                     judges=["gpt", "claude", "rules"]))
    alpha = {"gpt": 2.0, "claude": 2.0}
    for item in store.queue("r1"):
        store.claim("ann", run_id="r1", request_id=item["request_id"])
        rid = store.submit_review("r1", item["request_id"], "ann", "prefer", chosen="a")
        alpha["gpt"] += 1
        store.set_competence("gpt", "accept", alpha["gpt"], 1.0, review_id=rid)
        store.set_competence("claude", "accept", 2.0, alpha["claude"], review_id=rid)
        alpha["claude"] += 1
    store.close()
    return path


def test_report_of_a_store_with_reviews(reviewed_store, tmp_path):
    target = tmp_path / "store-report.html"
    with pytest.raises(SystemExit) as done:
        main(["report", str(reviewed_store), "--out", str(target)])
    assert done.value.code == 0
    html = target.read_text(encoding="utf-8")
    assert_self_contained(html)
    assert "no reviews yet" not in html and "competence history" in html
    assert "gpt · accept" in html and "claude · accept" in html
    # the competence table: gpt rose to 6/7 after four reviews, claude fell to 2/7
    assert "0.857" in html and "0.286" in html
    # cross-model validation: the families from the recorded panel, own-family cells outlined
    assert "rules (no family)" in html and 'stroke="#111827"' in html
    # the disputed items are the four split requests
    section = html.split('id="disputed"')[1].split("</section>")[0]
    assert {m for m in re.findall(r"<td>(q\d+)", section)} == {"q0", "q3", "q6", "q9"}
    page = open_in_chromium(target, tmp_path, SCRIPTS)
    assert_clean_page(page)
    assert page.evaluated["toggle"] == [False, True]
    assert page.evaluated["svgs"] >= 6


def test_a_store_without_reviews_says_so():
    html = render_report(RunSummary(scenario="s", strategy="majority", n_requests=0), [], {},
                         competence=[])
    assert "no reviews yet" in html and "no gold labels" in html
    assert_self_contained(html)


def test_texts_are_escaped_and_redacted(tmp_path):
    key = "sk-proj-" + "Ab3" * 12
    req = Request(id="x", prompt=f"<script>alert(1)</script> my key {key}",
                  candidates=(Candidate(id="a", text="<img src=x onerror=alert(2)>"),))
    votes = (Vote(judge="j1", request_id="x", candidate_id="a", label="reject"),
             Vote(judge="j2", request_id="x", candidate_id="a", label="accept"))
    o = _decide(req, {"a": {"j1": ("reject", 0.9), "j2": ("accept", 0.9)}})
    assert o.votes[0].label == votes[0].label
    html = render_report(RunSummary(scenario="s", strategy="majority", n_requests=1), [o],
                         {"x": req})
    assert "<script>alert" not in html and "<img src=x" not in html and key not in html
    assert "&lt;script&gt;alert(1)" in html


@pytest.mark.parametrize("argv, message", [
    (["report", "/nonexistent/run", "--out", "r.html"], "no such run folder or store"),
    (["report", "{tmp}", "--out", "r.html"], "not a run folder"),
    (["report", "{tmp}/junk.sqlite", "--out", "r.html"], "cannot open the store"),
    (["report", "{store}", "--run", "nope", "--out", "{tmp}/r.html"], "has no run 'nope'"),
    (["report", "{store}", "--out", "{tmp}"], "the output is a directory"),
])
def test_bad_report_arguments_exit_2(argv, message, tmp_path, reviewed_store, capsys):
    (tmp_path / "junk.sqlite").write_text("not a database " * 100)
    args = [a.format(tmp=tmp_path, store=reviewed_store) for a in argv]
    with pytest.raises(SystemExit) as done:
        main(args)
    assert done.value.code == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_open_source_reads_the_folders_run(reviewed_store, tmp_path):
    folder = tmp_path / "run"
    folder.mkdir()
    shutil.copy(reviewed_store, folder / "consensus.sqlite")
    (folder / "summary.json").write_text(RunSummary(scenario="reviewed", strategy="majority",
                                                    run_id="r1", n_requests=12)
                                         .model_dump_json())
    with open_source(folder / "summary.json") as src:
        assert src.run_id == "r1" and src.pick_run().run_id == "r1"
        assert len(src.items("r1", src.store.outcomes("r1"))) == 12
