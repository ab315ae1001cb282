package io.rlvec.engine;

import static io.rlvec.CanonicalMath.EXP_HI;
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

import jdk.incubator.vector.FloatVector;
import jdk.incubator.vector.IntVector;
import jdk.incubator.vector.VectorOperators;

/**
 * The vector twin of {@link io.rlvec.CanonicalMath#exp(float)}: the same constants and the same operations in
 * the same order, lane-wise, so that every lane equals the scalar result bit for bit. Kept to one polynomial per
 * call site (style.md P2: two calls in one loop body exceed C2's inlining budget and box vectors).
 */
public final class VectorMath {
    private static final FloatVector INF = FloatVector.broadcast(Vec.F, Float.POSITIVE_INFINITY);
    private static final FloatVector ZERO = FloatVector.zero(Vec.F);
    // FloatVector.fma takes (float, float) or (Vector, Vector): the mixed forms need broadcast constants,
    // held in static finals so that C2 folds them (style.md P1).
    private static final FloatVector NEG_LN2_HI = FloatVector.broadcast(Vec.F, -LN2_HI);
    private static final FloatVector NEG_LN2_LO = FloatVector.broadcast(Vec.F, -LN2_LO);
    private static final FloatVector C2 = FloatVector.broadcast(Vec.F, P2);
    private static final FloatVector C3 = FloatVector.broadcast(Vec.F, P3);
    private static final FloatVector C4 = FloatVector.broadcast(Vec.F, P4);
    private static final FloatVector C5 = FloatVector.broadcast(Vec.F, P5);

    private VectorMath() {
    }

    /**
     * @param x lanes of any value.
     * @return e^x per lane, bit-identical to {@link io.rlvec.CanonicalMath#exp(float)}.
     */
    public static FloatVector exp(final FloatVector x) {
        final FloatVector z = x.fma(LOG2E, MAGIC_BIAS);
        // n + 127 sits in the low mantissa bits of z (magic-bias rounding).
        final IntVector n = z.reinterpretAsInts().sub(MAGIC_BITS + 127);
        final FloatVector nf = z.sub(MAGIC_BIAS);
        FloatVector r = nf.fma(NEG_LN2_HI, x);
        r = nf.fma(NEG_LN2_LO, r);
        FloatVector p = r.fma(P0, P1);
        p = p.fma(r, C2);
        p = p.fma(r, C3);
        p = p.fma(r, C4);
        p = p.fma(r, C5);
        final FloatVector r2 = r.mul(r);
        final FloatVector y = p.fma(r2, r).add(1f);
        // 2^n as 2^(n>>1) * 2^(n - (n>>1)): both halves are normal for n in [-126, 128].
        final IntVector n1 = n.lanewise(VectorOperators.ASHR, 1);
        final IntVector n2 = n.sub(n1);
        final FloatVector s1 = n1.add(127).lanewise(VectorOperators.LSHL, 23).reinterpretAsFloats();
        final FloatVector s2 = n2.add(127).lanewise(VectorOperators.LSHL, 23).reinterpretAsFloats();
        return y.mul(s1).mul(s2)
            .blend(ZERO, x.lt(EXP_LO))
            .blend(INF, x.compare(VectorOperators.GT, EXP_HI));
    }
}
