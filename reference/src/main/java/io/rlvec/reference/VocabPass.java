package io.rlvec.reference;

import static io.rlvec.CanonicalMath.EXP_LO;

import io.rlvec.CanonicalMath;
import io.rlvec.Logits;
import io.rlvec.OffHeapArray;

/**
 * The vocabulary pass, scalar: verl's {@code logits.div_(temperature)}, {@code logprobs_from_logits_v2} and
 * {@code entropy_from_logits} per token row, and their gradient w.r.t. the raw logits. The formulas, the canonical
 * summation order and the gradient are written out on {@link io.rlvec.Engine#logProbs} and
 * {@link io.rlvec.Engine#logProbsBackward}; this class is their literal transcription, one element at a time.
 *
 * <p>Per row: a max pass, then one pass computing {@code e_j = exp(z_j - m)} and the double sums
 * {@code S = sum e_j}, {@code W = sum e_j (z_j - m)}, then (backward only) a gradient pass that evaluates the exp
 * again. The row normaliser {@code log S} is {@link StrictMath#log} in double, once per row.
 */
public final class VocabPass {
    /** Lanes of the canonical summation order (see {@link io.rlvec.Engine#logProbs}). */
    public static final int LANES = 8;

    private VocabPass() {
    }

    /** Forward: see {@link io.rlvec.Engine#logProbs}. Arguments are validated by the caller. */
    static void forward(final Logits logits, final OffHeapArray labels, final double temperature,
                        final OffHeapArray rowMask, final OffHeapArray logProbOut, final OffHeapArray entropyOut) {
        final float t = (float) temperature;
        final RowStats st = new RowStats();
        for (int r = 0; r < logits.rows(); r++) {
            if (rowMask != null && rowMask.getFloat(r) == 0f) {
                logProbOut.setFloat(r, 0f);
                if (entropyOut != null) {
                    entropyOut.setFloat(r, 0f);
                }
                continue;
            }
            rowStats(logits, r, t, st);
            final double logS = StrictMath.log(st.s);
            final float zy = logit(logits, r, labels.getInt(r)) / t;
            logProbOut.setFloat(r, (float) (((double) zy - st.m) - logS));
            if (entropyOut != null) {
                entropyOut.setFloat(r, (float) (logS - st.w / st.s));
            }
        }
    }

    /** Backward: see {@link io.rlvec.Engine#logProbsBackward}. Arguments are validated by the caller. */
    static void backward(final Logits logits, final OffHeapArray labels, final double temperature,
                         final OffHeapArray rowMask, final OffHeapArray gradLogProb, final OffHeapArray gradEntropy,
                         final OffHeapArray gradLogits) {
        final float t = (float) temperature;
        final RowStats st = new RowStats();
        final int v = logits.vocab();
        for (int r = 0; r < logits.rows(); r++) {
            final long base = r * logits.rowStride();
            if (rowMask != null && rowMask.getFloat(r) == 0f) {
                for (int j = 0; j < v; j++) {
                    gradLogits.setFloat(base + j, 0f);
                }
                continue;
            }
            rowStats(logits, r, t, st);
            final float rS = (float) (1.0 / st.s);
            final float mu = (float) (st.w / st.s);
            final float gl = gradLogProb.getFloat(r) / t;
            final float ge = gradEntropy == null ? 0f : gradEntropy.getFloat(r) / t;
            final int y = labels.getInt(r);
            // Reads x_j before writing g_j at the same index, so the logits may be the gradient buffer itself.
            for (int j = 0; j < v; j++) {
                final float d = logit(logits, r, j) / t - st.m;
                final float e = CanonicalMath.exp(d);
                final float k = ge == 0f ? -gl : Math.fma(-ge, clamp(d) - mu, -gl);
                final float p = e * rS;
                gradLogits.setFloat(base + j, j == y ? Math.fma(p, k, gl) : p * k);
            }
        }
    }

    /** Max, S and W of one row (the canonical order; see {@link io.rlvec.Engine#logProbs}). */
    private static void rowStats(final Logits logits, final int r, final float t, final RowStats st) {
        final int v = logits.vocab();
        float mx = Float.NEGATIVE_INFINITY;
        for (int j = 0; j < v; j++) {
            final float x = logit(logits, r, j);
            if (x > mx) {
                mx = x;
            }
        }
        // Division is monotone, so max(x) / t = max(x / t); + 0f turns a -0 maximum into +0 whatever its lane.
        final float m = mx / t + 0f;
        final double[] sl = st.sLanes;
        final double[] wl = st.wLanes;
        java.util.Arrays.fill(sl, 0.0);
        java.util.Arrays.fill(wl, 0.0);
        final int v8 = v - v % LANES;
        for (int j = 0; j < v8; j++) {
            final float d = logit(logits, r, j) / t - m;
            final float e = CanonicalMath.exp(d);
            sl[j % LANES] += e;
            wl[j % LANES] += e * clamp(d);
        }
        double s = ((sl[0] + sl[4]) + (sl[1] + sl[5])) + ((sl[2] + sl[6]) + (sl[3] + sl[7]));
        double w = ((wl[0] + wl[4]) + (wl[1] + wl[5])) + ((wl[2] + wl[6]) + (wl[3] + wl[7]));
        for (int j = v8; j < v; j++) {
            final float d = logit(logits, r, j) / t - m;
            final float e = CanonicalMath.exp(d);
            s += e;
            w += e * clamp(d);
        }
        st.m = m;
        st.s = s;
        st.w = w;
    }

    /** {@code d} clamped below at EXP_LO, where exp is already 0: keeps {@code e * c} and {@code c - mu} finite. */
    private static float clamp(final float d) {
        return d < EXP_LO ? EXP_LO : d;
    }

    private static float logit(final Logits logits, final int r, final int j) {
        return logits.data().getFloat(r * logits.rowStride() + j);
    }

    /** Row statistics: shift m and the double sums S, W (plus the lane scratch of the canonical order). */
    private static final class RowStats {
        final double[] sLanes = new double[LANES];
        final double[] wLanes = new double[LANES];
        float m;
        double s;
        double w;
    }
}
