package io.rlvec.engine;

import static io.rlvec.engine.TokenMemory.addWide;
import static io.rlvec.engine.TokenMemory.get;
import static io.rlvec.engine.TokenMemory.load;
import static io.rlvec.engine.TokenMemory.set;
import static io.rlvec.engine.TokenMemory.sumLanes;

import java.lang.foreign.MemorySegment;

import io.rlvec.AggResult;
import io.rlvec.Aggregation;
import io.rlvec.Column;
import io.rlvec.LossSpec;
import io.rlvec.OffHeapArray;
import io.rlvec.TokenBatch;
import io.rlvec.ValueLossResult;
import io.rlvec.reference.TorchOps;

import jdk.incubator.vector.DoubleVector;
import jdk.incubator.vector.FloatVector;
import jdk.incubator.vector.VectorMask;
import jdk.incubator.vector.VectorOperators;

/**
 * verl's {@code agg_loss} over a per-token loss, with d loss / d loss_mat: a counting pass over the mask, then one
 * pass that sums the valid per-token losses of each piece in double lanes and writes the sequence's token weight
 * (times the loss's own derivative) as the gradient, +0.0f where masked. Same plan, lane order and combination
 * order as {@link PolicyLossKernel}. Two per-token losses share that skeleton:
 * <ul>
 *   <li>{@link #compute}: an arbitrary column (agg_loss itself), bit-identical gradient to
 *       {@code io.rlvec.reference.AggLoss};</li>
 *   <li>{@link #valueLoss}: verl's {@code compute_value_loss}, max of the unclipped and clipped squared errors,
 *       with vf_clipfrac and vpred_mean sums, bit-identical gradient to {@code io.rlvec.reference.ValueLoss}.</li>
 * </ul>
 * Losses (and vpred_mean) are within 1 ulp of the reference, counts exact.
 */
