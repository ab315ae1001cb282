package io.rlvec.cli.golden;

import static org.assertj.core.api.Assertions.assertThat;

import java.io.IOException;
import java.lang.foreign.ValueLayout;
import java.net.URISyntaxException;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.SplittableRandom;
import java.util.function.Consumer;

import org.junit.jupiter.api.Test;

import io.rlvec.cli.io.Safetensors;
import io.rlvec.cli.io.SafetensorsWriter;
import io.rlvec.cli.io.TensorInfo;

/**
 * Verdicts from error analysis on the three example classes where a fixed relative 1e-5 fails a correct engine
 * (k3 cancellation at |r| ~ 0.13, the entropy of a 151,936-wide row, an entropy float32 rounds to 0), and mutations
 * that must each FAIL (a well-conditioned output off by a few ulp, a wrong clamp, a gradient with the wrong sign, a
 * dropped token). The fixtures are written here in the parity format; their "verl" values are float32 evaluations
 * of verl's expressions in the order PyTorch's eager code applies them (for the wide row: a float32 sum
 * accumulated left to right, whose error has the size PyTorch's float32 accumulation shows on such rows; for the
 * peaked row: the 0 PyTorch returns).
 */
class ErrorBoundVerdictsTest extends MutatedEngineTest {
    private static final int VOCAB = 151_936;

    // ---------------------------------------------------------------------------------------------------------
    // Fixtures

    /** k3 at |r| ~ 0.13 (picked where float32 cancels worst) plus four tokens at and past the clamps. */
    static Path k3Fixture() throws IOException {
        final SplittableRandom rng = new SplittableRandom(13);
        final List<float[]> picked = new ArrayList<>();
        // Candidates: (lp, ref) with ref - lp ~ +-0.13; keep the 16 with the largest float32 relative error.
        final List<float[]> candidates = new ArrayList<>();
        for (int i = 0; i < 4000; i++) {
            final float lp = (float) (-1.5 - rng.nextDouble());
            final float ref = (float) (lp + (rng.nextBoolean() ? 1 : -1) * (0.12 + 0.02 * rng.nextDouble()));
            candidates.add(new float[] {lp, ref, (float) relErr(lowVarKlF32(lp, ref), lowVarKlExact(lp, ref))});
        }
        candidates.sort((a, b) -> Float.compare(b[2], a[2]));
        picked.addAll(candidates.subList(0, 16));
        picked.add(new float[] {-3f, -0.8f});   // r = 2.2: 5.8, inside the clamp
        picked.add(new float[] {-3f, -0.5f});   // r = 2.5: 8.68, inside
        picked.add(new float[] {-3.5f, -0.5f}); // r = 3: 16.1, clamped to 10
        picked.add(new float[] {-0.5f, -25.5f}); // r = -25: r clamped to -20, kld 19 clamped to 10
        final int n = picked.size();
        final float[] lp = new float[n];
        final float[] ref = new float[n];
        final float[] kld = new float[n];
        final float[] grad = new float[n];
        for (int i = 0; i < n; i++) {
            lp[i] = picked.get(i)[0];
            ref[i] = picked.get(i)[1];
            kld[i] = lowVarKlF32(lp[i], ref[i]);
            final double r = (double) ref[i] - lp[i];
            final double raw = Math.exp(Math.max(-20, Math.min(20, r))) - Math.max(-20, Math.min(20, r)) - 1;
            final boolean live = Math.abs(r) < 20 && Math.abs(raw) < 10;
            grad[i] = (float) (live ? -(Math.exp(r) - 1) / n : 0);
        }
        final Path f = dir.resolve("kl_low_var_kl_cancellation.safetensors");
        final long[] bt = {2, n / 2};
        new SafetensorsWriter().metadata(GoldenCase.FUNCTION, KlPenaltyHandler.FUNCTION)
            .metadata(GoldenCase.GROUP, "kl_penalty")
            .metadata(GoldenCase.PARAMS, "{\"kl_penalty\": \"low_var_kl\", \"grad_of\": \"kld.mean()\"}")
            .metadata("storage_dtype", "float32")
            .f32("in.logprob", bt, lp).f32("in.ref_logprob", bt, ref)
            .f32("out.kld", bt, kld).f32("out.grad_logprob", bt, grad).write(f);
        return f;
    }

