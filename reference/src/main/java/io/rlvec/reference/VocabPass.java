package io.rlvec.reference;

import static io.rlvec.CanonicalMath.EXP_LO;

import io.rlvec.CanonicalMath;
import io.rlvec.Logits;
import io.rlvec.OffHeapArray;
import io.rlvec.SoftmaxStats;

/**
 * The vocabulary pass, scalar: verl's {@code logits.div_(temperature)}, {@code logprobs_from_logits_v2} and
 * {@code entropy_from_logits} per token row, and their gradient w.r.t. the raw logits. The formulas, the canonical
 * summation order and the gradient are written out on {@link io.rlvec.Engine#logProbs} and
 * {@link io.rlvec.Engine#logProbsBackward}; this class is their literal transcription, one element at a time.
 *
 * <p>Per row: a max pass, then one pass computing {@code e_j = exp(z_j - m)} and the double sums
 * {@code S = sum e_j}, {@code W = sum e_j (z_j - m)} (and, when the sum of squared probabilities is asked for,
 * {@code Q = sum e_j^2}, in the same order as S), then (backward only) a gradient pass that evaluates the exp
 * again. The row normaliser {@code log S} is {@link StrictMath#log} in double, once per row. With statistics saved
 * by the forward ({@link SoftmaxStats}), the backward reads {@code m}, {@code rS}, {@code mu} instead of the first
 * two passes.
 */
public final class VocabPass {
    /** Lanes of the canonical summation order (see {@link io.rlvec.Engine#logProbs}). */
    public static final int LANES = 16;
    /** Terms per lane per block, summed in float before the lane's double adds them. */
    public static final int DEPTH = 4;
    /** Elements per block: {@code LANES * DEPTH}. */
    public static final int SPAN = LANES * DEPTH;

    private VocabPass() {
    }

    /**
     * Forward: see {@link io.rlvec.Engine#logProbs(Logits, OffHeapArray, double, OffHeapArray, OffHeapArray,
     * OffHeapArray, OffHeapArray, SoftmaxStats, OffHeapArray)}. Arguments are validated by the caller.
     */
    static void forward(final Logits logits, final OffHeapArray labels, final double temperature,
                        final OffHeapArray rowMask, final OffHeapArray logProbOut, final OffHeapArray entropyOut,
                        final OffHeapArray sumPiSquaredOut, final SoftmaxStats statsOut) {
        final float t = (float) temperature;
        final RowStats st = new RowStats();
        st.withQ = sumPiSquaredOut != null;
        for (int r = 0; r < logits.rows(); r++) {
            if (rowMask != null && rowMask.getFloat(r) == 0f) {
                logProbOut.setFloat(r, 0f);
                if (entropyOut != null) {
                    entropyOut.setFloat(r, 0f);
                }
                if (sumPiSquaredOut != null) {
                    sumPiSquaredOut.setFloat(r, 0f);
                }
                if (statsOut != null) {
                    save(statsOut, r, 0f, 0f, 0f, 0f);
                }
                continue;
            }
            rowStats(logits, r, t, st);
            if (statsOut != null) {
                save(statsOut, r, st.m, (float) (1.0 / st.s), (float) (st.w / st.s), 1f);
            }
            final double logS = StrictMath.log(st.s);
            final float zy = logit(logits, r, labels.getInt(r)) / t;
            logProbOut.setFloat(r, (float) (((double) zy - st.m) - logS));
            if (entropyOut != null) {
                entropyOut.setFloat(r, (float) (logS - st.w / st.s));
            }
            if (sumPiSquaredOut != null) {
                sumPiSquaredOut.setFloat(r, (float) (st.q / (st.s * st.s)));
            }
        }
    }

