"""Fleiss' and Cohen's kappa against statsmodels' test fixtures, ported as data (tables and
expected kappas only, no code; statsmodels is not called here).

Source: statsmodels/statsmodels, BSD-3-Clause, commit 82c59e378bdf,
``statsmodels/stats/tests/test_inter_rater.py``:

* ``table1`` (Fleiss 1971 as on Wikipedia's "Fleiss' kappa" page: 10 subjects, 14 raters,
  5 categories) with kappa 0.210 (``test_fleiss_kappa``, ``decimal=3``);
* ``diagnoses`` (Fleiss 1971, 30 patients x 6 psychiatrists, 5 diagnoses) with kappa 0.4302445
  from R's ``irr::kappam.fleiss`` (``test_fleiss_kappa_irr``, ``decimal=7``);
* the fixed-marginal (Fleiss) kappas of ``test_fleis_randolph`` (Randolph's online
  calculator, ``atol=6e-6``);
* ``table10`` with the unweighted kappa 0.4842 from SAS (``TestUnweightedCohens``,
  ``decimal=4``) and raters 2 and 3 of ``anxiety`` with -0.006289308 from R's ``irr::kappa2``
  (``test_cohens_kappa_irr``, ``decimal=6``).

``assert_almost_equal(decimal=d)`` means ``|actual - desired| < 1.5 * 10**-d``: that is the
tolerance used here. Matched conventions: statsmodels takes a subjects x categories count table
(Fleiss) or a rater x rater contingency table (Cohen); ours takes votes, so each table is
expanded into a label matrix with the same counts (Fleiss' kappa does not depend on which rater
gave which vote). Category codes are the table's column positions (``diagnoses`` and ``anxiety``
values 1..k are codes 0..k-1).

Not ported, by design: Randolph's free-marginal kappa (``method="unif"``/``"randolph"``: we
compute Fleiss' fixed-marginal kappa only); the fractional table ``[[6.99, 0.01], ...]`` (votes
are whole); weighted Cohen's kappa (linear, quadratic, Toeplitz weights: our labels are nominal);
the standard errors, z values and p-values (we report the coefficient only).
"""

from __future__ import annotations

import numpy as np
import pytest

from consensus.stats import cohen_kappa, cohen_kappa_matrix, fleiss_kappa, run_stats
from consensus.types import Ballot
from tests.conftest import ballot


def decimal(d: int) -> float:
    """numpy's ``assert_almost_equal(decimal=d)`` tolerance."""
    return 1.5 * 10.0**-d


TABLE1 = [
    [0, 0, 0, 0, 14], [0, 2, 6, 4, 2], [0, 0, 3, 5, 6], [0, 3, 9, 2, 0], [2, 2, 8, 1, 1],
    [7, 7, 0, 0, 0], [3, 2, 6, 3, 0], [2, 5, 3, 2, 2], [6, 5, 2, 1, 0], [0, 2, 2, 3, 7],
]
DIAGNOSES = [
    [4, 4, 4, 4, 4, 4], [2, 2, 2, 5, 5, 5], [2, 3, 3, 3, 3, 5], [5, 5, 5, 5, 5, 5],
    [2, 2, 2, 4, 4, 4], [1, 1, 3, 3, 3, 3], [3, 3, 3, 3, 5, 5], [1, 1, 3, 3, 3, 4],
    [1, 1, 4, 4, 4, 4], [5, 5, 5, 5, 5, 5], [1, 4, 4, 4, 4, 4], [1, 2, 4, 4, 4, 4],
    [2, 2, 2, 3, 3, 3], [1, 4, 4, 4, 4, 4], [2, 2, 4, 4, 4, 5], [3, 3, 3, 3, 3, 5],
    [1, 1, 1, 4, 5, 5], [1, 1, 1, 1, 1, 2], [2, 2, 4, 4, 4, 4], [1, 3, 3, 5, 5, 5],
    [5, 5, 5, 5, 5, 5], [2, 4, 4, 4, 4, 4], [2, 2, 4, 5, 5, 5], [1, 1, 4, 4, 4, 4],
    [1, 4, 4, 4, 4, 5], [2, 2, 2, 2, 2, 4], [1, 1, 1, 1, 5, 5], [2, 2, 4, 4, 4, 4],
    [1, 3, 3, 3, 3, 3], [5, 5, 5, 5, 5, 5],
]
# (count table, fixed-marginal kappa) from ``test_fleis_randolph``
RANDOLPH = [
    ([[7, 1], [3, 5]], 0.161905),
    ([[7, 0], [0, 7]], 1.0),
    ([[6, 1, 0], [0, 7, 0]], 0.708333),
]
TABLE10 = [[0, 4, 1], [0, 8, 0], [0, 1, 5]]
# ``anxiety``: 20 subjects rated 1..6 by three raters (statsmodels stores it column-major)
ANXIETY = np.array([
    3, 3, 3, 4, 5, 5, 2, 3, 5, 2, 2, 6, 1, 5, 2, 2, 1, 2, 4, 3,
    3, 6, 4, 6, 2, 4, 2, 4, 3, 3, 2, 3, 3, 3, 2, 2, 1, 3, 3, 4,
    2, 1, 4, 4, 3, 2, 1, 6, 1, 1, 1, 2, 3, 3, 1, 1, 3, 3, 2, 2,
]).reshape(20, 3, order="F")


