package io.rlvec.engine;

import static io.rlvec.CanonicalMath.EXP_LO;
import static io.rlvec.CanonicalMath.LN2_HI;
import static io.rlvec.CanonicalMath.LN2_LO;
import static io.rlvec.CanonicalMath.LOG2E;
import static io.rlvec.CanonicalMath.MAGIC_BIAS;
import static io.rlvec.CanonicalMath.MAGIC_BITS;
import static io.rlvec.CanonicalMath.P0;
import static io.rlvec.CanonicalMath.P1;
import static io.rlvec.CanonicalMath.P2;
import static io.rlvec.CanonicalMath.P3;
import static io.rlvec.CanonicalMath.P4;
import static io.rlvec.CanonicalMath.P5;

import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.ByteOrder;

import io.rlvec.CanonicalMath;
import io.rlvec.ElementType;
import io.rlvec.Logits;
import io.rlvec.OffHeapArray;
import io.rlvec.SoftmaxStats;
import io.rlvec.reference.ActorLoss;
import io.rlvec.reference.VocabPass;
import jdk.incubator.vector.DoubleVector;
import jdk.incubator.vector.FloatVector;
import jdk.incubator.vector.IntVector;
import jdk.incubator.vector.ShortVector;
import jdk.incubator.vector.VectorMask;
import jdk.incubator.vector.VectorOperators;
import jdk.incubator.vector.VectorShape;
import jdk.incubator.vector.VectorSpecies;

/**
 * The vocabulary pass with Vector API loops: the same formulas and the same canonical summation order as
 * {@code io.rlvec.reference.VocabPass} (written out on {@link io.rlvec.Engine#logProbs} and
 * {@link io.rlvec.Engine#logProbsBackward}), hence the same bits for log-probabilities, entropies and gradients.
 *
 * <p>Two-pass per row (style.md P12 and "Fast softmax"): a max pass (compare + blend, P13), then a fused pass that
 * evaluates one canonical exp per logit and accumulates {@code S = sum e} and {@code W = sum e * (z - m)} in the
 * canonical order's sixteen lanes (float partials of four terms, double lane sums); asked for the sum of squared
 * probabilities, the forward runs a variant of that pass ({@link #rowSumsQ}) that also accumulates
 * {@code Q = sum e * e} there, so that the pass without it is unchanged. The backward from saved
 * {@link SoftmaxStats} is one pass (one exp per logit). Without them it repeats both forward passes first; when
 * the gradient buffer is not the logits' own memory, the fused pass then stores each {@code e_j} there and the
 * gradient pass reads it back instead of evaluating a second exp (the stored value is the same float, so the
 * gradient bits do not change).
 *
 * <p>For the actor loss from logits ({@link #step}) a row's forward, the loss's per-token step and the row's backward
 * run one after the other, so that the backward reads the row's kept exps from cache.
 *
 * <p>Rows are split into fixed blocks (a function of the vocabulary size only) run by {@link Blocks}; a row is
 * computed by one thread from start to end, so results do not depend on the thread count. One instance per
 * engine: it holds the per-call arguments in fields (so that a call allocates nothing) and is not reentrant.
 */
final class VocabKernel implements Blocks.Body {
    private static final VectorSpecies<Float> F = Vec.F;
    private static final VectorSpecies<Double> D = Vec.D;
    /**
     * Short species of half the float width: {@code FL} bf16 values, widened into one float vector (style.md P7).
     */
    private static final VectorSpecies<Short> H = VectorSpecies.of(short.class, VectorShape.forBitSize(Vec.BITS / 2));
    private static final int FL = Vec.FL;
    /** Lanes of the canonical order (16) and float terms per lane per block (4); a block spans 64 logits. */
    private static final int LANES = VocabPass.LANES;
    private static final int DEPTH = VocabPass.DEPTH;
    private static final int SPAN = VocabPass.SPAN;
    /**
     * Float vectors per 16 canonical lanes: 1 at 512 bits, 2 at 256, 4 at 128. Wider vectors are not used for the
     * sums (a scalar loop in the canonical order takes over), to keep that order.
     */
    private static final int GROUPS = Math.max(1, LANES / FL);
    private static final boolean SUM_VECTOR = FL <= LANES;
    /** 0, 1, 2, ... per float lane. */
    private static final float[] IOTA = new float[Math.max(FL, LANES)];

    static {
        for (int i = 0; i < IOTA.length; i++) {
            IOTA[i] = i;
        }
    }
    private static final ByteOrder LE = ByteOrder.LITTLE_ENDIAN;
    private static final ValueLayout.OfFloat F32 = ValueLayout.JAVA_FLOAT_UNALIGNED.withOrder(LE);
    private static final ValueLayout.OfInt I32 = ValueLayout.JAVA_INT_UNALIGNED.withOrder(LE);
    private static final ValueLayout.OfShort I16 = ValueLayout.JAVA_SHORT_UNALIGNED.withOrder(LE);
    /**
     * Logits per block of rows: rows are grouped so that a block holds about this many logits (at least one row),
     * enough to amortise a task hand-off, few enough to balance two threads on small batches.
     */
    private static final int BLOCK_LOGITS = 1 << 16;
    /**
     * Doubles per block in {@link #sums}: S and W of the current row, the index of its first maximal logit (written
     * by rowMax, read by rowSums), Q (rowSumsQ), then from {@code slot + 8} the sixteen canonical S lanes, the
     * sixteen W lanes and the sixteen Q lanes; a multiple of 64 bytes, so that two threads never write the same
     * cache line.
     */
    private static final int SLOT = 56;

