"""benchmarks/roundtrips.py counts a program's host round trips in its jaxpr: tiny
functions whose loops and conds are known, and inverted_pendulum's programs end to end
(tracing only, nothing compiles)."""

import importlib.util
import json
import os
import subprocess
import sys

import jax
from jax import lax
import jax.numpy as jnp
import mujoco

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_SPEC = importlib.util.spec_from_file_location(
    'roundtrips', os.path.join(ROOT, 'benchmarks', 'roundtrips.py'))
roundtrips = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(roundtrips)

X = jnp.float32(1.0)


def rows_of(fn, *args):
  return roundtrips.count(jax.make_jaxpr(fn)(*args))


def kinds(rows):
  return sorted((row['kind'], tuple(row['scope']), row['count']) for row in rows)


def branch(x):
  return lax.cond(x > 0, lambda y: y + 1, lambda y: y - 1, x)


def test_a_fori_loop_with_constant_bounds_is_no_data_dependent_loop():
  # Python bounds: jax writes a scan of 5 trips, and its cond runs 5 times.
  assert kinds(rows_of(lambda x: lax.fori_loop(0, 5, lambda i, c: branch(c), x), X)) == [
      ('cond', (), 5)]


def test_a_counted_while_loop_with_literal_bounds_has_a_static_trip_count():
  def up(x):  # i = 0, 1, ..., 9: 10 trips
    return lax.while_loop(lambda c: c[0] < 10, lambda c: (c[0] + 1, branch(c[1])), (0, x))

  def down(x):  # i = 9, 7, 5, 3, 1: 5 trips
    return lax.while_loop(lambda c: c[0] > 0, lambda c: (c[0] - 2, branch(c[1])), (9, x))

  def to_bound(x):  # the bound is a carry the body passes through: i = 2, ..., 6
    return lax.while_loop(lambda c: c[0] <= c[1], lambda c: (c[0] + 1, c[1], branch(c[2])),
                          (2, 6, x))

  def until_equal(x):  # i = 0, 3, 6, 9: 4 trips
    return lax.while_loop(lambda c: c[0] != 12, lambda c: (c[0] + 3, branch(c[1])), (0, x))

  assert kinds(rows_of(up, X)) == [('cond', (), 10)]
  assert kinds(rows_of(until_equal, X)) == [('cond', (), 4)]
  assert kinds(rows_of(down, X)) == [('cond', (), 5)]
  assert kinds(rows_of(to_bound, X)) == [('cond', (), 5)]


def test_a_loop_on_data_is_one_data_dependent_loop_and_its_conds_count_per_iteration():
  def on_data(x):
    return lax.while_loop(lambda c: c < 10.0, lambda c: branch(c) * 2.0, x)

  def traced_bound(x, n):  # fori_loop with a traced bound: a while loop
    return lax.fori_loop(0, n, lambda i, c: branch(c), x)

  rows = rows_of(on_data, X)
  (loop,) = [row for row in rows if row['kind'] == 'while']
  assert loop['count'] == 1 and loop['scope'] == [] and not loop['per_iteration']
  assert loop['source'].startswith('tests/test_roundtrips.py:')
  (cond,) = [row for row in rows if row['kind'] == 'cond']
  assert cond['scope'] == [loop['source']] and cond['count'] == 1 and cond['per_iteration']
  rows = rows_of(traced_bound, X, 3)
  (loop,) = [row for row in rows if row['kind'] == 'while']
  assert kinds(rows) == [('cond', (loop['source'],), 1), ('while', (), 1)]


def test_a_cond_inside_a_scan_of_7_counts_7_and_a_switch_is_a_cond():
  def scanned(x):
    return lax.scan(lambda c, _: (branch(c), None), x, None, length=7)[0]

  def switched(x):
    return lax.switch(2, [lambda y: y, lambda y: y + 1, lambda y: y * 2], x)

  assert kinds(rows_of(scanned, X)) == [('cond', (), 7)]
  assert kinds(rows_of(switched, X)) == [('cond', (), 1)]


def test_loops_inside_a_data_dependent_loop_multiply_per_iteration():
  def nested(x):
    def body(c):
      return lax.scan(lambda d, _: (branch(d), None), c, None, length=3)[0] * 2.0

    c = lax.while_loop(lambda c: c < 10.0, body, x)
    return lax.fori_loop(0, 4, lambda i, d: lax.while_loop(lambda e: e < 5.0, branch, d), c)

  rows = rows_of(nested, X)
  loops = [row for row in rows if row['kind'] == 'while']
  # The first loop: entered once, 3 conds per iteration; the second: entered 4 times (a
  # static loop around it), its cond once per iteration.
  per_iteration = {row['scope'][0]: row['count'] for row in rows if row['kind'] == 'cond'}
  assert sorted((row['count'], per_iteration[row['source']]) for row in loops) == [
      (1, 3), (4, 1)]


def test_a_cond_inside_a_branch_counts_per_run_of_the_branch():
  def nested(x):
    return lax.cond(x > 0, lambda y: lax.scan(lambda c, _: (branch(c), None), y, None,
                                              length=2)[0], lambda y: y, x)

  rows = rows_of(nested, X)
  outer = [row for row in rows if not row['scope']]
  inner = [row for row in rows if row['scope']]
  assert [r['count'] for r in outer] == [1] and [r['count'] for r in inner] == [2]
  assert inner[0]['scope'][0].endswith(' branch 1') and not inner[0]['per_iteration']


