package io.rlvec.reference;

import io.rlvec.CanonicalMath;
import io.rlvec.Column;
import io.rlvec.ElementType;
import io.rlvec.OffHeapArray;
import io.rlvec.RolloutCorrectionResult;
import io.rlvec.RolloutCorrectionSpec;
import io.rlvec.RolloutCorrectionSpec.Estimator;
import io.rlvec.RolloutCorrectionSpec.IsLevel;
import io.rlvec.RolloutCorrectionSpec.Level;
import io.rlvec.RolloutCorrectionSpec.RsOption;
import io.rlvec.TokenBatch;
import io.rlvec.VerlRelease;

/**
 * verl's {@code compute_rollout_correction_and_rejection_mask} ({@code rollout_corr_helper.py}): IS weights,
 * the rejection-sampling mask and every {@code rollout_corr/*} metric, with {@code lr = old_log_prob -
 * rollout_log_prob} ({@code old_log_prob} being the training policy's), per token t and sequence s:
 * <pre>
 *   lrs = clamp(lr, -20, 20);  rho = exp(lrs);  k1 = -lrs;  k2 = 0.5 * lrs^2;  k3 = rho - 1 - lrs   (float32)
 *   S_s = sum_t lr * m                                                     (double)
 *   IS token:    raw = rho * m                 IS sequence: raw = exp(clamp(S_s, -20, 20)) * m
 *   TIS:         w = min(raw, U)               IcePop:      w = raw if L &lt;= raw &lt;= U else 0
 *   batch norm:  w /= masked_mean(w) (token) or mean over non-empty rows of masked_mean(w, -1) (sequence),
 *                when that mean is &gt; 1e-8
 *   RS keep:     k1 options log(L) &lt;= stat &lt;= log(U), k2/k3 stat &lt;= U; stat per token, or the row's
 *                masked sum / masked mean / masked max (0 for an empty row); options ANDed;
 *                mask_out = response_mask * keep
 * </pre>
 * The metrics are verl's (see {@link RolloutCorrectionResult} for the names): masked means divide by
 * {@code sum(m) + 1e-8}, row means by {@code row count + 1e-8}, standard deviations over rows are unbiased, the
 * IS/RS "std" is {@code sqrt(max(E[c^2] - E[c]^2, 0))} of the statistic clamped to the threshold band, and the
 * effective sample size is {@code 1 / masked_mean((c / (masked_mean(c) + 1e-8))^2)} with {@code c = clamp(w, 0, U)}.
 *
 * <p>Numerics: per-token values are float32 (the canonical exp), as verl's float32 tensors, squares included
 * ({@code c * c}); every sum is double in the canonical order of {@link Advantages} (four lanes per row, token t
 * of a row in lane t mod 4, combined as (l0 + l1) + (l2 + l3), rows added in order), so an engine with vector
 * row sums gets the same bits; per-row statistics are double; row-level exps and logs are {@link StrictMath}'s. Comparisons with a threshold happen in
 * float32 (a float32 value, or a double statistic rounded to float32, against the threshold rounded to float32),
 * as torch compares a float32 tensor with a Python float. Only valid tokens are read into any result.
 *
 * <p>verl's errors: a mask without a valid token is refused; when every IS weight is 0 (IcePop with every ratio
 * outside its band) verl's effective sample size divides by zero and raises, and so does this (before anything
 * is written).
 */
public final class RolloutCorrection {
    private static final double EPS = 1e-8;
    private static final float BOUND = 20f;

    /**
     * The per-token passes and the row sums, plain loops here and Vector API loops in the engine. Every pass is exact
     * (copies, compares, counts, max/min, float32 products and quotients): an implementation gives {@link #SCALAR}'s
     * bits. Flags are float32 columns holding 1 (true) or 0 (false).
     */
    public interface Kernels {
        /**
         * The token terms, for every token slot t of every row (masked or not): {@code lr = old - roll},
         * {@code lrs = clamp(lr, -20, 20)}, {@code rho = exp(lrs)}, {@code kk = (exp(lr) - lr) - 1},
         * {@code rho2 = rho * rho}, float32 with the canonical exp. The columns {@code lrs} and {@code rho} are
         * kept ({@link #kTerms} derives k2 and k3 from them where a rejection needs them); lr, kk and rho2 only
         * enter their canonical masked row sums ({@link #maskedRowSums}), which go with those of old
         * and roll into {@code s.lrSum}, {@code s.kkSum}, {@code s.rho2Sum}, {@code s.oldSum} and
         * {@code s.rollSum}.
         */
        void tokenTerms(TokenBatch batch, OffHeapArray old, OffHeapArray roll, Scratch s);

        /**
         * For every token slot t: {@code v = sign * x}, {@code c = clamp(v, lo, hi)} (torch's clamp: NaN stays
         * NaN, -0 stays -0), {@code c2 = c * c}, float32; only their canonical masked row sums are kept, in
         * {@code s.vSum}, {@code s.cSum} and {@code s.c2Sum}.
         */
        void clampedSums(TokenBatch batch, OffHeapArray x, float sign, float lo, float hi, Scratch s);

        /** The canonical masked row sums of x ({@link Advantages.Kernels#maskedRowSums}) into {@code out}. */
        void maskedRowSums(TokenBatch batch, OffHeapArray x, double[] out);

