package io.rlvec;

/** Per-token float32 columns of a {@link TokenBatch}, named as in verl's batch keys. */
public enum Column {
    /** log-prob of the sampled token under the current policy (the differentiated input). */
    LOG_PROB("log_prob"),
    /** log-prob under the policy that produced the data. */
    OLD_LOG_PROB("old_log_prob"),
    /** log-prob under the reference policy (KL loss). */
    REF_LOG_PROB("ref_log_prob"),
    /** advantage estimates. */
    ADVANTAGES("advantages"),
    /** token-level rollout importance-sampling weights (rollout correction). */
    ROLLOUT_IS_WEIGHTS("rollout_is_weights"),
    /** log-prob under the rollout engine's policy (rollout correction; verl's {@code rollout_log_probs}). */
    ROLLOUT_LOG_PROB("rollout_log_prob"),
    /** old value predictions, the rollout's (value loss: the clip centre; gae: the baseline). */
    VALUES("values"),
    /** returns (value loss). */
    RETURNS("returns"),
    /** the critic's current value predictions (value loss: the differentiated input). */
    VPREDS("vpreds"),
    /** token-level scores (rewards). */
    TOKEN_LEVEL_SCORES("token_level_scores"),
    /** Rewards per token after the in-reward KL penalty, the advantage estimators' input. */
    TOKEN_LEVEL_REWARDS("token_level_rewards"),
    /** Sum over the vocabulary of the squared token probabilities, per token (the optimal-token baselines). */
    SUM_PI_SQUARED("sum_pi_squared"),
    /** response mask: a token is valid where this is non-zero. */
    RESPONSE_MASK("response_mask");

    private final String verlName;

    Column(final String verlName) {
        this.verlName = verlName;
    }

    /** @return verl's key for this column. */
    public String verlName() {
        return verlName;
    }
}
