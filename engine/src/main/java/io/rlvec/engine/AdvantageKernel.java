package io.rlvec.engine;

import static io.rlvec.engine.TokenMemory.F32;
import static io.rlvec.engine.TokenMemory.load;

import io.rlvec.OffHeapArray;
import io.rlvec.TokenBatch;
import io.rlvec.reference.Advantages;
import java.lang.foreign.MemorySegment;
import java.util.Arrays;

import jdk.incubator.vector.DoubleVector;
import jdk.incubator.vector.FloatVector;
import jdk.incubator.vector.VectorMask;
import jdk.incubator.vector.VectorOperators;
import jdk.incubator.vector.VectorShuffle;
import jdk.incubator.vector.VectorSpecies;

/**
 * The advantage estimators' token passes ({@link Advantages.Kernels}) as Vector API loops, in the operations and
 * order of the reference's loops, so the results are the same bits.
 *
 * <ul>
 *   <li>Sums follow the canonical order of {@link Advantages}: four double lanes per sequence, token t of a
 *       sequence into lane t mod 4. Four floats are loaded and widened at a time (128-bit floats into 256-bit
 *       doubles, whatever the preferred width), so the lane of a token does not depend on the machine.</li>
 *   <li>The backward recurrences (GAE, REINFORCE++, ReMax) run across sequences: a tile of {@code Vec.FL}
 *       sequences is transposed into heap scratch (time-major, each sequence right-aligned so that every lane
 *       starts at its own last token; the slots before a shorter sequence's start are masked and never written
 *       back), the recurrence steps all lanes at once from the last row to the first, and the outputs are
 *       transposed back.</li>
 *   <li>GAE, wherever a vector holds 8 floats or more, transposes 8 x 8 blocks in registers instead (see
 *       {@code gaeBlocks}), and stores the returns with the advantages.</li>
 * </ul>
 * The tile is transposed {@code CHUNK} rows at a time, from its last rows to its first, so the scratch is small
 * and fixed: a call allocates nothing.
 */
final class AdvantageKernel implements Advantages.Kernels {
    private static final VectorSpecies<Float> F4 = FloatVector.SPECIES_128;
    private static final VectorSpecies<Double> D4 = DoubleVector.SPECIES_256;
    private static final FloatVector ZERO_F4 = FloatVector.zero(F4);
    /**
     * Zero in four double lanes, to blend with; never a loop's starting value: an accumulator that starts from a
     * constant object is boxed on every iteration (the loop merges the object with the unboxed sums), one that
     * starts from {@code DoubleVector.zero} is not.
     */
    static final DoubleVector ZERO_D4 = DoubleVector.zero(D4);
    private static final int L = Vec.FL;

    private final double[] lanes = new double[4];
    private final float[] baseline = new float[L];
    private final int[] starts = new int[Math.max(L, 8)];
    private final int[] lengths = new int[Math.max(L, 8)];
    /** Rows of a tile transposed at a time: five float[CHUNK * L] stay in L1/L2 while the recurrence runs. */
    private static final int CHUNK = 512;
    private final float[] in0 = new float[CHUNK * L];
    private final float[] in1 = new float[CHUNK * L];
    private final float[] in2 = new float[CHUNK * L];
    private final float[] out0 = new float[CHUNK * L];
    private final float[] out1 = new float[CHUNK * L];
    private final float[] row = new float[CHUNK];

    /** The in-register GAE's block: 8 x 8 floats, whenever the engine's vectors hold at least 8 floats. */
    private static final VectorSpecies<Float> S8 = FloatVector.SPECIES_256;
    private static final int B = 8;
    private static final VectorShuffle<Float> X4 = VectorShuffle.fromOp(S8, k -> k ^ 4);
    private static final VectorShuffle<Float> X2 = VectorShuffle.fromOp(S8, k -> k ^ 2);
    private static final VectorShuffle<Float> X1 = VectorShuffle.fromOp(S8, k -> k ^ 1);
    private static final VectorMask<Float> M4 = VectorMask.fromLong(S8, 0xF0);
    private static final VectorMask<Float> M2 = VectorMask.fromLong(S8, 0xCC);
    private static final VectorMask<Float> M1 = VectorMask.fromLong(S8, 0xAA);
    private final int[] pads = new int[Math.max(L, B)];
    /**
     * Rows of a tile copied and transposed at a time (a multiple of B). A sequence's run is 4 KB of contiguous
     * tokens per column, so the tile's columns are read almost as one stream (runs of 64 tokens, 256 B, were
     * 20-35% slower, and the old scalar transposition of 512-row chunks 30-50% slower); the five float[RUN * B]
     * (160 KB) stay in L2 while the recurrence runs.
     */
    private static final int RUN = 1024;
    private final float[] blockR = new float[RUN * B];
    private final float[] blockV = new float[RUN * B];
    private final float[] blockM = new float[RUN * B];
    private final float[] blockA = new float[RUN * B];
    private final float[] blockT = new float[RUN * B];

