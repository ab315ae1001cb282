package io.rlvec.vocab;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assertions.fail;

import java.util.ArrayList;
import java.util.List;
import java.util.stream.Stream;

import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.Arguments;
import org.junit.jupiter.params.provider.MethodSource;

import io.rlvec.ElementType;
import io.rlvec.Engine;
import io.rlvec.Logits;
import io.rlvec.OffHeapArray;
import io.rlvec.SoftmaxStats;
import io.rlvec.vocab.VocabCase.Fill;

/**
 * Behaviour of {@link Engine#logProbs} and {@link Engine#logProbsBackward}, written once against the interface and
 * run on every implementation: accuracy against a double-precision evaluation, finite differences, edge
 * semantics, masks, strides, in-place gradients, bf16, validation. Every message names the case's seed.
 */
public abstract class VocabContractTest {

    /** @return the engine under test (a fresh or shared instance). */
    protected abstract Engine engine();

    /** Seeded cases over vocabulary sizes straddling lane multiples, fills, temperatures, types, masks, strides. */
    public static Stream<VocabCase.Spec> cases() {
        final List<VocabCase.Spec> out = new ArrayList<>();
        final int[] vocabs = {1, 2, 7, 8, 9, 15, 16, 17, 31, 33, 64, 100, 1000, 4099};
        // 1 and 0.5 are powers of two (engines may multiply by the exact reciprocal there)
        final double[] temps = {1.0, 0.6, 0.7, 1.3, 0.5};
        final Fill[] fills = Fill.values();
        long seed = 0x5EED_0001L;
        int i = 0;
        for (final int v : vocabs) {
            for (final Fill f : fills) {
                final int k = i++;
                out.add(VocabCase.spec().seed(seed++).vocab(v).rows(v > 1000 ? 3 : 9).fill(f)
                    .temperature(temps[k % temps.length])
                    .type(k % 3 == 2 ? ElementType.BF16 : ElementType.F32)
                    .masked(k % 2 == 1)
                    .pad(k % 4 == 3 ? 5 : 0)
                    .entropyGrad(k % 7 != 6));
            }
        }
        out.add(VocabCase.spec().seed(seed++).vocab(32000).rows(2).fill(Fill.NORMAL).temperature(0.7));
        out.add(VocabCase.spec().seed(seed++).vocab(32000).rows(2).fill(Fill.PEAKED).type(ElementType.BF16)
            .masked(true).rows(4));
        out.add(VocabCase.spec().seed(seed).vocab(32003).rows(2).fill(Fill.NEG_INF).temperature(1.3).pad(13));
        return out.stream();
    }

    static Stream<Arguments> caseArgs() {
        return cases().map(Arguments::of);
    }

    // ---------------------------------------------------------------- accuracy

    @ParameterizedTest
    @MethodSource("caseArgs")
    void forwardAgreesWithDoubleOracle(final VocabCase.Spec spec) {
        try (VocabCase c = spec.build()) {
            final VocabCase.Forward f = c.forward(engine());
            for (int r = 0; r < c.rows; r++) {
                final String at = c.describe() + " row " + r;
                if (!c.valid(r)) {
                    assertEquals(0, Float.floatToRawIntBits(f.logProb()[r]), at + ": masked row log-prob must be +0");
                    assertEquals(0, Float.floatToRawIntBits(f.entropy()[r]), at + ": masked row entropy must be +0");
                    continue;
                }
                final VocabOracle.Row o = oracle(c, r, true);
                checkForwardRow(at, f.logProb()[r], f.entropy()[r], o, c.vocab);
            }
        }
    }

    /**
     * The sum of squared probabilities, in every form of the forward (alone; with the entropy and statistics; with
     * kept exps, then the backward from them): the same bits in every form, the other outputs and the gradient the
     * same bits as without it, masked rows +0, rows with a NaN logit NaN, vocabulary 1 exactly 1, and every other
     * row within {@link #sumPiSquaredBound} of the double evaluation.
     */
    @ParameterizedTest
    @MethodSource("caseArgs")
    void sumPiSquaredAgreesWithDoubleOracle(final VocabCase.Spec spec) {
        try (VocabCase c = spec.build()) {
            final VocabCase.Forward f = c.forward(engine());
            final float[] g = c.backwardSaved(engine(), false);
            float[] sq = null;
            for (final VocabCase.SqForm form : VocabCase.SqForm.values()) {
                final VocabCase.ForwardSq q = c.forwardSumPiSquared(engine(), form);
                final String at = c.describe() + " " + form;
                assertSameBits(at + ": log-prob with the sum", f.logProb(), q.logProb());
                if (q.entropy() != null) {
                    assertSameBits(at + ": entropy with the sum", f.entropy(), q.entropy());
                }
                if (q.gradient() != null) {
                    assertSameBits(at + ": gradient after the forward with the sum", g, q.gradient());
                }
                if (sq == null) {
                    sq = q.sumPiSquared();
                } else {
                    assertSameBits(at + ": the sum in every form", sq, q.sumPiSquared());
                }
            }
            for (int r = 0; r < c.rows; r++) {
                final String at = c.describe() + " row " + r;
                if (!c.valid(r)) {
                    assertEquals(0, Float.floatToRawIntBits(sq[r]), at + ": masked row sum of p^2 must be +0");
                    continue;
                }
                final VocabOracle.SumPiSquared o = VocabOracle.sumPiSquared(c.x, Math.toIntExact(r * c.stride),
                    c.vocab, c.temperature);
                if (Double.isNaN(o.value())) {
                    assertTrue(Float.isNaN(sq[r]), at + ": NaN logits must give NaN, got " + sq[r]);
                    continue;
                }
                if (c.vocab == 1) {
                    assertEquals(1f, sq[r], at + ": vocabulary 1");
                }
                assertThat(Math.abs(sq[r] - o.value())).as(at + ": sum of p^2 " + sq[r] + " vs double " + o.value())
                    .isLessThanOrEqualTo(sumPiSquaredBound(o, c.vocab));
            }
        }
    }

