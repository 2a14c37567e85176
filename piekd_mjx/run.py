"""The host side of a run: the loop over chunks, evaluation, logging, checkpoints.

The host sees the training state only between jitted chunks: at evaluation points,
phase boundaries and progress lines. A run directory holds ``config.json``,
``metrics.jsonl`` (one JSON object per evaluation), the checkpoints (``checkpoint.py``)
and TensorBoard event files when tensorboardX is installed.

Exact resume: a run continued from a checkpoint ends with the same metrics as one that
never stopped, except the wall-clock fields ``WALL_CLOCK_FIELDS``. It rests on three
facts: the checkpoint holds the whole ``TrainState`` and the host loop's state
(``Progress``); chunk boundaries depend only on the config (the events and
``log_every``), and a checkpoint is only taken at one; and ``lax.fori_loop`` over a
chunk gives bit-identical states however the steps are split into chunks.

Numerical health: after every chunk, phase and evaluation the host checks that the
losses, the members' states and the returns are finite; if not, the run stops with
``NonFiniteError`` naming the seed, member and step, before anything is saved.

SIGINT and SIGTERM set a flag; the run stops at the next chunk boundary, writes a
checkpoint there and raises ``Stopped``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import os
import shutil
import signal
import sys
import threading
import time
from typing import Any, Callable, Iterator, TextIO

import jax
import numpy as np

from piekd_mjx import checkpoint as checkpoint_lib
from piekd_mjx import ensemble as ensemble_lib
from piekd_mjx import train as train_lib
from piekd_mjx.config import Config

# The fields of a metrics record measured by the wall clock: the only ones that differ
# between two runs of the same config and seed on the same machine.
WALL_CLOCK_FIELDS = ('wall_time', 'steps_per_second', 'eval/seconds')

METRICS_FILE = 'metrics.jsonl'
CONFIG_FILE = 'config.json'


class NonFiniteError(Exception):
  """A loss, a member's state or a return became non-finite; nothing was saved."""


class Stopped(Exception):
  """SIGINT or SIGTERM stopped the run at a chunk boundary, after a checkpoint."""

  def __init__(self, signum: int, step: int, checkpoint: str):
    super().__init__(f'stopped by {signal.Signals(signum).name} at step {step:,}')
    self.signum, self.step, self.checkpoint = signum, step, checkpoint


@dataclasses.dataclass(frozen=True)
class Progress:
  """The host loop's state between chunks; checkpointed beside the ``TrainState``."""

  step: int = 0  # environment steps taken by every seed
  trained_steps: int = 0  # training steps since the last evaluation
  sums: dict[str, np.ndarray] = dataclasses.field(
      default_factory=dict)  # SAC metric sums over those steps, each [S, K] float32
  phase_metrics: dict[str, np.ndarray] = dataclasses.field(
      default_factory=dict)  # the metrics of the last phase
  phase_step: int | None = None  # the step of the last phase
  last_eval_step: int = 0
  wall_time: float = 0.0  # seconds the run has trained for, over all its processes

  def to_json(self) -> dict[str, Any]:
    return {'step': self.step, 'trained_steps': self.trained_steps,
            'sums': checkpoint_lib.arrays_to_json(self.sums),
            'phase_metrics': checkpoint_lib.arrays_to_json(self.phase_metrics),
            'phase_step': self.phase_step, 'last_eval_step': self.last_eval_step,
            'wall_time': self.wall_time}

  @classmethod
  def from_json(cls, host: dict[str, Any]) -> Progress:
    return cls(step=int(host['step']), trained_steps=int(host['trained_steps']),
               sums=checkpoint_lib.arrays_from_json(host['sums']),
               phase_metrics=checkpoint_lib.arrays_from_json(host['phase_metrics']),
               phase_step=host['phase_step'], last_eval_step=int(host['last_eval_step']),
               wall_time=float(host['wall_time']))


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
    self._file = open(os.path.join(run_dir, METRICS_FILE), 'a', encoding='utf-8')
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
        trainer: train_lib.Trainer | None = None, resume: bool = False,
        err: TextIO = sys.stderr) -> list[dict[str, Any]]:
  """Trains ``config`` (validated, variant applied) into ``run_dir``.

  Args:
    config: the run's configuration.
    run_dir: the run directory (created if missing).
    out: where progress lines go.
    trainer: the programs of ``config`` (built when None).
    resume: continue from the newest checkpoint in ``run_dir`` that restores (from step
      0 when there is none); the records of ``metrics.jsonl`` past its step are
      dropped (the original is kept as ``metrics.jsonl.before-resume-<n>``) since this
      run writes them again.
    err: where warnings go.

  Returns:
    The metrics records this call wrote.

  Raises:
    checkpoint.ResumeError: ``resume`` and no checkpoint restores (nothing has been
      written), or the checkpoint is past ``config.total_steps`` (only checkpoints
      that did not restore have been moved aside).
    NonFiniteError: a loss, parameter or return became non-finite.
    Stopped: SIGINT or SIGTERM arrived; a checkpoint of the step reached was written.
  """
  trainer = trainer or train_lib.make_trainer(config)
  log = lambda msg: print(msg, file=out, flush=True)
  warn = lambda msg: print(f'warning: {msg}', file=err, flush=True)
  per_seed = replay_bytes_per_seed(trainer)
  log(f'{config.env} · {config.variant} · S={config.num_seeds} K={config.ensemble_size} · '
      f'replay {config.replay_capacity:,} × {trainer.replay.bytes_per_transition} B = '
      f'{per_seed / 2**20:,.1f} MiB per seed ({config.num_seeds * per_seed / 2**20:,.1f} MiB '
      f'in all) on {jax.devices()[0].platform}')
  os.makedirs(run_dir, exist_ok=True)
  checkpointer = checkpoint_lib.Checkpointer(run_dir, config.keep_checkpoints,
                                             jax.eval_shape(trainer.init))
  try:
    state, progress = None, Progress()
    if resume:
      state, progress = _restore(config, run_dir, checkpointer, log, warn)
    if state is None:
      state = trainer.init()
    # Fresh and restored states alike are committed to the device, so that every chunk
    # of a run, resumed or not, calls the same compiled program.
    state = jax.device_put(state, jax.devices()[0])
    _write_atomic(os.path.join(run_dir, CONFIG_FILE),
                  json.dumps(dataclasses.asdict(config), indent=2))
    with _stop_signals() as stop:
      return _train(config, run_dir, trainer, checkpointer, state, progress, stop, log)
  finally:
    checkpointer.close()


