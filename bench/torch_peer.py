#!/usr/bin/env python3
"""PyTorch CPU peer timings for the RLVec kernels (the numbers the JMH figures are compared with).

The formulas are re-expressed here from verl's definitions (logprobs/entropy from logits, PPO clip,
agg_loss token-mean, low_var_kl, GAE, GRPO, RLOO, masked_whiten); nothing is imported from verl.

  (i)  vocabulary pass, forward + backward: x = logits / T; log_p = log_softmax(x) at the label;
       H = logsumexp(x) - sum(softmax(x) * x); backward of sum(log_p * w1) + sum(H * w2) to the raw logits.
       Shapes (N, V) = (256, 32000) and (64, 151936); float32 and bfloat16; 1 and 2 threads. ns per logit.
  (ii) actor loss from log-probs, forward + backward: vanilla PPO clip (clip 0.2 / 0.28, dual clip 3),
       token-mean aggregation, plus 0.001 * token-mean low_var_kl. Shapes (B, T) = (64, 4096) and (8, 512);
       1 and 2 threads. ns per token.
  (iii) advantage estimators in verl's own loop formulations: GAE (a Python loop over T reversed on column
       slices, the values and TD error carried through masked tokens, then masked_whiten) at (B, T) = (64, 4096) and
       (4096, 1024); GRPO (a dict of per-uid score lists, torch.mean / torch.std per group, a Python loop over the
       rows) and RLOO (the same dict, the leave-one-out mean) at (4096, 1024) in groups of 8 shuffled through the
       batch; gamma 0.99, lam 0.95; 1 and 2 threads. ns per token. At most one warm-up call and three timed ones
       (a GAE call takes about a second); the loop GRPO and RLOO are first checked against verl's vectorized
       formulations (index_add_, bincount) on the same inputs.

Each configuration: warm-up calls, then timed repetitions; best and median reported. Run with Debian's
torch: /usr/bin/python3 bench/torch_peer.py [--json out.json] [--reps 5] [--warmup 2] [--system-malloc]
[--only vocab|actor|advantages]...

glibc gives blocks above its mmap threshold (at most 32 MiB) back to the kernel on free, so every iteration
would page-fault its 33-39 MB temporaries afresh (measured here: float32 vocab 28-56 ns/logit instead of
5-6, with seconds of system time). The script therefore re-executes itself once with MALLOC_MMAP_THRESHOLD_,
MALLOC_TRIM_THRESHOLD_ and MALLOC_TOP_PAD_ set, so freed memory is reused as in a long-running trainer;
--system-malloc keeps the process environment as it is.
"""
import argparse
import json
import os
import platform
import statistics
import sys
import time

import torch

TEMPERATURE = 0.7
CLIP_LOW, CLIP_HIGH, CLIP_C = 0.2, 0.28, 3.0
KL_COEF = 0.001


def time_it(fn, warmup, reps):
    for _ in range(warmup):
        fn()
    samples = []
    for _ in range(reps):
        t0 = time.perf_counter_ns()
        fn()
        samples.append(time.perf_counter_ns() - t0)
    return min(samples), statistics.median(samples)


def vocab_step(logits, labels, w1, w2):
    """Forward and backward of the vocabulary pass; returns nothing, leaves logits.grad."""
    logits.grad = None
    x = logits / TEMPERATURE
    lse = torch.logsumexp(x, dim=-1)
    log_p = x.gather(-1, labels.unsqueeze(-1)).squeeze(-1) - lse
    p = torch.softmax(x, dim=-1)
    entropy = lse - (p * x).sum(dim=-1)
    objective = (log_p.float() * w1).sum() + (entropy.float() * w2).sum()
    objective.backward()


