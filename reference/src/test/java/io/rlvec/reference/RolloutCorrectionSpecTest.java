package io.rlvec.reference;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import io.rlvec.Column;
import io.rlvec.ElementType;
import io.rlvec.LossSpec;
import io.rlvec.OffHeapArray;
import io.rlvec.PolicyLossMode;
import io.rlvec.RolloutCorrectionResult;
import io.rlvec.RolloutCorrectionSpec;
import io.rlvec.RolloutCorrectionSpec.Level;
import io.rlvec.TokenBatch;
import org.junit.jupiter.api.Test;

/** verl's parsing and errors of the rollout-correction keys, and a hand-computed packed batch. */
class RolloutCorrectionSpecTest {

    private static RolloutCorrectionSpec.Builder b() {
        return RolloutCorrectionSpec.builder();
    }

    @Test
    void defaultsAreMetricsOnly() {
        final RolloutCorrectionSpec s = b().build();
        assertThat(s.hasIs()).isFalse();
        assertThat(s.rsOptions()).isEmpty();
        assertThat(b().rolloutIs("token").rolloutIsThreshold(null).build().hasIs()).isFalse();
    }

    @Test
    void isThresholdsAsVerlParsesThem() {
        final RolloutCorrectionSpec tis = b().rolloutIs("token").rolloutIsThreshold(" 10.0 ").build();
        assertThat(tis.isUpper()).isEqualTo(10.0);
        assertThat(tis.icePop()).isFalse();
        final RolloutCorrectionSpec ice = b().rolloutIs("sequence").rolloutIsThreshold("0.5_2").build();
        assertThat(ice.isLower()).isEqualTo(0.5);
        assertThat(ice.isUpper()).isEqualTo(2.0);
        assertThatThrownBy(() -> b().rolloutIs("token").rolloutIsThreshold(true).build())
            .hasMessageContaining("not a boolean");
        assertThatThrownBy(() -> b().rolloutIs("token").rolloutIsThreshold("  ").build())
            .hasMessage("rollout_is_threshold must not be an empty string.");
        assertThatThrownBy(() -> b().rolloutIs("token").rolloutIsThreshold("x").build())
            .hasMessage("Invalid rollout_is_threshold 'x'.");
        assertThatThrownBy(() -> b().rolloutIs("token").rolloutIsThreshold("0_2").build())
            .hasMessage("rollout_is_threshold lower bound must be positive, got 0.0.");
        assertThatThrownBy(() -> b().rolloutIs("token").rolloutIsThreshold(-1.0).build())
            .hasMessage("rollout_is_threshold upper bound must be positive, got -1.0.");
        assertThatThrownBy(() -> b().rolloutIs("batch").build())
            .hasMessage("Invalid rollout_is: batch. Must be one of {'sequence', 'token'}.");
    }

    @Test
    void rejectionOptionsAsVerlParsesThem() {
        final RolloutCorrectionSpec s = b().rolloutRs(" token_k1, seq_max_k3,token_k1 ,").rolloutRsThreshold("2.0")
            .build();
        assertThat(s.rsOptions()).extracting(RolloutCorrectionSpec.RsOption::name)
            .containsExactly("token_k1", "seq_max_k3");
        assertThat(s.rsOptions().get(0).lower()).isEqualTo(1.0 / 2.0);
        assertThat(s.rsOptions().get(1).level()).isEqualTo(Level.SEQ_MAX);
        assertThat(s.rsOptions().get(1).upper()).isEqualTo(2.0);
        assertThatThrownBy(() -> b().rolloutRs("token_k1").build())
            .hasMessageStartingWith("rollout_rs_threshold must be explicitly provided");
        assertThatThrownBy(() -> b().rolloutRs("token_k1,token_k2").rolloutRsThreshold("1,2,3").build())
            .hasMessageContaining("exactly 2 thresholds");
        assertThatThrownBy(() -> b().rolloutRs("seq_sum_k1").rolloutRsThreshold("2_1").build())
            .hasMessage("Thresholds for option 'seq_sum_k1' must be lower <= upper, got 2_1.");
        assertThatThrownBy(() -> b().rolloutRs("token_k3").rolloutRsThreshold(-0.5).build())
            .hasMessage("Threshold for option 'token_k3' must be positive, got -0.5.");
        assertThatThrownBy(() -> b().rolloutRs(" , ").rolloutRsThreshold(1.0).build())
            .hasMessage("rollout_rs must contain at least one valid option.");
    }