    // Per-call state, set by forward/backward before the blocks run and cleared after.
    private MemorySegment x;
    private boolean bf16;
    private int rows;
    private int vocab;
    private long rowStrideBytes;
    private float t;
    /**
     * Whether t and 1/t are powers of two: then x * (1/t) and x / t are the same correctly rounded value of the same
     * real number (also when it is subnormal or overflows), and the cheaper multiply replaces the division
     * (measured: the division is about a fifth of the fused pass at 512 bits).
     */
    private boolean mulT;
    private float invT;
    private MemorySegment labels;
    private MemorySegment mask;
    private MemorySegment logProbOut;
    private MemorySegment entropyOut;
    /** The forward's sum of squared probabilities per row, or null (not asked for: Q is not accumulated). */
    private MemorySegment sumPiSquaredOut;
    private MemorySegment gradLogProb;
    private MemorySegment gradEntropy;
    private MemorySegment grad;
    private boolean backward;
    /** Set by {@link #step}: each row runs forward, this per-token step, then backward; null otherwise. */
    private ActorLoss.TokenStep step;
    private boolean storeExp;
    /** Saved statistics: written by the forward, read by the backward; null when the caller passes none. */
    private MemorySegment stats;
    /** The forward's statistics object when it keeps its exps (it records each row's top index), else null. */
    private SoftmaxStats keptStats;
    /**
     * Standalone forward keeping exps, or backward reading them: each row's kept exps are checksummed (forward) and
     * checked (backward), because the caller holds the buffer in between.
     */
    private boolean checksumKept;
    private int rowsPerBlock;
    /** Per-block scratch ({@link #SLOT} doubles per block): S, W and the lane sums. Grows, then is reused. */
    private double[] sums = new double[SLOT];

    /**
     * Forward: validated arguments (see {@link io.rlvec.Engine#logProbs}).
     *
     * @param keep null, or a float32 buffer in the logits' row layout, disjoint from them, that receives each valid
     *             row's {@code e_j} for a {@link #backward} with {@code kept} (requires {@code statsOut}).
     */
    void forward(final Logits logits, final OffHeapArray labelsArr, final double temperature,
                 final OffHeapArray rowMask, final OffHeapArray logProbArr, final OffHeapArray entropyArr,
                 final OffHeapArray sumPiSquaredArr, final SoftmaxStats statsOut, final OffHeapArray keep,
                 final Blocks blocks) {
        setUp(logits, labelsArr, temperature, rowMask, statsOut);
        backward = false;
        logProbOut = logProbArr.segment();
        entropyOut = entropyArr == null ? null : entropyArr.segment();
        sumPiSquaredOut = sumPiSquaredArr == null ? null : sumPiSquaredArr.segment();
        grad = keep == null ? null : keep.segment();
        storeExp = keep != null;
        keptStats = keep == null ? null : statsOut;
        checksumKept = keep != null;
        runBlocks(blocks);
    }

    /**
     * Backward: validated arguments (see {@link io.rlvec.Engine#logProbsBackward}).
     *
     * @param kept whether a {@link #forward} saving {@code savedStats} kept the exps in {@code gradLogits}.
     */
    void backward(final Logits logits, final OffHeapArray labelsArr, final double temperature,
                  final OffHeapArray rowMask, final OffHeapArray gradLogProbArr, final OffHeapArray gradEntropyArr,
                  final OffHeapArray gradLogits, final SoftmaxStats savedStats, final boolean kept,
                  final Blocks blocks) {
        setUp(logits, labelsArr, temperature, rowMask, savedStats);
        backward = true;
        gradLogProb = gradLogProbArr.segment();
        gradEntropy = gradEntropyArr == null ? null : gradEntropyArr.segment();
        grad = gradLogits.segment();
        // Store e_j in the gradient buffer and read it back in the gradient pass instead of a second exp: measured
        // faster for rows in and out of L2 alike (0.70-0.76 vs 0.87-0.98 ns/logit CPU, V = 32000 and 151936, f32
        // and bf16). In place, the logits must survive until the gradient pass: the exp is evaluated again there.
        // With saved statistics there is no sum pass to store into: one pass, one exp per logit, unless the
        // forward kept its exps in this buffer (then none).
        storeExp = kept || savedStats == null && gradLogits.address() != logits.data().address();
        keptStats = kept ? savedStats : null;
        checksumKept = kept;
        runBlocks(blocks);
    }

    /**
     * Forward, per-token step and backward, one row at a time (validated arguments; see
     * {@link ActorLoss.Kernels#vocabStep}): a row's backward follows its forward and reads the exps it kept (when
     * {@code gradLogits} is not the logits' own memory) from cache instead of memory. Each row computes exactly
     * what the forward and the backward over the whole batch compute for it: the same bits.
     */
    void step(final Logits logits, final OffHeapArray labelsArr, final double temperature,
              final OffHeapArray rowMask, final OffHeapArray logProbArr, final OffHeapArray entropyArr,
              final SoftmaxStats stats, final OffHeapArray gradLogProbArr, final OffHeapArray gradEntropyArr,
              final OffHeapArray gradLogits, final ActorLoss.TokenStep tokenStep, final Blocks blocks) {
        setUp(logits, labelsArr, temperature, rowMask, stats);
        backward = false;
        step = tokenStep;
        logProbOut = logProbArr.segment();
        entropyOut = entropyArr == null ? null : entropyArr.segment();
        gradLogProb = gradLogProbArr.segment();
        gradEntropy = gradEntropyArr == null ? null : gradEntropyArr.segment();
        grad = gradLogits.segment();
        // In place, the logits must survive until the row's gradient pass: the exps are evaluated again there.
        storeExp = gradLogits.address() != logits.data().address();
        keptStats = storeExp ? stats : null;
        checksumKept = false;
        runBlocks(blocks);
    }

    private void setUp(final Logits logits, final OffHeapArray labelsArr, final double temperature,
                       final OffHeapArray rowMask, final SoftmaxStats savedStats) {
        x = logits.data().segment();
        stats = savedStats == null ? null : savedStats.data().segment();
        bf16 = logits.type() == ElementType.BF16;
        rows = logits.rows();
        vocab = logits.vocab();
        rowStrideBytes = logits.rowStride() * logits.type().bytes();
        t = (float) temperature;
        invT = 1f / t;
        mulT = isPowerOfTwo(t) && isPowerOfTwo(invT);
        labels = labelsArr.segment();
        mask = rowMask == null ? null : rowMask.segment();
    }

    /** A finite, normal, positive power of two: multiplying by it or by its reciprocal only moves the exponent. */
    private static boolean isPowerOfTwo(final float v) {
        return v > 0 && Float.isFinite(v) && (Float.floatToRawIntBits(v) & 0x007F_FFFF) == 0
            && Math.getExponent(v) >= Float.MIN_EXPONENT;
    }

