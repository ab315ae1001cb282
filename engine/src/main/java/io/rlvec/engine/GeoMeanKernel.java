package io.rlvec.engine;

import static io.rlvec.engine.TokenMemory.load;
import static io.rlvec.engine.TokenMemory.store;

import io.rlvec.CanonicalMath;
import io.rlvec.Column;
import io.rlvec.ElementType;
import io.rlvec.LossSpec;
import io.rlvec.OffHeapArray;
import io.rlvec.PolicyLossResult;
import io.rlvec.PolicyLossResult.Stat;
import io.rlvec.TokenBatch;
import io.rlvec.reference.GeoMeanPolicyLoss;
import io.rlvec.reference.Selection;

import jdk.incubator.vector.DoubleVector;
import jdk.incubator.vector.FloatVector;
import jdk.incubator.vector.VectorMask;
import jdk.incubator.vector.VectorOperators;

/**
 * verl's {@code geo_mean} (GMPO) with Vector API lanes for the per-token work: the clipped log-ratio k, its
 * derivative (0, 0.5 or 1, torch's min and clamp shares) and the gradient store {@code c_s * dk}. The per-sequence
 * sums use the reference's canonical order ({@link Selection#sequenceSum}) over the per-token rows, so the
 * sequence coefficients, and the gradient, are bit-identical to {@code GeoMeanPolicyLoss}.
 */
final class GeoMeanKernel {
    private static final FloatVector ZERO = FloatVector.zero(Vec.F);
    private static final FloatVector HALF = FloatVector.broadcast(Vec.F, 0.5f);
    private static final FloatVector ONE = FloatVector.broadcast(Vec.F, 1f);

    private GeoMeanKernel() {
    }

    static void compute(final LossSpec spec, final TokenBatch batch, final OffHeapArray grad,
                        final PolicyLossResult out, final Workspace ws) {
        final RuleKernel.State st = ws.ruleState();
        final int n = batch.numTokens();
        st.geoRows(n);
        final float[] k = st.geoK;
        final float[] dk = st.geoDk;
        final float[] logW = st.geoLogW;
        final OffHeapArray adv = batch.column(Column.ADVANTAGES);
        final OffHeapArray weights = batch.column(Column.ROLLOUT_IS_WEIGHTS);
        final OffHeapArray mask = batch.mask();
        final var maskSeg = mask.segment();
        final float low = (float) -spec.clipRatioLow();
        final float high = (float) spec.clipRatioHigh();
        st.geoLow = low;
        st.geoHigh = high;
        st.bindGeo(batch);
        out.reset();
        final int vecEnd = Vec.F.loopBound(n);
        java.util.Arrays.fill(st.acc, 0.0);
        java.util.Arrays.fill(st.counts, 0);
        // Three loops through a megamorphic Step call site: each its own compilation unit (see RuleKernel.Step).
        run(CLIP, st, 0, vecEnd);
        run(DERIVATIVE, st, 0, vecEnd);
        run(METRICS, st, 0, vecEnd);
        double kl = TokenMemory.sumLanes(st.acc, 0);
        int nPos = st.counts[0];
        int nNeg = st.counts[1];
        int nClipPos = st.counts[2];
        int nClipNeg = st.counts[3];
        for (int t = vecEnd; t < n; t++) {
            final float a = adv.getFloat(t);
            final float nakl = batch.column(Column.LOG_PROB).getFloat(t) - batch.column(Column.OLD_LOG_PROB).getFloat(t);
            k[t] = GeoMeanPolicyLoss.clippedLogRatio(a, nakl, low, high);
            dk[t] = GeoMeanPolicyLoss.derivative(a, nakl, low, high);
            if (mask.getFloat(t) != 0f) {
                final boolean clipped = nakl != io.rlvec.reference.TorchOps.clamp(nakl, low, high);
                nPos += a > 0f ? 1 : 0;
                nNeg += a < 0f ? 1 : 0;
                nClipPos += clipped && a > 0f ? 1 : 0;
                nClipNeg += clipped && a < 0f ? 1 : 0;
                kl += -nakl;
            }
        }
        if (weights != null) {
            for (int t = 0; t < n; t++) {
                logW[t] = (float) StrictMath.log(weights.getFloat(t) + 1e-10f);
            }
        }
        final int b = batch.numSequences();
        long validTokens = 0;
        long validSequences = 0;
        for (int s = 0; s < b; s++) {
            final int start = batch.offset(s);
            final int end = batch.offset(s + 1);
            final long len = TokenMemory.countValid(maskSeg, start, end);
            validTokens += len;
            validSequences += len > 0 ? 1 : 0;
            final float meanK = len > 0 ? (float) (Selection.sequenceSum(batch, null, mask, s, k) / len) : 0f;
            final float advS = len > 0 ? (float) (Selection.sequenceSum(batch, adv, mask, s, null) / len) : 0f;
            final float ratioS = CanonicalMath.exp(meanK);
            final float wS = weights == null ? 1f
                : CanonicalMath.exp(len > 0 ? (float) (Selection.sequenceSum(batch, null, mask, s, logW) / len) : 0f);
            final float lossS = -advS * ratioS * wS;
            out.add(Stat.LOSS_NUMERATOR, lossS);
            out.add(advS > 0f ? Stat.POS_NUMERATOR : Stat.NEG_NUMERATOR, advS != 0f ? lossS : 0.0);
            if (grad != null) {
                st.geoCoef = len > 0 ? (float) ((double) (-advS * ratioS * wS) / len / b) : 0f;
                st.grad = grad.segment();
                st.mask = maskSeg;
                final int ve = start + Vec.F.loopBound(end - start);
                run(GRADIENT, st, start, ve);
                st.grad = null;
                st.mask = null;
                for (int t = ve; t < end; t++) {
                    grad.setFloat(t, mask.getFloat(t) != 0f ? st.geoCoef * dk[t] : 0f);
                }
            }
        }
        st.unbind();
        out.add(Stat.NEG_LOG_RATIO_SUM, kl);
        out.add(Stat.CLIPPED, nClipPos);
        out.add(Stat.DUAL_CLIPPED, nClipNeg);
        out.add(Stat.POS_TOKENS, nPos);
        out.add(Stat.NEG_TOKENS, nNeg);
        out.add(Stat.VALID_TOKENS, validTokens);
        out.add(Stat.VALID_SEQUENCES, validSequences);
        out.finish(spec.aggregationSpec(), b);
    }

