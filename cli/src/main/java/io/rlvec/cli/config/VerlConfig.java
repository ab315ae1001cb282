package io.rlvec.cli.config;

import java.io.IOException;
import java.io.Reader;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Objects;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

import org.snakeyaml.engine.v2.api.Load;
import org.snakeyaml.engine.v2.api.LoadSettings;
import org.snakeyaml.engine.v2.exceptions.YamlEngineException;

import io.rlvec.LossSpec;
import io.rlvec.PolicyLossMode;
import io.rlvec.RolloutCorrectionSpec;
import io.rlvec.VerlRelease;
import io.rlvec.cli.golden.KnownKeys;

/**
 * verl's own trainer YAML, read with verl's key names and defaults: the actor's loss keys
 * ({@code actor_rollout_ref.actor.*}, {@code actor_rollout_ref.actor.policy_loss.*}), the sampling temperature
 * ({@code actor_rollout_ref.rollout.temperature}), {@code algorithm.*} (with {@code kl_ctrl.*} and
 * {@code rollout_correction.*}) and {@code critic.*}.
 *
 * <p>Hydra-style overrides ({@code actor_rollout_ref.actor.clip_ratio_high=0.28}; {@code +key=value} adds a key
 * the file lacks) are applied before anything is read; values are YAML scalars. {@code ${a.b.c}} interpolations
 * are resolved for the keys read (nested and chained; a cycle, a missing target or a resolver such as
 * {@code ${oc.env:X}} is an error naming the key). Keys of the read sections that verl does not define are refused
 * with the nearest known key. Absent keys take verl's defaults (verl-surface.md section 6, verl 2026-08).
 */
public final class VerlConfig {
    private static final Pattern INTERPOLATION = Pattern.compile("\\$\\{([^}]*)}");

    /** verl's defaults of {@code actor_rollout_ref.actor.*} keys this loader reads. */
    static final Map<String, Object> ACTOR_DEFAULTS = ordered(
        "clip_ratio", 0.2, "clip_ratio_low", 0.2, "clip_ratio_high", 0.2, "clip_ratio_c", 3.0,
        "tau_pos", 1.0, "tau_neg", 1.05, "loss_agg_mode", "token-mean", "loss_scale_factor", null,
        "entropy_coeff", 0.0, "calculate_entropy", false, "calculate_sum_pi_squared", false,
        "use_kl_loss", false, "kl_loss_coef", 0.001, "kl_loss_type", "low_var_kl");
    /** Other keys verl's actor section holds (not read here, accepted). */
    static final List<String> ACTOR_OTHER = List.of("policy_loss", "ppo_mini_batch_size",
        "ppo_micro_batch_size", "ppo_micro_batch_size_per_gpu", "use_dynamic_bsz", "ppo_max_token_len_per_gpu",
        "ppo_epochs", "shuffle", "data_loader_seed", "optim", "entropy_from_logits_with_chunking",
        "entropy_checkpointing", "strategy", "fsdp_config", "megatron", "checkpoint", "profiler", "grad_clip",
        "ulysses_sequence_parallel_size", "use_torch_compile", "use_remove_padding", "use_fused_kernels",
        "use_prefix_grouper", "rollout_n", "_target_", "nccl_timeout", "router_replay", "qat", "engine",
        "use_rollout_log_probs", "freeze_vision_tower", "sum_pi_squared_checkpointing", "mtp");
    /** {@code actor_rollout_ref.actor.policy_loss.*}. */
    static final Map<String, Object> POLICY_LOSS_DEFAULTS = ordered(
        "loss_mode", "vanilla", "clip_cov_ratio", 0.0002, "clip_cov_lb", 1.0, "clip_cov_ub", 5.0,
        "kl_cov_ratio", 0.0002, "ppo_kl_coef", 0.1, "dro_beta", null, "rollout_correction", null, "_target_", null);
    /** {@code algorithm.*} (nested sections as their own maps). */
    static final Map<String, Object> ALGORITHM_DEFAULTS = ordered(
        "gamma", 1.0, "lam", 1.0, "adv_estimator", "gae", "norm_adv_by_std_in_grpo", true,
        "use_kl_in_reward", false, "kl_penalty", "kl", "use_pf_ppo", false, "pf_ppo", null, "filter_groups", null,
        "gdpo_reward_keys", null, "gdpo_reward_weights", null, "kl_ctrl", null, "rollout_correction", null,
        "_target_", null);
    /** {@code algorithm.kl_ctrl.*}. */
    static final Map<String, Object> KL_CTRL_DEFAULTS = ordered(
        "type", "fixed", "kl_coef", 0.001, "horizon", 10000L, "target_kl", 0.1, "_target_", null);
    /** {@code algorithm.rollout_correction.*}. */
    static final Map<String, Object> ROLLOUT_CORRECTION_DEFAULTS = ordered(
        "rollout_is", null, "rollout_is_threshold", 2.0, "rollout_is_batch_normalize", false, "rollout_rs", null,
        "rollout_rs_threshold", null, "bypass_mode", false, "loss_type", "ppo_clip", "_target_", null);
    /** {@code critic.*} keys this loader reads ({@code null}: follows the actor or the estimator). */
    static final Map<String, Object> CRITIC_DEFAULTS = ordered(
        "enable", null, "cliprange_value", 0.5, "loss_agg_mode", null, "loss_scale_factor", null);
    /** Other keys verl's critic section holds (not read here, accepted). */
    static final List<String> CRITIC_OTHER = List.of("ppo_mini_batch_size", "ppo_micro_batch_size",
        "ppo_micro_batch_size_per_gpu", "ppo_epochs", "optim", "model", "strategy", "shuffle", "use_dynamic_bsz",
        "ppo_max_token_len_per_gpu", "forward_max_token_len_per_gpu", "grad_clip", "data_loader_seed",
        "checkpoint", "profiler", "rollout_n", "ulysses_sequence_parallel_size", "forward_micro_batch_size",
        "forward_micro_batch_size_per_gpu", "megatron", "nccl_timeout", "_target_", "engine", "fsdp_config");

