package io.rlvec.cli.golden;

import static org.assertj.core.api.Assertions.assertThat;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.function.UnaryOperator;
import java.util.stream.Stream;

import org.junit.jupiter.api.Test;

/**
 * bypass_mode judged by derived error bounds ({@link BypassBounds}): verl's golden cases pass or deviate on both
 * engines and are judged by the bounds, and each mutation of a correct engine fails: an IS weight truncated at a
 * wrong threshold, a rejected token kept, the gradient with the wrong sign, a valid token dropped, a
 * well-conditioned output a few ulp off.
 */
class BypassBoundVerdictsTest extends MutatedEngineTest {
    private static final String DIR = "/golden-bypass-2026.08/";
    private static final String PREFIX = "pl_bypass_mode_";
    /** reinforce with token-level TIS at 2: 2048 tokens, some of whose ratios lie between 1.5 and 2. */
    private static final String TOKEN_IS = PREFIX + "b16t128_mixed_rf_tokIS2_tmean.safetensors";
    /** ppo_clip on the mask of token_k1 rejection in [0.8, 1.25]. */
    private static final String REJECTION = PREFIX + "b16t128_mixed_ppo_tokIS2_rs_tokk1_tmean.safetensors";
    /** One token, reinforce without IS: pg_loss = -A lp, one product; ppo_kl = old - lp, one subtraction. */
    private static final String ONE = PREFIX + "b1t1_pos_rf_noIS_tmean.safetensors";

    private static Path bypass(final String name) {
        return resource(DIR + name);
    }

    private static Verdict verdict(final CaseReport r, final String name) {
        return tensor(r, 0, name).verdict();
    }

    /** The engine's outputs on a copy of verl's case with other params, judged against verl's case. */
    private static CaseReport withParams(final Path f, final UnaryOperator<String> params) throws IOException {
        return withOutputsOf(f, outputs(copy(f, "mutated_" + f.getFileName(), params, null, -1)));
    }

    private static List<Path> cases() throws IOException {
        try (Stream<Path> s = Files.list(bypass(ONE).getParent())) {
            return s.filter(p -> p.getFileName().toString().startsWith(PREFIX)).sorted().toList();
        }
    }

    /** @return whether verl's case has no token surviving rejection (its pg_loss NaN, 0 / 0). */
    private static boolean noneSurvives(final String name) {
        try (GoldenCase g = GoldenCase.open(bypass(name))) {
            return Float.isNaN(g.float32("out.pg_loss").toFloatArray()[0]);
        } catch (final IOException e) {
            throw new IllegalStateException(e);
        }
    }

    private static boolean judged(final CaseOutputs.Output o) {
        return o.referee() != null && o.referee().judged();
    }

    // ---------------------------------------------------------------------------------------------------------
    // verl's own cases

    @Test
    void verlsCasesPassOrDeviateAndAreJudgedByTheBounds() throws IOException {
        final List<Path> all = cases();
        assertThat(all).hasSize(222);
        final List<String> unjudged = new ArrayList<>();
        final List<String> fixedMetrics = new ArrayList<>();
        for (final Path f : all) {
            final String name = f.getFileName().toString();
            final CaseOutputs o = passingOutputs(f);
            if (o == null) {
                continue; // an expect_error case
            }
            if (!judged(o.get("out.pg_loss")) || !judged(o.get("out.grad_log_prob"))
                || !judged(o.get("out.ppo_kl"))) {
                unjudged.add(name);
            }
            if (!name.contains("allmasked") && !name.contains("nanpad")) {
                o.all().values().stream().filter(x -> x.name().startsWith(RolloutCorrectionHandler.METRIC))
                    .filter(x -> !judged(x)).forEach(x -> fixedMetrics.add(name + " " + x.name()));
            }
        }
        // On fixed tolerances: no token valid (allmasked) or none surviving rejection (verl's 0 / 0: every row of
        // the seq_mean_k3 cases but the ragged batch's, the one token of the tokk1 cases), and the NaN-padded
        // batches whose row sums (sequence IS, batch normalisation) read a masked NaN.
        assertThat(unjudged).as("bypass cases on fixed tolerances")
            .allMatch(n -> n.contains("allmasked") || n.contains("_rs_") && noneSurvives(n)
                || n.contains("nanpad") && (n.contains("seqIS") || n.contains("bnorm")));
        // The rollout_corr metrics on fixed tolerances (verl's NaN-free cases): only k3_kl where exp of an
        // unclamped log-ratio overflows float32 (the extreme batch); the standard deviations and the effective
        // sample size included, every other metric is judged by its bound.
        assertThat(fixedMetrics).as("rollout_corr metrics on fixed tolerances")
            .allMatch(m -> m.contains("_extreme_") && m.endsWith("/k3_kl"));
    }