    /** k = sign(A) min(sign(A) nakl, sign(A) clamp(nakl, -low, high)) per token into the state's row. */
    private static final class Clip extends RuleKernel.Step {
        @Override
        void run(final RuleKernel.State st, final int from, final int to, final float sequence) {
            final float low = st.geoLow;
            final float high = st.geoHigh;
            final float[] k = st.geoK;
            for (int i = from; i < to; i += Vec.FL) {
                final FloatVector a = load(st.advantages, i);
                final FloatVector nakl = load(st.logProb, i).sub(load(st.oldLogProb, i));
                final FloatVector sgn = sign(a);
                final FloatVector x = sgn.mul(nakl);
                final FloatVector c = sgn.mul(clamp(nakl, low, high));
                // torch.min: x where x < c or x is NaN, else c.
                sgn.mul(c.blend(x, x.compare(VectorOperators.LT, c).or(x.compare(VectorOperators.NE, x))))
                    .intoArray(k, i);
            }
        }
    }

    /** dk/dnakl = sign(A)^2 (min share of x + min share of the clamped * [clamp passes]) into the state's row. */
    private static final class Derivative extends RuleKernel.Step {
        @Override
        void run(final RuleKernel.State st, final int from, final int to, final float sequence) {
            final float low = st.geoLow;
            final float high = st.geoHigh;
            final float[] dk = st.geoDk;
            for (int i = from; i < to; i += Vec.FL) {
                final FloatVector a = load(st.advantages, i);
                final FloatVector nakl = load(st.logProb, i).sub(load(st.oldLogProb, i));
                final FloatVector sgn = sign(a);
                final FloatVector x = sgn.mul(nakl);
                final FloatVector c = sgn.mul(clamp(nakl, low, high));
                final VectorMask<Float> passes = nakl.compare(VectorOperators.GE, low)
                    .and(nakl.compare(VectorOperators.LE, high));
                final FloatVector shareX = ZERO.blend(HALF, x.compare(VectorOperators.EQ, c))
                    .blend(ONE, x.compare(VectorOperators.LT, c));
                final FloatVector shareC = ZERO.blend(HALF, c.compare(VectorOperators.EQ, x))
                    .blend(ONE, c.compare(VectorOperators.LT, x));
                sgn.mul(sgn).mul(shareX.add(ZERO.blend(shareC, passes))).intoArray(dk, i);
            }
        }
    }

