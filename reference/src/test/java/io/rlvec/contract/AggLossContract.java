package io.rlvec.contract;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import java.util.Arrays;

import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.EnumSource;
import org.junit.jupiter.params.provider.MethodSource;

import io.rlvec.AggMode;
import io.rlvec.AggResult;
import io.rlvec.Aggregation;
import io.rlvec.ElementType;
import io.rlvec.Engine;
import io.rlvec.LossSpec;
import io.rlvec.OffHeapArray;
import io.rlvec.TokenBatch;
import io.rlvec.testing.Gen;
import io.rlvec.testing.Results;
import io.rlvec.testing.TokenData;

/**
 * The behaviour of {@link Engine#aggLoss} (verl's agg_loss on an arbitrary per-token column), written once and
 * run on every implementation.
 */
public abstract class AggLossContract {
    private static final float SENTINEL = Float.intBitsToFloat(0x7fc0beef);

    /** @return the engine under test. */
    protected abstract Engine engine();

    /** A finished call: the result and a heap copy of the gradient. */
    protected record Outcome(AggResult result, float[] grad) {
    }

    /** Runs agg_loss over {@code values} with the offsets and mask of {@code d}. */
    protected final Outcome run(final LossSpec spec, final TokenData d, final float[] values) {
        try (TokenBatch batch = d.batch();
             OffHeapArray lossMat = OffHeapArray.of(values);
             OffHeapArray grad = OffHeapArray.allocate(ElementType.F32, d.numTokens())) {
            grad.fill(SENTINEL);
            final AggResult out = new AggResult();
            engine().aggLoss(spec, batch, lossMat, grad, out);
            return new Outcome(out, grad.toFloatArray());
        }
    }

    /** The fixture's per-token losses: -A at valid slots, NaN where masked. */
    private static float[] fixtureValues(final TokenData d) {
        final float[] v = new float[d.numTokens()];
        for (int t = 0; t < v.length; t++) {
            v[t] = d.mask[t] != 0f ? -d.advantages[t] : Float.NaN;
        }
        return v;
    }

    @ParameterizedTest
    @MethodSource("io.rlvec.contract.PolicyLossContract#aggCases")
    void everyModeWithDefaultAndGlobalArguments(final LossSpec spec, final double loss, final double denominator,
                                                final double tw0, final double tw2) {
        final TokenData d = PolicyLossContract.aggFixture();
        final Outcome o = run(spec, d, fixtureValues(d));
        assertThat(o.result().loss()).as("%s", spec).isEqualTo((float) loss);
        assertThat(o.result().denominator()).as("%s", spec).isEqualTo(denominator);
        assertThat(o.result().validTokens()).isEqualTo(5);
        assertThat(o.result().validSequences()).isEqualTo(2);
        for (int t = 0; t < d.numTokens(); t++) {
            final float expected = d.mask[t] == 0f ? 0f : (float) (t < 4 ? tw0 : tw2);
            assertThat(Float.floatToRawIntBits(o.grad()[t])).as("%s token %d: %s", spec, t, o.grad()[t])
                .isEqualTo(Float.floatToRawIntBits(expected));
        }
    }

    @ParameterizedTest
    @EnumSource(AggMode.class)
    void noValidTokenGivesZeroNotNaN(final AggMode mode) {
        final float[] nan = new float[12];
        Arrays.fill(nan, Float.NaN);
        final TokenData empty = TokenData.padded(4, nan, nan, nan, new float[12], null);
        final Outcome o = run(LossSpec.builder().lossAggMode(mode).build(), empty, nan);
        assertThat(o.result().loss()).as("%s", mode).isZero();
        assertThat(o.result().numerator()).isZero();
        for (final float g : o.grad()) {
            assertThat(Float.floatToRawIntBits(g)).isZero();
        }
    }

