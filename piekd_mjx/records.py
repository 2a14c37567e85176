"""A run's ``metrics.jsonl`` and TensorBoard scalars: the one writer and reader of both.

``metrics.jsonl`` holds one JSON object per evaluation, in step order: the step, the
wall clock (``WALL_CLOCK_FIELDS``, the only fields that differ between two runs of one
config and seed on one machine), the returns, the SAC metrics' means since the last
evaluation and the last phase's metrics. NaN is written as null. A line cut by a kill
is skipped when read, and dropped (with the records past the step a run resumes from,
which it writes again) by ``drop_after``.
"""

from __future__ import annotations

import json
import os
import shutil
from typing import Any, Callable, Iterator

import numpy as np

from piekd_mjx import files
from piekd_mjx.rundir import METRICS_FILE, TENSORBOARD_DIR

# The fields of a metrics record measured by the wall clock: the only ones that differ
# between two runs of the same config and seed on the same machine.
WALL_CLOCK_FIELDS = ('wall_time', 'steps_per_second', 'eval/seconds', 'eval/wait_seconds')


def _parse(line: str) -> dict[str, Any] | None:
  """The record of one line of ``metrics.jsonl``, or None for a line cut by a kill or
  one that is not a record with a step."""
  try:
    record = json.loads(line)
    record['step'] = int(record['step'])
  except (ValueError, KeyError, TypeError):
    return None
  return record


def read(run_dir: str) -> list[dict[str, Any]]:
  """The whole records of ``run_dir``'s ``metrics.jsonl`` that carry a step, in file
  order (none without the file; a line cut by a kill or a foreign line is skipped)."""
  path = os.path.join(run_dir, METRICS_FILE)
  if not os.path.isfile(path):
    return []
  with open(path, encoding='utf-8') as f:
    return [record for record in map(_parse, f) if record is not None]


def steps(run_dir: str) -> list[int]:
  """The steps of the whole records of ``run_dir``'s ``metrics.jsonl``, in file order."""
  return [record['step'] for record in read(run_dir)]


def evaluation(run_dir: str, step: int) -> dict[str, Any] | None:
  """The record of ``run_dir``'s evaluation at ``step`` (with 'eval/returns'), or None."""
  return next((r for r in read(run_dir) if r['step'] == step and 'eval/returns' in r), None)


def drop_after(run_dir: str, step: int, log: Callable[[str], None]) -> None:
  """Removes the records past ``step`` (and any partial line) from ``metrics.jsonl``,
  keeping the original as ``metrics.jsonl.before-resume-<n>``."""
  path = os.path.join(run_dir, METRICS_FILE)
  if not os.path.exists(path):
    return
  with open(path, encoding='utf-8') as f:
    lines = f.read().splitlines()
  kept = [line for line in lines
          if (record := _parse(line)) is not None and record['step'] <= step]
  if len(kept) == len(lines):
    return
  n = 1
  while os.path.exists(f'{path}.before-resume-{n}'):
    n += 1
  shutil.copy2(path, f'{path}.before-resume-{n}')
  files.write_atomic(path, ''.join(line + '\n' for line in kept))
  log(f'{METRICS_FILE}: dropped {len(lines) - len(kept)} line(s) past step {step:,}, which '
      f'this run writes again; the original is {METRICS_FILE}.before-resume-{n}')


def tolist(x) -> Any:
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


class Writer:
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


class Discard:
  """The ``Writer`` of a process that writes no files (not the primary)."""

  def write(self, record: dict[str, Any]) -> None:
    del record

  def write_phase(self, step: int, metrics: dict[str, Any]) -> None:
    del step, metrics

  def close(self) -> None:
    pass
