package io.rlvec.jmh;

import java.util.SplittableRandom;

import io.rlvec.Column;
import io.rlvec.TokenBatch;

/**
 * Seeded, realistic benchmark inputs: what a GRPO step hands the loss, so that branch and blend patterns in the
 * kernels see the mix they see in training.
 *
 * <ul>
 *   <li>Advantages are constant per sequence, computed as GRPO does: groups of responses to one prompt, 0/1
 *       rewards, {@code (r - mean) / (std + 1e-6)} with the unbiased std. Each group's success rate is drawn
 *       uniformly, so some groups are all-correct or all-wrong and give advantages of exactly 0 (group 0 is
 *       forced to be so); the rest mix both signs (group 1 is forced to).</li>
 *   <li>{@code log_prob - old_log_prob} is N(0, 0.05): 5% of tokens have exactly equal log-probs (ratio == 1,
 *       the on-policy tie), 0.2% are large (|log-ratio| in [1, 30], so some exceed the [-20, 20] clamp).</li>
 *   <li>Padded batches mask a tail of each sequence, uniform in [0, 20%) of T (10% on average); masked slots
 *       hold log-probs like valid ones, advantage 0 (verl multiplies advantages by the mask), and one NaN in
 *       every 16th sequence, which a correct engine ignores. Packed batches have no padding: every slot is
 *       valid.</li>
 * </ul>
 */
public final class Inputs {
    /** Seed of every benchmark input (fixed, so every run measures the same data). */
    public static final long SEED = 0x5EED_2025_0001L;

    /** Responses per prompt in a GRPO group (verl's rollout.n), for batches of at least 16 sequences. */
    static final int GROUP_SIZE = 8;
    /** Standard deviation of the ordinary log-ratio. */
    static final double LOG_RATIO_STD = 0.05;
    /** Share of tokens whose log-prob equals the old one exactly. */
    static final double EXACT_TIE_SHARE = 0.05;
    /** Share of tokens with a large log-ratio. */
    static final double LARGE_SHARE = 0.002;
    /** Largest masked tail, as a share of T (uniform in [0, this), so 10% on average). */
    static final double MAX_TAIL_SHARE = 0.2;
    /** Every this many sequences one masked slot holds NaN. */
    static final int NAN_EVERY = 16;

    private Inputs() {
    }

    /**
     * The layout of a batch: sequence lengths and how many leading tokens of each are valid.
     *
     * @param shape  the shape it was drawn for.
     * @param length token slots per sequence.
     * @param valid  valid (unmasked) leading tokens per sequence.
     */
    public record Layout(Shape shape, int[] length, int[] valid) {
        /** @return the total number of token slots. */
        public int tokens() {
            return shape.tokens();
        }

        /** @return a batch builder with these sequence boundaries and this response mask. */
        TokenBatch.Builder builder() {
            final TokenBatch.Builder b = shape.packed() ? TokenBatch.packed(length)
                : TokenBatch.padded(shape.batch(), shape.width());
            final float[] mask = new float[tokens()];
            int start = 0;
            for (int s = 0; s < length.length; s++) {
                java.util.Arrays.fill(mask, start, start + valid[s], 1f);
                start += length[s];
            }
            return b.column(Column.RESPONSE_MASK, mask);
        }
    }

    /**
     * @param shape the batch shape.
     * @param rnd   the seeded generator.
     * @return sequence lengths and valid prefixes (see the class comment).
     */
    public static Layout layout(final Shape shape, final SplittableRandom rnd) {
        final int[] length = shape.lengths(rnd);
        final int[] valid = new int[length.length];
        for (int s = 0; s < length.length; s++) {
            if (shape.packed()) {
                valid[s] = length[s];
            } else {
                final int tail = (int) (length[s] * MAX_TAIL_SHARE * rnd.nextDouble());
                valid[s] = Math.max(1, length[s] - tail);
            }
        }
        return new Layout(shape, length, valid);
    }

    /**
     * The input of the PPO-clip policy loss: log_prob, old_log_prob, advantages and the response mask.
     *
     * @param shape the batch shape.
     * @param seed  the generator seed.
     * @return a batch owning its columns (close it).
     */
    public static TokenBatch policyBatch(final Shape shape, final long seed) {
        final SplittableRandom rnd = new SplittableRandom(seed);
        final Layout layout = layout(shape, rnd);
        final float[] seqAdvantage = grpoAdvantages(shape.batch(), rnd);
        final int n = layout.tokens();
        final float[] logProb = new float[n];
        final float[] oldLogProb = new float[n];
        final float[] advantages = new float[n];
        final float[] refLogProb = new float[n];
        int start = 0;
        for (int s = 0; s < shape.batch(); s++) {
            for (int t = 0; t < layout.length()[s]; t++) {
                final int i = start + t;
                // A sampled token's log-prob: mostly near 0, a tail of unlikely tokens.
                final float old = (float) (-1.5 * Math.abs(rnd.nextGaussian()));
                oldLogProb[i] = old;
                logProb[i] = old + logRatio(rnd);
                // The reference policy drifts a little further from the current one than the old policy does.
                refLogProb[i] = old + (float) (0.1 * rnd.nextGaussian());
                advantages[i] = t < layout.valid()[s] ? seqAdvantage[s] : 0f;
            }
            if (s % NAN_EVERY == 0 && layout.valid()[s] < layout.length()[s]) {
                logProb[start + layout.valid()[s]] = Float.NaN;
            }
            start += layout.length()[s];
        }
        return layout.builder()
            .column(Column.LOG_PROB, logProb)
            .column(Column.OLD_LOG_PROB, oldLogProb)
            .column(Column.ADVANTAGES, advantages)
            .column(Column.REF_LOG_PROB, refLogProb)
            .build();
    }

