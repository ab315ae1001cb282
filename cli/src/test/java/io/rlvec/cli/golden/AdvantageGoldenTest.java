package io.rlvec.cli.golden;

import static org.assertj.core.api.Assertions.assertThat;

import java.io.IOException;
import java.nio.file.Path;
import java.util.stream.Stream;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.MethodSource;

/**
 * Every verl golden case of the advantage estimators, the in-reward KL penalty, the adaptive KL controller and
 * the masked statistics (copied verbatim from verl's own runs
 * at both releases: golden-advantages/ at 2026-01, golden-advantages-2026.08/ at 2026-08), through the runner the
 * {@code parity} command uses, on the preferred engine and the reference: no FAIL, engine and reference within
 * their contract (bit-identical), and a deviation only where verl's float32 group statistics leave a residue in a
 * group of equal scores (grpo and grpo_vectorized, scenario g1to8 with std normalisation).
 */
class AdvantageGoldenTest extends GoldenFileTest {
    static Stream<Path> files() {
        return filesIn("golden-advantages", "golden-advantages-2026.08");
    }

    @Test
    void everyCopiedFileIsThere() throws IOException {
        assertThat(files().filter(p -> p.getParent().endsWith("golden-advantages"))).hasSize(64);
        assertThat(files().filter(p -> p.getParent().endsWith("golden-advantages-2026.08"))).hasSize(34);
    }

    @ParameterizedTest(name = "{0}")
    @MethodSource("files")
    void matchesVerl(final Path file) throws IOException {
        final String name = file.getFileName().toString();
        final CaseReport report = runner.run(file);
        final boolean residue = name.contains("grpo") && name.contains("g1to8_norm1")
            || name.contains("gdpo_g1to8_fallback");
        if (residue) {
            // 2026-08 has no variance floor, so verl's residue divided by epsilon shows; 2026-01's
            // grpo_vectorized floors the variance at epsilon and stays within tolerance.
            assertThat(report.verdict()).as("%s", name).isIn(Verdict.PASS, Verdict.DEVIATION);
        } else {
            assertThat(report.verdict()).as("%s", name).isEqualTo(Verdict.PASS);
        }
        if (!name.contains("error")) {
            assertThat(report.agreement()).as("%s: engine vs reference", name).isNotEmpty()
                .allSatisfy(a -> assertThat(a.ok()).as("%s %s: %s", name, a.name(), a.describe()).isTrue());
        }
        for (final EngineReport run : report.runs()) {
            for (final TensorReport t : run.tensors()) {
                if (t.verdict() == Verdict.DEVIATION) {
                    assertThat(t.deviations()).as("%s %s", name, t.name())
                        .containsExactly(Deviation.TORCH_LESS_ACCURATE);
                }
            }
        }
    }
}
