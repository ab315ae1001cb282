package io.rlvec.cli.golden;

import java.util.function.UnaryOperator;

/**
 * The referees of the outputs built from per-token {@link F32Term}s, shared by every handler that judges a loss
 * mode by error analysis: the aggregated loss, a token mean (a metric such as ppo_kl), a fraction of counted tokens
 * (pg_clipfrac, vf_clipfrac) and a per-token gradient. Every referee is rigorous: the bounds are worst cases of any
 * float32 evaluation, so verl beyond its bound computed something else (FAIL).
 *
 * <p>With x_t the terms' double values, e_t their bounds (from the per-token operations), w_t the token's
 * aggregation weight (d loss / d term, {@link AggLossHandler#weights}), T the padded width, B the rows, n the
 * valid tokens and u = 2^-24:
 * <pre>
 *   loss = sum_t w_t x_t,  M = sum_t |w_t x_t|,  E = sum_t |w_t| e_t
 *   verl:   E (1 + (T + B + 4) u) + (T + B + 4) u M + 3 u (|loss| + E)     float32 terms, float32 sums in any order
 *   engine: E + 1.5 ulp(loss) + (n + 4) 2^-53 M                            float32 terms, double sums, one rounding
 *                                                                          (+ the engines' one-ulp contract)
 *   fraction k/n of counted tokens, a of them ambiguous (float32 may count them or not):
 *           a / n + ulp((k + a) / n), for both                              counts are exact integers; one division
 *   gradient at a valid token, g_t the term's derivative (bound e_g,t), the weight carrying up to four float32
 *   roundings (4u |w_t|) and one product:  F32Term(g_t, e_g,t) * F32Term(w_t, 4u |w_t|), for both; masked: 0.
 * </pre>
 */
final class TokenTermBounds {
    private static final double U = F32Term.U;

    private TokenTermBounds() {
    }

    /**
     * The aggregated loss {@code sum_t w_t x_t}.
     *
     * @param terms per element, the term (null on masked elements).
     * @param w     per element, the aggregation weight (0 on masked elements).
     * @param b     rows.
     * @param t     padded width.
     * @return the referee, or null when a valid term or weight is not finite.
     */
    static CaseOutputs.Referee aggregated(final F32Term[] terms, final double[] w, final int b, final int t) {
        final double[] x = new double[w.length];
        final double[] e = new double[w.length];
        for (int k = 0; k < w.length; k++) {
            x[k] = terms[k] == null ? 0 : terms[k].v();
            e[k] = terms[k] == null ? 0 : terms[k].e();
        }
        return aggregated(new CaseOutputs.Referee(x, e, e, true), terms, w, b, t);
    }

    /**
     * The aggregated loss {@code sum_t w_t x_t} of terms that carry separate bounds for verl and for the engine
     * (a referee's per-token values, e.g. the kld or the entropy of dp_actor's composition); rigorous where the
     * terms' bounds are.
     *
     * @param w per element, the aggregation weight (0 on masked elements, which are not read).
     * @return the referee, or null when a term or weight read is not finite.
     */
    static CaseOutputs.Referee aggregated(final CaseOutputs.Referee terms, final double[] w, final int b,
                                          final int t) {
        return aggregated(terms, null, w, b, t);
    }