def actor_step(log_prob, old_log_prob, ref_log_prob, advantages, mask):
    """Forward and backward of PPO clip + low_var_kl loss, token-mean; leaves log_prob.grad."""
    log_prob.grad = None
    tokens = mask.sum()
    neg_kl = torch.clamp(log_prob - old_log_prob, min=-20.0, max=20.0)
    ratio = torch.exp(neg_kl)
    loss1 = -advantages * ratio
    loss2 = -advantages * torch.clamp(ratio, 1.0 - CLIP_LOW, 1.0 + CLIP_HIGH)
    clipped = torch.maximum(loss1, loss2)
    dual = torch.minimum(-advantages * CLIP_C, clipped)
    per_token = torch.where(advantages < 0, dual, clipped)
    pg_loss = (per_token * mask).sum() / tokens
    kl = torch.clamp(ref_log_prob - log_prob, min=-20.0, max=20.0)
    kld = torch.clamp(torch.exp(kl) - kl - 1.0, min=-10.0, max=10.0)
    kl_loss = (kld * mask).sum() / tokens
    loss = pg_loss + KL_COEF * kl_loss
    loss.backward()


GAMMA, LAM = 0.99, 0.95


def masked_whiten(values, mask):
    """verl's masked_whiten: (x - mean) * rsqrt(var + 1e-8), the unbiased variance over the mask."""
    count = mask.sum()
    mean = (values * mask).sum() / (count + 1e-8)
    centered = values - mean
    var = (centered ** 2 * mask).sum() / (count + 1e-8) * (count / (count - 1))
    return centered * torch.rsqrt(var + 1e-8)


def gae_step(rewards, values, mask):
    """GAE as verl's loop computes it: one step per column, right to left; then masked_whiten."""
    with torch.no_grad():
        next_values = 0
        last = 0
        reversed_columns = []
        for t in reversed(range(rewards.shape[-1])):
            delta = rewards[:, t] + GAMMA * next_values - values[:, t]
            last_new = delta + GAMMA * LAM * last
            next_values = values[:, t] * mask[:, t] + (1 - mask[:, t]) * next_values
            last = last_new * mask[:, t] + (1 - mask[:, t]) * last
            reversed_columns.append(last)
        advantages = torch.stack(reversed_columns[::-1], dim=1)
        returns = advantages + values
        return masked_whiten(advantages, mask), returns


def group_scores(scores, index):
    groups = {}
    for i in range(scores.shape[0]):
        groups.setdefault(index[i], []).append(scores[i])
    return groups


def grpo_step(rewards, mask, index, eps=1e-6):
    """GRPO outcome advantages as verl's loop computes them: per-uid lists, torch.mean / torch.std per group."""
    scores = rewards.sum(dim=-1)
    with torch.no_grad():
        groups = group_scores(scores, index)
        mean, std = {}, {}
        for uid, members in groups.items():
            if len(members) == 1:
                mean[uid], std[uid] = torch.tensor(0.0), torch.tensor(1.0)
            else:
                stacked = torch.stack(members)
                mean[uid], std[uid] = torch.mean(stacked), torch.std(stacked)
        for i in range(scores.shape[0]):
            scores[i] = (scores[i] - mean[index[i]]) / (std[index[i]] + eps)
        return scores.unsqueeze(-1) * mask


def rloo_step(rewards, mask, index):
    """RLOO outcome advantages as verl's loop computes them: s n / (n - 1) - mean_g n / (n - 1) for n > 1."""
    scores = rewards.sum(dim=-1)
    with torch.no_grad():
        groups = group_scores(scores, index)
        mean = {uid: torch.tensor(0.0) if len(m) == 1 else torch.mean(torch.stack(m)) for uid, m in groups.items()}
        for i in range(scores.shape[0]):
            n = len(groups[index[i]])
            if n > 1:
                scores[i] = scores[i] * n / (n - 1) - mean[index[i]] * n / (n - 1)
        return scores.unsqueeze(-1) * mask


def check_group_estimators(rewards, mask, index):
    """The loop estimators against verl's vectorized ones (index_add_ / bincount), once per configuration."""
    scores = rewards.sum(dim=-1)
    g = torch.tensor(index)
    count = torch.zeros(int(g.max()) + 1).index_add_(0, g, torch.ones_like(scores))
    total = torch.zeros_like(count).index_add_(0, g, scores)
    mean = total / count.clamp_min(1.0)
    var = torch.zeros_like(count).index_add_(0, g, (scores - mean[g]) ** 2) / (count - 1.0).clamp_min(1.0)
    grpo = ((scores - mean[g]) / (var.sqrt()[g] + 1e-6)).unsqueeze(-1) * mask
    c = count[g]
    rloo = (((c * scores - total[g]) / (c - 1).clamp_min(1)) * (c > 1)).unsqueeze(-1) * mask
    for name, loop, vectorized in (("grpo", grpo_step(rewards, mask, index), grpo),
                                   ("rloo", rloo_step(rewards, mask, index), rloo)):
        if not torch.allclose(loop, vectorized, rtol=1e-5, atol=1e-5):
            raise SystemExit(f"{name}: the loop formulation disagrees with the vectorized one by "
                             f"{(loop - vectorized).abs().max().item()}")