    @ParameterizedTest
    @MethodSource("io.rlvec.contract.PolicyLossContract#seedsAndModes")
    void maskedValuesNeverLeak(final long seed, final AggMode mode) {
        final Gen g = new Gen(seed);
        final TokenData d = TokenData.random(g, TokenData.Options.of(g.chance(0.5)).sizes(20, 200));
        final float[] values = d.randomValues(g);
        final float[] zeroed = values.clone();
        for (int t = 0; t < values.length; t++) {
            if (d.mask[t] == 0f) {
                zeroed[t] = 0f;
            }
        }
        final LossSpec spec = PolicyLossContract.specFor(mode, d, 1 + g.nextInt(2));
        final Outcome dirty = run(spec, d, values);
        final Outcome clean = run(spec, d, zeroed);
        final String ctx = "seed=" + seed + " " + mode + " " + d;
        assertThat(dirty.result().loss()).as(ctx).isEqualTo(clean.result().loss());
        assertThat(Float.isNaN(dirty.result().loss())).as(ctx).isFalse();
        Results.assertSameBits(clean.grad(), dirty.grad(), ctx);
        for (int t = 0; t < values.length; t++) {
            if (d.mask[t] == 0f) {
                assertThat(Float.floatToRawIntBits(dirty.grad()[t])).as("%s masked %d", ctx, t).isZero();
            }
        }
    }

    @Test
    void rejectsBadArgumentsBeforeTouchingMemory() {
        final TokenData d = PolicyLossContract.aggFixture();
        final LossSpec spec = LossSpec.builder().build();
        final AggResult out = new AggResult();
        try (TokenBatch batch = d.batch();
             TokenBatch packed = d.packed().batch();
             OffHeapArray values = OffHeapArray.of(fixtureValues(d));
             OffHeapArray shortValues = OffHeapArray.allocate(ElementType.F32, d.numTokens() - 1);
             OffHeapArray shortGrad = OffHeapArray.allocate(ElementType.F32, d.numTokens() - 1);
             OffHeapArray grad = OffHeapArray.allocate(ElementType.F32, d.numTokens())) {
            shortGrad.fill(SENTINEL);
            assertThatThrownBy(() -> engine().aggLoss(spec, batch, shortValues, grad, out))
                .isInstanceOf(IllegalArgumentException.class).hasMessageContaining("lossMat")
                .hasMessageContaining(Integer.toString(d.numTokens()));
            assertThatThrownBy(() -> engine().aggLoss(spec, batch, null, grad, out))
                .isInstanceOf(IllegalArgumentException.class).hasMessageContaining("lossMat");
            assertThatThrownBy(() -> engine().aggLoss(spec, batch, values, shortGrad, out))
                .isInstanceOf(IllegalArgumentException.class).hasMessageContaining("gradOut");
            for (final float g : shortGrad.toFloatArray()) {
                assertThat(Float.floatToRawIntBits(g)).isEqualTo(Float.floatToRawIntBits(SENTINEL));
            }
            final LossSpec sumNorm = LossSpec.builder().lossAggMode(AggMode.SEQ_MEAN_TOKEN_SUM_NORM).build();
            assertThatThrownBy(() -> engine().aggLoss(sumNorm, packed, values, grad, out))
                .isInstanceOf(IllegalArgumentException.class).hasMessageContaining("loss_scale_factor");
            engine().aggLoss(sumNorm.toBuilder().lossScaleFactor(4).build(), packed, values, null, out);
            // verl 2026-08: the seq-mean-token-sum (16 / 2 sequences) over the factor 4.
            assertThat(out.loss()).isEqualTo(2f);
            // verl 2026-08 refuses dp_size > 1 without the global count; 2026-01 has no token-sum.
            for (final AggMode m : new AggMode[] {AggMode.TOKEN_MEAN, AggMode.SEQ_MEAN_TOKEN_MEAN}) {
                final LossSpec dp = LossSpec.builder().lossAggMode(m).dpSize(2).build();
                assertThatThrownBy(() -> engine().aggLoss(dp, batch, values, grad, out))
                    .isInstanceOf(IllegalArgumentException.class)
                    .hasMessageContaining(m == AggMode.TOKEN_MEAN ? "batch_num_tokens" : "global_batch_size");
            }
            assertThatThrownBy(() -> LossSpec.builder().lossAggMode(AggMode.TOKEN_SUM)
                .release(io.rlvec.VerlRelease.V2026_01).build()).isInstanceOf(IllegalArgumentException.class)
                .hasMessageContaining("token-sum");
        }
    }

