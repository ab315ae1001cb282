package io.rlvec.reference;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import io.rlvec.AggMode;
import io.rlvec.LossSpec;
import io.rlvec.PolicyLossMode;
import io.rlvec.VerlRelease;
import org.junit.jupiter.api.Test;

/** The policy-mode keys of LossSpec: verl's names, defaults, errors, and the aggregation each mode really uses. */
class PolicyModeSpecTest {
    @Test
    void everyModeByVerlName() {
        for (final PolicyLossMode m : PolicyLossMode.values()) {
            assertThat(PolicyLossMode.fromVerl(m.verlName())).isEqualTo(m);
        }
        assertThatThrownBy(() -> PolicyLossMode.fromVerl("reinforce")).hasMessageContaining("dppo_kl");
    }

    @Test
    void verlDefaultsAndNulls() {
        final LossSpec s = LossSpec.builder().build();
        assertThat(s.tauPos()).isEqualTo(1.0);
        assertThat(s.tauNeg()).isEqualTo(1.05);
        assertThat(s.clipCovRatio()).isEqualTo(0.0002);
        assertThat(s.clipCovLb()).isEqualTo(1.0);
        assertThat(s.clipCovUb()).isEqualTo(5.0);
        assertThat(s.klCovRatio()).isEqualTo(0.0002);
        assertThat(s.ppoKlCoef()).isEqualTo(0.1);
        // null gives verl's code fallback, not the YAML default
        assertThat(LossSpec.builder().set("ppo_kl_coef", null).build().ppoKlCoef()).isEqualTo(1.0);
    }

    @Test
    void droNeedsAPositiveBetaAndTheNewerRelease() {
        final LossSpec.Builder b = LossSpec.builder().set("loss_mode", "dro");
        assertThatThrownBy(b::build).hasMessageContaining("dro_beta");
        assertThatThrownBy(() -> b.droBeta(0).build()).hasMessageContaining("dro_beta");
        assertThat(b.droBeta(0.5).build().droBeta()).isEqualTo(0.5);
        assertThatThrownBy(() -> b.release(VerlRelease.V2026_01).build())
            .hasMessageContaining("does not exist in verl 2026-01");
        assertThatThrownBy(() -> LossSpec.builder().set("loss_mode", "sapo").tauPos(0).build())
            .hasMessageContaining("tau");
    }

    @Test
    void gspoAndSapoAggregateBySequenceMeanGeoMeanByRows() {
        for (final AggMode m : AggMode.values()) {
            final LossSpec.Builder b = LossSpec.builder().lossAggMode(m).lossScaleFactor(8);
            assertThat(b.policyLossMode(PolicyLossMode.GSPO).build().aggregationSpec().lossAggMode())
                .isEqualTo(AggMode.SEQ_MEAN_TOKEN_MEAN);
            assertThat(b.policyLossMode(PolicyLossMode.SAPO).build().aggregationSpec().lossAggMode())
                .isEqualTo(AggMode.SEQ_MEAN_TOKEN_MEAN);
            assertThat(b.policyLossMode(PolicyLossMode.CISPO).build().aggregationSpec().lossAggMode()).isEqualTo(m);
            final LossSpec geo = b.policyLossMode(PolicyLossMode.GEO_MEAN).dpSize(4).globalBatchSize(64).build()
                .aggregationSpec();
            assertThat(geo.lossAggMode()).isEqualTo(AggMode.SEQ_MEAN_TOKEN_SUM);
            assertThat(geo.dpSize()).isEqualTo(1);
            assertThat(geo.globalBatchSize()).isEqualTo(LossSpec.UNSET);
        }
    }
}
