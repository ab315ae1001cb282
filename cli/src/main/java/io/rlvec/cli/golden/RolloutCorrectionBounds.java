package io.rlvec.cli.golden;

import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.function.UnaryOperator;

import io.rlvec.RolloutCorrectionResult;
import io.rlvec.RolloutCorrectionSpec;
import io.rlvec.RolloutCorrectionSpec.Estimator;
import io.rlvec.RolloutCorrectionSpec.IsLevel;
import io.rlvec.RolloutCorrectionSpec.RsOption;
import io.rlvec.VerlRelease;

/**
 * verl's rollout correction ({@code compute_rollout_correction_and_rejection_mask}) in double from the float32
 * log-probs of the training policy ({@code train}) and the rollout's ({@code roll}), every value with its float32
 * error bound ({@link F32Term}); bypass_mode's loss ({@link BypassBounds}) and the {@code rollout_corr/*} metrics
 * are built on it.
 * <pre>
 *   lr = train - roll (one rounding),  lrs = clamp(lr, -20, 20),  rho = exp(lrs),  S_s = rowSum(lr)
 *   rejection, per option (ANDed): the statistic k1 = -lrs, k2 = 0.5 lrs^2, k3 = (rho - 1) - lrs per token, or
 *       its row's float32 sum / mean ({@link TokenTermBounds#rowSum}, {@link TokenTermBounds#rowMean}) / max
 *       (exact selection), kept when log L &lt;= stat &lt;= log U (k1) or stat &lt;= U (thresholds in float32);
 *       open where the statistic lies within its bound (plus the rounding of a double statistic to float32) of a
 *       threshold. A token surely rejected by one option is out; one that no option surely rejects and one may
 *       reject is open.
 *   IS weights: raw = rho (token) or exp(clamp(S_s, -20, 20)) (sequence); TIS w = min(raw, U) (continuous: no
 *       jump); IcePop w = raw if L &lt;= raw &lt;= U else 0, open (jump |raw|) where raw lies within its bound of
 *       L or U; batch normalisation: w / m with m = rowMean(w) over the batch (token) or the mean of the non-empty
 *       rows' rowMean(w) (sequence), applied where m &gt; 1e-8 (not judged where float32 may decide that either way).
 * </pre>
 * The metrics ({@link #metrics}, verl 2026-08's, from the weights before normalisation) that are judged by these
 * bounds: means of per-token or per-row terms ({@link TokenTermBounds#tokenMean}), then at most one more operation
 * (chi2's {@code - 1}); maxima and minima (exact selections of bounded terms); fractions {@code k / n}, open
 * where the deciding comparison is ({@link TokenTermBounds#fraction}); the standard deviations, verl's
 * {@code sqrt(max(E[c^2] - E[c]^2, 0))} through the two means' bounds ({@link F32Term#sqrtOfNonNegative}) and
 * torch.std over rows by its Lipschitz bound ({@link TokenTermBounds#unbiasedStd}); the effective sample size
 * through its float32 operations.
 */
final class RolloutCorrectionBounds {
    private static final double CLAMP = 20;
    private static final String P = RolloutCorrectionResult.PREFIX;

    private RolloutCorrectionBounds() {
    }

    /**
     * @return per element the log-ratio train - roll (null on masked elements), or null where a valid log-prob is
     *         not finite.
     */
    static F32Term[] logRatio(final double[] train, final double[] roll, final float[] mask) {
        final F32Term[] lr = new F32Term[mask.length];
        for (int k = 0; k < mask.length; k++) {
            if (mask[k] != 0) {
                if (!Double.isFinite(train[k]) || !Double.isFinite(roll[k])) {
                    return null;
                }
                lr[k] = F32Term.of(train[k]).minus(F32Term.of(roll[k]));
            }
        }
        return lr;
    }

