package io.rlvec.actor;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import java.util.List;
import java.util.SplittableRandom;
import java.util.stream.Stream;

import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.Arguments;
import org.junit.jupiter.params.provider.MethodSource;

import io.rlvec.ActorLossResult;
import io.rlvec.AggMode;
import io.rlvec.Column;
import io.rlvec.ElementType;
import io.rlvec.Engine;
import io.rlvec.KlPenalty;
import io.rlvec.Logits;
import io.rlvec.LossSpec;
import io.rlvec.OffHeapArray;
import io.rlvec.TokenBatch;
import io.rlvec.kl.KlData;
import io.rlvec.testing.Safetensors;

/**
 * The behaviour of the actor loss from logits
 * ({@link Engine#actorLoss(LossSpec, TokenBatch, Logits, OffHeapArray, Logits, OffHeapArray, OffHeapArray,
 * ActorLossResult)}) on every engine: verl's end-to-end golden cases, finite differences of the whole composed
 * loss w.r.t. the raw logits (entropy bonus and full KL included), agreement with the log-prob path, masked rows,
 * in-place gradients, validation.
 */
public abstract class ActorLogitsContract {

    /** @return the engine under test. */
    protected abstract Engine engine();

    static List<String> goldenFiles() {
        return Safetensors.list("/golden/actor").stream().filter(f -> f.startsWith("actor_e2e_")).toList();
    }

    @Test
    void goldenSetIsComplete() {
        assertThat(goldenFiles()).hasSize(2);
    }

    /**
     * dp_actor from logits (logits / T, log-probs, entropy, PPO-clip, entropy bonus, KL loss, micro-batch scale,
     * backward to the raw logits): every scalar relative 1e-5, log_prob and entropy per token 1e-5, gradient
     * w.r.t. logits 1e-5 absolute.
     */
    @ParameterizedTest
    @MethodSource("goldenFiles")
    void matchesVerlGolden(final String file) {
        final Safetensors st = Safetensors.load("/golden/actor/" + file);
        final int[] shape = st.tensor("in.logits").shape();
        final int b = shape[0];
        final int t = shape[1];
        final int v = shape[2];
        final int n = b * t;
        final LossSpec spec = ActorLossContract.goldenSpec(st);
        try (TokenBatch batch = TokenBatch.padded(b, t).column(Column.OLD_LOG_PROB, st.floats("in.old_log_prob"))
                 .column(Column.REF_LOG_PROB, st.floats("in.ref_log_prob"))
                 .column(Column.ADVANTAGES, st.floats("in.advantages"))
                 .column(Column.RESPONSE_MASK, st.floats("in.response_mask")).build();
             OffHeapArray data = OffHeapArray.of(st.floats("in.logits"));
             OffHeapArray labels = OffHeapArray.ofInts(st.ints("in.responses"));
             OffHeapArray grad = OffHeapArray.allocate(ElementType.F32, (long) n * v);
             OffHeapArray lp = OffHeapArray.allocate(ElementType.F32, n);
             OffHeapArray ent = OffHeapArray.allocate(ElementType.F32, n)) {
            final Logits logits = Logits.of(data, n, v);
            final ActorLossResult out = new ActorLossResult();
            engine().actorLoss(spec, batch, logits, labels, null, null, grad, out);
            scalar(file, "pg_loss", out.policy().pgLoss(), st.scalar("out.pg_loss"));
            scalar(file, "pg_loss_metric", out.pgLossMetric(), st.scalar("out.pg_loss_metric"));
            scalar(file, "actor/pg_loss", out.metrics().get("actor/pg_loss"), st.scalar("out.pg_loss_metric"));
            scalar(file, "kl_loss", out.klLoss(), st.scalar("out.kl_loss"));
            scalar(file, "policy_loss", out.policyLoss(), st.scalar("out.policy_loss"));
            scalar(file, "loss", out.loss(), st.scalar("out.loss"));
            if (st.has("out.entropy_agg")) {
                scalar(file, "entropy_agg", out.entropyAgg(), st.scalar("out.entropy_agg"));
                scalar(file, "actor/entropy", out.metrics().get("actor/entropy"), st.scalar("out.entropy_agg"));
            } else {
                assertThat(out.hasEntropy()).as(file).isFalse();
            }
            engine().logProbs(logits, labels, spec.temperature(), batch.mask(), lp, ent);
            final double[] goldLp = st.doubles("out.log_prob");
            final double[] goldEnt = st.has("out.entropy") ? st.doubles("out.entropy") : null;
            final float[] mask = batch.mask().toFloatArray();
            for (int i = 0; i < n; i++) {
                if (mask[i] == 0f) {
                    continue;
                }
                assertThat(Math.abs(lp.getFloat(i) - goldLp[i])).as("%s log_prob[%d]", file, i)
                    .isLessThanOrEqualTo(1e-5 * Math.max(1, Math.abs(goldLp[i])));
                if (goldEnt != null) {
                    assertThat(Math.abs(ent.getFloat(i) - goldEnt[i])).as("%s entropy[%d]", file, i)
                        .isLessThanOrEqualTo(1e-5 * Math.max(1, Math.abs(goldEnt[i])));
                }
            }
            final double[] gold = st.doubles("out.grad_logits");
            double worst = 0;
            for (int i = 0; i < n * v; i++) {
                final double err = Math.abs(grad.getFloat(i) - gold[i]);
                worst = Math.max(worst, err);
                assertThat(err).as("%s grad_logits[%d] %s vs %s", file, i, grad.getFloat(i), gold[i])
                    .isLessThanOrEqualTo(1e-5);
            }
        }
    }

