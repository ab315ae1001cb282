package io.rlvec.engine;

import static io.rlvec.engine.TokenMemory.addWide;
import static io.rlvec.engine.TokenMemory.get;
import static io.rlvec.engine.TokenMemory.load;
import static io.rlvec.engine.TokenMemory.set;
import static io.rlvec.engine.TokenMemory.store;
import static io.rlvec.engine.TokenMemory.sumLanes;

import java.lang.foreign.MemorySegment;

import io.rlvec.Aggregation;
import io.rlvec.Column;
import io.rlvec.LossSpec;
import io.rlvec.OffHeapArray;
import io.rlvec.PolicyLossMode;
import io.rlvec.PolicyLossResult;
import io.rlvec.PolicyLossResult.Stat;
import io.rlvec.TokenBatch;
import io.rlvec.reference.Selection;
import io.rlvec.reference.TokenRule;

import jdk.incubator.vector.DoubleVector;
import jdk.incubator.vector.FloatVector;
import jdk.incubator.vector.VectorMask;
import jdk.incubator.vector.VectorOperators;

/**
 * The token-level policy-loss modes other than vanilla (dppo_tv, dppo_kl, sapo, gpg, cispo, dro, gspo, kl_cov,
 * clip_cov) with Vector API lanes: one skeleton, and per mode one vector loop ({@link ChunkRule}) with the float
 * operations of its {@link TokenRule}, so that every per-token value, and so the gradient, is bit-identical to the
 * reference.
 *
 * <p>Per sequence, chunk by chunk ({@link #CHUNK} tokens): the mode's loop writes per-token rows (loss, raw
 * gradient, ratio, kl term and the four metric flags as 0/1) into the scratch; the shared {@link #accumulate}
 * loop then applies the mask and the rollout weight, stores the gradient times the sequence's token weight, and
 * adds the double lane sums and exact counts; sequence tails shorter than a vector run the {@link TokenRule}
 * itself. Masked tokens are selected away (gradient +0.0f, never summed). Sequences run in order on the calling
 * thread, so results do not depend on the thread count. The selections of clip_cov and kl_cov and gspo's
 * sequence means are computed first with the reference's canonical code ({@link Selection}).
 */
final class RuleKernel {
    /** Tokens per chunk; a multiple of every lane count. */
    static final int CHUNK = 512;
    static final int R_LOSS = 0;
    static final int R_GRAD = 1;
    static final int R_RATIO = 2;
    static final int R_KL = 3;
    static final int R_CLIPPED = 4;
    static final int R_LOWER = 5;
    static final int R_LOW = 6;
    static final int R_HIGH = 7;
    static final int R_TMP = 8;
    static final int ROWS = 9;

    private static final FloatVector ZERO = FloatVector.zero(Vec.F);
    private static final FloatVector HALF = FloatVector.broadcast(Vec.F, 0.5f);
    private static final FloatVector ONE = FloatVector.broadcast(Vec.F, 1f);

    private RuleKernel() {
    }

    /** Runs the spec's mode; arguments were validated by the engine's façade. */
    static void compute(final LossSpec spec, final TokenBatch batch, final OffHeapArray grad,
                        final PolicyLossResult out, final Workspace ws) {
        final State st = ws.ruleState();
        st.bind(spec, batch, grad);
        try {
            run(spec, batch, st, out);
        } finally {
            st.unbind();
        }
    }

