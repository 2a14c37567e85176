"""Host round trips per environment step, counted in the jaxprs of our programs.

On a GPU, a ``while`` loop whose trip count XLA does not know copies its predicate to the
host at every check (XLA's while_thunk.cc), and a conditional (``lax.cond``,
``lax.switch``) copies its branch index to the host before it runs a branch
(conditional_thunk.cc). This script traces, on the CPU without compiling, a task's step,
the training chunk and the evaluation program as an accelerator runs them, and counts
every ``cond`` (times the static trip counts around it) and every data-dependent
``while`` (what runs inside one counts per iteration of it), each named by where it was
traced. XLA may later find a trip count that the jaxpr hides, unroll a loop or fold a
conditional away; the counts do not see that (docs/SCALING.md).

  python benchmarks/roundtrips.py --tasks=hopper,humanoid --out=/tmp/roundtrips.json
"""

from __future__ import annotations

import collections
import itertools
import json
import os
import platform
import subprocess
import sys
import time
from typing import Any, NamedTuple

from absl import app
from absl import flags
import jax
from jax._src import source_info_util
import jax.extend.core as jex
import numpy as np

FLAGS = flags.FLAGS
flags.DEFINE_list('tasks', None, 'Tasks (default: every task of piekd_mjx.envs.names()).')
flags.DEFINE_list('lanes', ['1', '5'], 'Lanes L of the traced chunk, all in one vmapped '
                  'batch as on an accelerator (1: unbatched).')
flags.DEFINE_integer('members', 3, 'Members K of the traced programs.')
flags.DEFINE_string('task_solver', 'faithful',
                    "The tasks' solver: 'faithful', 'fast' or 'capped'.")
flags.DEFINE_integer('chunk_steps', 1000, 'Environment steps of a chunk (the default '
                     "--log_every): a dynamic chunk's own loops and conds are divided by it.")
flags.DEFINE_enum('control_flow', 'static', ['static', 'dynamic'],
                  "The chunk's --control_flow: 'static' is what 'auto' picks on an "
                  "accelerator (a static chunk is traced one step long, so everything in it "
                  "counts per environment step); 'dynamic' is a CPU's.")
flags.DEFINE_string('out', '', 'Write every row as JSON here.')

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# Readable names of the known sources, by (file, function, kind); others are named by
# their file, line and function.
NAMES = {
    ('mjx/solver.py', 'solve', 'while'): 'mjx solver while',
    ('mjx/solver.py', '_fun', 'cond'): 'mjx line search cond',
    ('piekd_mjx/train.py', 'steps', 'while'): 'chunk loop',
    ('piekd_mjx/train.py', 'updates', 'while'): "members' updates loop",
    ('piekd_mjx/envs/wrappers.py', 'restart_ended', 'cond'): 'episode restarts',
    ('piekd_mjx/evaluate.py', 'run', 'while'): 'evaluation loop',
}
# The comparisons of a counted loop's predicate, and each with its operands swapped.
_FLIPPED = {'lt': 'gt', 'le': 'ge', 'gt': 'lt', 'ge': 'le', 'ne': 'ne'}


class Row(NamedTuple):
  """One loop or conditional: ``count`` times per run of the innermost of ``scope`` (the
  enclosing data-dependent loops and cond branches, outermost first, each (name, id))."""

  scope: tuple[tuple[str, int], ...]
  source: str
  where: str
  kind: str  # 'while' (data-dependent) or 'cond'
  count: int


def short_path(path: str) -> str:
  """A file's path from its package: mjx/..., piekd_mjx/..., tests/..."""
  for marker, name in (('mujoco/mjx/_src/', 'mjx/'), ('piekd_mjx/', 'piekd_mjx/'),
                       ('benchmarks/', 'benchmarks/'), ('tests/', 'tests/')):
    if marker in path:
      return name + path.rsplit(marker, 1)[1]
  return '/'.join(path.split(os.sep)[-2:])


def source(eqn: Any, kind: str) -> tuple[str, str]:
  """(name, file:line) of the innermost frame outside jax that traced ``eqn``."""
  try:
    frame = next(source_info_util.user_frames(eqn.source_info.traceback), None)
  except AttributeError:  # the jax releases whose user_frames takes the SourceInfo
    frame = next(source_info_util.user_frames(eqn.source_info), None)
  if frame is None:
    return f'unknown {kind}', 'unknown'
  path, function = short_path(frame.file_name), frame.function_name.replace('<locals>.', '')
  where = f'{path}:{frame.start_line}'
  return NAMES.get((path, function.rsplit('.', 1)[-1], kind), f'{where} {function} {kind}'), where


