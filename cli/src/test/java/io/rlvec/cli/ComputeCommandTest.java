package io.rlvec.cli;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.within;

import java.io.IOException;
import java.io.PrintWriter;
import java.io.StringWriter;
import java.nio.file.Path;

import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import io.rlvec.cli.io.Safetensors;
import io.rlvec.cli.io.SafetensorsWriter;
import picocli.CommandLine;

/** {@code rlvec compute} on small batches written here: from logits, with rollout correction, gdpo. */
class ComputeCommandTest {

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

    private static final long[] BT = {2, 2};
    private static final long[] BTV = {2, 2, 3};
    private static final float[] LOGITS = {0.5f, -1f, 2f, 1f, 1f, 0f, -2f, 0.25f, 3f, 0f, 0f, 0f};
    private static final long[] RESPONSES = {2, 0, 1, -100};
    private static final boolean[] MASK = {true, true, true, false};
    private static final float[] OLD = {-0.3f, -1.2f, -2.5f, 0f};
    private static final float[] ADV = {1f, 1f, -0.5f, 0f};

    /** @return log softmax(x / t)[label] in double. */
    private static double logProb(final float[] row, final int label, final double t) {
        double max = Double.NEGATIVE_INFINITY;
        for (final float x : row) {
            max = Math.max(max, x / t);
        }
        double s = 0;
        for (final float x : row) {
            s += Math.exp(x / t - max);
        }
        return row[label] / t - max - Math.log(s);
    }

    private static float[] row(final float[] logits, final int r) {
        return java.util.Arrays.copyOfRange(logits, r * 3, r * 3 + 3);
    }

    @Test
    void theActorLossFromLogitsMatchesTheLossFromTheLogProbsItWrites() throws IOException {
        final Path batch = dir.resolve("logits.safetensors");
        new SafetensorsWriter().f32("logits", BTV, LOGITS).i64("responses", BT, RESPONSES)
            .f32("old_log_probs", BT, OLD).f32("advantages", BT, ADV).bool("response_mask", BT, MASK).write(batch);
        final Path out = dir.resolve("out.safetensors");
        final Run r = execute("compute", "--in", batch.toString(), "--out", out.toString(),
            "actor_rollout_ref.rollout.temperature=0.7", "actor_rollout_ref.actor.entropy_coeff=0.01");
        assertThat(r.code()).as(r.err()).isZero();
        assertThat(r.out()).contains("from logits: vocabulary 3, temperature 0.7").contains("actor/entropy_loss: ")
            .contains("actor/pg_loss: ");
        final float[] lp;
        final float loss;
        final float[] gradLp;
        try (Safetensors st = Safetensors.open(out)) {
            lp = st.float32("log_probs").toFloatArray();
            for (int t = 0; t < 3; t++) {
                assertThat((double) lp[t]).isCloseTo(logProb(row(LOGITS, t), (int) RESPONSES[t], 0.7), within(1e-6));
            }
            assertThat(lp[3]).isZero(); // masked: not read, label -100 allowed
            assertThat(st.info("entropy").shape()).containsExactly(2, 2);
            assertThat(st.info("grad_logits").shape()).containsExactly(2, 2, 3);
            final float[] g = st.float32("grad_logits").toFloatArray();
            for (int t = 0; t < 4; t++) {
                // Softmax gradients sum to 0 across a row; the masked row is 0.
                assertThat((double) (g[3 * t] + g[3 * t + 1] + g[3 * t + 2])).isCloseTo(0.0, within(1e-6));
            }
            assertThat(g[9]).isZero();
            loss = st.float32("loss").getFloat(0);
            gradLp = st.float32("grad_log_probs").toFloatArray();
            assertThat(st.doubles("metrics/actor/entropy_loss")[0]).isPositive();
            assertThat(st.metadata().get("function")).contains("from logits");
        }
        // The same loss from the written log-probs (no entropy term: it needs logits).
        final Path lpBatch = dir.resolve("lp.safetensors");
        new SafetensorsWriter().f32("log_probs", BT, lp).f32("old_log_probs", BT, OLD).f32("advantages", BT, ADV)
            .bool("response_mask", BT, MASK).write(lpBatch);
        final Path out2 = dir.resolve("out2.safetensors");
        final Run r2 = execute("compute", "--in", lpBatch.toString(), "--out", out2.toString());
        assertThat(r2.code()).as(r2.err()).isZero();
        final Path out3 = dir.resolve("out3.safetensors");
        final Run r3 = execute("compute", "--in", batch.toString(), "--out", out3.toString(),
            "actor_rollout_ref.rollout.temperature=0.7");
        assertThat(r3.code()).as(r3.err()).isZero();
        assertThat(r3.out()).doesNotContain("entropy");
        try (Safetensors a = Safetensors.open(out2); Safetensors b = Safetensors.open(out3)) {
            assertThat(b.float32("loss").getFloat(0)).isEqualTo(a.float32("loss").getFloat(0));
            assertThat(b.float32("grad_log_probs").toFloatArray())
                .containsExactly(a.float32("grad_log_probs").toFloatArray());
            assertThat(b.has("entropy")).isFalse();
            // The entropy bonus lowers the loss of the first run by 0.01 * the aggregated entropy.
            assertThat(loss).isLessThan(b.float32("loss").getFloat(0));
            assertThat(gradLp).containsExactly(b.float32("grad_log_probs").toFloatArray());
        }
    }