    private static void run(final LossSpec spec, final TokenBatch batch, final State st,
                            final PolicyLossResult out) {
        final LossSpec agg = spec.aggregationSpec();
        final PolicyLossMode mode = spec.policyLossMode();
        final int b = batch.numSequences();
        long validTokens = 0;
        long validSequences = 0;
        for (int s = 0; s < b; s++) {
            final long c = TokenMemory.countValid(st.mask, batch.offset(s), batch.offset(s + 1));
            st.seqCount[s] = c;
            validTokens += c;
            validSequences += c > 0 ? 1 : 0;
        }
        final double denominator = Aggregation.denominator(agg, batch, validTokens, validSequences);
        final boolean selects = mode == PolicyLossMode.CLIP_COV || mode == PolicyLossMode.KL_COV;
        if (selects) {
            Selection.select(spec, batch, st.selected);
            for (int t = 0; t < batch.numTokens(); t++) {
                st.flags[t] = st.selected[t] ? 1f : 0f;
            }
        }
        final ChunkRule rule = RULES[mode.ordinal()];
        final TokenRule scalar = TokenRule.of(spec);
        final TokenRule.Token tok = st.token;
        out.reset();
        for (int s = 0; s < b; s++) {
            final int start = batch.offset(s);
            final int end = batch.offset(s + 1);
            final long count = st.seqCount[s];
            final float tokenWeight = (float) Aggregation.tokenWeight(agg, denominator, count);
            final float sequence = mode == PolicyLossMode.GSPO ? meanLogRatio(st, start, end, count) : 0f;
            java.util.Arrays.fill(st.acc, 0.0);
            java.util.Arrays.fill(st.counts, 0);
            final int vecEnd = start + Vec.F.loopBound(end - start);
            for (int c = start; c < vecEnd; c += CHUNK) {
                final int ce = Math.min(c + CHUNK, vecEnd);
                rule.run(st, c, ce, sequence);
                accumulate(st, c, ce, tokenWeight);
            }
            double sum = sumLanes(st.acc, 0);
            double sumPos = sumLanes(st.acc, TokenMemory.DL);
            double sumNeg = sumLanes(st.acc, 2 * TokenMemory.DL);
            double kl = sumLanes(st.acc, 3 * TokenMemory.DL);
            final int[] n = st.counts;
            for (int t = vecEnd; t < end; t++) {
                if (get(st.mask, t) == 0f) {
                    if (st.grad != null) {
                        set(st.grad, t, 0f);
                    }
                    continue;
                }
                final float a = get(st.advantages, t);
                scalar.token(get(st.logProb, t), get(st.oldLogProb, t), a, sequence, selects && st.selected[t], tok);
                float loss = tok.loss;
                float g = tok.grad;
                if (st.weights != null) {
                    final float w = get(st.weights, t);
                    loss = loss * w;
                    g = g * w;
                }
                if (st.grad != null) {
                    set(st.grad, t, g * tokenWeight);
                }
                sum += loss;
                if (a > 0f) {
                    sumPos += loss;
                    n[C_POS]++;
                    n[C_POS_ABOVE] += tok.ratio > 1f ? 1 : 0;
                    n[C_HIGH] += tok.clippedHigh ? 1 : 0;
                } else if (a < 0f) {
                    sumNeg += loss;
                    n[C_NEG]++;
                    n[C_NEG_ABOVE] += tok.ratio > 1f ? 1 : 0;
                    n[C_LOW] += tok.clippedLow ? 1 : 0;
                }
                n[C_LOWER] += tok.lower ? 1 : 0;
                n[C_CLIPPED] += tok.clipped ? 1 : 0;
                kl += tok.kl;
            }
            out.add(Stat.LOSS_NUMERATOR, Aggregation.sequenceTerm(agg.lossAggMode(), sum, count));
            out.add(Stat.POS_NUMERATOR, Aggregation.sequenceTerm(agg.lossAggMode(), sumPos, count));
            out.add(Stat.NEG_NUMERATOR, Aggregation.sequenceTerm(agg.lossAggMode(), sumNeg, count));
            out.add(Stat.NEG_LOG_RATIO_SUM, kl);
            for (int k = 0; k < COUNTS; k++) {
                out.add(COUNT_STATS[k], n[k]);
            }
        }
        out.add(Stat.VALID_TOKENS, validTokens);
        out.add(Stat.VALID_SEQUENCES, validSequences);
        out.finish(agg, denominator);
    }