    private void runBlocks(final Blocks blocks) {
        rowsPerBlock = Math.max(1, BLOCK_LOGITS / vocab);
        final int count = (int) ((rows + (long) rowsPerBlock - 1) / rowsPerBlock);
        if (sums.length < count * SLOT) {
            sums = new double[count * SLOT];
        }
        try {
            blocks.forEach(count, this);
        } finally {
            x = null;
            labels = null;
            mask = null;
            logProbOut = null;
            entropyOut = null;
            sumPiSquaredOut = null;
            gradLogProb = null;
            gradEntropy = null;
            grad = null;
            stats = null;
            keptStats = null;
            checksumKept = false;
            step = null;
        }
    }

    /** Runs the rows of one block. */
    @Override
    public void run(final int block) {
        final int from = block * rowsPerBlock;
        final int to = Math.min(rows, from + rowsPerBlock);
        final int slot = block * SLOT;
        for (int r = from; r < to; r++) {
            if (step != null) {
                forwardRow(r, slot);
                step.token(r);
                backwardRow(r, slot);
            } else if (backward) {
                backwardRow(r, slot);
            } else {
                forwardRow(r, slot);
            }
        }
    }

    private boolean masked(final int r) {
        return mask != null && mask.get(F32, 4L * r) == 0f;
    }

    private void forwardRow(final int r, final int slot) {
        if (masked(r)) {
            logProbOut.set(F32, 4L * r, 0f);
            if (entropyOut != null) {
                entropyOut.set(F32, 4L * r, 0f);
            }
            if (sumPiSquaredOut != null) {
                sumPiSquaredOut.set(F32, 4L * r, 0f);
            }
            if (stats != null) {
                saveStats(r, 0f, 0f, 0f, 0f);
            }
            if (storeExp) {
                keptStats.setKeptTop(r, -1);
            }
            return;
        }
        final long base = r * rowStrideBytes;
        // The kept exps have the logits' row layout with float32 elements.
        final long gBase = bf16 ? base * 2 : base;
        // max(x) / t = max(x / t) (division is monotone); + 0f turns a -0 maximum into +0, whatever lane held it.
        final float mx = rowMax(x, base, vocab, bf16, sums, slot);
        final float m = mx / t + 0f;
        // W only feeds the entropy and its gradient: not accumulated when neither can be asked for.
        final boolean withW = entropyOut != null || stats != null;
        if (sumPiSquaredOut == null) {
            rowSums(x, base, vocab, bf16, t, mulT, invT, m, storeExp ? grad : null, gBase, withW, sums, slot);
        } else {
            rowSumsQ(x, base, vocab, bf16, t, mulT, invT, m, storeExp ? grad : null, gBase, withW, sums, slot);
        }
        final double s = sums[slot];
        final double w = sums[slot + 1];
        if (sumPiSquaredOut != null) {
            sumPiSquaredOut.set(F32, 4L * r, (float) (sums[slot + 3] / (s * s)));
        }
        if (stats != null) {
            saveStats(r, m, (float) (1.0 / s), (float) (w / s), 1f);
        }
        if (storeExp) {
            // The backward's check that the kept exps are still there: the first maximum's kept 1 (absent when the
            // maximum is +inf, whose e is NaN).
            final int top = (int) sums[slot + 2];
            keptStats.setKeptTop(r, top >= 0 && grad.get(F32, gBase + 4L * top) == 1f ? top : -1);
            if (checksumKept) {
                keptStats.setKeptSum(r, checksum(grad, gBase, vocab));
            }
        }
        final double logS = StrictMath.log(s);
        final float zy = logit(base, labels.get(I32, 4L * r)) / t;
        logProbOut.set(F32, 4L * r, (float) (((double) zy - m) - logS));
        if (entropyOut != null) {
            entropyOut.set(F32, 4L * r, (float) (logS - w / s));
        }
    }

    private void backwardRow(final int r, final int slot) {
        final long base = r * rowStrideBytes;
        // The gradient has the logits' layout but float32 elements.
        final long gBase = bf16 ? base * 2 : base;
        if (masked(r)) {
            zeroRow(grad, gBase, vocab);
            return;
        }
        final float gl = gradLogProb.get(F32, 4L * r) / t;
        final float ge = gradEntropy == null ? 0f : gradEntropy.get(F32, 4L * r) / t;
        // ge == 0: k = -gl for every logit, so W (mu) and the clamped c are not needed (spec: k's first case).
        final boolean ent = ge != 0f;
        // Kept exps the caller changed since the forward (any one element, or more unless the changes cancel in
        // the checksum) are not used: the row's exps are evaluated again from the logits and the saved statistics.
        final boolean store = storeExp && !(checksumKept && checksum(grad, gBase, vocab) != keptStats.keptSum(r));
        final float m;
        final float rS;
        final float mu;
        if (stats != null) {
            // The forward's m, rS, mu: the same floats the two passes below would compute again.
            final long at = 4L * SoftmaxStats.STRIDE * r;
            m = stats.get(F32, at + 4L * SoftmaxStats.M);
            rS = stats.get(F32, at + 4L * SoftmaxStats.RS);
            mu = ent ? stats.get(F32, at + 4L * SoftmaxStats.MU) : 0f;
        } else {
            final float mx = rowMax(x, base, vocab, bf16, sums, slot);
            m = mx / t + 0f;
            rowSums(x, base, vocab, bf16, t, mulT, invT, m, store ? grad : null, gBase, ent, sums, slot);
            final double s = sums[slot];
            final double w = sums[slot + 1];
            rS = (float) (1.0 / s);
            mu = ent ? (float) (w / s) : 0f;
        }
        final int y = labels.get(I32, 4L * r);
        // Read before the gradient pass: in place, it overwrites the logits.
        final float dy = logit(base, y) / t - m;
        if (store && !ent) {
            gradStoredNoEntropy(vocab, rS, gl, grad, gBase);
        } else if (store) {
            gradStored(x, base, vocab, bf16, t, mulT, invT, m, rS, mu, gl, ge, grad, gBase);
        } else {
            gradRecompute(x, base, vocab, bf16, t, mulT, invT, m, rS, mu, gl, ge, ent, grad, gBase);
        }
        final float ky = ent ? Math.fma(-ge, clamp(dy) - mu, -gl) : -gl;
        final float py = CanonicalMath.exp(dy) * rS;
        grad.set(F32, gBase + 4L * y, Math.fma(py, ky, gl));
    }

