"""Stand-in for verl.utils.torch_functional: log-probs, entropy and masked reductions."""

import torch


def masked_sum(values, mask, axis=None):
    """Sum of the values where the mask is set (masked positions contribute 0 even when NaN)."""
    v = torch.where(mask.bool(), values, torch.zeros_like(values)) * mask
    return v.sum() if axis is None else v.sum(dim=axis)


def masked_mean(values, mask, axis=None):
    count = mask.sum() if axis is None else mask.sum(dim=axis)
    return masked_sum(values, mask, axis) / (count + 1e-8)


def logprobs_from_logits_naive(logits, labels):
    """log_softmax over the vocabulary, then the label's entry."""
    return torch.log_softmax(logits, dim=-1).gather(-1, labels.unsqueeze(-1)).squeeze(-1)


def logprobs_from_logits_v2(logits, labels):
    """fp32/fp64: the label's logit minus the row's logsumexp, one row block at a time; bf16: log_softmax."""
    if logits.dtype in (torch.float32, torch.float64):
        picked = logits.gather(-1, labels.unsqueeze(-1)).squeeze(-1)
        lse = torch.stack([torch.logsumexp(row, dim=-1) for row in logits])
        return picked - lse
    rows = [torch.log_softmax(r, dim=-1).gather(-1, l.unsqueeze(-1)).squeeze(-1) for r, l in zip(logits, labels)]
    return torch.stack(rows)


def logprobs_from_logits(logits, labels, inplace_backward=True):
    """On CPU (no flash-attn, no NPU) the public function dispatches to v2."""
    return logprobs_from_logits_v2(logits, labels)


def entropy_from_logits(logits):
    """logsumexp(l) - sum(softmax(l) * l) per row."""
    p = torch.softmax(logits, dim=-1)
    return torch.logsumexp(logits, dim=-1) - (p * logits).sum(dim=-1)
