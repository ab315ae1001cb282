package io.rlvec.cli.golden;

import java.util.ArrayList;
import java.util.EnumMap;
import java.util.List;
import java.util.Map;

import io.rlvec.AggMode;
import io.rlvec.Column;
import io.rlvec.ElementType;
import io.rlvec.Engine;
import io.rlvec.LossSpec;
import io.rlvec.OffHeapArray;
import io.rlvec.PolicyLossMode;
import io.rlvec.PolicyLossResult;
import io.rlvec.TokenBatch;

/**
 * {@code compute_policy_loss_<mode>}, one instance per registered mode: inputs {@code in.old_log_prob}, {@code in.log_prob}, {@code in.advantages},
 * {@code in.response_mask} and, when present, {@code in.rollout_is_weights}; outputs {@code out.pg_loss},
 * {@code out.pg_clipfrac}, {@code out.ppo_kl}, {@code out.pg_clipfrac_lower} and {@code out.grad_log_prob}
 * (d pg_loss / d log_prob).
 *
 * <p>vanilla's float32 cases are judged by error analysis ({@link #vanilla}): the harness evaluates verl's
 * expression per token in double from the same float32 inputs, with each term's float32 error bound from its
 * operations ({@link F32Term}), then verl's aggregation ({@link TokenTermBounds}). The other modes, and cases stored
 * in float64, keep the fixed tolerances.
 */
public final class PolicyLossHandler implements CaseHandler {
    /** The verl function of vanilla. */
    public static final String FUNCTION = function(PolicyLossMode.VANILLA);

    private final PolicyLossMode mode;

    /** @param mode the policy-loss mode whose verl function this handler runs. */
    public PolicyLossHandler(final PolicyLossMode mode) {
        this.mode = mode;
    }

    /** @return verl's function of the mode, {@code verl.trainer.ppo.core_algos.compute_policy_loss_<name>}. */
    public static String function(final PolicyLossMode mode) {
        return "verl.trainer.ppo.core_algos.compute_policy_loss_" + mode.verlName();
    }

    private static final String MASK = "in.response_mask";
    private static final String WEIGHTS = "in.rollout_is_weights";

    /**
     * pg_loss is a sum whose A &gt; 0 and A &lt; 0 parts can cancel: float32 summation (verl's) errs by up to about
     * n u times the sum of the magnitudes, not of the result. So the loss is held to relative 1e-5 of itself or,
     * when that is smaller, 1e-5 of |A &gt; 0 part| + |A &lt; 0 part| (the engine's own split of the same loss).
     */
    static Tolerance lossTolerance(final PolicyLossResult r) {
        final double parts = Math.abs((double) r.posContribution()) + Math.abs((double) r.negContribution());
        return Double.isFinite(parts) ? Tolerance.SCALAR.orAbsolute(1e-5 * parts) : Tolerance.SCALAR;
    }

