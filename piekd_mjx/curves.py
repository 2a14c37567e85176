"""A figure's evaluation curves as read from its runs, and the per-seed scores that the
report's statistics and claims are made of.

A ``Curve`` is one arm on one task: the best and the worst member's evaluation return
[T, S] at the run's evaluation steps [T]. The scores (one number per seed, [S]):

* ``area``: the mean return over training, the trapezoidal integral of the curve in
  steps over the steps it spans (sample efficiency: higher earlier counts).
* ``converged``: the mean of the last ``converged_count(T)`` evaluations, at least
  three (or all T when fewer) and 10% of them at the paper's 100 evaluations.
* ``reach_fraction``: the first evaluation from which the seed stays at or above a
  level until the end, as a fraction of the run's total_steps (inf when never).
"""

from __future__ import annotations

import dataclasses
import math
import os

import numpy as np

from piekd_mjx import records as records_lib
from piekd_mjx import rundir
from piekd_mjx import schedule

CONVERGED_MIN_EVALUATIONS = 3
CONVERGED_FRACTION = 0.1


@dataclasses.dataclass(frozen=True)
class Curve:
  """One arm on one task: the evaluations of its run, per seed."""

  arm: str  # the figure's label of the arm
  env: str
  steps: np.ndarray  # [T] int, the evaluation steps
  best: np.ndarray  # [T, S] the best member's return per seed
  worst: np.ndarray  # [T, S] the worst member's return per seed
  total_steps: int  # what the figure asks of the run
  run: str  # the run's directory name
  warmup_steps: int
  first_phase: int | None  # the step of the run's first phase; None without phases

  @property
  def partial(self) -> bool:
    return not len(self.steps) or int(self.steps[-1]) < self.total_steps

  @property
  def num_seeds(self) -> int:
    return self.best.shape[1]


def read_curve(root: str, cell: dict) -> Curve | None:
  """The ``Curve`` of one cell of a figure (``figures/<name>.json``); None when its run
  has no evaluation record or no readable config.json yet."""
  run_dir = os.path.join(root, 'runs', cell['run'])
  try:
    config = rundir.read_config(run_dir)
  except (OSError, ValueError, TypeError):
    return None
  by_step = {r['step']: r for r in records_lib.read(run_dir)
             if r['step'] <= cell['total_steps'] and 'eval/return_best' in r}
  if not by_step:
    return None
  steps = sorted(by_step)
  as_array = lambda key: np.array([[math.nan if v is None else v for v in by_step[t][key]]
                                   for t in steps], np.float64)
  phases = schedule.phase_steps(config)
  return Curve(arm=cell['arm'], env=cell['env'], steps=np.array(steps),
               best=as_array('eval/return_best'), worst=as_array('eval/return_worst'),
               total_steps=cell['total_steps'], run=cell['run'],
               warmup_steps=config.warmup_steps, first_phase=phases[0] if phases else None)


def area(steps: np.ndarray, returns: np.ndarray) -> np.ndarray:
  """The mean return over training per seed: [T, S] -> [S] (the return itself with one
  evaluation)."""
  if len(steps) < 2:
    return returns[-1] if len(steps) else np.full(returns.shape[1:], np.nan)
  widths = np.diff(steps).astype(np.float64)[:, None]
  return np.sum(widths * (returns[1:] + returns[:-1]) / 2, axis=0) / (steps[-1] - steps[0])


def converged_count(num_evaluations: int) -> int:
  """How many of the last evaluations make a converged return."""
  wanted = max(CONVERGED_MIN_EVALUATIONS, math.ceil(CONVERGED_FRACTION * num_evaluations))
  return min(num_evaluations, wanted)


def converged(returns: np.ndarray) -> np.ndarray:
  """Each seed's converged return: [T, S] -> [S]."""
  return np.mean(returns[-converged_count(len(returns)):], axis=0)


def reach_fraction(curve: Curve, level: float) -> np.ndarray:
  """Per seed [S], the first evaluation step from which the best member stays at or
  above ``level`` to the last evaluation, over total_steps; inf when it never does."""
  fractions = np.full(curve.num_seeds, np.inf)
  for s in range(curve.num_seeds):
    below = np.nonzero(~(curve.best[:, s] >= level))[0]
    first = 0 if not below.size else below[-1] + 1
    if first < len(curve.steps):
      fractions[s] = curve.steps[first] / curve.total_steps
  return fractions
