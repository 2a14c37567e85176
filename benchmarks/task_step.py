"""Times a task's step alone, bare and as the trainer runs it, in a few seconds a side.

The two task-step timings of benchmarks/train.py's section 3 without building a
trainer, so that comparing commits is cheap: a jitted ``lax.scan`` of ``--steps`` bare
task steps (uniform random actions in the control range, benchmarks/rollout.py) and of
the step as trained (``TrainingWrapper`` for S = 1, the seed axis squeezed, ended
episodes restarted under one ``lax.cond``), each a first call and ``--repeats`` timed
calls. It uses only what the package has had since the wrapper existed, so the same
script times an old commit's code when that commit's worktree is first on PYTHONPATH
(the imported package's path is printed and saved)::

  git worktree add /tmp/wt-OLD OLD
  PYTHONPATH=/tmp/wt-OLD python benchmarks/task_step.py --tasks=halfcheetah
  PYTHONPATH=$PWD python benchmarks/task_step.py --tasks=halfcheetah

Run the two sides alternately several times: this machine's speed drifts by tens of
percent within minutes.
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import time
from typing import Any, Callable, Sequence

from absl import app
from absl import flags
import jax
import jax.numpy as jnp

import machine  # benchmarks/machine.py, beside this script
import rollout  # benchmarks/rollout.py, beside this script
import piekd_mjx
from piekd_mjx import envs
from piekd_mjx.envs.wrappers import TrainingWrapper

FLAGS = flags.FLAGS

flags.DEFINE_list('tasks', ['halfcheetah'], 'Tasks to time (piekd_mjx names).')
flags.DEFINE_string('solver', 'faithful', "The tasks' physics solver (--solver of the "
                    'launcher, where the task offers it).')
flags.DEFINE_integer('steps', 200, 'Task steps per timed call (a lax.scan).')
flags.DEFINE_integer('repeats', 9, 'Timed calls per measurement.')
flags.DEFINE_integer('seed', 0, 'PRNG seed of the reset and the actions.')
flags.DEFINE_integer('episode_length', 1000, "The wrapper's time limit.")
flags.DEFINE_string('out', '', 'Write the results to this JSON file (none if empty).')

_PACKAGES = ('jax', 'jaxlib', 'mujoco', 'mujoco-mjx', 'brax')


def _time(fn: Callable[..., Any], carry: tuple) -> dict[str, Any]:
  """First call (trace, compile, run) and ``--repeats`` timed calls of ``fn(*carry)``,
  each fed the previous call's output."""
  start = time.perf_counter()
  carry = jax.block_until_ready(fn(*carry))
  first_s = time.perf_counter() - start
  times = []
  for _ in range(FLAGS.repeats):
    start = time.perf_counter()
    carry = jax.block_until_ready(fn(*carry))
    times.append(time.perf_counter() - start)
  per_step = [1e3 * t / FLAGS.steps for t in times]
  return {'first_call_s': first_s, 'median_ms': statistics.median(per_step),
          'best_ms': min(per_step), 'step_ms': per_step}


def _squeezed(fn: Callable[..., Any]) -> Callable[..., Any]:
  """``fn`` on arguments with their leading axis of length 1 removed, the axis put back
  on the results (the trainer's S = 1 mapping)."""

  def squeezed(*args):
    out = fn(*jax.tree.map(lambda x: jax.lax.squeeze(x, (0,)), args))
    return jax.tree.map(lambda x: jax.lax.expand_dims(x, (0,)), out)

  return squeezed


def bare_step(task: envs.MjxTask, key: jax.Array) -> dict[str, Any]:
  """The bare task step, as benchmarks/train.py's ``measure_task_step``."""
  key_reset, key = jax.random.split(key)
  steps = rollout.make_rollout(task, task.action_low, task.action_high, FLAGS.steps)
  return _time(jax.jit(steps), (jax.jit(task.reset)(key_reset), key))


def trained_step(task: envs.MjxTask, key: jax.Array) -> dict[str, Any]:
  """The step as trained, as benchmarks/train.py's ``measure_wrapped_task_step``."""
  env = TrainingWrapper(task, FLAGS.episode_length)

  def steps(state, key):
    def body(carry, _):
      state, key = carry
      key, key_action = jax.random.split(key)
      action = jax.random.uniform(key_action, (1, task.action_size), minval=-1.0,
                                  maxval=1.0)
      state = _squeezed(env.step_without_restart)(state, action)
      ended = jnp.any(jax.vmap(env.ended)(state))
      state = jax.lax.cond(ended, _squeezed(env.restart_where), lambda s: s, state)
      return (state, key), None

    return jax.lax.scan(body, (state, key), None, length=FLAGS.steps)[0]

  key_reset, key = jax.random.split(key)
  return _time(jax.jit(steps), (jax.jit(jax.vmap(env.reset))(key_reset[None]), key))


def main(argv: Sequence[str]) -> None:
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {" ".join(argv[1:])}')
  unknown = sorted(set(FLAGS.tasks) - set(envs.names()))
  if unknown:
    raise app.UsageError(f'unknown tasks {unknown}; valid: {", ".join(envs.names())}')
  jax.config.update('jax_enable_compilation_cache', False)
  package = os.path.dirname(os.path.abspath(piekd_mjx.__file__))
  print(f'piekd_mjx from {package}', flush=True)
  results: dict[str, Any] = {
      'benchmark': 'task_step', 'argv': list(sys.argv), 'package': package,
      'flags': {'tasks': list(FLAGS.tasks), 'solver': FLAGS.solver, 'steps': FLAGS.steps,
                'repeats': FLAGS.repeats, 'seed': FLAGS.seed,
                'episode_length': FLAGS.episode_length},
      'machine': machine.machine_info(_PACKAGES), 'tasks': {}}
  for name in FLAGS.tasks:
    task = envs.make(name, solver=FLAGS.solver)
    key = jax.random.PRNGKey(FLAGS.seed)
    row = {'bare': bare_step(task, key), 'as_trained': trained_step(task, key)}
    results['tasks'][name] = row
    for label, timing in row.items():
      print(f'{name} {label:10s} median {timing["median_ms"]:.3f} ms  best '
            f'{timing["best_ms"]:.3f} ms  (first call {timing["first_call_s"]:.1f} s)',
            flush=True)
  if FLAGS.out:
    with open(FLAGS.out, 'w', encoding='utf-8') as f:
      json.dump(results, f, indent=1)
      f.write('\n')


if __name__ == '__main__':
  app.run(main)