    @Override
    public CaseOutputs run(final GoldenCase golden, final Engine engine) {
        final LossSpec spec = golden.lossSpec().policyLossMode(mode).build();
        final Map<Column, String> columns = new EnumMap<>(Column.class);
        columns.put(Column.LOG_PROB, "in.log_prob");
        columns.put(Column.OLD_LOG_PROB, "in.old_log_prob");
        columns.put(Column.ADVANTAGES, "in.advantages");
        if (golden.has(WEIGHTS)) {
            columns.put(Column.ROLLOUT_IS_WEIGHTS, WEIGHTS);
        }
        try (TokenBatch batch = golden.paddedBatch(MASK, columns);
             OffHeapArray grad = OffHeapArray.allocate(ElementType.F32, batch.numTokens())) {
            final PolicyLossResult r = new PolicyLossResult();
            engine.policyLoss(spec, batch, grad, r);

            final CaseFacts facts = golden.facts(MASK, columns.values().toArray(String[]::new));
            // verl's token-mean goes through masked_sum (torch.where), which stops a masked NaN; the seq-mean
            // modes multiply by the mask and let it through.
            final List<Deviation> lossAllowed = new ArrayList<>(List.of(Deviation.NO_VALID_TOKEN));
            if (spec.aggregationSpec().lossAggMode() != AggMode.TOKEN_MEAN) {
                lossAllowed.add(Deviation.MASKED_NONFINITE_SEQ_MEAN);
            }
            // The modes that leave exp(log-ratio) unclamped (or square it): a finite value where verl overflows.
            final boolean unclamped = mode == PolicyLossMode.CLIP_COV || mode == PolicyLossMode.KL_COV
                || mode == PolicyLossMode.GEO_MEAN || mode == PolicyLossMode.DRO;
            if (unclamped) {
                lossAllowed.add(Deviation.UNCLAMPED_OVERFLOW);
            }
            final Deviation[] lossDeviations = lossAllowed.toArray(Deviation[]::new);
            // gspo and geo_mean sum log-ratios per sequence (sum(x * mask)): a masked NaN poisons verl's whole row.
            final boolean sequenceLevel = mode == PolicyLossMode.GSPO || mode == PolicyLossMode.GEO_MEAN;
            final List<Deviation> gradAllowed = new ArrayList<>(List.of(Deviation.NO_VALID_TOKEN,
                Deviation.MASKED_NONFINITE_GRADIENT));
            if (sequenceLevel) {
                gradAllowed.add(Deviation.MASKED_NONFINITE_SEQUENCE);
            }
            if (unclamped) {
                gradAllowed.add(Deviation.UNCLAMPED_OVERFLOW);
            }
            final Deviation[] gradDeviations = gradAllowed.toArray(Deviation[]::new);
            // geo_mean's gradient is proportional to exp(mean clipped log-ratio) and reaches 1e14 on extreme
            // inputs, where an absolute 1e-5 is below float32 resolution: relative 1e-5, or absolute 1e-5.
            final Tolerance gradTolerance = mode == PolicyLossMode.GEO_MEAN ? Tolerance.SCALAR.orAbsolute(1e-5)
                : Tolerance.GRADIENT;
            final float[] mask = batch.mask().toFloatArray();
            final Exact exact = mode != PolicyLossMode.VANILLA
                || golden.file().info("in.log_prob").dtype() == io.rlvec.cli.io.Dtype.F64 ? null
                : vanilla(spec, batch.column(Column.LOG_PROB).toFloatArray(),
                    batch.column(Column.OLD_LOG_PROB).toFloatArray(), batch.column(Column.ADVANTAGES).toFloatArray(),
                    golden.has(WEIGHTS) ? batch.column(Column.ROLLOUT_IS_WEIGHTS).toFloatArray() : null, mask,
                    golden.matrixShape(MASK));
            if (exact != null) {
                return new CaseOutputs(facts)
                    .judgedScalar("out.pg_loss", r.pgLoss(), exact.loss, lossTolerance(r), lossDeviations)
                    .judgedScalar("out.pg_clipfrac", r.pgClipfrac(), exact.clipfrac, Tolerance.SCALAR)
                    .judgedScalar("out.ppo_kl", r.ppoKl(), exact.ppoKl, Tolerance.SCALAR)
                    .judgedScalar("out.pg_clipfrac_lower", r.pgClipfracLower(), exact.clipfracLower,
                        Tolerance.SCALAR)
                    .judgedTokens("out.grad_log_prob", grad.toFloatArray(), mask, exact.gradient, gradTolerance,
                        gradDeviations);
            }
            return new CaseOutputs(facts)
                .scalar("out.pg_loss", r.pgLoss(), lossTolerance(r), lossDeviations)
                .scalar("out.pg_clipfrac", r.pgClipfrac(), Tolerance.SCALAR)
                .scalar("out.ppo_kl", r.ppoKl(), Tolerance.SCALAR)
                .scalar("out.pg_clipfrac_lower", r.pgClipfracLower(), Tolerance.SCALAR)
                .tokens("out.grad_log_prob", grad.toFloatArray(), batch.mask().toFloatArray(), gradTolerance,
                    gradDeviations);
        }
    }

    /** The judged outputs of one case. */
    record Exact(CaseOutputs.Referee loss, CaseOutputs.Referee clipfrac, CaseOutputs.Referee ppoKl,
                 CaseOutputs.Referee clipfracLower, CaseOutputs.Referee gradient) {
    }

