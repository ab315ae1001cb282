"""Wrapping verl's functions in place, and the import hook that does it when verl is imported later."""

import functools
import importlib.abc
import inspect
import logging
import sys
import threading
import traceback

import torch

from . import table
from .writer import Case, Dumper

LOG = logging.getLogger("rlvec_dump")

_STATE = threading.local()
_DUMPER = None
_ORIGINALS = {}  # id(original function) -> (original, wrapper)
_PATCHED_MODULES = set()


def dumper():
    return _DUMPER


def _depth():
    return getattr(_STATE, "depth", 0)


class _Nested:
    """Marks the thread as inside a dumped call, so that verl's own inner calls (a policy loss calling agg_loss,
    logprobs_from_logits calling logprobs_from_logits_v2) and the gradient re-runs are not dumped again."""

    def __enter__(self):
        _STATE.depth = _depth() + 1

    def __exit__(self, *exc):
        _STATE.depth = _depth() - 1
        return False


def _compiling():
    """Whether torch.compile is tracing the call (verl can compile entropy_from_logits): then the wrapper stays
    out of the graph and the call is not dumped."""
    try:
        return bool(torch.compiler.is_compiling())
    except AttributeError:
        pass
    try:
        return bool(torch._dynamo.is_compiling())
    except Exception:  # noqa: BLE001 - a torch without dynamo compiles nothing
        return False


def _bind(original, args, kwargs):
    bound = inspect.signature(original).bind(*args, **kwargs)
    bound.apply_defaults()
    arguments = dict(bound.arguments)
    for name, p in inspect.signature(original).parameters.items():
        if p.kind is inspect.Parameter.VAR_KEYWORD and isinstance(arguments.get(name), dict):
            for k, v in arguments[name].items():
                arguments.setdefault(k, v)
    return bound, arguments


def _index_tensor(index):
    """verl's group ids (a numpy array of uid strings, a list, or a tensor) as I64: integers are kept, anything
    else is numbered in order of first appearance (only equality matters to the estimators)."""
    if isinstance(index, torch.Tensor):
        return index.detach().to("cpu").to(torch.int64)
    values = list(index.tolist() if hasattr(index, "tolist") else index)
    if all(isinstance(v, int) and not isinstance(v, bool) for v in values):
        return torch.tensor(values, dtype=torch.int64)
    ids = {}
    return torch.tensor([ids.setdefault(v, len(ids)) for v in values], dtype=torch.int64)


def _estimate_bytes(arguments, entry, grads):
    n = 0
    for arg in entry.tensors:
        t = arguments.get(arg)
        if isinstance(t, torch.Tensor):
            n += t.numel() * t.element_size() * (2 if grads and any(g.arg == arg for g in entry.grads) else 1)
    return n


def _capture(entry, arguments):
    """The case with its inputs and params, copied before the call (verl may modify arguments in place)."""
    case = Case(entry.function, entry.group, entry.short)
    case.call = f"{entry.module}.{entry.attr}"
    for arg, name in entry.tensors.items():
        value = arguments.get(arg)
        if value is None:
            continue
        if arg == "index" and not isinstance(value, torch.Tensor):
            case.add_input(name, _index_tensor(value))
        elif isinstance(value, torch.Tensor):
            if arg == "index":
                value = _index_tensor(value)
            case.add_input(name, value, mask=arg in entry.masks)
    for key in entry.scalars:
        v = arguments.get(key)
        if isinstance(v, torch.Tensor):
            v = v.item() if v.numel() == 1 else None
        if v is not None:
            case.params[key] = table._plain(v)
    if entry.config is not None:
        case.params.update(entry.config(arguments))
    case.params.update(entry.fixed)
    if entry.extra is not None:
        entry.extra(case, arguments)
    return case


def _cuda_devices(arguments):
    return sorted({v.device.index if v.device.index is not None else torch.cuda.current_device()
                   for v in arguments.values() if isinstance(v, torch.Tensor) and v.device.type == "cuda"})


def _rng_state(arguments):
    """The random generators' state before the call (CPU, and each CUDA device the arguments live on)."""
    return torch.random.get_rng_state(), {d: torch.cuda.get_rng_state(d) for d in _cuda_devices(arguments)}


