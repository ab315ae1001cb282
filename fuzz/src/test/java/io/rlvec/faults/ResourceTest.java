package io.rlvec.faults;

import static org.assertj.core.api.Assertions.assertThat;

import java.util.List;

import org.junit.jupiter.api.Tag;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.CsvSource;

/**
 * Off-heap resources: allocate / use / close cycles leak no native memory (NMT's committed "Other" memory, where
 * {@code Unsafe.allocateMemory} and so every arena allocation is counted, before and after, in a child JVM; a
 * deliberately leaking control run shows the measurement sees a leak); closing twice, use after close and close from
 * another thread give a clear exception, never a crash (each in its own child JVM, so a crash fails only the test).
 */
class ResourceTest {
    /** Cycles in the default build; {@code -Drlvec.leakCycles=1000000} for the documented measurement. */
    private static final long CYCLES = Long.getLong("rlvec.leakCycles", 100_000L);
    private static final List<String> NMT = List.of("-XX:NativeMemoryTracking=summary");

    @Test
    void allocateUseCloseCyclesLeakNoNativeMemory() {
        final Child.Result r = Child.run(LeakProbe.class, NMT, Long.toString(CYCLES));
        System.out.println("leak probe: " + r.output().replace('\n', ' '));
        assertThat(r.exitCode()).as(r.output()).isZero();
        final long before = Long.parseLong(r.value("nmt.other.kb.before"));
        final long after = Long.parseLong(r.value("nmt.other.kb.after"));
        assertThat(before).as("NMT summary parsed: %s", r.output()).isPositive();
        // Each cycle allocates 0.25-4 KiB; one leaked allocation in a thousand cycles would add > 50 KiB here.
        assertThat(after - before).as("native memory growth over %d cycles, KiB", CYCLES).isLessThanOrEqualTo(16);
    }

    @Test
    void theLeakMeasurementSeesALeak() {
        final Child.Result r = Child.run(LeakProbe.class, NMT, "2000", "leak");
        assertThat(r.exitCode()).as(r.output()).isZero();
        final long grown = Long.parseLong(r.value("nmt.other.kb.after")) - Long.parseLong(r.value("nmt.other.kb.before"));
        // 500 of the 2000 cycles allocate 1-500 floats each and are not closed: at least ~250 KiB.
        assertThat(grown).as(r.output()).isGreaterThan(200);
    }

    @ParameterizedTest
    @CsvSource(delimiter = '|', value = {
        "array-close-twice            | ok",
        "batch-close-twice            | ok",
        "array-use-after-close        | java.lang.IllegalStateException: array is closed",
        "output-closed                | java.lang.IllegalArgumentException: gradLogProb is closed",
        "batch-used-after-close       | java.lang.IllegalArgumentException: log_prob is closed",
        "column-closed-after-build    | java.lang.IllegalArgumentException: log_prob is closed",
        "closed-from-other-thread     | java.lang.IllegalArgumentException: gradLogProb is closed",
        "logits-closed                | java.lang.IllegalArgumentException: logits data is closed",
        "stats-closed                 | java.lang.IllegalArgumentException: statsOut is closed",
        "engine-close-twice-then-use  | java.lang.IllegalStateException:"})
    void closedResourcesFailClearlyNeverCrash(final String scenario, final String expected) {
        final Child.Result r = Child.run(ClosedProbe.class, List.of(), scenario);
        assertThat(r.exitCode()).as("child exit code (a crash is nonzero): %s", r.output()).isZero();
        assertThat(r.value("outcome")).as(scenario).startsWith(expected);
    }

    @Tag("campaign")
    @Test
    void millionCycles() {
        final Child.Result r = Child.run(LeakProbe.class, NMT, "1000000");
        System.out.println("leak probe 10^6: " + r.output().replace('\n', ' '));
        assertThat(r.exitCode()).isZero();
        assertThat(Long.parseLong(r.value("nmt.other.kb.after")) - Long.parseLong(r.value("nmt.other.kb.before")))
            .isLessThanOrEqualTo(16);
    }
}