        /**
         * The valid flags and counts: {@code valid[t] = mask[t] != 0} (NaN counts as valid) for every token of the
         * batch, {@code count[i]} = the number of valid tokens of row i.
         */
        void validCounts(TokenBatch batch, OffHeapArray mask, Scratch s);

        /**
         * The IS weights, for every token slot t in [0, n): {@code raw = valid ? src : 0}; IcePop
         * {@code w = lo <= raw <= hi ? raw : 0}, otherwise (TIS) {@code w = raw > hi ? hi : raw}. {@code src} may be
         * {@code s.raw} itself.
         */
        void isWeights(int n, OffHeapArray src, boolean icePop, float lo, float hi, Scratch s);

        /**
         * The token-level IS metrics over the valid tokens of [0, n): {@code s.above} = how many have
         * {@code raw > hi}, {@code s.below} how many {@code raw < lo}; {@code s.max} and {@code s.min} fold
         * {@code w} in token order from -inf and +inf with {@link TorchOps#maximum} and {@link TorchOps#minimum}
         * (NaN propagates; at a tie of -0 and +0 the later token's zero wins).
         */
        void isMetrics(int n, OffHeapArray raw, OffHeapArray w, float hi, float lo, Scratch s);

        /** @return how many valid tokens of [0, n) have {@code x < lo || x > hi} (IcePop's out-of-band count). */
        long countOutside(int n, OffHeapArray x, float lo, float hi, Scratch s);

        /** {@code x[t] = x[t] / d} (float32) for every token slot t in [0, n). */
        void divide(int n, OffHeapArray x, float d);

        /**
         * The token-level rejection test of {@code v = sign * x} (float32): {@code keep[t] = twoSided ? lo <= v <=
         * hi : v <= hi} for every slot t in [0, n); over the valid tokens, {@code s.above} = how many have
         * {@code v > hi}, {@code s.below} how many {@code v < lo} (0 unless two-sided), {@code s.max} and
         * {@code s.min} their {@link Math#max}/{@link Math#min} fold from -inf and +inf in token order (NaN
         * propagates, -0 below +0).
         */
        void keepTest(int n, OffHeapArray x, float sign, boolean twoSided, float lo, float hi, Scratch s);

        /**
         * {@code out[i]} = the {@link Math#max} fold in token order, from -inf, of {@code v = sign * x} (float32)
         * over the valid tokens of row i (-inf for an empty row).
         */
        void validRowMax(TokenBatch batch, OffHeapArray x, float sign, double[] out);

        /** {@code out[t] = rowValues[i]} for every token t of every row i. */
        void broadcastRows(TokenBatch batch, float[] rowValues, OffHeapArray out);

        /**
         * The row rejection pass: {@code s.rejected} = how many valid tokens have {@code keep == 0},
         * {@code s.rowsRejected} how many rows hold one; when {@code keepAll} is not null, also
         * {@code keepAll[t] = keep[t] == 0 ? 0 : keepAll[t]} for every token.
         */
        void rejectRows(TokenBatch batch, OffHeapArray keep, OffHeapArray keepAll, Scratch s);

        /** {@code x[t] = v} for every token slot t in [0, n). */
        void fill(int n, OffHeapArray x, float v);

        /**
         * The outputs, for every token slot t in [0, n): {@code isOut[t] = w[t]} when {@code isOut} is not null,
         * {@code maskOut[t] = keep[t] != 0 ? mask[t] : 0}, or {@code mask[t]} when {@code keep} is null (no
         * rejection).
         */
        void outputs(int n, OffHeapArray mask, OffHeapArray isOut, OffHeapArray keep, OffHeapArray maskOut,
                     Scratch s);

        /**
         * The k2 and k3 estimators, for every token slot t in [0, n), from the columns lrs and rho of
         * {@link #tokenTerms}: {@code k2 = 0.5 * (lrs * lrs)}, {@code k3 = (rho - 1) - lrs}, float32 (only a
         * rejection option on k2 or k3 reads them).
         */
        void kTerms(int n, Scratch s);
    }

