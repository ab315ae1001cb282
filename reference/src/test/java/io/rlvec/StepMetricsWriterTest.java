package io.rlvec;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import java.io.IOException;
import java.io.StringWriter;
import java.util.LinkedHashMap;
import java.util.Map;

import org.junit.jupiter.api.Test;

import io.rlvec.reference.ReferenceEngine;

/** The JSON-lines step log: exact text, non-finite values, the engine's split keys, refusals. */
class StepMetricsWriterTest {

    @Test
    void writesOneObjectPerStepInTheGivenOrder() throws IOException {
        final StringWriter s = new StringWriter();
        try (StepMetricsWriter w = new StepMetricsWriter(s)) {
            final Map<String, Double> m = new LinkedHashMap<>();
            m.put("actor/pg_loss", -0.125);
            m.put("actor/ppo_kl", 1.0e-7);
            w.write(3, m, Map.of("critic/score/mean", 0.5));
            m.put("actor/pg_loss", Double.NaN);
            m.put("actor/ppo_kl", Double.POSITIVE_INFINITY);
            w.write(4, m, null);
        }
        assertThat(s.toString()).isEqualTo(
            "{\"step\":3,\"actor/pg_loss\":-0.125,\"actor/ppo_kl\":1.0E-7,\"critic/score/mean\":0.5}\n"
                + "{\"step\":4,\"actor/pg_loss\":NaN,\"actor/ppo_kl\":Infinity}\n");
    }

    @Test
    void aPolicyLossResultCarriesTheSignSplit() throws IOException {
        final float[] logProb = {-1.0f, -0.5f, -2.0f, -0.2f};
        final float[] oldLogProb = {-1.1f, -0.5f, -1.8f, -0.3f};
        final float[] adv = {1.0f, 1.0f, -1.0f, -1.0f};
        final StringWriter s = new StringWriter();
        try (Engine engine = new ReferenceEngine();
             TokenBatch batch = TokenBatch.padded(2, 2).column(Column.LOG_PROB, logProb)
                 .column(Column.OLD_LOG_PROB, oldLogProb).column(Column.ADVANTAGES, adv).build();
             OffHeapArray grad = OffHeapArray.allocate(ElementType.F32, 4);
             StepMetricsWriter w = new StepMetricsWriter(s)) {
            final PolicyLossResult r = new PolicyLossResult();
            engine.policyLoss(LossSpec.builder().build(), batch, grad, r);
            w.write(1, r, Map.of("actor/grad_norm", 0.25));
            assertThat(r.posContribution() + r.negContribution()).isCloseTo(r.pgLoss(),
                org.assertj.core.data.Offset.offset(1e-6f));
        }
        assertThat(s.toString()).startsWith("{\"step\":1,\"actor/pg_loss\":")
            .contains("\"actor/pg_loss_pos_adv\":", "\"actor/pg_loss_neg_adv\":", "\"actor/pos_adv_ratio_gt1\":",
                "\"actor/neg_adv_ratio_gt1\":", "\"actor/pg_clipfrac\":", "\"actor/ppo_kl\":")
            .endsWith(",\"actor/grad_norm\":0.25}\n");
    }

    @Test
    void escapesKeys() throws IOException {
        final StringWriter s = new StringWriter();
        try (StepMetricsWriter w = new StepMetricsWriter(s)) {
            w.write(0, Map.of("a\"b\\c\n", 1.0), null);
        }
        assertThat(s.toString()).isEqualTo("{\"step\":0,\"a\\\"b\\\\c\\n\":1.0}\n");
    }

    @Test
    void refusesBadStepsKeysAndValues() throws IOException {
        try (StepMetricsWriter w = new StepMetricsWriter(new StringWriter())) {
            w.write(5, Map.of("x", 1.0), null);
            assertThatThrownBy(() -> w.write(5, Map.of("x", 1.0), null))
                .isInstanceOf(IllegalArgumentException.class).hasMessageContaining("step must increase");
            assertThatThrownBy(() -> w.write(6, Map.of("step", 1.0), null))
                .isInstanceOf(IllegalArgumentException.class).hasMessageContaining("\"step\"");
            final Map<String, Double> nullValue = new LinkedHashMap<>();
            nullValue.put("x", null);
            assertThatThrownBy(() -> w.write(7, nullValue, null))
                .isInstanceOf(IllegalArgumentException.class).hasMessageContaining("metric x");
        }
    }
}
