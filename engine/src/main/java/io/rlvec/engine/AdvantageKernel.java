package io.rlvec.engine;

import static io.rlvec.engine.TokenMemory.F32;
import static io.rlvec.engine.TokenMemory.load;
import static io.rlvec.engine.TokenMemory.store;

import io.rlvec.OffHeapArray;
import io.rlvec.TokenBatch;
import io.rlvec.reference.Advantages;
import java.lang.foreign.MemorySegment;
import java.util.Arrays;

import jdk.incubator.vector.DoubleVector;
import jdk.incubator.vector.FloatVector;
import jdk.incubator.vector.VectorMask;
import jdk.incubator.vector.VectorOperators;
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
 * </ul>
 * Scratch grows with the largest tile seen and is then reused: a call allocates nothing.
 */
final class AdvantageKernel implements Advantages.Kernels {
    private static final VectorSpecies<Float> F4 = FloatVector.SPECIES_128;
    private static final VectorSpecies<Double> D4 = DoubleVector.SPECIES_256;
    private static final int L = Vec.FL;

    private final double[] lanes = new double[4];
    private final float[] baseline = new float[L];
    private final int[] starts = new int[L];
    private final int[] lengths = new int[L];
    private float[] in0 = new float[0];
    private float[] in1 = new float[0];
    private float[] in2 = new float[0];
    private float[] out0 = new float[0];
    private float[] out1 = new float[0];

    @Override
    public void rowSums(final TokenBatch batch, final OffHeapArray x, final float[] out) {
        final MemorySegment xs = x.segment();
        for (int i = 0; i < batch.numSequences(); i++) {
            final int start = batch.offset(i);
            final int end = batch.offset(i + 1);
            DoubleVector acc = DoubleVector.zero(D4);
            int t = start;
            for (; t + 4 <= end; t += 4) {
                acc = acc.add(widen(xs, t));
            }
            acc.intoArray(lanes, 0);
            for (; t < end; t++) {
                lanes[(t - start) & 3] += xs.getAtIndex(F32, t);
            }
            out[i] = (float) Advantages.combine(lanes[0], lanes[1], lanes[2], lanes[3]);
        }
    }

    @Override
    public double maskedSum(final TokenBatch batch, final OffHeapArray x) {
        return maskedMoment(batch, x, 0.0, false);
    }

    @Override
    public double maskedSquares(final TokenBatch batch, final OffHeapArray x, final double mean) {
        return maskedMoment(batch, x, mean, true);
    }

    private double maskedMoment(final TokenBatch batch, final OffHeapArray x, final double mean,
                                final boolean squares) {
        final MemorySegment xs = x.segment();
        final MemorySegment ms = batch.mask().segment();
        final DoubleVector zero = DoubleVector.zero(D4);
        double total = 0;
        for (int i = 0; i < batch.numSequences(); i++) {
            final int start = batch.offset(i);
            final int end = batch.offset(i + 1);
            DoubleVector acc = zero;
            int t = start;
            for (; t + 4 <= end; t += 4) {
                final VectorMask<Double> valid = FloatVector.fromMemorySegment(F4, ms, (long) t * Float.BYTES, Vec.LE)
                    .compare(VectorOperators.NE, 0f).cast(D4);
                DoubleVector v = widen(xs, t);
                if (squares) {
                    final DoubleVector d = v.sub(mean);
                    v = d.mul(d);
                }
                acc = acc.add(zero.blend(v, valid));
            }
            acc.intoArray(lanes, 0);
            for (; t < end; t++) {
                if (ms.getAtIndex(F32, t) != 0) {
                    final double v = xs.getAtIndex(F32, t);
                    final double d = v - mean;
                    lanes[(t - start) & 3] += squares ? d * d : v;
                }
            }
            total += Advantages.combine(lanes[0], lanes[1], lanes[2], lanes[3]);
        }
        return total;
    }

    private static DoubleVector widen(final MemorySegment s, final int t) {
        return (DoubleVector) FloatVector.fromMemorySegment(F4, s, (long) t * Float.BYTES, Vec.LE)
            .convertShape(VectorOperators.F2D, D4, 0);
    }

