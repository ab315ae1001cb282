package io.rlvec.cli.golden;

import com.fasterxml.jackson.databind.JsonNode;
import io.rlvec.AggMode;
import io.rlvec.Column;
import io.rlvec.ElementType;
import io.rlvec.Engine;
import io.rlvec.LossSpec;
import io.rlvec.OffHeapArray;
import io.rlvec.PolicyLossMode;
import io.rlvec.PolicyLossResult;
import io.rlvec.TokenBatch;
import java.util.EnumMap;
import java.util.Map;

/**
 * {@code compute_policy_loss_bypass_mode}: inputs {@code in.old_log_prob} (the rollout policy's), {@code in.log_prob},
 * {@code in.advantages}, {@code in.response_mask}; params as vanilla's plus {@code policy_loss = {loss_mode,
 * rollout_correction: {loss_type, rollout_is, ...}}}; outputs {@code out.pg_loss}, {@code out.ppo_kl}, for
 * ppo_clip {@code out.pg_clipfrac} and {@code out.pg_clipfrac_lower}, every {@code out.metric.rollout_corr/*}
 * (tolerances as {@link RolloutCorrectionHandler}'s) and {@code out.grad_log_prob}.
 *
 * <p>Float32 cases are judged by error analysis ({@link BypassBounds}): the rollout correction (IS weights,
 * rejection mask) and the loss in double from the same float32 inputs, each term with its float32 bound, then
 * verl's aggregation on the rejection mask. Cases stored in float64 and those {@link BypassBounds#exact} cannot
 * judge keep the fixed tolerances.
 */
public final class BypassPolicyLossHandler implements CaseHandler {
    /** The verl function this handler runs. */
    public static final String FUNCTION = PolicyLossHandler.function(PolicyLossMode.BYPASS_MODE);

    private static final String MASK = "in.response_mask";

    @Override
    public CaseOutputs run(final GoldenCase golden, final Engine engine) {
        final LossSpec spec = spec(golden);
        final Map<Column, String> columns = new EnumMap<>(Column.class);
        columns.put(Column.LOG_PROB, "in.log_prob");
        columns.put(Column.OLD_LOG_PROB, "in.old_log_prob");
        columns.put(Column.ADVANTAGES, "in.advantages");
        try (TokenBatch batch = golden.paddedBatch(MASK, columns);
             OffHeapArray grad = OffHeapArray.allocate(ElementType.F32, batch.numTokens())) {
            final PolicyLossResult r = new PolicyLossResult();
            engine.policyLoss(spec, batch, grad, r);
            final CaseFacts input = golden.facts(MASK, columns.values().toArray(String[]::new));
            // The loss sees the rejection mask: "no valid token" is about the tokens that survive rejection (all
            // rejected: verl's local token count is 0 and its loss 0 / 0).
            final CaseFacts facts = new CaseFacts(r.validTokens(), input.maskedNonFinite());
            final Deviation[] lossDeviations = spec.lossAggMode() == AggMode.TOKEN_MEAN
                ? new Deviation[] {Deviation.NO_VALID_TOKEN}
                : new Deviation[] {Deviation.NO_VALID_TOKEN, Deviation.MASKED_NONFINITE_SEQ_MEAN};
            final float[] mask = batch.mask().toFloatArray();
            final boolean f64 = golden.file().info("in.log_prob").dtype() == io.rlvec.cli.io.Dtype.F64;
            final float[] lp = batch.column(Column.LOG_PROB).toFloatArray();
            final float[] old = batch.column(Column.OLD_LOG_PROB).toFloatArray();
            final PolicyLossHandler.Exact exact = PolicyLossHandler.noValidToken(mask)
                ? PolicyLossHandler.Exact.noValidToken(mask.length) : f64 ? null : BypassBounds.exact(spec, lp, old,
                batch.column(Column.ADVANTAGES).toFloatArray(), mask, golden.matrixShape(MASK));
            final CaseOutputs out = new CaseOutputs(facts);
            scalar(out, "out.pg_loss", r.pgLoss(), exact == null ? null : exact.loss(),
                PolicyLossHandler.lossTolerance(r), lossDeviations);
            scalar(out, "out.ppo_kl", r.ppoKl(), exact == null ? null : exact.ppoKl(), Tolerance.SCALAR);
            if (!spec.bypassReinforce()) {
                scalar(out, "out.pg_clipfrac", r.pgClipfrac(), exact == null ? null : exact.clipfrac(),
                    Tolerance.SCALAR);
                scalar(out, "out.pg_clipfrac_lower", r.pgClipfracLower(), exact == null ? null
                    : exact.clipfracLower(), Tolerance.SCALAR);
            }
            RolloutCorrectionHandler.metrics(out, r.rolloutCorrection(), spec.rolloutCorrection(),
                input.validTokens(), f64 ? Map.of() : RolloutCorrectionBounds.metrics(spec.rolloutCorrection(),
                    F32Term.widen(lp), F32Term.widen(old), mask, golden.matrixShape(MASK)));
            final Deviation[] gradDeviations = {Deviation.NO_VALID_TOKEN, Deviation.MASKED_NONFINITE_GRADIENT};
            return exact == null
                ? out.tokens("out.grad_log_prob", grad.toFloatArray(), mask, Tolerance.GRADIENT, gradDeviations)
                : out.judgedTokens("out.grad_log_prob", grad.toFloatArray(), mask, exact.gradient(),
                    Tolerance.GRADIENT, gradDeviations);
        }
    }

    /** A scalar judged by its referee where it has one, else by the fixed tolerance. */
    private static void scalar(final CaseOutputs out, final String name, final float value,
                               final CaseOutputs.Referee referee, final Tolerance tolerance,
                               final Deviation... allowed) {
        if (referee != null) {
            out.judgedScalar(name, value, referee, tolerance, allowed);
        } else {
            out.scalar(name, value, tolerance, allowed);
        }
    }

    /** @return the case's bypass_mode spec, its rollout correction from {@code policy_loss.rollout_correction}. */
    static LossSpec spec(final GoldenCase golden) {
        final LossSpec.Builder builder = golden.lossSpec("policy_loss").policyLossMode(PolicyLossMode.BYPASS_MODE);
        final JsonNode policyLoss = golden.params().get("policy_loss");
        if (policyLoss != null && policyLoss.isObject()) {
            final JsonNode rc = policyLoss.get("rollout_correction");
            if (rc != null && rc.isObject()) {
                rc.properties().forEach(e -> builder.set(LossSpec.RC + e.getKey(), value(e.getValue())));
                if (!rc.has("loss_type")) {
                    builder.set(LossSpec.RC + "loss_type", "ppo_clip");
                }
                if (rc.size() == 0) {
                    builder.rolloutCorrection(RolloutCorrectionHandler.spec(rc, golden.release()));
                }
            }
        }
        return builder.build();
    }

    private static Object value(final JsonNode n) {
        return n.isNull() ? null : n.isBoolean() ? n.booleanValue() : n.isNumber() ? n.doubleValue() : n.asText();
    }
}
