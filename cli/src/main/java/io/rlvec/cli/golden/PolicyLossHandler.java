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
 *
 * <p>Float32 cases of every mode are judged by error analysis: the harness evaluates the mode's per-token
 * expression ({@link #rule}) in double from the same float32 inputs, each term with its float32 error bound from its
 * operations ({@link F32Term}), then verl's aggregation ({@link TokenTermBounds}, in {@link #exact}); geo_mean by
 * its per-sequence analysis ({@link #geoMean}); clip_cov and kl_cov on top of their covariance selection
 * ({@link #covSelection}), tokens that float32 may select either way widening the bounds by their jump. Cases
 * stored in float64, batches without a valid token, inputs with a non-finite valid value, a value that may overflow
 * float32 and clip_cov draws that are not forced keep the fixed tolerances.
 *
 * <p>bypass_mode has its own handler ({@link BypassPolicyLossHandler}) on the same evaluation: its rollout
 * correction in double with float32 bounds ({@link RolloutCorrectionBounds}: IS weights as terms with their own
 * bounds, the rejection mask as a selection float32 may decide apart), then {@link #exact} on the rejection mask
 * with vanilla's rule (ppo_clip) or gpg's times the weights (reinforce) ({@link BypassBounds}). A term that a
 * comparison switches on or off (a clip branch, a dppo valid flag, a covariance selection, a rejection, an IcePop
 * band) is one helper, {@link #takenOrZero}, widened by the whole term where the comparison is open.
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
            final float[] mask = batch.mask().toFloatArray();
            final Rule rule = rule(spec);
            final boolean f64 = golden.file().info("in.log_prob").dtype() == io.rlvec.cli.io.Dtype.F64;
            final float[] w = golden.has(WEIGHTS) ? batch.column(Column.ROLLOUT_IS_WEIGHTS).toFloatArray() : null;
            final boolean byCov = mode == PolicyLossMode.KL_COV || mode == PolicyLossMode.CLIP_COV;
            final Exact exact = noValidToken(mask) ? Exact.noValidToken(mask.length)
                : f64 ? (rule == null || byCov ? null : storedInDouble(spec, rule, golden, batch, w, mask))
                : rule == null && mode != PolicyLossMode.GEO_MEAN ? null
                : mode == PolicyLossMode.GEO_MEAN ? geoMean(spec, batch.column(Column.LOG_PROB).toFloatArray(),
                    batch.column(Column.OLD_LOG_PROB).toFloatArray(), batch.column(Column.ADVANTAGES).toFloatArray(),
                    w, mask, golden.matrixShape(MASK))
                : exact(spec, rule, F32Term.widen(batch.column(Column.LOG_PROB).toFloatArray()),
                    F32Term.widen(batch.column(Column.OLD_LOG_PROB).toFloatArray()),
                    F32Term.widen(batch.column(Column.ADVANTAGES).toFloatArray()),
                    w == null ? null : F32Term.widen(w), mask, golden.matrixShape(MASK));
            if (exact != null) {
                return new CaseOutputs(facts)
                    .judgedScalar("out.pg_loss", r.pgLoss(), exact.loss, lossTolerance(r), lossDeviations)
                    .judgedScalar("out.pg_clipfrac", r.pgClipfrac(), exact.clipfrac, Tolerance.SCALAR)
                    .judgedScalar("out.ppo_kl", r.ppoKl(), exact.ppoKl, Tolerance.SCALAR)
                    .judgedScalar("out.pg_clipfrac_lower", r.pgClipfracLower(), exact.clipfracLower,
                        Tolerance.SCALAR)
                    .judgedTokens("out.grad_log_prob", grad.toFloatArray(), mask, exact.gradient, gradTolerance,
                        gradDeviations);
            }
            return new CaseOutputs(facts)
                .scalar("out.pg_loss", r.pgLoss(), lossTolerance(r), lossDeviations)
                .scalar("out.pg_clipfrac", r.pgClipfrac(), Tolerance.SCALAR)
                .scalar("out.ppo_kl", r.ppoKl(), Tolerance.SCALAR)
                .scalar("out.pg_clipfrac_lower", r.pgClipfracLower(), Tolerance.SCALAR)
                .tokens("out.grad_log_prob", grad.toFloatArray(), batch.mask().toFloatArray(), gradTolerance,
                    gradDeviations);
        }
    }

    /**
     * A float64 case of a token-rule mode: the mode on the float32 values the engines read, and on the stored
     * values verl computed with ({@link Exact#storedInDouble}).
     */
    private static Exact storedInDouble(final LossSpec spec, final Rule rule, final GoldenCase golden,
                                        final TokenBatch batch, final float[] w, final float[] mask) {
        final int[] bt = golden.matrixShape(MASK);
        final Exact onFloat32 = exact(spec, rule, F32Term.widen(batch.column(Column.LOG_PROB).toFloatArray()),
            F32Term.widen(batch.column(Column.OLD_LOG_PROB).toFloatArray()),
            F32Term.widen(batch.column(Column.ADVANTAGES).toFloatArray()),
            w == null ? null : F32Term.widen(w), mask, bt);
        return onFloat32 == null ? null : onFloat32.storedInDouble(exact(spec, rule, golden.expected("in.log_prob"),
            golden.expected("in.old_log_prob"), golden.expected("in.advantages"),
            w == null ? null : golden.expected(WEIGHTS), mask, bt));
    }

    /** The judged outputs of one case. */
    record Exact(CaseOutputs.Referee loss, CaseOutputs.Referee clipfrac, CaseOutputs.Referee ppoKl,
                 CaseOutputs.Referee clipfracLower, CaseOutputs.Referee gradient) {
        /**
         * A batch without a valid token: every output is a sum over no token, exactly 0 wherever verl's is finite
         * (a finite sum divided by a count plus verl's epsilon, or by a fixed denominator), with a bound of 0 on
         * both sides; where verl divides by 0 its value is not finite and the comparison takes the documented
         * deviation instead (NO_VALID_TOKEN).
         *
         * @param tokens the number of elements of the gradient.
         */
        static Exact noValidToken(final int tokens) {
            final CaseOutputs.Referee zero = zero(1);
            return new Exact(zero, zero, zero, zero, zero(tokens));
        }

        /**
         * @param onStored the same mode evaluated on a float64 case's stored inputs (this: on their float32
         *                 values), or null.
         * @return the float64 case's referees ({@link CaseOutputs.Referee#storedInDouble}); an output not judged
         *         on either side stays on its fixed tolerance (null).
         */
        Exact storedInDouble(final Exact onStored) {
            if (onStored == null) {
                return null;
            }
            return new Exact(CaseOutputs.Referee.storedInDouble(loss, onStored.loss),
                CaseOutputs.Referee.storedInDouble(clipfrac, onStored.clipfrac),
                CaseOutputs.Referee.storedInDouble(ppoKl, onStored.ppoKl),
                CaseOutputs.Referee.storedInDouble(clipfracLower, onStored.clipfracLower),
                CaseOutputs.Referee.storedInDouble(gradient, onStored.gradient));
        }

        private static CaseOutputs.Referee zero(final int n) {
            final double[] z = new double[n];
            return new CaseOutputs.Referee(z, z, z, true);
        }
    }

    /** @return whether no element of the mask is valid. */
    static boolean noValidToken(final float[] mask) {
        for (final float m : mask) {
            if (m != 0) {
                return false;
            }
        }
        return true;
    }

    /** One token's terms in double with their float32 bounds, as a mode's {@link Rule} gives them. */
    static final class Terms {
        /** pg_losses before the rollout weight. */
        F32Term loss;
        /** d pg_losses / d log_prob before the rollout weight and the aggregation weight. */
        F32Term grad;
        /** the summand of ppo_kl. */
        F32Term kl;
        /** counted by pg_clipfrac (in double), and whether float32 may decide it either way. */
        boolean clipped;
        boolean clippedOpen;
        /** counted by pg_clipfrac_lower, and whether float32 may decide it either way. */
        boolean lower;
        boolean lowerOpen;
        /** set by {@link #exact} before the rule (clip_cov, kl_cov): selected by covariance, and whether float32
         *  may decide that either way. */
        boolean selected;
        boolean selectedOpen;

        void metrics(final boolean clipped, final boolean clippedOpen, final boolean lower, final boolean lowerOpen) {
            this.clipped = clipped;
            this.clippedOpen = clippedOpen;
            this.lower = lower;
            this.lowerOpen = lowerOpen;
        }
    }

    /** A mode's per-token expression, in double with float32 bounds. */
    interface Rule {
        /**
         * @param seq the row's mean log-ratio with its bound (gspo), else null.
         * @return false where the token cannot be judged (an overflow the engine resolves unlike verl).
         */
        boolean token(double lp, double old, double a, F32Term seq, Terms out);

        /** @return whether the rule reads the row's mean log-ratio. */
        default boolean sequence() {
            return false;
        }
    }

    /** Float32 may put {@code x} on either side of the float32 constant {@code c}, a product's rounding included. */
    static boolean near(final F32Term x, final double c) {
        return Math.abs(x.v() - c) <= x.e() + 2 * F32Term.U * Math.abs(c);
    }

    /** x widened by a jump to another branch's value, where float32 may take that branch. */
    static F32Term open(final F32Term x, final boolean open, final double jump) {
        return open ? new F32Term(x.v(), x.e() + Math.abs(jump) * (1 + 8 * F32Term.U)) : x;
    }

    /**
     * A term that a comparison turns on or off (a branch taken or not, a token selected, rejected or kept): x where
     * it is on, 0 where off, and where float32 may decide it either way x's bound widened by the whole term.
     */
    static F32Term takenOrZero(final F32Term x, final boolean taken, final boolean open) {
        return open(taken ? x : F32Term.of(0), open, Math.abs(x.v()) + x.e());
    }

    /**
     * PPO's clip on a ratio r (vanilla's token ratio, gspo's sequence ratio): l1 = -A r, l2 = -A clamp(r, lo, hi),
     * m = max(l1, l2), then for A &lt; 0 with a dual clip c min(-A c, m). pg_clipfrac counts l2 &gt; l1 (A &gt; 0:
     * r &lt; lo, A &lt; 0: r &gt; hi), pg_clipfrac_lower A &lt; 0 and m &gt; -A c (r &gt; c). d loss / d r is -A on the
     * unclipped branch (half of it at m = -A c), 0 on a clipped one; {@code passes} says whether r's own clamp passes
     * the gradient, {@code passOpen} whether float32 may decide that either way. Where a deciding comparison is
     * open the gradient's bound grows by |A r| (the jump).
     */
    static void ppoClip(final F32Term r, final double a, final double lo, final double hi, final double c,
                        final boolean passes, final boolean passOpen, final Terms out) {
        final F32Term negA = F32Term.of(a).negate();
        final F32Term l1 = negA.times(r);
        final F32Term l2 = negA.times(r.clamp(lo, hi));
        final F32Term m = F32Term.max(l1, l2);
        final boolean dual = a < 0 && !Double.isNaN(c);
        final F32Term l3 = dual ? negA.times(F32Term.constant(c)) : null;
        out.loss = dual ? F32Term.min(l3, m) : m;
        final boolean clipOpen = a != 0 && near(r, a > 0 ? lo : hi);
        final boolean dualOpen = dual && near(r, c);
        out.metrics(l2.v() > l1.v(), clipOpen, dual && m.v() > l3.v(), dualOpen);
        double share = l1.v() >= l2.v() && passes ? 1 : 0;
        if (dual) {
            share *= m.v() < l3.v() ? 1 : m.v() == l3.v() ? 0.5 : 0;
        }
        out.grad = open(l1.timesExact(share), clipOpen || dualOpen || passOpen, l1.v() + l1.e());
    }

    /** The log-ratio clamped to [-20, 20], and whether float32 may put it on either side of a clamp edge. */
    private static boolean edgeOpen(final F32Term delta) {
        return delta.ambiguous(-20) || delta.ambiguous(20);
    }

    /** @return the mode's per-token rule, or null for a mode without one (geo_mean: {@link #geoMean}). */
    static Rule rule(final LossSpec spec) {
        final double lo = (float) (1.0 - spec.clipRatioLow());
        final double hi = (float) (1.0 + spec.clipRatioHigh());
        final double c = (float) spec.clipRatioC();
        return switch (spec.policyLossMode()) {
            // ratio = exp(clamp(lp - old, -20, 20)), PPO's clip with the dual clip; ppo_kl = mean(-clamped).
            case VANILLA -> (lp, old, a, seq, out) -> {
                final F32Term delta = F32Term.of(lp).minus(F32Term.of(old));
                final F32Term nak = delta.clamp(-20, 20);
                ppoClip(nak.exp(), a, lo, hi, c, delta.v() >= -20 && delta.v() <= 20, edgeOpen(delta), out);
                out.kl = nak.negate();
                return true;
            };
            // pg_losses = -log_prob A, d / d lp = -A; no clip metrics.
            case GPG -> (lp, old, a, seq, out) -> {
                out.loss = F32Term.of(lp).negate().times(F32Term.of(a));
                out.grad = F32Term.of(-a);
                out.kl = F32Term.of(lp).minus(F32Term.of(old)).clamp(-20, 20).negate();
                out.metrics(false, false, false, false);
                return true;
            };
            // pg_losses = -sg(clamp(r, lo, hi)) A log_prob; d / d lp = -clamp(r) A (continuous in r).
            case CISPO -> (lp, old, a, seq, out) -> {
                final F32Term nak = F32Term.of(lp).minus(F32Term.of(old)).clamp(-20, 20);
                final F32Term r = nak.exp();
                final F32Term coef = r.clamp(lo, hi).negate().times(F32Term.of(a));
                out.loss = coef.times(F32Term.of(lp));
                out.grad = coef;
                out.kl = nak.negate();
                out.metrics(r.v() < lo || r.v() > hi, near(r, lo) || near(r, hi), false, false);
                return true;
            };
            // pg_losses = -(log_prob A - (beta/2) (lp - old)^2), unclamped; d / d lp = -(A - (beta/2) 2 (lp - old)).
            case DRO -> (lp, old, a, seq, out) -> {
                final F32Term raw = F32Term.of(lp).minus(F32Term.of(old));
                final F32Term half = F32Term.constant(0.5 * spec.droBeta());
                out.loss = F32Term.of(lp).times(F32Term.of(a)).minus(half.times(raw.times(raw))).negate();
                out.grad = F32Term.of(a).minus(half.times(raw.timesExact(2))).negate();
                out.kl = raw.negate();
                out.metrics(false, false, false, false);
                return Math.abs(out.loss.v()) + out.loss.e() <= Float.MAX_VALUE;
            };
            // pg_losses = -sigmoid(tau (r - 1)) (4 / tau) A; d / d lp = -A (4 / tau) s (1 - s) tau r.
            case SAPO -> (lp, old, a, seq, out) -> {
                final F32Term delta = F32Term.of(lp).minus(F32Term.of(old));
                final F32Term nak = delta.clamp(-20, 20);
                final F32Term r = nak.exp();
                final F32Term tau = F32Term.constant(a > 0 ? spec.tauPos() : spec.tauNeg());
                final F32Term scale = F32Term.roundedOnce(4.0 / tau.v());
                final F32Term sig = tau.times(r.minus(F32Term.constant(1))).sigmoid();
                out.loss = sig.times(scale).negate().times(F32Term.of(a));
                final F32Term g = F32Term.of(a).negate().times(scale).times(F32Term.constant(1).minus(sig).times(sig))
                    .times(tau).times(r);
                final boolean passes = delta.v() >= -20 && delta.v() <= 20;
                out.grad = takenOrZero(g, passes, edgeOpen(delta));
                out.kl = nak.negate();
                out.metrics(false, false, false, false);
                return true;
            };
            case DPPO_TV, DPPO_KL -> dppo(spec, c);
            // s = exp(min(seq, 10)), seq the row's mean unclamped log-ratio; PPO's clip on s, no dual clip.
            case GSPO -> new Rule() {
                @Override
                public boolean token(final double lp, final double old, final double a, final F32Term seq,
                                     final Terms out) {
                    final F32Term logSeq = seq.clamp(Double.NEGATIVE_INFINITY, 10);
                    ppoClip(logSeq.exp(), a, lo, hi, Double.NaN, seq.v() <= 10, seq.ambiguous(10), out);
                    out.kl = F32Term.of(lp).minus(F32Term.of(old)).negate();
                    return true;
                }

                @Override
                public boolean sequence() {
                    return true;
                }
            };
            // pg_losses = -A r (r = exp(lp - old), unclamped), + coef |lp - old| where selected; ppo_kl = mean |.|.
            case KL_COV -> (lp, old, a, seq, out) -> {
                final F32Term nakl = F32Term.of(lp).minus(F32Term.of(old));
                final F32Term base = F32Term.of(a).negate().times(nakl.exp());
                final F32Term abs = new F32Term(Math.abs(nakl.v()), nakl.e());
                final F32Term coef = F32Term.constant(spec.ppoKlCoef());
                final F32Term kl = coef.times(abs);
                final F32Term loss = base.plus(kl);
                final F32Term grad = base.plus(coef.timesExact(Math.signum(nakl.v())));
                out.loss = open(out.selected ? loss : base, out.selectedOpen, kl.v() + kl.e());
                out.grad = open(out.selected ? grad : base, out.selectedOpen, coef.v());
                out.kl = abs;
                out.metrics(false, false, false, false);
                return Math.abs(loss.v()) + loss.e() <= Float.MAX_VALUE;
            };
            // PPO's clip on the unclamped ratio, times corr = 0 where selected; pg_clipfrac counts the selected.
            case CLIP_COV -> (lp, old, a, seq, out) -> {
                final F32Term nakl = F32Term.of(lp).minus(F32Term.of(old));
                ppoClip(nakl.exp(), a, lo, hi, Double.NaN, true, false, out);
                final F32Term loss = out.loss;
                final F32Term grad = out.grad;
                out.loss = takenOrZero(loss, !out.selected, out.selectedOpen);
                out.grad = takenOrZero(grad, !out.selected, out.selectedOpen);
                out.kl = nakl.negate();
                out.metrics(out.selected, out.selectedOpen, false, false);
                return Math.abs(loss.v()) + loss.e() <= Float.MAX_VALUE;
            };
            default -> null;
        };
    }

    /**
     * The tokens a selection takes in double, and those float32 may decide apart: a covariance selection (clip_cov,
     * kl_cov), bypass_mode's rejection mask.
     */
    record Selected(boolean[] in, boolean[] open) {
    }

    /**
     * The covariance selections. cov_t = (A_t - mean A) (lp_t - mean lp), the means float32 sums over the valid
     * tokens ({@link TokenTermBounds#rowMean} over the whole batch), then a subtraction and a product per token.
     * <ul>
     * <li>kl_cov: the k = max(1, int(N kl_cov_ratio)) largest. With the double ranking, a token of the top k is
     * surely taken when cov - e exceeds every other token's cov + e outside the top k, a token outside surely not
     * when cov + e is below every top-k token's cov - e; every other token is open (float32 and topk's tie order
     * may take it or not).
     * <li>clip_cov: candidates lb &lt; cov &lt; ub that PPO's clip does not hold (pg2 &gt; pg1 false), open where
     * cov is within its bound of lb or ub or the ratio within its bound of the deciding clip edge; verl takes
     * max(int(N clip_cov_ratio), 1) of them at random, so a case is judged only where every candidate fits
     * whichever way the open tokens go (sure + open &lt;= count): then all of them are taken.
     * </ul>
     *
     * @return the selection, or null where clip_cov's draw is not forced or a value is not finite.
     */
    static Selected covSelection(final LossSpec spec, final float[] lp, final float[] old, final float[] adv,
                                 final float[] mask) {
        final F32Term[] a = new F32Term[mask.length];
        final F32Term[] l = new F32Term[mask.length];
        int n = 0;
        for (int k = 0; k < mask.length; k++) {
            if (mask[k] != 0) {
                if (!Float.isFinite(lp[k]) || !Float.isFinite(old[k]) || !Float.isFinite(adv[k])) {
                    return null;
                }
                a[k] = F32Term.of(adv[k]);
                l[k] = F32Term.of(lp[k]);
                n++;
            } else if (spec.policyLossMode() == PolicyLossMode.CLIP_COV
                && (!Float.isFinite(lp[k]) || !Float.isFinite(adv[k]))) {
                return null; // clip_cov's masked_mean multiplies by the mask: a masked NaN poisons every covariance
            }
        }
        if (n == 0) {
            return null;
        }
        final F32Term meanA = TokenTermBounds.rowMean(a, 0, mask.length);
        final F32Term meanLp = TokenTermBounds.rowMean(l, 0, mask.length);
        final F32Term[] cov = new F32Term[mask.length];
        for (int k = 0; k < mask.length; k++) {
            if (a[k] != null) {
                cov[k] = a[k].minus(meanA).times(l[k].minus(meanLp));
                if (!Double.isFinite(cov[k].v()) || !Double.isFinite(cov[k].e())) {
                    return null;
                }
            }
        }
        final boolean[] in = new boolean[mask.length];
        final boolean[] open = new boolean[mask.length];
        if (spec.policyLossMode() == PolicyLossMode.KL_COV) {
            final Integer[] order = new Integer[n];
            for (int k = 0, i = 0; k < mask.length; k++) {
                if (cov[k] != null) {
                    order[i++] = k;
                }
            }
            java.util.Arrays.sort(order, (x, y) -> Double.compare(cov[y].v(), cov[x].v()));
            final int top = Math.max(1, (int) (n * spec.klCovRatio()));
            double lowIn = Double.POSITIVE_INFINITY;
            for (int i = 0; i < Math.min(top, n); i++) {
                in[order[i]] = true;
                lowIn = Math.min(lowIn, cov[order[i]].v() - cov[order[i]].e());
            }
            double highOut = Double.NEGATIVE_INFINITY;
            for (int i = top; i < n; i++) {
                highOut = Math.max(highOut, cov[order[i]].v() + cov[order[i]].e());
            }
            for (int i = 0; i < n; i++) {
                final F32Term c = cov[order[i]];
                if (in[order[i]]) {
                    open[order[i]] = !(c.v() - c.e() > highOut);
                } else {
                    open[order[i]] = !(c.v() + c.e() < lowIn);
                }
            }
            return new Selected(in, open);
        }
        final double lo = (float) (1.0 - spec.clipRatioLow());
        final double hi = (float) (1.0 + spec.clipRatioHigh());
        final double lb = (float) spec.clipCovLb();
        final double ub = (float) spec.clipCovUb();
        final Terms ppo = new Terms();
        int sure = 0;
        int either = 0;
        for (int k = 0; k < mask.length; k++) {
            if (cov[k] == null) {
                continue;
            }
            final F32Term r = F32Term.of(lp[k]).minus(F32Term.of(old[k])).exp();
            ppoClip(r, adv[k], lo, hi, Double.NaN, true, false, ppo);
            in[k] = !ppo.clipped && cov[k].v() < ub && cov[k].v() > lb;
            open[k] = ppo.clippedOpen || cov[k].ambiguous(lb) || cov[k].ambiguous(ub);
            sure += in[k] && !open[k] ? 1 : 0;
            either += open[k] ? 1 : 0;
        }
        return sure + either <= Math.max((int) (spec.clipCovRatio() * n), 1) ? new Selected(in, open) : null;
    }

    /**
     * dppo_tv / dppo_kl: pg_losses = -A sg(min(r, c)) log_prob sg(valid), valid from p - q (tv) or the binary KL
     * (kl) against clip_ratio_high / clip_ratio_low (p = exp(lp), q = exp(old)); pg_clipfrac counts the invalid
     * tokens, pg_clipfrac_lower the valid ones with r &gt; c. Where float32 may decide valid either way, the loss and
     * the gradient may take the other branch's value: their bounds grow by the jump.
     */
    private static Rule dppo(final LossSpec spec, final double c) {
        final boolean binaryKl = spec.policyLossMode() == PolicyLossMode.DPPO_KL;
        final double high = (float) spec.clipRatioHigh();
        final double low = (float) spec.clipRatioLow();
        return (lp, old, a, seq, out) -> {
            final F32Term nak = F32Term.of(lp).minus(F32Term.of(old)).clamp(-20, 20);
            final F32Term r = nak.exp();
            final F32Term p = F32Term.of(lp).exp();
            final F32Term q = F32Term.of(old).exp();
            final boolean valid;
            final boolean validOpen;
            if (binaryKl) {
                final F32Term one = F32Term.constant(1);
                final F32Term eps = F32Term.constant(1e-8);
                final F32Term ratio = one.minus(q).plus(eps).dividedBy(one.minus(p).plus(eps));
                final boolean first;
                final boolean firstOpen;
                if (ratio.v() > ratio.e()) {
                    final F32Term kl = q.times(F32Term.of(old).minus(F32Term.of(lp)))
                        .plus(one.minus(q).times(ratio.log()));
                    final double bound = a > 0 ? high : low;
                    first = kl.v() <= bound;
                    firstOpen = kl.ambiguous(bound);
                } else if (ratio.v() < -ratio.e()) {
                    // p > 1 (lp > 0): the log of a negative ratio is NaN, and NaN <= bound is false.
                    first = false;
                    firstOpen = false;
                } else {
                    return false;
                }
                final boolean second = a > 0 ? p.v() <= q.v() : p.v() >= q.v();
                final boolean secondOpen = F32Term.ambiguous(p, q);
                valid = first || second;
                validOpen = (firstOpen || secondOpen) && !(first && !firstOpen) && !(second && !secondOpen);
            } else {
                final F32Term d = p.minus(q);
                valid = a > 0 ? d.v() <= high : d.v() >= -low;
                validOpen = d.ambiguous(a > 0 ? high : -low);
            }
            final F32Term coef = F32Term.of(a).negate().times(F32Term.min(r, F32Term.constant(c)));
            final F32Term loss = coef.times(F32Term.of(lp));
            out.loss = takenOrZero(loss, valid, validOpen);
            out.grad = takenOrZero(coef, valid, validOpen);
            out.kl = nak.negate();
            out.metrics(!valid, validOpen, valid && r.v() > c, validOpen || near(r, c));
            return true;
        };
    }

    /**
     * A mode in double from the float32 inputs: the rule per valid token, times the rollout IS weight w where
     * given, then verl's agg_loss of the mode's aggregation ({@link TokenTermBounds}); ppo_kl and the fractions
     * are token means over the valid tokens.
     *
     * @param w  the rollout IS weights, or null.
     * @param bt the padded shape (b, t).
     * @return the referees, or null where a valid input is not finite, a token cannot be judged or no token is
     *         valid.
     */
    static Exact exact(final LossSpec spec, final Rule rule, final double[] lp, final double[] old, final double[] adv,
                       final double[] w, final float[] mask, final int[] bt) {
        final double[] weights = AggLossHandler.weights(spec.aggregationSpec(), mask, bt[0], bt[1]);
        if (weights == null) {
            return null;
        }
        F32Term[] inputs = null;
        if (w != null) {
            inputs = new F32Term[w.length];
            for (int k = 0; k < w.length; k++) {
                inputs[k] = Double.isFinite(w[k]) ? F32Term.of(w[k]) : null;
            }
        }
        return exact(spec, rule, lp, old, adv, inputs, mask, null, weights, bt);
    }

    /**
     * {@link #exact(LossSpec, Rule, double[], double[], double[], double[], float[], int[])} on given aggregation
     * weights, IS weights that carry their own bounds (bypass_mode's, computed in float32 from the log-probs) and
     * a token selection that float32 may decide apart (bypass_mode's rejection mask): a token of {@code mask}
     * whose {@code kept} comparison is open contributes its term or 0, so its loss and gradient terms are widened
     * by the whole term; the token means and fractions then have an open denominator and are not judged (null).
     *
     * @param w       per element, the IS weight with its bound (null where not finite), or null for none.
     * @param kept    null (every token of {@code mask} is taken), or which tokens of {@code mask} are taken in
     *                double and which float32 may take either way.
     * @param weights the aggregation weights (d loss / d term), nonzero on the tokens of {@code mask}.
     */
    static Exact exact(final LossSpec spec, final Rule rule, final double[] lp, final double[] old, final double[] adv,
                       final F32Term[] w, final float[] mask, final Selected kept, final double[] weights,
                       final int[] bt) {
        final F32Term[] loss = new F32Term[mask.length];
        final F32Term[] kl = new F32Term[mask.length];
        final F32Term[] grad = new F32Term[mask.length];
        final Terms terms = new Terms();
        int n = 0;
        int clipped = 0;
        int clippedOpen = 0;
        int lower = 0;
        int lowerOpen = 0;
        boolean anyOpen = false;
        final boolean byCov = spec.policyLossMode() == PolicyLossMode.KL_COV
            || spec.policyLossMode() == PolicyLossMode.CLIP_COV;
        final Selected selected = byCov ? covSelection(spec, F32Term.narrow(lp), F32Term.narrow(old), F32Term.narrow(adv), mask) : null;
        if (byCov && selected == null) {
            return null;
        }
        final F32Term[] d = rule.sequence() ? new F32Term[mask.length] : null;
        for (int i = 0; i < bt[0]; i++) {
            F32Term seq = null;
            if (rule.sequence()) {
                // verl: sum(nak * mask) / count in float32, each log-ratio rounded once.
                for (int k = i * bt[1]; k < (i + 1) * bt[1]; k++) {
                    d[k] = mask[k] != 0 ? F32Term.of(lp[k]).minus(F32Term.of(old[k])) : null;
                }
                seq = TokenTermBounds.rowMean(d, i * bt[1], (i + 1) * bt[1]);
            }
            for (int k = i * bt[1]; k < (i + 1) * bt[1]; k++) {
                if (mask[k] == 0) {
                    continue;
                }
                if (!Double.isFinite(lp[k]) || !Double.isFinite(old[k]) || !Double.isFinite(adv[k])
                    || (w != null && w[k] == null)) {
                    return null;
                }
                terms.selected = selected != null && selected.in()[k];
                terms.selectedOpen = selected != null && selected.open()[k];
                if (!rule.token(lp[k], old[k], adv[k], seq, terms)) {
                    return null;
                }
                n++;
                loss[k] = w != null ? terms.loss.times(w[k]) : terms.loss;
                grad[k] = w != null ? terms.grad.times(w[k]) : terms.grad;
                if (kept != null && kept.open()[k]) {
                    anyOpen = true;
                    loss[k] = takenOrZero(loss[k], kept.in()[k], true);
                    grad[k] = takenOrZero(grad[k], kept.in()[k], true);
                }
                kl[k] = terms.kl;
                clipped += terms.clipped ? 1 : 0;
                clippedOpen += terms.clippedOpen ? 1 : 0;
                lower += terms.lower ? 1 : 0;
                lowerOpen += terms.lowerOpen ? 1 : 0;
            }
        }
        final CaseOutputs.Referee lossRef = TokenTermBounds.aggregated(loss, weights, bt[0], bt[1]);
        final CaseOutputs.Referee klRef = TokenTermBounds.tokenMean(kl, bt[0], bt[1]);
        final CaseOutputs.Referee gradRef = TokenTermBounds.gradient(grad, weights);
        if (lossRef == null || klRef == null || gradRef == null) {
            return null;
        }
        if (anyOpen) {
            return new Exact(lossRef, null, null, null, gradRef);
        }
        return new Exact(lossRef, TokenTermBounds.fraction(clipped, clippedOpen, n), klRef,
            TokenTermBounds.fraction(lower, lowerOpen, n), gradRef);
    }

    /**
     * geo_mean (GMPO) in double from the float32 inputs, one loss per row s (len_s valid tokens), a plain mean over
     * the B rows whatever the aggregation:
     * <pre>
     *   nakl_t = lp - old (one rounding),  k_t = min(nakl, clamp(nakl, -low, high)) for A &gt; 0, max(...) for A &lt; 0,
     *            0 for A = 0 (min, max, clamp: exact, the selected operand's bound)
     *   K_s = rowMean(k), A_s = rowMean(A), W_s = exp(rowMean(ln(w + 1e-10))) (1 without weights)
     *   loss_s = -A_s exp(K_s) W_s,  pg_loss = sum_s loss_s / B                    ({@link TokenTermBounds#rowMean},
     *                                                                            {@link TokenTermBounds#aggregated})
     *   d pg_loss / d lp_t = (-A_s exp(K_s) W_s) dk_t / (B len_s),  dk_t = 1 where k_t follows nakl
     *            (A &gt; 0: nakl &lt;= high; A &lt; 0: nakl &gt;= -low), else 0; open (jump |A_s exp(K_s) W_s|) where
     *            nakl is within its bound of that edge                      ({@link TokenTermBounds#gradient})
     *   pg_clipfrac / pg_clipfrac_lower: nakl outside [-low, high] with A &gt; 0 / A &lt; 0, open within its bound
     *            of either edge; ppo_kl = mean(-nakl)
     * </pre>
     * k is continuous at the edges, so the loss has no jump there.
     *
     * @return the referees, or null where a valid input is not finite, no token is valid or a row's float32 loss
     *         may overflow (the engine then clamps the mean log-ratio, unlike verl).
     */
    static Exact geoMean(final LossSpec spec, final float[] lp, final float[] old, final float[] adv, final float[] w,
                         final float[] mask, final int[] bt) {
        final double low = (float) -spec.clipRatioLow();
        final double high = (float) spec.clipRatioHigh();
        final int b = bt[0];
        final int t = bt[1];
        final F32Term[] k = new F32Term[mask.length];
        final F32Term[] a = new F32Term[mask.length];
        final F32Term[] logW = w != null ? new F32Term[mask.length] : null;
        final F32Term[] kl = new F32Term[mask.length];
        final F32Term[] grad = new F32Term[mask.length];
        final double[] gradWeight = new double[mask.length];
        final F32Term[] rows = new F32Term[b];
        final double[] rowWeight = new double[b];
        final boolean[] follows = new boolean[mask.length];
        final boolean[] edgeOpen = new boolean[mask.length];
        int n = 0;
        int clipped = 0;
        int lower = 0;
        int open = 0;
        int lowerOpen = 0;
        for (int i = 0; i < b; i++) {
            int len = 0;
            for (int j = i * t; j < (i + 1) * t; j++) {
                if (mask[j] == 0) {
                    continue;
                }
                if (!Float.isFinite(lp[j]) || !Float.isFinite(old[j]) || !Float.isFinite(adv[j])
                    || (w != null && !Float.isFinite(w[j]))) {
                    return null;
                }
                len++;
                final F32Term nakl = F32Term.of(lp[j]).minus(F32Term.of(old[j]));
                final F32Term clamped = nakl.clamp(low, high);
                k[j] = adv[j] > 0 ? F32Term.min(nakl, clamped) : adv[j] < 0 ? F32Term.max(nakl, clamped)
                    : new F32Term(0, 0);
                a[j] = F32Term.of(adv[j]);
                if (logW != null) {
                    logW[j] = F32Term.of(w[j]).plus(F32Term.constant(1e-10)).log();
                }
                kl[j] = nakl.negate();
                follows[j] = adv[j] > 0 ? nakl.v() <= high : adv[j] < 0 && nakl.v() >= low;
                edgeOpen[j] = adv[j] != 0 && nakl.ambiguous(adv[j] > 0 ? high : low);
                final boolean outside = nakl.v() < low || nakl.v() > high;
                final boolean either = nakl.ambiguous(low) || nakl.ambiguous(high);
                clipped += outside && adv[j] > 0 ? 1 : 0;
                open += either && adv[j] > 0 ? 1 : 0;
                lower += outside && adv[j] < 0 ? 1 : 0;
                lowerOpen += either && adv[j] < 0 ? 1 : 0;
            }
            n += len;
            final F32Term ratio = TokenTermBounds.rowMean(k, i * t, (i + 1) * t).exp();
            F32Term coef = TokenTermBounds.rowMean(a, i * t, (i + 1) * t).negate().times(ratio);
            if (logW != null) {
                coef = coef.times(TokenTermBounds.rowMean(logW, i * t, (i + 1) * t).exp());
            }
            if (!(Math.abs(ratio.v()) + ratio.e() <= Float.MAX_VALUE)
                || !(Math.abs(coef.v()) + coef.e() <= Float.MAX_VALUE)) {
                return null;
            }
            rows[i] = coef;
            rowWeight[i] = 1.0 / b;
            for (int j = i * t; j < (i + 1) * t; j++) {
                if (mask[j] != 0) {
                    grad[j] = takenOrZero(coef, follows[j], edgeOpen[j]);
                    gradWeight[j] = 1.0 / ((double) b * len);
                }
            }
        }
        if (n == 0) {
            return null;
        }
        final CaseOutputs.Referee lossRef = TokenTermBounds.aggregated(rows, rowWeight, 1, b);
        final CaseOutputs.Referee klRef = TokenTermBounds.tokenMean(kl, b, t);
        final CaseOutputs.Referee gradRef = TokenTermBounds.gradient(grad, gradWeight);
        if (lossRef == null || klRef == null || gradRef == null) {
            return null;
        }
        return new Exact(lossRef, TokenTermBounds.fraction(clipped, open, n), klRef,
            TokenTermBounds.fraction(lower, lowerOpen, n), gradRef);
    }
}