    /** gspo's sequence value: the canonical four-lane sum of the valid log-ratios over max(count, 1). */
    private static float meanLogRatio(final State st, final int start, final int end, final long count) {
        double l0 = 0;
        double l1 = 0;
        double l2 = 0;
        double l3 = 0;
        for (int t = start; t < end; t++) {
            if (get(st.mask, t) == 0f) {
                continue;
            }
            final double v = get(st.logProb, t) - get(st.oldLogProb, t);
            switch ((t - start) & 3) {
                case 0 -> l0 += v;
                case 1 -> l1 += v;
                case 2 -> l2 += v;
                default -> l3 += v;
            }
        }
        return (float) (io.rlvec.reference.Advantages.combine(l0, l1, l2, l3) / Math.max(count, 1));
    }

    static final int COUNTS = 8;
    static final int C_POS = 0;
    static final int C_NEG = 1;
    static final int C_POS_ABOVE = 2;
    static final int C_NEG_ABOVE = 3;
    static final int C_HIGH = 4;
    static final int C_LOW = 5;
    static final int C_LOWER = 6;
    static final int C_CLIPPED = 7;
    private static final Stat[] COUNT_STATS = {Stat.POS_TOKENS, Stat.NEG_TOKENS, Stat.POS_RATIO_ABOVE_ONE,
        Stat.NEG_RATIO_ABOVE_ONE, Stat.CLIPPED_HIGH, Stat.CLIPPED_LOW, Stat.DUAL_CLIPPED, Stat.CLIPPED};

    /**
     * The shared loop of a chunk: mask, rollout weight, gradient store, the four double lane sums (loss, its
     * A &gt; 0 and A &lt; 0 parts, the kl term) and the eight counts.
     */
    private static void accumulate(final State st, final int from, final int to, final float tokenWeight) {
        final float[] r = st.rows;
        final int base = -from;
        final MemorySegment maskSeg = st.mask;
        final MemorySegment advSeg = st.advantages;
        final MemorySegment wSeg = st.weights;
        final MemorySegment gSeg = st.grad;
        final double[] acc = st.acc;
        final FloatVector tw = FloatVector.broadcast(Vec.F, tokenWeight);
        DoubleVector accLoss = DoubleVector.fromArray(Vec.D, acc, 0);
        DoubleVector accPos = DoubleVector.fromArray(Vec.D, acc, TokenMemory.DL);
        DoubleVector accNeg = DoubleVector.fromArray(Vec.D, acc, 2 * TokenMemory.DL);
        DoubleVector accKl = DoubleVector.fromArray(Vec.D, acc, 3 * TokenMemory.DL);
        int nPos = 0;
        int nNeg = 0;
        int nPosAbove = 0;
        int nNegAbove = 0;
        int nHigh = 0;
        int nLow = 0;
        int nLower = 0;
        int nClipped = 0;
        for (int i = from; i < to; i += Vec.FL) {
            final VectorMask<Float> valid = load(maskSeg, i).compare(VectorOperators.NE, 0f);
            final FloatVector a = load(advSeg, i);
            FloatVector loss = FloatVector.fromArray(Vec.F, r, R_LOSS * CHUNK + base + i);
            FloatVector g = FloatVector.fromArray(Vec.F, r, R_GRAD * CHUNK + base + i);
            if (wSeg != null) {
                final FloatVector w = load(wSeg, i);
                loss = loss.mul(w);
                g = g.mul(w);
            }
            if (gSeg != null) {
                store(ZERO.blend(g.mul(tw), valid), gSeg, i);
            }
            loss = ZERO.blend(loss, valid);
            final VectorMask<Float> pos = a.compare(VectorOperators.GT, 0f).and(valid);
            final VectorMask<Float> neg = a.compare(VectorOperators.LT, 0f).and(valid);
            accLoss = addWide(accLoss, loss);
            accPos = addWide(accPos, ZERO.blend(loss, pos));
            accNeg = addWide(accNeg, ZERO.blend(loss, neg));
            accKl = addWide(accKl, ZERO.blend(FloatVector.fromArray(Vec.F, r, R_KL * CHUNK + base + i), valid));
            final VectorMask<Float> above = FloatVector.fromArray(Vec.F, r, R_RATIO * CHUNK + base + i)
                .compare(VectorOperators.GT, 1f);
            nPos += pos.trueCount();
            nNeg += neg.trueCount();
            nPosAbove += pos.and(above).trueCount();
            nNegAbove += neg.and(above).trueCount();
            nHigh += pos.and(flag(r, R_HIGH, base + i)).trueCount();
            nLow += neg.and(flag(r, R_LOW, base + i)).trueCount();
            nLower += valid.and(flag(r, R_LOWER, base + i)).trueCount();
            nClipped += valid.and(flag(r, R_CLIPPED, base + i)).trueCount();
        }
        accLoss.intoArray(acc, 0);
        accPos.intoArray(acc, TokenMemory.DL);
        accNeg.intoArray(acc, 2 * TokenMemory.DL);
        accKl.intoArray(acc, 3 * TokenMemory.DL);
        final int[] n = st.counts;
        n[C_POS] += nPos;
        n[C_NEG] += nNeg;
        n[C_POS_ABOVE] += nPosAbove;
        n[C_NEG_ABOVE] += nNegAbove;
        n[C_HIGH] += nHigh;
        n[C_LOW] += nLow;
        n[C_LOWER] += nLower;
        n[C_CLIPPED] += nClipped;
    }

