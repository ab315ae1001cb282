package io.rlvec.reference;

import io.rlvec.AdvantageEstimator;
import io.rlvec.AdvantageInputs;
import io.rlvec.AdvantageSpec;
import io.rlvec.Checks;
import io.rlvec.Column;
import io.rlvec.ElementType;
import io.rlvec.OffHeapArray;
import io.rlvec.TokenBatch;
import io.rlvec.VerlRelease;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.ByteOrder;
import java.util.Arrays;
import java.util.Objects;

/**
 * verl's advantage estimators ({@code core_algos.compute_*_advantage*}), written once for both engines.
 *
 * <p>An estimator is split into token passes ({@link Kernels}: per-sequence score sums, the masked batch sums of
 * {@code masked_whiten}, the broadcast of a per-sequence value over its tokens, the backward recurrences of GAE,
 * REINFORCE++ and ReMax) and the per-sequence arithmetic between them, which is O(B) and lives here. The
 * reference implements the kernels as plain loops ({@link #SCALAR}); the vector engine as Vector API loops over
 * the same operations in the same order, so both give the same bits.
 *
 * <p>Formulas (s = the sequence's score {@code token_level_rewards.sum(-1)}, m = response_mask, groups by
 * {@code index}):
 * <pre>
 *   gae                  delta = r_t + gamma*next - v_t ; last = delta + (gamma*lam)*last (kept only where m_t);
 *                        next = v_t where m_t ; returns = last + v ; advantages = masked_whiten(last, m)
 *   grpo                 (s - mean_g) / (std_g + eps) or s - mean_g ; singleton: mean 0, std 1 ; x m
 *   grpo_vectorized      as grpo; 2026-01: std = sqrt(max(var, eps)) (a floor), 2026-08: no floor
 *   grpo_passk           the group's best sample gets (r_max - r_2nd) [/ (std_g + eps)], the others 0 ; needs n >= 2
 *   reinforce_plus_plus  ret_t = r_t + gamma*run ; 2026-01: run = ret_t * m_t (reset in masked spans) ;
 *                        2026-08: ret_t *= m_t, run carried through masked spans ; adv = masked_whiten(ret, m) * m
 *   rf++_baseline        masked_whiten((s - mean_g) * m, m) * m
 *   remax                returns = reverse-cumsum(r * m) ; adv = returns - baseline * m
 *   rloo                 n &gt; 1: s*n/(n-1) - mean_g*n/(n-1) ; singleton: s
 *   rloo_vectorized      n &gt; 1: (n*s - sum_g) / (n-1) ; singleton: 0
 *   opo                  s - sum_g(len*s) / sum_g(len), len = mask row sum ; singleton: s
 *   gpg                  alpha * (s - mean_g) / f_norm, alpha = B / max(count_nonzero(s), 1) ; singleton mean 0
 * </pre>
 * Group statistics accumulate in double (a group of identical scores gives exactly 0, where verl's float32
 * mean can leave a residue that the std's epsilon amplifies). Batch sums (scores, masked_whiten's mean and
 * variance) follow one canonical order: four double lanes per sequence (token t of a sequence into lane t mod 4,
 * combined as (l0 + l1) + (l2 + l3)), sequences added in order.
 */
public final class Advantages {
    /** verl's masked_mean / masked_whiten epsilon. */
    static final double MASK_EPS = 1e-8;

