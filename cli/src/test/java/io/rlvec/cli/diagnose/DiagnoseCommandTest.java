package io.rlvec.cli.diagnose;

import static org.assertj.core.api.Assertions.assertThat;

import java.awt.image.BufferedImage;
import java.io.IOException;
import java.io.PrintWriter;
import java.io.StringWriter;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;

import javax.imageio.ImageIO;

import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import io.rlvec.cli.Main;
import picocli.CommandLine;

/** {@code rlvec diagnose} end to end: exit codes, the printed summary, the PNG and the Markdown report. */
class DiagnoseCommandTest {
    private static final String COLLAPSE = "Agent_On_Policy_Distillation_wandb-i80f2v90.log";
    private static final String HEALTHY = "dstack-configs_verl_demo.log";

    @TempDir
    Path dir;

    private record Result(int code, String out, String err) {
    }

    private static Result execute(final String... args) {
        final CommandLine cl = Main.commandLine();
        final StringWriter out = new StringWriter();
        final StringWriter err = new StringWriter();
        cl.setOut(new PrintWriter(out, true));
        cl.setErr(new PrintWriter(err, true));
        final int code = cl.execute(args);
        return new Result(code, out.toString(), err.toString());
    }

    private static String log(final String name) {
        return RealLogsTest.resource(name).toString();
    }

    @Test
    void helpNamesTheOptions() {
        final Result r = execute("diagnose", "--help");
        assertThat(r.code()).isZero();
        assertThat(r.out()).contains("Usage: rlvec diagnose", "RUN", "--png", "--md", "--estimator", "--config",
            "--clip-ratio", "--rules");
    }

    @Test
    void usageErrors() {
        assertThat(execute("diagnose").code()).isEqualTo(2);
        final Result missing = execute("diagnose", dir.resolve("nope.log").toString());
        assertThat(missing.code()).isEqualTo(2);
        assertThat(missing.err()).contains("no such file");
        assertThat(execute("diagnose", log(HEALTHY), "--clip-ratio", "1.5").code()).isEqualTo(2);
    }

    @Test
    void aCollapsedRunPrintsFindingsFirstDrawsShadedPanelsAndFails() throws IOException {
        final Path png = dir.resolve("curves.png");
        final Path md = dir.resolve("report.md");
        final Result r = execute("diagnose", log(COLLAPSE), "--png", png.toString(), "--md", md.toString());
        assertThat(r.code()).as(r.err()).isEqualTo(1);
        assertThat(r.out()).contains("7 finding(s): 4 critical, 3 warning, 0 info")
            .contains("[CRITICAL] Entropy collapse (steps 11-60, rule entropy)")
            .contains("[CRITICAL] Response length collapsed to 1 token")
            .contains("Windows (mean per window").contains("chart: " + png + " (8 panels)");
        assertThat(r.out().indexOf("[CRITICAL]")).isLessThan(r.out().indexOf("Windows ("));

        assertThat(png).exists();
        assertThat(Files.size(png)).isGreaterThan(20_000);
        final BufferedImage img = ImageIO.read(png.toFile());
        assertThat(img).isNotNull();
        assertThat(img.getWidth()).isEqualTo(Charts.WIDTH);
        assertThat(img.getHeight()).isEqualTo(Charts.height(8));
        assertThat(shaded(img, Charts.CRITICAL)).isGreaterThan(10_000);
        assertThat(shaded(img, Charts.WARNING)).isGreaterThan(1_000);

        final String report = Files.readString(md, StandardCharsets.UTF_8);
        assertThat(report).startsWith("# Diagnosis of " + COLLAPSE).contains("![curves of " + COLLAPSE
            + "](curves.png)").contains("### CRITICAL: Entropy collapse").contains("| steps | pg_loss |");
    }

    @Test
    void aHealthyRunDrawsItsPanelsUnshadedAndPasses() throws IOException {
        final Path png = dir.resolve("healthy.png");
        final Result r = execute("diagnose", log(HEALTHY), "--png", png.toString());
        assertThat(r.code()).as(r.err()).isZero();
        assertThat(r.out()).contains("0 critical, 0 warning").contains("(7 panels)");
        final BufferedImage img = ImageIO.read(png.toFile());
        assertThat(img.getHeight()).isEqualTo(Charts.height(7));
        assertThat(shaded(img, Charts.CRITICAL) + shaded(img, Charts.WARNING)).isZero();
    }