def advantage_inputs(b, t, gen):
    """Ragged valid prefixes, N(0, 1) values, a 0/1 reward at each row's last valid token, uids in groups of 8
    shuffled through the batch (the layout of the JMH AdvantageBenchmark, drawn with torch's generator)."""
    valid = torch.randint(1, t + 1, (b,), generator=gen)
    mask = (torch.arange(t).unsqueeze(0) < valid.unsqueeze(1)).float()
    values = torch.randn(b, t, generator=gen)
    rewards = torch.zeros(b, t)
    rewards[torch.arange(b), valid - 1] = torch.randint(0, 2, (b,), generator=gen).float()
    index = (1000 + torch.arange(b) // 8)[torch.randperm(b, generator=gen)].tolist()
    return rewards, values, mask, index


def bench_advantage(estimator, b, t, threads, warmup, reps, gen):
    torch.set_num_threads(threads)
    rewards, values, mask, index = advantage_inputs(b, t, gen)
    if estimator != "gae":
        check_group_estimators(rewards, mask, index)
    step = {"gae": lambda: gae_step(rewards, values, mask),
            "grpo": lambda: grpo_step(rewards, mask, index),
            "rloo": lambda: rloo_step(rewards, mask, index)}[estimator]
    best, median = time_it(step, warmup, reps)
    return {"bench": "advantages_" + estimator, "B": b, "T": t, "dtype": "float32", "threads": threads,
            "best_ms": best / 1e6, "median_ms": median / 1e6,
            "ns_per_token_best": best / (b * t), "ns_per_token_median": median / (b * t)}


def bench_vocab(n, v, dtype, threads, warmup, reps, gen):
    torch.set_num_threads(threads)
    logits = (3.0 * torch.randn(n, v, generator=gen)).to(dtype).requires_grad_(True)
    labels = torch.randint(0, v, (n,), generator=gen)
    w1 = torch.randn(n, generator=gen)
    w2 = 0.01 * torch.randn(n, generator=gen)
    best, median = time_it(lambda: vocab_step(logits, labels, w1, w2), warmup, reps)
    return {"bench": "vocab_fwd_bwd", "N": n, "V": v, "dtype": str(dtype).replace("torch.", ""),
            "threads": threads, "best_ms": best / 1e6, "median_ms": median / 1e6,
            "ns_per_logit_best": best / (n * v), "ns_per_logit_median": median / (n * v)}


def bench_actor(b, t, threads, warmup, reps, gen):
    torch.set_num_threads(threads)
    log_prob = (-4.0 * torch.rand(b, t, generator=gen)).requires_grad_(True)
    old = log_prob.detach() + 0.2 * torch.randn(b, t, generator=gen)
    ref = log_prob.detach() + 0.3 * torch.randn(b, t, generator=gen)
    adv = torch.randn(b, t, generator=gen)
    mask = (torch.rand(b, t, generator=gen) > 0.1).float()
    best, median = time_it(lambda: actor_step(log_prob, old, ref, adv, mask), warmup, reps)
    return {"bench": "actor_lp_fwd_bwd", "B": b, "T": t, "dtype": "float32", "threads": threads,
            "best_ms": best / 1e6, "median_ms": median / 1e6,
            "ns_per_token_best": best / (b * t), "ns_per_token_median": median / (b * t)}


MALLOC_ENV = {"MALLOC_MMAP_THRESHOLD_": str(4 << 30), "MALLOC_TRIM_THRESHOLD_": str(16 << 30),
              "MALLOC_TOP_PAD_": str(256 << 20)}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--json", help="write the results to this JSON file")
    ap.add_argument("--reps", type=int, default=5, help="timed repetitions per configuration (default 5)")
    ap.add_argument("--warmup", type=int, default=2, help="untimed warm-up calls per configuration (default 2)")
    ap.add_argument("--seed", type=int, default=20240611)
    ap.add_argument("--only", action="append", choices=("vocab", "actor", "advantages"),
                    help="run only this section (repeatable; default all)")
    ap.add_argument("--system-malloc", action="store_true",
                    help="do not re-execute with the glibc malloc settings that keep large blocks for reuse")
    args = ap.parse_args()
    if not args.system_malloc and any(os.environ.get(k) != v for k, v in MALLOC_ENV.items()):
        os.execve(sys.executable, [sys.executable] + sys.argv, {**os.environ, **MALLOC_ENV})
    malloc = "system malloc settings" if args.system_malloc else "glibc large blocks kept for reuse"

    gen = torch.Generator().manual_seed(args.seed)
    t_start = time.perf_counter()
    header = (f"torch {torch.__version__} on {platform.machine()} ({platform.processor() or 'cpu'}), "
              f"python {platform.python_version()}, {torch.get_num_threads()} default threads, "
              f"warm-up {args.warmup}, reps {args.reps}, {malloc}")
    print(header)
    results = []
    sections = set(args.only or ("vocab", "actor", "advantages"))
    if "vocab" in sections:
        print(f"\n{'vocab fwd+bwd':<16}{'N':>6}{'V':>8}{'dtype':>10}{'thr':>5}{'best ms':>10}{'median ms':>11}"
              f"{'ns/logit best':>15}{'median':>9}")
        for n, v in ((256, 32000), (64, 151936)):
            for dtype in (torch.float32, torch.bfloat16):
                for threads in (1, 2):
                    r = bench_vocab(n, v, dtype, threads, args.warmup, args.reps, gen)
                    results.append(r)
                    print(f"{'':<16}{n:>6}{v:>8}{r['dtype']:>10}{threads:>5}{r['best_ms']:>10.2f}"
                          f"{r['median_ms']:>11.2f}{r['ns_per_logit_best']:>15.3f}{r['ns_per_logit_median']:>9.3f}",
                          flush=True)
    if "actor" in sections:
        print(f"\n{'actor lp fwd+bwd':<16}{'B':>6}{'T':>8}{'dtype':>10}{'thr':>5}{'best ms':>10}{'median ms':>11}"
              f"{'ns/token best':>15}{'median':>9}")
        for b, t in ((64, 4096), (8, 512)):
            for threads in (1, 2):
                r = bench_actor(b, t, threads, max(args.warmup, 5), max(args.reps, 20), gen)
                results.append(r)
                print(f"{'':<16}{b:>6}{t:>8}{r['dtype']:>10}{threads:>5}{r['best_ms']:>10.3f}{r['median_ms']:>11.3f}"
                      f"{r['ns_per_token_best']:>15.3f}{r['ns_per_token_median']:>9.3f}", flush=True)
    if "advantages" in sections:
        print(f"\n{'advantages':<16}{'B':>6}{'T':>8}{'estimator':>10}{'thr':>5}{'best ms':>10}{'median ms':>11}"
              f"{'ns/token best':>15}{'median':>9}")
        for estimator, b, t in (("gae", 64, 4096), ("gae", 4096, 1024), ("grpo", 4096, 1024), ("rloo", 4096, 1024)):
            for threads in (1, 2):
                r = bench_advantage(estimator, b, t, threads, min(args.warmup, 1), max(1, min(args.reps, 3)), gen)
                results.append(r)
                print(f"{'':<16}{b:>6}{t:>8}{estimator:>10}{threads:>5}{r['best_ms']:>10.2f}{r['median_ms']:>11.2f}"
                      f"{r['ns_per_token_best']:>15.3f}{r['ns_per_token_median']:>9.3f}", flush=True)
    elapsed = time.perf_counter() - t_start
    print(f"\ntotal {elapsed:.1f} s")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"torch_version": torch.__version__, "python": platform.python_version(), "malloc": malloc,
                       "machine": platform.machine(), "temperature": TEMPERATURE, "seed": args.seed,
                       "warmup": args.warmup, "reps": args.reps, "elapsed_s": elapsed, "results": results},
                      f, indent=2)
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
