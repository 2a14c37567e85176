"""The command line of sweeps: ``python -m piekd_mjx.sweep --root=DIR ...``.

A sweep trains the runs of one or more figures (``grid.Figure``) one after another in
this process, each into ``DIR/runs/<grid.run_name>``, and writes each figure's
description to ``DIR/figures/<name>.json`` for the report. Every ``Config`` field is a
repeatable flag: the runs are the product of the values given
(``--env=hopper --env=walker2d --variant=vanilla_sac --variant=piekd`` is four runs);
``--arm=VARIANT[,FIELD=VALUE...]`` gives the lines of a figure instead of ``--variant``.
``--flagfile=launch/fig3_main.cfg`` (absl's) reads one figure's flags from a file;
``--figure_file=FILE`` (repeatable) adds a figure read from its own file, so the runs
of several figures form a union, not a product. ``--override=FIELD=VALUE`` and
``--profile`` scale the figures down without editing their files.

``--group`` (the default on an accelerator, not on a CPU) trains the runs that share
one program (``keys.group_key``: task, K, sizes, schedule) as the lanes of one program
(``run.run_group``), split where their replay buffers would not fit the device. Every
run keeps its own directory, ``config.json`` and ``metrics.jsonl``, so the report does
not change; a group's checkpoints go to ``DIR/groups/<name>``, and a group cut short
is formed again and resumed by the same command.

Running a sweep again skips finished runs, resumes cut ones exactly
(``run.run(resume=True)``) and refuses a directory whose config is not the run's. A
run's directory is held with a lock while it trains (``run.lock``), so two sweeps on
one root never train the same run at once: the second skips it. SIGINT or SIGTERM
stops the sweep after the current run's checkpoint.

``--coordinator_address``, ``--num_processes`` and ``--process_id`` (or a SLURM or
Open MPI launcher) make the sweep span several processes (``processes.py``): every
process runs the same command, the groups train over all their devices one after
another, and process 0 alone prints, writes and holds the runs' locks, deciding for
all of them.

``--parallel_groups=N`` trains up to N groups at once, each in a child process with
1/N of the device's memory (``parallel.py``).

Exit codes: 0 done (or every run left was held by another sweep); 2 bad input (one
line, nothing trained); 3 a run became non-finite (the others went on); 130/143
stopped by SIGINT/SIGTERM; 1 (``--parallel_groups``) a child process ended otherwise.
"""

from __future__ import annotations

import os
import signal
import sys

from absl import flags

from piekd_mjx import config_flags
from piekd_mjx import console
from piekd_mjx import dispatch
from piekd_mjx import figures as figures_lib
from piekd_mjx import jax_setup
from piekd_mjx import plan
from piekd_mjx import processes
from piekd_mjx import rootdir
from piekd_mjx import trainers as trainers_lib
from piekd_mjx.resources import (UsageError, available_memory, check_backend, check_memory,
                                 check_writable)

FLAGS = flags.FlagValues()
figures_lib.define_figure_flags(FLAGS)
flags.DEFINE_multi_string('figure_file', [], 'A file of one figure\'s flags (as for '
                          '--flagfile); repeatable: the runs are the union of the figures.',
                          flag_values=FLAGS)
flags.DEFINE_multi_string('override', [], 'FIELD=VALUE: replaces every value of FIELD in '
                          'every figure (repeat for several values); an arm\'s own settings '
                          'still win.', flag_values=FLAGS)
flags.DEFINE_enum('profile', 'paper', list(figures_lib.PROFILES),
                  'Overrides that scale every figure: ' + '; '.join(
                      f'{k}: {v or "as written"}' for k, v in figures_lib.PROFILES.items()),
                  flag_values=FLAGS)
flags.DEFINE_string('root', '', 'The sweep\'s directory: runs/, figures/ and the report.',
                    flag_values=FLAGS)
flags.DEFINE_bool('dry_run', False, 'Print the plan and exit.', flag_values=FLAGS)
flags.DEFINE_bool('group', None, 'Train the runs that share one program (task, K, sizes, '
                  'schedule) as the lanes of one program, each run still in its own '
                  'directory. Default: yes on an accelerator, no on a CPU (where lanes run '
                  'one after another anyway).', flag_values=FLAGS)
flags.DEFINE_enum('keep', 'last', ['last', 'report'], "What a finished run keeps: 'last' "
                  'checkpoint (to extend it later) or only the report\'s files.',
                  flag_values=FLAGS)