    @Test
    void bf16AndPackedLogitsGiveTheLossOfTheirFloat32Values() throws IOException {
        // bf16 values that float32 holds exactly.
        final short[] bits = new short[LOGITS.length];
        final float[] widened = new float[LOGITS.length];
        for (int i = 0; i < bits.length; i++) {
            bits[i] = (short) (Float.floatToIntBits(LOGITS[i]) >>> 16);
            widened[i] = Float.intBitsToFloat((bits[i] & 0xFFFF) << 16);
        }
        final Path f32 = dir.resolve("f32.safetensors");
        new SafetensorsWriter().f32("logits", BTV, widened).i32("responses", BT, 2, 0, 1, 0)
            .f32("old_log_probs", BT, OLD).f32("advantages", BT, ADV).bool("response_mask", BT, MASK).write(f32);
        final Path bf16 = dir.resolve("bf16.safetensors");
        new SafetensorsWriter().bf16("logits", new long[] {4, 3}, bits).i64("responses", BT, RESPONSES)
            .f32("old_log_probs", BT, OLD).f32("advantages", BT, ADV).bool("response_mask", BT, MASK).write(bf16);
        // Packed: the three valid tokens as sequences of 2 and 1 (token-mean does not see the boundaries).
        final Path packed = dir.resolve("packed.safetensors");
        new SafetensorsWriter().f32("logits", new long[] {3, 3}, java.util.Arrays.copyOf(widened, 9))
            .i64("responses", new long[] {3}, 2, 0, 1).i32("cu_seqlens", new long[] {3}, 0, 2, 3)
            .f32("old_log_probs", new long[] {3}, OLD[0], OLD[1], OLD[2])
            .f32("advantages", new long[] {3}, ADV[0], ADV[1], ADV[2])
            .bool("response_mask", new long[] {3}, true, true, true).write(packed);
        final float[] losses = new float[3];
        final String[] names = {"f32", "bf16", "packed"};
        final Path[] ins = {f32, bf16, packed};
        for (int i = 0; i < 3; i++) {
            final Path out = dir.resolve(names[i] + "-out.safetensors");
            final Run r = execute("compute", "--in", ins[i].toString(), "--out", out.toString(),
                "actor_rollout_ref.actor.calculate_entropy=true");
            assertThat(r.code()).as(names[i] + ": " + r.err()).isZero();
            try (Safetensors st = Safetensors.open(out)) {
                losses[i] = st.float32("loss").getFloat(0);
                assertThat(st.info("grad_logits").shape()).containsExactly(ins[i] == f32 ? BTV
                    : ins[i] == bf16 ? new long[] {4, 3} : new long[] {3, 3});
            }
            if (ins[i] == packed) {
                assertThat(r.out()).contains("2 packed sequences");
            }
        }
        assertThat(losses[1]).isEqualTo(losses[0]);
        assertThat(losses[2]).isEqualTo(losses[0]);
    }

