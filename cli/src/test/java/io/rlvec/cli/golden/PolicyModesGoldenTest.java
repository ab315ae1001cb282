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
 * Every verl golden case of the policy-loss modes other than vanilla (gspo, sapo, gpg, geo_mean, cispo, clip_cov,
 * kl_cov at 2026-01; dppo_tv, dppo_kl, dro at 2026-08) and of the 2026-08 agg_loss (token-sum, the redefined
 * seq-mean-token-sum-norm, the dp_size errors), copied verbatim from verl's runs, through the runner the
 * {@code parity} command uses, on the preferred engine and the reference: no FAIL, engine and reference within
 * their contract, deviations only for the documented reasons.
 */
class PolicyModesGoldenTest extends GoldenFileTest {
    private static final Set<Deviation> DOCUMENTED = EnumSet.of(Deviation.NO_VALID_TOKEN,
        Deviation.MASKED_NONFINITE_SEQ_MEAN, Deviation.MASKED_NONFINITE_GRADIENT, Deviation.MASKED_NONFINITE_SEQUENCE,
        Deviation.UNCLAMPED_OVERFLOW);

    static Stream<Path> files() {
        return filesIn("golden-policy", "golden-policy-2026.08");
    }

    @Test
    void everyCopiedFileIsThere() {
        assertThat(files().filter(p -> p.getParent().endsWith("golden-policy"))).hasSize(149);
        assertThat(files().filter(p -> p.getParent().endsWith("golden-policy-2026.08"))).hasSize(451);
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
                assertThat(DOCUMENTED).as("%s %s", name, t.name()).containsAll(t.deviations());
            }
        }
    }
}
