"""One trained member's actor, taken out of a run to act, share and play.

``load(run_dir, seed=0, member='best', step=None)`` reads only the actor of one member
from a run's checkpoint (orbax's partial restore: not the replay buffers, which are
gigabytes on humanoid), with the task's sizes from the run's ``config.json``. ``member``
is 'best' (the member with the highest return at that step's evaluation record) or an
index. A grouped run's checkpoints are its group's (``ROOT/groups/<group>``), whose
``group.json`` lists its runs in lane order. ``Policy.save(path)`` writes the small object
alone (msgpack), and ``load(path)`` reads it back.

Bad input (no such run, seed, member or step; a directory that is not a run) raises
``PolicyError`` with one line naming it.
"""

from __future__ import annotations

import dataclasses
import functools
import glob
import json
import os
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from piekd_mjx import config as config_lib
from piekd_mjx import files
from piekd_mjx import networks
from piekd_mjx import records as records_lib
from piekd_mjx import rundir

FORMAT = 'piekd_mjx.policy/1'


class PolicyError(ValueError):
  """The policy asked for cannot be had; the message says why in one line."""


@dataclasses.dataclass(frozen=True)
class Policy:
  """A member's actor: ``policy(obs)`` is its deterministic action tanh(mean), as in
  evaluation; ``policy.sample(obs, key)`` draws from its tanh-Gaussian."""

  env: str
  observation_size: int
  action_size: int
  hidden_sizes: tuple[int, ...]
  log_std_min: float
  log_std_max: float
  params: Any  # the flax parameters of networks.Actor, numpy arrays
  origin: dict  # where it came from: run, seed, member, step

  @property
  def actor(self) -> networks.Actor:
    return networks.Actor(action_size=self.action_size, hidden_sizes=self.hidden_sizes,
                          log_std_min=self.log_std_min, log_std_max=self.log_std_max)

  def __call__(self, obs: jax.Array) -> jax.Array:
    """obs [..., O] -> action [..., A] in (-1, 1)."""
    return _deterministic(self.actor, self.params, jnp.asarray(obs, jnp.float32))

  def sample(self, obs: jax.Array, key: jax.Array) -> jax.Array:
    """obs [..., O], a PRNG key -> a sampled action [..., A] in (-1, 1)."""
    return _sample(self.actor, self.params, jnp.asarray(obs, jnp.float32), key)

  def save(self, path: str) -> None:
    """Writes this policy alone to ``path`` (msgpack)."""
    from flax import serialization  # pylint: disable=g-import-not-at-top
    meta = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)
            if f.name != 'params'}
    meta['hidden_sizes'] = list(self.hidden_sizes)
    blob = serialization.msgpack_serialize(
        {'format': FORMAT, 'meta': json.dumps(meta), 'params': self.params})
    files.write_atomic(path, blob)


@functools.partial(jax.jit, static_argnums=0)
def _deterministic(actor: networks.Actor, params: Any, obs: jax.Array) -> jax.Array:
  mean, _ = actor.apply(params, obs)
  return networks.deterministic_action(mean)


@functools.partial(jax.jit, static_argnums=0)
def _sample(actor: networks.Actor, params: Any, obs: jax.Array, key: jax.Array) -> jax.Array:
  mean, log_std = actor.apply(params, obs)
  return networks.sample_action(mean, log_std, key)[0]


