"""Krippendorff's alpha (nominal) against fast-krippendorff's doctest and test fixtures: the
numbers only (reliability data and expected alphas), no code; the package is not called here.

Source: pln-fing-udelar/fast-krippendorff, GPL-3.0 (numbers and published examples ported, no
code copied):

* the docstring of ``alpha`` in ``krippendorff/krippendorff.py`` (commit b1eb616cadc1,
  2026-04-01): Wikipedia's "Krippendorff's alpha" example as reliability data and as value
  counts (nominal 0.691358) and Krippendorff (2011), "Computing Krippendorff's Alpha-
  Reliability", p. 8 (nominal 0.743, with numbers and with the string labels);
* ``tests/test_krippendorff.py`` (commit 13c1938f1297): ``test_string_labels_nominal``
  (0.722222), ``test_perfect_agreement`` (1.0), ``test_error_single_value_in_domain`` and
  ``test_error_insufficient_coders_per_unit`` (undefined);
* ``tests/test_dict_input.py`` (commit 089bfbb8d64b): ``test_dict_input_string_labels`` (0.0),
  ``test_standard_array_and_value_counts`` (1.0 from data and from counts);
* ``tests/test_subsamples.py`` (commit 17a5c164d0ec):
  ``test_subsample_zero_disagreement_equal_total`` (see below).

Tolerances are the peer's: ``round(alpha, 6) == x`` is ``abs=5e-7``, ``round(alpha, 3) == x``
is ``abs=5e-4``, ``np.isclose`` is ``rel=1e-5, abs=1e-8``. Matched conventions: fast-krippendorff
takes coders x units with ``nan`` for missing; ours takes items x judges with ``-1``, so the data
are transposed and values ``1..k`` become codes ``0..k-1``; string data go through ballots and
:func:`consensus.stats.label_matrix`. A unit with fewer than two values is unpairable and drops
out in both. Undefined alphas: the peer raises ``ValueError``, ours is None (the documented
convention of ``consensus.stats``: an undefined statistic is None, never an exception or NaN).
Different by design: with a ``value_domain`` wider than the data and every value equal (``[[0,
0], [0, 0]]`` over ``[0, 1]``), the peer returns 1.0 where ours is None: observed and expected
disagreement are both 0, the 0/0 our docstring defines as undefined (data without variation
cannot show agreement beyond chance); the peer raises on the same data without a domain.

Not ported: the interval (0.810845), ordinal (0.815), ratio (0.797, and 1.0 with zeros) and
custom-metric (0.761905) alphas, circular/bipolar metrics and the subsample reference
(``all_reliability_data``: 0.720): ``consensus.stats.krippendorff_alpha`` is nominal only, since
our labels are nominal categories (verdicts, candidate ids).
"""

from __future__ import annotations

import numpy as np
import pytest

from consensus.stats import krippendorff_alpha, run_stats
from tests.conftest import ballot

NAN = np.nan
ROUND6 = 5e-7  # round(x, 6) == y
ROUND3 = 5e-4  # round(x, 3) == y

# coders x units, as the peer writes them
WIKIPEDIA = [
    [NAN, NAN, NAN, NAN, NAN, 3, 4, 1, 2, 1, 1, 3, 3, NAN, 3],
    [1, NAN, 2, 1, 3, 3, 4, 3, NAN, NAN, NAN, NAN, NAN, NAN, NAN],
    [NAN, NAN, 2, 1, 3, 4, 4, NAN, 2, 1, 1, 3, 3, NAN, 4],
]
# units x values 1..4: the same data as value counts
WIKIPEDIA_COUNTS = [
    [1, 0, 0, 0], [0, 0, 0, 0], [0, 2, 0, 0], [2, 0, 0, 0], [0, 0, 2, 0], [0, 0, 2, 1],
    [0, 0, 0, 3], [1, 0, 1, 0], [0, 2, 0, 0], [2, 0, 0, 0], [2, 0, 0, 0], [0, 0, 2, 0],
    [0, 0, 2, 0], [0, 0, 0, 0], [0, 0, 1, 1],
]
KRIPPENDORFF_2011 = [
    [1, 2, 3, 3, 2, 1, 4, 1, 2, NAN, NAN, NAN],
    [1, 2, 3, 3, 2, 2, 4, 1, 2, 5, NAN, 3],
    [NAN, 3, 3, 3, 2, 3, 4, 2, 2, 5, 1, NAN],
    [1, 2, 3, 3, 2, 4, 4, 1, 2, 5, 1, NAN],
]
LEVELS = ("very low", "low", "mid", "high", "very high")  # the string version's values 1..5
STRINGS_NOMINAL: list[list[str | None]] = [
    ["pos", "neg", "neu", None],
    ["pos", "neg", "neu", "pos"],
    ["pos", "neg", "pos", "pos"],
]


