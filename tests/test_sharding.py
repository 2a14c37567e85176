"""Lanes split over devices (piekd_mjx/sharding.py): on two CPU devices forced in a
subprocess, a group's records equal one device's (chunks, phases on lanes of either
device, evaluations; bit for bit with jax 0.9, to float32 rounding with 0.10), each
device holds its own lanes' state and replay buffers, a group's checkpoint restores
onto the devices (test_processes resumes one over processes), lanes that do not divide
over the devices given are refused and 0 devices takes as many as divide them; and the
host's lists of each device's lanes. The runs are of the physics-free ``stub`` task
(envs/stub.py)."""

import os
import subprocess
import sys
import textwrap

import jax
import numpy as np
import pytest

from piekd_mjx import sharding

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Two runs of two seeds (4 lanes, 2 a device) with phases of two kinds and intervals.
SCRIPT = textwrap.dedent('''
    import io, json, os, sys
    import jax
    import numpy as np
    from jax.sharding import PartitionSpec
    from piekd_mjx import checkpoint as checkpoint_lib, config as config_lib
    from piekd_mjx import programs as programs_lib, sharding, train as train_lib
    from piekd_mjx import records as records_lib, run as run_lib

    jax.config.update('jax_compilation_cache_dir', sys.argv[2])
    jax.config.update('jax_persistent_cache_min_compile_time_secs', 1.0)
    assert len(jax.devices()) == 2, jax.devices()
    SETTING = dict(env='stub', num_seeds=2, ensemble_size=3, hidden_sizes=(8, 8),
                   total_steps=600, eval_every=300, warmup_steps=200, batch_size=16,
                   log_every=200, eval_episodes=2, replay_capacity=1000,
                   checkpoint_every=300, keep_checkpoints=1, distill_data='sample',
                   distill_sample_batches=2, distill_batch_size=16, distill_interval=300)
    ARMS = (dict(variant='piekd'), dict(variant='piekd_hardcopy', seed=1, distill_interval=200))

    def configs(devices, **changes):
      out = []
      for arm in ARMS:
        values = {**SETTING, **arm, 'num_devices': devices, **changes}
        out.append(config_lib.apply_variant(config_lib.Config(**values), frozenset(values)))
      return out

    def assert_same(a, b):
      # Equal but for float32 rounding: jax 0.10 compiles the per-device programs to
      # code that rounds a few SAC metrics differently (up to 1.2e-5 relative here, over
      # the hundreds of updates a metric averages), 0.9 does not.
      assert [[r['step'] for r in x] for x in a] == [[r['step'] for r in x] for x in b]
      for p, q in zip(sum(a, []), sum(b, [])):
        assert p.keys() == q.keys(), (p.keys(), q.keys())
        for k in p:
          np.testing.assert_allclose(np.asarray(p[k], float), np.asarray(q[k], float),
                                     rtol=1e-4, atol=1e-6, err_msg=f"{p['step']} {k}")

    def records(run_dir):
      with open(os.path.join(run_dir, 'metrics.jsonl')) as f:
        return [{k: v for k, v in json.loads(line).items()
                 if k not in records_lib.WALL_CLOCK_FIELDS} for line in f]

    def group(devices, root, **kw):
      dirs = [os.path.join(root, f'run{r}') for r in range(len(ARMS))]
      log = io.StringIO()
      run_lib.run_group(configs(devices, **kw.pop('changes', {})), dirs,
                        os.path.join(root, 'group'), out=log, err=io.StringIO(), **kw)
      return [records(d) for d in dirs], log.getvalue()

    root = sys.argv[1]
    one, _ = group(1, os.path.join(root, 'one'))
    two, log = group(2, os.path.join(root, 'two'))
    assert "2 cpu devices (0, 1), the lanes split over mesh axis 'lanes'" in log, log
    assert_same(one, two)
    assert [r['step'] for r in one[0]] == [300, 600] and 'distill/policy_kl_after' in one[0][1]

    # A group checkpointed on the two devices and restored there.
    trainer = programs_lib.make_group_trainer(configs(2))
    checkpointer = checkpoint_lib.Checkpointer(os.path.join(root, 'two', 'group'), 1,
                                              sharding.abstract(jax.eval_shape(trainer.init),
                                                                trainer.mesh))
    restored, _, _ = checkpointer.restore(print)
    assert int(restored.step) == 600
    assert restored.replay.data.sharding.spec == PartitionSpec('lanes')
    checkpointer.close()

    # Each device holds its own block of every lane leaf, the replay buffers included.
    state, _ = trainer.collect(trainer.init(), 5)
    data = state.replay.data
    assert data.sharding.spec == PartitionSpec('lanes'), data.sharding
    assert sorted(s.data.shape[0] for s in data.addressable_shards) == [2, 2]
    assert {s.device for s in data.addressable_shards} == set(jax.devices())
    # A phase of lanes of one device only, then of both: as on one device.
    single = programs_lib.make_group_trainer(configs(1))
    other, _ = single.collect(single.init(), 5)
    for lanes in ([3], [0, 2, 3]):
      state, got = trainer.phase(state, lanes)
      other, want = single.phase(other, lanes)
      for name in want:
        np.testing.assert_allclose(got[name], want[name], rtol=1e-5, atol=1e-6, err_msg=name)
    for a, b in zip(jax.tree.leaves(state), jax.tree.leaves(other)):
      np.testing.assert_allclose(np.asarray(a, float), np.asarray(b, float), rtol=1e-5,
                                 atol=1e-6)
    # After chunks and phases every lane leaf is still split over the devices (an
    # empty one holds nothing to split).
    for leaf in (x for x in jax.tree.leaves(state) if x.size):
      assert leaf.sharding.spec == (PartitionSpec('lanes') if leaf.ndim else PartitionSpec()), (
          leaf.shape, leaf.sharding)
    three = lambda devices: configs(devices, num_seeds=1)[:1] + configs(devices)[1:]
    try:
      programs_lib.make_group_trainer(three(2))
    except ValueError as e:
      assert '--num_devices=2' in str(e) and '3 lanes' in str(e), e
    else:
      raise AssertionError('3 lanes on 2 devices were not refused')
    # 0 takes as many devices as divide the lanes: 1 of 2 for 3 lanes, 2 for 4.
    assert programs_lib.make_group_trainer(three(0)).mesh is None
    assert programs_lib.make_group_trainer(configs(0)).mesh.size == 2
    print('ok')
''')


