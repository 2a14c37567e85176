"""The latency model of a run, measured on whatever device JAX finds (docs/SCALING.md).

A faithful run is sequential: every environment step is followed by every member's
update, so a run of T steps takes about T x (one training step's latency), whatever
the number of lanes (seeds of runs) batched into that step. This script measures the
parts of that latency on the default device and projects the paper's time from them:

1. ``env``: one task step of L lanes (``vmap`` of the task's step over [L]; one lane
   unbatched) for each task and solver, timed as a jitted ``lax.fori_loop`` of
   ``--steps`` steps with uniform random actions.
2. ``update``: one SAC update of K members (hopper's sizes) in each of L lanes (``vmap`` over [L] of
   ``vmap`` over [K] of ``sac.update``) on fixed minibatches of ``--batch_size``,
   timed the same way.
3. ``step``: the whole training step of hopper's paper grid grouped: its runs with
   K = 3 (from ``launch/paper.cfg``, 5 seeds each: 35 lanes) as the lanes of one
   program, as ``sweep --group`` trains them (``programs.make_group_trainer``: act, task
   step, replay insert, every member's update), all lanes in one batch.
4. ``projection``: the paper's grid (``launch/paper.cfg``, its own steps and seeds)
   grouped by program shape (task, K); each group's training step is estimated as
   ``overhead x (env(task, L) + update(K, L))``, the overhead being the measured ratio
   of hopper's grouped step to its parts; the groups run one after another on the
   device, so the paper takes the sum over groups of ``total_steps x step``.
   Evaluation and phases are left out of the projection (their share is measured in
   docs/BENCHMARKS.md).
5. ``equality``: the first run of that group, trained with the other lanes batched,
   against the same run trained alone: the largest difference of its members after
   ``--steps`` steps (batched kernels differ in rounding; with one lane at a time, a
   CPU's way, they are bit-equal).

Each of these is measured for every ``--settings`` (docs/SCALING.md): ``today`` (the
faithful solver, dynamic control flow: the step as it was before issue 24), ``static``
(``--control_flow=static``: no loop or conditional of ours), ``capped`` (the task's
capped solver, static control flow: no data-dependent loop or conditional at all;
tasks without one are skipped), ``command_buffers`` (today's step with XLA's command
buffers for loops and conditionals: measured in a child process of this script started
with ``XLA_FLAGS``, which XLA reads only when it starts) and ``warp`` (the env step
only, with MuJoCo Warp's MJX implementation, where ``mujoco_warp`` installs). Each
setting gets its projection; ``equality`` is measured once, for ``today``. The step rows
are timed for every task of ``--step_tasks`` (default hopper and humanoid) at every L.

Every figure is written to ``--out`` as soon as it is measured, so a cut run keeps
what it measured; ``--budget_s`` stops starting new measurements after that many
seconds. Compile times (first call) are recorded with every row.

On an accelerator (defaults: L in {1, 35, 175}, hopper and humanoid):

  python benchmarks/device.py --out=/tmp/device.json

On a CPU the defaults shrink (L in {1, 5}, 20 steps); it finishes in a few minutes.
"""

from __future__ import annotations

import importlib
import json
import os
import platform
import subprocess
import sys
import time
from typing import Any, Callable

from absl import app
from absl import flags

FLAGS = flags.FLAGS
flags.DEFINE_list('lanes', None, 'Lane counts L (default: 1,5,35,175; on a CPU 1,5).')
flags.DEFINE_list('tasks', None, 'Tasks (default: all; on a CPU hopper,halfcheetah).')
flags.DEFINE_list('settings', ['today', 'static', 'capped', 'command_buffers', 'warp'],
                  'The step settings measured (see above).')
flags.DEFINE_list('step_tasks', None, 'Tasks of the whole training step (default: '
                  '--grid_task and humanoid; on a CPU --grid_task).')