    @Test
    void logitsInputsThatDoNotFitAreUsageErrors() throws IOException {
        final Path out = dir.resolve("out.safetensors");
        final Path noResponses = dir.resolve("a.safetensors");
        new SafetensorsWriter().f32("logits", BTV, LOGITS).f32("old_log_probs", BT, OLD).f32("advantages", BT, ADV)
            .bool("response_mask", BT, MASK).write(noResponses);
        final Run a = execute("compute", "--in", noResponses.toString(), "--out", out.toString());
        assertThat(a.code()).isEqualTo(Main.USAGE);
        assertThat(a.err()).contains("has no tensor responses");
        final Path badShape = dir.resolve("b.safetensors");
        new SafetensorsWriter().f32("logits", new long[] {2, 6}, LOGITS).i64("responses", BT, RESPONSES)
            .f32("old_log_probs", BT, OLD).f32("advantages", BT, ADV).bool("response_mask", BT, MASK).write(badShape);
        final Run b = execute("compute", "--in", badShape.toString(), "--out", out.toString());
        assertThat(b.code()).isEqualTo(Main.USAGE);
        assertThat(b.err()).contains("logits must be [2, 2, V]");
        final Path badLabel = dir.resolve("c.safetensors");
        new SafetensorsWriter().f32("logits", BTV, LOGITS).i64("responses", BT, 2, 3, 1, 0)
            .f32("old_log_probs", BT, OLD).f32("advantages", BT, ADV).bool("response_mask", BT, MASK).write(badLabel);
        final Run c = execute("compute", "--in", badLabel.toString(), "--out", out.toString());
        assertThat(c.code()).as(c.out() + c.err()).isEqualTo(Main.USAGE);
        final Run full = execute("compute", "--in", badShape.toString(), "--out", out.toString(),
            "actor_rollout_ref.actor.use_kl_loss=true", "actor_rollout_ref.actor.kl_loss_type=full");
        assertThat(full.code()).isEqualTo(Main.USAGE);
        assertThat(execute("compute", "--help").out()).contains("responses").contains("grad_logits")
            .contains("cu_seqlens");
    }

    private static final float[] LP = {-0.5f, -1f, -2f, 0f};
    private static final float[] ROLLOUT = {-0.3f, -0.2f, -2.6f, 0f};
    private static final String RC = "algorithm.rollout_correction.";

    private Path logProbBatch(final String name, final boolean withRollout) throws IOException {
        final Path p = dir.resolve(name);
        final SafetensorsWriter w = new SafetensorsWriter().f32("log_probs", BT, LP).f32("old_log_probs", BT, OLD)
            .f32("advantages", BT, ADV).bool("response_mask", BT, MASK);
        if (withRollout) {
            w.f32("rollout_log_probs", BT, ROLLOUT);
        }
        w.write(p);
        return p;
    }

    private float[] run(final Path batch, final String outName, final String... overrides) throws IOException {
        final Path out = dir.resolve(outName);
        final String[] args = new String[4 + overrides.length];
        args[0] = "compute";
        args[1] = "--in";
        args[2] = batch.toString();
        args[3] = "--out=" + out;
        System.arraycopy(overrides, 0, args, 4, overrides.length);
        final Run r = execute(args);
        assertThat(r.code()).as(r.out() + r.err()).isZero();
        try (Safetensors st = Safetensors.open(out)) {
            return new float[] {st.float32("loss").getFloat(0)};
        }
    }

