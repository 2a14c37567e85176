"""The parallel sweep's pieces that need no child process (piekd_mjx/parallel.py); its
runs, kill and signals are in test_sweep_runs.py."""

import dataclasses

from piekd_mjx import parallel
from piekd_mjx import plan
from piekd_mjx import rootdir
from piekd_mjx.config import Config


def test_a_group_reaches_its_child_as_it_was_planned(tmp_path):
  configs = [Config(env='hopper', num_seeds=2, hidden_sizes=(8, 8), out_dir=str(tmp_path)),
             Config(env='hopper', variant='piekd', num_seeds=3)]
  group = plan.Group(
      (rootdir.RunStatus(configs[0], str(tmp_path / 'a'), 'partial', 2000),
       rootdir.RunStatus(configs[1], str(tmp_path / 'b'), 'new')),
      str(tmp_path / 'groups' / 'g'), split=True)
  again = parallel.group_from_json(parallel.group_to_json(group))
  assert again == group
  assert dataclasses.asdict(again.runs[0].config) == dataclasses.asdict(configs[0])


def test_each_child_gets_its_share_of_the_device_memory():
  assert parallel.child_environment(4, {})['XLA_PYTHON_CLIENT_MEM_FRACTION'] == '0.1875'
  given = {'XLA_PYTHON_CLIENT_MEM_FRACTION': '0.9', 'OTHER': 'kept'}
  child = parallel.child_environment(3, given)
  assert child['XLA_PYTHON_CLIENT_MEM_FRACTION'] == '0.3000' and child['OTHER'] == 'kept'
  assert given['XLA_PYTHON_CLIENT_MEM_FRACTION'] == '0.9'


def test_the_parent_keeps_no_device_memory_it_does_not_use():
  environ = {'XLA_PYTHON_CLIENT_ALLOCATOR': 'bfc'}
  parallel.parent_environment(environ)
  assert environ == {'XLA_PYTHON_CLIENT_ALLOCATOR': 'bfc',  # the user's choice stays
                     'XLA_PYTHON_CLIENT_PREALLOCATE': 'false'}
