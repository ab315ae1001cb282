"""Stand-in for verl.trainer.ppo.ray_trainer's in-reward KL penalty (apply_kl_penalty), with a minimal DataProto."""

import torch

from verl.trainer.ppo import core_algos
from verl.utils import torch_functional as verl_F


class DataProto:
    """The part of verl's DataProto the penalty reads: a dict-like ``batch`` of tensors."""

    def __init__(self, batch):
        self.batch = batch


def apply_kl_penalty(data, kl_ctrl, kl_penalty="kl"):
    """token_level_rewards = token_level_scores - beta * kld; the controller then updates on the batch's KL."""
    mask = data.batch["response_mask"]
    kld = core_algos.kl_penalty(data.batch["old_log_probs"], data.batch["ref_log_prob"], kl_penalty) * mask
    beta = kl_ctrl.value
    data.batch["token_level_rewards"] = data.batch["token_level_scores"] - beta * kld
    current_kl = torch.mean(verl_F.masked_mean(kld, mask, axis=-1)).item()
    kl_ctrl.update(current_kl=current_kl, n_steps=mask.shape[0])
    return data, {"actor/reward_kl_penalty": current_kl, "actor/reward_kl_penalty_coeff": beta}
