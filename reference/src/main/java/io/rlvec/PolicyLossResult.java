package io.rlvec;

import java.util.LinkedHashMap;
import java.util.Map;

/**
 * The output of {@link Engine#policyLoss}: the aggregated pg_loss, verl's metrics, the sign split users read the
 * pg_loss curve with, and the raw mergeable sums behind all of them.
 *
 * <p>One instance is reused across calls (nothing is allocated per call); an engine calls {@link #reset()} and
 * then writes every raw sum. Metrics are derived from the sums by this class, so both engines share that
 * arithmetic. Micro-batch results {@link #merge merge} into a whole-batch result: sums add, and when every
 * micro-batch used the same global denominators the loss and the contributions are recomputed from the merged
 * numerators, so the merged loss is the whole batch's (to double rounding of the numerator), not a sum of
 * float-rounded parts.
 */
public final class PolicyLossResult {

    /** Raw sums over valid tokens (counts are exact integers held in doubles). */
    public enum Stat {
        /** sum of per-sequence aggregation terms of the per-token loss. */
        LOSS_NUMERATOR,
        /** the same restricted to tokens with A &gt; 0. */
        POS_NUMERATOR,
        /** the same restricted to tokens with A &lt; 0. */
        NEG_NUMERATOR,
        /** valid tokens. */
        VALID_TOKENS,
        /** sequences with at least one valid token. */
        VALID_SEQUENCES,
        /** sum of -clamp(log_prob - old_log_prob, -20, 20) (ppo_kl numerator). */
        NEG_LOG_RATIO_SUM,
        /** tokens where the clipped loss exceeds the unclipped one (pg_clipfrac numerator). */
        CLIPPED,
        /** tokens with A &lt; 0 where the dual-clip bound is active (pg_clipfrac_lower numerator). */
        DUAL_CLIPPED,
        /** tokens with A &gt; 0. */
        POS_TOKENS,
        /** tokens with A &lt; 0. */
        NEG_TOKENS,
        /** tokens with A &gt; 0 and ratio &gt; 1. */
        POS_RATIO_ABOVE_ONE,
        /** tokens with A &lt; 0 and ratio &gt; 1. */
        NEG_RATIO_ABOVE_ONE,
        /** tokens with A &lt; 0 and ratio &lt; 1 - clip_ratio_low. */
        CLIPPED_LOW,
        /** tokens with A &gt; 0 and ratio &gt; 1 + clip_ratio_high. */
        CLIPPED_HIGH;

        /** Number of stats. */
        public static final int COUNT = values().length;
    }

    private final double[] stats = new double[Stat.COUNT];
    /** The spec of the last {@link #finish}, null after {@link #reset()}: merge needs its aggregation mode. */
    private LossSpec spec;
    private double denominator;
    private float loss;
    private float posContribution;
    private float negContribution;
    /** bypass_mode's rollout_corr/* metrics (empty for the other modes). */
    private final RolloutCorrectionResult rolloutCorrection = new RolloutCorrectionResult();
    /** Whether bypass_mode ran its REINFORCE loss (verl then reports only ppo_kl of the policy metrics). */
    private boolean reinforce;

    /** @return bypass_mode's {@code rollout_corr/*} metrics (empty after any other mode). */
    public RolloutCorrectionResult rolloutCorrection() {
        return rolloutCorrection;
    }

    /**
     * Records bypass_mode's extras after its inner loss (called by engines): its rollout-correction metrics and
     * whether the loss was REINFORCE; ppo_kl's numerator becomes {@code klNumerator} (REINFORCE's unclamped
     * {@code sum(old_log_prob - log_prob)}) when {@code reinforce}.
     */
    public void bypass(final RolloutCorrectionResult metrics, final boolean reinforce, final double klNumerator) {
        rolloutCorrection.copyFrom(metrics);
        this.reinforce = reinforce;
        if (reinforce) {
            stats[Stat.NEG_LOG_RATIO_SUM.ordinal()] = klNumerator;
        }
    }

    /** Zeroes every sum. */
    public void reset() {
        rolloutCorrection.reset();
        reinforce = false;
        java.util.Arrays.fill(stats, 0.0);
        spec = null;
        denominator = 0.0;
        loss = 0f;
        posContribution = 0f;
        negContribution = 0f;
    }

