"""Interval estimates across seeds and tasks, with rliable (Agarwal et al., "Deep
Reinforcement Learning at the Edge of the Statistical Precipice", NeurIPS 2021).

Scores are arrays [S, N, ...]: S seeds (runs) of N tasks, trailing axes such as the
evaluations [T]. Every interval is rliable's stratified bootstrap: seeds resampled with
replacement within each task, the tasks kept; the percentile method, 95%. rliable draws
its resamples from numpy's global generator, so each estimate seeds it (and puts its
state back after) and a report regenerates exactly.

A mean difference between two arms is *paired*: seed s of every arm of a figure starts
from the same base seed (``Config.seed``), so the difference is taken per seed (over the
common seeds 0 .. min - 1) and then resampled. The probability of improvement compares
every seed of one arm with every seed of the other (a Mann-Whitney statistic), which has
no pairing; rliable resamples the two arms independently.

With few seeds a percentile interval is too narrow: with 3 seeds the 95% interval of a
mean is about the seeds' range and covers the true mean about 75% of the time. An
interval of fewer than ``RELIABLE_SEEDS`` seeds is marked unreliable wherever printed.
"""

from __future__ import annotations

import dataclasses
import math
import warnings
from typing import Callable

import numpy as np

CONFIDENCE = 0.95
METHOD = 'percentile'
RELIABLE_SEEDS = 5
DEFAULT_RESAMPLES = 2000

# SAC's return at 1M steps from published runs (the middle of each range that the
# project's behaviour spec lists, docs/REPORT.md; inverted_pendulum's maximum). A
# normalised score is return / this, so 1.0 is published SAC at the paper's budget and
# 0 a policy that earns nothing.
SAC_1M_RETURN = {'hopper': 3300.0, 'walker2d': 4500.0, 'halfcheetah': 11000.0,
                 'ant': 5000.0, 'humanoid': 5000.0, 'inverted_pendulum': 1000.0}


@dataclasses.dataclass(frozen=True)
class Interval:
  """A point estimate with its interval, over ``seeds`` seeds of ``tasks`` tasks."""

  value: float
  low: float
  high: float
  seeds: int
  tasks: int = 1

  @property
  def reliable(self) -> bool:
    return self.seeds >= RELIABLE_SEEDS

  def text(self, digits: int = 1) -> str:
    """'v [lo, hi]' ('v' without an interval), with a warning mark when fewer than
    RELIABLE_SEEDS seeds."""
    if not math.isfinite(self.value):
      return 'n/a'
    body = f'{self.value:,.{digits}f}'
    if math.isfinite(self.low):
      body += f' [{self.low:,.{digits}f}, {self.high:,.{digits}f}]'
    return body if self.reliable else f'{body} ⚠'

  def above(self, level: float) -> bool:
    return self.low > level

  def below(self, level: float) -> bool:
    return self.high < level


def method_text(resamples: int) -> str:
  """How every interval of a report is made, in one phrase."""
  return (f'{CONFIDENCE:.0%} stratified bootstrap confidence interval over seeds '
          f'(rliable, {METHOD} method, {resamples:,} resamples)')