    @Override
    public void maskedRowSums(final TokenBatch batch, final OffHeapArray x, final double[] out) {
        final MemorySegment xs = x.segment();
        final MemorySegment ms = batch.mask().segment();
        final DoubleVector zero = DoubleVector.zero(D4);
        for (int i = 0; i < batch.numSequences(); i++) {
            final int start = batch.offset(i);
            final int end = batch.offset(i + 1);
            DoubleVector acc = zero;
            int t = start;
            for (; t + 4 <= end; t += 4) {
                final VectorMask<Double> valid = FloatVector.fromMemorySegment(F4, ms, (long) t * Float.BYTES, Vec.LE)
                    .compare(VectorOperators.NE, 0f).cast(D4);
                acc = acc.add(zero.blend(widen(xs, t), valid));
            }
            acc.intoArray(lanes, 0);
            for (; t < end; t++) {
                if (ms.getAtIndex(F32, t) != 0) {
                    lanes[(t - start) & 3] += xs.getAtIndex(F32, t);
                }
            }
            out[i] = Advantages.combine(lanes[0], lanes[1], lanes[2], lanes[3]);
        }
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
            store(load(as, t).sub(load(bs, t).mul(beta)), os, t);
        }
        for (; t < n; t++) {
            os.setAtIndex(F32, t, as.getAtIndex(F32, t) - beta * bs.getAtIndex(F32, t));
        }
    }

    @Override
    public void broadcast(final TokenBatch batch, final float[] perSeq, final OffHeapArray out) {
        final MemorySegment ms = batch.mask().segment();
        final MemorySegment os = out.segment();
        for (int i = 0; i < batch.numSequences(); i++) {
            final int end = batch.offset(i + 1);
            final float a = perSeq[i];
            final FloatVector av = FloatVector.broadcast(Vec.F, a);
            int t = batch.offset(i);
            for (; t + L <= end; t += L) {
                store(av.mul(load(ms, t)), os, t);
            }
            for (; t < end; t++) {
                os.setAtIndex(F32, t, a * ms.getAtIndex(F32, t));
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
            store(v, os, t);
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
        final MemorySegment ms = batch.mask().segment();
        for (int first = 0; first < batch.numSequences(); first += L) {
            final int rows = gather(batch, first, rewards.segment(), values.segment(), ms);
            FloatVector next = FloatVector.zero(Vec.F);
            FloatVector last = next;
            for (int row = rows - 1; row >= 0; row--) {
                final int at = row * L;
                final FloatVector v = FloatVector.fromArray(Vec.F, in1, at);
                final FloatVector delta = FloatVector.fromArray(Vec.F, in0, at).add(next.mul(gamma)).sub(v);
                final FloatVector candidate = delta.add(last.mul(gammaLam));
                final VectorMask<Float> valid = FloatVector.fromArray(Vec.F, in2, at).compare(VectorOperators.NE, 0f);
                next = next.blend(v, valid);
                last = last.blend(candidate, valid);
                last.intoArray(out0, at);
                last.add(v).intoArray(out1, at);
            }
            scatter(rows, adv.segment(), ret.segment());
        }
    }

    @Override
    public void discountedReturns(final TokenBatch batch, final float gamma, final boolean carry,
                                  final OffHeapArray rewards, final OffHeapArray ret) {
        final MemorySegment ms = batch.mask().segment();
        for (int first = 0; first < batch.numSequences(); first += L) {
            final int rows = gather(batch, first, rewards.segment(), null, ms);
            FloatVector run = FloatVector.zero(Vec.F);
            for (int row = rows - 1; row >= 0; row--) {
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
            scatter(rows, ret.segment(), null);
        }
    }

    @Override
    public void remax(final TokenBatch batch, final OffHeapArray rewards, final OffHeapArray baselines,
                      final OffHeapArray ret, final OffHeapArray adv) {
        final MemorySegment ms = batch.mask().segment();
        final MemorySegment bs = baselines.segment();
        for (int first = 0; first < batch.numSequences(); first += L) {
            final int rows = gather(batch, first, rewards.segment(), null, ms);
            for (int l = 0; l < L; l++) {
                baseline[l] = lengths[l] > 0 ? bs.getAtIndex(F32, first + l) : 0f;
            }
            final FloatVector base = FloatVector.fromArray(Vec.F, baseline, 0);
            FloatVector acc = FloatVector.zero(Vec.F);
            for (int row = rows - 1; row >= 0; row--) {
                final int at = row * L;
                final FloatVector m = FloatVector.fromArray(Vec.F, in2, at);
                acc = acc.add(FloatVector.fromArray(Vec.F, in0, at).mul(m));
                acc.intoArray(out0, at);
                acc.sub(base.mul(m)).intoArray(out1, at);
            }
            scatter(rows, ret.segment(), adv.segment());
        }
    }

    /**
     * Transposes the tile of sequences {@code first .. first + L - 1} (those that exist) into in0 (x), in1 (y, if
     * given) and in2 (mask), time-major and right-aligned; returns the tile's row count (its longest sequence).
     */
    private int gather(final TokenBatch batch, final int first, final MemorySegment x, final MemorySegment y,
                       final MemorySegment mask) {
        int rows = 0;
        for (int l = 0; l < L; l++) {
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
        final int size = rows * L;
        if (in0.length < size) {
            in0 = new float[size];
            in1 = new float[size];
            in2 = new float[size];
            out0 = new float[size];
            out1 = new float[size];
        }
        for (int l = 0; l < L; l++) {
            final int pad = rows - lengths[l];
            for (int row = 0; row < pad; row++) {
                in0[row * L + l] = 0f;
                in1[row * L + l] = 0f;
                in2[row * L + l] = 0f;
            }
            final int start = starts[l];
            for (int k = 0; k < lengths[l]; k++) {
                final int at = (pad + k) * L + l;
                in0[at] = x.getAtIndex(F32, start + k);
                if (y != null) {
                    in1[at] = y.getAtIndex(F32, start + k);
                }
                in2[at] = mask.getAtIndex(F32, start + k);
            }
        }
        return rows;
    }

    /** Writes out0 (and out1, if {@code second} is given) back to the tile's real tokens. */
    private void scatter(final int rows, final MemorySegment firstOut, final MemorySegment second) {
        for (int l = 0; l < L; l++) {
            final int pad = rows - lengths[l];
            final int start = starts[l];
            for (int k = 0; k < lengths[l]; k++) {
                final int at = (pad + k) * L + l;
                firstOut.setAtIndex(F32, start + k, out0[at]);
                if (second != null) {
                    second.setAtIndex(F32, start + k, out1[at]);
                }
            }
        }
    }

    @Override
    public String toString() {
        return "AdvantageKernel{lanes=" + L + ", scratch=" + in0.length + ", " + Arrays.toString(lengths) + "}";
    }
}