    /**
     * A row's checksum: the sum, modulo 2^32, of each element's bits times an odd weight (2j + 1). A change to any
     * one element changes it (odd multipliers are invertible modulo 2^32), and so does swapping two different
     * elements; integer addition is associative, so the lane order (the vector width) does not matter.
     */
    private static int checksum(final MemorySegment seg, final long base, final int n) {
        final int lanes = Vec.I.length();
        IntVector acc = IntVector.zero(Vec.I);
        IntVector weight = IntVector.zero(Vec.I).addIndex(2).add(1);
        final IntVector step = IntVector.broadcast(Vec.I, 2 * lanes);
        final int bound = Vec.I.loopBound(n);
        int j = 0;
        for (; j < bound; j += lanes) {
            acc = acc.add(IntVector.fromMemorySegment(Vec.I, seg, base + 4L * j, LE).mul(weight));
            weight = weight.add(step);
        }
        int sum = acc.reduceLanes(VectorOperators.ADD);
        for (; j < n; j++) {
            sum += seg.get(I32, base + 4L * j) * (2 * j + 1);
        }
        return sum;
    }

    private void saveStats(final int r, final float m, final float rS, final float mu, final float flag) {
        final long at = 4L * SoftmaxStats.STRIDE * r;
        stats.set(F32, at + 4L * SoftmaxStats.M, m);
        stats.set(F32, at + 4L * SoftmaxStats.RS, rS);
        stats.set(F32, at + 4L * SoftmaxStats.MU, mu);
        stats.set(F32, at + 4L * SoftmaxStats.FLAG, flag);
    }

    private float logit(final long base, final int j) {
        return bf16 ? widen(x.get(I16, base + 2L * j)) : x.get(F32, base + 4L * j);
    }

    private static float widen(final short bits) {
        return Float.intBitsToFloat((bits & 0xFFFF) << 16);
    }

    /** {@code d} clamped below at EXP_LO, where exp is already 0: keeps {@code e * c} and {@code c - mu} finite. */
    private static float clamp(final float d) {
        return d < EXP_LO ? EXP_LO : d;
    }

    /**
     * Loads {@code FL} logits starting at element {@code j}: float32 as is, or bf16 widened in registers (a bf16 is
     * the upper half of a float32: widen to int lanes, shift left 16; the sign extension is shifted out).
     */
    private static FloatVector load(final MemorySegment seg, final long base, final int j, final boolean bf16) {
        if (bf16) {
            return ShortVector.fromMemorySegment(H, seg, base + 2L * j, LE)
                .castShape(Vec.I, 0)
                .lanewise(VectorOperators.LSHL, 16)
                .reinterpretAsFloats();
        }
        return FloatVector.fromMemorySegment(F, seg, base + 4L * j, LE);
    }

    private static float loadScalar(final MemorySegment seg, final long base, final int j, final boolean bf16) {
        return bf16 ? widen(seg.get(I16, base + 2L * j)) : seg.get(F32, base + 4L * j);
    }

    /**
     * The canonical exp of {@link CanonicalMath#exp} (same constants, same operations, same order), lane-wise, for
     * arguments {@code <= 0} or NaN, without the range blends: the overflow blend never fires for {@code d <= 0}, and
     * the caller applies the underflow blend itself (it shares the comparison with the clamp).
     *
     * <p>The final scaling is one multiplication by 2^n instead of the canonical two, 2^(n>>1) and 2^(n-(n>>1)):
     * for the arguments that survive the underflow blend, n is in [-126, 0], so the first canonical step
     * y * 2^(n>>1) (n>>1 >= -63) is exact and the second rounds the same real number y * 2^n once, as the single
     * multiplication does, subnormal results included: the same bits, four integer operations and a multiply fewer.
     */
    private static FloatVector expPoly(final FloatVector x) {
        final FloatVector z = x.fma(LOG2E, MAGIC_BIAS);
        final FloatVector nf = z.sub(MAGIC_BIAS);
        // Constant vectors are broadcast here (C2 hoists them), never held in static fields: a static final vector
        // flowing into a loop was measured to defeat box elimination (one boxed vector per iteration).
        FloatVector r = nf.fma(FloatVector.broadcast(F, -LN2_HI), x);
        r = nf.fma(FloatVector.broadcast(F, -LN2_LO), r);
        FloatVector p = r.fma(P0, P1);
        p = p.fma(r, FloatVector.broadcast(F, P2));
        p = p.fma(r, FloatVector.broadcast(F, P3));
        p = p.fma(r, FloatVector.broadcast(F, P4));
        p = p.fma(r, FloatVector.broadcast(F, P5));
        final FloatVector r2 = r.mul(r);
        final FloatVector y = p.fma(r2, r).add(1f);
        // n + 127 sits in the low mantissa bits of z (magic-bias rounding): 2^n = (bits(z) - MAGIC_BITS) << 23.
        final FloatVector scale = z.reinterpretAsInts().sub(MAGIC_BITS).lanewise(VectorOperators.LSHL, 23)
            .reinterpretAsFloats();
        return y.mul(scale);
    }

