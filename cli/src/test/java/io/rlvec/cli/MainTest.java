package io.rlvec.cli;

import static org.assertj.core.api.Assertions.assertThat;

import java.io.IOException;
import java.io.PrintWriter;
import java.io.StringWriter;
import java.nio.file.Files;
import java.nio.file.Path;

import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;

import io.rlvec.cli.golden.AggLossHandler;
import io.rlvec.cli.golden.GoldenCase;
import io.rlvec.cli.io.SafetensorsWriter;
import picocli.CommandLine;

/** The command line's exit codes and output, through picocli's {@code execute} with captured streams. */
class MainTest {

    @TempDir
    Path dir;

    /** Output of one execution. */
    private record Run(int code, String out, String err) {
    }

    private static Run execute(final String... args) {
        final CommandLine cl = Main.commandLine();
        final StringWriter out = new StringWriter();
        final StringWriter err = new StringWriter();
        cl.setOut(new PrintWriter(out, true));
        cl.setErr(new PrintWriter(err, true));
        final int code = cl.execute(args);
        return new Run(code, out.toString(), err.toString());
    }

    private static Path golden(final String name) {
        try {
            return Path.of(MainTest.class.getResource("/golden/" + name).toURI());
        } catch (final java.net.URISyntaxException e) {
            throw new IllegalStateException(e);
        }
    }

    /** Tensor checks of the test resources' golden cases held to a fixed tolerance, at most (none). */
    private static final int TOLERANCE_JUDGED_CEILING = 0;
    /** Tensor checks of the same cases judged by derived error bounds, at least. */
    private static final int BOUND_JUDGED_FLOOR = 2284;

    @Test
    void parityOnTheWholeGoldenDirectoryPasses() throws IOException {
        final Path json = dir.resolve("report.json");
        final Run r = execute("parity", "--problems-only", "--json", json.toString(),
            golden("agg_loss_b5t9_default_tmean.safetensors").getParent().toString());
        assertThat(r.code()).as(r.out() + r.err()).isZero();
        assertThat(r.out()).contains("summary: 291 case(s) on ").contains(" 0 FAIL, 0 UNSUPPORTED")
            .contains("deviation NO_VALID_TOKEN").contains("deviation MASKED_NONFINITE_SEQ_MEAN")
            .contains("deviation NEG_INF_LOGIT")
            .contains("291 of 291 case(s) within the contract");
        final JsonNode report = new ObjectMapper().readTree(json.toFile());
        assertThat(report.path("summary").path("failed").asBoolean(true)).isFalse();
        assertThat(report.path("cases")).hasSize(291);
        assertThat(report.path("deviationReasons").path("NO_VALID_TOKEN").path("reason").asText()).contains("0 by 0");
        // A ratchet on the verdicts' judges: every finite check of these cases is judged by derived bounds; an output
        // moved back to a fixed tolerance fails here.
        final JsonNode judges = report.path("summary").path("judges");
        assertThat(judges.path("TOLERANCE").asInt(-1)).isBetween(0, TOLERANCE_JUDGED_CEILING);
        assertThat(judges.path("BOUND").asInt()).isGreaterThanOrEqualTo(BOUND_JUDGED_FLOOR);
        assertThat(r.out()).contains("judges: 2284 tensor check(s) by derived error bounds, 0 by a fixed tolerance")
            .doesNotContain("fixed tolerance still judges");
    }

    @Test
    void parityPrintsOneRowPerTensorAndEngine() {
        final Run r = execute("parity", golden("pl_vanilla_b1t1_pos_clip0.2_c3_tmean.safetensors").toString());
        assertThat(r.code()).isZero();
        assertThat(r.out()).contains("max_abs_err").contains("max_ulp").contains("vs_reference")
            .contains("out.grad_log_prob").contains("bit-identical");
        assertThat(r.out().lines().filter(l -> l.startsWith("pl_vanilla_b1t1_pos_clip0.2_c3_tmean "))).hasSize(10);

        final Run ref = execute("parity", "--engine", "reference",
            golden("pl_vanilla_b1t1_pos_clip0.2_c3_tmean.safetensors").toString());
        assertThat(ref.code()).isZero();
        assertThat(ref.out()).contains("on reference:").doesNotContain("vs_reference");
    }

