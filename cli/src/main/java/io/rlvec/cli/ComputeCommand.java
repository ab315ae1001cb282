package io.rlvec.cli;

import java.io.IOException;
import java.io.PrintWriter;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.EnumMap;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.concurrent.Callable;

import com.fasterxml.jackson.databind.ObjectMapper;

import io.rlvec.ActorLossResult;
import io.rlvec.Column;
import io.rlvec.ElementType;
import io.rlvec.Engine;
import io.rlvec.Engines;
import io.rlvec.LossSpec;
import io.rlvec.OffHeapArray;
import io.rlvec.TokenBatch;
import io.rlvec.cli.config.VerlConfig;
import io.rlvec.cli.io.Safetensors;
import io.rlvec.cli.io.SafetensorsWriter;
import io.rlvec.cli.io.TensorInfo;
import picocli.CommandLine;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;
import picocli.CommandLine.Parameters;

/**
 * {@code rlvec compute --config verl.yaml [overrides] --in batch.safetensors --out result.safetensors}: the actor
 * loss of a batch whose tensors carry verl's names, configured by verl's YAML.
 */
@Command(name = "compute", mixinStandardHelpOptions = true,
    description = {"Computes (--term actor, the default) the actor loss (policy loss, aggregation, KL loss when actor.use_kl_loss) of a batch "
        + "from per-token log-probs, as verl's dp_actor does, configured by a verl YAML and Hydra-style overrides "
        + "(see rlvec config). Input tensors, [B, T] each, under verl's names: old_log_probs, log_probs (or "
        + "log_prob / old_log_prob), advantages, response_mask; ref_log_prob when use_kl_loss; rollout_is_weights "
        + "when present. Writes loss, pg_loss, kl_loss, grad_log_probs [B, T] and one F64 scalar per metric "
        + "(metrics/<verl name>), and prints the metrics under verl's names."},
    exitCodeListHeading = "%nExit codes:%n", exitCodeList = {"0:computed and written",
        "1:an error while computing", "2:usage error (options, configuration, missing or misshapen tensors)",
        "3:the output file cannot be written; checked before computing"})
final class ComputeCommand implements Callable<Integer> {

    @CommandLine.Spec
    private CommandLine.Model.CommandSpec spec;

    @Option(names = "--config", paramLabel = "FILE.yaml", description = "verl trainer YAML (default: verl's defaults)")
    private Path config;

    @Parameters(paramLabel = "key=value", arity = "0..*", description = "Hydra-style overrides, applied in order")
    private List<String> overrides = new ArrayList<>();

    @Option(names = "--in", required = true, paramLabel = "FILE", description = "the batch (safetensors)")
    private Path in;

    @Option(names = "--out", required = true, paramLabel = "FILE", description = "where to write the result")
    private Path out;

    @Option(names = "--verl-release", paramLabel = "2026-01|2026-08", defaultValue = "2026-08",
        description = "the verl release the computation follows (default: ${DEFAULT-VALUE})")
    private String release;

    @Option(names = "--engine", paramLabel = "vector|reference", defaultValue = "vector",
        description = "engine (default: ${DEFAULT-VALUE})")
    private String engineName;

    @Option(names = "--term", paramLabel = "actor|value|advantages", defaultValue = "actor",
        description = {"what to compute (default: ${DEFAULT-VALUE}):",
            "actor: the actor loss from log-probs (as above);",
            "value: the critic's compute_value_loss from vpreds, returns, values, response_mask (critic.* keys); "
                + "writes vf_loss, grad_vpreds and the critic/* metrics;",
            "advantages: algorithm.adv_estimator from token_level_rewards, response_mask, plus index (int64 [B], "
                + "group ids) for the group estimators, values for gae, reward_baselines for remax; writes "
                + "advantages and returns [B, T]"})
    private String term;