def _grads(entry, original, bound, case, rng):
    """Re-runs the function on detached clones (the trainer's tensors and graph are untouched) and records
    d objective / d argument for each of the entry's gradients. The re-run starts from the generators' state
    before the call, so a function that draws random numbers (clip_cov) draws the same ones, and the trainer's
    generators are restored after it."""
    for g in entry.grads:
        if not isinstance(bound.arguments.get(g.arg), torch.Tensor):
            continue
        args = {}
        leaf = None
        for k, v in bound.arguments.items():
            if isinstance(v, torch.Tensor):
                c = v.detach().clone()
                if k == g.arg:
                    c.requires_grad_(True)
                    leaf = c
                args[k] = c
            else:
                args[k] = v
        rerun = inspect.BoundArguments(bound.signature, args)
        if not leaf.is_floating_point():
            continue
        cpu_state, cuda_states = rng
        with torch.random.fork_rng(devices=list(cuda_states)), torch.enable_grad():
            torch.random.set_rng_state(cpu_state)
            for device, state in cuda_states.items():
                torch.cuda.set_rng_state(state, device)
            result = original(*rerun.args, **rerun.kwargs)
            objective = g.objective(result)
            (grad,) = torch.autograd.grad(objective, [leaf], allow_unused=True)
        if grad is None:
            grad = torch.zeros_like(leaf)
        case.add_output(g.name, grad)
        case.notes.append(f"out.{g.name} = {g.how}, autograd on detached clones")


def _finish(entry, case):
    for group in (case.inputs, case.outputs):
        for name in list(group):
            fn = entry.reshape.get(("in." if group is case.inputs else "out.") + name)
            if fn is not None:
                group[name] = fn(group[name]).contiguous()


def make_wrapper(entry, original):
    """The wrapped function: calls ``original`` exactly as the trainer asked, returns its result unchanged and
    re-raises its exceptions unchanged; the dump around it logs its own failures and never raises."""

    @functools.wraps(original)
    def wrapper(*args, **kwargs):
        d = _DUMPER
        if d is None or _depth() > 0 or _compiling() or not d.wants(entry.short, entry.attr):
            return original(*args, **kwargs)
        case = bound = state = rng = None
        try:
            if entry.custom == "apply_kl_penalty":
                case, state = _apply_kl_before(entry, args, kwargs, original)
            else:
                bound, arguments = _bind(original, args, kwargs)
                if d.fits(_estimate_bytes(arguments, entry, d.settings.grads)):
                    case = _capture(entry, arguments)
                    if d.settings.grads and entry.grads:
                        rng = _rng_state(arguments)
        except Exception as e:  # noqa: BLE001 - never into the trainer
            _log_failure(d, entry, "capturing the inputs", e)
            case = None
        with _Nested():
            try:
                result = original(*args, **kwargs)
            except Exception as e:
                if case is not None:
                    try:
                        case.params["expect_error"] = f"{type(e).__name__}: {e}"
                        _finish(entry, case)
                        d.write(case)
                    except Exception as e2:  # noqa: BLE001
                        _log_failure(d, entry, "writing the error case", e2)
                raise
            if case is not None:
                try:
                    if entry.custom == "apply_kl_penalty":
                        _apply_kl_after(case, state, result)
                    else:
                        for name, value in entry.outputs(result):
                            case.add_output(name, value)
                        if d.settings.grads:
                            try:
                                _grads(entry, original, bound, case, rng)
                            except Exception as e:  # noqa: BLE001 - the case is still worth writing
                                _log_failure(d, entry, "the gradient re-run", e)
                                case.notes.append(f"no gradient: {type(e).__name__}: {e}")
                    _finish(entry, case)
                    d.write(case)
                except Exception as e:  # noqa: BLE001
                    _log_failure(d, entry, "writing the case", e)
        return result

    wrapper.__rlvec_dump_original__ = original
    return wrapper


def _log_failure(d, entry, what, e):
    d.warn_once((entry.short, what, type(e).__name__), "rlvec_dump: %s of %s failed (%s: %s); the trainer goes on, "
                "further failures of this kind are not logged\n%s", what, entry.attr, type(e).__name__, e,
                traceback.format_exc())


# ------------------------------------------------------------------------------------- apply_kl_penalty

def _apply_kl_before(entry, args, kwargs, original):
    """apply_kl_penalty(data, kl_ctrl, kl_penalty): the batch's tensors and the controller's state before the call."""
    _, arguments = _bind(original, args, kwargs)
    data, ctrl = arguments["data"], arguments["kl_ctrl"]
    batch = data.batch
    case = Case(entry.function, entry.group, entry.short)
    case.call = f"{entry.module}.{entry.attr}"
    case.add_input("token_level_scores", batch["token_level_scores"])
    case.add_input("old_log_probs", batch["old_log_probs"])
    case.add_input("ref_log_prob", batch["ref_log_prob"])
    if "response_mask" in batch.keys():
        case.add_input("response_mask", batch["response_mask"], mask=True)
    kind = type(ctrl).__name__.lower()
    case.params["kl_ctrl"] = "adaptive" if "adaptive" in kind else "fixed" if "fixed" in kind else kind
    case.params["init_kl_coef"] = float(ctrl.value)
    for key in ("target", "horizon"):
        if hasattr(ctrl, key):
            case.params["target_kl" if key == "target" else key] = table._plain(getattr(ctrl, key))
    case.params["kl_penalty"] = arguments.get("kl_penalty")
    return case, (float(ctrl.value), ctrl)


