"""Plays a trained member on MuJoCo C (Gymnasium's ``*-v5``) and on our MJX task.

  python -m piekd_mjx.play --run=DIR [--seed=0] [--member=best] [--step=-1] --episodes=10
      [--video=PATH.mp4] [--filmstrip=PATH.png] [--html=PATH.html]

The member's deterministic policy (``policy.load``; tanh of the mean, as evaluation
acts) runs ``--episodes`` episodes on each engine, episode i from seed
``--episode_seed + i`` (Gymnasium's ``reset(seed=...)`` on one side, a PRNG key on the
other: the same seeds, not the same initial states), each at most 1,000 steps. It
prints each engine's mean return with its spread and Welch's 95% interval of the
difference: a policy trained here should score the same on both engines within the
episodes' own spread, the end-to-end check of the task's parity that one-step parity
cannot give (errors that compound over 1,000 steps, resets, termination). ``--video``
renders the first MuJoCo C episode offscreen with MuJoCo's renderer and writes it with
imageio (the ``render`` extra); ``--filmstrip`` writes a few of its frames side by side;
``--html`` writes brax's interactive viewer of an MJX episode (no OpenGL needed).
"""

from __future__ import annotations

import os
import sys
from typing import Any

from absl import flags
import numpy as np

from piekd_mjx import config_flags
from piekd_mjx import console
from piekd_mjx import files
from piekd_mjx import jax_setup
from piekd_mjx import policy as policy_lib

FLAGS = flags.FlagValues()
flags.DEFINE_string('run', '', 'A run directory, or a policy saved by Policy.save.',
                    flag_values=FLAGS)
flags.DEFINE_integer('seed', 0, "The run's seed whose member plays.", flag_values=FLAGS)
flags.DEFINE_string('member', 'best', "'best' (at that step's evaluation) or a member index.",
                    flag_values=FLAGS)
flags.DEFINE_integer('step', -1, 'The checkpoint (-1: the newest).', flag_values=FLAGS)
flags.DEFINE_integer('episodes', 10, 'Episodes on each engine.', flag_values=FLAGS)
flags.DEFINE_integer('episode_seed', 0, 'The seed of the first episode.', flag_values=FLAGS)
flags.DEFINE_list('engines', ['mujoco', 'mjx'], "'mujoco' (Gymnasium on MuJoCo C), 'mjx'.",
                  flag_values=FLAGS)
flags.DEFINE_string('video', '', "Write the first MuJoCo C episode here, rendered "
                    "offscreen ('.mp4' or '.gif'; needs an OpenGL backend, MUJOCO_GL).",
                    flag_values=FLAGS)
flags.DEFINE_string('filmstrip', '', 'Write frames of the first MuJoCo C episode side by '
                    "side here ('.png'), as --video renders them.", flag_values=FLAGS)
flags.DEFINE_string('html', '', "Write brax's interactive viewer of an MJX episode (from "
                    "--episode_seed) here ('.html'; opened, it loads brax's script from "
                    'its CDN).', flag_values=FLAGS)
flags.DEFINE_integer('filmstrip_frames', 6, 'Frames of the filmstrip, evenly spaced.',
                     flag_values=FLAGS)
flags.DEFINE_bool('help', False, 'Show the flags and exit.', flag_values=FLAGS)
jax_setup.define_flags(FLAGS)

EPISODE_LENGTH = 1000
ENGINES = ('mujoco', 'mjx')


VIDEO_SIZE = (480, 360)  # width, height
VIDEO_FPS = 30


