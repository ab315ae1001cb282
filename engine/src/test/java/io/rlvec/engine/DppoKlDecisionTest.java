package io.rlvec.engine;

import static org.assertj.core.api.Assertions.assertThat;

import java.util.SplittableRandom;

import io.rlvec.LossSpec;
import io.rlvec.PolicyLossMode;
import io.rlvec.PolicyLossResult;
import io.rlvec.VerlRelease;
import io.rlvec.reference.ReferenceEngine;
import io.rlvec.reference.TokenRule;
import io.rlvec.testing.TokenData;
import org.junit.jupiter.api.Test;

/**
 * dppo_kl's trust region decides on the binary KL, whose log the engine takes with the Vector API's LOG and the
 * reference with StrictMath: the decisions must still be the reference's on every token. 2^18 tokens of mixed
 * log-probs (equal pairs, p near 1, very unlikely tokens, ordinary ones), with the thresholds set to the exact float
 * binary KL of some tokens, and a quarter of the tokens copies of those, so that {@code kl <= high} is decided at
 * equality; gradient bits and every count equal to the reference's, on 1 and 2 threads.
 */
class DppoKlDecisionTest {
    @Test
    void decisionsAtTheThresholdAreTheReferences() {
        final int n = 1 << 18;
        final SplittableRandom g = new SplittableRandom(0xD990_4B1L);
        final float[] lp = new float[n];
        final float[] old = new float[n];
        final float[] adv = new float[n];
        final float[] mask = new float[n];
        for (int t = 0; t < n; t++) {
            switch (g.nextInt(6)) {
                case 0 -> {
                    lp[t] = (float) (-8 * g.nextDouble());
                    old[t] = lp[t];
                }
                case 1 -> {
                    lp[t] = (float) (-1e-3 * g.nextDouble());
                    old[t] = (float) (-1e-3 * g.nextDouble());
                }
                case 2 -> {
                    lp[t] = (float) (-40 * g.nextDouble());
                    old[t] = (float) (-40 * g.nextDouble());
                }
                case 3 -> {
                    lp[t] = g.nextBoolean() ? 0f : -Float.MIN_VALUE;
                    old[t] = (float) (-g.nextDouble());
                }
                default -> {
                    lp[t] = (float) (-4 * g.nextDouble());
                    old[t] = (float) (lp[t] + 0.5 * g.nextGaussian());
                    old[t] = Math.min(old[t], 0f);
                }
            }
            adv[t] = g.nextInt(3) - 1;
            mask[t] = g.nextInt(10) == 0 ? 0f : 1f;
        }
        // Thresholds at the exact float KL of two tokens, and a quarter of the batch copies of them.
        final int hi = 17;
        final int lo = 18;
        lp[hi] = -0.5f;
        old[hi] = -0.9f;
        lp[lo] = -0.9f;
        old[lo] = -0.5f;
        mask[hi] = 1f;
        mask[lo] = 1f;
        for (int t = 0; t < n; t += 4) {
            final int src = t % 8 == 0 ? hi : lo;
            if (t != hi && t != lo) {
                lp[t] = lp[src];
                old[t] = old[src];
            }
        }
        adv[hi] = 1f;
        adv[lo] = -1f;
        final float klHi = kl(lp[hi], old[hi]);
        final float klLo = kl(lp[lo], old[lo]);
        assertThat(klHi).isPositive();
        assertThat(klLo).isPositive();
        final LossSpec spec = LossSpec.builder().policyLossMode(PolicyLossMode.DPPO_KL).release(VerlRelease.V2026_08)
            .clipRatioHigh(klHi).clipRatioLow(klLo).build();
        final int[] lengths = new int[n / 4096];
        java.util.Arrays.fill(lengths, 4096);
        final TokenData d = TokenData.packed(lengths, lp, old, adv, mask, null);
        final PolicyLossParityTest.Case c = new PolicyLossParityTest.Case(1, d, spec, true);
        final PolicyLossParityTest.Outcome ref = PolicyLossParityTest.run(new ReferenceEngine(), c);
        for (final int threads : new int[] {1, 2}) {
            try (VectorEngine engine = new VectorEngine(threads)) {
                final PolicyLossParityTest.Outcome vec = PolicyLossParityTest.run(engine, c);
                io.rlvec.testing.Results.assertSameBits(ref.grad(), vec.grad(), threads + " threads");
                for (final PolicyLossResult.Stat s : new PolicyLossResult.Stat[] {PolicyLossResult.Stat.CLIPPED,
                    PolicyLossResult.Stat.CLIPPED_HIGH, PolicyLossResult.Stat.CLIPPED_LOW,
                    PolicyLossResult.Stat.DUAL_CLIPPED}) {
                    assertThat(vec.result().stat(s)).as("%s, %d threads", s, threads).isEqualTo(ref.result().stat(s));
                }
            }
        }
        assertThat(ref.result().stat(PolicyLossResult.Stat.CLIPPED)).as("some tokens leave the trust region")
            .isGreaterThan(0);
    }

    private static float kl(final float lp, final float old) {
        return TokenRule.Dppo.binaryKlOf(io.rlvec.CanonicalMath.exp(lp), io.rlvec.CanonicalMath.exp(old), lp, old);
    }
}