flags.DEFINE_integer('parallel_groups', 1, 'Train this many groups (or runs alone) at '
                     'once, each in a process of its own with an equal share of the '
                     'device\'s memory (piekd_mjx/parallel.py).', flag_values=FLAGS)
flags.DEFINE_bool('calibrate', True, 'Time a few training steps of each kind of run that '
                  'the root has no measurement of, for the plan\'s time estimate.',
                  flag_values=FLAGS)
jax_setup.define_flags(FLAGS)
flags.DEFINE_bool('help', False, 'Show the flags and exit.', flag_values=FLAGS)
processes.define_flags(FLAGS)


def main(argv: list[str]) -> None:
  config_flags.parse_or_exit(FLAGS, argv)
  try:
    if not FLAGS.root:
      raise UsageError('--root is required: the directory of the sweep\'s runs and report')
    figures = figures_lib.figures_from_flags(FLAGS)
    check_writable(FLAGS.root, 'root')
    listed = rootdir.statuses(FLAGS.root, figures)
    conflicts = [s for s in listed if s.state == 'conflict']
    if conflicts:
      raise UsageError(f'{conflicts[0].run_dir}: {conflicts[0].reason}; it is not the run '
                       'the sweep would train there (move it away, or use another --root)')
    distributed = processes.arguments_from_flags(FLAGS)
    parallel = FLAGS.parallel_groups
    if parallel < 1:
      raise UsageError(f'--parallel_groups={parallel} is invalid: must be at least 1')
    if parallel > 1 and distributed:
      raise UsageError(f'--parallel_groups={parallel} is invalid with several processes '
                       '(--num_processes or a launcher\'s): one process trains a group '
                       'over all of them')
  except (UsageError, ValueError) as e:
    console.fail(str(e))
  if parallel > 1:
    from piekd_mjx import parallel as parallel_lib  # pylint: disable=g-import-not-at-top
    parallel_lib.parent_environment()
  jax_setup.from_flags(FLAGS)
  # Every process reads the same root; none writes to it before all have joined.
  processes.initialize(distributed)
  processes.quiet_unless_primary()
  trainers = trainers_lib.Trainers()
  from piekd_mjx import sharding  # pylint: disable=g-import-not-at-top
  # A run must fit the memory its process has: all of it, or its share with N at once.
  available = None if parallel == 1 else plan.memory_share(available_memory(), parallel)
  try:
    for status in listed:
      if status.state in ('new', 'partial'):
        check_memory(status.config, trainers.bytes_per_transition(status.config), available)
        sharding.check_run(status.config.num_devices, status.config.num_seeds)
        check_backend(status.config.solver)
  except (UsageError, ValueError) as e:
    console.fail(f'{os.path.basename(status.run_dir)}: {e}')
  import jax  # pylint: disable=g-import-not-at-top
  plan.print_plan(FLAGS.root, figures, listed, trainers, FLAGS.keep, FLAGS.calibrate)
  enabled = FLAGS.group if FLAGS.group is not None else jax.default_backend() != 'cpu'
  free, where = available_memory()
  free = processes.smallest(free // 2**20) * 2**20  # one plan for every process
  if parallel > 1:  # each group plans with its process's share
    free, where = plan.memory_share((free, where), parallel)
    print(f'{parallel} groups at a time, each in a process of its own with {where}: '
          f'{plan.gib(free)}', flush=True)
  groups = plan.plan_groups(FLAGS.root, listed, enabled, trainers.bytes_per_transition, free)
  plan.print_groups(groups, trainers.bytes_per_transition, free, where)
  for group in groups:
    try:  # a group's lanes must divide over the devices (of every process)
      sharding.check_run(group.runs[0].config.num_devices, group.lanes)
    except ValueError as e:
      console.fail(f'{group.name}: {e}')
  if FLAGS.dry_run:
    sys.exit(0)
  processes.on_primary(figures_lib.write_figures, FLAGS.root, figures)
  try:
    if parallel > 1:
      code = parallel_lib.train_groups(groups, parallel, FLAGS.keep, FLAGS.jax_cache_dir,
                                       FLAGS.command_buffers)
    else:
      code = dispatch.train_runs(groups, trainers, FLAGS.keep)
  except UsageError as e:
    console.fail(str(e))
  except KeyboardInterrupt:
    print('interrupted; run the same sweep command again to go on', file=sys.stderr,
          flush=True)
    code = 128 + signal.SIGINT
  sys.exit(code)


if __name__ == '__main__':
  main(sys.argv)
