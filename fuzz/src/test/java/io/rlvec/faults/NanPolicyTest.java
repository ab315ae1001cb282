package io.rlvec.faults;

import static org.assertj.core.api.Assertions.assertThat;

import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.SplittableRandom;
import java.util.TreeMap;
import java.util.stream.Stream;

import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.Arguments;
import org.junit.jupiter.params.provider.MethodSource;

import io.rlvec.ActorLossResult;
import io.rlvec.AggMode;
import io.rlvec.AggResult;
import io.rlvec.Column;
import io.rlvec.ElementType;
import io.rlvec.Engine;
import io.rlvec.KlPenalty;
import io.rlvec.Logits;
import io.rlvec.LossSpec;
import io.rlvec.OffHeapArray;
import io.rlvec.PolicyLossResult;
import io.rlvec.TokenBatch;
import io.rlvec.engine.VectorEngine;
import io.rlvec.reference.ReferenceEngine;
import io.rlvec.testing.Gen;
import io.rlvec.testing.TokenData;

/**
 * The NaN / Inf policy, per term and on both engines, as properties over seeded random batches:
 * <ul>
 *   <li>masked positions never leak: a batch whose masked slots hold NaN, Inf or random bits gives the same value,
 *       metric and gradient bits as the same batch with zeros there, and masked gradients are exactly +0;</li>
 *   <li>an unmasked NaN propagates (as in PyTorch): the loss is NaN; for kl_penalty that token's kld is NaN and no
 *       other token's;</li>
 *   <li>finite inputs in the range where verl computes a number never yield NaN (value, metrics, gradient).</li>
 * </ul>
 */
class NanPolicyTest {
    private static final int SEEDS = 24;
    private static final Engine[] ENGINES = {new ReferenceEngine(), new VectorEngine(), new VectorEngine(2)};

    /** A term on a batch: every output as floats (value and metrics first, in a fixed order) and the gradient. */
    record Out(float[] values, float[] grad) {
    }

    /** The per-token terms, each with its settings. */
    static Stream<Arguments> terms() {
        final List<Arguments> out = new ArrayList<>();
        for (final AggMode m : AggMode.values()) {
            out.add(Arguments.of("policy_loss " + m.verlName(), m, null));
            out.add(Arguments.of("agg_loss " + m.verlName(), m, null));
            for (final String kl : new String[] {"k1", "low_var_kl", "k2+"}) {
                out.add(Arguments.of("actor_loss " + m.verlName() + " kl=" + kl, m, kl));
            }
        }
        for (final String kl : new String[] {"kl", "abs", "mse", "low_var_kl", "k1+", "abs+", "low_var_kl+"}) {
            out.add(Arguments.of("kl_penalty " + kl, AggMode.TOKEN_MEAN, kl));
        }
        return out.stream();
    }

    private static float[] values(final float first, final Map<String, Double> metrics) {
        final Map<String, Double> sorted = new TreeMap<>(metrics);
        final float[] v = new float[1 + sorted.size()];
        v[0] = first;
        int i = 1;
        for (final double x : sorted.values()) {
            v[i++] = (float) x;
        }
        return v;
    }

    static Out run(final Engine e, final String term, final AggMode mode, final String kl, final TokenData d) {
        final int n = d.numTokens();
        final LossSpec spec = LossSpec.builder().lossAggMode(mode).lossScaleFactor(32).useKlLoss(kl != null)
            .klLossCoef(0.1).klLossType(KlPenalty.fromVerl(kl == null ? "k1" : kl)).build();
        try (TokenBatch b = TokenBatch.withOffsets(d.offsets).column(Column.LOG_PROB, d.logProb)
                .column(Column.OLD_LOG_PROB, d.oldLogProb).column(Column.ADVANTAGES, d.advantages)
                .column(Column.REF_LOG_PROB, d.oldLogProb).column(Column.RESPONSE_MASK, d.mask).build();
             OffHeapArray grad = OffHeapArray.allocate(ElementType.F32, n);
             OffHeapArray kld = OffHeapArray.allocate(ElementType.F32, n)) {
            if (term.startsWith("policy_loss")) {
                final PolicyLossResult r = new PolicyLossResult();
                e.policyLoss(spec, b, grad, r);
                return new Out(values(r.pgLoss(), r.metrics()), grad.toFloatArray());
            }
            if (term.startsWith("agg_loss")) {
                final AggResult r = new AggResult();
                e.aggLoss(spec, b, b.column(Column.ADVANTAGES), grad, r);
                return new Out(new float[] {r.loss()}, grad.toFloatArray());
            }
            if (term.startsWith("actor_loss")) {
                final ActorLossResult r = new ActorLossResult();
                e.actorLoss(spec, b, grad, r);
                return new Out(values(r.loss(), r.metrics()), grad.toFloatArray());
            }
            e.klPenalty(KlPenalty.fromVerl(kl), b, kld, grad);
            return new Out(kld.toFloatArray(), grad.toFloatArray());
        }
    }