    private static VectorMask<Float> flag(final float[] r, final int row, final int i) {
        return FloatVector.fromArray(Vec.F, r, row * CHUNK + i).compare(VectorOperators.NE, 0f);
    }

    private static FloatVector bit(final VectorMask<Float> m) {
        return ZERO.blend(ONE, m);
    }

    /** torch.maximum, NaN propagating (as PolicyLossKernel). */
    private static FloatVector maximum(final FloatVector a, final FloatVector b) {
        return b.blend(a, a.compare(VectorOperators.GT, b).or(a.compare(VectorOperators.NE, a)));
    }

    /** torch.clamp(x, lo, hi): x &lt; lo ? lo : (x &gt; hi ? hi : x). */
    private static FloatVector clamp(final FloatVector x, final float lo, final float hi) {
        return x.blend(hi, x.compare(VectorOperators.GT, hi)).blend(lo, x.compare(VectorOperators.LT, lo));
    }

    /** Whether clamp(x, lo, hi) passes the gradient: lo &lt;= x &lt;= hi. */
    private static VectorMask<Float> passes(final FloatVector x, final float lo, final float hi) {
        return x.compare(VectorOperators.GE, lo).and(x.compare(VectorOperators.LE, hi));
    }

    /**
     * PPO's maximum(pg1, pg2) gradient shares (pg2 = -A clamp(s, lo, hi)): 1 where pg1 &gt; pg2 or (s inside the
     * clip and pg2 &gt;= pg1), 0.5 where pg1 == pg2 outside it, else 0 (as TokenRule's maxShare sums).
     */
    private static FloatVector shares(final FloatVector pg1, final FloatVector pg2, final FloatVector s,
                                      final float lo, final float hi) {
        final VectorMask<Float> inside = passes(s, lo, hi);
        return ZERO.blend(HALF, pg1.compare(VectorOperators.EQ, pg2))
            .blend(ONE, pg1.compare(VectorOperators.GT, pg2).or(inside.and(pg2.compare(VectorOperators.GE, pg1))));
    }

    /** One mode's vector loop over a chunk: writes the rows of {@code [from, to)}. */
    private abstract static class ChunkRule {
        abstract void run(State st, int from, int to, float sequence);
    }

    private static void metrics(final float[] r, final int i, final FloatVector ratio, final FloatVector kl,
                                final VectorMask<Float> clipped, final VectorMask<Float> lower,
                                final VectorMask<Float> low, final VectorMask<Float> high) {
        ratio.intoArray(r, R_RATIO * CHUNK + i);
        kl.intoArray(r, R_KL * CHUNK + i);
        bit(clipped).intoArray(r, R_CLIPPED * CHUNK + i);
        bit(lower).intoArray(r, R_LOWER * CHUNK + i);
        bit(low).intoArray(r, R_LOW * CHUNK + i);
        bit(high).intoArray(r, R_HIGH * CHUNK + i);
    }

    private static final VectorMask<Float> NONE = VectorMask.fromLong(Vec.F, 0L);

