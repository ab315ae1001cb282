package io.rlvec.jmh.vocab;

import java.util.SplittableRandom;

import io.rlvec.ActorLossResult;
import io.rlvec.AggMode;
import io.rlvec.Column;
import io.rlvec.ElementType;
import io.rlvec.Engine;
import io.rlvec.KlPenalty;
import io.rlvec.Logits;
import io.rlvec.LossSpec;
import io.rlvec.OffHeapArray;
import io.rlvec.SoftmaxStats;
import io.rlvec.TokenBatch;
import io.rlvec.engine.VectorEngine;
import io.rlvec.reference.ReferenceEngine;

/**
 * Shared inputs of the vocabulary-pass benchmarks: {@code rows x vocab} logits (N(0, 3) with one lifted logit per
 * row, like a language model's output at temperature 0.7), labels, upstream gradients and output buffers, all off
 * heap; plus the engine choice and the answer check.
 */
public final class VocabInputs implements AutoCloseable {
    public final int rows;
    public final int vocab;
    public final ElementType type;
    public final double temperature;
    public final OffHeapArray logits;
    public final OffHeapArray labels;
    public final OffHeapArray gradLogProb;
    public final OffHeapArray gradEntropy;
    final OffHeapArray logProb;
    final OffHeapArray entropy;
    /** The sum of squared probabilities per row ({@link #forwardSumPiSquared}). */
    final OffHeapArray sumPiSquared;
    public final OffHeapArray grad;
    public final Logits view;
    /** Row statistics the forward saves for the backward (the trainer's path). */
    final SoftmaxStats stats;
    /** Tokens per sequence of the actor-loss batch (rows / 32 sequences, every token valid). */
    static final int SEQ_LEN = 32;
    /**
     * The actor-loss batch over these rows: old_log_prob and ref_log_prob near the logits' own label log-probs
     * (N(0, 0.05) and N(0, 0.1) apart, so some ratios clip), one advantage of +-1 per sequence.
     */
    public final TokenBatch actorBatch;
    /** vanilla PPO clip (0.2 / 0.28), token-mean, low_var_kl KL loss (coef 0.001), entropy_coeff 0 (verl's default). */
    public final LossSpec actorSpec;
    /** {@link #actorSpec} with entropy_coeff 0.01: the entropy's gradient flows to the logits too. */
    final LossSpec actorSpecEntropy;
    public final ActorLossResult actorOut = new ActorLossResult();

    /**
     * @param shape "ROWSxVOCAB".
     * @param dtype "f32" or "bf16".
     */
    VocabInputs(final String shape, final String dtype) {
        this(shape, dtype, 0.7);
    }

