package io.rlvec.cli.golden;

import static org.assertj.core.api.Assertions.assertThat;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.stream.Stream;

import org.junit.jupiter.api.Test;

/**
 * The outcome advantage estimators (grpo and grpo_vectorized with and without the std, grpo_passk, rloo and
 * rloo_vectorized, opo, gpg, reinforce_plus_plus_baseline, gdpo with and without reward components) judged by
 * derived bounds ({@link AdvantageBounds}) on verl's cases of both releases, and mutations that must FAIL: the
 * largest advantage a few ulp off, a sign flipped, one sequence's value given to another, and the normalisation
 * by the std dropped.
 */
class AdvantageBoundVerdictsTest extends MutatedEngineTest {
    private static final String[] OUTCOME = {"adv_grpo_", "adv_rloo_", "adv_opo_", "adv_gpg_",
        "adv_reinforce_plus_plus_baseline_", "adv_gdpo_"};

    private static List<Path> cases() throws IOException {
        final List<Path> all = new ArrayList<>();
        for (final String dir : new String[] {"/golden-advantages", "/golden-advantages-2026.08"}) {
            try (Stream<Path> s = Files.list(resource(dir))) {
                s.filter(p -> {
                    final String n = p.getFileName().toString();
                    return Stream.of(OUTCOME).anyMatch(n::startsWith) && !n.contains("error");
                }).sorted().forEach(all::add);
            }
        }
        return all;
    }

    private static Verdict verdict(final CaseReport r, final String name) {
        return tensor(r, 0, name).verdict();
    }

    @Test
    void verlsCasesPassOrDeviateAndAreJudgedByTheBounds() throws IOException {
        final List<Path> all = cases();
        assertThat(all).hasSizeGreaterThan(35);
        for (final Path f : all) {
            final CaseReport r = run(f, null);
            assertThat(r.verdict()).as(f.toString()).isIn(Verdict.PASS, Verdict.DEVIATION);
            for (int e = 0; e < 2; e++) {
                assertThat(tensor(r, e, "out.advantages").judge()).as(f.toString()).isEqualTo(TensorReport.Judge.BOUND);
                assertThat(tensor(r, e, "out.returns").judge()).as(f.toString()).isEqualTo(TensorReport.Judge.BOUND);
            }
        }
    }

    @Test
    void mutationsFail() throws IOException {
        for (final Path f : cases()) {
            final CaseOutputs.Output adv = outputs(f).get("out.advantages");
            final float[] v = adv.values();
            int largest = 0;
            for (int i = 0; i < v.length; i++) {
                largest = Math.abs(v[i]) > Math.abs(v[largest]) ? i : largest;
            }
            final int at = largest;
            // The engine's bound at a well-conditioned advantage is a few units of u = 2^-24 relative (under 6 for
            // a group statistic rounded once; under 16 after masked_whiten, whose input is itself a rounded float32
            // value, and gdpo's weighted sum before it): one ulp past it fails.
            final boolean whitened = f.getFileName().toString().contains("baseline")
                || f.getFileName().toString().contains("gdpo");
            final double relative = adv.referee().engineBoundAt(at) / (0x1p-24 * Math.abs(v[at]));
            assertThat(relative).as(f + ": the engine's bound in units of u |a|").isLessThan(whitened ? 16 : 6);
            final double ulps = adv.referee().engineBoundAt(at) / Math.ulp(v[at]);
            final int past = (int) Math.ceil(ulps) + 1;
            assertThat(verdict(run(f, o -> {
                final float[] x = o.get("out.advantages").values();
                for (int k = 0; k < past; k++) {
                    x[at] = Math.nextUp(x[at]);
                }
            }), "out.advantages")).as(f.toString()).isEqualTo(Verdict.FAIL);
            assertThat(verdict(run(f, o -> {
                final float[] x = o.get("out.returns").values();
                x[at] = -x[at];
            }), "out.returns")).as(f.toString()).isEqualTo(Verdict.FAIL);
            // One sequence's value given to another (the value at the largest advantage moved to a token whose
            // value differs).
            assertThat(verdict(run(f, o -> {
                final float[] x = o.get("out.advantages").values();
                for (int i = 0; i < x.length; i++) {
                    if (adv.mask()[i] != 0 && Math.abs(x[i] - x[at]) > 1e-3 * Math.abs(x[at])) {
                        x[i] = x[at];
                        return;
                    }
                }
            }), "out.advantages")).as(f.toString()).isEqualTo(Verdict.FAIL);
        }
    }