    /** Adds {@code v} to a raw sum (called by engines). */
    public void add(final Stat s, final double v) {
        stats[s.ordinal()] += v;
    }

    /** @return a raw sum. */
    public double stat(final Stat s) {
        return stats[s.ordinal()];
    }

    /**
     * Finishes a call: computes the loss and the sign contributions from the numerators with the given
     * denominator (see {@link Aggregation}).
     */
    public void finish(final LossSpec spec, final double denominator) {
        this.spec = spec;
        this.denominator = denominator;
        this.loss = (float) Aggregation.loss(spec, stat(Stat.LOSS_NUMERATOR), denominator);
        this.posContribution = (float) Aggregation.loss(spec, stat(Stat.POS_NUMERATOR), denominator);
        this.negContribution = (float) Aggregation.loss(spec, stat(Stat.NEG_NUMERATOR), denominator);
    }

    /**
     * Adds another micro-batch's sums and finished values into this one. When both were finished with the same
     * aggregation (mode and dp_size) and the same denominator (the global denominators verl's
     * {@code global_batch_info} passes), the loss and the contributions are recomputed from the merged numerators:
     * then the merged loss is the whole batch's. Otherwise (micro-batches normalised locally) the finished losses
     * add, as a trainer accumulating micro-batch losses does. Merging into a reset result copies the other.
     * bypass_mode's {@code rollout_corr/*} metrics merge as verl's trainer reduces them
     * ({@link RolloutCorrectionResult#merge}).
     */
    public void merge(final PolicyLossResult other) {
        for (int i = 0; i < stats.length; i++) {
            stats[i] += other.stats[i];
        }
        rolloutCorrection.merge(other.rolloutCorrection);
        reinforce |= other.reinforce;
        if (spec == null) {
            spec = other.spec;
            denominator = other.denominator;
            loss = other.loss;
            posContribution = other.posContribution;
            negContribution = other.negContribution;
        } else if (other.spec != null && other.denominator == denominator
            && other.spec.lossAggMode() == spec.lossAggMode() && other.spec.dpSize() == spec.dpSize()) {
            finish(spec, denominator);
        } else {
            loss += other.loss;
            posContribution += other.posContribution;
            negContribution += other.negContribution;
            denominator = other.denominator;
        }
    }

    private static float tokenMean(final double count, final double tokens) {
        // verl: masked_sum / (mask.sum() + 1e-8); the 1e-8 vanishes in float32 for tokens >= 1.
        return tokens > 0 ? (float) (count / tokens) : 0f;
    }

    /** @return the aggregated policy loss, {@code actor/pg_loss} of this call. */
    public float pgLoss() {
        return loss;
    }

    /** @return the denominator the loss used. */
    public double denominator() {
        return denominator;
    }

    /** @return {@code actor/pg_clipfrac}: the share of valid tokens the mode counts as clipped. */
    public float pgClipfrac() {
        return tokenMean(stat(Stat.CLIPPED), stat(Stat.VALID_TOKENS));
    }

    /**
     * @return {@code actor/ppo_kl}: the masked mean of the mode's kl term: old_log_prob - log_prob after the
     *         [-20, 20] clamp (vanilla, dppo, sapo, cispo), unclamped (gspo, geo_mean, clip_cov, dro), or
     *         |log_prob - old_log_prob| (kl_cov).
     */
    public float ppoKl() {
        return tokenMean(stat(Stat.NEG_LOG_RATIO_SUM), stat(Stat.VALID_TOKENS));
    }

    /** @return {@code actor/pg_clipfrac_lower}: share of valid tokens where the dual-clip bound is active. */
    public float pgClipfracLower() {
        return tokenMean(stat(Stat.DUAL_CLIPPED), stat(Stat.VALID_TOKENS));
    }

    /** @return the part of pg_loss contributed by tokens with A &gt; 0. */
    public float posContribution() {
        return posContribution;
    }

    /** @return the part of pg_loss contributed by tokens with A &lt; 0. */
    public float negContribution() {
        return negContribution;
    }