    /** The scalar kernels: the specification of every pass. */
    public static final Kernels SCALAR = new Kernels() {
        @Override
        public void tokenTerms(final TokenBatch batch, final OffHeapArray old, final OffHeapArray roll,
                               final Scratch s) {
            final int n = batch.numTokens();
            s.ensureTerms(n);
            for (int t = 0; t < n; t++) {
                final float lr = old.getFloat(t) - roll.getFloat(t);
                final float lrs = TorchOps.clamp(lr, -BOUND, BOUND);
                final float rho = CanonicalMath.exp(lrs);
                s.lr.setFloat(t, lr);
                s.lrs.setFloat(t, lrs);
                s.rho.setFloat(t, rho);
                s.kk.setFloat(t, (CanonicalMath.exp(lr) - lr) - 1f);
                s.rho2.setFloat(t, rho * rho);
            }
            maskedRowSums(batch, s.lr, s.lrSum);
            maskedRowSums(batch, s.kk, s.kkSum);
            maskedRowSums(batch, s.rho2, s.rho2Sum);
            maskedRowSums(batch, old, s.oldSum);
            maskedRowSums(batch, roll, s.rollSum);
        }

        @Override
        public void clampedSums(final TokenBatch batch, final OffHeapArray x, final float sign, final float lo,
                                final float hi, final Scratch s) {
            final int n = batch.numTokens();
            s.ensureTerms(n);
            for (int t = 0; t < n; t++) {
                final float v = sign * x.getFloat(t);
                final float c = TorchOps.clamp(v, lo, hi);
                s.v.setFloat(t, v);
                s.c.setFloat(t, c);
                s.c2.setFloat(t, c * c);
            }
            maskedRowSums(batch, s.v, s.vSum);
            maskedRowSums(batch, s.c, s.cSum);
            maskedRowSums(batch, s.c2, s.c2Sum);
        }

        @Override
        public void maskedRowSums(final TokenBatch batch, final OffHeapArray x, final double[] out) {
            Advantages.SCALAR.maskedRowSums(batch, x, out);
        }

        @Override
        public void validCounts(final TokenBatch batch, final OffHeapArray mask, final Scratch s) {
            for (int i = 0; i < batch.numSequences(); i++) {
                double c = 0;
                for (int t = batch.offset(i); t < batch.offset(i + 1); t++) {
                    final boolean v = mask.getFloat(t) != 0f;
                    s.valid.setFloat(t, v ? 1f : 0f);
                    c += v ? 1 : 0;
                }
                s.count[i] = c;
            }
        }

        @Override
        public void isWeights(final int n, final OffHeapArray src, final boolean icePop, final float lo,
                              final float hi, final Scratch s) {
            for (int t = 0; t < n; t++) {
                final float raw = s.valid.getFloat(t) != 0f ? src.getFloat(t) : 0f;
                s.raw.setFloat(t, raw);
                s.w.setFloat(t, icePop ? (raw >= lo && raw <= hi ? raw : 0f) : (raw > hi ? hi : raw));
            }
        }

        @Override
        public void isMetrics(final int n, final OffHeapArray raw, final OffHeapArray w, final float hi,
                              final float lo, final Scratch s) {
            long high = 0;
            long low = 0;
            float max = Float.NEGATIVE_INFINITY;
            float min = Float.POSITIVE_INFINITY;
            for (int t = 0; t < n; t++) {
                if (s.valid.getFloat(t) != 0f) {
                    final float r = raw.getFloat(t);
                    final float v = w.getFloat(t);
                    high += r > hi ? 1 : 0;
                    low += r < lo ? 1 : 0;
                    max = TorchOps.maximum(max, v);
                    min = TorchOps.minimum(min, v);
                }
            }
            s.above = high;
            s.below = low;
            s.max = max;
            s.min = min;
        }

        @Override
        public long countOutside(final int n, final OffHeapArray x, final float lo, final float hi, final Scratch s) {
            long out = 0;
            for (int t = 0; t < n; t++) {
                final float v = x.getFloat(t);
                out += s.valid.getFloat(t) != 0f && (v < lo || v > hi) ? 1 : 0;
            }
            return out;
        }

        @Override
        public void divide(final int n, final OffHeapArray x, final float d) {
            for (int t = 0; t < n; t++) {
                x.setFloat(t, x.getFloat(t) / d);
            }
        }

        @Override
        public void keepTest(final int n, final OffHeapArray x, final float sign, final boolean twoSided,
                             final float lo, final float hi, final Scratch s) {
            long high = 0;
            long low = 0;
            double max = Double.NEGATIVE_INFINITY;
            double min = Double.POSITIVE_INFINITY;
            for (int t = 0; t < n; t++) {
                final float v = sign * x.getFloat(t);
                s.keep.setFloat(t, (twoSided ? v >= lo && v <= hi : v <= hi) ? 1f : 0f);
                if (s.valid.getFloat(t) != 0f) {
                    max = Math.max(max, v);
                    min = Math.min(min, v);
                    high += v > hi ? 1 : 0;
                    low += twoSided && v < lo ? 1 : 0;
                }
            }
            s.above = high;
            s.below = low;
            s.max = (float) max;
            s.min = (float) min;
        }

        @Override
        public void validRowMax(final TokenBatch batch, final OffHeapArray x, final float sign,
                                final double[] out) {
            final OffHeapArray mask = batch.mask();
            for (int i = 0; i < batch.numSequences(); i++) {
                double acc = Double.NEGATIVE_INFINITY;
                for (int t = batch.offset(i); t < batch.offset(i + 1); t++) {
                    if (mask.getFloat(t) != 0f) {
                        acc = Math.max(acc, sign * x.getFloat(t));
                    }
                }
                out[i] = acc;
            }
        }

        @Override
        public void broadcastRows(final TokenBatch batch, final float[] rowValues, final OffHeapArray out) {
            for (int i = 0; i < batch.numSequences(); i++) {
                for (int t = batch.offset(i); t < batch.offset(i + 1); t++) {
                    out.setFloat(t, rowValues[i]);
                }
            }
        }

        @Override
        public void rejectRows(final TokenBatch batch, final OffHeapArray keep, final OffHeapArray keepAll,
                               final Scratch s) {
            long rejected = 0;
            int rows = 0;
            for (int i = 0; i < batch.numSequences(); i++) {
                boolean any = false;
                for (int t = batch.offset(i); t < batch.offset(i + 1); t++) {
                    final boolean kept = keep.getFloat(t) != 0f;
                    if (s.valid.getFloat(t) != 0f && !kept) {
                        rejected++;
                        any = true;
                    }
                    if (keepAll != null && !kept) {
                        keepAll.setFloat(t, 0f);
                    }
                }
                rows += any ? 1 : 0;
            }
            s.rejected = rejected;
            s.rowsRejected = rows;
        }

        @Override
        public void fill(final int n, final OffHeapArray x, final float v) {
            for (int t = 0; t < n; t++) {
                x.setFloat(t, v);
            }
        }

        @Override
        public void outputs(final int n, final OffHeapArray mask, final OffHeapArray isOut, final OffHeapArray keep,
                            final OffHeapArray maskOut, final Scratch s) {
            if (isOut != null) {
                for (int t = 0; t < n; t++) {
                    isOut.setFloat(t, s.w.getFloat(t));
                }
            }
            for (int t = 0; t < n; t++) {
                maskOut.setFloat(t, keep == null || keep.getFloat(t) != 0f ? mask.getFloat(t) : 0f);
            }
        }

        @Override
        public void kTerms(final int n, final Scratch s) {
            for (int t = 0; t < n; t++) {
                final float lrs = s.lrs.getFloat(t);
                final float rho = s.rho.getFloat(t);
                s.k2.setFloat(t, 0.5f * (lrs * lrs));
                s.k3.setFloat(t, (rho - 1f) - lrs);
            }
        }
    };