    /**
     * Error budget of the sum of squared probabilities {@code Q / S^2} against double (u = 2^-24): each e_j carries
     * the canonical exp's error (at most 1 ulp from the rounded exp, so 1.5 ulp, 3u, from the true one) and the
     * float rounding of {@code d_j = z_j - m} (relative {@code u |d_j|} on e_j); a square doubles both and rounds
     * once more (u); the float partials of four terms add at most 3u; the maximum's exact 1 stays out of them, so
     * these errors are relative to the non-maximal parts {@code S - 1} and {@code Q - 1}. Then the double sums (at
     * most vocab additions of non-negative terms, 2^-53 each), the flush of e_j below 2^-126 and of e_j^2 below
     * float's range (absolute, 2^-126 and 2^-149 per term), {@code Q / (S * S)} in double and the final float
     * rounding (u). To first order the relative error is {@code relQ + 2 relS}; 1% covers the second order.
     */
    static double sumPiSquaredBound(final VocabOracle.SumPiSquared o, final int vocab) {
        final double u = 0x1p-24;
        final double exp = 3 * u;
        final double sums = vocab * 0x1p-53;
        final double relS = ((exp + 3 * u) * (o.s() - 1) + u * o.sd() + vocab * 0x1p-126) / o.s() + sums;
        final double relQ = ((2 * exp + 4 * u) * (o.q() - 1) + 2 * u * o.qd() + vocab * 0x1p-149) / o.q() + sums;
        return (1.01 * (relQ + 2 * relS) + u + 0x1p-51) * o.value();
    }

    static void checkForwardRow(final String at, final float lp, final float h, final VocabOracle.Row o,
                                final int vocab) {
        if (Double.isNaN(o.logProb())) {
            assertTrue(Float.isNaN(lp) && Float.isNaN(h), at + ": NaN logits must give NaN, got " + lp + ", " + h);
            return;
        }
        if (o.logProb() == Double.NEGATIVE_INFINITY) {
            assertEquals(Float.NEGATIVE_INFINITY, lp, at + ": a -inf label logit has log-prob -inf");
        } else {
            assertThat(lp).as(at + ": log-prob <= 0").isLessThanOrEqualTo(0f);
            assertThat(Math.abs(lp - o.logProb())).as(at + ": log-prob " + lp + " vs double " + o.logProb())
                .isLessThanOrEqualTo(tolerance(o.logProb(), o, vocab));
        }
        assertThat(h).as(at + ": entropy >= 0").isGreaterThanOrEqualTo(0f);
        assertThat(Math.abs(h - o.entropy())).as(at + ": entropy " + h + " vs double " + o.entropy())
            .isLessThanOrEqualTo(tolerance(o.entropy(), o, vocab));
    }

    /**
     * Error budget of a row result v against double: the float result's own rounding (2 ulp); the canonical exp's
     * few ulp on each e_j and the float rounding of {@code d_j = z_j - m} (relative |d_j| 2^-24 on e_j), which
     * reach v relatively (small entropies are sums of such terms, |d_j| about |ln v|) and through log S (weighted by
     * the non-maximal mass 1 - 1/S, and by |mu| for the rounding of d); the float partials of four terms (at most
     * 3 * 2^-24 relative to S - K, the non-maximal part, and to W: inside the same two terms); the double sums' own
     * rounding, absolute (S = 1 + tiny loses what lies below 2^-53 S); and the flush of exp below 2^-126 (absolute,
     * negligible).
     */
    static double tolerance(final double v, final VocabOracle.Row o, final int vocab) {
        final double spread = -Math.expm1(-o.logS());
        final double av = Math.abs(v);
        final double rel = av == 0 ? 0 : (4e-7 + 6e-8 * Math.abs(Math.log(av))) * av;
        return 2 * Math.ulp((float) v) + rel + 6e-7 * spread + 2.4e-7 * Math.abs(o.mu())
            + 1.2e-16 * vocab * Math.exp(o.logS()) + 1e-35;
    }

    @ParameterizedTest
    @MethodSource("caseArgs")
    void gradientAgreesWithDoubleOracle(final VocabCase.Spec spec) {
        try (VocabCase c = spec.build()) {
            final float[] g = c.backward(engine());
            for (int r = 0; r < c.rows; r++) {
                final int base = Math.toIntExact(r * c.stride);
                final String at = c.describe() + " row " + r;
                if (!c.valid(r)) {
                    for (int j = 0; j < c.vocab; j++) {
                        assertEquals(0, Float.floatToRawIntBits(g[base + j]), at + " j " + j + ": masked row gradient must be +0");
                    }
                    continue;
                }
                final VocabOracle.Row o = oracle(c, r, true);
                final double gl = c.gradLogProb[r];
                final double ge = c.gradEntropy == null ? 0 : c.gradEntropy[r];
                for (int j = 0; j < c.vocab; j++) {
                    final double want = o.grad()[j];
                    if (Double.isNaN(want)) {
                        assertTrue(Float.isNaN(g[base + j]), at + " j " + j + ": NaN row must give NaN gradients");
                        continue;
                    }
                    final double tol = gradTolerance(o, j, gl, ge, c.temperature);
                    assertThat(Math.abs(g[base + j] - want)).as(at + " j " + j + ": gradient " + g[base + j]
                        + " vs double " + want).isLessThanOrEqualTo(tol);
                }
            }
        }
    }

    /**
     * Error budget of gradient j against double: p_j carries the exp's few ulp plus |d_j| 2^-24 from rounding d_j,
     * scaled by the size of the bracket it multiplies; plus 4 ulp of the result (the label's gl / t and final
     * roundings) and the exp's flush below 2^-126.
     */
    static double gradTolerance(final VocabOracle.Row o, final int j, final double gl, final double ge,
                                final double t) {
        final double want = o.grad()[j];
        final double logP = o.logP()[j];
        final double p = Math.exp(logP);
        final double scale = (Math.abs(gl) + Math.abs(ge) * (1 + Math.abs(logP + o.entropy()))) / t;
        return (p == 0 ? 0 : p * scale * (1.5e-6 + 1.2e-7 * Math.abs(logP))) + 4 * Math.ulp((float) want) + 1e-35;
    }

    /** The double oracle's analytic gradient equals its finite differences (checks the formula itself). */
    @ParameterizedTest
    @MethodSource("smallCases")
    void oracleGradientMatchesFiniteDifferences(final VocabCase.Spec spec) {
        try (VocabCase c = spec.build()) {
            for (int r = 0; r < c.rows; r++) {
                if (!c.valid(r)) {
                    continue;
                }
                final int base = Math.toIntExact(r * c.stride);
                final double gl = c.gradLogProb[r];
                final double ge = c.gradEntropy == null ? 0 : c.gradEntropy[r];
                final VocabOracle.Row o = VocabOracle.row(c.x, base, c.vocab, c.labels[r], c.temperature, gl, ge, false);
                for (int j = 0; j < c.vocab; j++) {
                    final double fd = VocabOracle.finiteDifference(c.x, base, c.vocab, c.labels[r], c.temperature, gl,
                        ge, j, 1e-5);
                    assertThat(Math.abs(fd - o.grad()[j])).as(c.describe() + " row " + r + " j " + j + ": fd " + fd
                        + " vs analytic " + o.grad()[j]).isLessThanOrEqualTo(1e-7 * (1 + Math.abs(fd)));
                }
            }
        }
    }