@pytest.mark.xdist_group('devices')  # test_processes shares its compiled programs
@pytest.mark.skipif(jax.__version__.startswith('0.11.'),
                    reason="XLA's CPU compiler segfaults compiling the sharded chunk "
                    'program in jax 0.11.2 (0.9.2, 0.10.2 and 0.12.0.1 pass)')
def test_a_group_on_two_devices_equals_one_device(tmp_path):
  env = {**os.environ, 'XLA_FLAGS': '--xla_force_host_platform_device_count=2',
         'JAX_PLATFORMS': 'cpu'}
  cache = jax.config.jax_compilation_cache_dir  # the suite's (conftest.py)
  done = subprocess.run([sys.executable, '-c', SCRIPT, str(tmp_path), cache], cwd=REPO,
                        env=env, capture_output=True, text=True, timeout=1200, check=False)
  assert done.returncode == 0 and done.stdout.strip().endswith('ok'), (
      done.stdout[-3000:] + done.stderr[-5000:])


class _Mesh:
  """A stand-in for a mesh of ``size`` devices (local_lanes reads only its size)."""

  def __init__(self, size):
    self.size = size


@pytest.mark.parametrize('lanes, num_lanes, devices, expected', [
    ([3], 4, 2, [[-1], [1]]),
    ([0, 2, 3], 4, 2, [[0, -1], [0, 1]]),
    ([1, 4, 5], 6, 3, [[1, -1], [-1, -1], [0, 1]]),
    ([0, 1, 2], 3, 1, [[0, 1, 2]]),
])
def test_local_lanes_are_each_devices_own_in_order(lanes, num_lanes, devices, expected):
  got = sharding.local_lanes(lanes, num_lanes, _Mesh(devices))
  np.testing.assert_array_equal(got, expected)
  # Written out: lane l is device l // (L / D)'s local lane l % (L / D).
  per_device = num_lanes // devices
  back = sorted(d * per_device + int(i) for d, row in enumerate(got) for i in row if i >= 0)
  assert back == sorted(lanes)


def test_lanes_that_do_not_divide_are_refused_naming_the_flag():
  with pytest.raises(ValueError, match=r'--num_devices=2: the 3 lanes'):
    sharding.check_lanes(3, _Mesh(2))
  sharding.check_lanes(4, _Mesh(2))