    /**
     * Reusable per-engine scratch (off heap, freed by {@link #close()}): grows, never shrinks. The per-token columns
     * are float32, flags 1 (true) or 0 (false); the per-row arrays and the pass results are on heap.
     */
    public static final class Scratch implements AutoCloseable {
        /**
         * The log-ratio: with {@link #kk}, {@link #rho2}, {@link #v}, {@link #c} and {@link #c2}, a column that
         * only enters row sums, kept by {@link #SCALAR} (allocated by {@link #ensureTerms}); the engine sums these
         * terms block by block without storing them.
         */
        public OffHeapArray lr;
        /** Clamped log-ratio. */
        public OffHeapArray lrs;
        /** exp(lrs). */
        public OffHeapArray rho;
        /** k2. */
        public OffHeapArray k2;
        /** k3. */
        public OffHeapArray k3;
        /** Unclamped k3 (k3_kl). */
        public OffHeapArray kk;
        /** rho * rho. */
        public OffHeapArray rho2;
        /** sign * x of {@link Kernels#clampedSums}. */
        public OffHeapArray v;
        /** clamp(v, lo, hi). */
        public OffHeapArray c;
        /** c * c. */
        public OffHeapArray c2;
        /** Raw IS weights ({@link Kernels#isWeights}). */
        public OffHeapArray raw;
        /** Applied (truncated or IcePop-masked, then batch-normalised) IS weights. */
        public OffHeapArray w;
        /** Flag: the token is valid (mask != 0). */
        public OffHeapArray valid;
        /** Flag: the current rejection option keeps the token. */
        public OffHeapArray keep;
        /** Flag: every rejection option keeps the token. */
        public OffHeapArray keepAll;
        /** Valid tokens per row. */
        public double[] count = new double[0];
        /** Per-row float32 values for {@link Kernels#broadcastRows}. */
        public float[] rowFloat = new float[0];
        /** Counts of the last {@link Kernels#isMetrics} or {@link Kernels#keepTest}. */
        public long above;
        /** Counts of the last {@link Kernels#isMetrics} or {@link Kernels#keepTest}. */
        public long below;
        /** Extremum of the last {@link Kernels#isMetrics} or {@link Kernels#keepTest}. */
        public float max;
        /** Extremum of the last {@link Kernels#isMetrics} or {@link Kernels#keepTest}. */
        public float min;
        /** Rejected valid tokens of the last {@link Kernels#rejectRows}. */
        public long rejected;
        /** Rows with a rejected valid token, of the last {@link Kernels#rejectRows}. */
        public int rowsRejected;
        private int capacity;
        private int termsCapacity;
        /** Canonical masked row sums of lr, kk, rho2, old and roll ({@link Kernels#tokenTerms}). */
        public double[] lrSum = new double[0];
        /** Row sums of kk. */
        public double[] kkSum = new double[0];
        /** Row sums of rho2. */
        public double[] rho2Sum = new double[0];
        /** Row sums of the training policy's log-probs. */
        public double[] oldSum = new double[0];
        /** Row sums of the rollout policy's log-probs. */
        public double[] rollSum = new double[0];
        /** Canonical masked row sums of v, c and c2 ({@link Kernels#clampedSums}). */
        public double[] vSum = new double[0];
        /** Row sums of c. */
        public double[] cSum = new double[0];
        /** Row sums of c2. */
        public double[] c2Sum = new double[0];
        double[] rowValue = new double[0];
        double[] rowAux = new double[0];
        double[] rowRaw = new double[0];

