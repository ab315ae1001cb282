package io.rlvec;

import java.util.LinkedHashMap;
import java.util.Map;
import java.util.Objects;

/**
 * What to compute: verl's actor configuration for the loss side, immutable, with verl's key names and defaults.
 *
 * <p>Build one with {@link #builder()}, or from verl keys with {@link Builder#set(String, Object)} (the names of
 * {@code actor_rollout_ref.actor.*} and of {@code global_batch_info}). Every range is checked in
 * {@link Builder#build()}, so a kernel never sees an invalid parameter.
 *
 * <p>Two different verl values are both called {@code loss_scale_factor}: the normaliser of
 * {@code seq-mean-token-sum-norm} inside {@code agg_loss} ({@link #lossScaleFactor()}, key
 * {@code loss_scale_factor}) and dp_actor's micro-batch multiplier of the final loss
 * ({@link #microBatchScale()}, key {@code micro_batch_scale}).
 */
public final class LossSpec {
    /** Sentinel for "not given" on the optional global-batch integers. */
    public static final long UNSET = -1;

    private final PolicyLossMode policyLossMode;
    private final double clipRatio;
    private final double clipRatioLow;
    private final double clipRatioHigh;
    private final double clipRatioC;
    private final AggMode lossAggMode;
    private final int dpSize;
    private final long batchNumTokens;
    private final long globalBatchSize;
    private final double lossScaleFactor;
    private final double entropyCoeff;
    private final boolean calculateEntropy;
    private final boolean useKlLoss;
    private final double klLossCoef;
    private final KlPenalty klLossType;
    private final double temperature;
    private final double microBatchScale;
    private final VerlRelease release;
    private final double tauPos;
    private final double tauNeg;
    private final double clipCovRatio;
    private final double clipCovLb;
    private final double clipCovUb;
    private final double klCovRatio;
    private final double ppoKlCoef;
    private final double droBeta;
    private final long clipCovSeed;
    private final double cliprangeValue;
    private final LossSpec aggregationSpec;
    private final RolloutCorrectionSpec rolloutCorrection;
    private final String bypassLossType;
    private final LossSpec valueAggregationSpec;

    private LossSpec(final Builder b) {
        this.policyLossMode = b.policyLossMode;
        this.clipRatio = b.clipRatio;
        this.clipRatioLow = Double.isNaN(b.clipRatioLow) ? b.clipRatio : b.clipRatioLow;
        this.clipRatioHigh = Double.isNaN(b.clipRatioHigh) ? b.clipRatio : b.clipRatioHigh;
        this.clipRatioC = b.clipRatioC;
        this.lossAggMode = b.lossAggMode;
        this.dpSize = b.dpSize;
        this.batchNumTokens = b.batchNumTokens;
        this.globalBatchSize = b.globalBatchSize;
        this.lossScaleFactor = b.lossScaleFactor;
        this.entropyCoeff = b.entropyCoeff;
        this.calculateEntropy = b.calculateEntropy;
        this.useKlLoss = b.useKlLoss;
        this.klLossCoef = b.klLossCoef;
        this.klLossType = b.klLossType;
        this.temperature = b.temperature;
        this.microBatchScale = b.microBatchScale;
        this.release = b.release;
        this.tauPos = b.tauPos;
        this.tauNeg = b.tauNeg;
        this.clipCovRatio = b.clipCovRatio;
        this.clipCovLb = b.clipCovLb;
        this.clipCovUb = b.clipCovUb;
        this.klCovRatio = b.klCovRatio;
        this.ppoKlCoef = b.ppoKlCoef;
        this.droBeta = b.droBeta;
        this.clipCovSeed = b.clipCovSeed;
        this.rolloutCorrection = b.rolloutCorrectionSpec();
        this.bypassLossType = b.bypassLossType;
        this.cliprangeValue = b.cliprangeValue;
        if (policyLossMode == PolicyLossMode.GEO_MEAN) {
            // A plain mean over the rows: a seq-mean-token-sum over the local rows, no dp_size, no global counts.
            final boolean plain = lossAggMode == AggMode.SEQ_MEAN_TOKEN_SUM && dpSize == 1 && batchNumTokens == UNSET
                && globalBatchSize == UNSET && Double.isNaN(lossScaleFactor);
            this.aggregationSpec = plain ? this : toBuilder().lossAggMode(AggMode.SEQ_MEAN_TOKEN_SUM).dpSize(1)
                .batchNumTokens(UNSET).globalBatchSize(UNSET).lossScaleFactor(Double.NaN).build();
        } else {
            final AggMode used = policyLossMode.aggregation(lossAggMode);
            this.aggregationSpec = used == lossAggMode ? this : toBuilder().lossAggMode(used).build();
        }
        // verl 2026-01's compute_value_loss calls agg_loss without the global-batch arguments.
        final boolean local = dpSize == 1 && batchNumTokens == UNSET && globalBatchSize == UNSET
            && Double.isNaN(lossScaleFactor);
        this.valueAggregationSpec = release != VerlRelease.V2026_01 || local ? this
            : toBuilder().dpSize(1).batchNumTokens(UNSET).globalBatchSize(UNSET).lossScaleFactor(Double.NaN).build();
    }

