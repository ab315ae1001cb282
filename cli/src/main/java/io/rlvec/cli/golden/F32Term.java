package io.rlvec.cli.golden;

/**
 * A per-token term evaluated in double from float32 inputs, together with a bound on the error any float32
 * evaluation of the same expression (PyTorch's, or the engine's) can have: forward error analysis, one operation
 * at a time. Every handler that judges per-token terms by error analysis builds them from these operations, so the
 * bound of each term follows from the operations in verl's expression and nothing else.
 *
 * <p>With u = 2^-24 (float32's unit roundoff), {@code v} the double value of the operation on the operands' double
 * values and {@code e} their error bounds, a float32 operation rounds its result once (relative u, plus
 * {@link #TINY} for an underflow); PyTorch's and the engines' float32 exp are within one ulp of the correctly
 * rounded value, so within 1.5 ulp of the exact one (relative 3u):
 * <pre>
 *   input x (float32)        e = 0
 *   a +- b                   e = e_a + e_b + u (|v| + e_a + e_b)
 *   a * b                    p = |a| e_b + |b| e_a + e_a e_b,   e = p + u (|v| + p)
 *   a * c (c an exact power of two, or -1)   e = |c| e_a
 *   a / b                    p = (e_a + |v| e_b) / (|b| - e_b), e = p + u (|v| + p)
 *   exp(a)                   p = e^a (e^{e_a} - 1),             e = p + 3u (e^a + p)   (exp(0) = 1: e = 0)
 *   ln(a)                    p = ln(a / (a - e_a)),             e = p + 2u (|v| + p)
 *   sigmoid(a)               p = min(1/4, s (1 - s) e^{e_a}) e_a, e = p + 5u (s + p)
 *   sqrt(max(a, 0))          p = min(sqrt(e_a), e_a / sqrt(a)),  e = p + u (|v| + p)
 *   clamp(a, lo, hi), max(a, b), min(a, b)   e = max(e_a, e_b)  (exact and 1-Lipschitz: no rounding, no growth;
 *                                             e of the selected operand where the operands are farther apart than
 *                                             e_a + e_b, so that float32 selects the same one)
 * </pre>
 * A comparison whose operands lie within their bounds of each other is {@link #ambiguous}: float32 may decide it
 * either way, so a count may be off by that token and a gradient may take the other branch's value there (an
 * exact tie of error-free operands is decided alike by every evaluation). {@link TokenTermBounds} turns the terms
 * into the bounds of aggregated losses, token means, fractions and per-token gradients.
 *
 * @param v the exact (double) value.
 * @param e a bound on |float32 evaluation - v|.
 */
record F32Term(double v, double e) {
    /** float32's unit roundoff. */
    static final double U = 0x1p-24;
    /** Relative error of a float32 exp: one ulp from the correctly rounded value, 1.5 ulp (3u) from the exact one. */
    static final double EXP_ROUNDOFF = 3 * U;
    /** Absolute error of one float32 rounding in the subnormal range (half the smallest subnormal, doubled). */
    static final double TINY = 0x1p-149;

    /** @return an input (exact): a float32 value, or a float64 case's stored value (see {@link CaseOutputs.Referee#storedInDouble}). */
    static F32Term of(final double x) {
        return new F32Term(x, 0);
    }

    /** @return float32 values as doubles (exact). */
    static double[] widen(final float[] x) {
        final double[] d = new double[x.length];
        for (int i = 0; i < x.length; i++) {
            d[i] = x[i];
        }
        return d;
    }

    /** @return doubles rounded to float32 (exact for values that are float32 already). */
    static float[] narrow(final double[] x) {
        final float[] f = new float[x.length];
        for (int i = 0; i < x.length; i++) {
            f[i] = (float) x[i];
        }
        return f;
    }

    /** @return a float32 constant (verl's Python scalar as torch rounds it to float32): exact. */
    static F32Term constant(final double c) {
        return new F32Term((float) c, 0);
    }

    private static F32Term rounded(final double v, final double propagated) {
        return new F32Term(v, propagated + U * (Math.abs(v) + propagated) + TINY);
    }

    /** @return an exact value rounded once to float32 (a constant expression torch evaluates in float32). */
    static F32Term roundedOnce(final double v) {
        return rounded(v, 0);
    }

