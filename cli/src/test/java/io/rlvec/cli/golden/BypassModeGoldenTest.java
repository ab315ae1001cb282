package io.rlvec.cli.golden;

import static org.assertj.core.api.Assertions.assertThat;

import java.io.IOException;
import java.nio.file.Path;
import java.util.EnumSet;
import java.util.Set;
import java.util.stream.Stream;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.MethodSource;

/**
 * Every verl golden case of {@code compute_policy_loss_bypass_mode} (the 222 {@code pl_bypass_mode_*} files of verl
 * 2026-08, copied verbatim into golden-bypass-2026.08/), through the parity runner on the preferred engine and the
 * reference: no FAIL, engine and reference within their contract, and deviations only for the documented reasons:
 * no token surviving rejection (verl's 0 / 0), a masked NaN leaking into verl's seq-mean or gradient, and verl's
 * float32 cancellation in the clamped std metrics (rollout_is_std of equal sequence weights, seq_mean_k3's std). The 26 expect_error files (no valid token, no rollout_correction,
 * an unknown loss_type, IcePop weights all 0 so that verl's effective sample size divides by zero) must be refused.
 */
class BypassModeGoldenTest extends GoldenFileTest {
    private static final Set<Deviation> DOCUMENTED = EnumSet.of(Deviation.NO_VALID_TOKEN,
        Deviation.MASKED_NONFINITE_SEQ_MEAN, Deviation.MASKED_NONFINITE_GRADIENT, Deviation.TORCH_LESS_ACCURATE);
    static Stream<Path> files() {
        return filesIn("golden-bypass-2026.08");
    }

    @Test
    void everyCopiedFileIsThere() throws IOException {
        assertThat(files()).hasSize(222);
    }

    @ParameterizedTest(name = "{0}")
    @MethodSource("files")
    void matchesVerl(final Path file) throws IOException {
        final String name = file.getFileName().toString();
        final CaseReport report = runner.run(file);
        assertThat(report.verdict()).as("%s: %s", name, report.message()).isIn(Verdict.PASS, Verdict.DEVIATION);
        assertThat(report.agreement()).as("%s: engine vs reference", name)
            .allSatisfy(a -> assertThat(a.ok()).as("%s %s: %s", name, a.name(), a.describe()).isTrue());
        for (final EngineReport run : report.runs()) {
            for (final TensorReport t : run.tensors()) {
                if (t.verdict() == Verdict.DEVIATION) {
                    assertThat(DOCUMENTED).as("%s %s", name, t.name()).containsAll(t.deviations());
                    if (t.deviations().contains(Deviation.TORCH_LESS_ACCURATE)) {
                        // Only the clamped std metrics, sqrt(E[c^2] - E[c]^2), where verl's float32 cancels.
                        assertThat(t.name()).as(name).matches(".*/rollout_(is|rs_[a-z0-9_]+)_std")
                            .doesNotContain("_seq_std");
                    }
                }
            }
        }
    }
}
