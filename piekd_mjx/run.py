"""The host side of a run: the loop over chunks, evaluation, logging, checkpoints.

The host sees the training state only between jitted chunks: it walks the events of
``schedule.events`` (at one step: evaluate, then the phase, then the checkpoint) and
prints a progress line after every chunk. A run directory holds ``config.json``,
``metrics.jsonl`` (one JSON object per evaluation), ``run.log`` (the lines printed),
the checkpoints (``checkpoint.py``) and TensorBoard event files when tensorboardX is
installed (``rundir.py`` lists them).

Exact resume: a run continued from a checkpoint ends with the same metrics as one that
never stopped, except the wall-clock fields ``WALL_CLOCK_FIELDS``. It rests on three
facts: the checkpoint holds the whole ``TrainState`` and the host loop's state
(``Progress``); chunk boundaries depend only on the config (the events and
``log_every``), and a checkpoint is only taken at one; and ``lax.fori_loop`` over a
chunk gives bit-identical states however the steps are split into chunks.

Numerical health: after every chunk and phase the host checks that the losses and the
members' states are finite, and when an evaluation ends that its returns are; if not,
the run stops with ``NonFiniteError`` naming the seed, member and step, before anything
more is saved (an overlapped evaluation ends after the checkpoint of its step, whose
state passed the checks).

Evaluation overlaps training (``Config.eval_overlap``): the evaluation of step t scores
a copy of the actors of step t on a second host thread while the phase, the checkpoint
and the next chunks run, and its record is written when it ends, at the latest before
the next evaluation starts. A checkpoint taken while it runs holds those actors and
the record so far, so a run killed before the record was written evaluates them again
on resume: the same episodes, the same returns.

SIGINT and SIGTERM set a flag; the run stops at the next chunk boundary, writes a
checkpoint there and raises ``Stopped``.

A group of runs (``run_group``; ``train.make_group_trainer``) is one host loop over
the lanes of all of them: every run keeps its own directory, ``config.json``,
``metrics.jsonl``, ``run.log`` and TensorBoard files, written from its own lanes, and
the group's checkpoints (the whole state, every run's progress) go to the group's
directory. A run alone is the group of one whose directory is its own.

Over several processes (``processes.py``) every process runs this loop over its own
lanes: what the host reads is gathered to all of them, so they check and stop alike
(a signal to any one stops all at the next chunk boundary); the primary alone writes
files, prints and evaluates, and hands the returns to the others.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import json
import math
import os
import shutil
import signal
import sys
import threading
import time
from typing import Any, Callable, Iterator, Sequence, TextIO

import jax
import numpy as np

from piekd_mjx import checkpoint as checkpoint_lib
from piekd_mjx import config as config_lib
from piekd_mjx import ensemble as ensemble_lib
from piekd_mjx import pace as pace_lib
from piekd_mjx import processes
from piekd_mjx import rundir
from piekd_mjx import schedule
from piekd_mjx import signals
from piekd_mjx import sharding as sharding_lib
from piekd_mjx import train as train_lib
from piekd_mjx.config import Config

# The fields of a metrics record measured by the wall clock: the only ones that differ
# between two runs of the same config and seed on the same machine.
WALL_CLOCK_FIELDS = ('wall_time', 'steps_per_second', 'eval/seconds', 'eval/wait_seconds')
# The key of a checkpoint's host object that holds the record of a pending evaluation.
PENDING_EVALUATION = 'pending_evaluation'

METRICS_FILE, CONFIG_FILE = rundir.METRICS_FILE, rundir.CONFIG_FILE
LOG_FILE, TENSORBOARD_DIR = rundir.LOG_FILE, rundir.TENSORBOARD_DIR


class NonFiniteError(Exception):
  """A loss, a member's state or a return became non-finite; nothing was saved."""


class Stopped(Exception):
  """SIGINT or SIGTERM stopped the run at a chunk boundary, after a checkpoint."""

  def __init__(self, signum: int, step: int, checkpoint: str):
    super().__init__(f'stopped by {signal.Signals(signum).name} at step {step:,}')
    self.signum, self.step, self.checkpoint = signum, step, checkpoint


