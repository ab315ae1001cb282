package io.rlvec.cli.golden;

import io.rlvec.Column;
import io.rlvec.ElementType;
import io.rlvec.Engine;
import io.rlvec.OffHeapArray;
import io.rlvec.TokenBatch;
import io.rlvec.reference.MaskedStats;
import java.util.Map;

/**
 * verl's masked statistics ({@code torch_functional.masked_* / clip_by_value}) through {@link MaskedStats}, the
 * implementation the advantage estimators share: inputs {@code in.values} (NaN/Inf at masked positions),
 * {@code in.values_zeroed}, {@code in.mask}, {@code in.clip_lo}, {@code in.clip_hi}. The statistics are the
 * library's (the same for every engine); they are labelled as harness outputs, and judged by derived bounds
 * ({@link #exact}); the float64 case against its stored values ({@link CaseOutputs.Referee#storedInDouble}).
 */
public final class MaskedStatsHandler implements CaseHandler {
    /** verl's functions (one file covers them all). */
    public static final String FUNCTION = "verl.utils.torch_functional.masked_*/clip_by_value";

    @Override
    public CaseOutputs run(final GoldenCase golden, final Engine engine) {
        final int[] bt = golden.matrixShape("in.mask");
        final int n = bt[0] * bt[1];
        final String how = "MaskedStats (the estimators' masked statistics) in double";
        final Tolerance tol = Tolerance.VALUE.orAbsolute(1e-6);
        try (TokenBatch raw = golden.paddedBatch("in.mask", Map.of(Column.VALUES, "in.values"));
             TokenBatch zeroed = golden.paddedBatch("in.mask", Map.of(Column.VALUES, "in.values_zeroed"));
             OffHeapArray whiten = OffHeapArray.allocate(ElementType.F32, n);
             OffHeapArray noShift = OffHeapArray.allocate(ElementType.F32, n);
             OffHeapArray clip = OffHeapArray.allocate(ElementType.F32, n)) {
            final OffHeapArray x = raw.column(Column.VALUES);
            final OffHeapArray z = zeroed.column(Column.VALUES);
            MaskedStats.whiten(zeroed, z, true, whiten);
            MaskedStats.whiten(zeroed, z, false, noShift);
            MaskedStats.clipByValue(z, golden.float32("in.clip_lo"), golden.float32("in.clip_hi"), clip, n);
            final Map<String, float[]> values = new java.util.LinkedHashMap<>();
            values.put("out.masked_sum", new float[] {(float) MaskedStats.sum(raw, x)});
            values.put("out.masked_sum_axis1", F32Term.narrow(MaskedStats.rowSums(raw, x)));
            values.put("out.masked_mean", new float[] {(float) MaskedStats.mean(raw, x)});
            values.put("out.masked_mean_axis1", F32Term.narrow(MaskedStats.rowMeans(raw, x)));
            values.put("out.masked_var_unbiased", new float[] {(float) MaskedStats.var(zeroed, z, true)});
            values.put("out.masked_var_biased", new float[] {(float) MaskedStats.var(zeroed, z, false)});
            values.put("out.masked_var_unbiased_of_x", new float[] {(float) MaskedStats.var(raw, x, true)});
            values.put("out.masked_whiten", whiten.toFloatArray());
            values.put("out.masked_whiten_noshift", noShift.toFloatArray());
            values.put("out.clip_by_value", clip.toFloatArray());
            final String[] inputs = {"in.values", "in.values_zeroed", "in.mask", "in.clip_lo", "in.clip_hi"};
            final double[][] f32 = new double[inputs.length][];
            final double[][] stored = new double[inputs.length][];
            boolean f64 = false;
            for (int k = 0; k < inputs.length; k++) {
                f32[k] = F32Term.widen(golden.float32(inputs[k]).toFloatArray());
                stored[k] = golden.expected(inputs[k]);
                f64 |= golden.file().info(inputs[k]).dtype() == io.rlvec.cli.io.Dtype.F64;
            }
            final Map<String, CaseOutputs.Referee> exact = exact(f32, bt);
            if (f64) {
                final Map<String, CaseOutputs.Referee> onStored = exact(stored, bt);
                exact.replaceAll((k, r) -> r.storedInDouble(onStored.get(k)));
            }
            final CaseOutputs out = new CaseOutputs(new CaseFacts(n, false));
            values.forEach((name, v) -> out.refereed(name, v, exact.get(name), tol, how));
            return out;
        }
    }

