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

    /**
     * verl's {@code compute_value_loss}, the critic's clipped value loss: {@code vf_loss}, the critic's metrics
     * ({@code critic/vf_loss}, {@code critic/vf_clipfrac}, {@code critic/vpred_mean}) and (when
     * {@code gradVpreds} is non-null) d vf_loss / d vpreds for every token. See
     * {@code io.rlvec.reference.ValueLoss} for the formula and its gradient.
     *
     * @param spec       {@code cliprange_value}, the aggregation and (verl 2026-08) the global-batch arguments;
     *                   verl 2026-01 aggregates the value loss without them ({@link LossSpec#valueAggregationSpec()}).
     * @param batch      needs vpreds, returns and values (the rollout's old values) and the mask.
     * @param gradVpreds float32 output of at least {@code batch.numTokens()} elements, or null.
     * @param out        receives the loss and the metrics.
     */
    void valueLoss(LossSpec spec, TokenBatch batch, OffHeapArray gradVpreds, ValueLossResult out);

    // ---- Vocabulary pass: label log-probability and entropy from logits (torch_functional.py, dp_actor) ----

    /**
     * verl's {@code logits.div_(temperature)}, {@code logprobs_from_logits} (v2: {@code z[label] - logsumexp(z)})
     * and {@code entropy_from_logits} ({@code logsumexp(z) - sum(softmax(z) * z)}), one row per token.
     *
     * <p>Per valid row, with {@code t = (float) temperature}, x the row's logits (bf16 widened exactly) and
     * {@code EXP_LO = }{@link CanonicalMath#EXP_LO}:
     * <pre>
     *   z_j = x_j / t                                (IEEE float32 division, as torch's div_)
     *   m   = max_j(x_j) / t + 0f                     (NaN logits are skipped here; they propagate below)
     *   d_j = z_j - m                                 (float32; always &lt;= 0 or NaN)
     *   e_j = exp(d_j)                                ({@link CanonicalMath#exp}: 0 below EXP_LO)
     *   c_j = d_j &lt; EXP_LO ? EXP_LO : d_j            (clamped, so that e_j * c_j = 0 for -inf logits)
     *   S   = sum_j e_j,  W = sum_j (e_j * c_j)       (double across the row, in the canonical order below)
     *   log_prob = (float) (((double) z_label - m) - log(S))     (log = StrictMath.log, in double)
     *   entropy  = (float) (log(S) - W / S)
     * </pre>
     * The canonical order of the sums: sixteen lanes, blocks of 64 terms. For {@code j < V64 = vocab - vocab % 64},
     * term j belongs to lane {@code j % 16}; in each block a lane first adds its four terms (j, j + 16, j + 32,
     * j + 48) in float32, in that order, starting from +0, then adds that float partial to its double sum, blocks in
     * increasing order, except that the block holding {@code top}, the first j with {@code x_j == max x} (its e is
     * exactly 1), comes after all the others when {@code top < V64}, with top's term left out of its lane's float
     * partial for S. The lane sums combine by halving
     * ({@code l_i + l_(i+8)}, then {@code + i+4}, {@code + i+2}, {@code + i+1}), S adds {@code e_top} if it was
     * left out, then the terms {@code j >= V64} are added in double in increasing j. Every implementation sums in
     * this order, so the row statistics (and hence the gradients of {@link #logProbsBackward}) are the same bits
     * everywhere, for any vector width and thread count. Accumulation across the row is double: the float partials
     * add at most {@code 3 * 2^-24} relative error to {@code S - 1} and to W (all terms of each sum have one sign),
     * whatever the vocabulary size, where a float32 accumulator's grows with it; keeping the maximum's exact 1 out
     * of them keeps that error relative to the non-maximal mass, which is what a peaked row's entropy and top
     * log-probability depend on.
     *
     * <p>Properties: {@code S >= 1} (the maximum contributes exactly 1), so {@code log_prob <= 0} and
     * {@code entropy >= 0}; vocab 1 gives log_prob 0 and entropy 0. {@code -inf} logits get probability 0 and
     * contribute 0 to the entropy (the limit of {@code p log p}; PyTorch yields NaN there). A NaN logit in a valid
     * row makes that row's outputs NaN; a {@code +inf} logit or an all {@code -inf} row gives NaN as well.
     *
     * @param logits      rows of float32 or bf16 logits, one row per token.
     * @param labels      int32, at least {@code rows}: the label of each valid row, in {@code [0, vocab)}. All
     *                    labels of valid rows are checked before any logit is read; labels of masked rows are not
     *                    read (they may hold an ignore index such as -100).
     * @param temperature finite, {@code > 0}, and {@code > 0} once rounded to float32.
     * @param rowMask     float32, at least {@code rows}, nonzero = valid; or null (every row valid). Rows with
     *                    mask 0 are not read and get 0 in both outputs.
     * @param logProbOut  float32 output, at least {@code rows}: the label log-probability per row.
     * @param entropyOut  float32 output, at least {@code rows}, or null (the entropy is then not computed).
     */
    default void logProbs(Logits logits, OffHeapArray labels, double temperature, OffHeapArray rowMask,
                          OffHeapArray logProbOut, OffHeapArray entropyOut) {
        logProbs(logits, labels, temperature, rowMask, logProbOut, entropyOut, null);
    }

    /**
     * {@link #logProbs(Logits, OffHeapArray, double, OffHeapArray, OffHeapArray, OffHeapArray)} that also saves
     * each row's statistics ({@code m}, {@code rS}, {@code mu}; see {@link SoftmaxStats}) for
     * {@link #logProbsBackward(Logits, OffHeapArray, double, OffHeapArray, OffHeapArray, OffHeapArray,
     * OffHeapArray, SoftmaxStats)}. Outputs are the same bits with or without it.
     *
     * @param statsOut statistics with a capacity of at least {@code rows}, or null; bound to this call's rows,
     *                 vocab and temperature.
     */
    default void logProbs(Logits logits, OffHeapArray labels, double temperature, OffHeapArray rowMask,
                          OffHeapArray logProbOut, OffHeapArray entropyOut, SoftmaxStats statsOut) {
        logProbs(logits, labels, temperature, rowMask, logProbOut, entropyOut, statsOut, null);
    }

    /**
     * {@link #logProbs(Logits, OffHeapArray, double, OffHeapArray, OffHeapArray, OffHeapArray, SoftmaxStats)} that
     * may also keep each valid row's {@code e_j} in {@code gradLogits}, the buffer the backward will write (as a
     * training forward leaves a reserve space for its backward): {@link #logProbsBackward(Logits, OffHeapArray,
     * double, OffHeapArray, OffHeapArray, OffHeapArray, OffHeapArray, SoftmaxStats)} with these statistics and this
     * same buffer then reads them back instead of evaluating the exp again, so the pair evaluates one exp per logit
     * (and, with {@code gradEntropy} null or 0, the backward reads no logit). Outputs and the gradient are the same
     * bits either way.
     *
     * <p>Between the two calls the buffer's contents belong to the engine: pass it to the backward unchanged. A
     * change cannot give a wrong gradient: the forward records a checksum of each row's kept exps (the sum of the
     * elements' bits times odd weights, modulo 2^32: any change to one element, and any swap of two different
     * ones, changes it) and the backward evaluates the exps again for a row whose kept values no longer match, as
     * it does for any other buffer. One backward consumes the kept exps (a second backward from the same
     * statistics evaluates them again). Whether anything is kept is the engine's choice: the reference
     * keeps nothing, and nothing is kept in place (a buffer that is the logits' own memory).
     *
     * @param gradLogits null, or a float32 buffer with the logits' row layout ({@code logits.requiredLength()}
     *                   elements), disjoint from the logits or their own F32 memory; needs {@code statsOut}.
     */
    default void logProbs(Logits logits, OffHeapArray labels, double temperature, OffHeapArray rowMask,
                          OffHeapArray logProbOut, OffHeapArray entropyOut, SoftmaxStats statsOut,
                          OffHeapArray gradLogits) {
        logProbs(logits, labels, temperature, rowMask, logProbOut, entropyOut, null, statsOut, gradLogits);
    }

    /**
     * {@link #logProbs(Logits, OffHeapArray, double, OffHeapArray, OffHeapArray, OffHeapArray, SoftmaxStats,
     * OffHeapArray)} that may also write each row's sum of squared probabilities, verl's
     * {@code calculate_sum_pi_squared_from_logits(z) = exp(logsumexp(2 z) - 2 logsumexp(z))}, i.e.
     * {@code sum_j softmax(z)_j^2} of the temperature-scaled logits {@code z = x / t}, which verl's actor computes
     * in its old-log-prob forward when {@code actor.calculate_sum_pi_squared} is set (the optimal-token-baseline
     * estimators' {@code sum_pi_squared}). It comes from the same pass, from the exps it already evaluates:
     * <pre>
     *   Q = sum_j (e_j * e_j)     (float32 products, summed as S: the same lanes, blocks and order, the first
     *                              maximum's term, exactly 1, likewise left out of its lane's float partial and
     *                              added after the lanes)
     *   sum_pi_squared = (float) (Q / (S * S))          (double)
     * </pre>
     * (with {@code e_j}, {@code S} and the canonical order of {@link #logProbs(Logits, OffHeapArray, double,
     * OffHeapArray, OffHeapArray, OffHeapArray)}), so that every implementation gives the same bits. It lies in
     * {@code [1 / vocab, 1]} up to rounding; vocab 1 gives 1; {@code -inf} logits contribute 0; a NaN logit, a
     * {@code +inf} logit or an all {@code -inf} row gives NaN, as for the log-prob. The other outputs are the
     * same bits with or without it.
     *
     * <p>It has no gradient: verl computes it under {@code no_grad} and uses it only as the optimal-token
     * baselines' variance proxy ({@code w_t = 1 - 2 exp(old_log_prob_t) + sum_pi_squared_t}), so
     * {@link #logProbsBackward} takes no upstream gradient for it.
     *
     * @param sumPiSquaredOut float32 output, at least {@code rows}: {@code sum_j p_j^2} per row (0 for masked
     *                        rows); or null (not computed, and the pass costs what it costs without it).
     */
    void logProbs(Logits logits, OffHeapArray labels, double temperature, OffHeapArray rowMask,
                  OffHeapArray logProbOut, OffHeapArray entropyOut, OffHeapArray sumPiSquaredOut,
                  SoftmaxStats statsOut, OffHeapArray gradLogits);

    /**
     * The gradient of {@link #logProbs}: writes {@code d/d x} (w.r.t. the RAW, pre-temperature logits) of
     * {@code sum_r gradLogProb[r] * log_prob_r + sum_r gradEntropy[r] * entropy_r}.
     *
     * <p>Derivation: with {@code p_j = softmax(z)_j} and {@code H} the entropy, {@code d log_prob / d z_j =
     * [j == label] - p_j} and {@code d H / d z_j = -p_j (log p_j + H)}, where {@code log p_j + H =
     * d_j - log S + log S - W / S = d_j - W / S}; the chain rule through {@code z = x / t} divides by t. With the
     * row statistics of {@link #logProbs} (same bits), per valid row:
     * <pre>
     *   rS = (float) (1 / S),   mu = (float) (W / S)
     *   gl = gradLogProb[r] / t,   ge = gradEntropy[r] / t       (float32; ge = 0 when gradEntropy is null)
     *   k_j = ge == 0 ? -gl : fma(-ge, c_j - mu, -gl)            (= -(gl + ge (log p_j + H)))
     *   p_j = e_j * rS
     *   g_j = p_j * k_j                                           (j != label)
     *   g_label = fma(p_label, k_label, gl)
     * </pre>
     * Every implementation evaluates exactly these float operations, so gradients are bit-identical. Logits with
     * {@code e_j = 0} (including {@code -inf}) get a gradient of (signed) zero, except the label's {@code gl}.
     *
     * @param logits       rows of float32 or bf16 logits, as given to {@link #logProbs}.
     * @param labels       int32 labels, as for {@link #logProbs}.
     * @param temperature  as for {@link #logProbs}.
     * @param rowMask      as for {@link #logProbs}; masked rows get exactly {@code +0.0f} in all {@code vocab}
     *                     gradient elements and none of their inputs is read.
     * @param gradLogProb  float32, at least {@code rows}: d objective / d log_prob per row.
     * @param gradEntropy  float32, at least {@code rows}: d objective / d entropy per row; or null (0).
     * @param gradLogits   float32 output with the row layout of {@code logits} (same rows and row stride, at least
     *                     {@code logits.requiredLength()} elements; only the first {@code vocab} elements of each
     *                     row are written). It may be the logits' own memory when they are float32 (in place, the
     *                     logits are then overwritten); otherwise it must not overlap them.
     */
    default void logProbsBackward(Logits logits, OffHeapArray labels, double temperature, OffHeapArray rowMask,
                                  OffHeapArray gradLogProb, OffHeapArray gradEntropy, OffHeapArray gradLogits) {
        logProbsBackward(logits, labels, temperature, rowMask, gradLogProb, gradEntropy, gradLogits, null);
    }

    /**
     * {@link #logProbsBackward(Logits, OffHeapArray, double, OffHeapArray, OffHeapArray, OffHeapArray,
     * OffHeapArray)} from the statistics a forward saved: the max and exp-sum passes are skipped, one exp per logit
     * remains. The gradient is the same bits as without them.
     *
     * @param stats statistics filled by {@link #logProbs(Logits, OffHeapArray, double, OffHeapArray, OffHeapArray,
     *              OffHeapArray, SoftmaxStats)} over the same logits (unchanged since), labels, temperature and
     *              mask; or null (computed here).
     * @throws IllegalArgumentException when {@code stats} was filled for another shape or temperature, or a row
     *                                  valid here was masked in that forward.
     */
    void logProbsBackward(Logits logits, OffHeapArray labels, double temperature, OffHeapArray rowMask,
                          OffHeapArray gradLogProb, OffHeapArray gradEntropy, OffHeapArray gradLogits,
                          SoftmaxStats stats);

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
     * verl's advantage estimator named by {@code spec} ({@code algorithm.adv_estimator}): advantages and returns
     * per token, exactly as verl's {@code core_algos} computes them (see {@link io.rlvec.reference.Advantages} for
     * every formula and where the results differ from verl's float32 arithmetic). Group ids come from
     * {@code inputs.index()} in any order.
     *
     * @param spec       the estimator and its parameters.
     * @param batch      token_level_rewards and the response mask (plus values for gae).
     * @param inputs     per-sequence inputs (group ids for the group estimators, reward_baselines for remax);
     *                   may be null for gae and reinforce_plus_plus.
     * @param advantages F32 output, at least {@code batch.numTokens()} elements.
     * @param returns    F32 output, at least {@code batch.numTokens()} elements, not overlapping advantages.
     * @throws IllegalArgumentException for a missing column or input, a short buffer, or verl's own errors
     *                                  (a pass@k group of one sample, whitening over at most one valid token),
     *                                  before anything is written.
     */
    void advantages(AdvantageSpec spec, TokenBatch batch, AdvantageInputs inputs, OffHeapArray advantages,
                    OffHeapArray returns);

    /**
     * verl's in-reward KL penalty ({@code ray_trainer.apply_kl_penalty}): {@code kld = kl_penalty(old_log_prob,
     * ref_log_prob) * response_mask}, {@code token_level_rewards = token_level_scores - beta * kld}, and the
     * step's {@code current_kl}, the mean over sequences of each sequence's masked mean of kld (verl's
     * {@code actor/reward_kl_penalty}; feed it to {@link KlController#update} with the number of sequences).
     *
     * @param kl         the estimator ({@code algorithm.kl_penalty}); {@code full} is refused.
     * @param beta       the coefficient, {@link KlController#value()} before the step's update.
     * @param batch      token_level_scores, old_log_prob, ref_log_prob and the mask.
     * @param kldOut     F32 output, the masked kld per token.
     * @param rewardsOut F32 output, token_level_rewards (it may be the token_level_scores column itself).
     * @return current_kl.
     */
    double rewardKlPenalty(KlPenalty kl, double beta, TokenBatch batch, OffHeapArray kldOut, OffHeapArray rewardsOut);

    /**
     * verl's {@code compute_rollout_correction_and_rejection_mask} ({@code rollout_corr_helper.py}): importance
     * weights between the training policy ({@code old_log_prob}) and the rollout policy ({@code rollout_log_prob}),
     * the rejection-sampling mask, and every {@code rollout_corr/*} metric verl reports (see
     * {@code io.rlvec.reference.RolloutCorrection} for the formulas and {@link RolloutCorrectionResult} for the
     * names).
     *
     * @param spec         IS level and threshold, batch normalisation, rejection options and thresholds.
     * @param batch        old_log_prob, rollout_log_prob and the response mask.
     * @param isWeightsOut F32 output for the IS weights (0 outside the mask), or null; written only when the spec
     *                     computes IS weights.
     * @param maskOut      F32 output, {@code response_mask * keep}; it may be the batch's mask column itself.
     * @param out          receives the metrics.
     * @throws IllegalArgumentException for a missing column or a short buffer, a mask without any valid token,
     *                                  or (as verl, whose effective sample size divides by zero) IcePop weights
     *                                  that are all 0; nothing is written then.
     */
    void rolloutCorrection(RolloutCorrectionSpec spec, TokenBatch batch, OffHeapArray isWeightsOut,
                           OffHeapArray maskOut, RolloutCorrectionResult out);
}
