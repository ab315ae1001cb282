package io.rlvec.actor;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import java.util.List;
import java.util.Map;
import java.util.stream.Stream;

import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.Arguments;
import org.junit.jupiter.params.provider.MethodSource;

import io.rlvec.ActorComposition;
import io.rlvec.ActorLossResult;
import io.rlvec.AggMode;
import io.rlvec.Column;
import io.rlvec.ElementType;
import io.rlvec.Engine;
import io.rlvec.KlPenalty;
import io.rlvec.LossSpec;
import io.rlvec.OffHeapArray;
import io.rlvec.PolicyLossResult;
import io.rlvec.TokenBatch;
import io.rlvec.kl.KlData;
import io.rlvec.testing.Safetensors;

/**
 * The behaviour of {@link Engine#actorLoss(LossSpec, TokenBatch, OffHeapArray, ActorLossResult)} on every engine:
 * verl's golden compositions, finite differences of the whole composed loss, the composition identities,
 * masked garbage, validation.
 */
public abstract class ActorLossContract {

    /** @return the engine under test. */
    protected abstract Engine engine();

    static List<String> goldenFiles() {
        return Safetensors.list("/golden/actor").stream().filter(f -> f.startsWith("actor_lp_")).toList();
    }

    /** @return the batch and spec of a golden actor case (padded (B, T); ragged = mask zeros). */
    public static LossSpec goldenSpec(final Safetensors st) {
        return LossSpec.builder().lossAggMode(AggMode.fromVerl(st.meta("param.loss_agg_mode")))
            .clipRatio(Double.parseDouble(st.meta("param.clip_ratio")))
            .clipRatioLow(Double.parseDouble(st.meta("param.clip_ratio_low")))
            .clipRatioHigh(Double.parseDouble(st.meta("param.clip_ratio_high")))
            .clipRatioC(Double.parseDouble(st.meta("param.clip_ratio_c")))
            .entropyCoeff(Double.parseDouble(st.meta("param.entropy_coeff")))
            .useKlLoss(true).klLossType(KlPenalty.fromVerl(st.meta("param.kl_loss_type")))
            .klLossCoef(Double.parseDouble(st.meta("param.kl_loss_coef")))
            .temperature(st.meta("param.temperature") == null ? 1.0 : Double.parseDouble(st.meta("param.temperature")))
            .microBatchScale(Double.parseDouble(st.meta("param.loss_scale_factor"))).build();
    }

    /** @return relative error, guarded near 0. */
    public static double rel(final double ours, final double gold) {
        return Math.abs(ours - gold) / Math.max(Math.abs(gold), 1e-30);
    }

    @Test
    void goldenSetIsComplete() {
        assertThat(goldenFiles()).hasSize(4);
    }

    /** dp_actor's composition from log-probs: pg_loss, kl_loss, loss relative 1e-5, grad 1e-5 absolute. */
    @ParameterizedTest
    @MethodSource("goldenFiles")
    void matchesVerlGolden(final String file) {
        final Safetensors st = Safetensors.load("/golden/actor/" + file);
        final int[] shape = st.tensor("in.log_prob").shape();
        final int n = shape[0] * shape[1];
        final LossSpec spec = goldenSpec(st);
        try (TokenBatch batch = TokenBatch.padded(shape[0], shape[1]).column(Column.LOG_PROB, st.floats("in.log_prob"))
                 .column(Column.OLD_LOG_PROB, st.floats("in.old_log_prob"))
                 .column(Column.REF_LOG_PROB, st.floats("in.ref_log_prob"))
                 .column(Column.ADVANTAGES, st.floats("in.advantages"))
                 .column(Column.RESPONSE_MASK, st.floats("in.response_mask")).build();
             OffHeapArray grad = OffHeapArray.allocate(ElementType.F32, n)) {
            final ActorLossResult out = new ActorLossResult();
            engine().actorLoss(spec, batch, grad, out);
            assertThat(rel(out.pgLoss(), st.scalar("out.pg_loss"))).as("%s pg_loss %s vs %s", file, out.pgLoss(),
                st.scalar("out.pg_loss")).isLessThanOrEqualTo(1e-5);
            assertThat(rel(out.klLoss(), st.scalar("out.kl_loss"))).as("%s kl_loss %s vs %s", file, out.klLoss(),
                st.scalar("out.kl_loss")).isLessThanOrEqualTo(1e-5);
            assertThat(rel(out.loss(), st.scalar("out.loss"))).as("%s loss %s vs %s", file, out.loss(),
                st.scalar("out.loss")).isLessThanOrEqualTo(1e-5);
            final double[] gold = st.doubles("out.grad_log_prob");
            for (int i = 0; i < n; i++) {
                assertThat(Math.abs(grad.getFloat(i) - gold[i])).as("%s grad[%d] %s vs %s", file, i, grad.getFloat(i),
                    gold[i]).isLessThanOrEqualTo(1e-5);
            }
        }
    }

