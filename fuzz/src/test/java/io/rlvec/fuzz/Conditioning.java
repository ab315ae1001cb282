package io.rlvec.fuzz;

import java.util.function.DoubleSupplier;
import java.util.function.IntToDoubleFunction;

import io.rlvec.AggResult;
import io.rlvec.ElementType;
import io.rlvec.LossSpec;
import io.rlvec.OffHeapArray;
import io.rlvec.PolicyLossResult;
import io.rlvec.TokenBatch;
import io.rlvec.testing.Ulp;

/**
 * The parity contract's "reduced scalars within 1 ulp" rests on an error analysis: engine and reference both add
 * float32 terms in double, in different orders, so each sum carries at most {@code n * 2^-53 * sum |term|} of
 * rounding error; that is below half a float ulp of the result only while the sum is well conditioned
 * ({@code sum |term| / |sum|} below about {@code 2^28 / n}). Fuzzed inputs are often not: {@code 6 + MAX - 88.7 -
 * MAX - 6} is -6 in one order and -88.7 in another, both correct to within the bound. So a reduced value is held to
 * {@code ulps} float ulps plus that bound, with each term weighted by its weight in the loss (the aggregation's
 * gradient), which is what the forward error analysis gives.
 */
final class Conditioning {
    private static final double EPS = 0x1p-53;

    private Conditioning() {
    }

    /**
     * @return {@code 2 (n + 2) 2^-53 sum_t |w_t| * magnitude(t)} over the batch's valid tokens, where w_t is the
     *     token's weight in the aggregated loss (gradient of agg_loss); the rounding error both orders may carry.
     */
    static double bound(final LossSpec spec, final TokenBatch batch, final IntToDoubleFunction magnitude) {
        final int n = batch.numTokens();
        final OffHeapArray mask = batch.mask();
        try (Guarded g = new Guarded()) {
            final OffHeapArray ones = g.alloc(ElementType.F32, n);
            final OffHeapArray w = g.alloc(ElementType.F32, n);
            ones.fill(1f);
            Inputs.REFERENCE.aggLoss(spec, batch, ones, w, new AggResult());
            double s = 0;
            long valid = 0;
            for (int t = 0; t < n; t++) {
                if (mask.getFloat(t) != 0f) {
                    valid++;
                    s += Math.abs((double) w.getFloat(t)) * magnitude.applyAsDouble(t);
                }
            }
            return 2.0 * (valid + 2) * EPS * s;
        }
    }

    /**
     * @return the same bound for a masked mean over the valid tokens (ppo_kl), whose weights are 1 / valid tokens
     *     whatever the loss's aggregation.
     */
    static double meanBound(final TokenBatch batch, final IntToDoubleFunction magnitude) {
        final OffHeapArray mask = batch.mask();
        double s = 0;
        long valid = 0;
        for (int t = 0; t < batch.numTokens(); t++) {
            if (mask.getFloat(t) != 0f) {
                valid++;
                s += magnitude.applyAsDouble(t);
            }
        }
        return valid == 0 ? 0 : 2.0 * (valid + 2) * EPS * s / valid;
    }

    /** Asserts {@code |expected - actual| <= ulps * ulp + bound} (NaN equals NaN; an infinite bound admits all). */
    static void close(final float expected, final float actual, final long ulps, final DoubleSupplier lazyBound,
                      final String what) {
        if (Inputs.within(expected, actual, ulps)) {
            return;
        }
        final double bound = lazyBound.getAsDouble();
        if (Double.isNaN(bound) || Double.isInfinite(bound)) {
            return;
        }
        final double diff = Math.abs((double) expected - actual);
        final double allowed = ulps * (double) Math.ulp(Math.max(Math.abs(expected), Math.abs(actual))) + bound;
        if (!(diff <= allowed)) {
            throw new AssertionError(what + ": engine " + Ulp.show(actual) + " vs reference " + Ulp.show(expected)
                + ", more than " + ulps + " ulp + the conditioning bound " + bound);
        }
    }

