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

    /** Asserts {@code |x - y| <= ulps} (NaN equals NaN). */
    static void close(final float expected, final float actual, final long ulps, final String what) {
        if (!Inputs.within(expected, actual, ulps)) {
            throw new AssertionError(what + ": engine " + Ulp.show(actual) + " vs reference " + Ulp.show(expected)
                + " (more than " + ulps + " ulp)");
        }
    }
}