    @Test
    void decoupledRolloutCorrectionWeightsAndMasksTheBatchBeforeTheLoss() throws IOException {
        final Path plain = logProbBatch("plain.safetensors", false);
        final Path batch = logProbBatch("rollout.safetensors", true);
        // Metrics only (verl's default section): the loss is unchanged, the rollout_corr/* metrics are added.
        final Path out = dir.resolve("m.safetensors");
        final Run m = execute("compute", "--in", batch.toString(), "--out", out.toString());
        assertThat(m.code()).as(m.err()).isZero();
        assertThat(m.out()).contains("rollout correction (decoupled)").contains("rollout_corr/kl: ")
            .contains("rollout_corr/chi2_token: ").doesNotContain("rollout_is_mean");
        try (Safetensors st = Safetensors.open(out)) {
            assertThat(st.has("rollout_is_weights")).isFalse();
            assertThat(st.float32("loss").getFloat(0)).isEqualTo(run(plain, "p.safetensors")[0]);
            // kl = masked mean of rollout - old.
            assertThat(st.doubles("metrics/rollout_corr/kl")[0]).isCloseTo((0.0 + 1.0 - 0.1) / 3, within(1e-6));
        }
        // Token TIS: w = min(exp(old - rollout), 2) on the valid tokens; the loss is the loss with these weights.
        final Path is = dir.resolve("is.safetensors");
        final Run r = execute("compute", "--in", batch.toString(), "--out", is.toString(), RC + "rollout_is=token");
        assertThat(r.code()).as(r.err()).isZero();
        final float[] w;
        try (Safetensors st = Safetensors.open(is)) {
            w = st.float32("rollout_is_weights").toFloatArray();
            assertThat((double) w[0]).isCloseTo(1.0, within(1e-6));
            assertThat((double) w[1]).isCloseTo(Math.exp(-1.0), within(1e-6));
            assertThat((double) w[2]).isCloseTo(Math.exp(0.1), within(1e-6));
            assertThat(w[3]).isZero();
            assertThat(st.doubles("metrics/rollout_corr/rollout_is_mean")[0]).isPositive();
            assertThat(st.has("response_mask")).isFalse();
            final Path weighted = dir.resolve("weighted.safetensors");
            new SafetensorsWriter().f32("log_probs", BT, LP).f32("old_log_probs", BT, OLD).f32("advantages", BT, ADV)
                .bool("response_mask", BT, MASK).f32("rollout_is_weights", BT, w).write(weighted);
            assertThat(st.float32("loss").getFloat(0)).isEqualTo(run(weighted, "w.safetensors")[0]);
        }
        // Rejection: token_k1 with U = 2 keeps -log 2 <= rollout - old <= log 2, so token 1 (1.0) goes.
        final Path rs = dir.resolve("rs.safetensors");
        final Run rr = execute("compute", "--in", batch.toString(), "--out", rs.toString(),
            RC + "rollout_rs=token_k1", RC + "rollout_rs_threshold=2.0");
        assertThat(rr.code()).as(rr.err()).isZero();
        try (Safetensors st = Safetensors.open(rs)) {
            assertThat(st.float32("response_mask").toFloatArray()).containsExactly(1f, 0f, 1f, 0f);
            assertThat(st.doubles("metrics/rollout_corr/rollout_rs_masked_fraction")[0])
                .isCloseTo(1.0 / 3, within(1e-7));
            final Path masked = dir.resolve("masked.safetensors");
            new SafetensorsWriter().f32("log_probs", BT, LP).f32("old_log_probs", BT, OLD).f32("advantages", BT, ADV)
                .bool("response_mask", BT, true, false, true, false).write(masked);
            assertThat(st.float32("loss").getFloat(0)).isEqualTo(run(masked, "mk.safetensors")[0]);
        }
    }

