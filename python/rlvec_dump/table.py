"""The table of verl functions the dump module wraps: for each, where it lives, how its arguments and results are
named in a case file, its parameters and the gradients worth recording.

Adding a function is one :class:`Entry` in :data:`ENTRIES` (or one line in :data:`POLICY_LOSS_MODES` /
:data:`ADVANTAGE_ESTIMATORS`). Names follow the golden files (verl-golden/INDEX.md) because `./rlvec parity`
dispatches on the ``function`` metadata and reads tensors by these names.
"""

import torch

CORE = "verl.trainer.ppo.core_algos"
TORCH_FUNCTIONAL = "verl.utils.torch_functional"
RAY_TRAINER = "verl.trainer.ppo.ray_trainer"

MISSING = object()


class Grad:
    """An autograd gradient to record: d objective(result) / d argument, stored as ``out.<name>``."""

    def __init__(self, arg, name, objective, how):
        self.arg = arg
        self.name = name
        self.objective = objective
        self.how = how


class Entry:
    """How one verl function's call becomes a case file.

    :param module: the module that defines the function.
    :param attr: its attribute name there.
    :param function: the ``function`` metadata (what parity dispatches on).
    :param group: the ``group`` metadata.
    :param short: the file-name prefix.
    :param tensors: argument name -> tensor name (without ``in.``), in file order; None arguments are left out.
    :param masks: arguments that are masks (stored as U8 when 0/1; their dtype goes to ``mask_passed_to_verl_as``).
    :param scalars: arguments recorded as params under their own names (None values are left out).
    :param config: ``fn(bound_arguments) -> dict`` of further params (from a config object).
    :param outputs: ``fn(result) -> [(name, tensor or number)]`` (names without ``out.``).
    :param grads: the gradients recorded when RLVEC_DUMP_GRADS=1.
    :param reshape: tensor name (with prefix) -> ``fn(tensor) -> tensor`` applied before writing.
    :param extra: ``fn(case, bound_arguments)`` adding inputs or params the call implies (weights of an objective).
    :param fixed: params every file of this function carries.
    :param handled: whether `./rlvec parity` on this branch has a handler for ``function`` (documentation only).
    """

    def __init__(self, module, attr, function, group, short, tensors=(), masks=(), scalars=(), config=None,
                 outputs=None, grads=(), reshape=None, extra=None, fixed=None, handled=False, custom=None):
        self.module = module
        self.attr = attr
        self.function = function
        self.group = group
        self.short = short
        self.tensors = dict(tensors)
        self.masks = frozenset(masks)
        self.scalars = tuple(scalars)
        self.config = config
        self.outputs = outputs
        self.grads = tuple(grads)
        self.reshape = dict(reshape or {})
        self.extra = extra
        self.fixed = dict(fixed or {})
        self.handled = handled
        self.custom = custom


def cfg_get(cfg, key, default=MISSING):
    """``cfg[key]`` for a dict, an omegaconf DictConfig, a verl config dataclass (``.get`` or attribute)."""
    if cfg is None:
        return default
    if isinstance(cfg, dict):
        return cfg.get(key, default)
    getter = getattr(cfg, "get", None)
    if callable(getter):
        try:
            v = getter(key, default)
            if v is not default:
                return v
        except Exception:  # noqa: BLE001 - fall back to the attribute
            pass
    return getattr(cfg, key, default)


def _plain(v):
    """A config sub-object as plain dicts / lists / numbers."""
    try:
        from omegaconf import OmegaConf
        if OmegaConf.is_config(v):
            return OmegaConf.to_container(v, resolve=True)
    except ImportError:
        pass
    if hasattr(v, "__dataclass_fields__"):
        return {k: _plain(getattr(v, k)) for k in v.__dataclass_fields__ if not k.startswith("_")}
    if isinstance(v, dict):
        return {k: _plain(x) for k, x in v.items()}
    if isinstance(v, torch.Tensor) and v.numel() == 1:
        return v.item()
    return v


def _first(result):
    return result[0] if isinstance(result, (tuple, list)) else result


def _flat(t):
    return t.reshape(-1)


def _rows(t):
    return t.reshape(-1, t.shape[-1]) if t.dim() >= 1 else t.reshape(1, 1)


def _matrix(t):
    """A (B, T) view: 1-D becomes one row, 0-d one element, higher ranks keep their last dimension."""
    if t.dim() == 0:
        return t.reshape(1, 1)
    if t.dim() == 1:
        return t.reshape(1, -1)
    return t.reshape(-1, t.shape[-1])


# ---------------------------------------------------------------------------------------------- policy losses