    @Test
    void droppingTheStdNormalisationFails() throws IOException {
        final Path dir = resource("/golden-advantages");
        final CaseOutputs unnormalised = outputs(dir.resolve("adv_grpo_b64g8_norm0.safetensors"));
        final CaseReport r = withOutputsOf(dir.resolve("adv_grpo_b64g8_norm1.safetensors"), unnormalised);
        assertThat(verdict(r, "out.advantages")).isEqualTo(Verdict.FAIL);
    }

    private static List<Path> recurrences() throws IOException {
        final List<Path> all = new ArrayList<>();
        for (final String dir : new String[] {"/golden-advantages", "/golden-advantages-2026.08"}) {
            try (Stream<Path> s = Files.list(resource(dir))) {
                s.filter(p -> {
                    final String n = p.getFileName().toString();
                    return (n.startsWith("gae_") || n.startsWith("adv_remax_")
                        || n.startsWith("adv_reinforce_plus_plus_b") || n.startsWith("adv_otb_")
                        || n.startsWith("adv_tir_otb_")) && !n.contains("error");
                }).sorted().forEach(all::add);
            }
        }
        return all;
    }

    /**
     * gae, reinforce_plus_plus, remax and the optimal-token baselines judged by their recurrences' and sums' bounds
     * (and masked_whiten's): verl's
     * cases pass, and mutations fail: a sign flipped, an element just past its bound, and the outputs of the same
     * batch with another gamma. (The bounds are worst-case forward bounds of float32 recurrences: a few ulp where
     * the terms do not cancel, hundreds where returns of ~0.05 come out of values of ~1, as in the ragged gae
     * scenario.)
     */
    @Test
    void recurrencesAreJudgedByTheirFloat32Bounds() throws IOException {
        final List<Path> all = recurrences();
        assertThat(all).hasSizeGreaterThan(20);
        for (final Path f : all) {
            final CaseReport r = run(f, null);
            assertThat(r.verdict()).as(f.toString()).isIn(Verdict.PASS, Verdict.DEVIATION);
            assertThat(tensor(r, 0, "out.advantages").judge()).as(f.toString()).isEqualTo(TensorReport.Judge.BOUND);
            assertThat(tensor(r, 0, "out.returns").judge()).as(f.toString()).isEqualTo(TensorReport.Judge.BOUND);
            final CaseOutputs.Output ret = outputs(f).get("out.returns");
            final float[] v = ret.values();
            int at = -1;
            for (int i = 0; i < v.length; i++) {
                if (ret.mask()[i] != 0 && v[i] != 0) {
                    at = at < 0 || Math.abs(v[i]) > Math.abs(v[at]) ? i : at;
                }
            }
            final int i = at;
            final double x = ret.referee().exactAt(i) + 1.01 * ret.referee().engineBoundAt(i);
            assertThat(tensor(run(f, o -> o.get("out.returns").values()[i] = (float) x < x ? Math.nextUp((float) x)
                : (float) x), 0, "out.returns").verdict()).as(f.toString()).isEqualTo(Verdict.FAIL);
            assertThat(tensor(run(f, o -> {
                final float[] a = o.get("out.advantages").values();
                for (int k = 0; k < a.length; k++) {
                    a[k] = -a[k];
                }
            }), 0, "out.advantages").verdict()).as(f.toString()).isEqualTo(Verdict.FAIL);
        }
        final Path dir = resource("/golden-advantages");
        for (final String[] pair : new String[][] {{"gae_b1t8_g0.99_l0.95", "gae_b1t8_g1.0_l0.95"},
            {"adv_reinforce_plus_plus_b4t16_ragged_g0.99", "adv_reinforce_plus_plus_b4t16_ragged_g1.0"}}) {
            final CaseReport wrongGamma = withOutputsOf(dir.resolve(pair[0] + ".safetensors"),
                outputs(dir.resolve(pair[1] + ".safetensors")));
            assertThat(tensor(wrongGamma, 0, "out.returns").verdict()).as(pair[0]).isEqualTo(Verdict.FAIL);
        }
    }