        /** Makes room for n tokens and b sequences. */
        public void ensure(final int n, final int b) {
            if (capacity < n || lrs == null) {
                close();
                final long size = Math.max(n, 1);
                lrs = OffHeapArray.allocate(ElementType.F32, size);
                rho = OffHeapArray.allocate(ElementType.F32, size);
                k2 = OffHeapArray.allocate(ElementType.F32, size);
                k3 = OffHeapArray.allocate(ElementType.F32, size);
                raw = OffHeapArray.allocate(ElementType.F32, size);
                w = OffHeapArray.allocate(ElementType.F32, size);
                valid = OffHeapArray.allocate(ElementType.F32, size);
                keep = OffHeapArray.allocate(ElementType.F32, size);
                keepAll = OffHeapArray.allocate(ElementType.F32, size);
                capacity = n;
            }
            if (count.length < b) {
                count = new double[b];
                rowFloat = new float[b];
                lrSum = new double[b];
                kkSum = new double[b];
                rho2Sum = new double[b];
                oldSum = new double[b];
                rollSum = new double[b];
                vSum = new double[b];
                cSum = new double[b];
                c2Sum = new double[b];
                rowValue = new double[b];
                rowAux = new double[b];
                rowRaw = new double[b];
            }
        }

        /** Makes room for n tokens in the summed-only columns (lr, kk, rho2, v, c, c2) of {@link #SCALAR}. */
        public void ensureTerms(final int n) {
            if (termsCapacity < n || lr == null) {
                closeTerms();
                final long size = Math.max(n, 1);
                lr = OffHeapArray.allocate(ElementType.F32, size);
                kk = OffHeapArray.allocate(ElementType.F32, size);
                rho2 = OffHeapArray.allocate(ElementType.F32, size);
                v = OffHeapArray.allocate(ElementType.F32, size);
                c = OffHeapArray.allocate(ElementType.F32, size);
                c2 = OffHeapArray.allocate(ElementType.F32, size);
                termsCapacity = n;
            }
        }

        private void closeTerms() {
            for (final OffHeapArray a : new OffHeapArray[] {lr, kk, rho2, v, c, c2}) {
                if (a != null) {
                    a.close();
                }
            }
            lr = null;
            kk = null;
            rho2 = null;
            v = null;
            c = null;
            c2 = null;
            termsCapacity = 0;
        }

        /** Frees the off-heap buffers. */
        @Override
        public void close() {
            for (final OffHeapArray a : new OffHeapArray[] {lrs, rho, k2, k3, raw, w, valid, keep, keepAll}) {
                if (a != null) {
                    a.close();
                }
            }
            lrs = null;
            capacity = 0;
            closeTerms();
        }
    }

    private RolloutCorrection() {
    }

    /**
     * Computes IS weights, the rejection mask and the metrics (arguments validated by the caller, except verl's
     * data-dependent errors, raised here before anything is written).
     *
     * @param isOut   F32 output for the IS weights (0 outside the mask), or null; not written without IS.
     * @param maskOut F32 output, {@code response_mask * keep}.
     */
    public static void compute(final Kernels kernels, final Scratch s, final RolloutCorrectionSpec spec,
                               final TokenBatch batch, final OffHeapArray isOut, final OffHeapArray maskOut,
                               final RolloutCorrectionResult out) {
        compute(kernels, s, spec, batch, batch.column(Column.OLD_LOG_PROB), batch.column(Column.ROLLOUT_LOG_PROB),
            isOut, maskOut, out);
    }

    /**
     * As {@link #compute(Kernels, Scratch, RolloutCorrectionSpec, TokenBatch, OffHeapArray, OffHeapArray,
     * RolloutCorrectionResult)} with the two log-prob columns given (bypass_mode passes log_prob as the training
     * policy's and old_log_prob as the rollout's).
     *
     * @param train the training policy's log-probs (verl's {@code old_log_prob} argument).
     * @param roll  the rollout policy's log-probs.
     */
    public static void compute(final Kernels kernels, final Scratch s, final RolloutCorrectionSpec spec,
                               final TokenBatch batch, final OffHeapArray train, final OffHeapArray roll,
                               final OffHeapArray isOut, final OffHeapArray maskOut,
                               final RolloutCorrectionResult out) {
        final int n = batch.numTokens();
        final int b = batch.numSequences();
        final OffHeapArray mask = batch.mask();
        s.ensure(n, b);
        kernels.validCounts(batch, mask, s);
        double total = 0;
        for (int i = 0; i < b; i++) {
            total += s.count[i];
        }
        if (total == 0) {
            throw new IllegalArgumentException("response_mask must contain at least one valid token (1).");
        }
        kernels.tokenTerms(batch, train, roll, s);
        out.reset();
        if (spec.hasIs()) {
            isWeights(kernels, spec, batch, s, total, out);
        }
        // The tokens every rejection option keeps: none rejected without options; one option's own keep flags;
        // with several, their conjunction (keepAll, from all ones), whose rejection counts are then recounted.
        OffHeapArray kept = null;
        if (!spec.rsOptions().isEmpty()) {
            final java.util.List<RsOption> options = spec.rsOptions();
            final boolean several = options.size() > 1;
            for (int k = 0; k < options.size(); k++) {
                if (options.get(k).estimator() != Estimator.K1) {
                    kernels.kTerms(n, s);
                    break;
                }
            }
            if (several) {
                kernels.fill(n, s.keepAll, 1f);
            }
            for (int k = 0; k < options.size(); k++) {
                rejection(kernels, options.get(k), batch, s, total, out, several ? s.keepAll : null);
            }
            if (several) {
                kernels.rejectRows(batch, s.keepAll, null, s);
            }
            kept = several ? s.keepAll : s.keep;
            out.put(RolloutCorrectionResult.RS_BASE, s.rejected / (total + EPS));
            out.put(RolloutCorrectionResult.RS_BASE + 1, (double) s.rowsRejected / b);
        }
        offPolicy(batch, s, total, out);
        kernels.outputs(n, mask, spec.hasIs() ? isOut : null, kept, maskOut, s);
    }