    /**
     * The policy-loss contract: counts and count-derived fractions exact; pg_loss, its sign split and ppo_kl within
     * {@code ulps} plus their conditioning bounds.
     *
     * @param lossBound bound for pg_loss and its split (per-token loss magnitudes).
     * @param klBound   bound for ppo_kl (per-token |log ratio|).
     */
    static void policy(final PolicyLossResult expected, final PolicyLossResult actual, final long ulps,
                       final DoubleSupplier lossBound, final DoubleSupplier klBound, final String ctx) {
        if (expected.validTokens() != actual.validTokens() || expected.validSequences() != actual.validSequences()
            || expected.posTokens() != actual.posTokens() || expected.negTokens() != actual.negTokens()) {
            throw new AssertionError(ctx + ": counts " + actual + " vs reference " + expected);
        }
        for (final PolicyLossResult.Stat s : new PolicyLossResult.Stat[] {PolicyLossResult.Stat.CLIPPED,
            PolicyLossResult.Stat.DUAL_CLIPPED, PolicyLossResult.Stat.POS_RATIO_ABOVE_ONE,
            PolicyLossResult.Stat.NEG_RATIO_ABOVE_ONE, PolicyLossResult.Stat.CLIPPED_LOW,
            PolicyLossResult.Stat.CLIPPED_HIGH}) {
            if (Double.doubleToLongBits(expected.stat(s)) != Double.doubleToLongBits(actual.stat(s))) {
                throw new AssertionError(ctx + ": count " + s + " " + actual.stat(s) + " vs " + expected.stat(s));
            }
        }
        if (Double.doubleToLongBits(expected.denominator()) != Double.doubleToLongBits(actual.denominator())) {
            throw new AssertionError(ctx + ": denominator " + actual.denominator() + " vs " + expected.denominator());
        }
        close(expected.pgLoss(), actual.pgLoss(), ulps, lossBound, ctx + " pg_loss");
        close(expected.posContribution(), actual.posContribution(), ulps, lossBound, ctx + " pg_loss_pos_adv");
        close(expected.negContribution(), actual.negContribution(), ulps, lossBound, ctx + " pg_loss_neg_adv");
        close(expected.ppoKl(), actual.ppoKl(), ulps, klBound, ctx + " ppo_kl");
        Outcomes.close(expected.pgClipfrac(), actual.pgClipfrac(), 0, ctx + " pg_clipfrac");
        Outcomes.close(expected.pgClipfracLower(), actual.pgClipfracLower(), 0, ctx + " pg_clipfrac_lower");
        Outcomes.close(expected.clippedFrac(), actual.clippedFrac(), 0, ctx + " clipfrac_sign");
    }

