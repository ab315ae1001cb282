package io.rlvec.cli.golden;

import static org.assertj.core.api.Assertions.assertThat;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.stream.Stream;

import org.junit.jupiter.api.Test;

/**
 * Every verl case copied into the test resources (every function, both releases, float32 and float64) is judged by
 * derived error bounds wherever verl's and the engines' values are finite: no check falls back to a fixed
 * tolerance. A handler that loses its bounds (a new output added without one, a case shape no bound covers) fails
 * here by name.
 */
class JudgesTest extends GoldenFileTest {
    private static final String[] DIRS = {"golden", "golden-advantages", "golden-advantages-2026.08",
        "golden-bypass-2026.08", "golden-policy", "golden-policy-2026.08", "golden-rollout-corr-2026.08",
        "golden-value/2026-01", "golden-value/2026-08"};

    @Test
    void everyFiniteCheckOfVerlsCasesIsJudgedByDerivedBounds() throws IOException {
        final List<String> tolerance = new ArrayList<>();
        int bound = 0;
        int cases = 0;
        for (final String d : DIRS) {
            final List<Path> files;
            try (Stream<Path> s = Files.list(dir(d))) {
                files = s.filter(p -> p.toString().endsWith(".safetensors")).sorted().toList();
            }
            for (final Path f : files) {
                final CaseReport r = runner.run(f);
                cases++;
                assertThat(r.verdict()).as(f.toString()).isIn(Verdict.PASS, Verdict.DEVIATION);
                for (final EngineReport e : r.runs()) {
                    for (final TensorReport t : e.tensors()) {
                        if (t.judge() == TensorReport.Judge.TOLERANCE) {
                            tolerance.add(d + "/" + f.getFileName() + " " + t.name() + " [" + e.engine() + "]");
                        }
                        bound += t.judge() == TensorReport.Judge.BOUND ? 1 : 0;
                    }
                }
            }
        }
        assertThat(cases).isGreaterThan(1000);
        assertThat(bound).isGreaterThan(15000);
        assertThat(tolerance).as("checks held to a fixed tolerance").isEmpty();
    }
}