    static Stream<Arguments> fdCases() {
        final String[] kls = {null, "k1", "abs", "k2", "low_var_kl", "k3+", "abs+"};
        return Stream.of(AggMode.values()).flatMap(m -> Stream.of(kls).flatMap(k -> Stream.of(
            Arguments.of(m, k, true, 100L + m.ordinal() * 10 + (k == null ? 0 : k.length())),
            Arguments.of(m, k, false, 200L + m.ordinal() * 10 + (k == null ? 0 : k.length())))));
    }

    /**
     * d loss / d log_prob against central differences of a double model of the whole composition (PPO-clip,
     * agg_loss, KL loss * coef, * micro_batch_scale), at tokens whose branches are the same at lp +- h.
     */
    @ParameterizedTest
    @MethodSource("fdCases")
    void gradientMatchesFiniteDifferences(final AggMode mode, final String kl, final boolean padded, final long seed) {
        final ActorData.Inputs in = ActorData.inputs(seed, 61, padded, true);
        LossSpec spec = ActorData.spec(mode, kl, 0.3, 0.25);
        if (!padded && mode == AggMode.SEQ_MEAN_TOKEN_SUM_NORM) {
            spec = spec.toBuilder().lossScaleFactor(40).build();
        }
        final int n = in.lp().length;
        try (TokenBatch batch = in.batch(); OffHeapArray grad = OffHeapArray.allocate(ElementType.F32, n)) {
            final ActorLossResult out = new ActorLossResult();
            engine().actorLoss(spec, batch, grad, out);
            final double[] lp = new double[n];
            for (int i = 0; i < n; i++) {
                lp[i] = in.lp()[i];
            }
            final double model = ActorData.model(spec, in, lp);
            assertThat(Math.abs(out.loss() - model)).as("seed %d %s %s loss %s vs model %s", seed, mode, kl,
                out.loss(), model).isLessThanOrEqualTo(1e-6 + 1e-5 * Math.abs(model));
            final double h = 1e-4;
            int checked = 0;
            final KlPenalty.Estimator est = kl == null ? null
                : (spec.klLossType().straightThrough() ? KlPenalty.Estimator.K2 : spec.klLossType().estimator());
            for (int t = 0; t < n; t++) {
                if (in.mask()[t] == 0f) {
                    assertThat(Float.floatToRawIntBits(grad.getFloat(t))).as("seed %d masked grad[%d]", seed, t)
                        .isZero();
                    continue;
                }
                final double x = lp[t];
                final double o = in.old()[t];
                final double a = in.adv()[t];
                final int reg = ActorData.pgRegion(spec, x, o, a);
                if (ActorData.pgRegion(spec, x - h, o, a) != reg || ActorData.pgRegion(spec, x + h, o, a) != reg) {
                    continue;
                }
                if (est != null) {
                    final int kr = KlData.region(est, x, in.ref()[t]);
                    if (KlData.region(est, x - h, in.ref()[t]) != kr || KlData.region(est, x + h, in.ref()[t]) != kr) {
                        continue;
                    }
                }
                lp[t] = x + h;
                final double fp = ActorData.modelForGradient(spec, in, lp);
                lp[t] = x - h;
                final double fm = ActorData.modelForGradient(spec, in, lp);
                lp[t] = x;
                final double fd = (fp - fm) / (2 * h);
                assertThat(Math.abs(grad.getFloat(t) - fd)).as("seed %d %s %s padded=%s grad[%d] %s vs fd %s", seed,
                    mode, kl, padded, t, grad.getFloat(t), fd).isLessThanOrEqualTo(1e-8 + 1e-4 * Math.abs(fd));
                checked++;
            }
            assertThat(checked).as("seed %d tokens checked", seed).isGreaterThan(20);
        }
    }