    /** k1 (well-conditioned: one correctly rounded subtraction), for the few-ulp mutation. */
    static Path k1Fixture() throws IOException {
        final SplittableRandom rng = new SplittableRandom(7);
        final int n = 12;
        final float[] lp = new float[n];
        final float[] ref = new float[n];
        final float[] kld = new float[n];
        final float[] grad = new float[n];
        for (int i = 0; i < n; i++) {
            lp[i] = (float) (-0.5 - 3 * rng.nextDouble());
            ref[i] = (float) (-0.5 - 3 * rng.nextDouble());
            kld[i] = lp[i] - ref[i];
            grad[i] = 1f / n;
        }
        final Path f = dir.resolve("kl_k1.safetensors");
        final long[] bt = {3, 4};
        new SafetensorsWriter().metadata(GoldenCase.FUNCTION, KlPenaltyHandler.FUNCTION)
            .metadata(GoldenCase.PARAMS, "{\"kl_penalty\": \"kl\", \"grad_of\": \"kld.mean()\"}")
            .f32("in.logprob", bt, lp).f32("in.ref_logprob", bt, ref)
            .f32("out.kld", bt, kld).f32("out.grad_logprob", bt, grad).write(f);
        return f;
    }

    /** A 151,936-wide row of spread logits, and a peaked row whose exact entropy is ~2e-10 (PyTorch: 0). */
    static Path wideRowFixture() throws IOException {
        final SplittableRandom rng = new SplittableRandom(151936);
        final float[] x = new float[2 * VOCAB];
        for (int j = 0; j < VOCAB; j++) {
            x[j] = (float) (8 + 2 * gaussian(rng));
            x[VOCAB + j] = -38f;
        }
        x[VOCAB + 5] = 0f;
        final int[] labels = {rng.nextInt(VOCAB), 5};
        final float[] entropy = new float[2];
        final float[] logProb = new float[2];
        for (int r = 0; r < 2; r++) {
            float max = Float.NEGATIVE_INFINITY;
            for (int j = 0; j < VOCAB; j++) {
                max = Math.max(max, x[r * VOCAB + j]);
            }
            float s = 0;
            for (int j = 0; j < VOCAB; j++) {
                s += (float) Math.exp(x[r * VOCAB + j] - max);
            }
            final float lse = max + (float) Math.log(s);
            float spz = 0;
            for (int j = 0; j < VOCAB; j++) {
                spz += (float) Math.exp(x[r * VOCAB + j] - lse) * x[r * VOCAB + j];
            }
            entropy[r] = lse - spz;
            logProb[r] = x[r * VOCAB + labels[r]] - lse;
        }
        entropy[1] = 0f; // what PyTorch returns for the peaked row
        final Path f = dir.resolve("logits_v151936_n2_wide.safetensors");
        new SafetensorsWriter().metadata(GoldenCase.FUNCTION, LogitsHandler.FUNCTION)
            .metadata(GoldenCase.PARAMS, "{\"N\": 2, \"V\": " + VOCAB + ", \"temperature\": 1.0}")
            .f32("in.logits", new long[] {2, VOCAB}, x).i64("in.labels", new long[] {2}, labels[0], labels[1])
            .f32("in.w1", new long[] {2}, 1f, 1f).f32("in.w2", new long[] {2}, 1f, 1f)
            .f32("out.entropy", new long[] {2}, entropy).f32("out.logprob_naive", new long[] {2}, logProb)
            .write(f);
        return f;
    }

    private static double gaussian(final SplittableRandom rng) {
        return Math.sqrt(-2 * Math.log(1 - rng.nextDouble())) * Math.cos(2 * Math.PI * rng.nextDouble());
    }

