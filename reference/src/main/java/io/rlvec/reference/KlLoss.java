package io.rlvec.reference;

import io.rlvec.CanonicalMath;
import io.rlvec.Column;
import io.rlvec.KlPenalty;
import io.rlvec.Logits;
import io.rlvec.OffHeapArray;
import io.rlvec.TokenBatch;

/**
 * verl's {@code kl_penalty} per token (forward value and d kld / d log_prob), and the exact KL over the
 * vocabulary ({@code full}, which verl leaves unimplemented), as scalar loops in float32 with torch's semantics.
 *
 * <pre>
 *   d = log_prob - ref_log_prob
 *   kl, k1      : d                                            gradient 1
 *   abs         : |d|                                          gradient sign(d) (0 at d = 0 and for NaN, as torch)
 *   mse, k2     : 0.5 * (d * d)                                gradient d
 *   low_var_kl, : r = clamp(ref_log_prob - log_prob, -20, 20)  gradient (1 - e^r) where both clamps pass
 *   k3            kld = clamp((e^r - r) - 1, -10, 10)          (closed intervals, as autograd), else 0
 *   name + '+'  : value (b - b) + kld with b = 0.5 (d * d)     gradient d (straight-through k2)
 * </pre>
 * The straight-through value is verl's {@code backward_score - backward_score.detach() + forward_score.detach()}
 * evaluated literally, so it equals the estimator's value wherever {@code b} is finite.
 *
 * <p>{@code full}: per row, with a = z / T and b = z_ref / T (float division, as {@code logits.div_(T)}),
 * p = softmax(a), q = softmax(b):
 * <pre>
 *   KL     = sum_v p_v (log p_v - log q_v) = T_a / S_a - log S_a + log S_b
 *   S_a    = sum_v e^(a_v - max a),  S_b = sum_v e^(b_v - max b),  T_a = sum_v e^(a_v - max a) ((a_v - max a) - (b_v - max b))
 *   dKL/dz_v = p_v ((log p_v - log q_v) - KL) / T = p_v (((a_v - max a) - (b_v - max b)) - T_a / S_a) / T
 * </pre>
 * (the last step uses log S_a - log S_b + KL = T_a / S_a). The sums use a fixed order that does not depend on
 * the vector width: the row is cut into blocks of {@link #ROW_BLOCK} elements; inside a block element {@code j}
 * adds into float slot {@code j mod }{@link #SLOTS} in index order; at the end of each block the slots are added
 * in order 0..15 into a double. A vector engine reproduces this order exactly with {@code SLOTS / lanes}
 * rotating accumulators, so row scalars, and hence the gradient, are bit-identical. Logarithms are
 * {@link StrictMath#log} in double (one per row).
 */
public final class KlLoss {
    /** Elements per block of a row reduction (float partials never sum more than ROW_BLOCK / SLOTS terms). */
    public static final int ROW_BLOCK = 512;
    /** Float partial sums per block: 16 covers every vector width up to 512 bits (16 float lanes). */
    public static final int SLOTS = 16;
    /** The k3 log-ratio clamp. */
    public static final float RATIO_CLAMP = 20f;
    /** The k3 value clamp. */
    public static final float KLD_CLAMP = 10f;

    private KlLoss() {
    }

    /**
     * @param e   the estimator (not FULL).
     * @param lp  log_prob.
     * @param ref ref_log_prob.
     * @return verl's {@code kl_penalty_forward} value.
     */
    public static float value(final KlPenalty.Estimator e, final float lp, final float ref) {
        return switch (e) {
            case K1 -> lp - ref;
            case ABS -> Math.abs(lp - ref);
            case K2 -> k2(lp - ref);
            case K3 -> k3(lp, ref);
            case FULL -> throw new IllegalArgumentException("kl_penalty 'full' needs logits: use Engine.klFull");
        };
    }

    /** @return the value of verl's {@code kl_penalty} (straight-through expression when {@code kl} has '+'). */
    public static float penalty(final KlPenalty kl, final float lp, final float ref) {
        final float f = value(kl.estimator(), lp, ref);
        if (!kl.straightThrough()) {
            return f;
        }
        final float b = k2(lp - ref);
        return (b - b) + f;
    }

    /** @return d kl_penalty / d log_prob at one token, as autograd gives it. */
    public static float gradient(final KlPenalty kl, final float lp, final float ref) {
        final float d = lp - ref;
        if (kl.straightThrough()) {
            return d;
        }
        return switch (kl.estimator()) {
            case K1 -> 1f;
            case ABS -> d > 0f ? 1f : (d < 0f ? -1f : 0f);
            case K2 -> d;
            case K3 -> k3Gradient(lp, ref);
            case FULL -> throw new IllegalArgumentException("kl_penalty 'full' needs logits: use Engine.klFull");
        };
    }

    private static float k2(final float d) {
        return 0.5f * (d * d);
    }

    private static float k3(final float lp, final float ref) {
        final float kl = TorchOps.clamp(ref - lp, -RATIO_CLAMP, RATIO_CLAMP);
        final float ratio = CanonicalMath.exp(kl);
        final float kld = (ratio - kl) - 1f;
        return TorchOps.clamp(kld, -KLD_CLAMP, KLD_CLAMP);
    }

    private static float k3Gradient(final float lp, final float ref) {
        final float raw = ref - lp;
        final float kl = TorchOps.clamp(raw, -RATIO_CLAMP, RATIO_CLAMP);
        final float ratio = CanonicalMath.exp(kl);
        final float kld = (ratio - kl) - 1f;
        final boolean passes = TorchOps.clampPasses(raw, -RATIO_CLAMP, RATIO_CLAMP)
            && TorchOps.clampPasses(kld, -KLD_CLAMP, KLD_CLAMP);
        // d kld / d kl = ratio - 1 (exp and subtraction), d kl / d log_prob = -1.
        return passes ? 1f - ratio : 0f;
    }