# golden.py's names of the three policy-loss metrics; other metric-dict entries become out.metric.<key> (F64).
_PG_METRICS = {"pg_clipfrac", "ppo_kl", "pg_clipfrac_lower"}
_GLOBAL_BATCH_KEYS = ("dp_size", "batch_num_tokens", "global_batch_size", "loss_scale_factor")


def policy_outputs(result):
    """``(pg_loss, metrics dict)`` (verl 2026) or ``(pg_loss, pg_clipfrac, ppo_kl, pg_clipfrac_lower)`` (older)."""
    if not isinstance(result, (tuple, list)):
        return [("pg_loss", result)]
    out = [("pg_loss", result[0])]
    if len(result) == 2 and hasattr(result[1], "items"):
        for key, value in result[1].items():
            bare = key[len("actor/"):] if key.startswith("actor/") else key
            if bare in _PG_METRICS:
                out.append((bare, value))
            else:
                out.append(("metric." + key, _f64(value)))
    else:
        for name, value in zip(("pg_clipfrac", "ppo_kl", "pg_clipfrac_lower"), result[1:]):
            out.append((name, value))
    return out


def _f64(value):
    """verl returns extra metrics as Python floats: stored as 0-d F64, exactly."""
    if isinstance(value, torch.Tensor):
        return value.detach().to(torch.float64)
    return torch.tensor(float(value), dtype=torch.float64)


def policy_config(top=(), policy_loss=()):
    """Params of a policy-loss call from its ``config`` argument: top-level ActorConfig keys, the keys of
    ``config.policy_loss`` under ``policy_loss`` (with its ``loss_mode``), and ``global_batch_info`` when the
    config carries it (verl 2026-08)."""

    def params(bound):
        cfg = bound.get("config")
        out = {}
        for key in top:
            v = cfg_get(cfg, key)
            if v is not MISSING:
                out[key] = _plain(v)
        if policy_loss:
            sub = cfg_get(cfg, "policy_loss")
            if sub is not MISSING and sub is not None:
                pl = {}
                for key in ("loss_mode",) + tuple(policy_loss):
                    v = cfg_get(sub, key)
                    if v is not MISSING:
                        pl[key] = _plain(v)
                out["policy_loss"] = pl
        gbi = cfg_get(cfg, "global_batch_info")
        if gbi is not MISSING and gbi:
            gbi = {k: _plain(v) for k, v in _plain(gbi).items() if v is not None and k in _GLOBAL_BATCH_KEYS}
            if gbi:
                out["global_batch_info"] = gbi
        return out

    return params


POLICY_TENSORS = (("old_log_prob", "old_log_prob"), ("log_prob", "log_prob"), ("advantages", "advantages"),
                  ("response_mask", "response_mask"), ("rollout_is_weights", "rollout_is_weights"))
CLIP_KEYS = ("clip_ratio", "clip_ratio_low", "clip_ratio_high", "clip_ratio_c")

# mode -> (function attribute, top-level config keys, config.policy_loss keys, parity handler on this branch)
POLICY_LOSS_MODES = {
    "vanilla": ("compute_policy_loss_vanilla", CLIP_KEYS, (), True),
    "gspo": ("compute_policy_loss_gspo", CLIP_KEYS[:3], (), False),
    "sapo": ("compute_policy_loss_sapo", ("tau_pos", "tau_neg"), (), False),
    "gpg": ("compute_policy_loss_gpg", (), (), False),
    "geo_mean": ("compute_policy_loss_geo_mean", CLIP_KEYS[:3], (), False),
    "cispo": ("compute_policy_loss_cispo", CLIP_KEYS[:3], (), False),
    "clip_cov": ("compute_policy_loss_clip_cov", CLIP_KEYS[:3], ("clip_cov_ratio", "clip_cov_lb", "clip_cov_ub"),
                 False),
    "kl_cov": ("compute_policy_loss_kl_cov", (), ("kl_cov_ratio", "ppo_kl_coef"), False),
    "dppo_tv": ("compute_policy_loss_dppo_tv", CLIP_KEYS, (), False),
    "dppo_kl": ("compute_policy_loss_dppo_kl", CLIP_KEYS, (), False),
    "dro": ("compute_policy_loss_dro", (), ("dro_beta",), False),
    "bypass_mode": ("compute_policy_loss_bypass_mode", CLIP_KEYS, ("rollout_correction",), False),
}


def policy_loss_entry(mode, attr=None, top=CLIP_KEYS, policy_loss=(), handled=False):
    """The entry of one policy-loss mode (all modes share verl's signature and result)."""
    attr = attr or "compute_policy_loss_" + mode
    return Entry(CORE, attr, f"{CORE}.{attr}", "policy_loss:" + mode, "pl_" + mode,
                 tensors=POLICY_TENSORS, masks=("response_mask",), scalars=("loss_agg_mode",),
                 config=policy_config(top, policy_loss), outputs=policy_outputs,
                 grads=(Grad("log_prob", "grad_log_prob", _first, "d pg_loss / d log_prob"),), handled=handled)


