package io.rlvec.engine;

import io.rlvec.CanonicalMath;
import io.rlvec.OffHeapArray;
import io.rlvec.TokenBatch;
import io.rlvec.reference.Advantages;
import io.rlvec.reference.RolloutCorrection;
import io.rlvec.reference.TorchOps;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import jdk.incubator.vector.DoubleVector;
import jdk.incubator.vector.FloatVector;
import jdk.incubator.vector.VectorMask;
import jdk.incubator.vector.VectorOperators;
import jdk.incubator.vector.VectorSpecies;

/**
 * The per-token passes of rollout correction ({@link RolloutCorrection.Kernels}) as Vector API loops over the off-heap
 * columns: the log-ratio, its clamp to [-20, 20], the canonical exp ({@link VectorMath#exp}, bit-identical to {@link
 * CanonicalMath#exp}), the k2/k3 statistics and the clamped squares, in the reference's float operations. The token
 * terms and the clamped squares run row by row in blocks of {@link #BLOCK} tokens ({@link #rowBlocks}): a block's
 * passes follow one another while its columns are in L1, and the terms that only enter row sums (lr, kk, rho2; v, c,
 * c2) live in a small block scratch and are summed from there, three sources at a time, in the canonical four-lane
 * order, never written out as columns. The other row sums are the advantage kernel's vector sums. The orchestration's
 * passes (valid flags and counts, IS weights, IS and rejection counts and extrema, the IcePop out-of-band count, the
 * batch-normalisation divide, the row rejection and the outputs) are exact lane-wise compares, blends, counts, max/min
 * and divides. An extremum that comes out as a zero or NaN is recomputed by the reference's scalar fold, which alone
 * fixes the sign of a tied zero (and which NaN, where the fold is torch's compare-based maximum/minimum; {@link
 * Math#max}'s NaN differs between the interpreter and C2 anyway). So every per-token term, sum, weight, mask and metric
 * is the reference's bits. One call runs on the calling thread: the results do not depend on the engine's thread count.
 */
final class RolloutKernel implements RolloutCorrection.Kernels, AutoCloseable {
    private static final VectorSpecies<Float> F = Vec.F;
    private static final int L = Vec.FL;
    private static final float BOUND = 20f;
    private static final ValueLayout.OfFloat F32 = ValueLayout.JAVA_FLOAT_UNALIGNED.withOrder(Vec.LE);

    private final Advantages.Kernels sums;

    /** Frees the block scratch; idempotent. */
    @Override
    public void close() {
        if (blkArena.scope().isAlive()) {
            blkArena.close();
        }
    }

    /** @param sums the engine's canonical row sums. */
    RolloutKernel(final Advantages.Kernels sums) {
        this.sums = sums;
    }

    /**
     * The advantage kernel's canonical row sums, through the pass call site like every other loop (inlined into
     * the correction's large callers they boxed their vectors once C2's inlining budget ran out there).
     */
    @Override
    public void maskedRowSums(final TokenBatch batch, final OffHeapArray x, final double[] out) {
        sumBatch = batch;
        sumX = x;
        rowSumsOut = out;
        try {
            run(ROW_SUMS, this, 0);
        } finally {
            sumBatch = null;
            sumX = null;
            rowSumsOut = null;
        }
    }

    /**
     * torch's clamp, lane-wise, {@code min(max(x, lo), hi)} as {@code TorchOps.clamp}: NaN stays NaN, -0 stays -0,
     * and with lo &gt; hi every lane becomes hi (the upper test reads the lower one's result).
     */
    private static FloatVector clamp(final FloatVector x, final FloatVector lo, final FloatVector hi) {
        final FloatVector atLeast = x.blend(lo, x.compare(VectorOperators.LT, lo));
        return atLeast.blend(hi, atLeast.compare(VectorOperators.GT, hi));
    }

    private static final FloatVector LOW_BOUND = FloatVector.broadcast(F, -BOUND);
    private static final FloatVector HIGH_BOUND = FloatVector.broadcast(F, BOUND);

    private static float clamp(final float x, final float lo, final float hi) {
        return TorchOps.clamp(x, lo, hi);
    }

    /**
     * One vector loop of the call in progress (over [0, upper), or the block [from, upper)), reading and writing the
     * segments bound in the kernel's fields. Every loop is called through {@link #run}, one call site with twenty-one
     * receiver classes that C2 never inlines: each loop is its own compilation unit. Inlined together into a large
     * caller (the bypass loss) the loops exceeded C2's inlining budget and boxed every vector (measured: 16 bytes per
     * token).
     */
    private abstract static class Pass {
        /**
         * @param upper the vector bound of a block loop whose caller runs the scalar tail; the number of tokens for
         *              the whole-column passes that run their tails themselves; unused by row passes.
         */
        abstract void run(RolloutKernel k, int upper);
    }

    /**
     * Runs pass number {@code pass} of {@link #PASSES}. The pass is read from an array: C2 does not fold an array
     * element into a constant, so it cannot tell which pass runs even after inlining this method into its caller.
     * With a static final pass as the argument it could, and did: the row sums were inlined into the correction's
     * large callers and boxed every vector (15 KB per call on an (8, 63) batch once a few hundred differently
     * configured calls had run on one engine).
     */
    private static void run(final int pass, final RolloutKernel k, final int upper) {
        PASSES[pass].run(k, upper);
    }

    // ---- The row-wise passes: per-token terms computed block by block, with their canonical row sums. ----

