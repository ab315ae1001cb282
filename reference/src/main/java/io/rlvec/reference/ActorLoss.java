package io.rlvec.reference;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.util.Objects;

import io.rlvec.ActorComposition;
import io.rlvec.ActorLossResult;
import io.rlvec.Aggregation;
import io.rlvec.CanonicalMath;
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

        /**
         * Optional: the vocabulary forward and backward one row at a time (validated arguments). For each row r:
         * {@link Engine#logProbs} with {@code stats} (keeping the exps in {@code gradLogits} when it is not the
         * logits' own memory), then {@code step.token(r)}, which writes {@code gradLogProb[r]} from the row's
         * log-prob, then {@link Engine#logProbsBackward} of that row from {@code gradLogProb} and
         * {@code gradEntropy} (null: none) while the row is still in cache. The same bits as the three over the
         * whole batch one after the other; rows may run on several threads (the step must only touch token r).
         *
         * @return false when the engine has no such pass: the composition then runs them one after the other.
         */
        default boolean vocabStep(final Logits logits, final OffHeapArray labels, final double temperature,
                                  final OffHeapArray rowMask, final OffHeapArray logProb, final OffHeapArray entropy,
                                  final SoftmaxStats stats, final OffHeapArray gradLogProb,
                                  final OffHeapArray gradEntropy, final OffHeapArray gradLogits,
                                  final TokenStep step) {
            return false;
        }
    }

    /** The per-token work between a row's vocabulary forward and its backward (see {@link Kernels#vocabStep}). */
    public interface TokenStep {
        /** Computes what the row's backward needs from token {@code t}'s log-prob; touches token t only. */
        void token(int t);
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
    private final LocalGradient local = new LocalGradient();

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
        final TokenBatch withLp = withLogProb(batch, lp);
        final boolean kl = spec.useKlLoss();
        final boolean full = kl && spec.klLossType().estimator() == KlPenalty.Estimator.FULL;
        final boolean hasEntropy = spec.entropyNeeded();
        final OffHeapArray glp = gradLogProb != null ? gradLogProb : (gradLogits != null ? innerGrad.get(n) : null);
        if (gradLogits != null && !full && localGradient(spec)
            && rowByRow(spec, batch, logits, labels, withLp, lp, ent, st, glp, gradLogits)) {
            // The gradients are written; the loss and the metrics come from the token terms without gradients.
            engine.policyLoss(spec, withLp, null, out.policy());
            if (hasEntropy) {
                engine.aggLoss(spec, batch, ent, null, out.entropy());
            }
            if (kl) {
                final OffHeapArray k = kld.get(n);
                engine.klPenalty(spec.klLossType(), withLp, k, null);
                engine.aggLoss(spec, batch, k, null, out.kl());
            }
            out.finish(spec, hasEntropy, kl);
            return;
        }
        engine.logProbs(logits, labels, temperature, mask, lp, ent, st, gradLogits);
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

    /**
     * Whether d loss / d log_prob at a token depends only on that token's log_prob (and on weights fixed by the
     * mask): then it can be computed row by row, between a row's vocabulary forward and its backward.
     */
    private static boolean localGradient(final LossSpec spec) {
        // The other modes go through policyLoss's d pg_loss / d log_prob (gspo, geo_mean and the covariance
        // selections depend on the whole sequence or batch).
        return spec.policyLossMode() == io.rlvec.PolicyLossMode.VANILLA;
    }

    /**
     * The vocabulary forward, d loss / d log_prob and the vocabulary backward, row by row through
     * {@link Kernels#vocabStep}: each row's backward reads the exps its forward kept while they are still in cache.
     *
     * @return false (nothing written) when the engine's kernels have no row-by-row pass.
     */
    private boolean rowByRow(final LossSpec spec, final TokenBatch batch, final Logits logits,
                             final OffHeapArray labels, final TokenBatch withLp, final OffHeapArray lp,
                             final OffHeapArray ent, final SoftmaxStats st, final OffHeapArray glp,
                             final OffHeapArray gradLogits) {
        final int n = batch.numTokens();
        final int b = batch.numSequences();
        final long[] c = counts(b);
        kernels.sequenceCounts(batch, c);
        long validTokens = 0;
        long validSequences = 0;
        for (int s = 0; s < b; s++) {
            validTokens += c[s];
            validSequences += c[s] > 0 ? 1 : 0;
        }
        // The policy loss's own denominator (the value policyLoss reports), fixed by the mask.
        final double denominator = Aggregation.denominator(spec, batch, validTokens, validSequences);
        OffHeapArray ge = null;
        if (spec.entropyNeeded() && spec.entropyCoeff() != 0.0) {
            ge = gradEntropy.get(n);
            kernels.fill(batch, entropyWeights(spec, c, b, denominator), ge);
        }
        local.set(spec, withLp, glp, c, denominator);
        try {
            return kernels.vocabStep(logits, labels, spec.temperature(), batch.mask(), lp, ent, st, glp, ge,
                gradLogits, local);
        } finally {
            local.clear();
        }
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
        kernels.sequenceCounts(batch, c);
        return entropyWeights(spec, c, b, denominator);
    }

    /** @param c valid tokens of each of the {@code b} sequences. */
    private float[] entropyWeights(final LossSpec spec, final long[] c, final int b, final double denominator) {
        final float[] w = weights(b);
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
     * d loss / d log_prob at one token from its log_prob, for {@link #localGradient} specs: the policy loss's
     * gradient ({@link VanillaPolicyLoss#tokenGradient} times the rollout weight and the token weight), then the
     * combination with the KL term's, in the float operations of the batch path (policy loss, KL penalty and
     * {@link Kernels#combine}), so that both paths give the same bits.
     */
    private static final class LocalGradient implements TokenStep {
        private TokenBatch batch;
        private OffHeapArray mask;
        private OffHeapArray logProb;
        private OffHeapArray oldLogProb;
        private OffHeapArray advantages;
        private OffHeapArray weights;
        private OffHeapArray refLogProb;
        private OffHeapArray out;
        private KlPenalty klType;
        private float lower;
        private float upper;
        private float clipC;
        private float pgScale;
        /** Per sequence: the policy loss's token weight and the KL term's ({@link ActorComposition}). */
        private float[] pgWeight = new float[0];
        private float[] klWeight = new float[0];

        void set(final LossSpec spec, final TokenBatch withLp, final OffHeapArray glp, final long[] counts,
                 final double denominator) {
            final int b = withLp.numSequences();
            if (pgWeight.length < b) {
                pgWeight = new float[Math.max(b, pgWeight.length * 2)];
                klWeight = new float[pgWeight.length];
            }
            for (int s = 0; s < b; s++) {
                pgWeight[s] = (float) Aggregation.tokenWeight(spec, denominator, counts[s]);
                klWeight[s] = ActorComposition.klTokenWeight(spec, denominator, counts[s]);
            }
            batch = withLp;
            mask = withLp.mask();
            logProb = withLp.column(Column.LOG_PROB);
            oldLogProb = withLp.column(Column.OLD_LOG_PROB);
            advantages = withLp.column(Column.ADVANTAGES);
            weights = withLp.column(Column.ROLLOUT_IS_WEIGHTS);
            klType = spec.useKlLoss() ? spec.klLossType() : null;
            refLogProb = klType != null ? withLp.column(Column.REF_LOG_PROB) : null;
            out = glp;
            lower = (float) (1.0 - spec.clipRatioLow());
            upper = (float) (1.0 + spec.clipRatioHigh());
            clipC = (float) spec.clipRatioC();
            pgScale = ActorComposition.pgScale(spec);
        }

        void clear() {
            batch = null;
            mask = null;
            logProb = null;
            oldLogProb = null;
            advantages = null;
            weights = null;
            refLogProb = null;
            out = null;
            klType = null;
        }

        @Override
        public void token(final int t) {
            final int s = sequenceOf(t);
            float g = 0f;
            float kg = 0f;
            if (mask.getFloat(t) != 0f) {
                final float lp = logProb.getFloat(t);
                final float logRatio = lp - oldLogProb.getFloat(t);
                final float ratio = CanonicalMath.exp(TorchOps.clamp(logRatio, -20f, 20f));
                g = VanillaPolicyLoss.tokenGradient(advantages.getFloat(t), logRatio, ratio, lower, upper, clipC);
                g = (weights != null ? g * weights.getFloat(t) : g) * pgWeight[s];
                if (klType != null) {
                    kg = KlLoss.gradient(klType, lp, refLogProb.getFloat(t));
                }
            }
            // combine(): g * pgScale + kg * w_kl of the token's sequence (masked tokens included), or without the KL
            // term g * pgScale, skipped when pgScale is 1.
            if (klType != null) {
                out.setFloat(t, g * pgScale + kg * klWeight[s]);
            } else {
                out.setFloat(t, pgScale != 1f ? g * pgScale : g);
            }
        }

        /** The sequence holding token t: the last s with offset(s) <= t (binary search over the offsets). */
        private int sequenceOf(final int t) {
            int lo = 0;
            int hi = batch.numSequences() - 1;
            while (lo < hi) {
                final int mid = (lo + hi + 1) >>> 1;
                if (batch.offset(mid) <= t) {
                    lo = mid;
                } else {
                    hi = mid - 1;
                }
            }
            return lo;
        }
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