def _apply_kl_after(case, state, result):
    beta, ctrl = state
    data, metrics = result
    case.add_output("token_level_rewards", data.batch["token_level_rewards"])
    current = metrics.get("actor/reward_kl_penalty")
    if current is not None:
        case.add_output("current_kl", table._f64(current))
    case.add_output("beta_used", table._f64(beta))
    case.add_output("kl_coef_after_update", table._f64(float(ctrl.value)))


# ------------------------------------------------------------------------------------- patching

def _wrap_attr(module, entry):
    original = getattr(module, entry.attr, None)
    if original is None or not callable(original):
        return
    if hasattr(original, "__rlvec_dump_original__"):
        return
    wrapper = make_wrapper(entry, original)
    setattr(module, entry.attr, wrapper)
    _ORIGINALS[id(original)] = (original, wrapper)


def _registry_fallback(module_name, registry_name, key, fn):
    """An entry for a registry function the table does not name (a mode or estimator registered by the user)."""
    if module_name != table.CORE:
        return None
    attr = getattr(fn, "__name__", str(key))
    if registry_name == "POLICY_LOSS_REGISTRY":
        return table.policy_loss_entry(str(key), attr=attr)
    if registry_name == "ADV_ESTIMATOR_REGISTRY":
        return table.advantage_entry(str(key), attr=attr)
    return None


def patch_module(module):
    """Wraps the table's functions of ``module`` in place, and the values of its ``*_REGISTRY`` dicts."""
    name = module.__name__
    for entry in table.by_module().get(name, []):
        try:
            _wrap_attr(module, entry)
        except Exception as e:  # noqa: BLE001
            LOG.warning("rlvec_dump: cannot wrap %s.%s: %s", name, entry.attr, e)
    for attr, value in list(vars(module).items()):
        if not attr.endswith("_REGISTRY") or not isinstance(value, dict):
            continue
        for key, fn in list(value.items()):
            if not callable(fn) or hasattr(fn, "__rlvec_dump_original__"):
                continue
            if id(fn) in _ORIGINALS and _ORIGINALS[id(fn)][0] is fn:
                value[key] = _ORIGINALS[id(fn)][1]
                continue
            entry = _registry_fallback(name, attr, key, fn)
            if entry is not None:
                wrapper = make_wrapper(entry, fn)
                value[key] = wrapper
                _ORIGINALS[id(fn)] = (fn, wrapper)
    _PATCHED_MODULES.add(name)
    _rebind()


def _rebind():
    """Modules that did ``from core_algos import agg_loss`` before the patch hold the original: point them at the
    wrapper too."""
    for mod_name, mod in list(sys.modules.items()):
        if mod is None or not (mod_name == "verl" or mod_name.startswith("verl.")):
            continue
        try:
            items = list(vars(mod).items())
        except TypeError:
            continue
        for attr, value in items:
            hit = _ORIGINALS.get(id(value))
            if hit is not None and hit[0] is value:
                try:
                    setattr(mod, attr, hit[1])
                except Exception:  # noqa: BLE001
                    pass


class _PatchingLoader(importlib.abc.Loader):
    def __init__(self, loader):
        self._loader = loader

    def create_module(self, spec):
        return self._loader.create_module(spec)

    def exec_module(self, module):
        self._loader.exec_module(module)
        try:
            patch_module(module)
        except Exception as e:  # noqa: BLE001
            LOG.warning("rlvec_dump: patching %s failed: %s", module.__name__, e)

    def __getattr__(self, name):
        return getattr(self._loader, name)


class _Finder(importlib.abc.MetaPathFinder):
    """Patches a target module right after it executes, before anyone imports names from it."""

    def __init__(self, targets):
        self.targets = set(targets)

    def find_spec(self, fullname, path, target=None):
        if fullname not in self.targets or fullname in _PATCHED_MODULES:
            return None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(fullname, path, target)
            if spec is not None:
                if spec.loader is not None and hasattr(spec.loader, "exec_module"):
                    spec.loader = _PatchingLoader(spec.loader)
                return spec
        return None


_FINDER = None


def install(dumper_):
    """Sets the dumper, wraps the targets already imported and hooks the import of the others."""
    global _DUMPER, _FINDER
    _DUMPER = dumper_
    targets = list(table.by_module())
    for name in targets:
        mod = sys.modules.get(name)
        if mod is not None:
            patch_module(mod)
    if _FINDER is None:
        _FINDER = _Finder(targets)
        sys.meta_path.insert(0, _FINDER)


def uninstall():
    """Stops dumping (the wrappers stay in place and only call the originals)."""
    global _DUMPER
    _DUMPER = None


def set_dumper(dumper_):
    global _DUMPER
    _DUMPER = dumper_


def is_installed():
    return _FINDER is not None


def new_dumper(settings=None):
    return Dumper(settings)
