package io.rlvec.cli.demo;

import java.util.SplittableRandom;

import io.rlvec.Column;
import io.rlvec.TokenBatch;

/**
 * A synthetic GRPO-shaped batch, fully determined by its seed: {@code prompts} groups of {@code responses}
 * responses with ragged lengths, one outcome reward per response, group-normalised advantages broadcast over each
 * response's tokens, and the log-probs of a current and an old policy, packed back to back (no padding).
 *
 * <ul>
 *   <li>Lengths: uniform in {@code [1, maxLen]} (mean about maxLen / 2).</li>
 *   <li>Rewards: each prompt gets a difficulty q ~ U(0, 1); a response is correct (reward 1) with probability q,
 *       else 0. Groups whose responses all agree get advantage 0, as in GRPO.</li>
 *   <li>Advantages: verl's {@code compute_grpo_outcome_advantage} with {@code norm_adv_by_std_in_grpo}:
 *       {@code (r - mean) / (std + 1e-6)} per group, std unbiased (torch.std), in float32; a group of one
 *       response has mean 0 and std 1 as in verl.</li>
 *   <li>log_prob: {@code log(u) * 0.4}, u ~ U(0, 1] (mean -0.4, mostly confident tokens).</li>
 *   <li>old_log_prob: {@code log_prob - d}, d ~ N(0, 0.03^2) (a nearly on-policy update), except for
 *       {@value #OUTLIER_RATE} of the tokens where |d| ~ U(1, 25) with a random sign: large log-ratios that
 *       trigger the clip, the dual clip and verl's [-20, 20] log-ratio clamp.</li>
 *   <li>response_mask: 1, except that {@value #TOOL_SPAN_RATE} of the responses hold one masked span (a tool
 *       observation inside a multi-turn response) of up to a quarter of their length.</li>
 * </ul>
 */
public final class GrpoBatch {
    /** Share of tokens whose log-ratio is large. */
    public static final double OUTLIER_RATE = 0.002;
    /** Share of responses holding a masked span. */
    public static final double TOOL_SPAN_RATE = 0.1;
    /** verl's GRPO epsilon. */
    public static final float GRPO_EPSILON = 1e-6f;

    private final int prompts;
    private final int responses;
    private final int[] lengths;
    private final float[] rewards;
    private final float[] logProb;
    private final float[] oldLogProb;
    private final float[] advantages;
    private final float[] mask;

    private GrpoBatch(final int prompts, final int responses, final int[] lengths, final float[] rewards,
                      final float[] logProb, final float[] oldLogProb, final float[] advantages, final float[] mask) {
        this.prompts = prompts;
        this.responses = responses;
        this.lengths = lengths;
        this.rewards = rewards;
        this.logProb = logProb;
        this.oldLogProb = oldLogProb;
        this.advantages = advantages;
        this.mask = mask;
    }

    /**
     * Generates a batch.
     *
     * @param prompts   groups (&gt;= 1).
     * @param responses responses per prompt (&gt;= 1).
     * @param maxLen    longest response (&gt;= 1).
     * @param seed      generator seed.
     * @return the batch (heap arrays; {@link #toTokenBatch()} copies them off heap).
     * @throws IllegalArgumentException for a non-positive size or more than 2^28 tokens at most.
     */
    public static GrpoBatch generate(final int prompts, final int responses, final int maxLen, final long seed) {
        if (prompts < 1 || responses < 1 || maxLen < 1) {
            throw new IllegalArgumentException("prompts, responses and max length must be >= 1, got " + prompts
                + ", " + responses + ", " + maxLen);
        }
        if ((long) prompts * responses * maxLen > (1L << 28)) {
            throw new IllegalArgumentException("prompts x responses x max length = "
                + (long) prompts * responses * maxLen + " exceeds the demo's 2^28-token limit");
        }
        final SplittableRandom rng = new SplittableRandom(seed);
        final int b = prompts * responses;
        final int[] lengths = new int[b];
        final float[] rewards = new float[b];
        final float[] seqAdvantage = new float[b];
        int total = 0;
        for (int p = 0; p < prompts; p++) {
            final double difficulty = rng.nextDouble();
            for (int r = 0; r < responses; r++) {
                final int s = p * responses + r;
                lengths[s] = 1 + rng.nextInt(maxLen);
                rewards[s] = rng.nextDouble() < difficulty ? 1f : 0f;
                total += lengths[s];
            }
            groupNormalise(rewards, seqAdvantage, p * responses, responses);
        }
        final float[] logProb = new float[total];
        final float[] oldLogProb = new float[total];
        final float[] advantages = new float[total];
        final float[] mask = new float[total];
        int t = 0;
        for (int s = 0; s < b; s++) {
            final int len = lengths[s];
            int spanStart = len;
            int spanEnd = len;
            if (len >= 4 && rng.nextDouble() < TOOL_SPAN_RATE) {
                final int span = 1 + rng.nextInt(len / 4);
                spanStart = rng.nextInt(len - span);
                spanEnd = spanStart + span;
            }
            for (int i = 0; i < len; i++, t++) {
                final float lp = (float) (Math.log(1.0 - rng.nextDouble()) * 0.4);
                final double d = rng.nextDouble() < OUTLIER_RATE
                    ? (rng.nextBoolean() ? 1 : -1) * (1.0 + 24.0 * rng.nextDouble())
                    : 0.03 * gaussian(rng);
                logProb[t] = lp;
                oldLogProb[t] = (float) (lp - d);
                advantages[t] = seqAdvantage[s];
                mask[t] = i >= spanStart && i < spanEnd ? 0f : 1f;
            }
        }
        return new GrpoBatch(prompts, responses, lengths, rewards, logProb, oldLogProb, advantages, mask);
    }

