package io.rlvec.engine;

import static org.assertj.core.api.Assertions.assertThat;

import java.util.ArrayList;
import java.util.List;

import org.junit.jupiter.api.Order;
import org.junit.jupiter.api.Tag;
import org.junit.jupiter.api.Test;

import io.rlvec.AggMode;
import io.rlvec.Column;
import io.rlvec.ElementType;
import io.rlvec.Engine;
import io.rlvec.LossSpec;
import io.rlvec.OffHeapArray;
import io.rlvec.TokenBatch;
import io.rlvec.ValueLossResult;
import io.rlvec.VerlRelease;
import io.rlvec.reference.ReferenceEngine;
import io.rlvec.testing.Gen;
import io.rlvec.testing.Results;
import io.rlvec.testing.TokenData;

/**
 * Parity of the vector value loss with the reference on random padded and packed (ragged) batches, both verl
 * releases, every aggregation mode: d vf_loss / d vpreds bit-identical, vf_clipfrac and the counts exact, vf_loss
 * and vpred_mean within 1 ulp; cold, then hot (and then bit-identical to its own cold results); 1 vs 3 threads;
 * no allocation when hot. The data puts vpreds exactly on values +- cliprange_value and on the returns (torch's
 * tie shares), inside and outside the clip, with garbage in masked slots and NaN/Inf in some valid ones.
 */
@Order(3)
class ValueLossParityTest {
    private static final int SEEDS = 40;
    private static final int WARM_UP_CALLS = 20_000;

    private final Engine reference = new ReferenceEngine();

    /** One random call: AggLossParityTest's batch, mask and aggregation, with the value-loss columns. */
    record Case(long seed, TokenData data, float[] vpreds, float[] returns, float[] values, LossSpec spec,
                boolean withGrad) {
        @Override
        public String toString() {
            return "seed=" + seed + " " + spec.lossAggMode().verlName() + " " + spec.release().label() + " c="
                + spec.cliprangeValue() + " grad=" + withGrad + " " + data;
        }
    }

    record Outcome(ValueLossResult result, float[] grad) {
    }

    static Case randomCase(final long seed, final int maxBatch, final int maxLength) {
        final AggLossParityTest.Case base = AggLossParityTest.randomCase(seed, maxBatch, maxLength);
        final Gen g = new Gen(seed * 31 + 7);
        final double c = g.chance(0.6) ? 0.5 : g.pick(0.2f, 0f, 1e-3f, 10f);
        final float cf = (float) c;
        final TokenData d = base.data();
        final int n = d.numTokens();
        final float[] vpreds = new float[n];
        final float[] returns = new float[n];
        final float[] values = new float[n];
        for (int t = 0; t < n; t++) {
            if (d.mask[t] == 0f) {
                vpreds[t] = g.garbage();
                returns[t] = g.garbage();
                values[t] = g.garbage();
                continue;
            }
            final float old = g.gaussian(2.0);
            final double k = g.uniform();
            final float v;
            if (k < 0.45) {
                v = old + g.gaussian(1.0);
            } else if (k < 0.55) {
                v = old + cf;
            } else if (k < 0.65) {
                v = old - cf;
            } else if (k < 0.75) {
                v = old;
            } else if (k < 0.8) {
                v = g.subnormal();
            } else {
                v = old + g.gaussian(0.2);
            }
            values[t] = old;
            vpreds[t] = v;
            returns[t] = g.chance(0.1) ? v : old + g.gaussian(1.0);
            if (g.chance(0.01)) {
                final float special = g.pick(Float.NaN, Float.POSITIVE_INFINITY, Float.NEGATIVE_INFINITY);
                switch (g.nextInt(3)) {
                    case 0 -> vpreds[t] = special;
                    case 1 -> returns[t] = special;
                    default -> values[t] = special;
                }
            }
        }
        final LossSpec.Builder spec = base.spec().toBuilder().cliprangeValue(c);
        final LossSpec s = base.spec();
        if (!d.isPadded() && s.lossAggMode() == AggMode.SEQ_MEAN_TOKEN_SUM_NORM && s.release() == VerlRelease.V2026_01) {
            // verl 2026-01 drops loss_scale_factor here, so only the padded width is left: refused on a packed
            // batch (releaseDecidesTheGlobalArguments); the 2026-08 aggregation instead.
            spec.release(VerlRelease.V2026_08);
            if (s.globalBatchSize() == LossSpec.UNSET) {
                spec.dpSize(1);
            }
        }
        return new Case(seed, d, vpreds, returns, values, spec.build(), base.withGrad());
    }