    @Test
    void bypassModeTakesTheRolloutLogProbsAsOldAndCorrectsInsideTheLoss() throws IOException {
        final Path batch = logProbBatch("rollout.safetensors", true);
        final Path out = dir.resolve("b.safetensors");
        final Run r = execute("compute", "--in", batch.toString(), "--out", out.toString(), RC + "bypass_mode=true",
            RC + "loss_type=reinforce", RC + "rollout_is=token");
        assertThat(r.code()).as(r.out() + r.err()).isZero();
        assertThat(r.out()).contains("rollout correction (bypass_mode, loss_type reinforce)")
            .contains("actor/rollout_corr/rollout_is_mean: ").contains("actor/ppo_kl: ");
        try (Safetensors st = Safetensors.open(out)) {
            // Train = log_probs, rollout = rollout_log_probs: w = min(exp(log_probs - rollout), 2).
            final double[] w = {Math.exp(-0.2), Math.exp(-0.8), Math.exp(0.6)};
            final float[] got = st.float32("rollout_is_weights").toFloatArray();
            for (int t = 0; t < 3; t++) {
                assertThat((double) got[t]).isCloseTo(w[t], within(1e-6));
            }
            // REINFORCE: token-mean of -A * log_prob * w.
            final double loss = -(-0.5 * w[0] - 1.0 * w[1] + -0.5 * -2.0 * w[2]) / 3;
            assertThat((double) st.float32("loss").getFloat(0)).isCloseTo(loss, within(1e-6));
            assertThat(st.has("metrics/actor/rollout_corr/rollout_is_mean")).isTrue();
        }
        // ppo_clip with a rejection: verl 2026-08 keeps the rejected token in token-mean's denominator (3), 2026-01
        // does not (2).
        final String[] rs = {RC + "bypass_mode=true", RC + "rollout_rs=token_k1", RC + "rollout_rs_threshold=2.0"};
        final float aug = run(batch, "aug.safetensors", rs)[0];
        final String[] jan = java.util.Arrays.copyOf(rs, rs.length + 1);
        jan[rs.length] = "--verl-release=2026-01";
        final float janLoss = run(batch, "jan.safetensors", jan)[0];
        assertThat((double) aug).isCloseTo(janLoss * 2.0 / 3.0, within(1e-6));
        try (Safetensors st = Safetensors.open(dir.resolve("aug.safetensors"))) {
            assertThat(st.float32("response_mask").toFloatArray()).containsExactly(1f, 0f, 1f, 0f);
        }
        // Without rollout_log_probs, bypass_mode is verl's error; so is a loss_type it lacks.
        final Run missing = execute("compute", "--in", logProbBatch("plain.safetensors", false).toString(), "--out",
            out.toString(), RC + "bypass_mode=true");
        assertThat(missing.code()).isEqualTo(Main.USAGE);
        assertThat(missing.err()).contains("bypass_mode=true needs rollout_log_probs");
        final Run badType = execute("compute", "--in", batch.toString(), "--out", out.toString(),
            RC + "bypass_mode=true", RC + "loss_type=pg");
        assertThat(badType.code()).isEqualTo(Main.USAGE);
        assertThat(badType.err()).contains("Invalid loss_type: pg");
        // verl 2026-01 has no IcePop band.
        final Run ice = execute("compute", "--verl-release", "2026-01", "--in", batch.toString(), "--out",
            out.toString(), RC + "rollout_is=token", RC + "rollout_is_threshold=0.5_2");
        assertThat(ice.code()).isEqualTo(Main.USAGE);
        assertThat(ice.err()).contains("IcePop");
        // The config command prints the correction in verl's key names.
        final Run cfg = execute("config", RC + "rollout_is=token", RC + "bypass_mode=true");
        assertThat(cfg.out()).contains("# rollout correction: algorithm.rollout_correction{rollout_is=token, "
            + "rollout_is_threshold=2.0, rollout_is_batch_normalize=false, rollout_rs=null, rollout_rs_threshold=null, "
            + "bypass_mode=true, loss_type=ppo_clip}").contains("loss_mode=bypass_mode");
    }

    @Test
    void rolloutCorrectionAppliesToTheLossFromLogits() throws IOException {
        final Path batch = dir.resolve("logits-rc.safetensors");
        new SafetensorsWriter().f32("logits", BTV, LOGITS).i64("responses", BT, RESPONSES)
            .f32("old_log_probs", BT, OLD).f32("rollout_log_probs", BT, ROLLOUT).f32("advantages", BT, ADV)
            .bool("response_mask", BT, MASK).write(batch);
        final Path out = dir.resolve("o.safetensors");
        final Run r = execute("compute", "--in", batch.toString(), "--out", out.toString(), RC + "rollout_is=token",
            RC + "bypass_mode=true");
        assertThat(r.code()).as(r.out() + r.err()).isZero();
        try (Safetensors st = Safetensors.open(out)) {
            final float[] lp = st.float32("log_probs").toFloatArray();
            final float[] w = st.float32("rollout_is_weights").toFloatArray();
            for (int t = 0; t < 3; t++) {
                assertThat((double) w[t]).isCloseTo(Math.min(2.0, Math.exp(lp[t] - ROLLOUT[t])), within(1e-6));
            }
            assertThat(st.has("grad_logits")).isTrue();
        }
    }

