package io.rlvec.cli.golden;

import static org.assertj.core.api.Assertions.assertThat;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;

import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import io.rlvec.ActorLossResult;
import io.rlvec.AggResult;
import io.rlvec.Engine;
import io.rlvec.KlPenalty;
import io.rlvec.Logits;
import io.rlvec.LossSpec;
import io.rlvec.OffHeapArray;
import io.rlvec.SoftmaxStats;
import io.rlvec.PolicyLossResult;
import io.rlvec.TokenBatch;
import io.rlvec.cli.io.SafetensorsWriter;
import io.rlvec.reference.ReferenceEngine;

/**
 * The runner's rules on hand-made cases whose verl values are worked out by hand: tolerances, the documented
 * deviations and their contracts, UNSUPPORTED, expect_error, missing outputs, unknown parameters, unreadable
 * files, and the engine-vs-reference contract (with deliberately wrong engines).
 */
class GoldenRunnerTest {
    private static final long[] BT = {2, 3};
    private static final long[] SCALAR = {};
    /** loss_mat of the hand-made agg_loss case. */
    private static final float[] LOSS_MAT = {1f, 2f, 3f, 4f, 5f, 6f};
    /** Valid tokens: (0,0), (0,1), (1,0). */
    private static final byte[] MASK = {1, 1, 0, 1, 0, 0};
    /** token-mean: (1 + 2 + 4) / 3. */
    private static final float TOKEN_MEAN_LOSS = (float) (7.0 / 3.0);
    private static final float THIRD = (float) (1.0 / 3.0);
    private static final float[] TOKEN_MEAN_GRAD = {THIRD, THIRD, 0f, THIRD, 0f, 0f};

    @TempDir
    Path dir;

    private final Engine reference = new ReferenceEngine();

    private Path aggCase(final String name, final String params, final float[] lossMat, final byte[] mask,
                         final float loss, final float[] grad) throws IOException {
        final Path f = dir.resolve(name + ".safetensors");
        new SafetensorsWriter()
            .metadata(GoldenCase.FUNCTION, AggLossHandler.FUNCTION)
            .metadata(GoldenCase.GROUP, "agg_loss")
            .metadata(GoldenCase.PARAMS, params)
            .f32("in.loss_mat", BT, lossMat)
            .u8("in.loss_mask", BT, mask)
            .f32("out.loss", SCALAR, loss)
            .f32("out.grad_loss_mat", BT, grad)
            .write(f);
        return f;
    }

    private CaseReport run(final Path f, final Engine... engines) {
        return new GoldenRunner(CaseHandlers.defaults(), List.of(engines)).run(f);
    }

    private static TensorReport tensor(final CaseReport r, final int engine, final String name) {
        return r.runs().get(engine).tensors().stream().filter(t -> t.name().equals(name)).findFirst().orElseThrow();
    }

    @Test
    void handWorkedCasePassesOnBothEnginesBitIdentically() throws IOException {
        final Path f = aggCase("ok", "{\"loss_agg_mode\": \"token-mean\"}", LOSS_MAT, MASK, TOKEN_MEAN_LOSS,
            TOKEN_MEAN_GRAD);
        final CaseReport r = run(f, new ReferenceEngine(), reference);
        assertThat(r.verdict()).as(r.toString()).isEqualTo(Verdict.PASS);
        assertThat(r.agreement()).extracting(Agreement::mismatches).containsOnly(0);
        assertThat(tensor(r, 0, "out.loss").maxUlp()).isZero();
    }

    @Test
    void aggLossIsJudgedAgainstTheProvenFloat32Bound() throws IOException {
        // verl's loss a few ulp off the double value: within float32's proven bound for three tokens.
        final Path inside = aggCase("inside", "{\"loss_agg_mode\": \"token-mean\"}", LOSS_MAT, MASK,
            Math.nextUp(Math.nextUp(TOKEN_MEAN_LOSS)), TOKEN_MEAN_GRAD);
        assertThat(run(inside, reference).verdict()).isEqualTo(Verdict.PASS);
        // 8e-6 relative passed the old fixed tolerance; no float32 evaluation of three tokens is that far off.
        final Path outside = aggCase("outside", "{\"loss_agg_mode\": \"token-mean\"}", LOSS_MAT, MASK,
            (float) (TOKEN_MEAN_LOSS * (1 + 8e-6)), TOKEN_MEAN_GRAD);
        final CaseReport r = run(outside, reference);
        assertThat(r.verdict()).isEqualTo(Verdict.FAIL);
        assertThat(tensor(r, 0, "out.loss").detail()).contains("over the proven float32 bound");
        assertThat(tensor(r, 0, "out.grad_loss_mat").verdict()).isEqualTo(Verdict.PASS);
    }

