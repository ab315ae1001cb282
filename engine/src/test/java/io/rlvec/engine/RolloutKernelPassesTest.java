package io.rlvec.engine;

import static org.assertj.core.api.Assertions.assertThat;

import io.rlvec.Column;
import io.rlvec.ElementType;
import io.rlvec.OffHeapArray;
import io.rlvec.TokenBatch;
import io.rlvec.reference.RolloutCorrection;
import java.util.Random;
import org.junit.jupiter.api.Test;

/**
 * The vector engine's rollout-correction passes against {@link RolloutCorrection#SCALAR}, bit for bit, on ragged
 * batches (rows shorter and longer than a vector, tails) whose values include both zeros, ties, infinities and
 * NaNs of two payloads: the cases where a lane-wise max/min and the scalar fold could disagree. Columns are
 * compared bit for bit; an extremum's NaN is any NaN (the reference's own {@link Math#max} returns a different
 * NaN interpreted and compiled by C2).
 */
class RolloutKernelPassesTest {
    private static final float[] SPECIAL = {0f, -0f, 1f, -1f, 0.5f, 2f, Float.NaN,
        Float.intBitsToFloat(0x7fc00123), Float.POSITIVE_INFINITY, Float.NEGATIVE_INFINITY};

    private static float draw(final Random r, final double special) {
        return r.nextDouble() < special ? SPECIAL[r.nextInt(SPECIAL.length)] : (float) r.nextGaussian();
    }

    @Test
    void everyPassGivesTheScalarBits() {
        final RolloutKernel vector = new RolloutKernel(new AdvantageKernel());
        final RolloutCorrection.Kernels scalar = RolloutCorrection.SCALAR;
        for (int seed = 0; seed < 2000; seed++) {
            final Random r = new Random(seed);
            final int rows = 1 + r.nextInt(6);
            final int[] lengths = new int[rows];
            for (int i = 0; i < rows; i++) {
                // Some rows span several blocks of the row-wise passes (512 tokens), ending on and off the grids.
                lengths[i] = r.nextInt(8) == 0 ? 0
                    : (seed % 7 == 0 ? 500 + r.nextInt(1100) : r.nextInt(r.nextBoolean() ? 20 : 90));
            }
            int n = 0;
            for (final int l : lengths) {
                n += l;
            }
            final double special = seed % 3 == 0 ? 0.0 : 0.3;
            final float[] mask = new float[n];
            final float[] x = new float[n];
            final float[] y = new float[n];
            final float onlyZeros = seed % 5 == 0 ? 1f : 0f;
            for (int t = 0; t < n; t++) {
                final int m = r.nextInt(10);
                mask[t] = m < 6 ? 1f : (m < 9 ? 0f : (m == 9 && r.nextBoolean() ? Float.NaN : 0.5f));
                x[t] = onlyZeros != 0 ? (r.nextBoolean() ? 0f : -0f) : draw(r, special);
                y[t] = onlyZeros != 0 ? (r.nextBoolean() ? 0f : -0f) : draw(r, special);
            }
            final float lo = r.nextBoolean() ? 0.5f : -0f;
            final float hi = r.nextBoolean() ? 2f : 0f;
            final RolloutCorrection.Scratch a = new RolloutCorrection.Scratch();
            final RolloutCorrection.Scratch b = new RolloutCorrection.Scratch();
            try (TokenBatch batch = TokenBatch.packed(lengths).column(Column.RESPONSE_MASK, mask)
                     .column(Column.OLD_LOG_PROB, x).column(Column.ROLLOUT_LOG_PROB, y).build();
                 OffHeapArray xs = OffHeapArray.of(x);
                 OffHeapArray ys = OffHeapArray.of(y);
                 OffHeapArray outA = OffHeapArray.allocate(ElementType.F32, Math.max(n, 1));
                 OffHeapArray outB = OffHeapArray.allocate(ElementType.F32, Math.max(n, 1));
                 OffHeapArray isA = OffHeapArray.allocate(ElementType.F32, Math.max(n, 1));
                 OffHeapArray isB = OffHeapArray.allocate(ElementType.F32, Math.max(n, 1))) {
                a.ensure(n, rows);
                b.ensure(n, rows);
                final String c = "seed " + seed + " lengths " + java.util.Arrays.toString(lengths);
                scalar.validCounts(batch, batch.mask(), a);
                vector.validCounts(batch, batch.mask(), b);
                same(c + " valid", n, a.valid, b.valid);
                assertThat(java.util.Arrays.copyOf(b.count, rows)).as(c + " count")
                    .containsExactly(java.util.Arrays.copyOf(a.count, rows));
                scalar.tokenTerms(batch, xs, ys, a);
                vector.tokenTerms(batch, xs, ys, b);
                same(c + " lrs", n, a.lrs, b.lrs);
                same(c + " rho", n, a.rho, b.rho);
                scalar.kTerms(n, a);
                vector.kTerms(n, b);
                same(c + " k2", n, a.k2, b.k2);
                same(c + " k3", n, a.k3, b.k3);
                sums(c + " lr sums", rows, a.lrSum, b.lrSum);
                sums(c + " kk sums", rows, a.kkSum, b.kkSum);
                sums(c + " rho2 sums", rows, a.rho2Sum, b.rho2Sum);
                sums(c + " old sums", rows, a.oldSum, b.oldSum);
                sums(c + " roll sums", rows, a.rollSum, b.rollSum);
                for (final float sign : new float[] {1f, -1f}) {
                    scalar.clampedSums(batch, ys, sign, lo, hi, a);
                    vector.clampedSums(batch, ys, sign, lo, hi, b);
                    sums(c + " v sums " + sign, rows, a.vSum, b.vSum);
                    sums(c + " c sums " + sign, rows, a.cSum, b.cSum);
                    sums(c + " c2 sums " + sign, rows, a.c2Sum, b.c2Sum);
                }
                for (final boolean icePop : new boolean[] {false, true}) {
                    scalar.isWeights(n, xs, icePop, lo, hi, a);
                    vector.isWeights(n, xs, icePop, lo, hi, b);
                    same(c + " raw", n, a.raw, b.raw);
                    same(c + " w", n, a.w, b.w);
                    scalar.isMetrics(n, ys, xs, hi, lo, a);
                    vector.isMetrics(n, ys, xs, hi, lo, b);
                    results(c + " isMetrics", a, b);
                    assertThat(vector.countOutside(n, xs, lo, hi, b)).as(c + " outside")
                        .isEqualTo(scalar.countOutside(n, xs, lo, hi, a));
                }
                for (final boolean two : new boolean[] {false, true}) {
                    final float sign = two ? -1f : 1f;
                    scalar.keepTest(n, ys, sign, two, lo, hi, a);
                    vector.keepTest(n, ys, sign, two, lo, hi, b);
                    same(c + " keep", n, a.keep, b.keep);
                    results(c + " keepTest " + two, a, b);
                    scalar.fill(n, a.keepAll, 1f);
                    vector.fill(n, b.keepAll, 1f);
                    scalar.rejectRows(batch, a.keep, a.keepAll, a);
                    vector.rejectRows(batch, b.keep, b.keepAll, b);
                    same(c + " keepAll", n, a.keepAll, b.keepAll);
                    assertThat(b.rejected).as(c + " rejected").isEqualTo(a.rejected);
                    assertThat(b.rowsRejected).as(c + " rowsRejected").isEqualTo(a.rowsRejected);
                    scalar.rejectRows(batch, a.keepAll, null, a);
                    vector.rejectRows(batch, b.keepAll, null, b);
                    assertThat(b.rejected).as(c + " rejected all").isEqualTo(a.rejected);
                    assertThat(b.rowsRejected).as(c + " rowsRejected all").isEqualTo(a.rowsRejected);
                }
                final double[] maxA = new double[rows];
                final double[] maxB = new double[rows];
                for (final float sign : new float[] {1f, -1f}) {
                    scalar.validRowMax(batch, xs, sign, maxA);
                    vector.validRowMax(batch, xs, sign, maxB);
                    for (int i = 0; i < rows; i++) {
                        assertThat(Double.doubleToLongBits(maxB[i])).as(c + " row max " + i + " " + sign)
                            .isEqualTo(Double.doubleToLongBits(maxA[i]));
                    }
                }
                for (int i = 0; i < rows; i++) {
                    a.rowFloat[i] = draw(r, 0.5);
                    b.rowFloat[i] = a.rowFloat[i];
                }
                scalar.broadcastRows(batch, a.rowFloat, outA);
                vector.broadcastRows(batch, b.rowFloat, outB);
                same(c + " broadcast", n, outA, outB);
                final float d = r.nextBoolean() ? 1.37f : 0.3f;
                scalar.divide(n, a.w, d);
                vector.divide(n, b.w, d);
                same(c + " divide", n, a.w, b.w);
                scalar.outputs(n, batch.mask(), isA, a.keepAll, outA, a);
                vector.outputs(n, batch.mask(), isB, b.keepAll, outB, b);
                same(c + " isOut", n, isA, isB);
                same(c + " maskOut", n, outA, outB);
                scalar.outputs(n, batch.mask(), null, null, outA, a);
                vector.outputs(n, batch.mask(), null, null, outB, b);
                same(c + " maskOut without rejection", n, outA, outB);
            } finally {
                a.close();
                b.close();
            }
        }
    }

