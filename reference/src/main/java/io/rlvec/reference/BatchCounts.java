package io.rlvec.reference;

import io.rlvec.Aggregation;
import io.rlvec.LossSpec;
import io.rlvec.OffHeapArray;
import io.rlvec.TokenBatch;

/**
 * The counts every aggregation needs before its token loop: valid tokens per sequence, in total, and the
 * sequences with at least one.
 *
 * @param perSequence    valid tokens of each sequence.
 * @param validTokens    valid tokens of the batch.
 * @param validSequences sequences with at least one valid token.
 */
record BatchCounts(long[] perSequence, long validTokens, long validSequences) {
    static BatchCounts of(final TokenBatch batch) {
        final OffHeapArray mask = batch.mask();
        final int b = batch.numSequences();
        final long[] per = new long[b];
        long tokens = 0;
        long sequences = 0;
        for (int s = 0; s < b; s++) {
            per[s] = VanillaPolicyLoss.countValid(mask, batch.offset(s), batch.offset(s + 1));
            tokens += per[s];
            sequences += per[s] > 0 ? 1 : 0;
        }
        return new BatchCounts(per, tokens, sequences);
    }

    /** @return the denominator of the spec's aggregation over these counts. */
    double denominator(final LossSpec spec, final TokenBatch batch) {
        return Aggregation.denominator(spec, batch, validTokens, validSequences);
    }
}
