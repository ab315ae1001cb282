package io.rlvec.kl;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import java.util.SplittableRandom;
import java.util.stream.Stream;

import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.Arguments;
import org.junit.jupiter.params.provider.MethodSource;

import io.rlvec.ElementType;
import io.rlvec.Engine;
import io.rlvec.Logits;
import io.rlvec.OffHeapArray;

/**
 * The behaviour of {@link Engine#klFull} on every engine: value and gradient against a double-precision model
 * (gradient checked by central finite differences of that model), masked rows never read, padding between rows
 * untouched, bf16 inputs, in-place gradients, validation.
 */
public abstract class KlFullContract {

    /** @return the engine under test. */
    protected abstract Engine engine();

    static Stream<Arguments> shapes() {
        return Stream.of(
            Arguments.of(1, 1.0, ElementType.F32, 11L),
            Arguments.of(5, 0.7, ElementType.F32, 12L),
            Arguments.of(37, 1.0, ElementType.F32, 13L),
            Arguments.of(37, 2.3, ElementType.BF16, 14L),
            Arguments.of(530, 0.7, ElementType.F32, 15L),
            Arguments.of(1031, 1.0, ElementType.BF16, 16L),
            Arguments.of(1031, 0.6, ElementType.F32, 17L));
    }

    /** Double-precision log-softmax of row values / t. */
    static double[] logSoftmax(final double[] x, final double t) {
        double m = Double.NEGATIVE_INFINITY;
        for (final double v : x) {
            m = Math.max(m, v / t);
        }
        double s = 0;
        for (final double v : x) {
            s += Math.exp(v / t - m);
        }
        final double lse = m + Math.log(s);
        final double[] out = new double[x.length];
        for (int i = 0; i < x.length; i++) {
            out[i] = x[i] / t - lse;
        }
        return out;
    }

    /** KL(softmax(z/t) || softmax(zr/t)) in double. */
    static double modelKl(final double[] z, final double[] zr, final double t) {
        final double[] lp = logSoftmax(z, t);
        final double[] lq = logSoftmax(zr, t);
        double kl = 0;
        for (int i = 0; i < z.length; i++) {
            kl += Math.exp(lp[i]) * (lp[i] - lq[i]);
        }
        return kl;
    }

    /** A row of logits ~ N(0, 3) with a few large ones, as float (or bf16-rounded) values. */
    static float[] row(final SplittableRandom r, final int v, final ElementType type) {
        final float[] x = new float[v];
        for (int i = 0; i < v; i++) {
            x[i] = (float) (3 * r.nextGaussian() + (r.nextInt(50) == 0 ? 8 : 0));
            if (type == ElementType.BF16) {
                x[i] = io.rlvec.Bf16.toFloat(io.rlvec.Bf16.fromFloat(x[i]));
            }
        }
        return x;
    }

    static OffHeapArray store(final float[][] rows, final long stride, final ElementType type, final float pad) {
        final OffHeapArray a = OffHeapArray.allocate(type, (rows.length - 1) * stride + rows[0].length);
        for (long i = 0; i < a.length(); i++) {
            a.setFloat(i, pad);
        }
        for (int r = 0; r < rows.length; r++) {
            for (int i = 0; i < rows[r].length; i++) {
                a.setFloat(r * stride + i, rows[r][i]);
            }
        }
        return a;
    }

    static double[] toDouble(final float[] f) {
        final double[] d = new double[f.length];
        for (int i = 0; i < f.length; i++) {
            d[i] = f[i];
        }
        return d;
    }