    @Override
    public void rowSums(final TokenBatch batch, final OffHeapArray x, final float[] out) {
        final MemorySegment xs = x.segment();
        final int b = batch.numSequences();
        int i = 0;
        // Two sequences at a time over their common length: two independent chains of additions, each in its
        // sequence's canonical order.
        for (; i + 2 <= b; i += 2) {
            final int s0 = batch.offset(i);
            final int s1 = batch.offset(i + 1);
            final int e1 = batch.offset(i + 2);
            final int common = Math.min(s1 - s0, e1 - s1) & ~3;
            DoubleVector acc0 = DoubleVector.zero(D4);
            DoubleVector acc1 = acc0;
            for (int k = 0; k < common; k += 4) {
                acc0 = plus(acc0, widen(xs, s0 + k));
                acc1 = plus(acc1, widen(xs, s1 + k));
            }
            int t = s0 + common;
            for (; t + 4 <= s1; t += 4) {
                acc0 = plus(acc0, widen(xs, t));
            }
            acc0.intoArray(lanes, 0);
            out[i] = rowTail(xs, s0, t, s1);
            t = s1 + common;
            for (; t + 4 <= e1; t += 4) {
                acc1 = plus(acc1, widen(xs, t));
            }
            acc1.intoArray(lanes, 0);
            out[i + 1] = rowTail(xs, s1, t, e1);
        }
        for (; i < b; i++) {
            final int start = batch.offset(i);
            final int end = batch.offset(i + 1);
            DoubleVector acc = DoubleVector.zero(D4);
            int t = start;
            for (; t + 4 <= end; t += 4) {
                acc = plus(acc, widen(xs, t));
            }
            acc.intoArray(lanes, 0);
            out[i] = rowTail(xs, start, t, end);
        }
    }

    /** Adds tokens {@code [t, end)} to {@code lanes} (the row's four sums so far) and returns the row's sum. */
    private float rowTail(final MemorySegment xs, final int start, final int t, final int end) {
        for (int u = t; u < end; u++) {
            lanes[(u - start) & 3] += xs.getAtIndex(F32, u);
        }
        return (float) Advantages.combine(lanes[0], lanes[1], lanes[2], lanes[3]);
    }

    @Override
    public double maskedSum(final TokenBatch batch, final OffHeapArray x) {
        return maskedMoment(batch, x, 0.0, false, null);
    }

    @Override
    public double maskedSquares(final TokenBatch batch, final OffHeapArray x, final double mean) {
        return maskedMoment(batch, x, mean, true, null);
    }