    // ---------------------------------------------------------------------------------------------------------
    // Mutations

    @Test
    void wellConditionedOutputsAFewUlpOffFail() throws IOException {
        final Path f = bypass(ONE);
        final CaseOutputs.Referee ref = outputs(f).get("out.pg_loss").referee();
        assertThat(ref.engineBoundAt(0) / Math.ulp((float) ref.exactAt(0))).as("the engine's bound in ulps")
            .isLessThan(6);
        assertThat(run(f, null).verdict()).isEqualTo(Verdict.PASS);
        assertThat(verdict(run(f, o -> o.get("out.pg_loss").values()[0] = ulps(o.get("out.pg_loss").values()[0], 6)),
            "out.pg_loss")).isEqualTo(Verdict.FAIL);
        assertThat(verdict(run(f, o -> o.get("out.ppo_kl").values()[0] = ulps(o.get("out.ppo_kl").values()[0], 6)),
            "out.ppo_kl")).isEqualTo(Verdict.FAIL);
        // The rollout_corr diagnostics of the one token: kl = old - lp (one subtraction), its perplexities.
        for (final String metric : new String[] {"kl", "training_log_ppl", "training_ppl", "rollout_log_ppl"}) {
            final String name = RolloutCorrectionHandler.METRIC + "rollout_corr/" + metric;
            assertThat(verdict(run(f, o -> o.get(name).values()[0] = ulps(o.get(name).values()[0], 6)), name))
                .as(metric).isEqualTo(Verdict.FAIL);
        }
        // A gradient element -A w / n of the token-IS case (w = min(exp(lr), 2): an exp within 1.5 ulp of the exact
        // value, a product, the weight): within 9 ulp, and 9 ulp off fails.
        final Path is = bypass(TOKEN_IS);
        final int at = firstNonZero(is, "out.grad_log_prob");
        final CaseOutputs.Referee g = outputs(is).get("out.grad_log_prob").referee();
        assertThat(g.engineBoundAt(at) / Math.ulp((float) g.exactAt(at))).isLessThan(9);
        final CaseReport grad = run(is, o -> o.get("out.grad_log_prob").values()[at] =
            ulps(o.get("out.grad_log_prob").values()[at], 9));
        assertThat(verdict(grad, "out.grad_log_prob")).isEqualTo(Verdict.FAIL);
    }