    @Test
    void aggLossGradientIsJudgedAgainstTheProvenFloat32Bound() throws IOException {
        final float[] inside = TOKEN_MEAN_GRAD.clone();
        inside[1] = Math.nextUp(inside[1]);
        assertThat(run(aggCase("g-in", "{\"loss_agg_mode\": \"token-mean\"}", LOSS_MAT, MASK, TOKEN_MEAN_LOSS,
            inside), reference).verdict()).isEqualTo(Verdict.PASS);
        final float[] outside = TOKEN_MEAN_GRAD.clone();
        outside[1] += 9e-6f;
        final CaseReport r = run(aggCase("g-out", "{\"loss_agg_mode\": \"token-mean\"}", LOSS_MAT, MASK,
            TOKEN_MEAN_LOSS, outside), reference);
        assertThat(r.verdict()).isEqualTo(Verdict.FAIL);
        assertThat(tensor(r, 0, "out.grad_loss_mat").detail()).contains("1/6 elements wrong; first at [1]");
    }

    @Test
    void nanWithoutADocumentedReasonFails() throws IOException {
        final CaseReport r = run(aggCase("nan", "{\"loss_agg_mode\": \"seq-mean-token-sum\"}", LOSS_MAT, MASK,
            Float.NaN, TOKEN_MEAN_GRAD), reference);
        assertThat(r.verdict()).isEqualTo(Verdict.FAIL);
        assertThat(tensor(r, 0, "out.loss").detail()).contains("no documented reason applies");
    }

    @Test
    void maskedNanLeakingThroughSeqMeanIsADeviation() throws IOException {
        final float[] lossMat = LOSS_MAT.clone();
        lossMat[2] = Float.NaN;
        lossMat[5] = Float.POSITIVE_INFINITY;
        // seq-mean-token-sum: sequences (1 + 2) and 4, mean over 2 sequences; gradient 1/2 on valid tokens.
        final float[] grad = {0.5f, 0.5f, 0f, 0.5f, 0f, 0f};
        final CaseReport r = run(aggCase("leak", "{\"loss_agg_mode\": \"seq-mean-token-sum\"}", lossMat, MASK,
            Float.NaN, grad), reference);
        assertThat(r.verdict()).as(r.toString()).isEqualTo(Verdict.DEVIATION);
        assertThat(tensor(r, 0, "out.loss").deviations()).containsExactly(Deviation.MASKED_NONFINITE_SEQ_MEAN);

        // token-mean's masked_sum stops the NaN in verl, so a NaN there is no documented deviation.
        final CaseReport tm = run(aggCase("leak-tm", "{\"loss_agg_mode\": \"token-mean\"}", lossMat, MASK,
            Float.NaN, TOKEN_MEAN_GRAD), reference);
        assertThat(tm.verdict()).isEqualTo(Verdict.FAIL);
    }

    @Test
    void nanGradientAtAMaskedNanPositionIsADeviationButNotAtAValidOne() throws IOException {
        final float[] lossMat = LOSS_MAT.clone();
        lossMat[2] = Float.NaN;
        final float[] grad = TOKEN_MEAN_GRAD.clone();
        grad[2] = Float.NaN;
        final CaseReport r = run(aggCase("gnan", "{\"loss_agg_mode\": \"token-mean\"}", lossMat, MASK,
            TOKEN_MEAN_LOSS, grad), reference);
        assertThat(r.verdict()).as(r.toString()).isEqualTo(Verdict.DEVIATION);
        final TensorReport g = tensor(r, 0, "out.grad_loss_mat");
        assertThat(g.deviations()).containsExactly(Deviation.MASKED_NONFINITE_GRADIENT);
        assertThat(g.detail()).contains("1/6 elements");

        final float[] bad = TOKEN_MEAN_GRAD.clone();
        bad[0] = Float.NaN;
        assertThat(run(aggCase("gnan-valid", "{\"loss_agg_mode\": \"token-mean\"}", lossMat, MASK,
            TOKEN_MEAN_LOSS, bad), reference).verdict()).isEqualTo(Verdict.FAIL);
    }

