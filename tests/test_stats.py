"""Tests of consensus.stats against reference implementations and published worked examples."""

from __future__ import annotations

import math
import random
import warnings

import krippendorff
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from sklearn.metrics import cohen_kappa_score
from statsmodels.stats.inter_rater import aggregate_raters
from statsmodels.stats.inter_rater import fleiss_kappa as sm_fleiss_kappa

from consensus.stats import (
    LabelMatrix,
    accuracy,
    cohen_kappa,
    cohen_kappa_matrix,
    effective_judges,
    fleiss_kappa,
    judge_summaries,
    krippendorff_alpha,
    label_matrix,
    per_judge,
    run_stats,
)
from consensus.types import PAIRWISE_SUBJECT, Ballot, RunStats, Vote

VERDICT = ("accept", "reject")


# --- reference wrappers: NaN or "undefined" errors become None, as in consensus.stats ----------


def ref_fleiss(codes: np.ndarray, n_labels: int) -> float | None:
    complete = codes[(codes >= 0).all(axis=1)]
    table, _ = aggregate_raters(complete, n_cat=n_labels)
    with np.errstate(invalid="ignore", divide="ignore"):
        value = float(sm_fleiss_kappa(table, method="fleiss"))
    return None if math.isnan(value) else value


def ref_alpha(codes: np.ndarray, n_labels: int) -> float | None:
    data = codes.T.astype(float)
    data[data < 0] = np.nan
    try:
        with np.errstate(invalid="ignore", divide="ignore"):
            value = float(
                krippendorff.alpha(
                    reliability_data=data,
                    level_of_measurement="nominal",
                    value_domain=list(range(n_labels)),
                )
            )
    except ValueError:  # "at least one unit with values assigned by at least two coders"
        return None
    return None if math.isnan(value) else value


def assert_same(ours: float | None, ref: float | None) -> None:
    assert (ours is None) == (ref is None), (ours, ref)
    if ours is not None:
        assert ours == pytest.approx(ref, abs=1e-9)


@st.composite
def code_matrices(draw: st.DrawFn, missing: bool = True) -> tuple[np.ndarray, int]:
    """A random items x judges code matrix with 2-4 labels (and -1 for missing votes)."""
    n_labels = draw(st.integers(2, 4))
    n_items = draw(st.integers(1, 30))
    n_judges = draw(st.integers(2, 6))
    low = -1 if missing else 0
    codes = draw(arrays(np.int64, (n_items, n_judges), elements=st.integers(low, n_labels - 1)))
    return codes, n_labels


# --- fixtures ------------------------------------------------------------------------------------


def vote(judge: str, label: str | None, request: str = "q", subject: str = "a") -> Vote:
    if label is None:
        return Vote.abstain(
            judge=judge, request_id=request, candidate_id=subject, kind="timeout", reason="slow"
        )
    return Vote(judge=judge, request_id=request, candidate_id=subject, label=label)


def ballot(request: str, labels: dict[str, str | None], gold: str | None = None) -> Ballot:
    votes = tuple(vote(j, lab, request) for j, lab in labels.items())
    return Ballot(request_id=request, subject="a", labels=VERDICT, votes=votes, gold=gold)


@pytest.fixture
def unanimous() -> Ballot:
    return ballot("u", {"x": "accept", "y": "accept", "z": "accept"}, gold="accept")


@pytest.fixture
def split() -> Ballot:
    return ballot("s", {"x": "accept", "y": "reject", "z": "reject"}, gold="reject")


@pytest.fixture
def all_abstain() -> Ballot:
    return ballot("n", {"x": None, "y": None, "z": None})


# --- Fleiss' kappa -------------------------------------------------------------------------------

# Fleiss (1971), as reproduced on Wikipedia's "Fleiss' kappa" page: 10 subjects, 14 raters,
# 5 categories; each row counts the raters per category. P-bar = 0.378, P_e = 0.213, kappa = 0.210.
FLEISS_1971 = np.array(
    [
        [0, 0, 0, 0, 14],
        [0, 2, 6, 4, 2],
        [0, 0, 3, 5, 6],
        [0, 3, 9, 2, 0],
        [2, 2, 8, 1, 1],
        [7, 7, 0, 0, 0],
        [3, 2, 6, 3, 0],
        [2, 5, 3, 2, 2],
        [6, 5, 2, 1, 0],
        [0, 2, 2, 3, 7],
    ]
)


