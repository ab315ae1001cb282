package io.rlvec.reference;

import io.rlvec.Aggregation;
import io.rlvec.CanonicalMath;
import io.rlvec.Column;
import io.rlvec.LossSpec;
import io.rlvec.OffHeapArray;
import io.rlvec.PolicyLossResult;
import io.rlvec.PolicyLossResult.Stat;
import io.rlvec.TokenBatch;

/**
 * verl's {@code compute_policy_loss_vanilla} + {@code agg_loss}, forward and backward, one token at a time.
 *
 * <pre>
 *   negative_approx_kl = clamp(log_prob - old_log_prob, -20, 20)
 *   ratio              = exp(negative_approx_kl)
 *   pg_losses1         = -A * ratio
 *   pg_losses2         = -A * clamp(ratio, 1 - clip_ratio_low, 1 + clip_ratio_high)
 *   clip_pg_losses1    = maximum(pg_losses1, pg_losses2)
 *   pg_losses3         = -A * clip_ratio_c
 *   clip_pg_losses2    = min(pg_losses3, clip_pg_losses1)
 *   pg_losses          = where(A &lt; 0, clip_pg_losses2, clip_pg_losses1) [* rollout_is_weights]
 *   pg_loss            = agg_loss(pg_losses, response_mask, loss_agg_mode, **global_batch_info)
 * </pre>
 * The gradient is autograd's for that expression: the float scalars verl passes to torch (1 - low, 1 + high,
 * clip_ratio_c) are rounded to float32 as torch does.
 */
final class VanillaPolicyLoss {
    private VanillaPolicyLoss() {
    }

    static void compute(final LossSpec spec, final TokenBatch batch, final OffHeapArray grad,
                        final PolicyLossResult out) {
        final OffHeapArray logProb = batch.column(Column.LOG_PROB);
        final OffHeapArray oldLogProb = batch.column(Column.OLD_LOG_PROB);
        final OffHeapArray advantages = batch.column(Column.ADVANTAGES);
        final OffHeapArray weights = batch.column(Column.ROLLOUT_IS_WEIGHTS);
        final OffHeapArray mask = batch.mask();
        final float lower = (float) (1.0 - spec.clipRatioLow());
        final float upper = (float) (1.0 + spec.clipRatioHigh());
        final float clipC = (float) spec.clipRatioC();
        final int b = batch.numSequences();

        final BatchCounts counts = BatchCounts.of(batch);
        final long validTokens = counts.validTokens();
        final long validSequences = counts.validSequences();
        final double denominator = counts.denominator(spec, batch);

        out.reset();
        for (int s = 0; s < b; s++) {
            final int start = batch.offset(s);
            final int end = batch.offset(s + 1);
            final long count = counts.perSequence()[s];
            final float tokenWeight = (float) Aggregation.tokenWeight(spec, denominator, count);
            double sum = 0;
            double sumPos = 0;
            double sumNeg = 0;
            for (int t = start; t < end; t++) {
                if (mask.getFloat(t) == 0f) {
                    if (grad != null) {
                        grad.setFloat(t, 0f);
                    }
                    continue;
                }
                final float a = advantages.getFloat(t);
                final float logRatio = logProb.getFloat(t) - oldLogProb.getFloat(t);
                final float negativeApproxKl = TorchOps.clamp(logRatio, -20f, 20f);
                final float ratio = CanonicalMath.exp(negativeApproxKl);
                final float negA = -a;
                final float pg1 = negA * ratio;
                final float pg2 = negA * TorchOps.clamp(ratio, lower, upper);
                final float clip1 = TorchOps.maximum(pg1, pg2);
                final float pg3 = negA * clipC;
                final float clip2 = TorchOps.minimum(pg3, clip1);
                final boolean negative = a < 0f;
                float loss = negative ? clip2 : clip1;
                final float w = weights != null ? weights.getFloat(t) : 1f;
                if (weights != null) {
                    loss = loss * w;
                }

                if (grad != null) {
                    final float g = tokenGradient(a, logRatio, ratio, lower, upper, clipC);
                    grad.setFloat(t, (weights != null ? g * w : g) * tokenWeight);
                }

                sum += loss;
                if (a > 0f) {
                    sumPos += loss;
                    out.add(Stat.POS_TOKENS, 1);
                    out.add(Stat.POS_RATIO_ABOVE_ONE, ratio > 1f ? 1 : 0);
                    out.add(Stat.CLIPPED_HIGH, ratio > upper ? 1 : 0);
                } else if (negative) {
                    sumNeg += loss;
                    out.add(Stat.NEG_TOKENS, 1);
                    out.add(Stat.NEG_RATIO_ABOVE_ONE, ratio > 1f ? 1 : 0);
                    out.add(Stat.CLIPPED_LOW, ratio < lower ? 1 : 0);
                    out.add(Stat.DUAL_CLIPPED, clip1 > pg3 ? 1 : 0);
                }
                out.add(Stat.NEG_LOG_RATIO_SUM, -negativeApproxKl);
                out.add(Stat.CLIPPED, pg2 > pg1 ? 1 : 0);
            }
            out.add(Stat.LOSS_NUMERATOR, Aggregation.sequenceTerm(spec.lossAggMode(), sum, count));
            out.add(Stat.POS_NUMERATOR, Aggregation.sequenceTerm(spec.lossAggMode(), sumPos, count));
            out.add(Stat.NEG_NUMERATOR, Aggregation.sequenceTerm(spec.lossAggMode(), sumNeg, count));
        }
        out.add(Stat.VALID_TOKENS, validTokens);
        out.add(Stat.VALID_SEQUENCES, validSequences);
        out.finish(spec, denominator);
    }

    /**
     * d pg_losses / d log_prob at one valid token, before the rollout weight and the aggregation's token weight
     * (the gradient is then {@code (g * w) * tokenWeight}, or {@code g * tokenWeight} without weights): the same
     * float operations as the batch loop, so that a composition computing one token at a time gets its bits.
     *
     * @param logRatio log_prob - old_log_prob (float32), before the clamp.
     * @param ratio    exp(clamp(logRatio, -20, 20)) with the canonical exp.
     */
    static float tokenGradient(final float a, final float logRatio, final float ratio, final float lower,
                               final float upper, final float clipC) {
        final float negA = -a;
        final float pg1 = negA * ratio;
        final float pg2 = negA * TorchOps.clamp(ratio, lower, upper);
        final float clip1 = TorchOps.maximum(pg1, pg2);
        final float pg3 = negA * clipC;
        // d pg_losses / d ratio = -A * (share1 + share2 * [ratio inside the clip]) * [dual share].
        final float dual = a < 0f ? TorchOps.minShare(clip1, pg3) : 1f;
        final float shares = TorchOps.maxShare(pg1, pg2)
            + (TorchOps.clampPasses(ratio, lower, upper) ? TorchOps.maxShare(pg2, pg1) : 0f);
        final float coef = dual * shares;
        return TorchOps.clampPasses(logRatio, -20f, 20f) ? (negA * coef) * ratio : 0f;
    }

    static long countValid(final OffHeapArray mask, final int start, final int end) {
        long c = 0;
        for (int t = start; t < end; t++) {
            if (mask.getFloat(t) != 0f) {
                c++;
            }
        }
        return c;
    }
}