    /**
     * Rows: 0 valid, 1 masked (NaN everywhere), 2 valid with a reference close to the policy. Stride = vocab + 3
     * with NaN padding. The gradient row of upstream u must equal u * d KL / d z by central differences of the
     * double model.
     */
    @ParameterizedTest
    @MethodSource("shapes")
    void valueAndGradientMatchTheModel(final int v, final double t, final ElementType type, final long seed) {
        final SplittableRandom r = new SplittableRandom(seed);
        final float[][] z = {row(r, v, type), new float[v], row(r, v, type)};
        final float[][] zr = {row(r, v, type), new float[v], z[2].clone()};
        for (int i = 0; i < v; i++) {
            z[1][i] = Float.NaN;
            zr[1][i] = Float.NaN;
            zr[2][i] = zr[2][i] + (float) (0.2 * r.nextGaussian());
            if (type == ElementType.BF16) {
                zr[2][i] = io.rlvec.Bf16.toFloat(io.rlvec.Bf16.fromFloat(zr[2][i]));
            }
        }
        final long stride = v + 3L;
        final float[] up = {0.75f, 3f, -1.5f};
        try (OffHeapArray zd = store(z, stride, type, Float.NaN);
             OffHeapArray zrd = store(zr, v, type, Float.NaN);
             OffHeapArray mask = OffHeapArray.of(1f, 0f, 1f);
             OffHeapArray kld = OffHeapArray.allocate(ElementType.F32, 3);
             OffHeapArray upstream = OffHeapArray.of(up);
             OffHeapArray grad = OffHeapArray.allocate(ElementType.F32, zd.length())) {
            grad.fill(123f);
            final Logits policy = Logits.of(zd, 3, v, stride);
            final Logits reference = Logits.of(zrd, 3, v);
            engine().klFull(policy, reference, t, mask, kld, upstream, grad);
            assertThat(Float.floatToRawIntBits(kld.getFloat(1))).as("seed %d masked kld", seed).isZero();
            for (int i = 0; i < v; i++) {
                assertThat(Float.floatToRawIntBits(grad.getFloat(stride + i))).as("seed %d masked grad %d", seed, i)
                    .isZero();
            }
            for (int row = 0; row < 3; row += 2) {
                final double[] zz = toDouble(z[row]);
                final double[] rr = toDouble(zr[row]);
                final double kl = modelKl(zz, rr, t);
                final double got = kld.getFloat(row);
                assertThat(Math.abs(got - kl)).as("seed %d row %d V=%d kl %s vs model %s", seed, row, v, got, kl)
                    .isLessThanOrEqualTo(2e-6 + 1e-5 * kl);
                final double h = 1e-4;
                final int step = Math.max(1, v / 40);
                for (int i = 0; i < v; i += step) {
                    final double keep = zz[i];
                    zz[i] = keep + h;
                    final double fp = modelKl(zz, rr, t);
                    zz[i] = keep - h;
                    final double fm = modelKl(zz, rr, t);
                    zz[i] = keep;
                    final double fd = up[row] * (fp - fm) / (2 * h);
                    final double g = grad.getFloat(row * stride + i);
                    assertThat(Math.abs(g - fd)).as("seed %d row %d V=%d T=%s %s grad[%d] %s vs finite difference %s",
                        seed, row, v, t, type, i, g, fd).isLessThanOrEqualTo(1e-5 + 1e-4 * Math.abs(fd));
                }
            }
            for (int row = 0; row < 2; row++) {
                for (long i = v; i < stride; i++) {
                    assertThat(grad.getFloat(row * stride + i)).as("seed %d padding after row %d", seed, row)
                        .isEqualTo(123f);
                }
            }
        }
    }

    @Test
    void identicalDistributionsGiveZero() {
        final SplittableRandom r = new SplittableRandom(3);
        final float[][] z = {row(r, 777, ElementType.F32)};
        try (OffHeapArray zd = store(z, 777, ElementType.F32, 0f);
             OffHeapArray zrd = store(z, 777, ElementType.F32, 0f);
             OffHeapArray kld = OffHeapArray.allocate(ElementType.F32, 1);
             OffHeapArray upstream = OffHeapArray.of(1f);
             OffHeapArray grad = OffHeapArray.allocate(ElementType.F32, 777)) {
            engine().klFull(Logits.of(zd, 1, 777), Logits.of(zrd, 1, 777), 0.9, null, kld, upstream, grad);
            assertThat(kld.getFloat(0)).isEqualTo(0f);
            for (int i = 0; i < 777; i++) {
                assertThat(grad.getFloat(i)).as("grad[%d]", i).isEqualTo(0f);
            }
        }
    }

    @Test
    void inPlaceEqualsSeparateBuffer() {
        final SplittableRandom r = new SplittableRandom(4);
        final float[][] z = {row(r, 201, ElementType.F32), row(r, 201, ElementType.F32)};
        final float[][] zr = {row(r, 201, ElementType.F32), row(r, 201, ElementType.F32)};
        try (OffHeapArray zd = store(z, 201, ElementType.F32, 0f);
             OffHeapArray zrd = store(zr, 201, ElementType.F32, 0f);
             OffHeapArray kld = OffHeapArray.allocate(ElementType.F32, 2);
             OffHeapArray kld2 = OffHeapArray.allocate(ElementType.F32, 2);
             OffHeapArray upstream = OffHeapArray.of(1f, 0.5f);
             OffHeapArray grad = OffHeapArray.allocate(ElementType.F32, 402)) {
            final Logits p = Logits.of(zd, 2, 201);
            final Logits q = Logits.of(zrd, 2, 201);
            engine().klFull(p, q, 1.0, null, kld, upstream, grad);
            engine().klFull(p, q, 1.0, null, kld2, upstream, zd);
            assertThat(kld2.toFloatArray()).containsExactly(kld.toFloatArray());
            assertThat(zd.toFloatArray()).containsExactly(grad.toFloatArray());
        }
    }

