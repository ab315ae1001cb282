package io.rlvec.cli.demo;

import io.rlvec.ActorLossResult;
import io.rlvec.AdvantageEstimator;
import io.rlvec.AdvantageInputs;
import io.rlvec.AdvantageSpec;
import io.rlvec.Column;
import io.rlvec.ElementType;
import io.rlvec.Engine;
import io.rlvec.Logits;
import io.rlvec.LossSpec;
import io.rlvec.OffHeapArray;
import io.rlvec.TokenBatch;
import io.rlvec.cli.golden.GoldenRunner;
import java.io.PrintWriter;
import java.util.Locale;
import java.util.Map;
import java.util.SplittableRandom;

/**
 * One GRPO training step as verl runs it, on a synthetic batch: outcome rewards of {@code prompts x responses}
 * ragged responses -> group-normalised advantages ({@code grpo}, group ids shuffled through the batch) -> the
 * actor loss from logits over a small vocabulary (log-probs and entropy of the sampled tokens, the clipped
 * policy loss, its metrics, and d loss / d logits), on the preferred engine and on the reference, with their
 * parity and the time of each.
 */
public final class GrpoStep {
    private final int prompts;
    private final int responses;
    private final int[] lengths;
    private final int vocab;
    private final float[] logits;
    private final int[] labels;
    private final float[] oldLogProb;
    private final float[] rewards;
    private final boolean[] mask;
    private final long[] uid;
    private final int correct;

    private GrpoStep(final int prompts, final int responses, final int maxLen, final int vocab, final long seed) {
        if (prompts < 1 || responses < 1 || maxLen < 1 || vocab < 2) {
            throw new IllegalArgumentException("prompts, responses and max-len must be >= 1 and vocab >= 2, got "
                + prompts + ", " + responses + ", " + maxLen + ", " + vocab);
        }
        final long logitCount = (long) prompts * responses * maxLen * vocab;
        if (logitCount > 64L << 20) {
            throw new IllegalArgumentException("prompts x responses x max-len x vocab = " + logitCount
                + " logits is over the demo's 67,108,864 (256 MB); use the JMH benchmarks for large shapes");
        }
        this.prompts = prompts;
        this.responses = responses;
        this.vocab = vocab;
        final SplittableRandom r = new SplittableRandom(seed);
        final int b = prompts * responses;
        lengths = new int[b];
        uid = new long[b];
        final long[] order = new long[b];
        for (int i = 0; i < b; i++) {
            order[i] = 1000L + i / responses;
        }
        for (int i = b - 1; i > 0; i--) {
            final int j = r.nextInt(i + 1);
            final long t = order[i];
            order[i] = order[j];
            order[j] = t;
        }
        int n = 0;
        for (int i = 0; i < b; i++) {
            uid[i] = order[i];
            lengths[i] = 1 + r.nextInt(maxLen);
            n += lengths[i];
        }
        logits = new float[n * vocab];
        labels = new int[n];
        oldLogProb = new float[n];
        rewards = new float[n];
        mask = new boolean[n];
        final double[] promptSkill = new double[prompts];
        for (int p = 0; p < prompts; p++) {
            promptSkill[p] = r.nextDouble();
        }
        int at = 0;
        int right = 0;
        for (int i = 0; i < b; i++) {
            final boolean ok = r.nextDouble() < promptSkill[(int) (uid[i] - 1000L)];
            right += ok ? 1 : 0;
            for (int k = 0; k < lengths[i]; k++, at++) {
                mask[at] = true;
                for (int v = 0; v < vocab; v++) {
                    logits[at * vocab + v] = (float) (r.nextGaussian() * 2.0);
                }
                labels[at] = r.nextInt(vocab);
                rewards[at] = k == lengths[i] - 1 && ok ? 1f : 0f;
            }
        }
        correct = right;
        // old_log_prob: the sampled token's log-prob under the logits, moved a little (the policy that sampled).
        for (int t = 0; t < n; t++) {
            double max = Double.NEGATIVE_INFINITY;
            for (int v = 0; v < vocab; v++) {
                max = Math.max(max, logits[t * vocab + v]);
            }
            double sum = 0;
            for (int v = 0; v < vocab; v++) {
                sum += Math.exp(logits[t * vocab + v] - max);
            }
            oldLogProb[t] = (float) (logits[t * vocab + labels[t]] - max - Math.log(sum) + 0.05 * r.nextGaussian());
        }
    }

    /** @return the step's data for these sizes and seed. */
    public static GrpoStep generate(final int prompts, final int responses, final int maxLen, final int vocab,
                                    final long seed) {
        return new GrpoStep(prompts, responses, maxLen, vocab, seed);
    }

    /** What one engine computed. */
    private record Outcome(float[] advantages, ActorLossResult loss, float[] gradLogits, long nanos) {
    }

