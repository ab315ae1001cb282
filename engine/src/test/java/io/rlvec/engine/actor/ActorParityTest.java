package io.rlvec.engine.actor;

import static org.assertj.core.api.Assertions.assertThat;

import java.util.Map;
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
import io.rlvec.LossSpec;
import io.rlvec.OffHeapArray;
import io.rlvec.TokenBatch;
import io.rlvec.actor.ActorData;
import io.rlvec.kl.KlData;
import io.rlvec.reference.ReferenceEngine;

/**
 * Engine vs reference on the composed actor loss from log-probs: d loss / d log_prob bit for bit, the reduced
 * terms (pg_loss, kl_loss) within 1 ulp, their float32 composition (loss) within 2 ulp; cold, then after a hot
 * warm-up of 2*10^4 calls.
 */
@TestMethodOrder(MethodOrderer.OrderAnnotation.class)
class ActorParityTest {
    private static final Engine ENGINE = Engines.preferred();
    private static final Engine REF = new ReferenceEngine();

    static Stream<Arguments> cases() {
        final String[] kls = {null, "k1", "abs", "k2", "low_var_kl", "k1+", "low_var_kl+"};
        final int[] sizes = {1, 9, 33, 257, 4099};
        return Stream.of(AggMode.values()).flatMap(m -> Stream.of(kls).flatMap(k -> java.util.stream.IntStream
            .of(sizes).mapToObj(n -> Arguments.of(m, k, n))));
    }

    static void assertParity(final AggMode mode, final String kl, final int n, final long seed, final String phase) {
        final boolean padded = (seed & 1) == 0;
        final ActorData.Inputs in = ActorData.inputs(seed, n, padded, false);
        LossSpec spec = ActorData.spec(mode, kl, 0.02, 0.5);
        if (!padded && mode == AggMode.SEQ_MEAN_TOKEN_SUM_NORM) {
            spec = spec.toBuilder().lossScaleFactor(n).build();
        }
        final int len = in.lp().length;
        try (TokenBatch batch = in.batch();
             OffHeapArray g1 = OffHeapArray.allocate(ElementType.F32, len);
             OffHeapArray g2 = OffHeapArray.allocate(ElementType.F32, len)) {
            final ActorLossResult a = new ActorLossResult();
            final ActorLossResult b = new ActorLossResult();
            ENGINE.actorLoss(spec, batch, g1, a);
            REF.actorLoss(spec, batch, g2, b);
            final String what = String.format("%s seed %d %s %s N=%d", phase, seed, mode, kl, len);
            for (int i = 0; i < len; i++) {
                assertThat(KlData.same(g1.getFloat(i), g2.getFloat(i))).as("%s grad[%d]: %s vs %s", what, i,
                    g1.getFloat(i), g2.getFloat(i)).isTrue();
            }
            assertResults(what, a, b);
        }
    }

    /**
     * Engine ({@code a}) vs reference ({@code b}): the reduced terms (pg_loss, kl_loss, the entropy's aggregate)
     * within 1 ulp, their float32 composition within 2, every metric within 2 ulp of its float value.
     */
    static void assertResults(final String what, final ActorLossResult a, final ActorLossResult b) {
        assertUlps(what + " pg_loss", a.policy().pgLoss(), b.policy().pgLoss(), 1);
        assertThat(a.hasKl()).as(what + " has kl").isEqualTo(b.hasKl());
        if (b.hasKl()) {
            assertUlps(what + " kl_loss", a.klLoss(), b.klLoss(), 1);
        }
        assertThat(a.hasEntropy()).as(what + " has entropy").isEqualTo(b.hasEntropy());
        if (b.hasEntropy()) {
            assertUlps(what + " entropy", a.entropyAgg(), b.entropyAgg(), 1);
        }
        assertUlps(what + " loss", a.loss(), b.loss(), 2);
        final Map<String, Double> ma = a.metrics();
        final Map<String, Double> mb = b.metrics();
        assertThat(ma.keySet()).as(what).isEqualTo(mb.keySet());
        for (final String key : ma.keySet()) {
            assertUlps(what + " " + key, ma.get(key).floatValue(), mb.get(key).floatValue(), 2);
        }
    }

    static void assertUlps(final String what, final float x, final float y, final int ulps) {
        if (KlData.same(x, y)) {
            return;
        }
        assertThat(Math.abs(x - y)).as("%s: %s vs %s", what, x, y).isLessThanOrEqualTo(ulps * Math.ulp(Math.max(
            Math.abs(x), Math.abs(y))));
    }

    @Order(1)
    @ParameterizedTest
    @MethodSource("cases")
    void coldParity(final AggMode mode, final String kl, final int n) {
        assertParity(mode, kl, n, 3L * n + mode.ordinal(), "cold");
    }

    @Order(2)
    @Test
    void warmUp() {
        final ActorData.Inputs in = ActorData.inputs(5, 45, true, false);
        final LossSpec[] specs = {ActorData.spec(AggMode.TOKEN_MEAN, "low_var_kl", 0.01, 0.5),
            ActorData.spec(AggMode.SEQ_MEAN_TOKEN_MEAN, "k1+", 0.1, 1), ActorData.spec(AggMode.TOKEN_MEAN, null, 0,
            0.25)};
        try (TokenBatch batch = in.batch(); OffHeapArray g = OffHeapArray.allocate(ElementType.F32, 45)) {
            final ActorLossResult out = new ActorLossResult();
            double sink = 0;
            for (int c = 0; c < 20_000; c++) {
                ENGINE.actorLoss(specs[c % specs.length], batch, g, out);
                sink += out.loss();
            }
            assertThat(Double.isNaN(sink)).isFalse();
        }
    }

    @Order(3)
    @ParameterizedTest
    @MethodSource("cases")
    void hotParity(final AggMode mode, final String kl, final int n) {
        assertParity(mode, kl, n, 3L * n + mode.ordinal(), "hot");
        assertParity(mode, kl, n, 11L * n + mode.ordinal() + 1, "hot");
    }
}
