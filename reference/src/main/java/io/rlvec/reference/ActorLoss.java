package io.rlvec.reference;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.util.Objects;

import io.rlvec.ActorComposition;
import io.rlvec.ActorLossResult;
import io.rlvec.Column;
import io.rlvec.ElementType;
import io.rlvec.Engine;
import io.rlvec.KlPenalty;
import io.rlvec.Logits;
import io.rlvec.LossSpec;
import io.rlvec.OffHeapArray;
import io.rlvec.SoftmaxStats;
import io.rlvec.TokenBatch;

/**
 * The composition of the actor loss ({@link ActorComposition}) written once for every engine: it calls the
 * engine's own terms (policy loss, KL penalty, aggregation) and the engine's elementwise {@link Kernels}, so that
 * the glue, the order of the steps and the rounding of every coefficient are the same code everywhere.
 *
 * <p>Holds reusable scratch (off-heap token columns that grow to the largest batch seen, per-sequence weights),
 * so a steady-state call allocates nothing. Not thread-safe: one instance per engine.
 */
public final class ActorLoss {

    /** The elementwise passes of the composition, implemented by each engine. */
    public interface Kernels {
        /**
         * @param batch  offsets and response mask.
         * @param counts receives the valid tokens of each sequence ({@code batch.numSequences()} entries).
         */
        void sequenceCounts(TokenBatch batch, long[] counts);

        /**
         * {@code grad[t] = grad[t] * pgScale + klGrad[t] * seqWeights[s]} for every token t of sequence s, or
         * {@code grad[t] * pgScale} when {@code klGrad} is null; in float32, in that order.
         */
        void combine(TokenBatch batch, OffHeapArray grad, float pgScale, OffHeapArray klGrad, float[] seqWeights);

        /** {@code out[t] = seqWeights[s]} for valid tokens t of sequence s, exactly 0 for masked tokens. */
        void fill(TokenBatch batch, float[] seqWeights, OffHeapArray out);

        /**
         * {@link Engine#klFull} (validated arguments) that adds {@code upstream[r] * dKL/dz} to the gradient rows
         * instead of writing them, leaving masked rows alone.
         */
        void klFullAccumulate(Logits policy, Logits reference, double temperature, OffHeapArray rowMask,
                              OffHeapArray kldOut, OffHeapArray upstream, OffHeapArray gradLogits);
    }

    private final Engine engine;
    private final Kernels kernels;
    private final Scratch kld = new Scratch();
    private final Scratch klGrad = new Scratch();
    private final Scratch logProb = new Scratch();
    private final Scratch entropy = new Scratch();
    private final Scratch innerGrad = new Scratch();
    private final Scratch gradEntropy = new Scratch();
    private final Scratch upstream = new Scratch();
    /** The vocabulary forward's row statistics, handed to its backward (grows to the largest batch seen). */
    private SoftmaxStats softmax;
    private TokenBatch derivedFrom;
    private OffHeapArray derivedLogProb;
    private TokenBatch derived;
    private long[] counts = new long[0];
    private float[] weights = new float[0];

    /**
     * @param engine  the engine whose terms the composition calls.
     * @param kernels that engine's elementwise passes.
     */
    public ActorLoss(final Engine engine, final Kernels kernels) {
        this.engine = Objects.requireNonNull(engine, "engine");
        this.kernels = Objects.requireNonNull(kernels, "kernels");
    }

    /**
     * {@link Engine#actorLoss(LossSpec, TokenBatch, OffHeapArray, ActorLossResult)} after validation
     * ({@code io.rlvec.Checks.actorLoss}).
     */
    public void fromLogProbs(final LossSpec spec, final TokenBatch batch, final OffHeapArray gradLogProb,
                             final ActorLossResult out) {
        final int n = batch.numTokens();
        final boolean kl = spec.useKlLoss();
        engine.policyLoss(spec, batch, gradLogProb, out.policy());
        OffHeapArray kg = null;
        if (kl) {
            final OffHeapArray k = kld.get(n);
            kg = gradLogProb != null ? klGrad.get(n) : null;
            engine.klPenalty(spec.klLossType(), batch, k, kg);
            engine.aggLoss(spec, batch, k, null, out.kl());
        }
        if (gradLogProb != null) {
            combine(spec, batch, gradLogProb, kg, out.policy().denominator());
        }
        out.finish(spec, false, kl);
    }

