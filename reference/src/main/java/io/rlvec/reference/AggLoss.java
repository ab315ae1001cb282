package io.rlvec.reference;

import io.rlvec.AggResult;
import io.rlvec.Aggregation;
import io.rlvec.LossSpec;
import io.rlvec.OffHeapArray;
import io.rlvec.TokenBatch;

/** verl's {@code agg_loss} over any per-token column, with d loss / d loss_mat. */
final class AggLoss {
    private AggLoss() {
    }

    static void compute(final LossSpec spec, final TokenBatch batch, final OffHeapArray values,
                        final OffHeapArray grad, final AggResult out) {
        final OffHeapArray mask = batch.mask();
        final int b = batch.numSequences();
        final BatchCounts counts = BatchCounts.of(batch);
        final long validTokens = counts.validTokens();
        final long validSequences = counts.validSequences();
        final double denominator = counts.denominator(spec, batch);
        double numerator = 0;
        for (int s = 0; s < b; s++) {
            final int start = batch.offset(s);
            final int end = batch.offset(s + 1);
            final long count = counts.perSequence()[s];
            final float tokenWeight = (float) Aggregation.tokenWeight(spec, denominator, count);
            double sum = 0;
            for (int t = start; t < end; t++) {
                final boolean valid = mask.getFloat(t) != 0f;
                if (valid) {
                    sum += values.getFloat(t);
                }
                if (grad != null) {
                    grad.setFloat(t, valid ? tokenWeight : 0f);
                }
            }
            numerator += Aggregation.sequenceTerm(spec.lossAggMode(), sum, count);
        }
        out.set(numerator, validTokens, validSequences, denominator,
            (float) Aggregation.loss(spec, numerator, denominator));
    }
}