    @Test
    void gdpoNormalisesEachNamedRewardComponentThenWeighsThem() throws IOException {
        final long[] bt = {4, 2};
        final Path batch = dir.resolve("gdpo.safetensors");
        new SafetensorsWriter().f32("token_level_rewards", bt, new float[8]).bool("response_mask", bt, true, true,
                true, true, true, true, true, true).i64("index", new long[] {4}, 0, 0, 1, 1)
            .f32("acc", new long[] {4}, 1f, 0f, 1f, 1f).f64("reward.fmt", new long[] {4}, 0.5, 1.0, 0.0, 1.0)
            .write(batch);
        final Path out = dir.resolve("adv.safetensors");
        final String keys = "+algorithm.gdpo_reward_keys=[acc, fmt]";
        final Run r = execute("compute", "--term", "advantages", "--in", batch.toString(), "--out", out.toString(),
            "algorithm.adv_estimator=gdpo", keys, "+algorithm.gdpo_reward_weights=[1.0, 0.5]",
            "algorithm.norm_adv_by_std_in_grpo=false");
        assertThat(r.code()).as(r.out() + r.err()).isZero();
        assertThat(r.out()).contains("gdpo/acc/mean: 0.750000000").contains("gdpo/fmt/max: 1.00000000");
        try (Safetensors st = Safetensors.open(out)) {
            // Per group, grpo of each component (std-normalised: the trainer does not pass norm_adv_by_std_in_grpo):
            // acc (+0.707, -0.707, 0, 0), fmt (-0.707, +0.707, -0.707, +0.707); 1 * acc + 0.5 * fmt =
            // (+c, -c, -c, +c), c = 0.354; whitened over the 8 tokens: +-sqrt(7 / 8).
            final float[] adv = st.float32("advantages").toFloatArray();
            final double c = Math.sqrt(7.0 / 8.0);
            final double[] expected = {c, c, -c, -c, -c, -c, c, c};
            for (int t = 0; t < 8; t++) {
                assertThat((double) adv[t]).as("token " + t).isCloseTo(expected[t], within(1e-4));
            }
            assertThat(st.doubles("metrics/gdpo/acc/std")[0]).isCloseTo(Math.sqrt(0.1875), within(1e-12));
            assertThat(st.doubles("metrics/gdpo/fmt/min")[0]).isZero();
        }
        // Unweighted: (+0.707 - 0.707, -0.707 + 0.707, ...) = (0, 0, -0.707, +0.707): a different result.
        final Run u = execute("compute", "--term", "advantages", "--in", batch.toString(), "--out", out.toString(),
            "algorithm.adv_estimator=gdpo", keys);
        assertThat(u.code()).as(u.err()).isZero();
        try (Safetensors st = Safetensors.open(out)) {
            final float[] adv = st.float32("advantages").toFloatArray();
            assertThat((double) adv[0]).isCloseTo(0.0, within(1e-4));
            assertThat(adv[6]).isPositive();
        }
        final Run missing = execute("compute", "--term", "advantages", "--in", batch.toString(), "--out",
            out.toString(), "algorithm.adv_estimator=gdpo", "+algorithm.gdpo_reward_keys=[acc, length]");
        assertThat(missing.code()).isEqualTo(Main.USAGE);
        assertThat(missing.err()).contains("has no tensor length or reward.length");
        final Run notList = execute("compute", "--term", "advantages", "--in", batch.toString(), "--out",
            out.toString(), "algorithm.adv_estimator=gdpo", "+algorithm.gdpo_reward_keys=acc");
        assertThat(notList.code()).isEqualTo(Main.USAGE);
        assertThat(notList.err()).contains("algorithm.gdpo_reward_keys must be a list");
        final Run jan = execute("compute", "--term", "advantages", "--verl-release", "2026-01", "--in",
            batch.toString(), "--out", out.toString(), "algorithm.adv_estimator=gdpo", keys);
        assertThat(jan.code()).isEqualTo(Main.USAGE);
        assertThat(jan.err()).contains("gdpo does not exist in verl 2026-01");
        final Path badShape = dir.resolve("bad.safetensors");
        new SafetensorsWriter().f32("token_level_rewards", bt, new float[8]).bool("response_mask", bt, true, true,
                true, true, true, true, true, true).i64("index", new long[] {4}, 0, 0, 1, 1)
            .f32("acc", new long[] {2}, 1f, 0f).f32("fmt", new long[] {4}, 1f, 0f, 1f, 1f).write(badShape);
        final Run shape = execute("compute", "--term", "advantages", "--in", badShape.toString(), "--out",
            out.toString(), "algorithm.adv_estimator=gdpo", keys);
        assertThat(shape.code()).isEqualTo(Main.USAGE);
        assertThat(shape.err()).contains("acc (algorithm.gdpo_reward_keys 'acc') must be [B] = [4]");
        assertThat(execute("compute", "--help").out()).contains("gdpo_reward_keys");
    }

