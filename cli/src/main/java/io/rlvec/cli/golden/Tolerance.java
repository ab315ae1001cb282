package io.rlvec.cli.golden;

/**
 * How close the engine must be to verl on one tensor (design.md: relative 1e-5 on losses and metrics, absolute
 * 1e-5 on gradients; f64 cases are held to the same float32 tolerances).
 *
 * @param relative true: {@code |a - e| <= bound * |e|}; false: {@code |a - e| <= bound}.
 * @param bound    the bound.
 */
public record Tolerance(boolean relative, double bound) {
    /** Losses and metrics (scalars): relative 1e-5. */
    public static final Tolerance SCALAR = new Tolerance(true, 1e-5);
    /** Gradients and other per-token outputs: absolute 1e-5. */
    public static final Tolerance GRADIENT = new Tolerance(false, 1e-5);

    /** Validates the bound. */
    public Tolerance {
        if (!(bound >= 0) || Double.isInfinite(bound)) {
            throw new IllegalArgumentException("tolerance bound must be a finite number >= 0, got " + bound);
        }
    }

    /** @return whether an absolute error {@code absErr} against expected {@code e} is acceptable. */
    public boolean accepts(final double absErr, final double e) {
        return relative ? absErr <= bound * Math.abs(e) : absErr <= bound;
    }

    @Override
    public String toString() {
        // e.g. "relative 1e-5": %.0e gives "1e-05", whose exponent loses its leading zero here.
        final String b = String.format(java.util.Locale.ROOT, "%.0e", bound).replaceAll("e([-+])0*(\\d)", "e$1$2")
            .replace("e+", "e");
        return (relative ? "relative " : "absolute ") + b;
    }
}
