package io.rlvec.cli.config;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;

import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import io.rlvec.AggMode;
import io.rlvec.LossSpec;
import io.rlvec.VerlRelease;

class VerlConfigTest {

    @TempDir
    Path dir;

    private static Path example(final String name) {
        // Tests run in cli/; the examples live at the repository root.
        final Path p = Path.of("..", "examples", "configs", name);
        return Files.exists(p) ? p : Path.of("examples", "configs", name);
    }

    private Path yaml(final String text) throws IOException {
        final Path f = Files.createTempFile(dir, "verl", ".yaml");
        Files.writeString(f, text);
        return f;
    }

    @Test
    void absentKeysTakeVerlsDefaults() throws IOException {
        final VerlConfig c = VerlConfig.load(null, List.of(), VerlRelease.DEFAULT);
        assertThat(c.values()).containsEntry("actor_rollout_ref.actor.clip_ratio", 0.2)
            .containsEntry("actor_rollout_ref.actor.clip_ratio_c", 3.0)
            .containsEntry("actor_rollout_ref.actor.loss_agg_mode", "token-mean")
            .containsEntry("actor_rollout_ref.actor.kl_loss_type", "low_var_kl")
            .containsEntry("actor_rollout_ref.actor.policy_loss.loss_mode", "vanilla")
            .containsEntry("actor_rollout_ref.rollout.temperature", 1.0)
            .containsEntry("algorithm.adv_estimator", "gae").containsEntry("algorithm.kl_ctrl.kl_coef", 0.001)
            .containsEntry("algorithm.rollout_correction.rollout_is_threshold", 2.0)
            .containsEntry("critic.cliprange_value", 0.5).containsEntry("critic.loss_agg_mode", "token-mean");
        assertThat(c.release()).isEqualTo(VerlRelease.V2026_08);
        assertThat(c.lossSpec().clipRatioC()).isEqualTo(3.0);
    }

    @Test
    void examplesLoadAndOverridesApplyInOrder() throws IOException {
        final VerlConfig dapo = VerlConfig.load(example("dapo.yaml"),
            List.of("actor_rollout_ref.actor.clip_ratio_high=0.3", "actor_rollout_ref.rollout.temperature=0.7",
                "actor_rollout_ref.actor.clip_ratio_high=0.28"), VerlRelease.V2026_01);
        assertThat(dapo.values()).containsEntry("actor_rollout_ref.actor.clip_ratio_high", 0.28)
            .containsEntry("actor_rollout_ref.rollout.temperature", 0.7);
        final LossSpec s = dapo.lossSpec();
        assertThat(s.clipRatioHigh()).isEqualTo(0.28);
        assertThat(s.clipRatioC()).isEqualTo(10.0);
        assertThat(s.temperature()).isEqualTo(0.7);
        assertThat(dapo.describe()).startsWith("# verl release 2026-01 (verl b178a3cd)")
            .contains("actor_rollout_ref.actor.clip_ratio_high: 0.28\n");

        final VerlConfig grpo = VerlConfig.load(example("grpo.yaml"), List.of(), VerlRelease.DEFAULT);
        assertThat(grpo.lossSpec().useKlLoss()).isTrue();
        assertThat(grpo.algorithmAndCritic()).containsEntry("algorithm.adv_estimator", "grpo");

        final VerlConfig ppo = VerlConfig.load(example("ppo-critic.yaml"),
            List.of("actor_rollout_ref.actor.loss_agg_mode=seq-mean-token-mean"), VerlRelease.DEFAULT);
        assertThat(ppo.values()).as("critic.loss_agg_mode is ${actor_rollout_ref.actor.loss_agg_mode}")
            .containsEntry("critic.loss_agg_mode", "seq-mean-token-mean")
            .containsEntry("algorithm.kl_ctrl.type", "adaptive").containsEntry("algorithm.lam", 0.95);
        assertThat(ppo.lossSpec().lossAggMode()).isEqualTo(AggMode.SEQ_MEAN_TOKEN_MEAN);

        final VerlConfig gspo = VerlConfig.load(example("gspo.yaml"), List.of(), VerlRelease.DEFAULT);
        assertThat(gspo.values()).containsEntry("actor_rollout_ref.actor.policy_loss.loss_mode", "gspo")
            .containsEntry("actor_rollout_ref.actor.clip_ratio_low", 0.0003);
    }

