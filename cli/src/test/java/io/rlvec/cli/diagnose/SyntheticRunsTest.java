package io.rlvec.cli.diagnose;

import static org.assertj.core.api.Assertions.assertThat;

import java.io.IOException;
import java.io.StringWriter;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Random;
import java.util.function.IntToDoubleFunction;

import org.junit.jupiter.api.Test;

import io.rlvec.StepMetricsWriter;

/**
 * Runs built to show one pattern each, written with the library's {@link StepMetricsWriter} and read back, and
 * healthy controls that must raise nothing above INFO.
 */
class SyntheticRunsTest {
    private static final int STEPS = 120;

    /** A run under construction: metric generators by key, over steps 1..n, with seeded noise. */
    private static final class Synth {
        private final Map<String, IntToDoubleFunction> gen = new LinkedHashMap<>();
        private final Random rnd = new Random(7);
        private final int n;

        Synth(final int n) {
            this.n = n;
        }

        Synth set(final String key, final IntToDoubleFunction f) {
            gen.put(key, f);
            return this;
        }

        double noise(final double sd) {
            return sd * rnd.nextGaussian();
        }

        /** A healthy critic-based PPO run: pg_loss noise around 0, reward rising, entropy easing, KL modest. */
        static Synth healthyPpo(final int n) {
            final Synth s = new Synth(n);
            return s.set("actor/pg_loss", i -> s.noise(0.3))
                .set("actor/pg_clipfrac", i -> 0.003 + Math.abs(s.noise(0.001)))
                .set("actor/ppo_kl", i -> 0.0005 + s.noise(0.0003))
                .set("actor/pg_clipfrac_lower", i -> 0.0)
                .set("actor/entropy", i -> 0.5 - 0.1 * i / n + s.noise(0.01))
                .set("actor/kl_loss", i -> 0.05 * i / n + Math.abs(s.noise(0.002)))
                .set("critic/score/mean", i -> 0.2 + 0.4 * i / n + s.noise(0.03))
                .set("critic/score/max", i -> 1.0)
                .set("critic/score/min", i -> 0.0)
                .set("response_length/mean", i -> 300 + s.noise(10))
                .set("response_length/max", i -> 1024)
                .set("response_length/clip_ratio", i -> Math.abs(s.noise(0.005)))
                .set("actor/grad_norm", i -> 1.0 + Math.abs(s.noise(0.1)))
                .set("critic/vf_loss", i -> 0.1 + Math.abs(s.noise(0.01)));
        }

        /** A healthy GRPO run: a small positive pg_loss, no critic metrics. */
        static Synth healthyGrpo(final int n) {
            final Synth s = healthyPpo(n);
            s.gen.remove("critic/vf_loss");
            return s.set("actor/pg_loss", i -> 0.005 + s.noise(0.003));
        }

        List<Finding> diagnose() {
            return diagnose(null);
        }

        List<Finding> diagnose(final String estimator) {
            final StringWriter text = new StringWriter();
            try (StepMetricsWriter w = new StepMetricsWriter(text)) {
                for (int i = 1; i <= n; i++) {
                    final Map<String, Double> m = new LinkedHashMap<>();
                    for (final Map.Entry<String, IntToDoubleFunction> e : gen.entrySet()) {
                        m.put(e.getKey(), e.getValue().applyAsDouble(i));
                    }
                    w.write(i, m, null);
                }
            } catch (final IOException e) {
                throw new IllegalStateException(e);
            }
            final Run run = RunReader.parse("synthetic", text.toString().lines().toList());
            final Estimator est = estimator == null ? Estimator.infer(run) : Estimator.named(estimator, "test");
            return Rules.diagnose(run, est, 0.2);
        }
    }

    private static List<Finding> alarming(final List<Finding> f) {
        return f.stream().filter(x -> x.severity() != Severity.INFO).toList();
    }

    private static Finding only(final List<Finding> f, final String rule, final Severity sev) {
        final List<Finding> hits = f.stream().filter(x -> x.rule().equals(rule) && x.severity() == sev).toList();
        assertThat(hits).as("%s %s in %s", sev, rule, f).hasSize(1);
        return hits.get(0);
    }