    /** dppo_tv and dppo_kl ({@code TokenRule.Dppo}). */
    private static final class Dppo extends ChunkRule {
        private final boolean binaryKl;

        Dppo(final boolean binaryKl) {
            this.binaryKl = binaryKl;
        }

        @Override
        void run(final State st, final int from, final int to, final float sequence) {
            final float[] r = st.rows;
            final int base = -from;
            if (binaryKl) {
                // The binary KL's log is taken per token in double (StrictMath), as the reference does.
                for (int i = from; i < to; i++) {
                    final float p = io.rlvec.CanonicalMath.exp(get(st.logProb, i));
                    final float q = io.rlvec.CanonicalMath.exp(get(st.oldLogProb, i));
                    r[R_TMP * CHUNK + base + i] = TokenRule.Dppo.binaryKlOf(p, q, get(st.logProb, i),
                        get(st.oldLogProb, i));
                }
            }
            for (int i = from; i < to; i += Vec.FL) {
                final FloatVector lp = load(st.logProb, i);
                final FloatVector old = load(st.oldLogProb, i);
                final FloatVector a = load(st.advantages, i);
                final FloatVector nakl = clamp(lp.sub(old), TokenRule.LOG_RATIO_MIN, TokenRule.LOG_RATIO_MAX);
                final FloatVector ratio = VectorMath.exp(nakl);
                final FloatVector truncated = ratio.blend(st.clipC, ratio.compare(VectorOperators.GT, st.clipC));
                final FloatVector p = VectorMath.exp(lp);
                final FloatVector q = VectorMath.exp(old);
                final VectorMask<Float> positive = a.compare(VectorOperators.GT, 0f);
                final VectorMask<Float> valid;
                if (binaryKl) {
                    final FloatVector kl = FloatVector.fromArray(Vec.F, r, R_TMP * CHUNK + base + i);
                    final VectorMask<Float> posOk = kl.compare(VectorOperators.LE, st.high)
                        .or(p.compare(VectorOperators.LE, q));
                    final VectorMask<Float> negOk = kl.compare(VectorOperators.LE, st.low)
                        .or(p.compare(VectorOperators.GE, q));
                    valid = negOk.andNot(positive).or(posOk.and(positive));
                } else {
                    final FloatVector d = p.sub(q);
                    valid = d.compare(VectorOperators.GE, st.negLow).andNot(positive)
                        .or(d.compare(VectorOperators.LE, st.high).and(positive));
                }
                final FloatVector v = bit(valid);
                final FloatVector coef = a.neg().mul(truncated);
                coef.mul(lp).mul(v).intoArray(r, R_LOSS * CHUNK + base + i);
                coef.mul(v).intoArray(r, R_GRAD * CHUNK + base + i);
                final VectorMask<Float> invalid = valid.not();
                metrics(r, base + i, ratio, nakl.neg(), invalid,
                    valid.and(ratio.compare(VectorOperators.GT, st.clipC)),
                    invalid.and(a.compare(VectorOperators.LT, 0f)), invalid.and(positive));
            }
        }
    }

    /** sapo ({@code TokenRule.Sapo}). */
    private static final class Sapo extends ChunkRule {
        @Override
        void run(final State st, final int from, final int to, final float sequence) {
            final float[] r = st.rows;
            final int base = -from;
            for (int i = from; i < to; i += Vec.FL) {
                final FloatVector a = load(st.advantages, i);
                final FloatVector raw = load(st.logProb, i).sub(load(st.oldLogProb, i));
                final FloatVector nakl = clamp(raw, TokenRule.LOG_RATIO_MIN, TokenRule.LOG_RATIO_MAX);
                final FloatVector ratio = VectorMath.exp(nakl);
                final FloatVector tau = FloatVector.broadcast(Vec.F, st.tauNeg)
                    .blend(st.tauPos, a.compare(VectorOperators.GT, 0f));
                final FloatVector scale = FloatVector.broadcast(Vec.F, 4f).div(tau);
                final FloatVector s = ONE.div(ONE.add(VectorMath.exp(tau.mul(ratio.sub(1f)).neg())));
                final FloatVector gate = s.mul(scale);
                gate.neg().mul(a).intoArray(r, R_LOSS * CHUNK + base + i);
                ZERO.blend(a.neg().mul(scale).mul(ONE.sub(s).mul(s)).mul(tau).mul(ratio),
                        passes(raw, TokenRule.LOG_RATIO_MIN, TokenRule.LOG_RATIO_MAX))
                    .intoArray(r, R_GRAD * CHUNK + base + i);
                metrics(r, base + i, ratio, nakl.neg(), NONE, NONE, NONE, NONE);
            }
        }
    }

