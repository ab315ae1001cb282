"""Turns one call (inputs, parameters, outputs) into one case file in the format `./rlvec parity` reads.

See docs/dump-format.md for the format. Every public function here may raise; the wrappers in
:mod:`rlvec_dump.hooks` catch and log, so that nothing reaches the trainer.
"""

import json
import logging
import os
import threading

import torch

from . import st

LOG = logging.getLogger("rlvec_dump")

GENERATOR = "rlvec_dump (a verl call wrapped in a running trainer)"

_FLOAT_TAGS = {torch.float32: "f32", torch.float64: "f64", torch.bfloat16: "bf16", torch.float16: "f16"}


def _env_int(name, default):
    text = os.environ.get(name, "").strip()
    if not text:
        return default
    try:
        return int(float(text))
    except ValueError:
        LOG.warning("rlvec_dump: %s=%r is not a number; using %d", name, text, default)
        return default


def _env_flag(name):
    return os.environ.get(name, "").strip().lower() in ("1", "true", "yes", "on")


class Settings:
    """What and how much to dump, read from the environment once per :class:`Dumper` (see docs/verl-dumps.md)."""

    def __init__(self, directory=None):
        self.directory = directory if directory is not None else os.environ.get("RLVEC_DUMP_DIR", "").strip()
        self.grads = _env_flag("RLVEC_DUMP_GRADS")
        self.max_files = _env_int("RLVEC_DUMP_MAX_FILES", 1000)
        self.max_bytes = _env_int("RLVEC_DUMP_MAX_BYTES", 2 << 30)
        self.every = max(1, _env_int("RLVEC_DUMP_EVERY", 1))
        names = os.environ.get("RLVEC_DUMP_FUNCTIONS", "").strip()
        self.functions = {n.strip() for n in names.split(",") if n.strip()} or None
        ranks = os.environ.get("RLVEC_DUMP_RANKS", "").strip()
        self.ranks = {int(r) for r in ranks.split(",") if r.strip().lstrip("-").isdigit()} or None
        self.verl_commit = os.environ.get("RLVEC_VERL_COMMIT", "").strip() or None


def rank():
    """The process's distributed rank (torch.distributed, else $RANK, else 0)."""
    try:
        import torch.distributed as dist
        if dist.is_available() and dist.is_initialized():
            return dist.get_rank()
    except Exception:  # noqa: BLE001 - a rank is only a label here
        pass
    try:
        return int(os.environ.get("RANK", "0"))
    except ValueError:
        return 0


def verl_git_head():
    """The commit of the verl checkout the running ``verl`` package comes from, read from its .git (no subprocess);
    None when verl is not importable or not a git checkout."""
    try:
        import verl
        d = os.path.dirname(os.path.abspath(verl.__file__))
    except Exception:  # noqa: BLE001
        return None
    for _ in range(4):
        git = os.path.join(d, ".git")
        if os.path.isfile(git):  # a worktree: "gitdir: PATH"
            with open(git) as f:
                line = f.read().strip()
            if line.startswith("gitdir:"):
                git = os.path.join(d, line[len("gitdir:"):].strip())
        if os.path.isdir(git):
            try:
                with open(os.path.join(git, "HEAD")) as f:
                    head = f.read().strip()
                if not head.startswith("ref:"):
                    return head
                ref = head[4:].strip()
                for base in (git, _common_dir(git)):
                    p = os.path.join(base, ref)
                    if os.path.isfile(p):
                        with open(p) as f:
                            return f.read().strip()
                    packed = os.path.join(base, "packed-refs")
                    if os.path.isfile(packed):
                        with open(packed) as f:
                            for row in f:
                                parts = row.split()
                                if len(parts) == 2 and parts[1] == ref:
                                    return parts[0]
            except OSError:
                return None
            return None
        d = os.path.dirname(d)
    return None


def _common_dir(git):
    p = os.path.join(git, "commondir")
    if os.path.isfile(p):
        with open(p) as f:
            return os.path.normpath(os.path.join(git, f.read().strip()))
    return git


def float_tag(dtype):
    """``f32`` / ``f64`` / ``bf16`` / ``f16`` for a torch float dtype."""
    return _FLOAT_TAGS.get(dtype, str(dtype).replace("torch.", ""))