    /** @return valid tokens with A &gt; 0. */
    public long posTokens() {
        return (long) stat(Stat.POS_TOKENS);
    }

    /** @return valid tokens with A &lt; 0. */
    public long negTokens() {
        return (long) stat(Stat.NEG_TOKENS);
    }

    /** @return among A &gt; 0 tokens, the share with ratio &gt; 1. */
    public float posRatioAboveOne() {
        return tokenMean(stat(Stat.POS_RATIO_ABOVE_ONE), stat(Stat.POS_TOKENS));
    }

    /** @return among A &lt; 0 tokens, the share with ratio &gt; 1. */
    public float negRatioAboveOne() {
        return tokenMean(stat(Stat.NEG_RATIO_ABOVE_ONE), stat(Stat.NEG_TOKENS));
    }

    /** @return share of valid tokens with A &lt; 0 and ratio &lt; 1 - clip_ratio_low. */
    public float clippedLowFrac() {
        return tokenMean(stat(Stat.CLIPPED_LOW), stat(Stat.VALID_TOKENS));
    }

    /** @return share of valid tokens with A &gt; 0 and ratio &gt; 1 + clip_ratio_high. */
    public float clippedHighFrac() {
        return tokenMean(stat(Stat.CLIPPED_HIGH), stat(Stat.VALID_TOKENS));
    }

    /** @return share of valid tokens clipped on the side their advantage pushes (low or high). */
    public float clippedFrac() {
        return tokenMean(stat(Stat.CLIPPED_LOW) + stat(Stat.CLIPPED_HIGH), stat(Stat.VALID_TOKENS));
    }

    /** @return valid tokens. */
    public long validTokens() {
        return (long) stat(Stat.VALID_TOKENS);
    }

    /** @return sequences with at least one valid token. */
    public long validSequences() {
        return (long) stat(Stat.VALID_SEQUENCES);
    }

    /** @return every metric under verl's (or, for the split, RLVec's) name; allocates, not for hot paths. */
    public Map<String, Double> metrics() {
        final Map<String, Double> m = new LinkedHashMap<>();
        m.put("actor/pg_loss", (double) pgLoss());
        // The keys the mode's verl function returns: gpg none, dro and kl_cov only ppo_kl, clip_cov no _lower.
        // bypass_mode's REINFORCE reports what dro does (ppo_kl only); its ppo_clip, vanilla's keys.
        final PolicyLossMode mode = reinforce ? PolicyLossMode.DRO
            : spec == null ? PolicyLossMode.VANILLA : spec.policyLossMode();
        if (mode != PolicyLossMode.GPG && mode != PolicyLossMode.DRO && mode != PolicyLossMode.KL_COV) {
            m.put("actor/pg_clipfrac", (double) pgClipfrac());
        }
        if (mode != PolicyLossMode.GPG) {
            m.put("actor/ppo_kl", (double) ppoKl());
        }
        if (mode != PolicyLossMode.GPG && mode != PolicyLossMode.DRO && mode != PolicyLossMode.KL_COV
            && mode != PolicyLossMode.CLIP_COV) {
            m.put("actor/pg_clipfrac_lower", (double) pgClipfracLower());
        }
        m.put("actor/pg_loss_pos_adv", (double) posContribution());
        m.put("actor/pg_loss_neg_adv", (double) negContribution());
        m.put("actor/pos_adv_tokens", (double) posTokens());
        m.put("actor/neg_adv_tokens", (double) negTokens());
        m.put("actor/pos_adv_ratio_gt1", (double) posRatioAboveOne());
        m.put("actor/neg_adv_ratio_gt1", (double) negRatioAboveOne());
        m.put("actor/clipfrac_low", (double) clippedLowFrac());
        m.put("actor/clipfrac_high", (double) clippedHighFrac());
        m.put("actor/clipfrac_sign", (double) clippedFrac());
        m.put("actor/valid_tokens", (double) validTokens());
        m.put("actor/valid_sequences", (double) validSequences());
        m.putAll(rolloutCorrection.asMap());
        return m;
    }

    @Override
    public String toString() {
        return "PolicyLossResult" + metrics();
    }
}
