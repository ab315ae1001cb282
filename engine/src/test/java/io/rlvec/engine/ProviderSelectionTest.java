package io.rlvec.engine;

import static org.assertj.core.api.Assertions.assertThat;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

import java.lang.management.ManagementFactory;

import org.junit.jupiter.api.Test;

import com.sun.management.HotSpotDiagnosticMXBean;

import io.rlvec.Engine;
import io.rlvec.Engines;

/**
 * Asserts which provider ran (jvector's testVectorSupportTypeIsExpected): each Surefire execution of this module
 * says what it expects through {@code -Drlvec.expectedProvider} (vector or reference) and, for a forced width,
 * {@code -Drlvec.expectedBits}; the runs that limit the JIT to AVX2 code also set {@code -Drlvec.expectedUseAVX}.
 */
class ProviderSelectionTest {
    private static final String EXPECTED_PROVIDER = System.getProperty("rlvec.expectedProvider");
    private static final String EXPECTED_BITS = System.getProperty("rlvec.expectedBits");
    private static final String EXPECTED_USE_AVX = System.getProperty("rlvec.expectedUseAVX");

    @Test
    void thePreferredEngineIsTheExpectedProvider() {
        assumeTrue(EXPECTED_PROVIDER != null, "run by Surefire, which sets -Drlvec.expectedProvider");
        final Engine engine = Engines.preferred();
        final String reason = Engines.lastChoiceReason();
        switch (EXPECTED_PROVIDER) {
            case "reference" -> assertThat(engine.name()).as(reason).isEqualTo("reference");
            case "vector" -> {
                assertThat(engine.name()).as(reason).startsWith("vector-");
                assertThat(engine).isInstanceOf(VectorEngine.class);
                if (EXPECTED_BITS != null) {
                    assertThat(engine.name()).as(reason).startsWith("vector-" + EXPECTED_BITS);
                    assertThat(Vec.BITS).isEqualTo(Integer.parseInt(EXPECTED_BITS));
                }
                assertThat(Vec.FL * Float.SIZE).isEqualTo(Vec.BITS);
            }
            default -> throw new AssertionError("unknown -Drlvec.expectedProvider=" + EXPECTED_PROVIDER);
        }
        assertThat(reason).isNotBlank();
    }

    @Test
    void theJitUsesTheExpectedInstructionSet() {
        assumeTrue(EXPECTED_USE_AVX != null, "only the executions that set -XX:UseAVX say what they expect");
        final HotSpotDiagnosticMXBean hotspot = ManagementFactory.getPlatformMXBean(HotSpotDiagnosticMXBean.class);
        assertThat(hotspot.getVMOption("UseAVX").getValue()).as("-XX:UseAVX of this JVM").isEqualTo(EXPECTED_USE_AVX);
    }

    @Test
    void parallelEnginesSayHowManyThreads() {
        assumeTrue("vector".equals(EXPECTED_PROVIDER), "only the vector provider runs blocks in parallel");
        final Engine two = Engines.preferred(2);
        assertThat(two.name()).endsWith("x2");
        ((VectorEngine) two).close();
    }
}
