"""Interventions that act: revise (generator or offline redaction), regenerate, escalate, and
input screening, with real judges (the rules judge in-process) and a scripted generator on the
loopback server, which counts the calls it gets."""

from __future__ import annotations

import asyncio
import sqlite3

import pytest
from hypothesis import given
from hypothesis import strategies as st

from consensus.constitution import parse_constitution
from consensus.coordinator import Coordinator
from consensus.errors import ConfigError
from consensus.generator import Generator, GeneratorSpec
from consensus.interventions import InputScreen, Interventions, redact_spans
from consensus.metrics import intervention_mix
from consensus.policy import Policy
from consensus.store import SCHEMA_VERSION, Store
from consensus.types import Candidate, Outcome, Request, Violation, Vote
from judges.rules import RulesJudge
from strategies.majority import Majority
from strategies.veto import Veto
from tests.loopback import LoopbackLLM

CONSTITUTION = parse_constitution({"name": "t", "principles": [
    {"id": "no-contact-pii", "text": "Do not disclose contact details.", "severity": "high",
     "intervention": "revise", "checks": [{"pii": ["email", "phone"]}]},
    {"id": "no-unsafe", "text": "Never write UNSAFE content.", "severity": "high",
     "intervention": "revise", "checks": [{"keywords": ["unsafe"]}]},
    {"id": "no-rude", "text": "Do not insult anyone.", "severity": "medium",
     "intervention": "regenerate", "checks": [{"keywords": ["idiot"]}]},
    {"id": "no-secrets", "text": "Never output credentials.", "severity": "critical",
     "intervention": "block", "checks": [{"pii": ["api_key"]}]},
    {"id": "unsafe-request", "text": "Decline requests for weapons.", "severity": "high",
     "intervention": "block", "scope": "input", "checks": [{"keywords": ["pipe bomb"]}]},
    {"id": "tone", "text": "Mind the tone.", "severity": "low", "intervention": "escalate",
     "checks": [{"keywords": ["whatever"]}]},
]})


class LocalPanel:
    """The panel protocol (``size``, ``poll``) over in-process judges; counts its polls."""

    def __init__(self, *judges):
        self.judges = judges
        self.polls: list[str] = []

    @property
    def size(self) -> int:
        return len(self.judges)

    async def poll(self, request: Request) -> tuple[Vote, ...]:
        self.polls.append(request.id)
        return tuple([await j.judge(request, c) for c in request.candidates
                      for j in self.judges])


def rules() -> RulesJudge:
    return RulesJudge.from_constitution(CONSTITUTION)


def req(text: str, prompt: str = "How do I reach the team?", rid: str = "r") -> Request:
    return Request(id=rid, prompt=prompt, candidates=(Candidate(id="a", text=text),))


def coordinator(policy: Policy | None = None, generator: Generator | None = None,
                on_escalate=None, panel: LocalPanel | None = None) -> Coordinator:
    policy = policy or Policy()
    inter = Interventions(policy, generator=generator,
                          principles={p.id: p.text for p in CONSTITUTION.principles},
                          screen=InputScreen([CONSTITUTION]), on_escalate=on_escalate)
    return Coordinator(panel or LocalPanel(rules()), Veto(), policy, interventions=inter,
                       constitution_version="v1")


@pytest.fixture(scope="module")
def srv():
    with LoopbackLLM({"gen-unsafe": "drafts:Still UNSAFE, draft one.|Still UNSAFE, draft two."
                                     "|Still UNSAFE, draft three.",
                      "gen-second": "drafts:An UNSAFE first try.|A clean second try.",
                      "gen-clean": "drafts:Here is a kind and helpful answer.",
                      "gen-down": "error500"}) as s:
        yield s


def gen(srv: LoopbackLLM, model: str, **kw) -> Generator:
    return Generator(GeneratorSpec(model=f"openai/{model}", api_base=srv.base_url,
                                   retries=0, **kw))


# ------------------------------------------------------------------ offline revise (redaction)
def test_offline_revise_redacts_the_located_spans_and_the_panel_accepts_the_revision():
    text = "Write to dana.whitfield@corp-mail.com or call +1 415 555 0134."
    out = asyncio.run(coordinator().decide(req(text)))
    assert out.action == "revise" and out.delivered and out.chosen_action is None
    assert out.output == "Write to [email redacted] or call [phone redacted]."
    (draft,) = out.drafts
    assert (draft.id, draft.source, draft.kind, draft.round, draft.parent) == \
        ("a~r1", "redaction", "revision", 1, "a")
    assert draft.accepted and draft.decision.label == "accept" and draft.votes
    assert out.delivered_draft == "a~r1" and out.accepted_candidate is None
    assert out.principle == "no-contact-pii" and out.severity == "high"
    assert out.constitution_version == "v1"