def _json_value(v):
    """A JSON-able copy of a parameter value (tensors and numpy scalars as numbers, configs as objects)."""
    if v is None or isinstance(v, (bool, int, float, str)):
        return v
    if isinstance(v, torch.Tensor):
        if v.numel() != 1:
            raise TypeError(f"parameter tensor must hold one value, has shape {list(v.shape)}")
        return v.item()
    if hasattr(v, "item") and callable(v.item) and not isinstance(v, dict):  # numpy scalar
        return v.item()
    if isinstance(v, dict) or hasattr(v, "items"):
        return {str(k): _json_value(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_json_value(x) for x in v]
    return str(v)


def _param_text(v):
    if isinstance(v, str):
        return v
    if isinstance(v, (dict, list)):
        return json.dumps(v, sort_keys=True)
    return json.dumps(v)


class Case:
    """One call, being assembled: inputs in the order verl received them, then outputs."""

    def __init__(self, function, group, short):
        self.function = function
        self.group = group
        self.short = short
        self.inputs = {}
        self.outputs = {}
        self.params = {}
        self.mask_dtypes = []
        self.dtype = None
        self.notes = []
        self.call = None

    def nbytes(self):
        return sum(t.numel() * t.element_size() for t in list(self.inputs.values()) + list(self.outputs.values()))

    def add_input(self, name, t, mask=False):
        """Adds ``in.<name>`` (a detached CPU copy); a mask of 0/1 values is stored as U8."""
        self.inputs[name] = self._tensor(name, t, mask)

    def add_output(self, name, value):
        """Adds ``out.<name>``: a tensor, or a Python number stored as a 0-d tensor of the case dtype."""
        if isinstance(value, torch.Tensor):
            self.outputs[name] = self._tensor(name, value, False)
        elif isinstance(value, (bool, int, float)):
            dtype = self.dtype if self.dtype is not None else torch.float32
            self.outputs[name] = st.storable(torch.tensor(float(value), dtype=dtype))
        else:
            raise TypeError(f"{name}: cannot store a {type(value).__name__}")

    def _tensor(self, name, t, mask):
        t = t.detach()
        if t.is_floating_point() and self.dtype is None and not mask:
            self.dtype = t.dtype
        if mask:
            self.mask_dtypes.append(str(t.dtype).replace("torch.", ""))
            binary = bool(((t == 0) | (t == 1)).all()) if t.numel() else True
            if binary:
                return t.to("cpu").to(torch.uint8).contiguous()
            self.notes.append(f"{name} holds values other than 0/1 and is stored as passed")
        copy = t.to("cpu", copy=True)
        return st.storable(copy)

    def metadata(self, case, index, settings):
        md = {
            "function": self.function,
            "case": case,
            "group": self.group,
            "params": json.dumps(self.params, sort_keys=True),
            "inputs": ",".join(self.inputs),
            "outputs": ",".join(self.outputs),
            "dtype": float_tag(self.dtype) if self.dtype is not None else "f32",
            "mask_passed_to_verl_as": ",".join(sorted(set(self.mask_dtypes)))
            or (str(self.dtype).replace("torch.", "") if self.dtype is not None else "float32"),
        }
        head = verl_git_head()
        commit = settings.verl_commit or head
        if commit:
            md["verl_commit"] = commit
        if head and head != commit:
            md["verl_git_head"] = head
        try:
            import verl
            md["verl_version"] = str(getattr(verl, "__version__", "unknown"))
        except Exception:  # noqa: BLE001
            pass
        md["torch_version"] = torch.__version__
        md["torch_num_threads"] = str(torch.get_num_threads())
        md["generator"] = GENERATOR
        md["dump_index"] = str(index)
        md["rank"] = str(rank())
        if self.call:
            md["call"] = self.call
        if self.notes:
            md["notes"] = "; ".join(self.notes)
        for k, v in self.params.items():
            md["param." + k] = _param_text(v)
        return md


class Dumper:
    """Numbers and writes case files, within the file and byte limits of its :class:`Settings`. Thread-safe."""

    def __init__(self, settings=None):
        self.settings = settings or Settings()
        self._lock = threading.Lock()
        self._files = 0
        self._bytes = 0
        self._warned = set()
        self._made_dir = False
        self._calls = {}

    def wants(self, short, attr):
        """Whether calls of this function are dumped at all (directory set, function and rank selected)."""
        s = self.settings
        if not s.directory:
            return False
        if s.functions is not None and short not in s.functions and attr not in s.functions:
            return False
        if s.ranks is not None and rank() not in s.ranks:
            return False
        with self._lock:
            n = self._calls.get(short, 0)
            self._calls[short] = n + 1
            return n % s.every == 0 and self._files < s.max_files and self._bytes < s.max_bytes

    def fits(self, nbytes):
        """Whether ``nbytes`` more still fit under the limits (checked before anything is copied)."""
        s = self.settings
        with self._lock:
            ok = self._files < s.max_files and self._bytes + nbytes <= s.max_bytes
        if not ok:
            self.warn_once("limit", "rlvec_dump: limit reached (RLVEC_DUMP_MAX_FILES=%d, RLVEC_DUMP_MAX_BYTES=%d); "
                           "further calls are not dumped", s.max_files, s.max_bytes)
        return ok

    def warn_once(self, key, msg, *args):
        if key not in self._warned:
            self._warned.add(key)
            LOG.warning(msg, *args)

    def write(self, case):
        """Writes the case; returns its path, or None when a limit stopped it."""
        size = case.nbytes()
        with self._lock:
            s = self.settings
            if self._files >= s.max_files or self._bytes + size > s.max_bytes:
                index = None
            else:
                index = self._files
                self._files += 1
                self._bytes += size
        if index is None:
            self.fits(size)
            return None
        if not self._made_dir:
            os.makedirs(self.settings.directory, exist_ok=True)
            self._made_dir = True
        r = rank()
        stem = f"{index:06d}_{case.short}_r{r}_p{os.getpid()}"
        tensors = {"in." + k: v for k, v in case.inputs.items()}
        tensors.update(("out." + k, v) for k, v in case.outputs.items())
        md = case.metadata(stem, index, self.settings)
        md["inputs"] = ",".join("in." + k for k in case.inputs)
        md["outputs"] = ",".join("out." + k for k in case.outputs)
        final = os.path.join(self.settings.directory, stem + ".safetensors")
        tmp = final + ".tmp"
        st.save(tmp, tensors, md)
        os.replace(tmp, final)  # parity never sees a half-written file
        return final