    @Test
    void healthyControlsRaiseNothingAlarming() {
        final List<Finding> ppo = Synth.healthyPpo(STEPS).diagnose();
        assertThat(alarming(ppo)).as("%s", ppo).isEmpty();
        assertThat(ppo).extracting(Finding::rule).contains("pg-loss-sign", "reward");
        final List<Finding> grpo = Synth.healthyGrpo(STEPS).diagnose();
        assertThat(alarming(grpo)).as("%s", grpo).isEmpty();
        for (int seed = 0; seed < 20; seed++) {
            final Synth s = Synth.healthyPpo(300);
            s.rnd.setSeed(seed);
            assertThat(alarming(s.diagnose())).as("seed %d", seed).isEmpty();
        }
    }

    @Test
    void estimatorInferredFromMetrics() {
        final Synth ppo = Synth.healthyPpo(20);
        final Synth grpo = Synth.healthyGrpo(20);
        assertThat(ppo.diagnose().stream().filter(f -> f.rule().equals("pg-loss-sign")).findFirst().orElseThrow()
            .title()).contains("(gae)");
        assertThat(grpo.diagnose().stream().filter(f -> f.rule().equals("pg-loss-sign")).findFirst().orElseThrow()
            .title()).contains("critic-free");
    }

    @Test
    void criticLaggingGivesPersistentlyNegativePgLoss() {
        final Synth s = Synth.healthyPpo(STEPS);
        s.set("actor/pg_loss", i -> i > 40 && i <= 90 ? -0.4 + s.noise(0.1) : s.noise(0.1));
        final Finding f = only(s.diagnose(), "pg-loss-sign", Severity.WARNING);
        assertThat(f.title()).contains("strongly negative with a critic");
        assertThat(f.firstStep()).isBetween(38L, 50L);
        assertThat(f.lastStep()).isBetween(82L, 92L);
        assertThat(f.reading()).contains("critic lags");
    }

    @Test
    void policyUnderperformingItsCriticGivesPersistentlyPositivePgLoss() {
        final Synth s = Synth.healthyPpo(STEPS);
        s.set("actor/pg_loss", i -> 0.3 + s.noise(0.1));
        assertThat(only(s.diagnose(), "pg-loss-sign", Severity.WARNING).title()).contains("positive with a critic");
    }

    @Test
    void theSameSmallNegativeLossReadsDifferentlyUnderEachEstimator() {
        final Synth s = Synth.healthyPpo(STEPS);
        s.set("actor/pg_loss", i -> -0.01 + s.noise(0.005));
        assertThat(only(s.diagnose("gae"), "pg-loss-sign", Severity.INFO).reading()).contains("critic");
        s.rnd.setSeed(7);
        assertThat(only(s.diagnose("grpo"), "pg-loss-sign", Severity.INFO).reading()).contains("Zero-mean");
    }

    @Test
    void grpoLossBurstIsAWarning() {
        final Synth s = Synth.healthyGrpo(STEPS);
        s.set("actor/pg_loss", i -> i >= 50 && i < 56 ? 0.5 : 0.004 + s.noise(0.003));
        final Finding f = only(s.diagnose(), "pg-loss-sign", Severity.WARNING);
        assertThat(f.title()).contains("normalised");
        assertThat(f.firstStep()).isBetween(50L, 52L);
    }

    @Test
    void splitAgainstTheAdvantagesIsAWarningAndWithThemAnInfo() {
        final Synth good = Synth.healthyGrpo(STEPS);
        good.set("actor/pos_adv_ratio_gt1", i -> 0.7).set("actor/neg_adv_ratio_gt1", i -> 0.3)
            .set("actor/pg_loss_pos_adv", i -> -0.3).set("actor/pg_loss_neg_adv", i -> 0.29);
        only(good.diagnose(), "pg-loss-split", Severity.INFO);
        final Synth bad = Synth.healthyGrpo(STEPS);
        bad.set("actor/pos_adv_ratio_gt1", i -> i > 60 ? 0.3 : 0.7).set("actor/neg_adv_ratio_gt1", i -> i > 60 ? 0.7
            : 0.3);
        final Finding f = only(bad.diagnose(), "pg-loss-split", Severity.WARNING);
        assertThat(f.firstStep()).isEqualTo(61);
        assertThat(f.lastStep()).isEqualTo(STEPS);
    }