    /**
     * The canonical masked sum of x (or of its squared deviations from {@code mean}): each sequence's sum (into
     * {@code rows}, when given), and their total in sequence order.
     */
    private double maskedMoment(final TokenBatch batch, final OffHeapArray x, final double mean,
                                final boolean squares, final double[] rows) {
        final MemorySegment xs = x.segment();
        final MemorySegment ms = batch.mask().segment();
        final int b = batch.numSequences();
        double total = 0;
        int i = 0;
        // Two sequences at a time over their common length (two independent chains of additions, each in its
        // sequence's canonical order); the sequences' sums join the total in sequence order.
        for (; i + 2 <= b; i += 2) {
            final int s0 = batch.offset(i);
            final int s1 = batch.offset(i + 1);
            final int e1 = batch.offset(i + 2);
            final int common = Math.min(s1 - s0, e1 - s1) & ~3;
            DoubleVector acc0 = DoubleVector.zero(D4);
            DoubleVector acc1 = DoubleVector.zero(D4);
            for (int k = 0; k < common; k += 4) {
                acc0 = plus(acc0, moment(xs, ms, s0 + k, mean, squares));
                acc1 = plus(acc1, moment(xs, ms, s1 + k, mean, squares));
            }
            int t = s0 + common;
            for (; t + 4 <= s1; t += 4) {
                acc0 = plus(acc0, moment(xs, ms, t, mean, squares));
            }
            acc0.intoArray(lanes, 0);
            total += row(rows, i, momentTail(xs, ms, s0, t, s1, mean, squares));
            t = s1 + common;
            for (; t + 4 <= e1; t += 4) {
                acc1 = plus(acc1, moment(xs, ms, t, mean, squares));
            }
            acc1.intoArray(lanes, 0);
            total += row(rows, i + 1, momentTail(xs, ms, s1, t, e1, mean, squares));
        }
        for (; i < b; i++) {
            final int start = batch.offset(i);
            final int end = batch.offset(i + 1);
            DoubleVector acc = DoubleVector.zero(D4);
            int t = start;
            for (; t + 4 <= end; t += 4) {
                acc = plus(acc, moment(xs, ms, t, mean, squares));
            }
            acc.intoArray(lanes, 0);
            total += row(rows, i, momentTail(xs, ms, start, t, end, mean, squares));
        }
        return total;
    }

    /** @return {@code value}, stored into {@code rows[i]} first when there are rows. */
    private static double row(final double[] rows, final int i, final double value) {
        if (rows != null) {
            rows[i] = value;
        }
        return value;
    }

    /**
     * Which of the four mask values at byte offset {@code at} are non-zero, as double lanes: the floats widened and
     * compared in double (NaN valid, -0.0 not, as {@code mask != 0f}). A float 128-bit mask cast to the 256-bit
     * double species is not intrinsified by C2 on AVX-512 (the blend it feeds then boxes every vector); a
     * conversion of the values is.
     */
    static VectorMask<Double> validLanes(final MemorySegment mask, final long at) {
        return ((DoubleVector) FloatVector.fromMemorySegment(F4, mask, at, Vec.LE)
            .convertShape(VectorOperators.F2D, D4, 0)).compare(VectorOperators.NE, 0.0);
    }

    /**
     * Tokens t .. t + 3's masked values (or squared deviations from {@code mean}), widened to doubles. A plain
     * value is masked in float lanes before its one widening (+0.0 where masked either way).
     */
    private static DoubleVector moment(final MemorySegment xs, final MemorySegment ms, final int t, final double mean,
                                       final boolean squares) {
        final long at = (long) t * Float.BYTES;
        if (!squares) {
            final FloatVector m = FloatVector.fromMemorySegment(F4, ms, at, Vec.LE);
            return (DoubleVector) FloatVector.fromMemorySegment(F4, xs, at, Vec.LE)
                .blend(ZERO_F4, m.compare(VectorOperators.EQ, ZERO_F4)).convertShape(VectorOperators.F2D, D4, 0);
        }
        final DoubleVector d = widen(xs, t).lanewise(VectorOperators.SUB, DoubleVector.broadcast(D4, mean));
        return ZERO_D4.blend(d.lanewise(VectorOperators.MUL, d), validLanes(ms, at));
    }

    /** Adds tokens {@code [t, end)} to {@code lanes} (the sequence's four sums so far); returns their combination. */
    private double momentTail(final MemorySegment xs, final MemorySegment ms, final int start, final int t,
                              final int end, final double mean, final boolean squares) {
        for (int u = t; u < end; u++) {
            if (ms.getAtIndex(F32, u) != 0) {
                final double v = xs.getAtIndex(F32, u);
                final double d = v - mean;
                lanes[(u - start) & 3] += squares ? d * d : v;
            }
        }
        return Advantages.combine(lanes[0], lanes[1], lanes[2], lanes[3]);
    }

