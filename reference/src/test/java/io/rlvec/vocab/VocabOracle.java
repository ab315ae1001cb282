package io.rlvec.vocab;

/**
 * The vocabulary pass evaluated in double precision with {@link Math#exp}/{@link Math#log}: the accuracy yardstick
 * for both engines and for verl's float32 outputs. {@code -inf} logits get probability 0 and contribute 0 to the
 * entropy (the limit of p log p).
 */
public final class VocabOracle {
    private VocabOracle() {
    }

    /**
     * Results of one row: log-prob, entropy, {@code log S} (S = sum exp(z - max)), {@code mu = W / S} (the mean of
     * z - max), d objective / d raw logit, and log p per logit.
     */
    public record Row(double logProb, double entropy, double logS, double mu, double[] grad, double[] logP) {
    }

    /**
     * @param x      logits (raw, before temperature).
     * @param base   first element of the row.
     * @param vocab  row length.
     * @param label  label of the row.
     * @param t      temperature.
     * @param gl     d objective / d log_prob.
     * @param ge     d objective / d entropy.
     * @param floatZ whether {@code z = x / t} is rounded to float32 first (as the engines and verl do); false gives
     *               a smooth function of x for finite differences.
     * @return the row in double.
     */
    public static Row row(final float[] x, final int base, final int vocab, final int label, final double t,
                          final double gl, final double ge, final boolean floatZ) {
        final double[] z = new double[vocab];
        double m = Double.NEGATIVE_INFINITY;
        boolean nan = false;
        for (int j = 0; j < vocab; j++) {
            z[j] = floatZ ? (double) (x[base + j] / (float) t) : x[base + j] / t;
            nan |= Double.isNaN(z[j]);
            m = Math.max(m, z[j]);
        }
        if (nan || Double.isInfinite(m)) {
            final double[] g = new double[vocab];
            java.util.Arrays.fill(g, Double.NaN);
            return new Row(Double.NaN, Double.NaN, Double.NaN, Double.NaN, g, g.clone());
        }
        double s = 0;
        for (int j = 0; j < vocab; j++) {
            s += Math.exp(z[j] - m);
        }
        final double logS = Math.log(s);
        double w = 0;
        for (int j = 0; j < vocab; j++) {
            final double p = Math.exp(z[j] - m) / s;
            if (p != 0) {
                w += p * (z[j] - m);
            }
        }
        final double logProb = (z[label] - m) - logS;
        final double entropy = logS - w;
        final double[] g = new double[vocab];
        final double[] logP = new double[vocab];
        for (int j = 0; j < vocab; j++) {
            final double p = Math.exp(z[j] - m) / s;
            logP[j] = (z[j] - m) - logS;
            final double logPPlusH = p == 0 ? 0 : logP[j] + entropy;
            g[j] = (gl * ((j == label ? 1 : 0) - p) - ge * p * logPPlusH) / t;
        }
        return new Row(logProb, entropy, logS, w, g, logP);
    }

    /**
     * The sum of squared probabilities of one row in double, {@code sum_j p_j^2} with {@code z = x / t} rounded to
     * float32 first (as the engines and verl do), and the sums its error budget needs.
     *
     * @param value the sum of p^2 (NaN for a row with a NaN logit, a +inf logit or every logit -inf).
     * @param s     {@code S = sum_j e_j}, {@code e_j = exp(z_j - max z)} (so S >= 1).
     * @param q     {@code Q = sum_j e_j^2} (so Q >= 1); value = Q / S^2.
     * @param sd    {@code sum_j e_j |z_j - max z|}.
     * @param qd    {@code sum_j e_j^2 |z_j - max z|}.
     */
    public record SumPiSquared(double value, double s, double q, double sd, double qd) {
    }

    /**
     * @param x     logits (raw, before temperature).
     * @param base  first element of the row.
     * @param vocab row length.
     * @param t     temperature.
     * @return the row's sum of squared probabilities in double.
     */
    public static SumPiSquared sumPiSquared(final float[] x, final int base, final int vocab, final double t) {
        final float tf = (float) t;
        double m = Double.NEGATIVE_INFINITY;
        boolean nan = false;
        for (int j = 0; j < vocab; j++) {
            final double z = x[base + j] / tf;
            nan |= Double.isNaN(z);
            m = Math.max(m, z);
        }
        if (nan || Double.isInfinite(m)) {
            return new SumPiSquared(Double.NaN, Double.NaN, Double.NaN, Double.NaN, Double.NaN);
        }
        double s = 0;
        double q = 0;
        double sd = 0;
        double qd = 0;
        for (int j = 0; j < vocab; j++) {
            final double d = (double) (x[base + j] / tf) - m;
            final double e = Math.exp(d);
            s += e;
            q += e * e;
            if (e != 0) {
                sd += e * -d;
                qd += e * e * -d;
            }
        }
        return new SumPiSquared(q / (s * s), s, q, sd, qd);
    }

    /** @return {@code gl * log_prob + ge * entropy} of the row with smooth (double) temperature scaling. */
    public static double objective(final float[] x, final int base, final int vocab, final int label, final double t,
                                   final double gl, final double ge) {
        final Row r = row(x, base, vocab, label, t, gl, ge, false);
        return gl * r.logProb() + ge * r.entropy();
    }

    /**
     * Central finite difference of {@link #objective} w.r.t. logit j, evaluated in double on a double copy of the
     * row (so that the step is not rounded to float).
     */
    public static double finiteDifference(final float[] x, final int base, final int vocab, final int label,
                                          final double t, final double gl, final double ge, final int j,
                                          final double h) {
        return (objectiveShifted(x, base, vocab, label, t, gl, ge, j, h)
            - objectiveShifted(x, base, vocab, label, t, gl, ge, j, -h)) / (2 * h);
    }

    private static double objectiveShifted(final float[] x, final int base, final int vocab, final int label,
                                           final double t, final double gl, final double ge, final int k,
                                           final double h) {
        final double[] z = new double[vocab];
        double m = Double.NEGATIVE_INFINITY;
        for (int j = 0; j < vocab; j++) {
            z[j] = (x[base + j] + (j == k ? h : 0)) / t;
            m = Math.max(m, z[j]);
        }
        double s = 0;
        for (int j = 0; j < vocab; j++) {
            s += Math.exp(z[j] - m);
        }
        final double logS = Math.log(s);
        double w = 0;
        for (int j = 0; j < vocab; j++) {
            final double p = Math.exp(z[j] - m) / s;
            if (p != 0) {
                w += p * (z[j] - m);
            }
        }
        return gl * ((z[label] - m) - logS) + ge * (logS - w);
    }
}
