package io.rlvec;

import java.util.Objects;

/**
 * What {@link Engine#advantages} computes: the estimator and its parameters, under verl's names
 * ({@code algorithm.gamma}, {@code algorithm.lam}, {@code algorithm.norm_adv_by_std_in_grpo}, the estimators'
 * {@code epsilon} and gpg's {@code f_norm}) and the verl release whose semantics it follows
 * ({@code verl_semantics}: REINFORCE++ across masked spans and grpo_vectorized's variance changed between them).
 * Immutable.
 */
public final class AdvantageSpec {
    private final AdvantageEstimator estimator;
    private final double gamma;
    private final double lam;
    private final double epsilon;
    private final boolean normAdvByStd;
    private final double fNorm;
    private final VerlRelease release;
    private final Boolean handleZeroTail;
    private final java.util.List<String> gdpoRewardKeys;
    private final double[] gdpoRewardWeights;

    private AdvantageSpec(final Builder b) {
        estimator = b.estimator;
        gamma = b.gamma;
        lam = b.lam;
        epsilon = b.epsilon;
        normAdvByStd = b.normAdvByStd;
        fNorm = b.fNorm;
        release = b.release;
        handleZeroTail = b.handleZeroTail;
        gdpoRewardKeys = b.gdpoRewardKeys;
        gdpoRewardWeights = b.gdpoRewardWeights;
        if (gdpoRewardKeys != null && gdpoRewardWeights != null && gdpoRewardWeights.length != gdpoRewardKeys.size()) {
            throw new IllegalArgumentException("gdpo_reward_weights has " + gdpoRewardWeights.length
                + " values, gdpo_reward_keys " + gdpoRewardKeys.size());
        }
    }

    /**
     * @return gdpo's {@code algorithm.gdpo_reward_keys}, the reward components by name ({@link AdvantageInputs});
     *         null when not configured (gdpo then normalises token_level_rewards alone, as verl does without a
     *         config).
     */
    public java.util.List<String> gdpoRewardKeys() {
        return gdpoRewardKeys;
    }

    /** @return the weight of gdpo's component {@code k} ({@code gdpo_reward_weights}, default 1). */
    public double gdpoRewardWeight(final int k) {
        return gdpoRewardWeights == null ? 1.0 : gdpoRewardWeights[k];
    }

    /** @return a builder with verl's defaults for {@code estimator}. */
    public static Builder builder(final AdvantageEstimator estimator) {
        return new Builder(Objects.requireNonNull(estimator, "estimator"));
    }

    /** @return the estimator. */
    public AdvantageEstimator estimator() {
        return estimator;
    }

    /** @return the discount {@code gamma} (gae, reinforce_plus_plus; default 1.0). */
    public double gamma() {
        return gamma;
    }

    /** @return GAE's {@code lam} (default 1.0). */
    public double lam() {
        return lam;
    }

    /**
     * @return the estimator's {@code epsilon}: as set, else verl's default (1e-8 for the optimal-token baselines,
     *         1e-6 for the others).
     */
    public double epsilon() {
        if (!Double.isNaN(epsilon)) {
            return epsilon;
        }
        return estimator == AdvantageEstimator.OPTIMAL_TOKEN_BASELINE
            || estimator == AdvantageEstimator.TIR_OPTIMAL_TOKEN_BASELINE ? 1e-8 : 1e-6;
    }

    /**
     * @return the optimal-token baselines' {@code handle_zero_tail}: as set, else verl's default (true for
     *         tir_optimal_token_baseline; for optimal_token_baseline false at 2026-01, true at 2026-08).
     */
    public boolean handleZeroTail() {
        if (handleZeroTail != null) {
            return handleZeroTail;
        }
        return estimator == AdvantageEstimator.TIR_OPTIMAL_TOKEN_BASELINE || release != VerlRelease.V2026_01;
    }

    /** @return {@code norm_adv_by_std_in_grpo} (grpo, grpo_passk, grpo_vectorized; default true). */
    public boolean normAdvByStd() {
        return normAdvByStd;
    }

    /** @return gpg's {@code f_norm} (default 1.0). */
    public double fNorm() {
        return fNorm;
    }

    /** @return the verl release whose semantics apply. */
    public VerlRelease release() {
        return release;
    }

    @Override
    public String toString() {
        return "AdvantageSpec{adv_estimator=" + estimator.verlName() + ", gamma=" + gamma + ", lam=" + lam
            + ", epsilon=" + epsilon() + ", norm_adv_by_std_in_grpo=" + normAdvByStd + ", f_norm=" + fNorm
            + ", verl_semantics=" + release.label() + "}";
    }

    /** Builder with verl's defaults. */
    public static final class Builder {
        private AdvantageEstimator estimator;
        private double gamma = 1.0;
        private double lam = 1.0;
        private double epsilon = Double.NaN;
        private Boolean handleZeroTail;
        private java.util.List<String> gdpoRewardKeys;
        private double[] gdpoRewardWeights;
        private boolean normAdvByStd = true;
        private double fNorm = 1.0;
        private VerlRelease release = VerlRelease.DEFAULT;