    F32Term plus(final F32Term b) {
        return rounded(v + b.v, e + b.e);
    }

    F32Term minus(final F32Term b) {
        return rounded(v - b.v, e + b.e);
    }

    F32Term times(final F32Term b) {
        return rounded(v * b.v, Math.abs(v) * b.e + Math.abs(b.v) * e + e * b.e);
    }

    /** @return this times an exact factor (a power of two or -1): no rounding. */
    F32Term timesExact(final double c) {
        return new F32Term(v * c, Math.abs(c) * e);
    }

    F32Term negate() {
        return new F32Term(-v, e);
    }

    F32Term exp() {
        if (v == 0 && e == 0) {
            return new F32Term(1, 0); // exp(0) = 1 exactly, in every libm and in the engines
        }
        final double x = Math.exp(v);
        final double p = x * Math.expm1(e);
        return new F32Term(x, p + EXP_ROUNDOFF * (x + p) + TINY);
    }

    /** @return this / b, b bounded away from 0 by its error (else an infinite bound). */
    F32Term dividedBy(final F32Term b) {
        final double q = v / b.v;
        final double room = Math.abs(b.v) - b.e;
        return rounded(q, room > 0 ? (e + Math.abs(q) * b.e) / room : Double.POSITIVE_INFINITY);
    }

    /** @return ln(this) (PyTorch's float32 log: within one ulp), this bounded away from 0 (else an infinite bound). */
    F32Term log() {
        final double x = Math.log(v);
        final double p = v - e > 0 ? Math.log(v / (v - e)) : Double.POSITIVE_INFINITY;
        return new F32Term(x, p + 2 * U * (Math.abs(x) + p) + TINY);
    }

    /**
     * @return sigmoid(this) = 1 / (1 + exp(-this)): the slope s (1 - s) is at most 1/4 and changes by at most a
     *         factor e^e within e of the argument; PyTorch's float32 sigmoid (an exp, an add and a division) rounds
     *         within 5u of s.
     */
    F32Term sigmoid() {
        final double s = 1 / (1 + Math.exp(-v));
        final double tail = Math.exp(-Math.abs(v));
        final double slope = tail / ((1 + tail) * (1 + tail));
        final double p = Math.min(0.25, slope * Math.exp(Math.min(e, 700))) * e;
        return new F32Term(s, p + 5 * U * (s + p) + TINY);
    }

    /**
     * @return sqrt(max(this, 0)) (torch.sqrt(torch.clamp(x, min=0)), a correctly rounded square root): the clamp
     *         is exact and 1-Lipschitz, and for x, y &gt;= 0 within e of each other |sqrt y - sqrt x| is at most
     *         sqrt(e) and at most e / sqrt(x).
     */
    F32Term sqrtOfNonNegative() {
        final double x = Math.max(v, 0);
        final double s = Math.sqrt(x);
        final double p = x > 0 ? Math.min(Math.sqrt(e), e / s) : Math.sqrt(e);
        return new F32Term(s, p + U * (s + p) + TINY);
    }

    F32Term clamp(final double lo, final double hi) {
        return new F32Term(Math.max(lo, Math.min(hi, v)), e);
    }

    static F32Term max(final F32Term a, final F32Term b) {
        return new F32Term(Math.max(a.v, b.v), select(a, b, a.v >= b.v));
    }

    static F32Term min(final F32Term a, final F32Term b) {
        return new F32Term(Math.min(a.v, b.v), select(a, b, a.v <= b.v));
    }

    /** The error of a max or min: the selected operand's where float32 surely selects it too, else the larger. */
    private static double select(final F32Term a, final F32Term b, final boolean first) {
        return ambiguous(a, b) || a.v == b.v ? Math.max(a.e, b.e) : first ? a.e : b.e;
    }

    /** @return whether float32 may order {@code a} and {@code b} either way (their bounds overlap). */
    static boolean ambiguous(final F32Term a, final F32Term b) {
        final double e = a.e + b.e;
        return e > 0 && Math.abs(a.v - b.v) <= e;
    }

    /** @return whether float32 may order this and the exact float32 value {@code c} either way. */
    boolean ambiguous(final double c) {
        return e > 0 && Math.abs(v - c) <= e;
    }
}