    /** The engine's gradient equals finite differences of the double objective (small, smooth cases). */
    @ParameterizedTest
    @MethodSource("smallCases")
    void gradientMatchesFiniteDifferences(final VocabCase.Spec spec) {
        try (VocabCase c = spec.build()) {
            final float[] g = c.backward(engine());
            for (int r = 0; r < c.rows; r++) {
                if (!c.valid(r)) {
                    continue;
                }
                final int base = Math.toIntExact(r * c.stride);
                final double gl = c.gradLogProb[r];
                final double ge = c.gradEntropy == null ? 0 : c.gradEntropy[r];
                for (int j = 0; j < c.vocab; j++) {
                    final double fd = VocabOracle.finiteDifference(c.x, base, c.vocab, c.labels[r], c.temperature, gl,
                        ge, j, 1e-5);
                    // float32 logits/T and exp: ~1e-6 relative on the gradient's parts
                    assertThat(Math.abs(fd - g[base + j])).as(c.describe() + " row " + r + " j " + j + ": fd " + fd
                        + " vs engine " + g[base + j]).isLessThanOrEqualTo(2e-5 * (1 + Math.abs(fd)));
                }
            }
        }
    }

    static Stream<Arguments> smallCases() {
        final List<Arguments> out = new ArrayList<>();
        long seed = 0xFD_0001L;
        for (final int v : new int[] {1, 2, 3, 7, 9, 17}) {
            for (final double t : new double[] {1.0, 0.6, 1.3}) {
                out.add(Arguments.of(VocabCase.spec().seed(seed++).vocab(v).rows(3).temperature(t).fill(Fill.NORMAL)));
                out.add(Arguments.of(VocabCase.spec().seed(seed++).vocab(v).rows(2).temperature(t).fill(Fill.PEAKED)
                    .type(ElementType.BF16)));
            }
        }
        return out.stream();
    }

    // ---------------------------------------------------------------- on-policy, large vocabulary

    @ParameterizedTest
    @MethodSource("largeCases")
    void onPolicyLogProbAtLargeVocabulary(final VocabCase.Spec spec) {
        try (VocabCase c = spec.build()) {
            final VocabCase.Forward f = c.forward(engine());
            for (int r = 0; r < c.rows; r++) {
                final VocabOracle.Row o = oracle(c, r, true);
                final String at = c.describe() + " row " + r;
                assertThat(f.logProb()[r]).as(at).isLessThanOrEqualTo(0f);
                checkForwardRow(at, f.logProb()[r], f.entropy()[r], o, c.vocab);
            }
        }
    }

    static Stream<Arguments> largeCases() {
        return Stream.of(
            Arguments.of(VocabCase.spec().seed(262_144).vocab(262_144).rows(1).fill(Fill.PEAKED).onPolicy(true)),
            Arguments.of(VocabCase.spec().seed(262_145).vocab(262_144).rows(1).fill(Fill.NORMAL).onPolicy(true)
                .temperature(0.6)),
            Arguments.of(VocabCase.spec().seed(262_146).vocab(262_147).rows(1).fill(Fill.PEAKED).onPolicy(true)
                .type(ElementType.BF16).temperature(1.3)));
    }

    // ---------------------------------------------------------------- exact edge semantics

    @Test
    void vocabularyOfOneHasLogProbZeroEntropyZeroGradientZero() {
        for (final float v : new float[] {0f, -3.5f, 1e4f, -1e4f, Float.NEGATIVE_INFINITY}) {
            try (OffHeapArray x = OffHeapArray.of(v, v, v); OffHeapArray y = OffHeapArray.ofInts(0, 0, 0);
                 OffHeapArray lp = OffHeapArray.allocate(ElementType.F32, 3);
                 OffHeapArray h = OffHeapArray.allocate(ElementType.F32, 3);
                 OffHeapArray gl = OffHeapArray.of(1f, -2f, 0.5f);
                 OffHeapArray ge = OffHeapArray.of(0.3f, 1f, -1f);
                 OffHeapArray g = OffHeapArray.allocate(ElementType.F32, 3)) {
                final Logits l = Logits.of(x, 3, 1);
                engine().logProbs(l, y, 0.7, null, lp, h);
                engine().logProbsBackward(l, y, 0.7, null, gl, ge, g);
                for (int r = 0; r < 3; r++) {
                    if (v == Float.NEGATIVE_INFINITY) {
                        // An all -inf row has no distribution: NaN, as PyTorch.
                        assertTrue(Float.isNaN(lp.getFloat(r)), "all -inf row: log-prob NaN");
                        continue;
                    }
                    assertEquals(0f, lp.getFloat(r), "V=1 log-prob, logit " + v);
                    assertEquals(0f, h.getFloat(r), "V=1 entropy, logit " + v);
                    assertEquals(0f, g.getFloat(r), "V=1 gradient, logit " + v);
                }
            }
        }
    }

    @ParameterizedTest
    @MethodSource("equalCases")
    void equalLogitsGiveUniformDistribution(final int vocab, final float value, final double t) {
        final float[] x = new float[2 * vocab];
        java.util.Arrays.fill(x, value);
        try (OffHeapArray xs = OffHeapArray.of(x); OffHeapArray y = OffHeapArray.ofInts(0, vocab - 1);
             OffHeapArray lp = OffHeapArray.allocate(ElementType.F32, 2);
             OffHeapArray h = OffHeapArray.allocate(ElementType.F32, 2);
             OffHeapArray gl = OffHeapArray.of(1f, 1f);
             OffHeapArray g = OffHeapArray.allocate(ElementType.F32, 2L * vocab)) {
            final Logits l = Logits.of(xs, 2, vocab);
            engine().logProbs(l, y, t, null, lp, h);
            final String at = "V=" + vocab + " value=" + value + " T=" + t;
            // S = vocab exactly (every e_j = 1), so both are log(V) rounded once.
            assertEquals((float) (0.0 - StrictMath.log(vocab)), lp.getFloat(0), at);
            assertEquals((float) StrictMath.log(vocab), h.getFloat(1), at);
            engine().logProbsBackward(l, y, t, null, gl, null, g);
            final float p = (float) (1.0 / vocab);
            final float tf = (float) t;
            final float glt = 1f / tf;
            for (int j = 0; j < vocab; j++) {
                final float k = Math.fma(-0f, 0f - (float) 0.0, -glt);
                final float want = j == 0 ? Math.fma(p, k, glt) : p * k;
                assertEquals(want, g.getFloat(j), at + " j " + j);
            }
        }
    }