    /** @return a builder with verl's defaults. */
    public static Builder builder() {
        return new Builder();
    }

    /** @return a builder initialised from this spec. */
    public Builder toBuilder() {
        final Builder b = new Builder();
        b.policyLossMode = policyLossMode;
        b.clipRatio = clipRatio;
        b.clipRatioLow = clipRatioLow;
        b.clipRatioHigh = clipRatioHigh;
        b.clipRatioC = clipRatioC;
        b.lossAggMode = lossAggMode;
        b.dpSize = dpSize;
        b.batchNumTokens = batchNumTokens;
        b.globalBatchSize = globalBatchSize;
        b.lossScaleFactor = lossScaleFactor;
        b.entropyCoeff = entropyCoeff;
        b.calculateEntropy = calculateEntropy;
        b.useKlLoss = useKlLoss;
        b.klLossCoef = klLossCoef;
        b.klLossType = klLossType;
        b.temperature = temperature;
        b.microBatchScale = microBatchScale;
        b.release = release;
        b.tauPos = tauPos;
        b.tauNeg = tauNeg;
        b.clipCovRatio = clipCovRatio;
        b.clipCovLb = clipCovLb;
        b.clipCovUb = clipCovUb;
        b.klCovRatio = klCovRatio;
        b.ppoKlCoef = ppoKlCoef;
        b.droBeta = droBeta;
        b.clipCovSeed = clipCovSeed;
        b.rolloutCorrection = rolloutCorrection;
        b.bypassLossType = bypassLossType;
        b.cliprangeValue = cliprangeValue;
        return b;
    }

    /** @return {@code policy_loss.loss_mode} (default vanilla). */
    public PolicyLossMode policyLossMode() {
        return policyLossMode;
    }

    /** @return {@code clip_ratio} (default 0.2). */
    public double clipRatio() {
        return clipRatio;
    }

    /** @return {@code clip_ratio_low}, falling back to clip_ratio. */
    public double clipRatioLow() {
        return clipRatioLow;
    }

    /** @return {@code clip_ratio_high}, falling back to clip_ratio. */
    public double clipRatioHigh() {
        return clipRatioHigh;
    }

    /** @return {@code clip_ratio_c}, the dual-clip bound for A &lt; 0 (default 3.0, must be &gt; 1). */
    public double clipRatioC() {
        return clipRatioC;
    }

    /** @return {@code loss_agg_mode} (default token-mean). */
    public AggMode lossAggMode() {
        return lossAggMode;
    }

    /** @return {@code dp_size} (default 1). */
    public int dpSize() {
        return dpSize;
    }

    /** @return {@code batch_num_tokens}, or {@link #UNSET} to count the batch's valid tokens. */
    public long batchNumTokens() {
        return batchNumTokens;
    }

    /** @return {@code global_batch_size}, or {@link #UNSET} to count the batch's non-empty sequences. */
    public long globalBatchSize() {
        return globalBatchSize;
    }

