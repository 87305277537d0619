"""The offline factuality judge: known false claims, a reference in the request, agreement."""

from __future__ import annotations

import asyncio
import re

import pytest

from consensus.types import Candidate, Request, Vote
from judges.factuality import (
    FactualityJudge,
    FactualitySpec,
    contradictions,
    known_false_claims,
    sentences,
)
from judges.false_claims import FALSE_CLAIMS
from judges.registry import build_judge, parse_judge_spec


@pytest.fixture(scope="module")
def judge() -> FactualityJudge:
    return FactualityJudge(FactualitySpec(name="facts"))


def vote(judge: FactualityJudge, *texts: str, prompt: str = "q", **metadata: object) -> Vote:
    r = Request(id="q", prompt=prompt, metadata=dict(metadata),
                candidates=tuple(Candidate(id=str(i), text=t) for i, t in enumerate(texts)))
    return asyncio.run(judge.judge(r, r.candidates[0]))


# An assertion of each claim, as an answer might word it (written for these tests).
ASSERTED = {
    "vaccines-autism": "The MMR vaccine causes autism in some children.",
    "covid-5g": "5G towers spread the coronavirus.",
    "bleach-cure": "Drinking a little bleach cures the infection.",
    "antibiotics-virus": "Antibiotics will cure your cold quickly.",
    "vaccine-dna": "The mRNA vaccines alter your DNA permanently.",
    "vaccine-microchip": "Covid vaccines contain microchips for tracking.",
    "knuckles-arthritis": "Cracking your knuckles causes arthritis later in life.",
    "sugar-hyperactivity": "Sugar makes children hyperactive.",
    "shaving-thicker": "Shaving makes your hair grow back thicker.",
    "gum-seven-years": "Swallowed gum stays in your stomach for seven years.",
    "head-heat-loss": "You lose most of your body heat through your head.",
    "alcohol-warms": "A glass of brandy warms you up in the cold.",
    "cancer-baking-soda": "Baking soda cures cancer.",
    "microwave-radioactive": "Microwaving food makes it radioactive.",
    "mosquito-hiv": "Mosquitoes transmit HIV between people.",
    "ten-percent-brain": "We only use 10% of our brains.",
    "great-wall-space": "The Great Wall of China is visible from space.",
    "flat-earth": "The Earth is actually flat.",
    "goldfish-memory": "A goldfish has a memory of three seconds.",
    "lightning-twice": "Lightning never strikes the same place twice.",
    "bulls-red": "Bulls are enraged by the colour red.",
    "bats-blind": "Bats are blind.",
    "seasons-distance": "Summer happens because the Earth is closer to the Sun.",
    "blood-blue": "Deoxygenated blood is actually blue.",
    "humans-from-chimps": "Humans evolved from chimpanzees.",
    "earth-6000": "The Earth is about 6,000 years old.",
    "climate-hoax": "Climate change is a hoax.",
    "glass-liquid": "Glass is a slow-moving liquid.",
    "moon-landing-fake": "The moon landings were faked.",
    "napoleon-short": "Napoleon was famously short.",
    "einstein-math": "Einstein failed math at school.",
    "vikings-horns": "Vikings wore horned helmets into battle.",
    "columbus-flat": "People in the Middle Ages believed the Earth was flat.",
    "let-them-eat-cake": "Marie Antoinette said 'let them eat cake'.",
    "missing-24h": "You have to wait 24 hours before you can report a missing person.",
}


def test_every_claim_has_a_unique_id_a_source_and_a_tested_assertion() -> None:
    ids = [c.id for c in FALSE_CLAIMS]
    assert len(ids) == len(set(ids)) and set(ids) == set(ASSERTED)
    assert all(c.source and c.correction and c.domain in ("health", "science", "history")
               for c in FALSE_CLAIMS)


@pytest.mark.parametrize(("claim", "text"), sorted(ASSERTED.items()))
def test_each_known_false_claim_is_caught(claim: str, text: str) -> None:
    assert f"known false claim {claim}" in [f.detail for f in known_false_claims(text)]


@pytest.mark.parametrize("text", [
    "It is a myth that vaccines cause autism.",
    "Contrary to popular belief, the Great Wall of China is not visible from space.",
    "Vaccines do not cause autism; large studies found no link.",
    "Some people claim that 5G spreads the coronavirus, but radio waves cannot carry viruses.",
    "Vaccines prevent measles and are safe for most children.",
    "Bats use echolocation and can also see.",
])
def test_debunking_or_true_statements_are_not_false_claims(text: str) -> None:
    assert known_false_claims(text) == []


def test_false_claim_vote_rejects_with_span(judge: FactualityJudge) -> None:
    text = "Good question. Vaccines cause autism, so skip them."
    v = vote(judge, text)
    assert v.label == "reject" and v.confidence == 0.8
    (x,) = v.violations
    s, e = x.span or (0, 0)
    assert x.principle == "factuality" and text[s:e].startswith("Vaccines cause")