def _restore(config: Config, run_dir: str, checkpointer: checkpoint_lib.Checkpointer,
             log: Callable[[str], None], warn: Callable[[str], None]
             ) -> tuple[train_lib.TrainState | None, Progress]:
  """The newest checkpoint's state and progress ((None, Progress()) without one), with
  ``metrics.jsonl`` cut back to its step."""
  restored = checkpointer.restore(warn)
  if restored is None:
    warn(f'{run_dir} has no checkpoint yet; the run starts again from step 0')
    _drop_records_after(run_dir, 0, log)
    return None, Progress()
  state, host = restored
  progress = Progress.from_json(host)
  if progress.step > config.total_steps:
    raise checkpoint_lib.ResumeError(
        f'--total_steps={config.total_steps} is invalid: must be at least '
        f'{progress.step}, the step of the checkpoint the run resumes from')
  _drop_records_after(run_dir, progress.step, log)
  log(f'resumed from {checkpointer.path(progress.step)} at step {progress.step:,}')
  return state, progress


def _train(config: Config, run_dir: str, trainer: train_lib.Trainer,
           checkpointer: checkpoint_lib.Checkpointer, state: train_lib.TrainState,
           progress: Progress, stop: list[int], log: Callable[[str], None]
           ) -> list[dict[str, Any]]:
  """The loop over events from ``progress.step`` to the end of the run."""
  evals = train_lib.eval_steps(config)
  phases = set(train_lib.phase_steps(config))
  saves = set(checkpoint_lib.checkpoint_steps(config))
  events = sorted(set(evals) | phases | {config.warmup_steps, config.total_steps})
  # A checkpoint is taken after every event of its step has run.
  events = [t for t in events if t > progress.step]
  process_start, first_step = time.time(), progress.step
  origin = process_start - progress.wall_time  # the wall clock of the run's step 0
  last_eval_time = process_start
  good_checkpoint = lambda: checkpointer.latest_path() or 'none (no checkpoint yet)'

  def save(state, progress):
    return checkpointer.save(state, dataclasses.replace(
        progress, wall_time=time.time() - origin).to_json())

  writer = MetricsWriter(run_dir)
  records = []
  try:
    for target in events:
      while progress.step < target:
        if stop:
          latest = checkpointer.steps()[-1:]
          path = (checkpointer.path(progress.step) if latest == [progress.step]
                  else save(state, progress))
          raise Stopped(stop[0], progress.step, path)
        n = min(target - progress.step, config.log_every)
        learn = progress.step >= config.warmup_steps
        state, metrics = (trainer.train if learn else trainer.collect)(state, n)
        step = progress.step + n
        _check_chunk(metrics, step, good_checkpoint)
        sums, trained = progress.sums, progress.trained_steps
        if learn:
          sums = {k: sums.get(k, 0.0) + np.asarray(metrics[k]) * n
                  for k in train_lib.SAC_METRICS}
          trained += n
        progress = dataclasses.replace(progress, step=step, sums=sums, trained_steps=trained)
        elapsed = time.time() - process_start
        rate = (step - first_step) / max(elapsed, 1e-9)
        eta = (config.total_steps - step) / max(rate, 1e-9)
        log(f'step {step:>9,}/{config.total_steps:,}  {rate:8.1f} steps/s  '
            f'elapsed {_hms(time.time() - origin)}  eta {_hms(eta)}')
      if target in phases and trainer.phase is not None:
        state, metrics = trainer.phase(state)
        _check_finite(np.asarray(trainer.finite_params(state)), 'parameters after the phase',
                      lambda s, k: target, good_checkpoint)
        progress = dataclasses.replace(
            progress, phase_metrics={k: np.asarray(v) for k, v in metrics.items()},
            phase_step=target)
      if target in evals:
        eval_start = time.time()
        returns = np.asarray(trainer.evaluate(state)).mean(-1)  # [S, K]
        eval_seconds = time.time() - eval_start
        _check_finite(np.isfinite(returns), 'returns', lambda s, k: target, good_checkpoint)
        now = time.time()
        record = _eval_record(
            state, progress, returns, now - origin,
            (target - progress.last_eval_step) / max(now - last_eval_time, 1e-9),
            eval_seconds)
        writer.write(record)
        records.append(record)
        best = returns.max(-1)
        log(f'eval step {target:,}: best member return per seed '
            f'{np.array2string(best, precision=1)} (mean {best.mean():.1f}); '
            f'evaluation took {eval_seconds:.1f} s')
        progress = dataclasses.replace(progress, sums={}, trained_steps=0,
                                       last_eval_step=target)
        last_eval_time = time.time()
      if target in saves:
        path = save(state, progress)
        log(f'checkpoint {path}')
  finally:
    writer.close()
  return records