    /** verl's low_var_kl in float32, as PyTorch's eager ops apply it. */
    static float lowVarKlF32(final float lp, final float ref) {
        final float r = Math.max(-20f, Math.min(20f, ref - lp));
        final float e = (float) Math.exp(r);
        final float k = e - r - 1f;
        return Math.max(-10f, Math.min(10f, k));
    }

    static double lowVarKlExact(final float lp, final float ref) {
        final double r = Math.max(-20, Math.min(20, (double) ref - lp));
        return Math.max(-10, Math.min(10, Math.exp(r) - r - 1));
    }

    private static double relErr(final double a, final double x) {
        return Math.abs(a - x) / Math.abs(x);
    }

    // ---------------------------------------------------------------------------------------------------------
    // Running, with an optional mutation of one engine output

    private static CaseReport run(final Path f, final String output, final Consumer<float[]> mutation) {
        return run(f, output == null ? null : o -> mutation.accept(o.get(output).values()));
    }

    // ---------------------------------------------------------------------------------------------------------
    // The example classes: PASS or DEVIATION, never FAIL

    @Test
    void k3CancellationIsNotAFailure() throws IOException {
        final Path f = k3Fixture();
        try (Safetensors st = Safetensors.open(f)) {
            final double[] lp = st.doubles("in.logprob");
            final double[] ref = st.doubles("in.ref_logprob");
            final double[] verl = st.doubles("out.kld");
            double worst = 0;
            for (int i = 0; i < 16; i++) {
                worst = Math.max(worst, relErr(verl[i], lowVarKlExact((float) lp[i], (float) ref[i])));
            }
            assertThat(worst).as("the fixture is of the class a fixed relative 1e-5 fails").isGreaterThan(1e-5);
        }
        final CaseReport r = run(f, null, null);
        assertThat(r.verdict()).as(r.toString()).isIn(Verdict.PASS, Verdict.DEVIATION);
        for (int e = 0; e < 2; e++) {
            assertThat(tensor(r, e, "out.kld").verdict()).isIn(Verdict.PASS, Verdict.DEVIATION);
            assertThat(tensor(r, e, "out.grad_logprob").verdict()).isEqualTo(Verdict.PASS);
        }
    }

    @Test
    void wideRowAndEntropyRoundedToZeroAreNotFailures() throws IOException {
        final Path f = wideRowFixture();
        final CaseReport r = run(f, null, null);
        assertThat(r.verdict()).as(r.toString()).isIn(Verdict.PASS, Verdict.DEVIATION);
        for (int e = 0; e < 2; e++) {
            final TensorReport h = tensor(r, e, "out.entropy");
            assertThat(h.verdict()).as(h.toString()).isIn(Verdict.PASS, Verdict.DEVIATION);
            assertThat(h.maxRelErr()).as("a fixed relative 1e-5 would have failed it").isGreaterThan(1e-5);
            assertThat(tensor(r, e, "out.logprob_naive").verdict()).isIn(Verdict.PASS, Verdict.DEVIATION);
        }
    }

    // ---------------------------------------------------------------------------------------------------------
    // Mutations: each must FAIL

    @Test
    void unmutatedK1Passes() throws IOException {
        assertThat(run(k1Fixture(), null, null).verdict()).isEqualTo(Verdict.PASS);
    }

    @Test
    void wellConditionedOutputOffByAFewUlpFails() throws IOException {
        final CaseReport r = run(k1Fixture(), "out.kld", v -> v[5] = Math.nextUp(Math.nextUp(Math.nextUp(v[5]))));
        assertThat(r.verdict()).isEqualTo(Verdict.FAIL);
        assertThat(tensor(r, 0, "out.kld").detail()).contains("over its error bound");
    }

