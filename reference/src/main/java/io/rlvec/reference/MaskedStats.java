package io.rlvec.reference;

import io.rlvec.OffHeapArray;
import io.rlvec.TokenBatch;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.ByteOrder;

/**
 * verl's masked statistics ({@code verl/utils/torch_functional.py}) over a batch's tokens and response mask, in the
 * canonical order and double accumulation the advantage estimators use (they call the same kernels):
 * <pre>
 *   masked_sum(x, m)              sum of x where m (masked entries, NaN included, never read into the sum)
 *   masked_mean(x, m[, axis=-1])  masked_sum / (sum(m) + 1e-8), over the batch or per sequence
 *   masked_var(x, m, unbiased)    masked_mean((x - mean)^2) [* n / (n - 1)]; unbiased needs n &gt;= 2 (verl's errors)
 *   masked_whiten(x, m, shift)    (x - mean) * rsqrt(var_unbiased + 1e-8) [+ mean when not shift_mean]
 *   clip_by_value(x, lo, hi)      max(min(x, hi), lo), elementwise (NaN propagates)
 * </pre>
 * Results are double, or float32 arrays for the elementwise ones.
 */
public final class MaskedStats {
    private static final ValueLayout.OfFloat F32 = ValueLayout.JAVA_FLOAT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);
    private static final Advantages.Kernels K = Advantages.SCALAR;

    private MaskedStats() {
    }

    /** @return verl's masked_sum over the batch. */
    public static double sum(final TokenBatch batch, final OffHeapArray x) {
        return K.maskedSum(batch, x);
    }

    /** @return verl's masked_sum per sequence (axis=-1). */
    public static double[] rowSums(final TokenBatch batch, final OffHeapArray x) {
        final double[] out = new double[batch.numSequences()];
        K.maskedRowSums(batch, x, out);
        return out;
    }

    /** @return verl's masked_mean over the batch. */
    public static double mean(final TokenBatch batch, final OffHeapArray x) {
        return sum(batch, x) / (count(batch) + Advantages.MASK_EPS);
    }

    /** @return verl's masked_mean per sequence (axis=-1). */
    public static double[] rowMeans(final TokenBatch batch, final OffHeapArray x) {
        final double[] s = rowSums(batch, x);
        final double[] n = rowSums(batch, batch.mask());
        for (int i = 0; i < s.length; i++) {
            s[i] /= n[i] + Advantages.MASK_EPS;
        }
        return s;
    }

    /**
     * @return verl's masked_var.
     * @throws IllegalArgumentException when unbiased and the mask has fewer than two valid tokens (verl's errors).
     */
    public static double var(final TokenBatch batch, final OffHeapArray x, final boolean unbiased) {
        final double n = unbiased ? Advantages.requireWhitenable(K, batch) : count(batch);
        final double mean = sum(batch, x) / (n + Advantages.MASK_EPS);
        final double v = K.maskedSquares(batch, x, mean) / (n + Advantages.MASK_EPS);
        return unbiased ? v * (n / (n - 1)) : v;
    }

    /** verl's masked_whiten into {@code out} (every token, masked ones included, as verl does). */
    public static void whiten(final TokenBatch batch, final OffHeapArray x, final boolean shiftMean,
                              final OffHeapArray out) {
        final double n = Advantages.requireWhitenable(K, batch);
        Advantages.whiten(K, batch, x, n, false, out);
        if (!shiftMean) {
            final float mean = (float) (sum(batch, x) / (n + Advantages.MASK_EPS));
            final MemorySegment o = out.segment();
            for (int t = 0; t < batch.numTokens(); t++) {
                o.setAtIndex(F32, t, o.getAtIndex(F32, t) + mean);
            }
        }
    }

    /** verl's clip_by_value: max(min(x, hi), lo) per element, into {@code out}. */
    public static void clipByValue(final OffHeapArray x, final OffHeapArray lo, final OffHeapArray hi,
                                   final OffHeapArray out, final int n) {
        final MemorySegment xs = x.segment();
        final MemorySegment los = lo.segment();
        final MemorySegment his = hi.segment();
        final MemorySegment os = out.segment();
        for (int t = 0; t < n; t++) {
            final float v = xs.getAtIndex(F32, t);
            final float h = his.getAtIndex(F32, t);
            final float l = los.getAtIndex(F32, t);
            final float upper = Float.isNaN(v) || Float.isNaN(h) ? Float.NaN : Math.min(v, h);
            os.setAtIndex(F32, t, Float.isNaN(upper) || Float.isNaN(l) ? Float.NaN : Math.max(upper, l));
        }
    }

    private static double count(final TokenBatch batch) {
        return K.maskedSum(batch, batch.mask());
    }
}
