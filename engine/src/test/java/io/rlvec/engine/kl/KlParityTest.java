package io.rlvec.engine.kl;

import static org.assertj.core.api.Assertions.assertThat;

import java.util.SplittableRandom;
import java.util.stream.IntStream;
import java.util.stream.Stream;

import org.junit.jupiter.api.MethodOrderer;
import org.junit.jupiter.api.Order;
import org.junit.jupiter.api.Tag;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.TestMethodOrder;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.Arguments;
import org.junit.jupiter.params.provider.MethodSource;

import io.rlvec.ElementType;
import io.rlvec.Engine;
import io.rlvec.Engines;
import io.rlvec.KlPenalty;
import io.rlvec.Logits;
import io.rlvec.OffHeapArray;
import io.rlvec.TokenBatch;
import io.rlvec.kl.KlData;
import io.rlvec.reference.ReferenceEngine;

/**
 * Engine vs reference, bit for bit, on every elementwise output of the KL kernels: cold (first calls,
 * interpreted), then after a hot warm-up of more than 2*10^4 calls (C2-compiled Vector API code, style.md P6).
 */
@TestMethodOrder(MethodOrderer.OrderAnnotation.class)
class KlParityTest {
    private static final Engine ENGINE = Engines.preferred();
    private static final Engine REF = new ReferenceEngine();
    private static final int HOT_CALLS = 20_000;

    static Stream<Arguments> penaltyCases() {
        final int[] sizes = {1, 7, 8, 9, 15, 16, 17, 31, 33, 100, 1000, 8192 + 37};
        return Stream.of(KlData.NAMES).flatMap(n -> IntStream.of(sizes).mapToObj(s -> Arguments.of(n, s)));
    }

    static void assertPenaltyParity(final String name, final int size, final long seed, final String phase) {
        final KlPenalty kl = KlPenalty.fromVerl(name);
        try (TokenBatch batch = KlData.adversarial(seed, size);
             OffHeapArray k1 = OffHeapArray.allocate(ElementType.F32, size);
             OffHeapArray g1 = OffHeapArray.allocate(ElementType.F32, size);
             OffHeapArray k2 = OffHeapArray.allocate(ElementType.F32, size);
             OffHeapArray g2 = OffHeapArray.allocate(ElementType.F32, size)) {
            ENGINE.klPenalty(kl, batch, k1, g1);
            REF.klPenalty(kl, batch, k2, g2);
            for (int i = 0; i < size; i++) {
                final int t = i;
                assertThat(KlData.same(k1.getFloat(i), k2.getFloat(i))).as("%s seed %d %s N=%d kld[%d]: %s vs %s",
                    phase, seed, name, size, t, k1.getFloat(i), k2.getFloat(i)).isTrue();
                assertThat(KlData.same(g1.getFloat(i), g2.getFloat(i))).as("%s seed %d %s N=%d grad[%d]: %s vs %s",
                    phase, seed, name, size, t, g1.getFloat(i), g2.getFloat(i)).isTrue();
            }
        }
    }

    @Order(1)
    @ParameterizedTest
    @MethodSource("penaltyCases")
    void penaltyColdParity(final String name, final int size) {
        assertPenaltyParity(name, size, 1000L + size, "cold");
    }

    /** Full-KL cases: vocab sizes straddling lane counts, SLOTS and ROW_BLOCK; strides; bf16 on either side. */
    static Stream<Arguments> fullCases() {
        final int[] vocabs = {1, 3, 7, 8, 9, 15, 16, 17, 31, 33, 100, 511, 512, 513, 1000, 1031};
        return IntStream.of(vocabs).boxed().flatMap(v -> Stream.of(
            Arguments.of(v, 0, ElementType.F32, ElementType.F32, 1.0),
            Arguments.of(v, 5, ElementType.BF16, ElementType.F32, 0.7),
            Arguments.of(v, 1, ElementType.F32, ElementType.BF16, 2.3),
            Arguments.of(v, 0, ElementType.BF16, ElementType.BF16, 1.0)));
    }