    /** @return agg_loss's {@code loss_scale_factor} for seq-mean-token-sum-norm, or NaN (padded width). */
    public double lossScaleFactor() {
        return lossScaleFactor;
    }

    /** @return {@code entropy_coeff} (default 0). */
    public double entropyCoeff() {
        return entropyCoeff;
    }

    /** @return {@code calculate_entropy} (default false). */
    public boolean calculateEntropy() {
        return calculateEntropy;
    }

    /** @return whether entropy is computed: calculate_entropy or entropy_coeff != 0 (as dp_actor decides). */
    public boolean entropyNeeded() {
        return calculateEntropy || entropyCoeff != 0.0;
    }

    /** @return {@code use_kl_loss} (default false). */
    public boolean useKlLoss() {
        return useKlLoss;
    }

    /** @return {@code kl_loss_coef} (default 0.001). */
    public double klLossCoef() {
        return klLossCoef;
    }

    /** @return {@code kl_loss_type} (default low_var_kl). */
    public KlPenalty klLossType() {
        return klLossType;
    }

    /** @return the sampling {@code temperature} logits are divided by (default 1.0). */
    public double temperature() {
        return temperature;
    }

    /** @return dp_actor's per-micro-batch {@code loss_scale_factor} multiplying the final loss (default 1.0). */
    public double microBatchScale() {
        return microBatchScale;
    }

    /**
     * @return {@code verl_semantics}: the verl release whose agg_loss this spec follows (default
     *         {@link VerlRelease#DEFAULT}); see {@link Aggregation} for what differs.
     */
    public VerlRelease release() {
        return release;
    }

    /** @return {@code policy_loss.tau_pos}: sapo's temperature for A &gt; 0 (default 1.0). */
    public double tauPos() {
        return tauPos;
    }

    /** @return {@code policy_loss.tau_neg}: sapo's temperature for A &lt;= 0 (default 1.05). */
    public double tauNeg() {
        return tauNeg;
    }

    /** @return {@code policy_loss.clip_cov_ratio}: clip_cov's share of valid tokens to detach (default 0.0002). */
    public double clipCovRatio() {
        return clipCovRatio;
    }

    /** @return {@code policy_loss.clip_cov_lb}: clip_cov's lower covariance bound of a candidate (default 1.0). */
    public double clipCovLb() {
        return clipCovLb;
    }

    /** @return {@code policy_loss.clip_cov_ub}: clip_cov's upper covariance bound of a candidate (default 5.0). */
    public double clipCovUb() {
        return clipCovUb;
    }

    /** @return {@code policy_loss.kl_cov_ratio}: kl_cov's share of valid tokens penalised (default 0.0002). */
    public double klCovRatio() {
        return klCovRatio;
    }

    /** @return {@code policy_loss.ppo_kl_coef}: kl_cov's penalty coefficient (default 0.1 as verl's YAML; null gives verl's code fallback 1.0). */
    public double ppoKlCoef() {
        return ppoKlCoef;
    }

    /** @return {@code policy_loss.dro_beta}: dro's beta (no default: required &gt; 0 for dro). */
    public double droBeta() {
        return droBeta;
    }

    /**
     * @return {@code policy_loss.clip_cov_seed}: the seed of clip_cov's random subset (default 0); verl draws it
     *         unseeded with torch.randperm, RLVec with a seeded shuffle so every engine picks the same tokens.
     */
    public long clipCovSeed() {
        return clipCovSeed;
    }

    /**
     * @return the critic's {@code cliprange_value}: the value loss clips vpreds to values +- this (default 0.5);
     *         see {@link Engine#valueLoss}.
     */
    public double cliprangeValue() {
        return cliprangeValue;
    }

    /**
     * @return the spec whose aggregation the policy loss really uses: this one, or for gspo and sapo (which
     *         hard-code it) a copy with loss_agg_mode seq-mean-token-mean.
     */
    public LossSpec aggregationSpec() {
        return aggregationSpec;
    }

    /**
     * @return {@code policy_loss.rollout_correction} (bypass_mode's IS/RS settings), or null when not given.
     */
    public RolloutCorrectionSpec rolloutCorrection() {
        return rolloutCorrection;
    }

