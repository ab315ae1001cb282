package io.rlvec;

import java.util.ArrayList;
import java.util.LinkedHashSet;
import java.util.List;
import java.util.Locale;
import java.util.Objects;
import java.util.Set;
import java.util.TreeSet;

/**
 * verl's rollout correction settings ({@code algorithm.rollout_correction}, and {@code policy_loss.rollout_correction}
 * in bypass mode), immutable, with verl's keys and defaults, parsed and validated as
 * {@code rollout_corr_helper.py} does:
 * <pre>
 *   rollout_is                 null | "token" | "sequence"          (null: no IS weights)
 *   rollout_is_threshold       2.0; a number or float-like string U (TIS: w = min(raw, U)),
 *                              or "L_U" (IcePop: w = raw inside [L, U], else 0); null also disables IS
 *   rollout_is_batch_normalize false
 *   rollout_rs                 null, or comma-separated options, ANDed: token_k1|k2|k3, seq_sum_k1|k2|k3,
 *                              seq_mean_k1|k2|k3, seq_max_k2|k3 (duplicates kept once, first order)
 *   rollout_rs_threshold       required with rollout_rs: one value shared by all options or one per option;
 *                              k1 options take "L_U" or U (L = 1/U), bounds on log space; k2/k3 a single U
 * </pre>
 * Errors are verl's ValueErrors (its messages) as {@link IllegalArgumentException}, raised by {@link Builder#build()}.
 */
public final class RolloutCorrectionSpec {
    /** The IS aggregation level. */
    public enum IsLevel {
        /** Per-token ratio. */
        TOKEN,
        /** Per-sequence ratio, exp of the masked sum of log-ratios. */
        SEQUENCE
    }

    /** The statistic of one rejection option. */
    public enum Estimator {
        /** {@code -log r}. */
        K1,
        /** {@code 0.5 (log r)^2}. */
        K2,
        /** {@code exp(log r) - 1 - log r}. */
        K3
    }

    /** How a rejection option aggregates its statistic. */
    public enum Level {
        /** Per token. */
        TOKEN,
        /** Masked sum per sequence. */
        SEQ_SUM,
        /** Masked mean per sequence. */
        SEQ_MEAN,
        /** Masked max per sequence (0 for an empty row). */
        SEQ_MAX
    }

    /** verl's supported rejection options, sorted as verl lists them in its error. */
    public static final List<String> RS_OPTIONS = List.of("seq_max_k2", "seq_max_k3", "seq_mean_k1", "seq_mean_k2",
        "seq_mean_k3", "seq_sum_k1", "seq_sum_k2", "seq_sum_k3", "token_k1", "token_k2", "token_k3");

    /**
     * One parsed rejection option: keep where {@code log(lower) <= stat <= log(upper)} (k1) or {@code stat <= upper}
     * (k2, k3).
     *
     * @param name      verl's option name (the metric infix).
     * @param level     aggregation.
     * @param estimator statistic.
     * @param lower     k1: the lower ratio bound; NaN otherwise.
     * @param upper     the upper bound (a ratio for k1).
     */
    public record RsOption(String name, Level level, Estimator estimator, double lower, double upper) {
        /** @return whether the option bounds both sides (k1). */
        public boolean twoSided() {
            return estimator == Estimator.K1;
        }

        /** @return the upper bound on the statistic: log(upper) for k1, upper otherwise. */
        public double upperStat() {
            return twoSided() ? Math.log(upper) : upper;
        }

        /** @return the lower bound on the statistic: log(lower) for k1, 0 otherwise (the metrics' clamp). */
        public double lowerStat() {
            return twoSided() ? Math.log(lower) : 0.0;
        }
    }

    private final IsLevel rolloutIs;
    private final double isUpper;
    private final double isLower;
    private final boolean batchNormalize;
    private final List<RsOption> rsOptions;
    private final Object isThresholdSpec;
    private final String rsSpec;
    private final Object rsThresholdSpec;
    private final VerlRelease release;

    private RolloutCorrectionSpec(final Builder b, final IsLevel level, final double upper, final double lower,
                                  final List<RsOption> options) {
        this.rolloutIs = level;
        this.isUpper = upper;
        this.isLower = lower;
        this.batchNormalize = b.batchNormalize;
        this.rsOptions = List.copyOf(options);
        this.isThresholdSpec = b.isThreshold;
        this.rsSpec = b.rs;
        this.rsThresholdSpec = b.rsThreshold;
        this.release = b.release;
    }