    /**
     * {@link Engine#actorLoss(LossSpec, TokenBatch, Logits, OffHeapArray, Logits, OffHeapArray, OffHeapArray,
     * ActorLossResult)} after validation ({@code io.rlvec.Checks.actorLoss}): vocabulary forward, policy loss,
     * entropy and KL terms, gradient to log_prob, vocabulary backward, and for {@code full} the KL gradient added
     * to the logits' gradient.
     */
    public void fromLogits(final LossSpec spec, final TokenBatch batch, final Logits logits,
                           final OffHeapArray labels, final Logits refLogits, final OffHeapArray gradLogProb,
                           final OffHeapArray gradLogits, final ActorLossResult out) {
        final int n = batch.numTokens();
        final double temperature = spec.temperature();
        final OffHeapArray mask = batch.mask();
        final OffHeapArray lp = logProb.get(n);
        // The vocabulary pass always writes the entropy (its output is not optional); the loss uses it only when
        // spec.entropyNeeded().
        final OffHeapArray ent = entropy.get(n);
        // The backward reuses the forward's row statistics (one exp per logit instead of a max and two exp passes),
        // and an engine may keep the forward's exps in the gradient buffer so that the backward evaluates none
        // (nothing writes that buffer in between).
        final SoftmaxStats st = gradLogits != null ? softmaxStats(n) : null;
        engine.logProbs(logits, labels, temperature, mask, lp, ent, st, gradLogits);
        final TokenBatch withLp = withLogProb(batch, lp);
        final boolean kl = spec.useKlLoss();
        final boolean full = kl && spec.klLossType().estimator() == KlPenalty.Estimator.FULL;
        final boolean hasEntropy = spec.entropyNeeded();
        final OffHeapArray glp = gradLogProb != null ? gradLogProb : (gradLogits != null ? innerGrad.get(n) : null);
        engine.policyLoss(spec, withLp, glp, out.policy());
        final double denominator = out.policy().denominator();
        if (hasEntropy) {
            engine.aggLoss(spec, batch, ent, null, out.entropy());
        }
        final OffHeapArray k = kl ? kld.get(n) : null;
        OffHeapArray kg = null;
        if (kl && !full) {
            kg = glp != null ? klGrad.get(n) : null;
            engine.klPenalty(spec.klLossType(), withLp, k, kg);
            engine.aggLoss(spec, batch, k, null, out.kl());
        }
        if (glp != null) {
            combine(spec, batch, glp, kg, denominator);
        }
        if (gradLogits != null) {
            OffHeapArray ge = null;
            if (hasEntropy && spec.entropyCoeff() != 0.0) {
                ge = gradEntropy.get(n);
                kernels.fill(batch, entropyWeights(spec, batch, denominator), ge);
            }
            engine.logProbsBackward(logits, labels, temperature, mask, glp, ge, gradLogits, st);
        }
        if (full) {
            if (gradLogits != null) {
                final OffHeapArray up = upstream.get(n);
                kernels.fill(batch, klWeights(spec, batch, denominator), up);
                kernels.klFullAccumulate(logits, refLogits, temperature, mask, k, up, gradLogits);
            } else {
                engine.klFull(logits, refLogits, temperature, mask, k, null, null);
            }
            engine.aggLoss(spec, batch, k, null, out.kl());
        }
        out.finish(spec, hasEntropy, kl);
    }

