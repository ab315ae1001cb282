package io.rlvec.cli.golden;

import java.util.EnumMap;
import java.util.Map;

import io.rlvec.ActorLossResult;
import io.rlvec.Column;
import io.rlvec.ElementType;
import io.rlvec.Engine;
import io.rlvec.Logits;
import io.rlvec.LossSpec;
import io.rlvec.OffHeapArray;
import io.rlvec.TokenBatch;
import io.rlvec.cli.io.TensorInfo;

/**
 * dp_actor's composition from logits ({@code update_policy}: {@code logits.div_(temperature)}, log-probs and
 * entropy of the responses, vanilla pg_loss, entropy bonus, KL loss, micro-batch scale, backward to the raw
 * logits), through the logits overload of {@link Engine#actorLoss}: inputs {@code in.logits} {@code [B, T, V]}
 * (one row per token slot), {@code in.responses} {@code [B, T]} (I64 labels, as int32), {@code in.old_log_prob},
 * {@code in.ref_log_prob}, {@code in.advantages}, {@code in.response_mask}. Outputs and what they are compared with:
 * <ul>
 * <li>{@code out.log_prob}, {@code out.entropy} {@code [B, T]}: {@link Engine#logProbs} on the same logits, every
 * row (verl computes them at masked positions too); relative 1e-5;</li>
 * <li>{@code out.entropy_agg}: {@link ActorLossResult#entropyAgg()} (only when the spec needs the entropy);</li>
 * <li>{@code out.pg_loss}: the policy term before dp_actor's in-place entropy bonus,
 * {@code ActorLossResult.policy().pgLoss()};</li>
 * <li>{@code out.pg_loss_metric}: {@code actor/pg_loss}, {@link ActorLossResult#pgLossMetric()} (after the bonus,
 * times the micro-batch scale);</li>
 * <li>{@code out.kl_loss}: {@link ActorLossResult#klLoss()} (before kl_loss_coef, unscaled);</li>
 * <li>{@code out.policy_loss}: {@link ActorLossResult#policyLoss()} (unscaled); {@code out.loss}:
 * {@link ActorLossResult#loss()} (times the micro-batch scale);</li>
 * <li>{@code out.grad_logits} {@code [B, T, V]}: d loss / d raw logits; absolute 1e-5.</li>
 * </ul>
 * Params as in {@link ActorLogProbHandler} ({@code loss_scale_factor} is the micro-batch scale).
 */
public final class ActorLogitsHandler implements CaseHandler {
    /** The verl function this handler runs. */
    public static final String FUNCTION = "dp_actor composition from logits: logprobs_from_logits + "
        + "entropy_from_logits + vanilla pg + entropy bonus + kl loss";

    private static final String LOGITS = "in.logits";
    private static final String LABELS = "in.responses";
    private static final String MASK = "in.response_mask";

