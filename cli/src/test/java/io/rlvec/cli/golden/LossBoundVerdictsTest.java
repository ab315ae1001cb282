package io.rlvec.cli.golden;

import static org.assertj.core.api.Assertions.assertThat;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.stream.Stream;

import org.junit.jupiter.api.Test;

/**
 * The policy loss (vanilla) and the value loss judged by derived error bounds ({@link F32Term},
 * {@link TokenTermBounds}): verl's golden cases pass on both engines, and each mutation of a correct engine fails:
 * a well-conditioned output a few ulp off, a wrong clamp, a gradient with the wrong sign, a dropped token.
 */
class LossBoundVerdictsTest extends MutatedEngineTest {
    private static final String MASK = "in.response_mask";
    private static final String VANILLA = "/golden/pl_vanilla_b16t128_mixed_clip0.2-0.28_c3_tmean.safetensors";
    /** One token, ratio e^0.5 above 1 + 0.28, A &gt; 0: pg_loss = -A (1 + 0.28), a single product. */
    private static final String VANILLA_ONE = "/golden/pl_vanilla_b1t1_pos_clip0.2-0.28_c3_tmean.safetensors";
    /** One token, A &lt; 0, ratio beyond clip_ratio_c = 3: pg_loss = -A c (the dual clip). */
    private static final String DUAL_CLIP = "/golden/pl_vanilla_b1t1_neg_dualclip_clip0.2-0.28_c3_tmean.safetensors";
    private static final String VALUE = "/golden-value/2026-01/value_loss_b8t64_tmean.safetensors";
    private static final String VALUE_08 = "/golden-value/2026-08/value_loss_b1t1_dp2_bnt300_gbs12_lsf64_c0.5_sm-tmean"
        + ".safetensors";

    // ---------------------------------------------------------------------------------------------------------
    // verl's own cases: judged by the bounds, and passing

    private static List<Path> cases(final String folder, final String prefix) throws IOException {
        try (Stream<Path> s = Files.list(resource(folder))) {
            return s.filter(p -> p.getFileName().toString().startsWith(prefix)).sorted().toList();
        }
    }

    @Test
    void verlsCasesPassOrDeviateOnTheBoundsAndAreJudgedByThem() throws IOException {
        final List<Path> all = new java.util.ArrayList<>(cases("/golden", "pl_vanilla_"));
        all.addAll(cases("/golden-policy", "pl_"));
        all.addAll(cases("/golden-policy-2026.08", "pl_"));
        all.addAll(cases("/golden-value/2026-01", "value_loss_"));
        all.addAll(cases("/golden-value/2026-08", "value_loss_"));
        assertThat(all).hasSizeGreaterThan(600);
        final List<String> unjudged = new java.util.ArrayList<>();
        for (final Path f : all) {
            final String name = f.getFileName().toString();
            final CaseOutputs o = passingOutputs(f);
            if (o == null) {
                continue; // an expect_error case
            }
            final boolean judged = o.all().values().stream().allMatch(x -> x.referee() != null
                && x.referee().judged());
            if (!judged) {
                unjudged.add(name);
            }
        }
        // Unjudged: none but the extreme cases whose unclamped square overflows (dro). Float64 cases are judged
        // against their stored inputs, batches without a valid token as exactly 0.
        assertThat(unjudged).as("cases with an output on a fixed tolerance")
            .allMatch(n -> n.startsWith("pl_dro_") && n.contains("extreme"));
    }

    // ---------------------------------------------------------------------------------------------------------
    // A well-conditioned output a few ulp off