    /**
     * @return a bound on |per-token policy loss| from the batch's columns: vanilla's clipped ratio never exceeds
     *     max(1 + clip_ratio_high, clip_ratio_c); the other token modes' |loss| is evaluated by their TokenRule
     *     (selected or not, whichever is larger; gspo at its largest sequence ratio e^10); geo_mean's sequence
     *     losses add in the same order on every engine (0).
     */
    static IntToDoubleFunction policyMagnitude(final LossSpec spec, final TokenBatch b, final float[] logProb) {
        final OffHeapArray lp = logProb == null ? b.column(io.rlvec.Column.LOG_PROB) : null;
        final OffHeapArray old = b.column(io.rlvec.Column.OLD_LOG_PROB);
        final OffHeapArray adv = b.column(io.rlvec.Column.ADVANTAGES);
        final OffHeapArray w = b.column(io.rlvec.Column.ROLLOUT_IS_WEIGHTS);
        final io.rlvec.PolicyLossMode mode = spec.policyLossMode();
        if (mode == io.rlvec.PolicyLossMode.GEO_MEAN) {
            return t -> 0.0;
        }
        if (mode == io.rlvec.PolicyLossMode.BYPASS_MODE) {
            // ppo_clip: vanilla's bound without IS weights; reinforce: |A log_prob| times a weight at most the IS
            // threshold (or, batch-normalised, anything: then no bound).
            final io.rlvec.RolloutCorrectionSpec rc = spec.rolloutCorrection();
            final double cap = Math.max(Math.max(1 + spec.clipRatioHigh(), spec.clipRatioC()), 1);
            final double wMax = !rc.hasIs() ? 1 : rc.batchNormalize() ? Double.POSITIVE_INFINITY : Math.max(1, rc.isUpper());
            return t -> {
                final float l = logProb != null ? logProb[t] : lp.getFloat(t);
                final double ratio = Math.exp(Math.max(-20, Math.min(20, (double) l - old.getFloat(t))));
                final double a = Math.abs((double) adv.getFloat(t));
                return Math.max(a * Math.max(ratio, cap), a * Math.abs((double) l) * wMax);
            };
        }
        if (mode != io.rlvec.PolicyLossMode.VANILLA) {
            final io.rlvec.reference.TokenRule rule = io.rlvec.reference.TokenRule.of(spec);
            final io.rlvec.reference.TokenRule.Token tok = new io.rlvec.reference.TokenRule.Token();
            return t -> {
                final float l = logProb != null ? logProb[t] : lp.getFloat(t);
                final double weight = w == null ? 1 : Math.max(1, Math.abs((double) w.getFloat(t)));
                double m = 0;
                for (final boolean flag : new boolean[] {false, true}) {
                    for (final float seq : new float[] {0f, 10f, -20f}) {
                        rule.token(l, old.getFloat(t), adv.getFloat(t), seq, flag, tok);
                        m = Math.max(m, Math.abs((double) tok.loss));
                    }
                }
                return m * weight;
            };
        }
        final double cap = Math.max(Math.max(1 + spec.clipRatioHigh(), spec.clipRatioC()), 1);
        return t -> {
            final float l = logProb != null ? logProb[t] : lp.getFloat(t);
            final double ratio = Math.exp(Math.max(-20, Math.min(20, (double) l - old.getFloat(t))));
            final double weight = w == null ? 1 : Math.max(1, Math.abs((double) w.getFloat(t)));
            return Math.abs((double) adv.getFloat(t)) * Math.max(ratio, cap) * weight;
        };
    }

    /** @return |log ratio| per token (ppo_kl's terms). */
    static IntToDoubleFunction klMagnitude(final TokenBatch b, final float[] logProb) {
        final OffHeapArray lp = logProb == null ? b.column(io.rlvec.Column.LOG_PROB) : null;
        final OffHeapArray old = b.column(io.rlvec.Column.OLD_LOG_PROB);
        return t -> Math.abs((double) (logProb != null ? logProb[t] : lp.getFloat(t)) - old.getFloat(t));
    }

    /**
     * @return a bound on the value loss's per-token term {@code 0.5 max((v - r)^2, (clip(v, old +- c) - r)^2)}:
     *     {@code 0.5 (max(|v|, |old| + c) + |r|)^2}, in double (float32 squares that overflow are infinite in
     *     both engines alike, and an infinite bound admits any difference).
     */
    static IntToDoubleFunction valueMagnitude(final LossSpec spec, final TokenBatch b) {
        final OffHeapArray v = b.column(io.rlvec.Column.VPREDS);
        final OffHeapArray r = b.column(io.rlvec.Column.RETURNS);
        final OffHeapArray old = b.column(io.rlvec.Column.VALUES);
        final double c = spec.cliprangeValue();
        return t -> {
            final double x = Math.max(Math.abs((double) v.getFloat(t)), Math.abs((double) old.getFloat(t)) + c)
                + Math.abs((double) r.getFloat(t));
            return 0.5 * x * x;
        };
    }
}