    private static void scalar(final String file, final String what, final double ours, final double gold) {
        assertThat(ActorLossContract.rel(ours, gold)).as("%s %s: ours %s, verl %s", file, what, ours, gold)
            .isLessThanOrEqualTo(1e-5);
    }

    /** Random logits rows, labels, and the batch columns for a small logits case. */
    record Case(ActorData.Inputs in, float[] z, float[] zr, int[] labels, int v) {
    }

    static Case smallCase(final long seed, final int n, final int v, final boolean padded) {
        final ActorData.Inputs in = ActorData.inputs(seed, n, padded, true);
        final int rows = in.lp().length;
        final SplittableRandom r = new SplittableRandom(seed * 31);
        final float[] z = new float[rows * v];
        final float[] zr = new float[rows * v];
        final int[] labels = new int[rows];
        for (int i = 0; i < rows; i++) {
            labels[i] = r.nextInt(v);
            for (int j = 0; j < v; j++) {
                z[i * v + j] = in.mask()[i] == 0f ? KlData.garbage(r) : (float) (2 * r.nextGaussian());
                zr[i * v + j] = in.mask()[i] == 0f ? KlData.garbage(r) : z[i * v + j] + (float) (0.5 * r.nextGaussian());
            }
        }
        return new Case(in, z, zr, labels, v);
    }

    static double[] logSoftmax(final double[] z, final int row, final int v, final double t) {
        double m = Double.NEGATIVE_INFINITY;
        for (int j = 0; j < v; j++) {
            m = Math.max(m, z[row * v + j] / t);
        }
        double s = 0;
        for (int j = 0; j < v; j++) {
            s += Math.exp(z[row * v + j] / t - m);
        }
        final double lse = m + Math.log(s);
        final double[] out = new double[v];
        for (int j = 0; j < v; j++) {
            out[j] = z[row * v + j] / t - lse;
        }
        return out;
    }

    /**
     * The composed loss in double as a function of the raw logits; with {@code gradientTarget} the straight-through
     * variants use k2's value (whose gradient they take).
     */
    static double model(final LossSpec spec, final Case c, final double[] z, final boolean gradientTarget) {
        final int rows = c.in().lp().length;
        final double t = spec.temperature();
        final double[] pg = new double[rows];
        final double[] ent = new double[rows];
        final double[] kl = new double[rows];
        final double[] zr = new double[c.zr().length];
        for (int i = 0; i < zr.length; i++) {
            zr[i] = c.zr()[i];
        }
        final KlPenalty.Estimator est = !spec.useKlLoss() ? null
            : (gradientTarget && spec.klLossType().straightThrough() ? KlPenalty.Estimator.K2
                : spec.klLossType().estimator());
        for (int i = 0; i < rows; i++) {
            if (c.in().mask()[i] == 0f) {
                continue;
            }
            final double[] ls = logSoftmax(z, i, c.v(), t);
            final double lp = ls[c.labels()[i]];
            pg[i] = ActorData.pgToken(spec, lp, c.in().old()[i], c.in().adv()[i]);
            double h = 0;
            for (final double l : ls) {
                h -= Math.exp(l) * l;
            }
            ent[i] = h;
            if (est == KlPenalty.Estimator.FULL) {
                final double[] lq = logSoftmax(zr, i, c.v(), t);
                for (int j = 0; j < c.v(); j++) {
                    kl[i] += Math.exp(ls[j]) * (ls[j] - lq[j]);
                }
            } else if (est != null) {
                kl[i] = KlData.model(est, lp, c.in().ref()[i]);
            }
        }
        double loss = ActorData.agg(spec, c.in(), pg);
        if (spec.entropyNeeded()) {
            loss -= spec.entropyCoeff() * ActorData.agg(spec, c.in(), ent);
        }
        if (est != null) {
            loss += spec.klLossCoef() * ActorData.agg(spec, c.in(), kl);
        }
        return loss * spec.microBatchScale();
    }