    @Test
    void noValidTokenIsADeviationWhoseContractIsZero() throws IOException {
        final byte[] none = new byte[6];
        final Path f = aggCase("none", "{\"loss_agg_mode\": \"token-mean\"}", LOSS_MAT, none, Float.NaN,
            new float[6]);
        final CaseReport r = run(f, reference);
        assertThat(r.verdict()).isEqualTo(Verdict.DEVIATION);
        assertThat(tensor(r, 0, "out.loss").deviations()).containsExactly(Deviation.NO_VALID_TOKEN);

        // An engine returning NaN where the contract says 0 breaks the contract: FAIL, not DEVIATION.
        final Engine nanLoss = new Wrong(reference) {
            @Override
            public void aggLoss(final LossSpec s, final TokenBatch b, final OffHeapArray m, final OffHeapArray g,
                                final AggResult out) {
                super.aggLoss(s, b, m, g, out);
                out.set(out.numerator(), out.validTokens(), out.validSequences(), out.denominator(), Float.NaN);
            }
        };
        final CaseReport bad = run(f, nanLoss);
        assertThat(bad.verdict()).isEqualTo(Verdict.FAIL);
        assertThat(tensor(bad, 0, "out.loss").detail()).startsWith("verl NaN, engine NaN")
            .contains("breaks the contract");
        final Engine oneLoss = new Wrong(reference) {
            @Override
            public void aggLoss(final LossSpec s, final TokenBatch b, final OffHeapArray m, final OffHeapArray g,
                                final AggResult out) {
                super.aggLoss(s, b, m, g, out);
                out.set(out.numerator(), out.validTokens(), out.validSequences(), out.denominator(), 1f);
            }
        };
        assertThat(tensor(run(f, oneLoss), 0, "out.loss").detail()).contains("breaks the contract");
    }

    @Test
    void engineBeyondTheContractWithTheReferenceFailsEvenWithinVerlTolerance() throws IOException {
        final Path f = aggCase("breach", "{\"loss_agg_mode\": \"token-mean\"}", LOSS_MAT, MASK, TOKEN_MEAN_LOSS,
            TOKEN_MEAN_GRAD);
        final Engine oneUlpGrad = new Wrong(reference) {
            @Override
            public void aggLoss(final LossSpec s, final TokenBatch b, final OffHeapArray m, final OffHeapArray g,
                                final AggResult out) {
                super.aggLoss(s, b, m, g, out);
                g.setFloat(0, Math.nextUp(g.getFloat(0)));
            }
        };
        final CaseReport r = run(f, oneUlpGrad, reference);
        // One ulp off a correctly rounded weight is also beyond the engine's bound against the double value (half
        // an ulp): the verl check fails the mutated engine too, the reference passes.
        assertThat(r.runs()).extracting(EngineReport::verdict).containsExactly(Verdict.FAIL, Verdict.PASS);
        assertThat(tensor(r, 0, "out.grad_loss_mat").detail()).contains("over its error bound");
        assertThat(r.verdict()).isEqualTo(Verdict.FAIL);
        assertThat(r.enginesAgree()).isFalse();
        assertThat(r.agreement().get(1).describe()).isEqualTo("1/6 differ (max 1 ulp) BREACH");

        final Engine oneUlpLoss = new Wrong(reference) {
            @Override
            public void aggLoss(final LossSpec s, final TokenBatch b, final OffHeapArray m, final OffHeapArray g,
                                final AggResult out) {
                super.aggLoss(s, b, m, g, out);
                out.set(out.numerator(), out.validTokens(), out.validSequences(), out.denominator(),
                    Math.nextUp(out.loss()));
            }
        };
        final CaseReport scalar = run(f, oneUlpLoss, reference);
        assertThat(scalar.verdict()).as("a reduced scalar may be 1 ulp off").isEqualTo(Verdict.PASS);
        assertThat(scalar.agreement().get(0).describe()).isEqualTo("1 ulp");
    }

    @Test
    void unknownFunctionIsUnsupportedNotSkipped() throws IOException {
        final Path f = dir.resolve("unknown.safetensors");
        new SafetensorsWriter().metadata(GoldenCase.FUNCTION, "verl.some.future_function")
            .metadata(GoldenCase.GROUP, "future").f32("out.x", SCALAR, 1f).write(f);
        final CaseReport r = run(f, reference);
        assertThat(r.verdict()).isEqualTo(Verdict.UNSUPPORTED);
        assertThat(r.verdict().isFailure()).isTrue();
        assertThat(r.message()).contains("no handler for function 'verl.some.future_function' (group 'future')");
    }