    /** Per-token kl_penalty over a batch; masked tokens get exactly 0 in both outputs. */
    static void compute(final KlPenalty kl, final TokenBatch batch, final OffHeapArray kldOut,
                        final OffHeapArray gradOut) {
        final OffHeapArray logProb = batch.column(Column.LOG_PROB);
        final OffHeapArray refLogProb = batch.column(Column.REF_LOG_PROB);
        final OffHeapArray mask = batch.mask();
        final int n = batch.numTokens();
        for (int t = 0; t < n; t++) {
            if (mask.getFloat(t) == 0f) {
                kldOut.setFloat(t, 0f);
                if (gradOut != null) {
                    gradOut.setFloat(t, 0f);
                }
                continue;
            }
            final float lp = logProb.getFloat(t);
            final float ref = refLogProb.getFloat(t);
            kldOut.setFloat(t, penalty(kl, lp, ref));
            if (gradOut != null) {
                gradOut.setFloat(t, gradient(kl, lp, ref));
            }
        }
    }

    /**
     * The full KL per row, and (when {@code gradLogits} is non-null) upstream[r] * dKL/dz written, or added when
     * {@code accumulate}, into the gradient rows. Masked rows: kld 0, gradient row 0 (left alone when
     * accumulating).
     */
    static void full(final Logits policy, final Logits reference, final double temperature,
                     final OffHeapArray rowMask, final OffHeapArray kldOut, final OffHeapArray upstream,
                     final OffHeapArray gradLogits, final boolean accumulate) {
        final float t = (float) temperature;
        final int v = policy.vocab();
        final float[] slotS = new float[SLOTS];
        final float[] slotT = new float[SLOTS];
        for (int r = 0; r < policy.rows(); r++) {
            final long zBase = r * policy.rowStride();
            final long gBase = r * policy.rowStride();
            if (rowMask != null && rowMask.getFloat(r) == 0f) {
                kldOut.setFloat(r, 0f);
                if (gradLogits != null && !accumulate) {
                    for (int i = 0; i < v; i++) {
                        gradLogits.setFloat(gBase + i, 0f);
                    }
                }
                continue;
            }
            final OffHeapArray z = policy.data();
            final OffHeapArray zr = reference.data();
            final long rBase = r * reference.rowStride();
            float rawMaxA = Float.NEGATIVE_INFINITY;
            float rawMaxB = Float.NEGATIVE_INFINITY;
            for (int i = 0; i < v; i++) {
                rawMaxA = TorchOps.maximum(z.getFloat(zBase + i), rawMaxA);
                rawMaxB = TorchOps.maximum(zr.getFloat(rBase + i), rawMaxB);
            }
            // fl(x / t) is monotone in x, so max(z) / t == max(z / t); + 0f turns a -0 maximum into +0 so that
            // the order in which equal zeros were met cannot change any later bit.
            final float ma = (rawMaxA + 0f) / t;
            final float mb = (rawMaxB + 0f) / t;

            double sa = 0;
            double ta = 0;
            double sb = 0;
            for (int bs = 0; bs < v; bs += ROW_BLOCK) {
                final int be = Math.min(v, bs + ROW_BLOCK);
                java.util.Arrays.fill(slotS, 0f);
                java.util.Arrays.fill(slotT, 0f);
                for (int i = bs; i < be; i++) {
                    final float da = z.getFloat(zBase + i) / t - ma;
                    final float db = zr.getFloat(rBase + i) / t - mb;
                    final float ea = CanonicalMath.exp(da);
                    final int j = (i - bs) & (SLOTS - 1);
                    slotS[j] += ea;
                    slotT[j] += ea * (da - db);
                }
                for (int j = 0; j < SLOTS; j++) {
                    sa += slotS[j];
                    ta += slotT[j];
                }
                java.util.Arrays.fill(slotS, 0f);
                for (int i = bs; i < be; i++) {
                    final float db = zr.getFloat(rBase + i) / t - mb;
                    slotS[(i - bs) & (SLOTS - 1)] += CanonicalMath.exp(db);
                }
                for (int j = 0; j < SLOTS; j++) {
                    sb += slotS[j];
                }
            }
            final double logSa = StrictMath.log(sa);
            final double kl = ta / sa - logSa + StrictMath.log(sb);
            kldOut.setFloat(r, (float) kl);
            if (gradLogits == null) {
                continue;
            }
            final float k = (float) (ta / sa);
            final float logSaF = (float) logSa;
            final float s = (float) (upstream.getFloat(r) / temperature);
            for (int i = 0; i < v; i++) {
                final float g = fullGradient(z.getFloat(zBase + i), zr.getFloat(rBase + i), t, ma, mb, logSaF, k, s);
                gradLogits.setFloat(gBase + i, accumulate ? gradLogits.getFloat(gBase + i) + g : g);
            }
        }
    }

    /**
     * One element of the full-KL gradient, in the float32 order both engines use.
     *
     * @param z     raw policy logit.
     * @param zr    raw reference logit.
     * @param t     temperature as float.
     * @param ma    max of the policy row / t.
     * @param mb    max of the reference row / t.
     * @param logSa log S_a rounded to float.
     * @param k     T_a / S_a rounded to float.
     * @param s     upstream / temperature rounded to float.
     * @return s * p_v ((a_v - max a) - (b_v - max b) - k).
     */
    public static float fullGradient(final float z, final float zr, final float t, final float ma, final float mb,
                                     final float logSa, final float k, final float s) {
        final float da = z / t - ma;
        final float db = zr / t - mb;
        final float p = CanonicalMath.exp(da - logSa);
        return (p * ((da - db) - k)) * s;
    }
}
