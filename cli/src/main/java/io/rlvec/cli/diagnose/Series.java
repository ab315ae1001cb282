package io.rlvec.cli.diagnose;

/**
 * One metric over a run: the steps that logged it, in increasing order, and the values (NaN and the infinities
 * kept as logged).
 *
 * @param key the log key
 * @param steps the steps, increasing
 * @param values the values, one per step
 */
public record Series(String key, long[] steps, double[] values) {

    /** @return the number of logged points */
    public int size() {
        return steps.length;
    }

    /** @return the series without its non-finite points (the rules on trends read finite values only) */
    public Series finite() {
        int n = 0;
        for (final double v : values) {
            if (Double.isFinite(v)) {
                n++;
            }
        }
        if (n == values.length) {
            return this;
        }
        final long[] s = new long[n];
        final double[] v = new double[n];
        int j = 0;
        for (int i = 0; i < values.length; i++) {
            if (Double.isFinite(values[i])) {
                s[j] = steps[i];
                v[j++] = values[i];
            }
        }
        return new Series(key, s, v);
    }

    /** @return the index of the first point at or after {@code step}, or size() */
    public int indexOf(final long step) {
        for (int i = 0; i < steps.length; i++) {
            if (steps[i] >= step) {
                return i;
            }
        }
        return steps.length;
    }
}
