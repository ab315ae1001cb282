"""Put this directory (and its parent, python/) on PYTHONPATH to dump from every Python process that has
$RLVEC_DUMP_DIR set, Ray workers included, without editing the trainer. A sitecustomize found later on the
path is not run; if your environment has one, add ``import rlvec_dump.auto`` to it instead."""

try:
    import rlvec_dump.auto  # noqa: F401
except Exception as e:  # noqa: BLE001 - interpreter start-up must never fail because of the dump
    import sys

    print(f"rlvec_dump: not installed ({type(e).__name__}: {e})", file=sys.stderr)