    /** @return the canonical masked sum over the batch: the row sums (into {@code rows}) added in order. */
    private static double sum(final Kernels k, final TokenBatch batch, final OffHeapArray x, final double[] rows) {
        k.maskedRowSums(batch, x, rows);
        double total = 0;
        for (int i = 0; i < batch.numSequences(); i++) {
            total += rows[i];
        }
        return total;
    }

    private static void isWeights(final Kernels k, final RolloutCorrectionSpec spec, final TokenBatch batch,
                                  final Scratch s, final double total, final RolloutCorrectionResult out) {
        final int n = batch.numTokens();
        final int b = batch.numSequences();
        final boolean sequence = spec.rolloutIs() == IsLevel.SEQUENCE;
        final boolean icePop = spec.icePop();
        final double u = spec.isUpper();
        final float uf = (float) u;
        final float lf = (float) spec.isLower();
        final float metricLow = (float) (icePop ? spec.isLower() : 1.0 / u);
        if (sequence) {
            for (int i = 0; i < b; i++) {
                s.rowFloat[i] = (float) StrictMath.exp(clamp(s.lrSum[i]));
            }
            k.broadcastRows(batch, s.rowFloat, s.raw);
        }
        k.isWeights(n, sequence ? s.raw : s.rho, icePop, lf, uf, s);
        final int base = RolloutCorrectionResult.IS_BASE;
        // verl 2026-08 computes the IS metrics from the applied weights w; 2026-01 from the raw weights, before
        // truncation, with std and ESS over clamp(raw, 1/U, U) instead of clamp(w, 0, U).
        final boolean rawMetrics = spec.release() == VerlRelease.V2026_01;
        final OffHeapArray mw = rawMetrics ? s.raw : s.w;
        // Row sums of w (kept in rowValue), of the raw weights (rowRaw).
        final double wSum = sum(k, batch, s.w, s.rowValue);
        final double rawSum = sum(k, batch, s.raw, s.rowRaw);
        final double metricSum = rawMetrics ? rawSum : wSum;
        if (sequence) {
            double logMax = Double.NEGATIVE_INFINITY;
            double logMin = Double.POSITIVE_INFINITY;
            int high = 0;
            int low = 0;
            final float logU = (float) Math.log(uf);
            final float logL = (float) Math.log(metricLow);
            for (int i = 0; i < b; i++) {
                final double v = s.lrSum[i];
                logMax = Math.max(logMax, v);
                logMin = Math.min(logMin, v);
                high += (float) v > logU ? 1 : 0;
                low += (float) v < logL ? 1 : 0;
            }
            out.put(base, StrictMath.exp(Math.min(logMax, BOUND)));
            out.put(base + 1, StrictMath.exp(logMin));
            out.put(base + 2, metricSum / (total + EPS));
            out.put(base + 3, (double) high / b);
            out.put(base + 4, (double) low / b);
        } else {
            k.isMetrics(n, s.raw, mw, uf, metricLow, s);
            out.put(base + 2, metricSum / (total + EPS));
            out.put(base + 3, s.above / (total + EPS));
            out.put(base + 4, s.below / (total + EPS));
            out.put(base, s.max);
            out.put(base + 1, s.min);
        }
        // std and ESS of c = clamp(w, 0, U) (2026-01: clamp(raw, 1/U, U)): sum(c^2) / (mean(c) + 1e-8)^2 is the sum
        // of the normalised squares.
        k.clampedSums(batch, mw, 1f, rawMetrics ? metricLow : 0f, uf, s);
        final double cMean = total(s.cSum, b) / (total + EPS);
        final double cSq = total(s.c2Sum, b);
        out.put(base + 5, total > 1 ? Math.sqrt(Math.max(cSq / (total + EPS) - cMean * cMean, 0.0)) : 0.0);
        final double meanNormSq = cSq / ((cMean + EPS) * (cMean + EPS)) / (total + EPS);
        if (meanNormSq == 0) {
            throw new IllegalArgumentException("rollout_is_eff_sample_size: every IS weight is 0 (every ratio "
                + "outside the IcePop band [" + spec.isLower() + ", " + u + "]); verl's 1.0 / 0.0 raises "
                + "ZeroDivisionError");
        }
        out.put(base + 6, 1.0 / meanNormSq);
        // Per-row means of w and of the raw weights over all rows (an empty row's is 0); the metrics read those of
        // the metric weights.
        for (int i = 0; i < b; i++) {
            s.rowValue[i] = s.rowValue[i] / (s.count[i] + EPS);
            s.rowRaw[i] = s.rowRaw[i] / (s.count[i] + EPS);
        }
        final double[] metricRows = rawMetrics ? s.rowRaw : s.rowValue;
        double rowSum = 0;
        double rowMax = Double.NEGATIVE_INFINITY;
        double rowMin = Double.POSITIVE_INFINITY;
        double maxDev = Double.NEGATIVE_INFINITY;
        int rawHigh = 0;
        int rawLow = 0;
        for (int i = 0; i < b; i++) {
            final double m = metricRows[i];
            final float rm = (float) s.rowRaw[i];
            rowSum += m;
            rowMax = Math.max(rowMax, m);
            rowMin = Math.min(rowMin, m);
            maxDev = Math.max(maxDev, Math.abs(m - 1.0));
            rawHigh += rm > uf ? 1 : 0;
            rawLow += rm < metricLow ? 1 : 0;
        }
        final double rowMean = rowSum / b;
        out.put(base + 7, rowMean);
        out.put(base + 8, unbiasedStd(metricRows, b, rowMean));
        out.put(base + 9, rowMax);
        out.put(base + 10, rowMin);
        out.put(base + 11, maxDev);
        out.put(base + 12, (double) rawHigh / b);
        out.put(base + 13, (double) rawLow / b);
        if (icePop) {
            final long oob = k.countOutside(n, s.raw, lf, uf, s);
            out.put(base + 14, oob / (total + EPS));
        }
        if (spec.batchNormalize()) {
            final double mean;
            if (sequence) {
                double sum = 0;
                int rows = 0;
                for (int i = 0; i < b; i++) {
                    if (s.count[i] > 0) {
                        sum += s.rowValue[i];
                        rows++;
                    }
                }
                mean = sum / Math.max(rows, EPS);
            } else {
                mean = wSum / (total + EPS);
            }
            if (mean > EPS) {
                k.divide(n, s.w, (float) mean);
                out.put(base + 15, mean);
            } else {
                out.put(base + 15, 1.0);
            }
        }
    }