    @Test
    void theEnginesOwnLogDrawsThePgLossSplit() throws IOException {
        final Path run = dir.resolve("engine.jsonl");
        try (io.rlvec.StepMetricsWriter w = io.rlvec.StepMetricsWriter.open(run)) {
            for (int step = 1; step <= 40; step++) {
                final java.util.Map<String, Double> m = new java.util.LinkedHashMap<>();
                final double pos = -0.3 - 0.002 * step;
                final double neg = 0.28 + 0.001 * (step % 5);
                m.put("actor/pg_loss", pos + neg);
                m.put("actor/pg_loss_pos_adv", pos);
                m.put("actor/pg_loss_neg_adv", neg);
                m.put("actor/pos_adv_ratio_gt1", 0.6);
                m.put("actor/neg_adv_ratio_gt1", 0.4);
                m.put("actor/pg_clipfrac", 0.01);
                m.put("actor/ppo_kl", 0.001);
                w.write(step, m, java.util.Map.of("critic/score/mean", 0.3 + 0.005 * step));
            }
        }
        final Path png = dir.resolve("split.png");
        final Result r = execute("diagnose", run.toString(), "--png", png.toString());
        assertThat(r.code()).as(r.err()).isZero();
        assertThat(r.out()).contains("read as: JSON lines (step + metrics)")
            .contains("[INFO] A>0 / A<0 split: the ratio moves with the advantages").contains("(4 panels)");
        final BufferedImage img = ImageIO.read(png.toFile());
        assertThat(img.getHeight()).isEqualTo(Charts.height(4));
        // the A>0 part (green) and the A<0 part (magenta) are drawn next to the total
        assertThat(pixels(img, 20, 150, 60)).isGreaterThan(200);
        assertThat(pixels(img, 200, 60, 140)).isGreaterThan(200);
    }

    @Test
    void theEstimatorFromTheCommandLineOrAConfigWins() throws IOException {
        final Result given = execute("diagnose", log("verl_getting-started-ipynb.log"), "--estimator", "grpo");
        assertThat(given.out()).contains("estimator: grpo (normalised advantages").contains("given with --estimator");
        final Path cfg = dir.resolve("config.yaml");
        Files.writeString(cfg, "algorithm:\n  adv_estimator: reinforce_plus_plus\n  gamma: 1.0\n");
        final Result config = execute("diagnose", log("logic-rl-formula_wandb-m950nfkl.log"), "--config",
            cfg.toString());
        assertThat(config.out()).contains("estimator: reinforce_plus_plus (normalised").contains("config.yaml");
        assertThat(execute("diagnose", log(HEALTHY), "--config", log(HEALTHY)).code()).isEqualTo(2);
    }

    @Test
    void theRulesTableInTheDocsIsTheCodes() throws IOException {
        final Result r = execute("diagnose", "--rules");
        assertThat(r.code()).isZero();
        assertThat(r.out()).isEqualTo(DiagnoseCommand.rulesTable());
        final String docs = Files.readString(Path.of("..", "docs", "diagnose.md"), StandardCharsets.UTF_8);
        assertThat(docs).contains(DiagnoseCommand.rulesTable());
    }

    /** Pixels of the colour {@code shade} takes over a white background (within 3 per channel). */
    private static long shaded(final BufferedImage img, final java.awt.Color shade) {
        final double a = shade.getAlpha() / 255.0;
        return pixels(img, (int) Math.round(255 * (1 - a) + shade.getRed() * a),
            (int) Math.round(255 * (1 - a) + shade.getGreen() * a), (int) Math.round(255 * (1 - a) + shade.getBlue()
                * a));
    }

    /** Pixels of colour (er, eg, eb), within 3 per channel. */
    private static long pixels(final BufferedImage img, final int er, final int eg, final int eb) {
        long n = 0;
        for (int y = 0; y < img.getHeight(); y++) {
            for (int x = 0; x < img.getWidth(); x++) {
                final int rgb = img.getRGB(x, y);
                if (Math.abs((rgb >> 16 & 0xff) - er) <= 3 && Math.abs((rgb >> 8 & 0xff) - eg) <= 3
                    && Math.abs((rgb & 0xff) - eb) <= 3) {
                    n++;
                }
            }
        }
        return n;
    }
}