    @Test
    void wrongClampFails() throws IOException {
        // The kld clamp at 8 instead of 10: the token at 8.68 comes out as 8.
        final CaseReport r = run(k3Fixture(), "out.kld", v -> {
            for (int i = 0; i < v.length; i++) {
                v[i] = Math.min(v[i], 8f);
            }
        });
        assertThat(tensor(r, 0, "out.kld").verdict()).isEqualTo(Verdict.FAIL);
        // No clamp at all: the clamped tokens come out as 16.1 and 19.
        final CaseReport none = run(k3Fixture(), "out.kld", v -> {
            v[18] = (float) (Math.exp(3) - 4);
            v[19] = 19f;
        });
        assertThat(tensor(none, 0, "out.kld").verdict()).isEqualTo(Verdict.FAIL);
    }

    @Test
    void gradientWithTheWrongSignFails() throws IOException {
        final CaseReport r = run(k3Fixture(), "out.grad_logprob", v -> {
            for (int i = 0; i < v.length; i++) {
                v[i] = -v[i];
            }
        });
        assertThat(tensor(r, 0, "out.grad_logprob").verdict()).isEqualTo(Verdict.FAIL);
    }

    @Test
    void droppedTokenFails() throws IOException, URISyntaxException {
        // The engine sees the batch with one valid token dropped (its mask bit cleared); verl's outputs stay.
        final Path src = Path.of(ErrorBoundVerdictsTest.class.getResource(
            "/golden/agg_loss_b5t9_default_tmean.safetensors").toURI());
        final Path f = dir.resolve("agg_loss_dropped.safetensors");
        try (Safetensors st = Safetensors.open(src)) {
            final SafetensorsWriter w = new SafetensorsWriter();
            st.metadata().forEach(w::metadata);
            for (final String name : st.names()) {
                final TensorInfo t = st.info(name);
                final byte[] bytes = st.bytes(name).toArray(ValueLayout.JAVA_BYTE);
                if (name.equals("in.loss_mask")) {
                    int first = 0;
                    while (bytes[first * t.dtype().bytes()] == 0) {
                        first++;
                    }
                    for (int b = 0; b < t.dtype().bytes(); b++) {
                        bytes[first * t.dtype().bytes() + b] = 0;
                    }
                }
                w.raw(name, t.dtype(), t.shape(), bytes);
            }
            w.write(f);
        }
        assertThat(run(src, null, null).verdict()).isEqualTo(Verdict.PASS);
        final CaseReport r = run(f, null, null);
        assertThat(r.verdict()).isEqualTo(Verdict.FAIL);
        assertThat(tensor(r, 0, "out.loss").verdict()).isEqualTo(Verdict.FAIL);
    }

    private static Path aggLoss(final String name) throws URISyntaxException {
        return Path.of(ErrorBoundVerdictsTest.class.getResource("/golden/" + name).toURI());
    }

    @Test
    void aggLossIsJudgedByErrorBoundsOnEveryMode() throws URISyntaxException {
        for (final String f : new String[] {"agg_loss_b5t9_default_tmean.safetensors",
            "agg_loss_b5t9_bnt57_sm-tmean.safetensors", "agg_loss_b5t9_bnt57_sm-tsum-norm.safetensors",
            "agg_loss_b5t9_dp2_bnt100_gbs10_lsf64_sm-tsum.safetensors"}) {
            final CaseReport r = run(aggLoss(f), null, null);
            assertThat(r.verdict()).as(f).isEqualTo(Verdict.PASS);
            // A loss three ulp off and a gradient element two ulp off are caught by the engine's bound.
            final CaseReport loss = run(aggLoss(f), "out.loss",
                v -> v[0] = Math.nextUp(Math.nextUp(Math.nextUp(v[0]))));
            assertThat(tensor(loss, 0, "out.loss").verdict()).as(f).isEqualTo(Verdict.FAIL);
            assertThat(tensor(loss, 0, "out.loss").detail()).contains("over its error bound");
            final CaseReport grad = run(aggLoss(f), "out.grad_loss_mat", v -> {
                for (int i = 0; i < v.length; i++) {
                    if (v[i] != 0) {
                        v[i] = Math.nextUp(Math.nextUp(v[i]));
                        break;
                    }
                }
            });
            assertThat(tensor(grad, 0, "out.grad_loss_mat").verdict()).as(f).isEqualTo(Verdict.FAIL);
        }
    }

