package io.rlvec.cli.golden;

import io.rlvec.KlPenalty;
import io.rlvec.reference.KlLoss;

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
     * @param lp  the log-probs (the float32 values, or a float64 case's stored ones).
     * @param ref the reference log-probs.
     * @return per token: the double-precision value, and the same bound for verl and for the engine.
     */
    static CaseOutputs.Referee of(final KlPenalty kl, final double[] lp, final double[] ref) {
        final int n = lp.length;
        final double[] exact = new double[n];
        final double[] bound = new double[n];
        for (int i = 0; i < n; i++) {
            final double d = lp[i] - ref[i];
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

    /**
     * d kld.mean() / d logprob per token, as autograd gives it (see {@code KlLoss.gradient}: 1 for k1, sign(d) for
     * abs, d for k2 and every straight-through '+' form, 1 - e^r for k3 where both clamps pass, else 0), evaluated
     * in double from the same float32 inputs, with a bound from its float32 operations ({@link F32Term}).
     *
     * <p>{@code d = logprob - ref} rounds once and keeps its sign (a float32 difference is 0 only for equal
     * operands), so abs's gradient is exact. k3's clamps are decided on float32 values: where a clamp's operand
     * lies within its bound of the clamp's end, float32 may take either branch, and the bound then covers both
     * (the value and 0). The mean's 1/N: the engine divides its float32 local derivative by N in double and rounds
     * once (u |g|); autograd's MeanBackward divides in float32, then multiplies by the local derivative: with the
     * final rounding, 3u |g| for verl. The local derivative's bound over N is doubled (a margin), and neither bound
     * is below half an ulp of the float32 result.
     *
     * @param entries N, the number of entries the mean is over.
     * @return per token: the double-precision gradient, verl's bound and the engine's.
     */
    static CaseOutputs.Referee gradient(final KlPenalty kl, final double[] lp, final double[] ref, final int entries) {
        final int n = lp.length;
        final double[] exact = new double[n];
        final double[] verl = new double[n];
        final double[] engine = new double[n];
        for (int i = 0; i < n; i++) {
            final F32Term local = localGradient(kl, lp[i], ref[i]);
            final double g = local.v() / entries;
            exact[i] = g;
            final double halfUlp = 0.5 * Math.ulp((float) Math.abs(g));
            verl[i] = Math.max(2 * (local.e() / entries + 3 * U * Math.abs(g) + F32Term.TINY), halfUlp);
            engine[i] = Math.max(2 * (local.e() / entries + F32Term.TINY) + U * Math.abs(g), halfUlp);
        }
        return new CaseOutputs.Referee(exact, verl, engine);
    }

    /**
     * d kld / d logprob at one token as autograd gives it, with its float32 bound (see {@link #gradient}, which
     * divides it by the mean's N).
     */
    static F32Term localGradient(final KlPenalty kl, final double lp, final double ref) {
        final F32Term d = new F32Term(lp, 0).minus(new F32Term(ref, 0));
        if (kl.straightThrough()) {
            return d;
        }
        return switch (kl.estimator()) {
            case K1 -> F32Term.constant(1);
            case ABS -> F32Term.constant(Math.signum(d.v()));
            case K2 -> d;
            case K3 -> k3Gradient(lp, ref);
            default -> throw new IllegalArgumentException("no per-token bound for " + kl.verlName());
        };
    }

    /** k3's local gradient 1 - e^r, r = clamp(ref - lp, -20, 20), where both clamps pass; either branch where ambiguous. */
    private static F32Term k3Gradient(final double lp, final double ref) {
        final F32Term raw = new F32Term(ref, 0).minus(new F32Term(lp, 0));
        final F32Term r = raw.clamp(-KlLoss.RATIO_CLAMP, KlLoss.RATIO_CLAMP);
        final F32Term e = r.exp();
        final F32Term kld = e.minus(r).minus(F32Term.constant(1));
        final F32Term slope = F32Term.constant(1).minus(e);
        final boolean rawAmbiguous = raw.ambiguous(-KlLoss.RATIO_CLAMP) || raw.ambiguous(KlLoss.RATIO_CLAMP);
        final boolean kldAmbiguous = kld.ambiguous(-KlLoss.KLD_CLAMP) || kld.ambiguous(KlLoss.KLD_CLAMP);
        final boolean passes = Math.abs(raw.v()) <= KlLoss.RATIO_CLAMP && Math.abs(kld.v()) <= KlLoss.KLD_CLAMP;
        if (rawAmbiguous || kldAmbiguous) {
            // float32 may decide the clamp either way: the bound covers the value and 0 around its midpoint.
            final double half = 0.5 * (Math.abs(slope.v()) + slope.e());
            return new F32Term(passes ? slope.v() : 0, 2 * half);
        }
        return passes ? slope : F32Term.constant(0);
    }
    /**
     * verl's in-reward KL penalty ({@code apply_kl_penalty}; {@code compute_rewards} is the k1 penalty on an
     * all-valid batch): per token {@code rewards = scores - beta * (kld * m)} in float32 (beta the float32 scalar torch
     * multiplies by), kld with its bound ({@link #of}); {@code current_kl}, the mean over rows of the rows' masked
     * means (float32 in verl, double in the engine, rounded to float32 for the comparison).
     *
     * @return {rewards, current_kl}, or null where an input is not finite.
     */
    static CaseOutputs.Referee[] rewardPenalty(final KlPenalty kl, final double beta, final double[] scores,
                                               final double[] lp, final double[] ref, final double[] mask,
                                               final int b, final int t) {
        for (int k = 0; k < scores.length; k++) {
            if (!Double.isFinite(scores[k]) || !Double.isFinite(lp[k]) || !Double.isFinite(ref[k])) {
                return null;
            }
        }
        final CaseOutputs.Referee kld = of(kl, lp, ref);
        final F32Term coef = F32Term.constant(beta);
        final double[] x = new double[scores.length];
        final double[] e = new double[scores.length];
        double mean = 0;
        double meanErr = 0;
        double magnitude = 0;
        for (int i = 0; i < b; i++) {
            double sum = 0;
            double err = 0;
            double count = 0;
            for (int k = i * t; k < (i + 1) * t; k++) {
                final F32Term term = kld.term(k, true).timesExact(mask[k]);
                final F32Term r = F32Term.of(scores[k]).minus(coef.times(term));
                x[k] = r.v();
                e[k] = r.e();
                sum += term.v();
                err += term.e();
                count += mask[k];
                magnitude = Math.max(magnitude, Math.abs(term.v()));
            }
            mean += sum / (count + 1e-8);
            meanErr += err / (count + 1e-8);
        }
        mean /= b;
        meanErr /= b;
        final double engine = meanErr + U * Math.abs(mean) + 0x1p-48 * (t + b) * magnitude + F32Term.TINY;
        final double verl = meanErr + 16 * (t + b) * U * magnitude + U * Math.abs(mean) + F32Term.TINY;
        return new CaseOutputs.Referee[] {new CaseOutputs.Referee(x, e, e),
            new CaseOutputs.Referee(new double[] {mean}, new double[] {verl}, new double[] {engine})};
    }
}