def _interval_estimates(scores, statistic: Callable[..., np.ndarray], resamples: int,
                        seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """rliable's point estimate and interval of ``statistic(*scores)`` (arrays); NaN
  intervals when an array has fewer than two seeds to resample."""
  if any(_degenerate(x) for x in scores):
    point = np.asarray(statistic(*scores), np.float64)
    return point, np.full_like(point, np.nan), np.full_like(point, np.nan)
  from rliable import library as rly  # pylint: disable=g-import-not-at-top
  state = np.random.get_state()
  np.random.seed(seed)
  try:
    with warnings.catch_warnings():
      warnings.simplefilter('ignore')  # arch's deprecation of RandomState
      points, intervals = rly.get_interval_estimates(
          {'x': scores}, statistic, reps=resamples, confidence_interval_size=CONFIDENCE,
          method=METHOD, random_state=np.random.RandomState(seed))
  finally:
    np.random.set_state(state)
  point = np.asarray(points['x'], np.float64)
  interval = np.asarray(intervals['x'], np.float64).reshape((2,) + point.shape)
  return point, interval[0], interval[1]


def _degenerate(scores: np.ndarray) -> bool:
  return scores.shape[0] < 2


def mean_per_column(scores: np.ndarray, resamples: int,
                    seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """The mean over seeds of scores [S, T] per column, and its interval, each [T]
  (NaN intervals with one seed)."""
  scores = np.asarray(scores, np.float64)
  return _interval_estimates((scores[:, None, :],), lambda x: x.mean(axis=(0, 1)),
                             resamples, seed)


def mean(scores: np.ndarray, resamples: int, seed: int = 0) -> Interval:
  """The mean over seeds and tasks of scores [S, N] and its interval."""
  scores = _as_runs(scores)
  point, low, high = _interval_estimates((scores,), np.mean, resamples, seed)
  return Interval(float(point), float(low), float(high), scores.shape[0], scores.shape[1])


def median(scores: np.ndarray, resamples: int, seed: int = 0) -> Interval:
  """The median over seeds of one task's scores [S] and its interval."""
  scores = np.asarray(scores, np.float64)
  point, low, high = _interval_estimates((scores[:, None],), np.median, resamples, seed)
  return Interval(float(point), float(low), float(high), len(scores))


def iqm_per_column(scores: np.ndarray, resamples: int,
                   seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """rliable's interquartile mean over seeds and tasks of scores [S, N, T] per column
  [T], and its interval."""
  from scipy import stats  # pylint: disable=g-import-not-at-top
  scores = np.asarray(scores, np.float64)

  def iqm(x: np.ndarray) -> np.ndarray:
    return stats.trim_mean(x.reshape(-1, x.shape[-1]), 0.25, axis=0)

  return _interval_estimates((scores,), iqm, resamples, seed)


def _as_runs(x: np.ndarray) -> np.ndarray:
  x = np.asarray(x, np.float64)
  return x.reshape(x.shape[0], -1)


def improvement(x: np.ndarray, y: np.ndarray) -> np.ndarray:
  """rliable's ``metrics.probability_of_improvement`` of x [S, N, ...] over y [S', N, ...]
  (per task the Mann-Whitney U over S x S' pairs, averaged over the tasks), computed
  for all trailing columns at once: [...]."""
  a, b = x[:, None], y[None, :]  # [S, 1, N, ...], [1, S', N, ...]
  return np.mean((a > b) + 0.5 * (a == b), axis=(0, 1, 2))


def probability_of_improvement(x: np.ndarray, y: np.ndarray, resamples: int,
                               seed: int = 0) -> Interval:
  """P(X > Y) + P(X = Y) / 2 of a seed of X against one of Y on the same task, averaged
  over tasks (rliable's probability of improvement), scores [S, N] and [S', N]."""
  x, y = _as_runs(x), _as_runs(y)
  seeds = min(x.shape[0], y.shape[0])
  point, low, high = _interval_estimates((x, y), improvement, resamples, seed)
  return Interval(float(point), float(low), float(high), seeds, x.shape[1])


def probability_of_improvement_per_column(
    x: np.ndarray, y: np.ndarray, resamples: int,
    seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """The probability of improvement of x [S, T] over y [S', T] (one task) per column
  [T]."""
  x = np.asarray(x, np.float64)[:, None, :]
  y = np.asarray(y, np.float64)[:, None, :]
  return _interval_estimates((x, y), improvement, resamples, seed)


def mean_difference(x: np.ndarray, y: np.ndarray, resamples: int, seed: int = 0) -> Interval:
  """The mean over tasks and seeds of x - y [S, N], paired: the difference of each common
  seed, resampled."""
  seeds = min(len(x), len(y))
  return mean(_as_runs(x[:seeds]) - _as_runs(y[:seeds]), resamples, seed)


def proportion(successes: int, trials: int) -> Interval:
  """A proportion with its exact (Clopper-Pearson) 95% interval."""
  from scipy import stats  # pylint: disable=g-import-not-at-top
  interval = stats.binomtest(successes, trials).proportion_ci(CONFIDENCE, 'exact')
  return Interval(successes / trials, float(interval.low), float(interval.high), trials)


def performance_profile(scores: np.ndarray, thresholds: np.ndarray, resamples: int,
                        seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """rliable's performance profile (score distribution) of one arm's scores [S, N]: the
  fraction of runs scoring above each threshold [M], with its interval."""
  from rliable import library as rly  # pylint: disable=g-import-not-at-top
  scores = np.asarray(scores, np.float64)
  profile = lambda x: rly.score_distributions(x, thresholds)
  return _interval_estimates((scores,), profile, resamples, seed)