    /** gpg ({@code TokenRule.Gpg}). */
    private static final class Gpg extends ChunkRule {
        @Override
        void run(final State st, final int from, final int to, final float sequence) {
            final float[] r = st.rows;
            final int base = -from;
            for (int i = from; i < to; i += Vec.FL) {
                final FloatVector lp = load(st.logProb, i);
                final FloatVector a = load(st.advantages, i);
                final FloatVector nakl = clamp(lp.sub(load(st.oldLogProb, i)), TokenRule.LOG_RATIO_MIN,
                    TokenRule.LOG_RATIO_MAX);
                lp.neg().mul(a).intoArray(r, R_LOSS * CHUNK + base + i);
                a.neg().intoArray(r, R_GRAD * CHUNK + base + i);
                metrics(r, base + i, VectorMath.exp(nakl), nakl.neg(), NONE, NONE, NONE, NONE);
            }
        }
    }

    /** cispo ({@code TokenRule.Cispo}). */
    private static final class Cispo extends ChunkRule {
        @Override
        void run(final State st, final int from, final int to, final float sequence) {
            final float[] r = st.rows;
            final int base = -from;
            for (int i = from; i < to; i += Vec.FL) {
                final FloatVector lp = load(st.logProb, i);
                final FloatVector a = load(st.advantages, i);
                final FloatVector nakl = clamp(lp.sub(load(st.oldLogProb, i)), TokenRule.LOG_RATIO_MIN,
                    TokenRule.LOG_RATIO_MAX);
                final FloatVector ratio = VectorMath.exp(nakl);
                final FloatVector clipped = clamp(ratio, st.lower, st.upper);
                final FloatVector coef = clipped.neg().mul(a);
                coef.mul(lp).intoArray(r, R_LOSS * CHUNK + base + i);
                coef.intoArray(r, R_GRAD * CHUNK + base + i);
                metrics(r, base + i, ratio, nakl.neg(), ratio.compare(VectorOperators.NE, clipped), NONE,
                    a.compare(VectorOperators.LT, 0f).and(ratio.compare(VectorOperators.LT, st.lower)),
                    a.compare(VectorOperators.GT, 0f).and(ratio.compare(VectorOperators.GT, st.upper)));
            }
        }
    }

    /** dro ({@code TokenRule.Dro}). */
    private static final class Dro extends ChunkRule {
        @Override
        void run(final State st, final int from, final int to, final float sequence) {
            final float[] r = st.rows;
            final int base = -from;
            for (int i = from; i < to; i += Vec.FL) {
                final FloatVector lp = load(st.logProb, i);
                final FloatVector a = load(st.advantages, i);
                final FloatVector lr = lp.sub(load(st.oldLogProb, i));
                lp.mul(a).sub(lr.mul(lr).mul(st.halfBeta)).neg().intoArray(r, R_LOSS * CHUNK + base + i);
                a.sub(lr.mul(2f).mul(st.halfBeta)).neg().intoArray(r, R_GRAD * CHUNK + base + i);
                metrics(r, base + i, VectorMath.exp(clamp(lr, TokenRule.LOG_RATIO_MIN, TokenRule.LOG_RATIO_MAX)),
                    lr.neg(), NONE, NONE, NONE, NONE);
            }
        }
    }