    /** The sum, for the terms of {@code terms} that {@code present} has (every weighted one when it is null). */
    private static CaseOutputs.Referee aggregated(final CaseOutputs.Referee terms, final F32Term[] present,
                                                  final double[] w, final int b, final int t) {
        double loss = 0;
        double magnitude = 0;
        double propagatedVerl = 0;
        double propagatedEngine = 0;
        int n = 0;
        for (int k = 0; k < w.length; k++) {
            if (present != null ? present[k] == null : w[k] == 0) {
                continue;
            }
            final double x = terms.exactAt(k);
            if (!Double.isFinite(x) || !Double.isFinite(terms.budgetAt(k)) || !Double.isFinite(terms.engineBoundAt(k))
                || !Double.isFinite(w[k])) {
                return null;
            }
            loss += w[k] * x;
            magnitude += Math.abs(w[k] * x);
            propagatedVerl += Math.abs(w[k]) * terms.budgetAt(k);
            propagatedEngine += Math.abs(w[k]) * terms.engineBoundAt(k);
            n++;
        }
        if (!Double.isFinite(loss) || !Double.isFinite(propagatedVerl) || !Double.isFinite(propagatedEngine)) {
            return null;
        }
        final double sum = (t + b + 4) * U;
        final double verl = propagatedVerl * (1 + sum) + sum * magnitude + 3 * U * (Math.abs(loss) + propagatedVerl);
        final double engine = propagatedEngine + 1.5 * Math.ulp((float) loss) + (n + 4) * 0x1p-53 * magnitude;
        return new CaseOutputs.Referee(new double[] {loss}, new double[] {verl}, new double[] {engine},
            terms.rigorous());
    }

    /**
     * A row's float32 masked sum {@code sum(x * mask)} (a sequence-level log-ratio or statistic): a float32 sum of
     * the row's T terms in any order, {@code sum e_t + (T + 1) u sum |x_t|}; an empty row gives 0.
     *
     * @param x    per element, the term (null on masked elements).
     * @param from the row's first element.
     * @param to   one past the row's last element.
     */
    static F32Term rowSum(final F32Term[] x, final int from, final int to) {
        double sum = 0;
        double magnitude = 0;
        double propagated = 0;
        for (int k = from; k < to; k++) {
            if (x[k] != null) {
                sum += x[k].v();
                magnitude += Math.abs(x[k].v());
                propagated += x[k].e();
            }
        }
        return new F32Term(sum, propagated + (to - from + 1) * U * magnitude);
    }

    /**
     * A row's float32 masked mean {@code sum(x * mask) / len} (gspo's mean log-ratio, geo_mean's means): the
     * {@link #rowSum}, then one division by len; an empty row gives 0 (verl divides 0 by len clamped to 1, or by
     * len + 1e-8, which is len in float32 for len &gt;= 1).
     *
     * @param x    per element, the term (null on masked elements).
     * @param from the row's first element.
     * @param to   one past the row's last element.
     */
    static F32Term rowMean(final F32Term[] x, final int from, final int to) {
        int count = 0;
        for (int k = from; k < to; k++) {
            count += x[k] != null ? 1 : 0;
        }
        return count == 0 ? new F32Term(0, 0) : rowSum(x, from, to).dividedBy(F32Term.of(count));
    }

    /** A masked mean over the valid tokens (verl's masked_mean), as {@link #aggregated} with weights 1/n. */
    static CaseOutputs.Referee tokenMean(final F32Term[] terms, final int b, final int t) {
        int n = 0;
        for (final F32Term x : terms) {
            n += x != null ? 1 : 0;
        }
        final double[] w = new double[terms.length];
        for (int k = 0; k < w.length; k++) {
            w[k] = terms[k] != null ? 1.0 / n : 0;
        }
        return n == 0 ? null : aggregated(terms, w, b, t);
    }

    /**
     * A fraction of counted tokens (verl's masked_mean of a 0/1 indicator).
     *
     * @param counted   tokens the double-precision evaluation counts.
     * @param ambiguous valid tokens whose comparison float32 may decide either way.
     * @param n         valid tokens (at least 1).
     */
    static CaseOutputs.Referee fraction(final int counted, final int ambiguous, final int n) {
        final double x = (double) counted / n;
        final double bound = (double) ambiguous / n + Math.ulp((float) ((double) (counted + ambiguous) / n));
        return new CaseOutputs.Referee(new double[] {x}, new double[] {bound}, new double[] {bound}, true);
    }

    /**
     * One more float32 operation on a judged scalar (chi2's {@code mean - 1}): applied to the value with verl's
     * bound and with the engine's.
     *
     * @return the referee of the result, or null for a null referee.
     */
    static CaseOutputs.Referee then(final CaseOutputs.Referee r, final UnaryOperator<F32Term> op) {
        if (r == null) {
            return null;
        }
        final F32Term verl = op.apply(r.term(0, false));
        final F32Term engine = op.apply(r.term(0, true));
        return new CaseOutputs.Referee(new double[] {verl.v()}, new double[] {verl.e()}, new double[] {engine.e()},
            true);
    }

