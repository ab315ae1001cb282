package io.rlvec.cli.golden;

import java.util.EnumMap;
import java.util.Map;

import io.rlvec.AggMode;
import io.rlvec.Column;
import io.rlvec.ElementType;
import io.rlvec.Engine;
import io.rlvec.LossSpec;
import io.rlvec.OffHeapArray;
import io.rlvec.TokenBatch;
import io.rlvec.ValueLossResult;

/**
 * {@code compute_value_loss}: inputs {@code in.vpreds}, {@code in.returns}, {@code in.values},
 * {@code in.response_mask}, params {@code cliprange_value}, the aggregation mode and (2026-08) the global-batch
 * arguments; outputs {@code out.vf_loss}, {@code out.vf_clipfrac} and {@code out.grad_vpreds}
 * (d vf_loss / d vpreds).
 *
 * <p>Float32 cases are judged by error analysis ({@link #exact}); cases stored in float64 keep the fixed
 * tolerances.
 */
public final class ValueLossHandler implements CaseHandler {
    /** The verl function this handler runs. */
    public static final String FUNCTION = "verl.trainer.ppo.core_algos.compute_value_loss";

    private static final String MASK = "in.response_mask";

    @Override
    public CaseOutputs run(final GoldenCase golden, final Engine engine) {
        final LossSpec spec = golden.lossSpec().build();
        final Map<Column, String> columns = new EnumMap<>(Column.class);
        columns.put(Column.VPREDS, "in.vpreds");
        columns.put(Column.RETURNS, "in.returns");
        columns.put(Column.VALUES, "in.values");
        try (TokenBatch batch = golden.paddedBatch(MASK, columns);
             OffHeapArray grad = OffHeapArray.allocate(ElementType.F32, batch.numTokens())) {
            final ValueLossResult r = new ValueLossResult();
            engine.valueLoss(spec, batch, grad, r);

            final CaseFacts facts = golden.facts(MASK, columns.values().toArray(String[]::new));
            final Deviation[] lossDeviations = spec.valueAggregationSpec().lossAggMode() == AggMode.TOKEN_MEAN
                ? new Deviation[] {Deviation.NO_VALID_TOKEN}
                : new Deviation[] {Deviation.NO_VALID_TOKEN, Deviation.MASKED_NONFINITE_SEQ_MEAN};
            final float[] mask = batch.mask().toFloatArray();
            final Exact exact = golden.file().info("in.vpreds").dtype() == io.rlvec.cli.io.Dtype.F64 ? null
                : exact(spec, batch.column(Column.VPREDS).toFloatArray(), batch.column(Column.RETURNS).toFloatArray(),
                    batch.column(Column.VALUES).toFloatArray(), mask, golden.matrixShape(MASK));
            if (exact != null) {
                return new CaseOutputs(facts)
                    .judgedScalar("out.vf_loss", r.vfLoss(), exact.loss, Tolerance.SCALAR, lossDeviations)
                    .judgedScalar("out.vf_clipfrac", r.vfClipfrac(), exact.clipfrac, Tolerance.SCALAR)
                    .judgedTokens("out.grad_vpreds", grad.toFloatArray(), mask, exact.gradient, Tolerance.GRADIENT,
                        Deviation.NO_VALID_TOKEN, Deviation.MASKED_NONFINITE_GRADIENT);
            }
            return new CaseOutputs(facts)
                .scalar("out.vf_loss", r.vfLoss(), Tolerance.SCALAR, lossDeviations)
                .scalar("out.vf_clipfrac", r.vfClipfrac(), Tolerance.SCALAR)
                .tokens("out.grad_vpreds", grad.toFloatArray(), batch.mask().toFloatArray(), Tolerance.GRADIENT,
                    Deviation.NO_VALID_TOKEN, Deviation.MASKED_NONFINITE_GRADIENT);
        }
    }

    /** The judged outputs of one case. */
    record Exact(CaseOutputs.Referee loss, CaseOutputs.Referee clipfrac, CaseOutputs.Referee gradient) {
    }

