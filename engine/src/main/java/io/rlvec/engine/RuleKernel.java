package io.rlvec.engine;

import static io.rlvec.engine.TokenMemory.addWide;
import static io.rlvec.engine.TokenMemory.get;
import static io.rlvec.engine.TokenMemory.load;
import static io.rlvec.engine.TokenMemory.set;
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
 * <p>Per sequence, chunk by chunk ({@link #CHUNK} tokens): the mode's loops write per-token rows (loss, raw
 * gradient, ratio, kl term) into the scratch, and its clip flags, if it has any, as lane-mask bits; the shared
 * steps then apply the mask and the rollout weight, store the gradient times the sequence's token weight, and add
 * the double lane sums and exact counts; sequence tails shorter than a vector run the {@link TokenRule} itself.
 * Every step reads the call's columns through locals: a field re-read after each off-heap store costs the
 * segment's checks again on every vector. Masked tokens are selected away (gradient +0.0f, never summed). Runs of whole sequences are the blocks
 * the engine's threads share ({@link State}); their partials are added in sequence order, so results do not depend
 * on the thread count. The selections of clip_cov and kl_cov and gspo's sequence means are computed first: the
 * selections by {@link CovSelection} (the same tokens as the reference's {@link Selection}), gspo's means in the
 * canonical four-lane order.
 */
final class RuleKernel {
    /** Tokens per chunk; a multiple of every lane count. */
    static final int CHUNK = 512;
    /** Per-token rows of the chunk in {@link State#rows}: loss, raw gradient, kl term, a mode's temporary. */
    static final int R_LOSS = 0;
    static final int R_GRAD = 1;
    static final int R_KL = 2;
    static final int R_TMP = 3;
    /** exp inputs and outputs: the ratio is always EX0 (what the sign split reads). */
    static final int R_IN0 = 4;
    static final int R_IN1 = 5;
    static final int R_EX0 = 6;
    static final int R_EX1 = 7;
    static final int R_EX2 = 8;
    static final int ROWS = 9;
    /** The clip flags, one lane mask (as bits) per vector of the chunk: {@code flags[F * SLOTS + vector]}. */
    static final int F_CLIPPED = 0;
    static final int F_LOWER = 1;
    static final int F_LOW = 2;
    static final int F_HIGH = 3;
    /** Vectors per chunk at the narrowest width (4 lanes). */
    static final int SLOTS = CHUNK / 4;

    private static final FloatVector ZERO = FloatVector.zero(Vec.F);
    private static final FloatVector HALF = FloatVector.broadcast(Vec.F, 0.5f);
    private static final FloatVector ONE = FloatVector.broadcast(Vec.F, 1f);

    private RuleKernel() {
    }

    /** Runs the spec's mode; arguments were validated by the engine's façade. */
    static void compute(final LossSpec spec, final TokenBatch batch, final OffHeapArray grad,
                        final PolicyLossResult out, final Workspace ws,
                        final io.rlvec.reference.Advantages.Kernels kernels, final Blocks blocks) {
        final State st = ws.ruleState();
        st.bind(spec, batch, grad);
        if (st.covSelection == null) {
            st.covSelection = new CovSelection(kernels);
        }
        try {
            run(spec, batch, st, out, blocks);
        } finally {
            st.unbind();
        }
    }

    private static void run(final LossSpec spec, final TokenBatch batch, final State st,
                            final PolicyLossResult out, final Blocks blocks) {
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
        for (int s = 0; s < b; s++) {
            // Rounded to float once per sequence, as the reference does.
            st.seqWeight[s] = (float) Aggregation.tokenWeight(agg, denominator, st.seqCount[s]);
        }
        st.selects = mode == PolicyLossMode.CLIP_COV || mode == PolicyLossMode.KL_COV;
        if (st.selects) {
            st.covSelection.select(spec, batch, st.selected);
        }
        st.chunkRule = RULES[mode.ordinal()];
        if (st.ruleSpec != spec) {
            // One rule object per spec object: a caller reusing its spec allocates nothing per call.
            st.rule = TokenRule.of(spec);
            st.ruleSpec = spec;
        }
        st.gspo = mode == PolicyLossMode.GSPO;
        st.plan(batch, blocks.parallelism());
        blocks.forEach(st.numBlocks, st);
        out.reset();
        for (int s = 0; s < b; s++) {
            final long count = st.seqCount[s];
            final int at = s * SEQ_SUMS;
            out.add(Stat.LOSS_NUMERATOR, Aggregation.sequenceTerm(agg.lossAggMode(), st.seqSums[at], count));
            out.add(Stat.POS_NUMERATOR, Aggregation.sequenceTerm(agg.lossAggMode(), st.seqSums[at + 1], count));
            out.add(Stat.NEG_NUMERATOR, Aggregation.sequenceTerm(agg.lossAggMode(), st.seqSums[at + 2], count));
            out.add(Stat.NEG_LOG_RATIO_SUM, st.seqSums[at + 3]);
            for (int k = 0; k < COUNTS; k++) {
                out.add(COUNT_STATS[k], st.seqCounts[s * COUNTS + k]);
            }
        }
        out.add(Stat.VALID_TOKENS, validTokens);
        out.add(Stat.VALID_SEQUENCES, validSequences);
        out.finish(agg, denominator);
    }

    /** Doubles per sequence in {@link State#seqSums}: loss, its A &gt; 0 and A &lt; 0 parts, the kl term. */
    static final int SEQ_SUMS = 4;

    /**
     * One sequence, on scratch {@code w} (a worker's, bound to the call {@code st}): its chunks through the mode's
     * rule, the scalar tail, and its partials into {@code st}'s per-sequence slots.
     */
    private static void sequence(final State st, final State w, final int s, final TokenBatch batch) {
        final int start = batch.offset(s);
        final int end = batch.offset(s + 1);
        final long count = st.seqCount[s];
        final float tokenWeight = st.seqWeight[s];
        w.tokenWeight = tokenWeight;
        final boolean selects = st.selects;
        final float sequence = st.gspo ? meanLogRatio(w, start, end, count) : 0f;
        java.util.Arrays.fill(w.acc, 0.0);
        java.util.Arrays.fill(w.counts, 0);
        final ChunkRule rule = st.chunkRule;
        final int vecEnd = start + Vec.F.loopBound(end - start);
        for (int c = start; c < vecEnd; c += CHUNK) {
            final int ce = Math.min(c + CHUNK, vecEnd);
            rule.run(w, c, ce, sequence);
        }
        double sum = sumLanes(w.acc, 0);
        double sumPos = sumLanes(w.acc, TokenMemory.DL);
        double sumNeg = sumLanes(w.acc, 2 * TokenMemory.DL);
        double kl = sumLanes(w.acc, 3 * TokenMemory.DL);
        final int[] n = w.counts;
        final TokenRule scalar = st.rule;
        final TokenRule.Token tok = w.token;
        for (int t = vecEnd; t < end; t++) {
            if (get(w.mask, t) == 0f) {
                if (w.grad != null) {
                    set(w.grad, t, 0f);
                }
                continue;
            }
            final float a = get(w.advantages, t);
            scalar.token(get(w.logProb, t), get(w.oldLogProb, t), a, sequence, selects && st.selected[t], tok);
            float loss = tok.loss;
            float g = tok.grad;
            if (w.weights != null) {
                final float wt = get(w.weights, t);
                loss = loss * wt;
                g = g * wt;
            }
            if (w.grad != null) {
                set(w.grad, t, g * tokenWeight);
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
        final int at = s * SEQ_SUMS;
        st.seqSums[at] = sum;
        st.seqSums[at + 1] = sumPos;
        st.seqSums[at + 2] = sumNeg;
        st.seqSums[at + 3] = kl;
        System.arraycopy(n, 0, st.seqCounts, s * COUNTS, COUNTS);
    }

    /**
     * gspo's sequence value: the canonical four-lane sum of the valid log-ratios over max(count, 1). Four tokens
     * at a time, widened to four double lanes (lane k holds the tokens at positions = k mod 4, the canonical
     * order at every vector width), then the reference's own tail and combination.
     */
    private static float meanLogRatio(final State st, final int start, final int end, final long count) {
        DoubleVector acc = DoubleVector.zero(D4);
        int t = start;
        for (; t + 4 <= end; t += 4) {
            final long at = (long) t * Float.BYTES;
            // lanewise, not sub or add: see AdvantageKernel#plus.
            final FloatVector x = FloatVector.fromMemorySegment(F4, st.logProb, at, Vec.LE)
                .lanewise(VectorOperators.SUB, FloatVector.fromMemorySegment(F4, st.oldLogProb, at, Vec.LE));
            final VectorMask<Double> valid = AdvantageKernel.validLanes(st.mask, at);
            acc = AdvantageKernel.plus(acc, ZERO4.blend(x.convertShape(VectorOperators.F2D, D4, 0), valid));
        }
        final double[] l = st.lanes;
        acc.intoArray(l, 0);
        for (; t < end; t++) {
            if (get(st.mask, t) != 0f) {
                l[(t - start) & 3] += get(st.logProb, t) - get(st.oldLogProb, t);
            }
        }
        return (float) (io.rlvec.reference.Advantages.combine(l[0], l[1], l[2], l[3]) / Math.max(count, 1));
    }

    private static final jdk.incubator.vector.VectorSpecies<Float> F4 = FloatVector.SPECIES_128;
    private static final jdk.incubator.vector.VectorSpecies<Double> D4 = DoubleVector.SPECIES_256;
    private static final DoubleVector ZERO4 = AdvantageKernel.ZERO_D4;

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
     * Shared step: d pg_loss / d log_prob = GRAD [* w] * token weight, +0.0 where masked (only with a gradient
     * output).
     */
    private static final class GradientStore extends Step {
        @Override
        void run(final State st, final int from, final int to, final float sequence) {
            final MemorySegment maskSeg = st.mask;
            final MemorySegment wSeg = st.weights;
            final MemorySegment gradSeg = st.grad;
            if (gradSeg == null) {
                return;
            }
            final float[] r = st.rows;
            final int base = -from;
            final FloatVector tw = FloatVector.broadcast(Vec.F, st.tokenWeight);
            for (int i = from; i < to; i += Vec.FL) {
                final VectorMask<Float> valid = load(maskSeg, i).compare(VectorOperators.NE, 0f);
                FloatVector g = row(r, R_GRAD, base + i);
                if (wSeg != null) {
                    g = g.mul(load(wSeg, i));
                }
                ZERO.blend(g.mul(tw), valid).intoMemorySegment(gradSeg, (long) i * Float.BYTES, Vec.LE);
            }
        }
    }

    /**
     * Shared step: the double lane sums of the loss [* w], its A &gt; 0 and A &lt; 0 parts and the kl term, and the
     * eight exact counts behind the clip fractions and the sign split (from lane-mask bits), in one loop that reads
     * the mask and A once. The gradient store stays a step of its own: with it, this loop exceeds C2's inlining
     * budget where rollout weights are present, and boxes every vector.
     */
    private static final class Sums extends Step {
        /** Whether the mode writes the four clip flags (else they are all false and not read). */
        private final boolean flags;
        /** The row whose value v says ratio &gt; 1 as v &gt;= {@link #aboveMin}. */
        private final int aboveRow;
        private final float aboveMin;

        Sums(final boolean flags, final int aboveRow, final float aboveMin) {
            this.flags = flags;
            this.aboveRow = aboveRow;
            this.aboveMin = aboveMin;
        }

        @Override
        void run(final State st, final int from, final int to, final float sequence) {
            final MemorySegment advSeg = st.advantages;
            final MemorySegment maskSeg = st.mask;
            final MemorySegment wSeg = st.weights;
            final float[] r = st.rows;
            final long[] f = st.flags;
            final int base = -from;
            final double[] acc = st.acc;
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
                final VectorMask<Float> posMask = a.compare(VectorOperators.GT, 0f);
                final VectorMask<Float> negMask = a.compare(VectorOperators.LT, 0f);
                FloatVector loss = row(r, R_LOSS, base + i);
                if (wSeg != null) {
                    loss = loss.mul(load(wSeg, i));
                }
                loss = ZERO.blend(loss, valid);
                accLoss = addWide(accLoss, loss);
                accPos = addWide(accPos, ZERO.blend(loss, posMask));
                accNeg = addWide(accNeg, ZERO.blend(loss, negMask));
                accKl = addWide(accKl, ZERO.blend(row(r, R_KL, base + i), valid));
                final long v = valid.toLong();
                final long pos = posMask.toLong() & v;
                final long neg = negMask.toLong() & v;
                final long above = row(r, aboveRow, base + i).compare(VectorOperators.GE, aboveMin).toLong();
                nPos += Long.bitCount(pos);
                nNeg += Long.bitCount(neg);
                nPosAbove += Long.bitCount(pos & above);
                nNegAbove += Long.bitCount(neg & above);
                if (flags) {
                    final int slot = (base + i) / Vec.FL;
                    nHigh += Long.bitCount(pos & f[F_HIGH * SLOTS + slot]);
                    nLow += Long.bitCount(neg & f[F_LOW * SLOTS + slot]);
                    nLower += Long.bitCount(v & f[F_LOWER * SLOTS + slot]);
                    nClipped += Long.bitCount(v & f[F_CLIPPED * SLOTS + slot]);
                }
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
    }

    private static final Step GRADIENT_STORE = new GradientStore();
    /** ratio &gt; 1 as ratio &gt;= the next float after 1. */
    private static final float ABOVE_ONE = Math.nextUp(1f);
    /**
     * The least float x whose canonical exp is above 1, 2^-24 + 1 ulp: exp(x) &gt; 1 exactly when x &gt;= this
     * (for |x| below 2^-22 the canonical exp computes 1 + x, and 1 + 2^-24 rounds to 1; {@code RatioAboveOneTest}
     * checks every float of magnitude 2^-30 to 2^-10 and a sample of the rest of [-20, 20]). gpg and dro need their ratio only for the sign
     * split's "ratio &gt; 1" count, so they test the clamped log-ratio against this instead of taking its exp.
     */
    static final float LOG_RATIO_ABOVE_ONE = 0x1.000002p-24f;
    private static final Step SUMS = new Sums(false, R_EX0, ABOVE_ONE);
    private static final Step SUMS_FLAGS = new Sums(true, R_EX0, ABOVE_ONE);
    private static final Step SUMS_LOG_RATIO = new Sums(false, R_IN0, LOG_RATIO_ABOVE_ONE);

    /**
     * {@code TokenRule.overflows} lane-wise: value not finite while a is finite and x is a number (|v| <= MAX is
     * false for Inf and NaN).
     */
    private static VectorMask<Float> overflows(final FloatVector value, final FloatVector a, final FloatVector x) {
        return value.abs().compare(VectorOperators.LE, Float.MAX_VALUE).not()
            .and(a.abs().compare(VectorOperators.LE, Float.MAX_VALUE))
            .and(x.compare(VectorOperators.EQ, x));
    }

    /** exp(-20) and exp(20), the canonical exp at the log-ratio clamp's ends. */
    private static final float RATIO_MIN = io.rlvec.CanonicalMath.exp(TokenRule.LOG_RATIO_MIN);
    private static final float RATIO_MAX = io.rlvec.CanonicalMath.exp(TokenRule.LOG_RATIO_MAX);

    /**
     * {@code TokenRule.overflowSafeRatio}: the unclamped ratio EX0 = exp(nakl), or the clamped one
     * exp(clamp(nakl, -20, 20)) where -A * EX0 overflows; written back to EX0, which the counts read. The clamped
     * ratio needs no exp of its own: inside [-20, 20] it is EX0 (the same exp of the same float), outside it is
     * exp(-20) or exp(20), and a NaN log-ratio gives NaN either way.
     */
    private static FloatVector safeRatio(final float[] r, final int i, final FloatVector a, final FloatVector nakl) {
        final FloatVector raw = row(r, R_EX0, i);
        final FloatVector clampedRatio = raw.blend(RATIO_MAX, nakl.compare(VectorOperators.GT, TokenRule.LOG_RATIO_MAX))
            .blend(RATIO_MIN, nakl.compare(VectorOperators.LT, TokenRule.LOG_RATIO_MIN));
        final FloatVector ratio = raw.blend(clampedRatio, overflows(a.neg().mul(raw), a, nakl));
        ratio.intoArray(r, R_EX0 * CHUNK + i);
        return ratio;
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

    /**
     * One vector loop over a chunk, reading and writing rows of {@code [from, to)}. A mode is a sequence of steps
     * ({@link #RULES}); the chunk loop calls them through this class, a call site with many receiver classes
     * that C2 never inlines, so that each step is its own compilation unit: the exp polynomial alone is about
     * 3/4 of C2's inlining budget, and a loop over it plus a mode's clip and gradient would exceed it and box
     * every vector (see PolicyLossKernel).
     */
    abstract static class Step {
        abstract void run(State st, int from, int to, float sequence);
    }

    /**
     * A mode's steps, then the shared ones (gradient store, sums and counts), run in order on every chunk through one
     * call site.
     */
    private static final class ChunkRule {
        private final Step[] steps;

        /** @param flags whether the mode writes the clip flags ({@link #metrics(State, int, FloatVector,
         *     VectorMask, VectorMask, VectorMask, VectorMask)}); the counts read them only then. */
        ChunkRule(final boolean flags, final Step... modeSteps) {
            this(flags ? SUMS_FLAGS : SUMS, modeSteps);
        }

        /** @param sums the shared sums-and-counts step: which row says ratio &gt; 1, and whether clip flags are read. */
        ChunkRule(final Step sums, final Step... modeSteps) {
            steps = java.util.Arrays.copyOf(modeSteps, modeSteps.length + 2);
            steps[modeSteps.length] = GRADIENT_STORE;
            steps[modeSteps.length + 1] = sums;
        }

        void run(final State st, final int from, final int to, final float sequence) {
            for (final Step step : steps) {
                step.run(st, from, to, sequence);
            }
        }
    }

    private static FloatVector row(final float[] r, final int row, final int i) {
        return FloatVector.fromArray(Vec.F, r, row * CHUNK + i);
    }

    /** The kl term of the chunk's token {@code j}, for a mode without clip flags. */
    private static void metrics(final float[] r, final int j, final FloatVector kl) {
        kl.intoArray(r, R_KL * CHUNK + j);
    }

    /** The kl term and the four clip flags of the chunk's token {@code j}. */
    private static void metrics(final State st, final int j, final FloatVector kl,
                                final VectorMask<Float> clipped, final VectorMask<Float> lower,
                                final VectorMask<Float> low, final VectorMask<Float> high) {
        kl.intoArray(st.rows, R_KL * CHUNK + j);
        final long[] f = st.flags;
        final int slot = j / Vec.FL;
        f[F_CLIPPED * SLOTS + slot] = clipped.toLong();
        f[F_LOWER * SLOTS + slot] = lower.toLong();
        f[F_LOW * SLOTS + slot] = low.toLong();
        f[F_HIGH * SLOTS + slot] = high.toLong();
    }

    private static final VectorMask<Float> NONE = VectorMask.fromLong(Vec.F, 0L);

    /** IN0 = log_prob - old_log_prob, clamped to [-20, 20] or not. */
    private static final class LogRatio extends Step {
        private final boolean clamped;

        LogRatio(final boolean clamped) {
            this.clamped = clamped;
        }

        @Override
        void run(final State st, final int from, final int to, final float sequence) {
            final MemorySegment lpSeg = st.logProb;
            final MemorySegment oldSeg = st.oldLogProb;
            final float[] r = st.rows;
            final int base = -from;
            for (int i = from; i < to; i += Vec.FL) {
                final FloatVector x = load(lpSeg, i).sub(load(oldSeg, i));
                (clamped ? clamp(x, TokenRule.LOG_RATIO_MIN, TokenRule.LOG_RATIO_MAX) : x)
                    .intoArray(r, R_IN0 * CHUNK + base + i);
            }
        }
    }

    /**
     * gspo: EX0 = exp(min((log_prob - log_prob) + sequence, 10)), the token's sequence ratio. It is one value per
     * sequence, taken once with the canonical exp, wherever log_prob is finite (log_prob - log_prob = +0), and NaN
     * where it is not; both are (log_prob - log_prob) + that value, to the bit.
     */
    private static final class SequenceRatio extends Step {
        @Override
        void run(final State st, final int from, final int to, final float sequence) {
            final MemorySegment lpSeg = st.logProb;
            final float logSeq = 0f + sequence;
            final float ratio = io.rlvec.CanonicalMath.exp(
                logSeq > TokenRule.Gspo.LOG_SEQ_MAX ? TokenRule.Gspo.LOG_SEQ_MAX : logSeq);
            final float[] r = st.rows;
            final int base = -from;
            for (int i = from; i < to; i += Vec.FL) {
                final FloatVector lp = load(lpSeg, i);
                lp.sub(lp).add(ratio).intoArray(r, R_EX0 * CHUNK + base + i);
            }
        }
    }

    /** out = exp(in), rows to rows, the canonical exp ({@link VectorMath#exp}) and nothing else. */
    private static final class Exp extends Step {
        private final int in;
        private final int out;

        Exp(final int in, final int out) {
            this.in = in;
            this.out = out;
        }

        @Override
        void run(final State st, final int from, final int to, final float sequence) {
            final float[] r = st.rows;
            final int base = -from;
            for (int i = from; i < to; i += Vec.FL) {
                VectorMath.exp(row(r, in, base + i)).intoArray(r, out * CHUNK + base + i);
            }
        }
    }

    /** EX1 = exp(log_prob), EX2 = exp(old_log_prob): dppo's p and q. */
    private static final class ExpProbabilities extends Step {
        @Override
        void run(final State st, final int from, final int to, final float sequence) {
            final MemorySegment lpSeg = st.logProb;
            final MemorySegment oldSeg = st.oldLogProb;
            final float[] r = st.rows;
            final int base = -from;
            for (int i = from; i < to; i += Vec.FL) {
                VectorMath.exp(load(lpSeg, i)).intoArray(r, R_EX1 * CHUNK + base + i);
            }
            for (int i = from; i < to; i += Vec.FL) {
                VectorMath.exp(load(oldSeg, i)).intoArray(r, R_EX2 * CHUNK + base + i);
            }
        }
    }

    /**
     * dppo_kl: TMP = the binary KL {@code q (old - lp) + (1 - q) log((1 - q + 1e-8) / (1 - p + 1e-8))}, the same
     * float as the reference's {@code TokenRule.Dppo.binaryKlOf}, whose log is StrictMath's in double rounded to
     * float. Here the log is the Vector API's ({@code VectorOperators.LOG}, which keeps Math.log's contract: within
     * 1 ulp of the exact value, as StrictMath.log is), so the two doubles differ by under 2 ulp; a lane whose double
     * rounds to the same float after a move of 4 ulp either way (2^-50 relative) therefore rounds to StrictMath's
     * float too. Lanes where that is not certain (near a float rounding midpoint, |log| &lt; 1e-30, log not finite,
     * a NaN argument) take StrictMath itself, so every lane is the reference's float.
     */
    private static final class BinaryKl extends Step {
        @Override
        void run(final State st, final int from, final int to, final float sequence) {
            final MemorySegment lpSeg = st.logProb;
            final MemorySegment oldSeg = st.oldLogProb;
            final float[] r = st.rows;
            final int base = -from;
            for (int i = from; i < to; i += HALF_LANES) {
                final int j = base + i;
                final FloatVector p = FloatVector.fromArray(FH, r, R_EX1 * CHUNK + j);
                final FloatVector q = FloatVector.fromArray(FH, r, R_EX2 * CHUNK + j);
                final FloatVector num = ONE_H.sub(q).add(1e-8f);
                final FloatVector den = ONE_H.sub(p).add(1e-8f);
                final DoubleVector d = ((DoubleVector) num.div(den).convertShape(VectorOperators.F2D, Vec.D, 0))
                    .lanewise(VectorOperators.LOG);
                final DoubleVector slack = d.abs().mul(0x1p-50);
                final FloatVector log = (FloatVector) d.convertShape(VectorOperators.D2F, FH, 0);
                final FloatVector below = (FloatVector) d.sub(slack).convertShape(VectorOperators.D2F, FH, 0);
                final FloatVector above = (FloatVector) d.add(slack).convertShape(VectorOperators.D2F, FH, 0);
                final VectorMask<Float> sure = below.compare(VectorOperators.EQ, above)
                    .and(log.abs().compare(VectorOperators.GE, 1e-30f));
                final long at = (long) i * Float.BYTES;
                final FloatVector lp = FloatVector.fromMemorySegment(FH, lpSeg, at, Vec.LE);
                final FloatVector old = FloatVector.fromMemorySegment(FH, oldSeg, at, Vec.LE);
                q.mul(old.sub(lp)).add(ONE_H.sub(q).mul(log)).intoArray(r, R_TMP * CHUNK + j);
                if (!sure.allTrue()) {
                    for (int k = 0; k < HALF_LANES; k++) {
                        if (!sure.laneIsSet(k)) {
                            r[R_TMP * CHUNK + j + k] = TokenRule.Dppo.binaryKlOf(r[R_EX1 * CHUNK + j + k],
                                r[R_EX2 * CHUNK + j + k], get(lpSeg, i + k), get(oldSeg, i + k));
                        }
                    }
                }
            }
        }
    }

    /** Float lanes matching one double vector: half the engine's float vector. */
    private static final jdk.incubator.vector.VectorSpecies<Float> FH =
        FloatVector.SPECIES_MAX.withShape(jdk.incubator.vector.VectorShape.forBitSize(Vec.BITS / 2));
    private static final int HALF_LANES = FH.length();
    private static final FloatVector ONE_H = FloatVector.broadcast(FH, 1f);

    /** dppo_tv and dppo_kl ({@code TokenRule.Dppo}): ratio EX0, p EX1, q EX2 (and the binary KL in TMP). */
    private static final class DppoLoss extends Step {
        private final boolean binaryKl;

        DppoLoss(final boolean binaryKl) {
            this.binaryKl = binaryKl;
        }

        @Override
        void run(final State st, final int from, final int to, final float sequence) {
            final MemorySegment lpSeg = st.logProb;
            final MemorySegment advSeg = st.advantages;
            final float[] r = st.rows;
            final int base = -from;
            for (int i = from; i < to; i += Vec.FL) {
                final FloatVector lp = load(lpSeg, i);
                final FloatVector a = load(advSeg, i);
                final FloatVector ratio = row(r, R_EX0, base + i);
                final FloatVector p = row(r, R_EX1, base + i);
                final FloatVector q = row(r, R_EX2, base + i);
                final FloatVector truncated = ratio.blend(st.clipC, ratio.compare(VectorOperators.GT, st.clipC));
                final VectorMask<Float> positive = a.compare(VectorOperators.GT, 0f);
                final VectorMask<Float> valid;
                if (binaryKl) {
                    final FloatVector kl = row(r, R_TMP, base + i);
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
                metrics(st, base + i, row(r, R_IN0, base + i).neg(), invalid,
                    valid.and(ratio.compare(VectorOperators.GT, st.clipC)),
                    invalid.and(a.compare(VectorOperators.LT, 0f)), invalid.and(positive));
            }
        }
    }

    /** sapo, first half: IN1 = -(tau (ratio - 1)), the sigmoid's exp argument. */
    private static final class SapoArgument extends Step {
        @Override
        void run(final State st, final int from, final int to, final float sequence) {
            final MemorySegment advSeg = st.advantages;
            final float[] r = st.rows;
            final int base = -from;
            for (int i = from; i < to; i += Vec.FL) {
                final FloatVector a = load(advSeg, i);
                final FloatVector tau = FloatVector.broadcast(Vec.F, st.tauNeg)
                    .blend(st.tauPos, a.compare(VectorOperators.GT, 0f));
                tau.mul(row(r, R_EX0, base + i).sub(1f)).neg().intoArray(r, R_IN1 * CHUNK + base + i);
            }
        }
    }

    /** sapo ({@code TokenRule.Sapo}): ratio EX0, exp(-(tau (ratio - 1))) EX1. */
    private static final class SapoLoss extends Step {
        @Override
        void run(final State st, final int from, final int to, final float sequence) {
            final MemorySegment lpSeg = st.logProb;
            final MemorySegment oldSeg = st.oldLogProb;
            final MemorySegment advSeg = st.advantages;
            final float[] r = st.rows;
            final int base = -from;
            for (int i = from; i < to; i += Vec.FL) {
                final FloatVector a = load(advSeg, i);
                final FloatVector raw = load(lpSeg, i).sub(load(oldSeg, i));
                final FloatVector ratio = row(r, R_EX0, base + i);
                final FloatVector tau = FloatVector.broadcast(Vec.F, st.tauNeg)
                    .blend(st.tauPos, a.compare(VectorOperators.GT, 0f));
                final FloatVector scale = FloatVector.broadcast(Vec.F, 4f).div(tau);
                final FloatVector s = ONE.div(ONE.add(row(r, R_EX1, base + i)));
                s.mul(scale).neg().mul(a).intoArray(r, R_LOSS * CHUNK + base + i);
                ZERO.blend(a.neg().mul(scale).mul(ONE.sub(s).mul(s)).mul(tau).mul(ratio),
                        passes(raw, TokenRule.LOG_RATIO_MIN, TokenRule.LOG_RATIO_MAX))
                    .intoArray(r, R_GRAD * CHUNK + base + i);
                metrics(r, base + i, row(r, R_IN0, base + i).neg());
            }
        }
    }

    /** gpg ({@code TokenRule.Gpg}). */
    private static final class GpgLoss extends Step {
        @Override
        void run(final State st, final int from, final int to, final float sequence) {
            final MemorySegment lpSeg = st.logProb;
            final MemorySegment advSeg = st.advantages;
            final float[] r = st.rows;
            final int base = -from;
            for (int i = from; i < to; i += Vec.FL) {
                final FloatVector lp = load(lpSeg, i);
                final FloatVector a = load(advSeg, i);
                lp.neg().mul(a).intoArray(r, R_LOSS * CHUNK + base + i);
                a.neg().intoArray(r, R_GRAD * CHUNK + base + i);
                metrics(r, base + i, row(r, R_IN0, base + i).neg());
            }
        }
    }

    /** cispo ({@code TokenRule.Cispo}). */
    private static final class CispoLoss extends Step {
        @Override
        void run(final State st, final int from, final int to, final float sequence) {
            final MemorySegment lpSeg = st.logProb;
            final MemorySegment advSeg = st.advantages;
            final float[] r = st.rows;
            final int base = -from;
            for (int i = from; i < to; i += Vec.FL) {
                final FloatVector lp = load(lpSeg, i);
                final FloatVector a = load(advSeg, i);
                final FloatVector ratio = row(r, R_EX0, base + i);
                final FloatVector clipped = clamp(ratio, st.lower, st.upper);
                final FloatVector coef = clipped.neg().mul(a);
                coef.mul(lp).intoArray(r, R_LOSS * CHUNK + base + i);
                coef.intoArray(r, R_GRAD * CHUNK + base + i);
                metrics(st, base + i, row(r, R_IN0, base + i).neg(), ratio.compare(VectorOperators.NE, clipped), NONE,
                    a.compare(VectorOperators.LT, 0f).and(ratio.compare(VectorOperators.LT, st.lower)),
                    a.compare(VectorOperators.GT, 0f).and(ratio.compare(VectorOperators.GT, st.upper)));
            }
        }
    }

    /** dro ({@code TokenRule.Dro}); its ratio (exp of the clamped log-ratio IN0) only feeds the sign split, counted from IN0. */
    private static final class DroLoss extends Step {
        @Override
        void run(final State st, final int from, final int to, final float sequence) {
            final MemorySegment lpSeg = st.logProb;
            final MemorySegment oldSeg = st.oldLogProb;
            final MemorySegment advSeg = st.advantages;
            final float[] r = st.rows;
            final int base = -from;
            for (int i = from; i < to; i += Vec.FL) {
                final FloatVector lp = load(lpSeg, i);
                final FloatVector a = load(advSeg, i);
                final FloatVector raw = lp.sub(load(oldSeg, i));
                // verl's unclamped square, except where it overflows (then the log-ratio clamped to [-20, 20]).
                final FloatVector lr = raw.blend(clamp(raw, TokenRule.LOG_RATIO_MIN, TokenRule.LOG_RATIO_MAX),
                    overflows(lp.mul(a).sub(raw.mul(raw).mul(st.halfBeta)).neg(), a, raw));
                lp.mul(a).sub(lr.mul(lr).mul(st.halfBeta)).neg().intoArray(r, R_LOSS * CHUNK + base + i);
                a.sub(lr.mul(2f).mul(st.halfBeta)).neg().intoArray(r, R_GRAD * CHUNK + base + i);
                metrics(r, base + i, raw.neg());
            }
        }
    }

    /** gspo ({@code TokenRule.Gspo}): s = EX0, the sequence ratio. */
    private static final class GspoLoss extends Step {
        @Override
        void run(final State st, final int from, final int to, final float sequence) {
            final MemorySegment lpSeg = st.logProb;
            final MemorySegment oldSeg = st.oldLogProb;
            final MemorySegment advSeg = st.advantages;
            final float[] r = st.rows;
            final int base = -from;
            for (int i = from; i < to; i += Vec.FL) {
                final FloatVector lp = load(lpSeg, i);
                final FloatVector a = load(advSeg, i);
                final FloatVector logSeq = lp.sub(lp).add(sequence);
                final FloatVector s = row(r, R_EX0, base + i);
                final FloatVector negA = a.neg();
                final FloatVector pg1 = negA.mul(s);
                final FloatVector pg2 = negA.mul(clamp(s, st.lower, st.upper));
                maximum(pg1, pg2).intoArray(r, R_LOSS * CHUNK + base + i);
                ZERO.blend(negA.mul(shares(pg1, pg2, s, st.lower, st.upper)).mul(s),
                        logSeq.compare(VectorOperators.LE, TokenRule.Gspo.LOG_SEQ_MAX))
                    .intoArray(r, R_GRAD * CHUNK + base + i);
                metrics(st, base + i, lp.sub(load(oldSeg, i)).neg(),
                    pg2.compare(VectorOperators.GT, pg1), NONE,
                    a.compare(VectorOperators.LT, 0f).and(s.compare(VectorOperators.LT, st.lower)),
                    a.compare(VectorOperators.GT, 0f).and(s.compare(VectorOperators.GT, st.upper)));
            }
        }
    }

    /**
     * kl_cov and clip_cov: EX0 = verl's unclamped ratio, or the clamped one where -A * ratio overflows
     * ({@code TokenRule.overflowSafeRatio}); its own loop, so the modes' loss loops stay small.
     */
    private static final class SafeRatio extends Step {
        @Override
        void run(final State st, final int from, final int to, final float sequence) {
            final MemorySegment advSeg = st.advantages;
            final float[] r = st.rows;
            final int base = -from;
            for (int i = from; i < to; i += Vec.FL) {
                safeRatio(r, base + i, load(advSeg, i), row(r, R_IN0, base + i));
            }
        }
    }

    /** kl_cov ({@code TokenRule.KlCov}): unclamped log-ratio IN0, ratio EX0, the selection in {@code selected}. */
    private static final class KlCovLoss extends Step {
        @Override
        void run(final State st, final int from, final int to, final float sequence) {
            final MemorySegment advSeg = st.advantages;
            final float[] r = st.rows;
            final int base = -from;
            for (int i = from; i < to; i += Vec.FL) {
                final FloatVector a = load(advSeg, i);
                final FloatVector nakl = row(r, R_IN0, base + i);
                final FloatVector baseLoss = a.neg().mul(row(r, R_EX0, base + i));
                final FloatVector abs = nakl.abs();
                final VectorMask<Float> selected = VectorMask.fromArray(Vec.F, st.selected, i);
                final FloatVector sign = nakl.blend(ONE, nakl.compare(VectorOperators.GT, 0f))
                    .blend(ONE.neg(), nakl.compare(VectorOperators.LT, 0f));
                baseLoss.blend(baseLoss.add(abs.mul(st.klCoef)), selected).intoArray(r, R_LOSS * CHUNK + base + i);
                baseLoss.blend(baseLoss.add(sign.mul(st.klCoef)), selected).intoArray(r, R_GRAD * CHUNK + base + i);
                metrics(r, base + i, abs);
            }
        }
    }

    /** clip_cov ({@code TokenRule.ClipCov}): unclamped log-ratio IN0, ratio EX0, the selection in {@code selected}. */
    private static final class ClipCovLoss extends Step {
        @Override
        void run(final State st, final int from, final int to, final float sequence) {
            final MemorySegment advSeg = st.advantages;
            final float[] r = st.rows;
            final int base = -from;
            for (int i = from; i < to; i += Vec.FL) {
                final FloatVector a = load(advSeg, i);
                final FloatVector ratio = row(r, R_EX0, base + i);
                final FloatVector negA = a.neg();
                final FloatVector pg1 = negA.mul(ratio);
                final FloatVector pg2 = negA.mul(clamp(ratio, st.lower, st.upper));
                final VectorMask<Float> selected = VectorMask.fromArray(Vec.F, st.selected, i);
                final FloatVector corr = ONE.blend(ZERO, selected);
                maximum(pg1, pg2).mul(corr).intoArray(r, R_LOSS * CHUNK + base + i);
                negA.mul(shares(pg1, pg2, ratio, st.lower, st.upper)).mul(ratio).mul(corr)
                    .intoArray(r, R_GRAD * CHUNK + base + i);
                metrics(st, base + i, row(r, R_IN0, base + i).neg(), selected, NONE,
                    a.compare(VectorOperators.LT, 0f).and(ratio.compare(VectorOperators.LT, st.lower)),
                    a.compare(VectorOperators.GT, 0f).and(ratio.compare(VectorOperators.GT, st.upper)));
            }
        }
    }

    /** The steps of each mode, by ordinal (null for the modes with their own kernels). */
    private static final ChunkRule[] RULES = new ChunkRule[PolicyLossMode.values().length];

    static {
        final Step clamped = new LogRatio(true);
        final Step unclamped = new LogRatio(false);
        final Step ratio = new Exp(R_IN0, R_EX0);
        RULES[PolicyLossMode.DPPO_TV.ordinal()] = new ChunkRule(true, clamped, ratio, new ExpProbabilities(),
            new DppoLoss(false));
        RULES[PolicyLossMode.DPPO_KL.ordinal()] = new ChunkRule(true, clamped, ratio, new ExpProbabilities(),
            new BinaryKl(), new DppoLoss(true));
        RULES[PolicyLossMode.SAPO.ordinal()] = new ChunkRule(false, clamped, ratio, new SapoArgument(),
            new Exp(R_IN1, R_EX1), new SapoLoss());
        RULES[PolicyLossMode.GPG.ordinal()] = new ChunkRule(SUMS_LOG_RATIO, clamped, new GpgLoss());
        RULES[PolicyLossMode.CISPO.ordinal()] = new ChunkRule(true, clamped, ratio, new CispoLoss());
        RULES[PolicyLossMode.DRO.ordinal()] = new ChunkRule(SUMS_LOG_RATIO, clamped, new DroLoss());
        RULES[PolicyLossMode.GSPO.ordinal()] = new ChunkRule(true, new SequenceRatio(), new GspoLoss());
        // The covariance modes take the clamped ratio where verl's unclamped one overflows (SafeRatio).
        final Step safe = new SafeRatio();
        RULES[PolicyLossMode.KL_COV.ordinal()] = new ChunkRule(false, unclamped, ratio, safe, new KlCovLoss());
        RULES[PolicyLossMode.CLIP_COV.ordinal()] = new ChunkRule(true, unclamped, ratio, safe, new ClipCovLoss());
    }

    /**
     * The state of one call, reused across calls (held by the {@link Workspace}); also the block body. Blocks are
     * runs of whole sequences of at least {@link SequencePieces#BLOCK_TOKENS} tokens, planned from the offsets
     * only; a block takes a free scratch (one per thread, this state's own included) and writes only its
     * sequences' slots of {@link #seqSums} and {@link #seqCounts}, which the caller adds in sequence order: the
     * same bits for any thread count.
     */
    static final class State implements Blocks.Body {
        /** per sequence: valid tokens' token weight (float), the four double partials, the eight counts. */
        float[] seqWeight = new float[0];
        double[] seqSums = new double[0];
        int[] seqCounts = new int[0];
        boolean selects;
        boolean gspo;
        ChunkRule chunkRule;
        /** blocks of the call: {@code blockFirst[k]..blockFirst[k+1]-1} are block k's sequences. */
        int numBlocks;
        int[] blockFirst = new int[0];
        private TokenBatch batch;
        /** scratch per thread ({@code scratch[0]} is this state) and which are taken. */
        private State[] scratch = {this};
        private java.util.concurrent.atomic.AtomicIntegerArray taken = new java.util.concurrent.atomic.AtomicIntegerArray(1);

        /** Plans the blocks of {@code b} and readies one scratch per thread. */
        void plan(final TokenBatch b, final int threads) {
            batch = b;
            final int n = b.numSequences();
            if (blockFirst.length < n + 1) {
                blockFirst = new int[Math.max(n + 1, blockFirst.length * 2)];
            }
            int blocks = 0;
            int tokens = 0;
            for (int s = 0; s < n; s++) {
                if (tokens == 0) {
                    blockFirst[blocks++] = s;
                }
                tokens += b.offset(s + 1) - b.offset(s);
                if (tokens >= SequencePieces.BLOCK_TOKENS) {
                    tokens = 0;
                }
            }
            blockFirst[blocks] = n;
            numBlocks = blocks;
            if (scratch.length < threads) {
                final State[] more = java.util.Arrays.copyOf(scratch, threads);
                for (int k = scratch.length; k < threads; k++) {
                    more[k] = new State();
                }
                scratch = more;
                taken = new java.util.concurrent.atomic.AtomicIntegerArray(threads);
            }
            for (int k = 1; k < scratch.length; k++) {
                scratch[k].share(this);
            }
        }

        /** Takes this call's columns, parameters and selection (a worker's scratch). */
        private void share(final State st) {
            logProb = st.logProb;
            oldLogProb = st.oldLogProb;
            advantages = st.advantages;
            mask = st.mask;
            weights = st.weights;
            grad = st.grad;
            lower = st.lower;
            upper = st.upper;
            clipC = st.clipC;
            high = st.high;
            low = st.low;
            negLow = st.negLow;
            tauPos = st.tauPos;
            tauNeg = st.tauNeg;
            halfBeta = st.halfBeta;
            klCoef = st.klCoef;
            selected = st.selected;
        }

        @Override
        public void run(final int block) {
            int k = 0;
            while (!taken.compareAndSet(k, 0, 1)) {
                // At most one block per thread runs at a time, so a free scratch exists.
                k = (k + 1) % scratch.length;
            }
            try {
                final State w = scratch[k];
                for (int s = blockFirst[block]; s < blockFirst[block + 1]; s++) {
                    sequence(this, w, s, batch);
                }
            } finally {
                taken.set(k, 0);
            }
        }

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
        /** the token weight of the sequence in progress. */
        float tokenWeight;
        final float[] rows = new float[ROWS * CHUNK];
        /** the chunk's clip flags ({@link #F_CLIPPED} ...), lane masks as bits. */
        final long[] flags = new long[4 * SLOTS];
        final double[] acc = new double[4 * TokenMemory.DL];
        /** gspo's four canonical lanes of the sequence in progress. */
        final double[] lanes = new double[4];
        final int[] counts = new int[COUNTS];
        final TokenRule.Token token = new TokenRule.Token();
        /** clip_cov's and kl_cov's selection, created on first use. */
        CovSelection covSelection;
        TokenRule rule;
        LossSpec ruleSpec;
        long[] seqCount = new long[0];
        /** clip_cov / kl_cov: the selected tokens (read as lane masks). */
        boolean[] selected = new boolean[0];
        /** geo_mean's per-token rows (off heap, freed by {@link #close}): k, dk/dnakl, log(w + 1e-10). */
        OffHeapArray geoK;
        OffHeapArray geoDk;
        OffHeapArray geoLogW;
        /** geo_mean's per-sequence canonical sums of k, A and log w. */
        double[] geoSumK = new double[0];
        double[] geoSumA = new double[0];
        double[] geoSumW = new double[0];
        float geoLow;
        float geoHigh;
        /** geo_mean: the coefficient c_s of the sequence in progress. */
        float geoCoef;

        /** Binds the columns geo_mean's steps read. */
        void bindGeo(final TokenBatch batch) {
            logProb = batch.column(Column.LOG_PROB).segment();
            oldLogProb = batch.column(Column.OLD_LOG_PROB).segment();
            advantages = batch.column(Column.ADVANTAGES).segment();
            mask = batch.mask().segment();
            final OffHeapArray w = batch.column(Column.ROLLOUT_IS_WEIGHTS);
            weights = w != null ? w.segment() : null;
        }

        void geoRows(final int n, final int sequences) {
            if (geoK == null || geoK.length() < n) {
                final int m = Math.max(n, geoK == null ? 0 : (int) Math.min(Integer.MAX_VALUE, geoK.length() * 2));
                close();
                geoK = OffHeapArray.allocate(io.rlvec.ElementType.F32, m);
                geoDk = OffHeapArray.allocate(io.rlvec.ElementType.F32, m);
                geoLogW = OffHeapArray.allocate(io.rlvec.ElementType.F32, m);
            }
            if (geoSumK.length < sequences) {
                final int m = Math.max(sequences, geoSumK.length * 2);
                geoSumK = new double[m];
                geoSumA = new double[m];
                geoSumW = new double[m];
            }
        }

        /** Frees geo_mean's off-heap rows. */
        void close() {
            if (geoK != null) {
                geoK.close();
                geoDk.close();
                geoLogW.close();
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
                final int n = Math.max(batch.numSequences(), seqCount.length * 2);
                seqCount = new long[n];
                seqWeight = new float[n];
                seqSums = new double[n * SEQ_SUMS];
                seqCounts = new int[n * COUNTS];
            }
            final PolicyLossMode mode = spec.policyLossMode();
            if ((mode == PolicyLossMode.CLIP_COV || mode == PolicyLossMode.KL_COV)
                && selected.length < batch.numTokens()) {
                final int n = Math.max(batch.numTokens(), selected.length * 2);
                selected = new boolean[n];
            }
        }

        void unbind() {
            batch = null;
            for (int k = 1; k < scratch.length; k++) {
                scratch[k].unbind();
            }
            logProb = null;
            oldLogProb = null;
            advantages = null;
            mask = null;
            weights = null;
            grad = null;
        }
    }
}
