package io.rlvec.cli.golden;

import io.rlvec.KlPenalty;

/**
 * verl's per-token KL estimators evaluated in double from the same float32 inputs, with an error bound for a
 * float32 evaluation derived from the operation (the referee that judges {@code out.kld}, see
 * {@link GoldenRunner#compare}).
 *
 * <p>With {@code u = 2^-24} (float32's unit roundoff) and {@code r} the float32 difference of the inputs (one
 * rounding, relative error {@code u}):
 * <ul>
 * <li>k1 {@code r}, abs {@code |r|}: one rounding, {@code u |k|};</li>
 * <li>k2 {@code 0.5 r^2}: {@code r}'s rounding doubled by the square, the product's rounding: {@code 3 u |k|};</li>
 * <li>low_var_kl / k3 {@code exp(r) - r - 1} (r clamped to [-20, 20], the result to [-10, 10]): {@code r}'s
 * rounding through {@code dk/dr = exp(r) - 1}, exp within 2 ulp ({@code 4 u exp(r)}), then the two subtractions
 * round at the magnitudes of the terms that cancel: {@code u |exp(r) - r| + u |k|}. At {@code |r| ~ 0.13} the
 * terms are ~1 and the result ~0.008, so a float32 evaluation may be off by ~3e-5 relative: a fixed relative
 * 1e-5 would fail an engine that is closer to the exact value than verl.</li>
 * </ul>
 * Each bound is doubled (a margin for the rounding of the bound's own terms) and never below half an ulp of the
 * float32 result, the error of a correctly rounded value. The same bound holds for the engine, which evaluates the
 * same expression in float32 (or a more accurate form of it).
 */
final class KlBounds {
    private static final double U = 0x1p-24;

    private KlBounds() {
    }

    /**
     * @param kl  the estimator.
     * @param lp  the log-probs (float32 values).
     * @param ref the reference log-probs.
     * @return per token: the double-precision value, and the same bound for verl and for the engine.
     */
    static CaseOutputs.Referee of(final KlPenalty kl, final float[] lp, final float[] ref) {
        final int n = lp.length;
        final double[] exact = new double[n];
        final double[] bound = new double[n];
        for (int i = 0; i < n; i++) {
            final double d = (double) lp[i] - ref[i];
            final double k;
            final double b;
            switch (kl.estimator()) {
                case K1 -> {
                    k = d;
                    b = U * Math.abs(k);
                }
                case ABS -> {
                    k = Math.abs(d);
                    b = U * k;
                }
                case K2 -> {
                    k = 0.5 * d * d;
                    b = 3 * U * k;
                }
                case K3 -> {
                    final double r = Math.max(-20, Math.min(20, -d));
                    final double inside = Math.abs(-d) < 20 ? 1 : 0;
                    final double e = Math.exp(r);
                    final double raw = e - r - 1;
                    k = Math.max(-10, Math.min(10, raw));
                    final double slope = Math.abs(raw) < 10 ? 1 : 0;
                    b = slope * (inside * Math.abs(e - 1) * U * Math.abs(r) + 4 * U * e + U * Math.abs(e - r)
                        + U * Math.abs(k));
                }
                default -> throw new IllegalArgumentException("no per-token bound for " + kl.verlName());
            }
            exact[i] = k;
            bound[i] = Math.max(2 * b, 0.5 * Math.ulp((float) Math.abs(k)));
        }
        return new CaseOutputs.Referee(exact, bound, bound);
    }
}