    /**
     * compute_value_loss in double from the float32 inputs, per valid token (c = cliprange_value as torch rounds
     * it to float32):
     * <pre>
     *   hi = values + c    lo = values - c    vc = max(min(v, hi), lo)
     *   d1 = v - R    d2 = vc - R    x = max(d1^2, d2^2)         vf_loss = 0.5 agg_loss(x)
     * </pre>
     * with each term's float32 bound from its operations ({@link F32Term}: hi and lo one rounding each, d1 and d2
     * one more, the squares one; the clamps and the max add none). vf_clipfrac counts d2^2 &gt; d1^2: never where v
     * lies inside [lo, hi] beyond their bounds (there vc = v and both sides are the same float32 value); ambiguous
     * where v is within hi's or lo's bound of it, or outside where d1^2 and d2^2 are within their bounds of each
     * other. The gradient d x / d v is 2 d1 where d1^2 is selected (inside the clip range, or outside with
     * d1^2 &gt; d2^2), d1 at a tie outside, 0 where the clipped side is selected; times 0.5 w_t. Where a deciding
     * comparison is ambiguous the bound grows by |2 d1| (the jump).
     *
     * @param bt the padded shape (b, t).
     * @return the referees, or null where a valid input is not finite or no token is valid.
     */
    static Exact exact(final LossSpec spec, final float[] vpreds, final float[] returns, final float[] values,
                       final float[] mask, final int[] bt) {
        final double[] weights = AggLossHandler.weights(spec.valueAggregationSpec(), mask, bt[0], bt[1]);
        if (weights == null) {
            return null;
        }
        final F32Term c = F32Term.constant(spec.cliprangeValue());
        final F32Term[] loss = new F32Term[mask.length];
        final F32Term[] grad = new F32Term[mask.length];
        final double[] half = new double[mask.length];
        int n = 0;
        int clipped = 0;
        int ambiguous = 0;
        for (int k = 0; k < mask.length; k++) {
            half[k] = 0.5 * weights[k];
            if (mask[k] == 0) {
                continue;
            }
            if (!Float.isFinite(vpreds[k]) || !Float.isFinite(returns[k]) || !Float.isFinite(values[k])) {
                return null;
            }
            n++;
            final F32Term v = F32Term.of(vpreds[k]);
            final F32Term ret = F32Term.of(returns[k]);
            final F32Term hi = F32Term.of(values[k]).plus(c);
            final F32Term lo = F32Term.of(values[k]).minus(c);
            final F32Term vc = F32Term.max(F32Term.min(v, hi), lo);
            final F32Term d1 = v.minus(ret);
            final F32Term d2 = vc.minus(ret);
            final F32Term l1 = d1.times(d1);
            final F32Term l2 = d2.times(d2);
            loss[k] = F32Term.max(l1, l2);
            final boolean nearEdge = F32Term.ambiguous(v, hi) || F32Term.ambiguous(v, lo);
            final boolean inside = !nearEdge && v.v() > lo.v() && v.v() < hi.v();
            final boolean open = nearEdge || (!inside && F32Term.ambiguous(l1, l2));
            clipped += !inside && l2.v() > l1.v() ? 1 : 0;
            ambiguous += open ? 1 : 0;
            final double share = inside || l1.v() > l2.v() ? 1 : l1.v() == l2.v() ? 0.5 : 0;
            F32Term g = d1.timesExact(2 * share);
            if (open) {
                g = new F32Term(g.v(), g.e() + 2 * (Math.abs(d1.v()) + d1.e()));
            }
            grad[k] = g;
        }
        final CaseOutputs.Referee lossRef = TokenTermBounds.aggregated(loss, half, bt[0], bt[1]);
        final CaseOutputs.Referee gradRef = TokenTermBounds.gradient(grad, half);
        if (lossRef == null || gradRef == null) {
            return null;
        }
        return new Exact(lossRef, TokenTermBounds.fraction(clipped, ambiguous, n), gradRef);
    }
}
