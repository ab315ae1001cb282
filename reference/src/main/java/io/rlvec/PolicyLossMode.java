package io.rlvec;

/**
 * verl's {@code policy_loss.loss_mode}: which registered policy-loss function to run. Each mode names the verl
 * function it follows; {@link #since()} is the first release that registers it.
 */
public enum PolicyLossMode {
    /** {@code compute_policy_loss_vanilla}: PPO clip with asymmetric and dual clip, optional IS weights. */
    VANILLA("vanilla", VerlRelease.V2026_01),
    /** {@code compute_policy_loss_gspo}: sequence-level ratio, always seq-mean-token-mean. */
    GSPO("gspo", VerlRelease.V2026_01),
    /** {@code compute_policy_loss_sapo}: soft sigmoid gate instead of a clip, always seq-mean-token-mean. */
    SAPO("sapo", VerlRelease.V2026_01),
    /** {@code compute_policy_loss_gpg}: -log_prob * A, no metrics. */
    GPG("gpg", VerlRelease.V2026_01),
    /** {@code compute_policy_loss_clip_cov}: PPO clip with a selected subset of high-covariance tokens detached. */
    CLIP_COV("clip_cov", VerlRelease.V2026_01),
    /** {@code compute_policy_loss_kl_cov}: -A ratio with a |log-ratio| penalty on the top-covariance tokens. */
    KL_COV("kl_cov", VerlRelease.V2026_01),
    /** {@code compute_policy_loss_geo_mean}: GMPO, per-sequence geometric-mean ratio, plain mean over rows. */
    GEO_MEAN("geo_mean", VerlRelease.V2026_01),
    /** {@code compute_policy_loss_cispo}: clipped, stop-gradient IS ratio times -A log_prob. */
    CISPO("cispo", VerlRelease.V2026_01),
    /** {@code compute_policy_loss_dppo_tv}: total-variation trust region with a truncated ratio. */
    DPPO_TV("dppo_tv", VerlRelease.V2026_08),
    /** {@code compute_policy_loss_dppo_kl}: binary-KL trust region with a truncated ratio. */
    DPPO_KL("dppo_kl", VerlRelease.V2026_08),
    /** {@code compute_policy_loss_dro}: -(log_prob A - beta/2 log-ratio^2). */
    DRO("dro", VerlRelease.V2026_08),
    /**
     * {@code compute_policy_loss_bypass_mode}: old_log_prob is the rollout policy's; rollout correction against the
     * current log_prob ({@link LossSpec#rolloutCorrection()}), then vanilla on the rejection mask without IS
     * weights (loss_type ppo_clip) or -A log_prob w on it (reinforce).
     */
    BYPASS_MODE("bypass_mode", VerlRelease.V2026_01);

    private final String verlName;
    private final VerlRelease since;

    PolicyLossMode(final String verlName, final VerlRelease since) {
        this.verlName = verlName;
        this.since = since;
    }

    /** @return verl's registry name. */
    public String verlName() {
        return verlName;
    }

    /** @return the first verl release that registers the mode. */
    public VerlRelease since() {
        return since;
    }

    /**
     * @return the aggregation the mode really uses: gspo and sapo hard-code seq-mean-token-mean whatever
     *         loss_agg_mode says; the others honour it (geo_mean has its own mean, see {@link #GEO_MEAN}).
     */
    public AggMode aggregation(final AggMode configured) {
        return this == GSPO || this == SAPO ? AggMode.SEQ_MEAN_TOKEN_MEAN : configured;
    }

    /**
     * @param name verl's registry name.
     * @return the mode.
     * @throws IllegalArgumentException naming the modes this version provides.
     */
    public static PolicyLossMode fromVerl(final String name) {
        for (final PolicyLossMode m : values()) {
            if (m.verlName.equals(name)) {
                return m;
            }
        }
        final StringBuilder sb = new StringBuilder();
        for (final PolicyLossMode m : values()) {
            sb.append(sb.length() == 0 ? "" : ", ").append(m.verlName);
        }
        throw new IllegalArgumentException("policy_loss.loss_mode must be one of [" + sb + "], got '" + name + "'");
    }
}
