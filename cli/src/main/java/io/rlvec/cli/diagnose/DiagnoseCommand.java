package io.rlvec.cli.diagnose;

import java.io.IOException;
import java.io.PrintWriter;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Locale;
import java.util.concurrent.Callable;

import picocli.CommandLine;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;
import picocli.CommandLine.Parameters;

/**
 * {@code rlvec diagnose RUN [--png curves.png] [--md report.md]}: reads a run's logged metrics and prints findings
 * a practitioner can act on, then a table of windows; optionally draws the curves and writes a Markdown report.
 */
@Command(name = "diagnose", mixinStandardHelpOptions = true, sortOptions = false,
    description = {"Reads a training run's logged metrics (verl console log, verl file-logger JSON lines, the "
        + "engine's StepMetricsWriter JSON lines, TRL log dicts) and turns them into findings: pg_loss sign and "
        + "trend (read differently for critic-based PPO and group-normalised estimators), clipping and trust "
        + "region, policy not moving, entropy collapse or explosion, KL drift, reward collapse or plateau, reward "
        + "components traded away, response length collapse or at the limit, grad_norm spikes, NaN/Inf. Each "
        + "finding names its steps, the values that show it, a plain reading and a severity.",
        "Thresholds: docs/diagnose.md, or --rules."},
    exitCodeListHeading = "%nExit codes:%n",
    exitCodeList = {"0:no CRITICAL finding", "1:a CRITICAL finding, or an error", "2:usage error"})
public final class DiagnoseCommand implements Callable<Integer> {
    @CommandLine.Spec
    private CommandLine.Model.CommandSpec spec;

    @Parameters(index = "0", arity = "0..1", paramLabel = "RUN", description = "the run's log file")
    private Path runFile;

    @Option(names = "--png", paramLabel = "FILE", description = "write the curves as a PNG, flagged steps shaded")
    private Path png;

    @Option(names = "--md", paramLabel = "FILE",
        description = "write a Markdown report (embeds the PNG when --png is given)")
    private Path md;

    @Option(names = "--estimator", paramLabel = "NAME",
        description = "the run's algorithm.adv_estimator (gae, grpo, rloo, reinforce_plus_plus, ...); default: "
            + "read from the config printed in the log, else inferred from the metrics")
    private String estimatorName;

    @Option(names = "--config", paramLabel = "FILE",
        description = "a config holding adv_estimator (verl's printed config, a Hydra config.yaml, overrides)")
    private Path config;

    @Option(names = "--clip-ratio", defaultValue = "0.2",
        description = "the run's clip_ratio, for the ppo_kl rule (default: ${DEFAULT-VALUE})")
    private double clipRatio;

    @Option(names = "--rules", description = "print the rules table (every threshold) and exit")
    private boolean rules;

    @Override
    public Integer call() throws IOException {
        final PrintWriter out = spec.commandLine().getOut();
        if (rules) {
            out.print(rulesTable());
            out.flush();
            return 0;
        }
        if (runFile == null) {
            throw new CommandLine.ParameterException(spec.commandLine(), "missing RUN (the log file to diagnose)");
        }
        if (!Files.isRegularFile(runFile)) {
            throw new CommandLine.ParameterException(spec.commandLine(), "RUN " + runFile + ": no such file");
        }
        if (!(clipRatio > 0 && clipRatio < 1)) {
            throw new CommandLine.ParameterException(spec.commandLine(), "--clip-ratio must be in (0, 1): "
                + clipRatio);
        }
        final Run run;
        try {
            run = RunReader.read(runFile);
        } catch (final IllegalArgumentException e) {
            throw new CommandLine.ParameterException(spec.commandLine(), e.getMessage(), e);
        }
        Estimator estimator = Estimator.infer(run);
        if (config != null) {
            final String text = Files.readString(config, StandardCharsets.UTF_8);
            final var name = Estimator.fromConfigText(text);
            if (name.isEmpty()) {
                throw new CommandLine.ParameterException(spec.commandLine(), "--config " + config
                    + ": no adv_estimator in it");
            }
            estimator = Estimator.named(name.get(), "read from " + config.getFileName());
        }
        if (estimatorName != null) {
            estimator = Estimator.named(estimatorName, "given with --estimator");
        }
        final Diagnosis d = Diagnosis.of(run, estimator, clipRatio);
        out.print(Reports.text(d));
        if (png != null) {
            Charts.write(d, png);
            out.println();
            out.println("chart: " + png + " (" + Charts.panels(run).size() + " panels)");
        }
        if (md != null) {
            final String rel = png == null ? null : relative(md, png);
            Files.writeString(md, Reports.markdown(d, rel), StandardCharsets.UTF_8);
            out.println("report: " + md);
        }
        out.flush();
        return d.worst() == Severity.CRITICAL ? 1 : 0;
    }

    private static String relative(final Path md, final Path png) {
        final Path base = md.toAbsolutePath().getParent();
        final Path p = png.toAbsolutePath();
        return (base == null ? p : base.relativize(p)).toString().replace('\\', '/');
    }

    /** @return the rules table as printed by {@code --rules} (and listed in docs/diagnose.md) */
    public static String rulesTable() {
        final StringBuilder b = new StringBuilder("| rule | threshold | value | meaning |\n|---|---|---|---|\n");
        for (final Thresholds.Row r : Thresholds.TABLE) {
            b.append(String.format(Locale.ROOT, "| %s | %s | %s | %s |%n", r.rule(), r.name(), r.value(),
                r.meaning()));
        }
        return b.toString();
    }
}