    @Test
    void expectErrorPassesOnlyWhenTheEngineRejects() throws IOException {
        final Path rejected = dir.resolve("err.safetensors");
        new SafetensorsWriter().metadata(GoldenCase.FUNCTION, PolicyLossHandler.FUNCTION)
            .metadata(GoldenCase.PARAMS, "{\"clip_ratio_c\": 0.5, \"expect_error\": \"AssertionError: clip_ratio_c\"}")
            .f32("in.old_log_prob", new long[] {1, 1}, 0f).f32("in.log_prob", new long[] {1, 1}, 0f)
            .f32("in.advantages", new long[] {1, 1}, 1f).u8("in.response_mask", new long[] {1, 1}, (byte) 1)
            .write(rejected);
        final CaseReport r = run(rejected, reference);
        assertThat(r.verdict()).isEqualTo(Verdict.PASS);
        assertThat(r.runs().get(0).tensors().get(0).detail()).contains("rejected as verl did").contains("clip_ratio_c");

        final Path accepted = dir.resolve("err2.safetensors");
        new SafetensorsWriter().metadata(GoldenCase.FUNCTION, AggLossHandler.FUNCTION)
            .metadata(GoldenCase.PARAMS, "{\"loss_agg_mode\": \"token-mean\", \"expect_error\": \"ValueError: x\"}")
            .f32("in.loss_mat", BT, LOSS_MAT).u8("in.loss_mask", BT, MASK).write(accepted);
        final CaseReport a = run(accepted, reference);
        assertThat(a.verdict()).isEqualTo(Verdict.FAIL);
        assertThat(a.runs().get(0).tensors().get(0).detail()).contains("the engine accepted the inputs");
    }

    @Test
    void outputsTheHandlerDoesNotComputeFail() throws IOException {
        final Path f = dir.resolve("extra.safetensors");
        new SafetensorsWriter().metadata(GoldenCase.FUNCTION, AggLossHandler.FUNCTION)
            .metadata(GoldenCase.PARAMS, "{\"loss_agg_mode\": \"token-mean\"}")
            .f32("in.loss_mat", BT, LOSS_MAT).u8("in.loss_mask", BT, MASK)
            .f32("out.loss", SCALAR, TOKEN_MEAN_LOSS).f32("out.something_new", SCALAR, 1f).write(f);
        final CaseReport r = run(f, reference);
        assertThat(r.verdict()).isEqualTo(Verdict.FAIL);
        assertThat(tensor(r, 0, "out.something_new").detail()).contains("handler computed none");
        assertThat(tensor(r, 0, "out.loss").verdict()).isEqualTo(Verdict.PASS);
    }

    @Test
    void keysThatAreNotLossKeysAreReportedAndFailOnlyWhenStrict() throws IOException {
        final Path f = aggCase("param", "{\"loss_agg_mode\": \"token-mean\", \"los_agg_mode\": \"x\"}", LOSS_MAT,
            MASK, TOKEN_MEAN_LOSS, TOKEN_MEAN_GRAD);
        final CaseReport r = run(f, reference);
        assertThat(r.verdict()).isEqualTo(Verdict.PASS);
        assertThat(r.message()).contains("params key 'los_agg_mode' (nearest loss key: 'loss_agg_mode')");
        final CaseReport strict = new GoldenRunner(CaseHandlers.defaults(), List.of(reference), true).run(f);
        assertThat(strict.verdict()).isEqualTo(Verdict.FAIL);
        assertThat(strict.message()).startsWith("--strict: ").contains("los_agg_mode");

        final Path meta = dir.resolve("meta.safetensors");
        new SafetensorsWriter().metadata(GoldenCase.FUNCTION, AggLossHandler.FUNCTION)
            .metadata(GoldenCase.PARAMS, "{\"loss_agg_mode\": \"token-mean\"}").metadata("note", "from a trainer")
            .metadata("groupp", "x")
            .f32("in.loss_mat", BT, LOSS_MAT).u8("in.loss_mask", BT, MASK)
            .f32("out.loss", SCALAR, TOKEN_MEAN_LOSS).f32("out.grad_loss_mat", BT, TOKEN_MEAN_GRAD).write(meta);
        final CaseReport m = run(meta, reference);
        assertThat(m.verdict()).isEqualTo(Verdict.PASS);
        assertThat(m.message()).doesNotContain("'note'").contains("metadata key 'groupp' (nearest known key: "
            + "'group')");
    }

    @Test
    void badShapesFailWithTheirName() throws IOException {

        final Path shape = dir.resolve("shape.safetensors");
        new SafetensorsWriter().metadata(GoldenCase.FUNCTION, AggLossHandler.FUNCTION)
            .f32("in.loss_mat", new long[] {3, 2}, LOSS_MAT).u8("in.loss_mask", BT, MASK)
            .f32("out.loss", SCALAR, 1f).write(shape);
        final CaseReport s = run(shape, reference);
        assertThat(s.verdict()).isEqualTo(Verdict.FAIL);
        assertThat(s.runs().get(0).tensors().get(0).detail()).contains("in.loss_mat").contains("[3, 2]");
    }

