package io.rlvec.cli;

import java.io.PrintWriter;
import java.util.Locale;
import java.util.Map;
import java.util.concurrent.Callable;

import io.rlvec.AggMode;
import io.rlvec.ElementType;
import io.rlvec.Engine;
import io.rlvec.Engines;
import io.rlvec.LossSpec;
import io.rlvec.OffHeapArray;
import io.rlvec.PolicyLossMode;
import io.rlvec.PolicyLossResult;
import io.rlvec.PolicyLossResult.Stat;
import io.rlvec.TokenBatch;
import io.rlvec.cli.demo.GrpoBatch;
import io.rlvec.cli.demo.GrpoStep;
import io.rlvec.cli.golden.GoldenRunner;
import picocli.CommandLine;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;

/**
 * {@code rlvec demo}: the main job on an embedded default, no input files. Builds a synthetic GRPO batch
 * (default 128 prompts x 8 responses, ragged lengths up to 2048, packed), runs verl's vanilla PPO-clip policy
 * loss with its gradient on the preferred engine and on the reference, and prints the loss, every metric, the
 * advantage-sign split, the parity of the two engines and a rough speed ratio.
 */
@Command(name = "demo", mixinStandardHelpOptions = true, sortOptions = false,
    description = {"Runs one GRPO step as verl runs it (rewards -> grpo advantages -> actor loss from logits, "
        + "metrics and d loss/d logits) on a synthetic batch, on the preferred engine and on the reference, with "
        + "their parity and times. With --policy-loss: runs verl's vanilla PPO-clip policy loss (compute_policy_loss_vanilla + agg_loss, forward, "
        + "metrics and d loss/d log_prob) on a synthetic GRPO-shaped packed batch, on the preferred engine and on "
        + "the scalar reference, and prints the loss, the metrics, the A>0/A<0 split, engine-vs-reference parity "
        + "and a rough speed ratio."})
final class DemoCommand implements Callable<Integer> {
    /** Warm-up batch: small enough that interpreted calls stay cheap, large enough to exercise every path. */
    private static final int WARM_PROMPTS = 16;
    private static final int WARM_RESPONSES = 8;
    private static final int WARM_MAX_LEN = 64;
    /** Warm-up time bound: C2 compiles the kernels within a few thousand calls on this batch (style.md P6). */
    private static final long WARM_MAX_NANOS = 3_000_000_000L;

    @CommandLine.Spec
    private CommandLine.Model.CommandSpec spec;

    @Option(names = "--policy-loss",
        description = "run the policy-loss demo (the vanilla PPO-clip loss alone on a large packed batch) instead of "
            + "the GRPO step")
    private boolean policyLossOnly;

    @Option(names = "--prompts", description = "prompts (GRPO groups) (default: 16 for the GRPO step, 128 with "
        + "--policy-loss)")
    private Integer promptsOption;
    private int prompts;

    @Option(names = "--responses", defaultValue = "8", description = "responses per prompt (default: ${DEFAULT-VALUE})")
    private int responses;

    @Option(names = "--max-len", description = "longest response; lengths are uniform in [1, max-len] (default: "
        + "128 for the GRPO step, 2048 with --policy-loss)")
    private Integer maxLenOption;
    private int maxLen;

    @Option(names = "--vocab", defaultValue = "1024",
        description = "vocabulary of the GRPO step's logits (default: ${DEFAULT-VALUE})")
    private int vocab;

    @Option(names = "--seed", defaultValue = "42", description = "generator seed (default: ${DEFAULT-VALUE})")
    private long seed;

    @Option(names = "--mode", defaultValue = "token-mean", paramLabel = "LOSS_AGG_MODE",
        description = "loss_agg_mode: token-mean, seq-mean-token-sum, seq-mean-token-mean, seq-mean-token-sum-norm "
            + "(default: ${DEFAULT-VALUE})")
    private String mode;

    @Option(names = "--clip-ratio", defaultValue = "0.2", description = "clip_ratio (default: ${DEFAULT-VALUE})")
    private double clipRatio;

    @Option(names = "--clip-ratio-low", description = "clip_ratio_low (default: clip_ratio)")
    private Double clipRatioLow;

    @Option(names = "--clip-ratio-high", description = "clip_ratio_high (default: clip_ratio)")
    private Double clipRatioHigh;

    @Option(names = "--clip-ratio-c", defaultValue = "3.0",
        description = "clip_ratio_c, the dual-clip bound (default: ${DEFAULT-VALUE})")
    private double clipRatioC;

    @Option(names = "--loss-scale-factor",
        description = "loss_scale_factor for seq-mean-token-sum-norm (default: max-len, the width verl would pad to)")
    private Double lossScaleFactor;

