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
    /** Columns the value loss reads. */
    private static final Column[] VALUE_COLUMNS = {Column.VPREDS, Column.RETURNS, Column.VALUES,
        Column.RESPONSE_MASK};
    /** Columns agg_loss reads. */
    private static final Column[] AGG_COLUMNS = {Column.RESPONSE_MASK};
    private static final String[] POLICY_TERMS = new String[PolicyLossMode.values().length];
    /** A thread that is never started: memory it cannot access is confined to the thread that allocated it. */
    private static final Thread PROBE = new Thread(() -> { }, "rlvec-confinement-probe");
    /** Per caller thread: whether the call in progress validated memory confined to it. */
    private static final ThreadLocal<boolean[]> CONFINED = ThreadLocal.withInitial(() -> new boolean[1]);

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
            throw new IllegalArgumentException(name + " is closed (or the memory it wraps has been freed)");
        }
        if (!a.segment().isAccessibleBy(Thread.currentThread())) {
            throw new IllegalArgumentException(name + " wraps memory confined to another thread");
        }
        noteConfinement(a.segment());
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
        Aggregation.validate(spec.aggregationSpec(), batch);
    }

    /** Columns rollout correction reads. */
    private static final Column[] ROLLOUT_CORRECTION_COLUMNS = {Column.OLD_LOG_PROB, Column.ROLLOUT_LOG_PROB,
        Column.RESPONSE_MASK};

    /**
     * Validates the arguments of {@link Engine#rolloutCorrection}: the columns, {@code maskOut} (it may be the
     * batch's own mask, not another input column) and {@code isWeightsOut} (disjoint from every other buffer).
     */
    public static void rolloutCorrection(final RolloutCorrectionSpec spec, final TokenBatch batch,
                                         final OffHeapArray isWeightsOut, final OffHeapArray maskOut,
                                         final RolloutCorrectionResult out) {
        Objects.requireNonNull(spec, "spec");
        Objects.requireNonNull(batch, "batch");
        Objects.requireNonNull(out, "out");
        final int n = batch.numTokens();
        columns(batch, "rollout correction", ROLLOUT_CORRECTION_COLUMNS);
        array(maskOut, "maskOut", ElementType.F32, n, false);
        array(isWeightsOut, "isWeightsOut", ElementType.F32, n, true);
        final OffHeapArray old = batch.column(Column.OLD_LOG_PROB);
        final OffHeapArray roll = batch.column(Column.ROLLOUT_LOG_PROB);
        if (overlaps(maskOut, old) || overlaps(maskOut, roll)) {
            throw new IllegalArgumentException("maskOut must not overlap old_log_prob or rollout_log_prob");
        }
        if (isWeightsOut != null && (overlaps(isWeightsOut, old) || overlaps(isWeightsOut, roll)
            || overlaps(isWeightsOut, batch.mask()) || overlaps(isWeightsOut, maskOut))) {
            throw new IllegalArgumentException("isWeightsOut must not overlap the batch's columns or maskOut");
        }
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

    /** Validates the arguments of {@link Engine#valueLoss}. */
    public static void valueLoss(final LossSpec spec, final TokenBatch batch, final OffHeapArray gradVpreds,
                                 final ValueLossResult out) {
        Objects.requireNonNull(spec, "spec");
        Objects.requireNonNull(batch, "batch");
        Objects.requireNonNull(out, "out");
        columns(batch, "value loss", VALUE_COLUMNS);
        array(gradVpreds, "gradVpreds", ElementType.F32, batch.numTokens(), true);
        Aggregation.validate(spec.valueAggregationSpec(), batch);
    }

    /** Starts an engine call's record of confined memory (called by {@link EngineGuard#enter()}). */
    static void beginCall() {
        CONFINED.get()[0] = false;
    }

    /**
     * @return whether the calling thread's engine call in progress was given memory confined to this thread (an
     *     {@code Arena.ofConfined()} segment): its worker threads cannot touch it, so the call's blocks all run on
     *     the calling thread (the same bits, as for any thread count).
     */
    public static boolean confinedMemoryInCall() {
        return CONFINED.get()[0];
    }

    private static void noteConfinement(final java.lang.foreign.MemorySegment s) {
        if (s.scope().isAlive() && !s.isAccessibleBy(PROBE)) {
            CONFINED.get()[0] = true;
        }
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
                                final OffHeapArray entropyOut, final SoftmaxStats statsOut) {
        logProbs(logits, labels, temperature, rowMask, logProbOut, entropyOut, statsOut, null);
    }

    /**
     * Validates the arguments of {@link Engine#logProbs(Logits, OffHeapArray, double, OffHeapArray, OffHeapArray,
     * OffHeapArray, SoftmaxStats, OffHeapArray)}: as {@link #logProbs}, plus {@code gradLogits} (null, or a
     * gradient buffer for these logits: see {@link #gradLogits}), which needs {@code statsOut}. The statistics are
     * bound only once everything has passed.
     */
    public static void logProbs(final Logits logits, final OffHeapArray labels, final double temperature,
                                final OffHeapArray rowMask, final OffHeapArray logProbOut,
                                final OffHeapArray entropyOut, final SoftmaxStats statsOut,
                                final OffHeapArray gradLogits) {
        logProbs(logits, labels, temperature, rowMask, logProbOut, entropyOut, null, statsOut, gradLogits);
    }

    /**
     * Validates the arguments of {@link Engine#logProbs(Logits, OffHeapArray, double, OffHeapArray, OffHeapArray,
     * OffHeapArray, OffHeapArray, SoftmaxStats, OffHeapArray)}: as above, plus {@code sumPiSquaredOut} (null, or
     * float32 with at least {@code rows} elements).
     */
    public static void logProbs(final Logits logits, final OffHeapArray labels, final double temperature,
                                final OffHeapArray rowMask, final OffHeapArray logProbOut,
                                final OffHeapArray entropyOut, final OffHeapArray sumPiSquaredOut,
                                final SoftmaxStats statsOut, final OffHeapArray gradLogits) {
        vocabCommon(logits, labels, temperature, rowMask);
        final int rows = logits.rows();
        array(logProbOut, "logProbOut", ElementType.F32, rows, false);
        array(entropyOut, "entropyOut", ElementType.F32, rows, true);
        array(sumPiSquaredOut, "sumPiSquaredOut", ElementType.F32, rows, true);
        if (statsOut != null) {
            if (statsOut.isClosed()) {
                throw new IllegalArgumentException("statsOut is closed");
            }
            if (statsOut.capacity() < rows) {
                throw new IllegalArgumentException("statsOut must hold at least rows = " + rows + " rows, has "
                    + statsOut.capacity());
            }
        }
        if (gradLogits != null) {
            if (statsOut == null) {
                throw new IllegalArgumentException("gradLogits (the buffer to keep the exps in) needs statsOut: the "
                    + "backward finds them through the statistics");
            }
            gradLogits(gradLogits, "gradLogits", logits);
        }
        labels(logits, labels, rowMask);
        if (statsOut != null) {
            statsOut.bind(rows, logits.vocab(), (float) temperature);
        }
    }

    /**
     * Validates the arguments of {@link Engine#logProbsBackward}: as {@link #logProbs}, plus the gradient buffers;
     * {@code gradLogits} must be float32 with the logits' layout, and either the logits' own memory (float32 logits,
     * in place) or disjoint from it.
     */
    public static void logProbsBackward(final Logits logits, final OffHeapArray labels, final double temperature,
                                        final OffHeapArray rowMask, final OffHeapArray gradLogProb,
                                        final OffHeapArray gradEntropy, final OffHeapArray gradLogits,
                                        final SoftmaxStats stats) {
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
        if (stats != null) {
            savedStats(logits, (float) temperature, rowMask, stats);
        }
    }

    /** Saved statistics must come from a forward of this shape and temperature that computed every valid row. */
    private static void savedStats(final Logits logits, final float t, final OffHeapArray rowMask,
                                   final SoftmaxStats stats) {
        if (stats.isClosed()) {
            throw new IllegalArgumentException("stats is closed");
        }
        if (stats.rows() != logits.rows() || stats.vocab() != logits.vocab()
            || Float.floatToIntBits(stats.temperature()) != Float.floatToIntBits(t)) {
            throw new IllegalArgumentException("stats must come from logProbs over the same logits shape and "
                + "temperature (rows " + logits.rows() + ", vocab " + logits.vocab() + ", temperature " + t
                + "), got " + (stats.rows() < 0 ? "statistics no forward has filled" : stats.toString()));
        }
        for (int r = 0; r < logits.rows(); r++) {
            if ((rowMask == null || rowMask.getFloat(r) != 0f) && !stats.computed(r)) {
                throw new IllegalArgumentException("stats row " + r + " was masked in the forward but is valid in"
                    + " rowMask here: pass the forward's rowMask (first such row)");
            }
        }
    }

    private static void vocabCommon(final Logits logits, final OffHeapArray labels, final double temperature,
                                    final OffHeapArray rowMask) {
        if (logits == null) {
            throw new IllegalArgumentException("logits must not be null");
        }
        noteConfinement(logits.data().segment());
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

    // ---- KL penalty and the composed actor loss ----

    /** Validates the arguments of {@link Engine#klPenalty}. */
    public static void klPenalty(final KlPenalty kl, final TokenBatch batch, final OffHeapArray kldOut,
                                 final OffHeapArray gradOut) {
        Objects.requireNonNull(kl, "kl");
        Objects.requireNonNull(batch, "batch");
        if (kl.estimator() == KlPenalty.Estimator.FULL) {
            throw new IllegalArgumentException("kl_penalty 'full' needs the policy and reference logits, not "
                + "log-probs: use Engine.klFull (or Engine.actorLoss with logits)");
        }
        // A constant term name: building "kl_penalty 'k3'" would allocate on every call.
        columns(batch, "kl_penalty", Column.LOG_PROB, Column.REF_LOG_PROB, Column.RESPONSE_MASK);
        array(kldOut, "kldOut", ElementType.F32, batch.numTokens(), false);
        array(gradOut, "gradOut", ElementType.F32, batch.numTokens(), true);
    }

    /** Validates the arguments of {@link Engine#klFull}. */
    public static void klFull(final Logits policy, final Logits reference, final double temperature,
                              final OffHeapArray rowMask, final OffHeapArray kldOut, final OffHeapArray upstream,
                              final OffHeapArray gradLogits) {
        Objects.requireNonNull(policy, "policy");
        Objects.requireNonNull(reference, "reference");
        openLogits(policy, "policy");
        openLogits(reference, "reference");
        if (reference.rows() != policy.rows() || reference.vocab() != policy.vocab()) {
            throw new IllegalArgumentException("reference logits must have the policy's shape (" + policy.rows()
                + " x " + policy.vocab() + "), got " + reference.rows() + " x " + reference.vocab());
        }
        temperature(temperature);
        final int rows = policy.rows();
        array(rowMask, "rowMask", ElementType.F32, rows, true);
        array(kldOut, "kldOut", ElementType.F32, rows, false);
        if ((upstream == null) != (gradLogits == null)) {
            throw new IllegalArgumentException("upstream and gradLogits must both be given (gradient) or both be "
                + "null (forward only), got upstream " + (upstream == null ? "null" : "given") + " and gradLogits "
                + (gradLogits == null ? "null" : "given"));
        }
        array(upstream, "upstream", ElementType.F32, rows, true);
        gradLogits(gradLogits, "gradLogits", policy);
        if (gradLogits != null && overlaps(gradLogits, reference.data())) {
            throw new IllegalArgumentException("gradLogits must not overlap the reference logits (they are read "
                + "while the gradient is written)");
        }
    }

    /**
     * Validates a gradient buffer in the layout of {@code logits}: F32, long enough, and either disjoint from the
     * logits or exactly their own F32 memory (in place).
     */
    public static void gradLogits(final OffHeapArray grad, final String name, final Logits logits) {
        if (grad == null) {
            return;
        }
        array(grad, name, ElementType.F32, Logits.requiredLength(logits.rows(), logits.vocab(), logits.rowStride()),
            false);
        if (overlaps(grad, logits.data())
            && !(logits.type() == ElementType.F32 && grad.address() == logits.data().address())) {
            throw new IllegalArgumentException(name + " overlaps the logits without being their own F32 memory: "
                + "pass the logits' array itself (in place) or a disjoint buffer");
        }
    }

    /** Validates the arguments of {@link Engine#actorLoss(LossSpec, TokenBatch, OffHeapArray, ActorLossResult)}. */
    public static void actorLoss(final LossSpec spec, final TokenBatch batch, final OffHeapArray gradLogProb,
                                 final ActorLossResult out) {
        Objects.requireNonNull(out, "out");
        policyLoss(spec, batch, gradLogProb, out.policy());
        if (spec.entropyNeeded()) {
            throw new IllegalArgumentException("entropy needs logits (calculate_entropy=" + spec.calculateEntropy()
                + ", entropy_coeff=" + spec.entropyCoeff() + "): use actorLoss with logits and labels, or set "
                + "calculate_entropy=false and entropy_coeff=0");
        }
        if (spec.useKlLoss()) {
            if (spec.klLossType().estimator() == KlPenalty.Estimator.FULL) {
                throw new IllegalArgumentException("kl_loss_type=full needs the policy and reference logits: use "
                    + "actorLoss with logits and reference logits");
            }
            columns(batch, "the kl loss (use_kl_loss)", Column.REF_LOG_PROB);
        }
    }

    /** Requires finite {@code temperature > 0}, also once rounded to float32 (the kernels divide in float32). */
    public static void temperature(final double temperature) {
        final float t = (float) temperature;
        if (!(temperature > 0) || Double.isInfinite(temperature) || !(t > 0) || Float.isInfinite(t)) {
            throw new IllegalArgumentException("temperature must be a finite number > 0, also once rounded to "
                + "float32, got " + temperature);
        }
    }

    private static void openLogits(final Logits logits, final String name) {
        noteConfinement(logits.data().segment());
        if (logits.data().isClosed()) {
            throw new IllegalArgumentException(name + " logits data is closed");
        }
    }

    /** @return whether the bytes of two arrays overlap. */
    public static boolean overlaps(final OffHeapArray a, final OffHeapArray b) {
        final long a0 = a.address();
        final long b0 = b.address();
        return a.byteSize() > 0 && b.byteSize() > 0 && a0 < b0 + b.byteSize() && b0 < a0 + a.byteSize();
    }

    /**
     * Validates the arguments of
     * {@link Engine#actorLoss(LossSpec, TokenBatch, Logits, OffHeapArray, Logits, OffHeapArray, OffHeapArray,
     * ActorLossResult)}, labels included.
     */
    public static void actorLoss(final LossSpec spec, final TokenBatch batch, final Logits logits,
                                 final OffHeapArray labels, final Logits refLogits, final OffHeapArray gradLogProb,
                                 final OffHeapArray gradLogits, final ActorLossResult out) {
        Objects.requireNonNull(spec, "spec");
        Objects.requireNonNull(batch, "batch");
        Objects.requireNonNull(logits, "logits");
        Objects.requireNonNull(out, "out");
        final int n = batch.numTokens();
        columns(batch, "the policy loss", Column.OLD_LOG_PROB, Column.ADVANTAGES, Column.RESPONSE_MASK);
        if (batch.has(Column.ROLLOUT_IS_WEIGHTS)) {
            array(batch.column(Column.ROLLOUT_IS_WEIGHTS), "rollout_is_weights", ElementType.F32, n, false);
        }
        Aggregation.validate(spec, batch);
        Aggregation.validate(spec.aggregationSpec(), batch);
        temperature(spec.temperature());
        openLogits(logits, "logits");
        if (logits.rows() != n) {
            throw new IllegalArgumentException("logits must have one row per token slot (" + n + " rows), got "
                + logits.rows());
        }
        array(labels, "labels", ElementType.I32, n, false);
        array(gradLogProb, "gradLogProb", ElementType.F32, n, true);
        gradLogits(gradLogits, "gradLogits", logits);
        final boolean full = spec.useKlLoss() && spec.klLossType().estimator() == KlPenalty.Estimator.FULL;
        if (full) {
            if (refLogits == null) {
                throw new IllegalArgumentException("kl_loss_type=full needs refLogits (" + n + " x " + logits.vocab()
                    + ")");
            }
            openLogits(refLogits, "refLogits");
            if (refLogits.rows() != n || refLogits.vocab() != logits.vocab()) {
                throw new IllegalArgumentException("refLogits must have the logits' shape (" + n + " x "
                    + logits.vocab() + "), got " + refLogits.rows() + " x " + refLogits.vocab());
            }
            if (gradLogits != null && overlaps(gradLogits, logits.data())) {
                throw new IllegalArgumentException("kl_loss_type=full reads the logits after the vocabulary "
                    + "backward: gradLogits must not be the logits' memory (pass a separate buffer)");
            }
            if (gradLogits != null && overlaps(gradLogits, refLogits.data())) {
                throw new IllegalArgumentException("gradLogits must not overlap refLogits");
            }
        } else {
            if (refLogits != null) {
                throw new IllegalArgumentException("refLogits is read only for kl_loss_type=full (this spec: "
                    + (spec.useKlLoss() ? "kl_loss_type=" + spec.klLossType().verlName() : "use_kl_loss=false")
                    + "); pass null");
            }
            if (spec.useKlLoss()) {
                columns(batch, "the kl loss (use_kl_loss)", Column.REF_LOG_PROB);
            }
        }
        final OffHeapArray mask = batch.mask();
        final int vocab = logits.vocab();
        for (int t = 0; t < n; t++) {
            if (mask.getFloat(t) != 0f) {
                final int label = labels.getInt(t);
                if (label < 0 || label >= vocab) {
                    throw new IllegalArgumentException("labels[" + t + "] = " + label + " is outside [0, " + vocab
                        + ") on a valid token");
                }
            }
        }
    }
}
