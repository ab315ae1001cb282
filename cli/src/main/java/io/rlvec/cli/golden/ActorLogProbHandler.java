package io.rlvec.cli.golden;

import java.util.EnumMap;
import java.util.Map;

import io.rlvec.ActorLossResult;
import io.rlvec.AggMode;
import io.rlvec.Column;
import io.rlvec.ElementType;
import io.rlvec.Engine;
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
            return new CaseOutputs(facts)
                .scalar("out.pg_loss", r.pgLoss(), Tolerance.SCALAR, lossDeviations)
                .scalar("out.kl_loss", r.klLoss(), Tolerance.SCALAR, lossDeviations)
                .scalar("out.loss", r.loss(), Tolerance.SCALAR, lossDeviations)
                .tokens("out.grad_log_prob", grad.toFloatArray(), batch.mask().toFloatArray(), Tolerance.GRADIENT,
                    Deviation.NO_VALID_TOKEN, Deviation.MASKED_NONFINITE_GRADIENT);
        }
    }

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
