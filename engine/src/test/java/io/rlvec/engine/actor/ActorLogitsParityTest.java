package io.rlvec.engine.actor;

import static org.assertj.core.api.Assertions.assertThat;

import java.util.SplittableRandom;
import java.util.stream.Stream;

import org.junit.jupiter.api.MethodOrderer;
import org.junit.jupiter.api.Order;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.TestMethodOrder;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.Arguments;
import org.junit.jupiter.params.provider.MethodSource;

import io.rlvec.ActorLossResult;
import io.rlvec.AggMode;
import io.rlvec.ElementType;
import io.rlvec.Engine;
import io.rlvec.Engines;
import io.rlvec.Logits;
import io.rlvec.LossSpec;
import io.rlvec.OffHeapArray;
import io.rlvec.TokenBatch;
import io.rlvec.actor.ActorData;
import io.rlvec.kl.KlData;
import io.rlvec.reference.ReferenceEngine;

/**
 * Engine vs reference on the actor loss from logits: d loss / d logits and d loss / d log_prob bit for bit,
 * reduced terms within 1 ulp, composed loss within 2 ulp; cold, then after a hot warm-up of 2*10^4 calls.
 */
@TestMethodOrder(MethodOrderer.OrderAnnotation.class)
class ActorLogitsParityTest {
    private static final Engine ENGINE = Engines.preferred();
    private static final Engine REF = new ReferenceEngine();

    static Stream<Arguments> cases() {
        final String[] kls = {null, "low_var_kl", "full"};
        final int[] vocabs = {37, 530};
        return Stream.of(kls).flatMap(k -> Stream.of(0.0, 0.01).flatMap(e -> java.util.stream.IntStream.of(vocabs)
            .boxed().flatMap(v -> Stream.of(ElementType.F32, ElementType.BF16).map(t -> Arguments.of(k, e, v, t)))));
    }

    static void assertParity(final String kl, final double entropyCoeff, final int v, final ElementType type,
                             final long seed, final String phase) {
        final boolean padded = (seed & 1) == 0;
        final ActorData.Inputs in = ActorData.inputs(seed, 23, padded, false);
        final int rows = in.lp().length;
        final SplittableRandom r = new SplittableRandom(seed);
        final float[] z = new float[rows * v];
        final float[] zr = new float[rows * v];
        final int[] labels = new int[rows];
        for (int i = 0; i < rows; i++) {
            labels[i] = r.nextInt(v);
            for (int j = 0; j < v; j++) {
                z[i * v + j] = in.mask()[i] == 0f ? KlData.garbage(r) : (float) (3 * r.nextGaussian());
                zr[i * v + j] = in.mask()[i] == 0f ? KlData.garbage(r) : (float) (3 * r.nextGaussian());
            }
        }
        final LossSpec spec = ActorData.spec(padded ? AggMode.TOKEN_MEAN : AggMode.SEQ_MEAN_TOKEN_MEAN, kl, 0.05, 0.5)
            .toBuilder().entropyCoeff(entropyCoeff).temperature(0.7).build();
        final boolean full = "full".equals(kl);
        try (TokenBatch batch = in.batch();
             OffHeapArray zd = type == ElementType.F32 ? OffHeapArray.of(z) : OffHeapArray.ofBf16(z);
             OffHeapArray zrd = OffHeapArray.ofBf16(zr);
             OffHeapArray lab = OffHeapArray.ofInts(labels);
             OffHeapArray gl1 = OffHeapArray.allocate(ElementType.F32, rows);
             OffHeapArray gl2 = OffHeapArray.allocate(ElementType.F32, rows);
             OffHeapArray g1 = OffHeapArray.allocate(ElementType.F32, z.length);
             OffHeapArray g2 = OffHeapArray.allocate(ElementType.F32, z.length)) {
            final Logits logits = Logits.of(zd, rows, v);
            final Logits ref = full ? Logits.of(zrd, rows, v) : null;
            final ActorLossResult a = new ActorLossResult();
            final ActorLossResult b = new ActorLossResult();
            ENGINE.actorLoss(spec, batch, logits, lab, ref, gl1, g1, a);
            REF.actorLoss(spec, batch, logits, lab, ref, gl2, g2, b);
            final String what = String.format("%s seed %d kl=%s ent=%s V=%d %s", phase, seed, kl, entropyCoeff, v,
                type);
            assertSameGradients(what, gl1, gl2, g1, g2);
            ActorParityTest.assertResults(what, a, b);
            if (type == ElementType.F32 && !full) {
                // In place (the engine cannot keep its exps in the gradient buffer there): the same bits.
                try (OffHeapArray own = OffHeapArray.of(z)) {
                    ENGINE.actorLoss(spec, batch, Logits.of(own, rows, v), lab, null, null, own, a);
                    for (int i = 0; i < z.length; i++) {
                        assertThat(KlData.same(own.getFloat(i), g2.getFloat(i))).as("%s in-place gradLogits[%d]: %s"
                            + " vs %s", what, i, own.getFloat(i), g2.getFloat(i)).isTrue();
                    }
                }
            }
        }
    }