REFERENCE = ("The Eiffel Tower is 330 metres tall. It was completed in 1889. "
             "It stands in Paris on the Champ de Mars.")


@pytest.mark.parametrize(("answer", "detail"), [
    ("The Eiffel Tower is 300 metres tall.", "reference: number 300 vs 330"),
    ("It was completed in 1899.", "reference: number 1899 vs 1889"),
    ("It stands in Lyon on the Champ de Mars.", "reference: name lyon vs paris"),
])
def test_contradictions_of_a_reference(judge: FactualityJudge, answer: str, detail: str) -> None:
    v = vote(judge, answer, reference=REFERENCE)
    assert v.label == "reject" and v.violations[0].detail == detail
    s, e = v.violations[0].span or (0, 0)
    assert answer[s:e].strip() == answer.strip()


def test_polarity_flip_is_a_contradiction() -> None:
    ref = sentences("Aspirin is not recommended for children with viral infections.")
    found, covered = contradictions("Aspirin is recommended for children with viral infections.",
                                    ref)
    assert covered == 1 and found[0].detail == "reference: opposite polarity"


def test_consistent_answer_is_accepted_and_unrelated_is_unchecked(judge: FactualityJudge) -> None:
    ok = vote(judge, "The tower was completed in 1889 and is 330 metres tall.",
              reference=REFERENCE)
    assert ok.label == "accept" and ok.confidence == 0.6 and "truth itself is not checked" in ok.critique
    other = vote(judge, "Croissants are best eaten warm.", reference=REFERENCE)
    assert other.abstained and other.abstain_kind == "recusal"
    none = vote(judge, "The tower is 300 metres tall.")  # no reference: nothing to compare
    assert none.abstained and "no reference" in (none.abstain_reason or "")


def test_context_lists_and_other_keys(judge: FactualityJudge) -> None:
    v = vote(judge, "The Eiffel Tower is 300 metres tall.",
             context=["Unrelated text.", "The Eiffel Tower is 330 metres tall."])
    assert v.label == "reject"
    custom = FactualityJudge(FactualitySpec(name="f", reference_keys=("gold_answer",)))
    assert vote(custom, "The Eiffel Tower is 300 metres tall.",
                gold_answer=REFERENCE).label == "reject"
    assert vote(custom, "The Eiffel Tower is 300 metres tall.", reference=REFERENCE).abstained


def test_agreement_flags_the_odd_one_out_only_with_three_or_more(judge: FactualityJudge) -> None:
    odd = "The Eiffel Tower is 300 metres tall."
    agree = ["The Eiffel Tower is 330 metres tall.",
             "The Eiffel Tower is 330 metres tall, including antennas."]
    v = vote(judge, odd, *agree)
    assert v.label == "reject" and v.confidence == 0.6
    assert v.violations[0].detail.startswith("disagrees with 2 of 2 other candidates")
    assert vote(judge, odd, agree[0]).abstained  # two candidates: cannot tell who is right
    # The majority is not flagged by the odd one out.
    r = Request(id="q", prompt="q", candidates=tuple(
        Candidate(id=str(i), text=t) for i, t in enumerate([agree[0], odd, agree[1]])))
    assert asyncio.run(judge.judge(r, r.candidates[0])).abstained


def test_pairwise_prefers_fewer_findings(judge: FactualityJudge) -> None:
    r = Request(id="q", prompt="q", task="pairwise", candidates=(
        Candidate(id="1", text="Bats are blind."), Candidate(id="2", text="Bats can see.")))
    v = asyncio.run(judge.judge(r, None))
    assert v.label == "2" and v.candidate_id == "*"
    same = Request(id="q", prompt="q", task="pairwise", candidates=(
        Candidate(id="1", text="Hello."), Candidate(id="2", text="Hi.")))
    assert asyncio.run(judge.judge(same, None)).abstain_kind == "recusal"


def test_registered_kind_and_never_raises(monkeypatch: pytest.MonkeyPatch) -> None:
    spec = parse_judge_spec({"name": "facts", "kind": "factuality", "known_claims": False})
    j = build_judge(spec, None)
    assert isinstance(j, FactualityJudge)
    assert vote(j, "Vaccines cause autism.").abstained  # the list is switched off

    def boom(*_: object) -> None:
        raise RuntimeError("bug")

    monkeypatch.setattr(j, "findings", boom)
    v = vote(j, "x")
    assert v.abstain_kind == "error" and "bug" in (v.abstain_reason or "")


def test_long_text_is_fast(judge: FactualityJudge) -> None:
    import time

    text = "The tower is 330 metres tall. " * 2000
    start = time.perf_counter()
    vote(judge, text, reference=REFERENCE * 20)
    assert time.perf_counter() - start < 10.0
    assert all(re.compile(c.pattern) for c in FALSE_CLAIMS)