    /**
     * vanilla in double from the float32 inputs, per valid token (lo = 1 - clip_ratio_low, hi = 1 + clip_ratio_high
     * and c = clip_ratio_c as torch rounds them to float32):
     * <pre>
     *   nak = clamp(lp - old, -20, 20)      r = exp(nak)
     *   l1 = -A r    l2 = -A clamp(r, lo, hi)    m = max(l1, l2)    x = (A &lt; 0 ? min(-A c, m) : m) [* w]
     * </pre>
     * with each term's float32 bound from its operations ({@link F32Term}); pg_loss is verl's agg_loss of x, ppo_kl
     * the token mean of -nak. pg_clipfrac counts l2 &gt; l1 (A &gt; 0: r &lt; lo; A &lt; 0: r &gt; hi), pg_clipfrac_lower
     * A &lt; 0 and m &gt; -A c (r &gt; c); a token counts as ambiguous where r is within its bound (plus the product's
     * rounding, 2u of the boundary) of the boundary that decides it. The gradient d x / d lp is
     * {@code -A r [w]} on the unclipped branch (l1 selected, -20 &lt; lp - old &lt; 20, and for A &lt; 0 m &lt; -A c; half of it
     * at a tie m = -A c) and 0 on a clipped one; where a deciding comparison is ambiguous float32 may take either
     * branch, so the bound there grows by |A r w| (the jump).
     *
     * @param w  the rollout IS weights, or null.
     * @param bt the padded shape (b, t).
     * @return the referees, or null where a valid input is not finite or no token is valid.
     */
    static Exact vanilla(final LossSpec spec, final float[] lp, final float[] old, final float[] adv,
                         final float[] w, final float[] mask, final int[] bt) {
        final LossSpec agg = spec.aggregationSpec();
        final double[] weights = AggLossHandler.weights(agg, mask, bt[0], bt[1]);
        if (weights == null) {
            return null;
        }
        final double lo = (float) (1.0 - spec.clipRatioLow());
        final double hi = (float) (1.0 + spec.clipRatioHigh());
        final double c = (float) spec.clipRatioC();
        final double slack = 2 * F32Term.U;
        final F32Term[] loss = new F32Term[mask.length];
        final F32Term[] kl = new F32Term[mask.length];
        final F32Term[] grad = new F32Term[mask.length];
        int n = 0;
        int clipped = 0;
        int clippedAmbiguous = 0;
        int lower = 0;
        int lowerAmbiguous = 0;
        for (int k = 0; k < mask.length; k++) {
            if (mask[k] == 0) {
                continue;
            }
            if (!Float.isFinite(lp[k]) || !Float.isFinite(old[k]) || !Float.isFinite(adv[k])
                || (w != null && !Float.isFinite(w[k]))) {
                return null;
            }
            n++;
            final float a = adv[k];
            final F32Term delta = F32Term.of(lp[k]).minus(F32Term.of(old[k]));
            final F32Term nak = delta.clamp(-20, 20);
            final F32Term ratio = nak.exp();
            final F32Term negA = F32Term.of(a).negate();
            final F32Term l1 = negA.times(ratio);
            final F32Term l2 = negA.times(ratio.clamp(lo, hi));
            final F32Term m = F32Term.max(l1, l2);
            final F32Term l3 = negA.times(F32Term.constant(c));
            F32Term x = a < 0 ? F32Term.min(l3, m) : m;
            final F32Term weight = w != null ? F32Term.of(w[k]) : null;
            if (weight != null) {
                x = x.times(weight);
            }
            loss[k] = x;
            kl[k] = nak.negate();

            // The boundary that decides clipping: lo for A > 0, hi for A < 0 (A = 0: l1 = l2 = 0, never counted).
            final double boundary = a > 0 ? lo : hi;
            final boolean clipAmbiguous = a != 0 && near(ratio, boundary, slack);
            final boolean dualAmbiguous = a < 0 && near(ratio, c, slack);
            final boolean kept = !F32Term.ambiguous(delta, new F32Term(-20, 0))
                && !F32Term.ambiguous(delta, new F32Term(20, 0));
            clipped += l2.v() > l1.v() ? 1 : 0;
            clippedAmbiguous += clipAmbiguous ? 1 : 0;
            lower += a < 0 && m.v() > l3.v() ? 1 : 0;
            lowerAmbiguous += dualAmbiguous ? 1 : 0;

            // d x / d ratio: -A on the selected unclipped branch, else 0; times d ratio / d lp = ratio.
            double share = l1.v() >= l2.v() ? 1 : 0;
            if (a < 0) {
                share *= m.v() < l3.v() ? 1 : m.v() == l3.v() ? 0.5 : 0;
            }
            if (delta.v() < -20 || delta.v() > 20) {
                share = 0;
            }
            F32Term g = negA.times(ratio).timesExact(share);
            if (weight != null) {
                g = g.times(weight);
            }
            if (clipAmbiguous || dualAmbiguous || !kept) {
                final double jump = Math.abs((double) a * ratio.v() * (w != null ? w[k] : 1)) * (1 + 8 * F32Term.U)
                    + l1.e() * (w != null ? Math.abs(w[k]) : 1);
                g = new F32Term(g.v(), g.e() + jump);
            }
            grad[k] = g;
        }
        final CaseOutputs.Referee lossRef = TokenTermBounds.aggregated(loss, weights, bt[0], bt[1]);
        final CaseOutputs.Referee klRef = TokenTermBounds.tokenMean(kl, bt[0], bt[1]);
        final CaseOutputs.Referee gradRef = TokenTermBounds.gradient(grad, weights);
        if (lossRef == null || klRef == null || gradRef == null) {
            return null;
        }
        return new Exact(lossRef, TokenTermBounds.fraction(clipped, clippedAmbiguous, n), klRef,
            TokenTermBounds.fraction(lower, lowerAmbiguous, n), gradRef);
    }

    /** @return whether float32 may put {@code x} on either side of the float32 constant {@code c}. */
    static boolean near(final F32Term x, final double c, final double slack) {
        return Math.abs(x.v() - c) <= x.e() + slack * Math.abs(c);
    }
}