class _Evaluation:
  """An evaluation that has started at ``step``: each run's record of it without the
  returns (None for a run whose record is already in its ``metrics.jsonl``), the
  actors it scores (leaves [L, K, ...]) and each run's returns to come ([S, K, E] and
  seconds)."""

  def __init__(self, step: int, records: list[dict[str, Any] | None], actors: Any,
               returns: concurrent.futures.Future):
    self.step, self.records, self.actors, self.returns = step, records, actors, returns


def _evaluate(trainer: train_lib.Trainer, actors: Any, step: int,
              background: bool) -> concurrent.futures.Future:
  """The future (each run's (returns [S, K, E] as numpy, seconds)) of evaluating
  ``actors`` [L, K, ...] at ``step``, run by run: here and now, or on a daemon thread of
  its own (so that a second SIGINT, which raises KeyboardInterrupt, can end the
  process without waiting). Over several processes every one gathers the actors and
  the primary alone evaluates them (the others' future holds None)."""
  future: concurrent.futures.Future = concurrent.futures.Future()
  if processes.count() > 1:
    actors = processes.fetch(actors)
    if not processes.is_primary():
      future.set_result(None)
      return future

  def work():
    results = []
    try:
      for run, lanes in enumerate(trainer.lanes):
        start = time.time()
        run_actors = jax.tree.map(lambda x: x[lanes], actors)
        returns = np.asarray(trainer.evaluate_members(run_actors, np.int32(step), run))
        results.append((returns, time.time() - start))
    except BaseException as e:  # pylint: disable=broad-except
      future.set_exception(e)  # re-raised where the result is taken
    else:
      future.set_result(results)

  if background:
    threading.Thread(target=work, name=f'evaluation-{step}', daemon=True).start()
  else:
    work()
  return future


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


def replay_bytes_per_seed(trainer: train_lib.Trainer) -> int:
  return trainer.replay.capacity * trainer.replay.bytes_per_transition


def _tolist(x) -> Any:
  """JSON-ready nested lists, with NaN written as null."""
  arr = np.asarray(x)
  if arr.dtype.kind == 'f':
    return np.where(np.isfinite(arr), arr, None).tolist() if arr.ndim else (
        float(arr) if np.isfinite(arr) else None)
  return arr.tolist()


def scalar_tags(name: str, value: Any) -> Iterator[tuple[str, float]]:
  """TensorBoard's (tag, value) pairs of one metric: a scalar as it is, an [S] array
  per seed (``name/seed_0``, ...) and an [S, K] array per seed and member
  (``name/seed_0/member_1``, ...), the arrays also with their mean (``name/mean``)
  over the finite entries."""
  arr = np.asarray(value if value is not None else np.nan, dtype=np.float64)
  if arr.ndim == 0:
    yield name, float(arr)
    return
  if arr.size == 0 or arr.ndim > 2:
    return
  for index in np.ndindex(arr.shape):
    parts = [f'seed_{index[0]}'] + ([f'member_{index[1]}'] if arr.ndim == 2 else [])
    yield '/'.join([name, *parts]), float(arr[index])
  finite = arr[np.isfinite(arr)]
  if finite.size:
    yield f'{name}/mean', float(finite.mean())