    /**
     * Tokens per block of a row: the passes of a block run one after another over it, so each reads what the one
     * before it wrote from L1 (a block's columns and scratch slots: about 24 KB), and the terms that only enter
     * row sums are summed there, from the block scratch, instead of being written out and read back as full
     * columns. A multiple of 4 (the canonical sums' lanes) and of every vector length.
     */
    private static final int BLOCK = 512;
    /** The canonical sums' species: four floats widened to four doubles (as {@link AdvantageKernel}'s sums). */
    private static final VectorSpecies<Float> F4 = FloatVector.SPECIES_128;
    private static final VectorSpecies<Double> D4 = DoubleVector.SPECIES_256;
    private static final FloatVector ZERO_F4 = FloatVector.zero(F4);
    private static final long SLOT_BYTES = (long) BLOCK * Float.BYTES;
    /** Block scratch slots: lr, kk, rho2 (token terms) or v, c, c2 (clamped sums). */
    private static final int SLOTS = 3;
    /** Most row sums one row-wise pass takes: lr, kk, rho2, old and roll, and a spare (sums go three at a time). */
    private static final int MAX_SOURCES = 6;
    /** Owns the block scratch; closed with the engine ({@link #close}). */
    private final Arena blkArena = Arena.ofShared();
    private final MemorySegment blk = blkArena.allocate(SLOTS * SLOT_BYTES, 64);
    /** The four canonical lanes of each source's sum of the row in progress. */
    private final double[] rowLanes = new double[4 * MAX_SOURCES];
    /** The summed sources: source j's value of token t is at byte {@code 4 t - sumShift[j]} of sumSrc[j]. */
    private final MemorySegment[] sumSrc = new MemorySegment[MAX_SOURCES];
    private final long[] sumShift = new long[MAX_SOURCES];
    private final double[][] sumOut = new double[MAX_SOURCES][];
    private int sources;
    /** The block in progress: tokens [from, to) of one row. */
    private int from;
    private int to;

    /** The call's segments, bound for one call (null otherwise). */
    private MemorySegment os;
    private MemorySegment rs;
    private MemorySegment lrsOut;
    private MemorySegment rhoOut;
    private MemorySegment k2Out;
    private MemorySegment k3Out;
    private MemorySegment xs;
    private float sign;
    private float lo;
    private float hi;
    private TokenBatch sumBatch;
    private OffHeapArray sumX;
    private double[] rowSumsOut;

    /** @return the byte shift of block slot {@code slot} for the block at {@code from}. */
    private static long slotShift(final int from, final int slot) {
        return (long) from * Float.BYTES - slot * SLOT_BYTES;
    }

    /** lr = old - rollout (slot 0), lrs = clamp(lr, -20, 20). */
    private static final Pass LOG_RATIO_PASS = new Pass() {
        @Override
        void run(final RolloutKernel k, final int upper) {
            final MemorySegment blk = k.blk;
            final MemorySegment lrsOut = k.lrsOut;
            final MemorySegment os = k.os;
            final MemorySegment rs = k.rs;
            final long lrShift = slotShift(k.from, 0);
            for (int u = k.from; u < upper; u += L) {
                final long at = (long) u * Float.BYTES;
                final FloatVector lr = FloatVector.fromMemorySegment(F, os, at, Vec.LE)
                    .sub(FloatVector.fromMemorySegment(F, rs, at, Vec.LE));
                lr.intoMemorySegment(blk, at - lrShift, Vec.LE);
                clamp(lr, LOW_BOUND, HIGH_BOUND).intoMemorySegment(lrsOut, at, Vec.LE);
            }
        }
    };

    /** rho = exp(lrs). */
    private static final Pass EXP_RHO_PASS = new Pass() {
        @Override
        void run(final RolloutKernel k, final int upper) {
            exp(k.lrsOut, 0, k.rhoOut, 0, k.from, upper);
        }
    };

    /** kk = exp(lr) (slot 1; completed to exp(lr) - lr - 1 by {@link #TERMS}). */
    private static final Pass EXP_KK_PASS = new Pass() {
        @Override
        void run(final RolloutKernel k, final int upper) {
            exp(k.blk, slotShift(k.from, 0), k.blk, slotShift(k.from, 1), k.from, upper);
        }
    };

    /** rho2 = rho^2 (slot 2), kk = (exp(lr) - lr) - 1 (slot 1). */
    private static final Pass TERMS_PASS = new Pass() {
        @Override
        void run(final RolloutKernel k, final int upper) {
            final MemorySegment blk = k.blk;
            final MemorySegment rhoOut = k.rhoOut;
            final long lrShift = slotShift(k.from, 0);
            final long kkShift = slotShift(k.from, 1);
            final long rho2Shift = slotShift(k.from, 2);
            for (int u = k.from; u < upper; u += L) {
                final long at = (long) u * Float.BYTES;
                final FloatVector lr = FloatVector.fromMemorySegment(F, blk, at - lrShift, Vec.LE);
                final FloatVector rho = FloatVector.fromMemorySegment(F, rhoOut, at, Vec.LE);
                rho.mul(rho).intoMemorySegment(blk, at - rho2Shift, Vec.LE);
                FloatVector.fromMemorySegment(F, blk, at - kkShift, Vec.LE).sub(lr).sub(1f)
                    .intoMemorySegment(blk, at - kkShift, Vec.LE);
            }
        }
    };

    /** v = sign * x (slot 0), c = clamp(v, lo, hi) (slot 1), c2 = c * c (slot 2). */
    private static final Pass SIGN_CLAMP_PASS = new Pass() {
        @Override
        void run(final RolloutKernel k, final int upper) {
            final MemorySegment blk = k.blk;
            final MemorySegment xs = k.xs;
            final FloatVector signs = FloatVector.broadcast(F, k.sign);
            final FloatVector los = FloatVector.broadcast(F, k.lo);
            final FloatVector his = FloatVector.broadcast(F, k.hi);
            final long vShift = slotShift(k.from, 0);
            final long cShift = slotShift(k.from, 1);
            final long c2Shift = slotShift(k.from, 2);
            for (int u = k.from; u < upper; u += L) {
                final long at = (long) u * Float.BYTES;
                final FloatVector v = FloatVector.fromMemorySegment(F, xs, at, Vec.LE).mul(signs);
                final FloatVector c = clamp(v, los, his);
                v.intoMemorySegment(blk, at - vShift, Vec.LE);
                c.intoMemorySegment(blk, at - cShift, Vec.LE);
                c.mul(c).intoMemorySegment(blk, at - c2Shift, Vec.LE);
            }
        }
    };

