package io.rlvec.engine;

import java.util.ArrayList;
import java.util.List;

import io.rlvec.Engine;
import io.rlvec.LossSpec;
import io.rlvec.PolicyLossMode;
import io.rlvec.VerlRelease;
import io.rlvec.reference.ReferenceEngine;
import io.rlvec.testing.Gen;
import io.rlvec.testing.Results;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.MethodSource;

/**
 * The vector engine against the reference on every policy-loss mode other than vanilla: random padded and packed
 * (ragged) batches, with and without rollout weights, with special values at valid and masked tokens, every
 * aggregation mode and both releases' aggregation where the mode exists in both; gradients bit-identical, scalars
 * within 1 ulp, and 1 and 3 threads bit-identical.
 */
class PolicyModesParityTest {
    private static final int SEEDS_PER_MODE = 12;
    private final Engine reference = new ReferenceEngine();

    static List<PolicyLossParityTest.Case> cases() {
        final List<PolicyLossParityTest.Case> out = new ArrayList<>();
        for (final PolicyLossMode mode : PolicyLossMode.values()) {
            if (mode == PolicyLossMode.VANILLA) {
                continue;
            }
            for (int i = 0; i < SEEDS_PER_MODE; i++) {
                final long seed = 0x5EED_0000L + mode.ordinal() * 1000L + i;
                final PolicyLossParityTest.Case base = PolicyLossParityTest.randomCase(seed);
                final Gen g = new Gen(seed ^ 0x9E37_79B9L);
                final LossSpec.Builder b = base.spec().toBuilder().policyLossMode(mode);
                if (mode.since() == VerlRelease.V2026_08) {
                    b.release(VerlRelease.V2026_08);
                }
                switch (mode) {
                    case SAPO -> b.tauPos(0.5 + 2 * g.uniform()).tauNeg(0.5 + 2 * g.uniform());
                    case DRO -> b.droBeta(0.01 + 4 * g.uniform());
                    case KL_COV -> b.klCovRatio(0.001 + 0.3 * g.uniform()).ppoKlCoef(g.chance(0.5) ? 0.1 : 1.0);
                    case CLIP_COV -> b.clipCovRatio(0.001 + 0.3 * g.uniform()).clipCovLb(-1 + g.uniform())
                        .clipCovUb(0.5 + 4 * g.uniform()).clipCovSeed(seed);
                    case BYPASS_MODE -> b.rolloutCorrection(RolloutCorrectionParityTest.randomSpec(g, false))
                        .bypassLossType(g.chance(0.5) ? "reinforce" : "ppo_clip");
                    default -> { }
                }
                if (b.build().release() == VerlRelease.V2026_08 && base.spec().dpSize() > 1) {
                    // 2026-08 refuses dp_size > 1 without the global counts.
                    b.batchNumTokens(1 + g.nextInt(20_000)).globalBatchSize(1 + g.nextInt(64));
                }
                final LossSpec spec;
                try {
                    spec = b.build();
                } catch (final IllegalArgumentException e) {
                    // e.g. token-sum under 2026-01 aggregation, or 2026-08's dp_size rule: pick 2026-08 then.
                    out.add(new PolicyLossParityTest.Case(seed, base.data(),
                        b.release(VerlRelease.V2026_08).batchNumTokens(1 + g.nextInt(20_000))
                            .globalBatchSize(1 + g.nextInt(64)).build(), base.withGrad()));
                    continue;
                }
                out.add(new PolicyLossParityTest.Case(seed, base.data(), spec, base.withGrad()));
            }
        }
        return out;
    }

    /**
     * The steady state allocates nothing for a caller reusing its spec (clip_cov excepted: its random subset
     * creates one SplittableRandom per call).
     */
    @org.junit.jupiter.api.Test
    @org.junit.jupiter.api.Tag("allocation")
    void hotCallsAllocateNothing() {
        try (VectorEngine engine = new VectorEngine()) {
            for (final PolicyLossParityTest.Case c : cases()) {
                if (c.spec().policyLossMode() == PolicyLossMode.CLIP_COV || c.seed() % 4 != 0) {
                    continue;
                }
                try (io.rlvec.TokenBatch batch = c.data().batch();
                     io.rlvec.OffHeapArray grad = io.rlvec.OffHeapArray.allocate(io.rlvec.ElementType.F32,
                         c.data().numTokens())) {
                    final io.rlvec.PolicyLossResult out = new io.rlvec.PolicyLossResult();
                    Allocations.assertNoneWhenHot(() -> engine.policyLoss(c.spec(), batch, grad, out),
                        c.spec().policyLossMode().verlName() + " " + c);
                }
            }
        }
    }