    /** @return {@code policy_loss.rollout_correction.loss_type}: "ppo_clip" (default) or "reinforce". */
    public String bypassLossType() {
        return bypassLossType;
    }

    /** @return whether bypass_mode runs the REINFORCE loss ({@code loss_type=reinforce}). */
    public boolean bypassReinforce() {
        return "reinforce".equals(bypassLossType);
    }

    /**
     * @return the spec whose aggregation the value loss uses: this one, or at verl 2026-01 (whose
     *         {@code compute_value_loss} calls agg_loss with its defaults) a copy without dp_size, batch_num_tokens,
     *         global_batch_size and loss_scale_factor.
     */
    public LossSpec valueAggregationSpec() {
        return valueAggregationSpec;
    }

    /** @return the spec as verl keys and values (for reports). */
    public Map<String, Object> toVerlMap() {
        final Map<String, Object> m = new LinkedHashMap<>();
        m.put("loss_mode", policyLossMode.verlName());
        m.put("clip_ratio", clipRatio);
        m.put("clip_ratio_low", clipRatioLow);
        m.put("clip_ratio_high", clipRatioHigh);
        m.put("clip_ratio_c", clipRatioC);
        m.put("loss_agg_mode", lossAggMode.verlName());
        m.put("dp_size", dpSize);
        if (batchNumTokens != UNSET) {
            m.put("batch_num_tokens", batchNumTokens);
        }
        if (globalBatchSize != UNSET) {
            m.put("global_batch_size", globalBatchSize);
        }
        if (!Double.isNaN(lossScaleFactor)) {
            m.put("loss_scale_factor", lossScaleFactor);
        }
        m.put("entropy_coeff", entropyCoeff);
        m.put("calculate_entropy", calculateEntropy);
        m.put("use_kl_loss", useKlLoss);
        m.put("kl_loss_coef", klLossCoef);
        m.put("kl_loss_type", klLossType.verlName());
        m.put("temperature", temperature);
        m.put("micro_batch_scale", microBatchScale);
        m.put("verl_semantics", release.label());
        m.put("cliprange_value", cliprangeValue);
        switch (policyLossMode) {
            case SAPO -> {
                m.put("tau_pos", tauPos);
                m.put("tau_neg", tauNeg);
            }
            case CLIP_COV -> {
                m.put("clip_cov_ratio", clipCovRatio);
                m.put("clip_cov_lb", clipCovLb);
                m.put("clip_cov_ub", clipCovUb);
                m.put("clip_cov_seed", clipCovSeed);
            }
            case KL_COV -> {
                m.put("kl_cov_ratio", klCovRatio);
                m.put("ppo_kl_coef", ppoKlCoef);
            }
            case DRO -> m.put("dro_beta", droBeta);
            case BYPASS_MODE -> {
                m.put(RC + "loss_type", bypassLossType);
                m.put(RC.substring(0, RC.length() - 1), String.valueOf(rolloutCorrection));
            }
            default -> { }
        }
        return m;
    }

    @Override
    public String toString() {
        return "LossSpec" + toVerlMap();
    }

    @Override
    public boolean equals(final Object o) {
        return o instanceof LossSpec s && s.toVerlMap().equals(toVerlMap());
    }

    @Override
    public int hashCode() {
        return toVerlMap().hashCode();
    }

    /** The key prefix of bypass_mode's settings ({@link Builder#set}). */
    public static final String RC = "policy_loss.rollout_correction.";