    /** {@code algorithm.rollout_correction}. */
    static final String ALGO_RC = "algorithm.rollout_correction";
    /** {@code actor_rollout_ref.actor.policy_loss.rollout_correction}: bypass_mode's settings set directly. */
    static final String POLICY_RC = "actor_rollout_ref.actor.policy_loss.rollout_correction";
    /** The keys of a rollout correction that make its {@link RolloutCorrectionSpec}. */
    static final List<String> RC_SPEC_KEYS = List.of("rollout_is", "rollout_is_threshold",
        "rollout_is_batch_normalize", "rollout_rs", "rollout_rs_threshold");

    private final Map<String, Object> root;
    private final VerlRelease release;
    private final Map<String, Object> read = new LinkedHashMap<>();

    private VerlConfig(final Map<String, Object> root, final VerlRelease release) {
        this.root = root;
        this.release = release;
        readSection("actor_rollout_ref.actor", ACTOR_DEFAULTS, ACTOR_OTHER);
        readSection("actor_rollout_ref.actor.policy_loss", POLICY_LOSS_DEFAULTS, List.of());
        if (raw(POLICY_RC) != null) {
            // bypass_mode's own settings, when given (the loss reads them with .get: verl's YAML defaults).
            readSection(POLICY_RC, ROLLOUT_CORRECTION_DEFAULTS, List.of());
        }
        read.put("actor_rollout_ref.rollout.temperature", valueOr("actor_rollout_ref.rollout.temperature", 1.0));
        readSection("algorithm", ALGORITHM_DEFAULTS, List.of());
        readSection("algorithm.kl_ctrl", KL_CTRL_DEFAULTS, List.of());
        readSection("algorithm.rollout_correction", ROLLOUT_CORRECTION_DEFAULTS, List.of());
        readSection("critic", CRITIC_DEFAULTS, CRITIC_OTHER);
        // The critic's loss_agg_mode and loss_scale_factor follow the actor's when absent.
        if (read.get("critic.loss_agg_mode") == null) {
            read.put("critic.loss_agg_mode", read.get("actor_rollout_ref.actor.loss_agg_mode"));
        }
        if (read.get("critic.loss_scale_factor") == null) {
            read.put("critic.loss_scale_factor", read.get("actor_rollout_ref.actor.loss_scale_factor"));
        }
    }