    private static void groupNormalise(final float[] rewards, final float[] out, final int from, final int n) {
        float mean = 0f;
        float std = 1f;
        if (n > 1) {
            double sum = 0;
            for (int i = 0; i < n; i++) {
                sum += rewards[from + i];
            }
            final double m = sum / n;
            double sq = 0;
            for (int i = 0; i < n; i++) {
                final double d = rewards[from + i] - m;
                sq += d * d;
            }
            mean = (float) m;
            std = (float) Math.sqrt(sq / (n - 1));
        }
        for (int i = 0; i < n; i++) {
            out[from + i] = (rewards[from + i] - mean) / (std + GRPO_EPSILON);
        }
    }

    /** Box-Muller: a standard normal from two uniforms (one value per call, enough here). */
    private static double gaussian(final SplittableRandom rng) {
        final double u1 = 1.0 - rng.nextDouble();
        final double u2 = rng.nextDouble();
        return Math.sqrt(-2.0 * Math.log(u1)) * Math.cos(2.0 * Math.PI * u2);
    }

    /** @return the packed batch with log_prob, old_log_prob, advantages and response_mask (close it). */
    public TokenBatch toTokenBatch() {
        return TokenBatch.packed(lengths)
            .column(Column.LOG_PROB, logProb)
            .column(Column.OLD_LOG_PROB, oldLogProb)
            .column(Column.ADVANTAGES, advantages)
            .column(Column.RESPONSE_MASK, mask)
            .build();
    }

    /** @return number of prompts (groups). */
    public int prompts() {
        return prompts;
    }

    /** @return responses per prompt. */
    public int responses() {
        return responses;
    }

    /** @return number of sequences (prompts x responses). */
    public int sequences() {
        return lengths.length;
    }

    /** @return number of tokens (all of them, masked or not). */
    public int tokens() {
        return logProb.length;
    }

    /** @return tokens where the mask is 1. */
    public long validTokens() {
        long n = 0;
        for (final float m : mask) {
            n += m != 0f ? 1 : 0;
        }
        return n;
    }

    /** @return the longest response. */
    public int longest() {
        int m = 0;
        for (final int l : lengths) {
            m = Math.max(m, l);
        }
        return m;
    }

    /** @return share of responses with reward 1. */
    public double correctShare() {
        double c = 0;
        for (final float r : rewards) {
            c += r;
        }
        return c / rewards.length;
    }

    /** @return groups of two or more responses whose rewards are all equal (their advantages are 0). */
    public int flatGroups() {
        if (responses < 2) {
            return 0;
        }
        int flat = 0;
        for (int p = 0; p < prompts; p++) {
            boolean same = true;
            for (int r = 1; r < responses; r++) {
                same &= rewards[p * responses + r] == rewards[p * responses];
            }
            flat += same ? 1 : 0;
        }
        return flat;
    }
}
