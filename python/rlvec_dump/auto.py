"""``import rlvec_dump.auto``: installs the dump when $RLVEC_DUMP_DIR is set, does nothing otherwise.

It stays light, because sitecustomize runs it in every Python process: torch and the dump module are imported
only when one of verl's wrapped modules is first imported (verl imports torch then anyway).
"""

import importlib.abc
import os
import sys

# The modules rlvec_dump.table wraps functions of (a test keeps the two lists equal).
TARGETS = ("verl.trainer.ppo.core_algos", "verl.utils.torch_functional", "verl.trainer.ppo.ray_trainer")


class _Trigger(importlib.abc.MetaPathFinder):
    """Installs the dump at the first import of a target module, then steps aside."""

    def find_spec(self, fullname, path, target=None):
        if fullname not in TARGETS:
            return None
        if self in sys.meta_path:
            sys.meta_path.remove(self)
        try:
            from rlvec_dump import hooks, install

            install()
            return hooks._FINDER.find_spec(fullname, path, target)
        except Exception as e:  # noqa: BLE001 - an import of verl must never fail because of the dump
            print(f"rlvec_dump: not installed ({type(e).__name__}: {e})", file=sys.stderr)
            return None


if os.environ.get("RLVEC_DUMP_DIR", "").strip():
    if any(name in sys.modules for name in TARGETS):
        from rlvec_dump import install

        install()
    elif not any(isinstance(f, _Trigger) for f in sys.meta_path):
        sys.meta_path.insert(0, _Trigger())