    @Test
    void unreadableFilesFail() throws IOException {
        final Path f = dir.resolve("broken.safetensors");
        Files.write(f, new byte[] {2, 0, 0, 0, 0, 0, 0, 0, '{', 'x'});
        final CaseReport r = run(f, reference);
        assertThat(r.verdict()).isEqualTo(Verdict.FAIL);
        assertThat(r.message()).startsWith("cannot read the case: ").contains("not valid JSON");
    }

    @Test
    void vanillaHandlerAppliesRolloutWeightsAndGlobalBatchInfo() throws IOException {
        // ratio = 1 (on-policy), A = 1, weights 0.5: each token loss -0.5; token-mean over 2 valid tokens with
        // global_batch_info {batch_num_tokens: 4, dp_size: 2}: (-1 / 4) * 2 = -0.5. At ratio == 1 both branches of
        // maximum tie and the clamp passes, so d loss / d log_prob = -A * 1 * w * dp / bnt = -0.25 per token.
        final long[] bt = {1, 2};
        final Path f = dir.resolve("weights.safetensors");
        new SafetensorsWriter().metadata(GoldenCase.FUNCTION, PolicyLossHandler.FUNCTION)
            .metadata(GoldenCase.PARAMS, "{\"loss_agg_mode\": \"token-mean\", \"clip_ratio\": 0.2, "
                + "\"clip_ratio_low\": null, \"clip_ratio_high\": null, \"clip_ratio_c\": 3.0, "
                + "\"global_batch_info\": {\"batch_num_tokens\": 4, \"dp_size\": 2}, \"scenario\": \"hand\"}")
            .f32("in.old_log_prob", bt, -1f, -2f).f32("in.log_prob", bt, -1f, -2f)
            .f32("in.advantages", bt, 1f, 1f).u8("in.response_mask", bt, (byte) 1, (byte) 1)
            .f32("in.rollout_is_weights", bt, 0.5f, 0.5f)
            .f32("out.pg_loss", SCALAR, -0.5f).f32("out.pg_clipfrac", SCALAR, 0f).f32("out.ppo_kl", SCALAR, 0f)
            .f32("out.pg_clipfrac_lower", SCALAR, 0f).f32("out.grad_log_prob", bt, -0.25f, -0.25f)
            .write(f);
        final CaseReport r = run(f, reference);
        assertThat(r.verdict()).as(r.toString()).isEqualTo(Verdict.PASS);
    }

    private static final float LN2 = (float) Math.log(2);
    private static final float LN3 = (float) Math.log(3);
    private static final float THIRD_F = (float) (1.0 / 3.0);
    private static final long[] ROWS = {2};
    private static final long[] NV = {2, 3};

    /**
     * A hand-worked vocabulary-pass case: row 0 = [-inf, 0, 0] with label 1 (p = [0, 1/2, 1/2]), row 1 = [0, 0, 0]
     * with label 0 (p = 1/3 each); temperature 1, w1 = 1, w2 = 0. log_prob = [-ln 2, -ln 3], entropy =
     * [ln 2, ln 3], d log_prob / d x = onehot - p, sum p^2 = [1/2, 1/3]. verl's values for row 0's entropy and
     * gradient are given by the caller (NaN as verl computes them, or something else to test the rules).
     */
    private Path logitsCase(final String name, final float entropy0, final float logProb0, final float grad0,
                            final float entropy1) throws IOException {
        final Path f = dir.resolve(name + ".safetensors");
        final float[] lp = {-LN2, -LN3};
        new SafetensorsWriter()
            .metadata(GoldenCase.FUNCTION, LogitsHandler.FUNCTION)
            .metadata(GoldenCase.PARAMS, "{\"temperature\": 1.0, \"N\": 2, \"V\": 3, \"kind\": \"neginf\"}")
            .f32("in.logits", NV, Float.NEGATIVE_INFINITY, 0f, 0f, 0f, 0f, 0f)
            .i64("in.labels", ROWS, 1L, 0L)
            .f32("in.w1", ROWS, 1f, 1f).f32("in.w2", ROWS, 0f, 0f)
            .f32("out.entropy", ROWS, entropy0, entropy1)
            .f32("out.logprob_naive", ROWS, logProb0, lp[1]).f32("out.logprob_v2", ROWS, lp)
            .f32("out.logprob_dispatch", ROWS, lp).f32("out.entropy_chunking", ROWS, entropy0, entropy1)
            .f32("out.sum_pi_squared", ROWS, 0.5f, THIRD_F)
            .f32("out.grad_logits_naive", NV, grad0, grad0, grad0, 2 * THIRD_F, -THIRD_F, -THIRD_F)
            .f32("out.grad_logits_v2", NV, grad0, grad0, grad0, 2 * THIRD_F, -THIRD_F, -THIRD_F)
            .write(f);
        return f;
    }