class MetricsWriter:
  """``metrics.jsonl`` and, if tensorboardX is installed, TensorBoard scalars of every
  metric per seed and member (``scalar_tags``)."""

  def __init__(self, run_dir: str):
    self._file = open(os.path.join(run_dir, METRICS_FILE), 'a', encoding='utf-8')
    try:
      from tensorboardX import SummaryWriter  # pylint: disable=g-import-not-at-top
      self._tb = SummaryWriter(os.path.join(run_dir, TENSORBOARD_DIR))
    except ImportError:
      self._tb = None

  def write(self, record: dict[str, Any]) -> None:
    """Appends an evaluation record to ``metrics.jsonl`` and its scalars to TensorBoard
    (the last phase's metrics are written at their own step by ``write_phase``)."""
    self._file.write(json.dumps(record) + '\n')
    self._file.flush()
    self._scalars(record['step'], {k: v for k, v in record.items()
                                   if k != 'step' and not k.startswith('distill/')
                                   or k == 'distill/num_phases'})

  def write_phase(self, step: int, metrics: dict[str, Any]) -> None:
    """A phase's metrics (teacher, R_k, KL and MSE before and after, ...) at its step,
    to TensorBoard only (``metrics.jsonl`` carries them in the next record)."""
    self._scalars(step, metrics)

  def _scalars(self, step: int, metrics: dict[str, Any]) -> None:
    if self._tb is None:
      return
    for name, value in metrics.items():
      for tag, scalar in scalar_tags(name, value):
        self._tb.add_scalar(tag, scalar, step)
    self._tb.flush()

  def close(self) -> None:
    self._file.close()
    if self._tb is not None:
      self._tb.close()


class _Discard:
  """The ``MetricsWriter`` of a process that writes no files (not the primary)."""

  def write(self, record: dict[str, Any]) -> None:
    del record

  def write_phase(self, step: int, metrics: dict[str, Any]) -> None:
    del step, metrics

  def close(self) -> None:
    pass


class _Output:
  """Progress lines to ``out``, warnings to ``err``, both also to the log files of the
  run directories opened (a line for one run only goes to its own with ``only``).
  ``silent``: nothing anywhere (a process of several other than the primary)."""

  def __init__(self, out: TextIO, err: TextIO, silent: bool = False):
    self._out, self._err, self._files, self._silent = out, err, [], silent

  def open(self, run_dir: str) -> None:
    if not self._silent:
      self._files.append(open(os.path.join(run_dir, LOG_FILE), 'a', encoding='utf-8'))

  def log(self, message: str, only: int | None = None) -> None:
    if not self._silent:
      print(message, file=self._out, flush=True)
      self._record(message, only)

  def warn(self, message: str, only: int | None = None) -> None:
    if not self._silent:
      print(f'warning: {message}', file=self._err, flush=True)
      self._record(f'warning: {message}', only)

  def _record(self, line: str, only: int | None) -> None:
    for i, file in enumerate(self._files):
      if only is None or i == only:
        file.write(f'{time.strftime("%Y-%m-%d %H:%M:%S")}  {line}\n')
        file.flush()

  def close(self) -> None:
    for file in self._files:
      file.close()


def run(config: Config, run_dir: str, out: TextIO = sys.stdout,
        trainer: train_lib.Trainer | None = None, resume: bool = False,
        err: TextIO = sys.stderr) -> list[dict[str, Any]]:
  """Trains ``config`` (validated, variant applied) into ``run_dir``.

  Args:
    config: the run's configuration.
    run_dir: the run directory (created if missing).
    out: where progress lines go (and the run's log file ``run.log``).
    trainer: the programs of ``config`` (built when None).
    resume: continue from the newest checkpoint in ``run_dir`` that restores (from step
      0 when there is none); the records of ``metrics.jsonl`` past its step are
      dropped (the original is kept as ``metrics.jsonl.before-resume-<n>``) since this
      run writes them again.
    err: where warnings go (and ``run.log``): the flags the variant ignores
      (``config.ignored_flags``), checkpoints that do not restore.

  Returns:
    The metrics records this call wrote.

  Raises:
    checkpoint.ResumeError: ``resume`` and no checkpoint restores (nothing has been
      written), or the checkpoint is past ``config.total_steps`` (only checkpoints
      that did not restore have been moved aside).
    NonFiniteError: a loss, parameter or return became non-finite.
    Stopped: SIGINT or SIGTERM arrived; a checkpoint of the step reached was written.
  """
  return run_group([config], [run_dir], run_dir, out, trainer, resume, err)[0]