    /**
     * A per-token loss matrix for agg_loss: N(0, 0.1) on valid tokens (the scale of PPO-clip token losses with
     * normalised advantages), the same on masked ones, NaN at one masked slot of every 16th sequence.
     *
     * @param layout the batch layout.
     * @param rnd    the seeded generator.
     * @return one value per token slot.
     */
    public static float[] lossValues(final Layout layout, final SplittableRandom rnd) {
        final float[] v = new float[layout.tokens()];
        int start = 0;
        for (int s = 0; s < layout.length().length; s++) {
            for (int t = 0; t < layout.length()[s]; t++) {
                v[start + t] = (float) (0.1 * rnd.nextGaussian());
            }
            if (s % NAN_EVERY == 0 && layout.valid()[s] < layout.length()[s]) {
                v[start + layout.valid()[s]] = Float.NaN;
            }
            start += layout.length()[s];
        }
        return v;
    }

    /**
     * The critic's input for verl's value loss: {@code values} (the rollout's old values) N(0, 1), {@code returns}
     * the values plus N(0, 0.5) (GAE returns stay near the values), {@code vpreds} the old values plus N(0, 0.3)
     * (one critic update away), so that a cliprange_value of 0.5 clips a share of the tokens; NaN in one masked
     * vpred slot of every 16th sequence.
     *
     * @param shape the batch shape.
     * @param seed  the generator seed.
     * @return a batch owning its columns (close it).
     */
    public static TokenBatch valueBatch(final Shape shape, final long seed) {
        final SplittableRandom rnd = new SplittableRandom(seed);
        final Layout layout = layout(shape, rnd);
        final int n = layout.tokens();
        final float[] values = new float[n];
        final float[] returns = new float[n];
        final float[] vpreds = new float[n];
        for (int i = 0; i < n; i++) {
            values[i] = (float) rnd.nextGaussian();
            returns[i] = values[i] + (float) (0.5 * rnd.nextGaussian());
            vpreds[i] = values[i] + (float) (0.3 * rnd.nextGaussian());
        }
        int start = 0;
        for (int s = 0; s < layout.length().length; s++) {
            if (s % NAN_EVERY == 0 && layout.valid()[s] < layout.length()[s]) {
                vpreds[start + layout.valid()[s]] = Float.NaN;
            }
            start += layout.length()[s];
        }
        return layout.builder()
            .column(Column.VALUES, values)
            .column(Column.RETURNS, returns)
            .column(Column.VPREDS, vpreds)
            .build();
    }

    /** @return a mask-only batch (agg_loss needs just offsets and the mask) for {@code layout}. */
    public static TokenBatch maskBatch(final Layout layout) {
        return layout.builder().build();
    }

    private static float logRatio(final SplittableRandom rnd) {
        final double u = rnd.nextDouble();
        if (u < EXACT_TIE_SHARE) {
            return 0f;
        }
        if (u < EXACT_TIE_SHARE + LARGE_SHARE) {
            final double magnitude = 1.0 + 29.0 * rnd.nextDouble();
            return (float) (rnd.nextBoolean() ? magnitude : -magnitude);
        }
        return (float) (LOG_RATIO_STD * rnd.nextGaussian());
    }

    /**
     * GRPO outcome advantages, one per sequence: consecutive groups of {@link #GROUP_SIZE} (or B/2 for small
     * batches), 0/1 rewards, {@code (r - mean) / (std + 1e-6)} in float32 with the unbiased std; a group of one
     * uses mean 0 and std 1 as verl does.
     */
    static float[] grpoAdvantages(final int batch, final SplittableRandom rnd) {
        final int group = batch >= 2 * GROUP_SIZE ? GROUP_SIZE : Math.max(1, batch / 2);
        final float[] adv = new float[batch];
        for (int g0 = 0, g = 0; g0 < batch; g0 += group, g++) {
            final int g1 = Math.min(batch, g0 + group);
            final double successRate = rnd.nextDouble();
            final float[] reward = new float[g1 - g0];
            for (int i = 0; i < reward.length; i++) {
                if (g == 0) {
                    reward[i] = 1f;
                } else if (g == 1) {
                    reward[i] = i % 2 == 0 ? 1f : 0f;
                } else {
                    reward[i] = rnd.nextDouble() < successRate ? 1f : 0f;
                }
            }
            float mean = 0f;
            float std = 1f;
            if (reward.length > 1) {
                double sum = 0;
                for (final float r : reward) {
                    sum += r;
                }
                mean = (float) (sum / reward.length);
                double sq = 0;
                for (final float r : reward) {
                    sq += (r - mean) * (double) (r - mean);
                }
                std = (float) Math.sqrt(sq / (reward.length - 1));
            }
            for (int i = 0; i < reward.length; i++) {
                adv[g0 + i] = (reward[i] - mean) / (std + 1e-6f);
            }
        }
        return adv;
    }
}
