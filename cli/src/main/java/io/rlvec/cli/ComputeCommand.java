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
import io.rlvec.KlPenalty;
import io.rlvec.Logits;
import io.rlvec.LossSpec;
import io.rlvec.OffHeapArray;
import io.rlvec.RolloutCorrectionResult;
import io.rlvec.TokenBatch;
import io.rlvec.VerlRelease;
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
    description = {"Computes (--term actor, the default) the actor loss (policy loss, aggregation, entropy bonus, KL "
        + "loss when actor.use_kl_loss) of a batch, as verl's actor does, configured by a verl YAML and Hydra-style "
        + "overrides (see rlvec config). Input tensors under verl's names, each of the shape of response_mask: "
        + "[B, T] (padded), or [N] with cu_seqlens [B + 1] (packed). From log-probs: old_log_probs, log_probs (or "
        + "log_prob / old_log_prob), advantages, response_mask; ref_log_prob when use_kl_loss; rollout_is_weights "
        + "when present. Writes loss, pg_loss, kl_loss, grad_log_probs and one F64 scalar per metric "
        + "(metrics/<verl name>), and prints the metrics under verl's names.",
        "From logits (when the batch holds logits; log_probs is then not read): logits [B, T, V] (or [N, V], one "
            + "row per token slot; F32 or BF16 read in place, F16/F64 converted) and responses (the sampled token "
            + "ids, I64 or I32, the shape of response_mask) in place of log_probs; ref_logits of the same shape for "
            + "kl_loss_type=full. The logits are divided by actor_rollout_ref.rollout.temperature; the entropy "
            + "is computed when actor.entropy_coeff != 0 or actor.calculate_entropy. Also writes log_probs, "
            + "entropy (when computed), sum_pi_squared (with actor.calculate_sum_pi_squared), entropy_loss and "
            + "grad_logits (d loss / d raw logits, the shape of logits).",
        "Rollout correction (algorithm.rollout_correction.*), when the batch holds rollout_log_probs (or "
            + "rollout_log_prob), as verl's trainer: decoupled (bypass_mode false) computes IS weights and the "
            + "rejection mask from old_log_probs and rollout_log_probs before the loss, which then uses them (a "
            + "given rollout_is_weights is replaced when rollout_is is set); bypass_mode true takes "
            + "rollout_log_probs as old_log_probs and runs loss_mode bypass_mode (loss_type ppo_clip or reinforce) "
            + "with the correction inside the loss. Also writes rollout_is_weights (when rollout_is is set), "
            + "response_mask (the rejection mask, when rollout_rs is set) and the rollout_corr/* metrics "
            + "(actor/rollout_corr/* in bypass_mode)."},
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
            "actor: the actor loss from log-probs or logits (as above);",
            "value: the critic's compute_value_loss from vpreds, returns, values, response_mask (critic.* keys); "
                + "writes vf_loss, grad_vpreds and the critic/* metrics;",
            "advantages: algorithm.adv_estimator from token_level_rewards, response_mask, plus index (int64 [B], "
                + "group ids) for the group estimators, values for gae, reward_baselines for remax, and for gdpo "
                + "one tensor [B] per algorithm.gdpo_reward_keys entry, named by the key (or reward.<key>), "
                + "weighted by algorithm.gdpo_reward_weights; old_log_probs and sum_pi_squared for the optimal-token "
                + "baselines (or logits and responses with actor.calculate_sum_pi_squared=true, from which the "
                + "vocabulary pass computes both, written as well); with rollout_log_probs and old_log_probs, the "
                + "decoupled rollout correction first (the estimator sees its rejection mask); writes advantages and returns "
                + "[B, T] (and gdpo/<key>/{mean,std,max,min} for gdpo, the rollout correction's outputs)"})
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
        return actor(cfg);
    }

    /**
     * The actor loss: from per-token log-probs, or, when the batch holds {@code logits}, from the logits and the
     * sampled {@code responses} through the vocabulary pass (temperature
     * {@code actor_rollout_ref.rollout.temperature}).
     */
    private Integer actor(final VerlConfig cfg) throws IOException {
        LossSpec loss;
        final VerlConfig.RolloutCorrection rc;
        try {
            loss = cfg.lossSpec();
            rc = cfg.rolloutCorrection();
        } catch (final IllegalArgumentException e) {
            throw usage(e.getMessage());
        }
        final PrintWriter o = spec.commandLine().getOut();
        try (Safetensors st = open(in)) {
            final boolean fromLogits = st.has("logits");
            final boolean fullKl = loss.useKlLoss() && loss.klLossType().estimator() == KlPenalty.Estimator.FULL;
            if (fullKl && !fromLogits) {
                throw usage("actor_rollout_ref.actor.kl_loss_type=full needs logits and ref_logits in " + in);
            }
            final String rollout = st.has("rollout_log_probs") ? "rollout_log_probs"
                : st.has("rollout_log_prob") ? "rollout_log_prob" : null;
            if (rc.bypassMode() && rollout == null) {
                throw usage("algorithm.rollout_correction.bypass_mode=true needs rollout_log_probs in " + in
                    + " (verl: bypass_mode=True requires rollout_log_probs in batch); it has " + st.names());
            }
            // verl's trainer applies the correction whenever the batch has rollout_log_probs (metrics only when
            // rollout_is and rollout_rs are null); bypass_mode applies it inside the loss instead.
            final boolean decoupled = rollout != null && !rc.bypassMode();
            final Map<Column, String> columns = new EnumMap<>(Column.class);
            if (!fromLogits) {
                columns.put(Column.LOG_PROB, name(st, "log_probs", "log_prob"));
            }
            // bypass_mode: old_log_probs := rollout_log_probs (the old-policy forward is skipped).
            columns.put(Column.OLD_LOG_PROB, rc.bypassMode() ? rollout : name(st, "old_log_probs", "old_log_prob"));
            columns.put(Column.ADVANTAGES, name(st, "advantages"));
            if (loss.useKlLoss() && !fullKl) {
                columns.put(Column.REF_LOG_PROB, name(st, "ref_log_prob", "ref_log_probs"));
            }
            if (st.has("rollout_is_weights") && !(decoupled && rc.spec().hasIs())) {
                columns.put(Column.ROLLOUT_IS_WEIGHTS, "rollout_is_weights");
            }
            if (decoupled) {
                columns.put(Column.ROLLOUT_LOG_PROB, rollout);
            }
            final Layout layout = layout(st, columns);
            final long[] bt = layout.shape();
            final Engine engine = engine();
            final List<AutoCloseable> owned = new ArrayList<>();
            try (TokenBatch given = batch(st, columns, layout)) {
                final int n = given.numTokens();
                TokenBatch batch = given;
                final RolloutCorrectionResult corr = new RolloutCorrectionResult();
                OffHeapArray isWeights = null;
                OffHeapArray rsMask = null;
                if (decoupled) {
                    final Corrected c = correct(engine, rc, st, columns, layout, given, Map.of(), corr, owned);
                    isWeights = c.isWeights();
                    rsMask = c.rsMask();
                    batch = c.batch();
                } else if (rc.bypassMode() && cfg.release() != VerlRelease.V2026_01
                    && loss.lossAggMode() == io.rlvec.AggMode.TOKEN_MEAN) {
                    // verl 2026-08's engines count batch_num_tokens on the mask before the loss's rejection, so
                    // token-mean keeps rejected tokens in its denominator (2026-01's dp_actor does not pass it).
                    loss = loss.toBuilder().batchNumTokens(validTokens(given.mask(), n)).build();
                }
                final OffHeapArray grad = own(owned, OffHeapArray.allocate(ElementType.F32, n));
                final ActorLossResult r = new ActorLossResult();
                final SafetensorsWriter w;
                final double ms;
                OffHeapArray logProbs = fromLogits ? null : given.column(Column.LOG_PROB);
                if (fromLogits) {
                    final LogitsInput li = logits(st, "logits", layout);
                    final Logits refLogits = fullKl ? logits(st, "ref_logits", layout).logits() : null;
                    if (refLogits != null && refLogits.vocab() != li.logits().vocab()) {
                        throw usage("ref_logits must have the vocabulary of logits (" + li.logits().vocab() + "), got "
                            + refLogits.vocab());
                    }
                    final OffHeapArray labels = labels(st, layout);
                    final OffHeapArray gradLogits = own(owned,
                        OffHeapArray.allocate(ElementType.F32, (long) n * li.logits().vocab()));
                    final OffHeapArray lp = own(owned, OffHeapArray.allocate(ElementType.F32, n));
                    final OffHeapArray ent = loss.entropyNeeded()
                        ? own(owned, OffHeapArray.allocate(ElementType.F32, n)) : null;
                    // verl's actor.calculate_sum_pi_squared: sum_j softmax(z)_j^2 per token from the same forward
                    // (no gradient; the optimal-token baselines' variance proxy).
                    final OffHeapArray spi = calculateSumPiSquared(cfg)
                        ? own(owned, OffHeapArray.allocate(ElementType.F32, n)) : null;
                    final long t0 = System.nanoTime();
                    try {
                        engine.actorLoss(loss, batch, li.logits(), labels, refLogits, grad, gradLogits, r);
                        // The per-token values the loss used (rows outside the given mask are 0 and not read).
                        engine.logProbs(li.logits(), labels, loss.temperature(), given.mask(), lp, ent, spi, null,
                            null);
                    } catch (final IllegalArgumentException e) {
                        throw usage(e.getMessage());
                    }
                    ms = (System.nanoTime() - t0) / 1e6;
                    logProbs = lp;
                    w = writer(cfg, "rlvec compute: actor loss from logits");
                    w.array("log_probs", bt, lp);
                    if (ent != null) {
                        w.array("entropy", bt, ent);
                    }
                    if (spi != null) {
                        w.array("sum_pi_squared", bt, spi);
                    }
                    w.array("grad_logits", li.shape(), gradLogits);
                } else {
                    final long t0 = System.nanoTime();
                    try {
                        engine.actorLoss(loss, batch, grad, r);
                    } catch (final IllegalArgumentException e) {
                        throw usage(e.getMessage());
                    }
                    ms = (System.nanoTime() - t0) / 1e6;
                    w = writer(cfg, "rlvec compute: actor loss from log-probs");
                }
                if (rc.bypassMode() && (rc.spec().hasIs() || !rc.spec().rsOptions().isEmpty())) {
                    // The weights and mask bypass_mode used inside the loss: train = log_probs, rollout =
                    // old_log_probs (= rollout_log_probs); its metrics are already the loss's.
                    isWeights = rc.spec().hasIs() ? own(owned, OffHeapArray.allocate(ElementType.F32, n)) : null;
                    rsMask = own(owned, OffHeapArray.allocate(ElementType.F32, n));
                    final Map<Column, OffHeapArray> pair = new EnumMap<>(Column.class);
                    pair.put(Column.OLD_LOG_PROB, logProbs);
                    pair.put(Column.ROLLOUT_LOG_PROB, given.column(Column.OLD_LOG_PROB));
                    try (TokenBatch b = batch(st, Map.of(), layout, given.mask(), pair)) {
                        engine.rolloutCorrection(rc.spec(), b, isWeights, rsMask, new RolloutCorrectionResult());
                    }
                }
                final Map<String, Double> metrics = actorMetrics(cfg, r, rc.bypassMode());
                metrics.putAll(corr.asMap());
                w.f32("loss", new long[0], r.loss()).f32("pg_loss", new long[0], r.pgLoss())
                    .f32("kl_loss", new long[0], r.klLoss());
                if (r.hasEntropy()) {
                    w.f32("entropy_loss", new long[0], r.entropyAgg());
                }
                w.array("grad_log_probs", bt, grad);
                if (isWeights != null) {
                    w.array("rollout_is_weights", bt, isWeights);
                }
                if (rsMask != null && !rc.spec().rsOptions().isEmpty()) {
                    w.array("response_mask", bt, rsMask);
                }
                metrics.forEach((k, v) -> w.f64("metrics/" + k, new long[0], v));
                w.write(out);
                report(o, engine, bt, given, cfg, ms);
                if (fromLogits) {
                    o.println(String.format(Locale.ROOT, "from logits: vocabulary %d, temperature %s",
                        st.info("logits").shape()[st.info("logits").rank() - 1], loss.temperature()));
                }
                if (rollout != null) {
                    o.println("rollout correction (" + (rc.bypassMode() ? "bypass_mode, loss_type " + rc.lossType()
                        : "decoupled") + "): " + rc.spec());
                }
                o.println(String.format(Locale.ROOT, "loss: %.9g", r.loss()));
                metrics.forEach((k, v) -> o.println(String.format(Locale.ROOT, "%s: %.9g", k, v)));
                o.println("written: " + out);
            } finally {
                closeAll(owned);
                close(engine);
            }
        }
        o.flush();
        return Main.OK;
    }

    private static long validTokens(final OffHeapArray mask, final int n) {
        long valid = 0;
        for (int t = 0; t < n; t++) {
            if (mask.getFloat(t) != 0f) {
                valid++;
            }
        }
        return valid;
    }

    /**
     * The actor's metrics under the release's names: verl 2026-08's loss reports the aggregated entropy of the
     * update as {@code actor/entropy_loss} (2026-01's dp_actor: {@code actor/entropy}); bypass_mode's
     * {@code rollout_corr/*} come out of the actor as {@code actor/rollout_corr/*}.
     */
    private static Map<String, Double> actorMetrics(final VerlConfig cfg, final ActorLossResult r,
                                                    final boolean bypass) {
        final Map<String, Double> m = new LinkedHashMap<>();
        r.metrics().forEach((k, v) -> {
            String key = k;
            if (k.equals("actor/entropy") && cfg.release() != VerlRelease.V2026_01) {
                key = "actor/entropy_loss";
            }
            if (bypass && k.startsWith(RolloutCorrectionResult.PREFIX)) {
                key = "actor/" + k; // the actor's metrics, renamed with actor/ by the worker
            }
            m.put(key, v);
        });
        return m;
    }

    /** Logits as the engine reads them, with the tensor's shape. */
    private record LogitsInput(Logits logits, long[] shape) {
    }

    /**
     * @return the logits tensor {@code name}: {@code [B, T, V]} (the mask's shape plus the vocabulary) or
     *     {@code [N, V]} with one row per token slot; F32 and BF16 are read in place, F16/F64 converted.
     */
    private LogitsInput logits(final Safetensors st, final String name, final Layout layout) {
        final TensorInfo t = st.info(name);
        final long[] s = t.shape();
        final long[] m = layout.shape();
        final boolean perSlot = s.length == m.length + 1
            && java.util.Arrays.equals(java.util.Arrays.copyOf(s, m.length), m);
        final boolean rows = s.length == 2 && s[0] == layout.tokens();
        if (!(perSlot || rows) || s[s.length - 1] < 1 || s[s.length - 1] > Integer.MAX_VALUE) {
            throw usage(name + " must be " + java.util.Arrays.toString(m).replace("]", ", V]") + " (the shape of "
                + "response_mask plus the vocabulary) or [" + layout.tokens() + ", V] (one row per token), got "
                + t.describe());
        }
        final OffHeapArray data;
        try {
            data = switch (t.dtype()) {
                case F32, BF16 -> st.view(name);
                default -> st.float32(name);
            };
        } catch (final IllegalArgumentException e) {
            throw usage(e.getMessage());
        }
        return new LogitsInput(Logits.of(data, layout.tokens(), (int) s[s.length - 1]), s);
    }

    /** @return {@code responses}, the sampled token ids (I64 or I32), one per token slot, as int32. */
    private OffHeapArray labels(final Safetensors st, final Layout layout) {
        final String name = name(st, "responses");
        final TensorInfo t = st.info(name);
        if (!java.util.Arrays.equals(t.shape(), layout.shape()) && t.elementCount() != layout.tokens()) {
            throw usage(name + " must have the shape of response_mask " + java.util.Arrays.toString(layout.shape())
                + ", got " + t.describe());
        }
        try {
            return st.int32(name);
        } catch (final IllegalArgumentException e) {
            throw usage(e.getMessage());
        }
    }

    /** The batch after a decoupled rollout correction, with the buffers it wrote (owned by the caller's list). */
    private record Corrected(TokenBatch batch, OffHeapArray isWeights, OffHeapArray rsMask) {
    }

    /**
     * verl's {@code compute_rollout_correction_and_add_to_batch} before a term: the IS weights and the rejection
     * mask of {@code given}; the RS mask replaces response_mask and the IS weights join the batch.
     */
    private Corrected correct(final Engine engine, final VerlConfig.RolloutCorrection rc, final Safetensors st,
                              final Map<Column, String> columns, final Layout layout, final TokenBatch given,
                              final Map<Column, OffHeapArray> computed, final RolloutCorrectionResult corr,
                              final List<AutoCloseable> owned) {
        final int n = given.numTokens();
        final OffHeapArray isWeights = rc.spec().hasIs() ? own(owned, OffHeapArray.allocate(ElementType.F32, n))
            : null;
        final OffHeapArray rsMask = own(owned, OffHeapArray.allocate(ElementType.F32, n));
        try {
            engine.rolloutCorrection(rc.spec(), given, isWeights, rsMask, corr);
        } catch (final IllegalArgumentException e) {
            throw usage("rollout correction: " + e.getMessage());
        }
        final Map<Column, OffHeapArray> extra = new EnumMap<>(Column.class);
        extra.putAll(computed);
        if (isWeights != null) {
            extra.put(Column.ROLLOUT_IS_WEIGHTS, isWeights);
        }
        final TokenBatch batch = batch(st, columns, layout, rsMask, extra);
        owned.add(batch);
        return new Corrected(batch, isWeights, rsMask);
    }

    private static OffHeapArray own(final List<AutoCloseable> owned, final OffHeapArray a) {
        owned.add(a);
        return a;
    }

    private static void closeAll(final List<AutoCloseable> owned) {
        for (final AutoCloseable c : owned) {
            try {
                c.close();
            } catch (final Exception ignored) {
                // Off-heap arrays close without failing.
            }
        }
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
            final Layout layout = layout(st, columns);
            final long[] bt = layout.shape();
            final Engine engine = engine();
            try (TokenBatch batch = batch(st, columns, layout);
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
            // verl's trainer applies a decoupled rollout correction before the advantages, which then see the
            // rejection mask (and, for the optimal-token baselines, the IS weights).
            final VerlConfig.RolloutCorrection rc;
            try {
                rc = cfg.rolloutCorrection();
            } catch (final IllegalArgumentException e) {
                throw usage(e.getMessage());
            }
            final String rollout = st.has("rollout_log_probs") ? "rollout_log_probs"
                : st.has("rollout_log_prob") ? "rollout_log_prob" : null;
            final String old = st.has("old_log_probs") ? "old_log_probs"
                : st.has("old_log_prob") ? "old_log_prob" : null;
            final boolean correct = rollout != null && old != null && !rc.bypassMode();
            if (correct) {
                columns.put(Column.OLD_LOG_PROB, old);
                columns.put(Column.ROLLOUT_LOG_PROB, rollout);
            }
            // The optimal-token baselines read old_log_probs and sum_pi_squared (verl's trainer asserts the latter,
            // which its actor computes with actor.calculate_sum_pi_squared): from the batch, or both from the old
            // policy's logits through the vocabulary pass.
            final boolean otb = adv.estimator() == io.rlvec.AdvantageEstimator.OPTIMAL_TOKEN_BASELINE
                || adv.estimator() == io.rlvec.AdvantageEstimator.TIR_OPTIMAL_TOKEN_BASELINE;
            final boolean spiFromLogits = otb && !st.has("sum_pi_squared") && st.has("logits");
            if (otb) {
                if (!st.has("sum_pi_squared") && !calculateSumPiSquared(cfg)) {
                    throw usage(adv.estimator().verlName() + " needs sum_pi_squared, which " + in + " does not hold"
                        + " (verl: \"Step-dependent optimal baseline requires sum_pi_squared from actor. Please set "
                        + "actor.calculate_sum_pi_squared=True in config.\"): give sum_pi_squared, or logits and "
                        + "responses with actor_rollout_ref.actor.calculate_sum_pi_squared=true");
                }
                if (!st.has("sum_pi_squared") && !st.has("logits")) {
                    throw usage(adv.estimator().verlName() + " needs sum_pi_squared in " + in + ", or logits and "
                        + "responses (the old policy's) to compute it from; it has " + st.names());
                }
                if (old != null) {
                    columns.put(Column.OLD_LOG_PROB, old);
                } else if (!spiFromLogits) {
                    throw usage(adv.estimator().verlName() + " needs old_log_probs in " + in + " (or logits and "
                        + "responses to compute them from); it has " + st.names());
                }
                if (st.has("sum_pi_squared")) {
                    columns.put(Column.SUM_PI_SQUARED, "sum_pi_squared");
                }
            }
            final Layout layout = layout(st, columns);
            final long[] bt = layout.shape();
            final Engine engine = engine();
            final io.rlvec.AdvantageInputs inputs = new io.rlvec.AdvantageInputs();
            OffHeapArray index = null;
            OffHeapArray baselines = null;
            final List<AutoCloseable> components = new ArrayList<>();
            final Map<Column, OffHeapArray> computed = new EnumMap<>(Column.class);
            if (spiFromLogits) {
                fromLogits(engine, cfg, st, layout, old == null, computed, components);
            }
            try (TokenBatch given = batch(st, columns, layout, st.float32("response_mask"), computed);
                 OffHeapArray advantages = OffHeapArray.allocate(ElementType.F32, given.numTokens());
                 OffHeapArray returns = OffHeapArray.allocate(ElementType.F32, given.numTokens())) {
                TokenBatch batch = given;
                final RolloutCorrectionResult corr = new RolloutCorrectionResult();
                OffHeapArray isWeights = null;
                OffHeapArray rsMask = null;
                if (correct) {
                    final Corrected c = correct(engine, rc, st, columns, layout, given, computed, corr, components);
                    isWeights = c.isWeights();
                    rsMask = c.rsMask();
                    batch = c.batch();
                }
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
                final Map<String, Double> metrics = new LinkedHashMap<>();
                if (adv.estimator() == io.rlvec.AdvantageEstimator.GDPO && adv.gdpoRewardKeys() != null) {
                    gdpoComponents(st, adv, batch.numSequences(), inputs, components, metrics);
                }
                final long t0 = System.nanoTime();
                try {
                    engine.advantages(adv, batch, inputs, advantages, returns);
                } catch (final IllegalArgumentException e) {
                    throw usage(e.getMessage());
                }
                final double ms = (System.nanoTime() - t0) / 1e6;
                final SafetensorsWriter w = writer(cfg, "rlvec compute: advantages (" + adv.estimator().verlName()
                    + ")").array("advantages", bt, advantages).array("returns", bt, returns);
                if (computed.containsKey(Column.SUM_PI_SQUARED)) {
                    w.array("sum_pi_squared", bt, computed.get(Column.SUM_PI_SQUARED));
                }
                if (computed.containsKey(Column.OLD_LOG_PROB)) {
                    w.array("old_log_probs", bt, computed.get(Column.OLD_LOG_PROB));
                }
                if (isWeights != null) {
                    w.array("rollout_is_weights", bt, isWeights);
                }
                if (rsMask != null && !rc.spec().rsOptions().isEmpty()) {
                    w.array("response_mask", bt, rsMask);
                }
                metrics.putAll(corr.asMap());
                metrics.forEach((k, v) -> w.f64("metrics/" + k, new long[0], v));
                w.write(out);
                report(o, engine, bt, given, cfg, ms);
                o.println("estimator: " + adv);
                if (spiFromLogits) {
                    final long[] ls = st.info("logits").shape();
                    o.println(String.format(Locale.ROOT, "sum_pi_squared%s from logits: vocabulary %d, temperature %s",
                        old == null ? " and old_log_probs" : "", ls[ls.length - 1], temperature(cfg)));
                }
                if (correct) {
                    o.println("rollout correction (decoupled, before the advantages): " + rc.spec());
                }
                metrics.forEach((k, v) -> o.println(String.format(Locale.ROOT, "%s: %.9g", k, v)));
                o.println("written: " + out);
            } finally {
                if (index != null) {
                    index.close();
                }
                if (baselines != null) {
                    baselines.close();
                }
                closeAll(components);
                close(engine);
            }
        }
        o.flush();
        return Main.OK;
    }

    /** Whether {@code actor_rollout_ref.actor.calculate_sum_pi_squared} is set. */
    private static boolean calculateSumPiSquared(final VerlConfig cfg) {
        return Boolean.TRUE.equals(cfg.values().get("actor_rollout_ref.actor.calculate_sum_pi_squared"));
    }

    /** @return {@code actor_rollout_ref.rollout.temperature}, by which verl's actor divides the logits. */
    private double temperature(final VerlConfig cfg) {
        final Object t = cfg.values().get("actor_rollout_ref.rollout.temperature");
        if (!(t instanceof Number v)) {
            throw usage("actor_rollout_ref.rollout.temperature must be a number, got " + t);
        }
        return v.doubleValue();
    }

    /**
     * verl's old-log-prob forward with {@code calculate_sum_pi_squared}: the vocabulary pass over the old policy's
     * {@code logits} and the sampled {@code responses} at the rollout temperature gives sum_pi_squared (and, when
     * {@code withLogProbs}, old_log_probs) per token; rows outside response_mask are 0 and not read.
     */
    private void fromLogits(final Engine engine, final VerlConfig cfg, final Safetensors st, final Layout layout,
                            final boolean withLogProbs, final Map<Column, OffHeapArray> computed,
                            final List<AutoCloseable> owned) {
        final LogitsInput li = logits(st, "logits", layout);
        final OffHeapArray labels = labels(st, layout);
        final OffHeapArray mask = st.float32("response_mask");
        final int n = layout.tokens();
        final OffHeapArray lp = own(owned, OffHeapArray.allocate(ElementType.F32, n));
        final OffHeapArray spi = own(owned, OffHeapArray.allocate(ElementType.F32, n));
        try {
            engine.logProbs(li.logits(), labels, temperature(cfg), mask, lp, null, spi, null, null);
        } catch (final IllegalArgumentException e) {
            throw usage(e.getMessage());
        }
        computed.put(Column.SUM_PI_SQUARED, spi);
        if (withLogProbs) {
            computed.put(Column.OLD_LOG_PROB, lp);
        }
    }

    /**
     * The batch's layout: {@code response_mask} {@code [B, T]} (padded), or {@code [N]} with {@code cu_seqlens}
     * {@code [B + 1]} (packed: sequence i holds tokens {@code cu_seqlens[i] .. cu_seqlens[i + 1] - 1}).
     *
     * @param shape   the mask's shape, which every per-token tensor has.
     * @param offsets the packed sequence boundaries, or null for a padded batch.
     */
    private record Layout(long[] shape, int[] offsets) {
        int tokens() {
            return offsets == null ? Math.toIntExact(shape[0] * shape[1]) : offsets[offsets.length - 1];
        }
    }

    /**
     * gdpo's reward components: for each key of {@code algorithm.gdpo_reward_keys}, the batch's tensor of that name
     * (or {@code reward.<key>}), one score per response ([B], verl's {@code non_tensor_batch[key]}), into
     * {@code inputs}; and the legacy trainer's {@code gdpo/<key>/{mean,std,max,min}} metrics (np.mean, np.std with
     * ddof 0, max, min of the float32 scores; here summed in double).
     */
    private void gdpoComponents(final Safetensors st, final io.rlvec.AdvantageSpec adv, final int sequences,
                                final io.rlvec.AdvantageInputs inputs, final List<AutoCloseable> owned,
                                final Map<String, Double> metrics) {
        for (final String key : adv.gdpoRewardKeys()) {
            final String name = name(st, key, "reward." + key);
            final TensorInfo t = st.info(name);
            final boolean column = t.rank() == 1 || t.rank() == 2 && t.dim(1) == 1;
            if (!column || t.dim(0) != sequences) {
                throw usage(name + " (algorithm.gdpo_reward_keys '" + key + "') must be [B] = [" + sequences + "], one "
                    + "score per response, got " + t.describe());
            }
            final double[] d = st.doubles(name);
            final float[] f = new float[d.length];
            double sum = 0;
            double max = Double.NEGATIVE_INFINITY;
            double min = Double.POSITIVE_INFINITY;
            for (int i = 0; i < d.length; i++) {
                f[i] = (float) d[i];
                sum += f[i];
                max = Math.max(max, f[i]);
                min = Math.min(min, f[i]);
            }
            final double mean = sum / f.length;
            double sq = 0;
            for (final float v : f) {
                sq += (v - mean) * (v - mean);
            }
            final OffHeapArray a = OffHeapArray.of(f);
            owned.add(a);
            inputs.rewardComponent(key, a);
            metrics.put("gdpo/" + key + "/mean", mean);
            metrics.put("gdpo/" + key + "/std", Math.sqrt(sq / f.length));
            metrics.put("gdpo/" + key + "/max", max);
            metrics.put("gdpo/" + key + "/min", min);
        }
    }

    /** @return the layout of response_mask, after checking every column has its shape. */
    private Layout layout(final Safetensors st, final Map<Column, String> columns) {
        final String mask = name(st, "response_mask");
        final long[] bt = st.info(mask).shape();
        final Layout layout;
        if (bt.length == 2) {
            if (bt[1] < 1 || bt[0] * bt[1] > Integer.MAX_VALUE - 64) {
                throw usage(mask + " must be [B, T] with T >= 1 and B * T within the int range, got "
                    + st.info(mask).describe());
            }
            layout = new Layout(bt, null);
        } else if (bt.length == 1) {
            if (!st.has("cu_seqlens")) {
                throw usage("a packed batch (" + mask + " " + st.info(mask).describe() + ") needs cu_seqlens, the "
                    + "sequence boundaries [B + 1] (0, end of sequence 0, ..., N)");
            }
            final TensorInfo cu = st.info("cu_seqlens");
            final double[] v = st.doubles("cu_seqlens");
            if (cu.rank() != 1 || v.length < 1) {
                throw usage("cu_seqlens must be [B + 1], got " + cu.describe());
            }
            final int[] off = new int[v.length];
            for (int i = 0; i < v.length; i++) {
                off[i] = (int) v[i];
                if (v[i] != off[i] || (i == 0 ? off[i] != 0 : off[i] < off[i - 1])) {
                    throw usage("cu_seqlens must be integers from 0, non-decreasing, got "
                        + java.util.Arrays.toString(v));
                }
            }
            if (off[off.length - 1] != bt[0]) {
                throw usage("cu_seqlens must end at the token count of " + mask + " (" + bt[0] + "), got "
                    + off[off.length - 1]);
            }
            layout = new Layout(bt, off);
        } else {
            throw usage(mask + " must be [B, T] (padded) or [N] with cu_seqlens (packed), got "
                + st.info(mask).describe());
        }
        for (final String n : columns.values()) {
            final TensorInfo t = st.info(n);
            if (!java.util.Arrays.equals(t.shape(), bt)) {
                throw usage(n + " must have the shape of " + mask + " " + java.util.Arrays.toString(bt) + ", got "
                    + t.describe());
            }
        }
        return layout;
    }

    private TokenBatch batch(final Safetensors st, final Map<Column, String> columns, final Layout layout) {
        return batch(st, columns, layout, st.float32("response_mask"), Map.of());
    }

    private TokenBatch batch(final Safetensors st, final Map<Column, String> columns, final Layout layout,
                             final OffHeapArray mask, final Map<Column, OffHeapArray> extra) {
        final TokenBatch.Builder b = layout.offsets() == null
            ? TokenBatch.padded(Math.toIntExact(layout.shape()[0]), Math.toIntExact(layout.shape()[1]))
            : TokenBatch.withOffsets(layout.offsets());
        b.column(Column.RESPONSE_MASK, mask);
        columns.forEach((c, n) -> b.column(c, st.float32(n)));
        extra.forEach(b::column);
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
        o.println("engine: " + engine.name() + ", batch " + (batch.isPadded() ? bt[0] + " x " + bt[1]
            : batch.numSequences() + " packed sequences") + ", " + batch.numTokens()
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
