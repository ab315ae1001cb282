package io.rlvec;

/** verl's {@code loss_agg_mode}: how a per-token loss matrix becomes a scalar ({@code core_algos.agg_loss}). */
public enum AggMode {
    /** sum over valid tokens / batch_num_tokens * dp_size. */
    TOKEN_MEAN("token-mean"),
    /** sum over valid tokens * dp_size (verl 2026-08 and later). */
    TOKEN_SUM("token-sum"),
    /** per-sequence token sums, mean over non-empty sequences (/ global_batch_size * dp_size). */
    SEQ_MEAN_TOKEN_SUM("seq-mean-token-sum"),
    /** per-sequence token means, mean over non-empty sequences (/ global_batch_size * dp_size). */
    SEQ_MEAN_TOKEN_MEAN("seq-mean-token-mean"),
    /**
     * 2026-01: sum over valid tokens / loss_scale_factor; 2026-08: seq-mean-token-sum / loss_scale_factor (verl's
     * default factor: the padded width T).
     */
    SEQ_MEAN_TOKEN_SUM_NORM("seq-mean-token-sum-norm");

    private final String verlName;

    AggMode(final String verlName) {
        this.verlName = verlName;
    }

    /** @return verl's name of the mode. */
    public String verlName() {
        return verlName;
    }

    /**
     * @param name verl's name, e.g. {@code "token-mean"}.
     * @return the mode.
     * @throws IllegalArgumentException listing the valid names.
     */
    public static AggMode fromVerl(final String name) {
        for (final AggMode m : values()) {
            if (m.verlName.equals(name)) {
                return m;
            }
        }
        throw new IllegalArgumentException("loss_agg_mode must be one of token-mean, token-sum, seq-mean-token-sum, "
            + "seq-mean-token-mean, seq-mean-token-sum-norm; got '" + name + "'");
    }
}