    @Test
    void unknownFunctionMakesParityFail() throws IOException {
        final Path f = dir.resolve("future.safetensors");
        new SafetensorsWriter().metadata(GoldenCase.FUNCTION, "verl.future").f32("out.x", new long[] {}, 1f).write(f);
        final Run r = execute("parity", f.toString(),
            golden("agg_loss_b5t9_default_tmean.safetensors").toString());
        assertThat(r.code()).isEqualTo(Main.FAILURE);
        assertThat(r.out()).contains("UNSUPPORTED").contains("no handler for function 'verl.future'")
            .contains("1 PASS, 0 DEVIATION, 0 FAIL, 1 UNSUPPORTED");
    }

    @Test
    void aWrongGoldenValueMakesParityFail() throws IOException {
        final Path f = dir.resolve("wrong.safetensors");
        final long[] bt = {1, 2};
        new SafetensorsWriter().metadata(GoldenCase.FUNCTION, AggLossHandler.FUNCTION)
            .metadata(GoldenCase.PARAMS, "{\"loss_agg_mode\": \"token-mean\"}")
            .f32("in.loss_mat", bt, 1f, 2f).u8("in.loss_mask", bt, (byte) 1, (byte) 1)
            .f32("out.loss", new long[] {}, 1.6f).write(f);
        final Run r = execute("parity", "-q", f.toString());
        assertThat(r.code()).isEqualTo(Main.FAILURE);
        assertThat(r.out()).contains("FAIL").contains("verl 1.60000002384").contains("engine 1.5");
    }

    @Test
    void usageErrorsExitWithTwo() {
        assertThat(execute().code()).isEqualTo(Main.USAGE);
        assertThat(execute("bogus").code()).isEqualTo(Main.USAGE);
        final Run noFiles = execute("parity");
        assertThat(noFiles.code()).isEqualTo(Main.USAGE);
        assertThat(noFiles.err()).contains("Missing required parameter: 'FILE|DIR'");
        final Run missing = execute("parity", dir.resolve("nope.safetensors").toString());
        assertThat(missing.code()).isEqualTo(Main.USAGE);
        assertThat(missing.err()).contains("no such file or directory");
        assertThat(execute("parity", "--engine", "gpu", dir.toString()).code()).isEqualTo(Main.USAGE);
        final Run empty = execute("parity", dir.toString());
        assertThat(empty.code()).isEqualTo(Main.USAGE);
        assertThat(empty.err()).contains("no .safetensors files");
        final Run mode = execute("demo", "--mode", "mean");
        assertThat(mode.code()).isEqualTo(Main.USAGE);
        assertThat(mode.err()).contains("loss_agg_mode must be one of token-mean");
        assertThat(execute("demo", "--prompts", "0").code()).isEqualTo(Main.USAGE);
        assertThat(execute("demo", "--clip-ratio-c", "1.0").code()).isEqualTo(Main.USAGE);
    }

    @Test
    void usageErrorsPrintOneLinePointingToHelpNotTheUsage() {
        final Run r = execute("parity", "--engine", "gpu", dir.toString());
        assertThat(r.err().strip().lines()).hasSize(2);
        assertThat(r.err()).startsWith("rlvec parity: error: ").contains("Try 'rlvec parity --help'")
            .doesNotContain("Usage:");
        assertThat(execute("bogus").err()).contains("rlvec: error: ").contains("Try 'rlvec --help'")
            .doesNotContain("Usage:");
    }

    @Test
    void unwritableJsonReportFailsBeforeRunningWithItsOwnExitCode() throws IOException {
        final Path noDir = dir.resolve("missing-dir").resolve("report.json");
        final Run r = execute("parity", "--json", noDir.toString(),
            golden("agg_loss_b5t9_default_tmean.safetensors").toString());
        assertThat(r.code()).isEqualTo(Main.OUTPUT).isNotEqualTo(Main.FAILURE).isNotEqualTo(Main.USAGE);
        assertThat(r.err()).contains("--json").contains("cannot be written");
        assertThat(r.out()).as("nothing ran").doesNotContain("summary:");
        final Run isDir = execute("parity", "--json", dir.toString(),
            golden("agg_loss_b5t9_default_tmean.safetensors").toString());
        assertThat(isDir.code()).isEqualTo(Main.OUTPUT);
        assertThat(isDir.err()).contains("is a directory");
    }