    /**
     * The spread metrics are judged by derived bounds, tight where they are well conditioned: verl's IS and
     * rejection standard deviations (over tokens, and over rows) and the effective sample size are each within a
     * small relative bound of the exact value, and the engine's value just past its bound fails.
     */
    @Test
    void spreadMetricsPastTheirBoundsFail() throws IOException {
        final String[][] cases = {
            {TOKEN_IS, "rollout_is_std"}, {TOKEN_IS, "rollout_is_eff_sample_size"}, {TOKEN_IS, "rollout_is_seq_std"},
            {REJECTION, "rollout_rs_token_k1_std"}, {REJECTION, "rollout_rs_token_k1_seq_std"}};
        for (final String[] c : cases) {
            final Path f = bypass(c[0]);
            final String name = RolloutCorrectionHandler.METRIC + "rollout_corr/" + c[1];
            final CaseOutputs.Referee ref = outputs(f).get(name).referee();
            assertThat(ref).as(c[1]).isNotNull();
            assertThat(ref.judged()).as(c[1]).isTrue();
            assertThat(ref.exactAt(0)).as(c[1]).isPositive();
            // Over rows the terms are row means, each bounded as a float32 sum of 128 terms (about 8e-6 of the
            // mean): the std's bound is a few 1e-4 of it; over tokens the terms are single roundings.
            assertThat(ref.engineBoundAt(0) / ref.exactAt(0)).as(c[1] + ": the engine's relative bound")
                .isLessThan(c[1].endsWith("_seq_std") ? 1e-3 : 1e-4);
            assertThat(verdict(run(f, null), name)).as(c[1]).isIn(Verdict.PASS, Verdict.DEVIATION);
            final float past = Math.nextUp((float) (ref.exactAt(0) + 1.01 * ref.engineBoundAt(0)));
            assertThat(verdict(run(f, o -> o.get(name).values()[0] = past), name)).as(c[1])
                .isEqualTo(Verdict.FAIL);
        }
    }

    /** The IS weights truncated at 1.5 instead of verl's 2: the loss and the gradient fail. */
    @Test
    void weightsTruncatedAtAWrongThresholdFail() throws IOException {
        final Path f = bypass(TOKEN_IS);
        assertThat(run(f, null).verdict()).isEqualTo(Verdict.PASS);
        final CaseReport r = withParams(f, p -> p.replace("\"rollout_is_threshold\": 2.0",
            "\"rollout_is_threshold\": 1.5"));
        assertThat(verdict(r, "out.pg_loss")).isEqualTo(Verdict.FAIL);
        assertThat(verdict(r, "out.grad_log_prob")).isEqualTo(Verdict.FAIL);
        for (final String metric : new String[] {"rollout_is_mean", "rollout_is_max", "rollout_is_ratio_fraction_high",
            "rollout_is_ratio_fraction_low"}) {
            assertThat(verdict(r, RolloutCorrectionHandler.METRIC + "rollout_corr/" + metric)).as(metric)
                .isEqualTo(Verdict.FAIL);
        }
    }

    /** Rejection in [0.5, 2] instead of [0.8, 1.25]: tokens verl rejects are kept, the loss and gradient fail. */
    @Test
    void rejectedTokensKeptFail() throws IOException {
        final Path f = bypass(REJECTION);
        assertThat(run(f, null).verdict()).isEqualTo(Verdict.PASS);
        final CaseReport r = withParams(f, p -> p.replace("\"0.8_1.25\"", "\"0.5_2.0\""));
        assertThat(verdict(r, "out.pg_loss")).isEqualTo(Verdict.FAIL);
        assertThat(verdict(r, "out.grad_log_prob")).isEqualTo(Verdict.FAIL);
        for (final String metric : new String[] {"rollout_rs_masked_fraction", "rollout_rs_token_k1_masked_fraction",
            "rollout_rs_token_k1_fraction_high", "rollout_rs_seq_masked_fraction"}) {
            assertThat(verdict(r, RolloutCorrectionHandler.METRIC + "rollout_corr/" + metric)).as(metric)
                .isEqualTo(Verdict.FAIL);
        }
    }