    @Test
    void wellConditionedPolicyLossOffBySevenUlpFails() throws IOException {
        final Path f = resource(VANILLA_ONE);
        final CaseOutputs.Referee ref = outputs(f).get("out.pg_loss").referee();
        final double ulp = Math.ulp((float) ref.exactAt(0));
        assertThat(ref.engineBoundAt(0) / ulp).as("the engine's bound in ulps").isLessThan(7);
        final CaseReport r = run(f, o -> o.get("out.pg_loss").values()[0] = ulps(o.get("out.pg_loss").values()[0], 7));
        assertThat(tensor(r, 0, "out.pg_loss").verdict()).isEqualTo(Verdict.FAIL);
        assertThat(tensor(r, 0, "out.pg_loss").detail()).contains("over its error bound");
        // ppo_kl of the one token (one rounding), and the gradient of a 2048-token case, element by element.
        final CaseReport kl = run(f, o -> o.get("out.ppo_kl").values()[0] = ulps(o.get("out.ppo_kl").values()[0], 7));
        assertThat(tensor(kl, 0, "out.ppo_kl").verdict()).isEqualTo(Verdict.FAIL);
        final Path many = resource(VANILLA);
        final CaseReport grad = run(many, o -> {
            final float[] g = o.get("out.grad_log_prob").values();
            for (int i = 0; i < g.length; i++) {
                if (g[i] != 0) {
                    g[i] = ulps(g[i], 7);
                    break;
                }
            }
        });
        assertThat(tensor(grad, 0, "out.grad_log_prob").verdict()).isEqualTo(Verdict.FAIL);
    }

    @Test
    void wellConditionedValueLossOffBySixUlpFails() throws IOException {
        for (final String name : new String[] {VALUE, VALUE_08}) {
            final Path f = resource(name);
            final CaseOutputs.Referee ref = outputs(f).get("out.vf_loss").referee();
            assertThat(ref.engineBoundAt(0) / Math.ulp((float) ref.exactAt(0))).as(name).isLessThan(6);
            final CaseReport r = run(f, o -> o.get("out.vf_loss").values()[0] = ulps(o.get("out.vf_loss").values()[0],
                6));
            assertThat(tensor(r, 0, "out.vf_loss").verdict()).as(name).isEqualTo(Verdict.FAIL);
            assertThat(tensor(r, 0, "out.vf_loss").detail()).contains("over its error bound");
        }
    }

    // ---------------------------------------------------------------------------------------------------------
    // A wrong clamp: the engine run with another clip range, judged against verl's case

    @Test
    void policyLossWithAWrongClampFails() throws IOException {
        final Path f = resource(VANILLA);
        final CaseOutputs wrong = outputs(copy(f, "pl_wrong_clip.safetensors",
            p -> p.replace("\"clip_ratio_high\": 0.28", "\"clip_ratio_high\": 0.25"), null, -1));
        final CaseReport r = withOutputsOf(f, wrong);
        assertThat(r.verdict()).isEqualTo(Verdict.FAIL);
        assertThat(tensor(r, 0, "out.pg_loss").verdict()).isEqualTo(Verdict.FAIL);
        assertThat(tensor(r, 0, "out.pg_clipfrac").verdict()).isEqualTo(Verdict.FAIL);
        assertThat(tensor(r, 0, "out.grad_log_prob").verdict()).isEqualTo(Verdict.FAIL);
        // The dual clip at 2.5 instead of 3, on the case whose one token (A < 0) reaches it.
        final Path one = resource(DUAL_CLIP);
        final CaseOutputs dual = outputs(copy(one, "pl_wrong_dual.safetensors",
            p -> p.replace("\"clip_ratio_c\": 3.0", "\"clip_ratio_c\": 2.5"), null, -1));
        final CaseReport d = withOutputsOf(one, dual);
        assertThat(tensor(d, 0, "out.pg_loss").verdict()).isEqualTo(Verdict.FAIL);
        assertThat(run(one, null).verdict()).isEqualTo(Verdict.PASS);
    }

    /** kl_cov with the top 0.02 % (one token) for 10 %, judged against verl's 10 %: the loss and gradient fail. */
    @Test
    void klCovWithAWrongSelectionFails() throws IOException {
        final Path f = resource("/golden-policy/pl_kl_cov_cov_b4t32_ratio0.1_coef0.1_tmean.safetensors");
        final CaseOutputs wrong = outputs(copy(f, "pl_wrong_kl_cov.safetensors",
            p -> p.replace("\"kl_cov_ratio\": 0.1", "\"kl_cov_ratio\": 0.0002"), null, -1));
        final CaseReport r = withOutputsOf(f, wrong);
        assertThat(tensor(r, 0, "out.pg_loss").verdict()).isEqualTo(Verdict.FAIL);
        assertThat(tensor(r, 0, "out.grad_log_prob").verdict()).isEqualTo(Verdict.FAIL);
        assertThat(run(f, null).verdict()).isEqualTo(Verdict.PASS);
        // The selections are sharp on verl's cases: no token open.
        final List<Path> covCases = new java.util.ArrayList<>(cases("/golden-policy", "pl_kl_cov_"));
        covCases.addAll(cases("/golden-policy", "pl_clip_cov_"));
        assertThat(covCases).hasSize(8);
        for (final Path c : covCases) {
            assertThat(openTokens(c)).as(c.toString()).isZero();
        }
    }