    static TokenBatch batch(final Case c) {
        final TokenData d = c.data();
        final TokenBatch.Builder b = d.isPadded() ? TokenBatch.padded(d.numSequences(), d.paddedWidth)
            : TokenBatch.withOffsets(d.offsets);
        return b.column(Column.VPREDS, c.vpreds()).column(Column.RETURNS, c.returns())
            .column(Column.VALUES, c.values()).column(Column.RESPONSE_MASK, d.mask).build();
    }

    static Outcome run(final Engine engine, final Case c) {
        try (TokenBatch batch = batch(c);
             OffHeapArray grad = c.withGrad() ? OffHeapArray.allocate(ElementType.F32, c.data().numTokens()) : null) {
            final ValueLossResult out = new ValueLossResult();
            engine.valueLoss(c.spec(), batch, grad, out);
            return new Outcome(out, grad == null ? null : grad.toFloatArray());
        }
    }

    private static void assertClose(final Outcome ref, final Outcome vec, final String ctx) {
        if (ref.grad() != null) {
            Results.assertSameBits(ref.grad(), vec.grad(), ctx);
        }
        final ValueLossResult r = ref.result();
        final ValueLossResult v = vec.result();
        assertThat(v.validTokens()).as(ctx).isEqualTo(r.validTokens());
        assertThat(v.validSequences()).as(ctx).isEqualTo(r.validSequences());
        assertThat(v.clippedTokens()).as(ctx).isEqualTo(r.clippedTokens());
        assertThat(v.denominator()).as(ctx).isEqualTo(r.denominator());
        assertThat(Float.floatToIntBits(v.vfClipfrac())).as(ctx).isEqualTo(Float.floatToIntBits(r.vfClipfrac()));
        Results.assertUlps(r.vfLoss(), v.vfLoss(), 1, ctx + ": vf_loss");
        Results.assertUlps(r.vpredMean(), v.vpredMean(), 1, ctx + ": vpred_mean");
    }

    private static void assertSameBits(final Outcome a, final Outcome b, final String ctx) {
        if (a.grad() != null) {
            Results.assertSameBits(a.grad(), b.grad(), ctx);
        }
        assertThat(Double.doubleToLongBits(b.result().numerator())).as(ctx)
            .isEqualTo(Double.doubleToLongBits(a.result().numerator()));
        assertThat(Double.doubleToLongBits(b.result().vpredSum())).as(ctx)
            .isEqualTo(Double.doubleToLongBits(a.result().vpredSum()));
        assertThat(Float.floatToIntBits(b.result().vfLoss())).as(ctx)
            .isEqualTo(Float.floatToIntBits(a.result().vfLoss()));
        assertThat(b.result().clippedTokens()).as(ctx).isEqualTo(a.result().clippedTokens());
    }

