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
 * <p>Tolerance: relative 1e-5 with an absolute floor of 1e-6 on the rewards, whose kld term is of the order of
 * the log-prob differences times beta; current_kl and the coefficients relative 1e-5 (verl's per-row means are
 * float32, the engine's double).
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
            out.tokens("out.token_level_rewards", rewards.toFloatArray(), batch.mask().toFloatArray(), tolerance);
            if (apply) {
                out.scalar("out.current_kl", (float) currentKl, Tolerance.SCALAR)
                    .scalar("out.beta_used", (float) beta, Tolerance.SCALAR)
                    .scalar("out.kl_coef_after_update", (float) ctrl.value(), Tolerance.SCALAR);
            }
            return out;
        }
    }

    private static TokenBatch allValid(final GoldenCase golden, final int[] bt, final Map<Column, String> columns) {
        final TokenBatch.Builder b = TokenBatch.padded(bt[0], bt[1]);
        for (final Map.Entry<Column, String> e : columns.entrySet()) {
            b.column(e.getKey(), golden.float32(e.getValue()));
        }
        return b.build();
    }
}
