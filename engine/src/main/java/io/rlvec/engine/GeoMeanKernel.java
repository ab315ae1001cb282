package io.rlvec.engine;

import static io.rlvec.engine.TokenMemory.load;

import java.lang.foreign.MemorySegment;

import io.rlvec.Column;
import io.rlvec.LossSpec;
import io.rlvec.OffHeapArray;
import io.rlvec.PolicyLossResult;
import io.rlvec.PolicyLossResult.Stat;
import io.rlvec.TokenBatch;
import io.rlvec.reference.Advantages;
import io.rlvec.reference.GeoMeanPolicyLoss;

import jdk.incubator.vector.DoubleVector;
import jdk.incubator.vector.FloatVector;
import jdk.incubator.vector.VectorMask;
import jdk.incubator.vector.VectorOperators;

/**
 * verl's {@code geo_mean} (GMPO) with Vector API lanes: the clipped log-ratio k and its derivative (0, 0.5 or 1,
 * torch's min and clamp shares) per token, the metrics, the per-sequence canonical masked sums through the
 * engine's {@link Advantages.Kernels#maskedRowSums} (vector, the same order as the reference's scalar kernels),
 * and the gradient store {@code c_s * dk}; the per-sequence arithmetic is the reference's
 * ({@link GeoMeanPolicyLoss#sequence}), so the gradient is bit-identical to it.
 */
final class GeoMeanKernel {
    private static final FloatVector ZERO = FloatVector.zero(Vec.F);
    private static final FloatVector HALF = FloatVector.broadcast(Vec.F, 0.5f);
    private static final FloatVector ONE = FloatVector.broadcast(Vec.F, 1f);

    private GeoMeanKernel() {
    }

    static void compute(final LossSpec spec, final TokenBatch batch, final OffHeapArray grad,
                        final PolicyLossResult out, final Workspace ws, final Advantages.Kernels kernels) {
        final RuleKernel.State st = ws.ruleState();
        final int n = batch.numTokens();
        final int b = batch.numSequences();
        st.geoRows(n, b);
        final OffHeapArray weights = batch.column(Column.ROLLOUT_IS_WEIGHTS);
        final OffHeapArray mask = batch.mask();
        st.geoLow = (float) -spec.clipRatioLow();
        st.geoHigh = (float) spec.clipRatioHigh();
        st.bindGeo(batch);
        out.reset();
        final int vecEnd = Vec.F.loopBound(n);
        java.util.Arrays.fill(st.acc, 0.0);
        java.util.Arrays.fill(st.counts, 0);
        try {
            run(CLIP, st, 0, vecEnd);
            run(DERIVATIVE, st, 0, vecEnd);
            run(METRICS, st, 0, vecEnd);
            double kl = TokenMemory.sumLanes(st.acc, 0);
            final int[] c = st.counts;
            final MemorySegment kSeg = st.geoK.segment();
            final MemorySegment dkSeg = st.geoDk.segment();
            for (int t = vecEnd; t < n; t++) {
                final float a = TokenMemory.get(st.advantages, t);
                final float nakl = TokenMemory.get(st.logProb, t) - TokenMemory.get(st.oldLogProb, t);
                TokenMemory.set(kSeg, t, GeoMeanPolicyLoss.clippedLogRatio(a, nakl, st.geoLow, st.geoHigh));
                TokenMemory.set(dkSeg, t, GeoMeanPolicyLoss.derivative(a, nakl, st.geoLow, st.geoHigh));
                if (TokenMemory.get(st.mask, t) != 0f) {
                    final boolean clipped = nakl != io.rlvec.reference.TorchOps.clamp(nakl, st.geoLow, st.geoHigh);
                    c[0] += a > 0f ? 1 : 0;
                    c[1] += a < 0f ? 1 : 0;
                    c[2] += clipped && a > 0f ? 1 : 0;
                    c[3] += clipped && a < 0f ? 1 : 0;
                    kl += -nakl;
                }
            }
            if (weights != null) {
                final MemorySegment wSeg = st.geoLogW.segment();
                for (int t = 0; t < n; t++) {
                    TokenMemory.set(wSeg, t, GeoMeanPolicyLoss.logWeight(TokenMemory.get(st.weights, t)));
                }
            }
            kernels.maskedRowSums(batch, st.geoK, st.geoSumK);
            kernels.maskedRowSums(batch, batch.column(Column.ADVANTAGES), st.geoSumA);
            if (weights != null) {
                kernels.maskedRowSums(batch, st.geoLogW, st.geoSumW);
            }
            long validTokens = 0;
            long validSequences = 0;
            for (int s = 0; s < b; s++) {
                final int start = batch.offset(s);
                final int end = batch.offset(s + 1);
                final long len = TokenMemory.countValid(st.mask, start, end);
                validTokens += len;
                validSequences += len > 0 ? 1 : 0;
                st.geoCoef = GeoMeanPolicyLoss.sequence(out, len, st.geoSumK[s], st.geoSumA[s], weights != null,
                    st.geoSumW[s], b);
                if (grad != null) {
                    st.grad = grad.segment();
                    final int ve = start + Vec.F.loopBound(end - start);
                    run(GRADIENT, st, start, ve);
                    for (int t = ve; t < end; t++) {
                        grad.setFloat(t, mask.getFloat(t) != 0f ? st.geoCoef * TokenMemory.get(dkSeg, t) : 0f);
                    }
                }
            }
            out.add(Stat.NEG_LOG_RATIO_SUM, kl);
            out.add(Stat.CLIPPED, c[2]);
            out.add(Stat.DUAL_CLIPPED, c[3]);
            out.add(Stat.POS_TOKENS, c[0]);
            out.add(Stat.NEG_TOKENS, c[1]);
            out.add(Stat.VALID_TOKENS, validTokens);
            out.add(Stat.VALID_SEQUENCES, validSequences);
            out.finish(spec.aggregationSpec(), b);
        } finally {
            st.unbind();
        }
    }

