package io.rlvec.reference;

import io.rlvec.CanonicalMath;
import io.rlvec.Column;
import io.rlvec.ElementType;
import io.rlvec.LossSpec;
import io.rlvec.OffHeapArray;
import io.rlvec.PolicyLossResult;
import io.rlvec.PolicyLossResult.Stat;
import io.rlvec.TokenBatch;

/**
 * verl's {@code compute_policy_loss_geo_mean} (GMPO): one loss per sequence, a plain mean over the micro-batch's
 * rows, whatever loss_agg_mode and global_batch_info say (verl's behaviour; its gradient therefore scales with the
 * number of micro-batches, verl issue #7913).
 * <pre>
 *   nakl     = log_prob - old_log_prob                    (unclamped)
 *   k        = sign(A) * min(sign(A) * nakl, sign(A) * clamp(nakl, -clip_ratio_low, clip_ratio_high))
 *   ratio_s  = exp(sum(k * mask) / (len + 1e-8))          len = the sequence's valid tokens
 *   A_s      = sum(A * mask) / (len + 1e-8)
 *   loss_s   = -A_s * ratio_s [* exp(sum(log(w + 1e-10) * mask) / (len + 1e-8))]
 *   pg_loss  = mean over the B rows of loss_s
 * </pre>
 * Sums over a sequence are the canonical masked row sums ({@link Advantages.Kernels#maskedRowSums}) divided by len and rounded to
 * float32 (len + 1e-8 rounds to len in float32 for len &gt;= 1; an empty row gives 0 / 1e-8 = 0). The gradient at
 * a valid token is {@code c_s * dk/dnakl} with the per-sequence coefficient {@code c_s = -A_s ratio_s w_s / len / B}
 * rounded to float once, and dk/dnakl in {0, 0.5, 1} (torch's min splits ties, the clamp passes inside its bounds).
 */
public final class GeoMeanPolicyLoss {
    private GeoMeanPolicyLoss() {
    }

    static void compute(final LossSpec spec, final TokenBatch batch, final OffHeapArray grad,
                        final PolicyLossResult out) {
        final OffHeapArray lp = batch.column(Column.LOG_PROB);
        final OffHeapArray old = batch.column(Column.OLD_LOG_PROB);
        final OffHeapArray adv = batch.column(Column.ADVANTAGES);
        final OffHeapArray weights = batch.column(Column.ROLLOUT_IS_WEIGHTS);
        final OffHeapArray mask = batch.mask();
        final float low = (float) -spec.clipRatioLow();
        final float high = (float) spec.clipRatioHigh();
        final int b = batch.numSequences();
        final int n = batch.numTokens();
        out.reset();
        try (OffHeapArray k = OffHeapArray.allocate(ElementType.F32, n);
             OffHeapArray logW = weights != null ? OffHeapArray.allocate(ElementType.F32, n) : null) {
            final float[] dk = new float[n];
            for (int t = 0; t < n; t++) {
                final float a = adv.getFloat(t);
                final float nakl = lp.getFloat(t) - old.getFloat(t);
                k.setFloat(t, clippedLogRatio(a, nakl, low, high));
                dk[t] = derivative(a, nakl, low, high);
                if (logW != null) {
                    logW.setFloat(t, logWeight(weights.getFloat(t)));
                }
                if (mask.getFloat(t) == 0f) {
                    continue;
                }
                final boolean clipped = nakl != TorchOps.clamp(nakl, low, high);
                out.add(Stat.NEG_LOG_RATIO_SUM, -nakl);
                out.add(Stat.CLIPPED, clipped && a > 0f ? 1 : 0);
                out.add(Stat.DUAL_CLIPPED, clipped && a < 0f ? 1 : 0);
                out.add(Stat.POS_TOKENS, a > 0f ? 1 : 0);
                out.add(Stat.NEG_TOKENS, a < 0f ? 1 : 0);
            }
            final double[] sumK = new double[b];
            final double[] sumA = new double[b];
            final double[] sumW = new double[b];
            Advantages.SCALAR.maskedRowSums(batch, k, sumK);
            Advantages.SCALAR.maskedRowSums(batch, adv, sumA);
            if (logW != null) {
                Advantages.SCALAR.maskedRowSums(batch, logW, sumW);
            }
            long validTokens = 0;
            long validSequences = 0;
            for (int s = 0; s < b; s++) {
                final int start = batch.offset(s);
                final int end = batch.offset(s + 1);
                final long len = VanillaPolicyLoss.countValid(mask, start, end);
                validTokens += len;
                validSequences += len > 0 ? 1 : 0;
                final float c = sequence(out, len, sumK[s], sumA[s], logW != null, sumW[s], b);
                if (grad != null) {
                    for (int t = start; t < end; t++) {
                        grad.setFloat(t, mask.getFloat(t) != 0f ? c * dk[t] : 0f);
                    }
                }
            }
            out.add(Stat.VALID_TOKENS, validTokens);
            out.add(Stat.VALID_SEQUENCES, validSequences);
            out.finish(spec.aggregationSpec(), b);
        }
    }

    /** log(w + 1e-10) in float32 (the sum is float32 in verl; the log is taken in double and rounded). */
    public static float logWeight(final float w) {
        return (float) StrictMath.log(w + 1e-10f);
    }

    /**
     * One sequence from its canonical sums: adds its loss to the numerators and returns its gradient coefficient
     * c_s = -A_s ratio_s w_s / len / B (0 for an empty row), shared by both engines.
     */
    public static float sequence(final PolicyLossResult out, final long len, final double sumK, final double sumA,
                                 final boolean weighted, final double sumLogW, final int rows) {
        final float meanK = len > 0 ? (float) (sumK / len) : 0f;
        final float advS = len > 0 ? (float) (sumA / len) : 0f;
        final float wS = weighted ? CanonicalMath.exp(len > 0 ? (float) (sumLogW / len) : 0f) : 1f;
        float ratioS = CanonicalMath.exp(meanK);
        if (TokenRule.overflows(-advS * ratioS * wS, advS * wS, meanK)) {
            // verl's exp(mean k) overflows (A < 0 with a large positive log-ratio): the mean clamped to [-20, 20].
            ratioS = CanonicalMath.exp(TorchOps.clamp(meanK, TokenRule.LOG_RATIO_MIN, TokenRule.LOG_RATIO_MAX));
        }
        final float lossS = -advS * ratioS * wS;
        out.add(Stat.LOSS_NUMERATOR, lossS);
        out.add(Stat.POS_NUMERATOR, advS > 0f ? lossS : 0.0);
        out.add(Stat.NEG_NUMERATOR, advS < 0f ? lossS : 0.0);
        return len > 0 ? (float) ((double) lossS / len / rows) : 0f;
    }

    /** sign(A) * min(sign(A) * nakl, sign(A) * clamp(nakl, low, high)). */
    public static float clippedLogRatio(final float a, final float nakl, final float low, final float high) {
        final float sgn = Math.signum(a);
        return sgn * TorchOps.minimum(sgn * nakl, sgn * TorchOps.clamp(nakl, low, high));
    }

    /** d k / d nakl: sign(A)^2 * (share of the first + share of the clamped * [clamp passes]). */
    public static float derivative(final float a, final float nakl, final float low, final float high) {
        final float sgn = Math.signum(a);
        final float x = sgn * nakl;
        final float c = sgn * TorchOps.clamp(nakl, low, high);
        final float shares = TorchOps.minShare(x, c) + (TorchOps.clampPasses(nakl, low, high)
            ? TorchOps.minShare(c, x) : 0f);
        return sgn * sgn * shares;
    }
}
