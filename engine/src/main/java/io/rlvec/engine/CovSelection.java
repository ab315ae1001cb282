package io.rlvec.engine;

import static io.rlvec.engine.TokenMemory.load;

import java.lang.foreign.MemorySegment;
import java.util.Arrays;

import io.rlvec.CanonicalMath;
import io.rlvec.Column;
import io.rlvec.LossSpec;
import io.rlvec.PolicyLossMode;
import io.rlvec.TokenBatch;
import io.rlvec.reference.Advantages;
import io.rlvec.reference.Selection;
import io.rlvec.reference.TorchOps;

import jdk.incubator.vector.FloatVector;
import jdk.incubator.vector.IntVector;
import jdk.incubator.vector.VectorMask;
import jdk.incubator.vector.VectorOperators;

/**
 * The token selections of clip_cov and kl_cov ({@link Selection}'s definition, the same tokens bit for bit) with
 * vector loops and no sort:
 * <ul>
 *   <li>the batch means of A and log_prob are the advantage kernel's canonical masked sums (the reference's order);
 *   <li>the covariance {@code (A - mean A) (log_prob - mean log_prob)}, clip_cov's ratio (the canonical exp) and
 *       its candidate test run lane-wise, chunk by chunk, and clip_cov's candidates are compacted in token order;
 *   <li>kl_cov's top k is a three-level radix select on the covariance's order-preserving key (11, 11 and 10
 *       bits), computed lane-wise for every token (masked ones get a key above every valid one): the top level is
 *       counted chunk by chunk after the keys, one pass marks the tokens below the k-th key's bin and gathers the
 *       bin, and the lower levels and the final marking (every smaller key and,
 *       among the keys equal to the k-th, the first in token order) run on that bin only: exactly the first k of
 *       the reference's sort by (covariance descending, NaN highest; token position), in O(N) instead of
 *       O(N log N);
 *   <li>clip_cov's random subset is the reference's own draw ({@link Selection#draw}).
 * </ul>
 * The loops are called through an array of {@link Pass} objects, a call site C2 neither inlines nor folds, so that
 * the exp polynomial and the candidate test are separate compilation units (style.md P2).
 */
final class CovSelection {
    private static final int CHUNK = RuleKernel.CHUNK;
    /** The radix select's levels: key bits [21, 32), [10, 21), [0, 10) ({@link #TOP_SHIFT} is the first's shift). */
    private static final int[] SHIFTS = {21, 10, 0};
    private static final int[] WIDTHS = {11, 11, 10};
    private static final int TOP_SHIFT = 21;
    private static final int TOP_BITS = 11;
    private static final int HISTOGRAMS = 4;
    /**
     * A masked token's key: above every valid key (the largest, -Inf's, is 0xff800000), so the k smallest keys
     * are valid tokens' whenever k does not exceed the valid count, and the top-level scan never reaches its bin.
     */
    private static final int MASKED = -1;
    private static final int CANONICAL_NAN = Float.floatToIntBits(Float.NaN);
    private static final int POSITIVE_INFINITY = Float.floatToIntBits(Float.POSITIVE_INFINITY);

    private final Advantages.Kernels kernels;
    /** per chunk: covariance and clip_cov's ratio. */
    private final float[] cov = new float[CHUNK];
    private final float[] ratio = new float[CHUNK];
    /** per chunk: clip_cov's candidate bits of each vector. */
    private final long[] laneBits = new long[CHUNK];
    /**
     * kl_cov's top-level histogram, split four ways by token position ({@code (t & 3) << 11 | bin}) so that runs
     * of tokens in one bin are not a chain of dependent increments through memory; the lower levels use the
     * first 2048 counters.
     */
    private final int[] histogram = new int[HISTOGRAMS << TOP_BITS];
    /** clip_cov: the candidates' token positions, in token order. */
    private int[] candidates = new int[0];
    /** kl_cov: every token's unsigned order key, largest covariance smallest, {@link #MASKED} where masked. */
    private int[] keys = new int[0];
    /** kl_cov: each vector's valid lanes, as mask bits (whole vectors of masked tokens are skipped). */
    private long[] validBits = new long[0];
    /** kl_cov: the tokens in the k-th key's top-level bin, in token order. */
    private int[] bucket = new int[0];
    /** topK's small-bin path: (key, bucket position) pairs, sorted. */
    private final long[] pairs = new long[SMALL_BIN];
    /**
     * A k-th key's bin of at most this many candidates is finished by an insertion sort instead of two more
     * histogram levels, whose clearing and scanning of 2048 and 1024 counters dominate on small batches.
     */
    private static final int SMALL_BIN = 64;
    /** per sequence: the canonical masked sums. */
    private double[] rowSums = new double[0];
    /** bound for one call. */
    private MemorySegment logProb;
    private MemorySegment oldLogProb;
    private MemorySegment advantages;
    private MemorySegment mask;
    private float meanA;
    private float meanLp;
    private float lower;
    private float upper;
    private float lb;
    private float ub;
    private int count;