def run_group(configs: Sequence[Config], run_dirs: Sequence[str], group_dir: str,
              out: TextIO = sys.stdout, trainer: train_lib.Trainer | None = None,
              resume: bool = False, err: TextIO = sys.stderr) -> list[list[dict[str, Any]]]:
  """Trains ``configs`` (one ``train.program_key``, the same schedule but for their
  phases) as the lanes of one program, run r into ``run_dirs[r]``, checkpoints into
  ``group_dir``; as ``run`` otherwise. Returns each run's records written."""
  configs, run_dirs = list(configs), list(run_dirs)
  trainer = trainer or train_lib.make_group_trainer(configs)
  config = configs[0]
  # Over several processes the primary alone writes files and prints (processes.py).
  primary = processes.is_primary()
  output = _Output(out, err, silent=not primary)
  for run_dir in dict.fromkeys(run_dirs + [group_dir]):
    if primary:
      os.makedirs(run_dir, exist_ok=True)
    output.open(run_dir)
  processes.barrier('run directories')
  per_seed = replay_bytes_per_seed(trainer)
  num_lanes = sum(c.num_seeds for c in configs)
  names = ', '.join(c.variant for c in configs)
  output.log(
      f'{config.env} · {names} · L={num_lanes} K={config.ensemble_size} · '
      f'replay {config.replay_capacity:,} × {trainer.replay.bytes_per_transition} B = '
      f'{per_seed / 2**20:,.1f} MiB per lane ({num_lanes * per_seed / 2**20:,.1f} '
      f'MiB in all) on {sharding_lib.describe(trainer.mesh)}')
  for r, c in enumerate(configs):
    for line in config_lib.ignored_flags(c):
      output.warn(line if len(configs) == 1 else f'{_name(run_dirs[r])}: {line}',
                  only=r if len(configs) > 1 else None)
  checkpointer = checkpoint_lib.Checkpointer(
      group_dir, config.keep_checkpoints,
      sharding_lib.abstract(jax.eval_shape(trainer.init), trainer.mesh))
  try:
    devices = trainer.mesh.size if trainer.mesh is not None else 1
    state, progress, pending = None, Progress.start(len(configs), devices,
                                                    processes.count()), None
    if resume:
      state, progress, pending = _restore(configs, run_dirs, checkpointer, output,
                                          devices, primary)
    if state is None:
      state = trainer.init()
    # Fresh and restored states alike are committed to the device, so that every chunk
    # of a run, resumed or not, calls the same compiled program.
    state = trainer.place(state)
    for c, run_dir in zip(configs, run_dirs if primary else []):
      _write_atomic(os.path.join(run_dir, CONFIG_FILE),
                    json.dumps(dataclasses.asdict(c), indent=2))
    if primary and group_dir not in run_dirs:
      _write_atomic(os.path.join(group_dir, rundir.GROUP_FILE), json.dumps(
          {'runs': [os.path.abspath(d) for d in run_dirs]}, indent=2))
    with signals.caught() as stop:
      return _Loop(configs, run_dirs, trainer, checkpointer, output, progress).run(
          state, progress, stop, pending)
  finally:
    checkpointer.close()
    output.close()


def _name(run_dir: str) -> str:
  return os.path.basename(os.path.normpath(run_dir))