# ---------------------------------------------------------------------------------------------- advantages

ADVANTAGE_TENSORS = (("token_level_rewards", "token_level_rewards"), ("values", "values"),
                     ("response_mask", "response_mask"), ("index", "index"),
                     ("reward_baselines", "reward_baselines"), ("old_log_probs", "old_log_probs"),
                     ("sum_pi_squared", "sum_pi_squared"), ("rollout_is_weights", "rollout_is_weights"))
ADVANTAGE_SCALARS = ("gamma", "lam", "epsilon", "norm_adv_by_std_in_grpo", "handle_zero_tail", "f_norm", "alpha")


def advantage_outputs(result):
    return [("advantages", result[0]), ("returns", result[1])]


# estimator -> {param: key of verl's AlgoConfig} for the estimators that read their config (verl passes the whole
# algorithm config to every estimator of the registry; only these keys change a result).
ADVANTAGE_CONFIG = {
    "reinforce_plus_plus": {"config_gamma": "gamma"},
    "grpo_passk": {"norm_adv_by_std_in_grpo": "norm_adv_by_std_in_grpo"},
    "gdpo": {"gdpo_reward_keys": "gdpo_reward_keys", "gdpo_reward_weights": "gdpo_reward_weights"},
}


def advantage_config(name):
    """Params from the estimator's ``config`` argument, by :data:`ADVANTAGE_CONFIG`; an argument of the same name
    given to the call wins."""
    keys = ADVANTAGE_CONFIG.get(name, {})

    def params(bound):
        cfg = bound.get("config")
        out = {}
        for param, key in keys.items():
            if param in bound and bound[param] is not None:
                continue
            v = cfg_get(cfg, key)
            if v is not MISSING and v is not None:
                out[param] = _plain(v)
        return out

    return params


# estimator -> function attribute (verl's AdvantageEstimator names, group "advantage:<name>" as the golden files)
ADVANTAGE_ESTIMATORS = {
    "gae": "compute_gae_advantage_return",
    "grpo": "compute_grpo_outcome_advantage",
    "grpo_vectorized": "compute_grpo_vectorized_outcome_advantage",
    "grpo_passk": "compute_grpo_passk_outcome_advantage",
    "gdpo": "compute_gdpo_outcome_advantage",
    "rloo": "compute_rloo_outcome_advantage",
    "rloo_vectorized": "compute_rloo_vectorized_outcome_advantage",
    "reinforce_plus_plus": "compute_reinforce_plus_plus_outcome_advantage",
    "reinforce_plus_plus_baseline": "compute_reinforce_plus_plus_baseline_outcome_advantage",
    "remax": "compute_remax_outcome_advantage",
    "opo": "compute_opo_outcome_advantage",
    "gpg": "compute_gpg_outcome_advantage",
    "otb": "compute_optimal_token_baseline_advantage",
    "tir_otb": "compute_multi_turn_optimal_token_baseline_advantage",
}


def advantage_entry(name, attr=None):
    attr = attr or ADVANTAGE_ESTIMATORS[name]
    return Entry(CORE, attr, f"{CORE}.{attr}", "advantage:" + name, "adv_" + name,
                 tensors=ADVANTAGE_TENSORS, masks=("response_mask",), scalars=ADVANTAGE_SCALARS,
                 config=advantage_config(name), outputs=advantage_outputs)


# ---------------------------------------------------------------------------------------------- logits

LOGITS_FUNCTION = f"{TORCH_FUNCTIONAL}.entropy_from_logits+logprobs_from_logits_{{naive,v2}}"


def _logits_objective(w1, w2):
    """The golden objective ``sum(logprob * w1) + sum(entropy * w2)`` with constant weights: the file carries
    ``in.w1`` / ``in.w2`` [N], and ``in.labels`` [N] (zeros as a placeholder where the call has no labels and
    w1 = 0)."""

    def extra(case, bound):
        logits = bound["logits"]
        rows = logits.numel() // logits.shape[-1] if logits.dim() else 1
        dtype = logits.dtype if logits.dtype in (torch.float32, torch.float64) else torch.float32
        if "labels" not in bound or bound["labels"] is None:
            case.add_input("labels", torch.zeros(rows, dtype=torch.int64))
        case.add_input("w1", torch.full((rows,), float(w1), dtype=dtype))
        case.add_input("w2", torch.full((rows,), float(w2), dtype=dtype))
        # The function received logits already divided by the rollout temperature.
        case.params["temperature"] = 1.0
        case.params["objective"] = "sum(logprob*w1)+sum(entropy*w2)"

    return extra


