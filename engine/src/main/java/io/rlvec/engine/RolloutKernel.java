package io.rlvec.engine;

import io.rlvec.CanonicalMath;
import io.rlvec.OffHeapArray;
import io.rlvec.TokenBatch;
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

    /**
     * The advantage kernel's canonical row sums, through the pass call site like every other loop (inlined into
     * the correction's large callers they boxed their vectors once C2's inlining budget ran out there).
     */
    @Override
    public void maskedRowSums(final TokenBatch batch, final OffHeapArray x, final double[] out) {
        sumBatch = batch;
        sumX = x;
        sumOut = out;
        try {
            run(ROW_SUMS, this, 0);
        } finally {
            sumBatch = null;
            sumX = null;
            sumOut = null;
        }
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

    /**
     * One vector loop over [0, upper) of the call in progress, reading and writing the segments bound in the kernel's
     * fields. Every loop is called through {@link #run}, one call site with seven receiver classes that C2 never
     * inlines: each loop is its own compilation unit. Inlined together into a large caller (the bypass loss) the
     * loops exceeded C2's inlining budget and boxed every vector (measured: 16 bytes per token).
     */
    private abstract static class Pass {
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

    /** The call's segments, bound for one call (null otherwise). */
    private MemorySegment os;
    private MemorySegment rs;
    private MemorySegment lrOut;
    private MemorySegment lrsOut;
    private MemorySegment rhoOut;
    private MemorySegment k2Out;
    private MemorySegment k3Out;
    private MemorySegment kkOut;
    private MemorySegment rho2Out;
    private MemorySegment xs;
    private MemorySegment vOut;
    private MemorySegment cOut;
    private MemorySegment c2Out;
    private float sign;
    private float lo;
    private float hi;
    private TokenBatch sumBatch;
    private OffHeapArray sumX;
    private double[] sumOut;

    /** lr = old - rollout, lrs = clamp(lr, -20, 20). */
    private static final Pass LOG_RATIO_PASS = new Pass() {
        @Override
        void run(final RolloutKernel k, final int upper) {
            for (int u = 0; u < upper; u += L) {
                final long at = (long) u * Float.BYTES;
                final FloatVector lr = FloatVector.fromMemorySegment(F, k.os, at, Vec.LE)
                    .sub(FloatVector.fromMemorySegment(F, k.rs, at, Vec.LE));
                lr.intoMemorySegment(k.lrOut, at, Vec.LE);
                clamp(lr, LOW_BOUND, HIGH_BOUND).intoMemorySegment(k.lrsOut, at, Vec.LE);
            }
        }
    };

    /** rho = exp(lrs). */
    private static final Pass EXP_RHO_PASS = new Pass() {
        @Override
        void run(final RolloutKernel k, final int upper) {
            exp(k.lrsOut, k.rhoOut, upper);
        }
    };

    /** kk = exp(lr) (completed to exp(lr) - lr - 1 by {@link #TERMS}). */
    private static final Pass EXP_KK_PASS = new Pass() {
        @Override
        void run(final RolloutKernel k, final int upper) {
            exp(k.lrOut, k.kkOut, upper);
        }
    };

    /** k2 = 0.5 lrs^2, k3 = (rho - 1) - lrs, rho2 = rho^2, kk = (exp(lr) - lr) - 1. */
    private static final Pass TERMS_PASS = new Pass() {
        @Override
        void run(final RolloutKernel k, final int upper) {
            for (int u = 0; u < upper; u += L) {
                final long at = (long) u * Float.BYTES;
                final FloatVector lr = FloatVector.fromMemorySegment(F, k.lrOut, at, Vec.LE);
                final FloatVector lrs = FloatVector.fromMemorySegment(F, k.lrsOut, at, Vec.LE);
                final FloatVector rho = FloatVector.fromMemorySegment(F, k.rhoOut, at, Vec.LE);
                lrs.mul(lrs).mul(0.5f).intoMemorySegment(k.k2Out, at, Vec.LE);
                rho.sub(1f).sub(lrs).intoMemorySegment(k.k3Out, at, Vec.LE);
                rho.mul(rho).intoMemorySegment(k.rho2Out, at, Vec.LE);
                FloatVector.fromMemorySegment(F, k.kkOut, at, Vec.LE).sub(lr).sub(1f)
                    .intoMemorySegment(k.kkOut, at, Vec.LE);
            }
        }
    };

    /** v = sign * x, c = clamp(v, lo, hi). */
    private static final Pass SIGN_CLAMP_PASS = new Pass() {
        @Override
        void run(final RolloutKernel k, final int upper) {
            signClamp(k.xs, k.vOut, k.cOut, upper, k.sign, k.lo, k.hi);
        }
    };

    /** c2 = c * c. */
    private static final Pass SQUARE_PASS = new Pass() {
        @Override
        void run(final RolloutKernel k, final int upper) {
            square(k.cOut, k.c2Out, upper);
        }
    };

    private void unbind() {
        os = null;
        rs = null;
        lrOut = null;
        lrsOut = null;
        rhoOut = null;
        k2Out = null;
        k3Out = null;
        kkOut = null;
        rho2Out = null;
        xs = null;
        vOut = null;
        cOut = null;
        c2Out = null;
    }

    @Override
    public void tokenTerms(final int n, final OffHeapArray old, final OffHeapArray roll,
                           final RolloutCorrection.Scratch s) {
        os = old.segment();
        rs = roll.segment();
        lrOut = s.lr.segment();
        lrsOut = s.lrs.segment();
        rhoOut = s.rho.segment();
        k2Out = s.k2.segment();
        k3Out = s.k3.segment();
        kkOut = s.kk.segment();
        rho2Out = s.rho2.segment();
        final int upper = n - n % L;
        try {
            run(LOG_RATIO, this, upper);
            run(EXP_RHO, this, upper);
            run(EXP_KK, this, upper);
            run(TERMS, this, upper);
            for (int t = upper; t < n; t++) {
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
        } finally {
            unbind();
        }
    }

    /** v = sign * x and c = clamp(v, lo, hi) on [0, upper). */
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
        xs = x.segment();
        vOut = s.v.segment();
        cOut = s.c.segment();
        c2Out = s.c2.segment();
        this.sign = sign;
        this.lo = lo;
        this.hi = hi;
        final int upper = n - n % L;
        try {
            run(SIGN_CLAMP, this, upper);
            run(SQUARE, this, upper);
            for (int t = upper; t < n; t++) {
                final float v = sign * xs.getAtIndex(F32, t);
                final float c = clamp(v, lo, hi);
                vOut.setAtIndex(F32, t, v);
                cOut.setAtIndex(F32, t, c);
                c2Out.setAtIndex(F32, t, c * c);
            }
        } finally {
            unbind();
        }
    }

    /** The row sums of the bound batch and column (the pass ignores upper). */
    private static final Pass ROW_SUMS_PASS = new Pass() {
        @Override
        void run(final RolloutKernel k, final int upper) {
            k.sums.maskedRowSums(k.sumBatch, k.sumX, k.sumOut);
        }
    };

    private static final int LOG_RATIO = 0;
    private static final int EXP_RHO = 1;
    private static final int EXP_KK = 2;
    private static final int TERMS = 3;
    private static final int SIGN_CLAMP = 4;
    private static final int SQUARE = 5;
    private static final int ROW_SUMS = 6;
    /** Every pass, by number ({@link #run}). */
    private static final Pass[] PASSES = {LOG_RATIO_PASS, EXP_RHO_PASS, EXP_KK_PASS, TERMS_PASS, SIGN_CLAMP_PASS,
        SQUARE_PASS, ROW_SUMS_PASS};
}