    private static final ValueLayout.OfFloat F32 = ValueLayout.JAVA_FLOAT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);
    private static final ValueLayout.OfLong I64 = ValueLayout.JAVA_LONG_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);

    /** Names and column lists built once: a call allocates nothing. */
    private static final String[] TERMS = java.util.Arrays.stream(AdvantageEstimator.values())
        .map(e -> "advantage estimator '" + e.verlName() + "'").toArray(String[]::new);
    private static final Column[] REWARD_COLUMNS = {Column.TOKEN_LEVEL_REWARDS};
    private static final Column[] GAE_COLUMNS = {Column.TOKEN_LEVEL_REWARDS, Column.VALUES};
    private static final Column[] OTB_COLUMNS = {Column.TOKEN_LEVEL_REWARDS, Column.OLD_LOG_PROB,
        Column.SUM_PI_SQUARED};

    private static boolean tokenBaseline(final AdvantageEstimator e) {
        return e == AdvantageEstimator.OPTIMAL_TOKEN_BASELINE || e == AdvantageEstimator.TIR_OPTIMAL_TOKEN_BASELINE;
    }

    private Advantages() {
    }

    /** The token passes an engine implements; every method reads and writes only the batch's token range. */
    public interface Kernels {
        /** out[i] = the float32 rounding of the canonical sum of x over sequence i's tokens (mask ignored). */
        void rowSums(TokenBatch batch, OffHeapArray x, float[] out);

        /** @return the canonical sum over all tokens of (m != 0 ? x : 0), in double. */
        double maskedSum(TokenBatch batch, OffHeapArray x);

        /** @return the canonical sum over all tokens of (m != 0 ? (x - mean)^2 : 0), x widened to double. */
        double maskedSquares(TokenBatch batch, OffHeapArray x, double mean);

        /**
         * out[t] = perSeq[i] * m[t] for each token t of sequence i, and the same value into {@code copy} when it is
         * not null (the outcome estimators' returns, written in the same pass instead of copied after it).
         */
        void broadcast(TokenBatch batch, float[] perSeq, OffHeapArray out, OffHeapArray copy);

        /** out[t] = (x[t] - shift) * scale, then times m[t] if {@code timesMask} (float32 operations). */
        void affine(TokenBatch batch, OffHeapArray x, float shift, float scale, boolean timesMask, OffHeapArray out);

        /** GAE's backward recurrence: adv = the raw advantages, ret = adv + values. */
        void gae(TokenBatch batch, float gamma, float gammaLam, OffHeapArray rewards, OffHeapArray values,
                 OffHeapArray adv, OffHeapArray ret);

        /** REINFORCE++'s discounted returns ({@code carry}: the 2026-08 form). */
        void discountedReturns(TokenBatch batch, float gamma, boolean carry, OffHeapArray rewards, OffHeapArray ret);

        /** out[i] = the canonical sum over sequence i's tokens of (m != 0 ? x : 0), in double. */
        void maskedRowSums(TokenBatch batch, OffHeapArray x, double[] out);

        /** out[t] = a[t] - beta * b[t] (float32 operations). */
        void subtractScaled(TokenBatch batch, OffHeapArray a, float beta, OffHeapArray b, OffHeapArray out);

        /** ReMax: ret = reverse-cumsum(r * m), adv = ret - baseline[i] * m. */
        void remax(TokenBatch batch, OffHeapArray rewards, OffHeapArray baselines, OffHeapArray ret,
                   OffHeapArray adv);
    }

    /** Reusable per-engine scratch for the per-sequence arithmetic; grows, never shrinks. */
    public static final class Scratch {
        float[] scores = new float[0];
        float[] tokenG = new float[0];
        float[] tokenW = new float[0];
        double[] num = new double[0];
        double[] den = new double[0];
        int[] valid = new int[0];
        float[] lengths = new float[0];
        float[] perSeq = new float[0];
        int[] dense = new int[0];
        int[] count = new int[0];
        int[] first = new int[0];
        double[] sum = new double[0];
        double[] sq = new double[0];
        double[] rowSum = new double[0];
        double[] rowCount = new double[0];
        long[] keys = new long[0];
        int[] slots = new int[0];

        void ensureTokens(final int tokens, final int groupPositions) {
            if (tokenG.length < tokens) {
                tokenG = new float[tokens];
                tokenW = new float[tokens];
            }
            if (num.length < groupPositions) {
                num = new double[groupPositions];
                den = new double[groupPositions];
            }
        }

        void ensure(final int sequences) {
            if (scores.length < sequences) {
                scores = new float[sequences];
                lengths = new float[sequences];
                perSeq = new float[sequences];
                dense = new int[sequences];
                count = new int[sequences];
                first = new int[sequences];
                valid = new int[sequences];
                sum = new double[sequences];
                sq = new double[sequences];
                rowSum = new double[sequences];
                rowCount = new double[sequences];
                final int table = Integer.highestOneBit(Math.max(4, sequences)) * 4;
                keys = new long[table];
                slots = new int[table];
            }
        }
    }

    /** The reference's kernels: plain loops. */
    public static final Kernels SCALAR = new ScalarKernels();

    /**
     * Validates the arguments of {@link io.rlvec.Engine#advantages} before any memory is touched.
     *
     * @throws IllegalArgumentException naming the argument and the expected shape.
     */
    public static void validate(final AdvantageSpec spec, final TokenBatch batch, final AdvantageInputs inputs,
                                final OffHeapArray advantages, final OffHeapArray returns) {
        Objects.requireNonNull(spec, "spec");
        Objects.requireNonNull(batch, "batch");
        final AdvantageEstimator e = spec.estimator();
        final String term = TERMS[e.ordinal()];
        Checks.columns(batch, term, e == AdvantageEstimator.GAE ? GAE_COLUMNS
            : tokenBaseline(e) ? OTB_COLUMNS : REWARD_COLUMNS);
        final int n = batch.numTokens();
        Checks.array(advantages, "advantages", ElementType.F32, n, false);
        Checks.array(returns, "returns", ElementType.F32, n, false);
        if (Checks.overlaps(advantages, returns)) {
            throw new IllegalArgumentException("advantages and returns must not overlap");
        }
        final int b = batch.numSequences();
        if (e.grouped()) {
            if (inputs == null || inputs.index() == null) {
                throw new IllegalArgumentException(term + " needs the group ids (inputs.index, I64 x " + b + ")");
            }
            Checks.array(inputs.index(), "index", ElementType.I64, b, false);
        }
        if (e == AdvantageEstimator.GDPO && spec.gdpoRewardKeys() != null) {
            final java.util.List<String> keys = spec.gdpoRewardKeys();
            if (keys.isEmpty()) {
                throw new IllegalArgumentException("gdpo needs algorithm.gdpo_reward_keys listing the reward "
                    + "components (verl: AssertionError 'GDPO requires algorithm.gdpo_reward_keys')");
            }
            for (final String key : keys) {
                final OffHeapArray c = inputs == null ? null : inputs.rewardComponent(key);
                if (c == null) {
                    throw new IllegalArgumentException("GDPO reward key '" + key + "' not found in the inputs' "
                        + "reward components; available: " + (inputs == null ? "[]" : inputs.rewardComponentKeys()));
                }
                Checks.array(c, "reward component '" + key + "'", ElementType.F32, b, false);
            }
        }
        if (e == AdvantageEstimator.REMAX) {
            if (inputs == null || inputs.rewardBaselines() == null) {
                throw new IllegalArgumentException(term + " needs reward_baselines (F32 x " + b + ")");
            }
            Checks.array(inputs.rewardBaselines(), "reward_baselines", ElementType.F32, b, false);
        }
    }

    /**
     * Computes {@code spec}'s estimator into {@code advantages} and {@code returns} (float32, one per token).
     * Errors verl raises (pass@k with a group of one sample, whitening over at most one valid token) are raised
     * before anything is written.
     */
    public static void compute(final Kernels k, final Scratch s, final AdvantageSpec spec, final TokenBatch batch,
                               final AdvantageInputs inputs, final OffHeapArray advantages,
                               final OffHeapArray returns) {
        validate(spec, batch, inputs, advantages, returns);
        final OffHeapArray rewards = batch.column(Column.TOKEN_LEVEL_REWARDS);
        final int b = batch.numSequences();
        s.ensure(b);
        switch (spec.estimator()) {
            case GAE -> {
                final double valid = requireWhitenable(k, batch);
                k.gae(batch, (float) spec.gamma(), (float) (spec.gamma() * spec.lam()), rewards,
                    batch.column(Column.VALUES), advantages, returns);
                whiten(k, batch, advantages, valid, false, advantages);
            }
            case REINFORCE_PLUS_PLUS -> {
                final double valid = requireWhitenable(k, batch);
                k.discountedReturns(batch, (float) spec.gamma(), spec.release() != VerlRelease.V2026_01, rewards,
                    returns);
                whiten(k, batch, returns, valid, true, advantages);
            }
            case REMAX -> k.remax(batch, rewards, inputs.rewardBaselines(), returns, advantages);
            case OPTIMAL_TOKEN_BASELINE, TIR_OPTIMAL_TOKEN_BASELINE -> {
                final int groups = denseGroups(s, inputs.index(), b);
                TokenBaseline.compute(spec, s, batch, groups, advantages, returns);
            }
            case GDPO -> {
                final double valid = requireWhitenable(k, batch);
                final int groups = denseGroups(s, inputs.index(), b);
                final java.util.List<String> keys = spec.gdpoRewardKeys();
                final int components = keys == null ? 1 : keys.size();
                final float[] combined = s.lengths;
                java.util.Arrays.fill(combined, 0, b, 0f);
                for (int c = 0; c < components; c++) {
                    if (keys == null) {
                        k.rowSums(batch, rewards, s.scores);
                    } else {
                        MemorySegment.copy(inputs.rewardComponent(keys.get(c)).segment(), F32, 0, s.scores, 0, b);
                    }
                    perSequence(AdvantageEstimator.GRPO, spec, s, b, groups);
                    final float w = (float) spec.gdpoRewardWeight(c);
                    for (int i = 0; i < b; i++) {
                        combined[i] = c == 0 ? w * s.perSeq[i] : combined[i] + w * s.perSeq[i];
                    }
                }
                k.broadcast(batch, combined, advantages, null);
                whiten(k, batch, advantages, valid, true, advantages);
                copy(advantages, returns, batch.numTokens());
            }
            default -> {
                k.rowSums(batch, rewards, s.scores);
                final int groups = denseGroups(s, inputs.index(), b);
                if (spec.estimator() == AdvantageEstimator.OPO) {
                    k.rowSums(batch, batch.mask(), s.lengths);
                }
                final boolean whitened = spec.estimator() == AdvantageEstimator.REINFORCE_PLUS_PLUS_BASELINE;
                final double valid = whitened ? requireWhitenable(k, batch) : 0;
                perSequence(spec.estimator(), spec, s, b, groups);
                k.broadcast(batch, s.perSeq, advantages, whitened ? null : returns);
                if (whitened) {
                    whiten(k, batch, advantages, valid, true, advantages);
                    copy(advantages, returns, batch.numTokens());
                }
            }
        }
    }

    /**
     * Validates the arguments of {@link io.rlvec.Engine#rewardKlPenalty} before any memory is touched.
     *
     * @throws IllegalArgumentException naming the argument and the expected shape.
     */
    public static void validateRewardKl(final io.rlvec.KlPenalty kl, final double beta, final TokenBatch batch,
                                        final OffHeapArray kldOut, final OffHeapArray rewardsOut) {
        Objects.requireNonNull(kl, "kl");
        Objects.requireNonNull(batch, "batch");
        if (kl.estimator() == io.rlvec.KlPenalty.Estimator.FULL) {
            throw new IllegalArgumentException("kl_penalty 'full' needs logits; the in-reward penalty takes a "
                + "per-token estimator (kl, abs, mse, low_var_kl and their + forms)");
        }
        if (!Double.isFinite(beta)) {
            throw new IllegalArgumentException("beta (the KL coefficient) must be finite, got " + beta);
        }
        Checks.columns(batch, REWARD_KL_TERM, REWARD_KL_COLUMNS);
        Checks.array(kldOut, "kldOut", ElementType.F32, batch.numTokens(), false);
        Checks.array(rewardsOut, "rewardsOut", ElementType.F32, batch.numTokens(), false);
        if (Checks.overlaps(kldOut, rewardsOut)) {
            throw new IllegalArgumentException("kldOut and rewardsOut must not overlap");
        }
    }

    /**
     * The part of {@link io.rlvec.Engine#rewardKlPenalty} after the masked kld is in {@code kld}: the rewards and
     * current_kl (per-sequence masked means in double, verl's 1e-8 in the denominator, then their mean over all
     * sequences, fully masked ones included as 0).
     */
    public static double rewardKl(final Kernels k, final Scratch s, final TokenBatch batch, final double beta,
                                  final OffHeapArray kld, final OffHeapArray rewards) {
        final int b = batch.numSequences();
        s.ensure(b);
        k.maskedRowSums(batch, kld, s.rowSum);
        k.maskedRowSums(batch, batch.mask(), s.rowCount);
        k.subtractScaled(batch, batch.column(Column.TOKEN_LEVEL_SCORES), (float) beta, kld, rewards);
        double total = 0;
        for (int i = 0; i < b; i++) {
            total += s.rowSum[i] / (s.rowCount[i] + MASK_EPS);
        }
        return b == 0 ? 0.0 : total / b;
    }

    private static final String REWARD_KL_TERM = "the in-reward KL penalty";
    private static final Column[] REWARD_KL_COLUMNS = {Column.TOKEN_LEVEL_SCORES, Column.OLD_LOG_PROB,
        Column.REF_LOG_PROB};

    static double requireWhitenable(final Kernels k, final TokenBatch batch) {
        final double valid = k.maskedSum(batch, batch.mask());
        if (valid == 0) {
            throw new IllegalArgumentException("masked_whiten needs at least two valid tokens: the response_mask "
                + "has none (verl: ValueError 'At least one element in the mask has to be 1.')");
        }
        if (valid == 1) {
            throw new IllegalArgumentException("masked_whiten needs at least two valid tokens: the response_mask "
                + "has one (verl: ValueError 'The sum of the mask is one, which can cause a division by zero.')");
        }
        return valid;
    }

    /** verl's masked_whiten: (x - mean) * rsqrt(var_unbiased + 1e-8), mean and variance over valid tokens. */
    static void whiten(final Kernels k, final TokenBatch batch, final OffHeapArray x, final double valid,
                               final boolean timesMask, final OffHeapArray out) {
        final double mean = k.maskedSum(batch, x) / (valid + MASK_EPS);
        final double var = k.maskedSquares(batch, x, mean) / (valid + MASK_EPS) * (valid / (valid - 1));
        k.affine(batch, x, (float) mean, (float) (1.0 / Math.sqrt(var + MASK_EPS)), timesMask, out);
    }

    private static void copy(final OffHeapArray from, final OffHeapArray to, final int n) {
        MemorySegment.copy(from.segment(), 0, to.segment(), 0, (long) n * Float.BYTES);
    }

    /** Maps group ids to dense indices in order of first appearance; returns the number of groups. */
    static int denseGroups(final Scratch s, final OffHeapArray index, final int b) {
        final long[] keys = s.keys;
        final int[] slots = s.slots;
        Arrays.fill(slots, -1);
        final int maskBits = keys.length - 1;
        final MemorySegment ids = index.segment();
        int groups = 0;
        for (int i = 0; i < b; i++) {
            final long id = ids.getAtIndex(I64, i);
            int h = Long.hashCode(id * 0x9E3779B97F4A7C15L) & maskBits;
            while (slots[h] >= 0 && keys[h] != id) {
                h = (h + 1) & maskBits;
            }
            if (slots[h] < 0) {
                keys[h] = id;
                slots[h] = groups;
                s.first[groups] = i;
                groups++;
            }
            s.dense[i] = slots[h];
        }
        return groups;
    }

    /** The per-sequence advantage of the group estimators, from the scores (double group statistics). */
    static void perSequence(final AdvantageEstimator e, final AdvantageSpec spec, final Scratch s, final int b,
                            final int groups) {
        final int[] g = s.dense;
        final float[] sc = s.scores;
        final int[] n = s.count;
        final double[] sum = s.sum;
        final double[] sq = s.sq;
        Arrays.fill(n, 0, groups, 0);
        Arrays.fill(sum, 0, groups, 0.0);
        Arrays.fill(sq, 0, groups, 0.0);
        for (int i = 0; i < b; i++) {
            n[g[i]]++;
            sum[g[i]] += e == AdvantageEstimator.OPO ? (double) s.lengths[i] * sc[i] : sc[i];
        }
        if (e == AdvantageEstimator.GRPO_PASSK) {
            for (int q = 0; q < groups; q++) {
                if (n[q] < 2) {
                    throw new IllegalArgumentException("grpo_passk (Pass@k) requires at least 2 samples per group; "
                        + "got " + n[q] + " for group " + s.keys[slotOf(s, q)] + " (verl: ValueError)");
                }
            }
        }
        if (e == AdvantageEstimator.OPO) {
            Arrays.fill(sq, 0, groups, 0.0);
            for (int i = 0; i < b; i++) {
                sq[g[i]] += s.lengths[i];
            }
        } else {
            for (int i = 0; i < b; i++) {
                final double d = sc[i] - sum[g[i]] / n[g[i]];
                sq[g[i]] += d * d;
            }
        }
        final double eps = spec.epsilon();
        final float[] out = s.perSeq;
        switch (e) {
            case GRPO, GRPO_VECTORIZED -> {
                final double floor = e == AdvantageEstimator.GRPO_VECTORIZED
                    && spec.release() == VerlRelease.V2026_01 ? eps : 0.0;
                for (int i = 0; i < b; i++) {
                    final int q = g[i];
                    final double mean = n[q] > 1 ? sum[q] / n[q] : 0.0;
                    final double std = n[q] > 1 ? Math.sqrt(Math.max(sq[q] / (n[q] - 1), floor)) : 1.0;
                    out[i] = (float) (spec.normAdvByStd() ? (sc[i] - mean) / (std + eps) : sc[i] - mean);
                }
            }
            case GRPO_PASSK -> {
                Arrays.fill(out, 0, b, 0f);
                for (int q = 0; q < groups; q++) {
                    int best = -1;
                    int second = -1;
                    for (int i = s.first[q]; i < b; i++) {
                        if (g[i] != q) {
                            continue;
                        }
                        if (best < 0 || sc[i] > sc[best]) {
                            second = best;
                            best = i;
                        } else if (second < 0 || sc[i] > sc[second]) {
                            second = i;
                        }
                    }
                    double a = (double) sc[best] - sc[second];
                    if (spec.normAdvByStd()) {
                        a /= Math.sqrt(sq[q] / (n[q] - 1)) + eps;
                    }
                    out[best] = (float) a;
                }
            }
            case REINFORCE_PLUS_PLUS_BASELINE -> {
                for (int i = 0; i < b; i++) {
                    final int q = g[i];
                    out[i] = (float) (sc[i] - (n[q] > 1 ? sum[q] / n[q] : 0.0));
                }
            }
            case RLOO -> {
                for (int i = 0; i < b; i++) {
                    final int q = g[i];
                    final double c = n[q];
                    out[i] = n[q] > 1 ? (float) ((sc[i] - sum[q] / c) * c / (c - 1)) : sc[i];
                }
            }
            case RLOO_VECTORIZED -> {
                for (int i = 0; i < b; i++) {
                    final int q = g[i];
                    final double c = n[q];
                    out[i] = n[q] > 1 ? (float) ((c * sc[i] - sum[q]) / (c - 1)) : 0f;
                }
            }
            case OPO -> {
                for (int i = 0; i < b; i++) {
                    final int q = g[i];
                    final double baseline = n[q] > 1 && sq[q] > 0 ? sum[q] / sq[q] : 0.0;
                    out[i] = (float) (sc[i] - baseline);
                }
            }
            case GPG -> {
                int nonZero = 0;
                for (int i = 0; i < b; i++) {
                    nonZero += sc[i] != 0 ? 1 : 0;
                }
                final double alpha = (double) b / Math.max(nonZero, 1);
                for (int i = 0; i < b; i++) {
                    final int q = g[i];
                    final double mean = n[q] > 1 ? sum[q] / n[q] : 0.0;
                    out[i] = (float) (alpha * (sc[i] - mean) / spec.fNorm());
                }
            }
            default -> throw new IllegalStateException("not a group estimator: " + e);
        }
    }

    private static int slotOf(final Scratch s, final int dense) {
        for (int h = 0; h < s.slots.length; h++) {
            if (s.slots[h] == dense) {
                return h;
            }
        }
        throw new IllegalStateException("group " + dense + " has no slot");
    }

    /** The canonical four-lane combine. */
    public static double combine(final double l0, final double l1, final double l2, final double l3) {
        return (l0 + l1) + (l2 + l3);
    }

    private static final class ScalarKernels implements Kernels {
        @Override
        public void rowSums(final TokenBatch batch, final OffHeapArray x, final float[] out) {
            final MemorySegment xs = x.segment();
            for (int i = 0; i < batch.numSequences(); i++) {
                final int start = batch.offset(i);
                final double[] l = new double[4];
                for (int t = start; t < batch.offset(i + 1); t++) {
                    l[(t - start) & 3] += xs.getAtIndex(F32, t);
                }
                out[i] = (float) combine(l[0], l[1], l[2], l[3]);
            }
        }

        @Override
        public double maskedSum(final TokenBatch batch, final OffHeapArray x) {
            return maskedMoment(batch, x, 0.0, false);
        }

        @Override
        public double maskedSquares(final TokenBatch batch, final OffHeapArray x, final double mean) {
            return maskedMoment(batch, x, mean, true);
        }

        private static double maskedMoment(final TokenBatch batch, final OffHeapArray x, final double mean,
                                           final boolean squares) {
            final MemorySegment xs = x.segment();
            final MemorySegment ms = batch.mask().segment();
            double total = 0;
            for (int i = 0; i < batch.numSequences(); i++) {
                final int start = batch.offset(i);
                final double[] l = new double[4];
                for (int t = start; t < batch.offset(i + 1); t++) {
                    if (ms.getAtIndex(F32, t) != 0) {
                        final double v = xs.getAtIndex(F32, t);
                        final double d = v - mean;
                        l[(t - start) & 3] += squares ? d * d : v;
                    }
                }
                total += combine(l[0], l[1], l[2], l[3]);
            }
            return total;
        }

        @Override
        public void broadcast(final TokenBatch batch, final float[] perSeq, final OffHeapArray out,
                              final OffHeapArray copy) {
            final MemorySegment ms = batch.mask().segment();
            final MemorySegment os = out.segment();
            for (int i = 0; i < batch.numSequences(); i++) {
                for (int t = batch.offset(i); t < batch.offset(i + 1); t++) {
                    os.setAtIndex(F32, t, perSeq[i] * ms.getAtIndex(F32, t));
                }
            }
            if (copy != null) {
                copy(out, copy, batch.numTokens());
            }
        }

        @Override
        public void affine(final TokenBatch batch, final OffHeapArray x, final float shift, final float scale,
                           final boolean timesMask, final OffHeapArray out) {
            final MemorySegment xs = x.segment();
            final MemorySegment ms = batch.mask().segment();
            final MemorySegment os = out.segment();
            for (int t = 0; t < batch.numTokens(); t++) {
                float v = (xs.getAtIndex(F32, t) - shift) * scale;
                if (timesMask) {
                    v *= ms.getAtIndex(F32, t);
                }
                os.setAtIndex(F32, t, v);
            }
        }

        @Override
        public void gae(final TokenBatch batch, final float gamma, final float gammaLam, final OffHeapArray rewards,
                        final OffHeapArray values, final OffHeapArray adv, final OffHeapArray ret) {
            final MemorySegment rs = rewards.segment();
            final MemorySegment vs = values.segment();
            final MemorySegment ms = batch.mask().segment();
            final MemorySegment as = adv.segment();
            final MemorySegment os = ret.segment();
            for (int i = 0; i < batch.numSequences(); i++) {
                float next = 0f;
                float last = 0f;
                for (int t = batch.offset(i + 1) - 1; t >= batch.offset(i); t--) {
                    final float v = vs.getAtIndex(F32, t);
                    final float delta = rs.getAtIndex(F32, t) + gamma * next - v;
                    final float candidate = delta + gammaLam * last;
                    if (ms.getAtIndex(F32, t) != 0) {
                        next = v;
                        last = candidate;
                    }
                    as.setAtIndex(F32, t, last);
                    os.setAtIndex(F32, t, last + v);
                }
            }
        }

        @Override
        public void discountedReturns(final TokenBatch batch, final float gamma, final boolean carry,
                                      final OffHeapArray rewards, final OffHeapArray ret) {
            final MemorySegment rs = rewards.segment();
            final MemorySegment ms = batch.mask().segment();
            final MemorySegment os = ret.segment();
            for (int i = 0; i < batch.numSequences(); i++) {
                float run = 0f;
                for (int t = batch.offset(i + 1) - 1; t >= batch.offset(i); t--) {
                    final float m = ms.getAtIndex(F32, t);
                    final float fresh = rs.getAtIndex(F32, t) + gamma * run;
                    if (carry) {
                        os.setAtIndex(F32, t, fresh * m);
                        run = m != 0 ? fresh : run;
                    } else {
                        os.setAtIndex(F32, t, fresh);
                        run = fresh * m;
                    }
                }
            }
        }

        @Override
        public void maskedRowSums(final TokenBatch batch, final OffHeapArray x, final double[] out) {
            final MemorySegment xs = x.segment();
            final MemorySegment ms = batch.mask().segment();
            for (int i = 0; i < batch.numSequences(); i++) {
                final int start = batch.offset(i);
                final double[] l = new double[4];
                for (int t = start; t < batch.offset(i + 1); t++) {
                    if (ms.getAtIndex(F32, t) != 0) {
                        l[(t - start) & 3] += xs.getAtIndex(F32, t);
                    }
                }
                out[i] = combine(l[0], l[1], l[2], l[3]);
            }
        }

        @Override
        public void subtractScaled(final TokenBatch batch, final OffHeapArray a, final float beta,
                                   final OffHeapArray b, final OffHeapArray out) {
            final MemorySegment as = a.segment();
            final MemorySegment bs = b.segment();
            final MemorySegment os = out.segment();
            for (int t = 0; t < batch.numTokens(); t++) {
                os.setAtIndex(F32, t, as.getAtIndex(F32, t) - beta * bs.getAtIndex(F32, t));
            }
        }

        @Override
        public void remax(final TokenBatch batch, final OffHeapArray rewards, final OffHeapArray baselines,
                          final OffHeapArray ret, final OffHeapArray adv) {
            final MemorySegment rs = rewards.segment();
            final MemorySegment ms = batch.mask().segment();
            final MemorySegment bs = baselines.segment();
            final MemorySegment os = ret.segment();
            final MemorySegment as = adv.segment();
            for (int i = 0; i < batch.numSequences(); i++) {
                final float base = bs.getAtIndex(F32, i);
                float acc = 0f;
                for (int t = batch.offset(i + 1) - 1; t >= batch.offset(i); t--) {
                    final float m = ms.getAtIndex(F32, t);
                    acc += rs.getAtIndex(F32, t) * m;
                    os.setAtIndex(F32, t, acc);
                    as.setAtIndex(F32, t, acc - base * m);
                }
            }
        }
    }
}