    @Override
    public Integer call() throws IOException {
        final String unwritable = OutputFiles.unwritable(out);
        if (unwritable != null) {
            spec.commandLine().getErr().println(spec.qualifiedName() + ": error: --out " + unwritable);
            spec.commandLine().getErr().flush();
            return Main.OUTPUT;
        }
        if (!engineName.equals("vector") && !engineName.equals("reference")) {
            throw usage("--engine must be vector or reference, got '" + engineName + "'");
        }
        final List<String> args = new ArrayList<>();
        if (config != null) {
            args.add(config.toString());
        }
        args.addAll(overrides);
        final VerlConfig cfg = ConfigCommand.load(spec, args, release);
        if (term.equals("value") || term.equals("advantages")) {
            return term.equals("value") ? value(cfg) : advantages(cfg);
        }
        if (!term.equals("actor")) {
            throw usage("--term must be actor, value or advantages, got '" + term + "'");
        }
        final LossSpec loss;
        try {
            loss = cfg.lossSpec();
        } catch (final IllegalArgumentException e) {
            throw usage(e.getMessage());
        }
        final PrintWriter o = spec.commandLine().getOut();
        try (Safetensors st = open(in)) {
            final Map<Column, String> columns = new EnumMap<>(Column.class);
            columns.put(Column.LOG_PROB, name(st, "log_probs", "log_prob"));
            columns.put(Column.OLD_LOG_PROB, name(st, "old_log_probs", "old_log_prob"));
            columns.put(Column.ADVANTAGES, name(st, "advantages"));
            if (loss.useKlLoss()) {
                columns.put(Column.REF_LOG_PROB, name(st, "ref_log_prob", "ref_log_probs"));
            }
            if (st.has("rollout_is_weights")) {
                columns.put(Column.ROLLOUT_IS_WEIGHTS, "rollout_is_weights");
            }
            final long[] bt = shapeOf(st, columns);
            final Engine engine = engine();
            try (TokenBatch batch = batch(st, columns, bt);
                 OffHeapArray grad = OffHeapArray.allocate(ElementType.F32, batch.numTokens())) {
                final ActorLossResult r = new ActorLossResult();
                final long t0 = System.nanoTime();
                engine.actorLoss(loss, batch, grad, r);
                final double ms = (System.nanoTime() - t0) / 1e6;
                final Map<String, Double> metrics = r.metrics();
                final SafetensorsWriter w = writer(cfg, "rlvec compute: actor loss from log-probs")
                    .f32("loss", new long[0], r.loss()).f32("pg_loss", new long[0], r.pgLoss())
                    .f32("kl_loss", new long[0], r.klLoss())
                    .array("grad_log_probs", bt, grad);
                metrics.forEach((k, v) -> w.f64("metrics/" + k, new long[0], v));
                w.write(out);
                report(o, engine, bt, batch, cfg, ms);
                o.println(String.format(Locale.ROOT, "loss: %.9g", r.loss()));
                metrics.forEach((k, v) -> o.println(String.format(Locale.ROOT, "%s: %.9g", k, v)));
                o.println("written: " + out);
            } finally {
                close(engine);
            }
        }
        o.flush();
        return Main.OK;
    }

    /** The critic's value loss: vpreds, returns, values and the mask, configured by critic.* keys. */
    private Integer value(final VerlConfig cfg) throws IOException {
        final LossSpec loss;
        try {
            loss = cfg.valueLossSpec();
        } catch (final IllegalArgumentException e) {
            throw usage(e.getMessage());
        }
        final PrintWriter o = spec.commandLine().getOut();
        try (Safetensors st = open(in)) {
            final Map<Column, String> columns = new EnumMap<>(Column.class);
            columns.put(Column.VPREDS, name(st, "vpreds"));
            columns.put(Column.RETURNS, name(st, "returns"));
            columns.put(Column.VALUES, name(st, "values"));
            final long[] bt = shapeOf(st, columns);
            final Engine engine = engine();
            try (TokenBatch batch = batch(st, columns, bt);
                 OffHeapArray grad = OffHeapArray.allocate(ElementType.F32, batch.numTokens())) {
                final io.rlvec.ValueLossResult r = new io.rlvec.ValueLossResult();
                final long t0 = System.nanoTime();
                engine.valueLoss(loss, batch, grad, r);
                final double ms = (System.nanoTime() - t0) / 1e6;
                final SafetensorsWriter w = writer(cfg, "rlvec compute: critic value loss")
                    .f32("vf_loss", new long[0], r.vfLoss()).array("grad_vpreds", bt, grad);
                r.metrics().forEach((k, v) -> w.f64("metrics/" + k, new long[0], v));
                w.write(out);
                report(o, engine, bt, batch, cfg, ms);
                r.metrics().forEach((k, v) -> o.println(String.format(Locale.ROOT, "%s: %.9g", k, v)));
                o.println("written: " + out);
            } finally {
                close(engine);
            }
        }
        o.flush();
        return Main.OK;
    }

