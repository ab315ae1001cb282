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
                default -> throw new IllegalArgumentException("unknown loss key '" + key + "'");
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
            if (!(temperature > 0) || Double.isInfinite(temperature)) {
                throw new IllegalArgumentException("temperature must be a finite number > 0, got " + temperature);
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
