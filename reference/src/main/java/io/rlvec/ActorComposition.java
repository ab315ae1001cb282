package io.rlvec;

/**
 * How verl's actor composes its loss ({@code dp_actor.update_policy}), and the per-token weights of its gradient,
 * shared by every engine so that they round identically.
 *
 * <pre>
 *   pg_loss      = policy loss, aggregated                         (compute_policy_loss_&lt;mode&gt; + agg_loss)
 *   entropy_agg  = agg_loss(entropy)                               (when calculate_entropy or entropy_coeff != 0)
 *   pg_loss     -= entropy_agg * entropy_coeff                     (in place: actor/pg_loss includes the bonus)
 *   kl_loss      = agg_loss(kl_penalty(log_prob, ref_log_prob))    (when use_kl_loss)
 *   policy_loss  = pg_loss + kl_loss * kl_loss_coef
 *   loss         = policy_loss * micro_batch_scale                 (dp_actor's loss_scale_factor)
 * </pre>
 * Every scalar operation is float32 with the Python float coefficients rounded to float32 first, as torch does.
 * dp_actor reports {@code actor/pg_loss} and {@code actor/kl_loss} as {@code .item() * loss_scale_factor} (in
 * double, accumulated over micro-batches: the value of one call is one micro-batch's term), {@code actor/entropy}
 * unscaled and {@code actor/kl_coef}.
 *
 * <p>All three terms aggregate with the spec's {@code loss_agg_mode} and its global-batch arguments. With those
 * arguments unset this is dp_actor exactly (its config carries no global batch info, so every {@code agg_loss}
 * uses local denominators); with them set it is verl's {@code ppo_loss} ({@code workers/utils/losses.py}),
 * which passes {@code global_batch_info} to all three.
 *
 * <p>Gradient: d loss / d log_prob = micro_batch_scale * (d pg_loss / d log_prob)
 * + w_kl * (d kld / d log_prob), and d loss / d entropy = w_ent per valid token, where w_kl and w_ent are the
 * per-sequence weights below (computed in double, rounded to float once).
 */
public final class ActorComposition {
    private ActorComposition() {
    }

    /** @return the float factor applied to the policy-loss gradient: micro_batch_scale rounded to float. */
    public static float pgScale(final LossSpec spec) {
        return (float) spec.microBatchScale();
    }

    /**
     * @param denominator the aggregation denominator (see {@link Aggregation#denominator}).
     * @param count       valid tokens of the token's sequence.
     * @return d loss / d kld for a valid token: tokenWeight * kl_loss_coef * micro_batch_scale.
     */
    public static float klTokenWeight(final LossSpec spec, final double denominator, final long count) {
        return (float) (Aggregation.tokenWeight(spec, denominator, count) * spec.klLossCoef()
            * spec.microBatchScale());
    }

    /**
     * @param denominator the aggregation denominator.
     * @param count       valid tokens of the token's sequence.
     * @return d loss / d entropy for a valid token: -entropy_coeff * tokenWeight * micro_batch_scale.
     */
    public static float entropyTokenWeight(final LossSpec spec, final double denominator, final long count) {
        return (float) (-spec.entropyCoeff() * Aggregation.tokenWeight(spec, denominator, count)
            * spec.microBatchScale());
    }
}
