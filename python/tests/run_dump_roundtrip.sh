#!/usr/bin/env bash
# The dump module end to end: unit tests, then a fake trainer step on the verl stand-in writes dumps that
# `./rlvec parity` must pass (exit 0), then each deliberately wrong stand-in must make parity fail (exit 1 with
# FAIL rows). Uses /usr/bin/python3 (Debian's python3-torch), not a python3 that may come first on PATH.
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=${RLVEC_PYTHON:-/usr/bin/python3}
"$PY" -c 'import torch' 2>/dev/null || { echo "run_dump_roundtrip: $PY cannot import torch" >&2; exit 1; }
export PYTHONPATH="$PWD/python:$PWD/python/tests/fake_verl"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

echo "== dump module unit tests"
"$PY" -m unittest discover -s python/tests -p 'test_*.py'

echo "== correct stand-in: dump, then parity must pass"
RLVEC_DUMP_GRADS=1 "$PY" python/tests/fake_trainer.py "$work/good"
# ... and a case written with the standard library alone, as docs/dump-format.md shows it.
"$PY" python/examples/write_case_stdlib.py "$work/good/stdlib_kl_k1.safetensors"
if ! ./rlvec parity -q "$work/good" > "$work/good.txt" 2>&1; then
  cat "$work/good.txt"
  echo "run_dump_roundtrip: parity failed on dumps of the correct stand-in" >&2
  exit 1
fi
grep '^summary' "$work/good.txt"

for bug in clip_bound grad_sign agg_drop; do
  echo "== wrong stand-in ($bug): dump, then parity must fail"
  FAKE_VERL_BUG=$bug RLVEC_DUMP_GRADS=1 "$PY" python/tests/fake_trainer.py "$work/$bug" > /dev/null
  rc=0
  ./rlvec parity -q "$work/$bug" > "$work/$bug.txt" 2>&1 || rc=$?
  if [ "$rc" -ne 1 ] || ! grep -q ' FAIL ' "$work/$bug.txt"; then
    cat "$work/$bug.txt"
    echo "run_dump_roundtrip: parity did not fail on the '$bug' stand-in (exit $rc)" >&2
    exit 1
  fi
  grep '^summary' "$work/$bug.txt"
done
echo "run_dump_roundtrip: OK"