def _open(jaxpr: Any) -> jex.Jaxpr:
  return jaxpr.jaxpr if isinstance(jaxpr, jex.ClosedJaxpr) else jaxpr


def sub_jaxprs(params: dict[str, Any]):
  """The jaxprs among an equation's parameters (pjit, custom_jvp/vjp, remat,
  shard_map, ...), in order."""
  for value in params.values():
    for item in value if isinstance(value, (tuple, list)) else (value,):
      if isinstance(item, (jex.Jaxpr, jex.ClosedJaxpr)):
        yield _open(item)


def _integer(value: Any) -> int | None:
  value = np.asarray(value)
  return value.item() if value.ndim == 0 and value.dtype.kind in 'iu' else None


def static_trips(eqn: Any) -> int | None:
  """The trip count of a ``while`` that is a counted loop with constant bounds: its
  predicate compares a counter (a literal start to which the body adds a literal) with a
  constant (a literal, a constant of the predicate, or a literal start that the body
  passes through); None for any other loop."""
  cond, body = eqn.params['cond_jaxpr'], eqn.params['body_jaxpr']
  num_cond, num_body = eqn.params['cond_nconsts'], eqn.params['body_nconsts']
  outer = eqn.invars[:num_cond] + eqn.invars[num_cond + num_body:]
  body_in, body_out = body.jaxpr.invars[num_body:], body.jaxpr.outvars
  made = {var: e for e in body.jaxpr.eqns for var in e.outvars}
  if len(cond.jaxpr.eqns) != 1 or cond.jaxpr.eqns[0].primitive.name not in _FLIPPED:
    return None

  def operand(var):  # (its carry's index or None, its constant value or None)
    if var in cond.jaxpr.constvars:
      return None, _integer(cond.consts[cond.jaxpr.constvars.index(var)])
    carry = None
    if not isinstance(var, jex.Literal):
      i = cond.jaxpr.invars.index(var)
      carry, var = (i - num_cond if i >= num_cond else None), outer[i]
    return carry, _integer(var.val) if isinstance(var, jex.Literal) else None

  def stride(k):  # the literal that the body adds to (or takes from) carry k, if only that
    e = made.get(body_out[k])
    if e is None or e.primitive.name not in ('add', 'sub'):
      return None
    a, b = e.invars[::-1] if e.primitive.name == 'add' and e.invars[1] is body_in[k] \
        else e.invars
    if a is not body_in[k] or not isinstance(b, jex.Literal) or _integer(b.val) is None:
      return None
    return _integer(b.val) * (1 if e.primitive.name == 'add' else -1)

  compare = cond.jaxpr.eqns[0]
  (counter, start), (bound_carry, bound) = map(operand, compare.invars)
  op = compare.primitive.name
  if counter is None or stride(counter) is None:
    (counter, start), (bound_carry, bound) = (bound_carry, bound), (counter, start)
    op = _FLIPPED[op]
  if counter is None or not stride(counter) or start is None or bound is None or (
      bound_carry is not None and body_out[bound_carry] is not body_in[bound_carry]):
    return None
  step, span = stride(counter), bound - start
  if op in ('lt', 'le') and step > 0:  # start, start + step, ... while < (<=) bound
    return max(0, (span - (op == 'lt')) // step + 1)
  if op in ('gt', 'ge') and step < 0:
    return max(0, (-span - (op == 'gt')) // -step + 1)
  if op == 'ne' and span % step == 0 and span // step >= 0:
    return span // step
  return None


def platform_branch(eqn: Any, made_by: dict[Any, Any]) -> int | None:
  """The branch that a GPU keeps of a ``cond`` that ``lax.platform_dependent`` made (its
  index is a ``platform_index``, which XLA resolves when it compiles); None for a
  ``cond`` that chooses at run time."""
  made = made_by.get(eqn.invars[0])
  if made is None or made.primitive.name != 'platform_index':
    return None
  platforms = made.params['platforms']
  gpu = [i for i, names in enumerate(platforms) if names and {'cuda', 'gpu'} & set(names)]
  return (gpu or [i for i, names in enumerate(platforms) if names is None] or [0])[0]


def walk(jaxpr: jex.Jaxpr, times: int, scope: tuple, rows: list[Row], ids) -> None:
  """Appends the rows of ``jaxpr``, run ``times`` times per run of ``scope``."""
  made_by = {var: eqn for eqn in jaxpr.eqns for var in eqn.outvars}
  for eqn in jaxpr.eqns:
    kind = eqn.primitive.name
    kept = platform_branch(eqn, made_by) if kind == 'cond' else None
    if kept is not None:
      walk(_open(eqn.params['branches'][kept]), times, scope, rows, ids)
    elif kind == 'while':
      parts = [_open(eqn.params['cond_jaxpr']), _open(eqn.params['body_jaxpr'])]
      trips = static_trips(eqn)
      if trips is None:
        name, where = source(eqn, 'while')
        rows.append(Row(scope, name, where, 'while', times))
        inside = scope + ((name, next(ids)),)
        for part in parts:  # the predicate and the body: once per iteration each
          walk(part, 1, inside, rows, ids)
      else:
        walk(parts[0], times * (trips + 1), scope, rows, ids)
        walk(parts[1], times * trips, scope, rows, ids)
    elif kind == 'cond':
      name, where = source(eqn, 'cond')
      rows.append(Row(scope, name, where, 'cond', times))
      for i, branch in enumerate(eqn.params['branches']):
        walk(_open(branch), 1, scope + ((f'{name} branch {i}', next(ids)),), rows, ids)
    elif kind == 'scan':
      walk(_open(eqn.params['jaxpr']), times * eqn.params['length'], scope, rows, ids)
    else:
      for part in sub_jaxprs(eqn.params):
        walk(part, times, scope, rows, ids)


def count(jaxpr: Any) -> list[dict[str, Any]]:
  """The rows of a (closed) jaxpr: counts summed over the loops and conds of one source
  in one run of a scope, and the largest over the runs of scopes of the same names
  (several traced copies of one loop's body count once per iteration)."""
  rows: list[Row] = []
  walk(_open(jaxpr), 1, (), rows, itertools.count())
  summed, wheres = collections.Counter(), collections.defaultdict(set)
  for row in rows:
    summed[row.scope, row.source, row.kind] += row.count
    wheres[tuple(label for label, _ in row.scope), row.source, row.kind].add(row.where)
  merged: dict[tuple, int] = {}
  for (scope, name, kind), n in summed.items():
    key = (tuple(label for label, _ in scope), name, kind)
    merged[key] = max(merged.get(key, 0), n)
  return [{'scope': list(scope), 'source': name, 'kind': kind, 'count': n,
           'per_iteration': bool(scope) and ' branch ' not in scope[-1],
           'where': sorted(wheres[scope, name, kind])}
          for (scope, name, kind), n in sorted(merged.items())]


def trace(name: str) -> dict[str, tuple[Any, str | None, int | None]]:
  """Task ``name``'s programs: each one's jaxpr, the loop whose iteration is one
  environment step (None: the whole program is one) and the steps of one run of the
  program that its own rows are spread over (None: they are not)."""
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  from piekd_mjx import config as config_lib  # pylint: disable=g-import-not-at-top
  from piekd_mjx import envs  # pylint: disable=g-import-not-at-top
  from piekd_mjx import evaluate  # pylint: disable=g-import-not-at-top
  from piekd_mjx import programs as programs_lib  # pylint: disable=g-import-not-at-top
  task = envs.make(name, solver=FLAGS.task_solver)
  env_state = jax.eval_shape(task.reset, jax.random.PRNGKey(0))
  action = jax.ShapeDtypeStruct((task.action_size,), jnp.float32)
  programs = {'task step': (jax.make_jaxpr(task.step)(env_state, action), None, None)}
  for lanes in map(int, FLAGS.lanes):
    config = config_lib.apply_variant(config_lib.Config(
        env=name, variant='piekd', ensemble_size=FLAGS.members, num_seeds=lanes,
        seed_batch=lanes, hidden_sizes=(8, 8), batch_size=16, replay_capacity=1000,
        warmup_steps=16, distill_batch_size=16, solver=FLAGS.task_solver,
        control_flow=FLAGS.control_flow), ('ensemble_size',))
    config.validate()
    trainer = programs_lib.make_group_trainer([config], task)
    state = jax.eval_shape(trainer.init)
    if FLAGS.control_flow == 'static':  # the length is part of the program: one step
      jaxpr = jax.make_jaxpr(trainer.chunk, static_argnums=(1, 2))(state, 1, True)
      programs[f'chunk L={lanes}'] = (jaxpr, None, None)
    else:
      programs[f'chunk L={lanes}'] = (jax.make_jaxpr(trainer.chunk)(state, 1, True),
                                      'chunk loop', FLAGS.chunk_steps)
  # One run's evaluation: S = 1 seed's K members, every episode in one batch.
  actors = jax.tree.map(lambda x: jax.ShapeDtypeStruct((1,) + x.shape[1:], x.dtype),
                        state.members.actor_params)
  episodes = evaluate.make_evaluate(task, trainer.sac, config.episode_length,
                                    config.eval_episodes)
  programs['evaluation'] = (jax.make_jaxpr(episodes)(actors, jax.random.PRNGKey(0)),
                            'evaluation loop', None)
  return programs


def per_step(rows: list[dict[str, Any]], loop: str | None, steps: int | None
             ) -> dict[str, Any]:
  """Per environment step (an iteration of ``loop``, or the whole program if None): the
  conds, the data-dependent loops entered and the conds per iteration of each (the
  program's own rows divided by ``steps``; ``loop``'s own predicate not counted)."""
  at_step = [loop] if loop else []
  share = [(r, 1) for r in rows if r['scope'] == at_step]
  if loop and steps:  # the program's own rows, once per ``steps`` steps
    share += [(r, 1 / steps) for r in rows if not r['scope'] and r['source'] != loop]
  loops = collections.Counter()
  for row, part in share:
    if row['kind'] == 'while':
      loops[row['source']] += row['count'] * part
  return {'conds': sum(r['count'] * part for r, part in share if r['kind'] == 'cond'),
          'loops': dict(loops),
          'conds_per_iteration': {name: sum(r['count'] for r in rows if r['kind'] == 'cond'
                                            and r['scope'] == at_step + [name])
                                  for name in loops}}


def markdown(task: str, results: dict[str, dict[str, Any]]) -> str:
  """The task's rows, then its counts per environment step, as Markdown tables."""
  lines = [f'### {task}', '', '| program | per | source | kind | count | where |',
           '|---|---|---|---|---|---|']
  for program, result in results.items():
    root = 'env step' if result['loop'] is None else program.split()[0]
    for row in result['rows']:
      scope = ['env step' if n == result['loop'] else n for n in row['scope']] or [root]
      lines.append(f"| {program} | {' > '.join(scope)} | {row['source']} | {row['kind']} "
                   f"| {row['count']} | {', '.join(row['where'])} |")
  lines += ['', '| program | conds / env step | data-dependent loops entered / env step '
            '| conds per iteration |', '|---|---|---|---|']
  for program, result in results.items():
    step, own = result['per_step'], [f"1 {result['loop']} iteration"] * bool(result['loop'])
    entered = ', '.join(own + [f'{n:g} {name}' for name, n in step['loops'].items()])
    inside = ', '.join(f'{name}: {n}' for name, n in step['conds_per_iteration'].items())
    lines.append(f"| {program} | {step['conds']:g} | {entered} | {inside or '-'} |")
  return '\n'.join(lines) + '\n'


def main(argv):
  del argv
  from piekd_mjx import envs  # pylint: disable=g-import-not-at-top
  commit = subprocess.run(['git', 'rev-parse', '--short', 'HEAD'], cwd=ROOT,
                          capture_output=True, text=True, check=False).stdout.strip()
  results = {'argv': sys.argv, 'control_flow': FLAGS.control_flow,
             'date': time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime()),
             'machine': platform.processor() or platform.machine(), 'cpus': os.cpu_count(),
             'jax': jax.__version__, 'commit': commit, 'rows': []}
  for task in FLAGS.tasks or envs.names():
    by_program = {}
    for program, (jaxpr, loop, steps) in trace(task).items():
      rows = count(jaxpr)
      by_program[program] = {'loop': loop, 'rows': rows,
                             'per_step': per_step(rows, loop, steps)}
      results['rows'] += [{'task': task, 'program': program, **row} for row in rows]
    results.setdefault('per_step', {})[task] = {
        p: {'loop': r['loop'], **r['per_step']} for p, r in by_program.items()}
    print(markdown(task, by_program), flush=True)
    if FLAGS.out:
      with open(FLAGS.out, 'w', encoding='utf-8') as f:
        json.dump(results, f, indent=2)


if __name__ == '__main__':
  app.run(main, argv=sys.argv)