    @Test
    void forwardOnlyMatchesForwardWithGradient() {
        final SplittableRandom r = new SplittableRandom(5);
        final float[][] z = {row(r, 64, ElementType.F32)};
        final float[][] zr = {row(r, 64, ElementType.F32)};
        try (OffHeapArray zd = store(z, 64, ElementType.F32, 0f);
             OffHeapArray zrd = store(zr, 64, ElementType.F32, 0f);
             OffHeapArray a = OffHeapArray.allocate(ElementType.F32, 1);
             OffHeapArray b = OffHeapArray.allocate(ElementType.F32, 1);
             OffHeapArray up = OffHeapArray.of(1f);
             OffHeapArray grad = OffHeapArray.allocate(ElementType.F32, 64)) {
            engine().klFull(Logits.of(zd, 1, 64), Logits.of(zrd, 1, 64), 1.0, null, a, null, null);
            engine().klFull(Logits.of(zd, 1, 64), Logits.of(zrd, 1, 64), 1.0, null, b, up, grad);
            assertThat(a.getFloat(0)).isEqualTo(b.getFloat(0)).isPositive();
        }
    }

    @Test
    void validation() {
        try (OffHeapArray z = OffHeapArray.allocate(ElementType.F32, 40);
             OffHeapArray zr = OffHeapArray.allocate(ElementType.F32, 40);
             OffHeapArray zb = OffHeapArray.allocate(ElementType.BF16, 40);
             OffHeapArray kld = OffHeapArray.allocate(ElementType.F32, 4);
             OffHeapArray up = OffHeapArray.allocate(ElementType.F32, 4);
             OffHeapArray shortKld = OffHeapArray.allocate(ElementType.F32, 3);
             OffHeapArray shortGrad = OffHeapArray.allocate(ElementType.F32, 39)) {
            final Engine e = engine();
            final Logits p = Logits.of(z, 4, 10);
            final Logits q = Logits.of(zr, 4, 10);
            assertThatThrownBy(() -> e.klFull(p, Logits.of(zr, 2, 10), 1, null, kld, null, null))
                .isInstanceOf(IllegalArgumentException.class).hasMessageContaining("shape");
            assertThatThrownBy(() -> e.klFull(p, q, 0, null, kld, null, null))
                .isInstanceOf(IllegalArgumentException.class).hasMessageContaining("temperature");
            assertThatThrownBy(() -> e.klFull(p, q, Double.NaN, null, kld, null, null))
                .isInstanceOf(IllegalArgumentException.class).hasMessageContaining("temperature");
            assertThatThrownBy(() -> e.klFull(p, q, 1, null, kld, up, null))
                .isInstanceOf(IllegalArgumentException.class).hasMessageContaining("both");
            assertThatThrownBy(() -> e.klFull(p, q, 1, null, kld, up, shortGrad))
                .isInstanceOf(IllegalArgumentException.class).hasMessageContaining("gradLogits")
                .hasMessageContaining("40");
            assertThatThrownBy(() -> e.klFull(p, q, 1, null, kld, up, zr))
                .isInstanceOf(IllegalArgumentException.class).hasMessageContaining("reference");
            assertThatThrownBy(() -> e.klFull(p, q, 1, null, kld, up, zb))
                .isInstanceOf(IllegalArgumentException.class).hasMessageContaining("F32");
            assertThatThrownBy(() -> e.klFull(Logits.of(zb, 4, 10), q, 1, null, kld, up, zb))
                .isInstanceOf(IllegalArgumentException.class).hasMessageContaining("F32");
            assertThatThrownBy(() -> e.klFull(p, q, 1, null, shortKld, null, null))
                .isInstanceOf(IllegalArgumentException.class).hasMessageContaining("kldOut");
            assertThatThrownBy(() -> e.klFull(p, q, 1, null, null, null, null))
                .isInstanceOf(IllegalArgumentException.class).hasMessageContaining("kldOut");
            assertThatThrownBy(() -> Logits.of(z, 5, 10)).isInstanceOf(IllegalArgumentException.class)
                .hasMessageContaining("= 50");
            assertThatThrownBy(() -> Logits.of(z, 2, 10, 9)).isInstanceOf(IllegalArgumentException.class)
                .hasMessageContaining("rowStride");
            assertThatThrownBy(() -> Logits.of(OffHeapArray.allocate(ElementType.I32, 4), 1, 4))
                .isInstanceOf(IllegalArgumentException.class).hasMessageContaining("F32 or BF16");
            assertThatThrownBy(() -> Logits.of(z, 1, 0)).isInstanceOf(IllegalArgumentException.class)
                .hasMessageContaining("vocab");
        }
    }
}
