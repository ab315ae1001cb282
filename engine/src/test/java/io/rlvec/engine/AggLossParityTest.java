package io.rlvec.engine;

import static org.assertj.core.api.Assertions.assertThat;

import java.util.ArrayList;
import java.util.List;

import org.junit.jupiter.api.Order;
import org.junit.jupiter.api.Tag;
import org.junit.jupiter.api.Test;

import io.rlvec.AggMode;
import io.rlvec.AggResult;
import io.rlvec.ElementType;
import io.rlvec.Engine;
import io.rlvec.LossSpec;
import io.rlvec.OffHeapArray;
import io.rlvec.TokenBatch;
import io.rlvec.VerlRelease;
import io.rlvec.reference.ReferenceEngine;
import io.rlvec.testing.Gen;
import io.rlvec.testing.Results;
import io.rlvec.testing.TokenData;

/**
 * Parity of the vector agg_loss kernel with the reference: gradient bit-identical, loss within 1 ulp, counts
 * exact; cold, then hot after 2*10^4 calls (and then bit-identical to its own cold results); 1 vs 2 threads.
 */
@Order(3)
class AggLossParityTest {
    private static final int SEEDS = 40;
    private static final int WARM_UP_CALLS = 20_000;

    private final Engine reference = new ReferenceEngine();

    /** One random call. */
    record Case(long seed, TokenData data, float[] values, LossSpec spec, boolean withGrad) {
        @Override
        public String toString() {
            return "seed=" + seed + " " + spec.lossAggMode().verlName() + " grad=" + withGrad + " " + data;
        }
    }

    record Outcome(AggResult result, float[] grad) {
    }

    static Case randomCase(final long seed, final int maxBatch, final int maxLength) {
        final Gen g = new Gen(seed);
        final TokenData d = TokenData.random(g, TokenData.Options.of(g.chance(0.5)).sizes(maxBatch, maxLength));
        final float[] values = d.randomValues(g);
        final AggMode mode = AggMode.values()[g.nextInt(AggMode.values().length)];
        final LossSpec.Builder b = LossSpec.builder().lossAggMode(mode).dpSize(1 + g.nextInt(4));
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
        return new Case(seed, d, values, b.build(), g.chance(0.85));
    }

    static Outcome run(final Engine engine, final Case c) {
        try (TokenBatch batch = c.data().batch();
             OffHeapArray values = OffHeapArray.of(c.values());
             OffHeapArray grad = c.withGrad() ? OffHeapArray.allocate(ElementType.F32, c.data().numTokens()) : null) {
            final AggResult out = new AggResult();
            engine.aggLoss(c.spec(), batch, values, grad, out);
            return new Outcome(out, grad == null ? null : grad.toFloatArray());
        }
    }

    private static void assertClose(final Outcome ref, final Outcome vec, final String ctx) {
        if (ref.grad() != null) {
            Results.assertSameBits(ref.grad(), vec.grad(), ctx);
        }
        assertThat(vec.result().validTokens()).as(ctx).isEqualTo(ref.result().validTokens());
        assertThat(vec.result().validSequences()).as(ctx).isEqualTo(ref.result().validSequences());
        assertThat(vec.result().denominator()).as(ctx).isEqualTo(ref.result().denominator());
        Results.assertUlps(ref.result().loss(), vec.result().loss(), 1, ctx + ": loss");
    }

    private static void assertSameBits(final Outcome a, final Outcome b, final String ctx) {
        if (a.grad() != null) {
            Results.assertSameBits(a.grad(), b.grad(), ctx);
        }
        // Any NaN equals any NaN: NaN payloads are not part of the contract (see Ulp.sameBits).
        assertThat(Double.doubleToLongBits(b.result().numerator())).as(ctx)
            .isEqualTo(Double.doubleToLongBits(a.result().numerator()));
        assertThat(Float.floatToIntBits(b.result().loss())).as(ctx)
            .isEqualTo(Float.floatToIntBits(a.result().loss()));
    }

    @Test
    void coldThenHotMatchesTheReferenceAndItself() {
        try (VectorEngine engine = new VectorEngine()) {
            final List<Case> cases = new ArrayList<>();
            final List<Outcome> cold = new ArrayList<>();
            for (int i = 0; i < SEEDS; i++) {
                final Case c = randomCase(0xA66_0000L + i, 40, 300);
                cases.add(c);
                final Outcome vec = run(engine, c);
                assertClose(run(reference, c), vec, "cold " + c);
                cold.add(vec);
            }
            final Case[] warm = {randomCase(1, 3, 70), randomCase(2, 3, 70), randomCase(3, 3, 70),
                randomCase(4, 3, 70)};
            for (int i = 0; i < WARM_UP_CALLS; i++) {
                run(engine, warm[i % warm.length]);
            }
            for (int i = 0; i < SEEDS; i++) {
                final Case c = cases.get(i);
                final Outcome hot = run(engine, c);
                assertClose(run(reference, c), hot, "hot " + c);
                assertSameBits(cold.get(i), hot, "cold vs hot " + c);
            }
        }
    }

    /** The steady state allocates nothing (a fresh JVM per class: the "allocation" executions of the pom). */
    @Test
    @Tag("allocation")
    void hotCallsAllocateNothing() {
        try (VectorEngine engine = new VectorEngine()) {
            final Case c = randomCase(1, 3, 70);
            try (TokenBatch batch = c.data().batch();
                 OffHeapArray values = OffHeapArray.of(c.values());
                 OffHeapArray grad = OffHeapArray.allocate(ElementType.F32, c.data().numTokens())) {
                final AggResult out = new AggResult();
                Allocations.assertNoneWhenHot(() -> engine.aggLoss(c.spec(), batch, values, grad, out), c.toString());
            }
        }
    }

    @Test
    void oneAndTwoThreadsGiveTheSameBits() {
        try (VectorEngine one = new VectorEngine(1); VectorEngine two = new VectorEngine(2)) {
            for (int i = 0; i < 3; i++) {
                final Case c = randomCase(0xB10C_0000L + i, 40, 3000);
                final Outcome a = run(one, c);
                final Outcome b = run(two, c);
                assertSameBits(a, b, "1 vs 2 threads " + c);
                assertClose(run(reference, c), b, "2 threads " + c);
            }
        }
    }
}