    /**
     * {@code acc + x} through the method each vector class overrides ({@code lanewise}), dispatched on this call
     * site's own type profile. The four-lane code never calls a Vector API convenience method ({@code add},
     * {@code sub}, {@code blend(float, mask)}, ...) on a vector C2 cannot type exactly (a load or a conversion):
     * those dispatch inside the JDK, on a bytecode whose profile every species in the JVM shares, and when C2
     * cannot speculate there (a trap recorded by any earlier compilation), the profile lists both the 128/256-bit
     * classes of this code and the preferred-width classes of the token kernels, the call is compiled for both,
     * and the merged vector is boxed on every iteration (64 B per four tokens in geo_mean at (8, 512), in some
     * fresh JVMs). Kept off those bytecodes, these species no longer pollute the token kernels' profiles either.
     * The one exception is {@code intoArray}, once per row after its loop: four {@code lane(k)} reads instead made
     * bypass_mode at (8, 512) 45% slower (46-49 against 31-35 us per call).
     */
    static DoubleVector plus(final DoubleVector acc, final DoubleVector x) {
        return acc.lanewise(VectorOperators.ADD, x);
    }

    private static DoubleVector widen(final MemorySegment s, final int t) {
        return (DoubleVector) FloatVector.fromMemorySegment(F4, s, (long) t * Float.BYTES, Vec.LE)
            .convertShape(VectorOperators.F2D, D4, 0);
    }

    @Override
    public void maskedRowSums(final TokenBatch batch, final OffHeapArray x, final double[] out) {
        maskedMoment(batch, x, 0.0, false, out);
    }

    @Override
    public void subtractScaled(final TokenBatch batch, final OffHeapArray a, final float beta, final OffHeapArray b,
                               final OffHeapArray out) {
        final MemorySegment as = a.segment();
        final MemorySegment bs = b.segment();
        final MemorySegment os = out.segment();
        final int n = batch.numTokens();
        int t = 0;
        for (; t + L <= n; t += L) {
            load(as, t).sub(load(bs, t).mul(beta)).intoMemorySegment(os, (long) t * Float.BYTES, Vec.LE);
        }
        for (; t < n; t++) {
            os.setAtIndex(F32, t, as.getAtIndex(F32, t) - beta * bs.getAtIndex(F32, t));
        }
    }

    @Override
    public void broadcast(final TokenBatch batch, final float[] perSeq, final OffHeapArray out,
                          final OffHeapArray copy) {
        final MemorySegment ms = batch.mask().segment();
        final MemorySegment os = out.segment();
        // Without a copy, the second store goes to the same place (one loop, no branch in it).
        final MemorySegment cs = copy != null ? copy.segment() : os;
        for (int i = 0; i < batch.numSequences(); i++) {
            final int end = batch.offset(i + 1);
            final float a = perSeq[i];
            final FloatVector av = FloatVector.broadcast(Vec.F, a);
            int t = batch.offset(i);
            for (; t + L <= end; t += L) {
                final FloatVector v = av.mul(load(ms, t));
                v.intoMemorySegment(os, (long) t * Float.BYTES, Vec.LE);
                v.intoMemorySegment(cs, (long) t * Float.BYTES, Vec.LE);
            }
            for (; t < end; t++) {
                final float v = a * ms.getAtIndex(F32, t);
                os.setAtIndex(F32, t, v);
                cs.setAtIndex(F32, t, v);
            }
        }
    }

    @Override
    public void affine(final TokenBatch batch, final OffHeapArray x, final float shift, final float scale,
                       final boolean timesMask, final OffHeapArray out) {
        final MemorySegment xs = x.segment();
        final MemorySegment ms = batch.mask().segment();
        final MemorySegment os = out.segment();
        final int n = batch.numTokens();
        int t = 0;
        for (; t + L <= n; t += L) {
            FloatVector v = load(xs, t).sub(shift).mul(scale);
            if (timesMask) {
                v = v.mul(load(ms, t));
            }
            v.intoMemorySegment(os, (long) t * Float.BYTES, Vec.LE);
        }
        for (; t < n; t++) {
            float v = (xs.getAtIndex(F32, t) - shift) * scale;
            if (timesMask) {
                v *= ms.getAtIndex(F32, t);
            }
            os.setAtIndex(F32, t, v);
        }
    }

