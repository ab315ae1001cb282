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
}
