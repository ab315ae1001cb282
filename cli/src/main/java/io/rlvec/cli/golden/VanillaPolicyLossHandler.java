package io.rlvec.cli.golden;

import java.util.EnumMap;
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
 * {@code compute_policy_loss_vanilla}: inputs {@code in.old_log_prob}, {@code in.log_prob}, {@code in.advantages},
 * {@code in.response_mask} and, when present, {@code in.rollout_is_weights}; outputs {@code out.pg_loss},
 * {@code out.pg_clipfrac}, {@code out.ppo_kl}, {@code out.pg_clipfrac_lower} and {@code out.grad_log_prob}
 * (d pg_loss / d log_prob).
 */
public final class VanillaPolicyLossHandler implements CaseHandler {
    /** The verl function this handler runs. */
    public static final String FUNCTION = "verl.trainer.ppo.core_algos.compute_policy_loss_vanilla";

    private static final String MASK = "in.response_mask";
    private static final String WEIGHTS = "in.rollout_is_weights";

    @Override
    public CaseOutputs run(final GoldenCase golden, final Engine engine) {
        final LossSpec spec = golden.lossSpec().policyLossMode(PolicyLossMode.VANILLA).build();
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
            final Deviation[] lossDeviations = spec.lossAggMode() == AggMode.TOKEN_MEAN
                ? new Deviation[] {Deviation.NO_VALID_TOKEN}
                : new Deviation[] {Deviation.NO_VALID_TOKEN, Deviation.MASKED_NONFINITE_SEQ_MEAN};
            return new CaseOutputs(facts)
                .scalar("out.pg_loss", r.pgLoss(), Tolerance.SCALAR, lossDeviations)
                .scalar("out.pg_clipfrac", r.pgClipfrac(), Tolerance.SCALAR)
                .scalar("out.ppo_kl", r.ppoKl(), Tolerance.SCALAR)
                .scalar("out.pg_clipfrac_lower", r.pgClipfracLower(), Tolerance.SCALAR)
                .tokens("out.grad_log_prob", grad.toFloatArray(), batch.mask().toFloatArray(), Tolerance.GRADIENT,
                    Deviation.NO_VALID_TOKEN, Deviation.MASKED_NONFINITE_GRADIENT);
        }
    }
}
