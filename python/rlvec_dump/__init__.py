"""Dumps of verl's loss, KL, advantage and log-prob calls from a running trainer, as case files that
``./rlvec parity`` reads (the format: docs/dump-format.md; how to enable it: docs/verl-dumps.md).

    import rlvec_dump
    rlvec_dump.install("/tmp/verl-dumps")   # or set RLVEC_DUMP_DIR and ``import rlvec_dump.auto``

Each call of a wrapped function writes one ``<counter>_<function>_r<rank>_p<pid>.safetensors`` with its
inputs, parameters, outputs and (RLVEC_DUMP_GRADS=1) gradients. The wrappers return verl's results unchanged;
a failure of the dump itself is logged (logger ``rlvec_dump``) and never reaches the trainer. Needs only torch.
"""

import importlib
import logging

__all__ = ["install", "uninstall", "dump_call", "Settings", "Dumper", "table", "written"]

LOG = logging.getLogger("rlvec_dump")


def __getattr__(name):
    """Submodules and classes load on first use, so that importing the package (sitecustomize does, in every
    Python process) does not import torch."""
    if name in ("hooks", "table", "st", "writer"):
        return importlib.import_module("." + name, __name__)
    if name in ("Case", "Dumper", "Settings"):
        return getattr(importlib.import_module(".writer", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def install(directory=None, settings=None):
    """Starts dumping: wraps the table's functions in the verl modules already imported, and hooks the import of
    the others so that they are wrapped as they load.

    :param directory: where to write; default ``$RLVEC_DUMP_DIR``. Nothing is written while neither is set.
    :param settings: a :class:`Settings` (limits, gradients, function filter); default: read from the environment.
    :return: the :class:`Dumper` (its counters say what was written).
    """
    from . import hooks
    from .writer import Dumper, Settings

    s = settings or Settings(directory)
    if directory is not None:
        s.directory = directory
    d = Dumper(s)
    hooks.install(d)
    if s.directory:
        LOG.info("rlvec_dump: writing verl calls to %s (grads=%s, max %d files, %d bytes per process)",
                 s.directory, s.grads, s.max_files, s.max_bytes)
    return d


def uninstall():
    """Stops dumping; the wrappers stay in place and call verl's functions directly."""
    from . import hooks

    hooks.uninstall()


def written():
    """(files, bytes) written by this process since :func:`install`."""
    from . import hooks

    d = hooks.dumper()
    return (d._files, d._bytes) if d is not None else (0, 0)


def dump_call(function, group, inputs, outputs, params=None, masks=(), expect_error=None, short=None):
    """Writes one case by hand, for a computation no single verl function covers (e.g. the actor's composition
    of policy loss, entropy bonus and KL loss). Returns the path, or None when nothing was written (no
    directory, a limit, or an error, which is logged).

    :param function: the ``function`` metadata parity dispatches on (docs/dump-format.md lists them).
    :param group: the ``group`` metadata.
    :param inputs: ordered ``name -> tensor`` (names without ``in.``).
    :param outputs: ordered ``name -> tensor or number`` (names without ``out.``; gradients as ``grad_<input>``).
    :param params: the JSON-able parameters under verl's key names.
    :param masks: input names that are masks.
    :param expect_error: verl's exception text when the call raised (then ``outputs`` is empty).
    """
    from . import hooks
    from .writer import Case

    d = hooks.dumper()
    if d is None or not d.settings.directory:
        return None
    try:
        case = Case(function, group, short or function.rsplit(".", 1)[-1])
        for name, t in inputs.items():
            case.add_input(name, t, mask=name in masks)
        for name, v in outputs.items():
            case.add_output(name, v)
        case.params.update(params or {})
        if expect_error is not None:
            case.params["expect_error"] = expect_error
        return d.write(case)
    except Exception as e:  # noqa: BLE001 - never into the trainer
        LOG.warning("rlvec_dump: dump_call(%s) failed: %s: %s", function, type(e).__name__, e)
        return None
