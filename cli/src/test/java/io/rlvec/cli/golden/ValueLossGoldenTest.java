package io.rlvec.cli.golden;

import static org.assertj.core.api.Assertions.assertThat;

import java.io.IOException;
import java.nio.file.Path;
import java.util.stream.Stream;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.MethodSource;

/**
 * Every verl golden case of {@code compute_value_loss} (2026-01 without, 2026-08 with the global-batch arguments),
 * copied verbatim from verl's runs, through the runner the {@code parity} command uses, on the preferred engine and
 * the reference: every tensor PASS (vf_loss, vf_clipfrac, d vf_loss / d vpreds), engine and reference within their
 * contract.
 */
class ValueLossGoldenTest extends GoldenFileTest {
    static Stream<Path> files() {
        return filesIn("golden-value/2026-01", "golden-value/2026-08");
    }

    @Test
    void everyCopiedFileIsThere() {
        assertThat(files().filter(p -> p.getParent().endsWith("2026-01"))).hasSize(16);
        assertThat(files().filter(p -> p.getParent().endsWith("2026-08"))).hasSize(44);
    }

    @ParameterizedTest(name = "{0}")
    @MethodSource("files")
    void matchesVerl(final Path file) throws IOException {
        final String name = file.getFileName().toString();
        final CaseReport report = runner.run(file);
        assertThat(report.verdict()).as("%s: %s", name, report.message()).isEqualTo(Verdict.PASS);
        assertThat(report.agreement()).as("%s: engine vs reference", name)
            .allSatisfy(a -> assertThat(a.ok()).as("%s %s: %s", name, a.name(), a.describe()).isTrue());
        for (final EngineReport run : report.runs()) {
            assertThat(run.tensors()).as(name).extracting(TensorReport::name)
                .containsExactlyInAnyOrder("out.vf_loss", "out.vf_clipfrac", "out.grad_vpreds");
        }
    }
}