def test_under_vmap_a_batched_predicate_becomes_a_select_and_an_unbatched_one_a_cond():
  xs = jnp.ones((3,), jnp.float32)
  batched = jax.vmap(jax.jit(branch))
  unbatched = jax.vmap(jax.jit(lambda x, flag: lax.cond(flag > 0, jnp.sin, jnp.cos, x)),
                       in_axes=(0, None))
  assert rows_of(batched, xs) == []
  assert 'select_n' in str(jax.make_jaxpr(batched)(xs))
  assert kinds(rows_of(unbatched, xs, X)) == [('cond', (), 1)]


def test_a_platform_dependent_cond_is_resolved_when_compiled_to_the_gpus_branch():
  # lax.platform_dependent's cond: XLA keeps one branch when it compiles (jnp.diag is
  # written with one); only what the GPU's branch runs counts.
  def on_gpu(x):
    return lax.platform_dependent(x, cuda=branch, default=lambda y: y)

  def elsewhere(x):
    return lax.platform_dependent(x, cpu=branch, default=lambda y: y)

  assert 'platform_index' in str(jax.make_jaxpr(on_gpu)(X))
  assert kinds(rows_of(on_gpu, X)) == [('cond', (), 1)]
  assert rows_of(elsewhere, X) == []


def test_inverted_pendulums_programs_end_to_end(tmp_path):
  out = tmp_path / 'roundtrips.json'
  result = subprocess.run(
      [sys.executable, 'benchmarks/roundtrips.py', '--tasks=inverted_pendulum',
       '--lanes=1,2', '--control_flow=dynamic', f'--out={out}'], cwd=ROOT, check=True,
      capture_output=True,
      text=True, timeout=600)
  assert '### inverted_pendulum' in result.stdout
  data = json.loads(out.read_text())
  by_program = {}
  for row in data['rows']:
    by_program.setdefault(row['program'], []).append(row)
  assert set(by_program) == {'task step', 'chunk L=1', 'chunk L=2', 'evaluation'}
  from piekd_mjx import envs  # pylint: disable=g-import-not-at-top
  task_class = envs.make_class('inverted_pendulum')
  model = mujoco.MjModel.from_xml_path(envs.base.gymnasium_asset(task_class.xml_file))
  solver = 'mjx solver while'
  for program in ('task step', 'chunk L=1', 'chunk L=2'):
    step = data['per_step']['inverted_pendulum'][program]
    # MJX's solver loop, named with its file: once per evaluation of the dynamics, which
    # RK4 evaluates 4 times per physics step.
    rk4 = model.opt.integrator == mujoco.mjtIntegrator.mjINT_RK4
    assert step['loops'][solver] == task_class.frame_skip * (4 if rk4 else 1)
    assert any(w.startswith('mjx/solver.py:') for row in by_program[program]
               for w in row['where'] if row['source'] == solver)
    # The line search: a scan of ls_iterations conds per solver iteration, unbatched;
    # with the lanes vmapped its predicate is batched and every cond becomes a select.
    expected = 0 if program == 'chunk L=2' else int(model.opt.ls_iterations)
    assert step['conds_per_iteration'][solver] == expected
  for program in ('chunk L=1', 'chunk L=2'):
    step = data['per_step']['inverted_pendulum'][program]
    assert step['loop'] == 'chunk loop' and step['loops']["members' updates loop"] == 1
    assert step['conds'] == 1  # the episode restarts
    restarts = [r for r in by_program[program] if r['source'] == 'episode restarts']
    assert [(r['scope'], r['count']) for r in restarts] == [(['chunk loop'], 1)]
  evaluation = data['per_step']['inverted_pendulum']['evaluation']
  assert evaluation['loop'] == 'evaluation loop' and evaluation['conds'] == 0
  assert evaluation['loops'] == {
      solver: data['per_step']['inverted_pendulum']['task step']['loops'][solver]}


def test_a_static_chunk_has_no_loop_or_cond_of_ours(tmp_path):
  # --control_flow=static (an accelerator's): the chunk traced one step long holds
  # MJX's loops and conds only: its step loop and the updates' loop have static trip
  # counts and the restarts are a select, whose reset evaluates the dynamics once more
  # per step (one more MJX solver loop).
  out = tmp_path / 'roundtrips.json'
  subprocess.run(
      [sys.executable, 'benchmarks/roundtrips.py', '--tasks=inverted_pendulum',
       '--lanes=1', '--control_flow=static', f'--out={out}'], cwd=ROOT, check=True,
      capture_output=True, text=True, timeout=600)
  data = json.loads(out.read_text())
  rows = [r for r in data['rows'] if r['program'] == 'chunk L=1']
  assert rows and all(w.startswith('mjx/') for r in rows for w in r['where']), rows
  step = data['per_step']['inverted_pendulum']
  task_step = step['task step']['loops']['mjx solver while']
  assert step['chunk L=1']['loop'] is None and step['chunk L=1']['conds'] == 0
  assert step['chunk L=1']['loops'] == {'mjx solver while': task_step + 1}


def test_the_capped_solvers_task_step_has_no_loop_or_cond():
  # The capped solver (piekd_mjx.envs.capped): MJX's solver loop and its line search as
  # scans of static trip count with selects, so a task's step has no round trip at all;
  # MJX's own solver, traced in the same process, keeps its loop.
  from piekd_mjx import envs  # pylint: disable=g-import-not-at-top
  from piekd_mjx.envs import base  # pylint: disable=g-import-not-at-top
  capped = envs.make('hopper', solver=base.SolverOptions(iterations=3, ls_iterations=5,
                                                         capped=True))
  faithful = envs.make('hopper')
  for task, want in ((capped, []), (faithful, ['mjx line search cond', 'mjx solver while'])):
    state = jax.eval_shape(task.reset, jax.random.PRNGKey(0))
    action = jax.ShapeDtypeStruct((task.action_size,), jnp.float32)
    rows = rows_of(task.step, state, action)
    assert sorted({row['source'] for row in rows}) == want, rows