    static Stream<Arguments> equalCases() {
        return Stream.of(Arguments.of(1, 2f, 1.0), Arguments.of(7, -3f, 0.7), Arguments.of(8, 0f, 1.0),
            Arguments.of(33, 1e4f, 0.6), Arguments.of(1000, -1e4f, 1.3), Arguments.of(32000, 5f, 1.0));
    }

    @Test
    void negativeInfinityLogitsGetProbabilityZero() {
        // Row 0: three finite logits; row 1: the same with -inf interleaved (masked vocabulary).
        final float n = Float.NEGATIVE_INFINITY;
        final float[] x = {1f, -2f, 0.5f, n, n, n, n, n, n, n, 1f, n, -2f, n, n, 0.5f, n, n, n, n};
        try (OffHeapArray xs = OffHeapArray.of(x); OffHeapArray y = OffHeapArray.ofInts(2, 5);
             OffHeapArray lp = OffHeapArray.allocate(ElementType.F32, 2);
             OffHeapArray h = OffHeapArray.allocate(ElementType.F32, 2);
             OffHeapArray gl = OffHeapArray.of(1.5f, 1.5f);
             OffHeapArray ge = OffHeapArray.of(-0.7f, -0.7f);
             OffHeapArray g = OffHeapArray.allocate(ElementType.F32, 20)) {
            final Logits l = Logits.of(xs, 2, 10);
            engine().logProbs(l, y, 1.0, null, lp, h);
            final double s = Math.exp(0) + Math.exp(-3) + Math.exp(-0.5);
            final double lse = 1 + Math.log(s);
            final double ent = lse - (Math.exp(0) * 1 + Math.exp(-3) * -2 + Math.exp(-0.5) * 0.5) / s;
            for (int r = 0; r < 2; r++) {
                assertEquals(0.5 - lse, lp.getFloat(r), 1e-6, "row " + r + " log-prob");
                assertEquals(ent, h.getFloat(r), 1e-6, "row " + r + " entropy: -inf logits contribute 0");
            }
            engine().logProbsBackward(l, y, 1.0, null, gl, ge, g);
            for (int j = 0; j < 10; j++) {
                if (x[10 + j] == n) {
                    assertEquals(0f, Math.abs(g.getFloat(10 + j)), "-inf logit j " + j + " gets a zero gradient");
                } else {
                    assertTrue(Float.isFinite(g.getFloat(10 + j)), "finite logit j " + j);
                }
            }
            // The finite logits' gradients do not depend on the -inf ones around them.
            assertEquals(g.getFloat(0), g.getFloat(10), 1e-7);
            assertEquals(g.getFloat(1), g.getFloat(12), 1e-7);
            assertEquals(g.getFloat(2), g.getFloat(15), 1e-7);
        }
    }

    @Test
    void nanLogitInValidRowPropagates() {
        final float[] x = {1f, 2f, Float.NaN, 0f, /* row 1 */ 1f, 2f, 3f, 0f};
        try (OffHeapArray xs = OffHeapArray.of(x); OffHeapArray y = OffHeapArray.ofInts(0, 1);
             OffHeapArray lp = OffHeapArray.allocate(ElementType.F32, 2);
             OffHeapArray h = OffHeapArray.allocate(ElementType.F32, 2);
             OffHeapArray gl = OffHeapArray.of(1f, 1f);
             OffHeapArray g = OffHeapArray.allocate(ElementType.F32, 8)) {
            final Logits l = Logits.of(xs, 2, 4);
            engine().logProbs(l, y, 1.0, null, lp, h);
            assertTrue(Float.isNaN(lp.getFloat(0)) && Float.isNaN(h.getFloat(0)), "NaN row");
            assertTrue(Float.isFinite(lp.getFloat(1)) && Float.isFinite(h.getFloat(1)), "clean row unaffected");
            engine().logProbsBackward(l, y, 1.0, null, gl, null, g);
            for (int j = 0; j < 4; j++) {
                assertTrue(Float.isNaN(g.getFloat(j)), "NaN row gradient j " + j);
                assertTrue(Float.isFinite(g.getFloat(4 + j)), "clean row gradient j " + j);
            }
        }
    }

    @Test
    void noRowsIsANoOp() {
        try (OffHeapArray xs = OffHeapArray.allocate(ElementType.F32, 0);
             OffHeapArray y = OffHeapArray.allocate(ElementType.I32, 0);
             OffHeapArray lp = OffHeapArray.allocate(ElementType.F32, 0);
             OffHeapArray g = OffHeapArray.allocate(ElementType.F32, 0)) {
            final Logits l = Logits.of(xs, 0, 5);
            engine().logProbs(l, y, 1.0, null, lp, null);
            engine().logProbsBackward(l, y, 1.0, null, lp, null, g);
        }
    }

    // ---------------------------------------------------------------- structural equivalences (bit-exact)

    /** Masked rows are never read: other garbage there changes nothing, and they get exact zeros. */
    @ParameterizedTest
    @MethodSource("caseArgs")
    void maskedRowsAreNotRead(final VocabCase.Spec spec) {
        final VocabCase.Spec masked = spec.masked(true);
        try (VocabCase a = masked.build(); VocabCase b = masked.build()) {
            // Different garbage in b's masked rows (and in the padding).
            final java.util.SplittableRandom rnd = new java.util.SplittableRandom(a.seed ^ 0xBAD);
            for (int r = 0; r < b.rows; r++) {
                if (!b.valid(r)) {
                    for (int j = 0; j < b.vocab; j++) {
                        b.logitsArray().setFloat(r * b.stride + j, VocabCase.garbage(rnd));
                    }
                    b.labelsArray().setInt(r, Integer.MIN_VALUE + r);
                    b.gradLogProbArray().setFloat(r, Float.NaN);
                }
            }
            assertSameForward(a.describe(), a.forward(engine()), b.forward(engine()));
            assertSameBits(a.describe(), a.backward(engine()), b.backward(engine()));
        }
    }

    /** A row stride beyond the vocabulary gives the same bits as the dense layout and leaves the padding alone. */
    @ParameterizedTest
    @MethodSource("caseArgs")
    void strideGivesDenseResultsAndPaddingIsUntouched(final VocabCase.Spec spec) {
        try (VocabCase padded = spec.pad(11).build(); VocabCase dense = spec.pad(0).build()) {
            final String at = padded.describe();
            assertSameForward(at, dense.forward(engine()), padded.forward(engine()));
            final float[] gp = padded.backward(engine());
            final float[] gd = dense.backward(engine());
            for (int r = 0; r < padded.rows; r++) {
                for (int j = 0; j < padded.stride && r * padded.stride + j < gp.length; j++) {
                    final int i = Math.toIntExact(r * padded.stride + j);
                    if (j < padded.vocab) {
                        assertEquals(Float.floatToIntBits(gd[r * padded.vocab + j]), Float.floatToIntBits(gp[i]),
                            at + " row " + r + " j " + j);
                    } else {
                        assertEquals(Float.floatToRawIntBits(VocabCase.SENTINEL), Float.floatToRawIntBits(gp[i]),
                            at + " padding row " + r + " j " + j + " was written");
                    }
                }
            }
        }
    }

