package io.rlvec.jmh.report;

import static org.assertj.core.api.Assertions.assertThat;

import java.io.ByteArrayOutputStream;
import java.io.PrintStream;
import java.nio.charset.StandardCharsets;
import java.util.List;
import java.util.Map;

import org.junit.jupiter.api.Test;

class SummaryAllocTest {
    private static String row(final String gc) {
        return "[{\"benchmark\":\"io.rlvec.jmh.vocab.VocabBenchmark.actorLoss\",\"mode\":\"avgt\","
            + "\"params\":{\"impl\":\"vector2\"},\"primaryMetric\":{\"score\":100.0,\"scoreError\":0.0,"
            + "\"scoreUnit\":\"us/op\"},\"secondaryMetrics\":{\"gc.alloc.rate.norm\":" + gc + "}}]";
    }

    private static int check(final List<Summary.Row> rows, final double bound) {
        final ByteArrayOutputStream out = new ByteArrayOutputStream();
        return Summary.checkAlloc(rows, Map.of("impl", "vector2"), bound,
            new PrintStream(out, true, StandardCharsets.UTF_8));
    }

    @Test
    void boundAppliesToTheQuietestIterationSoOneLateRecompilationDoesNotFail() {
        // One iteration of three ran calls through code C2 had not recompiled yet: the mean is over the bound, the
        // steady state is not.
        final List<Summary.Row> rows = Summary.read(row("{\"score\":3500.0,\"rawData\":[[9600.0,480.0,420.0]]}"));
        assertThat(rows.get(0).allocNorm()).isEqualTo(3500.0);
        assertThat(rows.get(0).allocMin()).isEqualTo(420.0);
        assertThat(check(rows, 4096)).isZero();
    }

    @Test
    void anAllocationInEveryIterationStillFails() {
        final List<Summary.Row> rows = Summary.read(row("{\"score\":9000.0,\"rawData\":[[9600.0,8800.0,8600.0]]}"));
        assertThat(check(rows, 4096)).isNotZero();
    }

    @Test
    void withoutRawDataTheScoreIsTheBound() {
        final List<Summary.Row> rows = Summary.read(row("{\"score\":5000.0}"));
        assertThat(rows.get(0).allocMin()).isEqualTo(5000.0);
        assertThat(check(rows, 4096)).isNotZero();
    }
}
