package io.rlvec;

import java.util.LinkedHashMap;
import java.util.Map;

/**
 * The output of {@link Engine#actorLoss}: the composed actor loss of one (micro-)batch, its terms, and the metrics
 * dp_actor reports, under verl's names (see {@link ActorComposition} for the formula).
 *
 * <p>Reused across calls like {@link PolicyLossResult}: an engine fills {@link #policy()}, {@link #entropy()} and
 * {@link #kl()} (each keeps its mergeable sums) and then calls {@link #finish}, which does the scalar composition
 * once for every engine.
 */
public final class ActorLossResult {
    private final PolicyLossResult policy = new PolicyLossResult();
    private final AggResult entropy = new AggResult();
    private final AggResult kl = new AggResult();
    private boolean hasEntropy;
    private boolean hasKl;
    private double entropyCoeff;
    private double klCoef;
    private double microBatchScale;
    private float pgLoss;
    private float policyLoss;
    private float loss;

    /** @return the policy-loss term and its metrics (written by engines). */
    public PolicyLossResult policy() {
        return policy;
    }

    /** @return the aggregated entropy and its mergeable parts (meaningful when {@link #hasEntropy()}). */
    public AggResult entropy() {
        return entropy;
    }

    /** @return the aggregated KL penalty and its mergeable parts (meaningful when {@link #hasKl()}). */
    public AggResult kl() {
        return kl;
    }

    /**
     * Composes the terms (called by engines after they filled {@link #policy()}, {@link #entropy()},
     * {@link #kl()}).
     *
     * @param spec       the spec of the call.
     * @param hasEntropy whether {@link #entropy()} was computed this call.
     * @param hasKl      whether {@link #kl()} was computed this call.
     */
    public void finish(final LossSpec spec, final boolean hasEntropy, final boolean hasKl) {
        this.hasEntropy = hasEntropy;
        this.hasKl = hasKl;
        this.entropyCoeff = spec.entropyCoeff();
        this.klCoef = spec.klLossCoef();
        this.microBatchScale = spec.microBatchScale();
        float pg = policy.pgLoss();
        if (hasEntropy && spec.entropyCoeff() != 0.0) {
            // dp_actor: policy_loss -= entropy_agg * entropy_coeff, in place on pg_loss's tensor.
            pg = pg - entropy.loss() * (float) spec.entropyCoeff();
        }
        float total = pg;
        if (hasKl) {
            total = total + kl.loss() * (float) spec.klLossCoef();
        }
        this.pgLoss = pg;
        this.policyLoss = total;
        this.loss = total * (float) spec.microBatchScale();
    }

    /** @return whether the entropy term was computed. */
    public boolean hasEntropy() {
        return hasEntropy;
    }

    /** @return whether the KL term was computed. */
    public boolean hasKl() {
        return hasKl;
    }

    /** @return pg_loss after dp_actor's in-place entropy bonus, before the micro-batch scale. */
    public float pgLoss() {
        return pgLoss;
    }

    /** @return the aggregated entropy, NaN when not computed. */
    public float entropyAgg() {
        return hasEntropy ? entropy.loss() : Float.NaN;
    }

    /** @return the aggregated KL penalty (before kl_loss_coef), NaN when not computed. */
    public float klLoss() {
        return hasKl ? kl.loss() : Float.NaN;
    }

    /** @return pg_loss - entropy_coeff * entropy_agg + kl_loss_coef * kl_loss. */
    public float policyLoss() {
        return policyLoss;
    }

    /** @return policy_loss * micro_batch_scale: the value whose gradient the engine returns. */
    public float loss() {
        return loss;
    }

    /** @return {@code actor/pg_loss} as dp_actor adds it for this micro-batch: pg_loss * micro_batch_scale. */
    public double pgLossMetric() {
        return (double) pgLoss * microBatchScale;
    }

    /** @return {@code actor/kl_loss} as dp_actor adds it for this micro-batch, NaN when not computed. */
    public double klLossMetric() {
        return hasKl ? (double) kl.loss() * microBatchScale : Double.NaN;
    }

    /** @return the entropy_coeff of the last call. */
    public double entropyCoeff() {
        return entropyCoeff;
    }

    /** @return {@code actor/kl_coef}: the kl_loss_coef of the last call. */
    public double klCoef() {
        return klCoef;
    }

    /**
     * @return every metric under verl's names: the policy loss's metrics with {@code actor/pg_loss} as dp_actor
     *         reports it, then {@code actor/entropy}, {@code actor/kl_loss}, {@code actor/kl_coef} when computed.
     *         Allocates; not for hot paths.
     */
    public Map<String, Double> metrics() {
        final Map<String, Double> m = new LinkedHashMap<>(policy.metrics());
        m.put("actor/pg_loss", pgLossMetric());
        if (hasEntropy) {
            m.put("actor/entropy", (double) entropy.loss());
        }
        if (hasKl) {
            m.put("actor/kl_loss", klLossMetric());
            m.put("actor/kl_coef", klCoef);
        }
        return m;
    }

    @Override
    public String toString() {
        return "ActorLossResult[loss=" + loss + ", policy_loss=" + policyLoss + ", " + metrics() + "]";
    }
}
