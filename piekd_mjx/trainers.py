"""The trainers of a sweep's runs, built once per config (or group) in this process.

JAX is imported here only when a trainer is asked for, so that a sweep that only plans
or reads its root does not start it.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Sequence

from piekd_mjx.config import Config


class Trainers:
  """The trainers of the sweep's runs, built once per config in this process."""

  def __init__(self):
    self._trainers: dict[Config, Any] = {}

  def trainer(self, config: Config):
    from piekd_mjx import programs as programs_lib  # pylint: disable=g-import-not-at-top
    key = dataclasses.replace(config, out_dir='')
    if key not in self._trainers:
      self._trainers[key] = programs_lib.make_trainer(key)
    return self._trainers[key]

  def group_trainer(self, configs: Sequence[Config]):
    from piekd_mjx import programs as programs_lib  # pylint: disable=g-import-not-at-top
    key = tuple(dataclasses.replace(c, out_dir='') for c in configs)
    if key not in self._trainers:
      self._trainers[key] = programs_lib.make_group_trainer(key)
    return self._trainers[key]

  def bytes_per_transition(self, config: Config) -> int:
    """The bytes of one stored transition of ``config``'s task (its replay layout)."""
    from piekd_mjx import programs as programs_lib  # pylint: disable=g-import-not-at-top
    from piekd_mjx import train  # pylint: disable=g-import-not-at-top
    task = programs_lib.default_task(config.env, config.solver)
    return train.make_replay(task, config.replay_capacity).bytes_per_transition