    /** @return the data with every masked slot set to 0 in every column. */
    private static TokenData zeroMasked(final TokenData d) {
        final float[] lp = d.logProb.clone();
        final float[] old = d.oldLogProb.clone();
        final float[] adv = d.advantages.clone();
        for (int t = 0; t < lp.length; t++) {
            if (d.mask[t] == 0f) {
                lp[t] = 0f;
                old[t] = 0f;
                adv[t] = 0f;
            }
        }
        return TokenData.packed(lengths(d), lp, old, adv, d.mask.clone(), null);
    }

    private static int[] lengths(final TokenData d) {
        final int[] l = new int[d.numSequences()];
        for (int s = 0; s < l.length; s++) {
            l[s] = d.offsets[s + 1] - d.offsets[s];
        }
        return l;
    }

    private static void sameBits(final float[] a, final float[] b, final String what) {
        assertThat(b.length).as(what).isEqualTo(a.length);
        for (int i = 0; i < a.length; i++) {
            final int x = Float.floatToIntBits(a[i]);
            final int y = Float.floatToIntBits(b[i]);
            assertThat(y).as("%s [%d]: %s vs %s", what, i, b[i], a[i]).isEqualTo(x);
        }
    }

    @ParameterizedTest(name = "{0}")
    @MethodSource("terms")
    void maskedPositionsNeverLeak(final String term, final AggMode mode, final String kl) {
        for (int s = 0; s < SEEDS; s++) {
            final TokenData d = TokenData.random(new Gen(0x4A4A_0000L + s), TokenData.Options.of(s % 2 == 0)
                .sizes(6, 90)).packed();
            final TokenData clean = zeroMasked(d);
            for (final Engine e : ENGINES) {
                final String what = term + " seed " + s + " on " + e.name();
                final Out dirty = run(e, term, mode, kl, d);
                final Out zero = run(e, term, mode, kl, clean);
                sameBits(zero.values(), dirty.values(), what + " value/metrics");
                sameBits(zero.grad(), dirty.grad(), what + " gradient");
                for (int t = 0; t < d.mask.length; t++) {
                    if (d.mask[t] == 0f) {
                        assertThat(Float.floatToRawIntBits(dirty.grad()[t])).as("%s masked grad[%d]", what, t)
                            .isZero();
                        if (term.startsWith("kl_penalty")) {
                            assertThat(Float.floatToRawIntBits(dirty.values()[t])).as("%s masked kld[%d]", what, t)
                                .isZero();
                        }
                    }
                }
            }
        }
    }

    /** @return seeded finite data, every sequence with at least one valid token, values where verl is finite. */
    private static TokenData finite(final long seed, final boolean nanAtFirstValid, final int column) {
        final SplittableRandom r = new SplittableRandom(seed);
        final int[] lengths = new int[1 + r.nextInt(6)];
        int n = 0;
        for (int s = 0; s < lengths.length; s++) {
            lengths[s] = 1 + r.nextInt(70);
            n += lengths[s];
        }
        final float[] lp = new float[n];
        final float[] old = new float[n];
        final float[] adv = new float[n];
        final float[] mask = new float[n];
        int t = 0;
        for (final int len : lengths) {
            for (int k = 0; k < len; k++, t++) {
                mask[t] = k == 0 || r.nextInt(5) != 0 ? 1f : 0f;
                lp[t] = (float) (-50 * r.nextDouble() * r.nextDouble());
                old[t] = r.nextInt(10) == 0 ? (float) (-50 * r.nextDouble()) : lp[t] + (float) (0.3 * r.nextGaussian());
                adv[t] = (float) (r.nextInt(10) == 0 ? 100 * r.nextGaussian() : r.nextGaussian());
            }
        }
        if (nanAtFirstValid) {
            (column == 0 ? lp : column == 1 ? old : adv)[0] = Float.NaN;
        }
        return TokenData.packed(lengths, lp, old, adv, mask, null);
    }

    @ParameterizedTest(name = "{0}")
    @MethodSource("terms")
    void finiteInputsNeverYieldNaN(final String term, final AggMode mode, final String kl) {
        for (int s = 0; s < 4 * SEEDS; s++) {
            final TokenData d = finite(0x5B5B_0000L + s, false, 0);
            for (final Engine e : ENGINES) {
                final Out o = run(e, term, mode, kl, d);
                for (int i = 0; i < o.values().length; i++) {
                    assertThat(Float.isFinite(o.values()[i])).as("%s seed %d on %s: output %d = %s", term, s, e.name(),
                        i, o.values()[i]).isTrue();
                }
                for (int i = 0; i < o.grad().length; i++) {
                    assertThat(Float.isFinite(o.grad()[i])).as("%s seed %d on %s: grad[%d] = %s", term, s, e.name(), i,
                        o.grad()[i]).isTrue();
                }
            }
        }
    }