    /**
     * @param yaml      a verl trainer YAML file, or null for verl's defaults alone.
     * @param overrides Hydra-style {@code dotted.key=value} (or {@code +dotted.key=value}) overrides, in order.
     * @param release   the verl release the computation follows.
     * @return the configuration.
     * @throws IllegalArgumentException naming the key or override at fault.
     * @throws IOException              when the file cannot be read.
     */
    public static VerlConfig load(final Path yaml, final List<String> overrides, final VerlRelease release)
        throws IOException {
        Objects.requireNonNull(release, "release");
        Map<String, Object> root = new LinkedHashMap<>();
        if (yaml != null) {
            final Object doc;
            try (Reader r = Files.newBufferedReader(yaml, StandardCharsets.UTF_8)) {
                doc = new Load(LoadSettings.builder().setLabel(yaml.toString()).build()).loadFromReader(r);
            } catch (final YamlEngineException e) {
                throw new IllegalArgumentException(yaml + " is not valid YAML: " + e.getMessage(), e);
            }
            if (doc != null && !(doc instanceof Map)) {
                throw new IllegalArgumentException(yaml + " must hold a YAML mapping at the top, got "
                    + doc.getClass().getSimpleName());
            }
            if (doc != null) {
                root = deepCopy(doc);
            }
        }
        for (final String o : overrides) {
            applyOverride(root, o);
        }
        return new VerlConfig(root, release);
    }

    @SuppressWarnings("unchecked")
    private static Map<String, Object> deepCopy(final Object m) {
        final Map<String, Object> out = new LinkedHashMap<>();
        for (final Map.Entry<Object, Object> e : ((Map<Object, Object>) m).entrySet()) {
            out.put(String.valueOf(e.getKey()), e.getValue() instanceof Map ? deepCopy(e.getValue()) : e.getValue());
        }
        return out;
    }

    @SuppressWarnings("unchecked")
    private static void applyOverride(final Map<String, Object> root, final String override) {
        final int eq = override.indexOf('=');
        if (eq <= 0) {
            throw new IllegalArgumentException("override '" + override + "' must be dotted.key=value, e.g. "
                + "actor_rollout_ref.actor.clip_ratio_high=0.28");
        }
        final boolean add = override.startsWith("+");
        final String key = override.substring(add ? 1 : 0, eq).strip();
        final String text = override.substring(eq + 1);
        final Object value = text.isEmpty() ? null
            : new Load(LoadSettings.builder().build()).loadFromString(text);
        final String[] parts = key.split("\\.");
        Map<String, Object> m = root;
        for (int i = 0; i < parts.length - 1; i++) {
            final Object next = m.get(parts[i]);
            if (next instanceof Map) {
                m = (Map<String, Object>) next;
            } else if (next == null) {
                final Map<String, Object> created = new LinkedHashMap<>();
                m.put(parts[i], created);
                m = created;
            } else {
                throw new IllegalArgumentException("override '" + override + "': "
                    + String.join(".", List.of(parts).subList(0, i + 1)) + " is a value, not a section");
            }
        }
        m.put(parts[parts.length - 1], value instanceof Map ? deepCopy(value) : value);
    }

    @SuppressWarnings("unchecked")
    private Object raw(final String dotted) {
        Object cur = root;
        for (final String part : dotted.split("\\.")) {
            if (!(cur instanceof Map)) {
                return null;
            }
            cur = ((Map<String, Object>) cur).get(part);
        }
        return cur;
    }

    private boolean has(final String dotted) {
        return raw(dotted) != null;
    }

    private Object valueOr(final String dotted, final Object fallback) {
        final Object v = resolve(dotted, raw(dotted), 0);
        return v == null ? fallback : v;
    }

    /** Resolves {@code ${a.b}} interpolations of the value of {@code key}. */
    private Object resolve(final String key, final Object value, final int depth) {
        if (!(value instanceof String s) || !s.contains("${")) {
            return value;
        }
        if (depth > 16) {
            throw new IllegalArgumentException(key + ": interpolation '" + s + "' does not end (a cycle?)");
        }
        final Matcher m = INTERPOLATION.matcher(s);
        if (m.matches()) {
            return resolve(key, target(key, m.group(1)), depth + 1);
        }
        final StringBuilder sb = new StringBuilder();
        while (m.find()) {
            m.appendReplacement(sb, Matcher.quoteReplacement(String.valueOf(resolve(key, target(key, m.group(1)),
                depth + 1))));
        }
        m.appendTail(sb);
        return sb.toString();
    }