    /** @param kernels the engine's advantage kernels (their canonical masked sums give the batch means). */
    CovSelection(final Advantages.Kernels kernels) {
        this.kernels = kernels;
    }

    /**
     * Marks the spec's selected tokens in {@code flags} (cleared first) exactly as {@link Selection#select}.
     *
     * @param flags at least batch.numTokens() entries.
     */
    void select(final LossSpec spec, final TokenBatch batch, final boolean[] flags) {
        final int n = batch.numTokens();
        Arrays.fill(flags, 0, n, false);
        mask = batch.mask().segment();
        final int valid = TokenMemory.countValid(mask, 0, n);
        if (valid == 0) {
            mask = null;
            return;
        }
        meanA = (float) (maskedSum(batch, batch.column(Column.ADVANTAGES)) / valid);
        meanLp = (float) (maskedSum(batch, batch.column(Column.LOG_PROB)) / valid);
        final boolean clip = spec.policyLossMode() == PolicyLossMode.CLIP_COV;
        lower = (float) (1.0 - spec.clipRatioLow());
        upper = (float) (1.0 + spec.clipRatioHigh());
        lb = (float) spec.clipCovLb();
        ub = (float) spec.clipCovUb();
        logProb = batch.column(Column.LOG_PROB).segment();
        oldLogProb = batch.column(Column.OLD_LOG_PROB).segment();
        advantages = batch.column(Column.ADVANTAGES).segment();
        if (candidates.length < n) {
            final int m = Math.max(n, candidates.length * 2);
            candidates = new int[m];
            keys = new int[m];
            validBits = new long[m / 4 + 1];
        }
        count = 0;
        if (!clip) {
            Arrays.fill(histogram, 0);
        }
        try {
            final int vecEnd = Vec.F.loopBound(n);
            for (int c = 0; c < vecEnd; c += CHUNK) {
                final int ce = Math.min(c + CHUNK, vecEnd);
                PASSES[P_COV].run(this, c, ce);
                if (clip) {
                    PASSES[P_RATIO].run(this, c, ce);
                    PASSES[P_CLIP].run(this, c, ce);
                } else {
                    PASSES[P_KEYS].run(this, c, ce);
                }
            }
            if (vecEnd < n && !clip) {
                validBits[vecEnd / Vec.FL] = 0;
            }
            for (int t = vecEnd; t < n; t++) {
                tail(clip, t);
            }
            if (clip) {
                final int want = Math.max((int) (spec.clipCovRatio() * valid), 1);
                if (count <= want) {
                    for (int i = 0; i < count; i++) {
                        flags[candidates[i]] = true;
                    }
                } else {
                    Selection.draw(spec.clipCovSeed(), candidates, count, want, flags);
                }
            } else {
                topK(Math.max(1, (int) (valid * spec.klCovRatio())), valid, n, flags);
            }
        } finally {
            logProb = null;
            oldLogProb = null;
            advantages = null;
            mask = null;
        }
    }

    /**
     * The canonical masked sum of a column (the reference's {@code Selection.maskedSum}): the kernels' per-sequence
     * canonical sums, added in sequence order from 0.
     */
    private double maskedSum(final TokenBatch batch, final io.rlvec.OffHeapArray x) {
        final int b = batch.numSequences();
        if (rowSums.length < b) {
            rowSums = new double[Math.max(b, rowSums.length * 2)];
        }
        kernels.maskedRowSums(batch, x, rowSums);
        double total = 0;
        for (int s = 0; s < b; s++) {
            total += rowSums[s];
        }
        return total;
    }

    /** The reference's per-token test, for the tokens after the last full vector. */
    private void tail(final boolean clip, final int t) {
        if (TokenMemory.get(mask, t) == 0f) {
            if (!clip) {
                keys[t] = MASKED;
            }
            return;
        }
        final float a = TokenMemory.get(advantages, t);
        final float l = TokenMemory.get(logProb, t);
        final float c = (a - meanA) * (l - meanLp);
        if (clip) {
            final float r = CanonicalMath.exp(l - TokenMemory.get(oldLogProb, t));
            final float pg1 = -a * r;
            final float pg2 = -a * TorchOps.clamp(r, lower, upper);
            if (!(pg2 > pg1) && c < ub && c > lb) {
                candidates[count++] = t;
            }
        } else {
            final int u = key(c);
            keys[t] = u;
            histogram[(t & 3) << TOP_BITS | u >>> TOP_SHIFT]++;
            validBits[t / Vec.FL] |= 1L << (t % Vec.FL);
        }
    }