    private Outcome run(final Engine engine, final LossSpec spec, final int reps) {
        final int n = labels.length;
        long best = Long.MAX_VALUE;
        float[] adv = null;
        float[] grad = null;
        ActorLossResult result = null;
        try (TokenBatch rewardBatch = TokenBatch.packed(lengths).column(Column.TOKEN_LEVEL_REWARDS, rewards)
                 .mask(mask).build();
             OffHeapArray ids = OffHeapArray.ofLongs(uid);
             OffHeapArray advantages = OffHeapArray.allocate(ElementType.F32, n);
             OffHeapArray returns = OffHeapArray.allocate(ElementType.F32, n);
             OffHeapArray z = OffHeapArray.of(logits);
             OffHeapArray tokens = OffHeapArray.ofInts(labels);
             OffHeapArray old = OffHeapArray.of(oldLogProb);
             OffHeapArray gradLogits = OffHeapArray.allocate(ElementType.F32, (long) n * vocab)) {
            final AdvantageSpec grpo = AdvantageSpec.builder(AdvantageEstimator.GRPO).build();
            final AdvantageInputs inputs = new AdvantageInputs().index(ids);
            final Logits view = Logits.of(z, n, vocab);
            for (int rep = 0; rep < reps; rep++) {
                final ActorLossResult out = new ActorLossResult();
                final long t0 = System.nanoTime();
                engine.advantages(grpo, rewardBatch, inputs, advantages, returns);
                try (TokenBatch actorBatch = TokenBatch.packed(lengths).column(Column.OLD_LOG_PROB, old)
                         .column(Column.ADVANTAGES, advantages).mask(mask).build()) {
                    engine.actorLoss(spec, actorBatch, view, tokens, null, null, gradLogits, out);
                }
                best = Math.min(best, System.nanoTime() - t0);
                result = out;
            }
            adv = advantages.toFloatArray();
            grad = gradLogits.toFloatArray();
        }
        return new Outcome(adv, result, grad, best);
    }

    /**
     * Runs the step on both engines and prints what was computed, the metrics in verl's names, the parity and
     * the times.
     *
     * @return whether the engine met its contract against the reference.
     */
    public boolean print(final PrintWriter out, final Engine engine, final String choice, final Engine reference,
                         final LossSpec spec, final int reps, final long seed) {
        final int n = labels.length;
        out.println("RLVec demo: one GRPO step as verl runs it, on a synthetic batch");
        out.println("  rewards -> group advantages (grpo) -> actor loss from logits -> metrics and d loss / d logits");
        out.println();
        out.printf(Locale.ROOT, "engine     %s (%s); reference: %s%n", engine.name(), choice, reference.name());
        out.printf(Locale.ROOT, "batch      %,d responses = %d prompts x %d, packed: %,d tokens, vocabulary %,d "
            + "(%,d logits), seed %d%n", lengths.length, prompts, responses, n, vocab, (long) n * vocab, seed);
        out.printf(Locale.ROOT, "rewards    outcome reward 1 at the last token of %d of %d responses; group ids "
            + "shuffled through the batch%n", correct, lengths.length);
        out.printf(Locale.ROOT, "spec       adv_estimator=grpo norm_adv_by_std_in_grpo=true, loss_mode=vanilla "
                + "loss_agg_mode=%s clip_ratio_low=%s clip_ratio_high=%s temperature=%s%n",
            spec.lossAggMode().verlName(), spec.clipRatioLow(), spec.clipRatioHigh(), spec.temperature());
        out.println();
        final Outcome e = run(engine, spec, reps);
        final Outcome r = run(reference, spec, 1);
        out.printf(Locale.ROOT, "loss       %.9g (pg_loss %.9g)%n", e.loss().loss(), e.loss().pgLoss());
        out.println();
        out.println("metrics (verl's names)");
        for (final Map.Entry<String, Double> m : e.loss().metrics().entrySet()) {
            out.printf(Locale.ROOT, "  %-28s %.7g%n", m.getKey(), m.getValue());
        }
        out.println();
        final long advDiff = differing(e.advantages(), r.advantages());
        final long gradDiff = differing(e.gradLogits(), r.gradLogits());
        final long lossUlp = GoldenRunner.ulpDistance(e.loss().loss(), r.loss().loss());
        out.println("parity " + engine.name() + " vs reference (contract: advantages and gradients bit-identical, "
            + "scalars within 1 ulp)");
        out.printf(Locale.ROOT, "  advantages     %,d of %,d differ bitwise%n", advDiff, n);
        out.printf(Locale.ROOT, "  d loss/d logits %,d of %,d differ bitwise%n", gradDiff, (long) n * vocab);
        out.printf(Locale.ROOT, "  loss           %d ulp apart%n", lossUlp);
        final boolean ok = advDiff == 0 && gradDiff == 0 && lossUlp <= 1;
        out.printf(Locale.ROOT, "  verdict        %s%n", ok ? "within the contract" : "CONTRACT BREACH");
        out.println();
        out.printf(Locale.ROOT, "time       engine %.2f ms (best of %d), reference %.2f ms: %.1fx (rough wall-clock "
            + "of whole steps, first calls included; JMH gives the measured figures)%n", e.nanos() / 1e6, reps,
            r.nanos() / 1e6, (double) r.nanos() / e.nanos());
        return ok;
    }

    private static long differing(final float[] a, final float[] b) {
        long d = 0;
        for (int i = 0; i < a.length; i++) {
            d += Float.floatToIntBits(a[i]) != Float.floatToIntBits(b[i]) ? 1 : 0;
        }
        return d;
    }
}