    /**
     * Per rejection option, which valid tokens it keeps in double ({@code in}) and where float32 may decide either
     * way ({@code open}).
     *
     * @param lr per element, the log-ratio (null on masked elements).
     */
    static List<PolicyLossHandler.Selected> options(final RolloutCorrectionSpec rc, final F32Term[] lr,
                                                    final int[] bt) {
        final List<PolicyLossHandler.Selected> out = new ArrayList<>();
        for (final RsOption o : rc.rsOptions()) {
            final F32Term[] stat = statistic(o.estimator(), lr);
            final double hi = (float) o.upperStat();
            final double lo = (float) o.lowerStat();
            final boolean[] in = new boolean[lr.length];
            final boolean[] open = new boolean[lr.length];
            for (int i = 0; i < bt[0]; i++) {
                final int from = i * bt[1];
                final int to = from + bt[1];
                final F32Term row = switch (o.level()) {
                    case TOKEN -> null;
                    case SEQ_SUM -> TokenTermBounds.rowSum(stat, from, to);
                    case SEQ_MEAN -> TokenTermBounds.rowMean(stat, from, to);
                    case SEQ_MAX -> select(stat, from, to, true);
                };
                for (int k = from; k < to; k++) {
                    if (lr[k] != null) {
                        final F32Term v = row != null ? row : stat[k];
                        in[k] = v.v() <= hi && (!o.twoSided() || v.v() >= lo);
                        open[k] = PolicyLossHandler.near(v, hi) || o.twoSided() && PolicyLossHandler.near(v, lo);
                    }
                }
            }
            out.add(new PolicyLossHandler.Selected(in, open));
        }
        return out;
    }

