package io.rlvec;

import java.util.Locale;

/**
 * verl's advantage estimators, by their {@code algorithm.adv_estimator} names (verl's {@code AdvantageEstimator}
 * enum, in its order). Formulas: {@link io.rlvec.reference.Advantages}.
 */
public enum AdvantageEstimator {
    /** Generalised advantage estimation with a critic; advantages whitened over the batch. */
    GAE("gae", false),
    /** Group-normalised outcome reward: {@code (s - mean_g) / (std_g + eps)} or {@code s - mean_g}. */
    GRPO("grpo", true),
    /** Discounted returns whitened over the batch. */
    REINFORCE_PLUS_PLUS("reinforce_plus_plus", false),
    /** Group-mean baseline, then whitened over the batch. */
    REINFORCE_PLUS_PLUS_BASELINE("reinforce_plus_plus_baseline", true),
    /** Returns minus the greedy rollout's reward. */
    REMAX("remax", false),
    /** Leave-one-out baseline; a singleton group keeps its raw score. */
    RLOO("rloo", true),
    /** Length-weighted group baseline. */
    OPO("opo", true),
    /** Only each group's best sample gets {@code r_max - r_second}. */
    GRPO_PASSK("grpo_passk", true),
    /** {@code alpha * (s - mean_g) / f_norm}, alpha = batch size / non-zero scores. */
    GPG("gpg", true),
    /** Leave-one-out baseline written with bincount; a singleton group gets 0. */
    RLOO_VECTORIZED("rloo_vectorized", true),
    /** GRPO through verl's group_mean_std (release-dependent variance). */
    GRPO_VECTORIZED("grpo_vectorized", true),
    /** Per-position baseline weighted by the cumulative policy-gradient variance proxy (old_log_probs, sum_pi_squared). */
    OPTIMAL_TOKEN_BASELINE("optimal_token_baseline", true),
    /** The same on each trajectory's valid tokens, aligned by valid-token index (multi-turn). */
    TIR_OPTIMAL_TOKEN_BASELINE("tir_optimal_token_baseline", true),
    /** Several reward components, each group-normalised (grpo), weighted, summed, then whitened. */
    GDPO("gdpo", true);

    private final String verlName;
    private final boolean grouped;

    AdvantageEstimator(final String verlName, final boolean grouped) {
        this.verlName = verlName;
        this.grouped = grouped;
    }

    /** @return verl's name ({@code algorithm.adv_estimator}). */
    public String verlName() {
        return verlName;
    }

    /** @return whether the estimator needs the group id of each sequence ({@code index} / {@code uid}). */
    public boolean grouped() {
        return grouped;
    }

    /**
     * @param name verl's name, case-insensitive.
     * @return the estimator.
     * @throws IllegalArgumentException for a name verl does not have, or one this library does not compute.
     */
    public static AdvantageEstimator fromVerl(final String name) {
        final String n = name == null ? "" : name.trim().toLowerCase(Locale.ROOT);
        for (final AdvantageEstimator e : values()) {
            if (e.verlName.equals(n)) {
                return e;
            }
        }
        throw new IllegalArgumentException("unknown advantage estimator '" + name + "'; known: "
            + java.util.Arrays.stream(values()).map(AdvantageEstimator::verlName).toList());
    }
}