    /**
     * Where verl's unclamped exp (clip_cov, kl_cov, geo_mean) or square (dro) overflows on finite inputs, the loss,
     * metrics and gradient stay finite on both engines, bit-identical between them; elsewhere in the same batch the
     * values are verl's (a token that does not overflow is computed as verl does).
     */
    @org.junit.jupiter.api.Test
    void overflowGivesFiniteValues() {
        // Tokens 0..4 overflow in some mode (log-ratios 100, 3e19, -3e19 with A < 0 or A = 0), 5..7 do not.
        final float[] lp = {-0.5f, 99.5f, 1e19f, -1e-3f, 120f, -0.7f, -0.2f, -1.3f};
        final float[] old = {-100.5f, -0.5f, -2e19f, 3e19f, -80f, -0.9f, -0.1f, -1.2f};
        final float[] adv = {-1f, 0f, -2f, 1.5f, -0.5f, 0.8f, -0.3f, 1.1f};
        for (final PolicyLossMode mode : new PolicyLossMode[] {PolicyLossMode.KL_COV, PolicyLossMode.CLIP_COV,
            PolicyLossMode.GEO_MEAN, PolicyLossMode.DRO}) {
            final LossSpec spec = LossSpec.builder().policyLossMode(mode).droBeta(0.5).klCovRatio(0.3)
                .clipCovRatio(0.3).clipCovLb(-1e30).clipCovUb(1e30).build();
            try (io.rlvec.TokenBatch batch = io.rlvec.TokenBatch.padded(2, 4).column(io.rlvec.Column.LOG_PROB, lp)
                     .column(io.rlvec.Column.OLD_LOG_PROB, old).column(io.rlvec.Column.ADVANTAGES, adv).build();
                 io.rlvec.OffHeapArray g1 = io.rlvec.OffHeapArray.allocate(io.rlvec.ElementType.F32, 8);
                 io.rlvec.OffHeapArray g2 = io.rlvec.OffHeapArray.allocate(io.rlvec.ElementType.F32, 8);
                 VectorEngine engine = new VectorEngine()) {
                final io.rlvec.PolicyLossResult r1 = new io.rlvec.PolicyLossResult();
                final io.rlvec.PolicyLossResult r2 = new io.rlvec.PolicyLossResult();
                reference.policyLoss(spec, batch, g1, r1);
                engine.policyLoss(spec, batch, g2, r2);
                final String ctx = mode.verlName();
                org.assertj.core.api.Assertions.assertThat(r1.pgLoss()).as(ctx).isFinite();
                for (final double v : r1.metrics().values()) {
                    org.assertj.core.api.Assertions.assertThat(v).as(ctx).isFinite();
                }
                for (final float v : g1.toFloatArray()) {
                    org.assertj.core.api.Assertions.assertThat(v).as(ctx + " gradient").isFinite();
                }
                Results.assertSameBits(g1.toFloatArray(), g2.toFloatArray(), ctx);
                Results.assertClose(r1, r2, 1, ctx);
            }
        }
        // Away from overflow the value is verl's unclamped one: exp(10) is not clamped to exp(20)'s range.
        org.assertj.core.api.Assertions.assertThat(io.rlvec.reference.TokenRule.overflowSafeRatio(-1f, 30f))
            .isEqualTo(io.rlvec.CanonicalMath.exp(30f));
        org.assertj.core.api.Assertions.assertThat(io.rlvec.reference.TokenRule.overflowSafeRatio(-1f, 100f))
            .isEqualTo(io.rlvec.CanonicalMath.exp(20f));
    }

    @ParameterizedTest
    @MethodSource("cases")
    void matchesTheReferenceOnAnyThreadCount(final PolicyLossParityTest.Case c) {
        final String ctx = c.spec().policyLossMode().verlName() + " " + c;
        final PolicyLossParityTest.Outcome ref = PolicyLossParityTest.run(reference, c);
        try (VectorEngine one = new VectorEngine(1); VectorEngine three = new VectorEngine(3)) {
            final PolicyLossParityTest.Outcome vec = PolicyLossParityTest.run(one, c);
            final PolicyLossParityTest.Outcome vec3 = PolicyLossParityTest.run(three, c);
            if (c.withGrad()) {
                Results.assertSameBits(ref.grad(), vec.grad(), ctx);
                Results.assertSameBits(vec.grad(), vec3.grad(), ctx + " (3 threads)");
            }
            Results.assertClose(ref.result(), vec.result(), 1, ctx);
            Results.assertClose(vec.result(), vec3.result(), 0, ctx + " (3 threads)");
            // A second call on the warm engine gives the same bits.
            final PolicyLossParityTest.Outcome again = PolicyLossParityTest.run(one, c);
            if (c.withGrad()) {
                Results.assertSameBits(vec.grad(), again.grad(), ctx + " (again)");
            }
            Results.assertClose(vec.result(), again.result(), 0, ctx + " (again)");
        }
    }
}