def _restore(configs: list[Config], run_dirs: list[str],
             checkpointer: checkpoint_lib.Checkpointer, output: _Output, devices: int,
             primary: bool = True
             ) -> tuple[train_lib.TrainState | None, Progress, tuple[list, Any] | None]:
  """The newest checkpoint's state, progress and, when the evaluation of its step had
  not written every run's record, that evaluation's (records so far, actors)
  ((None, a fresh Progress, None) without a checkpoint), with every run's
  ``metrics.jsonl`` cut back to its step (by the ``primary`` process). A checkpoint of
  lanes split over another number of ``devices`` or processes is refused: its lanes
  would be batched otherwise, so the run would not go on as it started."""
  restored = checkpointer.restore(output.warn)
  cut = _drop_records_after if primary else lambda *_: None
  if restored is None:
    output.warn(f'{checkpointer.directory} has no checkpoint yet; the run starts again '
                'from step 0')
    for run_dir in run_dirs:
      cut(run_dir, 0, output.log)
    return None, Progress.start(len(configs), devices, processes.count()), None
  state, host, actors = restored
  progress = Progress.from_json(host)
  if progress.processes != processes.count():
    raise checkpoint_lib.ResumeError(
        f'--num_processes: the checkpoint in {checkpointer.directory} split its lanes over '
        f'{progress.processes} process(es), and this run would over {processes.count()}; '
        f'resume it with --num_processes={progress.processes}')
  if progress.devices != devices:
    raise checkpoint_lib.ResumeError(
        f'--num_devices: the checkpoint in {checkpointer.directory} split its lanes over '
        f'{progress.devices} device(s), and this run would over {devices}; resume it on '
        f'{progress.devices} (--num_devices={progress.devices})')
  if len(progress.phase_step) != len(configs):
    raise checkpoint_lib.ResumeError(
        f'the checkpoint in {checkpointer.directory} holds {len(progress.phase_step)} '
        f'run(s), not the {len(configs)} of this group')
  config = configs[0]
  if progress.step > config.total_steps:
    raise checkpoint_lib.ResumeError(
        f'--total_steps={config.total_steps} is invalid: must be at least '
        f'{progress.step}, the step of the checkpoint the run resumes from')
  for run_dir in run_dirs:
    cut(run_dir, progress.step, output.log)
  output.log(f'resumed from {checkpointer.path(progress.step)} at step {progress.step:,}')
  records = host.get(PENDING_EVALUATION)
  if records is None or actors is None:
    return state, progress, None
  # The runs whose record was written before the process that started it was lost.
  records = [None if record is None or progress.step in rundir.record_steps(d) else record
             for record, d in zip(records, run_dirs)]
  if all(record is None for record in records):
    return state, progress, None
  output.log(f'the evaluation of step {progress.step:,} had not written its record; it '
             'runs again')
  return state, progress, (records, actors)


