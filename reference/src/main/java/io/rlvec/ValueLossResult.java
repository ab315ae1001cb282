package io.rlvec;

import java.util.LinkedHashMap;
import java.util.Map;

/**
 * The output of {@link Engine#valueLoss}: verl's {@code vf_loss} and the critic's metrics, with the raw sums they
 * come from. Reused across calls; an engine overwrites every field. Micro-batch results {@link #merge merge} like
 * {@link PolicyLossResult}'s: sums add, and with the same global denominator the loss is recomputed from the merged
 * numerator (the whole batch's loss), otherwise the micro-batch losses add.
 */
public final class ValueLossResult {
    /** The aggregation of the last {@link #set}, null before: merge needs it to recompute the loss. */
    private LossSpec aggregation;
    private double numerator;
    private long validTokens;
    private long validSequences;
    private double denominator;
    private long clippedTokens;
    private double vpredSum;
    private float loss;

    /**
     * Sets every field (called by engines); {@code vf_loss = 0.5 * agg_loss} from the numerator and the
     * denominator ({@link Aggregation#loss}).
     *
     * @param aggregation    the aggregation the call used ({@link LossSpec#valueAggregationSpec()}).
     * @param numerator      the aggregation's numerator of max(vf_losses1, vf_losses2) (see {@link Aggregation}).
     * @param validTokens    valid tokens.
     * @param validSequences sequences with at least one valid token.
     * @param denominator    the aggregation's denominator.
     * @param clippedTokens  valid tokens with vf_losses2 &gt; vf_losses1.
     * @param vpredSum       the sum of vpreds over valid tokens.
     */
    public void set(final LossSpec aggregation, final double numerator, final long validTokens,
                    final long validSequences, final double denominator, final long clippedTokens,
                    final double vpredSum) {
        this.aggregation = aggregation;
        this.numerator = numerator;
        this.validTokens = validTokens;
        this.validSequences = validSequences;
        this.denominator = denominator;
        this.clippedTokens = clippedTokens;
        this.vpredSum = vpredSum;
        this.loss = lossOf(aggregation, numerator, denominator);
    }

    private static float lossOf(final LossSpec aggregation, final double numerator, final double denominator) {
        return (float) (0.5 * Aggregation.loss(aggregation, numerator, denominator));
    }

    /**
     * Adds another micro-batch's sums into this one. When both used the same aggregation (mode and dp_size) and the
     * same denominator (the global denominators of verl 2026-08's critic), the loss is recomputed from the merged
     * numerator: the whole batch's vf_loss. Otherwise (local denominators) the losses add, as a trainer
     * accumulating micro-batch losses does. Merging into a result that holds nothing copies the other.
     */
    public void merge(final ValueLossResult other) {
        if (other.aggregation == null) {
            return;
        }
        if (aggregation == null) {
            set(other.aggregation, other.numerator, other.validTokens, other.validSequences, other.denominator,
                other.clippedTokens, other.vpredSum);
            loss = other.loss;
            return;
        }
        final boolean global = other.denominator == denominator
            && other.aggregation.lossAggMode() == aggregation.lossAggMode()
            && other.aggregation.dpSize() == aggregation.dpSize();
        numerator += other.numerator;
        validTokens += other.validTokens;
        validSequences += other.validSequences;
        clippedTokens += other.clippedTokens;
        vpredSum += other.vpredSum;
        if (global) {
            loss = lossOf(aggregation, numerator, denominator);
        } else {
            loss += other.loss;
            denominator = other.denominator;
        }
    }

    /** @return {@code vf_loss} ({@code critic/vf_loss} of this micro-batch, before a trainer's own scaling). */
    public float vfLoss() {
        return loss;
    }

    /** @return {@code critic/vf_clipfrac}: the share of valid tokens where the clipped loss is the larger. */
    public float vfClipfrac() {
        return tokenMean(clippedTokens, validTokens);
    }

    /** @return {@code critic/vpred_mean}: the masked mean of vpreds. */
    public float vpredMean() {
        return tokenMean(vpredSum, validTokens);
    }

    /** @return the sum of per-sequence terms of max(vf_losses1, vf_losses2), before 0.5 and the denominator. */
    public double numerator() {
        return numerator;
    }

    /** @return the denominator used. */
    public double denominator() {
        return denominator;
    }

    /** @return valid tokens. */
    public long validTokens() {
        return validTokens;
    }

    /** @return sequences with at least one valid token. */
    public long validSequences() {
        return validSequences;
    }

    /** @return valid tokens with vf_losses2 &gt; vf_losses1. */
    public long clippedTokens() {
        return clippedTokens;
    }

    /** @return the sum of vpreds over valid tokens (double). */
    public double vpredSum() {
        return vpredSum;
    }

    private static float tokenMean(final double sum, final long tokens) {
        // verl: masked_sum / (mask.sum() + 1e-8); the 1e-8 vanishes in float32 for tokens >= 1.
        return tokens > 0 ? (float) (sum / tokens) : 0f;
    }

    /** @return the metrics under verl's critic keys; allocates, not for hot paths. */
    public Map<String, Double> metrics() {
        final Map<String, Double> m = new LinkedHashMap<>();
        m.put("critic/vf_loss", (double) vfLoss());
        m.put("critic/vf_clipfrac", (double) vfClipfrac());
        m.put("critic/vpred_mean", (double) vpredMean());
        return m;
    }

    @Override
    public String toString() {
        return "ValueLossResult" + metrics() + "[numerator=" + numerator + ", tokens=" + validTokens
            + ", sequences=" + validSequences + ", denominator=" + denominator + "]";
    }
}
