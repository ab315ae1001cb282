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
public interface Engine {

    /** @return a short name ("reference", "vector-256", ...). */
    String name();

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

    // ---- KL penalty and the composed actor loss (dp_actor.update_policy) ----

    /**
     * verl's {@code kl_penalty(log_prob, ref_log_prob, kl_penalty)} per token, with d kld / d log_prob.
     *
     * <p>Estimators kl/k1, abs, mse/k2, low_var_kl/k3 and their straight-through {@code +} forms (value of the
     * estimator, gradient of k2); see {@code io.rlvec.reference.KlLoss} for the exact float32 expressions. Tokens
     * outside the response mask get exactly 0 in both outputs, whatever they hold.
     *
     * @param kl      the estimator; {@code full} is rejected here (it needs logits: {@link #klFull}).
     * @param batch   needs log_prob and ref_log_prob.
     * @param kldOut  float32 output, at least {@code batch.numTokens()} elements.
     * @param gradOut float32 output for d kld / d log_prob per token, or null.
     * @throws IllegalArgumentException for {@code full}, a missing column or a short buffer.
     */
    void klPenalty(KlPenalty kl, TokenBatch batch, OffHeapArray kldOut, OffHeapArray gradOut);

    /**
     * The exact KL(p || q) per row over the vocabulary (verl's {@code kl_penalty='full'}, which verl leaves
     * unimplemented): p = softmax(z / T) of the policy logits, q = softmax(z_ref / T) of the reference logits,
     * KL = sum_v p_v (log p_v - log q_v), and its gradient to the raw policy logits,
     * dKL/dz_v = p_v ((log p_v - log q_v) - KL) / T, scaled per row by {@code upstream}.
     *
     * @param policy      policy logits (F32 or BF16), one row per token.
     * @param reference   reference logits with the same rows and vocabulary (own stride and type allowed).
     * @param temperature T, finite and &gt; 0.
     * @param rowMask     F32[rows], a row is computed where non-zero; null computes every row. Masked rows are
     *                    never read; their kld and gradient row are exactly 0.
     * @param kldOut      F32[rows] output.
     * @param upstream    F32[rows] weight per row of the gradient (d loss / d kld), or null with gradLogits.
     * @param gradLogits  F32 output in the policy logits' layout (may be the policy logits' own memory when
     *                    they are F32; must not overlap the reference logits), or null with upstream.
     * @throws IllegalArgumentException for mismatched shapes, short buffers or a bad temperature.
     */
    void klFull(Logits policy, Logits reference, double temperature, OffHeapArray rowMask, OffHeapArray kldOut,
                OffHeapArray upstream, OffHeapArray gradLogits);

    /**
     * The actor loss as verl's {@code dp_actor.update_policy} composes it, from per-token log-probs:
     * {@code policy_loss = pg_loss + kl_loss_coef * agg(kl_penalty(log_prob, ref_log_prob))} (KL when
     * {@code use_kl_loss}), {@code loss = policy_loss * micro_batch_scale}, with every metric dp_actor reports
     * and (when {@code gradLogProb} is non-null) d loss / d log_prob per token. All terms aggregate with the
     * spec's {@code loss_agg_mode} and global-batch arguments (see {@link ActorComposition}).
     *
     * @param spec        policy loss, aggregation, KL settings and micro-batch scale; entropy must not be needed
     *                    (it needs logits: use the logits overload).
     * @param batch       needs the policy loss's columns, plus ref_log_prob when {@code use_kl_loss}.
     * @param gradLogProb float32 output of at least {@code batch.numTokens()} elements, or null.
     * @param out         receives the losses and metrics.
     * @throws IllegalArgumentException when the spec needs entropy or {@code kl_loss_type=full} (both need
     *                                  logits), or for a missing column or a short buffer.
     */
    void actorLoss(LossSpec spec, TokenBatch batch, OffHeapArray gradLogProb, ActorLossResult out);

    /**
     * The actor loss as {@code dp_actor.update_policy} composes it, from logits: log_prob and entropy of the
     * labels from the vocabulary pass ({@link #logProbs}, temperature {@code spec.temperature()}), then
     * {@code policy_loss = pg_loss - entropy_coeff * agg(entropy) + kl_loss_coef * agg(kl)} (entropy when
     * {@code spec.entropyNeeded()}, KL when {@code use_kl_loss}), {@code loss = policy_loss * micro_batch_scale},
     * and the backward through the vocabulary pass into {@code gradLogits}. See {@link ActorComposition}.
     *
     * @param spec        the loss specification.
     * @param batch       old_log_prob, advantages, the mask (and rollout_is_weights if present), plus
     *                    ref_log_prob for a per-token KL loss; a log_prob column, if any, is not read.
     * @param logits      one row per token slot ({@code rows == batch.numTokens()}); rows of masked tokens are
     *                    never read.
     * @param labels      I32[rows], the sampled token of each row, in [0, vocab) where the mask is set.
     * @param refLogits   reference logits of the same shape, read only for {@code kl_loss_type=full}; null
     *                    otherwise.
     * @param gradLogProb F32[rows] output for d loss / d log_prob (before the vocabulary backward), or null.
     * @param gradLogits  F32 output in the logits' layout for d loss / d logits (may be the logits' own F32
     *                    memory, except with {@code kl_loss_type=full}, which reads the logits after the
     *                    vocabulary backward), or null for the forward only; rows of masked tokens are 0.
     * @param out         receives the losses and metrics.
     * @throws IllegalArgumentException for mismatched shapes, labels out of range, short buffers, a missing
     *                                  column, or reference logits given or missing against the KL type.
     */
    void actorLoss(LossSpec spec, TokenBatch batch, Logits logits, OffHeapArray labels, Logits refLogits,
                   OffHeapArray gradLogProb, OffHeapArray gradLogits, ActorLossResult out);

    /**
     * The vocabulary pass, forward: per row, log_softmax(z / T) at the label and the entropy of softmax(z / T).
     *
     * @param logits      rows of logits (F32 or BF16).
     * @param labels      I32[rows] labels.
     * @param temperature T.
     * @param rowMask     F32[rows], a row is computed where non-zero; masked rows are not read, outputs 0.
     * @param logProbOut  F32[rows] output.
     * @param entropyOut  F32[rows] output.
     */
    void logProbs(Logits logits, OffHeapArray labels, double temperature, OffHeapArray rowMask,
                  OffHeapArray logProbOut, OffHeapArray entropyOut);

    /**
     * The vocabulary pass, backward: d/dz of sum_r gradLogProb[r] * log_prob[r] + gradEntropy[r] * entropy[r].
     *
     * @param logits      rows of logits (F32 or BF16).
     * @param labels      I32[rows] labels.
     * @param temperature T.
     * @param rowMask     F32[rows]; masked rows are not read and their gradient rows are written as 0.
     * @param gradLogProb F32[rows] upstream of log_prob.
     * @param gradEntropy F32[rows] upstream of entropy, or null.
     * @param gradLogits  F32 output in the logits' layout (may alias F32 logits).
     */
    void logProbsBackward(Logits logits, OffHeapArray labels, double temperature, OffHeapArray rowMask,
                          OffHeapArray gradLogProb, OffHeapArray gradEntropy, OffHeapArray gradLogits);
}