    /** k = sign(A) min(sign(A) nakl, sign(A) clamp(nakl, -low, high)) per token. */
    private static final class Clip extends RuleKernel.Step {
        @Override
        void run(final RuleKernel.State st, final int from, final int to, final float sequence) {
            final MemorySegment lpSeg = st.logProb;
            final MemorySegment oldSeg = st.oldLogProb;
            final MemorySegment advSeg = st.advantages;
            final float low = st.geoLow;
            final float high = st.geoHigh;
            final MemorySegment k = st.geoK.segment();
            for (int i = from; i < to; i += Vec.FL) {
                final FloatVector a = load(advSeg, i);
                final FloatVector nakl = load(lpSeg, i).sub(load(oldSeg, i));
                final FloatVector sgn = sign(a);
                final FloatVector x = sgn.mul(nakl);
                final FloatVector c = sgn.mul(clamp(nakl, low, high));
                // torch.min: x where x < c or x is NaN, else c.
                sgn.mul(c.blend(x, x.compare(VectorOperators.LT, c).or(x.compare(VectorOperators.NE, x))))
                    .intoMemorySegment(k, (long) i * Float.BYTES, Vec.LE);
            }
        }
    }

    /** dk/dnakl = sign(A)^2 (min share of x + min share of the clamped * [clamp passes]) per token. */
    private static final class Derivative extends RuleKernel.Step {
        @Override
        void run(final RuleKernel.State st, final int from, final int to, final float sequence) {
            final MemorySegment lpSeg = st.logProb;
            final MemorySegment oldSeg = st.oldLogProb;
            final MemorySegment advSeg = st.advantages;
            final float low = st.geoLow;
            final float high = st.geoHigh;
            final MemorySegment dk = st.geoDk.segment();
            for (int i = from; i < to; i += Vec.FL) {
                final FloatVector a = load(advSeg, i);
                final FloatVector nakl = load(lpSeg, i).sub(load(oldSeg, i));
                final FloatVector sgn = sign(a);
                final FloatVector x = sgn.mul(nakl);
                final FloatVector c = sgn.mul(clamp(nakl, low, high));
                final VectorMask<Float> passes = nakl.compare(VectorOperators.GE, low)
                    .and(nakl.compare(VectorOperators.LE, high));
                final FloatVector shareX = ZERO.blend(HALF, x.compare(VectorOperators.EQ, c))
                    .blend(ONE, x.compare(VectorOperators.LT, c));
                final FloatVector shareC = ZERO.blend(HALF, c.compare(VectorOperators.EQ, x))
                    .blend(ONE, c.compare(VectorOperators.LT, x));
                sgn.mul(sgn).mul(shareX.add(ZERO.blend(shareC, passes)))
                    .intoMemorySegment(dk, (long) i * Float.BYTES, Vec.LE);
            }
        }
    }

    /** The metrics: tokens by sign, clipped by sign, and the double lane sum of -nakl (ppo_kl). */
    private static final class Metrics extends RuleKernel.Step {
        @Override
        void run(final RuleKernel.State st, final int from, final int to, final float sequence) {
            final MemorySegment lpSeg = st.logProb;
            final MemorySegment oldSeg = st.oldLogProb;
            final MemorySegment advSeg = st.advantages;
            final MemorySegment maskSeg = st.mask;
            final float low = st.geoLow;
            final float high = st.geoHigh;
            int nPos = 0;
            int nNeg = 0;
            int nClipPos = 0;
            int nClipNeg = 0;
            DoubleVector klAcc = DoubleVector.zero(Vec.D);
            for (int i = from; i < to; i += Vec.FL) {
                final VectorMask<Float> valid = load(maskSeg, i).compare(VectorOperators.NE, 0f);
                final FloatVector a = load(advSeg, i);
                final FloatVector nakl = load(lpSeg, i).sub(load(oldSeg, i));
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
            final MemorySegment maskSeg = st.mask;
            final MemorySegment gradSeg = st.grad;
            final FloatVector c = FloatVector.broadcast(Vec.F, st.geoCoef);
            final MemorySegment dk = st.geoDk.segment();
            for (int i = from; i < to; i += Vec.FL) {
                final long at = (long) i * Float.BYTES;
                final VectorMask<Float> valid = FloatVector.fromMemorySegment(Vec.F, maskSeg, at, Vec.LE)
                    .compare(VectorOperators.NE, 0f);
                ZERO.blend(c.mul(FloatVector.fromMemorySegment(Vec.F, dk, at, Vec.LE)), valid)
                    .intoMemorySegment(gradSeg, at, Vec.LE);
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

    /**
     * The steps, read from an array by index: C2 does not fold an array element into a constant, so at a call
     * {@code run(STEPS[CLIP], ...)} it cannot tell which step runs even after inlining {@link #run} (with a static
     * final step as the argument it could, and would inline the loop into {@link #compute}).
     */
    private static final RuleKernel.Step[] STEPS = {new Clip(), new Derivative(), new Metrics(), new Gradient()};
    private static final int CLIP = 0;
    private static final int DERIVATIVE = 1;
    private static final int METRICS = 2;
    private static final int GRADIENT = 3;

    /**
     * Every loop goes through this one call site, which sees four receiver classes: C2 does not inline them, so
     * each loop is its own compilation unit (a loop inlined into {@link #compute} shares its budget and boxes).
     */
    private static void run(final int step, final RuleKernel.State st, final int from, final int to) {
        STEPS[step].run(st, from, to, 0f);
    }
}
