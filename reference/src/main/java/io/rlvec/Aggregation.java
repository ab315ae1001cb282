package io.rlvec;

/**
 * verl's {@code agg_loss} as a two-step recipe shared by every implementation, so that the scalar arithmetic
 * around a kernel is the same code everywhere and micro-batches can be merged exactly.
 *
 * <p>Every mode is a sum of per-sequence terms divided by one denominator. S = a sequence's token sum, c = its
 * valid tokens, B = batch_num_tokens, G = global_batch_size, F = loss_scale_factor, dp = dp_size:
 * <pre>
 *   mode                      per-sequence term          denominator D                  loss
 *   token-mean                S                          B                              sum/D*dp
 *   token-sum (2026-08)       S                          1                              sum*dp
 *   seq-mean-token-sum        S (0 when c = 0)           G                              sum/D*dp
 *   seq-mean-token-mean       S / c (0 when c = 0)       G                              sum/D*dp
 *   seq-mean-token-sum-norm   S                          2026-01: F                     sum/D
 *                                                        2026-08: G * F                 sum/D*dp
 * </pre>
 * The release is the spec's {@code verl_semantics} ({@link LossSpec#release()}): verl redefined
 * seq-mean-token-sum-norm as the seq-mean-token-sum divided by F, and added token-sum, between its 2026-01 and
 * 2026-08 code. Unset denominators default as in verl: the batch's valid tokens, its non-empty sequences, the
 * padded width. A packed batch has no padded width, so seq-mean-token-sum-norm on it requires loss_scale_factor.
 * From 2026-08 on, verl refuses dp_size &gt; 1 without the global count the mode needs; so does this class. A
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
     * @throws IllegalArgumentException for seq-mean-token-sum-norm on a packed batch without loss_scale_factor,
     *                                  and (2026-08) for dp_size &gt; 1 without the global count the mode needs.
     */
    public static void validate(final LossSpec spec, final TokenBatch batch) {
        final AggMode mode = spec.lossAggMode();
        if (mode == AggMode.SEQ_MEAN_TOKEN_SUM_NORM && Double.isNaN(spec.lossScaleFactor()) && !batch.isPadded()) {
            throw new IllegalArgumentException("loss_agg_mode=seq-mean-token-sum-norm on a packed batch needs "
                + "loss_scale_factor: verl divides by the padded width (response_length), which a packed batch "
                + "does not have; pass the response_length your trainer pads to");
        }
        if (spec.release() != VerlRelease.V2026_01 && spec.dpSize() > 1) {
            if (mode == AggMode.TOKEN_MEAN && spec.batchNumTokens() == LossSpec.UNSET) {
                throw new IllegalArgumentException("batch_num_tokens (the global batch's valid tokens) is required "
                    + "when dp_size > 1 with loss_agg_mode=token-mean (verl_semantics "
                    + spec.release().label() + ")");
            }
            if (mode != AggMode.TOKEN_MEAN && mode != AggMode.TOKEN_SUM
                && spec.globalBatchSize() == LossSpec.UNSET) {
                throw new IllegalArgumentException("global_batch_size is required when dp_size > 1 with "
                    + "loss_agg_mode=" + mode.verlName() + " (verl_semantics " + spec.release().label() + ")");
            }
        }
    }

    /**
     * @param validTokens    valid tokens of this (micro-)batch.
     * @param validSequences sequences with at least one valid token.
     * @return the denominator D of the spec's mode.
     */
    public static double denominator(final LossSpec spec, final TokenBatch batch, final long validTokens,
                                     final long validSequences) {
        final double sequences = spec.globalBatchSize() != LossSpec.UNSET ? spec.globalBatchSize() : validSequences;
        return switch (spec.lossAggMode()) {
            case TOKEN_MEAN -> spec.batchNumTokens() != LossSpec.UNSET ? spec.batchNumTokens() : validTokens;
            case TOKEN_SUM -> 1.0;
            case SEQ_MEAN_TOKEN_SUM, SEQ_MEAN_TOKEN_MEAN -> sequences;
            case SEQ_MEAN_TOKEN_SUM_NORM -> {
                final double factor = !Double.isNaN(spec.lossScaleFactor()) ? spec.lossScaleFactor()
                    : batch.paddedWidth();
                yield spec.release() == VerlRelease.V2026_01 ? factor : sequences * factor;
            }
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
        return scalesByDp(spec) ? numerator / denominator * spec.dpSize() : numerator / denominator;
    }

    /**
     * The derivative of the aggregated loss with respect to one valid token's value, for a token of a sequence
     * with {@code count} valid tokens, in double; implementations round it to float once per sequence.
     */
    public static double tokenWeight(final LossSpec spec, final double denominator, final long count) {
        if (denominator == 0.0 || count == 0) {
            return 0.0;
        }
        final double scale = scalesByDp(spec) ? spec.dpSize() : 1.0;
        return spec.lossAggMode() == AggMode.SEQ_MEAN_TOKEN_MEAN ? scale / (denominator * count)
            : scale / denominator;
    }

    /** Every mode multiplies by dp_size except verl 2026-01's seq-mean-token-sum-norm. */
    private static boolean scalesByDp(final LossSpec spec) {
        return spec.lossAggMode() != AggMode.SEQ_MEAN_TOKEN_SUM_NORM || spec.release() != VerlRelease.V2026_01;
    }
}
