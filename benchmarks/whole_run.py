"""A whole run at the paper's protocol, evaluation included: ours against Stable-Baselines3.

Both sides train one SAC agent (256x256, batch 256, Adam 3e-4, gamma 0.99, tau 0.005,
automatic temperature, one update per environment step, replay 1M) on the same task:
``--warmup_steps`` steps of uniform random actions, then learning to ``--total_steps``,
and every ``--eval_every`` steps ``--eval_episodes`` deterministic episodes of at most
1,000 steps. Ours is ``python -m piekd_mjx.launch`` (MJX, with the persistent
compilation cache that the first side's run filled); SB3's is its ``SAC`` on
Gymnasium's ``*-v5`` (MuJoCo C, torch on the CPU) with an ``EvalCallback``. Each side
is a process of its own, timed from its start to its end; the sides alternate
(ours, SB3, ours, SB3, ...) ``--rounds`` times. The JSON holds every process's wall
time, its evaluation returns and, for ours, its own record of evaluation time.

  python benchmarks/whole_run.py --env=halfcheetah --out=docs/benchmarks/whole-run.json
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import tempfile
import time

from absl import app
from absl import flags

FLAGS = flags.FLAGS
flags.DEFINE_string('env', 'halfcheetah', 'Task (ours) and its Gymnasium *-v5 (SB3).')
flags.DEFINE_integer('total_steps', 30_000, 'Environment steps of a run.')
flags.DEFINE_integer('warmup_steps', 10_000, 'Steps of uniform random actions first.')
flags.DEFINE_integer('eval_every', 10_000, 'Steps between evaluations.')
flags.DEFINE_integer('eval_episodes', 20, 'Deterministic episodes per evaluation.')
flags.DEFINE_integer('rounds', 2, 'Alternations of the two sides.')
flags.DEFINE_integer('seed', 0, 'Seed of both sides.')
flags.DEFINE_string('solver', 'faithful', "Our side's --solver (the task must offer it).")
flags.DEFINE_string('jax_cache_dir', os.path.expanduser('~/.cache/piekd_mjx/jax'),
                    "Our side's persistent compilation cache.")
flags.DEFINE_string('out', '', 'Write the results as JSON here, as they come.')
flags.DEFINE_bool('sb3_child', False, 'Internal: run the SB3 side in this process.')


def sb3_side() -> dict:
  """SB3's run, in this process; its evaluation returns per evaluation step."""
  import gymnasium  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top
  import stable_baselines3  # pylint: disable=g-import-not-at-top
  from stable_baselines3.common.callbacks import EvalCallback  # pylint: disable=g-import-not-at-top
  import torch  # pylint: disable=g-import-not-at-top
  from piekd_mjx import envs  # pylint: disable=g-import-not-at-top
  gym_id = envs.GYMNASIUM_IDS[FLAGS.env]
  env, eval_env = gymnasium.make(gym_id), gymnasium.make(gym_id)
  model = stable_baselines3.SAC(
      'MlpPolicy', env, learning_rate=3e-4, buffer_size=1_000_000,
      learning_starts=FLAGS.warmup_steps, batch_size=256, tau=0.005, gamma=0.99,
      train_freq=1, gradient_steps=1, policy_kwargs=dict(net_arch=[256, 256]),
      seed=FLAGS.seed, device='cpu', verbose=0)
  log_dir = tempfile.mkdtemp(prefix='sb3-eval-')
  callback = EvalCallback(eval_env, n_eval_episodes=FLAGS.eval_episodes,
                          eval_freq=FLAGS.eval_every, deterministic=True, log_path=log_dir,
                          verbose=0)
  model.learn(total_timesteps=FLAGS.total_steps, callback=callback)
  evaluations = np.load(os.path.join(log_dir, 'evaluations.npz'))
  return {'gym_id': gym_id, 'torch_threads': torch.get_num_threads(),
          'eval_steps': evaluations['timesteps'].tolist(),
          'eval_returns': evaluations['results'].mean(-1).tolist()}


def run_ours(run_dir: str) -> dict:
  command = [sys.executable, '-m', 'piekd_mjx.launch', f'--env={FLAGS.env}',
             '--variant=vanilla_sac', f'--total_steps={FLAGS.total_steps}',
             f'--warmup_steps={FLAGS.warmup_steps}', f'--eval_every={FLAGS.eval_every}',
             f'--eval_episodes={FLAGS.eval_episodes}', f'--seed={FLAGS.seed}',
             f'--solver={FLAGS.solver}',
             f'--out_dir={run_dir}', f'--jax_cache_dir={FLAGS.jax_cache_dir}']
  start = time.perf_counter()
  subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
  wall = time.perf_counter() - start
  with open(os.path.join(run_dir, 'metrics.jsonl'), encoding='utf-8') as f:
    records = [json.loads(line) for line in f]
  return {'side': 'ours', 'command': ' '.join(command[1:]), 'wall_seconds': wall,
          'eval_steps': [r['step'] for r in records],
          'eval_returns': [r['eval/return_best'][0] for r in records],
          'eval_seconds': [r['eval/seconds'] for r in records],
          'eval_wait_seconds': [r['eval/wait_seconds'] for r in records],
          'run_wall_time': records[-1]['wall_time']}


def run_sb3() -> dict:
  command = [sys.executable, __file__, '--sb3_child', *[
      f'--{name}={getattr(FLAGS, name)}' for name in (
          'env', 'total_steps', 'warmup_steps', 'eval_every', 'eval_episodes', 'seed')]]
  start = time.perf_counter()
  out = subprocess.run(command, check=True, capture_output=True, text=True).stdout
  wall = time.perf_counter() - start
  return {'side': 'sb3', 'wall_seconds': wall, **json.loads(out.strip().splitlines()[-1])}


def main(argv):
  del argv
  if FLAGS.sb3_child:
    print(json.dumps(sb3_side()))
    return
  import jax  # pylint: disable=g-import-not-at-top
  import stable_baselines3  # pylint: disable=g-import-not-at-top
  import torch  # pylint: disable=g-import-not-at-top
  results = {'argv': sys.argv, 'date': time.strftime('%Y-%m-%dT%H:%M:%S%z'),
             'machine': platform.processor() or platform.machine(),
             'cpus': os.cpu_count(), 'jax': jax.__version__, 'torch': torch.__version__,
             'stable_baselines3': stable_baselines3.__version__, 'runs': []}
  with tempfile.TemporaryDirectory(prefix='whole-run-') as root:
    for round_ in range(FLAGS.rounds):
      for side in ('ours', 'sb3'):
        row = run_ours(os.path.join(root, f'ours-{round_}')) if side == 'ours' else run_sb3()
        row['round'] = round_
        results['runs'].append(row)
        print(json.dumps(row), flush=True)
        if FLAGS.out:
          with open(FLAGS.out, 'w', encoding='utf-8') as f:
            json.dump(results, f, indent=2)


if __name__ == '__main__':
  app.run(main, argv=sys.argv)
