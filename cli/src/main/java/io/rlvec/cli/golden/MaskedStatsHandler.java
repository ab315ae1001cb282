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
 * library's (the same for every engine); they are labelled as harness outputs. Tolerance: relative 1e-5 with an
 * absolute floor of 1e-6 (the whitened values near the mean).
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
            return new CaseOutputs(new CaseFacts(n, false))
                .harness("out.masked_sum", new float[] {(float) MaskedStats.sum(raw, x)}, tol, how)
                .harness("out.masked_sum_axis1", floats(MaskedStats.rowSums(raw, x)), tol, how)
                .harness("out.masked_mean", new float[] {(float) MaskedStats.mean(raw, x)}, tol, how)
                .harness("out.masked_mean_axis1", floats(MaskedStats.rowMeans(raw, x)), tol, how)
                .harness("out.masked_var_unbiased", new float[] {(float) MaskedStats.var(zeroed, z, true)}, tol, how)
                .harness("out.masked_var_biased", new float[] {(float) MaskedStats.var(zeroed, z, false)}, tol, how)
                .harness("out.masked_var_unbiased_of_x", new float[] {(float) MaskedStats.var(raw, x, true)}, tol, how)
                .harness("out.masked_whiten", whiten.toFloatArray(), tol, how)
                .harness("out.masked_whiten_noshift", noShift.toFloatArray(), tol, how)
                .harness("out.clip_by_value", clip.toFloatArray(), tol, how);
        }
    }

    private static float[] floats(final double[] d) {
        final float[] f = new float[d.length];
        for (int i = 0; i < d.length; i++) {
            f[i] = (float) d[i];
        }
        return f;
    }
}