    static Stream<Arguments> fdCases() {
        return Stream.of(
            Arguments.of(AggMode.TOKEN_MEAN, "low_var_kl", 0.01, 0.7, true, 1L),
            Arguments.of(AggMode.TOKEN_MEAN, "full", 0.0, 1.0, true, 2L),
            Arguments.of(AggMode.SEQ_MEAN_TOKEN_MEAN, "full", 0.05, 0.7, false, 3L),
            Arguments.of(AggMode.SEQ_MEAN_TOKEN_SUM, "k1+", 0.02, 1.3, true, 4L),
            Arguments.of(AggMode.SEQ_MEAN_TOKEN_SUM_NORM, null, 0.03, 1.0, true, 5L),
            Arguments.of(AggMode.SEQ_MEAN_TOKEN_MEAN, "abs", 0.0, 0.9, false, 6L));
    }

    /**
     * d loss / d logits against central differences of a double model of the whole composition, on the label
     * logit and a few others of each valid row, where the PPO branch is the same at lp +- 2h/T.
     */
    @ParameterizedTest
    @MethodSource("fdCases")
    void gradientMatchesFiniteDifferences(final AggMode mode, final String kl, final double entropyCoeff,
                                          final double temperature, final boolean padded, final long seed) {
        final Case c = smallCase(seed, 13, 29, padded);
        LossSpec spec = ActorData.spec(mode, kl, 0.2, 0.5).toBuilder().entropyCoeff(entropyCoeff)
            .temperature(temperature).build();
        if (!padded && mode == AggMode.SEQ_MEAN_TOKEN_SUM_NORM) {
            spec = spec.toBuilder().lossScaleFactor(10).build();
        }
        final int rows = c.in().lp().length;
        final boolean full = kl != null && kl.equals("full");
        try (TokenBatch batch = c.in().batch();
             OffHeapArray z = OffHeapArray.of(c.z());
             OffHeapArray zr = OffHeapArray.of(c.zr());
             OffHeapArray labels = OffHeapArray.ofInts(c.labels());
             OffHeapArray grad = OffHeapArray.allocate(ElementType.F32, c.z().length)) {
            final ActorLossResult out = new ActorLossResult();
            grad.fill(Float.NaN);
            engine().actorLoss(spec, batch, Logits.of(z, rows, c.v()), labels, full ? Logits.of(zr, rows, c.v()) : null,
                null, grad, out);
            final double[] zd = new double[c.z().length];
            for (int i = 0; i < zd.length; i++) {
                zd[i] = c.z()[i];
            }
            final double model = model(spec, c, zd, false);
            assertThat(Math.abs(out.loss() - model)).as("seed %d loss %s vs model %s", seed, out.loss(), model)
                .isLessThanOrEqualTo(1e-6 + 1e-5 * Math.abs(model));
            assertThat(out.hasEntropy()).isEqualTo(entropyCoeff != 0);
            final double h = 1e-4;
            int checked = 0;
            for (int i = 0; i < rows; i++) {
                if (c.in().mask()[i] == 0f) {
                    for (int j = 0; j < c.v(); j++) {
                        assertThat(Float.floatToRawIntBits(grad.getFloat((long) i * c.v() + j)))
                            .as("seed %d masked row %d", seed, i).isZero();
                    }
                    continue;
                }
                final double lp = logSoftmax(zd, i, c.v(), temperature)[c.labels()[i]];
                final double d = 2 * h / temperature;
                final int reg = ActorData.pgRegion(spec, lp, c.in().old()[i], c.in().adv()[i]);
                if (ActorData.pgRegion(spec, lp - d, c.in().old()[i], c.in().adv()[i]) != reg
                    || ActorData.pgRegion(spec, lp + d, c.in().old()[i], c.in().adv()[i]) != reg) {
                    continue;
                }
                if (kl != null && !full) {
                    final KlPenalty.Estimator est = spec.klLossType().straightThrough() ? KlPenalty.Estimator.K2
                        : spec.klLossType().estimator();
                    final double ref = c.in().ref()[i];
                    final int kr = KlData.region(est, lp, ref);
                    if (KlData.region(est, lp - d, ref) != kr || KlData.region(est, lp + d, ref) != kr) {
                        continue;
                    }
                }
                for (final int j : new int[] {c.labels()[i], 0, c.v() / 2, c.v() - 1}) {
                    final int at = i * c.v() + j;
                    final double keep = zd[at];
                    zd[at] = keep + h;
                    final double fp = model(spec, c, zd, true);
                    zd[at] = keep - h;
                    final double fm = model(spec, c, zd, true);
                    zd[at] = keep;
                    final double fd = (fp - fm) / (2 * h);
                    assertThat(Math.abs(grad.getFloat(at) - fd)).as("seed %d %s %s row %d logit %d: %s vs fd %s",
                        seed, mode, kl, i, j, grad.getFloat(at), fd).isLessThanOrEqualTo(2e-7 + 1e-3 * Math.abs(fd));
                    checked++;
                }
            }
            assertThat(checked).as("seed %d entries checked", seed).isGreaterThan(8);
        }
    }