    @Option(names = "--threads", defaultValue = "1",
        description = "worker threads of the preferred engine (default: ${DEFAULT-VALUE})")
    private int threads;

    @Option(names = "--reps", defaultValue = "10",
        description = "timed calls of the preferred engine, best reported (default: ${DEFAULT-VALUE})")
    private int reps;

    @Option(names = "--reference-reps", defaultValue = "3",
        description = "timed calls of the reference, best reported (default: ${DEFAULT-VALUE})")
    private int referenceReps;

    @Option(names = "--warmup-calls", defaultValue = "20000",
        description = "calls on a small batch before timing, at most 3 s (default: ${DEFAULT-VALUE})")
    private int warmupCalls;

    @Override
    public Integer call() {
        final PrintWriter out = spec.commandLine().getOut();
        prompts = promptsOption != null ? promptsOption : policyLossOnly ? 128 : 16;
        maxLen = maxLenOption != null ? maxLenOption : policyLossOnly ? 2048 : 128;
        final LossSpec lossSpec = lossSpec();
        if (threads < 1 || threads > io.rlvec.Engines.MAX_THREADS || reps < 1 || referenceReps < 1
            || warmupCalls < 0) {
            throw new CommandLine.ParameterException(spec.commandLine(), "--threads must be in [1, "
                + io.rlvec.Engines.MAX_THREADS + "], --reps and --reference-reps >= 1, --warmup-calls >= 0");
        }
        if (!policyLossOnly) {
            return grpoStep(out, lossSpec);
        }
        final GrpoBatch data;
        try {
            data = GrpoBatch.generate(prompts, responses, maxLen, seed);
        } catch (final IllegalArgumentException e) {
            throw new CommandLine.ParameterException(spec.commandLine(), e.getMessage(), e);
        }
        final Engine engine = Engines.preferred(threads);
        final String choice = Engines.lastChoiceReason();
        final Engine reference = Engines.reference();
        try (TokenBatch batch = data.toTokenBatch();
             OffHeapArray grad = OffHeapArray.allocate(ElementType.F32, batch.numTokens());
             OffHeapArray gradRef = OffHeapArray.allocate(ElementType.F32, batch.numTokens())) {
            out.println("RLVec demo: verl's vanilla PPO-clip policy loss (compute_policy_loss_vanilla + agg_loss),");
            out.println("forward, metrics and d pg_loss / d log_prob, on a synthetic GRPO batch");
            out.println();
            out.printf(Locale.ROOT, "engine     %s (%s); reference: %s%n", engine.name(), choice, reference.name());
            out.printf(Locale.ROOT, "batch      %,d sequences = %d prompts x %d responses, packed: %,d tokens "
                + "(%,d valid)%n", data.sequences(), data.prompts(), data.responses(), data.tokens(),
                data.validTokens());
            out.printf(Locale.ROOT, "           response lengths uniform in 1..%d (longest %d, mean %.0f), seed %d%n",
                maxLen, data.longest(), (double) data.tokens() / data.sequences(), seed);
            out.printf(Locale.ROOT, "rewards    %.1f%% of responses correct; %d of %d groups all-equal (A = 0)%n",
                100 * data.correctShare(), data.flatGroups(), data.prompts());
            out.printf(Locale.ROOT, "spec       loss_agg_mode=%s clip_ratio_low=%s clip_ratio_high=%s "
                    + "clip_ratio_c=%s%s%n", lossSpec.lossAggMode().verlName(), num(lossSpec.clipRatioLow()),
                num(lossSpec.clipRatioHigh()), num(lossSpec.clipRatioC()),
                Double.isNaN(lossSpec.lossScaleFactor()) ? "" : " loss_scale_factor=" + num(lossSpec.lossScaleFactor()));
            out.println();

            final PolicyLossResult result = new PolicyLossResult();
            final PolicyLossResult refResult = new PolicyLossResult();
            engine.policyLoss(lossSpec, batch, grad, result);
            reference.policyLoss(lossSpec, batch, gradRef, refResult);

            printResult(out, result);
            printParity(out, engine, batch, grad, gradRef, result, refResult);
            printSpeed(out, engine, reference, lossSpec, batch, grad);
        } finally {
            if (engine instanceof AutoCloseable c) {
                try {
                    c.close();
                } catch (final Exception ignored) {
                    // Closing only stops worker threads; nothing to report.
                }
            }
        }
        out.flush();
        return Main.OK;
    }

