package io.rlvec;

/** bfloat16 conversions: a bf16 is the upper 16 bits of a binary32. */
public final class Bf16 {
    private Bf16() {
    }

    /** @return the float a bf16 bit pattern stands for (exact). */
    public static float toFloat(final short bits) {
        return Float.intBitsToFloat((bits & 0xFFFF) << 16);
    }

    /** @return {@code v} rounded to the nearest bf16, ties to even; NaN stays a (quiet) NaN. */
    public static short fromFloat(final float v) {
        final int x = Float.floatToRawIntBits(v);
        if (Float.isNaN(v)) {
            return (short) ((x >>> 16) | 0x0040);
        }
        final int rounding = 0x7FFF + ((x >>> 16) & 1);
        return (short) ((x + rounding) >>> 16);
    }
}