def play_mujoco(policy: policy_lib.Policy, episodes: int, seed: int,
                render: bool = False, size: tuple[int, int] = VIDEO_SIZE,
                render_every: int = 1) -> tuple[np.ndarray, list[np.ndarray]]:
  """The returns [N] of ``episodes`` episodes on Gymnasium's task (MuJoCo C), and with
  ``render`` the frames [H, W, 3] (``size``: width, height) of the first one: its reset,
  every ``render_every``-th step and its last."""
  import gymnasium  # pylint: disable=g-import-not-at-top
  from piekd_mjx import envs  # pylint: disable=g-import-not-at-top
  options = dict(render_mode='rgb_array', width=size[0], height=size[1],
                 camera_id=-1) if render else {}
  env = gymnasium.make(envs.GYMNASIUM_IDS[policy.env], max_episode_steps=EPISODE_LENGTH,
                       **options)
  if render:
    # The task's own free camera (Gymnasium's view of it), made to track its body (the
    # model's 'track' camera follows the whole model's centre of mass, which a runner
    # leaves behind); a camera config that tracks the world tracks the first body.
    renderer = env.unwrapped.mujoco_renderer
    config = {**(renderer.default_cam_config or {}), 'type': 2}  # mjCAMERA_TRACKING
    config['trackbodyid'] = config.get('trackbodyid') or 1
    renderer.default_cam_config = config
  low, high = env.action_space.low, env.action_space.high
  returns, frames = np.zeros(episodes), []
  for i in range(episodes):
    obs, _ = env.reset(seed=seed + i)
    filming = render and i == 0
    frames += [env.render()] if filming else []
    done, t = False, 0
    while not done:
      action = low + (np.asarray(policy(obs), np.float64) + 1.0) * 0.5 * (high - low)
      obs, reward, terminated, truncated, _ = env.step(action)
      t, returns[i], done = t + 1, returns[i] + reward, terminated or truncated
      frames += [env.render()] if filming and (t % render_every == 0 or done) else []
  env.close()
  return returns, frames


def check_rendering() -> str | None:
  """None when MuJoCo can render offscreen here, else the one line that says why not.
  Without MUJOCO_GL set, OSMesa (Debian's libosmesa6) is used: it needs no display or
  GPU."""
  os.environ.setdefault('MUJOCO_GL', 'osmesa')
  if os.environ['MUJOCO_GL'] == 'osmesa':
    os.environ.setdefault('PYOPENGL_PLATFORM', 'osmesa')
  try:
    import mujoco  # pylint: disable=g-import-not-at-top
    model = mujoco.MjModel.from_xml_string('<mujoco><worldbody/></mujoco>')
    with mujoco.Renderer(model, 8, 8):
      pass
  except Exception as e:  # pylint: disable=broad-except
    return (f'--video and --filmstrip need an OpenGL backend for '
            f'MUJOCO_GL={os.environ["MUJOCO_GL"]} '
            f'({type(e).__name__}); install Debian\'s libosmesa6 (MUJOCO_GL=osmesa) or '
            'use MUJOCO_GL=egl on a GPU')
  return None


def write_filmstrip(path: str, frames: list[np.ndarray], count: int) -> None:
  """``count`` frames evenly spaced from the first to the last, side by side, as a PNG."""
  import imageio.v2 as imageio  # pylint: disable=g-import-not-at-top
  picks = np.linspace(0, len(frames) - 1, min(count, len(frames))).round().astype(int)
  imageio.imwrite(path, np.concatenate([frames[i] for i in picks], axis=1))


def write_video(path: str, frames: list[np.ndarray]) -> None:
  """``frames`` as an MP4 (H.264, imageio-ffmpeg) or a GIF, by ``path``'s suffix."""
  import warnings  # pylint: disable=g-import-not-at-top
  import imageio.v2 as imageio  # pylint: disable=g-import-not-at-top
  with warnings.catch_warnings():
    # imageio-ffmpeg forks to exec ffmpeg at once; no Python runs in the child.
    warnings.filterwarnings('ignore', message='os.fork', category=RuntimeWarning)
    if path.endswith('.gif'):
      imageio.mimsave(path, frames, duration=1000 / VIDEO_FPS, loop=0)
    else:
      imageio.mimsave(path, frames, fps=VIDEO_FPS, macro_block_size=8)


