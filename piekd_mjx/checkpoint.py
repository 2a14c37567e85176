"""Checkpoints of a run, written with orbax-checkpoint.

A checkpoint is one orbax step directory ``<run_dir>/checkpoints/<step>`` with two
items:

* ``state``: every array of the ``TrainState``: each member's actor, critics, target
  critics, temperature and Adam states, the replay buffers, the training environments,
  member selection and recent returns, the PRNG keys, and the step and phase counters.
  Zero-size arrays (e.g. an MJX contact list of a model without contacts) carry no
  data; they are left out and rebuilt from the state's shapes on restore.
* ``host``: a JSON object of what the host loop needs to continue exactly (its loss
  sums since the last evaluation, the last phase's metrics, ...; see ``run.py``).
* ``evaluation`` (only in a checkpoint taken while the evaluation of its step was still
  running): the actors [S, K, ...] that evaluation scores, as they were before the
  step's phase, so that a resumed run can evaluate them again.

orbax writes a step into a temporary directory and renames it when it is complete, so
a step directory is whole or absent; every save here is synchronous, so a checkpoint
is on disk before training goes on. The newest ``keep`` steps are kept.

Restoring takes the newest step that restores. A partial step (a save that never
finished) is reported and removed. A step that does not restore (a file truncated
or deleted, a JSON item that does not parse, a step that disagrees with its state) is
reported in one line and moved aside to ``<run_dir>/checkpoints.corrupt/``, and the
step before it is tried.

Over several processes (``processes.py``) each process writes and reads its own shards
(orbax's multi-process saving; the JSON item is the primary's), and every process
takes or refuses a step alike: one that fails to restore in any of them is set aside.
"""

from __future__ import annotations

import os
from typing import Any, Callable, Mapping

import jax
import numpy as np
import orbax.checkpoint as ocp

from piekd_mjx import processes
from piekd_mjx import rundir
from piekd_mjx import train as train_lib

CHECKPOINTS, CORRUPT = rundir.CHECKPOINTS, rundir.CORRUPT
EVALUATION_ITEM = 'evaluation'
_TMP_SUFFIX = '.orbax-checkpoint-tmp'  # how orbax names a step directory being written


class ResumeError(Exception):
  """A run cannot be resumed as asked: bad input, reported in one line (exit code 2)."""


def arrays_to_json(arrays: Mapping[str, Any]) -> dict[str, Any]:
  """``{name: array}`` as JSON-ready ``{name: {dtype, shape, values}}``; exact for
  float32 (and NaN, written as JSON's NaN)."""
  encoded = {}
  for name, value in arrays.items():
    value = np.asarray(value)
    encoded[name] = {'dtype': value.dtype.name, 'shape': list(value.shape),
                     'values': value.ravel().tolist()}
  return encoded


def arrays_from_json(encoded: Mapping[str, Any]) -> dict[str, np.ndarray]:
  """The inverse of ``arrays_to_json``."""
  return {name: np.asarray(item['values'], dtype=item['dtype']).reshape(item['shape'])
          for name, item in encoded.items()}


def _without_empty(tree: Any) -> Any:
  """``tree`` with its zero-size leaves replaced by None (orbax cannot save them)."""
  return jax.tree.map(lambda x: None if np.prod(x.shape) == 0 else x, tree)


def _with_empty(abstract: Any, stripped: Any) -> Any:
  """The tree of ``abstract`` with the leaves of ``stripped`` (from
  ``_without_empty``) and zeros at the zero-size leaves, placed like the others."""
  leaves, treedef = jax.tree.flatten(abstract)
  restored = iter(jax.tree.leaves(stripped))
  return treedef.unflatten([
      jax.device_put(np.zeros(a.shape, a.dtype), a.sharding) if np.prod(a.shape) == 0
      else next(restored) for a in leaves])


def _one_line(error: Exception, limit: int = 200) -> str:
  text = (str(error).strip().splitlines() or [''])[0]
  text = text if len(text) <= limit else text[:limit] + '...'
  return f'{type(error).__name__}: {text}' if text else type(error).__name__


