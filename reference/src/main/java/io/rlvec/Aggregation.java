package io.rlvec;

/**
 * verl's {@code agg_loss} as a two-step recipe shared by every implementation, so that the scalar arithmetic
 * around a kernel is the same code everywhere and micro-batches can be merged exactly.
 *
 * <p>Every mode is a sum of per-sequence terms divided by one denominator:
 * <pre>
 *   mode                      per-sequence term (S = token sum, c = valid tokens)   denominator D       loss
 *   token-mean                S                                                   batch_num_tokens    sum/D*dp
 *   seq-mean-token-sum        S (0 when c = 0)                                     global_batch_size   sum/D*dp
 *   seq-mean-token-mean       S / c (0 when c = 0)                                 global_batch_size   sum/D*dp
 *   seq-mean-token-sum-norm   S                                                   loss_scale_factor   sum/D
 * </pre>
 * Unset denominators default as in verl: the batch's valid tokens, its non-empty sequences, the padded width.
 * A packed batch has no padded width, so seq-mean-token-sum-norm on it requires loss_scale_factor. A
 * denominator of 0 (no valid token anywhere) gives loss 0 and gradient 0 where verl divides 0 by 0.
 *
 * <p>verl adds 1e-8 to c in float32; for c &gt;= 1 that addition rounds back to c, so dividing by c is the same.
 */
public final class Aggregation {
    private Aggregation() {
    }

    /**
     * Checks, before any kernel runs, that the denominator of this mode can be determined for this batch.
     *
     * @throws IllegalArgumentException for seq-mean-token-sum-norm on a packed batch without loss_scale_factor.
     */
    public static void validate(final LossSpec spec, final TokenBatch batch) {
        if (spec.lossAggMode() == AggMode.SEQ_MEAN_TOKEN_SUM_NORM && Double.isNaN(spec.lossScaleFactor())
            && !batch.isPadded()) {
            throw new IllegalArgumentException("loss_agg_mode=seq-mean-token-sum-norm on a packed batch needs "
                + "loss_scale_factor: verl divides by the padded width (response_length), which a packed batch "
                + "does not have; pass the response_length your trainer pads to");
        }
    }

    /**
     * @param validTokens    valid tokens of this (micro-)batch.
     * @param validSequences sequences with at least one valid token.
     * @return the denominator D of the spec's mode.
     */
    public static double denominator(final LossSpec spec, final TokenBatch batch, final long validTokens,
                                     final long validSequences) {
        return switch (spec.lossAggMode()) {
            case TOKEN_MEAN -> spec.batchNumTokens() != LossSpec.UNSET ? spec.batchNumTokens() : validTokens;
            case SEQ_MEAN_TOKEN_SUM, SEQ_MEAN_TOKEN_MEAN ->
                spec.globalBatchSize() != LossSpec.UNSET ? spec.globalBatchSize() : validSequences;
            case SEQ_MEAN_TOKEN_SUM_NORM -> !Double.isNaN(spec.lossScaleFactor()) ? spec.lossScaleFactor()
                : batch.paddedWidth();
        };
    }

    /**
     * @param tokenSum S, the sum of the sequence's per-token values over its valid tokens (double).
     * @param count    c, its valid tokens.
     * @return the sequence's contribution to the numerator.
     */
    public static double sequenceTerm(final AggMode mode, final double tokenSum, final long count) {
        if (count == 0) {
            return 0.0;
        }
        return mode == AggMode.SEQ_MEAN_TOKEN_MEAN ? tokenSum / count : tokenSum;
    }

    /** @return the aggregated loss from the summed numerator and the denominator (0 when D is 0). */
    public static double loss(final LossSpec spec, final double numerator, final double denominator) {
        if (denominator == 0.0) {
            return 0.0;
        }
        return spec.lossAggMode() == AggMode.SEQ_MEAN_TOKEN_SUM_NORM ? numerator / denominator
            : numerator / denominator * spec.dpSize();
    }

    /**
     * The derivative of the aggregated loss with respect to one valid token's value, for a token of a sequence
     * with {@code count} valid tokens, in double; implementations round it to float once per sequence.
     */
    public static double tokenWeight(final LossSpec spec, final double denominator, final long count) {
        if (denominator == 0.0 || count == 0) {
            return 0.0;
        }
        return switch (spec.lossAggMode()) {
            case TOKEN_MEAN, SEQ_MEAN_TOKEN_SUM -> spec.dpSize() / denominator;
            case SEQ_MEAN_TOKEN_MEAN -> spec.dpSize() / (denominator * count);
            case SEQ_MEAN_TOKEN_SUM_NORM -> 1.0 / denominator;
        };
    }
}
