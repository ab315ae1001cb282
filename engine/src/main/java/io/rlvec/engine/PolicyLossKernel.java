package io.rlvec.engine;

import static io.rlvec.engine.TokenMemory.addWide;
import static io.rlvec.engine.TokenMemory.get;
import static io.rlvec.engine.TokenMemory.load;
import static io.rlvec.engine.TokenMemory.set;
import static io.rlvec.engine.TokenMemory.sumLanes;

import java.lang.foreign.MemorySegment;

import io.rlvec.Aggregation;
import io.rlvec.CanonicalMath;
import io.rlvec.Column;
import io.rlvec.LossSpec;
import io.rlvec.OffHeapArray;
import io.rlvec.PolicyLossResult;
import io.rlvec.PolicyLossResult.Stat;
import io.rlvec.TokenBatch;
import io.rlvec.reference.TorchOps;

import jdk.incubator.vector.DoubleVector;
import jdk.incubator.vector.FloatVector;
import jdk.incubator.vector.VectorMask;
import jdk.incubator.vector.VectorOperators;

/**
 * verl's {@code compute_policy_loss_vanilla} + {@code agg_loss} with Vector API lanes: forward, metrics and the
 * analytic gradient d pg_loss / d log_prob, after a counting pass over the mask (the token weight of a sequence
 * depends on its valid-token count). The token columns are streamed once, in L1-sized chunks that six short
 * vector loops visit in turn (see {@link #computePiece} for why six).
 *
 * <p>Numerics (design.md): every token is computed with exactly the float operations of
 * {@code io.rlvec.reference.VanillaPolicyLoss}, in the same order, with the canonical exp
 * ({@link VectorMath#exp}) and compare + blend for torch's maximum / minimum / clamp (NaN propagates as in
 * {@link TorchOps}); the gradient's share coefficient, a product of exact halves, is selected from its possible
 * values. So the per-token gradient is bit-identical to the reference. Sums over tokens run in double
 * lanes ({@link TokenMemory#addWide}), per piece of a sequence ({@link SequencePieces}), reduced once after the
 * loop in lane order; pieces and then sequences are combined in their order, so results are independent of the
 * thread count and within 1 ulp of the reference's sequential double sums. Counts use
 * {@link VectorMask#trueCount()} and are exact. Sequence tails shorter than a vector run a scalar loop with the
 * reference's arithmetic.
 *
 * <p>Masked tokens are selected away, never multiplied by the mask: their gradient is exactly +0.0f and their
 * values (NaN, Inf) never reach a sum, a count or a gradient.
 */
final class PolicyLossKernel {
    /** Per-piece double partials: loss sum, the A &gt; 0 part, the A &lt; 0 part, sum of the clamped log-ratio. */
    static final int SUMS = 4;
    static final int S_LOSS = 0;
    static final int S_POS = 1;
    static final int S_NEG = 2;
    static final int S_LOG_RATIO = 3;
    /** Per-piece exact counts, in the order of {@link #COUNT_STATS}. */
    static final int COUNTS = 8;
    static final int C_POS = 0;
    static final int C_NEG = 1;
    static final int C_POS_ABOVE = 2;
    static final int C_NEG_ABOVE = 3;
    static final int C_HIGH = 4;
    static final int C_LOW = 5;
    static final int C_DUAL = 6;
    static final int C_CLIPPED = 7;
    /** The stat each count slot feeds. */
    private static final Stat[] COUNT_STATS = {Stat.POS_TOKENS, Stat.NEG_TOKENS, Stat.POS_RATIO_ABOVE_ONE,
        Stat.NEG_RATIO_ABOVE_ONE, Stat.CLIPPED_HIGH, Stat.CLIPPED_LOW, Stat.DUAL_CLIPPED, Stat.CLIPPED};

    /** Doubles of lane accumulators per block: one vector of each sum. */
    static final int ACC_SLOTS = SUMS * TokenMemory.DL;
    /**
     * Tokens per chunk: the loops of a piece run chunk by chunk so that the chunk's columns (up to 5) and scratch
     * rows (4), 18 KiB, stay in L1 between the loops; a multiple of every lane count.
     */
    static final int CHUNK = 512;
    /** Scratch rows per block, each {@link #CHUNK} floats: ratio, clamped log-ratio, clamp pass, masked loss. */
    static final int SCRATCH_ROWS = 4;
    private static final int ROW_RATIO = 0;
    private static final int ROW_LOG_RATIO = 1;
    private static final int ROW_PASS = 2;
    private static final int ROW_LOSS = 3;