class _Loop:
  """The host loop of a group of runs: ``schedule.group_events`` in order, the chunks
  before each event, then its evaluation, phase and checkpoint."""

  def __init__(self, configs: list[Config], run_dirs: list[str],
               trainer: train_lib.Trainer, checkpointer: checkpoint_lib.Checkpointer,
               output: _Output, progress: Progress):
    self.configs, self.config, self.run_dirs = configs, configs[0], run_dirs
    self.trainer, self.checkpointer, self.output = trainer, checkpointer, output
    self.process_start = time.time()
    self.origin = self.process_start - progress.wall_time  # the wall clock of step 0
    self.pace = pace_lib.Pace()
    self.last_eval_time = self.process_start
    self.evaluation: _Evaluation | None = None  # started, its records not yet written
    self.writers: list[MetricsWriter] = []

  def good_checkpoint(self) -> str:
    return self.checkpointer.latest_path() or 'none (no checkpoint yet)'

  def run(self, state: train_lib.TrainState, progress: Progress, stop: list[int],
          pending: tuple[list[dict[str, Any]], Any] | None = None
          ) -> list[list[dict[str, Any]]]:
    """Runs every event after ``progress.step`` (first the evaluation ``pending``
    (records so far, actors) of a resumed checkpoint); returns each run's records
    written."""
    config = self.config
    # A phase is pending where the run stopped at its last step, which skips it.
    events = schedule.group_events(
        self.configs, progress.step,
        [r for r, t in enumerate(progress.phase_step) if t != progress.step])
    self.records: list[list[dict[str, Any]]] = [[] for _ in self.configs]
    try:
      self.writers = [MetricsWriter(d) if processes.is_primary() else _Discard()
                      for d in self.run_dirs]
      if pending is not None:
        self.evaluation = _Evaluation(progress.step, pending[0], pending[1], _evaluate(
            self.trainer, pending[1], progress.step, config.eval_overlap))
      for event, phase_runs in events:
        for num_steps, learn in schedule.chunks(progress.step, event.step,
                                                config.warmup_steps, config.log_every):
          # Every process stops at the first boundary where any has been signalled.
          signum = processes.largest(stop[0] if stop else 0)
          if signum:
            raise self.stopped(state, progress, signum)
          state, progress = self.chunk(state, progress, num_steps, learn)
        if event.evaluate:
          start = time.time()
          self.finish_evaluation()
          state, progress = self.start_evaluation(state, progress)
          self.pace.evaluation_wait = time.time() - start
        if event.phase:
          start = time.time()
          state, progress = self.phase(state, progress, phase_runs)
          self.pace.phase = time.time() - start
          for r in phase_runs:
            self.writers[r].write_phase(event.step, progress.phase_metrics[r])
        if event.checkpoint:
          self.output.log(f'checkpoint {self.save(state, progress)}')
      self.finish_evaluation()
    except Exception:
      self.finish_evaluation(quiet=True)  # its records, if they can be had
      raise
    finally:
      for writer in self.writers:
        writer.close()
    return self.records

  def save(self, state: train_lib.TrainState, progress: Progress) -> str:
    """The checkpoint of ``progress.step``, with the evaluation of that step if it has
    not written its records yet."""
    host = dataclasses.replace(progress, wall_time=time.time() - self.origin).to_json()
    evaluation = self.evaluation
    if evaluation is not None and evaluation.step == progress.step:
      host[PENDING_EVALUATION] = evaluation.records
      return self.checkpointer.save(state, host, evaluation.actors)
    return self.checkpointer.save(state, host)

  def stopped(self, state: train_lib.TrainState, progress: Progress,
              signum: int) -> Stopped:
    """The ``Stopped`` of a signal at ``progress.step``, after its checkpoint (and the
    records of an evaluation still running)."""
    self.finish_evaluation()
    latest = self.checkpointer.steps()[-1:]
    path = (self.checkpointer.path(progress.step) if latest == [progress.step]
            else self.save(state, progress))
    return Stopped(signum, progress.step, path)

  def where(self, lane: int) -> str:
    """Lane ``lane`` as a seed, of its run when the group has several."""
    for run_dir, lanes in zip(self.run_dirs, self.trainer.lanes):
      if lanes.start <= lane < lanes.stop:
        seed = f'seed {lane - lanes.start}'
        return seed if len(self.run_dirs) == 1 else f'{_name(run_dir)} {seed}'
    raise ValueError(f'lane {lane} is in no run')

  def chunk(self, state: train_lib.TrainState, progress: Progress, num_steps: int,
            learn: bool) -> tuple[train_lib.TrainState, Progress]:
    """``num_steps`` environment steps, learning or warming up (the state sums their
    SAC metrics); prints a progress line."""
    trainer, config = self.trainer, self.config
    start = time.time()
    state, metrics = (trainer.train if learn else trainer.collect)(state, num_steps)
    metrics = processes.fetch(metrics)
    rate = self.pace.chunk(num_steps, learn, time.time() - start)
    step = progress.step + num_steps
    _check_chunk(metrics, step, self.good_checkpoint, self.where)
    trained = progress.trained_steps + (num_steps if learn else 0)
    progress = dataclasses.replace(progress, step=step, trained_steps=trained)
    eta = self.pace.time_left(self.configs, step)
    eta = math.inf if eta is None else eta
    self.output.log(f'step {step:>9,}/{config.total_steps:,}  {rate:8.1f} steps/s  '
                    f'elapsed {_hms(time.time() - self.origin)}  eta {_hms(eta)}')
    return state, progress

  def start_evaluation(self, state: train_lib.TrainState, progress: Progress
                       ) -> tuple[train_lib.TrainState, Progress]:
    """Starts the evaluation of ``progress.step`` (it ends here unless
    ``eval_overlap``); resets the sums since the last one."""
    step, now = progress.step, time.time()
    rate = (step - progress.last_eval_step) / max(now - self.last_eval_time, 1e-9)
    host = processes.fetch(_recorded(state))
    records = [_eval_record(host, progress, now - self.origin, rate, lanes, r)
               for r, lanes in enumerate(self.trainer.lanes)]
    actors, _ = train_lib.evaluation_inputs(state)
    self.evaluation = _Evaluation(step, records, actors, _evaluate(
        self.trainer, actors, step, self.config.eval_overlap))
    if not self.config.eval_overlap:
      self.finish_evaluation()
    self.last_eval_time = now
    return train_lib.reset_sums(state), dataclasses.replace(
        progress, trained_steps=0, last_eval_step=step)

  def finish_evaluation(self, quiet: bool = False) -> None:
    """Waits for the evaluation under way, if any, and writes each run's record that
    is not in its ``metrics.jsonl`` yet. ``quiet`` (a run that is failing anyway):
    writes them only if it ended well, raises nothing."""
    evaluation, self.evaluation = self.evaluation, None
    if evaluation is None:
      return
    wait_start = time.time()
    try:
      results = evaluation.returns.result()
    except Exception:  # pylint: disable=broad-except
      if quiet:
        return
      raise
    if quiet and results is None:
      return  # another process's evaluation: nothing to write here
    if not quiet:
      results = self.shared(results)
    wait_seconds = time.time() - wait_start
    step = evaluation.step
    means = [returns.mean(-1) for returns, _ in results]  # each [S, K]
    if not all(np.isfinite(m).all() for m in means):
      if quiet:
        return
      finite = np.concatenate([np.isfinite(m) for m in means])
      _check_finite(finite, 'returns', lambda s, k: step, self.good_checkpoint, self.where)
    for r, (record, returns, (_, eval_seconds)) in enumerate(
        zip(evaluation.records, means, results)):
      if record is None:
        continue  # written before the process that started it was lost
      record = _with_returns(record, returns, eval_seconds, wait_seconds)
      self.writers[r].write(record)
      self.records[r].append(record)
      best = returns.max(-1)
      waited = (f', training waited {wait_seconds:.1f} s' if self.config.eval_overlap
                else '')
      who = '' if len(self.run_dirs) == 1 else f'{_name(self.run_dirs[r])}: '
      self.output.log(f'{who}eval step {step:,}: best member return per seed '
                      f'{np.array2string(best, precision=1)} (mean {best.mean():.1f}); '
                      f'evaluation took {eval_seconds:.1f} s{waited}',
                      only=r if len(self.run_dirs) > 1 else None)

  def shared(self, results: list[tuple[np.ndarray, float]] | None
             ) -> list[tuple[np.ndarray, float]]:
    """The primary's ``results`` (each run's returns and seconds) on every process
    (the others pass None), so that all of them check the returns alike."""
    if processes.count() == 1:
      return results
    if results is None:
      results = [(np.zeros((c.num_seeds, c.ensemble_size, c.eval_episodes), np.float32), 0.)
                 for c in self.configs]
    returns = processes.broadcast([np.asarray(r, np.float32) for r, _ in results])
    return [(np.asarray(r), seconds) for r, (_, seconds) in zip(returns, results)]

  def phase(self, state: train_lib.TrainState, progress: Progress,
            runs: Sequence[int]) -> tuple[train_lib.TrainState, Progress]:
    """The knowledge-sharing phase of ``progress.step`` of the runs ``runs``."""
    step = progress.step
    lanes = [lane for r in runs for lane in range(self.trainer.lanes[r].start,
                                                  self.trainer.lanes[r].stop)]
    state, metrics = self.trainer.phase(state, lanes)
    _check_finite(processes.fetch(self.trainer.finite_params(state)),
                  'parameters after the phase', lambda s, k: step, self.good_checkpoint,
                  self.where)
    phase_metrics, phase_step = list(progress.phase_metrics), list(progress.phase_step)
    first = 0
    for r in runs:
      size = self.configs[r].num_seeds
      phase_metrics[r] = {k: np.asarray(v)[first:first + size] for k, v in metrics.items()}
      phase_step[r] = step
      first += size
    return state, dataclasses.replace(progress, phase_metrics=tuple(phase_metrics),
                                      phase_step=tuple(phase_step))