    /** @return the row sums {@code rows[0, b)} added in order (a canonical masked sum over the batch). */
    private static double total(final double[] rows, final int b) {
        double total = 0;
        for (int i = 0; i < b; i++) {
            total += rows[i];
        }
        return total;
    }

    /**
     * One rejection option's keep flags (in {@code s.keep}), counts and metrics; {@code keepAll}, when not null,
     * loses the tokens the option rejects.
     */
    private static void rejection(final Kernels k, final RsOption o, final TokenBatch batch, final Scratch s,
                                  final double total, final RolloutCorrectionResult out,
                                  final OffHeapArray keepAll) {
        final int n = batch.numTokens();
        final int b = batch.numSequences();
        final boolean k1 = o.twoSided();
        final double hi = o.upperStat();
        final double lo = o.lowerStat();
        final float hif = (float) hi;
        final float lof = (float) lo;
        final OffHeapArray stat = o.estimator() == Estimator.K2 ? s.k2 : o.estimator() == Estimator.K3 ? s.k3 : s.lrs;
        final float sign = o.estimator() == Estimator.K1 ? -1f : 1f;
        final boolean tokenLevel = o.level() == Level.TOKEN;
        k.clampedSums(batch, stat, sign, lof, hif, s);
        double sum;
        double sumClamped;
        double sumClampedSq;
        double max = Double.NEGATIVE_INFINITY;
        double min = Double.POSITIVE_INFINITY;
        long high = 0;
        long low = 0;
        int rows = 0;
        if (tokenLevel) {
            sumClamped = total(s.cSum, b);
            sumClampedSq = total(s.c2Sum, b);
            sum = total(s.vSum, b);
            for (int i = 0; i < b; i++) {
                s.rowValue[i] = s.vSum[i] / (s.count[i] + EPS);
            }
            k.keepTest(n, stat, sign, k1, lof, hif, s);
            max = s.max;
            min = s.min;
            high = s.above;
            low = s.below;
        } else {
            sum = 0;
            sumClamped = 0;
            sumClampedSq = 0;
            System.arraycopy(s.vSum, 0, s.rowValue, 0, b);
            if (o.level() == Level.SEQ_MAX) {
                k.validRowMax(batch, stat, sign, s.rowAux);
            }
            for (int i = 0; i < b; i++) {
                final double c = s.count[i];
                final double v;
                if (o.level() == Level.SEQ_MAX) {
                    v = c > 0 ? s.rowAux[i] : 0.0;
                } else {
                    v = o.level() == Level.SEQ_MEAN ? s.rowValue[i] / (c + EPS) : s.rowValue[i];
                }
                s.rowValue[i] = v;
                final float vf = (float) v;
                s.rowFloat[i] = (k1 ? vf >= lof && vf <= hif : vf <= hif) ? 1f : 0f;
                if (c > 0) {
                    sum += c * v;
                    max = Math.max(max, v);
                    min = Math.min(min, v);
                    high += vf > hif ? 1 : 0;
                    low += k1 && vf < lof ? 1 : 0;
                    final double cl = Math.min(Math.max(v, lo), hi);
                    sumClamped += c * cl;
                    sumClampedSq += c * (cl * cl);
                }
            }
            k.broadcastRows(batch, s.rowFloat, s.keep);
        }
        // A row with a rejected valid token is not empty.
        k.rejectRows(batch, s.keep, keepAll, s);
        final long rejected = s.rejected;
        final int rowsRejected = s.rowsRejected;
        for (int i = 0; i < b; i++) {
            rows += s.count[i] > 0 ? 1 : 0;
        }
        final String name = o.name();
        final double meanClamped = sumClamped / (total + EPS);
        put(out, name, 0, sum / (total + EPS));
        put(out, name, 1, max);
        put(out, name, 2, min);
        if (tokenLevel) {
            put(out, name, 3, high / (total + EPS));
            put(out, name, 4, k1 ? low / (total + EPS) : 0.0);
        } else {
            put(out, name, 3, (double) high / rows);
            put(out, name, 4, k1 ? (double) low / rows : 0.0);
        }
        put(out, name, 5, total > 1
            ? Math.sqrt(Math.max(sumClampedSq / (total + EPS) - meanClamped * meanClamped, 0.0)) : 0.0);
        // Row statistics over the non-empty rows.
        double rowSum = 0;
        double rowMax = Double.NEGATIVE_INFINITY;
        double rowMin = Double.POSITIVE_INFINITY;
        double dev = 0;
        int rowHigh = 0;
        int rowLow = 0;
        for (int i = 0; i < b; i++) {
            if (s.count[i] > 0) {
                final double v = s.rowValue[i];
                rowSum += v;
                rowMax = Math.max(rowMax, v);
                rowMin = Math.min(rowMin, v);
                dev = Math.max(dev, Math.abs(v));
                rowHigh += (float) v > hif ? 1 : 0;
                rowLow += (float) v < lof ? 1 : 0;
            }
        }
        final double rowMean = rowSum / rows;
        double sq = 0;
        for (int i = 0; i < b; i++) {
            if (s.count[i] > 0) {
                final double d = s.rowValue[i] - rowMean;
                sq += d * d;
            }
        }
        put(out, name, 6, rowMean);
        put(out, name, 7, rows > 1 ? Math.sqrt(sq / (rows - 1)) : 0.0);
        put(out, name, 8, rowMax);
        put(out, name, 9, rowMin);
        put(out, name, 10, dev);
        put(out, name, 11, (double) rowHigh / rows);
        if (k1) {
            put(out, name, 12, (double) rowLow / rows);
        }
        put(out, name, 13, rejected / (total + EPS));
        put(out, name, 14, (double) rowsRejected / rows);
    }

