package io.rlvec.engine;

import static io.rlvec.engine.TokenMemory.load;

import java.lang.foreign.MemorySegment;
import java.util.Arrays;

import io.rlvec.CanonicalMath;
import io.rlvec.Column;
import io.rlvec.LossSpec;
import io.rlvec.PolicyLossMode;
import io.rlvec.TokenBatch;
import io.rlvec.reference.Selection;
import io.rlvec.reference.TorchOps;

import jdk.incubator.vector.FloatVector;
import jdk.incubator.vector.VectorMask;
import jdk.incubator.vector.VectorOperators;

/**
 * The token selections of clip_cov and kl_cov ({@link Selection}'s definition, the same tokens bit for bit) with
 * vector loops and no sort:
 * <ul>
 *   <li>the batch means of A and log_prob are the advantage kernel's canonical masked sums (the reference's order);
 *   <li>the covariance {@code (A - mean A) (log_prob - mean log_prob)}, clip_cov's ratio (the canonical exp) and
 *       its candidate test run lane-wise, chunk by chunk, and the candidates are compacted in token order;
 *   <li>kl_cov's top k is a three-level radix select on the covariance's order-preserving key (11, 11 and 10
 *       bits): the top level is counted while the candidates are compacted, one pass marks the candidates below
 *       the k-th key's bin and gathers the bin, and the lower levels and the final marking (every smaller key and,
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

    private final io.rlvec.reference.Advantages.Kernels kernels;
    /** per chunk: covariance and clip_cov's ratio. */
    private final float[] cov = new float[CHUNK];
    private final float[] ratio = new float[CHUNK];
    /** per chunk: clip_cov's candidate bits of each vector. */
    private final long[] laneBits = new long[CHUNK];
    private final int[] histogram = new int[1 << 11];
    /** per candidate: token position and (kl_cov) the unsigned order key, largest covariance smallest. */
    private int[] candidates = new int[0];
    private int[] keys = new int[0];
    /** kl_cov: the candidates (indices into {@link #keys}) in the k-th key's top-level bin. */
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
    CovSelection(final io.rlvec.reference.Advantages.Kernels kernels) {
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
        }
        count = 0;
        Arrays.fill(histogram, 0);
        try {
            final int vecEnd = Vec.F.loopBound(n);
            for (int c = 0; c < vecEnd; c += CHUNK) {
                final int ce = Math.min(c + CHUNK, vecEnd);
                PASSES[P_COV].run(this, c, ce);
                if (clip) {
                    PASSES[P_RATIO].run(this, c, ce);
                    PASSES[P_CLIP].run(this, c, ce);
                } else {
                    PASSES[P_ALL].run(this, c, ce);
                }
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
                topK(Math.max(1, (int) (valid * spec.klCovRatio())), flags);
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
            keys[count] = u;
            histogram[u >>> TOP_SHIFT]++;
            candidates[count++] = t;
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
     * Marks the k smallest (key, token) pairs of the candidates. The first level's histogram (the key's top 11
     * bits) was counted while the candidates were compacted; one pass then marks every candidate below the k-th
     * key's bin and gathers the ones in it, and the two lower levels (11 and 10 bits) and the final marking run on
     * that bin's candidates only; a bin of at most {@link #SMALL_BIN} candidates is sorted instead.
     */
    private void topK(final int k, final boolean[] flags) {
        final int m = count;
        if (k >= m) {
            for (int i = 0; i < m; i++) {
                flags[candidates[i]] = true;
            }
            return;
        }
        final int[] h = histogram;
        int need = k;
        int bin = 0;
        while (need > h[bin]) {
            need -= h[bin];
            bin++;
        }
        if (bucket.length < h[bin]) {
            bucket = new int[Math.max(h[bin], bucket.length * 2)];
        }
        int inBin = 0;
        for (int i = 0; i < m; i++) {
            final int top = keys[i] >>> SHIFTS[0];
            if (top < bin) {
                flags[candidates[i]] = true;
            } else if (top == bin) {
                bucket[inBin++] = i;
            }
        }
        if (inBin <= SMALL_BIN) {
            // Ascending (key, position in the bucket): the bucket is in token order, so ties go to the earlier
            // token, as below. An insertion sort: no allocation (Arrays.sort may allocate a merge buffer).
            final long[] p = pairs;
            for (int j = 0; j < inBin; j++) {
                final long v = (long) (keys[bucket[j]] ^ Integer.MIN_VALUE) << 32 | j;
                int at = j;
                while (at > 0 && p[at - 1] > v) {
                    p[at] = p[at - 1];
                    at--;
                }
                p[at] = v;
            }
            for (int j = 0; j < need; j++) {
                flags[candidates[bucket[(int) p[j]]]] = true;
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
                final int u = keys[bucket[j]];
                if ((u & prefixMask) == prefix) {
                    h[(u >>> shift) & binMask]++;
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
            final int i = bucket[j];
            final int u = keys[i];
            if (Integer.compareUnsigned(u, prefix) < 0) {
                flags[candidates[i]] = true;
            } else if (u == prefix && need > 0) {
                flags[candidates[i]] = true;
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
    private static final int P_ALL = 3;
    private static final Pass[] PASSES = {new Covariance(), new Ratio(), new ClipCandidates(), new AllValid()};

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

    /** kl_cov's candidates: every valid token, in token order, with its order key. */
    private static final class AllValid extends Pass {
        @Override
        void run(final CovSelection s, final int from, final int to) {
            final int[] out = s.candidates;
            final int[] keys = s.keys;
            final float[] cov = s.cov;
            final int[] h = s.histogram;
            int n = s.count;
            for (int i = from; i < to; i += Vec.FL) {
                long bits = load(s.mask, i).compare(VectorOperators.NE, 0f).toLong();
                while (bits != 0) {
                    final int t = i + Long.numberOfTrailingZeros(bits);
                    final int u = key(cov[t - from]);
                    out[n] = t;
                    keys[n++] = u;
                    h[u >>> TOP_SHIFT]++;
                    bits &= bits - 1;
                }
            }
            s.count = n;
        }
    }
}
