"""Benchmarks the MJX tasks against Gymnasium on MuJoCo C and brax's own MJX tasks.

For every task, in one process on this machine, it measures:

* ``piekd_mjx`` (``solver='faithful'`` and, with ``--fast``, ``solver='fast'``) and
  brax's MJX version of the task (``--brax``): the first-call time of the jitted
  ``reset`` and ``step`` (tracing, compilation and one call), the Python-dispatched
  single step (one jitted call per step, resetting on termination as a Gymnasium loop
  does), and a jitted ``lax.scan`` of ``--steps_per_call`` steps with uniform random
  actions, unbatched and under ``vmap`` for each ``--batch_sizes`` (steps/s counts
  B environment steps per call). Inside the scan an environment that terminates goes
  back to the state it started the call from (brax's ``AutoResetWrapper`` scheme), so
  the states stay in the range a training run visits.
* Gymnasium (``--gymnasium``): ``gymnasium.make(id).unwrapped`` on MuJoCo C, stepped
  single-threaded with uniform random actions and reset on termination.

The full benchmark (all six tasks by default; ``--tasks=hopper,ant`` picks some):

  python benchmarks/envs.py --batch_sizes=1,5,64,1024 --out=docs/benchmarks/envs.json

and render a JSON file written earlier as Markdown (for docs/BENCHMARKS.md) with:

  python benchmarks/envs.py --from_json=docs/benchmarks/envs.json --markdown
"""

from __future__ import annotations

import json
import os
import shlex
import statistics
import sys
import time
from typing import Any, Callable, Sequence

from absl import app
from absl import flags
import jax
import jax.numpy as jnp
import numpy as np

import machine  # benchmarks/machine.py, beside this script
import rollout  # benchmarks/rollout.py, beside this script
from piekd_mjx import envs
from piekd_mjx import jax_setup

FLAGS = flags.FLAGS

flags.DEFINE_list('tasks', list(envs.names()), 'Tasks to benchmark (piekd_mjx names).')
flags.DEFINE_list('batch_sizes', ['1', '5', '64', '1024'],
                  'Batch sizes B of the vmapped rollout.')
flags.DEFINE_integer('steps_per_call', 100, 'Environment steps per jitted rollout call.')
flags.DEFINE_integer('python_steps', 100,
                     'Steps per repeat of the Python-dispatched single step.')
flags.DEFINE_integer('gym_steps', 10_000, 'Steps per repeat of the Gymnasium loop.')
flags.DEFINE_integer('repeats', 5, 'Timed repeats per measurement (the median is reported).')
flags.DEFINE_integer('seed', 0, 'Seed of the resets and random actions.')
flags.DEFINE_bool('fast', True, "Also benchmark piekd_mjx with solver='fast'.")
flags.DEFINE_bool('gymnasium', True, 'Also benchmark Gymnasium on MuJoCo C.')
flags.DEFINE_bool('brax', True, "Also benchmark brax's MJX version of each task.")
flags.DEFINE_string('out', '', 'Write the results to this JSON file (none if empty).')
flags.DEFINE_bool('markdown', False, 'Print the results as Markdown tables.')
flags.DEFINE_string('from_json', '',
                    'Load results from this JSON file instead of measuring.')
flags.DEFINE_string('compilation_cache_dir', '',
                    "JAX's persistent compilation cache directory; empty (default) "
                    'disables the cache, so first-call times include compilation.')

# brax 0.14.2's name for each task (all six exist in brax.envs).
BRAX_NAMES = {
    'ant': 'ant',
    'halfcheetah': 'halfcheetah',
    'hopper': 'hopper',
    'humanoid': 'humanoid',
    'inverted_pendulum': 'inverted_pendulum',
    'walker2d': 'walker2d',
}

IMPL_LABELS = {
    'faithful': 'piekd_mjx faithful',
    'fast': 'piekd_mjx fast',
    'brax': 'brax mjx',
    'gymnasium': 'Gymnasium (MuJoCo C)',
}

_PACKAGES = ('jax', 'jaxlib', 'mujoco', 'mujoco-mjx', 'brax', 'gymnasium', 'numpy')


# -- timing ---------------------------------------------------------------------------


def _first_call(fn: Callable[..., Any], *args) -> tuple[float, Any]:
  """Seconds of a jitted function's first call (trace, compile, run) and its output."""
  start = time.perf_counter()
  out = jax.block_until_ready(fn(*args))
  return time.perf_counter() - start, out