    /**
     * Adds the block's tokens to each source's four canonical lanes: three sources at a time (three independent
     * chains of additions), four tokens a step, then the row's last partial step (only a row's last block ends off the
     * four-token grid: a block starts a multiple of 4 tokens after its row's start, so token u goes to lane
     * {@code (u - from) & 3}, the canonical {@code (u - start) & 3}).
     */
    private static final Pass SUMS_PASS = new Pass() {
        @Override
        void run(final RolloutKernel k, final int upper) {
            final int from = k.from;
            final int to = k.to;
            final int steps = from + ((to - from) & ~3);
            final MemorySegment ms = k.maskS;
            for (int j = 0; j < k.sources; j += 3) {
                sumThree(k, j, ms, from, steps);
            }
            for (int u = steps; u < to; u++) {
                if (ms.getAtIndex(F32, u) != 0f) {
                    for (int s = 0; s < k.sources; s++) {
                        k.rowLanes[4 * s + ((u - from) & 3)] +=
                            k.sumSrc[s].get(F32, (long) u * Float.BYTES - k.sumShift[s]);
                    }
                }
            }
        }
    };

    /**
     * Sources j, j + 1 and j + 2 over the block's four-token steps: three independent chains of additions, which
     * hide one another's latency (the token terms' five sources take a sixth, old again, summed into spare lanes
     * that nothing reads). The masked widening step is {@code AdvantageKernel.moment}'s, written out here: one
     * helper shared by both loops was left out of line in some compilations, and its {@code convertShape} then
     * ran the JDK's Java fallback and allocated (kl_cov, 384 B per call in the hot-call test).
     */
    private static void sumThree(final RolloutKernel k, final int j, final MemorySegment ms, final int from,
                                 final int steps) {
        final MemorySegment s0 = k.sumSrc[j];
        final MemorySegment s1 = k.sumSrc[j + 1];
        final MemorySegment s2 = k.sumSrc[j + 2];
        final long h0 = k.sumShift[j];
        final long h1 = k.sumShift[j + 1];
        final long h2 = k.sumShift[j + 2];
        final double[] lanes = k.rowLanes;
        DoubleVector a0 = DoubleVector.fromArray(D4, lanes, 4 * j);
        DoubleVector a1 = DoubleVector.fromArray(D4, lanes, 4 * j + 4);
        DoubleVector a2 = DoubleVector.fromArray(D4, lanes, 4 * j + 8);
        for (int t = from; t < steps; t += 4) {
            final long at = (long) t * Float.BYTES;
            final VectorMask<Float> masked = FloatVector.fromMemorySegment(F4, ms, at, Vec.LE)
                .compare(VectorOperators.EQ, ZERO_F4);
            a0 = AdvantageKernel.plus(a0, (DoubleVector) FloatVector.fromMemorySegment(F4, s0, at - h0, Vec.LE)
                .blend(ZERO_F4, masked).convertShape(VectorOperators.F2D, D4, 0));
            a1 = AdvantageKernel.plus(a1, (DoubleVector) FloatVector.fromMemorySegment(F4, s1, at - h1, Vec.LE)
                .blend(ZERO_F4, masked).convertShape(VectorOperators.F2D, D4, 0));
            a2 = AdvantageKernel.plus(a2, (DoubleVector) FloatVector.fromMemorySegment(F4, s2, at - h2, Vec.LE)
                .blend(ZERO_F4, masked).convertShape(VectorOperators.F2D, D4, 0));
        }
        a0.intoArray(lanes, 4 * j);
        a1.intoArray(lanes, 4 * j + 4);
        a2.intoArray(lanes, 4 * j + 8);
    }

    /**
     * The row-wise skeleton: every row's tokens in blocks of {@link #BLOCK}, each block's passes ({@code terms}:
     * the token terms, otherwise the clamped squares) then its sums; each source's row sum is the combination of
     * its four lanes ({@link Advantages#combine}), as in the canonical row sums.
     */
    private void rowBlocks(final TokenBatch batch, final boolean terms) {
        maskS = batch.mask().segment();
        for (int j = 0; j < SLOTS; j++) {
            sumSrc[j] = blk;
        }
        for (int i = 0; i < batch.numSequences(); i++) {
            final int end = batch.offset(i + 1);
            java.util.Arrays.fill(rowLanes, 0, 4 * sources, 0.0);
            for (from = batch.offset(i); from < end; from = to) {
                to = Math.min(from + BLOCK, end);
                final int upper = to - (to - from) % L;
                for (int j = 0; j < SLOTS; j++) {
                    sumShift[j] = slotShift(from, j);
                }
                if (terms) {
                    run(LOG_RATIO, this, upper);
                    run(EXP_RHO, this, upper);
                    run(EXP_KK, this, upper);
                    run(TERMS, this, upper);
                    termsTail(upper);
                } else {
                    run(SIGN_CLAMP, this, upper);
                    clampTail(upper);
                }
                run(SUMS, this, 0);
            }
            for (int j = 0; j < sources; j++) {
                sumOut[j][i] = Advantages.combine(rowLanes[4 * j], rowLanes[4 * j + 1], rowLanes[4 * j + 2],
                    rowLanes[4 * j + 3]);
            }
        }
    }

    /** The block's tokens [t0, to) past its vectors: the token terms in the reference's scalar operations. */
    private void termsTail(final int t0) {
        for (int t = t0; t < to; t++) {
            final float lr = os.getAtIndex(F32, t) - rs.getAtIndex(F32, t);
            final float lrs = clamp(lr, -BOUND, BOUND);
            final float rho = CanonicalMath.exp(lrs);
            final long bt = (long) (t - from) * Float.BYTES;
            blk.set(F32, bt, lr);
            lrsOut.setAtIndex(F32, t, lrs);
            rhoOut.setAtIndex(F32, t, rho);
            blk.set(F32, SLOT_BYTES + bt, (CanonicalMath.exp(lr) - lr) - 1f);
            blk.set(F32, 2 * SLOT_BYTES + bt, rho * rho);
        }
    }