def test_fleiss_published_example() -> None:
    # Any rater-label matrix with these per-subject counts will do: repeat each category code.
    codes = np.stack([np.repeat(np.arange(5), row) for row in FLEISS_1971])
    assert codes.shape == (10, 14)
    assert (aggregate_raters(codes, n_cat=5)[0] == FLEISS_1971).all()
    kappa = fleiss_kappa(codes, 5)
    assert kappa is not None
    assert round(kappa, 3) == 0.210
    assert kappa == pytest.approx(sm_fleiss_kappa(FLEISS_1971), abs=1e-12)


@settings(max_examples=200, deadline=None)
@given(code_matrices(missing=False))
def test_fleiss_matches_statsmodels(data: tuple[np.ndarray, int]) -> None:
    codes, n_labels = data
    assert_same(fleiss_kappa(codes, n_labels), ref_fleiss(codes, n_labels))


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("shape", [(50, 3), (200, 5), (20, 2)])
@pytest.mark.parametrize("n_labels", [2, 3, 4])
def test_fleiss_with_missing_uses_complete_items(
    seed: int, shape: tuple[int, int], n_labels: int
) -> None:
    rng = np.random.default_rng(seed)
    codes = rng.integers(0, n_labels, size=shape)
    codes[rng.random(shape) < 0.05] = -1
    assert (codes < 0).any(axis=1).any()  # some items are dropped
    assert_same(fleiss_kappa(codes, n_labels), ref_fleiss(codes, n_labels))


def test_fleiss_undefined_cases() -> None:
    assert fleiss_kappa(np.zeros((5, 3), dtype=int), 2) is None  # one category: p_e == 1
    assert fleiss_kappa([[0], [1]], 2) is None  # one judge
    assert fleiss_kappa([[0, -1], [-1, 1]], 2) is None  # no complete item
    assert fleiss_kappa(np.empty((0, 3), dtype=int), 2) is None
    assert fleiss_kappa([[0, 0], [1, 1]], 2) == pytest.approx(1.0)
    with pytest.raises(ValueError):
        fleiss_kappa([[0, 2]], 2)


# --- Krippendorff's alpha ------------------------------------------------------------------------

# Krippendorff (2011), "Computing Krippendorff's Alpha-Reliability", section C (nominal data, any
# number of observers, missing values): observers A-D x 12 units, alpha = 0.743. 0 = missing.
KRIPPENDORFF_2011 = np.array(
    [
        [1, 2, 3, 3, 2, 1, 4, 1, 2, 0, 0, 0],
        [1, 2, 3, 3, 2, 2, 4, 1, 2, 5, 0, 3],
        [0, 3, 3, 3, 2, 3, 4, 2, 2, 5, 1, 0],
        [1, 2, 3, 3, 2, 4, 4, 1, 2, 5, 1, 0],
    ]
)


def test_alpha_published_example() -> None:
    codes = KRIPPENDORFF_2011.T - 1  # items x judges, values 1..5 -> codes 0..4, missing -> -1
    alpha = krippendorff_alpha(codes, 5)
    assert alpha is not None
    assert round(alpha, 3) == 0.743
    assert_same(alpha, ref_alpha(codes, 5))


@settings(max_examples=300, deadline=None)
@given(code_matrices())
def test_alpha_matches_krippendorff_package(data: tuple[np.ndarray, int]) -> None:
    codes, n_labels = data
    assert_same(krippendorff_alpha(codes, n_labels), ref_alpha(codes, n_labels))


