package io.rlvec.reference;

import java.util.Arrays;

import io.rlvec.CanonicalMath;
import io.rlvec.Column;
import io.rlvec.LossSpec;
import io.rlvec.OffHeapArray;
import io.rlvec.TokenBatch;

/**
 * The token selections of {@code clip_cov} and {@code kl_cov}: both rank valid tokens by the covariance
 * {@code (A - mean A) (log_prob - mean log_prob)}, the means over the batch's valid tokens. The means are
 * canonical double sums (four lanes per sequence, sequences in order) divided by the valid-token count and
 * rounded to float32; the covariance is then float32, as verl's.
 *
 * <p>kl_cov takes the top {@code max(1, int(N * kl_cov_ratio))} covariances; ties (and torch.topk's own order,
 * which is unspecified) are broken by token position, first first; a NaN covariance ranks highest, as in topk.
 * clip_cov takes, among the tokens with {@code clip_cov_lb < cov < clip_cov_ub} that PPO's clip does not already
 * hold, {@code max(int(N * clip_cov_ratio), 1)} tokens: all of them when they fit (then the result is verl's
 * exactly), else a subset drawn by a partial Fisher-Yates shuffle of the candidates in token order with
 * {@code java.util.SplittableRandom(clip_cov_seed)}'s numbers ({@link #draw}; verl draws it with an unseeded
 * torch.randperm).
 */
public final class Selection {
    private Selection() {
    }

    /** Reusable arrays of a selection (grown as needed), so that a hot engine allocates nothing. */
    public static final class Scratch {
        int[] candidates = new int[0];
        float[] cov = new float[0];
        long[] keys = new long[0];

        void ensure(final int n) {
            if (cov.length < n) {
                final int m = Math.max(n, cov.length * 2);
                candidates = new int[m];
                cov = new float[m];
                keys = new long[m];
            }
        }
    }

    /** {@link #select(LossSpec, TokenBatch, boolean[], Scratch)} with fresh scratch. */
    public static void select(final LossSpec spec, final TokenBatch batch, final boolean[] flags) {
        select(spec, batch, flags, new Scratch());
    }

    /**
     * Marks the selected tokens of the spec's mode in {@code flags} (indexed by token; cleared first).
     *
     * @param flags at least batch.numTokens() entries.
     */
    public static void select(final LossSpec spec, final TokenBatch batch, final boolean[] flags,
                              final Scratch scratch) {
        Arrays.fill(flags, 0, batch.numTokens(), false);
        final OffHeapArray lp = batch.column(Column.LOG_PROB);
        final OffHeapArray old = batch.column(Column.OLD_LOG_PROB);
        final OffHeapArray adv = batch.column(Column.ADVANTAGES);
        final OffHeapArray mask = batch.mask();
        final int n = batch.numTokens();
        int valid = 0;
        for (int t = 0; t < n; t++) {
            valid += mask.getFloat(t) != 0f ? 1 : 0;
        }
        if (valid == 0) {
            return;
        }
        final float meanA = (float) (maskedSum(batch, adv) / valid);
        final float meanLp = (float) (maskedSum(batch, lp) / valid);
        final boolean clip = spec.policyLossMode() == io.rlvec.PolicyLossMode.CLIP_COV;
        final float lower = (float) (1.0 - spec.clipRatioLow());
        final float upper = (float) (1.0 + spec.clipRatioHigh());
        final float lb = (float) spec.clipCovLb();
        final float ub = (float) spec.clipCovUb();
        scratch.ensure(n);
        final int[] candidates = scratch.candidates;
        final float[] cov = scratch.cov;
        int m = 0;
        for (int t = 0; t < n; t++) {
            if (mask.getFloat(t) == 0f) {
                continue;
            }
            final float a = adv.getFloat(t);
            final float l = lp.getFloat(t);
            cov[t] = (a - meanA) * (l - meanLp);
            if (clip) {
                final float ratio = CanonicalMath.exp(l - old.getFloat(t));
                final float pg1 = -a * ratio;
                final float pg2 = -a * TorchOps.clamp(ratio, lower, upper);
                if (!(pg2 > pg1) && cov[t] < ub && cov[t] > lb) {
                    candidates[m++] = t;
                }
            } else {
                candidates[m++] = t;
            }
        }
        if (clip) {
            final int count = Math.max((int) (spec.clipCovRatio() * valid), 1);
            if (m <= count) {
                for (int i = 0; i < m; i++) {
                    flags[candidates[i]] = true;
                }
                return;
            }
            draw(spec.clipCovSeed(), candidates, m, count, flags);
        } else {
            final int k = Math.max(1, (int) (valid * spec.klCovRatio()));
            // Largest covariance first (NaN highest, as topk and Float.compare), then token position: one sort
            // of (order-preserving covariance bits, negated; token) pairs packed in a long.
            final long[] keys = scratch.keys;
            for (int i = 0; i < m; i++) {
                final int bits = Float.floatToIntBits(cov[candidates[i]]);
                final int ordered = bits ^ ((bits >> 31) & 0x7fffffff);
                keys[i] = ((long) ~ordered << 32) | candidates[i];
            }
            Arrays.sort(keys, 0, m);
            for (int i = 0; i < Math.min(k, m); i++) {
                flags[(int) keys[i]] = true;
            }
        }
    }