    /**
     * The selections on four tokens (A = 1, 1, -1, 0.5; log_prob = -0.5, -0.5, -1, -2; covariances 0.3125, 0.3125,
     * 0, -0.125): kl_cov's top 1 is a tie, both tied tokens open, the others surely out; clip_cov's four
     * candidates all fit one draw of four, not one of one (verl's draw random: not judged).
     */
    @Test
    void covarianceSelectionsOpenTiesAndJudgeOnlyForcedDraws() {
        final float[] lp = {-0.5f, -0.5f, -1f, -2f};
        final float[] adv = {1f, 1f, -1f, 0.5f};
        final float[] mask = {1f, 1f, 1f, 1f};
        final io.rlvec.LossSpec kl = io.rlvec.LossSpec.builder().policyLossMode(io.rlvec.PolicyLossMode.KL_COV)
            .klCovRatio(0.0002).build();
        final PolicyLossHandler.Selected top = PolicyLossHandler.covSelection(kl, lp, lp, adv, mask);
        assertThat(top.open()).containsExactly(true, true, false, false);
        assertThat(top.in()[0] ^ top.in()[1]).isTrue();
        assertThat(top.in()[2] || top.in()[3]).isFalse();
        final io.rlvec.LossSpec.Builder clip = io.rlvec.LossSpec.builder()
            .policyLossMode(io.rlvec.PolicyLossMode.CLIP_COV).clipCovLb(-1).clipCovUb(5);
        assertThat(PolicyLossHandler.covSelection(clip.clipCovRatio(0.25).build(), lp, lp, adv, mask)).isNull();
        final PolicyLossHandler.Selected all = PolicyLossHandler.covSelection(clip.clipCovRatio(1.0).build(), lp,
            lp, adv, mask);
        assertThat(all.in()).containsExactly(true, true, true, true);
        assertThat(all.open()).containsExactly(false, false, false, false);
    }

    /** The tokens of a case whose covariance selection float32 may decide either way. */
    private static long openTokens(final Path f) throws IOException {
        try (GoldenCase g = GoldenCase.open(f)) {
            final io.rlvec.PolicyLossMode mode = f.getFileName().toString().startsWith("pl_kl_cov")
                ? io.rlvec.PolicyLossMode.KL_COV : io.rlvec.PolicyLossMode.CLIP_COV;
            final PolicyLossHandler.Selected s = PolicyLossHandler.covSelection(g.lossSpec().policyLossMode(mode)
                .build(),
                g.float32("in.log_prob").toFloatArray(), g.float32("in.old_log_prob").toFloatArray(),
                g.float32("in.advantages").toFloatArray(), g.float32("in.response_mask").toFloatArray());
            long open = 0;
            for (final boolean o : s.open()) {
                open += o ? 1 : 0;
            }
            return open;
        }
    }

    /** clip_cov with the candidate window [0.5, 1.5] for [0.5, 2], judged against verl's: pg_clipfrac fails. */
    @Test
    void clipCovWithAWrongWindowFails() throws IOException {
        final Path f = resource("/golden-policy/pl_clip_cov_cov_b4t32_ratio0.5_lb0.5_ub2_tmean.safetensors");
        final CaseOutputs wrong = outputs(copy(f, "pl_wrong_clip_cov.safetensors",
            p -> p.replace("\"clip_cov_ub\": 2.0", "\"clip_cov_ub\": 1.5"), null, -1));
        final CaseReport r = withOutputsOf(f, wrong);
        assertThat(r.verdict()).isEqualTo(Verdict.FAIL);
        assertThat(run(f, null).verdict()).isEqualTo(Verdict.PASS);
        assertThat(openTokens(f)).isZero();
    }