    /** Mutable builder; {@link #build()} validates every range. */
    public static final class Builder {
        private PolicyLossMode policyLossMode = PolicyLossMode.VANILLA;
        private double clipRatio = 0.2;
        private double clipRatioLow = Double.NaN;
        private double clipRatioHigh = Double.NaN;
        private double clipRatioC = 3.0;
        private AggMode lossAggMode = AggMode.TOKEN_MEAN;
        private int dpSize = 1;
        private long batchNumTokens = UNSET;
        private long globalBatchSize = UNSET;
        private double lossScaleFactor = Double.NaN;
        private double entropyCoeff = 0.0;
        private boolean calculateEntropy = false;
        private boolean useKlLoss = false;
        private double klLossCoef = 0.001;
        private KlPenalty klLossType = KlPenalty.fromVerl("low_var_kl");
        private double temperature = 1.0;
        private double microBatchScale = 1.0;
        private VerlRelease release = VerlRelease.DEFAULT;
        private double tauPos = 1.0;
        private double tauNeg = 1.05;
        private double clipCovRatio = 0.0002;
        private double clipCovLb = 1.0;
        private double clipCovUb = 5.0;
        private double klCovRatio = 0.0002;
        private double ppoKlCoef = 0.1;
        private double droBeta = Double.NaN;
        private long clipCovSeed = 0;
        private RolloutCorrectionSpec rolloutCorrection;
        private RolloutCorrectionSpec.Builder rolloutCorrectionKeys;
        private String bypassLossType = "ppo_clip";
        private double cliprangeValue = 0.5;

        private Builder() {
        }

        /** Sets policy_loss.loss_mode. */
        public Builder policyLossMode(final PolicyLossMode v) {
            policyLossMode = Objects.requireNonNull(v, "loss_mode");
            return this;
        }

        /** Sets clip_ratio. */
        public Builder clipRatio(final double v) {
            clipRatio = v;
            return this;
        }

        /** Sets clip_ratio_low (NaN: fall back to clip_ratio). */
        public Builder clipRatioLow(final double v) {
            clipRatioLow = v;
            return this;
        }

        /** Sets clip_ratio_high (NaN: fall back to clip_ratio). */
        public Builder clipRatioHigh(final double v) {
            clipRatioHigh = v;
            return this;
        }

        /** Sets clip_ratio_c. */
        public Builder clipRatioC(final double v) {
            clipRatioC = v;
            return this;
        }

        /** Sets loss_agg_mode. */
        public Builder lossAggMode(final AggMode v) {
            lossAggMode = Objects.requireNonNull(v, "loss_agg_mode");
            return this;
        }

        /** Sets dp_size. */
        public Builder dpSize(final int v) {
            dpSize = v;
            return this;
        }

        /** Sets batch_num_tokens ({@link #UNSET} to count locally). */
        public Builder batchNumTokens(final long v) {
            batchNumTokens = v;
            return this;
        }

        /** Sets global_batch_size ({@link #UNSET} to count locally). */
        public Builder globalBatchSize(final long v) {
            globalBatchSize = v;
            return this;
        }

        /** Sets agg_loss's loss_scale_factor (NaN: the padded width). */
        public Builder lossScaleFactor(final double v) {
            lossScaleFactor = v;
            return this;
        }

        /** Sets entropy_coeff. */
        public Builder entropyCoeff(final double v) {
            entropyCoeff = v;
            return this;
        }

        /** Sets calculate_entropy. */
        public Builder calculateEntropy(final boolean v) {
            calculateEntropy = v;
            return this;
        }

        /** Sets use_kl_loss. */
        public Builder useKlLoss(final boolean v) {
            useKlLoss = v;
            return this;
        }

        /** Sets kl_loss_coef. */
        public Builder klLossCoef(final double v) {
            klLossCoef = v;
            return this;
        }

        /** Sets kl_loss_type. */
        public Builder klLossType(final KlPenalty v) {
            klLossType = Objects.requireNonNull(v, "kl_loss_type");
            return this;
        }

        /** Sets temperature. */
        public Builder temperature(final double v) {
            temperature = v;
            return this;
        }

        /** Sets dp_actor's micro-batch loss scale. */
        public Builder microBatchScale(final double v) {
            microBatchScale = v;
            return this;
        }

        /** Sets verl_semantics: the verl release whose agg_loss semantics apply. */
        public Builder release(final VerlRelease v) {
            release = Objects.requireNonNull(v, "verl_semantics");
            return this;
        }

        /** Sets policy_loss.tau_pos. */
        public Builder tauPos(final double v) {
            tauPos = v;
            return this;
        }

