package io.rlvec.cli.diagnose;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import java.util.List;

import org.junit.jupiter.api.Test;

/** Each log format the reader accepts, and what it does with odd lines. */
class RunReaderTest {

    @Test
    void verlConsoleLinesWithPrefixColoursAndNumpyWrappers() {
        final Run run = RunReader.parse("x", List.of(
            "\u001B[36m(TaskRunner pid=14640)\u001B[0m step:7 - actor/pg_loss:np.float64(-0.25) - actor/entropy:0.5"
                + " - actor/ppo_kl:nan - critic/score/mean:inf - note:abc",
            "some other output",
            "step:8 - actor/pg_loss:0.125 - actor/entropy:0.375",
            "(main_task pid=1) 'adv_estimator': 'grpo', 'gamma': 1.0"));
        assertThat(run.format()).isEqualTo("verl console log");
        assertThat(run.steps()).containsExactly(7, 8);
        assertThat(run.rows().get(7L)).containsEntry("actor/pg_loss", -0.25).containsEntry("actor/entropy", 0.5)
            .containsEntry("actor/ppo_kl", Double.NaN).containsEntry("critic/score/mean", Double.POSITIVE_INFINITY)
            .doesNotContainKey("note");
        assertThat(run.roundedKeys()).contains("actor/entropy").doesNotContain("actor/ppo_kl");
        assertThat(Estimator.infer(run).name()).isEqualTo("grpo");
        assertThat(Estimator.infer(run).source()).contains("config");
    }

    @Test
    void verlFileLoggerLinesReadNullAsNan() {
        final Run run = RunReader.parse("x", List.of(
            "{\"step\": 1, \"data\": {\"actor/pg_loss\": 0.5, \"actor/grad_norm\": null, \"tag\": \"a\"}}",
            "{\"step\": 2, \"data\": {\"actor/pg_loss\": 0.25, \"actor/grad_norm\": 1.5}}"));
        assertThat(run.format()).isEqualTo("verl file logger (JSON lines)");
        assertThat(run.rows().get(1L)).containsEntry("actor/pg_loss", 0.5).containsEntry("actor/grad_norm", Double.NaN)
            .doesNotContainKey("tag");
        assertThat(run.notes()).anyMatch(n -> n.contains("null value(s) read as NaN"));
    }

    @Test
    void flatJsonLinesAsTheEngineWritesThem() {
        final Run run = RunReader.parse("x", List.of(
            "{\"step\":3,\"actor/pg_loss\":-0.125,\"actor/pg_loss_pos_adv\":-0.5,\"actor/ppo_kl\":NaN}",
            "{\"step\":4,\"actor/pg_loss\":Infinity}",
            "{\"step\": broken"));
        assertThat(run.format()).isEqualTo("JSON lines (step + metrics)");
        assertThat(run.rows().get(3L)).containsEntry("actor/pg_loss_pos_adv", -0.5).containsEntry("actor/ppo_kl",
            Double.NaN);
        assertThat(run.rows().get(4L)).containsEntry("actor/pg_loss", Double.POSITIVE_INFINITY);
        assertThat(run.notes()).anyMatch(n -> n.startsWith("line 3: not valid JSON"));
        assertThat(run.series(Metric.PG_LOSS_POS)).isPresent();
    }

    @Test
    void trlDictsNumberedByPositionAndCutLines() {
        final Run run = RunReader.parse("x", List.of(
            "{'loss': 0.0, 'reward': 0.5, 'kl': 0.001, 'epoch': 0.01}",
            "{'loss': 0.1, 'reward': 0.6, 'completion_length': 190.53",
            "{'loss': 0.2, 'reward': 0.7, 'completion_length': 19"));
        assertThat(run.format()).isEqualTo("TRL log lines (step = position in the file)");
        assertThat(run.steps()).containsExactly(1, 2, 3);
        assertThat(run.rows().get(2L)).containsEntry("completion_length", 190.53);
        assertThat(run.rows().get(3L)).doesNotContainKey("completion_length").containsEntry("reward", 0.7);
        assertThat(run.notes()).hasSize(2);
    }

    @Test
    void aRoundedConsoleLogSaysThatItsZerosMayBeSmallValues() {
        final List<String> lines = new java.util.ArrayList<>();
        for (int step = 1; step <= 30; step++) {
            lines.add("step:" + step + " - actor/pg_loss:" + (step % 2 == 0 ? "0.012" : "-0.011")
                + " - actor/pg_clipfrac:0.000 - actor/ppo_kl:0.000 - critic/vf_loss:0.100");
        }
        final Run run = RunReader.parse("rounded.log", lines);
        final List<Finding> f = Rules.diagnose(run, Estimator.infer(run), 0.2);
        final Finding still = f.stream().filter(x -> x.rule().equals("no-policy-movement")).findFirst()
            .orElseThrow();
        assertThat(still.severity()).isEqualTo(Severity.WARNING);
        assertThat(still.evidence()).anyMatch(e -> e.contains("3 decimals"));
        assertThat(still.reading()).contains("cannot be told from none");
    }

    @Test
    void aFileWithoutStepMetricsIsRefused() {
        assertThatThrownBy(() -> RunReader.parse("empty.log", List.of("hello", "world")))
            .isInstanceOf(IllegalArgumentException.class).hasMessageContaining("RUN empty.log: no step metrics");
    }

    @Test
    void numbers() {
        assertThat(RunReader.number("-inf")).isEqualTo(Double.NEGATIVE_INFINITY);
        assertThat(RunReader.number("NaN")).isNaN();
        assertThat(RunReader.number("1e-3")).isEqualTo(1e-3);
        assertThat(RunReader.number("'abc'")).isNull();
        assertThat(RunReader.number("True")).isNull();
    }
}