    /** @return a builder with verl's defaults (IS and RS off: metrics only). */
    public static Builder builder() {
        return new Builder();
    }

    /** @return the IS level, or null when no IS weights are computed. */
    public IsLevel rolloutIs() {
        return rolloutIs;
    }

    /** @return whether IS weights are computed. */
    public boolean hasIs() {
        return rolloutIs != null;
    }

    /** @return U, the IS upper bound (NaN without IS). */
    public double isUpper() {
        return isUpper;
    }

    /** @return L for IcePop, NaN for TIS or without IS. */
    public double isLower() {
        return isLower;
    }

    /** @return whether the IS threshold is a band ("L_U", IcePop). */
    public boolean icePop() {
        return !Double.isNaN(isLower);
    }

    /** @return {@code rollout_is_batch_normalize}. */
    public boolean batchNormalize() {
        return batchNormalize;
    }

    /** @return the rejection options in verl's order (empty: no rejection). */
    public List<RsOption> rsOptions() {
        return rsOptions;
    }

    /**
     * @return the verl release whose IS metrics this spec follows: 2026-08 (the default) reports them from the
     *     applied (truncated) weights, std and ESS over clamp(w, 0, U); 2026-01 from the raw weights before
     *     truncation, std and ESS over clamp(raw, 1/U, U). The weights themselves are the same.
     */
    public VerlRelease release() {
        return release;
    }

    /** @return a builder initialised from this spec. */
    public Builder toBuilder() {
        final Builder b = new Builder();
        b.release = release;
        b.is = rolloutIs == null ? null : rolloutIs.name().toLowerCase(Locale.ROOT);
        b.isThreshold = isThresholdSpec;
        b.batchNormalize = batchNormalize;
        b.rs = rsSpec;
        b.rsThreshold = rsThresholdSpec;
        return b;
    }

    @Override
    public String toString() {
        return "RolloutCorrectionSpec[rollout_is=" + (rolloutIs == null ? "null" : rolloutIs.name().toLowerCase(Locale.ROOT))
            + ", threshold=" + isThresholdSpec + ", batch_normalize=" + batchNormalize + ", rollout_rs=" + rsSpec
            + ", rs_threshold=" + rsThresholdSpec + ", verl_semantics=" + release.label() + "]";
    }

    /** Collects verl's keys; {@link #build()} parses and validates them. */
    public static final class Builder {
        private String is;
        private Object isThreshold = 2.0;
        private boolean batchNormalize;
        private String rs;
        private Object rsThreshold;
        private VerlRelease release = VerlRelease.DEFAULT;

        private Builder() {
        }

        /**
         * @param v the verl release whose semantics apply (default {@link VerlRelease#DEFAULT}); a {@link LossSpec}
         *          gives its bypass_mode correction its own {@code verl_semantics}.
         */
        public Builder release(final VerlRelease v) {
            this.release = Objects.requireNonNull(v, "verl_semantics");
            return this;
        }

        /** @param level {@code rollout_is}: null, "token" or "sequence" (checked in build). */
        public Builder rolloutIs(final String level) {
            this.is = level;
            return this;
        }

        /** @param threshold {@code rollout_is_threshold}: a number, a float-like string, "L_U", or null. */
        public Builder rolloutIsThreshold(final Object threshold) {
            this.isThreshold = threshold;
            return this;
        }

        /** @param on {@code rollout_is_batch_normalize}. */
        public Builder rolloutIsBatchNormalize(final boolean on) {
            this.batchNormalize = on;
            return this;
        }

        /** @param options {@code rollout_rs}: null or comma-separated options. */
        public Builder rolloutRs(final String options) {
            this.rs = options;
            return this;
        }

        /** @param threshold {@code rollout_rs_threshold}: a number or string, or null. */
        public Builder rolloutRsThreshold(final Object threshold) {
            this.rsThreshold = threshold;
            return this;
        }

        /**
         * Sets one key by verl's name.
         *
         * @throws IllegalArgumentException for an unknown key ("unknown rollout_correction key") or a value of the
         *                                  wrong kind.
         */
        public Builder set(final String key, final Object value) {
            Objects.requireNonNull(key, "key");
            switch (key) {
                case "rollout_is" -> rolloutIs(text(key, value));
                case "rollout_is_threshold" -> rolloutIsThreshold(value);
                case "rollout_is_batch_normalize" -> {
                    if (!(value instanceof Boolean v)) {
                        throw new IllegalArgumentException(key + " must be a boolean, got " + value);
                    }
                    rolloutIsBatchNormalize(v);
                }
                case "rollout_rs" -> rolloutRs(text(key, value));
                case "rollout_rs_threshold" -> rolloutRsThreshold(value);
                default -> throw new IllegalArgumentException("unknown rollout_correction key '" + key + "'");
            }
            return this;
        }