@pytest.mark.parametrize("seed", range(5))
def test_alpha_large_random_with_missing(seed: int) -> None:
    rng = np.random.default_rng(seed)
    truth = rng.integers(0, 3, size=300)
    codes = np.where(rng.random((300, 4)) < 0.7, truth[:, None], rng.integers(0, 3, (300, 4)))
    codes[rng.random(codes.shape) < 0.3] = -1
    alpha = krippendorff_alpha(codes, 3)
    assert alpha is not None and alpha > 0.3  # the judges share a signal
    assert_same(alpha, ref_alpha(codes, 3))


def test_alpha_undefined_cases() -> None:
    assert krippendorff_alpha([[0, -1], [-1, 1]], 2) is None  # no pairable item
    assert krippendorff_alpha([[1, 1], [1, -1]], 2) is None  # one category
    assert krippendorff_alpha(np.empty((0, 2), dtype=int), 2) is None


@settings(max_examples=100, deadline=None)
@given(code_matrices(), st.randoms(use_true_random=False))
def test_alpha_and_fleiss_ignore_order_and_label_names(
    data: tuple[np.ndarray, int], rnd: random.Random
) -> None:
    codes, n_labels = data
    rows, cols, relabel = (list(range(n)) for n in (*codes.shape, n_labels))
    for order in (rows, cols, relabel):
        rnd.shuffle(order)
    mapped = np.where(codes >= 0, np.array(relabel)[codes], -1)[rows][:, cols]
    assert_same(krippendorff_alpha(mapped, n_labels), krippendorff_alpha(codes, n_labels))
    assert_same(fleiss_kappa(mapped, n_labels), fleiss_kappa(codes, n_labels))


# --- Cohen's kappa -------------------------------------------------------------------------------


def test_cohen_textbook_two_by_two() -> None:
    # 50 items: both yes 20, A yes / B no 5, A no / B yes 10, both no 15.
    # p_o = 35/50 = 0.7; p_e = 0.5 * 0.6 + 0.5 * 0.4 = 0.5; kappa = (0.7 - 0.5) / 0.5 = 0.4.
    a = np.array([1] * 20 + [1] * 5 + [0] * 10 + [0] * 15)
    b = np.array([1] * 20 + [0] * 5 + [1] * 10 + [0] * 15)
    assert cohen_kappa(a, b) == pytest.approx(0.4, abs=1e-12)


@settings(max_examples=200, deadline=None)
@given(code_matrices())
def test_cohen_matches_sklearn(data: tuple[np.ndarray, int]) -> None:
    codes, _ = data
    a, b = codes[:, 0], codes[:, 1]
    both = (a >= 0) & (b >= 0)
    if not both.any():
        assert cohen_kappa(a, b) is None
        return
    with warnings.catch_warnings():  # sklearn warns when kappa is undefined, then gives NaN
        warnings.simplefilter("ignore")
        ref = float(cohen_kappa_score(a[both], b[both]))
    assert_same(cohen_kappa(a, b), None if math.isnan(ref) else ref)


def test_cohen_matrix() -> None:
    codes = np.array([[0, 0, -1, 1], [1, 1, -1, 1], [0, 1, 1, 1], [1, 1, 1, 1]])
    matrix = cohen_kappa_matrix(codes, ["w", "x", "y", "z"])
    assert all(matrix[j][j] == 1.0 for j in "wxyz")
    assert matrix["w"]["x"] == matrix["x"]["w"]
    assert matrix["w"]["x"] == pytest.approx(cohen_kappa(codes[:, 0], codes[:, 1]))
    assert matrix["w"]["x"] == pytest.approx(0.5)
    assert matrix["x"]["z"] == pytest.approx(0.0)  # z is constant: its agreement is pure chance
    assert matrix["y"]["z"] is None  # both always 1 on common items: p_e == 1
    assert cohen_kappa_matrix([[0, -1], [-1, 1]], ["a", "b"])["a"]["b"] is None  # nothing common
    with pytest.raises(ValueError):
        cohen_kappa_matrix(codes, ["w", "x"])


# --- effective number of judges ------------------------------------------------------------------