        /** Sets policy_loss.tau_neg. */
        public Builder tauNeg(final double v) {
            tauNeg = v;
            return this;
        }

        /** Sets policy_loss.clip_cov_ratio. */
        public Builder clipCovRatio(final double v) {
            clipCovRatio = v;
            return this;
        }

        /** Sets policy_loss.clip_cov_lb. */
        public Builder clipCovLb(final double v) {
            clipCovLb = v;
            return this;
        }

        /** Sets policy_loss.clip_cov_ub. */
        public Builder clipCovUb(final double v) {
            clipCovUb = v;
            return this;
        }

        /** Sets policy_loss.kl_cov_ratio. */
        public Builder klCovRatio(final double v) {
            klCovRatio = v;
            return this;
        }

        /** Sets policy_loss.ppo_kl_coef. */
        public Builder ppoKlCoef(final double v) {
            ppoKlCoef = v;
            return this;
        }

        /** Sets policy_loss.dro_beta. */
        public Builder droBeta(final double v) {
            droBeta = v;
            return this;
        }

        /** Sets policy_loss.rollout_correction (null: not given, which bypass_mode refuses). */
        public Builder rolloutCorrection(final RolloutCorrectionSpec v) {
            rolloutCorrection = v;
            rolloutCorrectionKeys = null;
            return this;
        }

        /** Sets policy_loss.rollout_correction.loss_type ("ppo_clip" or "reinforce", checked for bypass_mode). */
        public Builder bypassLossType(final String v) {
            bypassLossType = Objects.requireNonNull(v, "loss_type");
            return this;
        }

        private RolloutCorrectionSpec rolloutCorrectionSpec() {
            final RolloutCorrectionSpec rc = rolloutCorrectionKeys != null ? rolloutCorrectionKeys.build()
                : rolloutCorrection;
            // bypass_mode's correction follows the loss's verl_semantics.
            return rc == null || rc.release() == release ? rc : rc.toBuilder().release(release).build();
        }

        private void setRolloutCorrection(final String key, final Object value) {
            final String sub = key.substring(RC.length());
            if (sub.equals("loss_type")) {
                bypassLossType(str(key, value));
                return;
            }
            if (rolloutCorrectionKeys == null) {
                rolloutCorrectionKeys = rolloutCorrection != null ? rolloutCorrection.toBuilder()
                    : RolloutCorrectionSpec.builder();
            }
            rolloutCorrectionKeys.set(sub, value);
        }

        /** Sets policy_loss.clip_cov_seed. */
        public Builder clipCovSeed(final long v) {
            clipCovSeed = v;
            return this;
        }

        /** Sets the critic's cliprange_value. */
        public Builder cliprangeValue(final double v) {
            cliprangeValue = v;
            return this;
        }

