package io.rlvec.reference;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import org.junit.jupiter.api.Test;

import io.rlvec.Column;
import io.rlvec.ElementType;
import io.rlvec.LossSpec;
import io.rlvec.OffHeapArray;
import io.rlvec.TokenBatch;
import io.rlvec.ValueLossResult;

/** The value loss's key, metrics and argument checks (its numbers: ValueLossGoldenTest, ValueLossParityTest). */
class ReferenceValueLossTest {
    private final ReferenceEngine engine = new ReferenceEngine();

    @Test
    void cliprangeValueIsAVerlKeyWithTheCriticsDefault() {
        assertThat(LossSpec.builder().build().cliprangeValue()).isEqualTo(0.5);
        final LossSpec spec = LossSpec.builder().set("cliprange_value", 0.2).build();
        assertThat(spec.cliprangeValue()).isEqualTo(0.2);
        assertThat(spec.toVerlMap()).containsEntry("cliprange_value", 0.2);
        assertThat(spec.toBuilder().build()).isEqualTo(spec);
        for (final double bad : new double[] {-0.1, Double.NaN, Double.POSITIVE_INFINITY, 1e39}) {
            assertThatThrownBy(() -> LossSpec.builder().cliprangeValue(bad).build())
                .isInstanceOf(IllegalArgumentException.class).hasMessageContaining("cliprange_value");
        }
    }

    @Test
    void metricsUseTheCriticKeys() {
        // One sequence, c = 0.5: vpreds 2 vs values 0 is clipped to 0.5; returns 0.
        try (TokenBatch batch = TokenBatch.padded(1, 3).column(Column.VPREDS, new float[] {2f, 0.25f, 9f})
                 .column(Column.RETURNS, new float[] {3f, 0f, 0f}).column(Column.VALUES, new float[] {0f, 0f, 0f})
                 .column(Column.RESPONSE_MASK, new float[] {1f, 1f, 0f}).build()) {
            final ValueLossResult out = new ValueLossResult();
            engine.valueLoss(LossSpec.builder().build(), batch, null, out);
            // token 0: l1 = 1, l2 = 6.25 (clipped larger); token 1: 0.0625 both. token-mean over 2 tokens.
            assertThat(out.vfLoss()).isEqualTo((float) (0.5 * (6.25 + 0.0625) / 2));
            assertThat(out.metrics()).containsOnlyKeys("critic/vf_loss", "critic/vf_clipfrac", "critic/vpred_mean")
                .containsEntry("critic/vf_clipfrac", 0.5).containsEntry("critic/vpred_mean", (double) 1.125f);
        }
    }

    @Test
    void badArgumentsAreNamed() {
        try (TokenBatch noVpreds = TokenBatch.padded(1, 2).column(Column.RETURNS, new float[2])
                 .column(Column.VALUES, new float[2]).column(Column.RESPONSE_MASK, new float[] {1, 1}).build();
             TokenBatch ok = TokenBatch.padded(1, 2).column(Column.VPREDS, new float[2])
                 .column(Column.RETURNS, new float[2]).column(Column.VALUES, new float[2])
                 .column(Column.RESPONSE_MASK, new float[] {1, 1}).build();
             OffHeapArray shortGrad = OffHeapArray.allocate(ElementType.F32, 1)) {
            final LossSpec spec = LossSpec.builder().build();
            assertThatThrownBy(() -> engine.valueLoss(spec, noVpreds, null, new ValueLossResult()))
                .isInstanceOf(IllegalArgumentException.class).hasMessageContaining("vpreds");
            assertThatThrownBy(() -> engine.valueLoss(spec, ok, shortGrad, new ValueLossResult()))
                .isInstanceOf(IllegalArgumentException.class).hasMessageContaining("gradVpreds");
        }
    }

    private static TokenBatch critic(final int rows, final float[] vpreds, final float[] returns, final float[] mask) {
        return TokenBatch.padded(rows, 3).column(Column.VPREDS, vpreds).column(Column.RETURNS, returns)
            .column(Column.VALUES, new float[rows * 3]).column(Column.RESPONSE_MASK, mask).build();
    }

    private ValueLossResult run(final LossSpec spec, final int from, final int to) {
        final float[] vpreds = {2f, 0.25f, 9f, -0.3f, 0.1f, 0.7f, 1.5f, -2f, 0.4f, 0.2f, 0.9f, -0.6f};
        final float[] returns = {3f, 0f, 0f, 0.2f, -0.4f, 1f, 0.5f, -1f, 0f, 0.3f, 0.1f, 0.2f};
        final float[] mask = {1, 1, 0, 1, 1, 1, 1, 0, 0, 1, 1, 1};
        try (TokenBatch b = critic(to - from, java.util.Arrays.copyOfRange(vpreds, 3 * from, 3 * to),
            java.util.Arrays.copyOfRange(returns, 3 * from, 3 * to),
            java.util.Arrays.copyOfRange(mask, 3 * from, 3 * to))) {
            final ValueLossResult out = new ValueLossResult();
            engine.valueLoss(spec, b, null, out);
            return out;
        }
    }

    @Test
    void microBatchesWithTheGlobalTokenCountMergeIntoTheWholeBatch() {
        // verl 2026-08's critic divides by the global batch's valid tokens (9 here) in every micro-batch.
        final LossSpec spec = LossSpec.builder().batchNumTokens(9).build();
        final ValueLossResult whole = run(spec, 0, 4);
        final ValueLossResult merged = new ValueLossResult();
        merged.merge(run(spec, 0, 1));
        merged.merge(run(spec, 1, 3));
        merged.merge(run(spec, 3, 4));
        assertThat(Math.abs(Math.ulp(whole.vfLoss()))).isGreaterThan(0f);
        assertThat(Math.abs(merged.vfLoss() - whole.vfLoss())).isLessThanOrEqualTo(Math.ulp(whole.vfLoss()));
        assertThat(merged.metrics().get("critic/vf_clipfrac")).isEqualTo(whole.metrics().get("critic/vf_clipfrac"));
        assertThat(merged.vpredSum()).isEqualTo(whole.vpredSum());
        assertThat(merged.validTokens()).isEqualTo(9);
        assertThat(merged.validSequences()).isEqualTo(4);
    }

    @Test
    void microBatchesWithLocalDenominatorsAddTheirLosses() {
        // 2026-01 semantics: each micro-batch is a token mean of its own; a trainer accumulates the losses.
        final LossSpec spec = LossSpec.builder().set("verl_semantics", "2026-01").build();
        final ValueLossResult a = run(spec, 0, 1);
        final ValueLossResult b = run(spec, 1, 4);
        final ValueLossResult merged = new ValueLossResult();
        merged.merge(a);
        merged.merge(b);
        merged.merge(new ValueLossResult());
        assertThat(merged.vfLoss()).isEqualTo(a.vfLoss() + b.vfLoss());
        assertThat(merged.clippedTokens()).isEqualTo(a.clippedTokens() + b.clippedTokens());
    }
}