def copying_panel(
    p_copy: float, n_judges: int = 5, n_items: int = 4000, seed: int = 0
) -> np.ndarray:
    """Judges that copy a shared base label with probability ``p_copy``, else guess uniformly."""
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 3, size=n_items)
    own = rng.integers(0, 3, size=(n_items, n_judges))
    return np.where(rng.random((n_items, n_judges)) < p_copy, base[:, None], own)


def test_effective_judges_identical_is_one() -> None:
    column = np.random.default_rng(1).integers(0, 3, size=100)
    assert effective_judges(np.tile(column[:, None], (1, 6))) == pytest.approx(1.0, abs=1e-12)


def test_effective_judges_independent_is_near_n() -> None:
    value = effective_judges(copying_panel(0.0, n_judges=5))
    assert value is not None and 4.9 < value <= 5.0


def test_effective_judges_decreases_with_shared_signal() -> None:
    values = [effective_judges(copying_panel(p)) for p in (0.0, 0.25, 0.5, 0.75, 1.0)]
    assert all(v is not None for v in values)
    assert values == sorted(values, reverse=True)  # type: ignore[type-var]
    assert len(set(values)) == len(values)
    assert values[-1] == pytest.approx(1.0)


def test_effective_judges_edge_cases() -> None:
    assert effective_judges([[0, 1], [1, 0], [0, 1], [1, 0]]) == pytest.approx(1.0)  # kappa -1
    assert effective_judges([[0, 0], [0, 0]]) is None  # nobody varies
    assert effective_judges(np.empty((0, 3), dtype=int)) is None
    # A constant judge is left out: two independent-ish varying judges and one constant one.
    codes = np.array([[0, 0, 1], [0, 1, 1], [1, 0, 1], [1, 1, 1]])
    assert effective_judges(codes) == pytest.approx(2.0)


@settings(max_examples=200, deadline=None)
@given(code_matrices())
def test_effective_judges_between_one_and_informative_judges(
    data: tuple[np.ndarray, int],
) -> None:
    codes, _ = data
    value = effective_judges(codes)
    informative = sum(np.unique(c[c >= 0]).size >= 2 for c in codes.T)
    if informative == 0:
        assert value is None
    else:
        assert value is not None and 1.0 - 1e-9 <= value <= informative + 1e-9


# --- per judge, accuracy -------------------------------------------------------------------------


def test_per_judge_and_accuracy_hand_table() -> None:
    codes = np.array(
        [  # x   y   z
            [0, 0, -1],
            [1, 0, 1],
            [1, 1, -1],
            [0, -1, 0],
        ]
    )
    decided = np.array([0, 1, -1, 0])
    gold = np.array([0, 0, 1, -1])
    stats = per_judge(codes, ["x", "y", "z"], decided, gold)
    assert stats["x"] == {
        "n_votes": 4,
        "abstention_rate": 0.0,
        "agreement_with_consensus": 1.0,  # rows 0, 1, 3
        "accuracy": pytest.approx(2 / 3),  # rows 0, 1, 2: right, wrong, right
    }
    assert stats["y"]["abstention_rate"] == pytest.approx(0.25)
    assert stats["y"]["agreement_with_consensus"] == pytest.approx(0.5)  # rows 0, 1
    assert stats["y"]["accuracy"] == pytest.approx(1.0)  # rows 0, 1, 2
    assert stats["z"]["abstention_rate"] == pytest.approx(0.5)
    assert stats["z"]["agreement_with_consensus"] == pytest.approx(1.0)  # rows 1, 3
    assert stats["z"]["accuracy"] == pytest.approx(0.0)  # row 1 only
    assert accuracy(decided, gold) == pytest.approx(1 / 3)  # row 2 undecided counts as wrong
    assert accuracy(decided, [-1, -1, -1, -1]) is None
    only_abstains = per_judge([[-1], [-1]], ["w"], [0, 0], [0, 0])["w"]
    assert only_abstains["abstention_rate"] == 1.0
    assert only_abstains["agreement_with_consensus"] is None and only_abstains["accuracy"] is None
    with pytest.raises(ValueError):
        per_judge(codes, ["x", "y", "z"], decided[:2], gold)


# --- from ballots --------------------------------------------------------------------------------