    @Test
    void junitAndMarkdownReports() throws Exception {
        final Path cases = dir.resolve("cases");
        Files.createDirectories(cases);
        Files.copy(golden("agg_loss_b5t9_default_tmean.safetensors"), cases.resolve("a.safetensors"));
        Files.copy(golden("agg_loss_b5t9_allmasked_sm-tmean.safetensors"), cases.resolve("b.safetensors"));
        Files.writeString(cases.resolve("c.safetensors"), "not a case\n");
        final Path xml = dir.resolve("report.xml");
        final Path md = dir.resolve("summary.md");
        final Run r = execute("parity", "--junit", xml.toString(), "--markdown", md.toString(), cases.toString());
        assertThat(r.code()).as(r.out() + r.err()).isEqualTo(Main.FAILURE);
        final org.w3c.dom.Document doc = javax.xml.parsers.DocumentBuilderFactory.newInstance().newDocumentBuilder()
            .parse(xml.toFile());
        final org.w3c.dom.NodeList testCases = doc.getElementsByTagName("testcase");
        // a and b: 2 tensors x 2 engines each; c: one case-level test case.
        assertThat(testCases.getLength()).isEqualTo(9);
        assertThat(doc.getElementsByTagName("failure").getLength()).isEqualTo(1);
        final org.w3c.dom.Element suite = (org.w3c.dom.Element) doc.getElementsByTagName("testsuite").item(0);
        assertThat(suite.getAttribute("tests")).isEqualTo("9");
        assertThat(suite.getAttribute("failures")).isEqualTo("1");
        final org.w3c.dom.Element failure = (org.w3c.dom.Element) doc.getElementsByTagName("failure").item(0);
        assertThat(failure.getAttribute("message")).contains("not a safetensors file");
        assertThat(((org.w3c.dom.Element) failure.getParentNode()).getAttribute("classname")).isEqualTo("c");
        final String summary = Files.readString(md);
        assertThat(summary).startsWith("## rlvec parity: FAILED").contains("3 case(s): 1 PASS, 1 DEVIATION, 1 FAIL")
            .contains("| NO_VALID_TOKEN |").contains("| c | - | - | FAIL | cannot read the case");
        assertThat(summary.lines().count()).isLessThan(20);
    }

    @Test
    void strictFailsCasesWithKeysThatAreNotLossKeys() throws IOException {
        final Path f = dir.resolve("noted.safetensors");
        try (io.rlvec.cli.io.Safetensors st = io.rlvec.cli.io.Safetensors.open(
            golden("agg_loss_b5t9_default_tmean.safetensors"))) {
            final SafetensorsWriter w = new SafetensorsWriter();
            st.metadata().forEach(w::metadata);
            w.metadata("params", st.metadata().get("params").replaceFirst("\\{", "{\"storage_dtype\": \"float32\", "));
            for (final String name : st.names()) {
                final io.rlvec.cli.io.TensorInfo t = st.info(name);
                w.raw(name, t.dtype(), t.shape(), st.bytes(name).toArray(java.lang.foreign.ValueLayout.JAVA_BYTE));
            }
            w.write(f);
        }
        final Run lenient = execute("parity", f.toString());
        assertThat(lenient.code()).as(lenient.out()).isZero();
        assertThat(lenient.out()).contains("note: noted: not loss keys: params key 'storage_dtype' (nearest loss key: ");
        final Run strict = execute("parity", "--strict", f.toString());
        assertThat(strict.code()).isEqualTo(Main.FAILURE);
        assertThat(strict.out()).contains("--strict: not loss keys");
    }

    @Test
    void configPrintsVerlKeysAndRefusesUnknownOnes() {
        final Path example = Path.of("..", "examples", "configs", "dapo.yaml");
        final Run r = execute("config", example.toString(), "actor_rollout_ref.actor.clip_ratio_high=0.3");
        assertThat(r.code()).as(r.err()).isZero();
        assertThat(r.out()).contains("actor_rollout_ref.actor.clip_ratio_high: 0.3\n")
            .contains("algorithm.adv_estimator: grpo").contains("# actor loss: ");
        final Run bad = execute("config", example.toString(), "actor_rollout_ref.actor.clip_ratio_hihg=0.3");
        assertThat(bad.code()).isEqualTo(Main.USAGE);
        assertThat(bad.err()).contains("nearest known key: actor_rollout_ref.actor.clip_ratio_high")
            .contains("Try 'rlvec config --help'");
        assertThat(execute("config", "--help").out()).contains("Hydra-style overrides");
    }

