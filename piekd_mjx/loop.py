"""The host loop of a group of runs: the schedule's events in order, one snapshot each.

Before each event (``schedule.group_events``) the loop runs the chunks that reach its
step (one jitted call each, then a progress line); at the event it finishes the
evaluation under way and starts the step's own (``inflight``), runs the phase of the
runs that have one, and writes the checkpoint. After every chunk and phase it checks
the members' health (``health``) and stops the run before anything more is saved.
What it reads of the state goes through ``processes`` (one process or several alike),
and what it writes through each run's ``records.Writer`` and the ``console``.
"""

from __future__ import annotations

import dataclasses
import os
import signal
import time
from typing import Any, Sequence

import numpy as np

from piekd_mjx import checkpoint as checkpoint_lib
from piekd_mjx import console
from piekd_mjx import health
from piekd_mjx import inflight
from piekd_mjx import pace as pace_lib
from piekd_mjx import processes
from piekd_mjx import records as records_lib
from piekd_mjx import schedule
from piekd_mjx import train as train_lib
from piekd_mjx.config import Config
from piekd_mjx.programs import Trainer
from piekd_mjx.progress import PENDING_EVALUATION, Progress
from piekd_mjx.resume import Pending
from piekd_mjx.train import TrainState


class Stopped(Exception):
  """SIGINT or SIGTERM stopped the run at a chunk boundary, after a checkpoint."""

  def __init__(self, signum: int, step: int, checkpoint: str):
    super().__init__(f'stopped by {signal.Signals(signum).name} at step {step:,}')
    self.signum, self.step, self.checkpoint = signum, step, checkpoint