def load(source: str, seed: int = 0, member: int | str = 'best',
         step: int | None = None) -> Policy:
  """The policy of a saved file, or of member ``member`` of seed ``seed`` of the run
  directory ``source`` at checkpoint ``step`` (None: the newest)."""
  if os.path.isfile(source):
    return _read_file(source)
  config = _run_config(source)
  checkpoints, lane = checkpoints_and_lane(source, config, seed)
  steps = rundir.checkpoint_steps(checkpoints)
  if not steps:
    raise PolicyError(f'{source!r} holds no checkpoint')
  if step is None:
    step = steps[-1]
  elif step not in steps:
    raise PolicyError(f'step={step} is not a checkpoint of {source!r} (it has '
                      f'{", ".join(map(str, steps))})')
  index = _member(source, config, seed, member, step)
  actors = _restore_actors(os.path.join(checkpoints, str(step), 'state'))
  params = jax.tree.map(lambda x: np.asarray(x[lane, index]), actors)
  layers = params['params']['MLP_0']
  output = layers[f'dense_{len(config.hidden_sizes)}']['bias']  # [2A]: means, log-stds
  return Policy(env=config.env, observation_size=int(layers['dense_0']['kernel'].shape[0]),
                action_size=int(output.shape[0] // 2),
                hidden_sizes=tuple(config.hidden_sizes), log_std_min=config.log_std_min,
                log_std_max=config.log_std_max, params=params,
                origin={'run': os.path.abspath(source), 'seed': seed, 'member': index,
                        'step': step})


def _read_file(path: str) -> Policy:
  from flax import serialization  # pylint: disable=g-import-not-at-top
  try:
    with open(path, 'rb') as f:
      blob = serialization.msgpack_restore(f.read())
    if blob.get('format') != FORMAT:
      raise ValueError(f'not {FORMAT}')
    meta = json.loads(blob['meta'])
  except Exception as e:  # pylint: disable=broad-except
    raise PolicyError(f'{path!r} is neither a run directory nor a saved policy '
                      f'({type(e).__name__})') from None
  meta['hidden_sizes'] = tuple(meta['hidden_sizes'])
  return Policy(params=blob['params'], **meta)


def _run_config(run_dir: str) -> config_lib.Config:
  if not os.path.isdir(run_dir):
    raise PolicyError(f'{run_dir!r} is neither a run directory nor a saved policy')
  try:
    return rundir.read_config(run_dir)
  except (OSError, ValueError, TypeError):
    raise PolicyError(f'{run_dir!r} is not a run directory (no readable '
                      f'{rundir.CONFIG_FILE})') from None


def checkpoints_and_lane(run_dir: str, config: config_lib.Config,
                          seed: int) -> tuple[str, int]:
  """The checkpoints directory holding ``run_dir``'s lanes (its own, or its group's)
  and the lane of ``seed`` in it."""
  if not 0 <= seed < config.num_seeds:
    raise PolicyError(f'seed={seed} is not a seed of {run_dir!r} (it has seeds 0 to '
                      f'{config.num_seeds - 1})')
  own = os.path.join(run_dir, rundir.CHECKPOINTS)
  if os.path.isdir(own):
    return own, seed
  root = os.path.dirname(os.path.dirname(os.path.abspath(run_dir)))
  for group_file in sorted(glob.glob(os.path.join(root, 'groups', '*', rundir.GROUP_FILE))):
    with open(group_file, encoding='utf-8') as f:
      runs = json.load(f)['runs']
    if os.path.abspath(run_dir) not in runs:
      continue
    offset = 0
    for other in runs[:runs.index(os.path.abspath(run_dir))]:
      offset += _run_config(other).num_seeds
    return os.path.join(os.path.dirname(group_file), rundir.CHECKPOINTS), offset + seed
  return own, seed


def _member(run_dir: str, config: config_lib.Config, seed: int, member: int | str,
            step: int) -> int:
  """The member index ``member`` names at ``step``."""
  if member != 'best':
    try:
      index = int(member)
    except ValueError:
      raise PolicyError(f"member={member!r} is invalid: 'best' or a member index") from None
    if not 0 <= index < config.ensemble_size:
      raise PolicyError(f'member={index} is not a member of {run_dir!r} (it has members 0 '
                        f'to {config.ensemble_size - 1})')
    return index
  record = records_lib.evaluation(run_dir, step)
  if record is None:
    raise PolicyError(f"member='best' needs the evaluation record of step {step}, which "
                      f'{run_dir!r} does not hold; name a member index')
  return int(np.argmax(record['eval/returns'][seed]))


def _restore_actors(state_dir: str) -> Any:
  """The actors [L, K, ...] of a checkpoint's state item, and nothing else of it."""
  import orbax.checkpoint as ocp  # pylint: disable=g-import-not-at-top
  from absl import logging  # pylint: disable=g-import-not-at-top
  checkpointer = ocp.PyTreeCheckpointer()
  verbosity = logging.get_verbosity()
  logging.set_verbosity(logging.ERROR)  # orbax warns of a metadata file it does not need
  try:
    metadata = checkpointer.metadata(state_dir)
  finally:
    logging.set_verbosity(verbosity)
  tree = getattr(getattr(metadata, 'item_metadata', None), 'tree', None) or metadata
  item = {'members': {'actor_params': jax.tree.map(
      lambda m: np.zeros(m.shape, m.dtype), tree['members']['actor_params'])}}
  restore_args = jax.tree.map(lambda _: ocp.RestoreArgs(restore_type=np.ndarray), item)
  restored = checkpointer.restore(state_dir, args=ocp.args.PyTreeRestore(
      item=item, restore_args=restore_args, partial_restore=True))
  return restored['members']['actor_params']