        /**
         * Sets a value by its verl key (actor config and global_batch_info names); null means "not given".
         *
         * @throws IllegalArgumentException for an unknown key or a value of the wrong kind.
         */
        public Builder set(final String key, final Object value) {
            switch (key) {
                case "loss_mode" -> policyLossMode(PolicyLossMode.fromVerl(str(key, value)));
                case "clip_ratio" -> clipRatio(num(key, value));
                case "clip_ratio_low" -> clipRatioLow(value == null ? Double.NaN : num(key, value));
                case "clip_ratio_high" -> clipRatioHigh(value == null ? Double.NaN : num(key, value));
                case "clip_ratio_c" -> clipRatioC(num(key, value));
                case "loss_agg_mode" -> lossAggMode(AggMode.fromVerl(str(key, value)));
                case "dp_size" -> dpSize(Math.toIntExact(integer(key, value)));
                case "batch_num_tokens" -> batchNumTokens(value == null ? UNSET : integer(key, value));
                case "global_batch_size" -> globalBatchSize(value == null ? UNSET : integer(key, value));
                case "loss_scale_factor" -> lossScaleFactor(value == null ? Double.NaN : num(key, value));
                case "entropy_coeff" -> entropyCoeff(num(key, value));
                case "calculate_entropy" -> calculateEntropy(bool(key, value));
                case "use_kl_loss" -> useKlLoss(bool(key, value));
                case "kl_loss_coef" -> klLossCoef(num(key, value));
                case "kl_loss_type" -> klLossType(KlPenalty.fromVerl(str(key, value)));
                case "temperature" -> temperature(num(key, value));
                case "micro_batch_scale" -> microBatchScale(num(key, value));
                case "verl_semantics" -> release(VerlRelease.fromVerl(str(key, value)));
                case "tau_pos" -> tauPos(num(key, value));
                case "tau_neg" -> tauNeg(num(key, value));
                case "clip_cov_ratio" -> clipCovRatio(value == null ? 0.0002 : num(key, value));
                case "clip_cov_lb" -> clipCovLb(value == null ? 1.0 : num(key, value));
                case "clip_cov_ub" -> clipCovUb(value == null ? 5.0 : num(key, value));
                case "kl_cov_ratio" -> klCovRatio(value == null ? 0.0002 : num(key, value));
                case "ppo_kl_coef" -> ppoKlCoef(value == null ? 1.0 : num(key, value));
                case "dro_beta" -> droBeta(value == null ? Double.NaN : num(key, value));
                case "clip_cov_seed" -> clipCovSeed(integer(key, value));
                case "policy_loss.rollout_correction" -> {
                    if (value != null && !(value instanceof RolloutCorrectionSpec)) {
                        throw new IllegalArgumentException(key + " must be a RolloutCorrectionSpec or null (set its "
                            + "fields as " + RC + "<key>), got " + value);
                    }
                    rolloutCorrection((RolloutCorrectionSpec) value);
                }
                case "cliprange_value" -> cliprangeValue(num(key, value));
                default -> {
                    if (!key.startsWith(RC)) {
                        throw new IllegalArgumentException("unknown loss key '" + key + "'");
                    }
                    setRolloutCorrection(key, value);
                }
            }
            return this;
        }

        private static double num(final String key, final Object v) {
            if (v instanceof Number n) {
                return n.doubleValue();
            }
            throw new IllegalArgumentException(key + " must be a number, got " + v);
        }

        private static long integer(final String key, final Object v) {
            if (v instanceof Number n && n.doubleValue() == Math.rint(n.doubleValue())) {
                return n.longValue();
            }
            throw new IllegalArgumentException(key + " must be an integer, got " + v);
        }

        private static boolean bool(final String key, final Object v) {
            if (v instanceof Boolean b) {
                return b;
            }
            throw new IllegalArgumentException(key + " must be true or false, got " + v);
        }

        private static String str(final String key, final Object v) {
            if (v instanceof String s) {
                return s;
            }
            throw new IllegalArgumentException(key + " must be a string, got " + v);
        }