    private SoftmaxStats softmaxStats(final int rows) {
        if (softmax == null || softmax.capacity() < rows) {
            if (softmax != null) {
                softmax.close();
            }
            softmax = SoftmaxStats.allocate(Math.max(rows, softmax == null ? 0 : softmax.capacity() * 2));
        }
        return softmax;
    }

    /** Frees the off-heap statistics (the token scratch is freed by the garbage collector). */
    public void close() {
        if (softmax != null) {
            softmax.close();
            softmax = null;
        }
    }

    /**
     * The caller's batch with its log_prob column replaced by {@code lp}; rebuilt only when the batch or the
     * scratch changes, so steady-state calls on a reused batch allocate nothing.
     */
    private TokenBatch withLogProb(final TokenBatch batch, final OffHeapArray lp) {
        if (batch == derivedFrom && lp == derivedLogProb) {
            return derived;
        }
        final TokenBatch.Builder b;
        if (batch.isPadded()) {
            b = TokenBatch.padded(batch.numSequences(), batch.paddedWidth());
        } else {
            final int[] offsets = new int[batch.numSequences() + 1];
            for (int s = 0; s <= batch.numSequences(); s++) {
                offsets[s] = batch.offset(s);
            }
            b = TokenBatch.withOffsets(offsets);
        }
        for (final Column c : Column.values()) {
            if (c != Column.LOG_PROB && batch.has(c)) {
                b.column(c, batch.column(c));
            }
        }
        derived = b.column(Column.LOG_PROB, lp).build();
        derivedFrom = batch;
        derivedLogProb = lp;
        return derived;
    }

    private float[] entropyWeights(final LossSpec spec, final TokenBatch batch, final double denominator) {
        final int b = batch.numSequences();
        final long[] c = counts(b);
        final float[] w = weights(b);
        kernels.sequenceCounts(batch, c);
        for (int s = 0; s < b; s++) {
            w[s] = ActorComposition.entropyTokenWeight(spec, denominator, c[s]);
        }
        return w;
    }

    /** Turns d pg_loss / d log_prob in {@code grad} into d loss / d log_prob, adding the KL term if any. */
    private void combine(final LossSpec spec, final TokenBatch batch, final OffHeapArray grad,
                         final OffHeapArray kg, final double denominator) {
        final float pgScale = ActorComposition.pgScale(spec);
        if (kg == null) {
            if (pgScale != 1f) {
                kernels.combine(batch, grad, pgScale, null, null);
            }
            return;
        }
        kernels.combine(batch, grad, pgScale, kg, klWeights(spec, batch, denominator));
    }

    private float[] klWeights(final LossSpec spec, final TokenBatch batch, final double denominator) {
        final int b = batch.numSequences();
        final long[] c = counts(b);
        final float[] w = weights(b);
        kernels.sequenceCounts(batch, c);
        for (int s = 0; s < b; s++) {
            w[s] = ActorComposition.klTokenWeight(spec, denominator, c[s]);
        }
        return w;
    }

    private long[] counts(final int b) {
        if (counts.length < b) {
            counts = new long[Math.max(b, counts.length * 2)];
        }
        return counts;
    }

    private float[] weights(final int b) {
        if (weights.length < b) {
            weights = new float[Math.max(b, weights.length * 2)];
        }
        return weights;
    }

    /**
     * A float32 off-heap column that grows (doubling) to the largest request and is then reused; its memory
     * belongs to an automatic arena and is freed by the garbage collector with this object.
     */
    static final class Scratch {
        /** Keeps the arena's segment reachable: the view is a global-scope alias that does not. */
        private MemorySegment owner;
        private OffHeapArray view;

        OffHeapArray get(final long n) {
            if (view == null || view.length() < n) {
                final long len = Math.max(n, view == null ? 0 : view.length() * 2);
                owner = Arena.ofAuto().allocate(Math.max(1L, len * Float.BYTES), OffHeapArray.ALIGNMENT);
                view = OffHeapArray.wrap(ElementType.F32, owner, len);
            }
            return view;
        }
    }
}
