"""The report's interval estimates (piekd_mjx/statistics.py) against rliable and scipy."""

import numpy as np
import pytest
from rliable import metrics
from scipy import stats

from piekd_mjx import statistics as st


@pytest.mark.parametrize('shapes', [((3, 1), (3, 1)), ((5, 4), (3, 4)), ((10, 5), (10, 5))])
def test_improvement_is_rliables_probability_of_improvement(shapes):
  rng = np.random.default_rng(0)
  x = np.round(rng.normal(size=shapes[0]), 1)  # rounded: ties occur
  y = np.round(rng.normal(size=shapes[1]), 1)
  assert st.improvement(x, y) == pytest.approx(metrics.probability_of_improvement(x, y))


def test_improvement_per_column_is_one_statistic_per_evaluation():
  rng = np.random.default_rng(1)
  x, y = rng.normal(size=(5, 7)), rng.normal(size=(4, 7))
  value, low, high = st.probability_of_improvement_per_column(x, y, 200)
  for t in range(7):
    assert value[t] == pytest.approx(
        metrics.probability_of_improvement(x[:, t:t + 1], y[:, t:t + 1]))
  assert np.all(low <= value) and np.all(value <= high)


def test_intervals_are_deterministic_and_leave_numpys_generator_alone():
  x = np.random.default_rng(2).normal(size=(5, 3))
  np.random.seed(123)
  expected = np.random.random()
  np.random.seed(123)
  first = st.mean(x, 500)
  assert np.random.random() == expected
  assert st.mean(x, 500) == first
  assert first.low < first.value < first.high and first.seeds == 5 and first.tasks == 3


def test_the_mean_difference_is_paired_by_seed():
  x = np.random.default_rng(3).normal(size=(5, 2)) * 100
  d = st.mean_difference(x + 1.0, x, 500)
  assert (d.value, d.low, d.high) == pytest.approx((1.0, 1.0, 1.0))
  # Unequal seed counts: the common seeds.
  assert st.mean_difference(x[:4] + 1.0, x, 500).seeds == 4


def test_a_percentile_interval_of_three_seeds_is_about_their_range():
  x = np.array([[1.0], [2.0], [6.0]])
  interval = st.mean(x, 2000)
  assert interval.low == pytest.approx(x.min(), abs=0.4)
  assert interval.high == pytest.approx(x.max(), abs=0.7)
  assert not interval.reliable and interval.text().endswith('⚠')
  assert st.mean(np.arange(5.0)[:, None], 200).reliable


def test_one_seed_has_no_interval():
  one = st.mean(np.array([[4.0]]), 200)
  assert one.value == 4.0 and np.isnan(one.low) and np.isnan(one.high)


def test_proportion_is_clopper_pearson():
  got = st.proportion(4, 5)
  expected = stats.binomtest(4, 5).proportion_ci(0.95, 'exact')
  assert (got.value, got.low, got.high) == pytest.approx((0.8, expected.low, expected.high))


def test_iqm_and_profile_follow_their_definitions():
  scores = np.arange(40.0).reshape(10, 2, 2)  # [S, N, T]
  iqm, low, high = st.iqm_per_column(scores, 200)
  for t in range(2):
    assert iqm[t] == pytest.approx(stats.trim_mean(scores[:, :, t].ravel(), 0.25))
  assert np.all(low <= iqm) and np.all(iqm <= high)
  profile, _, _ = st.performance_profile(scores[:, :, 0], np.array([-1.0, 10.0, 100.0]), 200)
  assert profile.tolist() == [1.0, np.mean(scores[:, :, 0] > 10.0), 0.0]
