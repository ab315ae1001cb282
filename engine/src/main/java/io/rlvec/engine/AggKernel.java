package io.rlvec.engine;

import static io.rlvec.engine.TokenMemory.addWide;
import static io.rlvec.engine.TokenMemory.get;
import static io.rlvec.engine.TokenMemory.load;
import static io.rlvec.engine.TokenMemory.set;
import static io.rlvec.engine.TokenMemory.store;
import static io.rlvec.engine.TokenMemory.sumLanes;

import java.lang.foreign.MemorySegment;

import io.rlvec.AggResult;
import io.rlvec.Aggregation;
import io.rlvec.LossSpec;
import io.rlvec.OffHeapArray;
import io.rlvec.TokenBatch;

import jdk.incubator.vector.DoubleVector;
import jdk.incubator.vector.FloatVector;
import jdk.incubator.vector.VectorMask;
import jdk.incubator.vector.VectorOperators;

/**
 * verl's {@code agg_loss} over an arbitrary per-token column, with d loss / d loss_mat: a counting pass over the
 * mask, then one pass that sums the valid values of each piece in double lanes and writes the sequence's token
 * weight (or +0.0f where masked) as the gradient. Same plan, lane order and combination order as
 * {@link PolicyLossKernel}; the gradient is bit-identical to {@code io.rlvec.reference.AggLoss}, the loss within
 * 1 ulp.
 */
final class AggKernel {
    private static final FloatVector ZERO = FloatVector.zero(Vec.F);

    private AggKernel() {
    }

    /**
     * Runs agg_loss. Arguments were validated by the engine's façade.
     *
     * @param gradOut d loss / d lossMat output, or null.
     * @param ws      the engine's scratch.
     * @param blocks  the engine's block runner.
     */
    static void compute(final LossSpec spec, final TokenBatch batch, final OffHeapArray lossMat,
                        final OffHeapArray gradOut, final AggResult out, final Workspace ws, final Blocks blocks) {
        final SequencePieces plan = ws.pieces;
        plan.plan(batch);
        final Task task = ws.aggTask();
        task.bind(batch, lossMat, gradOut);
        try {
            task.phase = Task.COUNT;
            blocks.forEach(plan.numBlocks, task);

            final int b = plan.numSequences;
            long validTokens = 0;
            long validSequences = 0;
            for (int s = 0; s < b; s++) {
                long c = 0;
                for (int p = plan.seqFirst[s]; p < plan.seqFirst[s + 1]; p++) {
                    c += task.pieceCount[p];
                }
                task.seqCount[s] = c;
                validTokens += c;
                validSequences += c > 0 ? 1 : 0;
            }
            final double denominator = Aggregation.denominator(spec, batch, validTokens, validSequences);
            for (int s = 0; s < b; s++) {
                task.seqWeight[s] = (float) Aggregation.tokenWeight(spec, denominator, task.seqCount[s]);
            }

            task.phase = Task.COMPUTE;
            blocks.forEach(plan.numBlocks, task);

            double numerator = 0.0;
            for (int s = 0; s < b; s++) {
                double sum = 0.0;
                for (int p = plan.seqFirst[s]; p < plan.seqFirst[s + 1]; p++) {
                    sum += task.pieceSum[p];
                }
                numerator += Aggregation.sequenceTerm(spec.lossAggMode(), sum, task.seqCount[s]);
            }
            out.set(numerator, validTokens, validSequences, denominator,
                (float) Aggregation.loss(spec, numerator, denominator));
        } finally {
            task.unbind();
        }
    }

    /** Sums the valid values of piece {@code p} and writes its gradient. */
    private static void computePiece(final Task t, final int p) {
        final SequencePieces plan = t.plan;
        final int start = plan.start[p];
        final int end = plan.end[p];
        final float tokenWeight = t.seqWeight[plan.seq[p]];
        final MemorySegment values = t.values;
        final MemorySegment mask = t.mask;
        final MemorySegment grad = t.grad;
        final boolean hasG = grad != null;
        final FloatVector tokenWeightV = FloatVector.broadcast(Vec.F, tokenWeight);
        // Not a static final zero: a constant vector object flowing into the loop phi makes C2 box the
        // accumulator on every iteration (measured: 96 bytes per vector iteration).
        DoubleVector acc = DoubleVector.zero(Vec.D);
        final int vecEnd = start + Vec.F.loopBound(end - start);
        int i = start;
        for (; i < vecEnd; i += Vec.FL) {
            final VectorMask<Float> valid = load(mask, i).compare(VectorOperators.NE, 0f);
            acc = addWide(acc, ZERO.blend(load(values, i), valid));
            if (hasG) {
                store(ZERO.blend(tokenWeightV, valid), grad, i);
            }
        }
        acc.intoArray(t.lanes, p * TokenMemory.DL);
        double sum = sumLanes(t.lanes, p * TokenMemory.DL);
        // Scalar tail (fewer than FL tokens), as the reference.
        for (; i < end; i++) {
            final boolean valid = get(mask, i) != 0f;
            if (valid) {
                sum += get(values, i);
            }
            if (hasG) {
                set(grad, i, valid ? tokenWeight : 0f);
            }
        }
        t.pieceSum[p] = sum;
    }

    /** The reusable state of one call (see {@link PolicyLossKernel.Task}). */
    static final class Task implements Blocks.Body {
        static final int COUNT = 0;
        static final int COMPUTE = 1;

        final SequencePieces plan;
        int phase;
        MemorySegment values;
        MemorySegment mask;
        MemorySegment grad;
        int[] pieceCount = new int[0];
        double[] pieceSum = new double[0];
        double[] lanes = new double[0];
        long[] seqCount = new long[0];
        float[] seqWeight = new float[0];

        Task(final SequencePieces plan) {
            this.plan = plan;
        }

        void bind(final TokenBatch batch, final OffHeapArray lossMat, final OffHeapArray gradOut) {
            values = lossMat.segment();
            mask = batch.mask().segment();
            grad = gradOut != null ? gradOut.segment() : null;
            final int pieces = plan.numPieces;
            if (pieceCount.length < pieces) {
                final int n = Math.max(pieces, pieceCount.length * 2);
                pieceCount = new int[n];
                pieceSum = new double[n];
                lanes = new double[n * TokenMemory.DL];
            }
            if (seqCount.length < plan.numSequences) {
                final int n = Math.max(plan.numSequences, seqCount.length * 2);
                seqCount = new long[n];
                seqWeight = new float[n];
            }
        }

        void unbind() {
            values = null;
            mask = null;
            grad = null;
        }

        @Override
        public void run(final int block) {
            final int from = plan.blockFirst[block];
            final int to = plan.blockFirst[block + 1];
            if (phase == COUNT) {
                for (int p = from; p < to; p++) {
                    pieceCount[p] = TokenMemory.countValid(mask, plan.start[p], plan.end[p]);
                }
            } else {
                for (int p = from; p < to; p++) {
                    computePiece(this, p);
                }
            }
        }
    }
}