    @Override
    public void gae(final TokenBatch batch, final float gamma, final float gammaLam, final OffHeapArray rewards,
                    final OffHeapArray values, final OffHeapArray adv, final OffHeapArray ret) {
        if (L >= B) {
            gaeBlocks(batch, gamma, gammaLam, rewards.segment(), values.segment(), adv.segment(), ret.segment());
            return;
        }
        final MemorySegment ms = batch.mask().segment();
        for (int first = 0; first < batch.numSequences(); first += L) {
            final int rows = tile(batch, first);
            FloatVector next = FloatVector.zero(Vec.F);
            FloatVector last = next;
            for (int hi = rows; hi > 0; hi -= CHUNK) {
                final int lo = Math.max(0, hi - CHUNK);
                gather(rows, lo, hi, rewards.segment(), values.segment(), ms);
                for (int row = hi - lo - 1; row >= 0; row--) {
                    final int at = row * L;
                    final FloatVector v = FloatVector.fromArray(Vec.F, in1, at);
                    final FloatVector delta = FloatVector.fromArray(Vec.F, in0, at).add(next.mul(gamma)).sub(v);
                    final FloatVector candidate = delta.add(last.mul(gammaLam));
                    final VectorMask<Float> valid = FloatVector.fromArray(Vec.F, in2, at)
                        .compare(VectorOperators.NE, 0f);
                    next = next.blend(v, valid);
                    last = last.blend(candidate, valid);
                    last.intoArray(out0, at);
                }
                scatter(rows, lo, hi, adv.segment(), null);
            }
        }
        // returns = advantages + values, in the batch's own layout (one transposition fewer).
        final MemorySegment as = adv.segment();
        final MemorySegment vs = values.segment();
        final MemorySegment os = ret.segment();
        final int n = batch.numTokens();
        int t = 0;
        for (; t + L <= n; t += L) {
            load(as, t).add(load(vs, t)).intoMemorySegment(os, (long) t * Float.BYTES, Vec.LE);
        }
        for (; t < n; t++) {
            os.setAtIndex(F32, t, as.getAtIndex(F32, t) + vs.getAtIndex(F32, t));
        }
    }

    /**
     * GAE over tiles of {@code B} sequences, {@code RUN} rows at a time, transposed in registers. Each sequence's
     * {@code RUN} tokens of a run are copied with contiguous vector loads into a sequence-major scratch (one
     * sequence after the other: reading the {@code B} sequences side by side instead, whose tokens lie a whole
     * sequence apart, makes the loads compete for the same cache sets); {@code B x B} blocks of it are
     * transposed (three permute-and-blend stages) into time-major rows; the recurrence steps them from the last
     * row to the first; the advantages are transposed back and stored, with the returns ({@code advantage +
     * value}), sequence by sequence. Rows are right-aligned to a multiple of {@code B}; a block that holds a
     * sequence's first token is zero before it (so those slots are masked) and writes back only the sequence's own
     * tokens.
     */
    private void gaeBlocks(final TokenBatch batch, final float gamma, final float gammaLam, final MemorySegment rs,
                           final MemorySegment vs, final MemorySegment as, final MemorySegment os) {
        final MemorySegment ms = batch.mask().segment();
        final float[] r = blockR;
        final float[] v = blockV;
        final float[] m = blockM;
        final float[] a = blockA;
        for (int first = 0; first < batch.numSequences(); first += B) {
            final int rows = tileOf(batch, first, B);
            final int height = (rows + B - 1) / B * B;
            for (int l = 0; l < B; l++) {
                pads[l] = height - lengths[l];
            }
            FloatVector next = FloatVector.zero(S8);
            FloatVector last = next;
            for (int hi = height; hi > 0; hi -= RUN) {
                final int lo = Math.max(0, hi - RUN);
                final int n = hi - lo;
                transposeIn(rs, lo, n, r);
                transposeIn(vs, lo, n, v);
                transposeIn(ms, lo, n, m);
                for (int row = n - 1; row >= 0; row--) {
                    final int at = row * B;
                    final FloatVector value = FloatVector.fromArray(S8, v, at);
                    final FloatVector delta = FloatVector.fromArray(S8, r, at).add(next.mul(gamma)).sub(value);
                    final FloatVector candidate = delta.add(last.mul(gammaLam));
                    final VectorMask<Float> valid = FloatVector.fromArray(S8, m, at).compare(VectorOperators.NE, 0f);
                    next = next.blend(value, valid);
                    last = last.blend(candidate, valid);
                    last.intoArray(a, at);
                }
                transposeOut(lo, n, vs, as, os);
            }
        }
    }

