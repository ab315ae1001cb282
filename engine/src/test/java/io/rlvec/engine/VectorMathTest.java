package io.rlvec.engine;

import static org.assertj.core.api.Assertions.assertThat;

import org.junit.jupiter.api.Order;
import org.junit.jupiter.api.Test;

import io.rlvec.CanonicalMath;
import io.rlvec.testing.Gen;
import io.rlvec.testing.Ulp;

import jdk.incubator.vector.FloatVector;

/**
 * {@link VectorMath#exp} is the lane-wise twin of {@link CanonicalMath#exp}: bit for bit, on specials, range
 * edges and random bits, while the code is still interpreted (cold) and again after C2 compiled it (hot), because
 * the Vector API can take different paths in the two (style.md P3, P6). Runs first (see
 * junit-platform.properties) so that the cold pass is cold.
 */
@Order(1)
class VectorMathTest {
    private static final long SEED = 0xE4B0_0001L;
    /** Calls of the vector exp before the hot comparison (>= 2*10^4, design.md). */
    private static final int WARM_UP_CALLS = 40_000;
    /** Keeps the warm-up results alive so that C2 cannot drop the calls. */
    static volatile float blackhole;

    private static float[] inputs(final Gen g, final int n) {
        final float lo = CanonicalMath.EXP_LO;
        final float hi = CanonicalMath.EXP_HI;
        final float[] edges = {Float.NaN, Float.intBitsToFloat(0x7f800001), Float.intBitsToFloat(0xffc00123),
            Float.POSITIVE_INFINITY, Float.NEGATIVE_INFINITY, 0f, -0f, Float.MIN_VALUE, -Float.MIN_VALUE,
            Float.MIN_NORMAL, Float.MAX_VALUE, -Float.MAX_VALUE, lo, Math.nextDown(lo), Math.nextUp(lo), hi,
            Math.nextUp(hi), Math.nextDown(hi), 1f, -1f, 20f, -20f, 88f, -87f, 0.5f, -0.5f, 1e-30f, -1e-30f,
            (float) Math.log(2), -(float) Math.log(2), 126 * (float) Math.log(2), -126 * (float) Math.log(2)};
        final float[] x = new float[n];
        System.arraycopy(edges, 0, x, 0, edges.length);
        for (int i = edges.length; i < n; i++) {
            final int k = g.nextInt(4);
            x[i] = switch (k) {
                case 0 -> g.anyBits();
                case 1 -> (float) (lo + (hi - lo) * g.uniform());
                case 2 -> g.gaussian(10.0);
                default -> g.subnormal();
            };
        }
        return x;
    }

    private static void assertTwins(final float[] x, final String phase) {
        final float[] out = new float[Vec.FL];
        for (int i = 0; i + Vec.FL <= x.length; i += Vec.FL) {
            VectorMath.exp(FloatVector.fromArray(Vec.F, x, i)).intoArray(out, 0);
            for (int k = 0; k < Vec.FL; k++) {
                final float expected = CanonicalMath.exp(x[i + k]);
                if (!Ulp.sameBits(expected, out[k])) {
                    throw new AssertionError(phase + " seed=" + SEED + ": exp(" + Ulp.show(x[i + k]) + ") scalar "
                        + Ulp.show(expected) + " vector " + Ulp.show(out[k]));
                }
            }
        }
    }

    @Test
    void vectorExpIsBitIdenticalToTheScalarTwinColdAndHot() {
        final float[] x = inputs(new Gen(SEED), 4096);
        assertTwins(x, "cold");
        // Warm up on a small array until C2 has compiled the polynomial, then compare everything again.
        final float[] small = new float[Vec.FL * 4];
        System.arraycopy(x, 0, small, 0, small.length);
        float sink = 0;
        for (int c = 0; c < WARM_UP_CALLS; c++) {
            final int i = (c % 4) * Vec.FL;
            sink += VectorMath.exp(FloatVector.fromArray(Vec.F, small, i)).lane(c % Vec.FL);
        }
        blackhole = sink;
        assertTwins(x, "hot");
        assertTwins(inputs(new Gen(SEED + 1), 1 << 16), "hot, more inputs");
    }

    @Test
    void nanStaysNaNAndTheRangeEndsAreZeroAndInfinity() {
        final float[] x = new float[Vec.FL];
        final float[][] cases = {{Float.NaN, Float.NaN}, {Math.nextDown(CanonicalMath.EXP_LO), 0f},
            {Float.NEGATIVE_INFINITY, 0f}, {Math.nextUp(CanonicalMath.EXP_HI), Float.POSITIVE_INFINITY},
            {Float.POSITIVE_INFINITY, Float.POSITIVE_INFINITY}, {0f, 1f}, {-0f, 1f}};
        final float[] out = new float[Vec.FL];
        for (final float[] c : cases) {
            java.util.Arrays.fill(x, c[0]);
            VectorMath.exp(FloatVector.fromArray(Vec.F, x, 0)).intoArray(out, 0);
            for (final float v : out) {
                assertThat(Ulp.sameBits(c[1], v)).as("exp(%s) = %s", c[0], v).isTrue();
            }
        }
    }
}
