"""What programs, groups and phases depend on: the keys that decide which runs share them.

Runs whose ``program_key`` agrees train as lanes of one compiled program; runs that also
share the host loop's schedule (``group_key``) train as one group; a run's evaluation
program and each phase kind's program have keys of their own. The lane batch sizes
(``seed_batch``, ``lane_batch``, ``eval_batch``) are decided here too, from the same
configs.
"""

from __future__ import annotations

import dataclasses
from typing import Sequence

import jax

from piekd_mjx import distill
from piekd_mjx import lanes as lanes_lib
from piekd_mjx.config import Config

# What no program reads (the host loop's fields; the seed, whose keys are data); the
# SAC scalars and phase fields, which are per-lane data or a phase program's kind; and
# the run's size, which the group's lanes replace.
_RUN_FIELDS = ('seed', 'variant', 'total_steps', 'eval_every', 'eval_overlap',
               'log_every', 'checkpoint_every', 'keep_checkpoints', 'out_dir',
               'distill_interval', 'num_devices')
_SCALAR_FIELDS = ('actor_lr', 'critic_lr', 'alpha_lr', 'discount', 'tau', 'init_alpha',
                  'target_entropy_scale')
_PHASE_DATA_FIELDS = ('share', 'teacher', 'distill_data', 'distill_epochs', 'distill_batch_size',
                 'distill_sample_batches', 'distill_lr', 'extra_updates')
_SIZE_FIELDS = ('num_seeds', 'seed_batch', 'eval_episodes', 'eval_batch')


def _blank(config: Config, names: tuple[str, ...]) -> Config:
  defaults = Config()
  return dataclasses.replace(config, **{n: getattr(defaults, n) for n in names})


def program_key(config: Config) -> Config:
  """What a lane program depends on: runs with equal keys (they may differ in seed,
  variant, SAC scalars, phase settings, number of seeds, evaluation, ...) train as
  lanes of one program."""
  return _blank(config, _RUN_FIELDS + _SCALAR_FIELDS + _PHASE_DATA_FIELDS + _SIZE_FIELDS)


# The host loop's fields that the runs of a group share: one schedule of chunks,
# evaluations and checkpoints (each run keeps its own phase steps).
GROUP_FIELDS = ('total_steps', 'eval_every', 'log_every', 'checkpoint_every',
                'keep_checkpoints', 'eval_overlap', 'num_devices')


def group_key(config: Config) -> tuple:
  """What runs must share to train as lanes of one group: the ``program_key`` and the
  host loop's ``GROUP_FIELDS``."""
  return (program_key(config),) + tuple(getattr(config, n) for n in GROUP_FIELDS)


def evaluation_key(config: Config) -> Config:
  """What a run's evaluation program depends on (its S, E and eval_batch too)."""
  return _blank(config, _RUN_FIELDS + _SCALAR_FIELDS + _PHASE_DATA_FIELDS + ('seed_batch',))


def phase_key(config: Config) -> Config:
  """What a phase program depends on: the lane program's key and the phase kind."""
  return dataclasses.replace(program_key(config), **{
      name: getattr(config, name) for name in distill.KIND_FIELDS})


def seed_batch(config: Config) -> int:
  """The number of seeds advanced as one vmapped batch (``seed_batch``; 0 picks 1 on a
  CPU and every seed elsewhere)."""
  if config.seed_batch:
    return config.seed_batch
  return 1 if jax.default_backend() == 'cpu' else config.num_seeds


def lane_batch(configs: Sequence[Config]) -> int:
  """The lanes advanced as one vmapped batch: ``seed_batch`` of a run alone; for a
  group, 1 on a CPU and every lane elsewhere, unless every run sets one ``seed_batch``
  (which must divide L)."""
  if len(configs) == 1:
    return seed_batch(configs[0])
  size = lanes_lib.num_lanes(configs)
  chosen = {config.seed_batch for config in configs}
  if chosen == {0}:
    return 1 if jax.default_backend() == 'cpu' else size
  if len(chosen) != 1 or size % chosen.pop():
    raise ValueError(f'--seed_batch={sorted(c.seed_batch for c in configs)} is invalid for '
                     f'a group of {size} lanes: must be 0 or one divisor of {size}')
  return configs[0].seed_batch


def eval_batch(config: Config) -> int | None:
  """The evaluation episodes stepped as one batch (``eval_batch``): None for all of
  them (0, or S*K*E), else a divisor of ``eval_episodes``."""
  all_episodes = config.num_seeds * config.ensemble_size * config.eval_episodes
  return None if config.eval_batch in (0, all_episodes) else config.eval_batch