def play_mjx(policy: policy_lib.Policy, episodes: int, seed: int) -> np.ndarray:
  """The returns [N] of ``episodes`` episodes on our MJX task, as evaluation plays them."""
  import jax  # pylint: disable=g-import-not-at-top
  from piekd_mjx import envs, evaluate, sac  # pylint: disable=g-import-not-at-top
  from piekd_mjx.config import Config  # pylint: disable=g-import-not-at-top
  task = envs.make(policy.env)
  config = Config(env=policy.env, hidden_sizes=policy.hidden_sizes,
                  log_std_min=policy.log_std_min, log_std_max=policy.log_std_max)
  member = sac.make_sac(config, policy.observation_size, policy.action_size)
  run = jax.jit(evaluate.make_evaluate(task, member, EPISODE_LENGTH, episodes))
  params = jax.tree.map(lambda x: x[None, None], policy.params)  # [S = 1, K = 1, ...]
  return np.asarray(run(params, jax.random.key(seed)))[0, 0].astype(np.float64)


def mjx_trajectory(task: Any, policy: policy_lib.Policy, seed: int) -> tuple[Any, float]:
  """One episode of ``policy`` on the MJX ``task`` from ``jax.random.key(seed)``, stepped
  one action at a time (scaled as evaluation scales it): its bodies' world poses
  [T, nbody - 1] (brax's ``Transform``, the world body left out, as brax's viewer reads
  them) and its return."""
  import jax  # pylint: disable=g-import-not-at-top
  from brax import base  # pylint: disable=g-import-not-at-top
  from piekd_mjx.envs.wrappers import TrainingWrapper  # pylint: disable=g-import-not-at-top
  scale_action = TrainingWrapper(task, EPISODE_LENGTH).scale_action
  state = task.reset(jax.random.key(seed))
  poses, total = [], 0.0

  def pose(data):
    return np.asarray(data.xpos)[1:], np.asarray(data.xquat)[1:]

  poses.append(pose(state.pipeline_state))
  for _ in range(EPISODE_LENGTH):
    state = task.step(state, scale_action(policy(state.obs)))
    total += float(state.reward)
    poses.append(pose(state.pipeline_state))
    if state.done:
      break
  return [base.Transform(pos=p, rot=q) for p, q in poses], total


def write_html(path: str, policy: policy_lib.Policy, seed: int) -> float:
  """brax's interactive viewer of one MJX episode (``mjx_trajectory``) as an HTML file
  (its script comes from brax's CDN when opened); returns the episode's return."""
  import types  # pylint: disable=g-import-not-at-top
  import warnings  # pylint: disable=g-import-not-at-top
  from brax.io import html, mjcf  # pylint: disable=g-import-not-at-top
  from piekd_mjx import envs  # pylint: disable=g-import-not-at-top
  task = envs.make(policy.env)
  with warnings.catch_warnings():
    warnings.filterwarnings('ignore', message='Brax System', category=UserWarning)
    system = mjcf.load_model(task.mj_model)
  poses, total = mjx_trajectory(task, policy, seed)
  text = html.render(system, [types.SimpleNamespace(x=x) for x in poses])
  files.write_atomic(path, text)
  return total


def summary(name: str, returns: np.ndarray) -> str:
  spread = returns.std(ddof=1) if len(returns) > 1 else 0.0
  return (f'{name}: mean return {returns.mean():,.1f}, standard deviation {spread:,.1f} '
          f'over {len(returns)} episodes (min {returns.min():,.1f}, max {returns.max():,.1f})')


def difference(mujoco: np.ndarray, mjx: np.ndarray) -> str:
  """Welch's 95% interval of mean(mjx) - mean(mujoco), and whether it holds 0."""
  from scipy import stats  # pylint: disable=g-import-not-at-top
  if len(mujoco) < 2 or len(mjx) < 2:
    return 'difference: needs 2 episodes or more on each engine'
  if np.ptp(mujoco) == 0 and np.ptp(mjx) == 0:
    same = mujoco[0] == mjx[0]
    return f'difference: {mjx[0] - mujoco[0]:,.1f} (no spread); agree: {"yes" if same else "no"}'
  test = stats.ttest_ind(mjx, mujoco, equal_var=False)
  interval = test.confidence_interval(0.95)
  agree = interval.low <= 0 <= interval.high
  return (f'difference of the means (MJX - MuJoCo C): {mjx.mean() - mujoco.mean():,.1f}, '
          f"95% interval [{interval.low:,.1f}, {interval.high:,.1f}] (Welch's t); "
          f'agree within the episodes\' spread: {"yes" if agree else "no"}')