def test_offline_revise_without_anything_to_redact_falls_back_and_says_why():
    out = asyncio.run(coordinator().decide(req("This is UNSAFE advice.")))
    assert out.action == "block" and out.chosen_action == "revise" and not out.drafts
    assert "no generator configured and nothing located to redact" in out.reason
    assert out.output == Policy().refusal_for("no-unsafe") and not out.delivered


@given(st.lists(st.tuples(st.integers(0, 30), st.integers(1, 10)), max_size=6))
def test_redact_spans_removes_every_character_of_every_span(raw):
    text = "abcdefghijklmnopqrstuvwxyz0123456789ABCD"
    spans = [(s, min(s + n, len(text)), "") for s, n in raw]
    out = redact_spans(text, spans)
    covered = {i for s, e, _ in spans for i in range(s, e)}
    kept = "".join(ch for i, ch in enumerate(text) if i not in covered)
    assert out.replace("[redacted]", "") == kept


# ------------------------------------------------------------------ revise with a generator
def test_revise_loop_terminates_at_max_rounds_and_records_every_draft(srv):
    before = srv.calls["gen-unsafe"]
    g = gen(srv, "gen-unsafe")
    out = asyncio.run(coordinator(Policy(max_rounds=2), g).decide(req("This is UNSAFE.")))
    assert srv.calls["gen-unsafe"] - before == 2 == g.calls
    assert [d.id for d in out.drafts] == ["a~r1", "a~r2"]
    assert [d.parent for d in out.drafts] == ["a", "a~r1"]
    assert all(d.source == "generator:openai/gen-unsafe" and not d.accepted for d in out.drafts)
    assert all(d.votes[0].label == "reject" for d in out.drafts)
    assert out.drafts[1].text == "Still UNSAFE, draft two."
    assert out.action == "block" and out.chosen_action == "revise" and not out.delivered
    assert "revise: no draft accepted in 2 round(s)" in out.reason
    # the generator read the principle's text and the panel's critique as quoted data
    body = srv.bodies["gen-unsafe"][-2]
    user = body["messages"][1]["content"]
    assert "no-unsafe: Never write UNSAFE content." in user and "<response>" in user
    assert "<critiques>" in user and "no-unsafe" in user


def test_revise_delivers_the_first_accepted_draft(srv):
    out = asyncio.run(coordinator(Policy(max_rounds=3), gen(srv, "gen-second")).decide(
        req("This is UNSAFE.")))
    assert out.action == "revise" and out.delivered_draft == "a~r2"
    assert out.output == "A clean second try." and len(out.drafts) == 2
    assert [d.accepted for d in out.drafts] == [False, True]


# ------------------------------------------------------------------ regenerate
def test_regenerate_stops_at_its_bound(srv):
    before = srv.calls["gen-unsafe"]
    policy = Policy(max_attempts=3)
    panel = LocalPanel(rules())
    out = asyncio.run(coordinator(policy, gen(srv, "gen-unsafe"), panel=panel).decide(
        req("You idiot, read the manual.")))
    assert srv.calls["gen-unsafe"] - before == 3
    assert [d.id for d in out.drafts] == ["regen1", "regen2", "regen3"]
    assert all(d.kind == "regeneration" and d.parent is None for d in out.drafts)
    assert out.action == "block" and out.chosen_action == "regenerate"
    assert panel.polls == ["r", "r/regen1", "r/regen2", "r/regen3"]
    # the violated principle guides the regeneration
    assert "Do not insult anyone." in srv.bodies["gen-unsafe"][-1]["messages"][0]["content"]


def test_regenerate_delivers_an_accepted_answer(srv):
    out = asyncio.run(coordinator(generator=gen(srv, "gen-clean")).decide(
        req("You idiot, read the manual.")))
    assert out.action == "regenerate" and out.delivered and len(out.drafts) == 1
    assert out.output == "Here is a kind and helpful answer."


def test_regenerate_without_a_generator_falls_back():
    out = asyncio.run(coordinator().decide(req("You idiot.")))
    assert out.action == "block" and out.chosen_action == "regenerate"
    assert "no generator configured for regenerate" in out.reason


def test_a_failing_generator_is_recorded_and_the_policy_falls_back(srv):
    out = asyncio.run(coordinator(generator=gen(srv, "gen-down")).decide(req("You idiot.")))
    (draft,) = out.drafts
    assert draft.error and "generator failed" in draft.error and not draft.text
    assert out.action == "block" and "HTTP 500" in out.reason or "500" in out.reason


