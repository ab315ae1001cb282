package io.rlvec.engine;

import io.rlvec.CanonicalMath;
import io.rlvec.OffHeapArray;
import io.rlvec.reference.Advantages;
import io.rlvec.reference.RolloutCorrection;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import jdk.incubator.vector.FloatVector;
import jdk.incubator.vector.VectorOperators;
import jdk.incubator.vector.VectorSpecies;

/**
 * The per-token passes of rollout correction ({@link RolloutCorrection.Kernels}) as Vector API loops over the
 * off-heap columns: the log-ratio, its clamp to [-20, 20], the canonical exp ({@link VectorMath#exp},
 * bit-identical to {@link CanonicalMath#exp}), the k2/k3 statistics and the clamped squares, in the reference's
 * float operations; the row sums are the advantage kernel's vector sums in the canonical four-lane order. So every
 * per-token term, sum, weight, mask and metric is the reference's bits. One call runs on the calling thread: the
 * results do not depend on the engine's thread count.
 */
final class RolloutKernel implements RolloutCorrection.Kernels {
    private static final VectorSpecies<Float> F = Vec.F;
    private static final int L = Vec.FL;
    private static final float BOUND = 20f;
    private static final ValueLayout.OfFloat F32 = ValueLayout.JAVA_FLOAT_UNALIGNED.withOrder(Vec.LE);

    private final Advantages.Kernels sums;

    /** @param sums the engine's canonical row sums. */
    RolloutKernel(final Advantages.Kernels sums) {
        this.sums = sums;
    }

    @Override
    public Advantages.Kernels sums() {
        return sums;
    }

    /** torch's clamp, lane-wise: NaN stays NaN, -0 stays -0 (as {@code TorchOps.clamp}). */
    private static FloatVector clamp(final FloatVector x, final FloatVector lo, final FloatVector hi) {
        return x.blend(lo, x.compare(VectorOperators.LT, lo)).blend(hi, x.compare(VectorOperators.GT, hi));
    }

    private static final FloatVector LOW_BOUND = FloatVector.broadcast(F, -BOUND);
    private static final FloatVector HIGH_BOUND = FloatVector.broadcast(F, BOUND);

    private static float clamp(final float x, final float lo, final float hi) {
        return x < lo ? lo : (x > hi ? hi : x);
    }

    @Override
    public void tokenTerms(final int n, final OffHeapArray old, final OffHeapArray roll,
                           final RolloutCorrection.Scratch s) {
        final MemorySegment os = old.segment();
        final MemorySegment rs = roll.segment();
        final MemorySegment lrOut = s.lr.segment();
        final MemorySegment lrsOut = s.lrs.segment();
        final MemorySegment rhoOut = s.rho.segment();
        final MemorySegment k2Out = s.k2.segment();
        final MemorySegment k3Out = s.k3.segment();
        final MemorySegment kkOut = s.kk.segment();
        final MemorySegment rho2Out = s.rho2.segment();
        final int upper = n - n % L;
        // Short loops, each exp alone in its own: a loop body holding the exp and much else exceeds what C2 inlines,
        // and an exp left as a call boxes its vectors (measured: 16 bytes per token).
        for (int u = 0; u < upper; u += L) {
            final long at = (long) u * Float.BYTES;
            final FloatVector lr = FloatVector.fromMemorySegment(F, os, at, Vec.LE)
                .sub(FloatVector.fromMemorySegment(F, rs, at, Vec.LE));
            lr.intoMemorySegment(lrOut, at, Vec.LE);
            clamp(lr, LOW_BOUND, HIGH_BOUND).intoMemorySegment(lrsOut, at, Vec.LE);
        }
        exp(lrsOut, rhoOut, upper);
        exp(lrOut, kkOut, upper);
        for (int u = 0; u < upper; u += L) {
            final long at = (long) u * Float.BYTES;
            final FloatVector lr = FloatVector.fromMemorySegment(F, lrOut, at, Vec.LE);
            final FloatVector lrs = FloatVector.fromMemorySegment(F, lrsOut, at, Vec.LE);
            final FloatVector rho = FloatVector.fromMemorySegment(F, rhoOut, at, Vec.LE);
            lrs.mul(lrs).mul(0.5f).intoMemorySegment(k2Out, at, Vec.LE);
            rho.sub(1f).sub(lrs).intoMemorySegment(k3Out, at, Vec.LE);
            rho.mul(rho).intoMemorySegment(rho2Out, at, Vec.LE);
            FloatVector.fromMemorySegment(F, kkOut, at, Vec.LE).sub(lr).sub(1f).intoMemorySegment(kkOut, at, Vec.LE);
        }
        int t = upper;
        for (; t < n; t++) {
            final float lr = os.getAtIndex(F32, t) - rs.getAtIndex(F32, t);
            final float lrs = clamp(lr, -BOUND, BOUND);
            final float rho = CanonicalMath.exp(lrs);
            lrOut.setAtIndex(F32, t, lr);
            lrsOut.setAtIndex(F32, t, lrs);
            rhoOut.setAtIndex(F32, t, rho);
            k2Out.setAtIndex(F32, t, 0.5f * (lrs * lrs));
            k3Out.setAtIndex(F32, t, (rho - 1f) - lrs);
            kkOut.setAtIndex(F32, t, (CanonicalMath.exp(lr) - lr) - 1f);
            rho2Out.setAtIndex(F32, t, rho * rho);
        }
    }

