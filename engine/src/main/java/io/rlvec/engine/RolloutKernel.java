package io.rlvec.engine;

import io.rlvec.CanonicalMath;
import io.rlvec.OffHeapArray;
import io.rlvec.reference.RolloutCorrection;
import java.lang.foreign.MemorySegment;
import jdk.incubator.vector.FloatVector;
import jdk.incubator.vector.VectorSpecies;

/**
 * The elementwise pass of rollout correction ({@link RolloutCorrection.Kernels#tokenTerms}) as Vector API loops: the
 * log-ratio, its clamp to [-20, 20], the canonical exp ({@link VectorMath#exp}, bit-identical to
 * {@link CanonicalMath#exp}) and the k2/k3 statistics, in the reference's float operations, so every per-token
 * term (and hence every weight, mask and metric built on them in the shared reductions) is the reference's bits.
 */
final class RolloutKernel implements RolloutCorrection.Kernels {
    private static final VectorSpecies<Float> F = Vec.F;
    private static final int L = Vec.FL;
    private static final float BOUND = 20f;

    @Override
    public void tokenTerms(final int n, final OffHeapArray old, final OffHeapArray roll,
                           final RolloutCorrection.Scratch s) {
        final MemorySegment os = old.segment();
        final MemorySegment rs = roll.segment();
        final float[] lrOut = s.lr;
        final float[] lrsOut = s.lrs;
        final float[] rhoOut = s.rho;
        final float[] k2Out = s.k2;
        final float[] k3Out = s.k3;
        final float[] kkOut = s.kk;
        final int upper = n - n % L;
        int t = 0;
        for (; t < upper; t += L) {
            final long byteOffset = (long) t * Float.BYTES;
            final FloatVector lr = FloatVector.fromMemorySegment(F, os, byteOffset, Vec.LE)
                .sub(FloatVector.fromMemorySegment(F, rs, byteOffset, Vec.LE));
            final FloatVector lrs = lr.max(-BOUND).min(BOUND);
            final FloatVector rho = VectorMath.exp(lrs);
            lr.intoArray(lrOut, t);
            lrs.intoArray(lrsOut, t);
            rho.intoArray(rhoOut, t);
            lrs.mul(lrs).mul(0.5f).intoArray(k2Out, t);
            rho.sub(1f).sub(lrs).intoArray(k3Out, t);
            VectorMath.exp(lr).sub(lr).sub(1f).intoArray(kkOut, t);
        }
        for (; t < n; t++) {
            final float lr = old.getFloat(t) - roll.getFloat(t);
            final float lrs = lr < -BOUND ? -BOUND : (lr > BOUND ? BOUND : lr);
            final float rho = CanonicalMath.exp(lrs);
            lrOut[t] = lr;
            lrsOut[t] = lrs;
            rhoOut[t] = rho;
            k2Out[t] = 0.5f * (lrs * lrs);
            k3Out[t] = (rho - 1f) - lrs;
            kkOut[t] = (CanonicalMath.exp(lr) - lr) - 1f;
        }
    }
}