    /** The gradient written over the float32 logits equals the gradient written elsewhere. */
    @ParameterizedTest
    @MethodSource("caseArgs")
    void inPlaceGradientEqualsOutOfPlace(final VocabCase.Spec spec) {
        try (VocabCase c = spec.type(ElementType.F32).build()) {
            assertSameRows(c, c.describe() + " in place", c.backward(engine()), c.backwardInPlace(engine()));
        }
    }

    /**
     * Statistics saved by the forward give the gradient's bits (out of place and in place), and do not change the
     * forward's outputs.
     */
    @ParameterizedTest
    @MethodSource("caseArgs")
    void savedStatisticsGiveTheSameGradient(final VocabCase.Spec spec) {
        try (VocabCase c = spec.build();
             SoftmaxStats st = SoftmaxStats.allocate(c.rows + 3);
             OffHeapArray lp = OffHeapArray.allocate(ElementType.F32, c.rows);
             OffHeapArray h = OffHeapArray.allocate(ElementType.F32, c.rows)) {
            final float[] plain = c.backward(engine());
            assertSameBits(c.describe() + " saved statistics", plain, c.backwardSaved(engine(), false));
            if (c.type == ElementType.F32) {
                assertSameRows(c, c.describe() + " saved statistics, in place", plain, c.backwardSaved(engine(), true));
            }
            engine().logProbs(c.logits(), c.labelsArray(), c.temperature, c.maskArray(), lp, h, st);
            assertSameForward(c.describe() + " forward saving statistics",
                new VocabCase.Forward(lp.toFloatArray(), h.toFloatArray()), c.forward(engine()));
            assertEquals(c.rows, st.rows());
            assertEquals(c.vocab, st.vocab());
            for (int r = 0; r < c.rows; r++) {
                assertEquals(c.valid(r), st.computed(r), c.describe() + " flag of row " + r);
                if (c.valid(r)) {
                    assertTrue(st.reciprocalSum(r) > 0f && st.reciprocalSum(r) <= 1f || Float.isNaN(st.reciprocalSum(r)),
                        c.describe() + " rS of row " + r + " = " + st.reciprocalSum(r) + " (S >= 1)");
                }
            }
        }
    }

    /**
     * A forward that may keep its exps in the gradient buffer gives the same forward outputs, and the backward from
     * it the same gradient bits (padding untouched), out of place and in place.
     */
    @ParameterizedTest
    @MethodSource("caseArgs")
    void keptExpsGiveTheSameGradient(final VocabCase.Spec spec) {
        try (VocabCase c = spec.build();
             SoftmaxStats st = SoftmaxStats.allocate(c.rows);
             OffHeapArray lp = OffHeapArray.allocate(ElementType.F32, c.rows);
             OffHeapArray h = OffHeapArray.allocate(ElementType.F32, c.rows);
             OffHeapArray g = OffHeapArray.allocate(ElementType.F32, c.x.length);
             OffHeapArray other = OffHeapArray.allocate(ElementType.F32, c.x.length)) {
            final float[] plain = c.backward(engine());
            assertSameBits(c.describe() + " kept exps", plain, c.backwardKept(engine(), false));
            if (c.type == ElementType.F32) {
                assertSameRows(c, c.describe() + " kept exps, in place", plain, c.backwardKept(engine(), true));
            }
            engine().logProbs(c.logits(), c.labelsArray(), c.temperature, c.maskArray(), lp, h, st, g);
            assertSameForward(c.describe() + " forward keeping exps",
                new VocabCase.Forward(lp.toFloatArray(), h.toFloatArray()), c.forward(engine()));
            // Another buffer than the one the exps were kept in: the backward evaluates them again.
            other.fill(VocabCase.SENTINEL);
            engine().logProbsBackward(c.logits(), c.labelsArray(), c.temperature, c.maskArray(),
                c.gradLogProbArray(), c.gradEntropyArray(), other, st);
            assertSameBits(c.describe() + " kept elsewhere", plain, other.toFloatArray());
        }
    }

    /**
     * A keep buffer is validated like a gradient buffer and needs statistics; a kept buffer written before the
     * backward (wholly, or one element anywhere in a row) still gives the right gradient: the changed rows' exps
     * are evaluated again.
     */
    @Test
    void rejectsBadKeepBuffersAndSurvivesOverwrittenOnes() {
        try (VocabCase c = VocabCase.spec().seed(79).rows(5).vocab(70).masked(true).build();
             SoftmaxStats st = SoftmaxStats.allocate(5);
             OffHeapArray lp = OffHeapArray.allocate(ElementType.F32, 5);
             OffHeapArray g = OffHeapArray.allocate(ElementType.F32, 350);
             OffHeapArray shortG = OffHeapArray.allocate(ElementType.F32, 349);
             OffHeapArray halves = OffHeapArray.allocate(ElementType.BF16, 350)) {
            final Engine e = engine();
            final Logits l = c.logits();
            final OffHeapArray y = c.labelsArray();
            final OffHeapArray m = c.maskArray();
            assertThatThrownBy(() -> e.logProbs(l, y, 0.7, m, lp, null, null, g))
                .isInstanceOf(IllegalArgumentException.class).hasMessageContaining("needs statsOut");
            assertThatThrownBy(() -> e.logProbs(l, y, 0.7, m, lp, null, st, shortG))
                .isInstanceOf(IllegalArgumentException.class).hasMessageContaining("gradLogits");
            assertThatThrownBy(() -> e.logProbs(l, y, 0.7, m, lp, null, st, halves))
                .isInstanceOf(IllegalArgumentException.class).hasMessageContaining("gradLogits");
            final float[] expected = c.backward(e);
            final java.util.Random random = new java.util.Random(5);
            for (int trial = 0; trial < 40; trial++) {
                e.logProbs(l, y, c.temperature, m, lp, null, st, g);
                if (trial == 0) {
                    g.fill(0f);
                } else if (trial == 1) {
                    // Two elements swapped within a row.
                    final float a = g.getFloat(72);
                    g.setFloat(72, g.getFloat(101));
                    g.setFloat(101, a);
                } else {
                    // One element anywhere (the reproduction: any element but a row's maximum went unnoticed).
                    final int at = random.nextInt(350);
                    g.setFloat(at, trial % 3 == 0 ? 0.5f : Math.nextUp(g.getFloat(at)));
                }
                e.logProbsBackward(l, y, c.temperature, m, c.gradLogProbArray(), c.gradEntropyArray(), g, st);
                for (int i = 0; i < 350; i++) {
                    assertEquals(Float.floatToIntBits(expected[i]), Float.floatToIntBits(g.getFloat(i)),
                        "trial " + trial + ", element " + i);
                }
            }
            // One backward consumes the kept exps: a second one into the same buffer evaluates them again.
            final float[] plain = expected;
            e.logProbs(l, y, c.temperature, m, lp, null, st, g);
            e.logProbsBackward(l, y, c.temperature, m, c.gradLogProbArray(), c.gradEntropyArray(), g, st);
            e.logProbsBackward(l, y, c.temperature, m, c.gradLogProbArray(), c.gradEntropyArray(), g, st);
            for (int i = 0; i < 350; i++) {
                assertEquals(Float.floatToIntBits(plain[i]), Float.floatToIntBits(g.getFloat(i)),
                    "second backward, element " + i);
            }
            // A forward without a keep buffer forgets the last one.
            e.logProbs(l, y, 0.7, m, lp, null, st);
            assertTrue(!st.keeps(g), "statistics still point at a buffer after a forward that kept nothing");
        }
    }

