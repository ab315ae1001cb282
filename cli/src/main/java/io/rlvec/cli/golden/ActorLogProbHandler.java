package io.rlvec.cli.golden;

import java.util.EnumMap;
import java.util.Map;

import io.rlvec.ActorLossResult;
import io.rlvec.AggMode;
import io.rlvec.Column;
import io.rlvec.ElementType;
import io.rlvec.Engine;
import io.rlvec.KlPenalty;
import io.rlvec.LossSpec;
import io.rlvec.OffHeapArray;
import io.rlvec.PolicyLossMode;
import io.rlvec.TokenBatch;

/**
 * dp_actor's composition from per-token log-probs ({@code update_policy}: vanilla pg_loss + kl_loss * kl_loss_coef,
 * times the micro-batch scale), through {@link Engine#actorLoss(LossSpec, TokenBatch, OffHeapArray, ActorLossResult)}:
 * inputs {@code in.old_log_prob}, {@code in.log_prob}, {@code in.ref_log_prob}, {@code in.advantages},
 * {@code in.response_mask}; outputs {@code out.pg_loss}, {@code out.kl_loss}, {@code out.loss} and
 * {@code out.grad_log_prob} (d loss / d log_prob).
 *
 * <p>Params: the policy-loss and KL keys under verl's names; the KL loss is on (the case has {@code out.kl_loss}).
 * {@code loss_scale_factor} is dp_actor's micro-batch loss scale here (the golden harness's name for it), which
 * {@link LossSpec} calls {@code micro_batch_scale}; it is not agg_loss's global-batch {@code loss_scale_factor}.
 */
public final class ActorLogProbHandler implements CaseHandler {
    /** The verl function this handler runs. */
    public static final String FUNCTION = "dp_actor composition: vanilla pg_loss + kl_loss(low_var_kl)*coef";

    private static final String MASK = "in.response_mask";

    @Override
    public CaseOutputs run(final GoldenCase golden, final Engine engine) {
        final LossSpec spec = actorSpec(golden);
        final Map<Column, String> columns = new EnumMap<>(Column.class);
        columns.put(Column.LOG_PROB, "in.log_prob");
        columns.put(Column.OLD_LOG_PROB, "in.old_log_prob");
        columns.put(Column.REF_LOG_PROB, "in.ref_log_prob");
        columns.put(Column.ADVANTAGES, "in.advantages");
        try (TokenBatch batch = golden.paddedBatch(MASK, columns);
             OffHeapArray grad = OffHeapArray.allocate(ElementType.F32, batch.numTokens())) {
            final ActorLossResult r = new ActorLossResult();
            engine.actorLoss(spec, batch, grad, r);

            final CaseFacts facts = golden.facts(MASK, columns.values().toArray(String[]::new));
            final Deviation[] lossDeviations = lossDeviations(spec);
            final float[] mask = batch.mask().toFloatArray();
            final CaseOutputs.Referee[] exact = exact(spec,
                F32Term.widen(batch.column(Column.LOG_PROB).toFloatArray()),
                batch.column(Column.OLD_LOG_PROB).toFloatArray(), batch.column(Column.REF_LOG_PROB).toFloatArray(),
                batch.column(Column.ADVANTAGES).toFloatArray(), mask, golden.matrixShape(MASK));
            if (exact != null) {
                return new CaseOutputs(facts)
                    .judgedScalar("out.pg_loss", r.pgLoss(), exact[0], Tolerance.SCALAR, lossDeviations)
                    .judgedScalar("out.kl_loss", r.klLoss(), exact[1], Tolerance.SCALAR, lossDeviations)
                    .judgedScalar("out.loss", r.loss(), exact[2], Tolerance.SCALAR, lossDeviations)
                    .judgedTokens("out.grad_log_prob", grad.toFloatArray(), mask, exact[3], Tolerance.GRADIENT,
                        Deviation.NO_VALID_TOKEN, Deviation.MASKED_NONFINITE_GRADIENT);
            }
            return new CaseOutputs(facts)
                .scalar("out.pg_loss", r.pgLoss(), Tolerance.SCALAR, lossDeviations)
                .scalar("out.kl_loss", r.klLoss(), Tolerance.SCALAR, lossDeviations)
                .scalar("out.loss", r.loss(), Tolerance.SCALAR, lossDeviations)
                .tokens("out.grad_log_prob", grad.toFloatArray(), batch.mask().toFloatArray(), Tolerance.GRADIENT,
                    Deviation.NO_VALID_TOKEN, Deviation.MASKED_NONFINITE_GRADIENT);
        }
    }

