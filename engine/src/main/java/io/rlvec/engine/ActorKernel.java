package io.rlvec.engine;

import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;

import io.rlvec.Logits;
import io.rlvec.OffHeapArray;
import io.rlvec.SoftmaxStats;
import io.rlvec.TokenBatch;
import io.rlvec.reference.ActorLoss;

import jdk.incubator.vector.FloatVector;
import jdk.incubator.vector.VectorMask;
import jdk.incubator.vector.VectorOperators;
import jdk.incubator.vector.VectorSpecies;

/**
 * The vector engine's elementwise passes of the actor composition ({@link ActorLoss.Kernels}): per-sequence token
 * counts, the gradient combination and per-sequence fills, one sequence per {@link Blocks} block. The arithmetic
 * is the reference's ({@code ScalarActorKernels}) in the same order, so outputs are bit-identical.
 */
final class ActorKernel implements ActorLoss.Kernels {
    private static final VectorSpecies<Float> F = Vec.F;
    private static final int FL = Vec.FL;
    private static final ValueLayout.OfFloat F32 = ValueLayout.JAVA_FLOAT_UNALIGNED.withOrder(Vec.LE);
    private static final FloatVector ZERO = FloatVector.zero(F);

    private final Blocks blocks;
    private final KlKernel kl;
    private final VocabKernel vocab;
    private final CountBody countBody = new CountBody();
    private final CombineBody combineBody = new CombineBody();
    private final FillBody fillBody = new FillBody();

    ActorKernel(final Blocks blocks, final KlKernel kl, final VocabKernel vocab) {
        this.blocks = blocks;
        this.kl = kl;
        this.vocab = vocab;
    }

    @Override
    public void sequenceCounts(final TokenBatch batch, final long[] counts) {
        countBody.batch = batch;
        countBody.mask = batch.mask().segment();
        countBody.counts = counts;
        blocks.forEach(batch.numSequences(), countBody);
    }

    @Override
    public void combine(final TokenBatch batch, final OffHeapArray grad, final float pgScale,
                        final OffHeapArray klGrad, final float[] seqWeights) {
        combineBody.batch = batch;
        combineBody.grad = grad.segment();
        combineBody.pgScale = pgScale;
        combineBody.klGrad = klGrad == null ? null : klGrad.segment();
        combineBody.weights = seqWeights;
        blocks.forEach(batch.numSequences(), combineBody);
    }

    @Override
    public void fill(final TokenBatch batch, final float[] seqWeights, final OffHeapArray out) {
        fillBody.batch = batch;
        fillBody.mask = batch.mask().segment();
        fillBody.out = out.segment();
        fillBody.weights = seqWeights;
        blocks.forEach(batch.numSequences(), fillBody);
    }

    @Override
    public void klFullAccumulate(final Logits policy, final Logits reference, final double temperature,
                                 final OffHeapArray rowMask, final OffHeapArray kldOut, final OffHeapArray upstream,
                                 final OffHeapArray gradLogits) {
        kl.full(policy, reference, temperature, rowMask, kldOut, upstream, gradLogits, true, blocks);
    }

    @Override
    public boolean vocabStep(final Logits logits, final OffHeapArray labels, final double temperature,
                             final OffHeapArray rowMask, final OffHeapArray logProb, final OffHeapArray entropy,
                             final SoftmaxStats stats, final OffHeapArray gradLogProb, final OffHeapArray gradEntropy,
                             final OffHeapArray gradLogits, final ActorLoss.TokenStep step) {
        vocab.step(logits, labels, temperature, rowMask, logProb, entropy, stats, gradLogProb, gradEntropy, gradLogits,
            step, blocks);
        return true;
    }

    private static FloatVector load(final MemorySegment seg, final int i) {
        return FloatVector.fromMemorySegment(F, seg, (long) i * Float.BYTES, Vec.LE);
    }

    /** Valid tokens of one sequence: lane-wise compares counted per vector, then the tail. */
    private static final class CountBody implements Blocks.Body {
        TokenBatch batch;
        MemorySegment mask;
        long[] counts;

        @Override
        public void run(final int s) {
            final int end = batch.offset(s + 1);
            int i = batch.offset(s);
            long c = 0;
            for (; i + FL <= end; i += FL) {
                c += load(mask, i).compare(VectorOperators.NE, 0f).trueCount();
            }
            for (; i < end; i++) {
                c += mask.get(F32, (long) i * Float.BYTES) != 0f ? 1 : 0;
            }
            counts[s] = c;
        }
    }

    /** grad = grad * pgScale [+ klGrad * w], float32, in that order. */
    private static final class CombineBody implements Blocks.Body {
        TokenBatch batch;
        MemorySegment grad;
        float pgScale;
        MemorySegment klGrad;
        float[] weights;

        @Override
        public void run(final int s) {
            final int end = batch.offset(s + 1);
            int i = batch.offset(s);
            if (klGrad == null) {
                for (; i + FL <= end; i += FL) {
                    load(grad, i).mul(pgScale).intoMemorySegment(grad, (long) i * Float.BYTES, Vec.LE);
                }
                for (; i < end; i++) {
                    final long o = (long) i * Float.BYTES;
                    grad.set(F32, o, grad.get(F32, o) * pgScale);
                }
                return;
            }
            final float w = weights[s];
            for (; i + FL <= end; i += FL) {
                load(grad, i).mul(pgScale).add(load(klGrad, i).mul(w))
                    .intoMemorySegment(grad, (long) i * Float.BYTES, Vec.LE);
            }
            for (; i < end; i++) {
                final long o = (long) i * Float.BYTES;
                final float g = grad.get(F32, o) * pgScale;
                grad.set(F32, o, g + klGrad.get(F32, o) * w);
            }
        }
    }

    /** out = w on valid tokens, 0 elsewhere. */
    private static final class FillBody implements Blocks.Body {
        TokenBatch batch;
        MemorySegment mask;
        MemorySegment out;
        float[] weights;

        @Override
        public void run(final int s) {
            final int end = batch.offset(s + 1);
            int i = batch.offset(s);
            final float w = weights[s];
            final FloatVector wv = FloatVector.broadcast(F, w);
            for (; i + FL <= end; i += FL) {
                final VectorMask<Float> valid = load(mask, i).compare(VectorOperators.NE, 0f);
                ZERO.blend(wv, valid).intoMemorySegment(out, (long) i * Float.BYTES, Vec.LE);
            }
            for (; i < end; i++) {
                final long o = (long) i * Float.BYTES;
                out.set(F32, o, mask.get(F32, o) != 0f ? w : 0f);
            }
        }
    }
}