    /** The block's tokens [t0, to) past its vectors: v, c and c2 in scalar operations. */
    private void clampTail(final int t0) {
        for (int t = t0; t < to; t++) {
            final float v = sign * xs.getAtIndex(F32, t);
            final float c = clamp(v, lo, hi);
            final long bt = (long) (t - from) * Float.BYTES;
            blk.set(F32, bt, v);
            blk.set(F32, SLOT_BYTES + bt, c);
            blk.set(F32, 2 * SLOT_BYTES + bt, c * c);
        }
    }

    private void unbind() {
        os = null;
        rs = null;
        lrsOut = null;
        rhoOut = null;
        k2Out = null;
        k3Out = null;
        xs = null;
        maskS = null;
        for (int j = 0; j < MAX_SOURCES; j++) {
            sumSrc[j] = null;
            sumOut[j] = null;
        }
    }

    @Override
    public void tokenTerms(final TokenBatch batch, final OffHeapArray old, final OffHeapArray roll,
                           final RolloutCorrection.Scratch s) {
        os = old.segment();
        rs = roll.segment();
        lrsOut = s.lrs.segment();
        rhoOut = s.rho.segment();
        sources = 5;
        sumSrc[3] = os;
        sumSrc[4] = rs;
        sumSrc[5] = os;
        sumShift[3] = 0;
        sumShift[4] = 0;
        sumShift[5] = 0;
        sumOut[0] = s.lrSum;
        sumOut[1] = s.kkSum;
        sumOut[2] = s.rho2Sum;
        sumOut[3] = s.oldSum;
        sumOut[4] = s.rollSum;
        try {
            rowBlocks(batch, true);
        } finally {
            unbind();
        }
    }

    @Override
    public void clampedSums(final TokenBatch batch, final OffHeapArray x, final float sign, final float lo,
                            final float hi, final RolloutCorrection.Scratch s) {
        xs = x.segment();
        this.sign = sign;
        this.lo = lo;
        this.hi = hi;
        sources = 3;
        sumOut[0] = s.vSum;
        sumOut[1] = s.cSum;
        sumOut[2] = s.c2Sum;
        try {
            rowBlocks(batch, false);
        } finally {
            unbind();
        }
    }

    /** out = exp(in) over tokens [from, upper) (byte 4 t - shift of each segment), the canonical exp only. */
    private static void exp(final MemorySegment in, final long inShift, final MemorySegment out, final long outShift,
                            final int from, final int upper) {
        for (int u = from; u < upper; u += L) {
            final long at = (long) u * Float.BYTES;
            VectorMath.exp(FloatVector.fromMemorySegment(F, in, at - inShift, Vec.LE))
                .intoMemorySegment(out, at - outShift, Vec.LE);
        }
    }

    /** k2 = 0.5 lrs^2, k3 = (rho - 1) - lrs over [0, n). */
    private static final Pass K_TERMS_PASS = new Pass() {
        @Override
        void run(final RolloutKernel k, final int n) {
            final MemorySegment k2Out = k.k2Out;
            final MemorySegment k3Out = k.k3Out;
            final MemorySegment lrsOut = k.lrsOut;
            final MemorySegment rhoOut = k.rhoOut;
            final int upper = n - n % L;
            for (int u = 0; u < upper; u += L) {
                final long at = (long) u * Float.BYTES;
                final FloatVector lrs = FloatVector.fromMemorySegment(F, lrsOut, at, Vec.LE);
                final FloatVector rho = FloatVector.fromMemorySegment(F, rhoOut, at, Vec.LE);
                lrs.mul(lrs).mul(0.5f).intoMemorySegment(k2Out, at, Vec.LE);
                rho.sub(1f).sub(lrs).intoMemorySegment(k3Out, at, Vec.LE);
            }
            for (int t = upper; t < n; t++) {
                final float lrs = lrsOut.getAtIndex(F32, t);
                final float rho = rhoOut.getAtIndex(F32, t);
                k2Out.setAtIndex(F32, t, 0.5f * (lrs * lrs));
                k3Out.setAtIndex(F32, t, (rho - 1f) - lrs);
            }
        }
    };

    @Override
    public void kTerms(final int n, final RolloutCorrection.Scratch s) {
        lrsOut = s.lrs.segment();
        rhoOut = s.rho.segment();
        k2Out = s.k2.segment();
        k3Out = s.k3.segment();
        try {
            run(K_TERMS, this, n);
        } finally {
            unbind();
        }
    }

    /** The row sums of the bound batch and column (the pass ignores upper). */
    private static final Pass ROW_SUMS_PASS = new Pass() {
        @Override
        void run(final RolloutKernel k, final int upper) {
            k.sums.maskedRowSums(k.sumBatch, k.sumX, k.rowSumsOut);
        }
    };

    // ---- The orchestration's passes: flags, IS weights, counts, extrema, the rejection and the outputs. ----

    private static final FloatVector ZERO = FloatVector.zero(F);
    private static final FloatVector ONE = FloatVector.broadcast(F, 1f);
    private static final FloatVector NEG_INF = FloatVector.broadcast(F, Float.NEGATIVE_INFINITY);
    private static final FloatVector POS_INF = FloatVector.broadcast(F, Float.POSITIVE_INFINITY);

    /** The batch, segments, parameters and results of the orchestration pass in progress. */
    private TokenBatch batch;
    private MemorySegment maskS;
    private MemorySegment validS;
    private MemorySegment srcS;
    private MemorySegment rawS;
    private MemorySegment wS;
    private MemorySegment keepS;
    private MemorySegment keepAllS;
    private MemorySegment outS;
    private float[] rowValues;
    private double[] rowOut;
    private float value;
    private long above;
    private long below;
    private float max;
    private float min;
    private int rows;

    private void unbindRows() {
        batch = null;
        maskS = null;
        validS = null;
        srcS = null;
        rawS = null;
        wS = null;
        keepS = null;
        keepAllS = null;
        outS = null;
        xs = null;
        rowValues = null;
        rowOut = null;
    }

