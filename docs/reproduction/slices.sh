#!/usr/bin/env bash
# Runs a resumable command (a sweep) in slices under an exclusive lock shared with the
# machine's other heavy jobs: each slice holds LOCK for at most SLICE seconds, then gets
# SIGTERM (the sweep checkpoints and exits) and gives the lock up for a few seconds, so
# that a job waiting on `flock LOCK ...` runs next. It repeats until the command exits
# 0, and stops on any exit other than 0 or a timeout.
#
#   slices.sh LOCK SLICE COMMAND [ARG...]
set -uo pipefail
if [ $# -lt 3 ]; then
  echo "usage: $0 LOCK SLICE_SECONDS COMMAND [ARG...]" >&2
  exit 2
fi
lock=$1 slice=$2
shift 2
while :; do
  echo "slice from $(date -u +%FT%TZ)"
  # -k: SIGKILL 15 minutes after SIGTERM if no chunk boundary came (the sweep resumes
  # from its newest checkpoint either way).
  flock "$lock" timeout -s TERM -k 900 "$slice" "$@"
  rc=$?
  echo "slice ended $(date -u +%FT%TZ) with exit $rc"
  if [ "$rc" -eq 0 ]; then exit 0; fi
  if [ "$rc" -ne 124 ] && [ "$rc" -ne 137 ]; then exit "$rc"; fi
  sleep 15
done
