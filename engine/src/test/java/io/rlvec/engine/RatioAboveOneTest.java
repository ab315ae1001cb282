package io.rlvec.engine;

import static org.assertj.core.api.Assertions.assertThat;

import io.rlvec.CanonicalMath;
import io.rlvec.Column;
import io.rlvec.ElementType;
import io.rlvec.LossSpec;
import io.rlvec.OffHeapArray;
import io.rlvec.PolicyLossMode;
import io.rlvec.PolicyLossResult;
import io.rlvec.TokenBatch;
import io.rlvec.reference.ReferenceEngine;
import io.rlvec.testing.Results;
import org.junit.jupiter.api.Test;

/**
 * gpg and dro count "ratio &gt; 1" from the clamped log-ratio x as {@code x >= RuleKernel.LOG_RATIO_ABOVE_ONE}
 * instead of taking exp(x): the two must agree for every float the clamp lets through ([-20, 20]).
 */
class RatioAboveOneTest {
    /**
     * Every float in [-2^-10, 2^-10] whose magnitude is at least 2^-30, and every 4099th float beyond, up to 20.
     * Below 2^-30 the canonical exp is 1 + x to the bit (its polynomial's x^2 term is under half an ulp of x,
     * and n = 0), which rounds to 1 for |x| &lt;= 2^-24; those magnitudes are sampled too.
     */
    @Test
    void expAboveOneExactlyFromTheThreshold() {
        final float t = RuleKernel.LOG_RATIO_ABOVE_ONE;
        assertThat(CanonicalMath.exp(t)).isGreaterThan(1f);
        assertThat(CanonicalMath.exp(Math.nextDown(t))).isEqualTo(1f);
        long checked = 0;
        for (final int sign : new int[] {0, 0x8000_0000}) {
            final int dense = Float.floatToRawIntBits(0x1p-30f);
            final int denseEnd = Float.floatToRawIntBits(0x1p-10f);
            final int end = Float.floatToRawIntBits(20f);
            for (int bits = 0; bits <= end; bits += bits >= dense && bits <= denseEnd ? 1 : 4099) {
                final float x = Float.intBitsToFloat(bits | sign);
                if ((CanonicalMath.exp(x) > 1f) != (x >= t)) {
                    throw new AssertionError("exp(" + x + ") > 1 is " + (CanonicalMath.exp(x) > 1f));
                }
                checked++;
            }
        }
        assertThat(checked).isGreaterThan(300_000_000L);
    }

    /** Log-ratios on both sides of the threshold: the engine's sign-split counts are the reference's. */
    @Test
    void gpgAndDroCountTheReferenceRatios() {
        final float t = RuleKernel.LOG_RATIO_ABOVE_ONE;
        final float[] deltas = {0f, -0f, Math.nextDown(t), t, Math.nextUp(t), 0x1p-24f, -t, 1e-30f, 20f, -20f, 25f,
            Float.NaN, 3e-8f, 6e-8f, 1e-7f, -1e-7f};
        final int n = 64;
        final float[] lp = new float[n];
        final float[] old = new float[n];
        final float[] adv = new float[n];
        for (int i = 0; i < n; i++) {
            // old = 0, so that lp - old is the delta itself.
            lp[i] = deltas[i % deltas.length];
            adv[i] = (i / deltas.length & 1) == 0 ? 1.5f : -0.5f;
        }
        for (final PolicyLossMode mode : new PolicyLossMode[] {PolicyLossMode.GPG, PolicyLossMode.DRO}) {
            final LossSpec spec = LossSpec.builder().policyLossMode(mode).droBeta(0.5).build();
            try (TokenBatch batch = TokenBatch.padded(2, n / 2).column(Column.LOG_PROB, lp)
                     .column(Column.OLD_LOG_PROB, old).column(Column.ADVANTAGES, adv).build();
                 OffHeapArray g1 = OffHeapArray.allocate(ElementType.F32, n);
                 OffHeapArray g2 = OffHeapArray.allocate(ElementType.F32, n);
                 VectorEngine engine = new VectorEngine()) {
                final PolicyLossResult r1 = new PolicyLossResult();
                final PolicyLossResult r2 = new PolicyLossResult();
                new ReferenceEngine().policyLoss(spec, batch, g1, r1);
                engine.policyLoss(spec, batch, g2, r2);
                Results.assertSameBits(g1.toFloatArray(), g2.toFloatArray(), mode.verlName());
                Results.assertClose(r1, r2, 0, mode.verlName());
                for (final PolicyLossResult.Stat s : new PolicyLossResult.Stat[] {
                    PolicyLossResult.Stat.POS_RATIO_ABOVE_ONE, PolicyLossResult.Stat.NEG_RATIO_ABOVE_ONE}) {
                    assertThat(r2.stat(s)).as(mode.verlName() + " " + s).isEqualTo(r1.stat(s)).isPositive();
                }
            }
        }
    }
}