    @Override
    public CaseOutputs run(final GoldenCase golden, final Engine engine) {
        final LossSpec spec = ActorLogProbHandler.actorSpec(golden);
        final Map<Column, String> columns = new EnumMap<>(Column.class);
        columns.put(Column.OLD_LOG_PROB, "in.old_log_prob");
        columns.put(Column.REF_LOG_PROB, "in.ref_log_prob");
        columns.put(Column.ADVANTAGES, "in.advantages");
        final int[] bt = golden.matrixShape(MASK);
        final TensorInfo li = golden.file().info(LOGITS);
        if (li.rank() != 3 || li.dim(0) != bt[0] || li.dim(1) != bt[1] || li.dim(2) < 1
            || li.dim(2) > Integer.MAX_VALUE) {
            throw new IllegalArgumentException(LOGITS + " must have shape [" + bt[0] + ", " + bt[1] + ", V] (one row "
                + "per token of " + MASK + "), got " + li.describe());
        }
        final int vocab = (int) li.dim(2);
        final int[] labelShape = golden.matrixShape(LABELS);
        if (labelShape[0] != bt[0] || labelShape[1] != bt[1]) {
            throw new IllegalArgumentException(LABELS + " must have shape [" + bt[0] + ", " + bt[1] + "], got ["
                + labelShape[0] + ", " + labelShape[1] + "]");
        }
        try (TokenBatch batch = golden.paddedBatch(MASK, columns)) {
            final int n = batch.numTokens();
            final Logits logits = Logits.of(golden.float32(LOGITS), n, vocab);
            final OffHeapArray labels = golden.int32(LABELS);
            try (OffHeapArray grad = OffHeapArray.allocate(ElementType.F32, (long) n * vocab);
                 OffHeapArray lp = OffHeapArray.allocate(ElementType.F32, n);
                 OffHeapArray ent = OffHeapArray.allocate(ElementType.F32, n)) {
                final ActorLossResult r = new ActorLossResult();
                engine.actorLoss(spec, batch, logits, labels, null, null, grad, r);
                // Per-token values at every position, as verl computes them before masking.
                engine.logProbs(logits, labels, spec.temperature(), null, lp, ent);

                final CaseFacts facts = golden.facts(MASK, columns.values().toArray(String[]::new));
                final Deviation[] lossDeviations = ActorLogProbHandler.lossDeviations(spec);
                final float[] allValid = new float[n];
                java.util.Arrays.fill(allValid, 1f);
                final CaseOutputs.Referee[] exact = exact(spec, golden.float32(LOGITS).toFloatArray(),
                    labels.toIntArray(), lp.toFloatArray(), batch, golden.matrixShape(MASK), vocab);
                if (exact != null) {
                    final CaseOutputs judged = new CaseOutputs(facts)
                        .judgedTokens("out.log_prob", lp.toFloatArray(), allValid, exact[0], Tolerance.VALUE)
                        .judgedTokens("out.entropy", ent.toFloatArray(), allValid, exact[1], Tolerance.VALUE);
                    if (r.hasEntropy()) {
                        judged.judgedScalar("out.entropy_agg", r.entropyAgg(), exact[2], Tolerance.SCALAR,
                            lossDeviations);
                    }
                    return judged
                        .judgedScalar("out.pg_loss", r.policy().pgLoss(), exact[3], Tolerance.SCALAR, lossDeviations)
                        .judgedScalar("out.pg_loss_metric", (float) r.pgLossMetric(), exact[4], Tolerance.SCALAR,
                            lossDeviations)
                        .judgedScalar("out.kl_loss", r.klLoss(), exact[5], Tolerance.SCALAR, lossDeviations)
                        .judgedScalar("out.policy_loss", r.policyLoss(), exact[6], Tolerance.SCALAR, lossDeviations)
                        .judgedScalar("out.loss", r.loss(), exact[7], Tolerance.SCALAR, lossDeviations)
                        .refereed("out.grad_logits", grad.toFloatArray(), exact[8], Tolerance.GRADIENT, null);
                }
                final CaseOutputs out = new CaseOutputs(facts)
                    .tokens("out.log_prob", lp.toFloatArray(), allValid, Tolerance.VALUE)
                    .tokens("out.entropy", ent.toFloatArray(), allValid, Tolerance.VALUE);
                if (r.hasEntropy()) {
                    out.scalar("out.entropy_agg", r.entropyAgg(), Tolerance.SCALAR, lossDeviations);
                }
                return out
                    .scalar("out.pg_loss", r.policy().pgLoss(), Tolerance.SCALAR, lossDeviations)
                    .scalar("out.pg_loss_metric", (float) r.pgLossMetric(), Tolerance.SCALAR, lossDeviations)
                    .scalar("out.kl_loss", r.klLoss(), Tolerance.SCALAR, lossDeviations)
                    .scalar("out.policy_loss", r.policyLoss(), Tolerance.SCALAR, lossDeviations)
                    .scalar("out.loss", r.loss(), Tolerance.SCALAR, lossDeviations)
                    .tensor("out.grad_logits", grad.toFloatArray(), Tolerance.GRADIENT);
            }
        }
    }

    private static final double U = 0x1p-24;

