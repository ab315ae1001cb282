package io.rlvec.cli.golden;

/**
 * How close the engine must be to verl on one tensor (design.md: relative 1e-5 on losses and metrics, absolute
 * 1e-5 on gradients; f64 cases are held to the same float32 tolerances).
 *
 * <p>A relative tolerance may carry an absolute floor ({@link #orAbsolute}): a value then passes when it is within
 * either bound. The floor exists for one written reason only: f64 cases whose inputs, rounded to float32, move a
 * value near 0 by more than the relative bound allows (see {@link KlPenaltyHandler}), and geo_mean's gradients, whose
 * magnitude (up to 1e14 on extreme inputs) puts an absolute 1e-5 below float32 resolution (see
 * {@link PolicyLossHandler}), and a policy loss whose A &gt; 0 and A &lt; 0 parts cancel, where float32 summation errs
 * relative to the parts' magnitudes (see {@link PolicyLossHandler#lossTolerance}); no global tolerance uses it.
 *
 * @param relative      true: {@code |a - e| <= bound * |e|}; false: {@code |a - e| <= bound}.
 * @param bound         the bound.
 * @param absoluteFloor for a relative tolerance, an absolute error that is accepted as well (0: none); must be 0
 *                      for an absolute tolerance.
 */
public record Tolerance(boolean relative, double bound, double absoluteFloor) {
    /** Losses and metrics (scalars): relative 1e-5. */
    public static final Tolerance SCALAR = new Tolerance(true, 1e-5);
    /** Gradients: absolute 1e-5. */
    public static final Tolerance GRADIENT = new Tolerance(false, 1e-5);
    /**
     * Per-token or per-row values that are not gradients (kl penalties, log-probs, entropies): relative 1e-5, as
     * the scalars; their magnitude varies too much (k2 reaches 5000) for an absolute bound.
     */
    public static final Tolerance VALUE = SCALAR;

    /** Validates the bounds. */
    public Tolerance {
        if (!(bound >= 0) || Double.isInfinite(bound)) {
            throw new IllegalArgumentException("tolerance bound must be a finite number >= 0, got " + bound);
        }
        if (!(absoluteFloor >= 0) || Double.isInfinite(absoluteFloor)) {
            throw new IllegalArgumentException("absoluteFloor must be a finite number >= 0, got " + absoluteFloor);
        }
        if (!relative && absoluteFloor != 0) {
            throw new IllegalArgumentException("an absolute tolerance takes no absoluteFloor, got " + absoluteFloor);
        }
    }

    /**
     * A tolerance without an absolute floor.
     *
     * @param relative true: {@code |a - e| <= bound * |e|}; false: {@code |a - e| <= bound}.
     * @param bound    the bound.
     */
    public Tolerance(final boolean relative, final double bound) {
        this(relative, bound, 0);
    }

    /**
     * @param floor an absolute error accepted besides the relative bound.
     * @return this relative tolerance with that floor.
     * @throws IllegalArgumentException when this tolerance is absolute.
     */
    public Tolerance orAbsolute(final double floor) {
        if (!relative) {
            throw new IllegalArgumentException("orAbsolute needs a relative tolerance, this is " + this);
        }
        return new Tolerance(true, bound, floor);
    }

    /** @return whether an absolute error {@code absErr} against expected {@code e} is acceptable. */
    public boolean accepts(final double absErr, final double e) {
        return relative ? absErr <= bound * Math.abs(e) || absErr <= absoluteFloor : absErr <= bound;
    }

    @Override
    public String toString() {
        final String s = (relative ? "relative " : "absolute ") + format(bound);
        return absoluteFloor == 0 ? s : s + " or absolute " + format(absoluteFloor);
    }

    private static String format(final double b) {
        // e.g. "1e-5": %.0e gives "1e-05", whose exponent loses its leading zero here.
        return String.format(java.util.Locale.ROOT, "%.0e", b).replaceAll("e([-+])0*(\\d)", "e$1$2")
            .replace("e+", "e");
    }
}