    /**
     * dp_actor's composition in double from the float32 inputs, with the engine's bounds and verl's budgets:
     * pg_loss and its gradient as vanilla's ({@link PolicyLossHandler#exact}); kl_loss = agg_loss of the per-token
     * kld ({@link KlBounds#of}) with the same aggregation weights (a double sum rounded once in the engine, float32
     * sums in verl); loss = (pg_loss + kl_loss * coef) * micro_batch_scale in float32 ({@link F32Term}); the
     * gradient per token: (d pg_loss / d lp) * scale + (d kld / d lp) * w, in float32, with w = weight * coef *
     * scale rounded to float32 once (the engine's {@code ActorComposition} weights).
     *
     * @param lp the log-probs (the float32 inputs; from logits, the exact or the engine's own, see
     *           {@link ActorLogitsHandler}).
     * @return {pg_loss, kl_loss, loss, gradient, d pg_loss / d lp, d kl_loss / d lp (exact values only)}, or null
     *     where the case is not judged (an input not finite, no valid token, a token vanilla cannot judge).
     */
    static CaseOutputs.Referee[] exact(final LossSpec spec, final double[] lp, final float[] old, final float[] ref,
                                       final float[] adv, final float[] mask, final int[] bt) {
        for (int k = 0; k < mask.length; k++) {
            if (mask[k] != 0 && !Float.isFinite(ref[k])) {
                return null;
            }
        }
        final PolicyLossHandler.Rule rule = PolicyLossHandler.rule(spec);
        final double[] weights = AggLossHandler.weights(spec.aggregationSpec(), mask, bt[0], bt[1]);
        if (rule == null || weights == null) {
            return null;
        }
        final PolicyLossHandler.Exact pg = PolicyLossHandler.exact(spec, rule, lp,
            F32Term.widen(old), F32Term.widen(adv), null, mask, bt);
        if (pg == null || pg.loss() == null || pg.gradient() == null) {
            return null;
        }
        final KlPenalty kl = spec.klLossType();
        final double[] lpd = lp;
        final double[] refd = F32Term.widen(ref);
        final CaseOutputs.Referee kld = KlBounds.of(kl, lpd, refd);
        final CaseOutputs.Referee klAgg = TokenTermBounds.aggregated(kld, weights, bt[0], bt[1]);
        if (klAgg == null) {
            return null;
        }
        final F32Term coef = F32Term.constant(spec.klLossCoef());
        final F32Term scale = F32Term.constant(spec.microBatchScale());
        final F32Term lossE = pg.loss().term(0, true).plus(klAgg.term(0, true).times(coef)).times(scale);
        final F32Term lossV = pg.loss().term(0, false).plus(klAgg.term(0, false).times(coef)).times(scale);
        final double[] g = new double[mask.length];
        final double[] ge = new double[mask.length];
        final double[] gv = new double[mask.length];
        final double scaleExact = spec.microBatchScale();
        for (int k = 0; k < mask.length; k++) {
            if (mask[k] == 0) {
                continue; // exactly 0 on both sides (the engine's weights and policy gradient are 0 there)
            }
            final double w = weights[k] * spec.klLossCoef() * scaleExact;
            final F32Term local = KlBounds.localGradient(kl, lpd[k], refd[k]);
            final F32Term wTerm = new F32Term(w, U * Math.abs(w) + F32Term.TINY);
            final F32Term pgScale = new F32Term(scaleExact, Math.abs((float) scaleExact - scaleExact));
            final F32Term sum = pg.gradient().term(k, true).times(pgScale)
                .plus(local.times(wTerm));
            g[k] = sum.v();
            ge[k] = sum.e();
            gv[k] = 4 * sum.e() + pg.gradient().budgetAt(k) * scaleExact
                + 8 * U * Math.abs(sum.v());
        }
        final double[] klSlope = new double[mask.length];
        for (int k = 0; k < mask.length; k++) {
            klSlope[k] = weights[k] == 0 ? 0 : weights[k] * KlBounds.localGradient(kl, lpd[k], refd[k]).v();
        }
        return new CaseOutputs.Referee[] {pg.loss(),
            klAgg,
            new CaseOutputs.Referee(new double[] {lossE.v()}, new double[] {lossV.e()}, new double[] {lossE.e()}),
            new CaseOutputs.Referee(g, gv, ge), pg.gradient(),
            new CaseOutputs.Referee(klSlope, new double[mask.length], new double[mask.length])};
    }

    private static final double U = 0x1p-24;

    /**
     * The spec of an actor-composition case: vanilla policy loss, the KL loss on, every param under its verl name,
     * and the param {@code loss_scale_factor} as dp_actor's micro-batch scale.
     */
    static LossSpec actorSpec(final GoldenCase golden) {
        final LossSpec.Builder b = golden.lossSpec("loss_scale_factor").policyLossMode(PolicyLossMode.VANILLA)
            .useKlLoss(true);
        if (golden.params().hasNonNull("loss_scale_factor")) {
            if (!golden.params().get("loss_scale_factor").isNumber()) {
                throw new IllegalArgumentException("loss_scale_factor (dp_actor's micro-batch scale) must be a "
                    + "number, got " + golden.params().get("loss_scale_factor"));
            }
            b.microBatchScale(golden.params().get("loss_scale_factor").doubleValue());
        }
        return b.build();
    }

    /**
     * verl's token-mean goes through masked_sum (torch.where), which stops a masked NaN; the seq-mean modes
     * multiply by the mask and let it through.
     */
    static Deviation[] lossDeviations(final LossSpec spec) {
        return spec.lossAggMode() == AggMode.TOKEN_MEAN
            ? new Deviation[] {Deviation.NO_VALID_TOKEN}
            : new Deviation[] {Deviation.NO_VALID_TOKEN, Deviation.MASKED_NONFINITE_SEQ_MEAN};
    }
}
