package io.rlvec;

/**
 * The loss side of RL fine-tuning, one method per verl term: forward value, metrics and analytic gradient in one
 * call, over off-heap batches, writing into caller buffers.
 *
 * <p>Two implementations: the scalar reference ({@code io.rlvec.reference.ReferenceEngine}), the executable
 * specification, and the Vector API engine ({@code io.rlvec.engine.VectorEngine}). Obtain one with
 * {@link Engines}. Every method validates all shapes and parameters before it touches off-heap memory and
 * throws {@link IllegalArgumentException} naming the argument and what was expected. Outputs are written into
 * caller-provided buffers and result objects, so a call allocates nothing.
 *
 * <p>Results are deterministic: the same inputs give the same bits for any parallelism. Positions outside the
 * response mask never contribute and receive a gradient of exactly 0, whatever they hold.
 */
public interface Engine extends AutoCloseable {

    /** @return a short name ("reference", "vector-256", ...). */
    String name();

    /** Releases worker threads and scratch memory, if any; the engine must not be used afterwards. */
    @Override
    default void close() {
    }

    /**
     * verl's {@code compute_policy_loss_<mode>} followed by {@code agg_loss}: the aggregated policy loss, its
     * metrics, and (when {@code gradLogProb} is non-null) d pg_loss / d log_prob for every token.
     *
     * @param spec        loss mode, clip ratios, aggregation and global-batch arguments.
     * @param batch       needs log_prob, old_log_prob, advantages; rollout_is_weights is used when present.
     * @param gradLogProb float32 output of at least {@code batch.numTokens()} elements, or null.
     * @param out         receives the loss and the metrics.
     */
    void policyLoss(LossSpec spec, TokenBatch batch, OffHeapArray gradLogProb, PolicyLossResult out);

    /**
     * verl's {@code agg_loss} on an arbitrary per-token loss column, with its gradient.
     *
     * @param spec      aggregation mode and global-batch arguments.
     * @param batch     offsets and response mask.
     * @param lossMat   float32 per-token values (at least {@code batch.numTokens()} elements).
     * @param gradOut   float32 output for d loss / d lossMat, or null.
     * @param out       receives the loss and its mergeable parts.
     */
    void aggLoss(LossSpec spec, TokenBatch batch, OffHeapArray lossMat, OffHeapArray gradOut, AggResult out);
}