    /**
     * Every loss type and correction (ppo_clip with token rejection, reinforce with token, sequence, IcePop and
     * batch-normalised IS, sequence-level rejection) under token-mean and a seq-mean: the engine passes, and a
     * negated gradient, a loss just past the engine's bound and a dropped token fail.
     */
    @Test
    void everyCorrectionFailsAMutatedEngine() throws IOException {
        for (final String c : new String[] {"ppo_noIS_tmean", "ppo_tokIS2_rs_tokk1_sm-tsum", "rf_noIS_sm-tsum",
            "rf_tokIS2_tsum", "rf_seqIS2_tmean", "rf_seqIS5_rs_seqmeank3_sm-tsum", "rf_tokIS2_bnorm_tmean",
            "rf_tokIcePop0.5_2_tmean"}) {
            final Path f = bypass(PREFIX + "b4t16_ragged_" + c + ".safetensors");
            assertThat(run(f, null).verdict()).as(c).isIn(Verdict.PASS, Verdict.DEVIATION);
            assertThat(verdict(run(f, negate("out.grad_log_prob")), "out.grad_log_prob")).as(c).isEqualTo(Verdict.FAIL);
            final CaseOutputs.Referee ref = outputs(f).get("out.pg_loss").referee();
            assertThat(ref).as(c).isNotNull();
            final float past = Math.nextUp((float) (ref.exactAt(0) + 1.01 * ref.engineBoundAt(0)));
            assertThat(verdict(run(f, o -> o.get("out.pg_loss").values()[0] = past), "out.pg_loss")).as(c)
                .isEqualTo(Verdict.FAIL);
            final Path dropped = dropped(f, "out.grad_log_prob");
            assertThat(verdict(run(dropped, null), "out.pg_loss")).as(c).isEqualTo(Verdict.FAIL);
        }
    }

    /**
     * The same bounds judge verl's compute_rollout_correction_and_rejection_mask cases (every IS level and mode,
     * every rejection option, the float64 ones against their stored inputs): they pass, every output (the IS
     * weights, the rejection mask, every metric) is judged, and mutations fail: the engine run with seq_sum_k1 in
     * [0.4, 2.5] instead of [0.5, 2], a weight three ulp off, a weight written at a masked position, a kept token
     * rejected.
     */
    @Test
    void theRolloutCorrectionFunctionIsJudgedByTheSameBounds() throws IOException {
        final List<Path> all;
        try (Stream<Path> s = Files.list(resource("/golden-rollout-corr-2026.08"))) {
            all = s.sorted().toList();
        }
        assertThat(all).hasSize(44);
        int judged = 0;
        int tensors = 0;
        for (final Path f : all) {
            final CaseOutputs o = passingOutputs(f);
            if (o == null) {
                continue;
            }
            for (final CaseOutputs.Output x : o.all().values()) {
                assertThat(judged(x)).as(f + " " + x.name()).isTrue();
                judged++;
                tensors += x.name().startsWith(RolloutCorrectionHandler.METRIC) ? 0 : 1;
            }
        }
        assertThat(judged).isGreaterThan(600);
        assertThat(tensors).isGreaterThan(40);
        final Path f = resource("/golden-rollout-corr-2026.08/rc_b16t128_rs_seqsumk1_0.5_2.safetensors");
        final CaseReport r = withParams(f, p -> p.replace("\"0.5_2.0\"", "\"0.4_2.5\""));
        assertThat(verdict(r, RolloutCorrectionHandler.METRIC + "rollout_corr/rollout_rs_masked_fraction"))
            .isEqualTo(Verdict.FAIL);
        assertThat(verdict(r, "out.response_mask")).isEqualTo(Verdict.FAIL);

        final Path tis = resource("/golden-rollout-corr-2026.08/rc_b16t128_tokTIS2.safetensors");
        final float[] mask = outputs(tis).get("out.rollout_is_weights").mask();
        final int valid = firstIndex(mask, true);
        final int masked = firstIndex(mask, false);
        assertThat(verdict(run(tis, o -> {
            final float[] w = o.get("out.rollout_is_weights").values();
            w[valid] = Math.nextUp(Math.nextUp(Math.nextUp(w[valid])));
        }), "out.rollout_is_weights")).isEqualTo(Verdict.FAIL);
        assertThat(verdict(run(tis, o -> o.get("out.rollout_is_weights").values()[masked] = 1f),
            "out.rollout_is_weights")).isEqualTo(Verdict.FAIL);
        final Path rs = resource("/golden-rollout-corr-2026.08/rc_b16t128_rs_tokk1_0.8_1.25.safetensors");
        assertThat(verdict(run(rs, o -> {
            final float[] m = o.get("out.response_mask").values();
            m[firstIndex(m, true)] = 0f;
        }), "out.response_mask")).isEqualTo(Verdict.FAIL);
    }