    /**
     * v = sign * x and c = clamp(v, lo, hi) on [0, upper). Each pass is a small method of its own: inlined whole
     * into the large caller, the loop's vectors were boxed (measured: 16 bytes per token).
     */
    private static void signClamp(final MemorySegment xs, final MemorySegment vOut, final MemorySegment cOut,
                                  final int upper, final float sign, final float lo, final float hi) {
        final FloatVector signs = FloatVector.broadcast(F, sign);
        final FloatVector los = FloatVector.broadcast(F, lo);
        final FloatVector his = FloatVector.broadcast(F, hi);
        for (int u = 0; u < upper; u += L) {
            final long at = (long) u * Float.BYTES;
            final FloatVector v = FloatVector.fromMemorySegment(F, xs, at, Vec.LE).mul(signs);
            v.intoMemorySegment(vOut, at, Vec.LE);
            clamp(v, los, his).intoMemorySegment(cOut, at, Vec.LE);
        }
    }

    /** out = in * in on [0, upper). */
    private static void square(final MemorySegment in, final MemorySegment out, final int upper) {
        for (int u = 0; u < upper; u += L) {
            final long at = (long) u * Float.BYTES;
            final FloatVector c = FloatVector.fromMemorySegment(F, in, at, Vec.LE);
            c.mul(c).intoMemorySegment(out, at, Vec.LE);
        }
    }

    /** out = exp(in) on [0, upper), the canonical exp and nothing else. */
    private static void exp(final MemorySegment in, final MemorySegment out, final int upper) {
        for (int u = 0; u < upper; u += L) {
            final long at = (long) u * Float.BYTES;
            VectorMath.exp(FloatVector.fromMemorySegment(F, in, at, Vec.LE)).intoMemorySegment(out, at, Vec.LE);
        }
    }

    @Override
    public void clampSquare(final int n, final OffHeapArray x, final float sign, final float lo, final float hi,
                            final RolloutCorrection.Scratch s) {
        final MemorySegment xs = x.segment();
        final MemorySegment vOut = s.v.segment();
        final MemorySegment cOut = s.c.segment();
        final MemorySegment c2Out = s.c2.segment();
        final int upper = n - n % L;
        signClamp(xs, vOut, cOut, upper, sign, lo, hi);
        square(cOut, c2Out, upper);
        int t = upper;
        for (; t < n; t++) {
            final float v = sign * xs.getAtIndex(F32, t);
            final float c = clamp(v, lo, hi);
            vOut.setAtIndex(F32, t, v);
            cOut.setAtIndex(F32, t, c);
            c2Out.setAtIndex(F32, t, c * c);
        }
    }
}