    /** verl's clamp of log_prob - old_log_prob. */
    private static final float LOG_RATIO_MIN = -20f;
    private static final float LOG_RATIO_MAX = 20f;

    private static final FloatVector ZERO = FloatVector.zero(Vec.F);
    private static final FloatVector HALF = FloatVector.broadcast(Vec.F, 0.5f);
    private static final FloatVector ONE = FloatVector.broadcast(Vec.F, 1f);

    private PolicyLossKernel() {
    }

    /**
     * Runs the vanilla policy loss. Arguments were validated by the engine's façade.
     *
     * @param grad   d pg_loss / d log_prob output, or null for forward only.
     * @param ws     the engine's scratch.
     * @param blocks the engine's block runner.
     */
    static void vanilla(final LossSpec spec, final TokenBatch batch, final OffHeapArray grad,
                        final PolicyLossResult out, final Workspace ws, final Blocks blocks) {
        final SequencePieces plan = ws.pieces;
        plan.plan(batch);
        final Task task = ws.policyTask();
        task.bind(spec, batch, grad);
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
                // Rounded to float once per sequence, as the reference does.
                task.seqWeight[s] = (float) Aggregation.tokenWeight(spec, denominator, task.seqCount[s]);
            }

            task.phase = Task.COMPUTE;
            blocks.forEach(plan.numBlocks, task);