    private Object target(final String key, final String expr) {
        if (expr.contains(":")) {
            throw new IllegalArgumentException(key + ": interpolation '${" + expr + "}' uses a resolver ("
                + expr.substring(0, expr.indexOf(':')) + ") this loader does not evaluate; give the value, or "
                + "override " + key + "=VALUE");
        }
        final Object t = raw(expr.startsWith(".") ? expr.substring(1) : expr);
        if (t == null) {
            throw new IllegalArgumentException(key + ": interpolation '${" + expr + "}' names a key the "
                + "configuration does not hold");
        }
        return t;
    }

    @SuppressWarnings("unchecked")
    private void readSection(final String section, final Map<String, Object> defaults, final List<String> other) {
        final Object s = raw(section);
        if (s != null && !(s instanceof Map)) {
            throw new IllegalArgumentException(section + " must be a section (a mapping), got " + s);
        }
        if (s != null) {
            final List<String> known = new ArrayList<>(defaults.keySet());
            known.addAll(other);
            for (final String key : ((Map<String, Object>) s).keySet()) {
                if (!known.contains(key)) {
                    throw new IllegalArgumentException("unknown key " + section + "." + key + " (nearest known key: "
                        + section + "." + KnownKeys.nearest(key, known) + ")");
                }
            }
        }
        for (final Map.Entry<String, Object> d : defaults.entrySet()) {
            final String key = section + "." + d.getKey();
            final Object v = raw(key);
            if (v instanceof Map) {
                continue; // a nested section, read on its own
            }
            if (d.getKey().equals("_target_")) {
                continue;
            }
            read.put(key, has(key) ? resolve(key, v, 0) : d.getValue());
        }
    }

    /** @return the verl release the computation follows. */
    public VerlRelease release() {
        return release;
    }

    /**
     * @return every key read, with verl's dotted names, after overrides, interpolation and defaults (in the order
     *     of verl's sections).
     */
    public Map<String, Object> values() {
        return java.util.Collections.unmodifiableMap(read);
    }

    /** @return the {@code algorithm.*} and {@code critic.*} keys (dotted, without the section), for estimator and
     *     value-loss specifications. */
    public Map<String, Object> algorithmAndCritic() {
        final Map<String, Object> m = new LinkedHashMap<>();
        read.forEach((k, v) -> {
            if (k.startsWith("algorithm.") || k.startsWith("critic.")) {
                m.put(k, v);
            }
        });
        return m;
    }

    /**
     * @return the actor's loss specification: the policy-loss mode, the clip ratios, the aggregation, the entropy
     *     and KL-loss terms and the temperature, from verl's keys.
     * @throws IllegalArgumentException naming the verl key whose value the specification refuses.
     */
    public LossSpec lossSpec() {
        final LossSpec.Builder b = LossSpec.builder();
        final String a = "actor_rollout_ref.actor.";
        set(b, "loss_mode", a + "policy_loss.loss_mode");
        for (final String k : List.of("clip_ratio", "clip_ratio_low", "clip_ratio_high", "clip_ratio_c",
            "loss_agg_mode", "loss_scale_factor", "entropy_coeff", "calculate_entropy", "use_kl_loss",
            "kl_loss_coef", "kl_loss_type")) {
            set(b, k, a + k);
        }
        for (final String k : List.of("tau_pos", "tau_neg")) {
            set(b, k, a + k);
        }
        for (final String k : List.of("clip_cov_ratio", "clip_cov_lb", "clip_cov_ub", "kl_cov_ratio", "ppo_kl_coef",
            "dro_beta")) {
            set(b, k, a + "policy_loss." + k);
        }
        set(b, "temperature", "actor_rollout_ref.rollout.temperature");
        final RolloutCorrection rc = rolloutCorrection();
        if (rc.bypassMode()) {
            // The trainer's apply_bypass_mode: the loss becomes bypass_mode with algorithm.rollout_correction.
            b.policyLossMode(PolicyLossMode.BYPASS_MODE).rolloutCorrection(rc.spec()).bypassLossType(rc.lossType());
        } else if (raw(POLICY_RC) != null) {
            final RolloutCorrection own = rolloutCorrection(POLICY_RC);
            b.rolloutCorrection(own.spec()).bypassLossType(own.lossType());
        }
        b.release(release);
        try {
            return b.build();
        } catch (final IllegalArgumentException e) {
            throw new IllegalArgumentException("the configuration's actor loss is refused: " + e.getMessage(), e);
        }
    }