class Loop:
  """The host loop of the runs ``configs`` (the lanes of ``trainer``), each writing to
  its own directory of ``run_dirs``."""

  def __init__(self, configs: list[Config], run_dirs: list[str], trainer: Trainer,
               checkpointer: checkpoint_lib.Checkpointer, output: console.Output,
               progress: Progress):
    self.configs, self.config, self.run_dirs = configs, configs[0], run_dirs
    self.trainer, self.checkpointer, self.output = trainer, checkpointer, output
    self.process_start = time.time()
    self.origin = self.process_start - progress.wall_time  # the wall clock of step 0
    self.pace = pace_lib.Pace()
    self.last_eval_time = self.process_start
    self.evaluation: inflight.Evaluation | None = None  # started, records not yet written
    self.writers: list[records_lib.Writer] = []
    self.records: list[list[dict[str, Any]]] = [[] for _ in configs]

  def run(self, state: TrainState, progress: Progress, stop: list[int],
          pending: Pending | None = None) -> list[list[dict[str, Any]]]:
    """Runs every event after ``progress.step`` (first the evaluation ``pending`` of a
    resumed checkpoint); returns each run's records written. ``stop``: the signal
    caught, if any (``signals.caught``)."""
    # A phase is pending where the run stopped at its last step, which skips it.
    events = schedule.group_events(
        self.configs, progress.step,
        [r for r, t in enumerate(progress.phase_step) if t != progress.step])
    try:
      self.writers = [processes.on_primary(records_lib.Writer, d) or records_lib.Discard()
                      for d in self.run_dirs]
      if pending is not None:
        self.evaluation = inflight.Evaluation(self.trainer, progress.step, pending[0],
                                              pending[1], self.config.eval_overlap)
      for event, phase_runs in events:
        state, progress = self.chunks_to(event.step, state, progress, stop)
        state, progress = self.at_event(event, phase_runs, state, progress)
      self.finish_evaluation()
    except Exception:
      self.finish_evaluation_if_ended_well()
      raise
    finally:
      for writer in self.writers:
        writer.close()
    return self.records

  def chunks_to(self, step: int, state: TrainState, progress: Progress, stop: list[int]
                ) -> tuple[TrainState, Progress]:
    """The chunks from ``progress.step`` to ``step``; raises ``Stopped`` at the first
    boundary where any process has been signalled."""
    for num_steps, learn in schedule.chunks(progress.step, step, self.config.warmup_steps,
                                            self.config.log_every):
      signum = processes.largest(stop[0] if stop else 0)
      if signum:
        raise self.stopped(state, progress, signum)
      state, progress = self.chunk(state, progress, num_steps, learn)
    return state, progress

  def at_event(self, event: schedule.Event, phase_runs: Sequence[int], state: TrainState,
               progress: Progress) -> tuple[TrainState, Progress]:
    """The event's evaluation, then its runs' phase, then its checkpoint."""
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
    return state, progress

  def good_checkpoint(self) -> str:
    return self.checkpointer.latest_path() or 'none (no checkpoint yet)'

  def check(self, problem: health.Problem | None) -> None:
    """Stops the run (``NonFiniteError``) where a health check found a problem."""
    if problem is not None:
      raise health.error(problem, self.where, self.good_checkpoint())

  def save(self, state: TrainState, progress: Progress) -> str:
    """The checkpoint of ``progress.step``, with the evaluation of that step if it has
    not written its records yet."""
    host = dataclasses.replace(progress, wall_time=time.time() - self.origin).to_json()
    evaluation = self.evaluation
    if evaluation is not None and evaluation.step == progress.step:
      host[PENDING_EVALUATION] = evaluation.records
      return self.checkpointer.save(state, host, evaluation.actors)
    return self.checkpointer.save(state, host)

  def stopped(self, state: TrainState, progress: Progress, signum: int) -> Stopped:
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
        return seed if len(self.run_dirs) == 1 else f'{dir_name(run_dir)} {seed}'
    raise ValueError(f'lane {lane} is in no run')

  def chunk(self, state: TrainState, progress: Progress, num_steps: int, learn: bool
            ) -> tuple[TrainState, Progress]:
    """``num_steps`` environment steps, learning or warming up (the state sums their
    SAC metrics); prints a progress line."""
    start = time.time()
    state, metrics = self.trainer.chunk(state, num_steps, learn)
    metrics = processes.fetch(metrics)
    rate = self.pace.chunk(num_steps, learn, time.time() - start)
    step = progress.step + num_steps
    self.check(health.of_chunk(metrics, step))
    trained = progress.trained_steps + (num_steps if learn else 0)
    progress = dataclasses.replace(progress, step=step, trained_steps=trained)
    eta = self.pace.time_left(self.configs, step)
    self.output.log(f'step {step:>9,}/{self.config.total_steps:,}  {rate:8.1f} steps/s  '
                    f'elapsed {console.hms(time.time() - self.origin)}  '
                    f'eta {console.hms(float("inf") if eta is None else eta)}')
    return state, progress

  def start_evaluation(self, state: TrainState, progress: Progress
                       ) -> tuple[TrainState, Progress]:
    """Starts the evaluation of ``progress.step`` (it ends here unless
    ``eval_overlap``); resets the sums since the last one."""
    step, now = progress.step, time.time()
    rate = (step - progress.last_eval_step) / max(now - self.last_eval_time, 1e-9)
    host = processes.fetch(inflight.recorded(state))
    records = [inflight.record_of(host, progress, now - self.origin, rate, lanes, r)
               for r, lanes in enumerate(self.trainer.lanes)]
    actors, _ = train_lib.evaluation_inputs(state)
    self.evaluation = inflight.Evaluation(self.trainer, step, records, actors,
                                          self.config.eval_overlap)
    if not self.config.eval_overlap:
      self.finish_evaluation()
    self.last_eval_time = now
    return train_lib.reset_sums(state), dataclasses.replace(
        progress, trained_steps=0, last_eval_step=step)

  def finish_evaluation(self) -> None:
    """Waits for the evaluation under way, if any, checks its returns and writes each
    run's record that is not in its ``metrics.jsonl`` yet."""
    evaluation, self.evaluation = self.evaluation, None
    if evaluation is None:
      return
    wait_start = time.time()
    results = evaluation.results(self.configs)
    means = [returns.mean(-1) for returns, _ in results]  # each [S, K]
    finite = np.concatenate([np.isfinite(m) for m in means])
    self.check(health.first_nonfinite(finite, 'returns', lambda s, k: evaluation.step))
    self.write_evaluation(evaluation, means, [seconds for _, seconds in results],
                          time.time() - wait_start)

  def finish_evaluation_if_ended_well(self) -> None:
    """For a run that is failing anyway: writes the records of the evaluation under
    way if it ended well and its returns are finite; raises nothing."""
    evaluation, self.evaluation = self.evaluation, None
    if evaluation is None:
      return
    wait_start = time.time()
    results = evaluation.results_if_ended_well()
    if results is None:
      return
    means = [returns.mean(-1) for returns, _ in results]  # each [S, K]
    if all(np.isfinite(m).all() for m in means):
      self.write_evaluation(evaluation, means, [seconds for _, seconds in results],
                            time.time() - wait_start)

  def write_evaluation(self, evaluation: inflight.Evaluation, means: Sequence[np.ndarray],
                       eval_seconds: Sequence[float], wait_seconds: float) -> None:
    """Each run's record of ``evaluation`` with its mean returns [S, K] and the seconds
    its evaluation took, and a line for it."""
    for r, (record, returns, seconds) in enumerate(zip(evaluation.records, means,
                                                         eval_seconds)):
      if record is None:
        continue  # written before the process that started it was lost
      record = inflight.with_returns(record, returns, seconds, wait_seconds)
      self.writers[r].write(record)
      self.records[r].append(record)
      best = returns.max(-1)
      waited = (f', training waited {wait_seconds:.1f} s' if self.config.eval_overlap
                else '')
      who = '' if len(self.run_dirs) == 1 else f'{dir_name(self.run_dirs[r])}: '
      self.output.log(f'{who}eval step {evaluation.step:,}: best member return per seed '
                      f'{np.array2string(best, precision=1)} (mean {best.mean():.1f}); '
                      f'evaluation took {seconds:.1f} s{waited}',
                      only=r if len(self.run_dirs) > 1 else None)

  def phase(self, state: TrainState, progress: Progress, runs: Sequence[int]
            ) -> tuple[TrainState, Progress]:
    """The knowledge-sharing phase of ``progress.step`` of the runs ``runs``."""
    step = progress.step
    lanes = [lane for r in runs for lane in range(self.trainer.lanes[r].start,
                                                  self.trainer.lanes[r].stop)]
    state, metrics = self.trainer.phase(state, lanes)
    self.check(health.first_nonfinite(processes.fetch(self.trainer.finite_params(state)),
                                      'parameters after the phase', lambda s, k: step))
    phase_metrics, phase_step = list(progress.phase_metrics), list(progress.phase_step)
    first = 0
    for r in runs:
      size = self.configs[r].num_seeds
      phase_metrics[r] = {k: np.asarray(v)[first:first + size] for k, v in metrics.items()}
      phase_step[r] = step
      first += size
    return state, dataclasses.replace(progress, phase_metrics=tuple(phase_metrics),
                                      phase_step=tuple(phase_step))


def dir_name(run_dir: str) -> str:
  """A run directory's name, which names the run in a group's lines."""
  return os.path.basename(os.path.normpath(run_dir))