def _check_chunk(metrics: train_lib.Metrics, step: int,
                 good_checkpoint: Callable[[], str], where: Callable[[int], str]) -> None:
  """Raises NonFiniteError if the chunk that ended at ``step`` saw a non-finite loss
  or left a member's state non-finite."""
  loss_step = np.asarray(metrics['health/nonfinite_loss_step'])  # [L, K]
  _check_finite(loss_step < 0, 'losses', lambda s, k: int(loss_step[s, k]), good_checkpoint,
                where)
  _check_finite(np.asarray(metrics['health/finite_params']), 'parameters',
                lambda s, k: step, good_checkpoint, where)


def _check_finite(finite: np.ndarray, what: str, step_of: Callable[[int, int], int],
                  good_checkpoint: Callable[[], str],
                  where: Callable[[int], str] = lambda lane: f'seed {lane}') -> None:
  """Raises NonFiniteError naming the earliest (step, lane, member) where ``finite``
  [L, K] is False; ``where`` names a lane (its run and seed)."""
  bad = list(zip(*np.nonzero(~np.asarray(finite, bool))))
  if bad:
    step, s, k = min((step_of(s, k), int(s), int(k)) for s, k in bad)
    raise NonFiniteError(f'non-finite {what} at step {step} in {where(s)}, member {k}; '
                         f'the last good checkpoint is {good_checkpoint()}')


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