    @Test
    void bypassModeNeedsItsSettings() {
        assertThatThrownBy(() -> LossSpec.builder().set("loss_mode", "bypass_mode").build())
            .hasMessageStartingWith("rollout_correction config not found in policy_loss.");
        assertThatThrownBy(() -> LossSpec.builder().set("loss_mode", "bypass_mode")
            .set("policy_loss.rollout_correction.loss_type", "pg").set("policy_loss.rollout_correction.rollout_is",
                null).build())
            .hasMessage("Invalid loss_type: pg. Must be 'reinforce' or 'ppo_clip'.");
        final LossSpec s = LossSpec.builder().set("loss_mode", "bypass_mode")
            .set("policy_loss.rollout_correction.loss_type", "reinforce")
            .set("policy_loss.rollout_correction.rollout_is", "sequence")
            .set("policy_loss.rollout_correction.rollout_is_threshold", 5.0).build();
        assertThat(s.policyLossMode()).isEqualTo(PolicyLossMode.BYPASS_MODE);
        assertThat(s.bypassReinforce()).isTrue();
        assertThat(s.rolloutCorrection().isUpper()).isEqualTo(5.0);
        assertThat(s.toBuilder().build().rolloutCorrection().isUpper()).isEqualTo(5.0);
        assertThatThrownBy(() -> LossSpec.builder().set("policy_loss.rollout_correction.rollout_iss", "token"))
            .hasMessage("unknown rollout_correction key 'rollout_iss'");
    }

    /** Two packed rows, one empty: token IS at U = 2 and token_k1 in [0.8, 1.25], checked by hand. */
    @Test
    void packedBatchByHand() {
        final float[] old = {-1f, -0.5f, -2f, 9f};
        final float[] roll = {-1.5f, -0.5f, -1.9f, 9f};
        final float[] mask = {1, 1, 1, 0};
        try (TokenBatch batch = TokenBatch.packed(3, 0, 1).column(Column.OLD_LOG_PROB, old)
                 .column(Column.ROLLOUT_LOG_PROB, roll).column(Column.RESPONSE_MASK, mask).build();
             OffHeapArray w = OffHeapArray.allocate(ElementType.F32, 4);
             OffHeapArray m = OffHeapArray.allocate(ElementType.F32, 4);
             ReferenceEngine engine = new ReferenceEngine()) {
            final RolloutCorrectionResult r = new RolloutCorrectionResult();
            engine.rolloutCorrection(b().rolloutIs("token").rolloutIsThreshold(2.0).rolloutRs("token_k1")
                .rolloutRsThreshold("0.8_1.25").build(), batch, w, m, r);
            final float e05 = io.rlvec.CanonicalMath.exp(0.5f);
            final float em01 = io.rlvec.CanonicalMath.exp(-2f - -1.9f);
            assertThat(w.toFloatArray()).containsExactly(Math.min(e05, 2f), 1f, em01, 0f);
            // k1 = -lr: -0.5 (rejected: below log 0.8), 0 (kept), ~0.1 (kept); the masked token stays 0.
            assertThat(m.toFloatArray()).containsExactly(0f, 1f, 1f, 0f);
            assertThat(r.get("rollout_corr/rollout_rs_token_k1_masked_fraction")).isCloseTo(1.0 / 3, within());
            assertThat(r.get("rollout_corr/rollout_rs_seq_masked_fraction")).isCloseTo(1.0 / 3, within());
            assertThat(r.get("rollout_corr/rollout_is_mean")).isCloseTo((Math.min(e05, 2f) + 1.0 + em01) / 3,
                within());
            // Row means over all three rows (the empty row and the masked-only row count as 0, as verl's).
            assertThat(r.get("rollout_corr/rollout_is_seq_mean"))
                .isCloseTo(((Math.min(e05, 2f) + 1.0 + em01) / 3 + 0 + 0) / 3, within());
            assertThat(r.get("rollout_corr/kl")).isCloseTo((-0.5 + 0 + (-1.9f - -2f)) / 3, within());
            assertThat(r.keys()).startsWith("rollout_corr/rollout_is_mean").endsWith("rollout_corr/chi2_seq");
        }
    }

    private static org.assertj.core.data.Offset<Double> within() {
        return org.assertj.core.data.Offset.offset(1e-6);
    }