    /** The composition in float32 and the metrics dp_actor reports, under verl's names. */
    @Test
    void compositionAndMetrics() {
        final ActorData.Inputs in = ActorData.inputs(42, 150, true, false);
        final LossSpec spec = ActorData.spec(AggMode.TOKEN_MEAN, "low_var_kl", 0.05, 0.5);
        try (TokenBatch batch = in.batch()) {
            final ActorLossResult out = new ActorLossResult();
            engine().actorLoss(spec, batch, null, out);
            final float pg = out.policy().pgLoss();
            final float kl = out.kl().loss();
            assertThat(out.hasKl()).isTrue();
            assertThat(out.hasEntropy()).isFalse();
            assertThat(out.pgLoss()).isEqualTo(pg);
            assertThat(out.policyLoss()).isEqualTo(pg + kl * 0.05f);
            assertThat(out.loss()).isEqualTo((pg + kl * 0.05f) * 0.5f);
            final Map<String, Double> m = out.metrics();
            assertThat(m).containsKeys("actor/pg_loss", "actor/pg_clipfrac", "actor/ppo_kl", "actor/pg_clipfrac_lower",
                "actor/kl_loss", "actor/kl_coef").doesNotContainKey("actor/entropy");
            assertThat(m.get("actor/pg_loss")).isEqualTo((double) pg * 0.5);
            assertThat(m.get("actor/kl_loss")).isEqualTo((double) kl * 0.5);
            assertThat(m.get("actor/kl_coef")).isEqualTo(0.05);
            assertThat(m.get("actor/ppo_kl")).isEqualTo((double) out.policy().ppoKl());
            assertThat(Double.isFinite(out.loss())).isTrue();
        }
    }

    /**
     * The gradient is, bit for bit, micro_batch_scale * d pg / d lp + w_kl * d kld / d lp, from the engine's own
     * policy-loss and KL-penalty gradients and {@link ActorComposition}'s weights.
     */
    @ParameterizedTest
    @MethodSource("fdCases")
    void gradientIsTheDocumentedCombination(final AggMode mode, final String kl, final boolean padded,
                                            final long seed) {
        final ActorData.Inputs in = ActorData.inputs(seed + 7, 77, padded, false);
        LossSpec spec = ActorData.spec(mode, kl, 0.01, 0.125);
        if (!padded && mode == AggMode.SEQ_MEAN_TOKEN_SUM_NORM) {
            spec = spec.toBuilder().lossScaleFactor(64).build();
        }
        final int n = in.lp().length;
        try (TokenBatch batch = in.batch();
             OffHeapArray grad = OffHeapArray.allocate(ElementType.F32, n);
             OffHeapArray pgGrad = OffHeapArray.allocate(ElementType.F32, n);
             OffHeapArray kld = OffHeapArray.allocate(ElementType.F32, n);
             OffHeapArray klGrad = OffHeapArray.allocate(ElementType.F32, n)) {
            final ActorLossResult out = new ActorLossResult();
            engine().actorLoss(spec, batch, grad, out);
            final PolicyLossResult pg = new PolicyLossResult();
            engine().policyLoss(spec, batch, pgGrad, pg);
            assertThat(out.policy().pgLoss()).isEqualTo(pg.pgLoss());
            if (kl != null) {
                engine().klPenalty(spec.klLossType(), batch, kld, klGrad);
            }
            final float s = ActorComposition.pgScale(spec);
            for (int b = 0; b < batch.numSequences(); b++) {
                long c = 0;
                for (int t = batch.offset(b); t < batch.offset(b + 1); t++) {
                    c += in.mask()[t] != 0f ? 1 : 0;
                }
                final float w = ActorComposition.klTokenWeight(spec, pg.denominator(), c);
                for (int t = batch.offset(b); t < batch.offset(b + 1); t++) {
                    final float g = pgGrad.getFloat(t) * s;
                    final float expect = kl == null ? g : g + klGrad.getFloat(t) * w;
                    assertThat(KlData.same(grad.getFloat(t), expect)).as("seed %d %s %s grad[%d] %s vs %s", seed, mode,
                        kl, t, grad.getFloat(t), expect).isTrue();
                }
            }
        }
    }