    @Test
    void computeRunsTheConfiguredActorLossOnABatchWithVerlsNames() throws IOException {
        final Path batch = dir.resolve("batch.safetensors");
        final long[] bt = {2, 3};
        final float[] lp = {-1f, -2f, -0.5f, -1.5f, -0.25f, -3f};
        new SafetensorsWriter().f32("old_log_probs", bt, lp).f32("log_probs", bt, lp).f32("ref_log_prob", bt, lp)
            .f32("advantages", bt, 1f, 1f, 1f, 1f, 1f, 1f).bool("response_mask", bt, true, true, true, true, true, false)
            .write(batch);
        final Path out = dir.resolve("result.safetensors");
        final Run r = execute("compute", "--config", Path.of("..", "examples", "configs", "grpo.yaml").toString(),
            "--in", batch.toString(), "--out", out.toString(), "actor_rollout_ref.actor.kl_loss_coef=0.01");
        assertThat(r.code()).as(r.err()).isZero();
        // On-policy (ratio 1), advantage 1: every token's loss is -1; token-mean over 5 valid tokens.
        assertThat(r.out()).contains("loss: -1.00000000").contains("actor/pg_loss: ").contains("actor/kl_loss: 0")
            .contains("actor/kl_coef: 0.0100000");
        try (io.rlvec.cli.io.Safetensors st = io.rlvec.cli.io.Safetensors.open(out)) {
            assertThat(st.float32("loss").getFloat(0)).isEqualTo(-1f);
            assertThat(st.float32("grad_log_probs").toFloatArray())
                .containsExactly(-0.2f, -0.2f, -0.2f, -0.2f, -0.2f, 0f);
            assertThat(st.doubles("metrics/actor/pg_loss")[0]).isEqualTo(-1.0);
            assertThat(st.metadata()).containsEntry("verl_release", "2026-08");
        }
        final Run defaults = execute("compute", "--in", batch.toString(), "--out", out.toString(),
            "actor_rollout_ref.actor.use_kl_loss=true");
        assertThat(defaults.code()).as(defaults.err()).isZero();
        final Path noAdv = dir.resolve("noadv.safetensors");
        new SafetensorsWriter().f32("old_log_probs", bt, lp).f32("log_probs", bt, lp)
            .bool("response_mask", bt, true, true, true, true, true, false).write(noAdv);
        final Run bad = execute("compute", "--in", noAdv.toString(), "--out", out.toString());
        assertThat(bad.code()).isEqualTo(Main.USAGE);
        assertThat(bad.err()).contains("has no tensor advantages");
        final Run unwritable = execute("compute", "--in", batch.toString(), "--out",
            dir.resolve("no-dir").resolve("r.safetensors").toString());
        assertThat(unwritable.code()).isEqualTo(Main.OUTPUT);
        assertThat(execute("compute", "--help").out()).contains("old_log_probs").contains("rollout_is_weights");
    }

    @Test
    void computeRunsTheValueLossAndTheAdvantageEstimators() throws IOException {
        final long[] bt = {2, 3};
        final Path critic = dir.resolve("critic.safetensors");
        new SafetensorsWriter().f32("vpreds", bt, 0f, 0f, 0f, 0f, 0f, 0f).f32("returns", bt, 1f, 1f, 1f, 1f, 1f, 1f)
            .f32("values", bt, 0f, 0f, 0f, 0f, 0f, 0f).bool("response_mask", bt, true, true, true, true, true, false)
            .write(critic);
        final Path out = dir.resolve("critic-out.safetensors");
        final Run v = execute("compute", "--term", "value", "--in", critic.toString(), "--out", out.toString());
        assertThat(v.code()).as(v.err()).isZero();
        // 0.5 * token-mean of (0 - 1)^2 over 5 valid tokens; d/d vpreds = 2 (v - r) * 0.5 / 5.
        assertThat(v.out()).contains("critic/vf_loss: 0.500000000").contains("critic/vf_clipfrac: 0");
        try (io.rlvec.cli.io.Safetensors st = io.rlvec.cli.io.Safetensors.open(out)) {
            assertThat(st.float32("vf_loss").getFloat(0)).isEqualTo(0.5f);
            assertThat(st.float32("grad_vpreds").toFloatArray()).containsExactly(-0.2f, -0.2f, -0.2f, -0.2f, -0.2f, 0f);
        }
        final Path rewards = dir.resolve("rewards.safetensors");
        new SafetensorsWriter().f32("token_level_rewards", bt, 0f, 0f, 1f, 0f, 0f, 0f)
            .bool("response_mask", bt, true, true, true, true, true, true).i64("index", new long[] {2}, 7L, 7L)
            .write(rewards);
        final Path advOut = dir.resolve("adv-out.safetensors");
        final Run a = execute("compute", "--term", "advantages", "--in", rewards.toString(), "--out",
            advOut.toString(), "algorithm.adv_estimator=grpo");
        assertThat(a.code()).as(a.err()).isZero();
        try (io.rlvec.cli.io.Safetensors st = io.rlvec.cli.io.Safetensors.open(advOut)) {
            // Scores 1 and 0 in one group: (s - 0.5) / (std 0.7071 + 1e-6).
            final float[] adv = st.float32("advantages").toFloatArray();
            for (int t = 0; t < 6; t++) {
                assertThat(adv[t]).isCloseTo(t < 3 ? 0.70710576f : -0.70710576f,
                    org.assertj.core.data.Offset.offset(1e-6f));
            }
        }
        final Run noIndex = execute("compute", "--term", "advantages", "--in", critic.toString(), "--out",
            advOut.toString(), "algorithm.adv_estimator=grpo");
        assertThat(noIndex.code()).isEqualTo(Main.USAGE);
        assertThat(noIndex.err()).contains("token_level_rewards");
        assertThat(execute("compute", "--term", "nope", "--in", critic.toString(), "--out", out.toString()).code())
            .isEqualTo(Main.USAGE);
    }

