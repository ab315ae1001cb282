package io.rlvec.reference;

import io.rlvec.CanonicalMath;
import io.rlvec.Column;
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
 * Sums over a sequence are canonical double sums ({@link Selection#sequenceSum}) divided by len and rounded to
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
        final float[] k = new float[n];
        final float[] dk = new float[n];
        final float[] logW = weights != null ? new float[n] : null;
        out.reset();
        long validTokens = 0;
        long validSequences = 0;
        for (int t = 0; t < n; t++) {
            if (mask.getFloat(t) == 0f) {
                continue;
            }
            final float a = adv.getFloat(t);
            final float nakl = lp.getFloat(t) - old.getFloat(t);
            k[t] = clippedLogRatio(a, nakl, low, high);
            dk[t] = derivative(a, nakl, low, high);
            if (logW != null) {
                logW[t] = (float) StrictMath.log(weights.getFloat(t) + 1e-10f);
            }
            final boolean clipped = nakl != TorchOps.clamp(nakl, low, high);
            out.add(Stat.NEG_LOG_RATIO_SUM, -nakl);
            out.add(Stat.CLIPPED, clipped && a > 0f ? 1 : 0);
            out.add(Stat.DUAL_CLIPPED, clipped && a < 0f ? 1 : 0);
            out.add(Stat.POS_TOKENS, a > 0f ? 1 : 0);
            out.add(Stat.NEG_TOKENS, a < 0f ? 1 : 0);
        }
        for (int s = 0; s < b; s++) {
            final int start = batch.offset(s);
            final int end = batch.offset(s + 1);
            final long len = VanillaPolicyLoss.countValid(mask, start, end);
            validTokens += len;
            validSequences += len > 0 ? 1 : 0;
            final float meanK = len > 0 ? (float) (Selection.sequenceSum(batch, null, mask, s, k) / len) : 0f;
            final float advS = len > 0 ? (float) (Selection.sequenceSum(batch, adv, mask, s, null) / len) : 0f;
            final float ratioS = CanonicalMath.exp(meanK);
            final float wS = logW == null ? 1f
                : CanonicalMath.exp(len > 0 ? (float) (Selection.sequenceSum(batch, null, mask, s, logW) / len) : 0f);
            final float lossS = -advS * ratioS * wS;
            out.add(Stat.LOSS_NUMERATOR, lossS);
            out.add(advS > 0f ? Stat.POS_NUMERATOR : Stat.NEG_NUMERATOR, advS != 0f ? lossS : 0.0);
            if (grad != null) {
                final float c = len > 0 ? (float) ((double) (-advS * ratioS * wS) / len / b) : 0f;
                for (int t = start; t < end; t++) {
                    grad.setFloat(t, mask.getFloat(t) != 0f ? c * dk[t] : 0f);
                }
            }
        }
        out.add(Stat.VALID_TOKENS, validTokens);
        out.add(Stat.VALID_SEQUENCES, validSequences);
        out.finish(spec.aggregationSpec(), b);
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