    /**
     * clip_cov's draw of {@code count < m} of the {@code m} candidates (token positions in token order): a partial
     * Fisher-Yates shuffle with the numbers of {@code java.util.SplittableRandom(seed).nextInt(m - i)}; marks the
     * drawn tokens in {@code flags} and permutes {@code candidates}. Shared by every engine, so a seed picks the
     * same subset everywhere. The generator is spelled out ({@link #nextInt}) instead of instantiated: nothing is
     * allocated on the engines' hot path, and the subset does not depend on the JDK's implementation.
     */
    public static void draw(final long seed, final int[] candidates, final int m, final int count,
                            final boolean[] flags) {
        int step = 0;
        for (int i = 0; i < count; i++) {
            final long next = nextInt(seed, step, m - i);
            step = (int) (next >>> 32);
            final int j = i + (int) next;
            final int tmp = candidates[i];
            candidates[i] = candidates[j];
            candidates[j] = tmp;
            flags[candidates[i]] = true;
        }
    }

    /** SplitMix64's increment (the golden ratio), java.util.SplittableRandom's default gamma. */
    private static final long GOLDEN_GAMMA = 0x9e3779b97f4a7c15L;

    /**
     * java.util.SplittableRandom's {@code nextInt(bound)} after {@code step} numbers of the sequence of
     * {@code seed}: SplitMix64 (the k-th state is {@code seed + k * gamma}, its number the 32-bit mix of it); a
     * power-of-two bound keeps the low bits, any other rejects the over-represented top of the range and draws
     * again.
     *
     * @return the step after the ones used, in the high 32 bits; the number in [0, bound), in the low 32 bits.
     */
    static long nextInt(final long seed, final int step, final int bound) {
        int k = step + 1;
        int r = mix32(seed + k * GOLDEN_GAMMA);
        final int m = bound - 1;
        if ((bound & m) == 0) {
            r &= m;
        } else {
            int u = r >>> 1;
            while (u + m - (r = u % bound) < 0) {
                k++;
                u = mix32(seed + k * GOLDEN_GAMMA) >>> 1;
            }
        }
        return (long) k << 32 | r;
    }

    private static int mix32(final long seed) {
        long z = (seed ^ (seed >>> 33)) * 0x62a9d9ed799705f5L;
        return (int) (((z ^ (z >>> 28)) * 0xcb24d0a5c88c35b3L) >>> 32);
    }

    /** The canonical masked sum of a column: four double lanes per sequence, sequences in order. */
    static double maskedSum(final TokenBatch batch, final OffHeapArray x) {
        final OffHeapArray mask = batch.mask();
        double total = 0;
        for (int s = 0; s < batch.numSequences(); s++) {
            total += sequenceSum(batch, x, mask, s, null);
        }
        return total;
    }

    /**
     * The canonical sum over sequence s's valid tokens of x (or of {@code f(x)} when the token function is given
     * by the caller through {@code values}), four double lanes by position in the sequence.
     */
    public static double sequenceSum(final TokenBatch batch, final OffHeapArray x, final OffHeapArray mask, final int s,
                              final float[] values) {
        final int start = batch.offset(s);
        double l0 = 0;
        double l1 = 0;
        double l2 = 0;
        double l3 = 0;
        for (int t = start; t < batch.offset(s + 1); t++) {
            if (mask.getFloat(t) == 0f) {
                continue;
            }
            final double v = values != null ? values[t] : x.getFloat(t);
            switch ((t - start) & 3) {
                case 0 -> l0 += v;
                case 1 -> l1 += v;
                case 2 -> l2 += v;
                default -> l3 += v;
            }
        }
        return Advantages.combine(l0, l1, l2, l3);
    }
}