def main(argv: list[str]) -> None:
  config_flags.parse_or_exit(FLAGS, argv)
  if not FLAGS.run:
    console.fail('--run is required: a run directory or a saved policy')
  if FLAGS.episodes < 1:
    console.fail(f'--episodes={FLAGS.episodes} is invalid: must be a positive integer')
  unknown = [e for e in FLAGS.engines if e not in ENGINES]
  if unknown or not FLAGS.engines:
    console.fail(f'--engines={",".join(FLAGS.engines)} is invalid: one or both of mujoco, mjx')
  if FLAGS.video and not FLAGS.video.endswith(('.mp4', '.gif')):
    console.fail(f'--video={FLAGS.video!r} is invalid: a path ending in .mp4 or .gif')
  if FLAGS.filmstrip and not FLAGS.filmstrip.endswith('.png'):
    console.fail(f'--filmstrip={FLAGS.filmstrip!r} is invalid: a path ending in .png')
  if FLAGS.html and not FLAGS.html.endswith('.html'):
    console.fail(f'--html={FLAGS.html!r} is invalid: a path ending in .html')
  if FLAGS.filmstrip_frames < 1:
    console.fail(f'--filmstrip_frames={FLAGS.filmstrip_frames} is invalid: a positive integer')
  filming = bool(FLAGS.video or FLAGS.filmstrip)
  if filming:
    if 'mujoco' not in FLAGS.engines:
      console.fail('--video and --filmstrip render the MuJoCo C episodes: --engines must '
            'include mujoco')
    problem = check_rendering()
    if problem:
      console.fail(problem)
  jax_setup.from_flags(FLAGS)  # before a device starts: XLA reads its flags then
  try:
    policy = policy_lib.load(FLAGS.run, seed=FLAGS.seed, member=FLAGS.member,
                             step=None if FLAGS.step < 0 else FLAGS.step)
  except policy_lib.PolicyError as e:
    console.fail(str(e))
  from piekd_mjx import envs  # pylint: disable=g-import-not-at-top
  if policy.env not in envs.GYMNASIUM_IDS:
    console.fail(f'--run={FLAGS.run!r}: its task {policy.env!r} has no MuJoCo model to play '
                 '(the physics-free stub of the tests)')
  print(f'{policy.env}: seed {policy.origin.get("seed")}, member '
        f'{policy.origin.get("member")}, step {policy.origin.get("step")} of '
        f'{policy.origin.get("run")}', flush=True)
  results = {}
  if 'mujoco' in FLAGS.engines:
    results['mujoco'], frames = play_mujoco(policy, FLAGS.episodes, FLAGS.episode_seed,
                                            render=filming)
    print(summary('MuJoCo C (Gymnasium)', results['mujoco']), flush=True)
    if FLAGS.video:
      write_video(FLAGS.video, frames)
      print(f'video: {FLAGS.video} ({len(frames)} frames of episode 0)', flush=True)
    if FLAGS.filmstrip:
      write_filmstrip(FLAGS.filmstrip, frames, FLAGS.filmstrip_frames)
      print(f'filmstrip: {FLAGS.filmstrip}', flush=True)
  if 'mjx' in FLAGS.engines:
    results['mjx'] = play_mjx(policy, FLAGS.episodes, FLAGS.episode_seed)
    print(summary('MJX (piekd_mjx)', results['mjx']), flush=True)
  if len(results) == 2:
    print(difference(results['mujoco'], results['mjx']), flush=True)
  if FLAGS.html:
    total = write_html(FLAGS.html, policy, FLAGS.episode_seed)
    print(f'html: {FLAGS.html} (an MJX episode from seed {FLAGS.episode_seed}, return '
          f'{total:,.1f})', flush=True)


if __name__ == '__main__':
  main(sys.argv)
