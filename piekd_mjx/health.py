"""A run's numerical health: where a loss, a member's state or a return went non-finite.

The checks return what they found (``Problem``: what, the earliest step, lane and
member) and the loop decides what to do with it (it stops the run before anything
more is saved: ``NonFiniteError``).
"""

from __future__ import annotations

import dataclasses
from typing import Callable, Mapping

import numpy as np


class NonFiniteError(Exception):
  """A loss, a member's state or a return became non-finite; nothing was saved."""


@dataclasses.dataclass(frozen=True)
class Problem:
  """The earliest non-finite ``what`` (losses, parameters, returns, ...)."""

  what: str
  step: int
  lane: int
  member: int


def first_nonfinite(finite: np.ndarray, what: str, step_of: Callable[[int, int], int]
                    ) -> Problem | None:
  """The earliest (step, lane, member) where ``finite`` [L, K] is False, or None;
  ``step_of(lane, member)`` is the step of an entry."""
  bad = list(zip(*np.nonzero(~np.asarray(finite, bool))))
  if not bad:
    return None
  step, lane, member = min((step_of(s, k), int(s), int(k)) for s, k in bad)
  return Problem(what, step, lane, member)


def of_chunk(metrics: Mapping[str, np.ndarray], step: int) -> Problem | None:
  """What the chunk that ended at ``step`` found non-finite: a loss on some step of it,
  or a member's state at its end (None: nothing)."""
  loss_step = np.asarray(metrics['health/nonfinite_loss_step'])  # [L, K]
  return (first_nonfinite(loss_step < 0, 'losses', lambda s, k: int(loss_step[s, k]))
          or first_nonfinite(np.asarray(metrics['health/finite_params']), 'parameters',
                             lambda s, k: step))


def error(problem: Problem, where: Callable[[int], str], good_checkpoint: str
          ) -> NonFiniteError:
  """The ``NonFiniteError`` of ``problem``; ``where`` names a lane (its run and seed)."""
  return NonFiniteError(f'non-finite {problem.what} at step {problem.step} in '
                        f'{where(problem.lane)}, member {problem.member}; the last good '
                        f'checkpoint is {good_checkpoint}')
