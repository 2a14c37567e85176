"""What the runs of a sweep cost: their work in machine-independent units, and the
seconds per step that turn it into time.

A step's time comes from the root's own runs where they have records of the same kind
of run (task, K, S, solver, sizes); else from a calibration on this machine, timed once
(a short chunk of training steps) and kept in ``calibrations.json`` of the user's cache
(``$XDG_CACHE_HOME/piekd_mjx``, else ``~/.cache/piekd_mjx``), so that the next plan on
this machine answers in seconds.
"""

from __future__ import annotations

import dataclasses
import json
import os
import platform
import time
from typing import Any

from piekd_mjx import files
from piekd_mjx import records as records_lib
from piekd_mjx import rundir
from piekd_mjx.config import Config
from piekd_mjx.rootdir import RUNS, RunStatus
from piekd_mjx.trainers import Trainers

@dataclasses.dataclass(frozen=True)
class Work:
  """What a run still needs, in units that do not depend on the machine."""

  env_steps: int  # environment steps, all seeds
  sac_updates: int  # SAC updates of one member, all members and seeds
  phase_steps: int  # gradient steps of the phases, all members (students) and seeds
  checkpoint_bytes: int  # disk of the checkpoints the run keeps when it is done


def phase_gradient_steps(config: Config, step: int) -> int:
  """Gradient steps of the phase after ``step``, summed over the members that learn in
  it (distillation: the students; extra updates: every member; hard copy: none)."""
  from piekd_mjx import distill  # pylint: disable=g-import-not-at-top
  if config.share == 'hardcopy':
    return 0
  per_member = distill.gradient_steps(config, min(step, config.replay_capacity))
  learners = config.ensemble_size if config.share == 'extra' else config.ensemble_size - 1
  return int(per_member) * learners


def work_of(status: RunStatus, bytes_per_transition: int, keep: str) -> Work:
  """The ``Work`` left to ``status``'s run."""
  from piekd_mjx import schedule  # pylint: disable=g-import-not-at-top
  config, start = status.config, (status.step if status.state == 'partial' else 0)
  if status.state in ('done', 'busy', 'conflict'):
    start = config.total_steps
  learning = max(0, config.total_steps - max(start, config.warmup_steps))
  phases = [t for t in schedule.phase_steps(config) if t >= start]
  seeds, members = config.num_seeds, config.ensemble_size
  replay = seeds * config.replay_capacity * bytes_per_transition
  kept = 0 if keep == 'report' else 1
  return Work(
      env_steps=seeds * (config.total_steps - min(start, config.total_steps)),
      sac_updates=seeds * members * config.updates_per_step * learning,
      phase_steps=seeds * sum(phase_gradient_steps(config, t) for t in phases),
      checkpoint_bytes=kept * replay if status.state != 'conflict' else 0)


def measured_seconds_per_step(root: str, config: Config) -> float | None:
  """Seconds per environment step (all seeds, evaluations and phases included) of the
  root's runs with the same task, K and S, from their records; None without any."""
  rates = []
  runs = os.path.join(root, RUNS)
  for name in sorted(os.listdir(runs)) if os.path.isdir(runs) else []:
    try:
      other = rundir.read_config(os.path.join(runs, name))
      records = records_lib.read(os.path.join(runs, name))
    except (OSError, ValueError, TypeError):
      continue
    if speed_key(other) == speed_key(config):
      rates += [r['steps_per_second'] for r in records[1:] if r.get('steps_per_second')]
  if not rates:
    return None
  rates.sort()
  return 1.0 / rates[len(rates) // 2]


def calibrated_seconds_per_step(trainer, num_steps: int = 200) -> float:
  """Seconds per training step (no evaluation or phase) of a short chunk, after a
  minibatch's worth of warm-up and one call that compiles it; the state is thrown away.
  With static control flow, where each chunk length is a program of its own, every
  chunk is ``log_every`` steps long, a length the run compiles anyway."""
  from piekd_mjx import train  # pylint: disable=g-import-not-at-top
  config, state = trainer.config, trainer.init()
  if train.static_control(config):
    num_steps = config.log_every
    for _ in range(-(-config.batch_size // num_steps)):
      state, _ = trainer.collect(state, num_steps)
    state, _ = trainer.train(state, num_steps)
  else:
    state, _ = trainer.collect(state, config.batch_size)
    state, _ = trainer.train(state, 1)
  start = time.perf_counter()
  state, metrics = trainer.train(state, num_steps)
  jax_block(metrics)
  return (time.perf_counter() - start) / num_steps


def jax_block(tree: Any) -> None:
  """Waits for ``tree``'s arrays (jax is imported only where the sweep computes)."""
  import jax  # pylint: disable=g-import-not-at-top
  jax.block_until_ready(tree)


def speed_key(config: Config) -> tuple:
  """What a run's seconds per step depend on, as the plan estimates them."""
  return (config.env, config.ensemble_size, config.num_seeds, config.solver,
          config.hidden_sizes, config.batch_size)


def calibrations_path() -> str:
  """Where this machine's calibrations are kept."""
  cache = os.environ.get('XDG_CACHE_HOME') or os.path.expanduser('~/.cache')
  return os.path.join(cache, 'piekd_mjx', 'calibrations.json')


def _machine() -> str:
  """This machine as its calibrations know it: host, backend, device kind and count."""
  import jax  # pylint: disable=g-import-not-at-top
  devices = jax.devices()
  return (f'{platform.node()} {jax.default_backend()} {devices[0].device_kind} '
          f'x{len(devices)}')


def _kept() -> dict[str, dict[str, float]]:
  try:
    with open(calibrations_path(), encoding='utf-8') as f:
      kept = json.load(f)
    return kept if isinstance(kept, dict) else {}
  except (OSError, ValueError):
    return {}


def seconds_per_step(root: str, config: Config, trainers: Trainers, calibrate: bool
                     ) -> tuple[float | None, str]:
  """Seconds per environment step of ``config``'s kind of run and where the figure comes
  from: the root's runs, a calibration kept on this machine, or one timed now
  (``calibrate``) and kept; (None, why) without any."""
  seconds = measured_seconds_per_step(root, config)
  if seconds is not None:
    return seconds, "measured by the root's runs (evaluations and phases included)"
  machine, key = _machine(), repr(speed_key(config))
  kept = _kept()
  if key in kept.get(machine, {}):
    return float(kept[machine][key]), ('calibrated on this machine before: training '
                                       'steps only, no evaluation or phase')
  if not calibrate:
    return None, 'no measurement in the root (pass --calibrate)'
  seconds = calibrated_seconds_per_step(trainers.trainer(config))
  kept = _kept()  # another sweep may have kept some meanwhile
  kept.setdefault(machine, {})[key] = seconds
  try:
    os.makedirs(os.path.dirname(calibrations_path()), exist_ok=True)
    files.write_atomic(calibrations_path(), json.dumps(kept, indent=1, sort_keys=True))
  except OSError:
    pass  # a cache that cannot be written is only slower next time
  return seconds, 'calibrated here: training steps only, no evaluation or phase'