    @Test
    void filesThatAreNotCasesSayWhatIsWrong() throws IOException {
        final Path text = dir.resolve("notes.safetensors");
        Files.writeString(text, "hello world, this is a text file\n");
        final Run r = execute("parity", text.toString());
        assertThat(r.code()).isEqualTo(Main.FAILURE);
        assertThat(r.out()).contains("not a safetensors file").doesNotContain("header length 7");
        final Path noFunction = dir.resolve("nofn.safetensors");
        new SafetensorsWriter().f32("x", new long[] {1}, 1f).write(noFunction);
        final Run nf = execute("parity", noFunction.toString());
        assertThat(nf.code()).isEqualTo(Main.FAILURE);
        assertThat(nf.out()).contains("no `function` in the metadata");
    }

    @Test
    void helpAndVersionExitWithZero() {
        final Run help = execute("--help");
        assertThat(help.code()).isZero();
        assertThat(help.out()).contains("demo").contains("parity").contains("Exit codes");
        assertThat(execute("--version").out()).startsWith("rlvec ");
        assertThat(execute("demo", "--help").out()).contains("--max-len").contains("--threads");
    }

    @Test
    void demoRunsOnASmallBatchAndReportsEverything() {
        final Run r = execute("demo", "--policy-loss", "--prompts", "4", "--responses", "4", "--max-len", "64",
            "--reps", "2", "--reference-reps", "1", "--warmup-calls", "10", "--seed", "7");
        assertThat(r.code()).as(r.err()).isZero();
        assertThat(r.out()).contains("16 sequences = 4 prompts x 4 responses, packed").contains("pg_loss")
            .contains("actor/pg_clipfrac").contains("actor/ppo_kl").contains("actor/pg_clipfrac_lower")
            .contains("actor/valid_tokens").contains("advantage sign split").contains("within the contract")
            .contains("0 of ").contains("speed ratio").contains("rough wall-clock").contains("JMH");
        final Run again = execute("demo", "--policy-loss", "--prompts", "4", "--responses", "4", "--max-len", "64",
            "--reps", "2", "--reference-reps", "1", "--warmup-calls", "10", "--seed", "7");
        assertThat(pgLossLine(again.out())).as("seeded: same batch, same loss").isEqualTo(pgLossLine(r.out()));
    }

    @Test
    void demoSumNormOnAPackedBatchUsesMaxLenAsTheScale() {
        final Run r = execute("demo", "--policy-loss", "--prompts", "2", "--responses", "3", "--max-len", "32",
            "--reps", "1", "--reference-reps", "1", "--warmup-calls", "0", "--mode", "seq-mean-token-sum-norm",
            "--threads", "2");
        assertThat(r.code()).as(r.err()).isZero();
        assertThat(r.out()).contains("loss_agg_mode=seq-mean-token-sum-norm").contains("loss_scale_factor=32.0");
    }

    @Test
    void demoRunsAGrpoStepByDefault() {
        final Run r = execute("demo", "--prompts", "3", "--responses", "4", "--max-len", "40", "--vocab", "300",
            "--reps", "2", "--seed", "5");
        assertThat(r.code()).as(r.err()).isZero();
        assertThat(r.out()).contains("one GRPO step").contains("12 responses = 3 prompts x 4")
            .contains("adv_estimator=grpo").contains("actor/pg_loss").contains("actor/pg_clipfrac")
            .contains("advantages     0 of").contains("within the contract").contains("time       engine");
        assertThat(execute("demo", "--vocab", "1").code()).isEqualTo(Main.USAGE);
        assertThat(execute("demo", "--max-len", "100000", "--vocab", "100000").err()).contains("over the demo's");
    }

    private static String pgLossLine(final String out) {
        return out.lines().filter(l -> l.startsWith("pg_loss")).findFirst().orElseThrow();
    }
}