    /**
     * Without entropy and full KL, the logits path equals the log-prob path on the engine's own log-probs, with and
     * without d loss / d logits.
     */
    @Test
    void agreesWithTheLogProbPath() {
        final Case c = smallCase(21, 40, 37, false);
        final int rows = c.in().lp().length;
        final LossSpec spec = ActorData.spec(AggMode.SEQ_MEAN_TOKEN_MEAN, "low_var_kl+", 0.1, 0.25).toBuilder()
            .temperature(0.8).build();
        try (TokenBatch batch = c.in().batch();
             OffHeapArray z = OffHeapArray.of(c.z());
             OffHeapArray labels = OffHeapArray.ofInts(c.labels());
             OffHeapArray lp = OffHeapArray.allocate(ElementType.F32, rows);
             OffHeapArray ent = OffHeapArray.allocate(ElementType.F32, rows);
             OffHeapArray g1 = OffHeapArray.allocate(ElementType.F32, rows);
             OffHeapArray g2 = OffHeapArray.allocate(ElementType.F32, rows);
             OffHeapArray g3 = OffHeapArray.allocate(ElementType.F32, rows);
             OffHeapArray gz = OffHeapArray.allocate(ElementType.F32, (long) rows * c.v())) {
            final Logits logits = Logits.of(z, rows, c.v());
            final ActorLossResult a = new ActorLossResult();
            // With d loss / d logits asked for too (an engine may then compute d loss / d log_prob row by row).
            final ActorLossResult a3 = new ActorLossResult();
            engine().actorLoss(spec, batch, logits, labels, null, g3, gz, a3);
            engine().actorLoss(spec, batch, logits, labels, null, g1, null, a);
            engine().logProbs(logits, labels, 0.8, batch.mask(), lp, ent);
            final float[] mask = batch.mask().toFloatArray();
            final float[] lpv = lp.toFloatArray();
            try (TokenBatch withLp = TokenBatch.withOffsets(c.in().offsets()).column(Column.LOG_PROB, lpv)
                     .column(Column.OLD_LOG_PROB, c.in().old()).column(Column.REF_LOG_PROB, c.in().ref())
                     .column(Column.ADVANTAGES, c.in().adv()).column(Column.RESPONSE_MASK, mask).build()) {
                final ActorLossResult b = new ActorLossResult();
                engine().actorLoss(spec, withLp, g2, b);
                assertThat(a.loss()).isEqualTo(b.loss());
                assertThat(a.metrics()).isEqualTo(b.metrics());
                assertThat(g1.toFloatArray()).containsExactly(g2.toFloatArray());
                assertThat(a3.loss()).isEqualTo(b.loss());
                assertThat(a3.metrics()).isEqualTo(b.metrics());
                assertThat(g3.toFloatArray()).containsExactly(g2.toFloatArray());
            }
        }
    }

