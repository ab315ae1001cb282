package io.rlvec.reference;

import io.rlvec.Aggregation;
import io.rlvec.Column;
import io.rlvec.LossSpec;
import io.rlvec.OffHeapArray;
import io.rlvec.TokenBatch;
import io.rlvec.ValueLossResult;

/**
 * verl's {@code compute_value_loss} (the critic's clipped value loss), forward and backward, one token at a time.
 *
 * <pre>
 *   vpredclipped = clip_by_value(vpreds, values - c, values + c) = maximum(minimum(vpreds, values + c), values - c)
 *   vf_losses1   = (vpreds - returns)^2
 *   vf_losses2   = (vpredclipped - returns)^2
 *   vf_loss      = 0.5 * agg_loss(maximum(vf_losses1, vf_losses2), response_mask, loss_agg_mode, ...)
 *   vf_clipfrac  = masked_mean(vf_losses2 &gt; vf_losses1, response_mask)
 *   vpred_mean   = masked_mean(vpreds, response_mask)                        (the critic's metric)
 * </pre>
 * c is {@code cliprange_value}. verl 2026-08 passes dp_size, batch_num_tokens, global_batch_size and
 * loss_scale_factor to agg_loss; 2026-01 calls it with its defaults ({@link LossSpec#valueAggregationSpec()}).
 * Per-token arithmetic is float32, with c rounded to float32 as torch does for a Python scalar; sums are double.
 *
 * <p>The gradient d vf_loss / d vpreds is autograd's for that expression. With w the aggregation's token weight
 * times 0.5 (rounded to float once per sequence), d1 = vpreds - returns and d2 = vpredclipped - returns:
 * <pre>
 *   clipShare = minShare(vpreds, values + c) * maxShare(minimum(vpreds, values + c), values - c)
 *   g         = w * (maxShare(l1, l2) * (2 d1) + (maxShare(l2, l1) * clipShare) * (2 d2))
 * </pre>
 * where the shares are torch's (1 for the selected side, 0.5 each at a tie, see {@link TorchOps}); every product
 * of shares and {@code 2 d} is exact, so the only roundings are the sum and the product with w. Masked tokens get
 * +0.0f.
 */
final class ValueLoss {
    private ValueLoss() {
    }

    static void compute(final LossSpec spec, final TokenBatch batch, final OffHeapArray grad,
                        final ValueLossResult out) {
        final LossSpec agg = spec.valueAggregationSpec();
        final OffHeapArray vpreds = batch.column(Column.VPREDS);
        final OffHeapArray returns = batch.column(Column.RETURNS);
        final OffHeapArray values = batch.column(Column.VALUES);
        final OffHeapArray mask = batch.mask();
        final float c = (float) spec.cliprangeValue();
        final int b = batch.numSequences();

        long validTokens = 0;
        long validSequences = 0;
        for (int s = 0; s < b; s++) {
            final long n = VanillaPolicyLoss.countValid(mask, batch.offset(s), batch.offset(s + 1));
            validTokens += n;
            validSequences += n > 0 ? 1 : 0;
        }
        final double denominator = Aggregation.denominator(agg, batch, validTokens, validSequences);

        double numerator = 0;
        double vpredSum = 0;
        long clipped = 0;
        for (int s = 0; s < b; s++) {
            final int start = batch.offset(s);
            final int end = batch.offset(s + 1);
            final long count = VanillaPolicyLoss.countValid(mask, start, end);
            final float w = (float) (0.5 * Aggregation.tokenWeight(agg, denominator, count));
            double sum = 0;
            double sequenceVpreds = 0;
            for (int t = start; t < end; t++) {
                if (mask.getFloat(t) == 0f) {
                    if (grad != null) {
                        grad.setFloat(t, 0f);
                    }
                    continue;
                }
                final float v = vpreds.getFloat(t);
                final float r = returns.getFloat(t);
                final float old = values.getFloat(t);
                final float hi = old + c;
                final float lo = old - c;
                final float upper = TorchOps.minimum(v, hi);
                final float vclip = TorchOps.maximum(upper, lo);
                final float d1 = v - r;
                final float d2 = vclip - r;
                final float l1 = d1 * d1;
                final float l2 = d2 * d2;
                sum += TorchOps.maximum(l1, l2);
                sequenceVpreds += v;
                clipped += l2 > l1 ? 1 : 0;
                if (grad != null) {
                    final float clipShare = TorchOps.minShare(v, hi) * TorchOps.maxShare(upper, lo);
                    final float g1 = TorchOps.maxShare(l1, l2) * (2f * d1);
                    final float g2 = (TorchOps.maxShare(l2, l1) * clipShare) * (2f * d2);
                    grad.setFloat(t, w * (g1 + g2));
                }
            }
            numerator += Aggregation.sequenceTerm(agg.lossAggMode(), sum, count);
            vpredSum += sequenceVpreds;
        }
        out.set(agg, numerator, validTokens, validSequences, denominator, clipped, vpredSum);
    }
}
