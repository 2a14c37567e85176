"""Where a resumed run starts: the newest checkpoint that restores, and its records cut
back to its step.

A checkpoint of lanes split over another number of devices or processes is refused (its
lanes would be batched otherwise, so the run would not go on as it started), as is one
of another group's size or past ``--total_steps``. When the evaluation of the
checkpoint's step had not written every run's record, that evaluation runs again.
"""

from __future__ import annotations

from typing import Any

from piekd_mjx import checkpoint as checkpoint_lib
from piekd_mjx import console
from piekd_mjx import processes
from piekd_mjx import records as records_lib
from piekd_mjx.config import Config
from piekd_mjx.progress import PENDING_EVALUATION, Progress
from piekd_mjx.train import TrainState

# (each run's record so far, or None where it is written; the actors it scores)
Pending = tuple[list[dict[str, Any] | None], Any]


def restore(configs: list[Config], run_dirs: list[str],
            checkpointer: checkpoint_lib.Checkpointer, output: console.Output, devices: int
            ) -> tuple[TrainState | None, Progress, Pending | None]:
  """The newest checkpoint's state, progress and, when the evaluation of its step had
  not written every run's record, that evaluation's ``Pending`` ((None, a fresh
  Progress, None) without a checkpoint), with every run's ``metrics.jsonl`` cut back to
  its step (by the primary process).

  Raises:
    checkpoint.ResumeError: no checkpoint restores, or the one that does cannot go on
      as this run would (devices, processes, runs, total steps).
  """
  restored = checkpointer.restore(output.warn)
  if restored is None:
    output.warn(f'{checkpointer.directory} has no checkpoint yet; the run starts again '
                'from step 0')
    for run_dir in run_dirs:
      processes.on_primary(records_lib.drop_after, run_dir, 0, output.log)
    return None, Progress.start(len(configs), devices, processes.count()), None
  state, host, actors = restored
  progress = Progress.from_json(host)
  _check_resumable(progress, configs, checkpointer.directory, devices)
  for run_dir in run_dirs:
    processes.on_primary(records_lib.drop_after, run_dir, progress.step, output.log)
  output.log(f'resumed from {checkpointer.path(progress.step)} at step {progress.step:,}')
  records = host.get(PENDING_EVALUATION)
  if records is None or actors is None:
    return state, progress, None
  # The runs whose record was written before the process that started it was lost.
  records = [None if record is None or progress.step in records_lib.steps(d) else record
             for record, d in zip(records, run_dirs)]
  if all(record is None for record in records):
    return state, progress, None
  output.log(f'the evaluation of step {progress.step:,} had not written its record; it '
             'runs again')
  return state, progress, (records, actors)


def _check_resumable(progress: Progress, configs: list[Config], directory: str,
                     devices: int) -> None:
  """Raises ResumeError, naming the flag, where the checkpoint of ``progress`` cannot
  go on as this run of ``configs`` on ``devices`` would."""
  if progress.processes != processes.count():
    raise checkpoint_lib.ResumeError(
        f'--num_processes: the checkpoint in {directory} split its lanes over '
        f'{progress.processes} process(es), and this run would over {processes.count()}; '
        f'resume it with --num_processes={progress.processes}')
  if progress.devices != devices:
    raise checkpoint_lib.ResumeError(
        f'--num_devices: the checkpoint in {directory} split its lanes over '
        f'{progress.devices} device(s), and this run would over {devices}; resume it on '
        f'{progress.devices} (--num_devices={progress.devices})')
  if len(progress.phase_step) != len(configs):
    raise checkpoint_lib.ResumeError(
        f'the checkpoint in {directory} holds {len(progress.phase_step)} '
        f'run(s), not the {len(configs)} of this group')
  total_steps = configs[0].total_steps
  if progress.step > total_steps:
    raise checkpoint_lib.ResumeError(
        f'--total_steps={total_steps} is invalid: must be at least '
        f'{progress.step}, the step of the checkpoint the run resumes from')