    @Test
    void valueLossWithAWrongClampFails() throws IOException {
        final Path f = resource(VALUE);
        final CaseOutputs wrong = outputs(copy(f, "value_wrong_clip.safetensors",
            p -> p.replace("\"cliprange_value\": 0.5", "\"cliprange_value\": 0.45"), null, -1));
        final CaseReport r = withOutputsOf(f, wrong);
        assertThat(tensor(r, 0, "out.vf_loss").verdict()).isEqualTo(Verdict.FAIL);
        assertThat(tensor(r, 0, "out.vf_clipfrac").verdict()).isEqualTo(Verdict.FAIL);
        assertThat(tensor(r, 0, "out.grad_vpreds").verdict()).isEqualTo(Verdict.FAIL);
    }

    // ---------------------------------------------------------------------------------------------------------
    // A gradient with the wrong sign

    @Test
    void gradientWithTheWrongSignFails() {
        assertThat(tensor(run(resource(VANILLA), negate("out.grad_log_prob")), 0, "out.grad_log_prob").verdict())
            .isEqualTo(Verdict.FAIL);
        assertThat(tensor(run(resource(VALUE), negate("out.grad_vpreds")), 0, "out.grad_vpreds").verdict())
            .isEqualTo(Verdict.FAIL);
    }

    /** One ragged case of every other judged mode. */
    private static List<Path> otherModes() throws IOException {
        final List<Path> out = new java.util.ArrayList<>();
        for (final String m : new String[] {"gpg", "cispo", "dro", "sapo", "dppo_tv", "dppo_kl", "gspo",
            "geo_mean"}) {
            final List<Path> c = new java.util.ArrayList<>(cases("/golden-policy", "pl_" + m + "_b4t16_ragged_"));
            c.addAll(cases("/golden-policy-2026.08", "pl_" + m + "_b4t16_ragged_"));
            out.add(c.stream().filter(p -> !p.toString().contains("beta-1")).findFirst().orElseThrow());
        }
        // The covariance selections: kl_cov's top 10 % with ppo_kl_coef 0.1, clip_cov's candidates (all fit).
        out.add(resource("/golden-policy/pl_kl_cov_cov_b4t32_ratio0.1_coef0.1_tmean.safetensors"));
        out.add(resource("/golden-policy/pl_clip_cov_cov_b4t32_ratio0.5_lb0.5_ub2_tmean.safetensors"));
        return out;
    }

    /** The other judged modes: the engine passes, and a negated gradient, a loss past its bound, a dropped token fail. */
    @Test
    void everyJudgedModeFailsAMutatedEngine() throws IOException {
        for (final Path f : otherModes()) {
            assertThat(run(f, null).verdict()).as(f.toString()).isEqualTo(Verdict.PASS);
            assertThat(tensor(run(f, negate("out.grad_log_prob")), 0, "out.grad_log_prob").verdict()).as(f.toString())
                .isEqualTo(Verdict.FAIL);
            // A loss just past the engine's bound (where the A > 0 and A < 0 parts cancel, as in sapo's, the bound
            // is many ulp of the loss: it scales with the parts).
            final CaseOutputs.Referee ref = outputs(f).get("out.pg_loss").referee();
            final float past = (float) (ref.exactAt(0) + 1.01 * ref.engineBoundAt(0));
            assertThat(tensor(run(f, o -> o.get("out.pg_loss").values()[0] = Math.nextUp(past)), 0, "out.pg_loss")
                .verdict()).as(f.toString()).isEqualTo(Verdict.FAIL);
            final Path dropped = dropped(f, MASK);
            assertThat(tensor(run(dropped, null), 0, "out.pg_loss").verdict()).as(f.toString())
                .isEqualTo(Verdict.FAIL);
        }
    }

    // ---------------------------------------------------------------------------------------------------------
    // A dropped token: the engine sees the batch without one valid token, verl's outputs stay

    @Test
    void droppedTokenFails() throws IOException {
        final CaseReport pl = run(dropped(resource(VANILLA), MASK), null);
        assertThat(pl.verdict()).isEqualTo(Verdict.FAIL);
        assertThat(tensor(pl, 0, "out.pg_loss").verdict()).isEqualTo(Verdict.FAIL);
        final CaseReport vf = run(dropped(resource(VALUE), MASK), null);
        assertThat(vf.verdict()).isEqualTo(Verdict.FAIL);
        assertThat(tensor(vf, 0, "out.vf_loss").verdict()).isEqualTo(Verdict.FAIL);
    }
}