    /**
     * The unsigned order key of a covariance: ascending keys are the reference's sort order (largest first, NaN
     * above +Inf as Float.compare and topk rank it).
     */
    private static int key(final float c) {
        final int bits = Float.floatToIntBits(c);
        final int ordered = bits ^ ((bits >> 31) & 0x7fffffff);
        return ~ordered ^ Integer.MIN_VALUE;
    }

    /**
     * Marks the k smallest (key, token) pairs of the valid tokens. The first level's histogram (the key's top 11
     * bits) was counted with the keys; one pass then marks every token below the k-th key's bin and gathers the
     * ones in it, and the two lower levels (11 and 10 bits) and the final marking run on that bin's tokens only;
     * a bin of at most {@link #SMALL_BIN} tokens is sorted instead.
     *
     * @param valid the valid tokens (k &lt;= valid marks them all).
     * @param n     the batch's tokens.
     */
    private void topK(final int k, final int valid, final int n, final boolean[] flags) {
        final int[] u = keys;
        if (k >= valid) {
            for (int t = 0; t < n; t++) {
                flags[t] = u[t] != MASKED;
            }
            return;
        }
        final int[] h = histogram;
        final int size = 1 << TOP_BITS;
        int need = k;
        int bin = 0;
        int inTop = h[0] + h[size] + h[2 * size] + h[3 * size];
        while (need > inTop) {
            need -= inTop;
            bin++;
            inTop = h[bin] + h[bin + size] + h[bin + 2 * size] + h[bin + 3 * size];
        }
        if (bucket.length < inTop) {
            bucket = new int[Math.max(inTop, bucket.length * 2)];
        }
        int inBin = 0;
        final long[] vb = validBits;
        for (int v = 0, from = 0; from < n; v++, from += Vec.FL) {
            if (vb[v] == 0) {
                continue;
            }
            final int to = Math.min(from + Vec.FL, n);
            for (int t = from; t < to; t++) {
                final int top = u[t] >>> TOP_SHIFT;
                if (top < bin) {
                    flags[t] = true;
                } else if (top == bin) {
                    bucket[inBin++] = t;
                }
            }
        }
        if (inBin <= SMALL_BIN) {
            // Ascending (key, position in the bucket): the bucket is in token order, so ties go to the earlier
            // token, as below. An insertion sort: no allocation (Arrays.sort may allocate a merge buffer).
            final long[] p = pairs;
            for (int j = 0; j < inBin; j++) {
                final long v = (long) (u[bucket[j]] ^ Integer.MIN_VALUE) << 32 | j;
                int at = j;
                while (at > 0 && p[at - 1] > v) {
                    p[at] = p[at - 1];
                    at--;
                }
                p[at] = v;
            }
            for (int j = 0; j < need; j++) {
                flags[bucket[(int) p[j]]] = true;
            }
            return;
        }
        int prefix = bin << SHIFTS[0];
        int prefixMask = ((1 << WIDTHS[0]) - 1) << SHIFTS[0];
        for (int level = 1; level < SHIFTS.length; level++) {
            final int shift = SHIFTS[level];
            final int binMask = (1 << WIDTHS[level]) - 1;
            Arrays.fill(h, 0, binMask + 1, 0);
            for (int j = 0; j < inBin; j++) {
                final int key = u[bucket[j]];
                if ((key & prefixMask) == prefix) {
                    h[(key >>> shift) & binMask]++;
                }
            }
            int b = 0;
            while (need > h[b]) {
                need -= h[b];
                b++;
            }
            prefix |= b << shift;
            prefixMask |= binMask << shift;
        }
        // prefix is the k-th key: mark the bin's smaller keys and the first `need` tokens holding that key (the
        // bucket is in token order).
        for (int j = 0; j < inBin; j++) {
            final int t = bucket[j];
            final int key = u[t];
            if (Integer.compareUnsigned(key, prefix) < 0) {
                flags[t] = true;
            } else if (key == prefix && need > 0) {
                flags[t] = true;
                need--;
            }
        }
    }

    /** One vector loop over a chunk {@code [from, to)} of the batch. */
    abstract static class Pass {
        abstract void run(CovSelection s, int from, int to);
    }

    private static final int P_COV = 0;
    private static final int P_RATIO = 1;
    private static final int P_CLIP = 2;
    private static final int P_KEYS = 3;
    private static final Pass[] PASSES = {new Covariance(), new Ratio(), new ClipCandidates(), new Keys()};

