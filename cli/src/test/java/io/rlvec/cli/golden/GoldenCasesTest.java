package io.rlvec.cli.golden;

import static org.assertj.core.api.Assertions.assertThat;

import java.io.IOException;
import java.net.URISyntaxException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.EnumSet;
import java.util.List;
import java.util.Set;
import java.util.stream.Stream;

import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.MethodSource;

import io.rlvec.Engine;
import io.rlvec.Engines;

/**
 * Every verl golden case of the policy_loss:vanilla, agg_loss, kl_penalty, logits and actor_composite groups (copied verbatim from verl's own run,
 * see golden/README.md) through the runner the {@code parity} command uses, on the preferred engine and the
 * reference: no FAIL, no UNSUPPORTED, engine and reference within their contract, and deviations exactly where
 * the data calls for one of the documented reasons.
 */
class GoldenCasesTest {
    /**
     * 173 policy_loss:vanilla, 52 agg_loss, 52 kl_penalty, 8 logits, 4 actor_composite:log_prob and 2
     * actor_composite:logits files.
     */
    private static final int EXPECTED_FILES = 291;

    private static Engine preferred;
    private static GoldenRunner runner;

    @BeforeAll
    static void engines() {
        preferred = Engines.preferred();
        runner = new GoldenRunner(CaseHandlers.defaults(), List.of(preferred, Engines.reference()));
    }

    @AfterAll
    static void close() throws Exception {
        if (preferred instanceof AutoCloseable c) {
            c.close();
        }
    }

    static Path goldenDir() {
        try {
            return Path.of(GoldenCasesTest.class.getResource("/golden").toURI());
        } catch (final URISyntaxException e) {
            throw new IllegalStateException(e);
        }
    }

    static Stream<String> files() throws IOException {
        try (Stream<Path> s = Files.list(goldenDir())) {
            return s.map(p -> p.getFileName().toString()).filter(n -> n.endsWith(".safetensors")).sorted().toList()
                .stream();
        }
    }

    @Test
    void everyCopiedFileIsThere() throws IOException {
        assertThat(files().filter(n -> n.startsWith("pl_vanilla_"))).hasSize(173);
        assertThat(files().filter(n -> n.startsWith("agg_loss_"))).hasSize(52);
        assertThat(files().filter(n -> n.startsWith("kl_"))).hasSize(52);
        assertThat(files().filter(n -> n.startsWith("logits_"))).hasSize(8);
        assertThat(files().filter(n -> n.startsWith("actor_lp_"))).hasSize(4);
        assertThat(files().filter(n -> n.startsWith("actor_e2e_"))).hasSize(2);
        assertThat(files()).hasSize(EXPECTED_FILES);
    }

    @ParameterizedTest(name = "{0}")
    @MethodSource("files")
    void matchesVerl(final String name) throws IOException {
        final Path file = goldenDir().resolve(name);
        final CaseReport report = runner.run(file);
        assertThat(report.verdict()).as("%s: %s", name, describe(report)).isIn(Verdict.PASS, Verdict.DEVIATION);
        assertThat(report.runs()).hasSize(2);
        assertThat(report.agreement()).as("%s: engine vs reference", name).isNotEmpty()
            .allSatisfy(a -> assertThat(a.ok()).as("%s %s: %s", name, a.name(), a.describe()).isTrue());

        final Set<Deviation> seen = EnumSet.noneOf(Deviation.class);
        try (GoldenCase golden = GoldenCase.open(file)) {
            final Set<Deviation> expected = expectedDeviations(name, golden);
            for (final EngineReport run : report.runs()) {
                for (final TensorReport t : run.tensors()) {
                    seen.addAll(t.deviations());
                    final boolean verlFinite = allFinite(golden.expected(t.name()));
                    if (verlFinite && t.verdict() == Verdict.DEVIATION) {
                        // The one reason for a finite verl value: torch less accurate than the engine.
                        assertThat(t.deviations()).as("%s %s on %s: %s", name, t.name(), run.engine(), t.detail())
                            .containsExactly(Deviation.TORCH_LESS_ACCURATE);
                        assertThat(expected).as("%s: a scenario where torch loses precision", name)
                            .contains(Deviation.TORCH_LESS_ACCURATE);
                    } else if (verlFinite) {
                        assertThat(t.verdict()).as("%s %s on %s: %s", name, t.name(), run.engine(), t.detail())
                            .isEqualTo(Verdict.PASS);
                        assertThat(t.maxUlp()).as("%s %s: compared values", name, t.name()).isGreaterThanOrEqualTo(0);
                    } else {
                        assertThat(t.verdict()).as("%s %s on %s: verl is not finite", name, t.name(), run.engine())
                            .isEqualTo(Verdict.DEVIATION);
                        assertThat(t.deviations()).as("%s %s on %s", name, t.name(), run.engine())
                            .isNotEmpty().isSubsetOf(expected);
                    }
                }
            }
            assertThat(seen).as("%s: every deviation the scenario calls for is reported", name)
                .containsAll(mandatory(expected));
        }
    }

    /** The documented reasons each scenario calls for (INDEX.md notes of the golden files). */
    private static Set<Deviation> expectedDeviations(final String name, final GoldenCase golden) {
        if (name.contains("allmasked")) {
            // "mask all zero (verl divides 0/0 in most modes -> NaN)"
            return EnumSet.of(Deviation.NO_VALID_TOKEN);
        }
        if (name.contains("nanpad")) {
            // "NaN log-probs on padded positions (A=0 there): shows which paths verl protects"
            return EnumSet.of(Deviation.MASKED_NONFINITE_SEQ_MEAN, Deviation.MASKED_NONFINITE_GRADIENT);
        }
        if (name.contains("neginf")) {
            // "-inf logits: entropy_from_logits computes sum(p*logits) with 0*(-inf)=NaN -> entropy NaN, grads NaN"
            return EnumSet.of(Deviation.NEG_INF_LOGIT);
        }
        if (name.startsWith("logits_") && "normal2.5_peaked".equals(golden.params().path("kind").asText())) {
            // Peaked rows (entropy ~1e-20, 0 in torch) and rows offset by ~1000, where torch's float32 softmax is
            // off by up to 1e-4.
            return EnumSet.of(Deviation.TORCH_LESS_ACCURATE);
        }
        return EnumSet.noneOf(Deviation.class);
    }

    /**
     * @return the expected deviations that must show up: a -inf logit's, where every such file has it. (Whether an
     *     all-masked or NaN-padded case reaches a NaN in verl depends on the mode; whether a peaked row's float32
     *     softmax is beyond its derived budget depends on the row: the gradients and sums of squares, judged by
     *     bounds, PASS where verl stays within it.)
     */
    private static Set<Deviation> mandatory(final Set<Deviation> expected) {
        final Set<Deviation> m = EnumSet.noneOf(Deviation.class);
        m.addAll(expected);
        m.retainAll(EnumSet.of(Deviation.NEG_INF_LOGIT));
        return m;
    }

    private static boolean allFinite(final double[] v) {
        for (final double x : v) {
            if (!Double.isFinite(x)) {
                return false;
            }
        }
        return true;
    }

    private static String describe(final CaseReport r) {
        final StringBuilder sb = new StringBuilder(r.message());
        for (final EngineReport run : r.runs()) {
            for (final TensorReport t : run.tensors()) {
                if (t.verdict() != Verdict.PASS) {
                    sb.append("; ").append(run.engine()).append(' ').append(t.name()).append(' ')
                        .append(t.verdict()).append(": ").append(t.detail());
                }
            }
        }
        return sb.toString();
    }
}