def _rate(steps: int, times: Sequence[float]) -> dict[str, Any]:
  """Steps/s from the median of repeated timings of ``steps`` steps each."""
  median = statistics.median(times)
  return {'steps_per_s': steps / median, 'steps_per_repeat': steps,
          'median_s': median, 'times_s': list(times)}


def _time_rollout(fn, state, key, env_steps: int) -> dict[str, Any]:
  """First-call time and steady rate of a jitted rollout carrying (state, key)."""
  first_s, (state, key) = _first_call(fn, state, key)
  state, key = jax.block_until_ready(fn(state, key))  # An untimed warm-up call.
  times = []
  for _ in range(FLAGS.repeats):
    start = time.perf_counter()
    state, key = jax.block_until_ready(fn(state, key))
    times.append(time.perf_counter() - start)
  return {'first_call_s': first_s, **_rate(env_steps, times)}


def _time_python_loop(step, reset, state, low, high, key) -> dict[str, Any]:
  """Rate of one jitted step per Python call, resetting on termination.

  The first pass is an untimed warm-up: a step may compile again for stepped states
  (brax's step returns weak-typed ``reward``/``done``, its reset does not).
  """
  key_action, key_reset = jax.random.split(key)
  n = FLAGS.python_steps
  actions = list(jax.random.uniform(key_action, (n,) + low.shape, minval=low, maxval=high))
  reset_keys = list(jax.random.split(key_reset, n))
  times = []
  for _ in range(FLAGS.repeats + 1):
    start = time.perf_counter()
    for action, reset_key in zip(actions, reset_keys):
      state = step(state, action)
      if state.done:  # Reading done waits for the step, as a Python env loop does.
        state = reset(reset_key)
    jax.block_until_ready(state)
    times.append(time.perf_counter() - start)
  return _rate(n, times[1:])


def measure_jax_env(env, low: jax.Array, high: jax.Array,
                    batch_sizes: Sequence[int]) -> dict[str, Any]:
  """Compile times and steps/s of a brax-interface environment on JAX."""
  key_reset, key_step, key_loop, key_rollout = jax.random.split(
      jax.random.PRNGKey(FLAGS.seed), 4)
  reset, step = jax.jit(env.reset), jax.jit(env.step)
  reset_first_s, state = _first_call(reset, key_reset)
  action = jax.random.uniform(key_step, low.shape, minval=low, maxval=high)
  step_first_s, _ = _first_call(step, state, action)
  result = {'reset_first_call_s': reset_first_s, 'step_first_call_s': step_first_s,
            'python_step': _time_python_loop(step, reset, state, low, high, key_loop)}

  steps = FLAGS.steps_per_call
  random_rollout = rollout.make_rollout(env, low, high, steps)
  result['scan'] = _time_rollout(jax.jit(random_rollout), state, key_rollout, steps)
  result['batched'] = {}
  for b in batch_sizes:
    vreset_first_s, states = _first_call(jax.jit(jax.vmap(env.reset)),
                                         jax.random.split(key_reset, b))
    timing = _time_rollout(jax.jit(jax.vmap(random_rollout)), states,
                           jax.random.split(key_rollout, b), b * steps)
    result['batched'][str(b)] = {'reset_first_call_s': vreset_first_s, **timing}
  return result


def measure_gymnasium(gym_id: str) -> dict[str, Any]:
  """Steps/s of ``gymnasium.make(gym_id).unwrapped`` with random actions."""
  import gymnasium  # pylint: disable=g-import-not-at-top

  env = gymnasium.make(gym_id).unwrapped
  env.reset(seed=FLAGS.seed)
  space = env.action_space
  rng = np.random.default_rng(FLAGS.seed)
  n = FLAGS.gym_steps
  actions = rng.uniform(space.low, space.high, (n,) + space.shape).astype(space.dtype)
  times, resets = [], 0
  for _ in range(FLAGS.repeats + 1):  # The first pass warms up and is not timed.
    start = time.perf_counter()
    for action in actions:
      _, _, terminated, _, _ = env.step(action)
      if terminated:
        env.reset()
        resets += 1
    times.append(time.perf_counter() - start)
  model = env.model
  result = {'source': gym_id, 'dt': float(env.dt),
            'solver': {'iterations': int(model.opt.iterations),
                       'ls_iterations': int(model.opt.ls_iterations)},
            'python_step': _rate(n, times[1:]), 'resets': resets}
  env.close()
  return result