    /**
     * verl's rollout correction settings as a trainer reads them.
     *
     * @param spec       the IS and rejection settings.
     * @param bypassMode {@code bypass_mode}: old_log_probs := rollout_log_probs, and the loss runs bypass_mode.
     * @param lossType   {@code loss_type}: bypass_mode's loss, ppo_clip or reinforce.
     */
    public record RolloutCorrection(RolloutCorrectionSpec spec, boolean bypassMode, String lossType) {
        /** @return the settings in verl's key names (the spec's keys as parsed, then bypass_mode and loss_type). */
        public Map<String, Object> toVerlMap() {
            final Map<String, Object> m = new LinkedHashMap<>();
            m.put("rollout_is", spec.hasIs() ? spec.rolloutIs().name().toLowerCase(java.util.Locale.ROOT) : null);
            m.put("rollout_is_threshold", !spec.hasIs() ? null
                : spec.icePop() ? num(spec.isLower()) + "_" + num(spec.isUpper()) : spec.isUpper());
            m.put("rollout_is_batch_normalize", spec.batchNormalize());
            final List<String> names = new ArrayList<>();
            final List<String> thresholds = new ArrayList<>();
            for (final RolloutCorrectionSpec.RsOption o : spec.rsOptions()) {
                names.add(o.name());
                thresholds.add(o.twoSided() ? num(o.lower()) + "_" + num(o.upper()) : num(o.upper()));
            }
            m.put("rollout_rs", names.isEmpty() ? null : String.join(",", names));
            m.put("rollout_rs_threshold", thresholds.isEmpty() ? null : String.join(",", thresholds));
            m.put("bypass_mode", bypassMode);
            m.put("loss_type", lossType);
            return m;
        }

        private static String num(final double v) {
            return Double.toString(v);
        }
    }

    /**
     * @return {@code algorithm.rollout_correction.*} as the release reads it: the IS/RS spec, bypass_mode and
     *     loss_type.
     * @throws IllegalArgumentException naming the key whose value verl (or the release) refuses; verl 2026-01 has
     *                                  no IcePop threshold ("L_U", verl #5722) and takes the threshold as a number
     *                                  only.
     */
    public RolloutCorrection rolloutCorrection() {
        return rolloutCorrection(ALGO_RC);
    }

    private RolloutCorrection rolloutCorrection(final String section) {
        final String p = section + ".";
        final RolloutCorrectionSpec.Builder b = RolloutCorrectionSpec.builder().release(release);
        for (final String k : RC_SPEC_KEYS) {
            final Object v = read.get(p + k);
            if (k.equals("rollout_is_threshold") && release == VerlRelease.V2026_01 && v instanceof String t
                && t.contains("_")) {
                throw new IllegalArgumentException(p + k + ": '" + t + "' is an IcePop band (lower_upper), which "
                    + "verl 2026-08 has (#5722) and verl 2026-01 does not: 2026-01 takes a single upper bound, a "
                    + "number (or use --verl-release 2026-08)");
            }
            try {
                b.set(k, v);
            } catch (final IllegalArgumentException e) {
                throw new IllegalArgumentException(p + k + ": " + e.getMessage(), e);
            }
        }
        final RolloutCorrectionSpec spec;
        try {
            spec = b.build();
        } catch (final IllegalArgumentException e) {
            throw new IllegalArgumentException(section + " is refused: " + e.getMessage(), e);
        }
        final Object bypass = read.get(p + "bypass_mode");
        if (!(bypass instanceof Boolean)) {
            throw new IllegalArgumentException(p + "bypass_mode must be true or false, got " + bypass);
        }
        final Object lossType = read.get(p + "loss_type");
        if ((Boolean) bypass && !"ppo_clip".equals(lossType) && !"reinforce".equals(lossType)) {
            throw new IllegalArgumentException(p + "loss_type: Invalid loss_type: " + lossType
                + ". Must be 'ppo_clip' or 'reinforce'.");
        }
        return new RolloutCorrection(spec, (Boolean) bypass, String.valueOf(lossType));
    }

