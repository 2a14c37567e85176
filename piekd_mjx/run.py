"""The host side of a run: the loop over chunks, evaluation, logging.

The host sees the training state only between jitted chunks: at evaluation points,
phase boundaries and progress lines. A run directory holds ``config.json`` and
``metrics.jsonl`` (one JSON object per evaluation), and TensorBoard event files when
tensorboardX is installed.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import sys
import time
from typing import Any, Callable, TextIO

import jax
import numpy as np

from piekd_mjx import ensemble as ensemble_lib
from piekd_mjx import train as train_lib
from piekd_mjx.config import Config


def replay_bytes_per_seed(trainer: train_lib.Trainer) -> int:
  return trainer.replay.capacity * trainer.replay.bytes_per_transition


def _tolist(x) -> Any:
  """JSON-ready nested lists, with NaN written as null."""
  arr = np.asarray(x)
  if arr.dtype.kind == 'f':
    return np.where(np.isfinite(arr), arr, None).tolist() if arr.ndim else (
        float(arr) if np.isfinite(arr) else None)
  return arr.tolist()


class MetricsWriter:
  """``metrics.jsonl`` and, if tensorboardX is installed, TensorBoard scalars."""

  def __init__(self, run_dir: str):
    self._file = open(os.path.join(run_dir, 'metrics.jsonl'), 'a', encoding='utf-8')
    try:
      from tensorboardX import SummaryWriter  # pylint: disable=g-import-not-at-top
      self._tb = SummaryWriter(os.path.join(run_dir, 'tensorboard'))
    except ImportError:
      self._tb = None

  def write(self, record: dict[str, Any]) -> None:
    self._file.write(json.dumps(record) + '\n')
    self._file.flush()
    if self._tb is not None:
      step = record['step']
      for name, value in record.items():
        arr = np.asarray(value if value is not None else np.nan, dtype=np.float64)
        if name == 'step' or arr.size == 0:
          continue
        if arr.ndim == 0:
          self._tb.add_scalar(name, float(arr), step)
        elif name == 'eval/returns':
          self._tb.add_scalar('eval/return_best_mean', float(np.nanmean(arr.max(-1))), step)
      self._tb.flush()

  def close(self) -> None:
    self._file.close()
    if self._tb is not None:
      self._tb.close()


def run(config: Config, run_dir: str, out: TextIO = sys.stdout,
        trainer: train_lib.Trainer | None = None) -> list[dict[str, Any]]:
  """Trains ``config`` (validated, variant applied) into ``run_dir``; returns the
  metrics records written."""
  os.makedirs(run_dir, exist_ok=True)
  with open(os.path.join(run_dir, 'config.json'), 'w', encoding='utf-8') as f:
    json.dump(dataclasses.asdict(config), f, indent=2)
  trainer = trainer or train_lib.make_trainer(config)
  log = lambda msg: print(msg, file=out, flush=True)
  per_seed = replay_bytes_per_seed(trainer)
  log(f'{config.env} · {config.variant} · S={config.num_seeds} K={config.ensemble_size} · '
      f'replay {config.replay_capacity:,} × {trainer.replay.bytes_per_transition} B = '
      f'{per_seed / 2**20:,.1f} MiB per seed ({config.num_seeds * per_seed / 2**20:,.1f} MiB '
      f'in all) on {jax.devices()[0].platform}')

  evals = train_lib.eval_steps(config)
  phases = set(train_lib.phase_steps(config))
  events = sorted(set(evals) | phases | {config.warmup_steps, config.total_steps})
  events = [t for t in events if t > 0]
  writer = MetricsWriter(run_dir)
  records = []
  state = trainer.init()
  start = time.time()
  last_eval_time, last_eval_step = start, 0
  sums: dict[str, np.ndarray] = {}
  trained_steps = 0
  phase_metrics: dict[str, Any] = {}
  step = 0
  try:
    for target in events:
      while step < target:
        n = min(target - step, config.log_every)
        chunk = trainer.collect if step < config.warmup_steps else trainer.train
        state, metrics = chunk(state, n)
        if chunk is trainer.train:
          for k, v in metrics.items():
            sums[k] = sums.get(k, 0.0) + np.asarray(v) * n
          trained_steps += n
        step += n
        elapsed = time.time() - start
        rate = step / elapsed
        eta = (config.total_steps - step) / max(rate, 1e-9)
        log(f'step {step:>9,}/{config.total_steps:,}  {rate:8.1f} steps/s  '
            f'elapsed {_hms(elapsed)}  eta {_hms(eta)}')
      if target in phases and trainer.phase is not None:
        state, metrics = trainer.phase(state)
        phase_metrics = {k: np.asarray(v) for k, v in metrics.items()}
        phase_metrics['step'] = target
      if target in evals:
        eval_start = time.time()
        returns = np.asarray(trainer.evaluate(state)).mean(-1)  # [S, K]
        eval_seconds = time.time() - eval_start
        now = time.time()
        record = _eval_record(config, state, target, returns, now - start,
                              (target - last_eval_step) / max(now - last_eval_time, 1e-9),
                              eval_seconds, sums, trained_steps, phase_metrics)
        writer.write(record)
        records.append(record)
        best = returns.max(-1)
        log(f'eval step {target:,}: best member return per seed '
            f'{np.array2string(best, precision=1)} (mean {best.mean():.1f}); '
            f'evaluation took {eval_seconds:.1f} s')
        sums, trained_steps = {}, 0
        last_eval_time, last_eval_step = time.time(), target
  finally:
    writer.close()
  return records


def _eval_record(config, state, step, returns, wall_time, steps_per_second, eval_seconds,
                 sums, trained_steps, phase_metrics) -> dict[str, Any]:
  recent, _ = jax.vmap(ensemble_lib.recent_returns)(state.ensemble)
  record = {
      'step': int(step),
      'wall_time': float(wall_time),
      'steps_per_second': float(steps_per_second),
      'eval/seconds': float(eval_seconds),
      'eval/returns': _tolist(returns),
      'eval/return_best': _tolist(returns.max(-1)),
      'eval/return_worst': _tolist(returns.min(-1)),
      'eval/best_member': _tolist(returns.argmax(-1)),
      'ensemble/num_selected': _tolist(state.ensemble.num_selected),
      'ensemble/num_episodes': _tolist(state.ensemble.num_episodes),
      'ensemble/recent_returns': _tolist(recent),
      'distill/num_phases': int(state.num_phases),
  }
  for k, v in sums.items():
    record[k] = _tolist(v / max(trained_steps, 1))
  if phase_metrics:
    record['distill/last_phase_step'] = int(phase_metrics['step'])
    for k, v in phase_metrics.items():
      if k != 'step':
        record[k] = _tolist(v)
  return record


def _hms(seconds: float) -> str:
  if not math.isfinite(seconds):
    return '?'
  seconds = int(seconds)
  return f'{seconds // 3600:d}:{seconds // 60 % 60:02d}:{seconds % 60:02d}'