    @Test
    void clippingAndTrustRegion() {
        final Synth s = Synth.healthyPpo(STEPS);
        s.set("actor/pg_clipfrac", i -> i > 80 ? 0.35 : 0.003).set("actor/ppo_kl", i -> i > 90 ? 0.05 : 0.001)
            .set("actor/pg_clipfrac_lower", i -> i > 100 ? 0.05 : 0.0);
        final List<Finding> f = s.diagnose().stream().filter(x -> x.rule().equals("clipping")).toList();
        assertThat(f).extracting(Finding::title).containsExactlyInAnyOrder(
            "Policy updates clipped on a large share of tokens", "ppo_kl large against the clip range",
            "Dual clip active on many A<0 tokens");
        assertThat(f).allMatch(x -> x.severity() == Severity.WARNING && x.lastStep() == STEPS);
    }

    @Test
    void noPolicyMovement() {
        final Synth s = Synth.healthyPpo(STEPS);
        s.set("actor/pg_clipfrac", i -> 0.0).set("actor/ppo_kl", i -> i % 2 == 0 ? 1e-8 : -1e-8);
        final Finding f = only(s.diagnose(), "no-policy-movement", Severity.WARNING);
        assertThat(f.firstStep()).isEqualTo(1);
        assertThat(f.lastStep()).isEqualTo(STEPS);
        assertThat(f.reading()).contains("old_log_prob").doesNotContain("entropy is collapsed");
        final Synth few = Synth.healthyPpo(STEPS);
        few.set("actor/pg_clipfrac", i -> i < 15 ? 0.0 : 0.003).set("actor/ppo_kl", i -> i < 15 ? 0 : 0.001);
        assertThat(few.diagnose()).noneMatch(x -> x.rule().equals("no-policy-movement"));
    }

    @Test
    void entropyCollapseDeclineLowAndExplosion() {
        final Synth collapse = Synth.healthyPpo(STEPS);
        collapse.set("actor/entropy", i -> i < 40 ? 0.4 : 0.4 * Math.exp(-(i - 40) / 5.0));
        final Finding c = only(collapse.diagnose(), "entropy", Severity.CRITICAL);
        assertThat(c.firstStep()).isBetween(40L, 45L);
        final Synth decline = Synth.healthyPpo(STEPS);
        decline.set("actor/entropy", i -> 0.6 - 0.45 * i / STEPS + decline.noise(0.01));
        only(decline.diagnose(), "entropy", Severity.INFO);
        final Synth toward = Synth.healthyPpo(STEPS);
        toward.set("actor/entropy", i -> 0.2 * Math.exp(-i / 50.0) + toward.noise(0.002));
        only(toward.diagnose(), "entropy", Severity.WARNING);
        final Synth low = Synth.healthyPpo(STEPS);
        low.set("actor/entropy", i -> 0.03 + low.noise(0.002));
        assertThat(only(low.diagnose(), "entropy", Severity.INFO).title()).contains("low from the start");
        final Synth boom = Synth.healthyPpo(STEPS);
        boom.set("actor/entropy", i -> i < 60 ? 0.4 + boom.noise(0.01) : 1.5 + boom.noise(0.05));
        assertThat(only(boom.diagnose(), "entropy", Severity.WARNING).title()).contains("explosion");
    }

    @Test
    void klDriftSeverityFollowsItsLevel() {
        for (final double end : new double[] {0.2, 1.0, 10.0}) {
            final Synth s = Synth.healthyPpo(STEPS);
            s.set("actor/kl_loss", i -> 0.01 + end * i / STEPS + Math.abs(s.noise(0.002)));
            final Severity expected = end < Thresholds.KL_WARN ? Severity.INFO
                : end < Thresholds.KL_CRITICAL ? Severity.WARNING : Severity.CRITICAL;
            only(s.diagnose(), "kl-drift", expected);
        }
    }

    @Test
    void rewardCollapseFallAndPlateau() {
        final Synth collapse = Synth.healthyGrpo(STEPS);
        collapse.set("critic/score/mean", i -> i < 50 ? 0.3 + collapse.noise(0.05) : -1.0)
            .set("critic/score/max", i -> i < 50 ? 1.0 : -1.0).set("critic/score/min", i -> -1.0);
        only(collapse.diagnose(), "reward", Severity.CRITICAL);
        final Synth fall = Synth.healthyGrpo(STEPS);
        fall.set("critic/score/mean", i -> 0.6 - 0.4 * i / STEPS + fall.noise(0.03));
        only(fall.diagnose(), "reward", Severity.WARNING);
        final Synth flat = Synth.healthyGrpo(STEPS);
        flat.set("critic/score/mean", i -> 0.9 + flat.noise(0.02));
        final String title = only(flat.diagnose(), "reward", Severity.INFO).title();
        assertThat(title).startsWith("Reward plateau at ");
        assertThat(Double.parseDouble(title.substring("Reward plateau at ".length()))).isCloseTo(0.9,
            org.assertj.core.data.Offset.offset(0.01));
    }

