package io.rlvec.jmh.peer;

import ai.djl.ndarray.NDArray;

/**
 * The peer's answer against the engine's, before any timing: a benchmark of a peer that computes something else
 * would compare nothing.
 *
 * <p>Both compute in float32 (PyTorch on float32 tensors). Gradients: elementwise,
 * {@code |peer - engine| <= 1e-3 * |engine| + 1e-5 * max_row |engine|} (PyTorch's float32 softmax and log_softmax
 * carry a few ulp of the row's largest terms). Losses: 1e-5 relative to the larger of the loss and the
 * mean magnitude of the terms it sums: a token-mean of terms of size 1 that cancel to 1e-3 carries float32 rounding
 * of the terms' size, not of the result's.
 */
final class PeerCheck {
    private PeerCheck() {
    }

    /**
     * @param gradient the peer's gradient, {@code rows x width} (any floating type).
     * @param expected the engine's, row-major.
     * @throws IllegalStateException naming the first element out of tolerance.
     */
    static void gradient(final String what, final NDArray gradient, final float[] expected, final int rows,
                         final int width) {
        values(what, "gradient", gradient, expected, rows, width);
    }

    /**
     * The same elementwise bound for any per-token output (advantages, returns).
     *
     * @param label what the values are, for the message.
     * @throws IllegalStateException naming the first element out of tolerance.
     */
    static void values(final String what, final String label, final NDArray values, final float[] expected,
                       final int rows, final int width) {
        final float[] got = values.toType(ai.djl.ndarray.types.DataType.FLOAT32, false).toFloatArray();
        if (got.length != expected.length || (long) rows * width != expected.length) {
            throw new IllegalStateException(what + ": " + label + " has " + got.length + " elements, expected "
                + expected.length);
        }
        final double rel = 1e-3;
        final double scale = 1e-5;
        for (int r = 0; r < rows; r++) {
            double max = 0;
            for (int j = 0; j < width; j++) {
                max = Math.max(max, Math.abs(expected[r * width + j]));
            }
            for (int j = 0; j < width; j++) {
                final int i = r * width + j;
                final double d = Math.abs((double) got[i] - expected[i]);
                if (!(d <= rel * Math.abs(expected[i]) + scale * max)) {
                    throw new IllegalStateException(what + ": " + label + " at row " + r + ", column " + j + " is "
                        + got[i] + ", the engine's " + expected[i] + " (row scale " + max + ")");
                }
            }
        }
    }

    /**
     * @param termScale the mean magnitude of the terms the loss sums.
     * @throws IllegalStateException when the peer's loss is not within tolerance of the engine's.
     */
    static void loss(final String what, final double got, final double expected, final double termScale) {
        final double tol = 1e-5 * Math.max(Math.abs(expected), termScale);
        if (!(Math.abs(got - expected) <= tol)) {
            throw new IllegalStateException(what + ": loss " + got + ", the engine's " + expected + " (terms of size "
                + termScale + ")");
        }
    }

    /** @return the mean of |a_i| over the first n values: the size of a loss's terms when ratios are near 1. */
    static double meanAbs(final io.rlvec.OffHeapArray a, final int n) {
        double s = 0;
        for (int i = 0; i < n; i++) {
            s += Math.abs(a.getFloat(i));
        }
        return n == 0 ? 0 : s / n;
    }
}