class Checkpointer:
  """The checkpoints of one run directory.

  Args:
    run_dir: the run directory; checkpoints go to ``<run_dir>/checkpoints``.
    keep: how many of the newest checkpoints to keep.
    abstract_state: the ``TrainState``'s shapes and dtypes,
      ``jax.eval_shape(trainer.init)``, with each leaf's sharding where it has one
      (``sharding.abstract``; otherwise the first device): the target a checkpoint is
      restored into, each device reading its own block.
  """

  def __init__(self, run_dir: str, keep: int, abstract_state: train_lib.TrainState):
    self._run_dir = run_dir
    self._directory = os.path.abspath(os.path.join(run_dir, CHECKPOINTS))
    device = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
    self._abstract = jax.tree.map(
        lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype,
                                       sharding=getattr(x, 'sharding', None) or device),
        abstract_state)
    # Saves that never finished (the process was killed): orbax removes them below.
    self._partial = sorted(
        name for name in (os.listdir(self._directory) if os.path.isdir(self._directory)
                          else []) if _TMP_SUFFIX in name)
    options = ocp.CheckpointManagerOptions(
        max_to_keep=keep, create=True, cleanup_tmp_directories=True,
        enable_async_checkpointing=False)
    self._manager = ocp.CheckpointManager(self._directory, options=options)

  @property
  def directory(self) -> str:
    """The run (or group) directory whose ``checkpoints`` these are."""
    return self._run_dir

  def steps(self) -> list[int]:
    """The steps of the checkpoints on disk, oldest first."""
    return sorted(self._manager.all_steps())

  def path(self, step: int) -> str:
    return os.path.join(self._directory, str(step))

  def latest_path(self) -> str | None:
    """The newest checkpoint's directory, or None when there is none."""
    steps = self.steps()
    return self.path(steps[-1]) if steps else None

  def save(self, state: train_lib.TrainState, host: Mapping[str, Any],
           evaluation: Any = None) -> str:
    """Writes ``state``, the JSON object ``host`` and, if given, the actors of a
    pending ``evaluation`` as the checkpoint of ``state.step`` and waits until it is
    complete; returns its directory."""
    step = int(state.step)
    items = dict(state=ocp.args.StandardSave(_without_empty(state)),
                 host=ocp.args.JsonSave(dict(host)))
    if evaluation is not None:
      items[EVALUATION_ITEM] = ocp.args.StandardSave(evaluation)
    self._manager.save(step, args=ocp.args.Composite(**items), force=True)
    self._manager.wait_until_finished()
    return self.path(step)

  def restore(self, warn: Callable[[str], None]
              ) -> tuple[train_lib.TrainState, dict[str, Any], Any] | None:
    """The state, host object and pending evaluation's actors (None if it has none)
    of the newest checkpoint that restores, or None when there is no checkpoint.

    Each newer checkpoint that fails is reported through ``warn`` and moved aside.

    Raises:
      ResumeError: there are checkpoints, and none of them restores.
    """
    for name in self._partial:
      warn(f'checkpoint {os.path.join(self._directory, name)} is partial (its save never '
           'finished) and was removed')
    steps = self.steps()
    failed = []
    for step in reversed(steps):
      error = None
      try:
        restored = self._manager.restore(step, args=ocp.args.Composite(
            state=ocp.args.StandardRestore(_without_empty(self._abstract)),
            host=ocp.args.JsonRestore()))
        state = _with_empty(self._abstract, restored['state'])
        host = restored['host']
        if int(state.step) != step or host.get('step') != step:
          raise ValueError(f'holds step {int(state.step)} (host {host.get("step")})')
        evaluation = None
        if os.path.isdir(os.path.join(self.path(step), EVALUATION_ITEM)):
          evaluation = self._manager.restore(step, args=ocp.args.Composite(
              evaluation=ocp.args.StandardRestore(
                  self._abstract.members.actor_params)))['evaluation']
      except Exception as e:  # pylint: disable=broad-except
        error = _one_line(e)
      # Any failure, in any process, means this checkpoint cannot be used: report it,
      # try the previous one (every process alike).
      if processes.largest(error is not None):
        warn(f'checkpoint {self.path(step)} (step {step}) does not restore '
             f'({error or "in another process"}); falling back to the previous one')
        failed.append(step)
        continue
      self._set_aside(failed)
      return state, host, evaluation
    if steps:
      raise ResumeError(f'no checkpoint in {self._directory} restores (tried steps '
                        f'{", ".join(map(str, reversed(steps)))}); the run cannot be resumed')
    return None

  def _set_aside(self, steps: list[int]) -> None:
    """Moves the checkpoints of ``steps`` to ``<run_dir>/checkpoints.corrupt/`` (the
    primary process does, the others wait for it)."""
    if not steps:
      return
    processes.on_primary(self._move_aside, steps)
    processes.barrier('checkpoints set aside')
    self._manager.reload()

  def _move_aside(self, steps: list[int]) -> None:
    corrupt = os.path.join(self._run_dir, CORRUPT)
    os.makedirs(corrupt, exist_ok=True)
    for step in steps:
      target, n = os.path.join(corrupt, str(step)), 1
      while os.path.exists(target):
        target, n = os.path.join(corrupt, f'{step}-{n}'), n + 1
      os.rename(self.path(step), target)

  def close(self) -> None:
    self._manager.close()
