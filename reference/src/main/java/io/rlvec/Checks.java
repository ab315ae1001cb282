package io.rlvec;

import java.util.Objects;

/**
 * Boundary validation shared by every engine: called once at the entry of a method, before any off-heap
 * access, so that kernels can run raw loops.
 */
public final class Checks {
    /** "policy loss '<mode>'" per mode, built once: a check on the hot path must not allocate a message. */
    /** Columns every policy loss reads (a constant array: varargs would allocate one per call). */
    private static final Column[] POLICY_COLUMNS = {Column.LOG_PROB, Column.OLD_LOG_PROB, Column.ADVANTAGES,
        Column.RESPONSE_MASK};
    /** Columns agg_loss reads. */
    private static final Column[] AGG_COLUMNS = {Column.RESPONSE_MASK};
    private static final String[] POLICY_TERMS = new String[PolicyLossMode.values().length];

    static {
        for (final PolicyLossMode m : PolicyLossMode.values()) {
            POLICY_TERMS[m.ordinal()] = "policy loss '" + m.verlName() + "'";
        }
    }

    private Checks() {
    }

    /**
     * @param a        the array.
     * @param name     argument name for the message.
     * @param type     required element type.
     * @param minLen   required minimum number of elements.
     * @param nullable whether null is allowed.
     * @throws IllegalArgumentException naming the argument and the expectation.
     */
    public static void array(final OffHeapArray a, final String name, final ElementType type, final long minLen,
                             final boolean nullable) {
        if (a == null) {
            if (nullable) {
                return;
            }
            throw new IllegalArgumentException(name + " must not be null (" + type + " x " + minLen + ")");
        }
        if (a.isClosed()) {
            throw new IllegalArgumentException(name + " is closed");
        }
        if (a.type() != type) {
            throw new IllegalArgumentException(name + " must be " + type + ", got " + a.type());
        }
        if (a.length() < minLen) {
            throw new IllegalArgumentException(name + " must hold at least " + minLen + " " + type + " elements, has "
                + a.length());
        }
    }

    /** Validates the columns and buffers read or written by {@link Engine#policyLoss}. */
    public static void policyLoss(final LossSpec spec, final TokenBatch batch, final OffHeapArray gradLogProb,
                                  final PolicyLossResult out) {
        Objects.requireNonNull(spec, "spec");
        Objects.requireNonNull(batch, "batch");
        Objects.requireNonNull(out, "out");
        final String term = POLICY_TERMS[spec.policyLossMode().ordinal()];
        final int n = batch.numTokens();
        columns(batch, term, POLICY_COLUMNS);
        if (batch.has(Column.ROLLOUT_IS_WEIGHTS)) {
            array(batch.column(Column.ROLLOUT_IS_WEIGHTS), "rollout_is_weights", ElementType.F32, n, false);
        }
        array(gradLogProb, "gradLogProb", ElementType.F32, n, true);
        Aggregation.validate(spec, batch);
    }

    /** Validates the arguments of {@link Engine#aggLoss}. */
    public static void aggLoss(final LossSpec spec, final TokenBatch batch, final OffHeapArray lossMat,
                               final OffHeapArray gradOut, final AggResult out) {
        Objects.requireNonNull(spec, "spec");
        Objects.requireNonNull(batch, "batch");
        Objects.requireNonNull(out, "out");
        columns(batch, "agg_loss", AGG_COLUMNS);
        array(lossMat, "lossMat", ElementType.F32, batch.numTokens(), false);
        array(gradOut, "gradOut", ElementType.F32, batch.numTokens(), true);
        Aggregation.validate(spec, batch);
    }

    /** Requires the columns to be present, open and long enough. */
    public static void columns(final TokenBatch batch, final String term, final Column... needed) {
        for (final Column c : needed) {
            final OffHeapArray a = batch.require(c, term);
            array(a, c.verlName(), ElementType.F32, batch.numTokens(), false);
        }
    }
}