    @Test
    void negInfLogitExcusesOnlyVerlNanEntropyAndGradientOfThatRow() throws IOException {
        final CaseReport r = run(logitsCase("neginf", Float.NaN, -LN2, Float.NaN, LN3), new ReferenceEngine(),
            reference);
        assertThat(r.verdict()).as(r.toString()).isEqualTo(Verdict.DEVIATION);
        for (final String name : List.of("out.entropy", "out.entropy_chunking")) {
            assertThat(tensor(r, 0, name).deviations()).containsExactly(Deviation.NEG_INF_LOGIT);
            assertThat(tensor(r, 0, name).detail()).contains("1/2 elements");
        }
        for (final String name : List.of("out.grad_logits_naive", "out.grad_logits_v2")) {
            assertThat(tensor(r, 0, name).deviations()).containsExactly(Deviation.NEG_INF_LOGIT);
            assertThat(tensor(r, 0, name).detail()).contains("3/6 elements");
        }
        for (final String name : List.of("out.logprob_naive", "out.logprob_v2", "out.logprob_dispatch")) {
            assertThat(tensor(r, 0, name).verdict()).isEqualTo(Verdict.PASS);
        }
        // The engine's own sum of squared probabilities (p = [0, 1/2, 1/2] and 1/3 each), not a harness value.
        assertThat(tensor(r, 0, "out.sum_pi_squared").verdict()).isEqualTo(Verdict.PASS);
        assertThat(tensor(r, 0, "out.sum_pi_squared").detail()).doesNotStartWith(GoldenRunner.HARNESS_LABEL);
        assertThat(r.enginesAgree()).isTrue();
    }

    @Test
    void negInfLogitDoesNotExcuseANanLogProbOrANanInARowWithoutMinusInfinity() throws IOException {
        // verl's log-prob is finite in a -inf row: a NaN there is no documented deviation.
        final CaseReport lp = run(logitsCase("neginf-lp", Float.NaN, Float.NaN, Float.NaN, LN3), reference);
        assertThat(lp.verdict()).isEqualTo(Verdict.FAIL);
        assertThat(tensor(lp, 0, "out.logprob_naive").detail()).contains("no documented reason applies");
        // Row 1 holds no -inf: a NaN entropy there fails.
        final CaseReport row = run(logitsCase("neginf-row", Float.NaN, -LN2, Float.NaN, Float.NaN), reference);
        assertThat(row.verdict()).isEqualTo(Verdict.FAIL);
        assertThat(tensor(row, 0, "out.entropy").detail()).contains("first at [1]")
            .contains("no documented reason applies");
        // A finite verl value in the -inf row is held to the tolerance as usual (ln 2 is the right entropy).
        // verl's gradient [0, 0, 0] differs from onehot - p = [0, 1/2, -1/2] by far more than float32 rounding
        // (beyond GoldenRunner.ESTIMATE_SLACK times its budget): the engine agrees with the double-precision value,
        // but TORCH_LESS_ACCURATE does not excuse it.
        final CaseReport finite = run(logitsCase("neginf-finite", LN2, -LN2, 0f, LN3), reference);
        assertThat(finite.verdict()).isEqualTo(Verdict.FAIL);
        assertThat(tensor(finite, 0, "out.grad_logits_v2").detail()).contains("2/6 elements wrong")
            .contains("double-precision value 0.5");
    }

    @Test
    void negInfLogitContractIsAFiniteEngineValue() throws IOException {
        final Engine nanEntropy = new Wrong(reference) {
            @Override
            public void logProbs(final Logits logits, final OffHeapArray labels, final double temperature,
                                 final OffHeapArray rowMask, final OffHeapArray logProbOut,
                                 final OffHeapArray entropyOut, final OffHeapArray sumPiSquaredOut,
                                 final SoftmaxStats statsOut, final OffHeapArray gradLogits) {
                super.logProbs(logits, labels, temperature, rowMask, logProbOut, entropyOut, sumPiSquaredOut,
                    statsOut, gradLogits);
                entropyOut.setFloat(0, Float.NaN);
            }
        };
        final CaseReport r = run(logitsCase("neginf-contract", Float.NaN, -LN2, Float.NaN, LN3), nanEntropy);
        assertThat(r.verdict()).isEqualTo(Verdict.FAIL);
        assertThat(tensor(r, 0, "out.entropy").detail()).contains("breaks the contract")
            .contains(Deviation.NEG_INF_LOGIT.contract());
    }