    /**
     * One more float32 operation on two judged scalars (a variance {@code E[c^2] - E[c]^2}): applied to the values
     * with verl's bounds and with the engine's.
     *
     * @return the referee of the result, or null for a null referee or a result without a finite bound.
     */
    static CaseOutputs.Referee then(final CaseOutputs.Referee a, final CaseOutputs.Referee b,
                                    final java.util.function.BinaryOperator<F32Term> op) {
        if (a == null || b == null) {
            return null;
        }
        final F32Term verl = op.apply(a.term(0, false), b.term(0, false));
        final F32Term engine = op.apply(a.term(0, true), b.term(0, true));
        return Double.isFinite(verl.v()) && Double.isFinite(verl.e()) && Double.isFinite(engine.e())
            ? new CaseOutputs.Referee(new double[] {verl.v()}, new double[] {verl.e()}, new double[] {engine.e()},
                true)
            : null;
    }

    /**
     * torch.std (unbiased) of the non-null terms: sqrt(sum (x - mean)^2 / (n - 1)), 0 for n &lt;= 1. The standard
     * deviation is 1 / sqrt(n - 1) times the norm of the centred vector, and centring is a projection, so inputs
     * within e_i of the exact ones move it by at most sqrt(sum e_i^2 / (n - 1)). The engine's two passes run in
     * double and round the result once: (n + 4) 2^-53 of the value plus one ulp. verl's torch.std is held to a
     * float32 two-pass evaluation's bound on top: its mean off by up to (n + 2) u max |x| shifts every deviation
     * alike (sqrt(n / (n - 1)) times that on the result), and the deviations, squares and sum round within
     * (n + 4) u of the value.
     *
     * @return the referee, or null when a term is not finite.
     */
    static CaseOutputs.Referee unbiasedStd(final F32Term[] x) {
        double sum = 0;
        int n = 0;
        for (final F32Term t : x) {
            if (t != null) {
                if (!Double.isFinite(t.v()) || !Double.isFinite(t.e())) {
                    return null;
                }
                sum += t.v();
                n++;
            }
        }
        if (n <= 1) {
            return new CaseOutputs.Referee(new double[] {0}, new double[] {0}, new double[] {0}, true);
        }
        final double mean = sum / n;
        double squares = 0;
        double moved = 0;
        double largest = 0;
        for (final F32Term t : x) {
            if (t != null) {
                squares += (t.v() - mean) * (t.v() - mean);
                moved += t.e() * t.e();
                largest = Math.max(largest, Math.abs(t.v()) + t.e());
            }
        }
        final double std = Math.sqrt(squares / (n - 1));
        final double engine = Math.sqrt(moved / (n - 1)) + (n + 4) * 0x1p-53 * std + Math.ulp((float) std);
        final double verl = engine + (n + 2) * U * largest * Math.sqrt((double) n / (n - 1)) + (n + 4) * U * std;
        return new CaseOutputs.Referee(new double[] {std}, new double[] {verl}, new double[] {engine}, true);
    }

    /**
     * A per-token gradient {@code w_t g_t}.
     *
     * @param g per element, the term's derivative with its bound (null on masked elements: exactly 0).
     * @param w per element, the aggregation weight.
     * @return the referee, or null when a valid value is not finite.
     */
    static CaseOutputs.Referee gradient(final F32Term[] g, final double[] w) {
        final double[] x = new double[w.length];
        final double[] bound = new double[w.length];
        for (int k = 0; k < w.length; k++) {
            if (g[k] == null) {
                continue;
            }
            final F32Term y = g[k].times(new F32Term(w[k], 4 * U * Math.abs(w[k])));
            if (!Double.isFinite(y.v()) || !Double.isFinite(y.e())) {
                return null;
            }
            x[k] = y.v();
            bound[k] = y.e();
        }
        return new CaseOutputs.Referee(x, bound, bound, true);
    }
}