    @Test
    void coldThenHotMatchesTheReferenceAndItself() {
        try (VectorEngine engine = new VectorEngine()) {
            final List<Case> cases = new ArrayList<>();
            final List<Outcome> cold = new ArrayList<>();
            for (int i = 0; i < SEEDS; i++) {
                final Case c = randomCase(0x7A1_0000L + i, 40, 300);
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

    /** A batch's tie cases on their own: every share of torch's gradient is exercised with known values. */
    @Test
    void tiesSplitTheGradientAsTorch() {
        // c = 0.5, values 0: hi = 0.5, lo = -0.5.
        final float[] v = {0.5f, -0.5f, 0.2f, 1.5f, 1f, -1f};
        final float[] r = {0f, 0f, 0.2f, 0f, 0.75f, 0f};
        final float[] old = new float[v.length];
        final float[] mask = {1, 1, 1, 1, 1, 1};
        try (TokenBatch batch = TokenBatch.padded(1, v.length).column(Column.VPREDS, v).column(Column.RETURNS, r)
                 .column(Column.VALUES, old).column(Column.RESPONSE_MASK, mask).build();
             OffHeapArray grad = OffHeapArray.allocate(ElementType.F32, v.length);
             VectorEngine vector = new VectorEngine()) {
            final LossSpec spec = LossSpec.builder().lossAggMode(AggMode.TOKEN_SUM).build();
            for (final Engine e : List.<Engine>of(reference, vector)) {
                final ValueLossResult out = new ValueLossResult();
                e.valueLoss(spec, batch, grad, out);
                // g = 0.5 * d/dv max(l1, l2):
                //  v = hi:   l1 == l2, min tie (0.5): 0.5 * (0.5 * 2 * 0.5 + 0.5 * 0.5 * 2 * 0.5) = 0.375
                //  v = lo:   l1 == l2, max tie (0.5): the same, -0.375
                //  v = r inside: both losses 0, shares 0.5 + 0.5: 0
                //  v = 1.5 > hi, r = 0: l1 = 2.25 > l2 = 0.25: 0.5 * 2 * 1.5 = 1.5
                //  v = 1, r = 0.75: vclip = 0.5, l1 = 0.0625 == l2 = 0.0625, clipped side dead: 0.5 * 0.5 * 0.5 = 0.125
                //  v = -1, r = 0: l1 = 1 > l2 = 0.25: -1
                assertThat(grad.toFloatArray()).as(e.name()).containsExactly(0.375f, -0.375f, 0f, 1.5f, 0.125f, -1f);
                assertThat(out.clippedTokens()).as(e.name()).isZero();
                assertThat(out.vfLoss()).as(e.name()).isEqualTo(0.5f * (0.25f + 0.25f + 0f + 2.25f + 0.0625f + 1f));
                assertThat(out.vpredMean()).as(e.name()).isEqualTo((float) (((double) 0.2f + 1.5) / 6));
            }
        }
    }

    /**
     * verl 2026-01's compute_value_loss calls agg_loss without dp_size, batch_num_tokens, global_batch_size and
     * loss_scale_factor; 2026-08 passes them.
     */
    @Test
    void releaseDecidesTheGlobalArguments() {
        final Case c = randomCase(11, 6, 40);
        final LossSpec.Builder global = LossSpec.builder().lossAggMode(AggMode.SEQ_MEAN_TOKEN_MEAN).dpSize(4)
            .batchNumTokens(999).globalBatchSize(17).lossScaleFactor(64);
        final LossSpec local = LossSpec.builder().lossAggMode(AggMode.SEQ_MEAN_TOKEN_MEAN)
            .release(VerlRelease.V2026_01).build();
        final LossSpec jan = global.release(VerlRelease.V2026_01).build();
        final LossSpec aug = global.release(VerlRelease.V2026_08).build();
        assertThat(jan.valueAggregationSpec()).isEqualTo(local);
        assertThat(aug.valueAggregationSpec()).isSameAs(aug);
        try (VectorEngine vector = new VectorEngine()) {
            for (final Engine e : List.<Engine>of(reference, vector)) {
                final Outcome a = run(e, new Case(c.seed(), c.data(), c.vpreds(), c.returns(), c.values(), jan, true));
                final Outcome b = run(e, new Case(c.seed(), c.data(), c.vpreds(), c.returns(), c.values(), local,
                    true));
                final Outcome g = run(e, new Case(c.seed(), c.data(), c.vpreds(), c.returns(), c.values(), aug, true));
                assertSameBits(a, b, e.name() + " 2026-01 ignores the global arguments");
                assertThat(g.result().denominator()).as(e.name()).isEqualTo(17.0);
            }
            final TokenData packed = c.data().packed();
            final LossSpec norm = LossSpec.builder().lossAggMode(AggMode.SEQ_MEAN_TOKEN_SUM_NORM)
                .release(VerlRelease.V2026_01).lossScaleFactor(64).build();
            final float[] zeros = new float[packed.numTokens()];
            final Case p = new Case(1, packed, zeros, zeros, zeros, norm, false);
            for (final Engine e : List.<Engine>of(reference, vector)) {
                org.assertj.core.api.Assertions.assertThatThrownBy(() -> run(e, p))
                    .isInstanceOf(IllegalArgumentException.class).hasMessageContaining("loss_scale_factor");
            }
        }
    }

    /** The steady state allocates nothing (a fresh JVM per class: the "allocation" executions of the pom). */
    @Test
    @Tag("allocation")
    void hotCallsAllocateNothing() {
        try (VectorEngine engine = new VectorEngine()) {
            final Case c = randomCase(1, 3, 70);
            try (TokenBatch batch = batch(c);
                 OffHeapArray grad = OffHeapArray.allocate(ElementType.F32, c.data().numTokens())) {
                final ValueLossResult out = new ValueLossResult();
                Allocations.assertNoneWhenHot(() -> engine.valueLoss(c.spec(), batch, grad, out), c.toString());
            }
        }
    }

    @Test
    void oneAndThreeThreadsGiveTheSameBits() {
        try (VectorEngine one = new VectorEngine(1); VectorEngine three = new VectorEngine(3)) {
            for (int i = 0; i < 3; i++) {
                final Case c = randomCase(0x7A1B_0000L + i, 40, 3000);
                final Outcome a = run(one, c);
                final Outcome b = run(three, c);
                assertSameBits(a, b, "1 vs 3 threads " + c);
                assertClose(run(reference, c), b, "3 threads " + c);
            }
        }
    }
}