        private static String text(final String key, final Object value) {
            if (value != null && !(value instanceof String)) {
                throw new IllegalArgumentException(key + " must be a string or null, got " + value);
            }
            return (String) value;
        }

        /**
         * @return the validated spec.
         * @throws IllegalArgumentException with verl's message for an invalid level, threshold or option.
         */
        public RolloutCorrectionSpec build() {
            IsLevel level = null;
            double upper = Double.NaN;
            double lower = Double.NaN;
            if (is != null && isThreshold != null) {
                level = switch (is) {
                    case "token" -> IsLevel.TOKEN;
                    case "sequence" -> IsLevel.SEQUENCE;
                    default -> throw new IllegalArgumentException("Invalid rollout_is: " + is
                        + ". Must be one of {'sequence', 'token'}.");
                };
                if (release == VerlRelease.V2026_01 && !(isThreshold instanceof Number)) {
                    throw new IllegalArgumentException("rollout_is_threshold must be a number under verl_semantics "
                        + "2026-01 (verl b178a3cd compares it with 0 as a float), got '" + isThreshold + "'; the "
                        + "'L_U' IcePop band and threshold strings exist from verl 2026-03 (#5722), so use "
                        + "verl_semantics 2026-08");
                }
                final double[] ul = parseIsThreshold(isThreshold);
                upper = ul[0];
                lower = ul[1];
            }
            final List<RsOption> options = new ArrayList<>();
            if (rs != null) {
                if (rsThreshold == null) {
                    throw new IllegalArgumentException("rollout_rs_threshold must be explicitly provided when "
                        + "rollout_rs is enabled. Set rollout_rs_threshold to the desired threshold value.");
                }
                options.addAll(parseRs(rs, rsThreshold));
            }
            return new RolloutCorrectionSpec(this, level, upper, lower, options);
        }
    }

    /** verl's {@code _parse_rollout_is_threshold}: {upper, lower or NaN}. */
    static double[] parseIsThreshold(final Object spec) {
        if (spec instanceof Boolean) {
            throw new IllegalArgumentException("rollout_is_threshold must be specified as a float or a string "
                + "threshold specification, not a boolean.");
        }
        double upper;
        double lower = Double.NaN;
        if (spec instanceof Number n) {
            upper = n.doubleValue();
        } else if (spec instanceof String str) {
            final String s = str.strip();
            if (s.isEmpty()) {
                throw new IllegalArgumentException("rollout_is_threshold must not be an empty string.");
            }
            try {
                final int u = s.indexOf('_');
                if (u >= 0) {
                    lower = pyFloat(s.substring(0, u));
                    upper = pyFloat(s.substring(u + 1));
                } else {
                    upper = pyFloat(s);
                }
            } catch (final NumberFormatException e) {
                throw new IllegalArgumentException("Invalid rollout_is_threshold '" + str + "'.", e);
            }
        } else {
            throw new IllegalArgumentException("rollout_is_threshold must be a float or a string threshold "
                + "specification.");
        }
        if (!(upper > 0)) {
            throw new IllegalArgumentException("rollout_is_threshold upper bound must be positive, got "
                + pyRepr(upper) + ".");
        }
        if (!Double.isNaN(lower)) {
            if (!(lower > 0)) {
                throw new IllegalArgumentException("rollout_is_threshold lower bound must be positive, got "
                    + pyRepr(lower) + ".");
            }
            if (lower > upper) {
                throw new IllegalArgumentException("rollout_is_threshold lower bound must be <= upper bound.");
            }
        }
        return new double[] {upper, lower};
    }

