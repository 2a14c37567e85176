"""benchmarks/device.py, the GPU's benchmark, runs on the CPU at tiny sizes: every
kind of row is measured and the projection follows from them by its formula. Its
training steps and projection are of the physics-free ``stub`` task (the arithmetic is
the subject); inverted_pendulum's environment step is measured in every setting, Warp's
included."""

import json
import os
import subprocess
import sys

import jax
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.mark.xdist_group('device_benchmark')
def test_device_benchmark_measures_every_part_and_projects_the_grid(tmp_path):
  figure = tmp_path / 'figure.cfg'
  figure.write_text('--figure=tiny\n--env=stub\n--env=hopper\n'
                    '--arm=ensemble_sac\n--arm=piekd\n--arm=vanilla_sac\n--num_seeds=2\n'
                    '--total_steps=50000\n')
  grid = tmp_path / 'grid.cfg'
  grid.write_text('--figure_file=figure.cfg\n')  # named from the grid file's folder
  out = tmp_path / 'device.json'
  subprocess.run(
      [sys.executable, 'benchmarks/device.py', '--tasks=stub,inverted_pendulum', '--lanes=2',
       '--settings=today,command_buffers,warp', '--step_tasks=stub',
       '--ensemble_sizes=3', '--steps=2', '--repeats=1',
       '--grid_task=stub', f'--grid={grid}', '--grid_capacity=1000',
       f'--jax_cache_dir={jax.config.jax_compilation_cache_dir or ""}', f'--out={out}'],
      cwd=ROOT, check=True, capture_output=True, text=True, timeout=600)
  data = json.loads(out.read_text())
  rows = data['rows']
  by_kind = {}
  for row in rows:
    by_kind.setdefault((row['kind'], row.get('setting')), []).append(row)
  assert [r['lanes'] for r in by_kind['update', None]] == [2]
  # The command buffers were measured by a child process started with XLA's flag.
  assert [r['task'] for r in by_kind['env', 'command_buffers']] == ['stub', 'inverted_pendulum']
  assert '--xla_gpu_enable_command_buffer=+WHILE,+CONDITIONAL' in data[
      'command_buffers_xla_flags'].split()
  assert '--xla_gpu_enable_command_buffer' not in data['xla_flags']
  for setting in ('today', 'command_buffers'):  # static's step: tests/test_train.py
    assert [(r['task'], r['lanes']) for r in by_kind['env', setting]] == [
        ('stub', 2), ('inverted_pendulum', 2)]
    # The grid's stub runs with K = 3: ensemble_sac and piekd, 2 seeds each,
    # trimmed to the 2 lanes measured: a seed of each run, grouped as the sweep groups
    # them.
    (step_row,) = by_kind['step', setting]
    assert step_row['lanes'] == 2 and step_row['runs'] == ['ensemble_sac S=1', 'piekd S=1']
    for row in by_kind['env', setting] + by_kind['update', None] + [step_row]:
      assert row['status'] == 'ok', row
      assert row['ms_per_step'] > 0 and row['first_call_s'] > 0
    (projection,) = by_kind['projection', setting]
    assert projection['status'] == 'ok'
    env = {r['lanes']: r['ms_per_step'] for r in by_kind['env', setting]
           if r['task'] == 'stub'}
    # The child measured its own updates, on which its projection is built.
    update = {r['lanes']: r['ms_per_step']
              for r in by_kind.get(('update', setting), by_kind['update', None])}
    step = step_row['ms_per_step']
    assert projection['overhead'] == pytest.approx(step / (env[2] + update[2]))
    # Groups: stub K = 1 (2 lanes) and K = 3 (4 lanes, beyond the measured L = 2:
    # scaled by 4 / 2); hopper was not measured and is reported missing, not guessed.
    groups = {(g['task'], g['K']): g for g in projection['groups']}
    assert set(groups) == {('stub', 1), ('stub', 3)}
    assert projection['missing'] == ['hopper K=1', 'hopper K=3']
    k3 = groups[('stub', 3)]
    assert k3['lanes'] == 4 and k3['total_steps'] == 50000
    assert k3['step_ms'] == pytest.approx(projection['overhead'] * (env[2] + update[2]) * 2)
    k1 = groups[('stub', 1)]
    assert k1['step_ms'] == pytest.approx(projection['overhead'] * (env[2] + update[2] / 3))
    assert projection['hours'] == pytest.approx(
        sum(g['total_steps'] * g['step_ms'] / 3.6e6 for g in groups.values()))
  # Warp: inverted_pendulum's env step where mujoco_warp imports, else a row saying why
  # not; the stub has no MuJoCo model for it.
  stub, warp = by_kind['env', 'warp']
  assert stub['status'] == 'not offered' and 'no MuJoCo model' in stub['message'], stub
  assert warp['task'] == 'inverted_pendulum' and warp['status'] in ('ok', 'not offered')
  (equality,) = by_kind['equality', None]
  assert equality['status'] == 'ok' and equality['run'] == 'ensemble_sac', equality
  assert 0 <= equality['max_abs_diff'] < 1e-3 and equality['leaves'] > 0
