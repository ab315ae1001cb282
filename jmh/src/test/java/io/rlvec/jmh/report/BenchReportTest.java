package io.rlvec.jmh.report;

import static org.assertj.core.api.Assertions.assertThat;

import java.awt.image.BufferedImage;
import java.io.ByteArrayOutputStream;
import java.io.PrintStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;

import javax.imageio.ImageIO;

import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

class BenchReportTest {
    private static String row(final String benchmark, final String params, final double score, final String unit) {
        return "{\"benchmark\":\"" + benchmark + "\",\"mode\":\"avgt\",\"params\":{" + params + "},"
            + "\"primaryMetric\":{\"score\":" + score + ",\"scoreError\":0.0,\"scoreUnit\":\"" + unit + "\"}}";
    }

    @Test
    void ratiosAndChartFromEngineReferenceAndPeerReports(@TempDir final Path dir) throws Exception {
        // (2, 10) logits: 20 elements per op. Engine 20 ns/op = 1 ns per logit; reference 100; PyTorch 400 and 200.
        final Path engine = dir.resolve("jmh-peer.json");
        Files.writeString(engine, "[" + String.join(",",
            row("io.rlvec.jmh.vocab.VocabBenchmark.forwardBackward",
                "\"impl\":\"vector\",\"shape\":\"2x10\",\"dtype\":\"f32\"", 0.020, "us/op"),
            row("io.rlvec.jmh.vocab.VocabBenchmark.forwardBackward",
                "\"impl\":\"reference\",\"shape\":\"2x10\",\"dtype\":\"f32\"", 2.0, "us/op"),
            row("io.rlvec.jmh.peer.TorchVocabBenchmark.forwardBackward",
                "\"shape\":\"2x10\",\"dtype\":\"f32\",\"threads\":\"1\"", 8.0, "us/op"),
            row("io.rlvec.jmh.vocab.VocabExpFloorBenchmark.expPolynomial",
                "\"shape\":\"2x10\",\"threads\":\"1\"", 4.0, "ns/op")) + "]");
        final Path jemalloc = dir.resolve("jmh-peer-jemalloc.json");
        Files.writeString(jemalloc, "[" + row("io.rlvec.jmh.peer.TorchVocabBenchmark.forwardBackward",
            "\"shape\":\"2x10\",\"dtype\":\"f32\",\"threads\":\"1\"", 4.0, "us/op") + "]");
        final Path md = dir.resolve("r.md");
        final Path png = dir.resolve("r.png");
        final ByteArrayOutputStream out = new ByteArrayOutputStream();
        final int status = BenchReport.run(new String[] {"--md", md.toString(), "--png", png.toString(),
            engine.toString(), jemalloc.toString()}, new PrintStream(out, true, StandardCharsets.UTF_8),
            System.err);

        assertThat(status).isZero();
        final String table = out.toString(StandardCharsets.UTF_8);
        assertThat(table).contains("| forwardBackward (logits) | 2x10 | f32 | 1 | 1.00 | 100.0 | 400.0 | 200.0 | 400.0x | 200.0x "
            + "| 100.0x |");
        assertThat(table).contains("| expPolynomial | 2x10 | f32 | 1 | 0.200 |");
        assertThat(Files.readString(md)).contains(table).contains("![ns per element by kernel](r.png)");
        final BufferedImage image = ImageIO.read(png.toFile());
        assertThat(image).isNotNull();
        assertThat(image.getWidth()).isGreaterThanOrEqualTo(1000);
        assertThat(image.getHeight()).isEqualTo(800);
    }

    @Test
    void peerRowsPairWithTheEngineRowsOfTheSameModeAndEstimator(@TempDir final Path dir) throws Exception {
        // (2, 10) tokens: 20 per op. Each engine row is 20 ns/op = 1 ns per token; each peer's figure says whose
        // row it must land on.
        final Path report = dir.resolve("jmh-peer.json");
        Files.writeString(report, "[" + String.join(",",
            row("io.rlvec.jmh.PolicyLossBenchmark.policyLoss",
                "\"engine\":\"vector\",\"shape\":\"padded-2x10\",\"agg\":\"token-mean\",\"mode\":\"gspo\"", 20,
                "ns/op"),
            row("io.rlvec.jmh.PolicyLossBenchmark.policyLoss",
                "\"engine\":\"vector\",\"shape\":\"padded-2x10\",\"agg\":\"token-mean\",\"mode\":\"vanilla\"",
                20, "ns/op"),
            row("io.rlvec.jmh.PolicyLossBenchmark.policyLoss",
                "\"engine\":\"vector\",\"shape\":\"padded-2x10\",\"agg\":\"seq-mean-token-sum\","
                    + "\"mode\":\"gspo\"", 20, "ns/op"),
            row("io.rlvec.jmh.peer.TorchPolicyModesBenchmark.policyLoss",
                "\"mode\":\"gspo\",\"shape\":\"padded-2x10\",\"threads\":\"1\"", 60, "ns/op"),
            row("io.rlvec.jmh.peer.TorchPolicyModesBenchmark.policyLoss",
                "\"mode\":\"vanilla\",\"shape\":\"padded-2x10\",\"threads\":\"1\"", 80, "ns/op"),
            row("io.rlvec.jmh.AdvantageBenchmark.advantages",
                "\"engine\":\"vector2\",\"config\":\"gae@2x10\"", 20, "ns/op"),
            row("io.rlvec.jmh.AdvantageBenchmark.advantages",
                "\"engine\":\"vector2\",\"config\":\"grpo@2x10\"", 20, "ns/op"),
            row("io.rlvec.jmh.peer.TorchAdvantageBenchmark.advantages",
                "\"config\":\"gae@2x10\",\"threads\":\"2\"", 2000, "ns/op"),
            row("io.rlvec.jmh.peer.TorchAdvantageBenchmark.advantages",
                "\"config\":\"grpo@2x10\",\"threads\":\"2\"", 100, "ns/op")) + "]");
        final ByteArrayOutputStream out = new ByteArrayOutputStream();
        assertThat(BenchReport.run(new String[] {report.toString()}, new PrintStream(out, true,
            StandardCharsets.UTF_8), System.err)).isZero();
        final String table = out.toString(StandardCharsets.UTF_8);
        assertThat(table).contains("| policyLoss gspo (log-probs) | padded-2x10 | f32 | 1 | 1.00 | n/a | 3.00 | n/a "
            + "| 3.0x |");
        assertThat(table).contains("| policyLoss (log-probs) | padded-2x10 | f32 | 1 | 1.00 | n/a | 4.00 | n/a "
            + "| 4.0x |");
        // Another aggregation is another kernel: no peer for it.
        assertThat(table).contains("| policyLoss gspo seq-mean-token-sum (log-probs) | padded-2x10 | f32 | 1 | 1.00 "
            + "| n/a | n/a | n/a |");
        assertThat(table).contains("| advantages gae (tokens) | 2x10 | f32 | 2 | 1.00 | n/a | 100.0 | n/a | 100.0x |");
        assertThat(table).contains("| advantages grpo (tokens) | 2x10 | f32 | 2 | 1.00 | n/a | 5.00 | n/a | 5.0x |");
    }

    @Test
    void noReportIsAUsageError() {
        assertThat(BenchReport.run(new String[0], System.out, new PrintStream(new ByteArrayOutputStream())))
            .isEqualTo(Summary.EXIT_USAGE);
    }
}