def _task_row(name: str, solver: str, batch_sizes: Sequence[int]) -> dict[str, Any]:
  """Measures piekd_mjx's task ``name`` under ``solver``."""
  task = envs.make(name, solver=solver)
  opt = task.mj_model.opt
  return {'source': f'piekd_mjx.envs.make({name!r}, solver={solver!r})',
          'dt': task.dt,
          'solver': {'iterations': int(opt.iterations),
                     'ls_iterations': int(opt.ls_iterations)},
          **measure_jax_env(task, task.action_low, task.action_high, batch_sizes)}


def _brax_row(name: str, batch_sizes: Sequence[int]) -> dict[str, Any]:
  """Measures brax's MJX version of ``name`` (actions in brax's [-1, 1])."""
  from brax import envs as brax_envs  # pylint: disable=g-import-not-at-top

  env = brax_envs.get_environment(BRAX_NAMES[name], backend='mjx')
  ones = jnp.ones((env.action_size,), jnp.float32)
  opt = env.sys.opt
  return {'source': f'brax.envs.get_environment({BRAX_NAMES[name]!r}, backend="mjx")',
          'dt': float(env.dt),
          'solver': {'iterations': int(opt.iterations),
                     'ls_iterations': int(opt.ls_iterations)},
          **measure_jax_env(env, -ones, ones, batch_sizes)}


def run(tasks: Sequence[str], batch_sizes: Sequence[int]) -> list[dict[str, Any]]:
  """Measures every requested implementation of every task, printing progress."""
  rows = []
  for name in tasks:
    impls = ['faithful'] + (['fast'] if FLAGS.fast else [])
    impls += (['brax'] if FLAGS.brax and name in BRAX_NAMES else [])
    impls += (['gymnasium'] if FLAGS.gymnasium else [])
    for impl in impls:
      print(f'[{time.strftime("%H:%M:%S")}] {name}: {IMPL_LABELS[impl]} ...', flush=True)
      if impl == 'gymnasium':
        row = measure_gymnasium(envs.GYMNASIUM_IDS[name])
      elif impl == 'brax':
        row = _brax_row(name, batch_sizes)
      else:
        row = _task_row(name, impl, batch_sizes)
      rows.append({'task': name, 'impl': impl, **row})
  return rows


# -- machine and rendering ------------------------------------------------------------


def _fmt_rate(entry: dict[str, Any] | None) -> str:
  return '-' if entry is None else f'{entry["steps_per_s"]:,.0f}'


def _fmt_s(seconds: float | None) -> str:
  return '-' if seconds is None else f'{seconds:.2f}'


def _tables(results: dict[str, Any]) -> tuple[list[list[str]], list[list[str]]]:
  """Header-first rows of the throughput table and the first-call table."""
  batch_sizes = [str(b) for b in results['flags']['batch_sizes']]
  rate_rows = [['task', 'implementation', 'dt (s)', 'iters/ls', 'python step/s',
                'scan step/s'] + [f'B={b} step/s' for b in batch_sizes]]
  first_rows = [['task', 'implementation', 'reset (s)', 'step (s)', 'scan (s)']
                + [f'B={b} (s)' for b in batch_sizes]]
  for row in results['rows']:
    batched = row.get('batched', {})
    head = [row['task'], IMPL_LABELS[row['impl']]]
    solver = row['solver']
    rate_rows.append(head + [
        f'{row["dt"]:g}', f'{solver["iterations"]}/{solver["ls_iterations"]}',
        _fmt_rate(row['python_step']), _fmt_rate(row.get('scan'))]
                     + [_fmt_rate(batched.get(b)) for b in batch_sizes])
    if row['impl'] != 'gymnasium':
      first_rows.append(head + [
          _fmt_s(row['reset_first_call_s']), _fmt_s(row['step_first_call_s']),
          _fmt_s(row['scan']['first_call_s'])]
                        + [_fmt_s(batched.get(b, {}).get('first_call_s')) for b in batch_sizes])
  return rate_rows, first_rows


def _plain_table(rows: list[list[str]]) -> str:
  """Rows as aligned text columns (the first row is the header)."""
  widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
  lines = ['  '.join(c.rjust(w) if i > 1 else c.ljust(w)
                     for i, (c, w) in enumerate(zip(r, widths))) for r in rows]
  lines.insert(1, '  '.join('-' * w for w in widths))
  return '\n'.join(lines)