    /**
     * Logits over raw bits: magnitudes 2^-6 .. 4 of either sign (so that many terms of the row sums matter and
     * their order would show), zeros of both signs, subnormals, rare outliers.
     */
    static float logit(final SplittableRandom r) {
        final int k = r.nextInt(400);
        if (k < 8) {
            return (k & 1) == 0 ? 0f : -0f;
        }
        if (k < 14) {
            return Float.intBitsToFloat(r.nextInt(1, 1 << 23)) * (r.nextBoolean() ? 1 : -1);
        }
        if (k < 16) {
            return (float) (12 * r.nextGaussian());
        }
        return Float.intBitsToFloat(((127 - 6 + r.nextInt(9)) << 23) | r.nextInt(1 << 23)) * (r.nextBoolean() ? 1 : -1);
    }

    static OffHeapArray logits(final SplittableRandom r, final int rows, final int v, final long stride,
                               final ElementType type, final boolean[] valid) {
        final OffHeapArray a = OffHeapArray.allocate(type, (rows - 1) * stride + v);
        for (int row = 0; row < rows; row++) {
            for (long i = row * stride; i < Math.min(a.length(), (row + 1) * stride); i++) {
                final boolean inRow = i - row * stride < v;
                a.setFloat(i, inRow && valid[row] ? logit(r) : KlData.garbage(r));
            }
        }
        return a;
    }

    static void assertFullParity(final int v, final int pad, final ElementType pt, final ElementType rt,
                                 final double temperature, final long seed, final String phase) {
        final SplittableRandom r = new SplittableRandom(seed);
        final int rows = 4;
        final boolean[] valid = {true, false, true, true};
        final long stride = v + pad;
        try (OffHeapArray z = logits(r, rows, v, stride, pt, valid);
             OffHeapArray zr = logits(r, rows, v, v, rt, valid);
             OffHeapArray mask = OffHeapArray.of(1f, 0f, 1f, Float.NaN);
             OffHeapArray up = OffHeapArray.of(1f, 2f, -0.25f, 3e-3f);
             OffHeapArray k1 = OffHeapArray.allocate(ElementType.F32, rows);
             OffHeapArray k2 = OffHeapArray.allocate(ElementType.F32, rows);
             OffHeapArray g1 = OffHeapArray.allocate(ElementType.F32, z.length());
             OffHeapArray g2 = OffHeapArray.allocate(ElementType.F32, z.length())) {
            final Logits p = Logits.of(z, rows, v, stride);
            final Logits q = Logits.of(zr, rows, v);
            ENGINE.klFull(p, q, temperature, mask, k1, up, g1);
            REF.klFull(p, q, temperature, mask, k2, up, g2);
            final String what = String.format("%s seed %d V=%d pad=%d %s/%s T=%s", phase, seed, v, pad, pt, rt,
                temperature);
            for (int row = 0; row < rows; row++) {
                assertThat(KlData.same(k1.getFloat(row), k2.getFloat(row))).as("%s kld[%d]: %s vs %s", what, row,
                    k1.getFloat(row), k2.getFloat(row)).isTrue();
            }
            for (long i = 0; i < g1.length(); i++) {
                assertThat(KlData.same(g1.getFloat(i), g2.getFloat(i))).as("%s grad[%d]: %s vs %s", what, i,
                    g1.getFloat(i), g2.getFloat(i)).isTrue();
            }
        }
    }

    @Order(2)
    @ParameterizedTest
    @MethodSource("fullCases")
    void fullColdParity(final int v, final int pad, final ElementType pt, final ElementType rt, final double t) {
        assertFullParity(v, pad, pt, rt, t, 31L * v + pad, "cold");
    }

