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

    /** The per-token passes and the row sums, plain loops here and Vector API loops in the engine. */
    public interface Kernels {
        /**
         * For every token slot t in [0, n) (masked or not): {@code lr = old - roll}, {@code lrs = clamp(lr, -20,
         * 20)}, {@code rho = exp(lrs)}, {@code k2 = 0.5 * (lrs * lrs)}, {@code k3 = (rho - 1) - lrs},
         * {@code kk = (exp(lr) - lr) - 1}, {@code rho2 = rho * rho}, float32 with the canonical exp.
         */
        void tokenTerms(int n, OffHeapArray old, OffHeapArray roll, Scratch s);

        /**
         * For every token slot t in [0, n): {@code v = sign * x}, {@code c = clamp(v, lo, hi)} (torch's clamp:
         * NaN stays NaN, -0 stays -0), {@code c2 = c * c}, float32.
         */
        void clampSquare(int n, OffHeapArray x, float sign, float lo, float hi, Scratch s);

        /** The canonical masked row sums of x ({@link Advantages.Kernels#maskedRowSums}) into {@code out}. */
        void maskedRowSums(TokenBatch batch, OffHeapArray x, double[] out);
    }

    /** The scalar kernels. */
    public static final Kernels SCALAR = new Kernels() {
        @Override
        public void tokenTerms(final int n, final OffHeapArray old, final OffHeapArray roll, final Scratch s) {
            for (int t = 0; t < n; t++) {
                final float lr = old.getFloat(t) - roll.getFloat(t);
                final float lrs = TorchOps.clamp(lr, -BOUND, BOUND);
                final float rho = CanonicalMath.exp(lrs);
                s.lr.setFloat(t, lr);
                s.lrs.setFloat(t, lrs);
                s.rho.setFloat(t, rho);
                s.k2.setFloat(t, 0.5f * (lrs * lrs));
                s.k3.setFloat(t, (rho - 1f) - lrs);
                s.kk.setFloat(t, (CanonicalMath.exp(lr) - lr) - 1f);
                s.rho2.setFloat(t, rho * rho);
            }
        }

        @Override
        public void clampSquare(final int n, final OffHeapArray x, final float sign, final float lo, final float hi,
                                final Scratch s) {
            for (int t = 0; t < n; t++) {
                final float v = sign * x.getFloat(t);
                final float c = TorchOps.clamp(v, lo, hi);
                s.v.setFloat(t, v);
                s.c.setFloat(t, c);
                s.c2.setFloat(t, c * c);
            }
        }

        @Override
        public void maskedRowSums(final TokenBatch batch, final OffHeapArray x, final double[] out) {
            Advantages.SCALAR.maskedRowSums(batch, x, out);
        }
    };

    /** Reusable per-engine scratch (off heap, freed by {@link #close()}): grows, never shrinks. */
    public static final class Scratch implements AutoCloseable {
        /** Per-token float32 terms (see {@link Kernels}). */
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
        /** sign * x of {@link Kernels#clampSquare}. */
        public OffHeapArray v;
        /** clamp(v, lo, hi). */
        public OffHeapArray c;
        /** c * c. */
        public OffHeapArray c2;
        OffHeapArray raw;
        OffHeapArray w;
        boolean[] valid = new boolean[0];
        boolean[] keep = new boolean[0];
        boolean[] keepAll = new boolean[0];
        double[] count = new double[0];
        double[] lrSum = new double[0];
        double[] rowValue = new double[0];
        double[] rowAux = new double[0];
        double[] rowRaw = new double[0];

        /** Makes room for n tokens and b sequences. */
        public void ensure(final int n, final int b) {
            if (valid.length < n || lr == null) {
                close();
                final long size = Math.max(n, 1);
                lr = OffHeapArray.allocate(ElementType.F32, size);
                lrs = OffHeapArray.allocate(ElementType.F32, size);
                rho = OffHeapArray.allocate(ElementType.F32, size);
                k2 = OffHeapArray.allocate(ElementType.F32, size);
                k3 = OffHeapArray.allocate(ElementType.F32, size);
                kk = OffHeapArray.allocate(ElementType.F32, size);
                rho2 = OffHeapArray.allocate(ElementType.F32, size);
                v = OffHeapArray.allocate(ElementType.F32, size);
                c = OffHeapArray.allocate(ElementType.F32, size);
                c2 = OffHeapArray.allocate(ElementType.F32, size);
                raw = OffHeapArray.allocate(ElementType.F32, size);
                w = OffHeapArray.allocate(ElementType.F32, size);
                valid = new boolean[n];
                keep = new boolean[n];
                keepAll = new boolean[n];
            }
            if (count.length < b) {
                count = new double[b];
                lrSum = new double[b];
                rowValue = new double[b];
                rowAux = new double[b];
                rowRaw = new double[b];
            }
        }

        /** Frees the off-heap buffers. */
        @Override
        public void close() {
            for (final OffHeapArray a : new OffHeapArray[] {lr, lrs, rho, k2, k3, kk, rho2, v, c, c2, raw, w}) {
                if (a != null) {
                    a.close();
                }
            }
            lr = null;
            valid = new boolean[0];
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
        double total = 0;
        for (int i = 0; i < b; i++) {
            double c = 0;
            for (int t = batch.offset(i); t < batch.offset(i + 1); t++) {
                final boolean v = mask.getFloat(t) != 0f;
                s.valid[t] = v;
                c += v ? 1 : 0;
            }
            s.count[i] = c;
            total += c;
        }
        if (total == 0) {
            throw new IllegalArgumentException("response_mask must contain at least one valid token (1).");
        }
        kernels.tokenTerms(n, train, roll, s);
        kernels.maskedRowSums(batch, s.lr, s.lrSum);
        out.reset();
        if (spec.hasIs()) {
            isWeights(kernels, spec, batch, s, total, out);
        }
        for (int t = 0; t < n; t++) {
            s.keepAll[t] = true;
        }
        if (!spec.rsOptions().isEmpty()) {
            final java.util.List<RsOption> options = spec.rsOptions();
            for (int k = 0; k < options.size(); k++) {
                rejection(kernels, options.get(k), batch, s, total, out);
            }
            long rejected = 0;
            int rowsRejected = 0;
            for (int i = 0; i < b; i++) {
                boolean any = false;
                for (int t = batch.offset(i); t < batch.offset(i + 1); t++) {
                    if (s.valid[t] && !s.keepAll[t]) {
                        rejected++;
                        any = true;
                    }
                }
                rowsRejected += any ? 1 : 0;
            }
            out.put(RolloutCorrectionResult.RS_BASE, rejected / (total + EPS));
            out.put(RolloutCorrectionResult.RS_BASE + 1, (double) rowsRejected / b);
        }
        offPolicy(kernels, batch, train, roll, s, total, out);

        if (isOut != null && spec.hasIs()) {
            for (int t = 0; t < n; t++) {
                isOut.setFloat(t, s.w.getFloat(t));
            }
        }
        for (int t = 0; t < n; t++) {
            maskOut.setFloat(t, s.keepAll[t] ? mask.getFloat(t) : 0f);
        }
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
        for (int i = 0; i < b; i++) {
            final float rawSeq = sequence ? (float) StrictMath.exp(clamp(s.lrSum[i])) : 0f;
            for (int t = batch.offset(i); t < batch.offset(i + 1); t++) {
                final float raw = s.valid[t] ? (sequence ? rawSeq : s.rho.getFloat(t)) : 0f;
                s.raw.setFloat(t, raw);
                s.w.setFloat(t, icePop ? (raw >= lf && raw <= uf ? raw : 0f) : (raw > uf ? uf : raw));
            }
        }
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
            long high = 0;
            long low = 0;
            float max = Float.NEGATIVE_INFINITY;
            float min = Float.POSITIVE_INFINITY;
            for (int t = 0; t < n; t++) {
                if (s.valid[t]) {
                    final float raw = s.raw.getFloat(t);
                    final float w = mw.getFloat(t);
                    high += raw > uf ? 1 : 0;
                    low += raw < metricLow ? 1 : 0;
                    max = TorchOps.maximum(max, w);
                    min = TorchOps.minimum(min, w);
                }
            }
            out.put(base + 2, metricSum / (total + EPS));
            out.put(base + 3, high / (total + EPS));
            out.put(base + 4, low / (total + EPS));
            out.put(base, max);
            out.put(base + 1, min);
        }
        // std and ESS of c = clamp(w, 0, U) (2026-01: clamp(raw, 1/U, U)): sum(c^2) / (mean(c) + 1e-8)^2 is the sum
        // of the normalised squares.
        k.clampSquare(n, mw, 1f, rawMetrics ? metricLow : 0f, uf, s);
        final double cMean = sumInto(k, batch, s.c, s) / (total + EPS);
        final double cSq = sumInto(k, batch, s.c2, s);
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
            long oob = 0;
            for (int t = 0; t < n; t++) {
                final float raw = s.raw.getFloat(t);
                oob += s.valid[t] && (raw < lf || raw > uf) ? 1 : 0;
            }
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
                final float f = (float) mean;
                for (int t = 0; t < n; t++) {
                    s.w.setFloat(t, s.w.getFloat(t) / f);
                }
                out.put(base + 15, mean);
            } else {
                out.put(base + 15, 1.0);
            }
        }
    }

    /** The canonical masked sum of x, its row sums left in {@code s.rowAux}. */
    private static double sumInto(final Kernels k, final TokenBatch batch, final OffHeapArray x, final Scratch s) {
        return sum(k, batch, x, s.rowAux);
    }

    private static void rejection(final Kernels k, final RsOption o, final TokenBatch batch, final Scratch s,
                                  final double total, final RolloutCorrectionResult out) {
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
        k.clampSquare(n, stat, sign, lof, hif, s);
        double sum;
        double sumClamped;
        double sumClampedSq;
        double max = Double.NEGATIVE_INFINITY;
        double min = Double.POSITIVE_INFINITY;
        long high = 0;
        long low = 0;
        long rejected = 0;
        int rowsRejected = 0;
        int rows = 0;
        if (tokenLevel) {
            sumClamped = sumInto(k, batch, s.c, s);
            sumClampedSq = sumInto(k, batch, s.c2, s);
            sum = sum(k, batch, s.v, s.rowValue);
            for (int i = 0; i < b; i++) {
                s.rowValue[i] = s.rowValue[i] / (s.count[i] + EPS);
            }
            for (int t = 0; t < n; t++) {
                final float v = s.v.getFloat(t);
                s.keep[t] = k1 ? v >= lof && v <= hif : v <= hif;
                if (s.valid[t]) {
                    max = Math.max(max, v);
                    min = Math.min(min, v);
                    high += v > hif ? 1 : 0;
                    low += k1 && v < lof ? 1 : 0;
                }
            }
        } else {
            sum = 0;
            sumClamped = 0;
            sumClampedSq = 0;
            k.maskedRowSums(batch, s.v, s.rowValue);
            for (int i = 0; i < b; i++) {
                final int start = batch.offset(i);
                final int end = batch.offset(i + 1);
                final double c = s.count[i];
                final double v;
                if (o.level() == Level.SEQ_MAX) {
                    double acc = Double.NEGATIVE_INFINITY;
                    for (int t = start; t < end; t++) {
                        if (s.valid[t]) {
                            acc = Math.max(acc, s.v.getFloat(t));
                        }
                    }
                    v = c > 0 ? acc : 0.0;
                } else {
                    v = o.level() == Level.SEQ_MEAN ? s.rowValue[i] / (c + EPS) : s.rowValue[i];
                }
                s.rowValue[i] = v;
                final float vf = (float) v;
                final boolean keep = k1 ? vf >= lof && vf <= hif : vf <= hif;
                for (int t = start; t < end; t++) {
                    s.keep[t] = keep;
                }
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
        }
        for (int i = 0; i < b; i++) {
            final int start = batch.offset(i);
            final int end = batch.offset(i + 1);
            boolean any = false;
            for (int t = start; t < end; t++) {
                if (s.valid[t] && !s.keep[t]) {
                    rejected++;
                    any = true;
                }
                s.keepAll[t] &= s.keep[t];
            }
            if (s.count[i] > 0) {
                rows++;
                rowsRejected += any ? 1 : 0;
            }
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

    private static void offPolicy(final Kernels k, final TokenBatch batch, final OffHeapArray old,
                                  final OffHeapArray roll, final Scratch s, final double total,
                                  final RolloutCorrectionResult out) {
        final int b = batch.numSequences();
        // lr's row sums are in s.lrSum; kl = sum(roll - old) = -sum(lr) exactly (IEEE negation is exact).
        double lrTotal = 0;
        for (int i = 0; i < b; i++) {
            lrTotal += s.lrSum[i];
        }
        final double kl = -lrTotal;
        final double k3 = sumInto(k, batch, s.kk, s);
        final double rhoSq = sumInto(k, batch, s.rho2, s);
        k.maskedRowSums(batch, old, s.rowValue);
        k.maskedRowSums(batch, roll, s.rowAux);
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
            final double mo = s.rowValue[i] / (s.count[i] + EPS);
            final double mr = s.rowAux[i] / (s.count[i] + EPS);
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
