"""The progress line's rate and time left: the recent pace of each kind of work.

A run's work is of four kinds that go at very different speeds: warm-up steps (acting
at random, no update), learning steps (every member's update), phases and the time
training waits for evaluations. ``Pace`` keeps the latest measurement of each (the
first includes compiling; the latest is what the rest will cost) and estimates the time
left as the sum over kinds of what remains of it times its latest cost. A kind still
to come that has not been timed yet makes the estimate unknown (None): the warm-up's
speed says nothing of learning's, which is several times slower.
"""

from __future__ import annotations

import dataclasses
from typing import Sequence

from piekd_mjx import schedule
from piekd_mjx.config import Config


@dataclasses.dataclass
class Pace:
  """The latest seconds per warm-up step, learning step, phase and evaluation wait."""

  warmup: float | None = None
  learning: float | None = None
  phase: float | None = None
  evaluation_wait: float | None = None

  def chunk(self, num_steps: int, learn: bool, seconds: float) -> float:
    """Records a chunk of ``num_steps`` steps; returns its rate in steps per second."""
    per_step = seconds / max(num_steps, 1)
    if learn:
      self.learning = per_step
    else:
      self.warmup = per_step
    return 1.0 / max(per_step, 1e-12)

  def time_left(self, configs: Sequence[Config], step: int) -> float | None:
    """Seconds until the group of ``configs`` ends after ``step``, None when a kind of
    work that remains has not been timed yet."""
    config = configs[0]
    warmup = max(config.warmup_steps - step, 0)
    learning = config.total_steps - max(step, config.warmup_steps)
    events = schedule.group_events(configs, step)
    phases = sum(event.phase for event, _ in events)
    evaluations = sum(event.evaluate for event, _ in events)
    parts = [(warmup, self.warmup), (learning, self.learning), (phases, self.phase),
             (evaluations, self.evaluation_wait)]
    if any(count > 0 and cost is None for count, cost in parts):
      return None
    return sum(count * cost for count, cost in parts if count > 0)
