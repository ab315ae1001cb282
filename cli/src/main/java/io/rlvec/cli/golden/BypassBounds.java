package io.rlvec.cli.golden;

import io.rlvec.LossSpec;
import io.rlvec.PolicyLossMode;
import io.rlvec.RolloutCorrectionSpec;
import io.rlvec.RolloutCorrectionSpec.Estimator;
import io.rlvec.RolloutCorrectionSpec.IsLevel;
import io.rlvec.RolloutCorrectionSpec.Level;
import io.rlvec.RolloutCorrectionSpec.RsOption;

/**
 * bypass_mode ({@code compute_policy_loss_bypass_mode}) in double from the float32 inputs, every value with its
 * float32 error bound ({@link F32Term}): the rollout correction of the training log-prob {@code lp} against the
 * rollout's {@code old}, then the loss on the rejection mask through {@link PolicyLossHandler#exact}.
 * <pre>
 *   lr = lp - old (one rounding),  lrs = clamp(lr, -20, 20),  rho = exp(lrs)
 *   rejection (each option, ANDed): the statistic k1 = -lrs, k2 = 0.5 lrs^2, k3 = (rho - 1) - lrs per token,
 *       or its row's float32 sum / mean ({@link TokenTermBounds#rowSum}, {@link TokenTermBounds#rowMean}) / max
 *       (exact selection), kept when log L &lt;= stat &lt;= log U (k1) or stat &lt;= U (thresholds in float32); open
 *       where the statistic lies within its bound (plus the rounding of a double statistic to float32) of a
 *       threshold. A token surely rejected by one option is out; one no option surely rejects but one may is open.
 *   IS weights (reinforce only; ppo_clip computes them for the metrics and does not apply them):
 *       raw = rho (token) or exp(clamp(rowSum(lr), -20, 20)) (sequence);
 *       TIS w = min(raw, U) (continuous: no jump); IcePop w = raw if L &lt;= raw &lt;= U else 0, open (jump |raw|)
 *       where raw lies within its bound of L or U;
 *       batch normalisation: w / m with m = rowMean(w) over the batch (token) or the mean of the non-empty rows'
 *       rowMean(w) (sequence), applied where m &gt; 1e-8 (a case where float32 may decide that either way is not
 *       judged).
 *   ppo_clip:  vanilla's rule ({@link PolicyLossHandler#rule}) on the rejection mask, no IS weights
 *   reinforce: gpg's rule -lp A, times w (stop-gradient: d / d lp = -A w); ppo_kl = mean(old - lp), unclamped
 * </pre>
 * The aggregation weights are verl's agg_loss weights of the rejection mask (the harness sets no
 * batch_num_tokens). Where a rejection is open the token's loss and gradient terms may be the term or 0 (widened
 * by the whole term); the case is judged only where the other tokens' aggregation weights do not depend on it (the
 * weights with every open token kept equal those with every open token rejected, as under token-sum), and then
 * ppo_kl and the fractions, whose denominator is open, keep the fixed tolerances.
 */
final class BypassBounds {
    private static final double CLAMP = 20;

    private BypassBounds() {
    }

    /**
     * @param spec a bypass_mode spec with its rollout correction.
     * @param bt   the padded shape (b, t).
     * @return the referees ({@link PolicyLossHandler.Exact}, ppo_kl and the fractions null where a rejection is
     *         open), or null where the case keeps the fixed tolerances: a valid input not finite, a masked one
     *         read by a row sum (verl's row turns NaN), no token surviving rejection, an open rejection that moves
     *         other tokens' aggregation weights, a batch-normalisation mean within rounding of 1e-8.
     */
    static PolicyLossHandler.Exact exact(final LossSpec spec, final float[] lp, final float[] old,
                                         final float[] adv, final float[] mask, final int[] bt) {
        final RolloutCorrectionSpec rc = spec.rolloutCorrection();
        final boolean reinforce = spec.bypassReinforce();
        final boolean weighted = reinforce && rc.hasIs();
        final F32Term[] lr = new F32Term[mask.length];
        boolean maskedNonFinite = false;
        for (int k = 0; k < mask.length; k++) {
            if (mask[k] != 0) {
                if (!Float.isFinite(lp[k]) || !Float.isFinite(old[k]) || !Float.isFinite(adv[k])) {
                    return null;
                }
                lr[k] = F32Term.of(lp[k]).minus(F32Term.of(old[k]));
            } else {
                maskedNonFinite |= !Float.isFinite(lp[k]) || !Float.isFinite(old[k]);
            }
        }
        if (maskedNonFinite && readsRows(rc, weighted)) {
            return null;
        }
        final PolicyLossHandler.Selected kept = rejection(rc, lr, bt);
        final F32Term[] w = weighted ? weights(rc, lr, bt) : null;
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
            return null;
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
        return PolicyLossHandler.exact(spec, rule, lp, old, adv, w, taken, anyOpen ? kept : null, weights, bt);
    }