    /**
     * The composition from logits in double, with the engine's bounds and verl's budgets. The vocabulary forward
     * gives the exact log-probs {@code lp*} and entropies with their bounds ({@link LogitsHandler.Exact}); the
     * composition from log-probs ({@link ActorLogProbHandler#exact}) is evaluated twice, on {@code lp*} (the exact
     * value) and on the engine's own log-probs {@code lp^} (the values the engine's loss read: the same bits as
     * {@link Engine#logProbs}), so that the engine's bound is its bound on {@code lp^} plus twice how far
     * {@code lp^} moves the exact value (both evaluated in double, as for float64 inputs). verl's budget adds, to
     * first order, its own log-probs' budget through the slopes ({@code sum abs(d S / d lp_t) b_t}). Then, in float32
     * as the engine composes them ({@link F32Term}): {@code pg = pg_loss - entropy_agg * entropy_coeff},
     * {@code actor/pg_loss = pg * scale} (in double, one rounding), {@code policy_loss = pg + kl_loss * kl_coef},
     * {@code loss = policy_loss * scale}; the gradient w.r.t. the logits through the vocabulary backward with the
     * upstream {@code d loss / d lp} (its error as above) and {@code d loss / d H = -entropy_coeff w scale} (the
     * weight rounded to float32 once).
     *
     * @return {log_prob, entropy, entropy_agg, pg_loss, pg_loss_metric, kl_loss, policy_loss, loss, grad_logits},
     *     or null where a part is not judged (an input not finite, no valid token, a -inf logit).
     */
    static CaseOutputs.Referee[] exact(final LossSpec spec, final float[] logits, final int[] labels,
                                       final float[] lpHat, final TokenBatch batch, final int[] bt, final int vocab) {
        for (final float x : logits) {
            if (!Float.isFinite(x)) {
                return null;
            }
        }
        final int n = lpHat.length;
        final float t = (float) spec.temperature();
        final float[] none = new float[n];
        final LogitsHandler.Exact forward = LogitsHandler.Exact.of(logits, labels, none, none, n, vocab, t);
        final float[] mask = batch.mask().toFloatArray();
        final float[] old = batch.column(Column.OLD_LOG_PROB).toFloatArray();
        final float[] ref = batch.column(Column.REF_LOG_PROB).toFloatArray();
        final float[] adv = batch.column(Column.ADVANTAGES).toFloatArray();
        final double[] lpStar = forward.logProb().exact();
        final CaseOutputs.Referee[] star = ActorLogProbHandler.exact(spec, lpStar, old, ref, adv, mask, bt);
        final CaseOutputs.Referee[] hat = ActorLogProbHandler.exact(spec, F32Term.widen(lpHat), old, ref,
            adv, mask, bt);
        final double[] weights = AggLossHandler.weights(spec.aggregationSpec(), mask, bt[0], bt[1]);
        if (star == null || hat == null || weights == null) {
            return null;
        }
        final CaseOutputs.Referee lpRef = forward.logProb();
        final CaseOutputs.Referee hRef = forward.entropy();
        final CaseOutputs.Referee pg = through(hat[0], star[0], sensitivity(star[4], lpRef));
        final CaseOutputs.Referee kl = through(hat[1], star[1], sensitivity(star[5], lpRef));
        // entropy_agg: agg_loss of the entropies (a double sum rounded once in the engine).
        final CaseOutputs.Referee entAgg = TokenTermBounds.aggregated(hRef, weights, bt[0], bt[1]);
        if (entAgg == null) {
            return null;
        }
        final boolean bonus = spec.entropyCoeff() != 0;
        final F32Term ce = F32Term.constant(spec.entropyCoeff());
        final F32Term ck = F32Term.constant(spec.klLossCoef());
        final F32Term scale = F32Term.constant(spec.microBatchScale());
        final F32Term[][] side = new F32Term[2][];
        for (int k = 0; k < 2; k++) {
            final boolean engine = k == 0;
            final F32Term pgT = pg.term(0, engine);
            final F32Term entT = entAgg.term(0, engine);
            final F32Term klT = kl.term(0, engine);
            final F32Term after = bonus ? pgT.minus(entT.times(ce)) : pgT;
            final F32Term policy = spec.useKlLoss() ? after.plus(klT.times(ck)) : after;
            side[k] = new F32Term[] {after.times(new F32Term(spec.microBatchScale(), 0)), policy, policy.times(scale)};
        }
        final CaseOutputs.Referee[] parts = new CaseOutputs.Referee[3];
        for (int q = 0; q < 3; q++) {
            parts[q] = new CaseOutputs.Referee(new double[] {side[0][q].v()}, new double[] {side[1][q].e()},
                new double[] {side[0][q].e()});
        }
        // The gradient w.r.t. the logits: the vocabulary backward with the composition's upstream values.
        final double[] w1 = new double[n];
        final double[] w2 = new double[n];
        final double[] e1 = new double[n];
        final double[] e2 = new double[n];
        final double[] v1 = new double[n];
        for (int k = 0; k < n; k++) {
            w1[k] = star[3].exactAt(k);
            e1[k] = hat[3].engineBoundAt(k) + 2 * Math.abs(hat[3].exactAt(k) - star[3].exactAt(k));
            v1[k] = 4 * e1[k] + star[3].budgetAt(k);
            if (bonus && mask[k] != 0) {
                w2[k] = -spec.entropyCoeff() * weights[k] * spec.microBatchScale();
                e2[k] = U * Math.abs(w2[k]) + F32Term.TINY;
            }
        }
        final LogitsHandler.Exact backward = LogitsHandler.Exact.of(logits, labels, w1, w2, e1, e2, n, vocab, t);
        final LogitsHandler.Exact verlBackward = LogitsHandler.Exact.of(logits, labels, w1, w2, v1, e2, n, vocab, t);
        final CaseOutputs.Referee grad = new CaseOutputs.Referee(backward.grad().exact(),
            verlBackward.grad().budget(), backward.grad().engineBound());
        return new CaseOutputs.Referee[] {lpRef, hRef,
            entAgg,
            pg, parts[0], kl, parts[1], parts[2], grad};
    }

    /** The engine's referee of an output computed from its own log-probs (see {@link #exact}). */
    private static CaseOutputs.Referee through(final CaseOutputs.Referee onHat, final CaseOutputs.Referee onStar,
                                               final double[] verlExtra) {
        final double[] x = onStar.exact();
        final double[] engine = new double[x.length];
        final double[] verl = new double[x.length];
        for (int i = 0; i < x.length; i++) {
            engine[i] = onHat.engineBoundAt(i) + 2 * Math.abs(onHat.exactAt(i) - x[i]);
            verl[i] = onStar.budgetAt(i) + verlExtra[i];
        }
        return new CaseOutputs.Referee(x, verl, engine);
    }

    /** verl's own log-probs' budget through a scalar's slopes, to first order: {@code sum abs(slope_t) b_t}. */
    private static double[] sensitivity(final CaseOutputs.Referee slopes, final CaseOutputs.Referee lp) {
        double s = 0;
        for (int k = 0; k < slopes.exact().length; k++) {
            s += Math.abs(slopes.exactAt(k)) * lp.budgetAt(k);
        }
        return new double[] {s};
    }

}