    /**
     * Row maximum, NaN skipped (compare + blend, style.md P13), four accumulators to hide the blend latency; also
     * the first index holding it ({@code top}, written to {@code out[slot + 2]}): each accumulator lane keeps the
     * index of the first value that raised it, so the first index overall is the least such index among the lanes
     * that hold the maximum (float indices: exact below 2^24; longer rows and rows without a finite-or-+inf maximum
     * find it by a scalar scan).
     */
    private static float rowMax(final MemorySegment seg, final long base, final int v, final boolean bf16,
                                final double[] out, final int slot) {
        // Accumulators start from a local broadcast: a static final vector as a loop phi's initial value boxes
        // every iteration (measured: one vector allocation per load).
        FloatVector m0 = FloatVector.broadcast(F, Float.NEGATIVE_INFINITY);
        FloatVector m1 = m0;
        FloatVector m2 = m0;
        FloatVector m3 = m0;
        final FloatVector iota = FloatVector.fromArray(F, IOTA, 0);
        FloatVector i0 = FloatVector.broadcast(F, Float.POSITIVE_INFINITY);
        FloatVector i1 = i0;
        FloatVector i2 = i0;
        FloatVector i3 = i0;
        int j = 0;
        for (; j <= v - 4 * FL; j += 4 * FL) {
            final FloatVector a = load(seg, base, j, bf16);
            final FloatVector b = load(seg, base, j + FL, bf16);
            final FloatVector c = load(seg, base, j + 2 * FL, bf16);
            final FloatVector d = load(seg, base, j + 3 * FL, bf16);
            final FloatVector ja = iota.add((float) j);
            final VectorMask<Float> ga = a.compare(VectorOperators.GT, m0);
            final VectorMask<Float> gb = b.compare(VectorOperators.GT, m1);
            final VectorMask<Float> gc = c.compare(VectorOperators.GT, m2);
            final VectorMask<Float> gd = d.compare(VectorOperators.GT, m3);
            m0 = m0.blend(a, ga);
            m1 = m1.blend(b, gb);
            m2 = m2.blend(c, gc);
            m3 = m3.blend(d, gd);
            i0 = i0.blend(ja, ga);
            i1 = i1.blend(ja.add((float) FL), gb);
            i2 = i2.blend(ja.add((float) (2 * FL)), gc);
            i3 = i3.blend(ja.add((float) (3 * FL)), gd);
        }
        // No vector remainder loop: on rows where it seldom runs, C2 compiles its vector operations without
        // intrinsics and boxes them (measured: 2 vectors per row after bf16 rows of another length); the scalar
        // tail below takes up to 4 * FL - 1 logits.
        final FloatVector m01 = m0.blend(m1, m1.compare(VectorOperators.GT, m0));
        final FloatVector m23 = m2.blend(m3, m3.compare(VectorOperators.GT, m2));
        // No NaN in the accumulators; the order of equal values only matters for the sign of zero, which the
        // caller normalises.
        float mx = m01.blend(m23, m23.compare(VectorOperators.GT, m01)).reduceLanes(VectorOperators.MAX);
        final int vectorEnd = j;
        for (; j < v; j++) {
            final float a = loadScalar(seg, base, j, bf16);
            if (a > mx) {
                mx = a;
            }
        }
        final int top;
        if (mx > Float.NEGATIVE_INFINITY && v <= 1 << 24) {
            final float none = Float.POSITIVE_INFINITY;
            final FloatVector c0 = i0.blend(none, m0.compare(VectorOperators.NE, mx));
            final FloatVector c1 = i1.blend(none, m1.compare(VectorOperators.NE, mx));
            final FloatVector c2 = i2.blend(none, m2.compare(VectorOperators.NE, mx));
            final FloatVector c3 = i3.blend(none, m3.compare(VectorOperators.NE, mx));
            final float first = c0.min(c1).min(c2.min(c3)).reduceLanes(VectorOperators.MIN);
            top = first < none ? (int) first : scanFrom(seg, base, vectorEnd, v, bf16, mx);
        } else {
            top = scanFrom(seg, base, 0, v, bf16, mx);
        }
        out[slot + 2] = top;
        return mx;
    }

    /** @return the first j in {@code [from, v)} with {@code x_j == mx}, or -1. */
    private static int scanFrom(final MemorySegment seg, final long base, final int from, final int v,
                                final boolean bf16, final float mx) {
        for (int j = from; j < v; j++) {
            if (loadScalar(seg, base, j, bf16) == mx) {
                return j;
            }
        }
        return -1;
    }