    /** d loss / d log_prob and d loss / d logits, engine ({@code gl1}, {@code g1}) and reference, bit for bit. */
    private static void assertSameGradients(final String what, final OffHeapArray gl1, final OffHeapArray gl2,
                                            final OffHeapArray g1, final OffHeapArray g2) {
        for (int i = 0; i < gl1.length(); i++) {
            assertThat(KlData.same(gl1.getFloat(i), gl2.getFloat(i))).as("%s gradLogProb[%d]: %s vs %s", what, i,
                gl1.getFloat(i), gl2.getFloat(i)).isTrue();
        }
        for (int i = 0; i < g1.length(); i++) {
            assertThat(KlData.same(g1.getFloat(i), g2.getFloat(i))).as("%s gradLogits[%d]: %s vs %s", what, i,
                g1.getFloat(i), g2.getFloat(i)).isTrue();
        }
    }

    @Order(1)
    @ParameterizedTest
    @MethodSource("cases")
    void coldParity(final String kl, final double entropyCoeff, final int v, final ElementType type) {
        assertParity(kl, entropyCoeff, v, type, 40L + v, "cold");
    }

    @Order(2)
    @Test
    void warmUp() {
        final ActorData.Inputs in = ActorData.inputs(6, 6, true, false);
        final int rows = in.lp().length;
        final int v = 40;
        final SplittableRandom r = new SplittableRandom(6);
        final float[] z = new float[rows * v];
        final int[] labels = new int[rows];
        for (int i = 0; i < z.length; i++) {
            z[i] = (float) r.nextGaussian();
        }
        final LossSpec full = ActorData.spec(AggMode.TOKEN_MEAN, "full", 0.1, 0.5).toBuilder().entropyCoeff(0.01)
            .build();
        final LossSpec k3 = ActorData.spec(AggMode.TOKEN_MEAN, "k3", 0.1, 0.5);
        try (TokenBatch batch = in.batch();
             OffHeapArray zd = OffHeapArray.of(z);
             OffHeapArray zr = OffHeapArray.of(z);
             OffHeapArray lab = OffHeapArray.ofInts(labels);
             OffHeapArray g = OffHeapArray.allocate(ElementType.F32, z.length)) {
            final ActorLossResult out = new ActorLossResult();
            double sink = 0;
            for (int c = 0; c < 20_000; c++) {
                if ((c & 1) == 0) {
                    ENGINE.actorLoss(full, batch, Logits.of(zd, rows, v), lab, Logits.of(zr, rows, v), null, g, out);
                } else {
                    ENGINE.actorLoss(k3, batch, Logits.of(zd, rows, v), lab, null, null, g, out);
                }
                sink += out.loss();
            }
            assertThat(Double.isNaN(sink)).isFalse();
        }
    }

    /**
     * Every loss whose gradient the vector engine computes row by row (between each row's vocabulary forward and
     * backward) against the reference's batch path: every aggregation mode, every KL estimator but full (and none),
     * with and without rollout weights, micro-batch scale 1 and 0.37, global-batch arguments, entropy on or off;
     * log-ratios and KL differences beyond the +-20 clamps, zero and negative advantages (dual clip), zero weights,
     * masked tokens holding NaN/Inf; packed and padded; the same bits for d loss / d log_prob and d loss / d logits,
     * the loss and the metrics within the tolerances of {@link ActorParityTest#assertResults}.
     */
    static Stream<Arguments> rowByRowCases() {
        final Stream.Builder<Arguments> out = Stream.builder();
        final String[] kls = {null, "kl", "abs", "mse", "low_var_kl", "low_var_kl+", "mse+"};
        long seed = 300;
        for (final AggMode mode : AggMode.values()) {
            for (final String kl : kls) {
                out.add(Arguments.of(mode, kl, seed++));
            }
        }
        return out.build();
    }

