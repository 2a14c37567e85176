"""An evaluation in flight: started at one step, scored on a host thread, recorded later.

The evaluation of step t scores a copy of the actors of step t (leaves [L, K, ...]) run
by run, here and now or on a daemon thread of its own (``Config.eval_overlap``), while
the phase, the checkpoint and the next chunks run. Each run's record is built when it
starts (the wall clock, the ensemble's bookkeeping, the SAC metrics' means since the last
evaluation, the last phase's metrics: ``record_of``) and completed with the returns when
it ends (``with_returns``). Over several processes every one gathers the actors and the
primary alone evaluates them, then hands the returns to the others (``processes``).
"""

from __future__ import annotations

import concurrent.futures
import threading
import time
from typing import Any, Sequence

import jax
import numpy as np

from piekd_mjx import ensemble as ensemble_lib
from piekd_mjx import processes
from piekd_mjx import records as records_lib
from piekd_mjx.config import Config
from piekd_mjx.programs import Trainer
from piekd_mjx.progress import Progress
from piekd_mjx.train import TrainState

# Each run's (returns [S, K, E] as numpy, seconds the evaluation took).
Results = list[tuple[np.ndarray, float]]


class Evaluation:
  """The evaluation of ``step`` under way: each run's record of it without the returns
  (None for a run whose record is already in its ``metrics.jsonl``) and the actors it
  scores (leaves [L, K, ...]), evaluated in the background when ``background``."""

  def __init__(self, trainer: Trainer, step: int, records: Sequence[dict[str, Any] | None],
               actors: Any, background: bool):
    self.step, self.records, self.actors = step, list(records), actors
    self._future = processes.on_primary(_submit, trainer, processes.gather(actors), step,
                                        background)

  def results(self, configs: Sequence[Config]) -> Results:
    """Waits for the returns and has them on every process (a collective); raises
    what the evaluation raised."""
    like = [(np.zeros((c.num_seeds, c.ensemble_size, c.eval_episodes), np.float32), 0.)
            for c in configs]
    return processes.from_primary(lambda: self._future.result(), like)

  def results_if_ended_well(self) -> Results | None:
    """The returns if this process evaluated them and the evaluation did not fail; None
    otherwise. Not a collective: for a run that is failing anyway."""
    try:
      return self._future.result() if self._future is not None else None
    except Exception:  # pylint: disable=broad-except
      return None


def _submit(trainer: Trainer, actors: Any, step: int, background: bool
            ) -> concurrent.futures.Future:
  """The future of each run's returns of ``actors`` at ``step``: evaluated here and
  now, or on a daemon thread of its own (so that a second SIGINT, which raises
  KeyboardInterrupt, can end the process without waiting)."""
  future: concurrent.futures.Future = concurrent.futures.Future()

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


def recorded(state: TrainState) -> TrainState:
  """The part of ``state`` that an evaluation record reads (``record_of``)."""
  return TrainState(members=None, replay=None, env_state=None, ensemble=state.ensemble,
                    key=None, step=state.step, num_phases=state.num_phases, sums=state.sums)


def record_of(state: TrainState, progress: Progress, wall_time: float,
              steps_per_second: float, lanes: slice = slice(None), run: int = 0
              ) -> dict[str, Any]:
  """The record of an evaluation of run ``run`` (on lanes ``lanes`` of ``state``, on
  the host or the device) at its step, less the returns: the wall clock, the
  ensemble's bookkeeping, the SAC metrics' means since the last evaluation and the
  run's last phase's metrics."""
  tolist = records_lib.tolist
  ensemble = jax.tree.map(lambda x: np.asarray(x)[lanes], state.ensemble)
  recent, _ = jax.vmap(ensemble_lib.recent_returns)(ensemble)
  record = {
      'step': int(state.step),
      'wall_time': float(wall_time),
      'steps_per_second': float(steps_per_second),
      'ensemble/num_selected': tolist(ensemble.num_selected),
      'ensemble/num_episodes': tolist(ensemble.num_episodes),
      'ensemble/recent_returns': tolist(recent),
      'distill/num_phases': int(np.asarray(state.num_phases)[lanes].max(initial=0)),
  }
  if progress.trained_steps:
    for k, v in state.sums.items():
      record[k] = tolist(np.asarray(v)[lanes] / progress.trained_steps)
  if progress.phase_step[run] is not None:
    record['distill/last_phase_step'] = int(progress.phase_step[run])
    for k, v in progress.phase_metrics[run].items():
      record[k] = tolist(v)
  return record


def with_returns(record: dict[str, Any], returns: np.ndarray, eval_seconds: float,
                 wait_seconds: float) -> dict[str, Any]:
  """The evaluation record ``record`` (from ``record_of``) with its returns [S, K]
  and how long the evaluation took and training waited for it."""
  tolist = records_lib.tolist
  head = {k: record[k] for k in ('step', 'wall_time', 'steps_per_second')}
  rest = {k: v for k, v in record.items() if k not in head}
  return {
      **head,
      'eval/seconds': float(eval_seconds),
      'eval/wait_seconds': float(wait_seconds),
      'eval/returns': tolist(returns),
      'eval/return_best': tolist(returns.max(-1)),
      'eval/return_worst': tolist(returns.min(-1)),
      'eval/best_member': tolist(returns.argmax(-1)),
      **rest,
  }
