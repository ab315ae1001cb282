package io.rlvec.cli.golden;

import io.rlvec.LossSpec;
import io.rlvec.PolicyLossMode;
import io.rlvec.RolloutCorrectionSpec;

/**
 * bypass_mode ({@code compute_policy_loss_bypass_mode}) in double from the float32 inputs, every value with its
 * float32 error bound ({@link F32Term}): the rollout correction of the training log-prob {@code lp} against the
 * rollout's {@code old} ({@link RolloutCorrectionBounds}: the rejection mask, the IS weights), then the loss on the
 * rejection mask through {@link PolicyLossHandler#exact}:
 * <pre>
 *   ppo_clip:  vanilla's rule ({@link PolicyLossHandler#rule}) on the rejection mask, no IS weights (verl computes
 *              them for the metrics only)
 *   reinforce: gpg's rule -lp A, times the applied IS weight w where IS is on (stop-gradient: d / d lp = -A w);
 *              ppo_kl = mean(old - lp), unclamped
 * </pre>
 * The aggregation weights are verl's agg_loss weights of the rejection mask (the harness sets no
 * batch_num_tokens). Where a rejection is open the token's loss and gradient terms may be the term or 0 (widened
 * by the whole term); the case is judged only where the other tokens' aggregation weights do not depend on it (the
 * weights with every open token kept equal those with every open token rejected, as under token-sum), and then
 * ppo_kl and the fractions, whose denominator is open, keep the fixed tolerances.
 */
final class BypassBounds {
    private BypassBounds() {
    }

    /**
     * @param spec a bypass_mode spec with its rollout correction.
     * @param bt   the padded shape (b, t).
     * @return the referees ({@link PolicyLossHandler.Exact}, ppo_kl and the fractions null where a rejection is
     *         open), or null where the case keeps the fixed tolerances: a valid input not finite, an open
     *         rejection that moves
     *         other tokens' aggregation weights, a batch-normalisation mean within rounding of 1e-8.
     */
    static PolicyLossHandler.Exact exact(final LossSpec spec, final float[] lp, final float[] old,
                                         final float[] adv, final float[] mask, final int[] bt) {
        final RolloutCorrectionSpec rc = spec.rolloutCorrection();
        final boolean reinforce = spec.bypassReinforce();
        final boolean weighted = reinforce && rc.hasIs();
        final F32Term[] lr = RolloutCorrectionBounds.logRatio(F32Term.widen(lp), F32Term.widen(old),
            mask);
        if (lr == null) {
            return null;
        }
        // Masked values are not read: they reach verl's row sums only as x * 0, which is 0 for a finite x and NaN
        // otherwise, so wherever verl's value is finite it is the valid tokens' (and where it is not, the
        // comparison takes the non-finite path and its documented deviations).
        for (int k = 0; k < mask.length; k++) {
            if (mask[k] != 0 && !Float.isFinite(adv[k])) {
                return null;
            }
        }
        final PolicyLossHandler.Selected kept = RolloutCorrectionBounds.rejection(rc, lr, bt);
        final F32Term[] w = weighted ? RolloutCorrectionBounds.applied(rc, lr, bt) : null;
        if (weighted && w == null) {
            return null;
        }
        final float[] taken = new float[mask.length];
        final float[] sure = new float[mask.length];
        boolean anyOpen = false;
        for (int k = 0; k < mask.length; k++) {
            if (lr[k] != null) {
                taken[k] = kept.in()[k] || kept.open()[k] ? 1 : 0;
                sure[k] = kept.in()[k] && !kept.open()[k] ? 1 : 0;
                anyOpen |= kept.open()[k];
            }
        }
        final double[] weights = AggLossHandler.weights(spec.aggregationSpec(), taken, bt[0], bt[1]);
        if (weights == null) {
            // Every token surely rejected: the loss reads no token, every output is a sum over none (exactly 0
            // wherever verl's is finite).
            return anyOpen ? null : PolicyLossHandler.Exact.noValidToken(mask.length);
        }
        if (anyOpen) {
            final double[] sureWeights = AggLossHandler.weights(spec.aggregationSpec(), sure, bt[0], bt[1]);
            for (int k = 0; k < mask.length; k++) {
                if (sure[k] != 0 && (sureWeights == null || sureWeights[k] != weights[k])) {
                    return null;
                }
            }
        }
        final PolicyLossHandler.Rule rule = reinforce ? reinforce(spec)
            : PolicyLossHandler.rule(spec.toBuilder().policyLossMode(PolicyLossMode.VANILLA).build());
        return PolicyLossHandler.exact(spec, rule, F32Term.widen(lp), F32Term.widen(old),
            F32Term.widen(adv), w, taken, anyOpen ? kept : null, weights, bt);
    }

    /** reinforce: gpg's rule (-lp A, d / d lp = -A), ppo_kl's summand old - lp (unclamped). */
    private static PolicyLossHandler.Rule reinforce(final LossSpec spec) {
        final PolicyLossHandler.Rule gpg = PolicyLossHandler.rule(spec.toBuilder()
            .policyLossMode(PolicyLossMode.GPG).build());
        return (lp, old, a, seq, out) -> {
            gpg.token(lp, old, a, seq, out);
            out.kl = F32Term.of(old).minus(F32Term.of(lp));
            return true;
        };
    }
}