    private static void put(final RolloutCorrectionResult out, final String option, final int key, final double v) {
        out.put(RolloutCorrectionResult.rsOptionKey(option, key), v);
    }

    private static void offPolicy(final TokenBatch batch, final Scratch s, final double total,
                                  final RolloutCorrectionResult out) {
        final int b = batch.numSequences();
        // lr's row sums are in s.lrSum; kl = sum(roll - old) = -sum(lr) exactly (IEEE negation is exact).
        double lrTotal = 0;
        for (int i = 0; i < b; i++) {
            lrTotal += s.lrSum[i];
        }
        final double kl = -lrTotal;
        final double k3 = total(s.kkSum, b);
        final double rhoSq = total(s.rho2Sum, b);
        double trainPpl = 0;
        double trainLogPpl = 0;
        double rollPpl = 0;
        double rollLogPpl = 0;
        double diff = 0;
        double absDiff = 0;
        double diffMax = Double.NEGATIVE_INFINITY;
        double diffMin = Double.POSITIVE_INFINITY;
        double pplRatio = 0;
        double chiSeq = 0;
        for (int i = 0; i < b; i++) {
            final double mo = s.oldSum[i] / (s.count[i] + EPS);
            final double mr = s.rollSum[i] / (s.count[i] + EPS);
            trainPpl += StrictMath.exp(-mo);
            trainLogPpl += -mo;
            rollPpl += StrictMath.exp(-mr);
            rollLogPpl += -mr;
            final double d = mr - mo;
            diff += d;
            absDiff += Math.abs(d);
            diffMax = Math.max(diffMax, d);
            diffMin = Math.min(diffMin, d);
            pplRatio += StrictMath.exp(d);
            chiSeq += StrictMath.exp(2.0 * clamp(s.lrSum[i]));
        }
        final int base = RolloutCorrectionResult.OFFPOLICY_BASE;
        out.put(base, trainPpl / b);
        out.put(base + 1, trainLogPpl / b);
        out.put(base + 2, kl / (total + EPS));
        out.put(base + 3, k3 / (total + EPS));
        out.put(base + 4, rollPpl / b);
        out.put(base + 5, rollLogPpl / b);
        out.put(base + 6, diff / b);
        out.put(base + 7, absDiff / b);
        out.put(base + 8, diffMax);
        out.put(base + 9, diffMin);
        out.put(base + 10, pplRatio / b);
        out.put(base + 11, rhoSq / (total + EPS) - 1.0);
        out.put(base + 12, chiSeq / b - 1.0);
    }

    private static double clamp(final double x) {
        return x < -BOUND ? -BOUND : (x > BOUND ? BOUND : x);
    }

    private static double unbiasedStd(final double[] v, final int n, final double mean) {
        if (n <= 1) {
            return 0.0;
        }
        double sq = 0;
        for (int i = 0; i < n; i++) {
            final double d = v[i] - mean;
            sq += d * d;
        }
        return Math.sqrt(sq / (n - 1));
    }
}