def _check_chunk(metrics: train_lib.Metrics, step: int,
                 good_checkpoint: Callable[[], str]) -> None:
  """Raises NonFiniteError if the chunk that ended at ``step`` saw a non-finite loss
  or left a member's state non-finite."""
  loss_step = np.asarray(metrics['health/nonfinite_loss_step'])  # [S, K]
  _check_finite(loss_step < 0, 'losses', lambda s, k: int(loss_step[s, k]), good_checkpoint)
  _check_finite(np.asarray(metrics['health/finite_params']), 'parameters',
                lambda s, k: step, good_checkpoint)


def _check_finite(finite: np.ndarray, what: str, step_of: Callable[[int, int], int],
                  good_checkpoint: Callable[[], str]) -> None:
  """Raises NonFiniteError naming the earliest (step, seed, member) where ``finite``
  [S, K] is False."""
  bad = list(zip(*np.nonzero(~np.asarray(finite, bool))))
  if bad:
    step, s, k = min((step_of(s, k), int(s), int(k)) for s, k in bad)
    raise NonFiniteError(f'non-finite {what} at step {step} in seed {s}, member {k}; '
                         f'the last good checkpoint is {good_checkpoint()}')


@contextlib.contextmanager
def _stop_signals() -> Iterator[list[int]]:
  """While active, SIGINT and SIGTERM append their number to the yielded list (a second
  one raises KeyboardInterrupt); the previous handlers come back on exit. Outside the
  main thread no handler can be installed and the list stays empty."""
  caught: list[int] = []

  def handler(signum, frame):  # pylint: disable=unused-argument
    if caught:
      raise KeyboardInterrupt
    caught.append(signum)

  if threading.current_thread() is not threading.main_thread():
    yield caught
    return
  previous = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
  try:
    yield caught
  finally:
    for s, h in previous.items():
      signal.signal(s, h)


def _write_atomic(path: str, text: str) -> None:
  """Writes ``text`` to ``path`` through a temporary file and a rename."""
  tmp = f'{path}.tmp'
  with open(tmp, 'w', encoding='utf-8') as f:
    f.write(text)
    f.flush()
    os.fsync(f.fileno())
  os.replace(tmp, path)


def _drop_records_after(run_dir: str, step: int, log: Callable[[str], None]) -> None:
  """Removes the records past ``step`` (and any partial line) from ``metrics.jsonl``,
  keeping the original as ``metrics.jsonl.before-resume-<n>``."""
  path = os.path.join(run_dir, METRICS_FILE)
  if not os.path.exists(path):
    return
  with open(path, encoding='utf-8') as f:
    lines = f.read().splitlines()
  kept = []
  for line in lines:
    try:
      record = json.loads(line)
    except ValueError:
      continue
    if isinstance(record, dict) and isinstance(record.get('step'), int) and (
        record['step'] <= step):
      kept.append(line)
  if len(kept) == len(lines):
    return
  n = 1
  while os.path.exists(f'{path}.before-resume-{n}'):
    n += 1
  shutil.copy2(path, f'{path}.before-resume-{n}')
  _write_atomic(path, ''.join(line + '\n' for line in kept))
  log(f'{METRICS_FILE}: dropped {len(lines) - len(kept)} line(s) past step {step:,}, which '
      f'this run writes again; the original is {METRICS_FILE}.before-resume-{n}')


def _eval_record(state, progress, returns, wall_time, steps_per_second,
                 eval_seconds) -> dict[str, Any]:
  recent, _ = jax.vmap(ensemble_lib.recent_returns)(state.ensemble)
  record = {
      'step': int(state.step),
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
  for k, v in progress.sums.items():
    record[k] = _tolist(v / max(progress.trained_steps, 1))
  if progress.phase_step is not None:
    record['distill/last_phase_step'] = int(progress.phase_step)
    for k, v in progress.phase_metrics.items():
      record[k] = _tolist(v)
  return record


def _hms(seconds: float) -> str:
  if not math.isfinite(seconds):
    return '?'
  seconds = int(seconds)
  return f'{seconds // 3600:d}:{seconds // 60 % 60:02d}:{seconds % 60:02d}'