    @Test
    void unknownKeysAreRefusedWithTheNearestKnownKey() throws IOException {
        final Path f = yaml("actor_rollout_ref:\n  actor:\n    clip_ratio_hgh: 0.28\n");
        assertThatThrownBy(() -> VerlConfig.load(f, List.of(), VerlRelease.DEFAULT))
            .hasMessageContaining("unknown key actor_rollout_ref.actor.clip_ratio_hgh")
            .hasMessageContaining("nearest known key: actor_rollout_ref.actor.clip_ratio_high");
        assertThatThrownBy(() -> VerlConfig.load(null, List.of("+algorithm.kl_ctrl.kl_coeff=0.1"),
            VerlRelease.DEFAULT)).hasMessageContaining("nearest known key: algorithm.kl_ctrl.kl_coef");
        assertThatThrownBy(() -> VerlConfig.load(null, List.of("critic.clip_range_value=0.2"),
            VerlRelease.DEFAULT)).hasMessageContaining("nearest known key: critic.cliprange_value");
        // Sections not read are not checked: a real trainer file carries them.
        final Path other = yaml("trainer:\n  anything: 1\ndata:\n  train_batch_size: 8\n");
        assertThat(VerlConfig.load(other, List.of(), VerlRelease.DEFAULT).values()).isNotEmpty();
    }

    @Test
    void interpolationsAreResolvedOrReported() throws IOException {
        final Path f = yaml("""
            shared:
              clip: 0.25
              mode: seq-mean-token-sum
              alias: ${shared.clip}
            actor_rollout_ref:
              actor:
                clip_ratio_high: ${shared.alias}
                loss_agg_mode: ${shared.mode}
            """);
        final VerlConfig c = VerlConfig.load(f, List.of(), VerlRelease.DEFAULT);
        assertThat(c.values()).containsEntry("actor_rollout_ref.actor.clip_ratio_high", 0.25)
            .containsEntry("actor_rollout_ref.actor.loss_agg_mode", "seq-mean-token-sum");
        final Path env = yaml("actor_rollout_ref:\n  actor:\n    clip_ratio: ${oc.env:CLIP}\n");
        assertThatThrownBy(() -> VerlConfig.load(env, List.of(), VerlRelease.DEFAULT))
            .hasMessageContaining("actor_rollout_ref.actor.clip_ratio").hasMessageContaining("resolver (oc.env)");
        final Path missing = yaml("actor_rollout_ref:\n  actor:\n    clip_ratio: ${nowhere.x}\n");
        assertThatThrownBy(() -> VerlConfig.load(missing, List.of(), VerlRelease.DEFAULT))
            .hasMessageContaining("names a key the configuration does not hold");
        final Path cycle = yaml("a: ${b}\nb: ${a}\nactor_rollout_ref:\n  actor:\n    clip_ratio: ${a}\n");
        assertThatThrownBy(() -> VerlConfig.load(cycle, List.of(), VerlRelease.DEFAULT))
            .hasMessageContaining("does not end");
    }

    @Test
    void badFilesValuesAndOverridesSayWhatIsWrong() throws IOException {
        assertThatThrownBy(() -> VerlConfig.load(yaml("a: [1, 2\n"), List.of(), VerlRelease.DEFAULT))
            .hasMessageContaining("is not valid YAML");
        assertThatThrownBy(() -> VerlConfig.load(yaml("- 1\n- 2\n"), List.of(), VerlRelease.DEFAULT))
            .hasMessageContaining("must hold a YAML mapping");
        assertThatThrownBy(() -> VerlConfig.load(null, List.of("clip_ratio"), VerlRelease.DEFAULT))
            .hasMessageContaining("must be dotted.key=value");
        final VerlConfig bad = VerlConfig.load(null, List.of("actor_rollout_ref.actor.loss_agg_mode=mean"),
            VerlRelease.DEFAULT);
        assertThatThrownBy(bad::lossSpec).hasMessageContaining("actor_rollout_ref.actor.loss_agg_mode");
    }