    /** @return whether a row sum over the whole padded row (masked elements times 0) enters the loss. */
    private static boolean readsRows(final RolloutCorrectionSpec rc, final boolean weighted) {
        if (weighted && (rc.rolloutIs() == IsLevel.SEQUENCE || rc.batchNormalize())) {
            return true;
        }
        return rc.rsOptions().stream().anyMatch(o -> o.level() != Level.TOKEN);
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

    /**
     * The rejection mask: which valid tokens every option keeps in double, and those float32 may keep or reject.
     *
     * @param lr per element, the log-ratio (null on masked elements).
     */
    static PolicyLossHandler.Selected rejection(final RolloutCorrectionSpec rc, final F32Term[] lr, final int[] bt) {
        final boolean[] in = new boolean[lr.length];
        final boolean[] open = new boolean[lr.length];
        final boolean[] out = new boolean[lr.length];
        for (int k = 0; k < lr.length; k++) {
            in[k] = lr[k] != null;
        }
        for (final RsOption o : rc.rsOptions()) {
            final F32Term[] stat = statistic(o.estimator(), lr);
            final double hi = (float) o.upperStat();
            final double lo = (float) o.lowerStat();
            for (int i = 0; i < bt[0]; i++) {
                final int from = i * bt[1];
                final int to = from + bt[1];
                final F32Term row = switch (o.level()) {
                    case TOKEN -> null;
                    case SEQ_SUM -> TokenTermBounds.rowSum(stat, from, to);
                    case SEQ_MEAN -> TokenTermBounds.rowMean(stat, from, to);
                    case SEQ_MAX -> rowMax(stat, from, to);
                };
                for (int k = from; k < to; k++) {
                    if (lr[k] == null) {
                        continue;
                    }
                    final F32Term v = row != null ? row : stat[k];
                    final boolean keep = v.v() <= hi && (!o.twoSided() || v.v() >= lo);
                    final boolean edge = PolicyLossHandler.near(v, hi) || o.twoSided()
                        && PolicyLossHandler.near(v, lo);
                    in[k] &= keep;
                    open[k] |= edge;
                    out[k] |= !keep && !edge;
                }
            }
        }
        for (int k = 0; k < lr.length; k++) {
            open[k] &= !out[k];
        }
        return new PolicyLossHandler.Selected(in, open);
    }

    /** Per token, the rejection statistic of the clamped log-ratio (null on masked elements). */
    private static F32Term[] statistic(final Estimator estimator, final F32Term[] lr) {
        final F32Term[] stat = new F32Term[lr.length];
        for (int k = 0; k < lr.length; k++) {
            if (lr[k] != null) {
                final F32Term lrs = lr[k].clamp(-CLAMP, CLAMP);
                stat[k] = switch (estimator) {
                    case K1 -> lrs.negate();
                    case K2 -> lrs.times(lrs).timesExact(0.5);
                    case K3 -> lrs.exp().minus(F32Term.constant(1)).minus(lrs);
                };
            }
        }
        return stat;
    }

    /** A row's masked max (an exact selection); 0 for an empty row. */
    private static F32Term rowMax(final F32Term[] x, final int from, final int to) {
        F32Term max = null;
        for (int k = from; k < to; k++) {
            if (x[k] != null) {
                max = max == null ? x[k] : F32Term.max(max, x[k]);
            }
        }
        return max != null ? max : F32Term.of(0);
    }

    /**
     * The IS weights as the loss applies them (truncated or IcePop-masked, then batch-normalised), null on masked
     * elements.
     *
     * @return the weights, or null where float32 may decide the batch normalisation either way.
     */
    static F32Term[] weights(final RolloutCorrectionSpec rc, final F32Term[] lr, final int[] bt) {
        final F32Term[] w = new F32Term[lr.length];
        final F32Term upper = F32Term.constant(rc.isUpper());
        final double lower = (float) rc.isLower();
        for (int i = 0; i < bt[0]; i++) {
            final int from = i * bt[1];
            final int to = from + bt[1];
            final F32Term seq = rc.rolloutIs() == IsLevel.SEQUENCE
                ? TokenTermBounds.rowSum(lr, from, to).clamp(-CLAMP, CLAMP).exp() : null;
            for (int k = from; k < to; k++) {
                if (lr[k] == null) {
                    continue;
                }
                final F32Term raw = seq != null ? seq : lr[k].clamp(-CLAMP, CLAMP).exp();
                if (rc.icePop()) {
                    final boolean band = raw.v() >= lower && raw.v() <= upper.v();
                    w[k] = PolicyLossHandler.takenOrZero(raw, band, raw.ambiguous(lower) || raw.ambiguous(upper.v()));
                } else {
                    w[k] = F32Term.min(raw, upper);
                }
            }
        }
        if (!rc.batchNormalize()) {
            return w;
        }
        final F32Term mean;
        if (rc.rolloutIs() == IsLevel.SEQUENCE) {
            final F32Term[] rows = new F32Term[bt[0]];
            for (int i = 0; i < bt[0]; i++) {
                final int from = i * bt[1];
                rows[i] = nonEmpty(w, from, from + bt[1]) ? TokenTermBounds.rowMean(w, from, from + bt[1]) : null;
            }
            mean = TokenTermBounds.rowMean(rows, 0, bt[0]);
        } else {
            mean = TokenTermBounds.rowMean(w, 0, w.length);
        }
        // verl compares the mean with 1e-8 (the engine in double, torch as float32: near() covers both).
        if (PolicyLossHandler.near(mean, 1e-8)) {
            return null;
        }
        if (mean.v() > 1e-8) {
            for (int k = 0; k < w.length; k++) {
                w[k] = w[k] != null ? w[k].dividedBy(mean) : null;
            }
        }
        return w;
    }

    private static boolean nonEmpty(final F32Term[] x, final int from, final int to) {
        for (int k = from; k < to; k++) {
            if (x[k] != null) {
                return true;
            }
        }
        return false;
    }
}
