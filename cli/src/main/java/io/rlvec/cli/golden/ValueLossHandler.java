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
            return new CaseOutputs(facts)
                .scalar("out.vf_loss", r.vfLoss(), Tolerance.SCALAR, lossDeviations)
                .scalar("out.vf_clipfrac", r.vfClipfrac(), Tolerance.SCALAR)
                .tokens("out.grad_vpreds", grad.toFloatArray(), batch.mask().toFloatArray(), Tolerance.GRADIENT,
                    Deviation.NO_VALID_TOKEN, Deviation.MASKED_NONFINITE_GRADIENT);
        }
    }
}