    @Test
    void aggLossGradientWithTheWrongSignOrTheWrongModeFails() throws URISyntaxException {
        final Path f = aggLoss("agg_loss_b5t9_bnt57_sm-tmean.safetensors");
        final CaseReport sign = run(f, "out.grad_loss_mat", v -> {
            for (int i = 0; i < v.length; i++) {
                v[i] = -v[i];
            }
        });
        assertThat(tensor(sign, 0, "out.grad_loss_mat").verdict()).isEqualTo(Verdict.FAIL);
        // token-mean's loss where seq-mean-token-mean was asked: the weights differ by row.
        final CaseReport mode = run(f, "out.loss", v -> v[0] *= 1.01f);
        assertThat(tensor(mode, 0, "out.loss").verdict()).isEqualTo(Verdict.FAIL);
    }

    private static List<Path> goldenResources(final java.util.function.Predicate<String> name) throws IOException {
        try (java.util.stream.Stream<Path> files = java.nio.file.Files.list(aggLossDirectory())) {
            return files.filter(f -> name.test(f.getFileName().toString())).sorted().toList();
        }
    }

    private static Path aggLossDirectory() {
        try {
            return aggLoss("agg_loss_b5t9_default_tmean.safetensors").getParent();
        } catch (final URISyntaxException e) {
            throw new IllegalStateException(e);
        }
    }

    @Test
    void klGradientsAndFloat64CasesAreJudgedByErrorBounds() throws IOException {
        final List<Path> kl = goldenResources(n -> n.startsWith("kl_") && !n.contains("full"));
        final List<Path> f64 = goldenResources(n -> n.startsWith("agg_loss") && n.contains("_f64")
            && !n.contains("allmasked"));
        assertThat(kl).hasSizeGreaterThan(20);
        assertThat(f64).hasSizeGreaterThan(20);
        for (final Path f : kl) {
            final CaseReport r = run(f, null, null);
            assertThat(r.verdict()).as(f.toString()).isIn(Verdict.PASS, Verdict.DEVIATION);
            for (int e = 0; e < 2; e++) {
                assertThat(tensor(r, e, "out.kld").judge()).as(f.toString()).isEqualTo(TensorReport.Judge.BOUND);
                assertThat(tensor(r, e, "out.grad_logprob").judge()).as(f.toString())
                    .isEqualTo(TensorReport.Judge.BOUND);
            }
        }
        for (final Path f : f64) {
            final CaseReport r = run(f, null, null);
            assertThat(r.verdict()).as(f.toString()).isIn(Verdict.PASS, Verdict.DEVIATION);
            assertThat(tensor(r, 0, "out.loss").judge()).as(f.toString()).isEqualTo(TensorReport.Judge.BOUND);
            // The engine's bound stays within a few ulp although it includes the inputs' rounding to float32,
            // and the loss just past it fails.
            final CaseOutputs.Output loss = outputs(f).get("out.loss");
            final double ulps = loss.referee().engineBoundAt(0) / Math.ulp(loss.values()[0]);
            assertThat(ulps).as(f.toString()).isLessThan(6);
            final CaseReport off = run(f, "out.loss", v -> {
                final double x = loss.referee().exactAt(0);
                final double past = x + 1.01 * loss.referee().engineBoundAt(0);
                v[0] = (float) past < past ? Math.nextUp((float) past) : (float) past;
            });
            assertThat(tensor(off, 0, "out.loss").verdict()).as(f.toString()).isEqualTo(Verdict.FAIL);
        }
    }

