"""The classifier judge: lazy model loading, scores, thresholds, long texts, pairwise."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import warnings

import pytest

from consensus.types import Candidate, Request, Vote
from judges.classifier import ClassifierJudge, ClassifierJudgeSpec, segments

INSULT = "You are a worthless, stupid idiot and everyone hates you."
BENIGN = "The museum opens at nine and the guided tour takes about an hour."


@pytest.fixture(scope="module")
def judge() -> ClassifierJudge:
    return ClassifierJudge(ClassifierJudgeSpec(name="toxicity"))


def ask(j: ClassifierJudge, text: str, prompt: str = "a question") -> Vote:
    r = Request(id="q", prompt=prompt, candidates=(Candidate(id="a", text=text),))
    return asyncio.run(j.judge(r, r.candidates[0]))


def test_import_does_not_load_sklearn() -> None:
    code = ("import sys, judges.classifier\n"
            "assert 'sklearn' not in sys.modules and 'profanity_check' not in sys.modules\n")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_construction_emits_no_version_warning() -> None:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ClassifierJudge(ClassifierJudgeSpec(name="t"))
    assert not [w for w in caught if "InconsistentVersion" in type(w.message).__name__
                or "unpickle" in str(w.message)]


def test_flags_an_insult_and_passes_a_benign_sentence(judge: ClassifierJudge) -> None:
    bad, good = ask(judge, INSULT), ask(judge, BENIGN)
    assert bad.label == "reject" and bad.confidence is not None and bad.confidence > 0.9
    assert good.label == "accept" and good.confidence is not None and good.confidence > 0.8
    assert "toxicity" in bad.critique and "threshold 0.5" in bad.critique
    assert bad.judge == "toxicity" and bad.judge_version == judge.version


def test_confidence_is_the_score_or_its_complement(judge: ClassifierJudge) -> None:
    score, _ = judge.score(INSULT)
    assert ask(judge, INSULT).confidence == pytest.approx(score)
    score, _ = judge.score(BENIGN)
    assert ask(judge, BENIGN).confidence == pytest.approx(1 - score)


def test_threshold_decides() -> None:
    j = ClassifierJudge(ClassifierJudgeSpec(name="t", threshold=0.0))
    assert ask(j, BENIGN).label == "reject"          # score >= 0 always
    j = ClassifierJudge(ClassifierJudgeSpec(name="t", threshold=1.0))
    assert ask(j, INSULT).label == "accept" or j.score(INSULT)[0] == 1.0
    with pytest.raises(ValueError):
        ClassifierJudgeSpec(name="t", threshold=1.5)
    with pytest.raises(ValueError):
        ClassifierJudgeSpec(name="t", model="bert")  # type: ignore[arg-type]


def test_one_toxic_sentence_in_a_long_answer_is_caught(judge: ClassifierJudge) -> None:
    filler = " ".join(f"Step {i}: open the settings page and check the option." for i in range(30))
    text = f"{filler} Honestly, only a moron would need this explained. {filler}"
    whole = float(judge._predict([text])[0])
    score, n = judge.score(text)
    assert n > 1 and score > whole and score >= 0.5
    assert ask(judge, text).label == "reject"


def test_segments() -> None:
    assert segments("") == [] and segments("   ") == []
    assert segments("One sentence only") == ["One sentence only"]
    assert segments("A. B!\nC?") == ["A. B!\nC?", "A.", "B!", "C?"]
    many = " ".join(f"S{i}." for i in range(200))
    segs = segments(many, limit=10)
    assert segs[0] == many and len(segs) <= 11 and " ".join(segs[1:]) == many


def test_scope_input_scores_the_prompt() -> None:
    j = ClassifierJudge(ClassifierJudgeSpec(name="t", scope="input"))
    assert ask(j, BENIGN, prompt=INSULT).label == "reject"
    assert ask(j, INSULT, prompt=BENIGN).label == "accept"
    both = ClassifierJudge(ClassifierJudgeSpec(name="t", scope="both"))
    assert ask(both, BENIGN, prompt=INSULT).label == "reject"
    assert ask(both, BENIGN, prompt=BENIGN).label == "accept"


def test_empty_text_is_accepted(judge: ClassifierJudge) -> None:
    v = ask(judge, "")
    assert v.label == "accept" and v.confidence == 1.0


def test_pairwise_picks_the_less_toxic(judge: ClassifierJudge) -> None:
    r = Request(id="q", prompt="p", task="pairwise",
                candidates=(Candidate(id="x", text=INSULT), Candidate(id="y", text=BENIGN)))
    v = asyncio.run(judge.judge(r, None))
    assert v.label == "y" and v.candidate_id == "*" and v.confidence is not None
    same = Request(id="q", prompt="p", task="pairwise",
                   candidates=(Candidate(id="x", text=BENIGN), Candidate(id="y", text=BENIGN)))
    v = asyncio.run(judge.judge(same, None))
    assert v.abstained and v.abstain_kind == "recusal"


def test_failures_become_abstentions(monkeypatch: pytest.MonkeyPatch) -> None:
    j = ClassifierJudge(ClassifierJudgeSpec(name="t"))

    def boom(_: object) -> None:
        raise RuntimeError("model exploded")

    monkeypatch.setattr(j, "_predict", boom)
    v = ask(j, "hello. there")
    assert v.abstained and v.abstain_kind == "error" and "exploded" in (v.abstain_reason or "")
