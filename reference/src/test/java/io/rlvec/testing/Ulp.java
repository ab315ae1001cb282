package io.rlvec.testing;

/** Float comparison helpers with the project's tolerance vocabulary (bits, ulps). */
public final class Ulp {
    private Ulp() {
    }

    /**
     * @return the distance in units in the last place between two floats: 0 when numerically equal (+0 and -0
     *     too) or both NaN, {@link Long#MAX_VALUE} when exactly one is NaN or they have different signs and are not
     *     both zero, else the difference of their ordered bit patterns.
     */
    public static long distance(final float a, final float b) {
        if (a == b || (a != a && b != b)) {
            return 0;
        }
        if (a != a || b != b) {
            return Long.MAX_VALUE;
        }
        return Math.abs(ordered(a) - ordered(b));
    }

    private static long ordered(final float f) {
        final int bits = Float.floatToRawIntBits(f);
        return bits >= 0 ? bits : -(long) (bits & 0x7fffffff);
    }

    /**
     * Bit identity as the parity contract means it: the same raw bits, except that any NaN equals any NaN (x86
     * propagates the first NaN operand of an operation and the JIT may commute operands, so NaN payloads are not
     * part of the contract; their presence is).
     */
    public static boolean sameBits(final float a, final float b) {
        return Float.floatToRawIntBits(a) == Float.floatToRawIntBits(b) || (a != a && b != b);
    }

    /** @return a readable rendering of a float with its bits. */
    public static String show(final float f) {
        return f + " (0x" + Integer.toHexString(Float.floatToRawIntBits(f)) + ")";
    }
}
