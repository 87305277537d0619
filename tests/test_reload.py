"""Hot reload of a constitution: a real Ray panel (rules judge + an LLM judge on the loopback
server) picks up a changed file mid-run, atomically, and every decision records its version."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from consensus.constitution import load_constitution
from consensus.coordinator import Coordinator, Panel
from consensus.interventions import InputScreen, Interventions
from consensus.policy import Policy
from consensus.reload import ConstitutionWatcher, constitution_version
from consensus.types import Candidate, Request
from judges.llm import LLMJudgeSpec
from judges.rules import RulesJudgeSpec
from strategies.veto import Veto
from tests.loopback import LoopbackLLM

pytestmark = pytest.mark.ray

V1 = """name: fruit
principles:
  - id: no-apples
    text: Never mention apples.
    severity: high
    checks: [{keywords: [apple]}]
"""
V2 = """name: fruit
principles:
  - id: no-bananas
    text: Never mention bananas.
    severity: high
    checks: [{keywords: [banana]}]
  - id: no-secret-word
    text: Decline prompts with the secret word.
    severity: high
    scope: input
    checks: [{keywords: [xyzzy]}]
"""


def requests(n: int) -> list[Request]:
    return [Request(id=f"q{i}", prompt="Which fruit?", candidates=(
        Candidate(id="a", text="An apple a day." if i % 2 else "A banana, ripe."),))
        for i in range(n)]


@pytest.fixture
def setup(ray_session, tmp_path: Path):
    path = tmp_path / "fruit.yaml"
    path.write_text(V1)
    with LoopbackLLM({"slowjudge": "latency:0.03"}) as srv:
        llm = LLMJudgeSpec(name="llm", model="openai/slowjudge", api_base=srv.base_url,
                           retries=0, endpoint_max_in_flight=100,
                           principles=[{"id": p.id, "text": p.text}
                                       for p in load_constitution(path).principles])
        rules = RulesJudgeSpec(name="rules", constitution=str(path))
        const = load_constitution(path)
        panel = Panel.start([rules, llm], tmp_path, payloads={"rules": const})
        try:
            watcher = ConstitutionWatcher({"rules": path, "llm": path}, {path: const})
            policy = Policy(screen_input=True)
            coord = Coordinator(panel, Veto(), policy, watcher=watcher, reload_interval_s=0.02,
                                interventions=Interventions(policy,
                                                            screen=InputScreen([const])))
            yield path, coord, srv
        finally:
            panel.shutdown()


class _Gated:
    """The coordinator's panel, whose polls after the edit wait until the watcher has acted on
    it (a reload, or a refused edit): the requests in flight then finish under the version they
    started with and the later ones start under the new one, however slowly a loaded machine
    rebuilds the judges. Without the gate the run could end before the reload."""

    def __init__(self, panel, coord: Coordinator, edited: asyncio.Event):
        self._panel, self._coord, self._edited = panel, coord, edited
        self._before = coord.constitution_version

    def __getattr__(self, name):
        return getattr(self._panel, name)

    async def poll(self, *args, **kwargs):
        if self._edited.is_set():
            async with asyncio.timeout(120):  # a reload that never comes fails the test here
                while (self._coord.constitution_version == self._before
                       and not self._coord.watcher.errors):
                    await asyncio.sleep(0.01)
        return await self._panel.poll(*args, **kwargs)


def run_with_edit(coord: Coordinator, path: Path, text: str, n: int = 24, at: int = 8):
    done: list[str] = []

    async def go():
        edited = asyncio.Event()
        real = coord.panel
        coord.panel = _Gated(real, coord, edited)

        def on_outcome(req, outcome):
            done.append(req.id)
            if len(done) == at:
                path.write_text(text)
                edited.set()

        try:
            return await coord.run(requests(n), concurrency=2, on_outcome=on_outcome)
        finally:
            coord.panel = real

    return asyncio.run(go())


def test_a_changed_constitution_is_picked_up_mid_run_atomically(setup):
    path, coord, srv = setup
    v1 = coord.constitution_version
    outs = run_with_edit(coord, path, V2)
    v2 = coord.constitution_version
    assert v1 != v2 == constitution_version([load_constitution(path)])
    versions = [o.constitution_version for o in outs]
    assert versions[0] == v1 and versions[-1] == v2 and set(versions) == {v1, v2}
    # each decision follows the rules of the version it records, on both judges' hosts
    for o, r in zip(outs, requests(len(outs)), strict=True):
        apple = "apple" in r.candidates[0].text
        bad = apple if o.constitution_version == v1 else not apple
        assert o.action == ("block" if bad else "accept"), (o.request_id, o.reason)
        rules_vote = next(v for v in o.votes if v.judge == "rules")
        assert {viol.principle for viol in rules_vote.violations} <= (
            {"no-apples"} if o.constitution_version == v1 else {"no-bananas"})
    # the LLM judge reads the new principles after the switch
    assert "Never mention bananas." in srv.bodies["slowjudge"][-1]["messages"][0]["content"]
    assert "Never mention bananas." not in srv.bodies["slowjudge"][0]["messages"][0]["content"]
    # the new input principle screens prompts now
    blocked = asyncio.run(coord.decide(Request(id="s", prompt="say xyzzy", candidates=(
        Candidate(id="a", text="ok"),))))
    assert blocked.action == "block" and blocked.screening and not blocked.votes


def test_a_broken_edit_is_refused_and_the_old_constitution_stays(setup):
    path, coord, _ = setup
    v1 = coord.constitution_version
    outs = run_with_edit(coord, path, "name: fruit\nprinciples:\n  - id: [unclosed\n", n=12,
                         at=3)
    assert {o.constitution_version for o in outs} == {v1}
    assert coord.watcher is not None and coord.watcher.errors
    assert str(path) in coord.watcher.errors[0] and "old one stays in force" in \
        coord.watcher.errors[0]
    assert all(o.action == ("block" if "apple" in r.candidates[0].text else "accept")
               for o, r in zip(outs, requests(12), strict=True))


def test_watcher_sees_a_rename_save_and_ignores_a_touch(tmp_path: Path):
    path = tmp_path / "c.yaml"
    path.write_text(V1)
    w = ConstitutionWatcher({"rules": path}, {path: load_constitution(path)})
    time.sleep(0.01)
    path.touch()  # same content: nothing to reload
    assert w.poll() == {} and w.reloads == 0
    tmp = tmp_path / "c.yaml.new"
    tmp.write_text(V2)
    tmp.replace(path)  # how editors save
    changed = w.poll()
    assert list(changed) == [path] and changed[path].principles[0].id == "no-bananas"
    assert w.reloads == 1 and w.poll() == {}