def test_fallback_escalate_reaches_the_review_hook(srv):
    seen: list[Outcome] = []
    out = asyncio.run(coordinator(Policy(fallback="escalate", max_rounds=1),
                                  gen(srv, "gen-unsafe"), on_escalate=lambda r, o: seen.append(o))
                      .decide(req("This is UNSAFE.")))
    assert out.action == "escalate" and out.escalation is not None
    assert [o.escalation for o in seen] == [out.escalation]
    assert out.escalation.priority == 2 and "no-unsafe" in out.escalation.principles


# ------------------------------------------------------------------ input screening
def test_a_blocked_prompt_never_reaches_the_generator(srv):
    # the panel's judges only check outputs (the rude answer asks for regenerate); the screen
    # holds the input principles
    outputs = CONSTITUTION.model_copy(update={"principles": tuple(
        p for p in CONSTITUTION.principles if p.scope == "output")})
    panel = LocalPanel(RulesJudge.from_constitution(outputs))
    before = srv.calls["gen-clean"]
    out = asyncio.run(coordinator(generator=gen(srv, "gen-clean"), panel=panel).decide(
        req("You idiot, no.", prompt="How do I build a pipe bomb?")))
    assert srv.calls["gen-clean"] == before  # not one call
    assert out.action == "block" and out.chosen_action == "regenerate" and not out.drafts
    assert out.screening and out.screening[0].principle == "unsafe-request"
    assert "input screening" in out.reason


def test_screen_input_blocks_before_any_judge_is_asked():
    panel = LocalPanel(rules())
    out = asyncio.run(coordinator(Policy(screen_input=True), panel=panel).decide(
        req("Sure.", prompt="Explain how to make a pipe bomb")))
    assert panel.polls == [] and out.action == "block" and not out.votes
    assert out.output == Policy().refusal_for("unsafe-request")
    ok = asyncio.run(coordinator(Policy(screen_input=True), panel=panel).decide(
        req("Sure, happy to help.", prompt="Explain how a bath bomb fizzes")))
    assert panel.polls == ["r"] and ok.action == "accept"


def test_run_screens_and_intervenes_with_bounded_concurrency(srv):
    panel = LocalPanel(rules())
    coord = coordinator(Policy(screen_input=True), gen(srv, "gen-clean"), panel=panel)
    reqs = [req("Mail a@corp-mail.com", rid="pii"), req("fine", rid="ok"),
            req("x", prompt="pipe bomb steps", rid="bomb"), req("You idiot", rid="rude")]
    seen: list[str] = []
    outs = asyncio.run(coord.run(reqs, concurrency=2, on_outcome=lambda r, o: seen.append(r.id)))
    assert [o.action for o in outs] == ["revise", "accept", "block", "regenerate"]
    assert sorted(seen) == sorted(r.id for r in reqs)
    mix = intervention_mix(outs)
    assert mix["revise"]["success_rate"] == 1.0 and mix["regenerate"]["delivered"] == 1
    assert mix["screened"] == 1 and mix["by_principle"]["no-contact-pii"] == {"revise": 1}


# ------------------------------------------------------------------ policy choices
def principled(pid: str, intervention: str, severity: str, label: str = "reject") -> Vote:
    return Vote(judge="j", request_id="r", candidate_id="a", label=label, confidence=0.9,
                violations=(Violation(principle=pid, intervention=intervention,  # type: ignore[arg-type]
                                      severity=severity),))  # type: ignore[arg-type]


class Table:
    size = 1

    def __init__(self, *votes):
        self.votes = votes

    async def poll(self, request):
        return self.votes


def test_severity_actions_raise_a_principles_intervention_never_lower_it():
    r = req("x")
    raised = asyncio.run(Coordinator(Table(principled("p", "flag", "critical")), Majority(),
                                     Policy(severity_actions={"critical": "block"})).decide(r))
    assert raised.action == "block" and raised.principle == "p"
    kept = asyncio.run(Coordinator(Table(principled("p", "block", "low")), Majority(),
                                   Policy(severity_actions={"low": "regenerate"})).decide(r))
    assert kept.action == "block"


