"""The host loop's state between chunks, as a checkpoint's host object holds it.

A checkpoint (``checkpoint.py``) holds the whole ``TrainState`` and, beside it, this
``Progress`` as JSON: the step, the loss sums' count since the last evaluation, each
run's last phase's metrics and step, the wall clock, and how the lanes were split over
devices and processes (a resume must split them alike). ``PENDING_EVALUATION`` is the
key under which the host object keeps the records of an evaluation still running.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from piekd_mjx import checkpoint as checkpoint_lib

# The key of a checkpoint's host object that holds the record of a pending evaluation.
PENDING_EVALUATION = 'pending_evaluation'


@dataclasses.dataclass(frozen=True)
class Progress:
  """The host loop's state between chunks; checkpointed beside the ``TrainState``."""

  step: int = 0  # environment steps taken by every lane
  trained_steps: int = 0  # training steps since the last evaluation (their SAC metric
  # sums are TrainState.sums)
  phase_metrics: tuple[dict[str, np.ndarray], ...] = (
      {},)  # each run's metrics of its last phase, leaves [S, ...]
  phase_step: tuple[int | None, ...] = (None,)  # each run's step of its last phase
  last_eval_step: int = 0
  wall_time: float = 0.0  # seconds the group has trained for, over all its processes
  devices: int = 1  # the devices its lanes are split over (sharding.lane_mesh)
  processes: int = 1  # the processes that hold those devices (processes.py)

  @classmethod
  def start(cls, num_runs: int, devices: int = 1, num_processes: int = 1) -> Progress:
    return cls(phase_metrics=({},) * num_runs, phase_step=(None,) * num_runs,
               devices=devices, processes=num_processes)

  def to_json(self) -> dict[str, Any]:
    return {'step': self.step, 'trained_steps': self.trained_steps,
            'phase_metrics': [checkpoint_lib.arrays_to_json(m) for m in self.phase_metrics],
            'phase_step': list(self.phase_step), 'last_eval_step': self.last_eval_step,
            'wall_time': self.wall_time, 'devices': self.devices,
            'processes': self.processes}

  @classmethod
  def from_json(cls, host: dict[str, Any]) -> Progress:
    return cls(step=int(host['step']), trained_steps=int(host['trained_steps']),
               phase_metrics=tuple(checkpoint_lib.arrays_from_json(m)
                                   for m in host['phase_metrics']),
               phase_step=tuple(host['phase_step']),
               last_eval_step=int(host['last_eval_step']),
               wall_time=float(host['wall_time']), devices=int(host.get('devices', 1)),
               processes=int(host.get('processes', 1)))