    /** sign(A): 1, -1, or A itself (0 or NaN), as torch.sign. */
    private static FloatVector sign(final FloatVector a) {
        return a.blend(ONE, a.compare(VectorOperators.GT, 0f)).blend(ONE.neg(), a.compare(VectorOperators.LT, 0f));
    }

    /** torch.clamp(x, lo, hi). */
    private static FloatVector clamp(final FloatVector x, final float lo, final float hi) {
        return x.blend(hi, x.compare(VectorOperators.GT, hi)).blend(lo, x.compare(VectorOperators.LT, lo));
    }

    /** The metrics: tokens by sign, clipped by sign, and the double lane sum of -nakl (ppo_kl). */
    private static final class Metrics extends RuleKernel.Step {
        @Override
        void run(final RuleKernel.State st, final int from, final int to, final float sequence) {
            final float low = st.geoLow;
            final float high = st.geoHigh;
            int nPos = 0;
            int nNeg = 0;
            int nClipPos = 0;
            int nClipNeg = 0;
            DoubleVector klAcc = DoubleVector.zero(Vec.D);
            for (int i = from; i < to; i += Vec.FL) {
                final VectorMask<Float> valid = load(st.mask, i).compare(VectorOperators.NE, 0f);
                final FloatVector a = load(st.advantages, i);
                final FloatVector nakl = load(st.logProb, i).sub(load(st.oldLogProb, i));
                final VectorMask<Float> clipped = nakl.compare(VectorOperators.NE, clamp(nakl, low, high)).and(valid);
                final VectorMask<Float> pos = a.compare(VectorOperators.GT, 0f).and(valid);
                final VectorMask<Float> neg = a.compare(VectorOperators.LT, 0f).and(valid);
                nPos += pos.trueCount();
                nNeg += neg.trueCount();
                nClipPos += clipped.and(pos).trueCount();
                nClipNeg += clipped.and(neg).trueCount();
                klAcc = TokenMemory.addWide(klAcc, ZERO.blend(nakl.neg(), valid));
            }
            klAcc.intoArray(st.acc, 0);
            st.counts[0] = nPos;
            st.counts[1] = nNeg;
            st.counts[2] = nClipPos;
            st.counts[3] = nClipNeg;
        }
    }

    /** d pg_loss / d log_prob = c_s * dk, +0.0 where masked, for one sequence's vector part. */
    private static final class Gradient extends RuleKernel.Step {
        @Override
        void run(final RuleKernel.State st, final int from, final int to, final float sequence) {
            final FloatVector c = FloatVector.broadcast(Vec.F, st.geoCoef);
            final float[] dk = st.geoDk;
            for (int i = from; i < to; i += Vec.FL) {
                final VectorMask<Float> valid = load(st.mask, i).compare(VectorOperators.NE, 0f);
                store(ZERO.blend(c.mul(FloatVector.fromArray(Vec.F, dk, i)), valid), st.grad, i);
            }
        }
    }

    private static final RuleKernel.Step CLIP = new Clip();
    private static final RuleKernel.Step DERIVATIVE = new Derivative();
    private static final RuleKernel.Step METRICS = new Metrics();
    private static final RuleKernel.Step GRADIENT = new Gradient();

    /**
     * Every loop goes through this one call site, which sees four receiver classes: C2 does not inline them, so
     * each loop is its own compilation unit (a loop inlined into {@link #compute} shares its budget and boxes).
     */
    private static void run(final RuleKernel.Step step, final RuleKernel.State st, final int from, final int to) {
        step.run(st, from, to, 0f);
    }
}
