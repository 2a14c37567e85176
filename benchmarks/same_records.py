"""Whether two trees of runs wrote the same records: every ``metrics.jsonl`` under one
root against the file at the same place under the other, byte for byte but the
wall-clock fields (``records.WALL_CLOCK_FIELDS``).

Used to show that a change of the code leaves training unchanged: the same fixed-seed
runs (a grouped sweep with a phase of every kind, a run stopped and resumed, a run over
two devices) from the tree before and the tree after, then

    python benchmarks/same_records.py ROOT_BEFORE ROOT_AFTER

prints one line per file and exits 1 if any differs or is missing on one side.
"""

from __future__ import annotations

import glob
import json
import os
import sys

from piekd_mjx import records as records_lib
from piekd_mjx import rundir


def _comparable(path: str) -> list[str]:
  with open(path, encoding='utf-8') as f:
    return [json.dumps({k: v for k, v in json.loads(line).items()
                        if k not in records_lib.WALL_CLOCK_FIELDS}, sort_keys=True)
            for line in f]


def main(argv: list[str]) -> int:
  if len(argv) != 3:
    print('usage: same_records.py ROOT_BEFORE ROOT_AFTER', file=sys.stderr)
    return 2
  roots = argv[1:]
  found = [sorted(os.path.relpath(p, root) for p in glob.glob(
      os.path.join(root, '**', rundir.METRICS_FILE), recursive=True)) for root in roots]
  differ = 0
  for name in sorted(set(found[0]) | set(found[1])):
    if name not in found[0] or name not in found[1]:
      print(f'{name}: only under {roots[name in found[1]]}')
      differ += 1
      continue
    before, after = (_comparable(os.path.join(root, name)) for root in roots)
    same = before == after
    differ += not same
    print(f'{name}: {len(before)} records, {"identical" if same else "DIFFER"}')
  print('all identical' if not differ else f'{differ} differ')
  return 1 if differ else 0


if __name__ == '__main__':
  sys.exit(main(sys.argv))
