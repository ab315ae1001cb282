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
        final var lpSeg = batch.column(Column.LOG_PROB).segment();
        final var oldSeg = batch.column(Column.OLD_LOG_PROB).segment();
        final OffHeapArray adv = batch.column(Column.ADVANTAGES);
        final var advSeg = adv.segment();
        final OffHeapArray weights = batch.column(Column.ROLLOUT_IS_WEIGHTS);
        final OffHeapArray mask = batch.mask();
        final var maskSeg = mask.segment();
        final float low = (float) -spec.clipRatioLow();
        final float high = (float) spec.clipRatioHigh();
        out.reset();
        final int vecEnd = Vec.F.loopBound(n);
        int nPos = 0;
        int nNeg = 0;
        int nClipPos = 0;
        int nClipNeg = 0;
        double kl = 0;
        jdk.incubator.vector.DoubleVector klAcc = jdk.incubator.vector.DoubleVector.zero(Vec.D);
        for (int i = 0; i < vecEnd; i += Vec.FL) {
            final VectorMask<Float> valid = load(maskSeg, i).compare(VectorOperators.NE, 0f);
            final FloatVector a = load(advSeg, i);
            final FloatVector nakl = load(lpSeg, i).sub(load(oldSeg, i));
            final FloatVector clamped = nakl.blend(high, nakl.compare(VectorOperators.GT, high))
                .blend(low, nakl.compare(VectorOperators.LT, low));
            // sign(A): 1, -1, or A itself (0 or NaN).
            final FloatVector sgn = a.blend(ONE, a.compare(VectorOperators.GT, 0f))
                .blend(ONE.neg(), a.compare(VectorOperators.LT, 0f));
            final FloatVector x = sgn.mul(nakl);
            final FloatVector c = sgn.mul(clamped);
            // torch.min: x where x < c or x is NaN, else c.
            final FloatVector min = c.blend(x, x.compare(VectorOperators.LT, c).or(x.compare(VectorOperators.NE, x)));
            sgn.mul(min).intoArray(k, i);
            final VectorMask<Float> passes = nakl.compare(VectorOperators.GE, low)
                .and(nakl.compare(VectorOperators.LE, high));
            final FloatVector shareX = ZERO.blend(HALF, x.compare(VectorOperators.EQ, c))
                .blend(ONE, x.compare(VectorOperators.LT, c));
            final FloatVector shareC = ZERO.blend(HALF, c.compare(VectorOperators.EQ, x))
                .blend(ONE, c.compare(VectorOperators.LT, x));
            sgn.mul(sgn).mul(shareX.add(ZERO.blend(shareC, passes))).intoArray(dk, i);
            final VectorMask<Float> clipped = nakl.compare(VectorOperators.NE, clamped).and(valid);
            final VectorMask<Float> pos = a.compare(VectorOperators.GT, 0f).and(valid);
            final VectorMask<Float> neg = a.compare(VectorOperators.LT, 0f).and(valid);
            nPos += pos.trueCount();
            nNeg += neg.trueCount();
            nClipPos += clipped.and(pos).trueCount();
            nClipNeg += clipped.and(neg).trueCount();
            klAcc = TokenMemory.addWide(klAcc, ZERO.blend(nakl.neg(), valid));
        }
        final double[] lanes = new double[TokenMemory.DL];
        klAcc.intoArray(lanes, 0);
        kl = TokenMemory.sumLanes(lanes, 0);
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
                final FloatVector c = FloatVector.broadcast(Vec.F,
                    len > 0 ? (float) ((double) (-advS * ratioS * wS) / len / b) : 0f);
                final var gSeg = grad.segment();
                final int ve = start + Vec.F.loopBound(end - start);
                for (int i = start; i < ve; i += Vec.FL) {
                    final VectorMask<Float> valid = load(maskSeg, i).compare(VectorOperators.NE, 0f);
                    store(ZERO.blend(c.mul(FloatVector.fromArray(Vec.F, dk, i)), valid), gSeg, i);
                }
                final float cs = c.lane(0);
                for (int t = ve; t < end; t++) {
                    grad.setFloat(t, mask.getFloat(t) != 0f ? cs * dk[t] : 0f);
                }
            }
        }
        out.add(Stat.NEG_LOG_RATIO_SUM, kl);
        out.add(Stat.CLIPPED, nClipPos);
        out.add(Stat.DUAL_CLIPPED, nClipNeg);
        out.add(Stat.POS_TOKENS, nPos);
        out.add(Stat.NEG_TOKENS, nNeg);
        out.add(Stat.VALID_TOKENS, validTokens);
        out.add(Stat.VALID_SEQUENCES, validSequences);
        out.finish(spec.aggregationSpec(), b);
    }
}
