"""Stand-in for verl.trainer.ppo.core_algos: aggregation, the vanilla policy loss (in the policy-loss registry),
the KL estimators, the value loss and the GRPO advantage, with verl's signatures.

FAKE_VERL_BUG (read at each call) makes one function wrong on purpose:
  clip_bound  the vanilla loss clips the ratio at 1 + clip_ratio_low instead of 1 + clip_ratio_high;
  grad_sign   kl_penalty's value is right but its gradient has the wrong sign;
  agg_drop    agg_loss leaves out each sequence's last valid token.
"""

import os

import torch

from verl.utils import torch_functional as verl_F

POLICY_LOSS_REGISTRY = {}


def _bug():
    return os.environ.get("FAKE_VERL_BUG", "")


def register_policy_loss(name):
    def decorate(fn):
        POLICY_LOSS_REGISTRY[name] = fn
        return fn

    return decorate


def get_policy_loss_fn(name):
    if name not in POLICY_LOSS_REGISTRY:
        raise ValueError(f"Unsupported loss mode: {name}")
    return POLICY_LOSS_REGISTRY[name]


def agg_loss(loss_mat, loss_mask, loss_agg_mode, dp_size=1, batch_num_tokens=None, global_batch_size=None,
             loss_scale_factor=None):
    """Aggregates a (B, T) loss matrix over the valid tokens."""
    mask = loss_mask
    if _bug() == "agg_drop":
        lengths = loss_mask.sum(-1).long()
        mask = loss_mask.clone()
        for b, n in enumerate(lengths.tolist()):
            if n > 0:
                mask[b, n - 1] = 0
    if loss_agg_mode == "token-mean":
        if batch_num_tokens is None:
            if dp_size > 1:
                raise ValueError("token-mean with dp_size > 1 needs batch_num_tokens")
            batch_num_tokens = mask.sum()
        return verl_F.masked_sum(loss_mat, mask) / batch_num_tokens * dp_size
    if loss_agg_mode in ("seq-mean-token-sum", "seq-mean-token-sum-norm", "seq-mean-token-mean"):
        if loss_agg_mode == "seq-mean-token-mean":
            seq = (loss_mat * mask).sum(-1) / (mask.sum(-1) + 1e-8)
        else:
            seq = (loss_mat * mask).sum(-1)
        seq_mask = (mask.sum(-1) > 0).to(seq.dtype)
        if global_batch_size is None:
            if dp_size > 1:
                raise ValueError("seq-mean modes with dp_size > 1 need global_batch_size")
            global_batch_size = seq_mask.sum()
        out = verl_F.masked_sum(seq, seq_mask) / global_batch_size * dp_size
        if loss_agg_mode == "seq-mean-token-sum-norm":
            out = out / (loss_scale_factor if loss_scale_factor is not None else loss_mask.shape[-1])
        return out
    raise ValueError(f"Invalid loss_agg_mode: {loss_agg_mode}")


def _cfg(config, key, default=None):
    v = config.get(key, default) if hasattr(config, "get") else getattr(config, key, default)
    return default if v is None else v


@register_policy_loss("vanilla")
def compute_policy_loss_vanilla(old_log_prob, log_prob, advantages, response_mask, loss_agg_mode="token-mean",
                                config=None, rollout_is_weights=None):
    """PPO's clipped surrogate with dual clip; returns (pg_loss, metrics)."""
    assert config is not None
    clip_ratio = _cfg(config, "clip_ratio")
    low = _cfg(config, "clip_ratio_low", clip_ratio)
    high = _cfg(config, "clip_ratio_high", clip_ratio)
    clip_c = _cfg(config, "clip_ratio_c", 3.0)
    assert clip_c > 1.0
    if _bug() == "clip_bound":
        high = low
    log_ratio = torch.clamp(log_prob - old_log_prob, min=-20.0, max=20.0)
    ratio = torch.exp(log_ratio)
    ppo_kl = verl_F.masked_mean(-log_ratio, response_mask)
    pg1 = -advantages * ratio
    pg2 = -advantages * torch.clamp(ratio, 1 - low, 1 + high)
    clip1 = torch.maximum(pg1, pg2)
    clipfrac = verl_F.masked_mean(torch.gt(pg2, pg1).float(), response_mask)
    pg3 = -advantages * clip_c
    clip2 = torch.min(pg3, clip1)
    clipfrac_lower = verl_F.masked_mean(torch.gt(clip1, pg3) * (advantages < 0).float(), response_mask)
    pg_losses = torch.where(advantages < 0, clip2, clip1)
    if rollout_is_weights is not None:
        pg_losses = pg_losses * rollout_is_weights
    pg_loss = agg_loss(pg_losses, response_mask, loss_agg_mode, **(_cfg(config, "global_batch_info", {}) or {}))
    metrics = {"actor/pg_clipfrac": clipfrac.item(), "actor/ppo_kl": ppo_kl.item(),
               "actor/pg_clipfrac_lower": clipfrac_lower.item()}
    return pg_loss, metrics


