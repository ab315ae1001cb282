package io.rlvec.cli.diagnose;

import static org.assertj.core.api.Assertions.assertThat;

import java.io.IOException;
import java.net.URISyntaxException;
import java.nio.file.Path;
import java.util.List;
import java.util.Map;
import java.util.stream.Stream;

import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.Arguments;
import org.junit.jupiter.params.provider.MethodSource;

/**
 * Public runs of verl and TRL (src/test/resources/real-logs, INDEX.md there says where each comes from and what
 * its poster or collector reported). For each, the findings expected from that account, written down from the
 * account and a look at the numbers: every expected finding must be raised, and nothing else at WARNING or above.
 * Each run is read both from its published log and from the collector's JSON-lines transcription.
 */
class RealLogsTest {

    /** An expected finding: rule, severity, and a step it must cover (or -1 for any). */
    private record Expect(String rule, Severity severity, long covers) {
    }

    /** What a run's account leads to expect. */
    private record Account(String name, Estimator.Family family, List<Expect> findings) {
    }

    private static final List<Account> ACCOUNTS = List.of(
        // verl's own tutorial: PPO with a critic (GAE), healthy learning (score 0.01 -> 0.62); entropy 0.46 -> 0.17,
        // critic/kl 0 -> 0.16, length 236 -> 156, one grad_norm spike to 48. Expected: reward rising; entropy
        // declining and KL rising as INFO (the cost of learning); the spike(s) as isolated INFO; pg_loss small and
        // mostly negative with a critic (policy slightly ahead of the critic while the reward climbs): INFO.
        new Account("verl_getting-started-ipynb", Estimator.Family.CRITIC, List.of(
            new Expect("reward", Severity.INFO, 30),
            new Expect("entropy", Severity.INFO, 50),
            new Expect("kl-drift", Severity.INFO, 50),
            new Expect("grad-norm-spike", Severity.INFO, 23),
            new Expect("pg-loss-sign", Severity.INFO, -1))),
        // dstack demo: PPO with a critic resumed at step 100, converged: score ~0.94 throughout, entropy ~0.03 from
        // the first step, pg_loss noisy in -0.68..+0.89. Expected: reward plateau (INFO), entropy low from the
        // start (INFO), pg_loss oscillating around 0 (INFO), nothing alarming.
        new Account("dstack-configs_verl_demo", Estimator.Family.CRITIC, List.of(
            new Expect("reward", Severity.INFO, 200),
            new Expect("entropy", Severity.INFO, 200),
            new Expect("pg-loss-sign", Severity.INFO, -1))),
        // Logic-RL, REINFORCE++ (critic-free), 9 steps of early training: pg_loss changing sign, noisy score, the
        // rest flat. Expected: too short to judge (INFO), nothing alarming.
        new Account("logic-rl-formula_wandb-m950nfkl", Estimator.Family.NORMALISED, List.of(
            new Expect("short-run", Severity.INFO, 5))),
        // OPD run i80f2v90, GRPO with KL in the reward: total collapse. reward_kl_penalty 0.83 -> 17, response
        // length 1759 -> 1 by step 12, entropy 0.21 -> 2e-4, score -0.68 -> -1, pg_loss peaks at 1.1 and
        // grad_norm at 17.4 at step 10, then both ~0; clipfrac 0 afterwards. Expected: CRITICAL KL drift, length
        // collapse, entropy collapse, reward collapse; WARNING strongly positive pg_loss around steps 7-10, the
        // grad_norm spike at 10 next to the collapse, and the ratio frozen at 1 (clipfrac and ppo_kl 0) after it.
        new Account("Agent_On_Policy_Distillation_wandb-i80f2v90", Estimator.Family.NORMALISED, List.of(
            new Expect("kl-drift", Severity.CRITICAL, 10),
            new Expect("response-length", Severity.CRITICAL, 12),
            new Expect("entropy", Severity.CRITICAL, 20),
            new Expect("reward", Severity.CRITICAL, 20),
            new Expect("pg-loss-sign", Severity.WARNING, 9),
            new Expect("grad-norm-spike", Severity.WARNING, 10),
            new Expect("no-policy-movement", Severity.WARNING, 40))),
        // OPD run ry3hgbx5, GRPO with a small KL in the reward: healthy slow improvement (score -0.25 -> +0.05),
        // gradual entropy decline 0.235 -> 0.12, KL and grad_norm stable. Expected: reward rising (INFO), pg_loss
        // small and persistently positive (INFO: failing responses carry more tokens under token-mean), nothing
        // alarming.
        new Account("Agent_On_Policy_Distillation_wandb-ry3hgbx5", Estimator.Family.NORMALISED, List.of(
            new Expect("reward", Severity.INFO, 100),
            new Expect("pg-loss-sign", Severity.INFO, -1))),
        // open-r1 #255, TRL GRPOTrainer, 3 logged steps: accuracy reward 0.16 -> 0.06 while the format reward
        // 0.48 -> 0.86 and the total rises. Expected: reward components traded away (WARNING), a short run (INFO);
        // the estimator read as GRPO from TRL's format.
        new Account("open-r1_255", Estimator.Family.NORMALISED, List.of(
            new Expect("reward-components", Severity.WARNING, 2),
            new Expect("short-run", Severity.INFO, 2))));

    static Stream<Arguments> runs() {
        return ACCOUNTS.stream().flatMap(a -> Stream.of(Arguments.of(a, ".log"), Arguments.of(a, ".jsonl")));
    }

    static Path resource(final String name) {
        try {
            return Path.of(RealLogsTest.class.getResource("/real-logs/" + name).toURI());
        } catch (final URISyntaxException e) {
            throw new IllegalStateException(e);
        }
    }

    @ParameterizedTest(name = "{0} {1}")
    @MethodSource("runs")
    void findingsMatchTheAccount(final Account account, final String ext) throws IOException {
        final Run run = RunReader.read(resource(account.name() + ext));
        final Estimator est = Estimator.infer(run);
        assertThat(est.family()).as("estimator of %s: %s", account.name(), est).isEqualTo(account.family());
        final List<Finding> found = Rules.diagnose(run, est, 0.2);
        for (final Expect e : account.findings()) {
            assertThat(found).as("%s expected in %s", e, account.name()).anyMatch(f -> f.rule().equals(e.rule())
                && f.severity() == e.severity() && (e.covers() < 0 || f.overlaps(e.covers(), e.covers())));
        }
        for (final Finding f : found) {
            if (f.severity() != Severity.INFO) {
                assertThat(account.findings()).as("unexpected %s %s (%s) in %s", f.severity(), f.rule(), f.title(),
                    account.name()).anyMatch(e -> e.rule().equals(f.rule()) && e.severity() == f.severity());
            }
        }
    }

    @ParameterizedTest(name = "{0}")
    @MethodSource("logsOnly")
    void theJsonTranscriptionReadsLikeTheLog(final String name) throws IOException {
        final Run log = RunReader.read(resource(name + ".log"));
        final Run json = RunReader.read(resource(name + ".jsonl"));
        assertThat(json.steps()).containsExactly(log.steps());
        final Map<String, Double> first = log.rows().get(log.rows().firstKey());
        assertThat(json.rows().get(json.rows().firstKey())).containsAllEntriesOf(Map.of(
            Metric.REWARD.keys().stream().filter(first::containsKey).findFirst().orElseThrow(),
            first.get(Metric.REWARD.keys().stream().filter(first::containsKey).findFirst().orElseThrow())));
    }

    static Stream<String> logsOnly() {
        return ACCOUNTS.stream().map(Account::name);
    }
}