    /**
     * @return the critic's value-loss specification: {@code critic.cliprange_value}, {@code critic.loss_agg_mode}
     *     and {@code critic.loss_scale_factor} (both following the actor's when absent), and the release.
     * @throws IllegalArgumentException naming the verl key whose value the specification refuses.
     */
    public LossSpec valueLossSpec() {
        final LossSpec.Builder b = LossSpec.builder();
        for (final String k : List.of("cliprange_value", "loss_agg_mode", "loss_scale_factor")) {
            set(b, k, "critic." + k);
        }
        b.release(release);
        try {
            return b.build();
        } catch (final IllegalArgumentException e) {
            throw new IllegalArgumentException("the configuration's value loss is refused: " + e.getMessage(), e);
        }
    }

    /**
     * @return the advantage estimator's specification from {@code algorithm.*} (adv_estimator, gamma, lam,
     *     norm_adv_by_std_in_grpo, the gdpo keys) and the release.
     * @throws IllegalArgumentException naming the verl key whose value the specification refuses.
     */
    public io.rlvec.AdvantageSpec advantageSpec() {
        final Object name = read.get("algorithm.adv_estimator");
        final io.rlvec.AdvantageSpec.Builder b;
        try {
            b = io.rlvec.AdvantageSpec.builder(io.rlvec.AdvantageEstimator.fromVerl(String.valueOf(name)));
        } catch (final IllegalArgumentException e) {
            throw new IllegalArgumentException("algorithm.adv_estimator: " + e.getMessage(), e);
        }
        if ("gdpo".equals(name) && release == VerlRelease.V2026_01) {
            throw new IllegalArgumentException("algorithm.adv_estimator: gdpo does not exist in verl 2026-01 "
                + "(b178a3cd); verl added it in 2026-03 (#5503): use --verl-release 2026-08");
        }
        for (final String k : List.of("gamma", "lam", "norm_adv_by_std_in_grpo", "gdpo_reward_keys",
            "gdpo_reward_weights")) {
            final Object v = read.get("algorithm." + k);
            if (v == null) {
                continue;
            }
            if (k.equals("norm_adv_by_std_in_grpo") && name != null && name.equals("gdpo")) {
                continue; // verl's trainer does not pass it to gdpo, which always normalises by the std
            }
            if (k.equals("gdpo_reward_keys")
                && !(v instanceof List<?> l && l.stream().allMatch(String.class::isInstance))) {
                throw new IllegalArgumentException("algorithm.gdpo_reward_keys must be a list of reward names, e.g. "
                    + "+algorithm.gdpo_reward_keys='[accuracy, format]', got " + v);
            }
            if (k.equals("gdpo_reward_weights")
                && !(v instanceof List<?> l && l.stream().allMatch(Number.class::isInstance))) {
                throw new IllegalArgumentException("algorithm.gdpo_reward_weights must be a list of numbers, e.g. "
                    + "+algorithm.gdpo_reward_weights='[1.0, 0.5]', got " + v);
            }
            try {
                b.set(k, v);
            } catch (final IllegalArgumentException e) {
                throw new IllegalArgumentException("algorithm." + k + ": " + e.getMessage(), e);
            }
        }
        b.release(release);
        try {
            return b.build();
        } catch (final IllegalArgumentException e) {
            throw new IllegalArgumentException("the configuration's advantage estimator is refused: " + e.getMessage(),
                e);
        }
    }

    private void set(final LossSpec.Builder b, final String specKey, final String verlKey) {
        try {
            b.set(specKey, read.get(verlKey));
        } catch (final IllegalArgumentException e) {
            throw new IllegalArgumentException(verlKey + ": " + e.getMessage(), e);
        }
    }

    /** @return the keys read, one {@code dotted.key: value} line each, in verl's names (YAML scalars). */
    public String describe() {
        final StringBuilder sb = new StringBuilder("# verl release ").append(release.label()).append(" (verl ")
            .append(release.commit(), 0, 8).append(")\n");
        read.forEach((k, v) -> sb.append(k).append(": ").append(v == null ? "null" : v).append('\n'));
        return sb.toString();
    }

    private static Map<String, Object> ordered(final Object... kv) {
        final Map<String, Object> m = new LinkedHashMap<>();
        for (int i = 0; i < kv.length; i += 2) {
            m.put((String) kv[i], kv[i + 1]);
        }
        return java.util.Collections.unmodifiableMap(m);
    }
}