    /**
     * The fused pass: {@code e_j = exp(x_j / t - m)}, {@code S = sum e_j} and {@code W = sum e_j * c_j} in the
     * canonical order (sixteen lanes; per block of 64 logits, each lane's four terms summed in float, then added to
     * the lane's double; lanes combined by {@link VocabPass#combineLanes}; then the tail in order). Writes S and W
     * to {@code out[slot]}, {@code out[slot + 1]}; stores each {@code e_j} as float32 at {@code eBase} in
     * {@code eSeg} when that is non-null.
     *
     * <p>One exp polynomial in the loop body (style.md P2): the innermost loop walks a lane group's four terms,
     * the middle loop the {@link #GROUPS} vectors that cover sixteen lanes, and the double accumulators rotate by
     * one group per middle iteration (as the float slots of the KL pass do), so that after a whole block every
     * accumulator is back on its own lanes.
     */
    private static void rowSums(final MemorySegment seg, final long base, final int v, final boolean bf16,
                                final float t, final boolean mulT, final float invT, final float m,
                                final MemorySegment eSeg, final long eBase, final boolean withW,
                                final double[] out, final int slot) {
        final FloatVector tv = FloatVector.broadcast(F, mulT ? invT : t);
        final FloatVector mv = FloatVector.broadcast(F, m);
        final boolean store = eSeg != null;
        // (local zeros, not static final vectors: see rowMax)
        final FloatVector fzero = FloatVector.zero(F);
        final DoubleVector zero = DoubleVector.zero(D);
        // Group g's lanes g*FL .. g*FL+FL-1 convert to two double vectors; (s0, s1) always hold the current group.
        DoubleVector s0 = zero;
        DoubleVector s1 = zero;
        DoubleVector s2 = zero;
        DoubleVector s3 = zero;
        DoubleVector s4 = zero;
        DoubleVector s5 = zero;
        DoubleVector s6 = zero;
        DoubleVector s7 = zero;
        DoubleVector w0 = zero;
        DoubleVector w1 = zero;
        DoubleVector w2 = zero;
        DoubleVector w3 = zero;
        DoubleVector w4 = zero;
        DoubleVector w5 = zero;
        DoubleVector w6 = zero;
        DoubleVector w7 = zero;
        final int vs = SUM_VECTOR ? v - v % SPAN : 0;
        // The block holding the first maximal logit (e = 1; its index found by rowMax) is left to the end (canonical
        // order): skipped here, added last by the scalar addBlock, without that logit's term. The skip is a scalar
        // branch with no vector operation in it (a vector operation on a path taken once per row is compiled
        // without intrinsics and boxed).
        final int top = (int) out[slot + 2];
        final boolean topInLanes = top >= 0 && top < v - v % SPAN;
        final int topBlock = topInLanes ? top - top % SPAN : -1;
        for (int b = 0; b < vs; b += SPAN) {
            if (b == topBlock) {
                continue;
            }
            for (int g = 0; g < GROUPS; g++) {
                FloatVector ps = fzero;
                FloatVector pw = fzero;
                for (int j = b + g * FL; j < b + SPAN; j += LANES) {
                    final FloatVector x = load(seg, base, j, bf16);
                    // x * (1 / t) when t is a power of two (exact, so the same bits), x / t otherwise.
                    final FloatVector d = (mulT ? x.mul(tv) : x.div(tv)).sub(mv);
                    final VectorMask<Float> under = d.compare(VectorOperators.LT, EXP_LO);
                    final FloatVector e = expPoly(d).blend(0f, under);
                    if (store) {
                        e.intoMemorySegment(eSeg, eBase + 4L * j, LE);
                    }
                    ps = ps.add(e);
                    if (withW) {
                        pw = pw.add(e.mul(d.blend(EXP_LO, under)));
                    }
                }
                s0 = s0.add((DoubleVector) ps.convertShape(VectorOperators.F2D, D, 0));
                s1 = s1.add((DoubleVector) ps.convertShape(VectorOperators.F2D, D, 1));
                if (withW) {
                    // Widening the upper half costs more than the lower (a lane-crossing move): skipped without W.
                    w0 = w0.add((DoubleVector) pw.convertShape(VectorOperators.F2D, D, 0));
                    w1 = w1.add((DoubleVector) pw.convertShape(VectorOperators.F2D, D, 1));
                }
                if (GROUPS == 2) {
                    final DoubleVector ts0 = s0;
                    final DoubleVector ts1 = s1;
                    s0 = s2;
                    s1 = s3;
                    s2 = ts0;
                    s3 = ts1;
                    final DoubleVector tw0 = w0;
                    final DoubleVector tw1 = w1;
                    w0 = w2;
                    w1 = w3;
                    w2 = tw0;
                    w3 = tw1;
                } else if (GROUPS == 4) {
                    final DoubleVector ts0 = s0;
                    final DoubleVector ts1 = s1;
                    s0 = s2;
                    s1 = s3;
                    s2 = s4;
                    s3 = s5;
                    s4 = s6;
                    s5 = s7;
                    s6 = ts0;
                    s7 = ts1;
                    final DoubleVector tw0 = w0;
                    final DoubleVector tw1 = w1;
                    w0 = w2;
                    w1 = w3;
                    w2 = w4;
                    w3 = w5;
                    w4 = w6;
                    w5 = w7;
                    w6 = tw0;
                    w7 = tw1;
                }
            }
        }
        // The sixteen canonical lanes go through the block's scratch in `out` (slot + 8 .. slot + 39): vector stores,
        // then scalar reads. DoubleVector.lane() was measured to box the vector on some compiles (its extract
        // intrinsic fell back to an out-of-line call), 80-200 bytes per row.
        final int sl = slot + 8;
        final int wl = sl + LANES;
        if (SUM_VECTOR) {
            final int h = D.length();
            s0.intoArray(out, sl);
            s1.intoArray(out, sl + h);
            w0.intoArray(out, wl);
            w1.intoArray(out, wl + h);
            if (GROUPS >= 2) {
                s2.intoArray(out, sl + 2 * h);
                s3.intoArray(out, sl + 3 * h);
                w2.intoArray(out, wl + 2 * h);
                w3.intoArray(out, wl + 3 * h);
            }
            if (GROUPS == 4) {
                s4.intoArray(out, sl + 4 * h);
                s5.intoArray(out, sl + 5 * h);
                s6.intoArray(out, sl + 6 * h);
                s7.intoArray(out, sl + 7 * h);
                w4.intoArray(out, wl + 4 * h);
                w5.intoArray(out, wl + 5 * h);
                w6.intoArray(out, wl + 6 * h);
                w7.intoArray(out, wl + 7 * h);
            }
        } else {
            scalarLanes(seg, base, v, bf16, t, m, topBlock, eSeg, eBase, out, sl, wl, -1);
        }
        if (topInLanes) {
            addBlock(seg, base, topBlock, bf16, t, m, top, eSeg, eBase, out, sl, wl, -1);
        }
        double s = VocabPass.combineLanes(out, sl);
        if (topInLanes) {
            s += CanonicalMath.exp(loadScalar(seg, base, top, bf16) / t - m);
        }
        double w = VocabPass.combineLanes(out, wl);
        final int tail = v - v % SPAN;
        for (int j = tail; j < v; j++) {
            final float d = loadScalar(seg, base, j, bf16) / t - m;
            final float e = CanonicalMath.exp(d);
            if (store) {
                eSeg.set(F32, eBase + 4L * j, e);
            }
            s += e;
            w += e * clamp(d);
        }
        out[slot] = s;
        out[slot + 1] = w;
    }