    /**
     * @param shape "ROWSxVOCAB".
     * @param dtype "f32" or "bf16".
     * @param temperature verl's temperature (0.7 as sampled; 1.0, verl's default, takes the exact multiplication
     *                    instead of a division per logit).
     */
    public VocabInputs(final String shape, final String dtype, final double temperature) {
        this.temperature = temperature;
        final String[] p = shape.split("x");
        rows = Integer.parseInt(p[0]);
        vocab = Integer.parseInt(p[1]);
        type = switch (dtype) {
            case "f32" -> ElementType.F32;
            case "bf16" -> ElementType.BF16;
            default -> throw new IllegalArgumentException("dtype must be f32 or bf16, got " + dtype);
        };
        final long n = (long) rows * vocab;
        logits = OffHeapArray.allocate(type, n);
        final SplittableRandom rnd = new SplittableRandom(0x10917L + n);
        for (int r = 0; r < rows; r++) {
            for (int j = 0; j < vocab; j++) {
                final double u = 1 - rnd.nextDouble();
                final double g = Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * rnd.nextDouble());
                logits.setFloat((long) r * vocab + j, (float) (3 * g));
            }
            logits.setFloat((long) r * vocab + rnd.nextInt(vocab), 12f);
        }
        labels = OffHeapArray.allocate(ElementType.I32, rows);
        gradLogProb = OffHeapArray.allocate(ElementType.F32, rows);
        gradEntropy = OffHeapArray.allocate(ElementType.F32, rows);
        for (int r = 0; r < rows; r++) {
            labels.setInt(r, rnd.nextInt(vocab));
            gradLogProb.setFloat(r, (float) rnd.nextDouble(-1, 1));
            gradEntropy.setFloat(r, (float) rnd.nextDouble(-0.01, 0.01));
        }
        logProb = OffHeapArray.allocate(ElementType.F32, rows);
        entropy = OffHeapArray.allocate(ElementType.F32, rows);
        sumPiSquared = OffHeapArray.allocate(ElementType.F32, rows);
        grad = OffHeapArray.allocate(ElementType.F32, n);
        view = Logits.of(logits, rows, vocab);
        stats = SoftmaxStats.allocate(rows);
        if (rows % SEQ_LEN != 0) {
            throw new IllegalArgumentException("rows must be a multiple of " + SEQ_LEN + ", got " + rows);
        }
        try (Engine once = new VectorEngine(1)) {
            once.logProbs(view, labels, temperature, null, logProb, null);
        }
        final float[] old = new float[rows];
        final float[] refLp = new float[rows];
        final float[] adv = new float[rows];
        final boolean[] valid = new boolean[rows];
        for (int r = 0; r < rows; r++) {
            final float lp = logProb.getFloat(r);
            old[r] = lp + (float) (0.05 * gaussian(rnd));
            refLp[r] = lp + (float) (0.1 * gaussian(rnd));
            adv[r] = r / SEQ_LEN % 2 == 0 ? 1f : -1f;
            valid[r] = true;
        }
        actorBatch = TokenBatch.padded(rows / SEQ_LEN, SEQ_LEN).column(Column.OLD_LOG_PROB, old)
            .column(Column.ADVANTAGES, adv).column(Column.REF_LOG_PROB, refLp).mask(valid).build();
        actorSpec = LossSpec.builder().clipRatioHigh(0.28).lossAggMode(AggMode.TOKEN_MEAN).useKlLoss(true)
            .klLossCoef(0.001).klLossType(KlPenalty.fromVerl("low_var_kl")).calculateEntropy(true)
            .temperature(temperature).build();
        actorSpecEntropy = actorSpec.toBuilder().entropyCoeff(0.01).build();
    }

    private static double gaussian(final SplittableRandom rnd) {
        final double u = 1 - rnd.nextDouble();
        return Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * rnd.nextDouble());
    }

    /** @return "reference", or a vector engine: "vector" (one thread), "vector2", "vector<N>" (N threads). */
    public static Engine engine(final String impl) {
        return "reference".equals(impl) ? new ReferenceEngine() : io.rlvec.jmh.EngineChoice.create(impl);
    }

    void forward(final Engine e) {
        e.logProbs(view, labels, temperature, null, logProb, entropy);
    }

    /** {@link #forward} that also writes the sum of squared probabilities (verl's old-log-prob forward with it). */
    void forwardSumPiSquared(final Engine e) {
        e.logProbs(view, labels, temperature, null, logProb, entropy, sumPiSquared, null, null);
    }

    public void backward(final Engine e) {
        e.logProbsBackward(view, labels, temperature, null, gradLogProb, gradEntropy, grad);
    }

    /** The forward that saves the row statistics. */
    void forwardSaving(final Engine e) {
        e.logProbs(view, labels, temperature, null, logProb, entropy, stats);
    }

    /** The forward that saves the row statistics and keeps its exps in {@link #grad} for the backward. */
    void forwardKeeping(final Engine e) {
        e.logProbs(view, labels, temperature, null, logProb, entropy, stats, grad);
    }

    /** The backward from the statistics of {@link #forwardSaving}: one exp per logit. */
    void backwardSaved(final Engine e) {
        e.logProbsBackward(view, labels, temperature, null, gradLogProb, gradEntropy, grad, stats);
    }

    /**
     * The composed actor loss from the logits in one call ({@link Engine#actorLoss(LossSpec, TokenBatch, Logits,
     * OffHeapArray, Logits, OffHeapArray, OffHeapArray, ActorLossResult)}): forward, loss, metrics and
     * d loss / d logits into {@link #grad}.
     */
    public void actorLoss(final Engine e, final boolean withEntropy) {
        e.actorLoss(withEntropy ? actorSpecEntropy : actorSpec, actorBatch, view, labels, null, null, grad,
            actorOut);
    }

    /**
     * Brings the token kernels of the actor loss (policy loss, KL, aggregation, combination) to their steady state:
     * {@code calls} calls of the log-prob form of the same loss on the same tokens, then as many of the logits form
     * (with and without entropy) on a vocabulary of 16. A trainer runs thousands of
     * steps; a JMH warm-up of millisecond calls on a micro-batch of 64-256 tokens does not reach the 10^4 calls
     * after which C2 compiles those short loops (before that they run as C1 code, which boxes vectors).
     */
    void warmTokenKernels(final Engine e, final int calls) {
        try (TokenBatch withLp = TokenBatch.padded(rows / SEQ_LEN, SEQ_LEN)
                 .column(Column.LOG_PROB, logProb)
                 .column(Column.OLD_LOG_PROB, actorBatch.column(Column.OLD_LOG_PROB))
                 .column(Column.ADVANTAGES, actorBatch.column(Column.ADVANTAGES))
                 .column(Column.REF_LOG_PROB, actorBatch.column(Column.REF_LOG_PROB))
                 .column(Column.RESPONSE_MASK, actorBatch.mask()).build();
             OffHeapArray g = OffHeapArray.allocate(ElementType.F32, rows)) {
            final LossSpec fromLogProbs = actorSpec.toBuilder().calculateEntropy(false).build();
            for (int c = 0; c < calls; c++) {
                e.actorLoss(fromLogProbs, withLp, g, actorOut);
            }
        }
        // The kernels only the logits form runs (the entropy weights' fill, the row-by-row step): the same tokens
        // with a vocabulary of 16, so that these calls cost microseconds.
        final int v = 16;
        final float[] tiny = new float[rows * v];
        final int[] tinyLabels = new int[rows];
        for (int i = 0; i < tiny.length; i++) {
            tiny[i] = (i * 7 % 13) * 0.25f;
        }
        for (int r = 0; r < rows; r++) {
            tinyLabels[r] = r % v;
        }
        try (OffHeapArray z = OffHeapArray.of(tiny);
             OffHeapArray lab = OffHeapArray.ofInts(tinyLabels);
             OffHeapArray gz = OffHeapArray.allocate(ElementType.F32, tiny.length)) {
            final Logits small = Logits.of(z, rows, v);
            for (int c = 0; c < calls; c++) {
                e.actorLoss((c & 1) == 0 ? actorSpecEntropy : actorSpec, actorBatch, small, lab, null, null, gz,
                    actorOut);
            }
        }
    }

    /** The actor loss's gradient to the logits is the same bits as the other implementation's (both specs). */
    void checkActor(final Engine e, final String impl) {
        try (Engine other = impl.equals("reference") ? new VectorEngine(1) : new ReferenceEngine();
             OffHeapArray mine = OffHeapArray.allocate(ElementType.F32, grad.length())) {
            for (final boolean ent : new boolean[] {false, true}) {
                grad.fill(Float.NaN);
                actorLoss(e, ent);
                final double loss = actorOut.loss();
                mine.segment().copyFrom(grad.segment());
                grad.fill(Float.NaN);
                actorLoss(other, ent);
                final long mismatch = mine.segment().mismatch(grad.segment());
                if (mismatch >= 0) {
                    throw new IllegalStateException(impl + ": actor-loss gradient (entropy_coeff "
                        + (ent ? "0.01" : "0") + ") differs from " + other.name() + " at byte " + mismatch);
                }
                if (Math.abs(loss - actorOut.loss()) > 2 * Math.ulp(loss)) {
                    throw new IllegalStateException(impl + ": actor loss " + loss + " vs " + actorOut.loss());
                }
            }
        }
    }

    /**
     * Checks {@code e}'s answer against the other implementation once (style.md P13): log-probs and entropies within
     * 1 ulp, gradients bit-identical.
     */
    void check(final Engine e, final String impl) {
        final Engine other = impl.equals("reference") ? new VectorEngine(1) : new ReferenceEngine();
        forward(e);
        backward(e);
        final float[] lp = logProb.toFloatArray();
        final float[] h = entropy.toFloatArray();
        final OffHeapArray mine = OffHeapArray.allocate(ElementType.F32, grad.length());
        try {
            mine.segment().copyFrom(grad.segment());
            forward(other);
            backward(other);
            for (int r = 0; r < rows; r++) {
                if (Math.abs(Math.ulp(lp[r])) < Math.abs(lp[r] - logProb.getFloat(r))
                    || Math.abs(Math.ulp(h[r])) < Math.abs(h[r] - entropy.getFloat(r))) {
                    throw new IllegalStateException(impl + ": row " + r + " differs from " + other.name() + ": "
                        + lp[r] + " / " + logProb.getFloat(r) + ", " + h[r] + " / " + entropy.getFloat(r));
                }
            }
            final long mismatch = mine.segment().mismatch(grad.segment());
            if (mismatch >= 0) {
                throw new IllegalStateException(impl + ": gradient differs from " + other.name() + " at byte "
                    + mismatch);
            }
            // The path that keeps the forward's exps in the gradient buffer gives the same gradient bits.
            grad.fill(Float.NaN);
            forwardKeeping(e);
            backwardSaved(e);
            final long keptMismatch = mine.segment().mismatch(grad.segment());
            if (keptMismatch >= 0) {
                throw new IllegalStateException(impl + ": gradient from kept exps differs at byte " + keptMismatch);
            }
            // So does the saved-statistics path (checked last: the pair most benchmarks time).
            grad.fill(Float.NaN);
            forwardSaving(e);
            backwardSaved(e);
            final long savedMismatch = mine.segment().mismatch(grad.segment());
            if (savedMismatch >= 0) {
                throw new IllegalStateException(impl + ": gradient from saved statistics differs at byte "
                    + savedMismatch);
            }
        } finally {
            mine.close();
        }
    }

    @Override
    public void close() {
        logits.close();
        labels.close();
        gradLogProb.close();
        gradEntropy.close();
        logProb.close();
        entropy.close();
        sumPiSquared.close();
        grad.close();
        stats.close();
        actorBatch.close();
    }
}