    @Order(3)
    @Test
    void warmUp() {
        final KlPenalty[] kinds = new KlPenalty[KlData.NAMES.length];
        for (int i = 0; i < kinds.length; i++) {
            kinds[i] = KlPenalty.fromVerl(KlData.NAMES[i]);
        }
        final SplittableRandom r = new SplittableRandom(99);
        final boolean[] valid = {true, true};
        try (TokenBatch batch = KlData.adversarial(7, 37);
             OffHeapArray kld = OffHeapArray.allocate(ElementType.F32, 37);
             OffHeapArray grad = OffHeapArray.allocate(ElementType.F32, 37);
             OffHeapArray z = logits(r, 2, 45, 45, ElementType.F32, valid);
             OffHeapArray zb = logits(r, 2, 45, 45, ElementType.BF16, valid);
             OffHeapArray rowKld = OffHeapArray.allocate(ElementType.F32, 2);
             OffHeapArray up = OffHeapArray.of(1f, 1f);
             OffHeapArray g = OffHeapArray.allocate(ElementType.F32, 90)) {
            double sink = 0;
            for (int c = 0; c < HOT_CALLS; c++) {
                ENGINE.klPenalty(kinds[c % kinds.length], batch, kld, (c & 1) == 0 ? grad : null);
                ENGINE.klFull(Logits.of((c & 1) == 0 ? z : zb, 2, 45), Logits.of(z, 2, 45), 0.7, null, rowKld, up, g);
                sink += kld.getFloat(c % 37) + rowKld.getFloat(0);
            }
            assertThat(sink).isNotNull();
        }
    }

    @Order(4)
    @ParameterizedTest
    @MethodSource("penaltyCases")
    void penaltyHotParity(final String name, final int size) {
        assertPenaltyParity(name, size, 1000L + size, "hot");
        assertPenaltyParity(name, size, 5000L + size, "hot");
    }

    @Order(5)
    @ParameterizedTest
    @MethodSource("fullCases")
    void fullHotParity(final int v, final int pad, final ElementType pt, final ElementType rt, final double t) {
        assertFullParity(v, pad, pt, rt, t, 31L * v + pad, "hot");
        assertFullParity(v, pad, pt, rt, t, 77L * v + pad, "hot");
    }

    /**
     * After the warm-up, a call allocates nothing per element (style.md P1/P2): a boxed vector anywhere in a hot
     * loop shows up as megabytes on these sizes. The bound leaves room for the measurement itself. (klFull's
     * check runs first in the JVM: {@link KlFullAllocationTest}.)
     */
    @Order(6)
    @Test
    @Tag("allocation")
    void hotCallsAllocateNothing() {
        final com.sun.management.ThreadMXBean threads =
            (com.sun.management.ThreadMXBean) java.lang.management.ManagementFactory.getThreadMXBean();
        final int n = 16 * 1024;
        try (TokenBatch batch = KlData.adversarial(3, n);
             OffHeapArray kld = OffHeapArray.allocate(ElementType.F32, n);
             OffHeapArray grad = OffHeapArray.allocate(ElementType.F32, n)) {
            for (final String name : KlData.NAMES) {
                final KlPenalty kl = KlPenalty.fromVerl(name);
                final long bytes = leastAllocated(threads, () -> ENGINE.klPenalty(kl, batch, kld, grad));
                assertThat(bytes).as("%s klPenalty %s on %d tokens allocated %d bytes", ENGINE.name(), name, n, bytes)
                    .isLessThan(1024);
            }
        }
    }

    /**
     * The fewest bytes one call allocated over up to 20 rounds of 200 calls: code still running in C1 (compile
     * queue lag on a busy machine) allocates, C2 code must not; a boxed vector in C2 code never reaches 0.
     */
    static long leastAllocated(final com.sun.management.ThreadMXBean threads, final Runnable call) {
        return io.rlvec.engine.Allocations.leastAllocated(threads, call, 1024);
    }
}