    /**
     * {@link #rowSums} that also accumulates {@code Q = sum e_j * e_j} in the same canonical order as S (float
     * products, the same float partials of four terms, the first maximum's term left out of its lane and added
     * after the lanes) and writes it to {@code out[slot + 3]}: the numerator of the sum of squared probabilities
     * {@code Q / S^2}. A separate method, so that the pass without it keeps its registers and code unchanged.
     */
    private static void rowSumsQ(final MemorySegment seg, final long base, final int v, final boolean bf16,
                                 final float t, final boolean mulT, final float invT, final float m,
                                 final MemorySegment eSeg, final long eBase, final boolean withW,
                                 final double[] out, final int slot) {
        final FloatVector tv = FloatVector.broadcast(F, mulT ? invT : t);
        final FloatVector mv = FloatVector.broadcast(F, m);
        final boolean store = eSeg != null;
        final FloatVector fzero = FloatVector.zero(F);
        final DoubleVector zero = DoubleVector.zero(D);
        DoubleVector s0 = zero;
        DoubleVector s1 = zero;
        DoubleVector s2 = zero;
        DoubleVector s3 = zero;
        DoubleVector s4 = zero;
        DoubleVector s5 = zero;
        DoubleVector s6 = zero;
        DoubleVector s7 = zero;
        DoubleVector w0 = zero;
        DoubleVector w1 = zero;
        DoubleVector w2 = zero;
        DoubleVector w3 = zero;
        DoubleVector w4 = zero;
        DoubleVector w5 = zero;
        DoubleVector w6 = zero;
        DoubleVector w7 = zero;
        DoubleVector q0 = zero;
        DoubleVector q1 = zero;
        DoubleVector q2 = zero;
        DoubleVector q3 = zero;
        DoubleVector q4 = zero;
        DoubleVector q5 = zero;
        DoubleVector q6 = zero;
        DoubleVector q7 = zero;
        final int vs = SUM_VECTOR ? v - v % SPAN : 0;
        final int top = (int) out[slot + 2];
        final boolean topInLanes = top >= 0 && top < v - v % SPAN;
        final int topBlock = topInLanes ? top - top % SPAN : -1;
        for (int b = 0; b < vs; b += SPAN) {
            if (b == topBlock) {
                continue;
            }
            for (int g = 0; g < GROUPS; g++) {
                FloatVector ps = fzero;
                FloatVector pw = fzero;
                FloatVector pq = fzero;
                for (int j = b + g * FL; j < b + SPAN; j += LANES) {
                    final FloatVector x = load(seg, base, j, bf16);
                    final FloatVector d = (mulT ? x.mul(tv) : x.div(tv)).sub(mv);
                    final VectorMask<Float> under = d.compare(VectorOperators.LT, EXP_LO);
                    final FloatVector e = expPoly(d).blend(0f, under);
                    if (store) {
                        e.intoMemorySegment(eSeg, eBase + 4L * j, LE);
                    }
                    ps = ps.add(e);
                    // The float product, then the add (no fma): the reference's pq += e * e.
                    pq = pq.add(e.mul(e));
                    if (withW) {
                        pw = pw.add(e.mul(d.blend(EXP_LO, under)));
                    }
                }
                s0 = s0.add((DoubleVector) ps.convertShape(VectorOperators.F2D, D, 0));
                s1 = s1.add((DoubleVector) ps.convertShape(VectorOperators.F2D, D, 1));
                q0 = q0.add((DoubleVector) pq.convertShape(VectorOperators.F2D, D, 0));
                q1 = q1.add((DoubleVector) pq.convertShape(VectorOperators.F2D, D, 1));
                if (withW) {
                    w0 = w0.add((DoubleVector) pw.convertShape(VectorOperators.F2D, D, 0));
                    w1 = w1.add((DoubleVector) pw.convertShape(VectorOperators.F2D, D, 1));
                }
                if (GROUPS == 2) {
                    final DoubleVector ts0 = s0;
                    final DoubleVector ts1 = s1;
                    s0 = s2;
                    s1 = s3;
                    s2 = ts0;
                    s3 = ts1;
                    final DoubleVector tw0 = w0;
                    final DoubleVector tw1 = w1;
                    w0 = w2;
                    w1 = w3;
                    w2 = tw0;
                    w3 = tw1;
                    final DoubleVector tq0 = q0;
                    final DoubleVector tq1 = q1;
                    q0 = q2;
                    q1 = q3;
                    q2 = tq0;
                    q3 = tq1;
                } else if (GROUPS == 4) {
                    final DoubleVector ts0 = s0;
                    final DoubleVector ts1 = s1;
                    s0 = s2;
                    s1 = s3;
                    s2 = s4;
                    s3 = s5;
                    s4 = s6;
                    s5 = s7;
                    s6 = ts0;
                    s7 = ts1;
                    final DoubleVector tw0 = w0;
                    final DoubleVector tw1 = w1;
                    w0 = w2;
                    w1 = w3;
                    w2 = w4;
                    w3 = w5;
                    w4 = w6;
                    w5 = w7;
                    w6 = tw0;
                    w7 = tw1;
                    final DoubleVector tq0 = q0;
                    final DoubleVector tq1 = q1;
                    q0 = q2;
                    q1 = q3;
                    q2 = q4;
                    q3 = q5;
                    q4 = q6;
                    q5 = q7;
                    q6 = tq0;
                    q7 = tq1;
                }
            }
        }
        final int sl = slot + 8;
        final int wl = sl + LANES;
        final int ql = wl + LANES;
        if (SUM_VECTOR) {
            final int h = D.length();
            s0.intoArray(out, sl);
            s1.intoArray(out, sl + h);
            w0.intoArray(out, wl);
            w1.intoArray(out, wl + h);
            q0.intoArray(out, ql);
            q1.intoArray(out, ql + h);
            if (GROUPS >= 2) {
                s2.intoArray(out, sl + 2 * h);
                s3.intoArray(out, sl + 3 * h);
                w2.intoArray(out, wl + 2 * h);
                w3.intoArray(out, wl + 3 * h);
                q2.intoArray(out, ql + 2 * h);
                q3.intoArray(out, ql + 3 * h);
            }
            if (GROUPS == 4) {
                s4.intoArray(out, sl + 4 * h);
                s5.intoArray(out, sl + 5 * h);
                s6.intoArray(out, sl + 6 * h);
                s7.intoArray(out, sl + 7 * h);
                w4.intoArray(out, wl + 4 * h);
                w5.intoArray(out, wl + 5 * h);
                w6.intoArray(out, wl + 6 * h);
                w7.intoArray(out, wl + 7 * h);
                q4.intoArray(out, ql + 4 * h);
                q5.intoArray(out, ql + 5 * h);
                q6.intoArray(out, ql + 6 * h);
                q7.intoArray(out, ql + 7 * h);
            }
        } else {
            scalarLanes(seg, base, v, bf16, t, m, topBlock, eSeg, eBase, out, sl, wl, ql);
        }
        if (topInLanes) {
            addBlock(seg, base, topBlock, bf16, t, m, top, eSeg, eBase, out, sl, wl, ql);
        }
        double s = VocabPass.combineLanes(out, sl);
        double q = VocabPass.combineLanes(out, ql);
        if (topInLanes) {
            final float eTop = CanonicalMath.exp(loadScalar(seg, base, top, bf16) / t - m);
            s += eTop;
            q += eTop * eTop;
        }
        double w = VocabPass.combineLanes(out, wl);
        final int tail = v - v % SPAN;
        for (int j = tail; j < v; j++) {
            final float d = loadScalar(seg, base, j, bf16) / t - m;
            final float e = CanonicalMath.exp(d);
            if (store) {
                eSeg.set(F32, eBase + 4L * j, e);
            }
            s += e;
            w += e * clamp(d);
            q += e * e;
        }
        out[slot] = s;
        out[slot + 1] = w;
        out[slot + 3] = q;
    }

    /**
     * The canonical lanes one term at a time (vectors wider than 16 floats): the reference's loop. {@code ql}: the
     * first Q lane in {@code out}, or -1 (Q not accumulated).
     */
    private static void scalarLanes(final MemorySegment seg, final long base, final int v, final boolean bf16,
                                    final float t, final float m, final int skip, final MemorySegment eSeg,
                                    final long eBase, final double[] out, final int sl, final int wl, final int ql) {
        java.util.Arrays.fill(out, sl, (ql < 0 ? wl : ql) + LANES, 0.0);
        final int vs = v - v % SPAN;
        for (int b = 0; b < vs; b += SPAN) {
            if (b != skip) {
                addBlock(seg, base, b, bf16, t, m, -1, eSeg, eBase, out, sl, wl, ql);
            }
        }
    }