    @Test
    void torchLessAccurateNeedsTheEngineCloserToTheDoubleValueAndWithinTolerance() {
        final CaseFacts facts = new CaseFacts(1, false);
        final double exact = 1.0;
        // verl 1 + 1e-4 is outside relative 1e-5; the engine at 1 + 1e-6 is closer to the double value.
        final CaseOutputs closer = new CaseOutputs(facts).refereed("out.h", new float[] {1.000001f},
            new CaseOutputs.Referee(new double[] {exact}, new double[] {1e-3}), Tolerance.VALUE, null, Deviation.TORCH_LESS_ACCURATE);
        final TensorReport ok = GoldenRunner.compare(new double[] {1.0001}, closer.get("out.h"), facts);
        assertThat(ok.verdict()).isEqualTo(Verdict.DEVIATION);
        assertThat(ok.deviations()).containsExactly(Deviation.TORCH_LESS_ACCURATE);
        // The engine farther from the double value than verl: FAIL, with the double value in the detail.
        final CaseOutputs farther = new CaseOutputs(facts).refereed("out.h", new float[] {1.0002f},
            new CaseOutputs.Referee(new double[] {exact}, new double[] {1e-3}), Tolerance.VALUE, null, Deviation.TORCH_LESS_ACCURATE);
        final TensorReport bad = GoldenRunner.compare(new double[] {1.0001}, farther.get("out.h"), facts);
        assertThat(bad.verdict()).isEqualTo(Verdict.FAIL);
        assertThat(bad.detail()).contains("double-precision value 1.0");
        // Closer than verl but itself outside tolerance of the double value: FAIL.
        final CaseOutputs loose = new CaseOutputs(facts).refereed("out.h", new float[] {1.00005f},
            new CaseOutputs.Referee(new double[] {exact}, new double[] {1e-3}), Tolerance.VALUE, null, Deviation.TORCH_LESS_ACCURATE);
        assertThat(GoldenRunner.compare(new double[] {1.0001}, loose.get("out.h"), facts).verdict())
            .isEqualTo(Verdict.FAIL);
        // Not allowed on the output: FAIL even with a double value.
        final CaseOutputs strict = new CaseOutputs(facts).refereed("out.h", new float[] {1.000001f},
            new CaseOutputs.Referee(new double[] {exact}, new double[] {1e-3}), Tolerance.VALUE, null);
        assertThat(GoldenRunner.compare(new double[] {1.0001}, strict.get("out.h"), facts).verdict())
            .isEqualTo(Verdict.FAIL);
        // verl farther than the float32 budget (1e-3 here) from the double value: a semantic difference, FAIL.
        assertThat(GoldenRunner.compare(new double[] {1.01}, closer.get("out.h"), facts).verdict())
            .isEqualTo(Verdict.FAIL);
        // Never for a non-finite verl value.
        assertThat(GoldenRunner.compare(new double[] {Double.NaN}, closer.get("out.h"), facts).verdict())
            .isEqualTo(Verdict.FAIL);
    }

    @Test
    void toleranceWithAnAbsoluteFloor() {
        final Tolerance t = Tolerance.VALUE.orAbsolute(1e-6);
        assertThat(t.accepts(9e-7, 1e-7)).isTrue();
        assertThat(t.accepts(2e-6, 1e-7)).isFalse();
        assertThat(t.accepts(5e-6, 1.0)).isTrue();
        assertThat(Tolerance.VALUE.accepts(9e-7, 1e-7)).isFalse();
        assertThat(t).hasToString("relative 1e-5 or absolute 1e-6");
        org.assertj.core.api.Assertions.assertThatThrownBy(() -> Tolerance.GRADIENT.orAbsolute(1e-6))
            .isInstanceOf(IllegalArgumentException.class).hasMessageContaining("relative");
    }

    @Test
    void klPenaltyHandlerScalesTheGradientToTheMeanOverAllEntries() throws IOException {
        // k2 = 0.5 (lp - ref)^2 at lp - ref = [1, -2]: kld [0.5, 2]; d kld.mean() / d lp = (lp - ref) / 2.
        final long[] bt = {1, 2};
        final Path f = dir.resolve("kl.safetensors");
        new SafetensorsWriter().metadata(GoldenCase.FUNCTION, KlPenaltyHandler.FUNCTION)
            .metadata(GoldenCase.PARAMS, "{\"kl_penalty\": \"k2\", \"grad_of\": \"kld.mean() w.r.t. logprob\"}")
            .f32("in.logprob", bt, -1f, -3f).f32("in.ref_logprob", bt, -2f, -1f)
            .f32("out.kld", bt, 0.5f, 2f).f32("out.grad_logprob", bt, 0.5f, -1f).write(f);
        final CaseReport r = run(f, new ReferenceEngine(), reference);
        assertThat(r.verdict()).as(r.toString()).isEqualTo(Verdict.PASS);
    }