    /** cov[t - from] = (A - mean A) * (log_prob - mean log_prob), float32 operations as the reference. */
    private static final class Covariance extends Pass {
        @Override
        void run(final CovSelection s, final int from, final int to) {
            final float[] cov = s.cov;
            for (int i = from; i < to; i += Vec.FL) {
                load(s.advantages, i).sub(s.meanA).mul(load(s.logProb, i).sub(s.meanLp)).intoArray(cov, i - from);
            }
        }
    }

    /** ratio[t - from] = exp(log_prob - old_log_prob), the canonical exp. */
    private static final class Ratio extends Pass {
        @Override
        void run(final CovSelection s, final int from, final int to) {
            final float[] ratio = s.ratio;
            for (int i = from; i < to; i += Vec.FL) {
                VectorMath.exp(load(s.logProb, i).sub(load(s.oldLogProb, i))).intoArray(ratio, i - from);
            }
        }
    }

    /**
     * clip_cov's candidates: valid, not held by PPO's clip (!(pg2 &gt; pg1)), lb &lt; cov &lt; ub; in token order. The
     * vector loop only stores each vector's candidate bits; the compaction runs after it, so that no scalar inner
     * loop sits between the vector operations (with one there, C2 boxed every load: 8 bytes per token).
     */
    private static final class ClipCandidates extends Pass {
        @Override
        void run(final CovSelection s, final int from, final int to) {
            final long[] lanes = s.laneBits;
            int v = 0;
            for (int i = from; i < to; i += Vec.FL) {
                final FloatVector negA = load(s.advantages, i).neg();
                final FloatVector r = FloatVector.fromArray(Vec.F, s.ratio, i - from);
                final FloatVector c = FloatVector.fromArray(Vec.F, s.cov, i - from);
                final FloatVector clamped = r.blend(s.upper, r.compare(VectorOperators.GT, s.upper))
                    .blend(s.lower, r.compare(VectorOperators.LT, s.lower));
                final VectorMask<Float> held = negA.mul(clamped).compare(VectorOperators.GT, negA.mul(r));
                lanes[v++] = load(s.mask, i).compare(VectorOperators.NE, 0f).andNot(held)
                    .and(c.compare(VectorOperators.LT, s.ub)).and(c.compare(VectorOperators.GT, s.lb)).toLong();
            }
            final int[] out = s.candidates;
            int n = s.count;
            for (int k = 0; k < v; k++) {
                long bits = lanes[k];
                final int base = from + k * Vec.FL;
                while (bits != 0) {
                    out[n++] = base + Long.numberOfTrailingZeros(bits);
                    bits &= bits - 1;
                }
            }
            s.count = n;
        }
    }

    /**
     * kl_cov: every token's order key ({@link #key}, lane-wise in int lanes: NaN made canonical as
     * Float.floatToIntBits does; {@link #MASKED} where masked), each vector's valid lanes, and then, after the
     * vector loop, the chunk's top-level histogram (skipping vectors with no valid token).
     */
    private static final class Keys extends Pass {
        @Override
        void run(final CovSelection s, final int from, final int to) {
            final int[] keys = s.keys;
            final long[] vb = s.validBits;
            final float[] cov = s.cov;
            final MemorySegment m = s.mask;
            for (int i = from; i < to; i += Vec.FL) {
                final IntVector bits = FloatVector.fromArray(Vec.F, cov, i - from).reinterpretAsInts();
                final IntVector canonical = bits.blend(CANONICAL_NAN,
                    bits.and(0x7fffffff).compare(VectorOperators.GT, POSITIVE_INFINITY));
                final IntVector key = canonical.lanewise(VectorOperators.XOR,
                    canonical.lanewise(VectorOperators.ASHR, 31).and(0x7fffffff)).lanewise(VectorOperators.XOR,
                    0x7fffffff);
                // m != 0f in int lanes: any bits but the sign's.
                final VectorMask<Integer> ok = load(m, i).reinterpretAsInts().and(0x7fffffff)
                    .compare(VectorOperators.NE, 0);
                key.blend(MASKED, ok.not()).intoArray(keys, i);
                vb[i / Vec.FL] = ok.toLong();
            }
            final int[] h = s.histogram;
            for (int i = from; i < to; i += Vec.FL) {
                if (vb[i / Vec.FL] != 0) {
                    for (int t = i; t < i + Vec.FL; t++) {
                        h[(t & 3) << TOP_BITS | keys[t] >>> TOP_SHIFT]++;
                    }
                }
            }
        }
    }
}
