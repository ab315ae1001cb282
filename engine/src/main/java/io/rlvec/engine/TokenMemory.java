package io.rlvec.engine;

import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;

import jdk.incubator.vector.DoubleVector;
import jdk.incubator.vector.FloatVector;
import jdk.incubator.vector.VectorOperators;
import jdk.incubator.vector.VectorShuffle;

/**
 * Tiny load/store helpers shared by the token kernels (style.md practice 6): every access goes through an
 * {@code int} token index turned into a {@code long} byte offset, little endian, on the global-scope segment of an
 * {@link io.rlvec.OffHeapArray}. Also the wide (double) lane accumulation and its one written lane order.
 */
final class TokenMemory {
    /** float32, little endian, 4-byte access that tolerates any address (wrapped caller memory). */
    static final ValueLayout.OfFloat F32 = ValueLayout.JAVA_FLOAT_UNALIGNED.withOrder(Vec.LE);
    /** double lanes per vector. */
    static final int DL = Vec.D.length();

    private TokenMemory() {
    }

    /** @return the {@link Vec#FL} floats starting at token {@code i}. */
    static FloatVector load(final MemorySegment s, final int i) {
        return FloatVector.fromMemorySegment(Vec.F, s, (long) i * Float.BYTES, Vec.LE);
    }

    // No store(v, s, i) helper: kernels call intoMemorySegment directly. Through the helper, geo_mean's gradient
    // step boxed the vector it stored (one Float512Vector and its array per store, 1.5 MB per call at (64, 4096))
    // in four of five fresh JVMs; with the direct call, in none of ten. A vector handed to a helper C2 has not
    // inlined is boxed, and whether it inlines depends on what got compiled first.

    /** @return the float at token {@code i}. */
    static float get(final MemorySegment s, final int i) {
        return s.get(F32, (long) i * Float.BYTES);
    }

    /** Stores {@code v} at token {@code i}. */
    static void set(final MemorySegment s, final int i, final float v) {
        s.set(F32, (long) i * Float.BYTES, v);
    }

    /**
     * Adds the float lanes of {@code v}, widened exactly to double, to {@code acc}: lanes {@code k} and
     * {@code k + DL} of {@code v} are added together first, then to lane {@code k} of {@code acc}. The order is
     * fixed by the code, so the result does not depend on the JIT tier (design.md, reductions).
     */
    static DoubleVector addWide(final DoubleVector acc, final FloatVector v) {
        final DoubleVector lo = (DoubleVector) v.convertShape(VectorOperators.F2D, Vec.D, 0);
        // The upper half is brought down by a constant shuffle and converted as part 0: the same lanes as
        // convertShape(F2D, D, 1), but without the iota shuffle that part 1 builds per call, whose C2 graph is
        // so large that a kernel calling this a few times exceeds the inlining budget (style.md P2).
        final DoubleVector hi = (DoubleVector) v.rearrange(UPPER_HALF_DOWN).convertShape(VectorOperators.F2D, Vec.D, 0);
        return acc.add(lo.add(hi));
    }

    /** Lane {@code k} takes lane {@code k + FL/2} (mod FL): moves the upper half of a float vector down. */
    private static final VectorShuffle<Float> UPPER_HALF_DOWN =
        VectorShuffle.fromOp(Vec.F, k -> (k + Vec.FL / 2) % Vec.FL);

    /**
     * Sums {@link #DL} lanes stored at {@code lanes[from, from + DL)} in lane order, starting from 0.0. Lanes are
     * summed from an array, not from a vector argument: a vector passed to a method C2 does not inline is boxed.
     */
    static double sumLanes(final double[] lanes, final int from) {
        double s = 0.0;
        for (int k = 0; k < DL; k++) {
            s += lanes[from + k];
        }
        return s;
    }

    /**
     * @return the number of tokens in {@code [start, end)} whose mask value is non-zero (NaN counts as valid,
     *     -0.0 does not, exactly as the reference's {@code mask != 0f}).
     */
    static int countValid(final MemorySegment mask, final int start, final int end) {
        int c = 0;
        final int vecEnd = start + Vec.F.loopBound(end - start);
        int i = start;
        for (; i < vecEnd; i += Vec.FL) {
            c += load(mask, i).compare(VectorOperators.NE, 0f).trueCount();
        }
        for (; i < end; i++) {
            if (get(mask, i) != 0f) {
                c++;
            }
        }
        return c;
    }
}