    /** Rows {@code lo .. lo + n - 1} of {@code x}'s tile, transposed into {@code dst} (time-major, B per row). */
    private void transposeIn(final MemorySegment x, final int lo, final int n, final float[] dst) {
        final float[] seqs = blockT;
        for (int l = 0; l < B; l++) {
            final int pad = pads[l];
            final int base = l * RUN;
            for (int k = 0; k < n; k += B) {
                final int r0 = lo + k;
                if (r0 >= pad) {
                    FloatVector.fromMemorySegment(S8, x, (long) (starts[l] + r0 - pad) * Float.BYTES, Vec.LE)
                        .intoArray(seqs, base + k);
                } else {
                    // The block holds the sequence's first token (or none): zero before it.
                    final int skip = pad - r0;
                    Arrays.fill(seqs, base + k, base + k + Math.min(skip, B), 0f);
                    if (skip < B) {
                        MemorySegment.copy(x, F32, (long) starts[l] * Float.BYTES, seqs, base + k + skip, B - skip);
                    }
                }
            }
        }
        transpose(n, seqs, 1, RUN, dst, B, B);
    }

    /** Transposes the run's advantages back to the sequences and stores them and the returns. */
    private void transposeOut(final int lo, final int n, final MemorySegment vs, final MemorySegment as,
                              final MemorySegment os) {
        final float[] seqs = blockT;
        transpose(n, blockA, B, B, seqs, 1, RUN);
        for (int l = 0; l < B; l++) {
            final int pad = pads[l];
            final int base = l * RUN;
            for (int k = 0; k < n; k += B) {
                final int r0 = lo + k;
                if (r0 >= pad) {
                    final long at = (long) (starts[l] + r0 - pad) * Float.BYTES;
                    final FloatVector out = FloatVector.fromArray(S8, seqs, base + k);
                    out.intoMemorySegment(as, at, Vec.LE);
                    out.add(FloatVector.fromMemorySegment(S8, vs, at, Vec.LE)).intoMemorySegment(os, at, Vec.LE);
                } else if (pad - r0 < B) {
                    final int skip = pad - r0;
                    final int from = base + k + skip;
                    final long at = (long) starts[l] * Float.BYTES;
                    MemorySegment.copy(seqs, from, as, F32, at, B - skip);
                    for (int i = 0; i < B - skip; i++) {
                        os.setAtIndex(F32, starts[l] + i, seqs[from + i] + vs.getAtIndex(F32, starts[l] + i));
                    }
                }
            }
        }
    }