    @Order(3)
    @ParameterizedTest
    @MethodSource("rowByRowCases")
    void rowByRowMatchesTheBatchPath(final AggMode mode, final String kl, final long seed) {
        final SplittableRandom r = new SplittableRandom(seed);
        final boolean padded = (seed & 1) == 0;
        final boolean weighted = (seed & 2) == 0;
        final int v = (seed & 4) == 0 ? 77 : 300;
        final ElementType type = (seed & 8) == 0 ? ElementType.F32 : ElementType.BF16;
        final ActorData.Inputs in = ActorData.inputs(seed, 41, padded, false);
        final int rows = in.lp().length;
        final float[] z = new float[rows * v];
        final int[] labels = new int[rows];
        final float[] old = new float[rows];
        final float[] ref = new float[rows];
        final float[] adv = new float[rows];
        final float[] w = new float[rows];
        for (int i = 0; i < rows; i++) {
            final boolean valid = in.mask()[i] != 0f;
            labels[i] = r.nextInt(v);
            for (int j = 0; j < v; j++) {
                z[i * v + j] = valid ? (float) (3 * r.nextGaussian()) : KlData.garbage(r);
            }
            // About one token in five has its old or reference log-prob far enough to hit the +-20 clamps.
            old[i] = !valid ? KlData.garbage(r) : (float) (r.nextInt(5) == 0 ? 25 * r.nextGaussian()
                : -5 + r.nextGaussian());
            ref[i] = !valid ? KlData.garbage(r) : (float) (r.nextInt(5) == 0 ? 25 * r.nextGaussian()
                : -5 + r.nextGaussian());
            adv[i] = !valid ? KlData.garbage(r) : switch (r.nextInt(4)) {
                case 0 -> 0f;
                case 1 -> (float) -Math.abs(2 * r.nextGaussian());
                default -> (float) (2 * r.nextGaussian());
            };
            w[i] = !valid ? KlData.garbage(r) : r.nextInt(7) == 0 ? 0f : (float) r.nextDouble(0.2, 2);
        }
        final LossSpec.Builder b = ActorData.spec(mode, kl, 0.07, (seed & 16) == 0 ? 1 : 0.37).toBuilder()
            .temperature(0.7).entropyCoeff((seed & 32) == 0 ? 0.0 : 0.013);
        if ((seed & 64) == 0) {
            b.dpSize(2).batchNumTokens(2L * rows).globalBatchSize(9).lossScaleFactor(33);
        } else if (mode == AggMode.SEQ_MEAN_TOKEN_SUM_NORM && !padded) {
            // A packed batch has no padded width to divide by: the trainer's response_length.
            b.lossScaleFactor(40);
        }
        final LossSpec spec = b.build();
        final TokenBatch.Builder tb = padded
            ? TokenBatch.padded(in.offsets().length - 1, in.paddedWidth()) : TokenBatch.withOffsets(in.offsets());
        tb.column(io.rlvec.Column.OLD_LOG_PROB, old).column(io.rlvec.Column.REF_LOG_PROB, ref)
            .column(io.rlvec.Column.ADVANTAGES, adv).column(io.rlvec.Column.RESPONSE_MASK, in.mask());
        if (weighted) {
            tb.column(io.rlvec.Column.ROLLOUT_IS_WEIGHTS, w);
        }
        try (TokenBatch batch = tb.build();
             OffHeapArray zd = type == ElementType.F32 ? OffHeapArray.of(z) : OffHeapArray.ofBf16(z);
             OffHeapArray lab = OffHeapArray.ofInts(labels);
             OffHeapArray gl1 = OffHeapArray.allocate(ElementType.F32, rows);
             OffHeapArray gl2 = OffHeapArray.allocate(ElementType.F32, rows);
             OffHeapArray g1 = OffHeapArray.allocate(ElementType.F32, z.length);
             OffHeapArray g2 = OffHeapArray.allocate(ElementType.F32, z.length)) {
            final Logits logits = Logits.of(zd, rows, v);
            final ActorLossResult a = new ActorLossResult();
            final ActorLossResult e = new ActorLossResult();
            ENGINE.actorLoss(spec, batch, logits, lab, null, gl1, g1, a);
            REF.actorLoss(spec, batch, logits, lab, null, gl2, g2, e);
            final String what = String.format("seed %d %s kl=%s weights=%s V=%d %s %s", seed, mode, kl, weighted, v,
                type, padded ? "padded" : "packed");
            assertSameGradients(what, gl1, gl2, g1, g2);
            ActorParityTest.assertResults(what, a, e);
        }
    }

    @Order(4)
    @ParameterizedTest
    @MethodSource("cases")
    void hotParity(final String kl, final double entropyCoeff, final int v, final ElementType type) {
        assertParity(kl, entropyCoeff, v, type, 40L + v, "hot");
        assertParity(kl, entropyCoeff, v, type, 91L + v, "hot");
    }
}