    /** gspo ({@code TokenRule.Gspo}); {@code sequence} is the sequence's mean log-ratio. */
    private static final class Gspo extends ChunkRule {
        @Override
        void run(final State st, final int from, final int to, final float sequence) {
            final float[] r = st.rows;
            final int base = -from;
            for (int i = from; i < to; i += Vec.FL) {
                final FloatVector lp = load(st.logProb, i);
                final FloatVector a = load(st.advantages, i);
                final FloatVector logSeq = lp.sub(lp).add(sequence);
                final FloatVector s = VectorMath.exp(logSeq.blend(10f, logSeq.compare(VectorOperators.GT, 10f)));
                final FloatVector negA = a.neg();
                final FloatVector pg1 = negA.mul(s);
                final FloatVector pg2 = negA.mul(clamp(s, st.lower, st.upper));
                maximum(pg1, pg2).intoArray(r, R_LOSS * CHUNK + base + i);
                ZERO.blend(negA.mul(shares(pg1, pg2, s, st.lower, st.upper)).mul(s),
                        logSeq.compare(VectorOperators.LE, 10f))
                    .intoArray(r, R_GRAD * CHUNK + base + i);
                metrics(r, base + i, s, lp.sub(load(st.oldLogProb, i)).neg(),
                    pg2.compare(VectorOperators.GT, pg1), NONE,
                    a.compare(VectorOperators.LT, 0f).and(s.compare(VectorOperators.LT, st.lower)),
                    a.compare(VectorOperators.GT, 0f).and(s.compare(VectorOperators.GT, st.upper)));
            }
        }
    }

    /** kl_cov ({@code TokenRule.KlCov}); the selection is the flags row. */
    private static final class KlCov extends ChunkRule {
        @Override
        void run(final State st, final int from, final int to, final float sequence) {
            final float[] r = st.rows;
            final int base = -from;
            for (int i = from; i < to; i += Vec.FL) {
                final FloatVector a = load(st.advantages, i);
                final FloatVector nakl = load(st.logProb, i).sub(load(st.oldLogProb, i));
                final FloatVector ratio = VectorMath.exp(nakl);
                final FloatVector baseLoss = a.neg().mul(ratio);
                final FloatVector abs = nakl.abs();
                final VectorMask<Float> selected = FloatVector.fromArray(Vec.F, st.flags, i)
                    .compare(VectorOperators.NE, 0f);
                final FloatVector sign = nakl.blend(ONE, nakl.compare(VectorOperators.GT, 0f))
                    .blend(ONE.neg(), nakl.compare(VectorOperators.LT, 0f));
                baseLoss.blend(baseLoss.add(abs.mul(st.klCoef)), selected).intoArray(r, R_LOSS * CHUNK + base + i);
                baseLoss.blend(baseLoss.add(sign.mul(st.klCoef)), selected).intoArray(r, R_GRAD * CHUNK + base + i);
                metrics(r, base + i, ratio, abs, NONE, NONE, NONE, NONE);
            }
        }
    }

    /** clip_cov ({@code TokenRule.ClipCov}); the selection is the flags row. */
    private static final class ClipCov extends ChunkRule {
        @Override
        void run(final State st, final int from, final int to, final float sequence) {
            final float[] r = st.rows;
            final int base = -from;
            for (int i = from; i < to; i += Vec.FL) {
                final FloatVector a = load(st.advantages, i);
                final FloatVector nakl = load(st.logProb, i).sub(load(st.oldLogProb, i));
                final FloatVector ratio = VectorMath.exp(nakl);
                final FloatVector negA = a.neg();
                final FloatVector pg1 = negA.mul(ratio);
                final FloatVector pg2 = negA.mul(clamp(ratio, st.lower, st.upper));
                final VectorMask<Float> selected = FloatVector.fromArray(Vec.F, st.flags, i)
                    .compare(VectorOperators.NE, 0f);
                final FloatVector corr = ONE.blend(ZERO, selected);
                maximum(pg1, pg2).mul(corr).intoArray(r, R_LOSS * CHUNK + base + i);
                negA.mul(shares(pg1, pg2, ratio, st.lower, st.upper)).mul(ratio).mul(corr)
                    .intoArray(r, R_GRAD * CHUNK + base + i);
                metrics(r, base + i, ratio, nakl.neg(), selected, NONE,
                    a.compare(VectorOperators.LT, 0f).and(ratio.compare(VectorOperators.LT, st.lower)),
                    a.compare(VectorOperators.GT, 0f).and(ratio.compare(VectorOperators.GT, st.upper)));
            }
        }
    }