    private static void results(final String what, final RolloutCorrection.Scratch a,
                                final RolloutCorrection.Scratch b) {
        assertThat(b.above).as(what + " above").isEqualTo(a.above);
        assertThat(b.below).as(what + " below").isEqualTo(a.below);
        // The sign of a zero counts; a NaN's payload does not (Math.max's NaN differs between the interpreter and
        // C2's intrinsic, in the reference itself).
        assertThat(Float.floatToIntBits(b.max)).as(what + " max " + a.max + " " + b.max)
            .isEqualTo(Float.floatToIntBits(a.max));
        assertThat(Float.floatToIntBits(b.min)).as(what + " min " + a.min + " " + b.min)
            .isEqualTo(Float.floatToIntBits(a.min));
    }

    private static void sums(final String what, final int rows, final double[] a, final double[] b) {
        for (int i = 0; i < rows; i++) {
            // Bit for bit; any NaN is the NaN.
            assertThat(Double.doubleToLongBits(b[i])).as(what + " row " + i + ": " + a[i] + " " + b[i])
                .isEqualTo(Double.doubleToLongBits(a[i]));
        }
    }

    private static void same(final String what, final int n, final OffHeapArray a, final OffHeapArray b) {
        for (int t = 0; t < n; t++) {
            assertThat(Float.floatToRawIntBits(b.getFloat(t))).as(what + " at " + t)
                .isEqualTo(Float.floatToRawIntBits(a.getFloat(t)));
        }
    }
}