    private Integer grpoStep(final PrintWriter out, final LossSpec lossSpec) {
        final GrpoStep step;
        try {
            step = GrpoStep.generate(prompts, responses, maxLen, vocab, seed);
        } catch (final IllegalArgumentException e) {
            throw new CommandLine.ParameterException(spec.commandLine(), e.getMessage(), e);
        }
        try (Engine engine = Engines.preferred(threads); Engine reference = Engines.reference()) {
            final boolean ok = step.print(out, engine, Engines.lastChoiceReason(), reference, lossSpec, reps, seed);
            out.flush();
            return ok ? Main.OK : Main.FAILURE;
        }
    }

    private LossSpec lossSpec() {
        try {
            final AggMode agg = AggMode.fromVerl(mode);
            final LossSpec.Builder b = LossSpec.builder()
                .policyLossMode(PolicyLossMode.VANILLA)
                .lossAggMode(agg)
                .clipRatio(clipRatio)
                .clipRatioLow(clipRatioLow == null ? Double.NaN : clipRatioLow)
                .clipRatioHigh(clipRatioHigh == null ? Double.NaN : clipRatioHigh)
                .clipRatioC(clipRatioC);
            if (lossScaleFactor != null) {
                b.lossScaleFactor(lossScaleFactor);
            } else if (agg == AggMode.SEQ_MEAN_TOKEN_SUM_NORM) {
                // A packed batch has no padded width; verl would divide by the width it pads responses to.
                b.lossScaleFactor(maxLen);
            }
            return b.build();
        } catch (final IllegalArgumentException e) {
            throw new CommandLine.ParameterException(spec.commandLine(), e.getMessage(), e);
        }
    }

    private static void printResult(final PrintWriter out, final PolicyLossResult r) {
        out.printf(Locale.ROOT, "pg_loss    %.9g%n", r.pgLoss());
        out.println();
        out.println("metrics (PolicyLossResult.metrics())");
        for (final Map.Entry<String, Double> m : r.metrics().entrySet()) {
            out.printf(Locale.ROOT, "  %-26s %s%n", m.getKey(), metric(m.getKey(), m.getValue()));
        }
        out.println();
        final long valid = r.validTokens();
        final long pos = r.posTokens();
        final long neg = r.negTokens();
        final long zero = valid - pos - neg;
        out.printf(Locale.ROOT, "advantage sign split      %18s %18s %18s%n", "A > 0", "A < 0", "A = 0");
        out.printf(Locale.ROOT, "  tokens                  %18s %18s %18s%n", count(pos, valid),
            count(neg, valid), count(zero, valid));
        out.printf(Locale.ROOT, "  contribution to pg_loss %18.7g %18.7g %18s%n", r.posContribution(),
            r.negContribution(), "0");
        out.printf(Locale.ROOT, "  ratio > 1               %17.2f%% %17.2f%%%n", 100 * r.posRatioAboveOne(),
            100 * r.negRatioAboveOne());
        out.printf(Locale.ROOT, "  clipped (own side)      %18s %18s    A>0: ratio > 1+high, A<0: ratio < 1-low%n",
            count((long) r.stat(Stat.CLIPPED_HIGH), pos), count((long) r.stat(Stat.CLIPPED_LOW), neg));
        out.printf(Locale.ROOT, "  dual-clipped            %18s %18s    A<0: loss capped at -A*clip_ratio_c%n", "-",
            count((long) r.stat(Stat.DUAL_CLIPPED), neg));
        out.println();
    }

    private static void printParity(final PrintWriter out, final Engine engine, final TokenBatch batch,
                                    final OffHeapArray grad, final OffHeapArray gradRef, final PolicyLossResult r,
                                    final PolicyLossResult ref) {
        final int n = batch.numTokens();
        long mismatches = 0;
        long maxUlp = 0;
        for (int i = 0; i < n; i++) {
            final float a = grad.getFloat(i);
            final float b = gradRef.getFloat(i);
            if (Float.floatToIntBits(a) != Float.floatToIntBits(b)) {
                mismatches++;
                maxUlp = Math.max(maxUlp, GoldenRunner.ulpDistance(a, b));
            }
        }
        int metricsDiffer = 0;
        long metricsMaxUlp = 0;
        final Map<String, Double> mr = ref.metrics();
        for (final Map.Entry<String, Double> m : r.metrics().entrySet()) {
            final float a = m.getValue().floatValue();
            final float b = mr.get(m.getKey()).floatValue();
            if (Float.floatToIntBits(a) != Float.floatToIntBits(b)) {
                metricsDiffer++;
                metricsMaxUlp = Math.max(metricsMaxUlp, GoldenRunner.ulpDistance(a, b));
            }
        }
        final long lossUlp = GoldenRunner.ulpDistance(r.pgLoss(), ref.pgLoss());
        out.println("parity " + engine.name() + " vs reference (contract: gradient bit-identical, scalars within 1 ulp)");
        out.printf(Locale.ROOT, "  gradient   %,d of %,d elements differ bitwise%s%n", mismatches, n,
            mismatches == 0 ? "" : " (max " + maxUlp + " ulp)");
        out.printf(Locale.ROOT, "  pg_loss    %d ulp apart (%.9g vs %.9g)%n", lossUlp, r.pgLoss(), ref.pgLoss());
        out.printf(Locale.ROOT, "  metrics    %d of %d differ%s%n", metricsDiffer, mr.size(),
            metricsDiffer == 0 ? "" : " (max " + metricsMaxUlp + " ulp)");
        out.printf(Locale.ROOT, "  verdict    %s%n", mismatches == 0 && lossUlp <= 1 && metricsMaxUlp <= 1
            ? "within the contract" : "CONTRACT BREACH");
        out.println();
    }

