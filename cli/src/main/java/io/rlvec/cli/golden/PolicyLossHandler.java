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
            return new CaseOutputs(facts)
                .scalar("out.pg_loss", r.pgLoss(), lossTolerance(r), lossDeviations)
                .scalar("out.pg_clipfrac", r.pgClipfrac(), Tolerance.SCALAR)
                .scalar("out.ppo_kl", r.ppoKl(), Tolerance.SCALAR)
                .scalar("out.pg_clipfrac_lower", r.pgClipfracLower(), Tolerance.SCALAR)
                .tokens("out.grad_log_prob", grad.toFloatArray(), batch.mask().toFloatArray(), gradTolerance,
                    gradDeviations);
        }
    }
}