def _markdown_table(rows: list[list[str]]) -> str:
  """Rows as a Markdown table (the first row is the header)."""
  align = ['---', '---'] + ['--:'] * (len(rows[0]) - 2)
  return '\n'.join('| ' + ' | '.join(r) + ' |' for r in [rows[0], align] + rows[1:])


def render_text(results: dict[str, Any]) -> str:
  """The results as plain-text tables for the terminal."""
  rate_rows, first_rows = _tables(results)
  return ('Steps/s (median; B=b counts b environment steps per call):\n'
          + _plain_table(rate_rows)
          + '\n\nFirst call of the jitted function, s (trace + compile + one call):\n'
          + _plain_table(first_rows))


def render_markdown(results: dict[str, Any]) -> str:
  """The results as Markdown (machine, command and two tables) for docs/BENCHMARKS.md."""
  info, settings = results['machine'], results['flags']
  versions = ', '.join(f'{k} {v}' for k, v in info['versions'].items() if v)
  rate_rows, first_rows = _tables(results)
  return '\n'.join([
      f'Measured {info["date"]} on {info["cpu_model"] or info["processor"]} '
      f'({info["cpu_count"]} CPUs, {", ".join(info["jax_devices"])}); {versions}.',
      '',
      f'Command: `{results["command"]}`',
      '',
      f'Environment steps per second, median of {settings["repeats"]} repeats. '
      '"python step" is one jitted step per Python call (Gymnasium: one `env.step`); '
      f'"scan" runs {settings["steps_per_call"]} steps per jitted call unbatched, and '
      '"B=b" the same under `vmap` over b environments (each call counts b times as many steps).',
      '',
      _markdown_table(rate_rows),
      '',
      'Seconds of the first call of each jitted function (tracing, compilation and one '
      'call; "scan" and "B=b" are the rollouts above).',
      '',
      _markdown_table(first_rows),
      '',
  ])


def main(argv: Sequence[str]) -> None:
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {" ".join(argv[1:])}')
  if FLAGS.from_json:
    with open(FLAGS.from_json, encoding='utf-8') as f:
      results = json.load(f)
  else:
    unknown = sorted(set(FLAGS.tasks) - set(envs.names()))
    if unknown:
      raise app.UsageError(f'unknown tasks {unknown}; valid: {", ".join(envs.names())}')
    batch_sizes = [int(b) for b in FLAGS.batch_sizes]
    if FLAGS.compilation_cache_dir:
      jax_setup.compilation_cache(FLAGS.compilation_cache_dir)
      jax.config.update('jax_persistent_cache_min_compile_time_secs', 0.0)
    else:
      jax.config.update('jax_enable_compilation_cache', False)
    machine_info = machine.machine_info(_PACKAGES)
    load_before = os.getloadavg()
    rows = run(FLAGS.tasks, batch_sizes)
    results = {
        'benchmark': 'envs',
        'command': shlex.join([os.path.basename(sys.executable)] + sys.argv),
        'argv': list(sys.argv),
        'flags': {'tasks': list(FLAGS.tasks), 'batch_sizes': batch_sizes,
                  'steps_per_call': FLAGS.steps_per_call,
                  'python_steps': FLAGS.python_steps, 'gym_steps': FLAGS.gym_steps,
                  'repeats': FLAGS.repeats, 'seed': FLAGS.seed, 'fast': FLAGS.fast,
                  'gymnasium': FLAGS.gymnasium, 'brax': FLAGS.brax,
                  'compilation_cache_dir': FLAGS.compilation_cache_dir},
        'machine': {**machine_info, 'loadavg_before': list(load_before),
                    'loadavg_after': list(os.getloadavg())},
        'rows': rows,
    }
    if FLAGS.out:
      os.makedirs(os.path.dirname(os.path.abspath(FLAGS.out)), exist_ok=True)
      with open(FLAGS.out, 'w', encoding='utf-8') as f:
        json.dump(results, f, indent=1)
        f.write('\n')
  print(render_text(results))
  if FLAGS.markdown:
    print()
    print(render_markdown(results))
  if FLAGS.out and not FLAGS.from_json:
    print(f'\nwrote {FLAGS.out}')


if __name__ == '__main__':
  app.run(main)