    /** In place (gradLogits = the F32 logits) equals a separate buffer; forward-only gives the same loss. */
    @Test
    void inPlaceAndForwardOnly() {
        final Case c = smallCase(22, 30, 41, true);
        final int rows = c.in().lp().length;
        final LossSpec spec = ActorData.spec(AggMode.TOKEN_MEAN, "k3", 0.1, 1).toBuilder().entropyCoeff(0.01).build();
        try (TokenBatch batch = c.in().batch();
             OffHeapArray z = OffHeapArray.of(c.z());
             OffHeapArray labels = OffHeapArray.ofInts(c.labels());
             OffHeapArray grad = OffHeapArray.allocate(ElementType.F32, c.z().length)) {
            final Logits logits = Logits.of(z, rows, c.v());
            final ActorLossResult a = new ActorLossResult();
            final ActorLossResult b = new ActorLossResult();
            final ActorLossResult f = new ActorLossResult();
            engine().actorLoss(spec, batch, logits, labels, null, null, null, f);
            engine().actorLoss(spec, batch, logits, labels, null, null, grad, a);
            engine().actorLoss(spec, batch, logits, labels, null, null, z, b);
            assertThat(f.loss()).isEqualTo(a.loss()).isEqualTo(b.loss());
            assertThat(f.metrics()).isEqualTo(a.metrics());
            assertThat(z.toFloatArray()).containsExactly(grad.toFloatArray());
            assertThat(a.metrics()).containsKey("actor/entropy");
            assertThat(a.pgLoss()).isEqualTo(a.policy().pgLoss() - a.entropyAgg() * 0.01f);
        }
    }

    @Test
    void validation() {
        final Case c = smallCase(23, 12, 10, true);
        final int rows = c.in().lp().length;
        final int[] bad = c.labels().clone();
        int masked = -1;
        int valid = -1;
        for (int i = 0; i < rows; i++) {
            if (c.in().mask()[i] == 0f) {
                masked = i;
            } else {
                valid = i;
            }
        }
        final LossSpec k3 = ActorData.spec(AggMode.TOKEN_MEAN, "k3", 0.1, 1);
        final LossSpec full = ActorData.spec(AggMode.TOKEN_MEAN, "full", 0.1, 1);
        try (TokenBatch batch = c.in().batch();
             OffHeapArray z = OffHeapArray.of(c.z());
             OffHeapArray zb = OffHeapArray.ofBf16(c.z());
             OffHeapArray labels = OffHeapArray.ofInts(c.labels());
             OffHeapArray grad = OffHeapArray.allocate(ElementType.F32, c.z().length)) {
            final Engine e = engine();
            final ActorLossResult out = new ActorLossResult();
            final Logits logits = Logits.of(z, rows, 10);
            assertThatThrownBy(() -> e.actorLoss(k3, batch, Logits.of(z, rows - 1, 10), labels, null, null, null, out))
                .isInstanceOf(IllegalArgumentException.class).hasMessageContaining("one row per token");
            bad[valid] = 10;
            try (OffHeapArray badLabels = OffHeapArray.ofInts(bad)) {
                assertThatThrownBy(() -> e.actorLoss(k3, batch, logits, badLabels, null, null, null, out))
                    .isInstanceOf(IllegalArgumentException.class).hasMessageContaining("labels[");
            }
            if (masked >= 0) {
                bad[valid] = c.labels()[valid];
                bad[masked] = -7;
                try (OffHeapArray maskedBad = OffHeapArray.ofInts(bad)) {
                    e.actorLoss(k3, batch, logits, maskedBad, null, null, grad, out);
                }
            }
            assertThatThrownBy(() -> e.actorLoss(full, batch, logits, labels, null, null, grad, out))
                .isInstanceOf(IllegalArgumentException.class).hasMessageContaining("refLogits");
            assertThatThrownBy(() -> e.actorLoss(k3, batch, logits, labels, logits, null, grad, out))
                .isInstanceOf(IllegalArgumentException.class).hasMessageContaining("only for kl_loss_type=full");
            assertThatThrownBy(() -> e.actorLoss(full, batch, logits, labels, Logits.of(zb, rows, 10), null, z, out))
                .isInstanceOf(IllegalArgumentException.class).hasMessageContaining("must not be the logits");
            assertThatThrownBy(() -> e.actorLoss(k3, batch, Logits.of(zb, rows, 10), labels, null, null, zb, out))
                .isInstanceOf(IllegalArgumentException.class).hasMessageContaining("F32");
            assertThatThrownBy(() -> e.actorLoss(k3, batch, logits, z, null, null, null, out))
                .isInstanceOf(IllegalArgumentException.class).hasMessageContaining("labels");
        }
    }
}
