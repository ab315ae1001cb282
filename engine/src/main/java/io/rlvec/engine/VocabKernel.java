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
import jdk.incubator.vector.DoubleVector;
import jdk.incubator.vector.FloatVector;
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
 * evaluates one canonical exp per logit and accumulates {@code S = sum e} and {@code W = sum e * (z - m)} in double
 * lanes laid out as the canonical order's eight lanes. The backward adds a gradient pass; when the gradient buffer
 * is not the logits' own memory, the fused pass stores each {@code e_j} there and the gradient pass reads it back
 * instead of evaluating a second exp (the stored value is the same float, so the gradient bits do not change).
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
    /**
     * End granule of the vectorised sum loop. The canonical order has eight lanes: a float vector of 4 lanes covers
     * half of them (two iterations rotate through the eight), of 8 exactly, of 16 twice over. Wider vectors are
     * not used for the sums (the scalar chunk loop takes over), to keep that order.
     */
    private static final int SUM_STEP = FL <= 8 ? 8 : 16;
    private static final boolean SUM_VECTOR = FL <= 16;
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
     * Doubles per block in {@link #stats}: S and W of the current row, then the eight canonical S lanes and the
     * eight W lanes; a multiple of 64 bytes, so that two threads never write the same cache line.
     */
    private static final int SLOT = 32;

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
    private MemorySegment gradLogProb;
    private MemorySegment gradEntropy;
    private MemorySegment grad;
    private boolean backward;
    private boolean storeExp;
    private int rowsPerBlock;
    /** Per-block scratch ({@link #SLOT} doubles per block): S, W and the lane sums. Grows, then is reused. */
    private double[] stats = new double[SLOT];

    /** Forward: validated arguments (see {@link io.rlvec.Engine#logProbs}). */
    void forward(final Logits logits, final OffHeapArray labelsArr, final double temperature,
                 final OffHeapArray rowMask, final OffHeapArray logProbArr, final OffHeapArray entropyArr,
                 final Blocks blocks) {
        setUp(logits, labelsArr, temperature, rowMask);
        backward = false;
        logProbOut = logProbArr.segment();
        entropyOut = entropyArr == null ? null : entropyArr.segment();
        runBlocks(blocks);
    }

    /** Backward: validated arguments (see {@link io.rlvec.Engine#logProbsBackward}). */
    void backward(final Logits logits, final OffHeapArray labelsArr, final double temperature,
                  final OffHeapArray rowMask, final OffHeapArray gradLogProbArr, final OffHeapArray gradEntropyArr,
                  final OffHeapArray gradLogits, final Blocks blocks) {
        setUp(logits, labelsArr, temperature, rowMask);
        backward = true;
        gradLogProb = gradLogProbArr.segment();
        gradEntropy = gradEntropyArr == null ? null : gradEntropyArr.segment();
        grad = gradLogits.segment();
        // Store e_j in the gradient buffer and read it back in the gradient pass instead of a second exp: measured
        // faster for rows in and out of L2 alike (0.70-0.76 vs 0.87-0.98 ns/logit CPU, V = 32000 and 151936, f32
        // and bf16). In place, the logits must survive until the gradient pass: the exp is evaluated again there.
        storeExp = gradLogits.address() != logits.data().address();
        runBlocks(blocks);
    }

    private void setUp(final Logits logits, final OffHeapArray labelsArr, final double temperature,
                       final OffHeapArray rowMask) {
        x = logits.data().segment();
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
        if (stats.length < count * SLOT) {
            stats = new double[count * SLOT];
        }
        try {
            blocks.forEach(count, this);
        } finally {
            x = null;
            labels = null;
            mask = null;
            logProbOut = null;
            entropyOut = null;
            gradLogProb = null;
            gradEntropy = null;
            grad = null;
        }
    }

    /** Runs the rows of one block. */
    @Override
    public void run(final int block) {
        final int from = block * rowsPerBlock;
        final int to = Math.min(rows, from + rowsPerBlock);
        final int slot = block * SLOT;
        for (int r = from; r < to; r++) {
            if (backward) {
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
            return;
        }
        final long base = r * rowStrideBytes;
        // max(x) / t = max(x / t) (division is monotone); + 0f turns a -0 maximum into +0, whatever lane held it.
        final float m = rowMax(x, base, vocab, bf16) / t + 0f;
        // W only feeds the entropy: not accumulated when the entropy is not asked for.
        rowSums(x, base, vocab, bf16, t, mulT, invT, m, null, 0L, entropyOut != null, stats, slot);
        final double s = stats[slot];
        final double w = stats[slot + 1];
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
        final float m = rowMax(x, base, vocab, bf16) / t + 0f;
        final float gl = gradLogProb.get(F32, 4L * r) / t;
        final float ge = gradEntropy == null ? 0f : gradEntropy.get(F32, 4L * r) / t;
        // ge == 0: k = -gl for every logit, so W (mu) and the clamped c are not needed (spec: k's first case).
        final boolean ent = ge != 0f;
        final boolean store = storeExp;
        rowSums(x, base, vocab, bf16, t, mulT, invT, m, store ? grad : null, gBase, ent, stats, slot);
        final double s = stats[slot];
        final double w = stats[slot + 1];
        final float rS = (float) (1.0 / s);
        final float mu = ent ? (float) (w / s) : 0f;
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

    /** Row maximum, NaN skipped (compare + blend, style.md P13), four accumulators to hide the blend latency. */
    private static float rowMax(final MemorySegment seg, final long base, final int v, final boolean bf16) {
        // Accumulators start from a local broadcast: a static final vector as a loop phi's initial value boxes
        // every iteration (measured: one vector allocation per load).
        FloatVector m0 = FloatVector.broadcast(F, Float.NEGATIVE_INFINITY);
        FloatVector m1 = m0;
        FloatVector m2 = m0;
        FloatVector m3 = m0;
        int j = 0;
        for (; j <= v - 4 * FL; j += 4 * FL) {
            final FloatVector a = load(seg, base, j, bf16);
            final FloatVector b = load(seg, base, j + FL, bf16);
            final FloatVector c = load(seg, base, j + 2 * FL, bf16);
            final FloatVector d = load(seg, base, j + 3 * FL, bf16);
            m0 = m0.blend(a, a.compare(VectorOperators.GT, m0));
            m1 = m1.blend(b, b.compare(VectorOperators.GT, m1));
            m2 = m2.blend(c, c.compare(VectorOperators.GT, m2));
            m3 = m3.blend(d, d.compare(VectorOperators.GT, m3));
        }
        for (; j <= v - FL; j += FL) {
            final FloatVector a = load(seg, base, j, bf16);
            m0 = m0.blend(a, a.compare(VectorOperators.GT, m0));
        }
        m0 = m0.blend(m1, m1.compare(VectorOperators.GT, m0));
        m2 = m2.blend(m3, m3.compare(VectorOperators.GT, m2));
        m0 = m0.blend(m2, m2.compare(VectorOperators.GT, m0));
        // No NaN in the accumulators; the order of equal values only matters for the sign of zero, which the
        // caller normalises.
        float mx = m0.reduceLanes(VectorOperators.MAX);
        for (; j < v; j++) {
            final float a = loadScalar(seg, base, j, bf16);
            if (a > mx) {
                mx = a;
            }
        }
        return mx;
    }

    /**
     * The fused pass: {@code e_j = exp(x_j / t - m)}, {@code S = sum e_j} and {@code W = sum e_j * c_j} in the
     * canonical order (eight double lanes over {@code j < V8}, combined as {@code ((l0+l4)+(l1+l5))+((l2+l6)+(l3+l7))},
     * then the tail in order). Writes S and W to {@code out[slot]}, {@code out[slot + 1]}; stores each {@code e_j}
     * as float32 at {@code eBase} in {@code eSeg} when that is non-null.
     */
    private static void rowSums(final MemorySegment seg, final long base, final int v, final boolean bf16,
                                final float t, final boolean mulT, final float invT, final float m,
                                final MemorySegment eSeg, final long eBase, final boolean withW,
                                final double[] out, final int slot) {
        final FloatVector tv = FloatVector.broadcast(F, mulT ? invT : t);
        final FloatVector mv = FloatVector.broadcast(F, m);
        final boolean store = eSeg != null;
        // Lane groups of the canonical order, D.length() lanes each (see SUM_STEP): s0, s1 hold lanes 0-7 for
        // 8 float lanes; for 4 float lanes s0..s3 hold lanes 0-1, 2-3, 4-5, 6-7 after an even number of steps.
        // (local zero, not a static final vector: see rowMax)
        final DoubleVector zero = DoubleVector.zero(D);
        DoubleVector s0 = zero;
        DoubleVector s1 = zero;
        DoubleVector s2 = zero;
        DoubleVector s3 = zero;
        DoubleVector w0 = zero;
        DoubleVector w1 = zero;
        DoubleVector w2 = zero;
        DoubleVector w3 = zero;
        final int vv = SUM_VECTOR ? v & -SUM_STEP : 0;
        for (int j = 0; j < vv; j += FL) {
            final FloatVector x = load(seg, base, j, bf16);
            // x * (1 / t) when t is a power of two (exact, so the same bits), x / t otherwise.
            final FloatVector d = (mulT ? x.mul(tv) : x.div(tv)).sub(mv);
            final VectorMask<Float> under = d.compare(VectorOperators.LT, EXP_LO);
            final FloatVector e = expPoly(d).blend(0f, under);
            if (store) {
                e.intoMemorySegment(eSeg, eBase + 4L * j, LE);
            }
            // Widening the upper half of a vector costs more than the lower half (a lane-crossing move), about
            // a quarter of this loop at 512 bits: W's two conversions are skipped when W is not needed.
            final DoubleVector e0 = (DoubleVector) e.convertShape(VectorOperators.F2D, D, 0);
            final DoubleVector e1 = (DoubleVector) e.convertShape(VectorOperators.F2D, D, 1);
            if (FL == 8) {
                s0 = s0.add(e0);
                s1 = s1.add(e1);
            } else if (FL == 4) {
                // Elements j..j+3 are lanes 0-3 on even steps and 4-7 on odd ones: add into s0/s1, then rotate.
                final DoubleVector ns0 = s0.add(e0);
                final DoubleVector ns1 = s1.add(e1);
                s0 = s2;
                s1 = s3;
                s2 = ns0;
                s3 = ns1;
            } else {
                // 16 float lanes: both halves map onto lanes 0-7, the first half first.
                s0 = s0.add(e0).add(e1);
            }
            if (withW) {
                final FloatVector ec = e.mul(d.blend(EXP_LO, under));
                final DoubleVector q0 = (DoubleVector) ec.convertShape(VectorOperators.F2D, D, 0);
                final DoubleVector q1 = (DoubleVector) ec.convertShape(VectorOperators.F2D, D, 1);
                if (FL == 8) {
                    w0 = w0.add(q0);
                    w1 = w1.add(q1);
                } else if (FL == 4) {
                    final DoubleVector nw0 = w0.add(q0);
                    final DoubleVector nw1 = w1.add(q1);
                    w0 = w2;
                    w1 = w3;
                    w2 = nw0;
                    w3 = nw1;
                } else {
                    w0 = w0.add(q0).add(q1);
                }
            }
        }
        // The eight canonical lanes go through the block's scratch in `out` (slot + 8 .. slot + 23): a vector
        // store, then scalar reads. DoubleVector.lane() was measured to box the vector on some compiles (its
        // extract intrinsic fell back to an out-of-line call), 80-200 bytes per row.
        final int sl = slot + 8;
        final int wl = slot + 16;
        if (FL == 8) {
            s0.intoArray(out, sl);
            s1.intoArray(out, sl + 4);
            w0.intoArray(out, wl);
            w1.intoArray(out, wl + 4);
        } else if (FL == 4) {
            s0.intoArray(out, sl);
            s1.intoArray(out, sl + 2);
            s2.intoArray(out, sl + 4);
            s3.intoArray(out, sl + 6);
            w0.intoArray(out, wl);
            w1.intoArray(out, wl + 2);
            w2.intoArray(out, wl + 4);
            w3.intoArray(out, wl + 6);
        } else if (FL == 16) {
            s0.intoArray(out, sl);
            w0.intoArray(out, wl);
        } else {
            // Wider vectors: no vector loop ran (SUM_VECTOR), every lane starts at 0.
            java.util.Arrays.fill(out, sl, wl + 8, 0.0);
        }
        double l0 = out[sl];
        double l1 = out[sl + 1];
        double l2 = out[sl + 2];
        double l3 = out[sl + 3];
        double l4 = out[sl + 4];
        double l5 = out[sl + 5];
        double l6 = out[sl + 6];
        double l7 = out[sl + 7];
        double q0 = out[wl];
        double q1 = out[wl + 1];
        double q2 = out[wl + 2];
        double q3 = out[wl + 3];
        double q4 = out[wl + 4];
        double q5 = out[wl + 5];
        double q6 = out[wl + 6];
        double q7 = out[wl + 7];
        // Whole 8-chunks the vector loop did not cover (16 float lanes: at most one; wider: all), lane by lane.
        final int v8 = v - v % 8;
        for (int j = vv; j < v8; j++) {
            final float d = loadScalar(seg, base, j, bf16) / t - m;
            final float e = CanonicalMath.exp(d);
            final float ec = e * clamp(d);
            if (store) {
                eSeg.set(F32, eBase + 4L * j, e);
            }
            switch (j & 7) {
                case 0 -> { l0 += e; q0 += ec; }
                case 1 -> { l1 += e; q1 += ec; }
                case 2 -> { l2 += e; q2 += ec; }
                case 3 -> { l3 += e; q3 += ec; }
                case 4 -> { l4 += e; q4 += ec; }
                case 5 -> { l5 += e; q5 += ec; }
                case 6 -> { l6 += e; q6 += ec; }
                default -> { l7 += e; q7 += ec; }
            }
        }
        double s = ((l0 + l4) + (l1 + l5)) + ((l2 + l6) + (l3 + l7));
        double w = ((q0 + q4) + (q1 + q5)) + ((q2 + q6) + (q3 + q7));
        for (int j = v8; j < v; j++) {
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