    /** @return sum_j softmax(x / t)_j^2 in double. */
    private static double sumPiSquared(final float[] row, final double t) {
        double max = Double.NEGATIVE_INFINITY;
        for (final float x : row) {
            max = Math.max(max, x / t);
        }
        double s = 0;
        double q = 0;
        for (final float x : row) {
            final double e = Math.exp(x / t - max);
            s += e;
            q += e * e;
        }
        return q / (s * s);
    }

    @Test
    void calculateSumPiSquaredWritesItFromTheActorsLogits() throws IOException {
        final Path batch = dir.resolve("spi-actor.safetensors");
        new SafetensorsWriter().f32("logits", BTV, LOGITS).i64("responses", BT, RESPONSES)
            .f32("old_log_probs", BT, OLD).f32("advantages", BT, ADV).bool("response_mask", BT, MASK).write(batch);
        final Path out = dir.resolve("spi-actor-out.safetensors");
        final Run r = execute("compute", "--in", batch.toString(), "--out", out.toString(),
            "actor_rollout_ref.rollout.temperature=0.7", "actor_rollout_ref.actor.calculate_sum_pi_squared=true");
        assertThat(r.code()).as(r.err()).isZero();
        try (Safetensors st = Safetensors.open(out)) {
            assertThat(st.info("sum_pi_squared").shape()).containsExactly(2, 2);
            final float[] spi = st.float32("sum_pi_squared").toFloatArray();
            for (int t = 0; t < 3; t++) {
                assertThat((double) spi[t]).isCloseTo(sumPiSquared(row(LOGITS, t), 0.7), within(1e-6));
            }
            assertThat(spi[3]).isZero(); // masked
        }
        final Path off = dir.resolve("spi-actor-off.safetensors");
        assertThat(execute("compute", "--in", batch.toString(), "--out", off.toString()).code()).isZero();
        try (Safetensors st = Safetensors.open(off)) {
            assertThat(st.has("sum_pi_squared")).isFalse();
        }
    }