    /**
     * The first {@code vocab} elements of every row are the same bits (an in-place buffer holds the logits in its
     * padding, so only the rows' own elements compare).
     */
    private static void assertSameRows(final VocabCase c, final String what, final float[] expected,
                                       final float[] actual) {
        for (int r = 0; r < c.rows; r++) {
            for (int j = 0; j < c.vocab; j++) {
                final int i = Math.toIntExact(r * c.stride + j);
                assertEquals(Float.floatToIntBits(expected[i]), Float.floatToIntBits(actual[i]),
                    what + ", row " + r + " j " + j);
            }
        }
    }

    /** Statistics of another shape, temperature or mask, or closed or unfilled ones, are rejected up front. */
    @Test
    void rejectsMismatchedSavedStatistics() {
        try (VocabCase c = VocabCase.spec().seed(78).rows(5).vocab(9).masked(true).build();
             SoftmaxStats st = SoftmaxStats.allocate(5);
             SoftmaxStats small = SoftmaxStats.allocate(4);
             SoftmaxStats closed = SoftmaxStats.allocate(5);
             OffHeapArray lp = OffHeapArray.allocate(ElementType.F32, 5);
             OffHeapArray g = OffHeapArray.allocate(ElementType.F32, 45);
             OffHeapArray zeros = OffHeapArray.ofInts(0, 0, 0, 0, 0)) {
            final Engine e = engine();
            final Logits l = c.logits();
            closed.close();
            g.fill(42f);
            assertThatThrownBy(() -> SoftmaxStats.allocate(-1))
                .isInstanceOf(IllegalArgumentException.class).hasMessageContaining("capacity");
            assertThatThrownBy(() -> e.logProbs(l, c.labelsArray(), 1.0, c.maskArray(), lp, null, small))
                .isInstanceOf(IllegalArgumentException.class).hasMessageContaining("statsOut must hold at least");
            assertThatThrownBy(() -> e.logProbs(l, c.labelsArray(), 1.0, c.maskArray(), lp, null, closed))
                .isInstanceOf(IllegalArgumentException.class).hasMessageContaining("statsOut is closed");
            assertThatThrownBy(() -> e.logProbsBackward(l, c.labelsArray(), 1.0, c.maskArray(), c.gradLogProbArray(),
                null, g, st)).isInstanceOf(IllegalArgumentException.class).hasMessageContaining("no forward");
            e.logProbs(l, c.labelsArray(), 0.7, c.maskArray(), lp, null, st);
            assertThatThrownBy(() -> e.logProbsBackward(l, c.labelsArray(), 1.0, c.maskArray(), c.gradLogProbArray(),
                null, g, st)).isInstanceOf(IllegalArgumentException.class).hasMessageContaining("temperature");
            assertThatThrownBy(() -> e.logProbsBackward(Logits.of(c.logitsArray(), 4, 9), c.labelsArray(), 0.7,
                c.maskArray(), c.gradLogProbArray(), null, g, st))
                .isInstanceOf(IllegalArgumentException.class).hasMessageContaining("same logits shape");
            int maskedRow = -1;
            for (int r = 0; r < c.rows && maskedRow < 0; r++) {
                if (!c.valid(r)) {
                    maskedRow = r;
                }
            }
            assertTrue(maskedRow >= 0, "the case masks a row");
            final String want = "stats row " + maskedRow + " was masked";
            // Every row valid here, with in-range labels: the row the forward masked must be refused.
            assertThatThrownBy(() -> e.logProbsBackward(l, zeros, 0.7, null, c.gradLogProbArray(), null, g,
                st)).isInstanceOf(IllegalArgumentException.class).hasMessageContaining(want);
            st.close();
            assertThatThrownBy(() -> e.logProbsBackward(l, c.labelsArray(), 0.7, c.maskArray(), c.gradLogProbArray(),
                null, g, st)).isInstanceOf(IllegalArgumentException.class).hasMessageContaining("stats is closed");
            for (int i = 0; i < 45; i++) {
                assertEquals(42f, g.getFloat(i), "gradLogits touched");
            }
        }
    }

    /** bf16 logits give exactly the results of float32 logits holding the same (widened) values. */
    @ParameterizedTest
    @MethodSource("caseArgs")
    void bf16EqualsWidenedFloat32(final VocabCase.Spec spec) {
        try (VocabCase b = spec.type(ElementType.BF16).build();
             OffHeapArray f32 = OffHeapArray.of(b.x.clone())) {
            final Logits lf = Logits.of(f32, b.rows, b.vocab, b.stride);
            try (OffHeapArray lp1 = OffHeapArray.allocate(ElementType.F32, b.rows);
                 OffHeapArray h1 = OffHeapArray.allocate(ElementType.F32, b.rows);
                 OffHeapArray g1 = OffHeapArray.allocate(ElementType.F32, b.x.length)) {
                engine().logProbs(lf, b.labelsArray(), b.temperature, b.maskArray(), lp1, h1);
                assertSameForward(b.describe(), new VocabCase.Forward(lp1.toFloatArray(), h1.toFloatArray()),
                    b.forward(engine()));
                g1.fill(VocabCase.SENTINEL);
                engine().logProbsBackward(lf, b.labelsArray(), b.temperature, b.maskArray(), b.gradLogProbArray(),
                    b.gradEntropyArray(), g1);
                assertSameBits(b.describe(), g1.toFloatArray(), b.backward(engine()));
            }
        }
    }

