"""A learning curve of the trainer, recorded for docs/BENCHMARKS.md.

    python benchmarks/learning.py --env=hopper --total_steps=100000 --num_seeds=1

Runs ``python -m piekd_mjx.launch`` with the given flags (any Config flag), then prints
the evaluation curve of its metrics.jsonl as a Markdown table.
"""

import json
import os
import subprocess
import sys
import tempfile


def curve_markdown(metrics_path: str) -> str:
  rows = ['| step | mean best-member return | per seed | wall time (s) | '
          'steps/s since the last evaluation | evaluation (s) |',
          '| --: | --: | --: | --: | --: | --: |']
  with open(metrics_path, encoding='utf-8') as f:
    for line in f:
      r = json.loads(line)
      best = r['eval/return_best']
      rows.append(f"| {r['step']:,} | {sum(best) / len(best):,.1f} | "
                  f"{', '.join(f'{b:,.1f}' for b in best)} | {r['wall_time']:.0f} | "
                  f"{r['steps_per_second']:.1f} | {r['eval/seconds']:.1f} |")
  return '\n'.join(rows)


def main(argv):
  args = argv[1:]
  if not any(a.startswith('--out_dir') for a in args):
    args.append('--out_dir=' + os.path.join(tempfile.mkdtemp(), 'run'))
  out_dir = [a.split('=', 1)[1] for a in args if a.startswith('--out_dir=')][-1]
  subprocess.run([sys.executable, '-m', 'piekd_mjx.launch', *args], check=True)
  print(f'\ncommand: python benchmarks/learning.py {" ".join(argv[1:])}')
  print(curve_markdown(os.path.join(out_dir, 'metrics.jsonl')))


if __name__ == '__main__':
  main(sys.argv)