    /** The loop of each mode, by ordinal (null for the modes with their own kernels). */
    private static final ChunkRule[] RULES = new ChunkRule[PolicyLossMode.values().length];

    static {
        RULES[PolicyLossMode.DPPO_TV.ordinal()] = new Dppo(false);
        RULES[PolicyLossMode.DPPO_KL.ordinal()] = new Dppo(true);
        RULES[PolicyLossMode.SAPO.ordinal()] = new Sapo();
        RULES[PolicyLossMode.GPG.ordinal()] = new Gpg();
        RULES[PolicyLossMode.CISPO.ordinal()] = new Cispo();
        RULES[PolicyLossMode.DRO.ordinal()] = new Dro();
        RULES[PolicyLossMode.GSPO.ordinal()] = new Gspo();
        RULES[PolicyLossMode.KL_COV.ordinal()] = new KlCov();
        RULES[PolicyLossMode.CLIP_COV.ordinal()] = new ClipCov();
    }

    /** The state of one call, reused across calls (held by the {@link Workspace}). */
    static final class State {
        MemorySegment logProb;
        MemorySegment oldLogProb;
        MemorySegment advantages;
        MemorySegment mask;
        MemorySegment weights;
        MemorySegment grad;
        float lower;
        float upper;
        float clipC;
        float high;
        float low;
        float negLow;
        float tauPos;
        float tauNeg;
        float halfBeta;
        float klCoef;
        final float[] rows = new float[ROWS * CHUNK];
        final double[] acc = new double[4 * TokenMemory.DL];
        final int[] counts = new int[COUNTS];
        final TokenRule.Token token = new TokenRule.Token();
        long[] seqCount = new long[0];
        boolean[] selected = new boolean[0];
        float[] flags = new float[0];
        /** geo_mean's per-token rows: k, dk/dnakl, log(w + 1e-10). */
        float[] geoK = new float[0];
        float[] geoDk = new float[0];
        float[] geoLogW = new float[0];

        void geoRows(final int n) {
            if (geoK.length < n) {
                final int m = Math.max(n, geoK.length * 2);
                geoK = new float[m];
                geoDk = new float[m];
                geoLogW = new float[m];
            }
        }

        void bind(final LossSpec spec, final TokenBatch batch, final OffHeapArray gradOut) {
            logProb = batch.column(Column.LOG_PROB).segment();
            oldLogProb = batch.column(Column.OLD_LOG_PROB).segment();
            advantages = batch.column(Column.ADVANTAGES).segment();
            mask = batch.mask().segment();
            final OffHeapArray w = batch.column(Column.ROLLOUT_IS_WEIGHTS);
            weights = w != null ? w.segment() : null;
            grad = gradOut != null ? gradOut.segment() : null;
            lower = (float) (1.0 - spec.clipRatioLow());
            upper = (float) (1.0 + spec.clipRatioHigh());
            clipC = (float) spec.clipRatioC();
            high = (float) spec.clipRatioHigh();
            low = (float) spec.clipRatioLow();
            negLow = (float) -spec.clipRatioLow();
            tauPos = (float) spec.tauPos();
            tauNeg = (float) spec.tauNeg();
            halfBeta = (float) (0.5 * spec.droBeta());
            klCoef = (float) spec.ppoKlCoef();
            if (seqCount.length < batch.numSequences()) {
                seqCount = new long[Math.max(batch.numSequences(), seqCount.length * 2)];
            }
            final PolicyLossMode mode = spec.policyLossMode();
            if ((mode == PolicyLossMode.CLIP_COV || mode == PolicyLossMode.KL_COV)
                && selected.length < batch.numTokens()) {
                final int n = Math.max(batch.numTokens(), selected.length * 2);
                selected = new boolean[n];
                flags = new float[n];
            }
        }

        void unbind() {
            logProb = null;
            oldLogProb = null;
            advantages = null;
            mask = null;
            weights = null;
            grad = null;
        }
    }
}
