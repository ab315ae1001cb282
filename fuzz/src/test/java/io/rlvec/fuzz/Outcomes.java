package io.rlvec.fuzz;

import io.rlvec.OffHeapArray;
import io.rlvec.testing.Ulp;

/** The outcome rules of every fuzz target. */
final class Outcomes {
    private Outcomes() {
    }

    /** A refusal is documented when it is an IllegalArgumentException with a message that says something. */
    static void documented(final IllegalArgumentException e) {
        final String m = e.getMessage();
        if (m == null || m.isBlank() || m.length() < 8) {
            throw new AssertionError("an IllegalArgumentException without a useful message: '" + m + "'", e);
        }
    }

    /**
     * Runs the reference call, then the engine call; each may refuse with a documented IllegalArgumentException
     * (anything else propagates and is a finding). Both must decide alike.
     *
     * @return true when both accepted the inputs.
     */
    static boolean both(final Runnable reference, final Runnable engine) {
        final IllegalArgumentException r = refusal(reference);
        final IllegalArgumentException e = refusal(engine);
        if ((r == null) != (e == null)) {
            throw new AssertionError("the reference " + (r == null ? "accepted" : "refused (" + r.getMessage() + ")")
                + " but the engine " + (e == null ? "accepted" : "refused (" + e.getMessage() + ")"), r != null ? r : e);
        }
        return r == null;
    }

    /** @return the documented refusal, or null when the call returned. */
    static IllegalArgumentException refusal(final Runnable call) {
        try {
            call.run();
            return null;
        } catch (final IllegalArgumentException ex) {
            documented(ex);
            return ex;
        }
    }

    /** Asserts per-element bit identity ({@link Ulp#sameBits}: any NaN equals any NaN) of two float buffers. */
    static void sameBits(final OffHeapArray expected, final OffHeapArray actual, final String what) {
        if (expected == null || actual == null) {
            if (expected != actual) {
                throw new AssertionError(what + ": one output is null");
            }
            return;
        }
        for (long i = 0; i < expected.length(); i++) {
            final float x = expected.getFloat(i);
            final float y = actual.getFloat(i);
            if (!Ulp.sameBits(x, y)) {
                throw new AssertionError(what + "[" + i + "]: engine " + Ulp.show(y) + " vs reference " + Ulp.show(x));
            }
        }
    }

    /** Asserts bit identity of the first {@code n} elements of two float buffers. */
    static void sameBits(final OffHeapArray expected, final OffHeapArray actual, final int n, final String what) {
        for (int i = 0; i < n; i++) {
            final float x = expected.getFloat(i);
            final float y = actual.getFloat(i);
            if (!Ulp.sameBits(x, y)) {
                throw new AssertionError(what + "[" + i + "]: engine " + Ulp.show(y) + " vs reference " + Ulp.show(x));
            }
        }
    }

    /** Asserts {@code |x - y| <= ulps} (NaN equals NaN). */
    static void close(final float expected, final float actual, final long ulps, final String what) {
        if (!Inputs.within(expected, actual, ulps)) {
            throw new AssertionError(what + ": engine " + Ulp.show(actual) + " vs reference " + Ulp.show(expected)
                + " (more than " + ulps + " ulp)");
        }
    }

    /** A NaN with a payload no computation produces: the contents of an output before the call. */
    static final float POISON = Float.intBitsToFloat(0x7FC0_DEAD);

    /** Fills an output buffer (if any) with {@link #POISON}. */
    static void poison(final OffHeapArray a) {
        if (a != null) {
            for (long i = 0; i < a.length(); i++) {
                a.setFloat(i, POISON);
            }
        }
    }

    /** Asserts that a refused call wrote nothing into an output buffer it was given (still {@link #POISON}). */
    static void untouched(final OffHeapArray a, final String what) {
        if (a != null && a.type() == io.rlvec.ElementType.F32) {
            for (long i = 0; i < a.length(); i++) {
                if (Float.floatToRawIntBits(a.getFloat(i)) != Float.floatToRawIntBits(POISON)) {
                    throw new AssertionError(what + "[" + i + "] written (" + Ulp.show(a.getFloat(i))
                        + ") by a call that was refused");
                }
            }
        }
    }

    /** Asserts that {@code a[t]} is exactly 0 (either sign) at every token outside the mask. */
    static void zeroOutsideMask(final OffHeapArray a, final OffHeapArray mask, final int n, final String what) {
        if (a == null) {
            return;
        }
        for (int t = 0; t < n; t++) {
            if (mask.getFloat(t) == 0f && a.getFloat(t) != 0f) {
                throw new AssertionError(what + "[" + t + "] = " + Ulp.show(a.getFloat(t)) + " outside the mask");
            }
        }
    }
}
