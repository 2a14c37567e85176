"""The time to a run's first training step when it shares the compiled programs of a run
trained before it in the same process (``keys.program_key``), against the first run's.

Each run: build the trainer, init, a warm-up chunk, a learning chunk and, for a
variant with phases, one phase; the first calls compile (no persistent compilation
cache unless --compilation_cache_dir is given). The second run is another variant
with the same step programs, so only its phase (if it differs) compiles again.

  python benchmarks/programs.py --env=hopper --first=piekd --second=ensemble_sac_extra \
      --out=docs/benchmarks/programs.json
"""

from __future__ import annotations

import json
import sys
import time

from absl import app
from absl import flags

from piekd_mjx import jax_setup

FLAGS = flags.FLAGS
flags.DEFINE_string('env', 'hopper', 'Task.')
flags.DEFINE_string('first', 'piekd', 'Variant of the first run.')
flags.DEFINE_multi_string('second', ['piekd_random_teacher', 'ensemble_sac_extra'],
                          'Variants of the runs after it (same K: they share its programs).')
flags.DEFINE_integer('num_seeds', 1, 'Seeds per run.')
flags.DEFINE_integer('warmup_steps', 1000, 'Warm-up steps (the first chunk).')
flags.DEFINE_integer('train_steps', 100, 'Steps of the first learning chunk.')
flags.DEFINE_string('compilation_cache_dir', '', "JAX's persistent cache ('' for none).")
flags.DEFINE_string('out', '', 'Write the results as JSON here.')


def time_to_first_step(variant: str) -> dict[str, float]:
  """Seconds to build, init, warm up, train one chunk and run one phase of a run."""
  import jax  # pylint: disable=g-import-not-at-top
  from piekd_mjx import config as config_lib  # pylint: disable=g-import-not-at-top
  from piekd_mjx import programs as programs_lib  # pylint: disable=g-import-not-at-top
  config = config_lib.apply_variant(config_lib.Config(
      env=FLAGS.env, variant=variant, num_seeds=FLAGS.num_seeds,
      warmup_steps=FLAGS.warmup_steps, replay_capacity=100_000, distill_data='sample'))
  config.validate()
  times = {}
  start = time.perf_counter()
  trainer = programs_lib.make_trainer(config)
  state = jax.block_until_ready(trainer.init())
  times['init'] = time.perf_counter() - start
  mark = time.perf_counter()
  state, _ = trainer.collect(state, FLAGS.warmup_steps)
  state, metrics = trainer.train(state, FLAGS.train_steps)
  jax.block_until_ready(metrics)
  times['first_chunks'] = time.perf_counter() - mark
  times['to_first_training_step'] = time.perf_counter() - start
  if trainer.phase is not None:
    mark = time.perf_counter()
    state, metrics = trainer.phase(state)
    jax.block_until_ready(metrics)
    times['first_phase'] = time.perf_counter() - mark
  return times


def main(argv):
  del argv
  jax_setup.compilation_cache(FLAGS.compilation_cache_dir)
  results = {'env': FLAGS.env, 'runs': []}
  for variant in [FLAGS.first, *FLAGS.second]:
    times = time_to_first_step(variant)
    results['runs'].append({'variant': variant, **times})
    print(f'{variant:<22} ' + '  '.join(f'{k} {v:6.1f} s' for k, v in times.items()),
          flush=True)
    if FLAGS.out:
      with open(FLAGS.out, 'w', encoding='utf-8') as f:
        json.dump(results, f, indent=2)


if __name__ == '__main__':
  app.run(main, argv=sys.argv)