    @Test
    void klGradientOffByTwoUlpFails() throws IOException {
        final CaseReport r = run(k1Fixture(), "out.grad_logprob", v -> v[3] = Math.nextUp(Math.nextUp(v[3])));
        assertThat(tensor(r, 0, "out.grad_logprob").verdict()).isEqualTo(Verdict.FAIL);
        assertThat(tensor(r, 0, "out.grad_logprob").detail()).contains("over its error bound");
        // Float64 cases: k1's gradient (1/N whatever the inputs) two ulp off fails; k3's, whose bound includes how
        // far rounding the stored inputs to float32 moves 1 - e^r, fails just past that bound.
        final Path k1 = goldenResources(n -> n.startsWith("kl_k1_") && n.contains("f64")).getFirst();
        final CaseReport k1Off = run(k1, "out.grad_logprob", v -> v[7] = Math.nextUp(Math.nextUp(v[7])));
        assertThat(tensor(k1Off, 0, "out.grad_logprob").verdict()).isEqualTo(Verdict.FAIL);
        final Path k3 = goldenResources(n -> n.startsWith("kl_k3_") && n.contains("f64")).getFirst();
        final CaseOutputs.Referee bounds = outputs(k3).get("out.grad_logprob").referee();
        final CaseReport f64 = run(k3, "out.grad_logprob", v -> {
            final double past = bounds.exactAt(7) + 1.01 * bounds.engineBoundAt(7);
            v[7] = (float) past < past ? Math.nextUp((float) past) : (float) past;
        });
        assertThat(tensor(f64, 0, "out.grad_logprob").verdict()).isEqualTo(Verdict.FAIL);
    }

    @Test
    void float64PolicyLossCasesAreJudgedByErrorBoundsAndAWrongLossFails() throws IOException {
        final List<Path> cases = goldenResources(n -> n.startsWith("pl_vanilla") && n.contains("_f64"));
        assertThat(cases).hasSize(8);
        for (final Path f : cases) {
            final CaseReport r = run(f, null, null);
            assertThat(r.verdict()).as(f.toString()).isIn(Verdict.PASS, Verdict.DEVIATION);
            for (final String name : new String[] {"out.pg_loss", "out.pg_clipfrac", "out.ppo_kl",
                "out.pg_clipfrac_lower", "out.grad_log_prob"}) {
                assertThat(tensor(r, 0, name).judge()).as(f + " " + name).isEqualTo(TensorReport.Judge.BOUND);
            }
            // Just past the engine's bound (the inputs' rounding to float32 included) fails, and the loss with
            // the wrong sign fails.
            final CaseOutputs.Referee loss = outputs(f).get("out.pg_loss").referee();
            final CaseReport past = run(f, "out.pg_loss", v -> {
                final double x = loss.exactAt(0) + 1.01 * loss.engineBoundAt(0);
                v[0] = (float) x < x ? Math.nextUp((float) x) : (float) x;
            });
            assertThat(tensor(past, 0, "out.pg_loss").verdict()).as(f.toString()).isEqualTo(Verdict.FAIL);
            final CaseReport sign = run(f, "out.grad_log_prob", v -> {
                for (int i = 0; i < v.length; i++) {
                    v[i] = -v[i];
                }
            });
            assertThat(tensor(sign, 0, "out.grad_log_prob").verdict()).as(f.toString()).isEqualTo(Verdict.FAIL);
        }
    }

    @Test
    void actorCompositionFromLogProbsIsJudgedByErrorBounds() throws IOException {
        final List<Path> cases = goldenResources(n -> n.startsWith("actor_") && !n.contains("e2e"));
        assertThat(cases).isNotEmpty();
        for (final Path f : cases) {
            final CaseReport r = run(f, null, null);
            assertThat(r.verdict()).as(f.toString()).isIn(Verdict.PASS, Verdict.DEVIATION);
            assertThat(r.runs().getFirst().tensors()).as(f.toString())
                .allMatch(t -> t.judge() == TensorReport.Judge.BOUND || t.judge() == TensorReport.Judge.NONE);
            for (final String name : new String[] {"out.loss", "out.kl_loss"}) {
                final CaseOutputs.Referee ref = outputs(f).get(name).referee();
                final double past = ref.exactAt(0) + 1.01 * ref.engineBoundAt(0);
                assertThat(tensor(run(f, name, v -> v[0] = (float) past < past ? Math.nextUp((float) past)
                    : (float) past), 0, name).verdict()).as(f + " " + name).isEqualTo(Verdict.FAIL);
            }
            final CaseReport sign = run(f, "out.grad_log_prob", v -> {
                for (int i = 0; i < v.length; i++) {
                    v[i] = -v[i];
                }
            });
            assertThat(tensor(sign, 0, "out.grad_log_prob").verdict()).as(f.toString()).isEqualTo(Verdict.FAIL);
        }
    }