        /**
         * @return the validated spec.
         * @throws IllegalArgumentException naming the parameter and its valid range.
         */
        public LossSpec build() {
            finiteAtLeast("clip_ratio", clipRatio, 0.0);
            if (!Double.isNaN(clipRatioLow)) {
                finiteAtLeast("clip_ratio_low", clipRatioLow, 0.0);
            }
            if (!Double.isNaN(clipRatioHigh)) {
                finiteAtLeast("clip_ratio_high", clipRatioHigh, 0.0);
            }
            if (!(clipRatioC > 1.0) || Double.isInfinite(clipRatioC)) {
                throw new IllegalArgumentException("clip_ratio_c must be a finite number > 1.0 (dual-clip lower bound),"
                    + " got " + clipRatioC);
            }
            if (lossAggMode == AggMode.TOKEN_SUM && release == VerlRelease.V2026_01) {
                throw new IllegalArgumentException("loss_agg_mode=token-sum does not exist in verl 2026-01 (b178a3cd), "
                    + "whose agg_loss raises for it; use verl_semantics=2026-08 or another mode");
            }
            if (policyLossMode.since().compareTo(release) > 0) {
                throw new IllegalArgumentException("policy_loss.loss_mode=" + policyLossMode.verlName()
                    + " does not exist in verl " + release.label() + " (first in " + policyLossMode.since().label()
                    + "); use verl_semantics=" + policyLossMode.since().label() + " or later");
            }
            if (policyLossMode == PolicyLossMode.BYPASS_MODE) {
                if (rolloutCorrectionSpec() == null) {
                    throw new IllegalArgumentException("rollout_correction config not found in policy_loss. When using "
                        + "loss_mode='bypass_mode', ensure rollout_correction config is passed.");
                }
                if (!bypassLossType.equals("ppo_clip") && !bypassLossType.equals("reinforce")) {
                    throw new IllegalArgumentException("Invalid loss_type: " + bypassLossType
                        + ". Must be 'reinforce' or 'ppo_clip'.");
                }
            }
            if (policyLossMode == PolicyLossMode.DRO && !(droBeta > 0 && Double.isFinite(droBeta))) {
                throw new IllegalArgumentException("policy_loss.dro_beta must be a positive value when using DRO, got "
                    + droBeta);
            }
            finite("tau_pos", tauPos);
            finite("tau_neg", tauNeg);
            if (policyLossMode == PolicyLossMode.SAPO && (tauPos == 0.0 || tauNeg == 0.0)) {
                throw new IllegalArgumentException("tau_pos and tau_neg must be non-zero for sapo (gate divides by tau)"
                    + ", got " + tauPos + ", " + tauNeg);
            }
            if (!(clipCovRatio > 0) || Double.isInfinite(clipCovRatio)) {
                throw new IllegalArgumentException("clip_cov_ratio must be a finite number > 0, got " + clipCovRatio);
            }
            if (!(klCovRatio > 0) || Double.isInfinite(klCovRatio)) {
                throw new IllegalArgumentException("kl_cov_ratio must be a finite number > 0, got " + klCovRatio);
            }
            finite("clip_cov_lb", clipCovLb);
            finite("clip_cov_ub", clipCovUb);
            finite("ppo_kl_coef", ppoKlCoef);
            if (!(cliprangeValue >= 0) || Float.isInfinite((float) cliprangeValue)) {
                throw new IllegalArgumentException("cliprange_value must be a finite number >= 0, also once rounded "
                    + "to float32 (values +- cliprange_value is computed in float32), got " + cliprangeValue);
            }
            if (dpSize < 1) {
                throw new IllegalArgumentException("dp_size must be >= 1, got " + dpSize);
            }
            if (batchNumTokens != UNSET && batchNumTokens < 1) {
                throw new IllegalArgumentException("batch_num_tokens must be >= 1 (or unset), got " + batchNumTokens);
            }
            if (globalBatchSize != UNSET && globalBatchSize < 1) {
                throw new IllegalArgumentException("global_batch_size must be >= 1 (or unset), got " + globalBatchSize);
            }
            if (!Double.isNaN(lossScaleFactor) && !(lossScaleFactor > 0 && Double.isFinite(lossScaleFactor))) {
                throw new IllegalArgumentException("loss_scale_factor must be a finite number > 0 (or unset), got "
                    + lossScaleFactor);
            }
            finite("entropy_coeff", entropyCoeff);
            finite("kl_loss_coef", klLossCoef);
            if (!(temperature > 0) || Double.isInfinite(temperature) || !((float) temperature > 0)
                || Float.isInfinite((float) temperature)) {
                throw new IllegalArgumentException("temperature must be a finite number > 0, also once rounded to "
                    + "float32 (the logits are divided in float32), got " + temperature);
            }
            if (!(microBatchScale > 0) || Double.isInfinite(microBatchScale)) {
                throw new IllegalArgumentException("micro_batch_scale must be a finite number > 0, got " + microBatchScale);
            }
            return new LossSpec(this);
        }

        private static void finite(final String name, final double v) {
            if (!Double.isFinite(v)) {
                throw new IllegalArgumentException(name + " must be finite, got " + v);
            }
        }

        private static void finiteAtLeast(final String name, final double v, final double min) {
            if (!(v >= min) || Double.isInfinite(v)) {
                throw new IllegalArgumentException(name + " must be a finite number >= " + min + ", got " + v);
            }
        }
    }
}