def _from_counts(table: list[list[int]]) -> np.ndarray:
    """A label matrix whose row ``i`` has ``table[i][k]`` votes for code ``k``."""
    return np.stack([np.repeat(np.arange(len(row)), row) for row in table])


def _from_contingency(table: list[list[int]]) -> tuple[np.ndarray, np.ndarray]:
    """Two raters' codes with ``table[a][b]`` items rated ``a`` by the first, ``b`` by the second."""
    cells = [(a, b) for a, row in enumerate(table) for b, n in enumerate(row) for _ in range(n)]
    first, second = zip(*cells, strict=True)
    return np.array(first), np.array(second)


# --- Fleiss' kappa -------------------------------------------------------------------------------


def test_fleiss_wikipedia_table() -> None:
    codes = _from_counts(TABLE1)
    assert codes.shape == (10, 14)
    assert fleiss_kappa(codes, 5) == pytest.approx(0.210, abs=decimal(3))


def test_fleiss_diagnoses_matches_irr() -> None:
    codes = np.array(DIAGNOSES) - 1
    assert fleiss_kappa(codes, 5) == pytest.approx(0.4302445, abs=decimal(7))


def test_fleiss_diagnoses_from_ballots() -> None:
    """The same fixture the way a run sees it: 30 ballots, six judges, diagnoses as names."""
    space = ("1", "2", "3", "4", "5")
    ballots: list[Ballot] = [ballot(*map(str, row), space=space, request_id=f"p{n}")
                             for n, row in enumerate(DIAGNOSES)]
    assert run_stats(ballots).fleiss_kappa == pytest.approx(0.4302445, abs=decimal(7))


@pytest.mark.parametrize(("table", "kappa"), RANDOLPH, ids=[str(t) for t, _ in RANDOLPH])
def test_fleiss_fixed_marginal_randolph(table: list[list[int]], kappa: float) -> None:
    assert fleiss_kappa(_from_counts(table), len(table[0])) == pytest.approx(kappa, abs=6e-6)


# --- Cohen's kappa -------------------------------------------------------------------------------


def test_cohen_unweighted_sas_table() -> None:
    first, second = _from_contingency(TABLE10)
    assert first.size == 19
    assert cohen_kappa(first, second) == pytest.approx(0.4842, abs=decimal(4))


def test_cohen_unweighted_anxiety_matches_irr() -> None:
    """Raters 2 and 3 (no one used 5: irr drops the empty level, which unweighted kappa
    ignores anyway)."""
    codes = ANXIETY - 1
    assert cohen_kappa(codes[:, 1], codes[:, 2]) == pytest.approx(-0.006289308, abs=decimal(6))
    matrix = cohen_kappa_matrix(codes, ["r1", "r2", "r3"])
    assert matrix["r2"]["r3"] == pytest.approx(-0.006289308, abs=decimal(6))
    assert matrix["r3"]["r2"] == matrix["r2"]["r3"]