    @ParameterizedTest
    @MethodSource("io.rlvec.contract.PolicyLossContract#seedsAndModes")
    void paddedAndPackedLayoutsAgree(final long seed, final AggMode mode) {
        final Gen g = new Gen(seed);
        final TokenData padded = TokenData.random(g, TokenData.Options.of(true).sizes(24, 150));
        final TokenData packed = padded.packed();
        final float[] values = padded.randomValues(g);
        final float[] packedValues = new float[packed.numTokens()];
        for (int s = 0; s < padded.numSequences(); s++) {
            System.arraycopy(values, padded.offsets[s], packedValues, packed.offsets[s], padded.rowLengths[s]);
        }
        final LossSpec.Builder b = LossSpec.builder().lossAggMode(mode);
        if (mode == AggMode.SEQ_MEAN_TOKEN_SUM_NORM) {
            b.lossScaleFactor(padded.paddedWidth);
        }
        final Outcome p = run(b.build(), padded, values);
        final Outcome k = run(b.build(), packed, packedValues);
        final String ctx = "seed=" + seed + " " + mode + " " + padded;
        Results.assertUlps(p.result().loss(), k.result().loss(), 1, ctx);
        for (int s = 0; s < padded.numSequences(); s++) {
            for (int j = 0; j < padded.rowLengths[s]; j++) {
                assertThat(k.grad()[packed.offsets[s] + j]).as(ctx).isEqualTo(p.grad()[padded.offsets[s] + j]);
            }
        }
    }

    @ParameterizedTest
    @MethodSource("io.rlvec.contract.PolicyLossContract#seedsAndModes")
    void microBatchNumeratorsAddUpToTheWholeBatch(final long seed, final AggMode mode) {
        final Gen g = new Gen(seed);
        final TokenData d = TokenData.random(g, TokenData.Options.of(g.chance(0.5)).sizes(30, 90));
        final float[] values = d.randomValues(g);
        final int dp = 1 + g.nextInt(4);
        final LossSpec.Builder b = LossSpec.builder().lossAggMode(mode).dpSize(dp);
        switch (mode) {
            case TOKEN_MEAN -> b.batchNumTokens(Math.max(1, d.validTokens()));
            case SEQ_MEAN_TOKEN_SUM, SEQ_MEAN_TOKEN_MEAN -> b.globalBatchSize(Math.max(1, d.validSequences()));
            case SEQ_MEAN_TOKEN_SUM_NORM -> b.lossScaleFactor(d.isPadded() ? d.paddedWidth : 77)
                .globalBatchSize(Math.max(1, d.validSequences()));
            case TOKEN_SUM -> { }
        }
        final LossSpec spec = b.build();
        final Outcome whole = run(spec, d, values);
        final String ctx = "seed=" + seed + " " + mode + " dp=" + dp + " " + d;
        double numerator = 0;
        long tokens = 0;
        int from = 0;
        while (from < d.numSequences()) {
            final int to = Math.min(d.numSequences(), from + 1 + g.nextInt(Math.max(1, d.numSequences() / 2)));
            final Outcome part = run(spec, d.sequences(from, to), Arrays.copyOfRange(values, d.offsets[from],
                d.offsets[to]));
            Results.assertSameBits(d.sliceTokens(whole.grad(), from, to), part.grad(), ctx + " [" + from + "," + to
                + ")");
            assertThat(part.result().denominator()).as(ctx).isEqualTo(whole.result().denominator());
            numerator += part.result().numerator();
            tokens += part.result().validTokens();
            from = to;
        }
        assertThat(tokens).as(ctx).isEqualTo(whole.result().validTokens());
        Results.assertUlps(whole.result().loss(),
            (float) Aggregation.loss(spec, numerator, whole.result().denominator()), 1, ctx);
    }

    @Test
    void gradientIsOptional() {
        final TokenData d = PolicyLossContract.aggFixture();
        try (TokenBatch batch = d.batch(); OffHeapArray values = OffHeapArray.of(fixtureValues(d))) {
            final AggResult out = new AggResult();
            engine().aggLoss(LossSpec.builder().build(), batch, values, null, out);
            assertThat(out.loss()).isEqualTo((float) (16.0 / 5));
            assertThat(out.numerator()).isEqualTo(16.0);
        }
    }
}