final class AggKernel {
    private static final FloatVector ZERO = FloatVector.zero(Vec.F);
    private static final FloatVector HALF = FloatVector.broadcast(Vec.F, 0.5f);
    private static final FloatVector ONE = FloatVector.broadcast(Vec.F, 1f);
    private static final FloatVector TWO = FloatVector.broadcast(Vec.F, 2f);

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
        final Task task = ws.aggTask();
        task.bind(batch, gradOut, Task.COLUMN);
        task.values = lossMat.segment();
        try {
            final double denominator = aggregate(spec, batch, task, blocks, 1.0);
            out.set(task.numerator, task.validTokens, task.validSequences, denominator,
                (float) Aggregation.loss(spec, task.numerator, denominator));
        } finally {
            task.unbind();
        }
    }

    /**
     * Runs verl's compute_value_loss (see {@code io.rlvec.reference.ValueLoss}). Arguments were validated by the
     * engine's façade.
     *
     * @param gradVpreds d vf_loss / d vpreds output, or null.
     */
    static void valueLoss(final LossSpec spec, final TokenBatch batch, final OffHeapArray gradVpreds,
                          final ValueLossResult out, final Workspace ws, final Blocks blocks) {
        final LossSpec agg = spec.valueAggregationSpec();
        final Task task = ws.aggTask();
        task.bind(batch, gradVpreds, Task.VALUE);
        task.vpreds = batch.column(Column.VPREDS).segment();
        task.returns = batch.column(Column.RETURNS).segment();
        task.values = batch.column(Column.VALUES).segment();
        task.clip = (float) spec.cliprangeValue();
        try {
            final double denominator = aggregate(agg, batch, task, blocks, 0.5);
            long clipped = 0;
            double vpredSum = 0.0;
            for (int s = 0; s < task.plan.numSequences; s++) {
                double sequence = 0.0;
                for (int p = task.plan.seqFirst[s]; p < task.plan.seqFirst[s + 1]; p++) {
                    sequence += task.pieceVpreds[p];
                    clipped += task.pieceClipped[p];
                }
                vpredSum += sequence;
            }
            out.set(agg, task.numerator, task.validTokens, task.validSequences, denominator, clipped, vpredSum);
        } finally {
            task.unbind();
        }
    }

    /**
     * The shared skeleton: plans, counts, derives the denominator and each sequence's token weight
     * ({@code (float) (scale * tokenWeight)}, once per sequence as the reference), runs the task's per-token pass
     * and combines the piece sums (pieces of a sequence in order, then sequences in order) into
     * {@code task.numerator}.
     *
     * @param scale the constant factor of the loss in front of agg_loss (1, or 0.5 for the value loss).
     * @return the denominator.
     */
    private static double aggregate(final LossSpec spec, final TokenBatch batch, final Task task, final Blocks blocks,
                                    final double scale) {
        final SequencePieces plan = task.plan;
        plan.plan(batch);
        task.ensure();
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
            task.seqWeight[s] = (float) (scale * Aggregation.tokenWeight(spec, denominator, task.seqCount[s]));
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
        task.numerator = numerator;
        task.validTokens = validTokens;
        task.validSequences = validSequences;
        return denominator;
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
                ZERO.blend(tokenWeightV, valid).intoMemorySegment(grad, (long) i * Float.BYTES, Vec.LE);
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

    /**
     * The value loss over piece {@code p}: sums max(vf_losses1, vf_losses2) and vpreds over valid tokens in
     * double lanes, counts vf_losses2 &gt; vf_losses1, and writes d vf_loss / d vpreds with the reference's float
     * operations (torch's tie shares, +0.0f where masked). The loss sums, the vpreds sums and the gradient are three
     * vector loops ({@link ValueLoop}), each its own compilation unit: fused, they exceed C2's inlining budget and
     * every vector is boxed (the reason {@link PolicyLossKernel} splits its loops). They are called through one site
     * with three receiver classes, which C2 does not inline: called directly, a short piece's loops (too few
     * iterations to be compiled on their own first) were inlined into this method and boxed there (measured with
     * 512-bit vectors: 3.4 KB per call on 57 tokens).
     */
    private static void valuePiece(final Task t, final int p) {
        final SequencePieces plan = t.plan;
        final int start = plan.start[p];
        final int end = plan.end[p];
        final float w = t.seqWeight[plan.seq[p]];
        final float c = t.clip;
        final int vecEnd = start + Vec.F.loopBound(end - start);
        final int slot = p * TokenMemory.DL;
        final ValueLoop[] loops = VALUE_LOOPS;
        final int n = t.grad != null ? loops.length : loops.length - 1;
        for (int k = 0; k < n; k++) {
            loops[k].run(t, p, start, vecEnd);
        }
        int clipped = t.pieceClipped[p];
        double sum = sumLanes(t.lanes, slot);
        double vsum = sumLanes(t.vlanes, slot);
        final MemorySegment vpreds = t.vpreds;
        final MemorySegment returns = t.returns;
        final MemorySegment values = t.values;
        final MemorySegment mask = t.mask;
        final MemorySegment grad = t.grad;
        // Scalar tail (fewer than FL tokens), as the reference.
        for (int i = vecEnd; i < end; i++) {
            if (get(mask, i) == 0f) {
                if (grad != null) {
                    set(grad, i, 0f);
                }
                continue;
            }
            final float v = get(vpreds, i);
            final float r = get(returns, i);
            final float old = get(values, i);
            final float hi = old + c;
            final float lo = old - c;
            final float upper = TorchOps.minimum(v, hi);
            final float vclip = TorchOps.maximum(upper, lo);
            final float d1 = v - r;
            final float d2 = vclip - r;
            final float l1 = d1 * d1;
            final float l2 = d2 * d2;
            sum += TorchOps.maximum(l1, l2);
            vsum += v;
            clipped += l2 > l1 ? 1 : 0;
            if (grad != null) {
                final float clipShare = TorchOps.minShare(v, hi) * TorchOps.maxShare(upper, lo);
                final float g1 = TorchOps.maxShare(l1, l2) * (2f * d1);
                final float g2 = (TorchOps.maxShare(l2, l1) * clipShare) * (2f * d2);
                set(grad, i, w * (g1 + g2));
            }
        }
        t.pieceSum[p] = sum;
        t.pieceVpreds[p] = vsum;
        t.pieceClipped[p] = clipped;
    }

    /**
     * One vector loop of {@link #valuePiece} over {@code [from, to)} of piece {@code p}; it writes only piece
     * {@code p}'s slots (the task is shared by the threads).
     */
    private abstract static class ValueLoop {
        abstract void run(Task t, int p, int from, int to);
    }

    /** The value loss's loops in order; the gradient's last (skipped without a gradient output). */
    private static final ValueLoop[] VALUE_LOOPS = {
        new ValueLoop() {
            @Override
            void run(final Task t, final int p, final int from, final int to) {
                t.pieceClipped[p] = valueSums(t, from, to, p * TokenMemory.DL);
            }
        },
        new ValueLoop() {
            @Override
            void run(final Task t, final int p, final int from, final int to) {
                vpredSums(t, from, to, p * TokenMemory.DL);
            }
        },
        new ValueLoop() {
            @Override
            void run(final Task t, final int p, final int from, final int to) {
                valueGradient(t, from, to, t.seqWeight[t.plan.seq[p]]);
            }
        },
    };

    /** Leaves the lane sums of the valid vpreds over {@code [from, to)} at {@code slot} of {@code t.vlanes}. */
    private static void vpredSums(final Task t, final int from, final int to, final int slot) {
        final MemorySegment vpreds = t.vpreds;
        final MemorySegment mask = t.mask;
        DoubleVector vacc = DoubleVector.zero(Vec.D);
        for (int i = from; i < to; i += Vec.FL) {
            final VectorMask<Float> valid = load(mask, i).compare(VectorOperators.NE, 0f);
            vacc = addWide(vacc, ZERO.blend(load(vpreds, i), valid));
        }
        vacc.intoArray(t.vlanes, slot);
    }

    /**
     * The forward vector loop of {@link #valuePiece} over {@code [from, to)}: leaves the lane sums of the loss at
     * {@code slot} of {@code t.lanes}.
     *
     * @return valid tokens with vf_losses2 &gt; vf_losses1.
     */
    private static int valueSums(final Task t, final int from, final int to, final int slot) {
        final MemorySegment vpreds = t.vpreds;
        final MemorySegment returns = t.returns;
        final MemorySegment values = t.values;
        final MemorySegment mask = t.mask;
        final FloatVector cV = FloatVector.broadcast(Vec.F, t.clip);
        DoubleVector acc = DoubleVector.zero(Vec.D);
        int clipped = 0;
        for (int i = from; i < to; i += Vec.FL) {
            final VectorMask<Float> valid = load(mask, i).compare(VectorOperators.NE, 0f);
            final FloatVector v = load(vpreds, i);
            final FloatVector r = load(returns, i);
            final FloatVector old = load(values, i);
            final FloatVector vclip = PolicyLossKernel.maximum(PolicyLossKernel.minimum(v, old.add(cV)), old.sub(cV));
            final FloatVector d1 = v.sub(r);
            final FloatVector d2 = vclip.sub(r);
            final FloatVector l1 = d1.mul(d1);
            final FloatVector l2 = d2.mul(d2);
            acc = addWide(acc, ZERO.blend(PolicyLossKernel.maximum(l1, l2), valid));
            clipped += l2.compare(VectorOperators.GT, l1).and(valid).trueCount();
        }
        acc.intoArray(t.lanes, slot);
        return clipped;
    }

    /** The gradient vector loop of {@link #valuePiece} over {@code [from, to)}, token weight {@code w}. */
    private static void valueGradient(final Task t, final int from, final int to, final float w) {
        final MemorySegment vpreds = t.vpreds;
        final MemorySegment returns = t.returns;
        final MemorySegment values = t.values;
        final MemorySegment mask = t.mask;
        final MemorySegment grad = t.grad;
        final FloatVector cV = FloatVector.broadcast(Vec.F, t.clip);
        final FloatVector wV = FloatVector.broadcast(Vec.F, w);
        for (int i = from; i < to; i += Vec.FL) {
            final VectorMask<Float> valid = load(mask, i).compare(VectorOperators.NE, 0f);
            final FloatVector v = load(vpreds, i);
            final FloatVector r = load(returns, i);
            final FloatVector old = load(values, i);
            final FloatVector hi = old.add(cV);
            final FloatVector lo = old.sub(cV);
            final FloatVector upper = PolicyLossKernel.minimum(v, hi);
            final FloatVector vclip = PolicyLossKernel.maximum(upper, lo);
            final FloatVector d1 = v.sub(r);
            final FloatVector d2 = vclip.sub(r);
            final FloatVector l1 = d1.mul(d1);
            final FloatVector l2 = d2.mul(d2);
            final FloatVector clipShare = minShare(v, hi).mul(maxShare(upper, lo));
            final FloatVector g1 = maxShare(l1, l2).mul(d1.mul(TWO));
            final FloatVector g2 = maxShare(l2, l1).mul(clipShare).mul(d2.mul(TWO));
            ZERO.blend(wV.mul(g1.add(g2)), valid).intoMemorySegment(grad, (long) i * Float.BYTES, Vec.LE);
        }
    }

    /** torch's gradient share of {@code a} in maximum(a, b): 1, 0.5 at a tie, else 0 (NaN too), as TorchOps. */
    private static FloatVector maxShare(final FloatVector a, final FloatVector b) {
        return ZERO.blend(HALF, a.compare(VectorOperators.EQ, b)).blend(ONE, a.compare(VectorOperators.GT, b));
    }

    /** torch's gradient share of {@code a} in minimum(a, b): 1, 0.5 at a tie, else 0 (NaN too), as TorchOps. */
    private static FloatVector minShare(final FloatVector a, final FloatVector b) {
        return ZERO.blend(HALF, a.compare(VectorOperators.EQ, b)).blend(ONE, a.compare(VectorOperators.LT, b));
    }

    /** The reusable state of one call (see {@link PolicyLossKernel.Task}). */
    static final class Task implements Blocks.Body {
        static final int COUNT = 0;
        static final int COMPUTE = 1;
        /** Per-token loss: a column ({@link #values}). */
        static final int COLUMN = 0;
        /** Per-token loss: the value loss of vpreds, returns and values. */
        static final int VALUE = 1;

        final SequencePieces plan;
        int phase;
        int kind;
        MemorySegment values;
        MemorySegment vpreds;
        MemorySegment returns;
        MemorySegment mask;
        MemorySegment grad;
        float clip;
        int[] pieceCount = new int[0];
        double[] pieceSum = new double[0];
        double[] pieceVpreds = new double[0];
        int[] pieceClipped = new int[0];
        double[] lanes = new double[0];
        double[] vlanes = new double[0];
        long[] seqCount = new long[0];
        float[] seqWeight = new float[0];
        double numerator;
        long validTokens;
        long validSequences;

        Task(final SequencePieces plan) {
            this.plan = plan;
        }

        void bind(final TokenBatch batch, final OffHeapArray gradOut, final int kind) {
            this.kind = kind;
            mask = batch.mask().segment();
            grad = gradOut != null ? gradOut.segment() : null;
        }

        /** Grows the per-piece and per-sequence arrays to the current plan. */
        void ensure() {
            final int pieces = plan.numPieces;
            if (pieceCount.length < pieces) {
                final int n = Math.max(pieces, pieceCount.length * 2);
                pieceCount = new int[n];
                pieceSum = new double[n];
                pieceVpreds = new double[n];
                pieceClipped = new int[n];
                lanes = new double[n * TokenMemory.DL];
                vlanes = new double[n * TokenMemory.DL];
            }
            if (seqCount.length < plan.numSequences) {
                final int n = Math.max(plan.numSequences, seqCount.length * 2);
                seqCount = new long[n];
                seqWeight = new float[n];
            }
        }

        void unbind() {
            values = null;
            vpreds = null;
            returns = null;
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
            } else if (kind == VALUE) {
                for (int p = from; p < to; p++) {
                    valuePiece(this, p);
                }
            } else {
                for (int p = from; p < to; p++) {
                    computePiece(this, p);
                }
            }
        }
    }
}
