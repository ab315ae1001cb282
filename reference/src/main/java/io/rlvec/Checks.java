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

    // ---- Vocabulary pass ----

    /**
     * Validates the arguments of {@link Engine#logProbs}: buffer types and lengths, the temperature, and every
     * label of a valid row (reading the labels and the row mask, never the logits).
     */
    public static void logProbs(final Logits logits, final OffHeapArray labels, final double temperature,
                                final OffHeapArray rowMask, final OffHeapArray logProbOut,
                                final OffHeapArray entropyOut) {
        vocabCommon(logits, labels, temperature, rowMask);
        final int rows = logits.rows();
        array(logProbOut, "logProbOut", ElementType.F32, rows, false);
        array(entropyOut, "entropyOut", ElementType.F32, rows, true);
        labels(logits, labels, rowMask);
    }

    /**
     * Validates the arguments of {@link Engine#logProbsBackward}: as {@link #logProbs}, plus the gradient buffers;
     * {@code gradLogits} must be float32 with the logits' layout, and either the logits' own memory (float32 logits,
     * in place) or disjoint from it.
     */
    public static void logProbsBackward(final Logits logits, final OffHeapArray labels, final double temperature,
                                        final OffHeapArray rowMask, final OffHeapArray gradLogProb,
                                        final OffHeapArray gradEntropy, final OffHeapArray gradLogits) {
        vocabCommon(logits, labels, temperature, rowMask);
        final int rows = logits.rows();
        array(gradLogProb, "gradLogProb", ElementType.F32, rows, false);
        array(gradEntropy, "gradEntropy", ElementType.F32, rows, true);
        if (gradLogits != null && gradLogits.type() != ElementType.F32) {
            throw new IllegalArgumentException("gradLogits must be F32 (gradients are float32 whatever the logits"
                + " type), got " + gradLogits.type());
        }
        array(gradLogits, "gradLogits", ElementType.F32, logits.requiredLength(), false);
        final OffHeapArray data = logits.data();
        final long a0 = data.address();
        final long a1 = a0 + logits.requiredLength() * data.type().bytes();
        final long g0 = gradLogits.address();
        final long g1 = g0 + logits.requiredLength() * 4L;
        final boolean inPlace = g0 == a0 && data.type() == ElementType.F32;
        if (!inPlace && logits.rows() > 0 && g0 < a1 && a0 < g1) {
            throw new IllegalArgumentException("gradLogits must be either the float32 logits' own memory (in place)"
                + " or disjoint from the logits; it overlaps " + logits);
        }
        labels(logits, labels, rowMask);
    }

    private static void vocabCommon(final Logits logits, final OffHeapArray labels, final double temperature,
                                    final OffHeapArray rowMask) {
        if (logits == null) {
            throw new IllegalArgumentException("logits must not be null");
        }
        if (logits.data().isClosed()) {
            throw new IllegalArgumentException("logits data is closed");
        }
        final float t = (float) temperature;
        if (!(temperature > 0) || Double.isInfinite(temperature) || !(t > 0) || Float.isInfinite(t)) {
            throw new IllegalArgumentException("temperature must be finite and > 0 (also once rounded to float32),"
                + " got " + temperature);
        }
        final int rows = logits.rows();
        array(labels, "labels", ElementType.I32, rows, false);
        array(rowMask, "rowMask", ElementType.F32, rows, true);
    }

    /** Every valid row's label must lie in [0, vocab): checked before any logit is read. */
    private static void labels(final Logits logits, final OffHeapArray labels, final OffHeapArray rowMask) {
        final int vocab = logits.vocab();
        for (int r = 0; r < logits.rows(); r++) {
            if (rowMask != null && rowMask.getFloat(r) == 0f) {
                continue;
            }
            final int y = labels.getInt(r);
            if (y < 0 || y >= vocab) {
                throw new IllegalArgumentException("labels[" + r + "] = " + y + " is outside [0, vocab = " + vocab
                    + ") (first bad label of a valid row)");
            }
        }
    }
}
