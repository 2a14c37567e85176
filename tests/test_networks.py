"""The members' initial weights against the reference's rule (piekd_mjx/networks.py).

The reference (pfnet-research/piekd, train_ensemble_sac.py) builds every layer with
Chainer's ``GlorotUniform(scale)``: W of shape (out, in) drawn from U(-b, b) with
b = scale * sqrt(6 / (in + out)), scale 1 except the policy's output layer
(``--policy-output-scale``), and Chainer's ``L.Linear`` starts biases at zero. The rule is
written out here with numpy and compared with what a fresh member holds.
"""

import dataclasses

import flax.linen as nn
import jax
import numpy as np
import pytest
from scipy import stats

from piekd_mjx import networks
from piekd_mjx import sac
from piekd_mjx.config import Config

# (observation size, action size) of Gymnasium's Hopper-v5 and Humanoid-v5.
SHAPES = {'hopper': (11, 3), 'humanoid': (348, 17)}


def _layers(params: dict) -> list[tuple[np.ndarray, np.ndarray]]:
  """(kernel [in, out], bias [out]) of an MLP's layers, in order."""
  mlp = params['MLP_0']
  return [(np.asarray(mlp[f'dense_{i}']['kernel']), np.asarray(mlp[f'dense_{i}']['bias']))
          for i in range(len(mlp))]


def _member(env: str, **changes):
  obs, act = SHAPES[env]
  config = dataclasses.replace(Config(), **changes)
  s = sac.make_sac(config, obs, act)
  state = s.init(jax.random.key(7), s.default_scalars)
  actor = _layers(state.actor_params['params'])
  heads = state.critic_params['params']['heads']
  critics = [_layers(jax.tree.map(lambda x, h=h: x[h], heads)) for h in range(2)]
  return obs, act, actor, critics


def _check_glorot_uniform(kernel: np.ndarray, bias: np.ndarray, scale: float) -> None:
  fan_in, fan_out = kernel.shape
  bound = scale * np.sqrt(6.0 / (fan_in + fan_out))  # Chainer's GlorotUniform(scale)
  n = kernel.size
  np.testing.assert_array_equal(bias, 0.0)
  assert np.abs(kernel).max() <= bound
  # The largest of n uniform draws is below (1 - 12/n) b with probability about e^-12.
  assert np.abs(kernel).max() >= bound * (1.0 - 12.0 / n)
  # E[w^2] = b^2 / 3; the mean of n squares has standard deviation b^2 sqrt(4/45 / n).
  tolerance = 6.0 * bound**2 * np.sqrt(4.0 / 45.0 / n)
  assert abs(np.mean(kernel**2) - bound**2 / 3.0) <= tolerance
  assert abs(np.mean(kernel)) <= 6.0 * bound / np.sqrt(3.0 * n)
  assert stats.kstest(kernel.ravel() / bound, 'uniform', args=(-1.0, 2.0)).pvalue > 1e-4


@pytest.mark.parametrize('env', sorted(SHAPES))
@pytest.mark.parametrize('output_scale', [1.0, 0.1])
def test_every_layer_is_glorot_uniform_with_zero_bias(env, output_scale):
  obs, act, actor, critics = _member(env, policy_output_scale=output_scale)
  assert [k.shape for k, _ in actor] == [(obs, 256), (256, 256), (256, 2 * act)]
  for i, (kernel, bias) in enumerate(actor):
    _check_glorot_uniform(kernel, bias, output_scale if i == len(actor) - 1 else 1.0)
  for layers in critics:
    assert [k.shape for k, _ in layers] == [(obs + act, 256), (256, 256), (256, 1)]
    for kernel, bias in layers:
      _check_glorot_uniform(kernel, bias, 1.0)
  # The two critics, and their layers, are drawn independently.
  assert not np.array_equal(critics[0][0][0], critics[1][0][0])


def test_lecun_normal_is_not_glorot_and_is_what_older_runs_drew():
  """lecun_normal, which runs before network_init took (flax's nn.Dense default),
  draws exactly the parameters of an MLP of plain nn.Dense layers."""

  class PlainMLP(nn.Module):
    sizes: tuple[int, ...]

    @nn.compact
    def __call__(self, x):
      for i, size in enumerate(self.sizes):
        x = nn.Dense(size, name=f'dense_{i}')(x)
        x = nn.relu(x) if i + 1 < len(self.sizes) else x
      return x

  class PlainActor(nn.Module):

    @nn.compact
    def __call__(self, obs):
      return PlainMLP((256, 256, 6), name='MLP_0')(obs)

  obs, _, actor, _ = _member('hopper', network_init='lecun_normal')
  mine = networks.Actor(action_size=3, initializer='lecun_normal').init(
      jax.random.key(3), np.zeros(obs, np.float32))
  plain = PlainActor().init(jax.random.key(3), np.zeros(obs, np.float32))
  jax.tree.map(np.testing.assert_array_equal, mine, plain)
  kernel = actor[0][0]
  assert np.abs(kernel).max() > np.sqrt(6.0 / (obs + 256))  # past Glorot's bound
  assert np.std(kernel) == pytest.approx(np.sqrt(1.0 / obs), rel=0.15)
