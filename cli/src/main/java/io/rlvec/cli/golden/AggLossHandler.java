package io.rlvec.cli.golden;

import java.util.Arrays;
import java.util.Map;

import io.rlvec.AggMode;
import io.rlvec.AggResult;
import io.rlvec.ElementType;
import io.rlvec.Engine;
import io.rlvec.LossSpec;
import io.rlvec.OffHeapArray;
import io.rlvec.TokenBatch;

/**
 * {@code agg_loss}: inputs {@code in.loss_mat}, {@code in.loss_mask} and the aggregation params (mode and the
 * global-batch arguments); outputs {@code out.loss} and {@code out.grad_loss_mat} (d loss / d loss_mat).
 */
public final class AggLossHandler implements CaseHandler {
    /** The verl function this handler runs. */
    public static final String FUNCTION = "verl.trainer.ppo.core_algos.agg_loss";

    private static final String VALUES = "in.loss_mat";
    private static final String MASK = "in.loss_mask";

    @Override
    public CaseOutputs run(final GoldenCase golden, final Engine engine) {
        final LossSpec spec = golden.lossSpec().build();
        final int[] values = golden.matrixShape(VALUES);
        final int[] mask = golden.matrixShape(MASK);
        if (!Arrays.equals(values, mask)) {
            throw new IllegalArgumentException(VALUES + " has shape " + Arrays.toString(values) + ", but " + MASK
                + " has " + Arrays.toString(mask));
        }
        try (TokenBatch batch = golden.paddedBatch(MASK, Map.of());
             OffHeapArray grad = OffHeapArray.allocate(ElementType.F32, batch.numTokens())) {
            final AggResult r = new AggResult();
            engine.aggLoss(spec, batch, golden.float32(VALUES), grad, r);

            final CaseFacts facts = golden.facts(MASK, VALUES);
            final Deviation[] lossDeviations = spec.lossAggMode() == AggMode.TOKEN_MEAN
                ? new Deviation[] {Deviation.NO_VALID_TOKEN}
                : new Deviation[] {Deviation.NO_VALID_TOKEN, Deviation.MASKED_NONFINITE_SEQ_MEAN};
            return new CaseOutputs(facts)
                .scalar("out.loss", r.loss(), Tolerance.SCALAR, lossDeviations)
                .tokens("out.grad_loss_mat", grad.toFloatArray(), batch.mask().toFloatArray(), Tolerance.GRADIENT,
                    Deviation.NO_VALID_TOKEN, Deviation.MASKED_NONFINITE_GRADIENT);
        }
    }
}
