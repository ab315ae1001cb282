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
}