    private static FloatVector load(final MemorySegment s, final long at) {
        return FloatVector.fromMemorySegment(F, s, at, Vec.LE);
    }

    /** valid = mask != 0 (NaN is valid) as 1/0, rowOut = valid tokens per row. */
    private static final Pass VALID_COUNTS_PASS = new Pass() {
        @Override
        void run(final RolloutKernel k, final int upper) {
            final MemorySegment maskS = k.maskS;
            final MemorySegment validS = k.validS;
            final TokenBatch b = k.batch;
            final MemorySegment ms = maskS;
            final MemorySegment vs = validS;
            for (int i = 0; i < b.numSequences(); i++) {
                final int end = b.offset(i + 1);
                int t = b.offset(i);
                long c = 0;
                for (; t <= end - L; t += L) {
                    final long at = (long) t * Float.BYTES;
                    final VectorMask<Float> v = load(ms, at).compare(VectorOperators.EQ, 0f).not();
                    ZERO.blend(ONE, v).intoMemorySegment(vs, at, Vec.LE);
                    c += v.trueCount();
                }
                for (; t < end; t++) {
                    final boolean v = ms.getAtIndex(F32, t) != 0f;
                    vs.setAtIndex(F32, t, v ? 1f : 0f);
                    c += v ? 1 : 0;
                }
                k.rowOut[i] = c;
            }
        }
    };

    /** raw = valid ? src : 0, w = raw > hi ? hi : raw (TIS). */
    private static final Pass IS_TIS_PASS = new Pass() {
        @Override
        void run(final RolloutKernel k, final int n) {
            final MemorySegment rawS = k.rawS;
            final MemorySegment srcS = k.srcS;
            final MemorySegment validS = k.validS;
            final MemorySegment wS = k.wS;
            final float hi = k.hi;
            final FloatVector his = FloatVector.broadcast(F, hi);
            final int upper = n - n % L;
            for (int u = 0; u < upper; u += L) {
                final long at = (long) u * Float.BYTES;
                final FloatVector raw = rawWeights(srcS, validS, rawS, at);
                raw.blend(his, raw.compare(VectorOperators.GT, his)).intoMemorySegment(wS, at, Vec.LE);
            }
            for (int t = upper; t < n; t++) {
                final float raw = validS.getAtIndex(F32, t) != 0f ? srcS.getAtIndex(F32, t) : 0f;
                rawS.setAtIndex(F32, t, raw);
                wS.setAtIndex(F32, t, raw > hi ? hi : raw);
            }
        }
    };

    /** raw = valid ? src : 0, w = lo <= raw <= hi ? raw : 0 (IcePop). */
    private static final Pass IS_ICE_POP_PASS = new Pass() {
        @Override
        void run(final RolloutKernel k, final int n) {
            final MemorySegment rawS = k.rawS;
            final MemorySegment srcS = k.srcS;
            final MemorySegment validS = k.validS;
            final MemorySegment wS = k.wS;
            final float lo = k.lo;
            final float hi = k.hi;
            final FloatVector los = FloatVector.broadcast(F, lo);
            final FloatVector his = FloatVector.broadcast(F, hi);
            final int upper = n - n % L;
            for (int u = 0; u < upper; u += L) {
                final long at = (long) u * Float.BYTES;
                final FloatVector raw = rawWeights(srcS, validS, rawS, at);
                ZERO.blend(raw, raw.compare(VectorOperators.GE, los).and(raw.compare(VectorOperators.LE, his)))
                    .intoMemorySegment(wS, at, Vec.LE);
            }
            for (int t = upper; t < n; t++) {
                final float raw = validS.getAtIndex(F32, t) != 0f ? srcS.getAtIndex(F32, t) : 0f;
                rawS.setAtIndex(F32, t, raw);
                wS.setAtIndex(F32, t, raw >= lo && raw <= hi ? raw : 0f);
            }
        }
    };

    /** raw = valid ? src : 0 at byte offset {@code at}, stored and returned. */
    private static FloatVector rawWeights(final MemorySegment srcS, final MemorySegment validS,
                                          final MemorySegment rawS, final long at) {
        final FloatVector raw = ZERO.blend(load(srcS, at), load(validS, at).compare(VectorOperators.NE, 0f));
        raw.intoMemorySegment(rawS, at, Vec.LE);
        return raw;
    }

    /**
     * Over the valid tokens: above = #(raw > hi), below = #(raw < lo), max/min of w. Lane-wise max/min give the
     * fold's value whenever it is neither a zero nor NaN (a unique bit pattern); then the scalar fold in token
     * order settles the sign of a zero and the NaN's payload, as {@code TorchOps} does. The accumulators start from
     * a local broadcast: a static final vector as the loop's entry value boxed every iteration (measured: 6 KB per
     * call on 384 tokens).
     */
    private static final Pass IS_METRICS_PASS = new Pass() {
        @Override
        void run(final RolloutKernel k, final int n) {
            final MemorySegment rawS = k.rawS;
            final MemorySegment validS = k.validS;
            final MemorySegment wS = k.wS;
            final FloatVector his = FloatVector.broadcast(F, k.hi);
            final FloatVector los = FloatVector.broadcast(F, k.lo);
            final int upper = n - n % L;
            long high = 0;
            long low = 0;
            FloatVector mx = FloatVector.broadcast(F, Float.NEGATIVE_INFINITY);
            FloatVector mn = FloatVector.broadcast(F, Float.POSITIVE_INFINITY);
            for (int u = 0; u < upper; u += L) {
                final long at = (long) u * Float.BYTES;
                final VectorMask<Float> v = load(validS, at).compare(VectorOperators.NE, 0f);
                final FloatVector r = load(rawS, at);
                final FloatVector w = load(wS, at);
                high += r.compare(VectorOperators.GT, his).and(v).trueCount();
                low += r.compare(VectorOperators.LT, los).and(v).trueCount();
                mx = mx.max(NEG_INF.blend(w, v));
                mn = mn.min(POS_INF.blend(w, v));
            }
            float max = mx.reduceLanes(VectorOperators.MAX);
            float min = mn.reduceLanes(VectorOperators.MIN);
            for (int t = upper; t < n; t++) {
                if (validS.getAtIndex(F32, t) != 0f) {
                    final float r = rawS.getAtIndex(F32, t);
                    final float w = wS.getAtIndex(F32, t);
                    high += r > k.hi ? 1 : 0;
                    low += r < k.lo ? 1 : 0;
                    max = Math.max(max, w);
                    min = Math.min(min, w);
                }
            }
            if (max == 0f || max != max || min == 0f || min != min) {
                max = Float.NEGATIVE_INFINITY;
                min = Float.POSITIVE_INFINITY;
                for (int t = 0; t < n; t++) {
                    if (validS.getAtIndex(F32, t) != 0f) {
                        final float w = wS.getAtIndex(F32, t);
                        max = (max > w || max != max) ? max : w;
                        min = (min < w || min != min) ? min : w;
                    }
                }
            }
            k.above = high;
            k.below = low;
            k.max = max;
            k.min = min;
        }
    };

