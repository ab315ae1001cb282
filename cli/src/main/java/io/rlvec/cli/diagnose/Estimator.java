package io.rlvec.cli.diagnose;

import java.util.Locale;
import java.util.Optional;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

/**
 * The advantage estimator of a run, which decides how pg_loss reads, and where that knowledge came from.
 *
 * @param name verl's {@code algorithm.adv_estimator} value (e.g. "gae", "grpo"), or a description
 * @param family how pg_loss reads under it
 * @param source where it came from: the command line, the config, or inferred from which metrics
 */
public record Estimator(String name, Family family, String source) {

    /** How pg_loss reads under an estimator. */
    public enum Family {
        /** A learned value baseline (GAE): pg_loss's sign says whether the policy beat the critic's prediction. */
        CRITIC,
        /**
         * Critic-free, advantages normalised per group or batch (GRPO, RLOO, REINFORCE++, ...): zero mean by
         * construction, so pg_loss is near 0 on-policy and its sign says how the ratio moved on each side, and
         * under token-mean which side has more tokens.
         */
        NORMALISED
    }

    private static final Pattern CONFIG = Pattern.compile(
        "adv_estimator['\"]?\\s*[:=]\\s*['\"]?([A-Za-z0-9_+\\-]+)");

    /**
     * @param name an estimator name as verl's config spells it
     * @param source where it came from
     * @return the estimator
     */
    public static Estimator named(final String name, final String source) {
        final String n = name.strip().toLowerCase(Locale.ROOT);
        final boolean critic = n.equals("gae") || n.equals("vtrace");
        return new Estimator(n, critic ? Family.CRITIC : Family.NORMALISED, source);
    }

    /**
     * @param text config text (verl's printed config, a Hydra config.yaml, command-line overrides)
     * @return the adv_estimator it names, if any
     */
    public static Optional<String> fromConfigText(final String text) {
        final Matcher m = CONFIG.matcher(text);
        return m.find() ? Optional.of(m.group(1)) : Optional.empty();
    }

    /**
     * Infers the estimator from the metrics: critic metrics mean GAE; TRL's log format with reward_std means
     * GRPOTrainer; otherwise a critic-free normalised estimator.
     *
     * @param run the run
     * @return the estimator and how it was inferred
     */
    public static Estimator infer(final Run run) {
        final Optional<String> config = fromConfigText(run.configText());
        if (config.isPresent()) {
            return named(config.get(), "read from the config printed in the log");
        }
        final Optional<String> critic = run.keyOf(Metric.VF_LOSS).or(() -> run.keyOf(Metric.VALUES));
        if (critic.isPresent()) {
            return named("gae", "inferred from the metrics: " + critic.get() + " present (a critic is trained)");
        }
        if (run.format().startsWith("TRL") && run.keys().contains("reward_std")) {
            return named("grpo", "inferred from the metrics: TRL log with reward_std and no critic (GRPOTrainer)");
        }
        return new Estimator("critic-free (GRPO-like)", Family.NORMALISED,
            "inferred from the metrics: no critic/vf_loss or critic/values logged");
    }
}