    @Test
    void theOptimalTokenBaselineTakesSumPiSquaredFromTheBatchOrFromTheOldPolicysLogits() throws IOException {
        final float[] rewards = {0f, 1f, 0f, 0.5f};
        final Path logits = dir.resolve("otb-logits.safetensors");
        new SafetensorsWriter().f32("token_level_rewards", BT, rewards).bool("response_mask", BT, MASK)
            .i64("index", new long[] {2}, 3, 3).f32("logits", BTV, LOGITS).i64("responses", BT, RESPONSES)
            .write(logits);
        for (final String estimator : new String[] {"optimal_token_baseline", "tir_optimal_token_baseline"}) {
            // verl asserts sum_pi_squared, which its actor computes only with calculate_sum_pi_squared.
            final Run refused = execute("compute", "--term", "advantages", "--in", logits.toString(), "--out",
                dir.resolve("otb-refused.safetensors").toString(), "algorithm.adv_estimator=" + estimator);
            assertThat(refused.code()).isEqualTo(2);
            assertThat(refused.err()).contains("calculate_sum_pi_squared");
            final Path out = dir.resolve("otb-" + estimator + ".safetensors");
            final Run r = execute("compute", "--term", "advantages", "--in", logits.toString(), "--out",
                out.toString(), "algorithm.adv_estimator=" + estimator, "actor_rollout_ref.rollout.temperature=0.7",
                "actor_rollout_ref.actor.calculate_sum_pi_squared=true");
            assertThat(r.code()).as(r.out() + r.err()).isZero();
            assertThat(r.out()).contains("sum_pi_squared and old_log_probs from logits: vocabulary 3, temperature 0.7");
            final float[] spi;
            final float[] old;
            final float[] adv;
            try (Safetensors st = Safetensors.open(out)) {
                spi = st.float32("sum_pi_squared").toFloatArray();
                old = st.float32("old_log_probs").toFloatArray();
                adv = st.float32("advantages").toFloatArray();
            }
            for (int t = 0; t < 3; t++) {
                assertThat((double) spi[t]).isCloseTo(sumPiSquared(row(LOGITS, t), 0.7), within(1e-6));
                assertThat((double) old[t]).isCloseTo(logProb(row(LOGITS, t), (int) RESPONSES[t], 0.7),
                    within(1e-6));
            }
            // The same advantages from the batch holding the values the pass wrote.
            final Path given = dir.resolve("otb-given.safetensors");
            new SafetensorsWriter().f32("token_level_rewards", BT, rewards).bool("response_mask", BT, MASK)
                .i64("index", new long[] {2}, 3, 3).f32("old_log_probs", BT, old).f32("sum_pi_squared", BT, spi)
                .write(given);
            final Path out2 = dir.resolve("otb-given-out.safetensors");
            final Run g = execute("compute", "--term", "advantages", "--in", given.toString(), "--out",
                out2.toString(), "algorithm.adv_estimator=" + estimator);
            assertThat(g.code()).as(g.out() + g.err()).isZero();
            try (Safetensors st = Safetensors.open(out2)) {
                assertThat(st.float32("advantages").toFloatArray()).containsExactly(adv);
                assertThat(st.has("sum_pi_squared")).isFalse();
            }
        }
    }

    @Test
    void theAdvantagesSeeTheDecoupledRejectionMask() throws IOException {
        final float[] rewards = {0f, 1f, 0f, 0.5f};
        final Path batch = dir.resolve("adv-rc.safetensors");
        new SafetensorsWriter().f32("token_level_rewards", BT, rewards).bool("response_mask", BT, MASK)
            .i64("index", new long[] {2}, 3, 3).f32("old_log_probs", BT, OLD).f32("rollout_log_probs", BT, ROLLOUT)
            .write(batch);
        final Path out = dir.resolve("adv-rc-out.safetensors");
        final Run r = execute("compute", "--term", "advantages", "--in", batch.toString(), "--out", out.toString(),
            "algorithm.adv_estimator=grpo", RC + "rollout_rs=token_k1", RC + "rollout_rs_threshold=2.0");
        assertThat(r.code()).as(r.out() + r.err()).isZero();
        assertThat(r.out()).contains("rollout correction (decoupled, before the advantages)")
            .contains("rollout_corr/rollout_rs_masked_fraction: ");
        // The same estimator on the batch whose mask is the rejection mask.
        final Path masked = dir.resolve("adv-masked.safetensors");
        new SafetensorsWriter().f32("token_level_rewards", BT, rewards)
            .bool("response_mask", BT, true, false, true, false).i64("index", new long[] {2}, 3, 3).write(masked);
        final Path out2 = dir.resolve("adv-masked-out.safetensors");
        final Run m = execute("compute", "--term", "advantages", "--in", masked.toString(), "--out", out2.toString(),
            "algorithm.adv_estimator=grpo");
        assertThat(m.code()).as(m.err()).isZero();
        try (Safetensors a = Safetensors.open(out); Safetensors b = Safetensors.open(out2)) {
            assertThat(a.float32("response_mask").toFloatArray()).containsExactly(1f, 0f, 1f, 0f);
            assertThat(a.float32("advantages").toFloatArray()).containsExactly(b.float32("advantages").toFloatArray());
        }
    }
}