    /** above = #valid with x < lo or x > hi. */
    private static final Pass OUTSIDE_PASS = new Pass() {
        @Override
        void run(final RolloutKernel k, final int n) {
            final MemorySegment validS = k.validS;
            final MemorySegment xs = k.xs;
            final FloatVector los = FloatVector.broadcast(F, k.lo);
            final FloatVector his = FloatVector.broadcast(F, k.hi);
            final int upper = n - n % L;
            long c = 0;
            for (int u = 0; u < upper; u += L) {
                final long at = (long) u * Float.BYTES;
                final FloatVector x = load(xs, at);
                c += x.compare(VectorOperators.LT, los).or(x.compare(VectorOperators.GT, his))
                    .and(load(validS, at).compare(VectorOperators.NE, 0f)).trueCount();
            }
            for (int t = upper; t < n; t++) {
                final float x = xs.getAtIndex(F32, t);
                c += validS.getAtIndex(F32, t) != 0f && (x < k.lo || x > k.hi) ? 1 : 0;
            }
            k.above = c;
        }
    };

    /** x = x / value. */
    private static final Pass DIVIDE_PASS = new Pass() {
        @Override
        void run(final RolloutKernel k, final int n) {
            final MemorySegment xs = k.xs;
            final float d = k.value;
            final FloatVector ds = FloatVector.broadcast(F, d);
            final int upper = n - n % L;
            for (int u = 0; u < upper; u += L) {
                final long at = (long) u * Float.BYTES;
                load(xs, at).div(ds).intoMemorySegment(xs, at, Vec.LE);
            }
            for (int t = upper; t < n; t++) {
                xs.setAtIndex(F32, t, xs.getAtIndex(F32, t) / d);
            }
        }
    };

    /**
     * keep = lo <= x <= hi; over the valid tokens above = #(x > hi), below = #(x < lo) and {@link Math#max}/{@link
     * Math#min} of x (a zero or NaN extremum is settled by the scalar fold, as in {@link #IS_METRICS_PASS}). A
     * one-sided test runs with lo = -inf: {@code x <= hi} implies {@code x >= -inf}, and nothing is below -inf, so no
     * branch selects between vectors (a vector chosen by a branch, a phi, is boxed).
     */
    private static final Pass KEEP_PASS = new Pass() {
        @Override
        void run(final RolloutKernel k, final int n) {
            final MemorySegment keepS = k.keepS;
            final MemorySegment validS = k.validS;
            final MemorySegment xs = k.xs;
            final float lo = k.lo;
            final float hi = k.hi;
            final float sign = k.sign;
            final FloatVector signs = FloatVector.broadcast(F, sign);
            final FloatVector los = FloatVector.broadcast(F, lo);
            final FloatVector his = FloatVector.broadcast(F, hi);
            final int upper = n - n % L;
            long high = 0;
            long low = 0;
            FloatVector mx = FloatVector.broadcast(F, Float.NEGATIVE_INFINITY);
            FloatVector mn = FloatVector.broadcast(F, Float.POSITIVE_INFINITY);
            for (int u = 0; u < upper; u += L) {
                final long at = (long) u * Float.BYTES;
                final VectorMask<Float> v = load(validS, at).compare(VectorOperators.NE, 0f);
                final FloatVector x = load(xs, at).lanewise(VectorOperators.MUL, signs);
                ZERO.blend(ONE, x.compare(VectorOperators.LE, his).and(x.compare(VectorOperators.GE, los)))
                    .intoMemorySegment(keepS, at, Vec.LE);
                high += x.compare(VectorOperators.GT, his).and(v).trueCount();
                low += x.compare(VectorOperators.LT, los).and(v).trueCount();
                mx = mx.max(NEG_INF.blend(x, v));
                mn = mn.min(POS_INF.blend(x, v));
            }
            float max = mx.reduceLanes(VectorOperators.MAX);
            float min = mn.reduceLanes(VectorOperators.MIN);
            for (int t = upper; t < n; t++) {
                final float x = sign * xs.getAtIndex(F32, t);
                keepS.setAtIndex(F32, t, x >= lo && x <= hi ? 1f : 0f);
                if (validS.getAtIndex(F32, t) != 0f) {
                    max = Math.max(max, x);
                    min = Math.min(min, x);
                    high += x > hi ? 1 : 0;
                    low += x < lo ? 1 : 0;
                }
            }
            if (max == 0f || max != max || min == 0f || min != min) {
                double dmax = Double.NEGATIVE_INFINITY;
                double dmin = Double.POSITIVE_INFINITY;
                for (int t = 0; t < n; t++) {
                    if (validS.getAtIndex(F32, t) != 0f) {
                        dmax = Math.max(dmax, sign * xs.getAtIndex(F32, t));
                        dmin = Math.min(dmin, sign * xs.getAtIndex(F32, t));
                    }
                }
                max = (float) dmax;
                min = (float) dmin;
            }
            k.above = high;
            k.below = low;
            k.max = max;
            k.min = min;
        }
    };