    @ParameterizedTest(name = "{0}")
    @MethodSource("terms")
    void unmaskedNaNPropagates(final String term, final AggMode mode, final String kl) {
        for (int s = 0; s < SEEDS; s++) {
            // log_prob for every term; advantages too where the term reads them (agg_loss reduces the advantages).
            for (final int column : term.startsWith("kl_penalty") ? new int[] {0} : new int[] {0, 2}) {
                if (term.startsWith("agg_loss") && column == 0) {
                    continue;
                }
                final TokenData d = finite(0x6C6C_0000L + s, true, column);
                for (final Engine e : ENGINES) {
                    final Out o = run(e, term, mode, kl, d);
                    final String what = term + " seed " + s + " NaN in column " + column + " on " + e.name();
                    // The loss (for kl_penalty: that token's kld) is NaN. No claim on the gradient at the NaN
                    // token: PyTorch's clamp passes no gradient where its input is NaN (its mask is
                    // min <= x <= max), so verl's d/d log_prob there is 0 for the ratio's clamp, 1 for k1, and the
                    // parity targets hold the engine to the reference, which follows those rules.
                    assertThat(o.values()[0]).as("%s: value", what).isNaN();
                    for (int t = 1; t < o.grad().length && term.startsWith("kl_penalty"); t++) {
                        assertThat(Float.isNaN(o.values()[t])).as("%s: kld[%d] of another token", what, t).isFalse();
                    }
                }
            }
        }
    }

    /** The vocabulary pass: masked rows full of NaN never leak; finite logits give finite outputs; NaN propagates. */
    @org.junit.jupiter.api.Test
    void vocabularyPass() {
        final int rows = 6;
        for (final int vocab : new int[] {1, 7, 64, 100, 1031}) {
            for (final ElementType type : new ElementType[] {ElementType.F32, ElementType.BF16}) {
                final SplittableRandom r = new SplittableRandom(vocab);
                try (OffHeapArray z = OffHeapArray.allocate(type, (long) rows * vocab);
                     OffHeapArray clean = OffHeapArray.allocate(type, (long) rows * vocab);
                     OffHeapArray mask = OffHeapArray.of(1f, 0f, 1f, 1f, 0f, 1f);
                     OffHeapArray labels = OffHeapArray.ofInts(0, -100, vocab - 1, vocab / 2, 12345, 0);
                     OffHeapArray up = OffHeapArray.of(1f, Float.NaN, -2f, 0.5f, Float.NaN, 3f)) {
                    for (int row = 0; row < rows; row++) {
                        for (int j = 0; j < vocab; j++) {
                            final float x = (float) (r.nextInt(20) == 0 ? 1e4 * r.nextGaussian() : 5 * r.nextGaussian());
                            final boolean masked = mask.getFloat(row) == 0f;
                            z.setFloat((long) row * vocab + j, masked ? new float[] {Float.NaN,
                                Float.POSITIVE_INFINITY, Float.NEGATIVE_INFINITY}[j % 3] : x);
                            clean.setFloat((long) row * vocab + j, masked ? 0f : x);
                        }
                    }
                    for (final Engine e : ENGINES) {
                        final float[][] dirty = vocab(e, Logits.of(z, rows, vocab), labels, mask, up);
                        final float[][] zero = vocab(e, Logits.of(clean, rows, vocab), labels, mask, up);
                        final String what = "vocab " + vocab + " " + type + " on " + e.name();
                        for (int k = 0; k < 3; k++) {
                            sameBits(zero[k], dirty[k], what + " output " + k);
                            for (final float v : dirty[k]) {
                                assertThat(Float.isFinite(v)).as("%s: finite logits give finite outputs", what)
                                    .isTrue();
                            }
                        }
                        for (final int row : new int[] {1, 4}) {
                            assertThat(Float.floatToRawIntBits(dirty[0][row])).as(what).isZero();
                            assertThat(Float.floatToRawIntBits(dirty[1][row])).as(what).isZero();
                            for (int j = 0; j < vocab; j++) {
                                assertThat(Float.floatToRawIntBits(dirty[2][row * vocab + j])).as(what).isZero();
                            }
                        }
                        // A NaN logit in a valid row makes that row's outputs NaN, and only that row's.
                        z.setFloat(2L * vocab + vocab / 3, Float.NaN);
                        final float[][] nan = vocab(e, Logits.of(z, rows, vocab), labels, mask, up);
                        z.setFloat(2L * vocab + vocab / 3, clean.getFloat(2L * vocab + vocab / 3));
                        assertThat(nan[0][2]).as(what).isNaN();
                        assertThat(nan[1][2]).as(what).isNaN();
                        assertThat(nan[0][0]).as(what).isEqualTo(dirty[0][0]);
                    }
                }
            }
        }
    }

    private static float[][] vocab(final Engine e, final Logits lg, final OffHeapArray labels, final OffHeapArray mask,
                                   final OffHeapArray up) {
        final int rows = lg.rows();
        try (OffHeapArray lp = OffHeapArray.allocate(ElementType.F32, rows);
             OffHeapArray ent = OffHeapArray.allocate(ElementType.F32, rows);
             OffHeapArray grad = OffHeapArray.allocate(ElementType.F32, lg.requiredLength())) {
            e.logProbs(lg, labels, 0.8, mask, lp, ent);
            e.logProbsBackward(lg, labels, 0.8, mask, up, up, grad);
            return new float[][] {lp.toFloatArray(), ent.toFloatArray(), grad.toFloatArray()};
        }
    }
}