def logits_entry(attr, out, w1, w2, handled=True):
    grad_name = "grad_logits_naive" if attr.endswith("_naive") else "grad_logits_v2"
    return Entry(TORCH_FUNCTIONAL, attr, LOGITS_FUNCTION, "logits", attr,
                 tensors=(("logits", "logits"), ("labels", "labels")),
                 outputs=lambda result, out=out: [(out, result)],
                 grads=(Grad("logits", grad_name, lambda r: r.sum(), f"d sum({out}) / d logits"),),
                 reshape={"in.logits": _rows, "in.labels": _flat, "out." + out: _flat,
                          "out." + grad_name: _rows},
                 extra=_logits_objective(w1, w2), handled=handled)


# ---------------------------------------------------------------------------------------------- the rest

def _agg_params(bound):
    """agg_loss's global-batch arguments (named, or splatted from global_batch_info into **kwargs)."""
    out = {}
    for key in _GLOBAL_BATCH_KEYS:
        v = bound.get(key, None)
        if v is None:
            for kw in bound.values():
                if isinstance(kw, dict) and key in kw:
                    v = kw[key]
        if v is not None:
            out[key] = _plain(v)
    return out


def _kl_extra(case, bound):
    case.params["grad_of"] = "kld.mean() w.r.t. logprob"


ENTRIES = [policy_loss_entry(mode, attr, top, pl, handled)
           for mode, (attr, top, pl, handled) in POLICY_LOSS_MODES.items()]
ENTRIES += [
    Entry(CORE, "agg_loss", f"{CORE}.agg_loss", "agg_loss", "agg_loss",
          tensors=(("loss_mat", "loss_mat"), ("loss_mask", "loss_mask")), masks=("loss_mask",),
          scalars=("loss_agg_mode",), config=_agg_params, outputs=lambda r: [("loss", r)],
          grads=(Grad("loss_mat", "grad_loss_mat", lambda r: r, "d loss / d loss_mat"),), handled=True),
    Entry(CORE, "kl_penalty", f"{CORE}.kl_penalty", "kl_penalty", "kl_penalty",
          tensors=(("logprob", "logprob"), ("ref_logprob", "ref_logprob")), scalars=("kl_penalty",),
          outputs=lambda r: [("kld", r)],
          grads=(Grad("logprob", "grad_logprob", lambda r: r.mean(), "d kld.mean() / d logprob"),),
          reshape={"in.logprob": _matrix, "in.ref_logprob": _matrix, "out.kld": _matrix,
                   "out.grad_logprob": _matrix},
          extra=_kl_extra, handled=True),
    Entry(CORE, "compute_value_loss", f"{CORE}.compute_value_loss", "value_loss", "value_loss",
          tensors=(("vpreds", "vpreds"), ("returns", "returns"), ("values", "values"),
                   ("response_mask", "response_mask")), masks=("response_mask",),
          scalars=("cliprange_value", "loss_agg_mode"), config=_agg_params,
          outputs=lambda r: [("vf_loss", r[0]), ("vf_clipfrac", r[1])],
          grads=(Grad("vpreds", "grad_vpreds", _first, "d vf_loss / d vpreds"),)),
    Entry(CORE, "compute_rewards", f"{CORE}.compute_rewards", "rewards:compute_rewards", "compute_rewards",
          tensors=(("token_level_scores", "token_level_scores"), ("old_log_prob", "old_log_prob"),
                   ("ref_log_prob", "ref_log_prob")), scalars=("kl_ratio",),
          outputs=lambda r: [("token_level_rewards", r)]),
    logits_entry("logprobs_from_logits", "logprob_dispatch", 1, 0),
    logits_entry("logprobs_from_logits_v2", "logprob_v2", 1, 0),
    logits_entry("logprobs_from_logits_naive", "logprob_naive", 1, 0),
    logits_entry("entropy_from_logits", "entropy", 0, 1),
    logits_entry("entropy_from_logits_with_chunking", "entropy_chunking", 0, 1),
]
ENTRIES += [advantage_entry(name) for name in ADVANTAGE_ESTIMATORS]

# apply_kl_penalty (ray_trainer) takes a DataProto and a KL controller: see hooks.apply_kl_penalty_case.
APPLY_KL_PENALTY = Entry(RAY_TRAINER, "apply_kl_penalty", f"{RAY_TRAINER}.apply_kl_penalty",
                         "rewards:apply_kl_penalty", "apply_kl_penalty", custom="apply_kl_penalty")
ENTRIES.append(APPLY_KL_PENALTY)


def by_module():
    """module name -> its entries."""
    out = {}
    for e in ENTRIES:
        out.setdefault(e.module, []).append(e)
    return out