flags.DEFINE_list('ensemble_sizes', ['1', '3'], 'K of the update measurement.')
flags.DEFINE_integer('steps', None, 'Steps (updates) per timed call (default 200; CPU 20).')
flags.DEFINE_integer('repeats', 3, 'Timed calls per measurement (the median is kept).')
flags.DEFINE_integer('batch_size', 256, 'SAC minibatch size.')
flags.DEFINE_integer('grid_capacity', 100_000, 'Replay capacity per lane of the grouped step.')
flags.DEFINE_integer('grid_lanes', 0, 'Lanes of the grouped step (0: counted from the grid).')
flags.DEFINE_string('grid', 'launch/paper.cfg', "The paper's sweep file (its figure files).")
flags.DEFINE_string('grid_task', 'hopper', 'The task of the grouped step (its K = 3 runs).')
flags.DEFINE_float('budget_s', 420.0, 'Start no new measurement after this many seconds.')
flags.DEFINE_string('jax_cache_dir', '', "JAX's persistent compilation cache ('' for none).")
flags.DEFINE_string('out', '', 'Write the results as JSON here, as they come.')
flags.DEFINE_bool('child', False, 'Set by this script for the process that measures the '
                  'command_buffers setting.')

# Each setting: the task's solver, the chunk's control flow, and whether XLA's command
# buffers are on (a process of its own); warp times the env step only.
SETTINGS = {
    'today': ('faithful', 'dynamic', False),
    'static': ('faithful', 'static', False),
    'capped': ('capped', 'static', False),
    'command_buffers': ('faithful', 'dynamic', True),
    'warp': ('warp', None, False),
}

_START = time.time()


def on_cpu() -> bool:
  import jax  # pylint: disable=g-import-not-at-top
  return jax.default_backend() == 'cpu'


def settings() -> dict[str, Any]:
  """The sizes of this run: the flags, or the defaults of this backend."""
  cpu = on_cpu()
  return {
      'lanes': [int(x) for x in FLAGS.lanes] if FLAGS.lanes else (
          [1, 5] if cpu else [1, 35, 175]),
      'tasks': FLAGS.tasks or ['hopper', 'humanoid'],
      'step_tasks': FLAGS.step_tasks or ([FLAGS.grid_task] if cpu
                                         else [FLAGS.grid_task, 'humanoid']),
      'steps': FLAGS.steps or (20 if cpu else 200),
  }