    private void printSpeed(final PrintWriter out, final Engine engine, final Engine reference, final LossSpec lossSpec,
                            final TokenBatch batch, final OffHeapArray grad) {
        final PolicyLossResult scratch = new PolicyLossResult();
        final GrpoBatch warmData = GrpoBatch.generate(WARM_PROMPTS, WARM_RESPONSES, WARM_MAX_LEN, seed + 1);
        final int warmCalls;
        final long warmNanos;
        try (TokenBatch warm = warmData.toTokenBatch();
             OffHeapArray warmGrad = OffHeapArray.allocate(ElementType.F32, warm.numTokens())) {
            final long t0 = System.nanoTime();
            int calls = 0;
            while (calls < warmupCalls && System.nanoTime() - t0 < WARM_MAX_NANOS) {
                engine.policyLoss(lossSpec, warm, warmGrad, scratch);
                calls++;
            }
            // The reference gets a tenth of the calls: its scalar loops compile quickly.
            for (int i = 0; i < Math.max(1, calls / 10); i++) {
                reference.policyLoss(lossSpec, warm, warmGrad, scratch);
            }
            warmCalls = calls;
            warmNanos = System.nanoTime() - t0;
            engine.policyLoss(lossSpec, batch, grad, scratch);
        }
        final long bestEngine = best(engine, lossSpec, batch, grad, scratch, reps);
        final long bestReference = best(reference, lossSpec, batch, grad, scratch, referenceReps);
        final int n = batch.numTokens();
        out.printf(Locale.ROOT, "speed      rough wall-clock figures (JMH benchmarks in jmh/ give the real ones): "
            + "best of %d (engine) and %d (reference) calls,%n", reps, referenceReps);
        out.printf(Locale.ROOT, "           after a warm-up of %,d calls on a %,d-token batch (%.1f s)%n", warmCalls,
            warmData.tokens(), warmNanos / 1e9);
        out.printf(Locale.ROOT, "  %-18s %9.3f ms per call  %7.2f ns/token%n", engine.name(), bestEngine / 1e6,
            (double) bestEngine / n);
        out.printf(Locale.ROOT, "  %-18s %9.3f ms per call  %7.2f ns/token%n", reference.name(), bestReference / 1e6,
            (double) bestReference / n);
        out.printf(Locale.ROOT, "  %-18s %9.1fx (reference time / %s time)%n", "speed ratio",
            (double) bestReference / bestEngine, engine.name());
        if (engine.name().equals(reference.name())) {
            out.println("  (the preferred engine is the reference here, so the ratio is 1 by construction)");
        }
    }

    private static long best(final Engine e, final LossSpec s, final TokenBatch batch, final OffHeapArray grad,
                             final PolicyLossResult out, final int reps) {
        long best = Long.MAX_VALUE;
        for (int i = 0; i < reps; i++) {
            final long t0 = System.nanoTime();
            e.policyLoss(s, batch, grad, out);
            best = Math.min(best, System.nanoTime() - t0);
        }
        return best;
    }

    private static String metric(final String name, final double v) {
        return name.endsWith("_tokens") || name.endsWith("_sequences") ? String.format(Locale.ROOT, "%,d", (long) v)
            : String.format(Locale.ROOT, "%.7g", v);
    }

    private static String count(final long k, final long of) {
        return String.format(Locale.ROOT, "%,d (%.1f%%)", k, of == 0 ? 0.0 : 100.0 * k / of);
    }

    private static String num(final double v) {
        return v == Math.rint(v) && Math.abs(v) < 1e9 ? String.format(Locale.ROOT, "%.1f", v) : Double.toString(v);
    }
}