    /**
     * The vocabulary pass's gradient and sum of squared probabilities judged by the engine's own operations: the
     * largest gradient element's bound is a few ulp, and past it the check fails, as does a wrong sign.
     */
    @Test
    void logitsGradientIsJudgedByTheEnginesOperations() throws IOException {
        final List<Path> cases = goldenResources(n -> n.startsWith("logits_") && !n.contains("f64"));
        assertThat(cases).isNotEmpty();
        for (final Path f : cases) {
            final CaseReport r = run(f, null, null);
            assertThat(r.verdict()).as(f.toString()).isIn(Verdict.PASS, Verdict.DEVIATION);
            assertThat(tensor(r, 0, "out.grad_logits_v2").judge()).as(f.toString()).isEqualTo(TensorReport.Judge.BOUND);
            assertThat(tensor(r, 0, "out.sum_pi_squared").judge()).as(f.toString())
                .isEqualTo(TensorReport.Judge.BOUND);
            final CaseOutputs.Output grad = outputs(f).get("out.grad_logits_v2");
            final float[] v = grad.values();
            int at = 0;
            for (int i = 0; i < v.length; i++) {
                at = Math.abs(v[i]) > Math.abs(v[at]) ? i : at;
            }
            assertThat(grad.referee().engineBoundAt(at) / Math.ulp(v[at])).as(f.toString()).isLessThan(64);
            final int i = at;
            final double past = grad.referee().exactAt(i) + 1.01 * grad.referee().engineBoundAt(i);
            assertThat(tensor(run(f, "out.grad_logits_v2", x -> x[i] = (float) past < past
                ? Math.nextUp((float) past) : (float) past), 0, "out.grad_logits_v2").verdict()).as(f.toString())
                .isEqualTo(Verdict.FAIL);
        }
    }

    /**
     * dp_actor's composition from logits judged by derived bounds (the losses through the engine's own log-probs);
     * mutations fail: the loss, pg_loss and kl_loss just past their bounds, the logits' gradient negated.
     */
    @Test
    void actorCompositionFromLogitsIsJudgedByErrorBounds() throws IOException {
        final List<Path> cases = goldenResources(n -> n.startsWith("actor_e2e"));
        assertThat(cases).hasSize(2);
        for (final Path f : cases) {
            final CaseReport r = run(f, null, null);
            assertThat(r.verdict()).as(f.toString()).isIn(Verdict.PASS, Verdict.DEVIATION);
            assertThat(r.runs().getFirst().tensors()).as(f.toString())
                .allMatch(t -> t.judge() == TensorReport.Judge.BOUND);
            for (final String name : new String[] {"out.loss", "out.pg_loss", "out.kl_loss"}) {
                final CaseOutputs.Referee ref = outputs(f).get(name).referee();
                final double past = ref.exactAt(0) + 1.01 * ref.engineBoundAt(0);
                assertThat(tensor(run(f, name, v -> v[0] = (float) past < past ? Math.nextUp((float) past)
                    : (float) past), 0, name).verdict()).as(f + " " + name).isEqualTo(Verdict.FAIL);
                assertThat(ref.engineBoundAt(0) / Math.ulp((float) ref.exactAt(0))).as(f + " " + name)
                    .isLessThan(64);
            }
            final CaseReport sign = run(f, "out.grad_logits", v -> {
                for (int i = 0; i < v.length; i++) {
                    v[i] = -v[i];
                }
            });
            assertThat(tensor(sign, 0, "out.grad_logits").verdict()).as(f.toString()).isEqualTo(Verdict.FAIL);
        }
    }
}
