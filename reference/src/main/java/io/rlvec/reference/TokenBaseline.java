package io.rlvec.reference;

import io.rlvec.AdvantageEstimator;
import io.rlvec.AdvantageSpec;
import io.rlvec.Column;
import io.rlvec.OffHeapArray;
import io.rlvec.TokenBatch;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.ByteOrder;
import java.util.Arrays;

/**
 * verl's optimal-token baselines ({@code compute_optimal_token_baseline_advantage} and its multi-turn twin
 * {@code compute_multi_turn_optimal_token_baseline_advantage}), shared by both engines:
 * <pre>
 *   G_t  = reverse-cumsum(r * m)                                 (the returns)
 *   w_t  = (1 - 2 * exp(old_log_prob_t) + sum_pi_squared_t) [* rollout_is_weights_t^2]
 *   W_t  = cumsum(w * m)
 *   B_p  = sum_group(G * W * m)_p / (sum_group(W * m)_p + eps)   per group and position p
 *   adv  = (G - B) * m ; a singleton group has B = 0
 * </pre>
 * Positions p are a sequence's token offsets (optimal_token_baseline) or its valid-token index
 * (tir_optimal_token_baseline, which compacts each trajectory to its valid tokens; empty trajectories are left
 * out of the groups). With {@code handle_zero_tail}, a group whose longest trajectory is unique gets baseline 0
 * on that trajectory from the second-longest length on. Cumulative sums accumulate in double and round per
 * element (as PyTorch's CPU cumsum does); the group sums in double.
 *
 * <p>This estimator's per-position group reduction is a scatter by group and position; both engines run this
 * one scalar implementation (the other estimators have Vector API token passes).
 */
final class TokenBaseline {
    private static final ValueLayout.OfFloat F32 = ValueLayout.JAVA_FLOAT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);

    private TokenBaseline() {
    }

    static void compute(final AdvantageSpec spec, final Advantages.Scratch s, final TokenBatch batch,
                        final int groups, final OffHeapArray advantages, final OffHeapArray returns) {
        final boolean tir = spec.estimator() == AdvantageEstimator.TIR_OPTIMAL_TOKEN_BASELINE;
        final int b = batch.numSequences();
        final MemorySegment r = batch.column(Column.TOKEN_LEVEL_REWARDS).segment();
        final MemorySegment lp = batch.column(Column.OLD_LOG_PROB).segment();
        final MemorySegment spi = batch.column(Column.SUM_PI_SQUARED).segment();
        final OffHeapArray isw = batch.column(Column.ROLLOUT_IS_WEIGHTS);
        final MemorySegment w = isw == null ? null : isw.segment();
        final MemorySegment m = batch.mask().segment();
        int width = 0;
        for (int i = 0; i < b; i++) {
            width = Math.max(width, batch.offset(i + 1) - batch.offset(i));
        }
        s.ensureTokens(batch.numTokens(), Math.multiplyExact(Math.max(groups, 1), Math.max(width, 1)));
        final float[] g = s.tokenG;
        final float[] cw = s.tokenW;
        // Per sequence: G (reverse cumsum), W (cumsum), the valid length.
        for (int i = 0; i < b; i++) {
            final int start = batch.offset(i);
            final int end = batch.offset(i + 1);
            double acc = 0;
            for (int t = end - 1; t >= start; t--) {
                acc += r.getAtIndex(F32, t) * m.getAtIndex(F32, t);
                g[t] = (float) acc;
            }
            acc = 0;
            int valid = 0;
            for (int t = start; t < end; t++) {
                final float mt = m.getAtIndex(F32, t);
                float wt = 1f - 2f * (float) Math.exp(lp.getAtIndex(F32, t)) + spi.getAtIndex(F32, t);
                if (w != null) {
                    final float iw = w.getAtIndex(F32, t);
                    wt *= iw * iw;
                }
                acc += wt * mt;
                cw[t] = (float) acc;
                valid += mt != 0 ? 1 : 0;
            }
            s.valid[i] = valid;
        }
        // Group sizes (tir leaves empty trajectories out of the groups).
        final int[] n = s.count;
        Arrays.fill(n, 0, groups, 0);
        for (int i = 0; i < b; i++) {
            if (!tir || s.valid[i] > 0) {
                n[s.dense[i]]++;
            }
        }
        final double[] num = s.num;
        final double[] den = s.den;
        Arrays.fill(num, 0, groups * width, 0.0);
        Arrays.fill(den, 0, groups * width, 0.0);
        for (int i = 0; i < b; i++) {
            final int q = s.dense[i];
            if (n[q] < 2 || (tir && s.valid[i] == 0)) {
                continue;
            }
            final int start = batch.offset(i);
            int p = 0;
            for (int t = start; t < batch.offset(i + 1); t++) {
                final float mt = m.getAtIndex(F32, t);
                if (tir) {
                    if (mt == 0) {
                        continue;
                    }
                    num[q * width + p] += (double) g[t] * cw[t];
                    den[q * width + p] += cw[t];
                    p++;
                } else {
                    num[q * width + t - start] += (double) g[t] * cw[t] * mt;
                    den[q * width + t - start] += (double) cw[t] * mt;
                }
            }
        }
        final double eps = spec.epsilon();
        final boolean zeroTail = spec.handleZeroTail();
        final MemorySegment adv = advantages.segment();
        final MemorySegment ret = returns.segment();
        for (int i = 0; i < b; i++) {
            final int q = s.dense[i];
            final int start = batch.offset(i);
            final int cut = zeroTail && n[q] >= 2 ? zeroTailFrom(s, batch, i, tir) : Integer.MAX_VALUE;
            int p = 0;
            for (int t = start; t < batch.offset(i + 1); t++) {
                final float mt = m.getAtIndex(F32, t);
                final int pos = tir ? p : t - start;
                float base = 0f;
                final boolean member = n[q] >= 2 && (!tir || s.valid[i] > 0);
                if (member && (!tir || mt != 0) && pos < cut) {
                    base = (float) (num[q * width + pos] / (den[q * width + pos] + eps));
                }
                final float a = tir && mt == 0 ? 0f : g[t] - base;
                adv.setAtIndex(F32, t, a * mt);
                ret.setAtIndex(F32, t, g[t]);
                if (tir && mt != 0) {
                    p++;
                }
            }
        }
    }

    /**
     * @return the position from which trajectory {@code i}'s baseline is 0 (the group's second-longest valid
     *         length) when {@code i} is its group's unique longest trajectory, else MAX_VALUE.
     */
    private static int zeroTailFrom(final Advantages.Scratch s, final TokenBatch batch, final int i,
                                    final boolean tir) {
        final int q = s.dense[i];
        int max = -1;
        int second = -1;
        int maxCount = 0;
        for (int j = 0; j < batch.numSequences(); j++) {
            if (s.dense[j] != q || (tir && s.valid[j] == 0)) {
                continue;
            }
            final int len = s.valid[j];
            if (len > max) {
                second = max;
                max = len;
                maxCount = 1;
            } else if (len == max) {
                maxCount++;
                second = Math.max(second, len);
            } else {
                second = Math.max(second, len);
            }
        }
        return maxCount == 1 && s.valid[i] == max && max > second ? second : Integer.MAX_VALUE;
    }
}