def test_label_matrix_maps_abstentions_and_absences_to_missing(
    unanimous: Ballot, split: Ballot, all_abstain: Ballot
) -> None:
    partial = ballot("p", {"y": "reject", "x": None})  # z absent, x abstains
    matrix = label_matrix([unanimous, split, all_abstain, partial])
    assert isinstance(matrix, LabelMatrix)
    assert matrix.judges == ("x", "y", "z")
    assert matrix.labels == VERDICT
    assert matrix.items == (("u", "a"), ("s", "a"), ("n", "a"), ("p", "a"))
    assert matrix.codes.tolist() == [[0, 0, 0], [0, 1, 1], [-1, -1, -1], [-1, 1, -1]]
    assert not matrix.codes.flags.writeable
    chosen = label_matrix([split], judges=["z", "w"])  # w never votes; x and y are ignored
    assert chosen.codes.tolist() == [[1, -1]]


def test_label_matrix_pairwise_and_invalid_votes() -> None:
    def pw(request: str, ids: tuple[str, ...], labels: dict[str, str]) -> Ballot:
        votes = tuple(vote(j, lab, request, PAIRWISE_SUBJECT) for j, lab in labels.items())
        return Ballot(request_id=request, subject=PAIRWISE_SUBJECT, labels=ids, votes=votes)

    matrix = label_matrix(
        [pw("q1", ("a", "b"), {"x": "b", "y": "c"}), pw("q2", ("c", "a"), {"x": "c", "y": "a"})]
    )
    assert matrix.labels == ("a", "b", "c")
    assert matrix.codes.tolist() == [[1, -1], [2, 0]]  # "c" is not a candidate of q1
    assert matrix.encode("c") == 2 and matrix.encode(None) == -1 and matrix.encode("zz") == -1


def test_label_matrix_rejects_double_votes() -> None:
    twice = Ballot(
        request_id="q", subject="a", labels=VERDICT, votes=(vote("x", "accept"), vote("x", None))
    )
    with pytest.raises(ValueError, match="twice"):
        label_matrix([twice])
    with pytest.raises(ValueError, match="unique"):
        label_matrix([], judges=["x", "x"])


def test_run_stats_wraps_the_functions(
    unanimous: Ballot, split: Ballot, all_abstain: Ballot
) -> None:
    tilted = ballot("t", {"x": "reject", "y": "reject", "z": "accept"})
    ballots = [unanimous, split, all_abstain, tilted]
    stats = run_stats(ballots, {(b.request_id, b.subject): "accept" for b in ballots})
    matrix = label_matrix(ballots)
    assert isinstance(stats, RunStats)
    assert stats.n_items == 4
    assert stats.fleiss_kappa == fleiss_kappa(matrix.codes, 2)
    assert stats.krippendorff_alpha == krippendorff_alpha(matrix.codes, 2)
    assert stats.effective_judges == effective_judges(matrix.codes)
    assert stats.cohen_kappa == cohen_kappa_matrix(matrix.codes, ["x", "y", "z"])
    assert stats.fleiss_kappa is not None and stats.krippendorff_alpha is not None
    empty = run_stats([unanimous], {})  # one category only: everything undefined, no NaN
    assert empty.fleiss_kappa is None and empty.krippendorff_alpha is None
    assert empty.effective_judges is None and empty.cohen_kappa["x"]["y"] is None
    assert RunStats.model_validate_json(empty.model_dump_json()) == empty


def test_judge_summaries_from_ballots(
    unanimous: Ballot, split: Ballot, all_abstain: Ballot
) -> None:
    decisions = {("u", "a"): "accept", ("s", "a"): "reject"}  # ("n", "a") undecided
    stats = judge_summaries([unanimous, split, all_abstain], decisions)
    assert stats["x"]["abstention_rate"] == pytest.approx(1 / 3)
    assert stats["x"]["agreement_with_consensus"] == pytest.approx(0.5)
    assert stats["x"]["accuracy"] == pytest.approx(0.5)  # gold accept, reject
    assert stats["y"]["accuracy"] == pytest.approx(1.0)