    /**
     * verl's masked statistics in double from the given inputs (values, values_zeroed, mask, clip_lo, clip_hi), with
     * the library's bound (double sums rounded to float32 once: half an ulp plus the double sums' error; masked_whiten
     * through {@link AdvantageBounds#whiten}, plus the mean added back for the no-shift form) and an estimate for a
     * float32 evaluation ({@code 16 (n + 4) u} of the sums' magnitudes).
     */
    static Map<String, CaseOutputs.Referee> exact(final double[][] in, final int[] bt) {
        final double[] x = in[0];
        final double[] z = in[1];
        final double[] m = in[2];
        final int b = bt[0];
        final int t = bt[1];
        final Map<String, CaseOutputs.Referee> r = new java.util.LinkedHashMap<>();
        double sum = 0;
        double abs = 0;
        double count = 0;
        final double[] rowSum = new double[b];
        final double[] rowAbs = new double[b];
        final double[] rowCount = new double[b];
        for (int i = 0; i < b; i++) {
            for (int k = i * t; k < (i + 1) * t; k++) {
                if (m[k] != 0) {
                    rowSum[i] += x[k] * m[k];
                    rowAbs[i] += Math.abs(x[k] * m[k]);
                    rowCount[i] += m[k];
                }
            }
            sum += rowSum[i];
            abs += rowAbs[i];
            count += rowCount[i];
        }
        r.put("out.masked_sum", scalar(sum, abs, count));
        r.put("out.masked_mean", scalar(sum / (count + EPS), abs / (count + EPS), count));
        final double[] rowMean = new double[b];
        final double[] rowMeanAbs = new double[b];
        for (int i = 0; i < b; i++) {
            rowMean[i] = rowSum[i] / (rowCount[i] + EPS);
            rowMeanAbs[i] = rowAbs[i] / (rowCount[i] + EPS);
        }
        r.put("out.masked_sum_axis1", vector(rowSum, rowAbs, t));
        r.put("out.masked_mean_axis1", vector(rowMean, rowMeanAbs, t));
        r.put("out.masked_var_unbiased", var(z, m, true));
        r.put("out.masked_var_biased", var(z, m, false));
        r.put("out.masked_var_unbiased_of_x", var(x, m, true));
        final AdvantageBounds.Bounded whitened = AdvantageBounds.whiten(new AdvantageBounds.Bounded(z,
            new double[z.length], new double[z.length]), m, false);
        r.put("out.masked_whiten", whitened.referee());
        double zSum = 0;
        for (int k = 0; k < z.length; k++) {
            zSum += m[k] != 0 ? z[k] * m[k] : 0;
        }
        final double zMean = zSum / (count + EPS);
        final double[] ns = new double[z.length];
        final double[] nsE = new double[z.length];
        final double[] nsV = new double[z.length];
        for (int k = 0; k < z.length; k++) {
            ns[k] = whitened.x()[k] + zMean;
            // The mean rounded to float32 and added in float32.
            nsE[k] = whitened.engine()[k] + U * Math.abs(zMean) + U * Math.abs(ns[k]) + 0x1p-48 * abs / count;
            nsV[k] = whitened.verl()[k] + 16 * (count + 4) * U * abs / count;
        }
        r.put("out.masked_whiten_noshift", new CaseOutputs.Referee(ns, nsV, nsE));
        // clip_by_value: max(min(x, hi), lo), an exact selection (NaN propagates: not judged here, the values are
        // finite on verl's side wherever this referee is used).
        final double[] clip = new double[z.length];
        for (int k = 0; k < z.length; k++) {
            clip[k] = Math.max(Math.min(z[k], in[4][k]), in[3][k]);
        }
        final double[] zero = new double[z.length];
        r.put("out.clip_by_value", new CaseOutputs.Referee(clip, zero, zero, true));
        return r;
    }

    private static final double EPS = 1e-8;
    private static final double U = 0x1p-24;

    /** A double sum (or mean) of {@code n} terms of total magnitude {@code abs}, rounded to float32 once. */
    private static CaseOutputs.Referee scalar(final double v, final double abs, final double n) {
        final double engine = U * Math.abs(v) + (n + 4) * 0x1p-52 * abs + F32Term.TINY;
        final double verl = 16 * (n + 4) * U * abs + U * Math.abs(v) + F32Term.TINY;
        return new CaseOutputs.Referee(new double[] {v}, new double[] {verl}, new double[] {engine});
    }

    private static CaseOutputs.Referee vector(final double[] v, final double[] abs, final int n) {
        final double[] e = new double[v.length];
        final double[] b = new double[v.length];
        for (int i = 0; i < v.length; i++) {
            e[i] = U * Math.abs(v[i]) + (n + 4) * 0x1p-52 * abs[i] + F32Term.TINY;
            b[i] = 16 * (n + 4) * U * abs[i] + U * Math.abs(v[i]) + F32Term.TINY;
        }
        return new CaseOutputs.Referee(v, b, e);
    }

    /** verl's masked_var: masked_mean((x - masked_mean(x))^2) [* n / (n - 1)], in double. */
    private static CaseOutputs.Referee var(final double[] x, final double[] m, final boolean unbiased) {
        double n = 0;
        double sum = 0;
        double sq = 0;
        for (int k = 0; k < x.length; k++) {
            if (m[k] != 0) {
                n += m[k];
                sum += x[k] * m[k];
                sq += x[k] * x[k];
            }
        }
        final double mean = sum / (n + EPS);
        double c = 0;
        for (int k = 0; k < x.length; k++) {
            if (m[k] != 0) {
                c += (x[k] - mean) * (x[k] - mean) * m[k];
            }
        }
        final double v = c / (n + EPS) * (unbiased ? n / (n - 1) : 1);
        final double scale = sq / Math.max(n - 1, 1) + mean * mean;
        final double engine = U * Math.abs(v) + (n + 8) * 0x1p-50 * scale + F32Term.TINY;
        final double verl = 32 * (n + 4) * U * scale + U * Math.abs(v);
        return new CaseOutputs.Referee(new double[] {v}, new double[] {verl}, new double[] {engine});
    }
}