    /** Null entropy buffers: the log-probs do not change, and a null entropy gradient is a zero one. */
    @ParameterizedTest
    @MethodSource("caseArgs")
    void nullEntropyArguments(final VocabCase.Spec spec) {
        try (VocabCase c = spec.entropyGrad(false).build();
             OffHeapArray lp = OffHeapArray.allocate(ElementType.F32, c.rows);
             OffHeapArray zeros = OffHeapArray.allocate(ElementType.F32, c.rows);
             OffHeapArray g = OffHeapArray.allocate(ElementType.F32, c.x.length)) {
            engine().logProbs(c.logits(), c.labelsArray(), c.temperature, c.maskArray(), lp, null);
            final VocabCase.Forward f = c.forward(engine());
            assertSameBits(c.describe(), f.logProb(), lp.toFloatArray());
            g.fill(VocabCase.SENTINEL);
            engine().logProbsBackward(c.logits(), c.labelsArray(), c.temperature, c.maskArray(),
                c.gradLogProbArray(), zeros, g);
            assertSameBits(c.describe(), c.backward(engine()), g.toFloatArray());
        }
    }

    /** Logits pre-divided by T at temperature 1 give the same forward bits (the division is the first step). */
    @ParameterizedTest
    @MethodSource("caseArgs")
    void temperatureIsADivisionFirst(final VocabCase.Spec spec) {
        try (VocabCase c = spec.type(ElementType.F32).build()) {
            final float tf = (float) c.temperature;
            final float[] z = c.x.clone();
            for (int i = 0; i < z.length; i++) {
                z[i] = z[i] / tf;
            }
            try (OffHeapArray zs = OffHeapArray.of(z);
                 OffHeapArray lp = OffHeapArray.allocate(ElementType.F32, c.rows);
                 OffHeapArray h = OffHeapArray.allocate(ElementType.F32, c.rows)) {
                engine().logProbs(Logits.of(zs, c.rows, c.vocab, c.stride), c.labelsArray(), 1.0, c.maskArray(), lp,
                    h);
                assertSameForward(c.describe(), c.forward(engine()),
                    new VocabCase.Forward(lp.toFloatArray(), h.toFloatArray()));
            }
        }
    }

    static void assertSameForward(final String at, final VocabCase.Forward a, final VocabCase.Forward b) {
        assertSameBits(at + " log-prob", a.logProb(), b.logProb());
        assertSameBits(at + " entropy", a.entropy(), b.entropy());
    }

    /** Bit equality (NaNs compared as NaN: payloads are not part of the contract). */
    public static void assertSameBits(final String at, final float[] a, final float[] b) {
        assertEquals(a.length, b.length, at + ": lengths");
        for (int i = 0; i < a.length; i++) {
            if (Float.floatToIntBits(a[i]) != Float.floatToIntBits(b[i])) {
                fail(at + ": element " + i + " differs: " + a[i] + " (0x" + Integer.toHexString(Float.floatToRawIntBits(a[i]))
                    + ") vs " + b[i] + " (0x" + Integer.toHexString(Float.floatToRawIntBits(b[i])) + ")");
            }
        }
    }

    static VocabOracle.Row oracle(final VocabCase c, final int r, final boolean floatZ) {
        final double gl = c.gradLogProb[r];
        final double ge = c.gradEntropy == null ? 0 : c.gradEntropy[r];
        return VocabOracle.row(c.x, Math.toIntExact(r * c.stride), c.vocab, c.labels[r], c.temperature, gl, ge, floatZ);
    }

    // ---------------------------------------------------------------- validation

    @Test
    void rejectsBadArgumentsBeforeTouchingOutputs() {
        try (VocabCase c = VocabCase.spec().seed(77).rows(5).vocab(9).build();
             OffHeapArray lp = OffHeapArray.allocate(ElementType.F32, 5);
             OffHeapArray h = OffHeapArray.allocate(ElementType.F32, 5);
             OffHeapArray shortOut = OffHeapArray.allocate(ElementType.F32, 4);
             OffHeapArray g = OffHeapArray.allocate(ElementType.F32, 45);
             OffHeapArray gShort = OffHeapArray.allocate(ElementType.F32, 44);
             OffHeapArray gBf16 = OffHeapArray.allocate(ElementType.BF16, 45);
             OffHeapArray badLabels = OffHeapArray.ofInts(0, 1, 2, 9, -1);
             OffHeapArray negLabels = OffHeapArray.ofInts(0, -1, 2, 3, 4);
             OffHeapArray fewLabels = OffHeapArray.ofInts(0, 1, 2, 3);
             OffHeapArray floatLabels = OffHeapArray.of(0f, 1f, 2f, 3f, 4f)) {
            final Engine e = engine();
            final Logits l = c.logits();
            lp.fill(42f);
            g.fill(42f);
            assertThatThrownBy(() -> e.logProbs(l, badLabels, 1.0, null, lp, h))
                .isInstanceOf(IllegalArgumentException.class).hasMessageContaining("labels[3] = 9")
                .hasMessageContaining("vocab = 9");
            assertThatThrownBy(() -> e.logProbsBackward(l, negLabels, 1.0, null, c.gradLogProbArray(), null, g))
                .isInstanceOf(IllegalArgumentException.class).hasMessageContaining("labels[1] = -1");
            assertThatThrownBy(() -> e.logProbs(l, fewLabels, 1.0, null, lp, h))
                .isInstanceOf(IllegalArgumentException.class).hasMessageContaining("labels");
            assertThatThrownBy(() -> e.logProbs(l, floatLabels, 1.0, null, lp, h))
                .isInstanceOf(IllegalArgumentException.class).hasMessageContaining("labels must be I32");
            assertThatThrownBy(() -> e.logProbs(l, c.labelsArray(), 1.0, null, shortOut, h))
                .isInstanceOf(IllegalArgumentException.class).hasMessageContaining("logProbOut");
            assertThatThrownBy(() -> e.logProbs(l, c.labelsArray(), 1.0, null, lp, shortOut))
                .isInstanceOf(IllegalArgumentException.class).hasMessageContaining("entropyOut");
            assertThatThrownBy(() -> e.logProbs(l, c.labelsArray(), 1.0, null, lp, h, shortOut, null, null))
                .isInstanceOf(IllegalArgumentException.class).hasMessageContaining("sumPiSquaredOut")
                .hasMessageContaining("at least 5");
            assertThatThrownBy(() -> e.logProbs(l, c.labelsArray(), 1.0, null, lp, h, gBf16, null, null))
                .isInstanceOf(IllegalArgumentException.class).hasMessageContaining("sumPiSquaredOut must be F32");
            assertThatThrownBy(() -> e.logProbs(l, c.labelsArray(), 1.0, shortOut, lp, h))
                .isInstanceOf(IllegalArgumentException.class).hasMessageContaining("rowMask");
            assertThatThrownBy(() -> e.logProbs(l, c.labelsArray(), 1.0, null, null, h))
                .isInstanceOf(IllegalArgumentException.class).hasMessageContaining("logProbOut");
            assertThatThrownBy(() -> e.logProbs(null, c.labelsArray(), 1.0, null, lp, h))
                .isInstanceOf(IllegalArgumentException.class).hasMessageContaining("logits");
            for (final double t : new double[] {0, -1, Double.NaN, Double.POSITIVE_INFINITY, 1e-50, 1e39}) {
                assertThatThrownBy(() -> e.logProbs(l, c.labelsArray(), t, null, lp, h))
                    .as("T=" + t).isInstanceOf(IllegalArgumentException.class).hasMessageContaining("temperature");
                assertThatThrownBy(() -> e.logProbsBackward(l, c.labelsArray(), t, null, c.gradLogProbArray(), null, g))
                    .as("T=" + t).isInstanceOf(IllegalArgumentException.class).hasMessageContaining("temperature");
            }
            assertThatThrownBy(() -> e.logProbsBackward(l, c.labelsArray(), 1.0, null, c.gradLogProbArray(), null, gBf16))
                .isInstanceOf(IllegalArgumentException.class).hasMessageContaining("gradLogits must be F32");
            assertThatThrownBy(() -> e.logProbsBackward(l, c.labelsArray(), 1.0, null, c.gradLogProbArray(), null, gShort))
                .isInstanceOf(IllegalArgumentException.class).hasMessageContaining("gradLogits");
            assertThatThrownBy(() -> e.logProbsBackward(l, c.labelsArray(), 1.0, null, shortOut, null, g))
                .isInstanceOf(IllegalArgumentException.class).hasMessageContaining("gradLogProb");
            assertThatThrownBy(() -> e.logProbsBackward(l, c.labelsArray(), 1.0, null, c.gradLogProbArray(), shortOut, g))
                .isInstanceOf(IllegalArgumentException.class).hasMessageContaining("gradEntropy");
            assertThatThrownBy(() -> e.logProbsBackward(l, c.labelsArray(), 1.0, null, c.gradLogProbArray(), null, null))
                .isInstanceOf(IllegalArgumentException.class).hasMessageContaining("gradLogits");
            // Nothing was written by any rejected call.
            for (int i = 0; i < 5; i++) {
                assertEquals(42f, lp.getFloat(i), "logProbOut touched");
            }
            for (int i = 0; i < 45; i++) {
                assertEquals(42f, g.getFloat(i), "gradLogits touched");
            }
        }
    }