    /** rowOut[i] = the Math.max fold of x over row i's valid tokens (mask != 0), -inf for an empty row. */
    private static final Pass ROW_MAX_PASS = new Pass() {
        @Override
        void run(final RolloutKernel k, final int upper) {
            final MemorySegment maskS = k.maskS;
            final MemorySegment xs = k.xs;
            final TokenBatch b = k.batch;
            final float sign = k.sign;
            final FloatVector signs = FloatVector.broadcast(F, sign);
            for (int i = 0; i < b.numSequences(); i++) {
                final int start = b.offset(i);
                final int end = b.offset(i + 1);
                int t = start;
                FloatVector mx = FloatVector.broadcast(F, Float.NEGATIVE_INFINITY);
                for (; t <= end - L; t += L) {
                    final long at = (long) t * Float.BYTES;
                    final VectorMask<Float> v = load(maskS, at).compare(VectorOperators.EQ, 0f).not();
                    mx = mx.max(NEG_INF.blend(load(xs, at).lanewise(VectorOperators.MUL, signs), v));
                }
                double acc = mx.reduceLanes(VectorOperators.MAX);
                for (; t < end; t++) {
                    if (maskS.getAtIndex(F32, t) != 0f) {
                        acc = Math.max(acc, sign * xs.getAtIndex(F32, t));
                    }
                }
                if (acc == 0 || acc != acc) {
                    acc = Double.NEGATIVE_INFINITY;
                    for (t = start; t < end; t++) {
                        if (maskS.getAtIndex(F32, t) != 0f) {
                            acc = Math.max(acc, sign * xs.getAtIndex(F32, t));
                        }
                    }
                }
                k.rowOut[i] = acc;
            }
        }
    };

    /** outS[t] = rowValues[i] over row i. */
    private static final Pass BROADCAST_PASS = new Pass() {
        @Override
        void run(final RolloutKernel k, final int upper) {
            final MemorySegment outS = k.outS;
            final TokenBatch b = k.batch;
            for (int i = 0; i < b.numSequences(); i++) {
                final int end = b.offset(i + 1);
                final float x = k.rowValues[i];
                final FloatVector xv = FloatVector.broadcast(F, x);
                int t = b.offset(i);
                for (; t <= end - L; t += L) {
                    xv.intoMemorySegment(outS, (long) t * Float.BYTES, Vec.LE);
                }
                for (; t < end; t++) {
                    outS.setAtIndex(F32, t, x);
                }
            }
        }
    };

    /** The rejected valid tokens (keep == 0) and rows holding one. */
    private static final Pass REJECT_PASS = new Pass() {
        @Override
        void run(final RolloutKernel k, final int upper) {
            reject(k, false);
        }
    };

    /** As {@link #REJECT_PASS}, and keepAll = keep == 0 ? 0 : keepAll. */
    private static final Pass REJECT_AND_PASS = new Pass() {
        @Override
        void run(final RolloutKernel k, final int upper) {
            reject(k, true);
        }
    };

    private static void reject(final RolloutKernel k, final boolean and) {
        final MemorySegment keepAllS = k.keepAllS;
        final MemorySegment keepS = k.keepS;
        final MemorySegment validS = k.validS;
        final TokenBatch b = k.batch;
        long rejected = 0;
        int rows = 0;
        for (int i = 0; i < b.numSequences(); i++) {
            final int end = b.offset(i + 1);
            int t = b.offset(i);
            long c = 0;
            for (; t <= end - L; t += L) {
                final long at = (long) t * Float.BYTES;
                final VectorMask<Float> dropped = load(keepS, at).compare(VectorOperators.EQ, 0f);
                c += dropped.and(load(validS, at).compare(VectorOperators.NE, 0f)).trueCount();
                if (and) {
                    load(keepAllS, at).blend(ZERO, dropped).intoMemorySegment(keepAllS, at, Vec.LE);
                }
            }
            for (; t < end; t++) {
                final boolean kept = keepS.getAtIndex(F32, t) != 0f;
                c += validS.getAtIndex(F32, t) != 0f && !kept ? 1 : 0;
                if (and && !kept) {
                    keepAllS.setAtIndex(F32, t, 0f);
                }
            }
            rejected += c;
            rows += c > 0 ? 1 : 0;
        }
        k.above = rejected;
        k.rows = rows;
    }

    /** outS[0, n) = value. */
    private static final Pass FILL_PASS = new Pass() {
        @Override
        void run(final RolloutKernel k, final int n) {
            final MemorySegment outS = k.outS;
            final FloatVector xv = FloatVector.broadcast(F, k.value);
            final int upper = n - n % L;
            for (int u = 0; u < upper; u += L) {
                xv.intoMemorySegment(outS, (long) u * Float.BYTES, Vec.LE);
            }
            for (int t = upper; t < n; t++) {
                outS.setAtIndex(F32, t, k.value);
            }
        }
    };

    /** outS = keepAll != 0 ? mask : 0. */
    private static final Pass MASK_OUT_PASS = new Pass() {
        @Override
        void run(final RolloutKernel k, final int n) {
            final MemorySegment keepAllS = k.keepAllS;
            final MemorySegment maskS = k.maskS;
            final MemorySegment outS = k.outS;
            final int upper = n - n % L;
            for (int u = 0; u < upper; u += L) {
                final long at = (long) u * Float.BYTES;
                ZERO.blend(load(maskS, at), load(keepAllS, at).compare(VectorOperators.NE, 0f))
                    .intoMemorySegment(outS, at, Vec.LE);
            }
            for (int t = upper; t < n; t++) {
                outS.setAtIndex(F32, t, keepAllS.getAtIndex(F32, t) != 0f ? maskS.getAtIndex(F32, t) : 0f);
            }
        }
    };