    /**
     * Transposes the {@code n / B} blocks of {@code B x B} floats of {@code src} into {@code dst}: block j's row i
     * starts at {@code src[j * B * srcStep + i * srcStride]} and its transpose's row i at {@code dst[j * B *
     * dstStep + i * dstStride]}; row k of a transposed block = lane k of every row. The off-diagonal halves, then
     * quarters, then single lanes swap places. The loop over blocks is in here, so the permutations and blend
     * masks are set up once per call, and vectors never cross a call (a call C2 does not inline would box them).
     */
    private static void transpose(final int n, final float[] src, final int srcStep, final int srcStride,
                                  final float[] dst, final int dstStep, final int dstStride) {
        for (int k = 0; k < n; k += B) {
            final int from = k * srcStep;
            final int to = k * dstStep;
            final FloatVector a0 = FloatVector.fromArray(S8, src, from);
            final FloatVector a1 = FloatVector.fromArray(S8, src, from + srcStride);
            final FloatVector a2 = FloatVector.fromArray(S8, src, from + 2 * srcStride);
            final FloatVector a3 = FloatVector.fromArray(S8, src, from + 3 * srcStride);
            final FloatVector a4 = FloatVector.fromArray(S8, src, from + 4 * srcStride);
            final FloatVector a5 = FloatVector.fromArray(S8, src, from + 5 * srcStride);
            final FloatVector a6 = FloatVector.fromArray(S8, src, from + 6 * srcStride);
            final FloatVector a7 = FloatVector.fromArray(S8, src, from + 7 * srcStride);
            final FloatVector b0 = a0.blend(a4.rearrange(X4), M4);
            final FloatVector b4 = a0.rearrange(X4).blend(a4, M4);
            final FloatVector b1 = a1.blend(a5.rearrange(X4), M4);
            final FloatVector b5 = a1.rearrange(X4).blend(a5, M4);
            final FloatVector b2 = a2.blend(a6.rearrange(X4), M4);
            final FloatVector b6 = a2.rearrange(X4).blend(a6, M4);
            final FloatVector b3 = a3.blend(a7.rearrange(X4), M4);
            final FloatVector b7 = a3.rearrange(X4).blend(a7, M4);
            final FloatVector c0 = b0.blend(b2.rearrange(X2), M2);
            final FloatVector c2 = b0.rearrange(X2).blend(b2, M2);
            final FloatVector c1 = b1.blend(b3.rearrange(X2), M2);
            final FloatVector c3 = b1.rearrange(X2).blend(b3, M2);
            final FloatVector c4 = b4.blend(b6.rearrange(X2), M2);
            final FloatVector c6 = b4.rearrange(X2).blend(b6, M2);
            final FloatVector c5 = b5.blend(b7.rearrange(X2), M2);
            final FloatVector c7 = b5.rearrange(X2).blend(b7, M2);
            c0.blend(c1.rearrange(X1), M1).intoArray(dst, to);
            c0.rearrange(X1).blend(c1, M1).intoArray(dst, to + dstStride);
            c2.blend(c3.rearrange(X1), M1).intoArray(dst, to + 2 * dstStride);
            c2.rearrange(X1).blend(c3, M1).intoArray(dst, to + 3 * dstStride);
            c4.blend(c5.rearrange(X1), M1).intoArray(dst, to + 4 * dstStride);
            c4.rearrange(X1).blend(c5, M1).intoArray(dst, to + 5 * dstStride);
            c6.blend(c7.rearrange(X1), M1).intoArray(dst, to + 6 * dstStride);
            c6.rearrange(X1).blend(c7, M1).intoArray(dst, to + 7 * dstStride);
        }
    }

    @Override
    public void discountedReturns(final TokenBatch batch, final float gamma, final boolean carry,
                                  final OffHeapArray rewards, final OffHeapArray ret) {
        final MemorySegment ms = batch.mask().segment();
        for (int first = 0; first < batch.numSequences(); first += L) {
            final int rows = tile(batch, first);
            FloatVector run = FloatVector.zero(Vec.F);
            for (int hi = rows; hi > 0; hi -= CHUNK) {
                final int lo = Math.max(0, hi - CHUNK);
                gather(rows, lo, hi, rewards.segment(), null, ms);
                for (int row = hi - lo - 1; row >= 0; row--) {
                    final int at = row * L;
                    final FloatVector m = FloatVector.fromArray(Vec.F, in2, at);
                    final FloatVector fresh = FloatVector.fromArray(Vec.F, in0, at).add(run.mul(gamma));
                    if (carry) {
                        fresh.mul(m).intoArray(out0, at);
                        run = run.blend(fresh, m.compare(VectorOperators.NE, 0f));
                    } else {
                        fresh.intoArray(out0, at);
                        run = fresh.mul(m);
                    }
                }
                scatter(rows, lo, hi, ret.segment(), null);
            }
        }
    }

