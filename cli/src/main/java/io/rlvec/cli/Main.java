package io.rlvec.cli;

import picocli.CommandLine;
import picocli.CommandLine.Command;

/**
 * The {@code rlvec} command line: {@code demo} (the main job: a GRPO-shaped policy-loss run on both engines),
 * {@code config} and {@code compute} (verl YAML; the actor loss of a batch), {@code diagnose} and
 * {@code parity} (verl golden cases against the engines). Exit codes: 0 ok, 1 parity failure or error, 2 usage
 * error, 3 an output file cannot be written (checked before any computation).
 */
@Command(name = "rlvec", mixinStandardHelpOptions = true, versionProvider = Main.Version.class,
    description = "SIMD-vectorised CPU engine for the loss side of RL fine-tuning, with verl's semantics.",
    subcommands = {DemoCommand.class, ParityCommand.class, ConfigCommand.class, ComputeCommand.class, io.rlvec.cli.diagnose.DiagnoseCommand.class, CommandLine.HelpCommand.class},
    exitCodeListHeading = "%nExit codes:%n",
    exitCodeList = {"0:success", "1:parity mismatch or failure", "2:usage error",
        "3:an output file cannot be written"})
public final class Main implements Runnable {
    /** Exit code for success. */
    public static final int OK = 0;
    /** Exit code for a parity mismatch, an unsupported case, or an error while running. */
    public static final int FAILURE = 1;
    /** Exit code for a usage error (picocli's default for bad arguments). */
    public static final int USAGE = 2;
    /** Exit code for an output file (report, result) that cannot be written; checked before running. */
    public static final int OUTPUT = 3;

    @CommandLine.Spec
    private CommandLine.Model.CommandSpec spec;

    /** Entry point. */
    public static void main(final String[] args) {
        System.exit(commandLine().execute(args));
    }

    /** @return the configured command line (tests call {@code execute} on it). */
    public static CommandLine commandLine() {
        final CommandLine cl = new CommandLine(new Main());
        cl.setExecutionExceptionHandler((ex, cmd, parsed) -> {
            cmd.getErr().println(cmd.getCommandSpec().qualifiedName() + ": error: " + ex);
            cmd.getErr().flush();
            return FAILURE;
        });
        // A usage error prints one line and where to find the usage, not the whole usage text.
        cl.setParameterExceptionHandler((ex, args) -> {
            final CommandLine cmd = ex.getCommandLine();
            final String name = cmd.getCommandSpec().qualifiedName();
            cmd.getErr().println(name + ": error: " + ex.getMessage());
            cmd.getErr().println("Try '" + name + " --help' for the usage.");
            cmd.getErr().flush();
            return USAGE;
        });
        return cl;
    }

    /** Without a subcommand: prints the usage and fails as a usage error. */
    @Override
    public void run() {
        throw new CommandLine.ParameterException(spec.commandLine(), "missing subcommand: demo, parity, config, compute or diagnose");
    }

    /** Reports the version from the jar manifest (or "dev" when run from classes). */
    static final class Version implements CommandLine.IVersionProvider {
        @Override
        public String[] getVersion() {
            final String v = Main.class.getPackage().getImplementationVersion();
            return new String[] {"rlvec " + (v == null ? "dev" : v) + " on Java " + Runtime.version()};
        }
    }
}