    /** Backward: see {@link io.rlvec.Engine#logProbsBackward}. Arguments are validated by the caller. */
    static void backward(final Logits logits, final OffHeapArray labels, final double temperature,
                         final OffHeapArray rowMask, final OffHeapArray gradLogProb, final OffHeapArray gradEntropy,
                         final OffHeapArray gradLogits, final SoftmaxStats stats) {
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
            final float m;
            final float rS;
            final float mu;
            if (stats != null) {
                // Saved by the forward: the same three floats this row would compute again.
                m = stats.shift(r);
                rS = stats.reciprocalSum(r);
                mu = stats.meanShiftedLogit(r);
            } else {
                rowStats(logits, r, t, st);
                m = st.m;
                rS = (float) (1.0 / st.s);
                mu = (float) (st.w / st.s);
            }
            final float gl = gradLogProb.getFloat(r) / t;
            final float ge = gradEntropy == null ? 0f : gradEntropy.getFloat(r) / t;
            final int y = labels.getInt(r);
            // Reads x_j before writing g_j at the same index, so the logits may be the gradient buffer itself.
            for (int j = 0; j < v; j++) {
                final float d = logit(logits, r, j) / t - m;
                final float e = CanonicalMath.exp(d);
                final float k = ge == 0f ? -gl : Math.fma(-ge, clamp(d) - mu, -gl);
                final float p = e * rS;
                gradLogits.setFloat(base + j, j == y ? Math.fma(p, k, gl) : p * k);
            }
        }
    }

    private static void save(final SoftmaxStats stats, final int r, final float m, final float rS, final float mu,
                             final float flag) {
        final long at = (long) SoftmaxStats.STRIDE * r;
        final OffHeapArray d = stats.data();
        d.setFloat(at + SoftmaxStats.M, m);
        d.setFloat(at + SoftmaxStats.RS, rS);
        d.setFloat(at + SoftmaxStats.MU, mu);
        d.setFloat(at + SoftmaxStats.FLAG, flag);
    }

    /**
     * Max, S and W (and Q when {@code st.withQ}) of one row (the canonical order; see
     * {@link io.rlvec.Engine#logProbs}).
     */
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
        final double[] ql = st.withQ ? st.qLanes : null;
        java.util.Arrays.fill(sl, 0.0);
        java.util.Arrays.fill(wl, 0.0);
        if (ql != null) {
            java.util.Arrays.fill(ql, 0.0);
        }
        final int vs = v - v % SPAN;
        // The first maximal logit (d = 0, e = 1 exactly): when j < V64, its block comes last and its term is added
        // to S after the lanes instead of to its float partial.
        final int top = firstIndexOf(logits, r, mx);
        final int topBlock = top >= 0 && top < vs ? top - top % SPAN : -1;
        for (int b = 0; b < vs; b += SPAN) {
            if (b != topBlock) {
                addBlock(logits, r, b, t, m, -1, sl, wl, ql);
            }
        }
        if (topBlock >= 0) {
            addBlock(logits, r, topBlock, t, m, top, sl, wl, ql);
        }
        double s = combineLanes(sl, 0);
        double q = ql == null ? 0 : combineLanes(ql, 0);
        if (topBlock >= 0) {
            final float eTop = CanonicalMath.exp(logit(logits, r, top) / t - m);
            s += eTop;
            q += eTop * eTop;
        }
        double w = combineLanes(wl, 0);
        for (int j = vs; j < v; j++) {
            final float d = logit(logits, r, j) / t - m;
            final float e = CanonicalMath.exp(d);
            s += e;
            w += e * clamp(d);
            q += e * e;
        }
        st.m = m;
        st.s = s;
        st.w = w;
        st.q = q;
    }

    /**
     * Block {@code b}: lane l's float partial of its terms b + l, b + 16 + l, b + 32 + l, b + 48 + l, in order
     * (leaving the term at {@code skip} out of S's and Q's), added to the lane's double; Q's lanes only when
     * {@code ql} is non-null.
     */
    private static void addBlock(final Logits logits, final int r, final int b, final float t, final float m,
                                 final int skip, final double[] sl, final double[] wl, final double[] ql) {
        for (int l = 0; l < LANES; l++) {
            float ps = 0f;
            float pw = 0f;
            float pq = 0f;
            for (int u = 0; u < DEPTH; u++) {
                final int j = b + LANES * u + l;
                final float d = logit(logits, r, j) / t - m;
                final float e = CanonicalMath.exp(d);
                if (j != skip) {
                    ps += e;
                    pq += e * e;
                }
                pw += e * clamp(d);
            }
            sl[l] += ps;
            wl[l] += pw;
            if (ql != null) {
                ql[l] += pq;
            }
        }
    }

    /** @return the first j with {@code x_j == mx}, or -1 (a row without a non-NaN logit above -inf). */
    private static int firstIndexOf(final Logits logits, final int r, final float mx) {
        for (int j = 0; j < logits.vocab(); j++) {
            if (logit(logits, r, j) == mx) {
                return j;
            }
        }
        return -1;
    }

    /**
     * The canonical combination of the {@link #LANES} lane sums at {@code off}: halving, lane i with lane
     * i + 8, then i + 4, i + 2, i + 1 (see {@link io.rlvec.Engine#logProbs}).
     *
     * @param a   at least {@code off + 16} doubles.
     * @param off first lane.
     * @return the row sum of the lanes.
     */
    public static double combineLanes(final double[] a, final int off) {
        final double b0 = a[off] + a[off + 8];
        final double b1 = a[off + 1] + a[off + 9];
        final double b2 = a[off + 2] + a[off + 10];
        final double b3 = a[off + 3] + a[off + 11];
        final double b4 = a[off + 4] + a[off + 12];
        final double b5 = a[off + 5] + a[off + 13];
        final double b6 = a[off + 6] + a[off + 14];
        final double b7 = a[off + 7] + a[off + 15];
        final double c0 = b0 + b4;
        final double c1 = b1 + b5;
        final double c2 = b2 + b6;
        final double c3 = b3 + b7;
        return (c0 + c2) + (c1 + c3);
    }

    /** {@code d} clamped below at EXP_LO, where exp is already 0: keeps {@code e * c} and {@code c - mu} finite. */
    private static float clamp(final float d) {
        return d < EXP_LO ? EXP_LO : d;
    }

    private static float logit(final Logits logits, final int r, final int j) {
        return logits.data().getFloat(r * logits.rowStride() + j);
    }

    /** Row statistics: shift m and the double sums S, W, Q (plus the lane scratch of the canonical order). */
    private static final class RowStats {
        final double[] sLanes = new double[LANES];
        final double[] wLanes = new double[LANES];
        final double[] qLanes = new double[LANES];
        /** Whether Q = sum e_j^2 is accumulated (only for the sum of squared probabilities). */
        boolean withQ;
        float m;
        double s;
        double w;
        double q;
    }
}