    private static int firstIndex(final float[] mask, final boolean valid) {
        for (int k = 0; k < mask.length; k++) {
            if ((mask[k] != 0) == valid) {
                return k;
            }
        }
        throw new AssertionError("no " + (valid ? "valid" : "masked") + " element");
    }

    /** The rejection mask on verl's cases is sharp: no token whose rejection float32 may decide either way. */
    @Test
    void rejectionIsSharpOnVerlsCases() throws IOException {
        int rejected = 0;
        for (final Path f : cases()) {
            if (!f.getFileName().toString().contains("_rs_") || f.getFileName().toString().contains("allmasked")) {
                continue;
            }
            try (GoldenCase g = GoldenCase.open(f)) {
                final float[] lp = g.float32("in.log_prob").toFloatArray();
                final float[] old = g.float32("in.old_log_prob").toFloatArray();
                final float[] mask = g.float32("in.response_mask").toFloatArray();
                final F32Term[] lr = new F32Term[mask.length];
                for (int k = 0; k < mask.length; k++) {
                    lr[k] = mask[k] != 0 ? F32Term.of(lp[k]).minus(F32Term.of(old[k])) : null;
                }
                final PolicyLossHandler.Selected kept = RolloutCorrectionBounds.rejection(
                    BypassPolicyLossHandler.spec(g).rolloutCorrection(), lr, g.matrixShape("in.response_mask"));
                for (int k = 0; k < mask.length; k++) {
                    assertThat(kept.open()[k]).as(f + " token " + k).isFalse();
                    rejected += mask[k] != 0 && !kept.in()[k] ? 1 : 0;
                }
            }
        }
        assertThat(rejected).as("tokens verl's cases reject").isPositive();
    }

    /**
     * A token whose k1 statistic lies on the rejection threshold is open: under token-sum its loss term is widened
     * by the whole term and the case judged (ppo_kl, whose denominator is open, is not); under token-mean the other
     * tokens' weights depend on it and the case keeps the fixed tolerances.
     */
    @Test
    void openRejectionWidensTheTermOrFallsBack() {
        final float edge = (float) Math.log(1.25);
        final float[] lp = {0f, -edge, 0.1f};
        final float[] old = {0f, 0f, 0f};
        final float[] adv = {1f, 2f, -1f};
        final float[] mask = {1f, 1f, 1f};
        final int[] bt = {1, 3};
        final io.rlvec.LossSpec.Builder b = io.rlvec.LossSpec.builder()
            .policyLossMode(io.rlvec.PolicyLossMode.BYPASS_MODE)
            .set(io.rlvec.LossSpec.RC + "loss_type", "reinforce")
            .set(io.rlvec.LossSpec.RC + "rollout_rs", "token_k1")
            .set(io.rlvec.LossSpec.RC + "rollout_rs_threshold", "0.8_1.25");
        final PolicyLossHandler.Exact sum = BypassBounds.exact(b.lossAggMode(io.rlvec.AggMode.TOKEN_SUM).build(), lp,
            old, adv, mask, bt);
        assertThat(sum).isNotNull();
        assertThat(sum.ppoKl()).isNull();
        // The open token's term -A lp = 2 ln 1.25 ~ 0.446 is inside the loss bound.
        assertThat(sum.loss().engineBoundAt(0)).isGreaterThan(0.44);
        assertThat(BypassBounds.exact(b.lossAggMode(io.rlvec.AggMode.TOKEN_MEAN).build(), lp, old, adv, mask, bt))
            .isNull();
    }
}