        private Builder(final AdvantageEstimator estimator) {
            this.estimator = estimator;
        }

        /** Sets the estimator. */
        public Builder estimator(final AdvantageEstimator e) {
            estimator = Objects.requireNonNull(e, "estimator");
            return this;
        }

        /** Sets {@code gamma}, in [0, 1]. */
        public Builder gamma(final double v) {
            gamma = inUnit("gamma", v);
            return this;
        }

        /** Sets {@code lam}, in [0, 1]. */
        public Builder lam(final double v) {
            lam = inUnit("lam", v);
            return this;
        }

        /** Sets {@code epsilon}, finite and {@code >= 0}. */
        public Builder epsilon(final double v) {
            if (!(v >= 0) || Double.isInfinite(v)) {
                throw new IllegalArgumentException("epsilon must be a finite number >= 0, got " + v);
            }
            epsilon = v;
            return this;
        }

        /** Sets the optimal-token baselines' {@code handle_zero_tail}; null = verl's default. */
        public Builder handleZeroTail(final Boolean v) {
            handleZeroTail = v;
            return this;
        }

        /** Sets gdpo's reward component names ({@code gdpo_reward_keys}); null = not configured. */
        public Builder gdpoRewardKeys(final java.util.List<String> keys) {
            gdpoRewardKeys = keys == null ? null : java.util.List.copyOf(keys);
            return this;
        }

        /** Sets gdpo's component weights ({@code gdpo_reward_weights}); null = all 1. */
        public Builder gdpoRewardWeights(final double... weights) {
            gdpoRewardWeights = weights == null ? null : weights.clone();
            return this;
        }

        /** Sets {@code norm_adv_by_std_in_grpo}. */
        public Builder normAdvByStd(final boolean v) {
            normAdvByStd = v;
            return this;
        }

        /** Sets gpg's {@code f_norm}, finite and non-zero. */
        public Builder fNorm(final double v) {
            if (v == 0 || !Double.isFinite(v)) {
                throw new IllegalArgumentException("f_norm must be a finite non-zero number, got " + v);
            }
            fNorm = v;
            return this;
        }

        /** Sets the verl release whose semantics apply. */
        public Builder release(final VerlRelease r) {
            release = Objects.requireNonNull(r, "release");
            return this;
        }

        /**
         * Sets a value by its verl key: {@code adv_estimator}, {@code gamma}, {@code lam}, {@code epsilon},
         * {@code norm_adv_by_std_in_grpo}, {@code f_norm}, {@code verl_semantics} (a release label or commit).
         *
         * @throws IllegalArgumentException for an unknown key or a value of the wrong kind.
         */
        public Builder set(final String key, final Object value) {
            switch (key) {
                case "adv_estimator" -> estimator(AdvantageEstimator.fromVerl(String.valueOf(value)));
                case "gamma" -> gamma(num(key, value));
                case "lam" -> lam(num(key, value));
                case "epsilon" -> epsilon(num(key, value));
                case "f_norm" -> fNorm(num(key, value));
                case "norm_adv_by_std_in_grpo" -> {
                    if (!(value instanceof Boolean b)) {
                        throw new IllegalArgumentException("norm_adv_by_std_in_grpo must be a boolean, got " + value);
                    }
                    normAdvByStd(b);
                }
                case "handle_zero_tail" -> {
                    if (value == null || String.valueOf(value).startsWith("default")) {
                        handleZeroTail(null);
                    } else if (value instanceof Boolean b) {
                        handleZeroTail(b);
                    } else {
                        throw new IllegalArgumentException("handle_zero_tail must be a boolean, got " + value);
                    }
                }
                case "gdpo_reward_keys" -> gdpoRewardKeys(value == null ? null
                    : ((java.util.List<?>) value).stream().map(String::valueOf).toList());
                case "gdpo_reward_weights" -> gdpoRewardWeights(value == null ? null
                    : ((java.util.List<?>) value).stream().mapToDouble(v -> ((Number) v).doubleValue()).toArray());
                case "verl_semantics" -> release(VerlRelease.fromVerl(String.valueOf(value)));
                default -> throw new IllegalArgumentException("unknown advantage key '" + key + "' (known: "
                    + "adv_estimator, gamma, lam, epsilon, norm_adv_by_std_in_grpo, f_norm, handle_zero_tail, "
                    + "gdpo_reward_keys, gdpo_reward_weights, "
                    + "verl_semantics)");
            }
            return this;
        }

        private static double num(final String key, final Object v) {
            if (v instanceof Number n) {
                return n.doubleValue();
            }
            throw new IllegalArgumentException(key + " must be a number, got " + v);
        }

        private static double inUnit(final String key, final double v) {
            if (!(v >= 0 && v <= 1)) {
                throw new IllegalArgumentException(key + " must be in [0, 1], got " + v);
            }
            return v;
        }

        /** @return the spec. */
        public AdvantageSpec build() {
            return new AdvantageSpec(this);
        }
    }
}