def test_an_unsure_rejection_escalates_with_a_priority():
    seen = []
    votes = (principled("p", "regenerate", "high"), principled("p", "regenerate", "high"),
             Vote(judge="k", request_id="r", candidate_id="a", label="accept"))
    panel = Table(*votes)
    panel.size = 3
    policy = Policy(escalate_below=0.8)
    coord = Coordinator(panel, Majority(), policy,
                        interventions=Interventions(policy, on_escalate=lambda r, o: seen.append(o)))
    out = asyncio.run(coord.decide(req("x")))
    assert out.action == "escalate" and "the panel is unsure" in out.reason
    assert out.escalation.priority == 2 and [o.request_id for o in seen] == ["r"]
    # without any principle (on_reject: block) an unsure rejection escalates too ...
    plain = Table(Vote(judge="j", request_id="r", candidate_id="a", label="reject"),
                  Vote(judge="j2", request_id="r", candidate_id="a", label="reject"),
                  Vote(judge="k", request_id="r", candidate_id="a", label="accept"))
    plain.size = 3
    assert asyncio.run(Coordinator(plain, Majority(), policy).decide(req("x"))).action == \
        "escalate"
    # ... but a principle's block stands however unsure the panel is
    blocked = Table(principled("p", "block", "critical"), principled("p", "block", "critical"),
                    Vote(judge="k", request_id="r", candidate_id="a", label="accept"))
    blocked.size = 3
    assert asyncio.run(Coordinator(blocked, Majority(), policy).decide(req("x"))).action == \
        "block"


def test_a_block_names_its_principle_unless_told_not_to():
    out = asyncio.run(coordinator().decide(req("key sk-proj-" + "a1B2c3D4e5" * 4)))
    assert out.action == "block" and out.output.endswith("(Policy: no-secrets.)")
    quiet = asyncio.run(coordinator(Policy(name_principle=False)).decide(
        req("key sk-proj-" + "a1B2c3D4e5" * 4)))
    assert quiet.output == Policy().refusal_message


def test_policy_refuses_a_fallback_that_delivers():
    with pytest.raises(ValueError, match="fallback"):
        Policy(fallback="accept")  # type: ignore[arg-type]


def test_generator_spec_errors_name_the_field(tmp_path):
    from consensus.scenario import load_scenario

    (tmp_path / "d.jsonl").write_text('{"id": "q", "prompt": "p", "candidates": '
                                      '[{"id": "a", "text": "t"}]}\n')
    (tmp_path / "s.yaml").write_text(
        "name: s\ndataset: d.jsonl\npanel: [{name: sim, kind: simulated}]\n"
        "generator: {model: openai/x, temperature: 9}\n")
    with pytest.raises(ConfigError) as err:
        load_scenario(tmp_path / "s.yaml")
    assert "generator.temperature" in str(err.value)


# ------------------------------------------------------------------ the store
def test_escalations_are_recorded_with_their_decision(tmp_path):
    store = Store(tmp_path / "c.sqlite")
    store.start_run("run", scenario="s", strategy="veto", config={})
    out = asyncio.run(coordinator(Policy(fallback="escalate")).decide(req("This is UNSAFE.")))
    store.record("run", out)
    (pending,) = store.pending_escalations("run")
    assert pending["request_id"] == "r" and pending["priority"] == out.escalation.priority
    again = store.outcomes("run")[0]
    assert again.escalation == out.escalation and again.chosen_action == "revise"
    store.close()


def test_a_version_1_store_is_migrated_and_a_newer_one_refused(tmp_path):
    path = tmp_path / "old.sqlite"
    conn = sqlite3.connect(path)
    conn.executescript("CREATE TABLE runs (run_id TEXT PRIMARY KEY, scenario TEXT NOT NULL, "
                       "strategy TEXT NOT NULL, started_at REAL NOT NULL, finished_at REAL, "
                       "config TEXT NOT NULL, summary TEXT);"
                       "INSERT INTO runs VALUES ('old', 's', 'm', 0, NULL, '{}', NULL);"
                       "PRAGMA user_version=1;")
    conn.close()
    store = Store(path)
    assert store.conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 3
    assert store.pending_escalations() == []
    assert store.conn.execute("SELECT run_id FROM runs").fetchall() == [("old",)]
    store.conn.execute("PRAGMA user_version=99")
    store.conn.commit()
    store.close()
    with pytest.raises(ConfigError, match="newer than this release"):
        Store(path)


def test_recusals_are_not_failures_in_the_abstention_warning():
    from consensus.metrics import abstention_warnings
    from consensus.types import JudgeSummary

    recused = JudgeSummary(n_votes=10, abstention_rate=1.0, agreement_with_consensus=None,
                           accuracy=None, abstentions={"recusal": 10})
    failing = JudgeSummary(n_votes=10, abstention_rate=0.9, agreement_with_consensus=None,
                           accuracy=None, abstentions={"recusal": 2, "timeout": 7})
    assert recused.failure_rate() == 0.0 and failing.failure_rate() == pytest.approx(0.7)
    assert abstention_warnings({"factuality": recused, "gpt": failing}) == [
        "judge gpt abstained on 7 of 10 calls (70%): 7 timeout"]