    @Test
    void rejectsGradientOverlappingTheLogitsAndBf16InPlace() {
        try (OffHeapArray x = OffHeapArray.of(new float[40]); OffHeapArray y = OffHeapArray.ofInts(0, 1, 2, 3);
             OffHeapArray gl = OffHeapArray.of(1f, 1f, 1f, 1f);
             OffHeapArray bf = OffHeapArray.ofBf16(new float[40])) {
            final Logits l = Logits.of(x, 4, 10);
            final OffHeapArray shifted = OffHeapArray.wrap(ElementType.F32, x.segment().asSlice(4), 39);
            assertThatThrownBy(() -> engine().logProbsBackward(Logits.of(x, 3, 10), y, 1.0, null, gl, null, shifted))
                .isInstanceOf(IllegalArgumentException.class).hasMessageContaining("overlap");
            final OffHeapArray overBf16 = OffHeapArray.wrap(ElementType.F32, bf.segment(), 20);
            assertThatThrownBy(() -> engine().logProbsBackward(Logits.of(bf, 2, 10), y, 1.0, null, gl, null, overBf16))
                .isInstanceOf(IllegalArgumentException.class).hasMessageContaining("overlap");
            engine().logProbsBackward(l, y, 1.0, null, gl, null, x);
        }
    }

    @Test
    void labelsOfMaskedRowsAreNotChecked() {
        try (OffHeapArray x = OffHeapArray.of(new float[12]); OffHeapArray y = OffHeapArray.ofInts(0, -100, 2);
             OffHeapArray mask = OffHeapArray.of(1f, 0f, 1f);
             OffHeapArray lp = OffHeapArray.allocate(ElementType.F32, 3)) {
            engine().logProbs(Logits.of(x, 3, 4), y, 1.0, mask, lp, null);
            assertEquals((float) -StrictMath.log(4), lp.getFloat(2));
            assertEquals(0f, lp.getFloat(1));
            try (OffHeapArray unmasked = OffHeapArray.of(1f, 1f, 1f)) {
                assertThatThrownBy(() -> engine().logProbs(Logits.of(x, 3, 4), y, 1.0, unmasked, lp, null))
                    .isInstanceOf(IllegalArgumentException.class).hasMessageContaining("labels[1] = -100");
            }
        }
    }

    @Test
    void logitsViewValidatesItsShape() {
        try (OffHeapArray x = OffHeapArray.of(new float[10]); OffHeapArray i = OffHeapArray.ofInts(1, 2)) {
            assertThatThrownBy(() -> Logits.of(x, 3, 4)).isInstanceOf(IllegalArgumentException.class)
                .hasMessageContaining("data must hold at least");
            assertThatThrownBy(() -> Logits.of(x, 2, 0)).isInstanceOf(IllegalArgumentException.class)
                .hasMessageContaining("vocab");
            assertThatThrownBy(() -> Logits.of(x, -1, 2)).isInstanceOf(IllegalArgumentException.class)
                .hasMessageContaining("rows");
            assertThatThrownBy(() -> Logits.of(x, 2, 4, 3)).isInstanceOf(IllegalArgumentException.class)
                .hasMessageContaining("rowStride");
            assertThatThrownBy(() -> Logits.of(i, 1, 2)).isInstanceOf(IllegalArgumentException.class)
                .hasMessageContaining("F32 or BF16");
            assertThatThrownBy(() -> Logits.of(null, 1, 2)).isInstanceOf(IllegalArgumentException.class)
                .hasMessageContaining("data");
            assertThatThrownBy(() -> Logits.of(x, 2, 3, Long.MAX_VALUE / 2)).isInstanceOf(IllegalArgumentException.class)
                .hasMessageContaining("overflows");
            final Logits ok = Logits.of(x, 2, 4, 6);
            assertEquals(10, ok.requiredLength());
            assertEquals(24, ok.rowByteOffset(1));
            assertEquals(ElementType.F32, ok.type());
        }
    }
}
