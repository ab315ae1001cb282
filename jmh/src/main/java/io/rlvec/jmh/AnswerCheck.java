package io.rlvec.jmh;

import java.util.Map;

import io.rlvec.AggResult;
import io.rlvec.OffHeapArray;
import io.rlvec.PolicyLossResult;
import io.rlvec.ValueLossResult;

/**
 * The parity contract of design.md, checked inside the benchmarks (style.md P13): a benchmark that measures a
 * wrong answer measures nothing. Gradients must be bit-identical to the reference's, reduced scalars within
 * one ulp. Each failure throws {@link IllegalStateException}, which fails the JMH run.
 */
public final class AnswerCheck {
    /** Tolerance on reduced scalars (loss, metrics), in units in the last place of a float. */
    public static final int SCALAR_ULPS = 1;

    private AnswerCheck() {
    }

    /**
     * @param what     what is compared, for the message (engine, shape, cold or hot).
     * @param actual   the engine's output.
     * @param expected the reference's output.
     * @throws IllegalStateException at the first element whose bits differ.
     */
    public static void sameBits(final String what, final OffHeapArray actual, final float[] expected) {
        final float[] got = actual.toFloatArray();
        for (int i = 0; i < expected.length; i++) {
            final int a = Float.floatToRawIntBits(got[i]);
            final int e = Float.floatToRawIntBits(expected[i]);
            if (a != e) {
                throw new IllegalStateException(what + ": element " + i + " is " + got[i] + " (0x"
                    + Integer.toHexString(a) + "), the reference gives " + expected[i] + " (0x" + Integer.toHexString(e)
                    + "); gradients must be bit-identical");
            }
        }
    }

    /**
     * @throws IllegalStateException when the two floats are more than {@link #SCALAR_ULPS} apart.
     */
    public static void withinUlps(final String what, final float actual, final float expected) {
        final long d = ulpDistance(actual, expected);
        if (d > SCALAR_ULPS) {
            throw new IllegalStateException(what + " is " + actual + ", the reference gives " + expected + " ("
                + (d == Long.MAX_VALUE ? "NaN on one side" : d + " ulp apart") + "; allowed " + SCALAR_ULPS + ")");
        }
    }

    /** Compares the loss and every metric of two policy-loss results. */
    public static void policyLoss(final String what, final PolicyLossResult actual, final PolicyLossResult expected) {
        withinUlps(what + ": pg_loss", actual.pgLoss(), expected.pgLoss());
        final Map<String, Double> e = expected.metrics();
        for (final Map.Entry<String, Double> m : actual.metrics().entrySet()) {
            withinUlps(what + ": " + m.getKey(), m.getValue().floatValue(), e.get(m.getKey()).floatValue());
        }
    }

    /** Compares the loss, the metrics and the mergeable counts of two value-loss results. */
    public static void valueLoss(final String what, final ValueLossResult actual, final ValueLossResult expected) {
        withinUlps(what + ": vf_loss", actual.vfLoss(), expected.vfLoss());
        final Map<String, Double> e = expected.metrics();
        for (final Map.Entry<String, Double> m : actual.metrics().entrySet()) {
            withinUlps(what + ": " + m.getKey(), m.getValue().floatValue(), e.get(m.getKey()).floatValue());
        }
        if (actual.validTokens() != expected.validTokens() || actual.clippedTokens() != expected.clippedTokens()) {
            throw new IllegalStateException(what + ": counts differ: " + actual + " vs the reference's " + expected);
        }
    }

    /** Compares the loss and the mergeable parts of two agg_loss results. */
    public static void aggLoss(final String what, final AggResult actual, final AggResult expected) {
        withinUlps(what + ": loss", actual.loss(), expected.loss());
        if (actual.validTokens() != expected.validTokens() || actual.validSequences() != expected.validSequences()
            || actual.denominator() != expected.denominator()) {
            throw new IllegalStateException(what + ": counts differ: " + actual + " vs the reference's " + expected);
        }
    }

    /**
     * @return the number of floats between {@code a} and {@code b} (0 when equal, +0 and -0 are 1 apart),
     *     {@link Long#MAX_VALUE} when exactly one is NaN; two NaNs are equal.
     */
    public static long ulpDistance(final float a, final float b) {
        if (Float.isNaN(a) || Float.isNaN(b)) {
            return Float.isNaN(a) && Float.isNaN(b) ? 0 : Long.MAX_VALUE;
        }
        return Math.abs((long) ordered(a) - ordered(b));
    }

    /** Maps float bits to ints that order like the floats (negative floats count down from -1). */
    private static int ordered(final float f) {
        final int bits = Float.floatToRawIntBits(f);
        return bits ^ ((bits >> 31) & 0x7fffffff);
    }
}