    @Override
    public void remax(final TokenBatch batch, final OffHeapArray rewards, final OffHeapArray baselines,
                      final OffHeapArray ret, final OffHeapArray adv) {
        final MemorySegment ms = batch.mask().segment();
        final MemorySegment bs = baselines.segment();
        for (int first = 0; first < batch.numSequences(); first += L) {
            final int rows = tile(batch, first);
            for (int l = 0; l < L; l++) {
                baseline[l] = lengths[l] > 0 ? bs.getAtIndex(F32, first + l) : 0f;
            }
            final FloatVector base = FloatVector.fromArray(Vec.F, baseline, 0);
            FloatVector acc = FloatVector.zero(Vec.F);
            for (int hi = rows; hi > 0; hi -= CHUNK) {
                final int lo = Math.max(0, hi - CHUNK);
                gather(rows, lo, hi, rewards.segment(), null, ms);
                for (int row = hi - lo - 1; row >= 0; row--) {
                    final int at = row * L;
                    final FloatVector m = FloatVector.fromArray(Vec.F, in2, at);
                    acc = acc.add(FloatVector.fromArray(Vec.F, in0, at).mul(m));
                    acc.intoArray(out0, at);
                    acc.sub(base.mul(m)).intoArray(out1, at);
                }
                scatter(rows, lo, hi, ret.segment(), adv.segment());
            }
        }
    }

    /**
     * Records the tile of sequences {@code first .. first + L - 1} (those that exist: the others have length 0)
     * and returns its row count, its longest sequence. Sequences are right-aligned: lane l's token k sits at row
     * {@code rows - length_l + k}.
     */
    private int tile(final TokenBatch batch, final int first) {
        return tileOf(batch, first, L);
    }

    private int tileOf(final TokenBatch batch, final int first, final int width) {
        int rows = 0;
        for (int l = 0; l < width; l++) {
            final int i = first + l;
            if (i < batch.numSequences()) {
                starts[l] = batch.offset(i);
                lengths[l] = batch.offset(i + 1) - starts[l];
            } else {
                starts[l] = 0;
                lengths[l] = 0;
            }
            rows = Math.max(rows, lengths[l]);
        }
        return rows;
    }

    /**
     * Transposes rows {@code [lo, hi)} of the tile into in0 (x), in1 (y, if given) and in2 (mask), time-major from
     * row lo; rows before a lane's first token are zero (masked).
     */
    private void gather(final int rows, final int lo, final int hi, final MemorySegment x, final MemorySegment y,
                        final MemorySegment mask) {
        for (int l = 0; l < L; l++) {
            final int pad = rows - lengths[l];
            final int from = Math.max(lo, pad);
            for (int r = lo; r < Math.min(hi, pad); r++) {
                final int at = (r - lo) * L + l;
                in0[at] = 0f;
                in1[at] = 0f;
                in2[at] = 0f;
            }
            if (from >= hi) {
                continue;
            }
            final long offset = (long) (starts[l] + from - pad) * Float.BYTES;
            final int len = hi - from;
            final int at = (from - lo) * L + l;
            transposeIn(x, offset, len, in0, at);
            if (y != null) {
                transposeIn(y, offset, len, in1, at);
            }
            transposeIn(mask, offset, len, in2, at);
        }
    }

    /** Writes rows {@code [lo, hi)} of out0 (and out1, if {@code second} is given) back to the lanes' tokens. */
    private void scatter(final int rows, final int lo, final int hi, final MemorySegment firstOut,
                         final MemorySegment second) {
        for (int l = 0; l < L; l++) {
            final int pad = rows - lengths[l];
            final int from = Math.max(lo, pad);
            if (from >= hi) {
                continue;
            }
            final long offset = (long) (starts[l] + from - pad) * Float.BYTES;
            final int len = hi - from;
            final int at = (from - lo) * L + l;
            transposeOut(out0, at, len, firstOut, offset);
            if (second != null) {
                transposeOut(out1, at, len, second, offset);
            }
        }
    }

    private void transposeIn(final MemorySegment src, final long from, final int len, final float[] dst,
                             final int first) {
        MemorySegment.copy(src, F32, from, row, 0, len);
        final float[] r = row;
        for (int k = 0, at = first; k < len; k++, at += L) {
            dst[at] = r[k];
        }
    }

    private void transposeOut(final float[] src, final int first, final int len, final MemorySegment dst,
                              final long to) {
        final float[] r = row;
        for (int k = 0, at = first; k < len; k++, at += L) {
            r[k] = src[at];
        }
        MemorySegment.copy(r, 0, dst, F32, to, len);
    }

    @Override
    public String toString() {
        return "AdvantageKernel{lanes=" + L + ", scratch=" + CHUNK + ", " + Arrays.toString(lengths) + "}";
    }
}