    @Test
    void rewardComponentTradedAway() {
        final Synth s = new Synth(4);
        s.set("reward", i -> 0.5 + 0.1 * i).set("rewards/accuracy_reward", i -> 0.4 - 0.08 * i)
            .set("rewards/format_reward", i -> 0.1 + 0.2 * i).set("loss", i -> 0.0);
        final Finding f = only(s.diagnose("grpo"), "reward-components", Severity.WARNING);
        assertThat(f.evidence()).anyMatch(e -> e.startsWith("rewards/accuracy_reward"))
            .anyMatch(e -> e.startsWith("rising: rewards/format_reward"));
        final Synth both = new Synth(4);
        both.set("reward", i -> 1.0 - 0.2 * i).set("rewards/accuracy_reward", i -> 0.4 - 0.08 * i);
        assertThat(both.diagnose("grpo")).noneMatch(x -> x.rule().equals("reward-components"));
    }

    @Test
    void responseLengthCollapseAndAtTheLimit() {
        final Synth collapse = Synth.healthyGrpo(STEPS);
        collapse.set("response_length/mean", i -> i < 30 ? 800 : Math.max(1, 800 - 60 * (i - 30)));
        only(collapse.diagnose(), "response-length", Severity.CRITICAL);
        final Synth halved = Synth.healthyGrpo(STEPS);
        halved.set("response_length/mean", i -> i < 60 ? 800 + halved.noise(20) : 300 + halved.noise(20));
        only(halved.diagnose(), "response-length", Severity.WARNING);
        final Synth clipped = Synth.healthyGrpo(STEPS);
        clipped.set("response_length/clip_ratio", i -> i > 100 ? 0.3 : 0.01);
        final Finding f = only(clipped.diagnose(), "response-length", Severity.WARNING);
        assertThat(f.title()).contains("maximum");
        final Synth nearMax = Synth.healthyGrpo(STEPS);
        nearMax.gen.remove("response_length/clip_ratio");
        nearMax.set("response_length/mean", i -> i > 100 ? 1000 : 600);
        assertThat(only(nearMax.diagnose(), "response-length", Severity.WARNING).evidence().get(0))
            .contains("1024");
    }

    @Test
    void gradNormSpikesIsolatedAndRepeated() {
        final Synth one = Synth.healthyPpo(STEPS);
        one.set("actor/grad_norm", i -> i == 70 ? 30 : 1.0 + Math.abs(one.noise(0.1)));
        final Finding f = only(one.diagnose(), "grad-norm-spike", Severity.INFO);
        assertThat(f.firstStep()).isEqualTo(70);
        final Synth many = Synth.healthyPpo(STEPS);
        many.set("actor/grad_norm", i -> i % 30 == 0 ? 30 : 1.0 + Math.abs(many.noise(0.1)));
        assertThat(only(many.diagnose(), "grad-norm-spike", Severity.WARNING).evidence()).hasSize(4);
    }

    @Test
    void nanAnywhereIsCritical() {
        final Synth s = Synth.healthyPpo(STEPS);
        s.set("actor/grad_norm", i -> i >= 77 ? Double.NaN : 1.0).set("perf/throughput", i -> i == 90
            ? Double.POSITIVE_INFINITY : 10);
        final Finding f = only(s.diagnose(), "nan-inf", Severity.CRITICAL);
        assertThat(f.firstStep()).isEqualTo(77);
        assertThat(f.lastStep()).isEqualTo(STEPS);
        assertThat(f.evidence()).anyMatch(e -> e.startsWith("actor/grad_norm: NaN at step 77"))
            .anyMatch(e -> e.startsWith("perf/throughput: Inf at step 90"));
    }

    @Test
    void shortRunsGetNoTrendRules() {
        final Synth s = Synth.healthyPpo(6);
        s.set("actor/entropy", i -> 1.0 / i);
        final List<Finding> f = s.diagnose();
        assertThat(f).extracting(Finding::rule).containsExactly("short-run");
    }
}
