package io.rlvec.cli.diagnose;

import java.util.List;

/**
 * The quantities the rules read, each with the log keys that carry it, first match wins: verl's current names,
 * verl's older names ({@code actor/entropy_loss} held the entropy in verl 0.1-0.3, {@code critic/kl} the KL in
 * the reward), the keys only this engine writes (the A&gt;0 / A&lt;0 split), and TRL's names.
 */
public enum Metric {
    /** The policy-gradient loss; TRL's {@code loss} also holds beta * KL. */
    PG_LOSS("pg_loss", "actor/pg_loss", "loss"),
    /** The part of pg_loss from tokens with A &gt; 0 (this engine only). */
    PG_LOSS_POS("pg_loss A>0 part", "actor/pg_loss_pos_adv"),
    /** The part of pg_loss from tokens with A &lt; 0 (this engine only). */
    PG_LOSS_NEG("pg_loss A<0 part", "actor/pg_loss_neg_adv"),
    /** Among A &gt; 0 tokens, the share with ratio &gt; 1 (this engine only). */
    POS_RATIO_GT1("A>0 share with ratio>1", "actor/pos_adv_ratio_gt1"),
    /** Among A &lt; 0 tokens, the share with ratio &gt; 1 (this engine only). */
    NEG_RATIO_GT1("A<0 share with ratio>1", "actor/neg_adv_ratio_gt1"),
    /** Share of tokens where the PPO clip is active. */
    CLIPFRAC("pg_clipfrac", "actor/pg_clipfrac", "clip_ratio/region_mean", "clip_ratio"),
    /** Share of A &lt; 0 tokens held by the dual-clip bound clip_ratio_c. */
    CLIPFRAC_LOWER("pg_clipfrac_lower", "actor/pg_clipfrac_lower"),
    /** mean(old_log_prob - log_prob) over valid tokens: how far the update moved the policy. */
    PPO_KL("ppo_kl", "actor/ppo_kl"),
    /** Mean token entropy of the policy. */
    ENTROPY("entropy", "actor/entropy", "actor/entropy_loss", "entropy"),
    /** KL to the reference policy: the KL loss, or the KL in the reward. */
    KL_REF("KL to reference", "actor/kl_loss", "actor/reward_kl_penalty", "critic/kl", "kl"),
    /** Mean reward (verl's score before KL shaping where logged). */
    REWARD("reward", "critic/score/mean", "critic/rewards/mean", "reward", "reward/mean"),
    /** Largest reward of the batch. */
    REWARD_MAX("reward max", "critic/score/max", "critic/rewards/max"),
    /** Smallest reward of the batch. */
    REWARD_MIN("reward min", "critic/score/min", "critic/rewards/min"),
    /** Mean response length in tokens. */
    RESPONSE_LENGTH("response length", "response_length/mean", "completion_length", "completions/mean_length"),
    /** Longest response of the batch. */
    RESPONSE_LENGTH_MAX("response length max", "response_length/max", "completions/max_length"),
    /** Share of responses cut at the maximum length. */
    RESPONSE_CLIP("response clip ratio", "response_length/clip_ratio", "completions/clipped_ratio"),
    /** The actor's gradient norm before clipping. */
    GRAD_NORM("grad_norm", "actor/grad_norm", "grad_norm"),
    /** The critic's value loss (present only with a critic). */
    VF_LOSS("vf_loss", "critic/vf_loss"),
    /** Mean value prediction (present only with a critic). */
    VALUES("values", "critic/values/mean", "critic/vpred_mean"),
    /** Mean advantage over tokens. */
    ADVANTAGE_MEAN("advantage mean", "critic/advantages/mean");

    private final String label;
    private final List<String> keys;

    Metric(final String label, final String... keys) {
        this.label = label;
        this.keys = List.of(keys);
    }

    /** @return a short name for tables and charts */
    public String label() {
        return label;
    }

    /** @return the log keys that carry this quantity, in order of preference */
    public List<String> keys() {
        return keys;
    }
}