def _with_returns(record: dict[str, Any], returns: np.ndarray, eval_seconds: float,
                  wait_seconds: float) -> dict[str, Any]:
  """The evaluation record ``record`` (from ``_eval_record``) with its returns [S, K]
  and how long the evaluation took and training waited for it."""
  head = {k: record[k] for k in ('step', 'wall_time', 'steps_per_second')}
  rest = {k: v for k, v in record.items() if k not in head}
  return {
      **head,
      'eval/seconds': float(eval_seconds),
      'eval/wait_seconds': float(wait_seconds),
      'eval/returns': _tolist(returns),
      'eval/return_best': _tolist(returns.max(-1)),
      'eval/return_worst': _tolist(returns.min(-1)),
      'eval/best_member': _tolist(returns.argmax(-1)),
      **rest,
  }


def _recorded(state: train_lib.TrainState) -> train_lib.TrainState:
  """The part of ``state`` that an evaluation record reads (``_eval_record``)."""
  return train_lib.TrainState(members=None, replay=None, env_state=None,
                              ensemble=state.ensemble, key=None, step=state.step,
                              num_phases=state.num_phases, sums=state.sums)


def _eval_record(state, progress: Progress, wall_time: float, steps_per_second: float,
                 lanes: slice = slice(None), run: int = 0) -> dict[str, Any]:
  """The record of an evaluation of run ``run`` (on lanes ``lanes`` of ``state``, on
  the host or the device) at its step, less the returns: the wall clock, the
  ensemble's bookkeeping, the SAC metrics' means since the last evaluation and the
  run's last phase's metrics."""
  ensemble = jax.tree.map(lambda x: np.asarray(x)[lanes], state.ensemble)
  recent, _ = jax.vmap(ensemble_lib.recent_returns)(ensemble)
  record = {
      'step': int(state.step),
      'wall_time': float(wall_time),
      'steps_per_second': float(steps_per_second),
      'ensemble/num_selected': _tolist(ensemble.num_selected),
      'ensemble/num_episodes': _tolist(ensemble.num_episodes),
      'ensemble/recent_returns': _tolist(recent),
      'distill/num_phases': int(np.asarray(state.num_phases)[lanes].max(initial=0)),
  }
  if progress.trained_steps:
    for k, v in state.sums.items():
      record[k] = _tolist(np.asarray(v)[lanes] / progress.trained_steps)
  if progress.phase_step[run] is not None:
    record['distill/last_phase_step'] = int(progress.phase_step[run])
    for k, v in progress.phase_metrics[run].items():
      record[k] = _tolist(v)
  return record


def _hms(seconds: float) -> str:
  if not math.isfinite(seconds):
    return '?'
  seconds = int(seconds)
  return f'{seconds // 3600:d}:{seconds // 60 % 60:02d}:{seconds % 60:02d}'