def _codes(coders_by_units: list[list[float]]) -> np.ndarray:
    """Peer layout (coders x units, values 1..k, nan missing) -> ours (items x judges, 0..k-1)."""
    data = np.array(coders_by_units, dtype=float).T
    return np.where(np.isnan(data), -1, data - 1).astype(np.int64)


def _codes_from_counts(counts: list[list[int]]) -> np.ndarray:
    """Units x values counts -> items x judges codes (any assignment of votes to judges)."""
    width = max(sum(row) for row in counts)
    return np.array([np.pad(np.repeat(np.arange(len(row)), row), (0, width - sum(row)),
                            constant_values=-1) for row in counts])


def _alpha_from_names(coders_by_units: list[list[str | None]], space: tuple[str, ...]) -> float:
    """Alpha the way a run computes it: one ballot per unit, one judge per coder."""
    ballots = [ballot(*unit, space=space, request_id=f"u{n}")
               for n, unit in enumerate(zip(*coders_by_units, strict=True))]
    alpha = run_stats(ballots).krippendorff_alpha
    assert alpha is not None
    return alpha


def test_wikipedia_reliability_data() -> None:
    assert krippendorff_alpha(_codes(WIKIPEDIA), 4) == pytest.approx(0.691358, abs=ROUND6)


def test_wikipedia_value_counts() -> None:
    codes = _codes_from_counts(WIKIPEDIA_COUNTS)
    assert krippendorff_alpha(codes, 4) == pytest.approx(0.691358, abs=ROUND6)


def test_krippendorff_2011_numbers() -> None:
    assert krippendorff_alpha(_codes(KRIPPENDORFF_2011), 5) == pytest.approx(0.743, abs=ROUND3)


def test_krippendorff_2011_strings() -> None:
    names: list[list[str | None]] = [[None if np.isnan(v) else LEVELS[int(v) - 1] for v in coder]
                                     for coder in KRIPPENDORFF_2011]
    assert _alpha_from_names(names, LEVELS) == pytest.approx(0.743, abs=ROUND3)


def test_string_labels_nominal() -> None:
    got = _alpha_from_names(STRINGS_NOMINAL, ("pos", "neg", "neu"))
    assert got == pytest.approx(0.722222, abs=ROUND6)


def test_dict_input_string_labels() -> None:
    """c1: doc1 pos, doc2 neg; c2: doc1 pos, doc2 pos -> 0.0."""
    data: list[list[str | None]] = [["pos", "neg"], ["pos", "pos"]]
    got = _alpha_from_names(data, ("pos", "neg"))
    assert got == pytest.approx(0.0, rel=1e-5, abs=1e-8)


@pytest.mark.parametrize(("codes", "n_labels"), [
    (_codes([[1, 2, 3, 4]] * 3), 4),  # test_perfect_agreement
    (_codes([[1, 2], [1, 2]]), 2),  # test_standard_array_and_value_counts, array path
    (_codes_from_counts([[2, 0], [0, 2]]), 2),  # ... and value-counts path
], ids=["perfect_agreement", "array", "value_counts"])
def test_perfect_agreement(codes: np.ndarray, n_labels: int) -> None:
    assert krippendorff_alpha(codes, n_labels) == pytest.approx(1.0, rel=1e-5, abs=1e-8)


@pytest.mark.parametrize(("codes", "n_labels"), [
    (_codes([[1, 1], [1, 1]]), 1),  # test_error_single_value_in_domain
    (_codes([[1, NAN], [NAN, 2]]), 2),  # test_error_insufficient_coders_per_unit
], ids=["single_value", "no_pairable_unit"])
def test_undefined_is_none_where_the_peer_raises(codes: np.ndarray, n_labels: int) -> None:
    assert krippendorff_alpha(codes, n_labels) is None


def test_zero_disagreement_over_a_wider_domain_is_undefined_by_design() -> None:
    """``test_subsample_zero_disagreement_equal_total``: ``[[0, 0], [0, 0]]`` over the domain
    ``[0, 1]`` is 1.0 for the peer; 0/0, hence None, for us (see the module docstring)."""
    codes = np.zeros((2, 2), dtype=np.int64)  # values 0 -> code 0; code 1 exists but is unused
    assert krippendorff_alpha(codes, 2) is None