    /** Masked tokens with NaN/Inf in every column change nothing: loss as on clean data, gradient 0 there. */
    @Test
    void maskedGarbageNeverLeaks() {
        final ActorData.Inputs dirty = ActorData.inputs(8, 203, false, false);
        final float[] lp = dirty.lp().clone();
        final float[] old = dirty.old().clone();
        final float[] ref = dirty.ref().clone();
        final float[] adv = dirty.adv().clone();
        for (int i = 0; i < lp.length; i++) {
            if (dirty.mask()[i] == 0f) {
                lp[i] = -1f;
                old[i] = -1f;
                ref[i] = -1f;
                adv[i] = 1f;
            }
        }
        final ActorData.Inputs clean = new ActorData.Inputs(dirty.offsets(), 0, lp, old, ref, adv, dirty.mask());
        final LossSpec spec = ActorData.spec(AggMode.SEQ_MEAN_TOKEN_MEAN, "k3+", 0.1, 1.0);
        final int n = lp.length;
        try (TokenBatch d = dirty.batch(); TokenBatch c = clean.batch();
             OffHeapArray gd = OffHeapArray.allocate(ElementType.F32, n);
             OffHeapArray gc = OffHeapArray.allocate(ElementType.F32, n)) {
            final ActorLossResult od = new ActorLossResult();
            final ActorLossResult oc = new ActorLossResult();
            gd.fill(Float.NaN);
            engine().actorLoss(spec, d, gd, od);
            engine().actorLoss(spec, c, gc, oc);
            assertThat(od.loss()).isEqualTo(oc.loss());
            assertThat(od.metrics()).isEqualTo(oc.metrics());
            for (int i = 0; i < n; i++) {
                if (dirty.mask()[i] == 0f) {
                    assertThat(Float.floatToRawIntBits(gd.getFloat(i))).as("masked grad[%d]", i).isZero();
                } else {
                    assertThat(gd.getFloat(i)).as("grad[%d]", i).isEqualTo(gc.getFloat(i));
                }
            }
        }
    }

    @Test
    void withoutKlOnlyThePolicyLossScaled() {
        final ActorData.Inputs in = ActorData.inputs(12, 90, true, false);
        final LossSpec spec = ActorData.spec(AggMode.TOKEN_MEAN, null, 0, 0.25);
        try (TokenBatch batch = in.batch()) {
            final ActorLossResult out = new ActorLossResult();
            engine().actorLoss(spec, batch, null, out);
            assertThat(out.hasKl()).isFalse();
            assertThat(out.klLoss()).isNaN();
            assertThat(out.metrics()).doesNotContainKeys("actor/kl_loss", "actor/kl_coef");
            assertThat(out.loss()).isEqualTo(out.policy().pgLoss() * 0.25f);
        }
    }

    @Test
    void validation() {
        final ActorData.Inputs in = ActorData.inputs(13, 20, true, false);
        try (TokenBatch batch = in.batch();
             TokenBatch noRef = TokenBatch.padded(1, 4).column(Column.LOG_PROB, new float[4])
                 .column(Column.OLD_LOG_PROB, new float[4]).column(Column.ADVANTAGES, new float[4]).build();
             OffHeapArray shortGrad = OffHeapArray.allocate(ElementType.F32, 3)) {
            final Engine e = engine();
            final ActorLossResult out = new ActorLossResult();
            final LossSpec kl = ActorData.spec(AggMode.TOKEN_MEAN, "k3", 0.1, 1);
            assertThatThrownBy(() -> e.actorLoss(kl.toBuilder().entropyCoeff(0.01).build(), batch, null, out))
                .isInstanceOf(IllegalArgumentException.class).hasMessageContaining("entropy needs logits");
            assertThatThrownBy(() -> e.actorLoss(kl.toBuilder().calculateEntropy(true).build(), batch, null, out))
                .isInstanceOf(IllegalArgumentException.class).hasMessageContaining("entropy needs logits");
            assertThatThrownBy(() -> e.actorLoss(kl.toBuilder().klLossType(KlPenalty.fromVerl("full")).build(), batch,
                null, out)).isInstanceOf(IllegalArgumentException.class).hasMessageContaining("kl_loss_type=full");
            assertThatThrownBy(() -> e.actorLoss(kl, noRef, null, out)).isInstanceOf(IllegalArgumentException.class)
                .hasMessageContaining("ref_log_prob");
            assertThatThrownBy(() -> e.actorLoss(kl, noRef, shortGrad, out))
                .isInstanceOf(IllegalArgumentException.class).hasMessageContaining("gradLogProb");
            assertThatThrownBy(() -> e.actorLoss(kl, batch, null, null)).isInstanceOf(NullPointerException.class);
            // without use_kl_loss the reference column is not needed
            e.actorLoss(ActorData.spec(AggMode.TOKEN_MEAN, null, 0, 1), noRef, null, out);
            assertThat(out.hasKl()).isFalse();
        }
    }
}
