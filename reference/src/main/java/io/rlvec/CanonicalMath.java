package io.rlvec;

/**
 * The canonical exp of RLVec (design.md, numerics contract): one polynomial, written here with {@link Math#fma}
 * and once more with Vector API operations in the engine ({@code io.rlvec.engine.VectorMath}), with the same
 * constants and the same order of operations, FMA always on. Elementwise results are therefore bit-identical
 * between the two implementations, interpreted or compiled, on every CPU with FMA.
 *
 * <p>Algorithm: n = round(x log2 e) by the magic-bias trick (the fused multiply-add rounds once); r = x - n ln 2
 * in two FMA steps (Cody-Waite, ln 2 split so that n * LN2_HI is exact); exp(r) on [-ln2/2, ln2/2] by the
 * Cephes degree-5 minimax polynomial p, as 1 + r + r^2 p(r); then the result is scaled by 2^n in two exact
 * power-of-two multiplications (2^(n>>1) and 2^(n - (n>>1))), so that n = 128 and n = -126 need no special case.
 *
 * <p>Accepted range: x in [{@link #EXP_LO}, {@link #EXP_HI}]. Above it the result is +Inf (the true value
 * overflows float), below it 0 (the true value is subnormal and is flushed), NaN gives NaN. The accuracy over
 * the accepted range is tested against {@link StrictMath#exp(double)} (see the README for the measured ULPs).
 */
public final class CanonicalMath {
    /** log2(e) rounded to float. */
    public static final float LOG2E = 1.44269504088896341f;
    /** 1.5 * 2^23 + 127: adding it rounds to an integer and leaves n + 127 in the low mantissa bits. */
    public static final float MAGIC_BIAS = 12583039.0f;
    /** Bit pattern of 1.5 * 2^23. */
    public static final int MAGIC_BITS = 0x4B400000;
    /** High part of ln 2 (its last 12 bits are zero, so n * LN2_HI is exact for |n| &lt;= 2^12). */
    public static final float LN2_HI = 0.693145751953125f;
    /** ln 2 - LN2_HI. */
    public static final float LN2_LO = 1.42860677e-6f;
    /** Polynomial coefficients, highest degree first (Cephes expf). */
    public static final float P0 = 1.9875691500e-4f;
    /** Coefficient. */
    public static final float P1 = 1.3981999507e-3f;
    /** Coefficient. */
    public static final float P2 = 8.3334519073e-3f;
    /** Coefficient. */
    public static final float P3 = 4.1665795894e-2f;
    /** Coefficient. */
    public static final float P4 = 1.6666665459e-1f;
    /** Coefficient. */
    public static final float P5 = 5.0000001201e-1f;
    /** Largest x whose exp is finite in float (exp(EXP_HI) = 3.40279e38). */
    public static final float EXP_HI = 88.72283f;
    /** Smallest x whose exp is a normal float: ln(2^-126). */
    public static final float EXP_LO = -87.33654f;

    private CanonicalMath() {
    }

    /**
     * @param x any float.
     * @return e^x by the canonical polynomial (see the class comment for range and accuracy).
     */
    public static float exp(final float x) {
        if (x > EXP_HI) {
            return Float.POSITIVE_INFINITY;
        }
        if (x < EXP_LO) {
            return 0f;
        }
        final float z = Math.fma(x, LOG2E, MAGIC_BIAS);
        final int n = Float.floatToRawIntBits(z) - MAGIC_BITS - 127;
        final float nf = z - MAGIC_BIAS;
        float r = Math.fma(nf, -LN2_HI, x);
        r = Math.fma(nf, -LN2_LO, r);
        float p = P0;
        p = Math.fma(p, r, P1);
        p = Math.fma(p, r, P2);
        p = Math.fma(p, r, P3);
        p = Math.fma(p, r, P4);
        p = Math.fma(p, r, P5);
        final float r2 = r * r;
        final float y = Math.fma(p, r2, r) + 1f;
        final int n1 = n >> 1;
        final int n2 = n - n1;
        final float s1 = Float.intBitsToFloat((n1 + 127) << 23);
        final float s2 = Float.intBitsToFloat((n2 + 127) << 23);
        return (y * s1) * s2;
    }
}