    @Override
    public void validCounts(final TokenBatch batch, final OffHeapArray mask, final RolloutCorrection.Scratch s) {
        this.batch = batch;
        maskS = mask.segment();
        validS = s.valid.segment();
        rowOut = s.count;
        try {
            run(VALID_COUNTS, this, 0);
        } finally {
            unbindRows();
        }
    }

    @Override
    public void isWeights(final int n, final OffHeapArray src, final boolean icePop, final float lo, final float hi,
                          final RolloutCorrection.Scratch s) {
        srcS = src.segment();
        validS = s.valid.segment();
        rawS = s.raw.segment();
        wS = s.w.segment();
        this.lo = lo;
        this.hi = hi;
        try {
            run(icePop ? IS_ICE_POP : IS_TIS, this, n);
        } finally {
            unbindRows();
        }
    }

    @Override
    public void isMetrics(final int n, final OffHeapArray raw, final OffHeapArray w, final float hi, final float lo,
                          final RolloutCorrection.Scratch s) {
        validS = s.valid.segment();
        rawS = raw.segment();
        wS = w.segment();
        this.lo = lo;
        this.hi = hi;
        try {
            run(IS_METRICS, this, n);
        } finally {
            unbindRows();
        }
        s.above = above;
        s.below = below;
        s.max = max;
        s.min = min;
    }

    @Override
    public long countOutside(final int n, final OffHeapArray x, final float lo, final float hi,
                             final RolloutCorrection.Scratch s) {
        xs = x.segment();
        validS = s.valid.segment();
        this.lo = lo;
        this.hi = hi;
        try {
            run(OUTSIDE, this, n);
        } finally {
            unbindRows();
        }
        return above;
    }

    @Override
    public void divide(final int n, final OffHeapArray x, final float d) {
        xs = x.segment();
        value = d;
        try {
            run(DIVIDE, this, n);
        } finally {
            unbindRows();
        }
    }

    @Override
    public void keepTest(final int n, final OffHeapArray x, final float sign, final boolean twoSided, final float lo,
                         final float hi, final RolloutCorrection.Scratch s) {
        xs = x.segment();
        this.sign = sign;
        validS = s.valid.segment();
        keepS = s.keep.segment();
        this.lo = twoSided ? lo : Float.NEGATIVE_INFINITY;
        this.hi = hi;
        try {
            run(KEEP, this, n);
        } finally {
            unbindRows();
        }
        s.above = above;
        s.below = below;
        s.max = max;
        s.min = min;
    }

    @Override
    public void validRowMax(final TokenBatch batch, final OffHeapArray x, final float sign, final double[] out) {
        this.batch = batch;
        maskS = batch.mask().segment();
        xs = x.segment();
        this.sign = sign;
        rowOut = out;
        try {
            run(ROW_MAX, this, 0);
        } finally {
            unbindRows();
        }
    }

    @Override
    public void broadcastRows(final TokenBatch batch, final float[] rowValues, final OffHeapArray out) {
        this.batch = batch;
        this.rowValues = rowValues;
        outS = out.segment();
        try {
            run(BROADCAST, this, 0);
        } finally {
            unbindRows();
        }
    }

    @Override
    public void rejectRows(final TokenBatch batch, final OffHeapArray keep, final OffHeapArray keepAll,
                           final RolloutCorrection.Scratch s) {
        this.batch = batch;
        keepS = keep.segment();
        validS = s.valid.segment();
        keepAllS = keepAll == null ? null : keepAll.segment();
        try {
            run(keepAll == null ? REJECT : REJECT_AND, this, 0);
        } finally {
            unbindRows();
        }
        s.rejected = above;
        s.rowsRejected = rows;
    }

    @Override
    public void fill(final int n, final OffHeapArray x, final float v) {
        outS = x.segment();
        value = v;
        try {
            run(FILL, this, n);
        } finally {
            unbindRows();
        }
    }

    @Override
    public void outputs(final int n, final OffHeapArray mask, final OffHeapArray isOut, final OffHeapArray keep,
                        final OffHeapArray maskOut, final RolloutCorrection.Scratch s) {
        if (isOut != null) {
            MemorySegment.copy(s.w.segment(), 0, isOut.segment(), 0, (long) n * Float.BYTES);
        }
        if (keep == null) {
            MemorySegment.copy(mask.segment(), 0, maskOut.segment(), 0, (long) n * Float.BYTES);
            return;
        }
        maskS = mask.segment();
        keepAllS = keep.segment();
        outS = maskOut.segment();
        try {
            run(MASK_OUT, this, n);
        } finally {
            unbindRows();
        }
    }

    private static final int LOG_RATIO = 0;
    private static final int EXP_RHO = 1;
    private static final int EXP_KK = 2;
    private static final int TERMS = 3;
    private static final int SIGN_CLAMP = 4;
    private static final int SUMS = 5;
    private static final int ROW_SUMS = 6;
    private static final int VALID_COUNTS = 7;
    private static final int IS_TIS = 8;
    private static final int IS_ICE_POP = 9;
    private static final int IS_METRICS = 10;
    private static final int OUTSIDE = 11;
    private static final int DIVIDE = 12;
    private static final int KEEP = 13;
    private static final int ROW_MAX = 14;
    private static final int BROADCAST = 15;
    private static final int REJECT = 16;
    private static final int REJECT_AND = 17;
    private static final int FILL = 18;
    private static final int MASK_OUT = 19;
    private static final int K_TERMS = 20;
    /** Every pass, by number ({@link #run}). */
    private static final Pass[] PASSES = {LOG_RATIO_PASS, EXP_RHO_PASS, EXP_KK_PASS, TERMS_PASS, SIGN_CLAMP_PASS,
        SUMS_PASS, ROW_SUMS_PASS, VALID_COUNTS_PASS, IS_TIS_PASS, IS_ICE_POP_PASS, IS_METRICS_PASS, OUTSIDE_PASS,
        DIVIDE_PASS, KEEP_PASS, ROW_MAX_PASS, BROADCAST_PASS, REJECT_PASS, REJECT_AND_PASS, FILL_PASS,
        MASK_OUT_PASS, K_TERMS_PASS};
}
