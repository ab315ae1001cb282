package io.rlvec.cli.golden;

/** Outcome of one comparison, ordered from best to worst. */
public enum Verdict {
    /** Within tolerance everywhere (or, for an {@code expect_error} case, rejected like verl). */
    PASS,
    /** verl's value is NaN/Inf where the engine's contract gives a finite value; a documented {@link Deviation}. */
    DEVIATION,
    /** No handler for the case's function: nothing was checked, which is never a pass. */
    UNSUPPORTED,
    /** Outside tolerance, a NaN mismatch that is not a documented deviation, or an error running the case. */
    FAIL;

    /** @return the worse of the two. */
    public Verdict worst(final Verdict other) {
        return other.ordinal() > ordinal() ? other : this;
    }

    /** @return whether this verdict makes the parity command exit non-zero. */
    public boolean isFailure() {
        return this == FAIL || this == UNSUPPORTED;
    }
}