def timed(program: Callable, args: tuple, steps: int) -> dict[str, Any]:
  """Compile time (the first call) and the median of ``--repeats`` timed calls, per
  step, of ``program(*args)``."""
  import jax  # pylint: disable=g-import-not-at-top
  start = time.perf_counter()
  jax.block_until_ready(program(*args))
  first = time.perf_counter() - start
  calls = []
  for _ in range(FLAGS.repeats):
    start = time.perf_counter()
    jax.block_until_ready(program(*args))
    calls.append(time.perf_counter() - start)
  calls.sort()
  return {'first_call_s': first, 'calls_s': calls,
          'ms_per_step': calls[len(calls) // 2] / steps * 1e3}


def env_program(task, lanes: int, steps: int) -> tuple[Callable, tuple]:
  """A jitted loop of ``steps`` task steps of ``lanes`` lanes from their reset states
  (the reset is not timed), random actions."""
  import jax  # pylint: disable=g-import-not-at-top
  from piekd_mjx import lanes as lanes_lib  # pylint: disable=g-import-not-at-top
  step = lanes_lib.over_lanes(task.step, lanes)
  key = jax.random.PRNGKey(0)
  state = jax.jit(lanes_lib.over_lanes(task.reset, lanes))(jax.random.split(key, lanes))

  def rollout(state, key):
    def body(i, state):
      action = jax.random.uniform(jax.random.fold_in(key, i), (lanes, task.action_size),
                                  minval=-1.0, maxval=1.0)
      return step(state, action)

    return jax.lax.fori_loop(0, steps, body, state).obs

  return jax.jit(rollout), (state, key)


def warp_program(task, lanes: int, steps: int) -> tuple[Callable, tuple]:
  """The same loop on the raw model of ``task`` with MJX's Warp implementation."""
  import jax  # pylint: disable=g-import-not-at-top
  from mujoco import mjx  # pylint: disable=g-import-not-at-top
  model = mjx.put_model(task.mj_model, impl='warp')
  data = jax.vmap(lambda _: mjx.make_data(task.mj_model, impl='warp'))(
      jax.numpy.arange(lanes))

  def rollout(data, key):
    def body(i, data):
      ctrl = jax.random.uniform(jax.random.fold_in(key, i), (lanes, task.action_size),
                                minval=-1.0, maxval=1.0)
      return jax.vmap(mjx.step, in_axes=(None, 0))(model, data.replace(ctrl=ctrl))

    return jax.lax.fori_loop(0, steps, body, data).qpos

  return jax.jit(rollout), (data, jax.random.PRNGKey(0))


def update_program(obs_size: int, action_size: int, members: int, lanes: int,
                   steps: int) -> tuple[Callable, tuple]:
  """A jitted loop of ``steps`` SAC updates of K members in each of L lanes."""
  import jax  # pylint: disable=g-import-not-at-top
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  from piekd_mjx import config as config_lib  # pylint: disable=g-import-not-at-top
  from piekd_mjx import lanes as lanes_lib  # pylint: disable=g-import-not-at-top
  from piekd_mjx import sac as sac_lib  # pylint: disable=g-import-not-at-top
  sac = sac_lib.make_sac(config_lib.Config(), obs_size, action_size)
  one = lambda m, b, k: sac.update(m, b, k, sac.default_scalars)
  update = lanes_lib.over_lanes(lanes_lib.over_lanes(one, members), lanes)
  keys = jax.random.split(jax.random.PRNGKey(0), lanes * members).reshape(lanes, members, 2)
  state = jax.jit(jax.vmap(jax.vmap(lambda k: sac.init(k, sac.default_scalars))))(keys)
  shape = (lanes, members, FLAGS.batch_size)
  k = jax.random.split(jax.random.PRNGKey(1), 3)
  batch = sac_lib.Transition(
      obs=jax.random.normal(k[0], shape + (obs_size,)),
      action=jax.random.uniform(k[1], shape + (action_size,), minval=-1.0, maxval=1.0),
      reward=jax.random.normal(k[2], shape), next_obs=jax.random.normal(k[0], shape + (obs_size,)),
      termination=jnp.zeros(shape), truncation=jnp.zeros(shape))

  def loop(state, batch, keys):
    def body(i, state):
      return update(state, batch, jax.vmap(jax.vmap(
          lambda key: jax.random.fold_in(key, i)))(keys))[0]

    return jax.lax.fori_loop(0, steps, body, state).log_alpha

  return jax.jit(loop), (state, batch, keys)


def grid_configs() -> list:
  """The unique runs of the paper's grid (``--grid``)."""
  from piekd_mjx import figures as figures_lib  # pylint: disable=g-import-not-at-top
  from piekd_mjx import grid as grid_lib  # pylint: disable=g-import-not-at-top
  figures = []
  with open(FLAGS.grid, encoding='utf-8') as f:
    for line in f:
      line = line.strip()
      if line.startswith('--figure_file='):  # named from the grid file's folder
        path = os.path.join(os.path.dirname(FLAGS.grid), line.split('=', 1)[1])
        figures.append(figures_lib.read_figure_file(path, {}))
  return grid_lib.unique_runs(figures)


def grid_group(lanes: int, task: str | None = None, setting: str = 'today') -> list:
  """The runs of ``task`` (default ``--grid_task``) with K = 3 in the paper's grid,
  trimmed to ``lanes`` lanes (a lane, one seed, at a time from each run in turn), as one
  group in ``setting``: replay capacity ``--grid_capacity``, a warm-up of one minibatch,
  all lanes in one batch."""
  import dataclasses  # pylint: disable=g-import-not-at-top
  task = task or FLAGS.grid_task
  solver, control_flow, _ = SETTINGS[setting]
  runs = [c for c in grid_configs() if c.env == task and c.ensemble_size == 3]
  seeds, left, i = [0] * len(runs), min(lanes, sum(c.num_seeds for c in runs)), 0
  while left:
    r, i = i % len(runs), i + 1
    if seeds[r] < runs[r].num_seeds:
      seeds[r], left = seeds[r] + 1, left - 1
  if not runs:
    raise ValueError(f'the grid has no run of {task} with K = 3')
  return [dataclasses.replace(c, num_seeds=n, seed_batch=lanes,
                              replay_capacity=FLAGS.grid_capacity,
                              warmup_steps=FLAGS.batch_size, solver=solver,
                              control_flow=control_flow)
          for c, n in zip(runs, seeds) if n]


def grouped_step(lanes: int, steps: int, task: str | None = None,
                 setting: str = 'today') -> dict[str, Any]:
  """The training step of the group ``grid_group(lanes, task, setting)`` (its runs' own
  variants and settings, as ``sweep --group`` trains them), all lanes in one batch."""
  import jax  # pylint: disable=g-import-not-at-top
  from piekd_mjx import programs as programs_lib  # pylint: disable=g-import-not-at-top
  configs = grid_group(lanes, task, setting)
  trainer = programs_lib.make_group_trainer(configs)
  start = time.perf_counter()
  state = trainer.init()
  # Chunks of ``steps`` steps only, so that a static chunk compiles once per kind.
  for _ in range(-(-FLAGS.batch_size // steps)):
    state, metrics = trainer.collect(state, steps)  # compiles the warm-up chunk
  jax.block_until_ready(metrics)
  compile_s = time.perf_counter() - start
  holder = [state]

  def call():
    holder[0], metrics = trainer.train(holder[0], steps)
    return metrics

  return {**timed(call, (), steps), 'init_and_warmup_first_call_s': compile_s,
          'runs': [f'{c.variant} S={c.num_seeds}' for c in configs]}


def lane_equality(lanes: int, steps: int) -> dict[str, Any]:
  """Run 0 of the group ``grid_group(lanes)`` (its lanes batched with the others')
  against the same run trained alone (its own seeds batched): the largest difference of
  the members' leaves after one minibatch of warm-up and ``steps`` training steps."""
  import dataclasses  # pylint: disable=g-import-not-at-top
  import jax  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top
  from piekd_mjx import programs as programs_lib  # pylint: disable=g-import-not-at-top
  configs = grid_group(lanes)
  first = configs[0]
  trainers = (programs_lib.make_group_trainer(configs),
              programs_lib.make_trainer(dataclasses.replace(first, seed_batch=first.num_seeds)))
  members = []
  for trainer in trainers:
    state = trainer.init()
    state, _ = trainer.collect(state, FLAGS.batch_size)
    state, _ = trainer.train(state, steps)
    members.append(jax.tree.map(lambda x: np.asarray(x)[:first.num_seeds], state.members))
  diffs = [float(np.abs(a - b).max()) for a, b in zip(*map(jax.tree.leaves, members))]
  return {'run': first.variant, 'seeds': first.num_seeds, 'max_abs_diff': max(diffs),
          'bit_equal_leaves': sum(d == 0 for d in diffs), 'leaves': len(diffs)}


class Results:
  """The JSON of this run, written after every measurement."""

  def __init__(self, meta: dict[str, Any]):
    self.data = {**meta, 'rows': []}

  def add(self, row: dict[str, Any]) -> None:
    self.data['rows'].append(row)
    print(json.dumps(row), flush=True)
    self.write()

  def write(self) -> None:
    if FLAGS.out:
      from piekd_mjx import files  # pylint: disable=g-import-not-at-top
      files.write_atomic(FLAGS.out, json.dumps(self.data, indent=2))


def measure(results: Results, row: dict[str, Any], make: Callable[[], dict]) -> dict | None:
  """Adds ``row`` with the figures of ``make()`` (or the error it raised, or that the
  budget ran out); returns the figures."""
  if time.time() - _START > FLAGS.budget_s:
    results.add({**row, 'status': 'skipped', 'message': f'--budget_s={FLAGS.budget_s} spent'})
    return None
  try:
    figures = make()
  except Exception as error:  # pylint: disable=broad-except
    results.add({**row, 'status': 'failed', 'message': f'{type(error).__name__}: {error}'[:300]})
    return None
  results.add({**row, 'status': 'ok', **figures})
  return figures


def project(results: Results, setting: str, env_ms: dict, update_ms: dict,
            overhead: float | None) -> None:
  """The paper's grid grouped by (task, K), its time in ``setting`` from the measured
  latencies."""
  row = {'kind': 'projection', 'setting': setting}
  if overhead is None:
    results.add({**row, 'status': 'skipped',
                 'message': 'no grouped-step measurement to take the overhead from'})
    return
  groups: dict[tuple[str, int], dict[str, int]] = {}
  for config in grid_configs():
    group = groups.setdefault((config.env, config.ensemble_size),
                              {'lanes': 0, 'total_steps': 0})
    group['lanes'] += config.num_seeds
    group['total_steps'] = max(group['total_steps'], config.total_steps)
  rows, total, missing = [], 0.0, []
  for (task, members), group in sorted(groups.items()):
    lanes = group['lanes']
    env = _nearest(env_ms.get(task, {}), lanes)
    update = _nearest(update_ms.get(min(update_ms, key=lambda k: abs(k - members)), {})
                      if update_ms else {}, lanes)
    if env is None or update is None:
      missing.append(f'{task} K={members}')
      continue
    (env_lanes, env_value), (update_lanes, update_value) = env, update
    # A member's update costs about the same whatever K, so K members cost K / K' of
    # the nearest measured K'.
    measured_k = min(update_ms, key=lambda k: abs(k - members))
    step_ms = overhead * (env_value + update_value * members / measured_k)
    hours = group['total_steps'] * step_ms / 1e3 / 3600
    total += hours
    rows.append({'task': task, 'K': members, 'lanes': lanes,
                 'total_steps': group['total_steps'], 'env_ms_at_lanes': env_lanes,
                 'update_ms_at_lanes': update_lanes, 'step_ms': step_ms, 'hours': hours})
  results.add({**row, 'status': 'ok', 'overhead': overhead, 'groups': rows,
               'hours': total, 'missing': missing,
               'formula': 'sum over (task, K) groups of total_steps x overhead x '
                          '(env_ms(task, L nearest measured) + update_ms(K, L nearest '
                          'measured)); evaluation and phases not included'})


def _nearest(by_lanes: dict[int, float], lanes: int) -> tuple[int, float] | None:
  """The measured (L', ms) with L' nearest above ``lanes`` (else the largest), scaled
  linearly by lanes / L' when L' < lanes (a lower bound's opposite: pessimistic)."""
  if not by_lanes:
    return None
  above = [n for n in by_lanes if n >= lanes]
  n = min(above) if above else max(by_lanes)
  return n, by_lanes[n] * (1.0 if n >= lanes else lanes / n)


def offers(task_name: str, setting: str) -> str | None:
  """Why ``task_name`` cannot run ``setting`` here (None: it can)."""
  from piekd_mjx import envs  # pylint: disable=g-import-not-at-top
  solver = SETTINGS[setting][0]
  if solver == 'warp':
    if not issubclass(envs.make_class(task_name), envs.MjxTask):
      return f'{task_name} has no MuJoCo model for Warp to run'
    try:
      importlib.import_module('mujoco_warp')
    except ImportError as error:
      return f'mujoco_warp does not import: {error}'
    return None
  try:
    envs.make_class(task_name).solver_options(solver)
  except ValueError as error:
    return str(error)
  return None


def measure_setting(results: Results, setting: str, sizes: dict[str, Any],
                    update_ms: dict[int, dict[int, float]]) -> None:
  """The env and training steps of ``setting`` and its projection."""
  from piekd_mjx import envs  # pylint: disable=g-import-not-at-top
  solver, _, _ = SETTINGS[setting]
  steps, env_ms = sizes['steps'], {}
  for task_name in sizes['tasks']:
    why = offers(task_name, setting)
    if why:
      results.add({'kind': 'env', 'setting': setting, 'task': task_name,
                   'status': 'not offered', 'message': why})
      continue
    task = envs.make(task_name, solver='faithful' if solver == 'warp' else solver)
    for lanes in sizes['lanes']:
      program = warp_program if solver == 'warp' else env_program
      figures = measure(results, {'kind': 'env', 'setting': setting, 'task': task_name,
                                  'solver': solver, 'lanes': lanes, 'steps': steps},
                        lambda: timed(*program(task, lanes, steps), steps))
      if figures:
        env_ms.setdefault(task_name, {})[lanes] = figures['ms_per_step']
  if solver == 'warp':  # our tasks do not run on Warp: the env step only
    return
  step_ms = {}
  for task_name in sizes['step_tasks']:
    if offers(task_name, setting):
      continue
    for lanes in sizes['lanes']:
      figures = measure(results, {'kind': 'step', 'setting': setting, 'task': task_name,
                                  'K': 3, 'lanes': lanes, 'steps': steps,
                                  'capacity': FLAGS.grid_capacity},
                        lambda: grouped_step(lanes, steps, task_name, setting))
      if figures and task_name == FLAGS.grid_task:
        step_ms[lanes] = figures['ms_per_step']
  grid_lanes = FLAGS.grid_lanes or sum(c.num_seeds for c in grid_configs()
                                       if c.env == FLAGS.grid_task and c.ensemble_size == 3)
  overhead = None
  if step_ms and FLAGS.grid_task in env_ms and 3 in update_ms:
    lanes = _nearest(step_ms, grid_lanes)[0]  # a measured L, so nothing is scaled
    overhead = step_ms[lanes] / (_nearest(env_ms[FLAGS.grid_task], lanes)[1]
                                 + _nearest(update_ms[3], lanes)[1])
  project(results, setting, env_ms, update_ms, overhead)


def measure_updates(results: Results, sizes: dict[str, Any]) -> dict[int, dict[int, float]]:
  """The SAC updates of K members in L lanes (no loop or conditional: one setting)."""
  from piekd_mjx import envs  # pylint: disable=g-import-not-at-top
  grid_task, steps, update_ms = envs.make(FLAGS.grid_task), sizes['steps'], {}
  for members in map(int, FLAGS.ensemble_sizes):
    for lanes in sizes['lanes']:
      figures = measure(
          results, {'kind': 'update', 'K': members, 'lanes': lanes, 'steps': steps,
                    'obs_size': grid_task.observation_size,
                    'action_size': grid_task.action_size},
          lambda: timed(*update_program(grid_task.observation_size, grid_task.action_size,
                                        members, lanes, steps), steps))
      if figures:
        update_ms.setdefault(members, {})[lanes] = figures['ms_per_step']
  return update_ms


def in_child(results: Results, setting: str) -> None:
  """``setting`` measured by a child process of this script with XLA's command buffers
  in its ``XLA_FLAGS``; its rows are added to ``results``."""
  from piekd_mjx import jax_setup  # pylint: disable=g-import-not-at-top
  left = FLAGS.budget_s - (time.time() - _START)
  if left <= 0:
    results.add({'kind': 'setting', 'setting': setting, 'status': 'skipped',
                 'message': f'--budget_s={FLAGS.budget_s} spent'})
    return
  out = (FLAGS.out or os.path.join('/tmp', f'device-{os.getpid()}.json')) + f'.{setting}'
  argv = [a for a in sys.argv if not a.startswith(('--settings=', '--out=', '--budget_s='))]
  env = {**os.environ,
         'XLA_FLAGS': jax_setup.with_command_buffers(os.environ.get('XLA_FLAGS', ''))}
  child = subprocess.run([sys.executable, *argv, f'--settings={setting}', f'--out={out}',
                          f'--budget_s={left}', '--child'], env=env, check=False)
  try:
    with open(out, encoding='utf-8') as f:
      child_data = json.load(f)
    rows = child_data['rows']
    results.data[f'{setting}_xla_flags'] = child_data['xla_flags']
  except (OSError, ValueError) as error:
    results.add({'kind': 'setting', 'setting': setting, 'status': 'failed',
                 'message': f'child exit {child.returncode}, no results: {error}'[:300]})
    return
  for row in rows:  # its updates too, tagged: its projection is built on them
    results.add({**row, 'setting': setting} if row['kind'] == 'update' else row)


def main(argv):
  del argv
  import jax  # pylint: disable=g-import-not-at-top
  from piekd_mjx import jax_setup  # pylint: disable=g-import-not-at-top
  jax_setup.compilation_cache(FLAGS.jax_cache_dir)
  unknown = sorted(set(FLAGS.settings) - set(SETTINGS))
  if unknown:
    raise app.UsageError(f'--settings={",".join(unknown)} is invalid: must be among '
                         + ', '.join(SETTINGS))
  sizes = settings()
  device = jax.devices()[0]
  results = Results({'argv': sys.argv, 'date': time.strftime('%Y-%m-%dT%H:%M:%S%z'),
                     'device': f'{device.platform}: {device.device_kind}',
                     'host': platform.processor() or platform.machine(),
                     'jax': jax.__version__, 'xla_flags': os.environ.get('XLA_FLAGS', ''),
                     **sizes})
  update_ms = measure_updates(results, sizes)
  for setting in FLAGS.settings:
    if SETTINGS[setting][2] and not FLAGS.child:
      in_child(results, setting)
    else:
      measure_setting(results, setting, sizes, update_ms)
  if 'today' in FLAGS.settings and not FLAGS.child:
    steps = sizes['steps']
    lanes = max(sizes['lanes'])
    measure(results, {'kind': 'equality', 'task': FLAGS.grid_task, 'K': 3, 'lanes': lanes,
                      'steps': steps, 'capacity': FLAGS.grid_capacity},
            lambda: lane_equality(lanes, steps))
  results.data['seconds'] = time.time() - _START
  results.write()


if __name__ == '__main__':
  app.run(main, argv=sys.argv)
