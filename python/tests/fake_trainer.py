"""A small actor-update step that calls verl's functions the way a trainer does, with the dump module installed.

    PYTHONPATH=python:python/tests/fake_verl /usr/bin/python3 python/tests/fake_trainer.py OUT_DIR

Runs, for three aggregation modes and five KL estimators: temperature-scaled logits -> log-probs and entropy
(torch_functional) -> vanilla policy loss through the policy-loss registry -> entropy and KL terms through
agg_loss and kl_penalty -> the actor's composition written by hand (dump_call) -> backward; per mode also a micro-batch aggregated over a larger mini-batch
(global_batch_info). Ragged masks (one row fully masked), one kl_penalty call verl refuses ("full": an
expect_error case). Checks that the trainer's gradients are the same bits with and without the dump
installed, then prints what was written. Exits non-zero when a check fails.
"""

import os
import sys

import torch


class ActorConfig(dict):
    """verl's actor config as the policy losses read it (``config.get(key)`` and attributes)."""

    def __getattr__(self, key):
        try:
            return self[key]
        except KeyError as e:
            raise AttributeError(key) from e


def batch(seed, b=4, t=12, v=64):
    g = torch.Generator().manual_seed(seed)
    lengths = torch.tensor([t, 7, 0, 3])[:b]
    mask = (torch.arange(t).unsqueeze(0) < lengths.unsqueeze(1)).float()
    # Logits of standard scale: no label gets a log-prob near 0, where float32 cancellation in torch's
    # gather - logsumexp moves it by more than parity's relative 1e-5 (a known false FAIL of the fixed tolerance).
    logits = torch.randn(b, t, v, generator=g)
    responses = torch.randint(0, v, (b, t), generator=g)
    old_log_prob = torch.log_softmax(logits + 0.3 * torch.randn(b, t, v, generator=g), -1) \
        .gather(-1, responses.unsqueeze(-1)).squeeze(-1)
    ref_log_prob = old_log_prob + 0.2 * torch.randn(b, t, generator=g)
    advantages = torch.randn(b, t, generator=g) * mask
    return dict(logits=logits, responses=responses, old_log_prob=old_log_prob, ref_log_prob=ref_log_prob,
                advantages=advantages, response_mask=mask)


def step(data, loss_agg_mode, kl_type, temperature=0.7, global_batch=False):
    """One micro-batch of the actor update; returns the gradient w.r.t. the model's logits and the loss.

    With ``global_batch``, the micro-batch is one of several: the aggregation divides by the mini-batch's token
    and sequence counts (verl's ``config.global_batch_info``, splatted into agg_loss)."""
    from verl.trainer.ppo import core_algos
    from verl.utils import torch_functional as verl_F

    cfg = ActorConfig(clip_ratio=0.2, clip_ratio_low=0.2, clip_ratio_high=0.28, clip_ratio_c=3.0, global_batch_info={})
    gbi = {}
    if global_batch:
        gbi = dict(dp_size=1, batch_num_tokens=int(data["response_mask"].sum()) + 17,
                   global_batch_size=data["response_mask"].shape[0] + 3)
        cfg["global_batch_info"] = gbi
    model_logits = data["logits"].clone().requires_grad_(True)
    logits = model_logits / temperature
    log_prob = verl_F.logprobs_from_logits(logits, data["responses"])
    entropy = verl_F.entropy_from_logits(logits)
    policy_loss_fn = core_algos.get_policy_loss_fn("vanilla")
    pg_loss, metrics = policy_loss_fn(data["old_log_prob"], log_prob, data["advantages"], data["response_mask"],
                                      loss_agg_mode, cfg)
    entropy_agg = core_algos.agg_loss(entropy, data["response_mask"], loss_agg_mode, **gbi)
    kld = core_algos.kl_penalty(log_prob, data["ref_log_prob"], kl_type)
    kl_loss = core_algos.agg_loss(kld, data["response_mask"], loss_agg_mode, **gbi)
    loss = pg_loss - 0.001 * entropy_agg + 0.001 * kl_loss
    if kl_type == "low_var_kl" and not global_batch:
        dump_actor_composition(data, cfg, log_prob, pg_loss, kl_loss, loss_agg_mode)
    loss.backward()
    return model_logits.grad, loss.detach(), metrics


def dump_actor_composition(data, cfg, log_prob, pg_loss, kl_loss, loss_agg_mode, kl_coef=0.001, scale=0.5):
    """The actor's composition is inline in verl, no single function: written by hand with dump_call, as
    (pg_loss + kl_coef * kl_loss) * micro-batch scale and its gradient w.r.t. the log-probs."""
    import rlvec_dump

    loss = (pg_loss + kl_coef * kl_loss) * scale
    (grad,) = torch.autograd.grad(loss, [log_prob], retain_graph=True)
    params = {k: cfg[k] for k in ("clip_ratio", "clip_ratio_low", "clip_ratio_high", "clip_ratio_c")}
    params.update(loss_agg_mode=loss_agg_mode, entropy_coeff=0.0, kl_loss_coef=kl_coef, kl_loss_type="low_var_kl",
                  loss_scale_factor=scale)
    rlvec_dump.dump_call("dp_actor composition: vanilla pg_loss + kl_loss(low_var_kl)*coef",
                         "actor_composite:log_prob",
                         inputs={"old_log_prob": data["old_log_prob"], "log_prob": log_prob,
                                 "ref_log_prob": data["ref_log_prob"], "advantages": data["advantages"],
                                 "response_mask": data["response_mask"]},
                         outputs={"pg_loss": pg_loss, "kl_loss": kl_loss, "loss": loss, "grad_log_prob": grad},
                         params=params, masks=("response_mask",), short="actor_log_prob")


def run_all(seed_base=0):
    grads = []
    for i, mode in enumerate(("token-mean", "seq-mean-token-sum", "seq-mean-token-mean")):
        for j, kl_type in enumerate(("kl", "abs", "mse", "low_var_kl", "k3+")):
            if (i + j) % 2 and kl_type != "k3+":
                continue  # a spread of (mode, estimator) pairs keeps the run small
            g, loss, _ = step(batch(seed_base + 10 * i + j), mode, kl_type)
            grads.append((g, loss))
        g, loss, _ = step(batch(seed_base + 10 * i + 7), mode, "low_var_kl", global_batch=True)
        grads.append((g, loss))
    return grads


def main():
    out = sys.argv[1]
    import rlvec_dump
    from verl.trainer.ppo import core_algos

    # The trainer's results without the dump, then with it: the same bits.
    before = run_all()
    dumper = rlvec_dump.install(out)
    after = run_all()
    for (g0, l0), (g1, l1) in zip(before, after):
        if not torch.equal(g0, g1) or not torch.equal(l0, l1):
            print("FAIL: the dump changed the trainer's loss or gradients", file=sys.stderr)
            return 1
    # A call verl refuses: the trainer sees verl's own exception, the dump records it as expect_error.
    data = batch(99)
    try:
        core_algos.kl_penalty(data["old_log_prob"], data["ref_log_prob"], "full")
        print("FAIL: kl_penalty('full') did not raise", file=sys.stderr)
        return 1
    except NotImplementedError:
        pass
    files = sorted(f for f in os.listdir(out) if f.endswith(".safetensors"))
    leftovers = [f for f in os.listdir(out) if f.endswith(".tmp")]
    print(f"fake trainer: {len(before)} steps; dump wrote {dumper._files} files, {dumper._bytes} bytes to {out}")
    if leftovers or len(files) != dumper._files:
        print(f"FAIL: {len(files)} files on disk, {dumper._files} counted, leftovers {leftovers}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
