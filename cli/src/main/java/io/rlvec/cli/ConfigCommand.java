package io.rlvec.cli;

import java.io.IOException;
import java.io.PrintWriter;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.Callable;

import io.rlvec.LossSpec;
import io.rlvec.VerlRelease;
import io.rlvec.cli.config.VerlConfig;
import picocli.CommandLine;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;
import picocli.CommandLine.Parameters;

/**
 * {@code rlvec config [FILE.yaml] [dotted.key=value...]}: reads verl's own trainer YAML (with Hydra-style overrides
 * and verl's defaults for what is absent) and prints the keys the engines use, in verl's names, and the actor's
 * loss specification.
 */
@Command(name = "config", mixinStandardHelpOptions = true,
    description = {"Reads a verl trainer YAML (actor_rollout_ref.actor.* incl. policy_loss.*, "
        + "actor_rollout_ref.rollout.temperature, algorithm.* incl. kl_ctrl.* and rollout_correction.*, critic.*) "
        + "with Hydra-style overrides (actor_rollout_ref.actor.clip_ratio_high=0.28, +new.key=value) and verl's "
        + "defaults, resolves ${...} interpolations of the keys read, refuses unknown keys of those sections with "
        + "the nearest known key, and prints the result in verl's key names."},
    exitCodeListHeading = "%nExit codes:%n", exitCodeList = {"0:the configuration is valid", "2:usage error, or a "
        + "key or value the configuration refuses"})
final class ConfigCommand implements Callable<Integer> {

    @CommandLine.Spec
    private CommandLine.Model.CommandSpec spec;

    @Parameters(paramLabel = "FILE.yaml|key=value", arity = "0..*",
        description = "a verl YAML file (at most one, first) and dotted overrides, applied in order")
    private List<String> args = new ArrayList<>();

    @Option(names = "--verl-release", paramLabel = "2026-01|2026-08", defaultValue = "2026-08",
        description = "the verl release whose semantics the computation follows (default: ${DEFAULT-VALUE})")
    private String release;

    @Override
    public Integer call() throws IOException {
        final VerlConfig config = load(spec, args, release);
        final PrintWriter out = spec.commandLine().getOut();
        out.print(config.describe());
        final LossSpec s;
        try {
            s = config.lossSpec();
        } catch (final IllegalArgumentException e) {
            throw new CommandLine.ParameterException(spec.commandLine(), e.getMessage());
        }
        out.println("# actor loss: " + s);
        out.println("# rollout correction: " + rolloutCorrection(spec, config));
        out.flush();
        return Main.OK;
    }

    /** @return algorithm.rollout_correction as parsed, in verl's key names (usage errors as such). */
    static String rolloutCorrection(final CommandLine.Model.CommandSpec spec, final VerlConfig config) {
        try {
            final StringBuilder sb = new StringBuilder("algorithm.rollout_correction{");
            config.rolloutCorrection().toVerlMap().forEach((k, v) ->
                sb.append(sb.charAt(sb.length() - 1) == '{' ? "" : ", ").append(k).append('=').append(v));
            return sb.append('}').toString();
        } catch (final IllegalArgumentException e) {
            throw new CommandLine.ParameterException(spec.commandLine(), e.getMessage());
        }
    }

    /** Splits the arguments into the YAML file and the overrides, and loads them (usage errors as such). */
    static VerlConfig load(final CommandLine.Model.CommandSpec spec, final List<String> args, final String release)
        throws IOException {
        Path file = null;
        final List<String> overrides = new ArrayList<>();
        for (final String a : args) {
            if (a.contains("=")) {
                overrides.add(a);
            } else if (file == null && overrides.isEmpty()) {
                file = Path.of(a);
                if (!Files.isRegularFile(file)) {
                    throw new CommandLine.ParameterException(spec.commandLine(), "no such file: " + a);
                }
            } else {
                throw new CommandLine.ParameterException(spec.commandLine(), "'" + a + "' is neither the (single, "
                    + "first) YAML file nor a dotted.key=value override");
            }
        }
        try {
            return VerlConfig.load(file, overrides, VerlRelease.fromVerl(release));
        } catch (final IllegalArgumentException e) {
            throw new CommandLine.ParameterException(spec.commandLine(), e.getMessage());
        }
    }
}
