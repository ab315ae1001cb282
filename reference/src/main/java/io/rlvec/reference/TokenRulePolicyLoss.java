package io.rlvec.reference;

import io.rlvec.Aggregation;
import io.rlvec.Column;
import io.rlvec.LossSpec;
import io.rlvec.OffHeapArray;
import io.rlvec.PolicyLossMode;
import io.rlvec.PolicyLossResult;
import io.rlvec.PolicyLossResult.Stat;
import io.rlvec.TokenBatch;

/**
 * Every token-level verl policy-loss mode (dppo_tv, dppo_kl, sapo, gpg, cispo, dro, gspo, kl_cov, clip_cov) as one
 * loop around the mode's {@link TokenRule}:
 * <pre>
 *   pg_losses = rule(log_prob, old_log_prob, A [, sequence value] [, selected]) [* rollout_is_weights]
 *   pg_loss   = agg_loss(pg_losses, response_mask, the mode's aggregation, **global_batch_info)
 *   d pg_loss / d log_prob = rule's derivative [* rollout_is_weights] * the aggregation's token weight
 * </pre>
 * gspo's sequence value is the sequence's mean unclamped log-ratio over its valid tokens (a canonical double sum,
 * {@link Selection#sequenceSum}, over max(count, 1), rounded to float32); clip_cov and kl_cov first select tokens
 * ({@link Selection}). Metrics: pg_clipfrac, pg_clipfrac_lower and ppo_kl are masked means of the rule's flags
 * and kl term; {@link PolicyLossResult#metrics()} reports the keys the mode reports in verl.
 */
final class TokenRulePolicyLoss {
    private TokenRulePolicyLoss() {
    }

    static void compute(final LossSpec spec, final TokenBatch batch, final OffHeapArray grad,
                        final PolicyLossResult out) {
        final TokenRule rule = TokenRule.of(spec);
        final LossSpec agg = spec.aggregationSpec();
        final OffHeapArray logProb = batch.column(Column.LOG_PROB);
        final OffHeapArray oldLogProb = batch.column(Column.OLD_LOG_PROB);
        final OffHeapArray advantages = batch.column(Column.ADVANTAGES);
        final OffHeapArray weights = batch.column(Column.ROLLOUT_IS_WEIGHTS);
        final OffHeapArray mask = batch.mask();
        final int b = batch.numSequences();
        final PolicyLossMode mode = spec.policyLossMode();

        final BatchCounts counts = BatchCounts.of(batch);
        final long validTokens = counts.validTokens();
        final long validSequences = counts.validSequences();
        final double denominator = counts.denominator(agg, batch);
        final boolean[] flags = new boolean[batch.numTokens()];
        if (mode == PolicyLossMode.CLIP_COV || mode == PolicyLossMode.KL_COV) {
            Selection.select(spec, batch, flags);
        }
        final float[] logRatios = mode == PolicyLossMode.GSPO ? logRatios(batch) : null;

        final TokenRule.Token tok = new TokenRule.Token();
        out.reset();
        for (int s = 0; s < b; s++) {
            final int start = batch.offset(s);
            final int end = batch.offset(s + 1);
            final long count = counts.perSequence()[s];
            final float tokenWeight = (float) Aggregation.tokenWeight(agg, denominator, count);
            final float sequence = logRatios != null
                ? (float) (Selection.sequenceSum(batch, null, mask, s, logRatios) / Math.max(count, 1)) : 0f;
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
                rule.token(logProb.getFloat(t), oldLogProb.getFloat(t), a, sequence, flags[t], tok);
                float loss = tok.loss;
                float g = tok.grad;
                if (weights != null) {
                    final float w = weights.getFloat(t);
                    loss = loss * w;
                    g = g * w;
                }
                if (grad != null) {
                    grad.setFloat(t, g * tokenWeight);
                }
                sum += loss;
                if (a > 0f) {
                    sumPos += loss;
                    out.add(Stat.POS_TOKENS, 1);
                    out.add(Stat.POS_RATIO_ABOVE_ONE, tok.ratio > 1f ? 1 : 0);
                    out.add(Stat.CLIPPED_HIGH, tok.clippedHigh ? 1 : 0);
                } else if (a < 0f) {
                    sumNeg += loss;
                    out.add(Stat.NEG_TOKENS, 1);
                    out.add(Stat.NEG_RATIO_ABOVE_ONE, tok.ratio > 1f ? 1 : 0);
                    out.add(Stat.CLIPPED_LOW, tok.clippedLow ? 1 : 0);
                }
                out.add(Stat.DUAL_CLIPPED, tok.lower ? 1 : 0);
                out.add(Stat.NEG_LOG_RATIO_SUM, tok.kl);
                out.add(Stat.CLIPPED, tok.clipped ? 1 : 0);
            }
            out.add(Stat.LOSS_NUMERATOR, Aggregation.sequenceTerm(agg.lossAggMode(), sum, count));
            out.add(Stat.POS_NUMERATOR, Aggregation.sequenceTerm(agg.lossAggMode(), sumPos, count));
            out.add(Stat.NEG_NUMERATOR, Aggregation.sequenceTerm(agg.lossAggMode(), sumNeg, count));
        }
        out.add(Stat.VALID_TOKENS, validTokens);
        out.add(Stat.VALID_SEQUENCES, validSequences);
        out.finish(agg, denominator);
    }

    /** log_prob - old_log_prob (float32, unclamped) at every token, masked ones included (never read). */
    private static float[] logRatios(final TokenBatch batch) {
        final OffHeapArray lp = batch.column(Column.LOG_PROB);
        final OffHeapArray old = batch.column(Column.OLD_LOG_PROB);
        final float[] r = new float[batch.numTokens()];
        for (int t = 0; t < r.length; t++) {
            r[t] = lp.getFloat(t) - old.getFloat(t);
        }
        return r;
    }
}
