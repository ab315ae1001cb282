package io.rlvec.cli.golden;

import io.rlvec.Column;
import io.rlvec.ElementType;
import io.rlvec.Engine;
import io.rlvec.KlController;
import io.rlvec.KlPenalty;
import io.rlvec.OffHeapArray;
import io.rlvec.TokenBatch;
import java.util.LinkedHashMap;
import java.util.Map;

/**
 * The in-reward KL penalty: verl's {@code ray_trainer.apply_kl_penalty} (inputs {@code in.token_level_scores},
 * {@code in.old_log_probs}, {@code in.ref_log_prob}, {@code in.response_mask}; params {@code kl_penalty},
 * {@code kl_ctrl} and the controller's {@code kl_coef} / {@code init_kl_coef}, {@code target_kl},
 * {@code horizon}; outputs {@code out.token_level_rewards}, {@code out.current_kl}, {@code out.beta_used},
 * {@code out.kl_coef_after_update}, the controller updated with n_steps = the number of sequences) and
 * {@code core_algos.compute_rewards} (scores - (old - ref) * kl_ratio, no mask: the k1 penalty with beta =
 * kl_ratio over an all-valid batch).
 *
 * <p>Judged by derived bounds ({@link KlBounds#rewardPenalty}): the rewards through their float32 operations,
 * current_kl through the rows' means (float32 in verl, double in the engine), the coefficients as double
 * arithmetic compared as float32 (the adaptive update carrying current_kl's bound through its slope). Where an
 * input is not finite, relative 1e-5 with an absolute floor of 1e-6 on the rewards.
 */
public final class RewardKlHandler implements CaseHandler {
    /** verl's apply_kl_penalty. */
    public static final String APPLY = "verl.trainer.ppo.ray_trainer.apply_kl_penalty";
    /** verl's compute_rewards. */
    public static final String COMPUTE_REWARDS = "verl.trainer.ppo.core_algos.compute_rewards";

    private final boolean apply;

    /** @param apply true for apply_kl_penalty, false for compute_rewards. */
    public RewardKlHandler(final boolean apply) {
        this.apply = apply;
    }

    @Override
    public CaseOutputs run(final GoldenCase golden, final Engine engine) {
        final String scores = "in.token_level_scores";
        final int[] bt = golden.matrixShape(scores);
        final int n = bt[0] * bt[1];
        final Map<Column, String> columns = new LinkedHashMap<>();
        columns.put(Column.TOKEN_LEVEL_SCORES, scores);
        columns.put(Column.OLD_LOG_PROB, apply ? "in.old_log_probs" : "in.old_log_prob");
        columns.put(Column.REF_LOG_PROB, "in.ref_log_prob");
        final KlPenalty kl;
        final KlController ctrl;
        if (apply) {
            kl = KlPenalty.fromVerl(golden.params().path("kl_penalty").asText());
            final String type = golden.params().path("kl_ctrl").asText();
            ctrl = "adaptive".equals(type)
                ? KlController.adaptive(golden.params().path("init_kl_coef").asDouble(),
                    golden.params().path("target_kl").asDouble(), golden.params().path("horizon").asDouble())
                : KlController.fromVerl(type, golden.params().path("kl_coef").asDouble(), Double.NaN, Double.NaN);
        } else {
            kl = KlPenalty.fromVerl("kl");
            ctrl = KlController.fixed(golden.params().path("kl_ratio").asDouble());
        }
        try (TokenBatch batch = apply ? golden.paddedBatch("in.response_mask", columns) : allValid(golden, bt, columns);
             OffHeapArray kld = OffHeapArray.allocate(ElementType.F32, n);
             OffHeapArray rewards = OffHeapArray.allocate(ElementType.F32, n)) {
            final double beta = ctrl.value();
            final double currentKl = engine.rewardKlPenalty(kl, beta, batch, kld, rewards);
            ctrl.update(currentKl, batch.numSequences());
            final Tolerance tolerance = Tolerance.VALUE.orAbsolute(1e-6);
            final CaseOutputs out = new CaseOutputs(apply ? golden.facts("in.response_mask", scores)
                : new CaseFacts(n, false));
            final float[] mask = batch.mask().toFloatArray();
            final CaseOutputs.Referee[] exact = KlBounds.rewardPenalty(kl, beta,
                F32Term.widen(golden.float32(scores).toFloatArray()),
                F32Term.widen(batch.column(Column.OLD_LOG_PROB).toFloatArray()),
                F32Term.widen(batch.column(Column.REF_LOG_PROB).toFloatArray()), F32Term.widen(mask),
                bt[0], bt[1]);
            if (exact != null) {
                out.judgedTokens("out.token_level_rewards", rewards.toFloatArray(), mask, exact[0], tolerance);
            } else {
                out.tokens("out.token_level_rewards", rewards.toFloatArray(), mask, tolerance);
            }
            if (apply) {
                if (exact != null) {
                    out.judgedScalar("out.current_kl", (float) currentKl, exact[1], Tolerance.SCALAR);
                } else {
                    out.scalar("out.current_kl", (float) currentKl, Tolerance.SCALAR);
                }
                // The coefficients: plain double arithmetic on both sides, compared as float32 (half an ulp); the
                // adaptive update moves with current_kl by value * n_steps / (horizon * target) inside its clip.
                out.judgedScalar("out.beta_used", (float) beta, exactScalar(beta, 0), Tolerance.SCALAR);
                final double klErr = exact == null ? Double.POSITIVE_INFINITY : exact[1].engineBoundAt(0);
                final double verlKlErr = exact == null ? Double.POSITIVE_INFINITY : exact[1].budgetAt(0);
                final double target = golden.params().path("target_kl").asDouble();
                final double clipped = Math.abs(currentKl / target - 1) - 0.2;
                final double slope = !ctrl.isAdaptive() || clipped > Math.max(klErr, verlKlErr) / target ? 0
                    : beta * batch.numSequences() / (golden.params().path("horizon").asDouble() * target);
                out.judgedScalar("out.kl_coef_after_update", (float) ctrl.value(),
                    new CaseOutputs.Referee(new double[] {ctrl.value()},
                        new double[] {slope * verlKlErr + 0.5 * Math.ulp((float) ctrl.value())},
                        new double[] {slope * klErr + 0.5 * Math.ulp((float) ctrl.value())}), Tolerance.SCALAR);
            }
            return out;
        }
    }

    /** A double value both sides compute alike, compared as float32: half an ulp each, plus {@code slack}. */
    private static CaseOutputs.Referee exactScalar(final double v, final double slack) {
        final double half = 0.5 * Math.ulp((float) v) + slack;
        return new CaseOutputs.Referee(new double[] {v}, new double[] {half}, new double[] {half});
    }

    private static TokenBatch allValid(final GoldenCase golden, final int[] bt, final Map<Column, String> columns) {
        final TokenBatch.Builder b = TokenBatch.padded(bt[0], bt[1]);
        for (final Map.Entry<Column, String> e : columns.entrySet()) {
            b.column(e.getKey(), golden.float32(e.getValue()));
        }
        return b.build();
    }
}