    /** verl's option parsing and {@code _parse_rollout_rs_thresholds}. */
    static List<RsOption> parseRs(final String rs, final Object thresholdSpec) {
        final Set<String> names = new LinkedHashSet<>();
        for (final String part : rs.split(",", -1)) {
            final String opt = part.strip();
            if (opt.isEmpty()) {
                continue;
            }
            if (!RS_OPTIONS.contains(opt)) {
                final StringBuilder sb = new StringBuilder("[");
                for (final String o : new TreeSet<>(RS_OPTIONS)) {
                    sb.append(sb.length() == 1 ? "" : ", ").append('\'').append(o).append('\'');
                }
                throw new IllegalArgumentException("Invalid rollout_rs option: " + opt + ". Must be one of "
                    + sb.append(']') + ".");
            }
            names.add(opt);
        }
        if (names.isEmpty()) {
            throw new IllegalArgumentException("rollout_rs must contain at least one valid option.");
        }
        final List<String> raw = new ArrayList<>();
        if (thresholdSpec instanceof Number n) {
            raw.add(pyRepr(n.doubleValue()));
        } else if (thresholdSpec instanceof String s) {
            for (final String part : s.split(",", -1)) {
                if (!part.strip().isEmpty()) {
                    raw.add(part.strip());
                }
            }
        } else {
            throw new IllegalArgumentException("rollout_rs_threshold must be a string or numeric value specifying "
                + "per-option thresholds.");
        }
        if (raw.isEmpty()) {
            throw new IllegalArgumentException("rollout_rs_threshold must contain at least one threshold value.");
        }
        if (raw.size() != 1 && raw.size() != names.size()) {
            throw new IllegalArgumentException("rollout_rs_threshold expects either one threshold shared by all "
                + "options or exactly " + names.size() + " thresholds to match the provided rollout_rs options.");
        }
        final List<RsOption> out = new ArrayList<>();
        int i = 0;
        for (final String option : names) {
            final String spec = raw.get(raw.size() == 1 ? 0 : i++);
            final Estimator k = Estimator.valueOf(option.substring(option.length() - 2).toUpperCase(Locale.ROOT));
            final Level level = option.startsWith("token") ? Level.TOKEN
                : option.startsWith("seq_sum") ? Level.SEQ_SUM
                : option.startsWith("seq_mean") ? Level.SEQ_MEAN : Level.SEQ_MAX;
            final double lower;
            final double upper;
            try {
                if (k == Estimator.K1) {
                    final int u = spec.indexOf('_');
                    if (u >= 0) {
                        lower = pyFloat(spec.substring(0, u));
                        upper = pyFloat(spec.substring(u + 1));
                    } else {
                        upper = pyFloat(spec);
                        lower = 1.0 / upper;
                    }
                } else {
                    if (spec.indexOf('_') >= 0) {
                        throw new IllegalArgumentException("rollout_rs_threshold for option '" + option
                            + "' must provide a single upper bound without '_'. Received '" + spec + "'.");
                    }
                    upper = pyFloat(spec);
                    lower = Double.NaN;
                }
            } catch (final NumberFormatException e) {
                throw new IllegalArgumentException("Invalid numeric threshold '" + spec + "' for option '" + option
                    + "'.", e);
            }
            if (k == Estimator.K1) {
                if (!(lower > 0) || !(upper > 0)) {
                    throw new IllegalArgumentException("Thresholds for option '" + option + "' must be positive, got "
                        + spec + ".");
                }
                if (lower > upper) {
                    throw new IllegalArgumentException("Thresholds for option '" + option
                        + "' must be lower <= upper, got " + spec + ".");
                }
            } else if (!(upper > 0)) {
                throw new IllegalArgumentException("Threshold for option '" + option + "' must be positive, got "
                    + spec + ".");
            }
            out.add(new RsOption(option, level, k, lower, upper));
        }
        return out;
    }

    /** Python's {@code float(str)} for the forms a threshold takes (no hex, no underscores between digits). */
    private static double pyFloat(final String s) {
        final String t = s.strip().toLowerCase(Locale.ROOT);
        switch (t) {
            case "inf", "+inf", "infinity", "+infinity" -> {
                return Double.POSITIVE_INFINITY;
            }
            case "-inf", "-infinity" -> {
                return Double.NEGATIVE_INFINITY;
            }
            case "nan", "+nan", "-nan" -> {
                return Double.NaN;
            }
            default -> {
                if (t.isEmpty() || t.endsWith("d") || t.endsWith("f") || t.startsWith("0x")) {
                    throw new NumberFormatException(s);
                }
                return Double.parseDouble(t);
            }
        }
    }

    /** Python's repr of a float, for the forms verl prints in its messages ("-1.0", "2.5"). */
    private static String pyRepr(final double v) {
        if (v == Math.rint(v) && Math.abs(v) < 1e16) {
            return String.format(Locale.ROOT, "%.1f", v);
        }
        return Double.toString(v);
    }
}