    /** The rejection mask: the valid tokens every option keeps in double, and those float32 may keep or reject. */
    static PolicyLossHandler.Selected rejection(final RolloutCorrectionSpec rc, final F32Term[] lr, final int[] bt) {
        final boolean[] in = new boolean[lr.length];
        final boolean[] open = new boolean[lr.length];
        final boolean[] out = new boolean[lr.length];
        for (int k = 0; k < lr.length; k++) {
            in[k] = lr[k] != null;
        }
        for (final PolicyLossHandler.Selected o : options(rc, lr, bt)) {
            for (int k = 0; k < lr.length; k++) {
                in[k] &= o.in()[k];
                open[k] |= o.open()[k];
                out[k] |= lr[k] != null && !o.in()[k] && !o.open()[k];
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

    /** The max (or min) of the terms in [from, to), an exact selection; 0 where there is none. */
    private static F32Term select(final F32Term[] x, final int from, final int to, final boolean max) {
        F32Term m = null;
        for (int k = from; k < to; k++) {
            if (x[k] != null) {
                m = m == null ? x[k] : max ? F32Term.max(m, x[k]) : F32Term.min(m, x[k]);
            }
        }
        return m != null ? m : F32Term.of(0);
    }

    /** Per row, the float32 masked sum of the log-ratio. */
    private static F32Term[] rowSums(final F32Term[] lr, final int[] bt) {
        final F32Term[] s = new F32Term[bt[0]];
        for (int i = 0; i < bt[0]; i++) {
            s[i] = TokenTermBounds.rowSum(lr, i * bt[1], (i + 1) * bt[1]);
        }
        return s;
    }

    /** Per valid element, the raw IS weight (null on masked elements). */
    private static F32Term[] raw(final RolloutCorrectionSpec rc, final F32Term[] lr, final int[] bt) {
        final F32Term[] raw = new F32Term[lr.length];
        final F32Term[] sums = rowSums(lr, bt);
        for (int k = 0; k < lr.length; k++) {
            if (lr[k] != null) {
                raw[k] = (rc.rolloutIs() == IsLevel.SEQUENCE ? sums[k / bt[1]] : lr[k]).clamp(-CLAMP, CLAMP).exp();
            }
        }
        return raw;
    }

    /** The IS weights truncated (TIS) or masked to the band (IcePop), before batch normalisation. */
    static F32Term[] truncated(final RolloutCorrectionSpec rc, final F32Term[] lr, final int[] bt) {
        final F32Term[] w = raw(rc, lr, bt);
        final F32Term upper = F32Term.constant(rc.isUpper());
        final double lower = (float) rc.isLower();
        for (int k = 0; k < w.length; k++) {
            if (w[k] != null) {
                final F32Term raw = w[k];
                w[k] = rc.icePop() ? PolicyLossHandler.takenOrZero(raw, raw.v() >= lower && raw.v() <= upper.v(),
                    raw.ambiguous(lower) || raw.ambiguous(upper.v())) : F32Term.min(raw, upper);
            }
        }
        return w;
    }

    /**
     * The batch-normalisation mean of the truncated weights: over the valid tokens (token), or over the non-empty
     * rows of their row means (sequence).
     */
    static F32Term batchMean(final RolloutCorrectionSpec rc, final F32Term[] w, final int[] bt) {
        if (rc.rolloutIs() != IsLevel.SEQUENCE) {
            return TokenTermBounds.rowMean(w, 0, w.length);
        }
        final F32Term[] rows = new F32Term[bt[0]];
        for (int i = 0; i < bt[0]; i++) {
            final int from = i * bt[1];
            rows[i] = hasAny(w, from, from + bt[1]) ? TokenTermBounds.rowMean(w, from, from + bt[1]) : null;
        }
        return TokenTermBounds.rowMean(rows, 0, bt[0]);
    }

    private static boolean hasAny(final F32Term[] x, final int from, final int to) {
        for (int k = from; k < to; k++) {
            if (x[k] != null) {
                return true;
            }
        }
        return false;
    }

    /**
     * The IS weights as the loss applies them (truncated or IcePop-masked, then batch-normalised).
     *
     * @return the weights (null on masked elements), or null where float32 may decide the batch normalisation
     *         either way.
     */
    static F32Term[] applied(final RolloutCorrectionSpec rc, final F32Term[] lr, final int[] bt) {
        final F32Term[] w = truncated(rc, lr, bt);
        if (!rc.batchNormalize()) {
            return w;
        }
        final F32Term mean = batchMean(rc, w, bt);
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

    /**
     * The standalone function's two tensors as referees: {@code rollout_is_weights} (the applied weights on valid
     * tokens, exactly 0 on masked ones, as verl's {@code raw * mask}) and {@code response_mask} (the input mask
     * where every option keeps the token, 0 elsewhere; a token float32 may keep or reject has a bound of its mask
     * value).
     *
     * @return {weights (null without IS, or where float32 may decide the batch normalisation either way), mask},
     *         or null where a valid input is not finite.
     */
    static CaseOutputs.Referee[] outputs(final RolloutCorrectionSpec rc, final double[] train, final double[] roll,
                                         final float[] mask, final int[] bt) {
        final F32Term[] lr = logRatio(train, roll, mask);
        if (lr == null) {
            return null;
        }
        CaseOutputs.Referee weights = null;
        if (rc.hasIs()) {
            final F32Term[] w = applied(rc, lr, bt);
            if (w != null) {
                final double[] x = new double[w.length];
                final double[] e = new double[w.length];
                for (int k = 0; k < w.length; k++) {
                    x[k] = w[k] != null ? w[k].v() : 0;
                    e[k] = w[k] != null ? w[k].e() : 0;
                }
                weights = new CaseOutputs.Referee(x, e, e);
            }
        }
        final PolicyLossHandler.Selected kept = rejection(rc, lr, bt);
        final double[] x = new double[mask.length];
        final double[] e = new double[mask.length];
        for (int k = 0; k < mask.length; k++) {
            x[k] = kept.in()[k] ? mask[k] : 0;
            e[k] = kept.open()[k] ? Math.abs(mask[k]) : 0;
        }
        return new CaseOutputs.Referee[] {weights, new CaseOutputs.Referee(x, e, e, true)};
    }

    /**
     * The judged {@code rollout_corr/*} metrics (full names, as {@link RolloutCorrectionResult#asMap}), from
     * verl 2026-08's definitions; a metric left out keeps its fixed tolerance.
     *
     * @return the referees, empty where the case is not judged (another release, a valid input not finite). The
     *         terms are of valid tokens only: a masked value reaches verl's masked sums only as {@code x * 0}, which
     *         is 0 for a finite x and NaN otherwise, so wherever verl's metric is finite it is the valid tokens'
     *         (and where it is not, the comparison takes the non-finite path and the documented deviations).
     */
    static Map<String, CaseOutputs.Referee> metrics(final RolloutCorrectionSpec rc, final double[] train,
                                                    final double[] roll, final float[] mask, final int[] bt) {
        final Map<String, CaseOutputs.Referee> m = new LinkedHashMap<>();
        final F32Term[] lr = logRatio(train, roll, mask);
        if (lr == null) {
            return m;
        }
        int n = 0;
        for (final F32Term x : lr) {
            n += x != null ? 1 : 0;
        }
        if (rc.release() != VerlRelease.V2026_08 || n == 0) {
            return m;
        }
        if (rc.hasIs()) {
            isMetrics(rc, lr, bt, n, m);
        }
        if (!rc.rsOptions().isEmpty()) {
            rsMetrics(rc, lr, bt, n, m);
        }
        offPolicy(train, roll, lr, bt, m);
        m.values().removeIf(java.util.Objects::isNull);
        return m;
    }

    private static void isMetrics(final RolloutCorrectionSpec rc, final F32Term[] lr, final int[] bt, final int n,
                                  final Map<String, CaseOutputs.Referee> m) {
        final F32Term[] w = truncated(rc, lr, bt);
        final F32Term[] raw = raw(rc, lr, bt);
        final double upper = (float) rc.isUpper();
        final double low = (float) (rc.icePop() ? rc.isLower() : 1.0 / rc.isUpper());
        m.put(P + "rollout_is_mean", TokenTermBounds.tokenMean(w, bt[0], bt[1]));
        // std and effective sample size of c = clamp(w, 0, U).
        final F32Term[] c = clamped(w, 0, upper);
        final CaseOutputs.Referee meanC = TokenTermBounds.tokenMean(c, bt[0], bt[1]);
        m.put(P + "rollout_is_std", std(c, meanC, n, bt));
        m.put(P + "rollout_is_eff_sample_size", effectiveSampleSize(c, meanC, bt));
        if (rc.rolloutIs() == IsLevel.SEQUENCE) {
            // In log space per row: exp(min(max S, 20)), exp(min S), and the rows' S against log U, log L.
            final F32Term[] sums = rowSums(lr, bt);
            m.put(P + "rollout_is_max", selected(select(sums, 0, bt[0], true).clamp(Double.NEGATIVE_INFINITY, CLAMP)
                .exp()));
            m.put(P + "rollout_is_min", selected(select(sums, 0, bt[0], false).exp()));
            m.put(P + "rollout_is_ratio_fraction_high", count(sums, (float) Math.log(upper), true, bt[0]));
            m.put(P + "rollout_is_ratio_fraction_low", count(sums, (float) Math.log(low), false, bt[0]));
        } else {
            m.put(P + "rollout_is_max", selected(select(w, 0, w.length, true)));
            m.put(P + "rollout_is_min", selected(select(w, 0, w.length, false)));
            m.put(P + "rollout_is_ratio_fraction_high", count(raw, upper, true, n));
            m.put(P + "rollout_is_ratio_fraction_low", count(raw, low, false, n));
        }
        // Per row (every row, an empty one 0): the mean of w, and of the raw weights for the row fractions.
        final F32Term[] rows = new F32Term[bt[0]];
        final F32Term[] rawRows = new F32Term[bt[0]];
        final F32Term[] deviation = new F32Term[bt[0]];
        for (int i = 0; i < bt[0]; i++) {
            rows[i] = TokenTermBounds.rowMean(w, i * bt[1], (i + 1) * bt[1]);
            rawRows[i] = TokenTermBounds.rowMean(raw, i * bt[1], (i + 1) * bt[1]);
            deviation[i] = abs(rows[i].minus(F32Term.constant(1)));
        }
        m.put(P + "rollout_is_seq_mean", TokenTermBounds.tokenMean(rows, 1, bt[0]));
        m.put(P + "rollout_is_seq_std", TokenTermBounds.unbiasedStd(rows));
        m.put(P + "rollout_is_seq_max", selected(select(rows, 0, bt[0], true)));
        m.put(P + "rollout_is_seq_min", selected(select(rows, 0, bt[0], false)));
        m.put(P + "rollout_is_seq_max_deviation", selected(select(deviation, 0, bt[0], true)));
        m.put(P + "rollout_is_seq_fraction_high", count(rawRows, upper, true, bt[0]));
        m.put(P + "rollout_is_seq_fraction_low", count(rawRows, low, false, bt[0]));
        if (rc.icePop()) {
            final double lower = (float) rc.isLower();
            int out = 0;
            int open = 0;
            for (final F32Term r : raw) {
                if (r != null) {
                    out += r.v() < lower || r.v() > upper ? 1 : 0;
                    open += r.ambiguous(lower) || r.ambiguous(upper) ? 1 : 0;
                }
            }
            m.put(P + "rollout_is_oob_ratio", TokenTermBounds.fraction(out, open, n));
        }
        if (rc.batchNormalize()) {
            final F32Term mean = batchMean(rc, w, bt);
            if (!PolicyLossHandler.near(mean, 1e-8)) {
                m.put(P + "rollout_is_batch_norm_factor", selected(mean.v() > 1e-8 ? mean : F32Term.of(1)));
            }
        }
    }

    private static void rsMetrics(final RolloutCorrectionSpec rc, final F32Term[] lr, final int[] bt, final int n,
                                  final Map<String, CaseOutputs.Referee> m) {
        final List<PolicyLossHandler.Selected> options = options(rc, lr, bt);
        int rows = 0;
        for (int i = 0; i < bt[0]; i++) {
            rows += hasAny(lr, i * bt[1], (i + 1) * bt[1]) ? 1 : 0;
        }
        for (int o = 0; o < options.size(); o++) {
            final String name = P + "rollout_rs_" + rc.rsOptions().get(o).name();
            final PolicyLossHandler.Selected s = options.get(o);
            optionSummary(rc.rsOptions().get(o), lr, bt, n, rows, name, m);
            m.put(name + "_masked_fraction", rejected(s, lr, 1, lr.length, n));
            m.put(name + "_seq_masked_fraction", rejected(s, lr, bt[1], lr.length, rows));
        }
        final PolicyLossHandler.Selected all = rejection(rc, lr, bt);
        m.put(P + "rollout_rs_masked_fraction", rejected(all, lr, 1, lr.length, n));
        m.put(P + "rollout_rs_seq_masked_fraction", rejected(all, lr, bt[1], lr.length, bt[0]));
    }

    /**
     * An option's statistic summaries: over the valid tokens its value v (the token's statistic, or its row's
     * broadcast) in mean, max, min and the fractions beyond the thresholds (per token; per non-empty row for a
     * sequence-level option), then over the non-empty rows the row value (the row mean of a token statistic, or
     * the row's statistic) in mean, max, min, max |.|, fractions and standard deviations.
     */
    private static void optionSummary(final RsOption o, final F32Term[] lr, final int[] bt, final int n,
                                      final int rows, final String name, final Map<String, CaseOutputs.Referee> m) {
        final F32Term[] stat = statistic(o.estimator(), lr);
        final double hi = (float) o.upperStat();
        final double lo = (float) o.lowerStat();
        final boolean token = o.level() == RolloutCorrectionSpec.Level.TOKEN;
        final F32Term[] v = new F32Term[lr.length];
        final F32Term[] row = new F32Term[bt[0]];
        final F32Term[] magnitude = new F32Term[bt[0]];
        for (int i = 0; i < bt[0]; i++) {
            final int from = i * bt[1];
            final int to = from + bt[1];
            if (!hasAny(lr, from, to)) {
                continue;
            }
            row[i] = switch (o.level()) {
                case TOKEN, SEQ_MEAN -> TokenTermBounds.rowMean(stat, from, to);
                case SEQ_SUM -> TokenTermBounds.rowSum(stat, from, to);
                case SEQ_MAX -> select(stat, from, to, true);
            };
            magnitude[i] = abs(row[i]);
            for (int k = from; k < to; k++) {
                v[k] = lr[k] == null ? null : token ? stat[k] : row[i];
            }
        }
        final F32Term[] per = token ? v : row;
        final int of = token ? n : rows;
        m.put(name + "_mean", TokenTermBounds.tokenMean(v, bt[0], bt[1]));
        final F32Term[] c = clamped(v, lo, hi);
        m.put(name + "_std", std(c, TokenTermBounds.tokenMean(c, bt[0], bt[1]), n, bt));
        m.put(name + "_seq_std", TokenTermBounds.unbiasedStd(row));
        m.put(name + "_max", selected(select(per, 0, per.length, true)));
        m.put(name + "_min", selected(select(per, 0, per.length, false)));
        m.put(name + "_fraction_high", count(per, hi, true, of));
        m.put(name + "_fraction_low", o.twoSided() ? count(per, lo, false, of) : selected(F32Term.of(0)));
        m.put(name + "_seq_mean", TokenTermBounds.tokenMean(row, 1, bt[0]));
        m.put(name + "_seq_max", selected(select(row, 0, bt[0], true)));
        m.put(name + "_seq_min", selected(select(row, 0, bt[0], false)));
        m.put(name + "_seq_max_deviation", selected(select(magnitude, 0, bt[0], true)));
        m.put(name + "_seq_fraction_high", count(row, hi, true, rows));
        if (o.twoSided()) {
            m.put(name + "_seq_fraction_low", count(row, lo, false, rows));
        }
    }

    /** @return per element clamp(x, lo, hi) (null where x is). */
    private static F32Term[] clamped(final F32Term[] x, final double lo, final double hi) {
        final F32Term[] c = new F32Term[x.length];
        for (int k = 0; k < x.length; k++) {
            c[k] = x[k] == null ? null : x[k].clamp(lo, hi);
        }
        return c;
    }

    /**
     * verl's {@code sqrt(clamp(masked_mean(c^2) - masked_mean(c)^2, min=0))} over n valid tokens (0 for n &lt;= 1):
     * the two means' bounds through a float32 square, difference and square root ({@link F32Term#sqrtOfNonNegative}:
     * where the difference cancels to near 0 the bound is the square root of the variance's).
     */
    private static CaseOutputs.Referee std(final F32Term[] c, final CaseOutputs.Referee meanC, final int n,
                                           final int[] bt) {
        if (n <= 1) {
            return selected(F32Term.of(0));
        }
        final F32Term[] squares = new F32Term[c.length];
        for (int k = 0; k < c.length; k++) {
            squares[k] = c[k] == null ? null : c[k].times(c[k]);
        }
        return TokenTermBounds.then(TokenTermBounds.tokenMean(squares, bt[0], bt[1]), meanC,
            (sq, mean) -> sq.minus(mean.times(mean)).sqrtOfNonNegative());
    }

    /**
     * verl's {@code 1 / masked_mean((c / (masked_mean(c) + 1e-8))^2)}: the mean of c (the larger of the two
     * bounds, shared by every token's term) plus 1e-8 in float32, each token's quotient squared, their mean, and
     * its reciprocal.
     */
    private static CaseOutputs.Referee effectiveSampleSize(final F32Term[] c, final CaseOutputs.Referee meanC,
                                                           final int[] bt) {
        if (meanC == null) {
            return null;
        }
        final F32Term mean = new F32Term(meanC.exactAt(0), Math.max(meanC.budgetAt(0), meanC.engineBoundAt(0)))
            .plus(F32Term.constant(1e-8));
        final F32Term[] q = new F32Term[c.length];
        for (int k = 0; k < c.length; k++) {
            if (c[k] != null) {
                final F32Term r = c[k].dividedBy(mean);
                q[k] = r.times(r);
            }
        }
        final CaseOutputs.Referee ess = TokenTermBounds.then(TokenTermBounds.tokenMean(q, bt[0], bt[1]),
            x -> F32Term.constant(1).dividedBy(x));
        return ess != null && Double.isFinite(ess.budgetAt(0)) && Double.isFinite(ess.engineBoundAt(0)) ? ess : null;
    }

    private static F32Term abs(final F32Term x) {
        return new F32Term(Math.abs(x.v()), x.e());
    }

    /**
     * The fraction of groups of {@code size} elements (tokens, or rows) holding a rejected valid token, over
     * {@code of}; a group is open where it holds an open token and no surely rejected one.
     */
    private static CaseOutputs.Referee rejected(final PolicyLossHandler.Selected s, final F32Term[] lr,
                                                final int size, final int length, final int of) {
        int counted = 0;
        int open = 0;
        for (int from = 0; from < length; from += size) {
            boolean any = false;
            boolean sure = false;
            boolean either = false;
            for (int k = from; k < from + size; k++) {
                if (lr[k] != null) {
                    any |= !s.in()[k];
                    sure |= !s.in()[k] && !s.open()[k];
                    either |= s.open()[k];
                }
            }
            counted += any ? 1 : 0;
            open += either && !sure ? 1 : 0;
        }
        return of == 0 ? null : TokenTermBounds.fraction(counted, open, of);
    }

    /** The fraction of the terms above (below) {@code c}, over {@code of}; open within a term's bound of c. */
    private static CaseOutputs.Referee count(final F32Term[] x, final double c, final boolean above, final int of) {
        int counted = 0;
        int open = 0;
        for (final F32Term v : x) {
            if (v != null) {
                counted += above ? (v.v() > c ? 1 : 0) : (v.v() < c ? 1 : 0);
                open += PolicyLossHandler.near(v, c) ? 1 : 0;
            }
        }
        return TokenTermBounds.fraction(counted, open, of);
    }

    /** A selected (or single) float32 value: within its bound for verl and the engine alike. */
    private static CaseOutputs.Referee selected(final F32Term x) {
        return Double.isFinite(x.v()) && Double.isFinite(x.e())
            ? new CaseOutputs.Referee(new double[] {x.v()}, new double[] {x.e()}, new double[] {x.e()}, true) : null;
    }

    /** verl's compute_offpolicy_metrics: per-token means, and means over the B rows of per-row terms. */
    private static void offPolicy(final double[] train, final double[] roll, final F32Term[] lr, final int[] bt,
                                  final Map<String, CaseOutputs.Referee> m) {
        final F32Term[] kl = new F32Term[lr.length];
        final F32Term[] k3 = new F32Term[lr.length];
        final F32Term[] rho2 = new F32Term[lr.length];
        final F32Term[] t = new F32Term[lr.length];
        final F32Term[] r = new F32Term[lr.length];
        for (int k = 0; k < lr.length; k++) {
            if (lr[k] != null) {
                kl[k] = F32Term.of(roll[k]).minus(F32Term.of(train[k]));
                k3[k] = lr[k].exp().minus(lr[k]).minus(F32Term.constant(1));
                final F32Term rho = lr[k].clamp(-CLAMP, CLAMP).exp();
                rho2[k] = rho.times(rho);
                t[k] = F32Term.of(train[k]);
                r[k] = F32Term.of(roll[k]);
            }
        }
        final int b = bt[0];
        final F32Term[] trainPpl = new F32Term[b];
        final F32Term[] trainLog = new F32Term[b];
        final F32Term[] rollPpl = new F32Term[b];
        final F32Term[] rollLog = new F32Term[b];
        final F32Term[] diff = new F32Term[b];
        final F32Term[] absDiff = new F32Term[b];
        final F32Term[] ratio = new F32Term[b];
        final F32Term[] chiSeq = new F32Term[b];
        final F32Term[] sums = rowSums(lr, bt);
        for (int i = 0; i < b; i++) {
            final F32Term mo = TokenTermBounds.rowMean(t, i * bt[1], (i + 1) * bt[1]);
            final F32Term mr = TokenTermBounds.rowMean(r, i * bt[1], (i + 1) * bt[1]);
            trainPpl[i] = mo.negate().exp();
            trainLog[i] = mo.negate();
            rollPpl[i] = mr.negate().exp();
            rollLog[i] = mr.negate();
            diff[i] = mr.minus(mo);
            absDiff[i] = abs(diff[i]);
            ratio[i] = diff[i].exp();
            chiSeq[i] = sums[i].clamp(-CLAMP, CLAMP).timesExact(2).exp();
        }
        final UnaryOperator<F32Term> minusOne = x -> x.minus(F32Term.constant(1));
        m.put(P + "training_ppl", TokenTermBounds.tokenMean(trainPpl, 1, b));
        m.put(P + "training_log_ppl", TokenTermBounds.tokenMean(trainLog, 1, b));
        m.put(P + "kl", TokenTermBounds.tokenMean(kl, bt[0], bt[1]));
        m.put(P + "k3_kl", TokenTermBounds.tokenMean(k3, bt[0], bt[1]));
        m.put(P + "rollout_ppl", TokenTermBounds.tokenMean(rollPpl, 1, b));
        m.put(P + "rollout_log_ppl", TokenTermBounds.tokenMean(rollLog, 1, b));
        m.put(P + "log_ppl_diff", TokenTermBounds.tokenMean(diff, 1, b));
        m.put(P + "log_ppl_abs_diff", TokenTermBounds.tokenMean(absDiff, 1, b));
        m.put(P + "log_ppl_diff_max", selected(select(diff, 0, b, true)));
        m.put(P + "log_ppl_diff_min", selected(select(diff, 0, b, false)));
        m.put(P + "ppl_ratio", TokenTermBounds.tokenMean(ratio, 1, b));
        m.put(P + "chi2_token", TokenTermBounds.then(TokenTermBounds.tokenMean(rho2, bt[0], bt[1]), minusOne));
        m.put(P + "chi2_seq", TokenTermBounds.then(TokenTermBounds.tokenMean(chiSeq, 1, b), minusOne));
    }
}