def kl_penalty_forward(logprob, ref_logprob, kl_penalty):
    d = logprob - ref_logprob
    if kl_penalty in ("kl", "k1"):
        return d
    if kl_penalty == "abs":
        return d.abs()
    if kl_penalty in ("mse", "k2"):
        return 0.5 * d.square()
    if kl_penalty in ("low_var_kl", "k3"):
        kl = torch.clamp(ref_logprob - logprob, min=-20, max=20)
        return torch.clamp(torch.exp(kl) - kl - 1, min=-10, max=10)
    raise NotImplementedError(f"kl_penalty {kl_penalty} is not implemented")


def kl_penalty(logprob, ref_logprob, kl_penalty):
    """Per-token KL estimate; a trailing '+' keeps the value and takes k2's gradient (straight-through)."""
    base = kl_penalty[:-1] if kl_penalty.endswith("+") else kl_penalty
    forward = kl_penalty_forward(logprob, ref_logprob, base)
    if _bug() == "grad_sign":
        forward = 2 * forward.detach() - forward
    if not kl_penalty.endswith("+") or kl_penalty in ("mse", "k2"):
        return forward
    backward = 0.5 * (logprob - ref_logprob).square()
    return backward - backward.detach() + forward.detach()


def compute_value_loss(vpreds, returns, values, response_mask, cliprange_value, loss_agg_mode="token-mean"):
    """Clipped value loss; returns (vf_loss, vf_clipfrac)."""
    vclip = torch.max(torch.min(vpreds, values + cliprange_value), values - cliprange_value)
    l1 = (vpreds - returns) ** 2
    l2 = (vclip - returns) ** 2
    vf_loss = 0.5 * agg_loss(torch.max(l1, l2), response_mask, loss_agg_mode)
    vf_clipfrac = verl_F.masked_mean(torch.gt(l2, l1).float(), response_mask)
    return vf_loss, vf_clipfrac


def compute_grpo_outcome_advantage(token_level_rewards, response_mask, index, epsilon=1e-6,
                                   norm_adv_by_std_in_grpo=True, config=None):
    """Group-normalised outcome advantage over the rows sharing an index."""
    scores = token_level_rewards.sum(dim=-1)
    out = torch.zeros_like(scores)
    groups = {}
    for i, uid in enumerate(list(index)):
        groups.setdefault(uid, []).append(i)
    with torch.no_grad():
        for rows in groups.values():
            s = scores[rows]
            if len(rows) == 1:
                mean, std = torch.tensor(0.0), torch.tensor(1.0)
            else:
                mean, std = s.mean(), s.std()
            out[rows] = (s - mean) / (std + epsilon) if norm_adv_by_std_in_grpo else s - mean
    adv = out.unsqueeze(-1) * response_mask
    return adv, adv


class AdaptiveKLController:
    """value *= 1 + clip(current / target - 1, -0.2, 0.2) * n_steps / horizon."""

    def __init__(self, init_kl_coef, target_kl, horizon):
        self.value = init_kl_coef
        self.target = target_kl
        self.horizon = horizon

    def update(self, current_kl, n_steps):
        err = min(max(current_kl / self.target - 1, -0.2), 0.2)
        self.value *= 1 + err * n_steps / self.horizon


class FixedKLController:
    def __init__(self, kl_coef):
        self.value = kl_coef

    def update(self, current_kl, n_steps):
        pass


def compute_rewards(token_level_scores, old_log_prob, ref_log_prob, kl_ratio):
    return token_level_scores - (old_log_prob - ref_log_prob) * kl_ratio
