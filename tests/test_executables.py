"""The process's compiled executables within its memory-mapping limit."""

import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from piekd_mjx import executables

linux = pytest.mark.skipif(not os.path.exists('/proc/self/maps'),
                           reason='the OS does not list its mappings')


def _program(n: int):
  """A jitted program of many kernels: each loop body and reduction its own."""

  def f(x):
    for i in range(n):
      x = jnp.sort(jnp.sin(x) * (i + 1.5)) + jnp.cumsum(x) / (i + 2.0)
    return x

  return jax.jit(f)


@linux
def test_mappings_and_limit_are_the_os_figures():
  with open('/proc/self/maps') as f:
    listed = len(f.readlines())
  assert abs(executables.mappings() - listed) < 50  # the count's own reading may map
  with open('/proc/sys/vm/max_map_count') as f:
    assert executables.mapping_limit() == int(f.read())


@linux
def test_release_frees_compiled_programs_which_still_run():
  x = jnp.linspace(0.0, 1.0, 37)
  before = executables.mappings()
  program = _program(12)
  expected = np.asarray(program(x))
  held = executables.mappings()
  assert held > before + 12  # every kernel holds mappings of its own
  executables.release()
  assert executables.mappings() < held - 12
  np.testing.assert_array_equal(program(x), expected)  # compiled again


@linux
def test_release_if_crowded_acts_only_past_its_share():
  program = _program(6)
  program(jnp.ones(11))
  held = executables.mappings()
  limit = executables.mapping_limit()
  assert not executables.release_if_crowded(share=1.0)
  assert executables.mappings() >= held - 5
  assert executables.release_if_crowded(share=(held - 10) / limit)
  assert executables.mappings() < held - 6


def test_release_if_crowded_is_a_no_op_where_the_os_does_not_say(monkeypatch):
  monkeypatch.setattr(executables, '_MAPS', '/nonexistent/maps')
  assert executables.mappings() is None
  assert not executables.release_if_crowded(share=0.0)
