package io.rlvec.engine;

import static org.assertj.core.api.Assertions.assertThat;

import java.util.ArrayList;
import java.util.List;

import org.junit.jupiter.api.Order;
import org.junit.jupiter.api.Tag;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.MethodSource;

import io.rlvec.AggMode;
import io.rlvec.ElementType;
import io.rlvec.Engine;
import io.rlvec.LossSpec;
import io.rlvec.OffHeapArray;
import io.rlvec.PolicyLossResult;
import io.rlvec.TokenBatch;
import io.rlvec.VerlRelease;
import io.rlvec.reference.ReferenceEngine;
import io.rlvec.testing.Gen;
import io.rlvec.testing.Results;
import io.rlvec.testing.TokenData;
import io.rlvec.testing.Ulp;

/**
 * Parity of the vector policy-loss kernel with the reference: per-token gradients bit-identical, loss and metrics
 * within 1 ulp, counts exact, on seeded adversarial batches; cold (interpreted) and again hot (after 2*10^4
 * calls), where the engine must also reproduce its own cold bits; and 1 vs 2 threads bit-identical.
 */
@Order(2)
class PolicyLossParityTest {
    private static final int SEEDS = 48;
    private static final long FIRST_SEED = 0x9A41_7700L;
    /** Calls on small cases before the hot pass (>= 2*10^4, design.md). */
    private static final int WARM_UP_CALLS = 20_000;

    private final Engine reference = new ReferenceEngine();

    /** One random call: data, spec, whether a gradient is asked for. */
    record Case(long seed, TokenData data, LossSpec spec, boolean withGrad) {
        @Override
        public String toString() {
            return "seed=" + seed + " " + spec.lossAggMode().verlName() + " clip=[" + spec.clipRatioLow() + ","
                + spec.clipRatioHigh() + "] c=" + spec.clipRatioC() + " grad=" + withGrad + " " + data;
        }
    }

    /** A finished call: result and gradient bits (null without gradient). */
    record Outcome(PolicyLossResult result, float[] grad) {
    }

    static Case randomCase(final long seed) {
        final Gen g = new Gen(seed);
        final TokenData.Options o = TokenData.Options.of(g.chance(0.5)).weights(g.chance(0.5)).sizes(40, 300);
        if (g.chance(0.2)) {
            o.validSpecials(0.02);
        }
        final TokenData d = TokenData.random(g, o);
        final AggMode mode = AggMode.values()[g.nextInt(AggMode.values().length)];
        final LossSpec.Builder b = LossSpec.builder().lossAggMode(mode).dpSize(1 + g.nextInt(4));
        switch (g.nextInt(4)) {
            case 0 -> b.clipRatio(0.2);
            case 1 -> b.clipRatioLow(0.05 + 0.3 * g.uniform()).clipRatioHigh(0.05 + 0.3 * g.uniform());
            case 2 -> b.clipRatio(0.0);
            default -> b.clipRatioLow(0.9).clipRatioHigh(2.5);
        }
        b.clipRatioC(switch (g.nextInt(3)) {
            case 0 -> 3.0;
            case 1 -> 10.0;
            default -> 1.0 + 4 * g.uniform() + 1e-3;
        });
        final boolean global = g.chance(0.4);
        if (global) {
            b.batchNumTokens(1 + g.nextInt(20_000)).globalBatchSize(1 + g.nextInt(64));
        }
        // Both releases' aggregation; 2026-08 refuses dp_size > 1 without global counts, 2026-01 has no token-sum.
        final boolean jan = mode != AggMode.TOKEN_SUM && (g.chance(0.5) || !global);
        b.release(jan ? VerlRelease.V2026_01 : VerlRelease.V2026_08);
        if ((mode == AggMode.SEQ_MEAN_TOKEN_SUM_NORM && !d.isPadded()) || g.chance(0.3)) {
            b.lossScaleFactor(1 + g.nextInt(4096));
        }
        return new Case(seed, d, b.build(), g.chance(0.85));
    }

    static List<Case> cases() {
        final List<Case> out = new ArrayList<>();
        for (int i = 0; i < SEEDS; i++) {
            out.add(randomCase(FIRST_SEED + i));
        }
        return out;
    }

    static Outcome run(final Engine engine, final Case c) {
        try (TokenBatch batch = c.data().batch();
             OffHeapArray grad = c.withGrad() ? OffHeapArray.allocate(ElementType.F32, c.data().numTokens()) : null) {
            if (grad != null) {
                grad.fill(Float.intBitsToFloat(0x7fc0dead));
            }
            final PolicyLossResult out = new PolicyLossResult();
            engine.policyLoss(c.spec(), batch, grad, out);
            return new Outcome(out, grad == null ? null : grad.toFloatArray());
        }
    }

    private void assertParity(final Case c, final Outcome ref, final Outcome vec, final String phase) {
        final String ctx = phase + " " + c;
        if (c.withGrad()) {
            Results.assertSameBits(ref.grad(), vec.grad(), ctx);
        }
        Results.assertClose(ref.result(), vec.result(), 1, ctx);
    }

    private static void assertSameEngineBits(final Outcome a, final Outcome b, final String ctx) {
        if (a.grad() != null) {
            Results.assertSameBits(a.grad(), b.grad(), ctx);
        }
        for (final PolicyLossResult.Stat s : PolicyLossResult.Stat.values()) {
            // Double.doubleToLongBits: any NaN equals any NaN (payload and sign of a NaN are not part of the
            // contract: hardware produces -NaN for Inf - Inf, while interpreted Vector API code canonicalises).
            assertThat(Double.doubleToLongBits(b.result().stat(s))).as("%s: %s", ctx, s)
                .isEqualTo(Double.doubleToLongBits(a.result().stat(s)));
        }
        assertThat(Ulp.sameBits(a.result().pgLoss(), b.result().pgLoss())).as(ctx).isTrue();
    }