            out.reset();
            combine(spec, plan, task, out);
            out.add(Stat.VALID_TOKENS, validTokens);
            out.add(Stat.VALID_SEQUENCES, validSequences);
            out.finish(spec, denominator);
        } finally {
            task.unbind();
        }
    }

    /** Adds the piece partials into {@code out}: pieces of a sequence in order, then sequences in order. */
    private static void combine(final LossSpec spec, final SequencePieces plan, final Task task,
                                final PolicyLossResult out) {
        final double[] sums = task.pieceSums;
        final int[] counts = task.pieceCounts;
        double logRatioSum = 0.0;
        for (int s = 0; s < plan.numSequences; s++) {
            double loss = 0.0;
            double pos = 0.0;
            double neg = 0.0;
            for (int p = plan.seqFirst[s]; p < plan.seqFirst[s + 1]; p++) {
                loss += sums[p * SUMS + S_LOSS];
                pos += sums[p * SUMS + S_POS];
                neg += sums[p * SUMS + S_NEG];
                logRatioSum += sums[p * SUMS + S_LOG_RATIO];
            }
            final long c = task.seqCount[s];
            out.add(Stat.LOSS_NUMERATOR, Aggregation.sequenceTerm(spec.lossAggMode(), loss, c));
            out.add(Stat.POS_NUMERATOR, Aggregation.sequenceTerm(spec.lossAggMode(), pos, c));
            out.add(Stat.NEG_NUMERATOR, Aggregation.sequenceTerm(spec.lossAggMode(), neg, c));
        }
        // ppo_kl sums -negative_approx_kl: negation is exact, so negating the sum once is the same sum.
        out.add(Stat.NEG_LOG_RATIO_SUM, -logRatioSum);
        for (int k = 0; k < COUNTS; k++) {
            long total = 0;
            for (int p = 0; p < plan.numPieces; p++) {
                total += counts[p * COUNTS + k];
            }
            out.add(COUNT_STATS[k], total);
        }
    }

    /**
     * One piece of one sequence: chunk by chunk, the vector loops ({@link #logRatioLoop}, {@link #ratioLoop},
     * {@link #lossLoop}, {@link #sumLoop}, {@link #countLoop}, {@link #gradientLoop}), then the scalar tail; writes the piece's
     * partials to slot {@code p}.
     *
     * <p>Why six loops and not one fused body: the fused body (exp, clip, gradient, four wide sums, eight
     * counts) is several times C2's inlining budget (NodeCountInliningCutoff, 18000 parse nodes; style.md P2),
     * after which vector operations are called instead of inlined and every vector is boxed (measured: ~54 bytes
     * allocated per token and 7 ns/token). Each loop here is its own compilation unit of at most ~2/3 of the
     * budget at every vector width (the graphs of the 128-bit species are the largest). They exchange per-token
     * values (ratio, clamped log-ratio, clamp pass, loss) through {@link #SCRATCH_ROWS} rows of {@link #CHUNK}
     * floats in the block's scratch, which stay in L1, and keep their lane accumulators in the block's slots
     * between chunks (a store and a load are exact, so every sum has the lane order of one loop).
     *
     * <p>The loops are called through {@link ChunkLoop}, a call site with six receiver classes that C2 never
     * inlines: each loop stays its own compilation unit with the whole budget, whatever the JIT decides about
     * this method (a loop inlined here would share one budget with the others). The virtual call costs a few
     * nanoseconds per chunk of 512 tokens.
     */
    private static void computePiece(final Task t, final int p, final int block) {
        final SequencePieces plan = t.plan;
        final int start = plan.start[p];
        final int end = plan.end[p];
        final float tokenWeight = t.seqWeight[plan.seq[p]];
        final int accBase = block * ACC_SLOTS;
        final int countBase = block * COUNTS;
        final int scratchBase = block * CHUNK * SCRATCH_ROWS;
        final double[] acc = t.acc;
        final int[] counts = t.blockCounts;
        java.util.Arrays.fill(acc, accBase, accBase + ACC_SLOTS, 0.0);
        java.util.Arrays.fill(counts, countBase, countBase + COUNTS, 0);

        final int vecEnd = start + Vec.F.loopBound(end - start);
        final ChunkLoop[] loops = t.grad != null ? LOOPS_WITH_GRADIENT : LOOPS_FORWARD;
        for (int c = start; c < vecEnd; c += CHUNK) {
            final int ce = Math.min(c + CHUNK, vecEnd);
            for (final ChunkLoop loop : loops) {
                loop.run(t, c, ce, block, tokenWeight);
            }
        }

        final double[] sums = t.pieceSums;
        final int s = p * SUMS;
        for (int k = 0; k < SUMS; k++) {
            sums[s + k] = sumLanes(acc, accBase + k * TokenMemory.DL);
        }
        System.arraycopy(counts, countBase, t.pieceCounts, p * COUNTS, COUNTS);
        if (vecEnd < end) {
            scalarTail(t, vecEnd, end, tokenWeight, p);
        }
    }

    /** One vector loop over a chunk: the boundary of a compilation unit (see {@link #computePiece}). */
    private abstract static class ChunkLoop {
        /** Runs the loop over tokens {@code [from, to)} of the piece in progress of {@code block}. */
        abstract void run(Task t, int from, int to, int block, float tokenWeight);
    }

    /** Loop 1: {@link #logRatioLoop}. */
    private static final class LogRatioLoop extends ChunkLoop {
        @Override
        void run(final Task t, final int from, final int to, final int block, final float tokenWeight) {
            logRatioLoop(t, from, to, block * CHUNK * SCRATCH_ROWS);
        }
    }

    /** Loop 2: {@link #ratioLoop}. */
    private static final class RatioLoop extends ChunkLoop {
        @Override
        void run(final Task t, final int from, final int to, final int block, final float tokenWeight) {
            ratioLoop(t, from, to, block * CHUNK * SCRATCH_ROWS);
        }
    }

    /** Loop 3: {@link #lossLoop}. */
    private static final class LossLoop extends ChunkLoop {
        @Override
        void run(final Task t, final int from, final int to, final int block, final float tokenWeight) {
            lossLoop(t, from, to, block * CHUNK * SCRATCH_ROWS);
        }
    }

    /** Loop 4: {@link #sumLoop}. */
    private static final class SumLoop extends ChunkLoop {
        @Override
        void run(final Task t, final int from, final int to, final int block, final float tokenWeight) {
            sumLoop(t, from, to, block * CHUNK * SCRATCH_ROWS, block * ACC_SLOTS);
        }
    }

    /** Loop 5: {@link #countLoop}. */
    private static final class CountLoop extends ChunkLoop {
        @Override
        void run(final Task t, final int from, final int to, final int block, final float tokenWeight) {
            countLoop(t, from, to, block * CHUNK * SCRATCH_ROWS, block * COUNTS);
        }
    }

    /** Loop 6: {@link #gradientLoop}. */
    private static final class GradientLoop extends ChunkLoop {
        @Override
        void run(final Task t, final int from, final int to, final int block, final float tokenWeight) {
            gradientLoop(t, from, to, block * CHUNK * SCRATCH_ROWS, tokenWeight);
        }
    }

    /** The loops of a call without gradient, in order. */
    private static final ChunkLoop[] LOOPS_FORWARD = {new LogRatioLoop(), new RatioLoop(), new LossLoop(),
        new SumLoop(), new CountLoop()};
    /** The loops of a call with gradient, in order. */
    private static final ChunkLoop[] LOOPS_WITH_GRADIENT = {LOOPS_FORWARD[0], LOOPS_FORWARD[1], LOOPS_FORWARD[2],
        LOOPS_FORWARD[3], LOOPS_FORWARD[4], new GradientLoop()};

    /**
     * Loop 1 of a chunk, per token: the clamped log-ratio negative_approx_kl = clamp(log_prob - old_log_prob,
     * -20, 20) and whether the clamp passes the gradient (1 or 0), into the scratch rows.
     */
    private static void logRatioLoop(final Task t, final int from, final int to, final int scratchBase) {
        final MemorySegment lpSeg = t.logProb;
        final MemorySegment oldSeg = t.oldLogProb;
        final float[] scratch = t.scratch;
        final int logRatioRow = scratchBase + ROW_LOG_RATIO * CHUNK - from;
        final int passRow = scratchBase + ROW_PASS * CHUNK - from;
        for (int i = from; i < to; i += Vec.FL) {
            final FloatVector logRatio = load(lpSeg, i).sub(load(oldSeg, i));
            // torch.clamp(x, -20, 20): x < lo ? lo : (x > hi ? hi : x); NaN compares false and stays NaN.
            logRatio.blend(LOG_RATIO_MAX, logRatio.compare(VectorOperators.GT, LOG_RATIO_MAX))
                .blend(LOG_RATIO_MIN, logRatio.compare(VectorOperators.LT, LOG_RATIO_MIN))
                .intoArray(scratch, logRatioRow + i);
            // The clamp passes the gradient on the closed interval, not for NaN: x >= lo && x <= hi.
            ZERO.blend(ONE, logRatio.compare(VectorOperators.GE, LOG_RATIO_MIN)
                .and(logRatio.compare(VectorOperators.LE, LOG_RATIO_MAX))).intoArray(scratch, passRow + i);
        }
    }

    /**
     * Loop 2 of a chunk: ratio = exp(negative_approx_kl), into the ratio row. Nothing else: the polynomial alone
     * is about 3/4 of C2's inlining budget.
     */
    private static void ratioLoop(final Task t, final int from, final int to, final int scratchBase) {
        final float[] scratch = t.scratch;
        final int ratioRow = scratchBase + ROW_RATIO * CHUNK - from;
        final int logRatioRow = scratchBase + ROW_LOG_RATIO * CHUNK - from;
        for (int i = from; i < to; i += Vec.FL) {
            VectorMath.exp(FloatVector.fromArray(Vec.F, scratch, logRatioRow + i)).intoArray(scratch, ratioRow + i);
        }
    }

    /**
     * Loop 3 of a chunk: the per-token loss (clip, dual clip, IS weight), +0.0 where masked, into the loss row.
     */
    private static void lossLoop(final Task t, final int from, final int to, final int scratchBase) {
        final MemorySegment advSeg = t.advantages;
        final MemorySegment maskSeg = t.mask;
        final MemorySegment wSeg = t.weights;
        final boolean hasW = wSeg != null;
        final float[] scratch = t.scratch;
        final int ratioRow = scratchBase + ROW_RATIO * CHUNK - from;
        final int lossRow = scratchBase + ROW_LOSS * CHUNK - from;
        final FloatVector lowerV = FloatVector.broadcast(Vec.F, t.lower);
        final FloatVector upperV = FloatVector.broadcast(Vec.F, t.upper);
        final float clipC = t.clipC;
        for (int i = from; i < to; i += Vec.FL) {
            final VectorMask<Float> valid = load(maskSeg, i).compare(VectorOperators.NE, 0f);
            final FloatVector a = load(advSeg, i);
            final FloatVector ratio = FloatVector.fromArray(Vec.F, scratch, ratioRow + i);
            final FloatVector negA = a.neg();
            final FloatVector pg1 = negA.mul(ratio);
            final FloatVector pg2 = negA.mul(ratio.blend(upperV, ratio.compare(VectorOperators.GT, upperV))
                .blend(lowerV, ratio.compare(VectorOperators.LT, lowerV)));
            final FloatVector clip1 = maximum(pg1, pg2);
            final FloatVector clip2 = minimum(negA.mul(clipC), clip1);
            FloatVector loss = clip1.blend(clip2, a.compare(VectorOperators.LT, 0f));
            if (hasW) {
                loss = loss.mul(load(wSeg, i));
            }
            ZERO.blend(loss, valid).intoArray(scratch, lossRow + i);
        }
    }

    /**
     * Loop 4 of a chunk: the wide sums over valid tokens of the loss, its A &gt; 0 and A &lt; 0 parts, and the
     * clamped log-ratio (ppo_kl).
     */
    private static void sumLoop(final Task t, final int from, final int to, final int scratchBase,
                                final int accBase) {
        final MemorySegment advSeg = t.advantages;
        final MemorySegment maskSeg = t.mask;
        final float[] scratch = t.scratch;
        final int logRatioRow = scratchBase + ROW_LOG_RATIO * CHUNK - from;
        final int lossRow = scratchBase + ROW_LOSS * CHUNK - from;
        final double[] acc = t.acc;
        DoubleVector accLoss = DoubleVector.fromArray(Vec.D, acc, accBase + S_LOSS * TokenMemory.DL);
        DoubleVector accPos = DoubleVector.fromArray(Vec.D, acc, accBase + S_POS * TokenMemory.DL);
        DoubleVector accNeg = DoubleVector.fromArray(Vec.D, acc, accBase + S_NEG * TokenMemory.DL);
        DoubleVector accLogRatio = DoubleVector.fromArray(Vec.D, acc, accBase + S_LOG_RATIO * TokenMemory.DL);
        for (int i = from; i < to; i += Vec.FL) {
            final VectorMask<Float> valid = load(maskSeg, i).compare(VectorOperators.NE, 0f);
            final FloatVector a = load(advSeg, i);
            // Already +0.0 at masked tokens, so the sign masks need no validity.
            final FloatVector loss = FloatVector.fromArray(Vec.F, scratch, lossRow + i);
            accLoss = addWide(accLoss, loss);
            accPos = addWide(accPos, ZERO.blend(loss, a.compare(VectorOperators.GT, 0f)));
            accNeg = addWide(accNeg, ZERO.blend(loss, a.compare(VectorOperators.LT, 0f)));
            accLogRatio = addWide(accLogRatio,
                ZERO.blend(FloatVector.fromArray(Vec.F, scratch, logRatioRow + i), valid));
        }
        accLoss.intoArray(acc, accBase + S_LOSS * TokenMemory.DL);
        accPos.intoArray(acc, accBase + S_POS * TokenMemory.DL);
        accNeg.intoArray(acc, accBase + S_NEG * TokenMemory.DL);
        accLogRatio.intoArray(acc, accBase + S_LOG_RATIO * TokenMemory.DL);
    }

    /** Loop 5 of a chunk: the eight exact counts behind the clip fractions and the sign split. */
    private static void countLoop(final Task t, final int from, final int to, final int scratchBase,
                                  final int countBase) {
        final MemorySegment advSeg = t.advantages;
        final MemorySegment maskSeg = t.mask;
        final float[] scratch = t.scratch;
        final int ratioRow = scratchBase + ROW_RATIO * CHUNK - from;
        final FloatVector lowerV = FloatVector.broadcast(Vec.F, t.lower);
        final FloatVector upperV = FloatVector.broadcast(Vec.F, t.upper);
        final float clipC = t.clipC;
        int nPos = 0;
        int nNeg = 0;
        int nPosAbove = 0;
        int nNegAbove = 0;
        int nHigh = 0;
        int nLow = 0;
        int nDual = 0;
        int nClipped = 0;
        for (int i = from; i < to; i += Vec.FL) {
            final VectorMask<Float> valid = load(maskSeg, i).compare(VectorOperators.NE, 0f);
            final FloatVector a = load(advSeg, i);
            final FloatVector ratio = FloatVector.fromArray(Vec.F, scratch, ratioRow + i);
            final FloatVector negA = a.neg();
            final FloatVector pg1 = negA.mul(ratio);
            final VectorMask<Float> aboveUpper = ratio.compare(VectorOperators.GT, upperV);
            final VectorMask<Float> belowLower = ratio.compare(VectorOperators.LT, lowerV);
            final FloatVector pg2 = negA.mul(ratio.blend(upperV, aboveUpper).blend(lowerV, belowLower));
            final FloatVector clip1 = maximum(pg1, pg2);
            final VectorMask<Float> pos = a.compare(VectorOperators.GT, 0f).and(valid);
            final VectorMask<Float> neg = a.compare(VectorOperators.LT, 0f).and(valid);
            final VectorMask<Float> aboveOne = ratio.compare(VectorOperators.GT, 1f);
            nPos += pos.trueCount();
            nNeg += neg.trueCount();
            nPosAbove += pos.and(aboveOne).trueCount();
            nNegAbove += neg.and(aboveOne).trueCount();
            nHigh += pos.and(aboveUpper).trueCount();
            nLow += neg.and(belowLower).trueCount();
            nDual += neg.and(clip1.compare(VectorOperators.GT, negA.mul(clipC))).trueCount();
            nClipped += valid.and(pg2.compare(VectorOperators.GT, pg1)).trueCount();
        }
        final int[] counts = t.blockCounts;
        counts[countBase + C_POS] += nPos;
        counts[countBase + C_NEG] += nNeg;
        counts[countBase + C_POS_ABOVE] += nPosAbove;
        counts[countBase + C_NEG_ABOVE] += nNegAbove;
        counts[countBase + C_HIGH] += nHigh;
        counts[countBase + C_LOW] += nLow;
        counts[countBase + C_DUAL] += nDual;
        counts[countBase + C_CLIPPED] += nClipped;
    }

    /**
     * torch.maximum: {@code a} where a &gt; b or a is NaN, else {@code b} (so a NaN in b is kept too). NaN is
     * tested as {@code a != a}: the same mask as {@code test(IS_NAN)} at a quarter of its C2 graph.
     */
    static FloatVector maximum(final FloatVector a, final FloatVector b) {
        return b.blend(a, a.compare(VectorOperators.GT, b).or(a.compare(VectorOperators.NE, a)));
    }

    /** torch.minimum: {@code a} where a &lt; b or a is NaN, else {@code b}. */
    static FloatVector minimum(final FloatVector a, final FloatVector b) {
        return b.blend(a, a.compare(VectorOperators.LT, b).or(a.compare(VectorOperators.NE, a)));
    }

    /**
     * Loop 6 of a chunk: d pg_loss / d log_prob = [clamp passes] ((-A * coef) * ratio) [* w] * tokenWeight, +0.0f
     * where masked, with the reference's float operations. coef = dual share * (maximum share of pg1 +
     * [ratio inside the clip] * maximum share of pg2), torch splitting ties equally: every share is 0, 0.5 or 1
     * and their sum and product are exact, so coef is selected here directly from its possible values:
     * <pre>
     *   shares = 1    where pg1 &gt; pg2, or the ratio is inside the clip and pg2 &gt;= pg1
     *          = 0.5  where pg1 == pg2 and the ratio is outside the clip
     *          = 0    otherwise (pg2 &gt; pg1 outside the clip, or a NaN)
     *   dual   = 1 where A &gt;= 0 (or NaN) or clip1 &lt; pg3; 0.5 where clip1 == pg3; 0 otherwise
     * </pre>
     * "Inside the clip" is tested as neither above nor below it, which differs from the reference's
     * {@code ratio >= lower && ratio <= upper} only for a NaN ratio, where pg1 and pg2 are NaN and shares is 0
     * either way.
     */
    private static void gradientLoop(final Task t, final int from, final int to, final int scratchBase,
                                     final float tokenWeight) {
        final MemorySegment advSeg = t.advantages;
        final MemorySegment maskSeg = t.mask;
        final MemorySegment wSeg = t.weights;
        final MemorySegment gSeg = t.grad;
        final boolean hasW = wSeg != null;
        final float[] scratch = t.scratch;
        final int ratioRow = scratchBase + ROW_RATIO * CHUNK - from;
        final int passRow = scratchBase + ROW_PASS * CHUNK - from;
        final FloatVector lowerV = FloatVector.broadcast(Vec.F, t.lower);
        final FloatVector upperV = FloatVector.broadcast(Vec.F, t.upper);
        final float clipC = t.clipC;
        final FloatVector tokenWeightV = FloatVector.broadcast(Vec.F, tokenWeight);
        for (int i = from; i < to; i += Vec.FL) {
            final FloatVector a = load(advSeg, i);
            final FloatVector ratio = FloatVector.fromArray(Vec.F, scratch, ratioRow + i);
            final FloatVector negA = a.neg();
            final FloatVector pg1 = negA.mul(ratio);
            final VectorMask<Float> aboveUpper = ratio.compare(VectorOperators.GT, upperV);
            final VectorMask<Float> belowLower = ratio.compare(VectorOperators.LT, lowerV);
            final FloatVector pg2 = negA.mul(ratio.blend(upperV, aboveUpper).blend(lowerV, belowLower));
            final FloatVector clip1 = maximum(pg1, pg2);
            final FloatVector pg3 = negA.mul(clipC);
            final VectorMask<Float> inside = aboveUpper.or(belowLower).not();
            final FloatVector shares = ZERO.blend(HALF, pg1.compare(VectorOperators.EQ, pg2))
                .blend(ONE, pg1.compare(VectorOperators.GT, pg2)
                    .or(inside.and(pg2.compare(VectorOperators.GE, pg1))));
            final FloatVector dual = ZERO.blend(HALF, clip1.compare(VectorOperators.EQ, pg3))
                .blend(ONE, a.compare(VectorOperators.LT, 0f).not().or(clip1.compare(VectorOperators.LT, pg3)));
            final VectorMask<Float> pass = FloatVector.fromArray(Vec.F, scratch, passRow + i)
                .compare(VectorOperators.NE, 0f);
            FloatVector g = ZERO.blend(negA.mul(dual.mul(shares)).mul(ratio), pass);
            if (hasW) {
                g = g.mul(load(wSeg, i));
            }
            final VectorMask<Float> valid = load(maskSeg, i).compare(VectorOperators.NE, 0f);
            ZERO.blend(g.mul(tokenWeightV), valid).intoMemorySegment(gSeg, (long) i * Float.BYTES, Vec.LE);
        }
    }

    /**
     * The last tokens of a sequence, fewer than a vector: {@code VanillaPolicyLoss}'s arithmetic token by token,
     * added after the lane sums of piece {@code p} in token order.
     */
    private static void scalarTail(final Task t, final int from, final int end, final float tokenWeight,
                                   final int p) {
        final MemorySegment lpSeg = t.logProb;
        final MemorySegment oldSeg = t.oldLogProb;
        final MemorySegment advSeg = t.advantages;
        final MemorySegment maskSeg = t.mask;
        final MemorySegment wSeg = t.weights;
        final MemorySegment gSeg = t.grad;
        final boolean hasW = wSeg != null;
        final boolean hasG = gSeg != null;
        final float lower = t.lower;
        final float upper = t.upper;
        final float clipC = t.clipC;
        final double[] sums = t.pieceSums;
        final int[] counts = t.pieceCounts;
        final int s = p * SUMS;
        final int c = p * COUNTS;
        double sumLoss = sums[s + S_LOSS];
        double sumPos = sums[s + S_POS];
        double sumNeg = sums[s + S_NEG];
        double sumLogRatio = sums[s + S_LOG_RATIO];
        for (int i = from; i < end; i++) {
            if (get(maskSeg, i) == 0f) {
                if (hasG) {
                    set(gSeg, i, 0f);
                }
                continue;
            }
            final float a = get(advSeg, i);
            final float logRatio = get(lpSeg, i) - get(oldSeg, i);
            final float negativeApproxKl = TorchOps.clamp(logRatio, LOG_RATIO_MIN, LOG_RATIO_MAX);
            final float ratio = CanonicalMath.exp(negativeApproxKl);
            final float negA = -a;
            final float pg1 = negA * ratio;
            final float pg2 = negA * TorchOps.clamp(ratio, lower, upper);
            final float clip1 = TorchOps.maximum(pg1, pg2);
            final float pg3 = negA * clipC;
            final float clip2 = TorchOps.minimum(pg3, clip1);
            final boolean negative = a < 0f;
            float loss = negative ? clip2 : clip1;
            final float w = hasW ? get(wSeg, i) : 1f;
            if (hasW) {
                loss = loss * w;
            }
            if (hasG) {
                final float dual = negative ? TorchOps.minShare(clip1, pg3) : 1f;
                final float shares = TorchOps.maxShare(pg1, pg2)
                    + (TorchOps.clampPasses(ratio, lower, upper) ? TorchOps.maxShare(pg2, pg1) : 0f);
                final float coef = dual * shares;
                float g = TorchOps.clampPasses(logRatio, LOG_RATIO_MIN, LOG_RATIO_MAX) ? (negA * coef) * ratio : 0f;
                if (hasW) {
                    g = g * w;
                }
                set(gSeg, i, g * tokenWeight);
            }
            sumLoss += loss;
            if (a > 0f) {
                sumPos += loss;
                counts[c + C_POS]++;
                counts[c + C_POS_ABOVE] += ratio > 1f ? 1 : 0;
                counts[c + C_HIGH] += ratio > upper ? 1 : 0;
            } else if (negative) {
                sumNeg += loss;
                counts[c + C_NEG]++;
                counts[c + C_NEG_ABOVE] += ratio > 1f ? 1 : 0;
                counts[c + C_LOW] += ratio < lower ? 1 : 0;
                counts[c + C_DUAL] += clip1 > pg3 ? 1 : 0;
            }
            sumLogRatio += negativeApproxKl;
            counts[c + C_CLIPPED] += pg2 > pg1 ? 1 : 0;
        }
        sums[s + S_LOSS] = sumLoss;
        sums[s + S_POS] = sumPos;
        sums[s + S_NEG] = sumNeg;
        sums[s + S_LOG_RATIO] = sumLogRatio;
    }

    /**
     * The state of one call, reused across calls (held by the {@link Workspace}) so that running blocks allocates
     * nothing: a block body reads its inputs from here and writes only the slots of its own pieces.
     */
    static final class Task implements Blocks.Body {
        static final int COUNT = 0;
        static final int COMPUTE = 1;

        final SequencePieces plan;
        /** {@link #COUNT} (valid tokens per piece) or {@link #COMPUTE} (everything else). */
        int phase;
        /** The call's columns and output (null when absent), bound for one call and released after it. */
        MemorySegment logProb;
        MemorySegment oldLogProb;
        MemorySegment advantages;
        MemorySegment mask;
        MemorySegment weights;
        MemorySegment grad;
        /** 1 - clip_ratio_low, 1 + clip_ratio_high, clip_ratio_c, as float32. */
        float lower;
        float upper;
        float clipC;
        /** per piece: valid tokens (count phase). */
        int[] pieceCount = new int[0];
        /** per sequence: valid tokens and the token weight rounded to float. */
        long[] seqCount = new long[0];
        float[] seqWeight = new float[0];
        /** per piece: the {@link #SUMS} double partials and the {@link #COUNTS} counts. */
        double[] pieceSums = new double[0];
        int[] pieceCounts = new int[0];
        /** per block: lane accumulators of the piece in progress ({@link #ACC_SLOTS} doubles). */
        double[] acc = new double[0];
        /** per block: counts of the piece in progress. */
        int[] blockCounts = new int[0];
        /** per block: the {@link #SCRATCH_ROWS} rows of the chunk in progress. */
        float[] scratch = new float[0];

        Task(final SequencePieces plan) {
            this.plan = plan;
        }

        void bind(final LossSpec spec, final TokenBatch batch, final OffHeapArray gradOut) {
            logProb = batch.column(Column.LOG_PROB).segment();
            oldLogProb = batch.column(Column.OLD_LOG_PROB).segment();
            advantages = batch.column(Column.ADVANTAGES).segment();
            mask = batch.mask().segment();
            final OffHeapArray w = batch.column(Column.ROLLOUT_IS_WEIGHTS);
            weights = w != null ? w.segment() : null;
            grad = gradOut != null ? gradOut.segment() : null;
            // torch casts the Python scalars 1 - clip_ratio_low, 1 + clip_ratio_high, clip_ratio_c to float32.
            lower = (float) (1.0 - spec.clipRatioLow());
            upper = (float) (1.0 + spec.clipRatioHigh());
            clipC = (float) spec.clipRatioC();
            final int pieces = plan.numPieces;
            final int sequences = plan.numSequences;
            if (pieceCount.length < pieces) {
                final int n = Math.max(pieces, pieceCount.length * 2);
                pieceCount = new int[n];
                pieceSums = new double[n * SUMS];
                pieceCounts = new int[n * COUNTS];
            }
            final int blocks = plan.numBlocks;
            if (blockCounts.length < blocks * COUNTS) {
                final int n = Math.max(blocks, blockCounts.length / COUNTS * 2);
                acc = new double[n * ACC_SLOTS];
                blockCounts = new int[n * COUNTS];
                scratch = new float[n * CHUNK * SCRATCH_ROWS];
            }
            if (seqCount.length < sequences) {
                final int n = Math.max(sequences, seqCount.length * 2);
                seqCount = new long[n];
                seqWeight = new float[n];
            }
        }

        void unbind() {
            logProb = null;
            oldLogProb = null;
            advantages = null;
            mask = null;
            weights = null;
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
                    computePiece(this, p, block);
                }
            }
        }
    }
}
