package io.rlvec.safety;

import static org.assertj.core.api.Assertions.assertThat;

import io.rlvec.Column;
import io.rlvec.ElementType;
import io.rlvec.LossSpec;
import io.rlvec.OffHeapArray;
import io.rlvec.PolicyLossResult;
import io.rlvec.TokenBatch;
import io.rlvec.reference.ReferenceEngine;
import org.junit.jupiter.api.Test;

/** The two behaviours docs/api.md states as choices, pinned: longer columns use their prefix; clip_ratio_low >= 1. */
class DocumentedChoicesTest {
    @Test
    void aLongerColumnContributesItsPrefix() {
        final float[] lp = {-1f, -1.5f, -0.5f};
        final float[] adv = {1f, -1f, 0.5f};
        try (TokenBatch exact = TokenBatch.padded(1, 3).column(Column.LOG_PROB, lp).column(Column.OLD_LOG_PROB, lp)
                 .column(Column.ADVANTAGES, adv).build();
             TokenBatch longer = TokenBatch.padded(1, 3).column(Column.LOG_PROB, new float[] {-1f, -1.5f, -0.5f, 9f})
                 .column(Column.OLD_LOG_PROB, new float[] {-1f, -1.5f, -0.5f, 3f, 4f})
                 .column(Column.ADVANTAGES, new float[] {1f, -1f, 0.5f, 7f}).build();
             OffHeapArray g1 = OffHeapArray.allocate(ElementType.F32, 3);
             OffHeapArray g2 = OffHeapArray.allocate(ElementType.F32, 3);
             ReferenceEngine engine = new ReferenceEngine()) {
            final PolicyLossResult a = new PolicyLossResult();
            final PolicyLossResult b = new PolicyLossResult();
            engine.policyLoss(LossSpec.builder().build(), exact, g1, a);
            engine.policyLoss(LossSpec.builder().build(), longer, g2, b);
            assertThat(b.pgLoss()).isEqualTo(a.pgLoss());
            assertThat(g2.toFloatArray()).containsExactly(g1.toFloatArray());
        }
    }

    @Test
    void clipRatioLowOfOneOrMoreIsAcceptedAsVerlAcceptsIt() {
        final LossSpec spec = LossSpec.builder().clipRatioLow(1.5).build();
        assertThat(spec.clipRatioLow()).isEqualTo(1.5);
        // A ratio below 1 with A < 0 is not clipped from below: the loss is -A * ratio.
        try (TokenBatch batch = TokenBatch.padded(1, 1).column(Column.LOG_PROB, new float[] {-2f})
                 .column(Column.OLD_LOG_PROB, new float[] {-1f}).column(Column.ADVANTAGES, new float[] {1f}).build();
             OffHeapArray g = OffHeapArray.allocate(ElementType.F32, 1);
             ReferenceEngine engine = new ReferenceEngine()) {
            final PolicyLossResult r = new PolicyLossResult();
            engine.policyLoss(spec, batch, g, r);
            assertThat(r.pgLoss()).isEqualTo(-(float) Math.exp(-1.0), org.assertj.core.data.Offset.offset(1e-6f));
        }
    }
}