    /**
     * verl 2026-01 reports the IS metrics from the weights before truncation (its compute_is_metrics runs before
     * the clamp), with std and ESS over clamp(raw, 1/U, U); 2026-08 from the applied weights, clamp(w, 0, U).
     * Token IS at U = 2 over raw weights e^1.5, 1, e^-2 (one valid row).
     */
    @Test
    void release202601ReportsTheRawWeights() {
        final float[] old = {-0.5f, -1f, -3f};
        final float[] roll = {-2f, -1f, -1f};
        final float[] mask = {1, 1, 1};
        final float hi = io.rlvec.CanonicalMath.exp(1.5f);
        final float lo = io.rlvec.CanonicalMath.exp(-2f);
        try (TokenBatch batch = TokenBatch.padded(1, 3).column(Column.OLD_LOG_PROB, old)
                 .column(Column.ROLLOUT_LOG_PROB, roll).column(Column.RESPONSE_MASK, mask).build();
             OffHeapArray w = OffHeapArray.allocate(ElementType.F32, 3);
             OffHeapArray keep = OffHeapArray.allocate(ElementType.F32, 3);
             ReferenceEngine engine = new ReferenceEngine()) {
            final RolloutCorrectionResult jan = new RolloutCorrectionResult();
            engine.rolloutCorrection(b().release(io.rlvec.VerlRelease.V2026_01).rolloutIs("token")
                .rolloutIsThreshold(2.0).build(), batch, w, keep, jan);
            // The applied weights are the same in both releases: truncated at U.
            assertThat(w.toFloatArray()).containsExactly(2f, 1f, lo);
            assertThat(jan.get("rollout_corr/rollout_is_max")).isEqualTo((double) hi);
            assertThat(jan.get("rollout_corr/rollout_is_min")).isEqualTo((double) lo);
            assertThat(jan.get("rollout_corr/rollout_is_mean")).isCloseTo((hi + 1.0 + lo) / 3, within());
            // std over clamp(raw, 0.5, 2) = {2, 1, 0.5}: population std of the three.
            final double m = 3.5 / 3;
            assertThat(jan.get("rollout_corr/rollout_is_std"))
                .isCloseTo(Math.sqrt((4 + 1 + 0.25) / 3 - m * m), within());
            assertThat(jan.get("rollout_corr/rollout_is_eff_sample_size"))
                .isCloseTo(1.0 / ((4 + 1 + 0.25) / 3 / (m * m)), within());
            assertThat(jan.get("rollout_corr/rollout_is_seq_max")).isCloseTo((hi + 1.0 + lo) / 3, within());
            assertThat(jan.has("rollout_corr/rollout_is_oob_ratio")).isFalse();

            final RolloutCorrectionResult aug = new RolloutCorrectionResult();
            engine.rolloutCorrection(b().rolloutIs("token").rolloutIsThreshold(2.0).build(), batch, w, keep, aug);
            assertThat(aug.get("rollout_corr/rollout_is_max")).isEqualTo(2.0);
            assertThat(aug.get("rollout_corr/rollout_is_mean")).isCloseTo((2.0 + 1.0 + lo) / 3, within());
            // Fractions are from the raw weights in both.
            assertThat(jan.get("rollout_corr/rollout_is_ratio_fraction_high"))
                .isEqualTo(aug.get("rollout_corr/rollout_is_ratio_fraction_high"));
            assertThat(jan.get("rollout_corr/rollout_is_ratio_fraction_low"))
                .isEqualTo(aug.get("rollout_corr/rollout_is_ratio_fraction_low"));
        }
    }

    @Test
    void release202601TakesTheThresholdAsANumberOnly() {
        assertThatThrownBy(() -> b().release(io.rlvec.VerlRelease.V2026_01).rolloutIs("token")
            .rolloutIsThreshold("0.5_2.0").build()).isInstanceOf(IllegalArgumentException.class)
            .hasMessageContaining("rollout_is_threshold").hasMessageContaining("2026-01");
        // bypass_mode's correction follows the loss's verl_semantics.
        final LossSpec spec = LossSpec.builder().set("verl_semantics", "2026-01").set("loss_mode", "bypass_mode")
            .rolloutCorrection(b().rolloutIs("token").rolloutIsThreshold(2.0).build()).build();
        assertThat(spec.rolloutCorrection().release()).isEqualTo(io.rlvec.VerlRelease.V2026_01);
        assertThatThrownBy(() -> LossSpec.builder().set("verl_semantics", "2026-01").set("loss_mode", "bypass_mode")
            .set("policy_loss.rollout_correction.rollout_is", "token")
            .set("policy_loss.rollout_correction.rollout_is_threshold", "0.5_2.0").build())
            .isInstanceOf(IllegalArgumentException.class).hasMessageContaining("2026-01");
    }
}