    /**
     * One block of the canonical order, one term at a time: each lane's four terms summed in float (leaving out the
     * term at {@code top}, when it is in this block, from S and Q), then added to the lane's double in {@code out};
     * Q's lanes (from {@code ql}) only when {@code ql >= 0}.
     */
    private static void addBlock(final MemorySegment seg, final long base, final int b, final boolean bf16,
                                 final float t, final float m, final int top, final MemorySegment eSeg,
                                 final long eBase, final double[] out, final int sl, final int wl, final int ql) {
        for (int l = 0; l < LANES; l++) {
            float ps = 0f;
            float pw = 0f;
            float pq = 0f;
            for (int j = b + l; j < b + SPAN; j += LANES) {
                final float d = loadScalar(seg, base, j, bf16) / t - m;
                final float e = CanonicalMath.exp(d);
                if (eSeg != null) {
                    eSeg.set(F32, eBase + 4L * j, e);
                }
                if (j != top) {
                    ps += e;
                    pq += e * e;
                }
                pw += e * clamp(d);
            }
            out[sl + l] += ps;
            out[wl + l] += pw;
            if (ql >= 0) {
                out[ql + l] += pq;
            }
        }
    }

    /**
     * Gradient pass evaluating the exp again (in place, or rows too long to keep e in cache). {@code ent}: whether
     * {@code ge != 0}, else {@code k = -gl} for every logit.
     */
    private static void gradRecompute(final MemorySegment seg, final long base, final int v, final boolean bf16,
                                      final float t, final boolean mulT, final float invT, final float m,
                                      final float rS, final float mu, final float gl, final float ge,
                                      final boolean ent, final MemorySegment g, final long gBase) {
        final FloatVector tv = FloatVector.broadcast(F, mulT ? invT : t);
        final FloatVector mv = FloatVector.broadcast(F, m);
        final FloatVector muv = FloatVector.broadcast(F, mu);
        final FloatVector rSv = FloatVector.broadcast(F, rS);
        final FloatVector nge = FloatVector.broadcast(F, -ge);
        final FloatVector ngl = FloatVector.broadcast(F, -gl);
        int j = 0;
        for (; j <= v - FL; j += FL) {
            final FloatVector x = load(seg, base, j, bf16);
            final FloatVector d = (mulT ? x.mul(tv) : x.div(tv)).sub(mv);
            final VectorMask<Float> under = d.compare(VectorOperators.LT, EXP_LO);
            final FloatVector e = expPoly(d).blend(0f, under);
            // k = ge == 0 ? -gl : fma(-ge, c - mu, -gl); g = (e * rS) * k
            final FloatVector k = ent ? d.blend(EXP_LO, under).sub(muv).fma(nge, ngl) : ngl;
            e.mul(rSv).mul(k).intoMemorySegment(g, gBase + 4L * j, LE);
        }
        for (; j < v; j++) {
            final float d = loadScalar(seg, base, j, bf16) / t - m;
            final float k = ent ? Math.fma(-ge, clamp(d) - mu, -gl) : -gl;
            g.set(F32, gBase + 4L * j, (CanonicalMath.exp(d) * rS) * k);
        }
    }

    /** Gradient pass reading {@code e_j} back from the gradient buffer (where the fused pass stored it), ge != 0. */
    private static void gradStored(final MemorySegment seg, final long base, final int v, final boolean bf16,
                                   final float t, final boolean mulT, final float invT, final float m,
                                   final float rS, final float mu, final float gl, final float ge,
                                   final MemorySegment g, final long gBase) {
        final FloatVector tv = FloatVector.broadcast(F, mulT ? invT : t);
        final FloatVector mv = FloatVector.broadcast(F, m);
        final FloatVector muv = FloatVector.broadcast(F, mu);
        final FloatVector rSv = FloatVector.broadcast(F, rS);
        final FloatVector nge = FloatVector.broadcast(F, -ge);
        final FloatVector ngl = FloatVector.broadcast(F, -gl);
        int j = 0;
        for (; j <= v - FL; j += FL) {
            final FloatVector x = load(seg, base, j, bf16);
            final FloatVector d = (mulT ? x.mul(tv) : x.div(tv)).sub(mv);
            final FloatVector e = FloatVector.fromMemorySegment(F, g, gBase + 4L * j, LE);
            final FloatVector k = d.blend(EXP_LO, d.compare(VectorOperators.LT, EXP_LO)).sub(muv).fma(nge, ngl);
            e.mul(rSv).mul(k).intoMemorySegment(g, gBase + 4L * j, LE);
        }
        for (; j < v; j++) {
            final float d = loadScalar(seg, base, j, bf16) / t - m;
            final float k = Math.fma(-ge, clamp(d) - mu, -gl);
            g.set(F32, gBase + 4L * j, (g.get(F32, gBase + 4L * j) * rS) * k);
        }
    }

    /**
     * Gradient pass for ge == 0 from stored {@code e_j}: {@code g_j = (e_j * rS) * -gl}; the logits are not read
     * at all (k does not depend on them).
     */
    private static void gradStoredNoEntropy(final int v, final float rS, final float gl, final MemorySegment g,
                                            final long gBase) {
        final FloatVector rSv = FloatVector.broadcast(F, rS);
        final FloatVector ngl = FloatVector.broadcast(F, -gl);
        int j = 0;
        for (; j <= v - FL; j += FL) {
            FloatVector.fromMemorySegment(F, g, gBase + 4L * j, LE).mul(rSv).mul(ngl)
                .intoMemorySegment(g, gBase + 4L * j, LE);
        }
        for (; j < v; j++) {
            g.set(F32, gBase + 4L * j, (g.get(F32, gBase + 4L * j) * rS) * -gl);
        }
    }

    private static void zeroRow(final MemorySegment g, final long gBase, final int v) {
        final FloatVector zero = FloatVector.zero(F);
        int j = 0;
        for (; j <= v - FL; j += FL) {
            zero.intoMemorySegment(g, gBase + 4L * j, LE);
        }
        for (; j < v; j++) {
            g.set(F32, gBase + 4L * j, 0f);
        }
    }
}