    /** The advantage estimator of algorithm.adv_estimator over token_level_rewards and the mask. */
    private Integer advantages(final VerlConfig cfg) throws IOException {
        final io.rlvec.AdvantageSpec adv;
        try {
            adv = cfg.advantageSpec();
        } catch (final IllegalArgumentException e) {
            throw usage(e.getMessage());
        }
        final PrintWriter o = spec.commandLine().getOut();
        try (Safetensors st = open(in)) {
            final Map<Column, String> columns = new EnumMap<>(Column.class);
            columns.put(Column.TOKEN_LEVEL_REWARDS, name(st, "token_level_rewards"));
            if (st.has("values")) {
                columns.put(Column.VALUES, "values");
            }
            final long[] bt = shapeOf(st, columns);
            final Engine engine = engine();
            final io.rlvec.AdvantageInputs inputs = new io.rlvec.AdvantageInputs();
            OffHeapArray index = null;
            OffHeapArray baselines = null;
            try (TokenBatch batch = batch(st, columns, bt);
                 OffHeapArray advantages = OffHeapArray.allocate(ElementType.F32, batch.numTokens());
                 OffHeapArray returns = OffHeapArray.allocate(ElementType.F32, batch.numTokens())) {
                if (st.has("index")) {
                    final double[] ids = st.doubles("index");
                    final long[] groups = new long[ids.length];
                    for (int i = 0; i < ids.length; i++) {
                        groups[i] = (long) ids[i];
                    }
                    index = OffHeapArray.ofLongs(groups);
                    inputs.index(index);
                }
                if (st.has("reward_baselines")) {
                    baselines = st.float32("reward_baselines");
                    inputs.rewardBaselines(baselines);
                }
                final long t0 = System.nanoTime();
                try {
                    engine.advantages(adv, batch, inputs, advantages, returns);
                } catch (final IllegalArgumentException e) {
                    throw usage(e.getMessage());
                }
                final double ms = (System.nanoTime() - t0) / 1e6;
                writer(cfg, "rlvec compute: advantages (" + adv.estimator().verlName() + ")")
                    .array("advantages", bt, advantages).array("returns", bt, returns).write(out);
                report(o, engine, bt, batch, cfg, ms);
                o.println("estimator: " + adv);
                o.println("written: " + out);
            } finally {
                if (index != null) {
                    index.close();
                }
                if (baselines != null) {
                    baselines.close();
                }
                close(engine);
            }
        }
        o.flush();
        return Main.OK;
    }

    /** @return [B, T] of response_mask, after checking every column has it. */
    private long[] shapeOf(final Safetensors st, final Map<Column, String> columns) {
        final String mask = name(st, "response_mask");
        final long[] bt = st.info(mask).shape();
        if (bt.length != 2) {
            throw usage(mask + " must be [B, T], got " + st.info(mask).describe());
        }
        for (final String n : columns.values()) {
            final TensorInfo t = st.info(n);
            if (!java.util.Arrays.equals(t.shape(), bt)) {
                throw usage(n + " must have the shape of " + mask + " " + java.util.Arrays.toString(bt) + ", got "
                    + t.describe());
            }
        }
        return bt;
    }

    private TokenBatch batch(final Safetensors st, final Map<Column, String> columns, final long[] bt) {
        final TokenBatch.Builder b = TokenBatch.padded(Math.toIntExact(bt[0]), Math.toIntExact(bt[1]))
            .column(Column.RESPONSE_MASK, st.float32("response_mask"));
        columns.forEach((c, n) -> b.column(c, st.float32(n)));
        return b.build();
    }

    private Engine engine() {
        return engineName.equals("vector") ? Engines.preferred() : Engines.reference();
    }

    private SafetensorsWriter writer(final VerlConfig cfg, final String function) throws IOException {
        return new SafetensorsWriter()
            .metadata("function", function)
            .metadata("verl_release", cfg.release().label())
            .metadata("config", new ObjectMapper().writeValueAsString(stringValues(cfg.values())));
    }

    private static void report(final PrintWriter o, final Engine engine, final long[] bt, final TokenBatch batch,
                               final VerlConfig cfg, final double ms) {
        o.println("engine: " + engine.name() + ", batch " + bt[0] + " x " + bt[1] + ", " + batch.numTokens()
            + " tokens, verl " + cfg.release().label() + ", " + String.format(Locale.ROOT, "%.2f ms", ms));
    }

    private static void close(final Engine engine) {
        if (engine instanceof AutoCloseable c) {
            try {
                c.close();
            } catch (final Exception ignored) {
                // Closing only stops worker threads.
            }
        }
    }

    private static Map<String, String> stringValues(final Map<String, Object> m) {
        final Map<String, String> s = new LinkedHashMap<>();
        m.forEach((k, v) -> s.put(k, String.valueOf(v)));
        return s;
    }

    private Safetensors open(final Path p) throws IOException {
        try {
            return Safetensors.open(p);
        } catch (final java.nio.file.NoSuchFileException e) {
            throw usage("no such file: " + p);
        } catch (final io.rlvec.cli.io.SafetensorsFormatException e) {
            throw usage(e.getMessage());
        }
    }

    private String name(final Safetensors st, final String... names) {
        for (final String n : names) {
            if (st.has(n)) {
                return n;
            }
        }
        throw usage(in + " has no tensor " + String.join(" or ", names) + " (it has " + st.names() + ")");
    }

    private CommandLine.ParameterException usage(final String message) {
        return new CommandLine.ParameterException(spec.commandLine(), message);
    }
}