    /** An engine that delegates to another; tests override a method to make it wrong on purpose. */
    private static class Wrong implements Engine {
        private final Engine delegate;

        Wrong(final Engine delegate) {
            this.delegate = delegate;
        }

        @Override
        public String name() {
            return "wrong";
        }

        @Override
        public void policyLoss(final LossSpec spec, final TokenBatch batch, final OffHeapArray grad,
                               final PolicyLossResult out) {
            delegate.policyLoss(spec, batch, grad, out);
        }

        @Override
        public void aggLoss(final LossSpec spec, final TokenBatch batch, final OffHeapArray lossMat,
                            final OffHeapArray gradOut, final AggResult out) {
            delegate.aggLoss(spec, batch, lossMat, gradOut, out);
        }

        @Override
        public void rolloutCorrection(final io.rlvec.RolloutCorrectionSpec spec, final TokenBatch batch,
                                      final OffHeapArray isWeightsOut, final OffHeapArray maskOut,
                                      final io.rlvec.RolloutCorrectionResult out) {
            delegate.rolloutCorrection(spec, batch, isWeightsOut, maskOut, out);
        }

        @Override
        public void valueLoss(final LossSpec spec, final TokenBatch batch, final OffHeapArray gradVpreds,
                              final io.rlvec.ValueLossResult out) {
            delegate.valueLoss(spec, batch, gradVpreds, out);
        }

        @Override
        public void logProbs(final Logits logits, final OffHeapArray labels, final double temperature,
                             final OffHeapArray rowMask, final OffHeapArray logProbOut, final OffHeapArray entropyOut,
                             final OffHeapArray sumPiSquaredOut, final SoftmaxStats statsOut,
                             final OffHeapArray gradLogits) {
            delegate.logProbs(logits, labels, temperature, rowMask, logProbOut, entropyOut, sumPiSquaredOut, statsOut,
                gradLogits);
        }

        @Override
        public void logProbsBackward(final Logits logits, final OffHeapArray labels, final double temperature,
                                     final OffHeapArray rowMask, final OffHeapArray gradLogProb,
                                     final OffHeapArray gradEntropy, final OffHeapArray gradLogits,
                                     final SoftmaxStats stats) {
            delegate.logProbsBackward(logits, labels, temperature, rowMask, gradLogProb, gradEntropy, gradLogits,
                stats);
        }

        @Override
        public void klPenalty(final KlPenalty kl, final TokenBatch batch, final OffHeapArray kldOut,
                              final OffHeapArray gradOut) {
            delegate.klPenalty(kl, batch, kldOut, gradOut);
        }

        @Override
        public void advantages(final io.rlvec.AdvantageSpec spec, final TokenBatch batch,
                               final io.rlvec.AdvantageInputs inputs, final OffHeapArray advantages,
                               final OffHeapArray returns) {
            delegate.advantages(spec, batch, inputs, advantages, returns);
        }

        @Override
        public double rewardKlPenalty(final KlPenalty kl, final double beta, final TokenBatch batch,
                                      final OffHeapArray kldOut, final OffHeapArray rewardsOut) {
            return delegate.rewardKlPenalty(kl, beta, batch, kldOut, rewardsOut);
        }

        @Override
        public void klFull(final Logits policy, final Logits ref, final double temperature, final OffHeapArray rowMask,
                           final OffHeapArray kldOut, final OffHeapArray upstream, final OffHeapArray gradLogits) {
            delegate.klFull(policy, ref, temperature, rowMask, kldOut, upstream, gradLogits);
        }

        @Override
        public void actorLoss(final LossSpec spec, final TokenBatch batch, final OffHeapArray gradLogProb,
                              final ActorLossResult out) {
            delegate.actorLoss(spec, batch, gradLogProb, out);
        }

        @Override
        public void actorLoss(final LossSpec spec, final TokenBatch batch, final Logits logits,
                              final OffHeapArray labels, final Logits refLogits, final OffHeapArray gradLogProb,
                              final OffHeapArray gradLogits, final ActorLossResult out) {
            delegate.actorLoss(spec, batch, logits, labels, refLogits, gradLogProb, gradLogits, out);
        }
    }
}