    /**
     * apply_kl_penalty, compute_rewards and the adaptive controller judged by derived bounds; mutations fail: a
     * reward past its bound, current_kl 1e-4 relative off (a token mean instead of the mean of row means moves it
     * by more), the coefficient after the update a few ulp off.
     */
    @Test
    void rewardKlPenaltyIsJudgedByDerivedBounds() throws IOException {
        final List<Path> all = new ArrayList<>();
        try (Stream<Path> s = Files.list(resource("/golden-advantages"))) {
            s.filter(p -> p.getFileName().toString().startsWith("apply_kl_penalty_")
                || p.getFileName().toString().startsWith("compute_rewards_")
                || p.getFileName().toString().startsWith("adaptive_kl_ctrl_")).sorted().forEach(all::add);
        }
        assertThat(all).hasSize(10);
        for (final Path f : all) {
            final CaseReport r = run(f, null);
            assertThat(r.verdict()).as(f.toString()).isEqualTo(Verdict.PASS);
            for (final EngineReport e : r.runs()) {
                assertThat(e.tensors()).as(f.toString()).allMatch(t -> t.judge() == TensorReport.Judge.BOUND);
            }
            final String name = f.getFileName().toString();
            if (name.startsWith("adaptive_kl_ctrl_")) {
                assertThat(verdict(run(f, o -> {
                    final float[] v = o.get("out.value_after").values();
                    v[v.length - 1] = Math.nextUp(Math.nextUp(v[v.length - 1]));
                }), "out.value_after")).as(name).isEqualTo(Verdict.FAIL);
                continue;
            }
            final CaseOutputs.Output rewards = outputs(f).get("out.token_level_rewards");
            final double past = rewards.referee().exactAt(5) + 1.01 * rewards.referee().engineBoundAt(5);
            assertThat(verdict(run(f, o -> o.get("out.token_level_rewards").values()[5] = (float) past < past
                ? Math.nextUp((float) past) : (float) past), "out.token_level_rewards")).as(name)
                .isEqualTo(Verdict.FAIL);
            if (name.startsWith("apply_kl_penalty_")) {
                assertThat(verdict(run(f, o -> o.get("out.current_kl").values()[0] *= 1.0001f), "out.current_kl"))
                    .as(name).isEqualTo(Verdict.FAIL);
                assertThat(verdict(run(f, o -> {
                    final float[] v = o.get("out.kl_coef_after_update").values();
                    v[0] = Math.nextUp(Math.nextUp(v[0]));
                }), "out.kl_coef_after_update")).as(name).isEqualTo(Verdict.FAIL);
            }
        }
    }

    /** The masked statistics judged by derived bounds, float32 and float64 cases; a few ulp off fails. */
    @Test
    void maskedStatisticsAreJudgedByDerivedBounds() throws IOException {
        for (final String name : new String[] {"tf_masked_stats_b5t12.safetensors",
            "tf_masked_stats_b5t12_f64.safetensors"}) {
            final Path f = resource("/golden-advantages/" + name);
            final CaseReport r = run(f, null);
            assertThat(r.verdict()).as(name).isEqualTo(Verdict.PASS);
            assertThat(r.runs().getFirst().tensors()).as(name).allMatch(t -> t.judge() == TensorReport.Judge.BOUND);
            for (final String out : new String[] {"out.masked_mean", "out.masked_var_unbiased", "out.masked_sum"}) {
                final CaseOutputs.Referee ref = outputs(f).get(out).referee();
                final double past = ref.exactAt(0) + 1.01 * ref.engineBoundAt(0);
                assertThat(verdict(run(f, o -> o.get(out).values()[0] = (float) past < past
                    ? Math.nextUp((float) past) : (float) past), out)).as(name + " " + out).isEqualTo(Verdict.FAIL);
                assertThat(ref.engineBoundAt(0) / Math.ulp((float) ref.exactAt(0))).as(name + " " + out)
                    .isLessThan(name.contains("f64") ? 64 : 2);
            }
        }
    }
}