    /** Small cases covering every branch the kernels have (weights or not, gradient or not, tails), for warm-up. */
    private static List<Case> warmUpCases() {
        final List<Case> out = new ArrayList<>();
        for (int i = 0; out.size() < 8; i++) {
            final Gen g = new Gen(0x3A3A_0000L + i);
            final TokenData d = TokenData.random(g, TokenData.Options.of(i % 2 == 0).weights(i % 4 < 2).sizes(3, 70));
            out.add(new Case(0x3A3A_0000L + i, d, LossSpec.builder()
                .lossAggMode(AggMode.values()[i % AggMode.values().length]).lossScaleFactor(64).build(), i % 8 < 6));
        }
        return out;
    }

    @Test
    void coldThenHotMatchesTheReferenceAndItself() {
        try (VectorEngine engine = new VectorEngine()) {
            final List<Case> cases = cases();
            final List<Outcome> cold = new ArrayList<>();
            for (final Case c : cases) {
                final Outcome vec = run(engine, c);
                assertParity(c, run(reference, c), vec, "cold");
                cold.add(vec);
            }
            final List<Case> warm = warmUpCases();
            for (int i = 0; i < WARM_UP_CALLS; i++) {
                run(engine, warm.get(i % warm.size()));
            }
            for (int i = 0; i < cases.size(); i++) {
                final Case c = cases.get(i);
                final Outcome hot = run(engine, c);
                assertParity(c, run(reference, c), hot, "hot");
                assertSameEngineBits(cold.get(i), hot, "cold vs hot " + c);
            }
        }
    }

    /** The steady state allocates nothing (a fresh JVM per class: the "allocation" executions of the pom). */
    @Test
    @Tag("allocation")
    void hotCallsAllocateNothing() {
        try (VectorEngine engine = new VectorEngine()) {
            assertZeroAllocationWhenHot(engine, warmUpCases().get(0));
        }
    }

    /** The steady state allocates nothing: no boxed vectors, no per-call arrays (measured on this thread). */
    private static void assertZeroAllocationWhenHot(final VectorEngine engine, final Case c) {
        try (TokenBatch batch = c.data().batch();
             OffHeapArray grad = OffHeapArray.allocate(ElementType.F32, c.data().numTokens())) {
            final PolicyLossResult out = new PolicyLossResult();
            Allocations.assertNoneWhenHot(() -> engine.policyLoss(c.spec(), batch, grad, out), c.toString());
            Allocations.assertNoneWhenHot(() -> engine.policyLoss(c.spec(), batch, null, out), "no gradient " + c);
        }
    }

    @ParameterizedTest
    @MethodSource("cases")
    void seededCaseMatchesTheReference(final Case c) {
        try (VectorEngine engine = new VectorEngine()) {
            assertParity(c, run(reference, c), run(engine, c), "seeded");
        }
    }

    /** Large batches: several blocks, and sequences longer than a piece (16384 tokens). */
    static List<Case> largeCases() {
        final List<Case> out = new ArrayList<>();
        for (int i = 0; i < 3; i++) {
            final long seed = 0x1A2B_0000L + i;
            final Gen g = new Gen(seed);
            final TokenData base = TokenData.random(g, TokenData.Options.of(false).weights(i != 1).sizes(30, 3000));
            // Append one sequence of 2.5 pieces so that a sequence spans blocks and pieces.
            final int extra = 2 * SequencePieces.PIECE_TOKENS + 4099 + i;
            final int[] lengths = java.util.Arrays.copyOf(base.rowLengths, base.rowLengths.length + 1);
            lengths[lengths.length - 1] = extra;
            final TokenData big = TokenData.random(new Gen(seed + 100), TokenData.Options.of(false).weights(i != 1)
                .sizes(1, extra));
            final int n = base.numTokens() + extra;
            final float[][] cols = new float[5][];
            final float[][] a = {base.logProb, base.oldLogProb, base.advantages, base.mask, base.weights};
            final float[][] bcols = {big.logProb, big.oldLogProb, big.advantages, big.mask, big.weights};
            for (int c = 0; c < 5; c++) {
                if (a[c] == null) {
                    continue;
                }
                cols[c] = new float[n];
                System.arraycopy(a[c], 0, cols[c], 0, base.numTokens());
                final float[] fill = bcols[c];
                for (int t = 0; t < extra; t++) {
                    // The generated long row may be shorter than extra: cycle it.
                    cols[c][base.numTokens() + t] = fill.length == 0 ? 1f : fill[t % fill.length];
                }
            }
            final TokenData d = TokenData.packed(lengths, cols[0], cols[1], cols[2], cols[3], cols[4]);
            final AggMode mode = AggMode.values()[i % 4];
            out.add(new Case(seed, d, LossSpec.builder().lossAggMode(mode).lossScaleFactor(4096).build(), true));
        }
        return out;
    }

    @Test
    void oneAndTwoThreadsGiveTheSameBits() {
        try (VectorEngine one = new VectorEngine(1); VectorEngine two = new VectorEngine(2)) {
            for (final Case c : largeCases()) {
                final Outcome a = run(one, c);
                final Outcome b = run(two, c);
                assertSameEngineBits(a, b, "1 vs 2 threads " + c);
                assertParity(c, run(reference, c), b, "2 threads");
            }
        }
    }
}
