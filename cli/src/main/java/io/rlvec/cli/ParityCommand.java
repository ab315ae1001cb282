package io.rlvec.cli;

import java.io.IOException;
import java.io.PrintWriter;
import java.io.UncheckedIOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.concurrent.Callable;
import java.util.stream.Stream;

import io.rlvec.Engine;
import io.rlvec.Engines;
import io.rlvec.cli.golden.CaseHandlers;
import io.rlvec.cli.golden.GoldenRunner;
import io.rlvec.cli.golden.ParityReport;
import picocli.CommandLine;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;
import picocli.CommandLine.Parameters;

/**
 * {@code rlvec parity FILE|DIR...}: runs verl golden cases (safetensors files; a directory means its
 * {@code *.safetensors} files) on the engines and compares every output with verl's.
 */
@Command(name = "parity", mixinStandardHelpOptions = true,
    description = {"Runs verl golden cases (safetensors) on the engines and compares every output with verl's: "
        + "relative 1e-5 on losses, metrics and per-token values, absolute 1e-5 on gradients. Documented "
            + "deviations (verl NaN/Inf where the engine's contract is finite, or float32 PyTorch farther than the "
            + "engine from a double-precision evaluation) are reported as DEVIATION; outputs the engine has no "
            + "counterpart for are computed by the harness and labelled so; files whose function has no "
            + "handler as UNSUPPORTED. With --engine both, the vector engine is also held to the reference "
            + "(gradients bit-identical, scalars within 1 ulp)."},
    exitCodeListHeading = "%nExit codes:%n",
    exitCodeList = {"0:every case passed or deviated for a documented reason",
        "1:a FAIL, an UNSUPPORTED case, or an engine/reference breach", "2:usage error",
        "3:a report file (--json, --junit, --markdown) cannot be written; checked before any case runs"})
final class ParityCommand implements Callable<Integer> {

    /** Which engines to run. */
    enum EngineChoice {
        /** The preferred (vector) engine only. */
        vector,
        /** The scalar reference only. */
        reference,
        /** Both, each against verl, and the vector engine against the reference. */
        both
    }

    @CommandLine.Spec
    private CommandLine.Model.CommandSpec spec;

    @Parameters(arity = "1..*", paramLabel = "FILE|DIR", description = "golden case files, or directories of them")
    private List<Path> inputs;

    @Option(names = "--engine", defaultValue = "both", paramLabel = "vector|reference|both",
        description = "engines to run (default: ${DEFAULT-VALUE})")
    private EngineChoice engine;

    @Option(names = "--json", paramLabel = "FILE", description = "also write the report as JSON")
    private Path json;

    @Option(names = "--junit", paramLabel = "FILE",
        description = "also write the report as JUnit XML (one test case per file, tensor and engine)")
    private Path junit;

    @Option(names = "--markdown", paramLabel = "FILE",
        description = "also write a short Markdown summary (counts, deviations, the checks that did not pass)")
    private Path markdown;

    @Option(names = "--strict",
        description = "fail a case whose metadata or params hold keys that are not loss keys (default: report them)")
    private boolean strict;

    @Option(names = {"-q", "--problems-only"},
        description = "print only rows that are not PASS (and the summary)")
    private boolean problemsOnly;

    @Override
    public Integer call() throws IOException {
        final PrintWriter out = spec.commandLine().getOut();
        final List<Path> files = expand(inputs);
        if (files.isEmpty()) {
            throw new CommandLine.ParameterException(spec.commandLine(), "no .safetensors files in " + inputs);
        }
        for (final Map.Entry<String, Path> o : outputs().entrySet()) {
            final String unwritable = OutputFiles.unwritable(o.getValue());
            if (unwritable != null) {
                spec.commandLine().getErr().println(spec.qualifiedName() + ": error: " + o.getKey() + " "
                    + unwritable);
                spec.commandLine().getErr().flush();
                return Main.OUTPUT;
            }
        }
        final List<Engine> engines = new ArrayList<>();
        try {
            if (engine != EngineChoice.reference) {
                engines.add(Engines.preferred());
                out.println("engine: " + engines.get(0).name() + " (" + Engines.lastChoiceReason() + ")");
            }
            if (engine != EngineChoice.vector) {
                engines.add(Engines.reference());
            }
            final GoldenRunner runner = new GoldenRunner(CaseHandlers.defaults(), engines, strict);
            final ParityReport report = new ParityReport(engines.stream().map(Engine::name).toList());
            for (final Path f : files) {
                report.add(runner.run(f));
            }
            report.print(out, problemsOnly);
            if (json != null) {
                report.writeJson(json);
                out.println("JSON report: " + json);
            }
            if (junit != null) {
                report.writeJunit(junit);
                out.println("JUnit report: " + junit);
            }
            if (markdown != null) {
                report.writeMarkdown(markdown);
                out.println("Markdown summary: " + markdown);
            }
            out.flush();
            return report.hasFailures() ? Main.FAILURE : Main.OK;
        } finally {
            for (final Engine e : engines) {
                if (e instanceof AutoCloseable c) {
                    try {
                        c.close();
                    } catch (final Exception ignored) {
                        // Closing only stops worker threads; nothing to report.
                    }
                }
            }
        }
    }

    private Map<String, Path> outputs() {
        final Map<String, Path> m = new java.util.LinkedHashMap<>();
        m.put("--json", json);
        m.put("--junit", junit);
        m.put("--markdown", markdown);
        return m;
    }

    private List<Path> expand(final List<Path> paths) {
        final List<Path> files = new ArrayList<>();
        for (final Path p : paths) {
            if (Files.isDirectory(p)) {
                try (Stream<Path> s = Files.list(p)) {
                    s.filter(f -> f.getFileName().toString().endsWith(".safetensors") && Files.isRegularFile(f))
                        .sorted().forEach(files::add);
                } catch (final IOException e) {
                    throw new UncheckedIOException(e);
                }
            } else if (Files.exists(p)) {
                files.add(p);
            } else {
                throw new CommandLine.ParameterException(spec.commandLine(), "no such file or directory: " + p);
            }
        }
        return files;
    }
}
