package io.rlvec;

/**
 * The output of {@link Engine#aggLoss}: the aggregated loss and its mergeable parts. Reused across calls; an
 * engine overwrites every field.
 */
public final class AggResult {
    private double numerator;
    private long validTokens;
    private long validSequences;
    private double denominator;
    private float loss;

    /** Sets every field (called by engines). */
    public void set(final double numerator, final long validTokens, final long validSequences,
                    final double denominator, final float loss) {
        this.numerator = numerator;
        this.validTokens = validTokens;
        this.validSequences = validSequences;
        this.denominator = denominator;
        this.loss = loss;
    }

    /** @return the aggregated loss. */
    public float loss() {
        return loss;
    }

    /** @return the sum of per-sequence terms (see {@link Aggregation}). */
    public double numerator() {
        return numerator;
    }

    /** @return valid tokens of the batch. */
    public long validTokens() {
        return validTokens;
    }

    /** @return sequences with at least one valid token. */
    public long validSequences() {
        return validSequences;
    }

    /** @return the denominator used. */
    public double denominator() {
        return denominator;
    }

    @Override
    public String toString() {
        return "AggResult[loss=" + loss + ", numerator=" + numerator + ", tokens=" + validTokens + ", sequences="
            + validSequences + ", denominator=" + denominator + "]";
    }
}