    @Test
    void rolloutCorrectionMapsToTheSpecAndBypassModeToTheLoss() throws IOException {
        final String rc = "algorithm.rollout_correction.";
        final VerlConfig off = VerlConfig.load(null, List.of(), VerlRelease.DEFAULT);
        assertThat(off.rolloutCorrection().spec().hasIs()).isFalse();
        assertThat(off.rolloutCorrection().spec().rsOptions()).isEmpty();
        assertThat(off.rolloutCorrection().bypassMode()).isFalse();

        final VerlConfig c = VerlConfig.load(null, List.of(rc + "rollout_is=sequence",
            rc + "rollout_is_threshold=0.5_4", rc + "rollout_rs=token_k1,seq_max_k3",
            rc + "rollout_rs_threshold='0.5_2.0,3.0'"), VerlRelease.V2026_08);
        final VerlConfig.RolloutCorrection r = c.rolloutCorrection();
        assertThat(r.spec().rolloutIs()).isEqualTo(io.rlvec.RolloutCorrectionSpec.IsLevel.SEQUENCE);
        assertThat(r.spec().icePop()).isTrue();
        assertThat(r.spec().isLower()).isEqualTo(0.5);
        assertThat(r.spec().rsOptions()).extracting(io.rlvec.RolloutCorrectionSpec.RsOption::name)
            .containsExactly("token_k1", "seq_max_k3");
        assertThat(r.toVerlMap()).containsEntry("rollout_is", "sequence")
            .containsEntry("rollout_is_threshold", "0.5_4.0")
            .containsEntry("rollout_rs", "token_k1,seq_max_k3").containsEntry("rollout_rs_threshold", "0.5_2.0,3.0")
            .containsEntry("bypass_mode", false).containsEntry("loss_type", "ppo_clip");
        assertThat(c.lossSpec().policyLossMode()).isEqualTo(io.rlvec.PolicyLossMode.VANILLA);

        // verl 2026-01 has no IcePop band.
        final VerlConfig jan = VerlConfig.load(null,
            List.of(rc + "rollout_is=token", rc + "rollout_is_threshold=0.5_4"), VerlRelease.V2026_01);
        assertThatThrownBy(jan::rolloutCorrection).hasMessageContaining(rc + "rollout_is_threshold")
            .hasMessageContaining("verl 2026-01 does not");
        assertThat(VerlConfig.load(null, List.of(rc + "rollout_is=token", rc + "rollout_is_threshold=1.5"),
            VerlRelease.V2026_01).rolloutCorrection().spec().isUpper()).isEqualTo(1.5);
        // verl's own errors, under the key.
        assertThatThrownBy(() -> VerlConfig.load(null, List.of(rc + "rollout_is=tokens"), VerlRelease.DEFAULT)
            .rolloutCorrection()).hasMessageContaining("Invalid rollout_is: tokens");
        assertThatThrownBy(() -> VerlConfig.load(null, List.of(rc + "rollout_rs=token_k2"), VerlRelease.DEFAULT)
            .rolloutCorrection()).hasMessageContaining("rollout_rs_threshold must be explicitly provided");
        assertThatThrownBy(() -> VerlConfig.load(null, List.of(rc + "bypass_mode=true", rc + "loss_type=pg"),
            VerlRelease.DEFAULT).rolloutCorrection()).hasMessageContaining(rc + "loss_type: Invalid loss_type: pg");

        // bypass_mode: the trainer's apply_bypass_mode makes the loss bypass_mode with these settings.
        final LossSpec bypass = VerlConfig.load(null, List.of(rc + "bypass_mode=true", rc + "loss_type=reinforce",
            rc + "rollout_is=token"), VerlRelease.V2026_01).lossSpec();
        assertThat(bypass.policyLossMode()).isEqualTo(io.rlvec.PolicyLossMode.BYPASS_MODE);
        assertThat(bypass.bypassReinforce()).isTrue();
        assertThat(bypass.rolloutCorrection().rolloutIs()).isEqualTo(io.rlvec.RolloutCorrectionSpec.IsLevel.TOKEN);
        assertThat(bypass.toString()).contains("rollout_is=token").contains("rollout_is_threshold=2.0");
        // ... or set directly under policy_loss (verl's .get defaults for the rest).
        final LossSpec direct = VerlConfig.load(null, List.of(
            "actor_rollout_ref.actor.policy_loss.loss_mode=bypass_mode",
            "+actor_rollout_ref.actor.policy_loss.rollout_correction.rollout_rs=seq_mean_k3",
            "+actor_rollout_ref.actor.policy_loss.rollout_correction.rollout_rs_threshold=0.01"),
            VerlRelease.DEFAULT).lossSpec();
        assertThat(direct.rolloutCorrection().hasIs()).isFalse();
        assertThat(direct.rolloutCorrection().rsOptions()).hasSize(1);
    }
}
