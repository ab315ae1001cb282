package io.rlvec;

import java.util.Objects;

/**
 * verl's {@code kl_penalty} / {@code kl_loss_type}: an estimator of KL(pi || pi_ref) per token, optionally
 * straight-through (a name ending in {@code +}): the value of the estimator, the gradient of k2.
 *
 * @param estimator       the base estimator.
 * @param straightThrough whether the gradient is k2's (verl's {@code +} suffix; meaningless for k2 itself).
 */
public record KlPenalty(Estimator estimator, boolean straightThrough) {

    /** Base estimators, with verl's names. */
    public enum Estimator {
        /** {@code kl}/{@code k1}: log_prob - ref_log_prob. */
        K1,
        /** {@code abs}: |log_prob - ref_log_prob|. */
        ABS,
        /** {@code mse}/{@code k2}: 0.5 (log_prob - ref_log_prob)^2. */
        K2,
        /** {@code low_var_kl}/{@code k3}: exp(r) - r - 1 with r = clamp(ref - log_prob, -20, 20), clamped to [-10, 10]. */
        K3,
        /** {@code full}: the exact KL over the vocabulary, sum p (log p - log q), from policy and reference logits. */
        FULL
    }

    /** Validates the components. */
    public KlPenalty {
        Objects.requireNonNull(estimator, "estimator");
    }

    /**
     * @param name verl's name: kl, k1, abs, mse, k2, low_var_kl, k3, full, each optionally followed by '+'.
     * @return the penalty.
     * @throws IllegalArgumentException listing the valid names.
     */
    public static KlPenalty fromVerl(final String name) {
        Objects.requireNonNull(name, "kl_penalty");
        final boolean plus = name.endsWith("+");
        final String base = plus ? name.substring(0, name.length() - 1) : name;
        final Estimator e = switch (base) {
            case "kl", "k1" -> Estimator.K1;
            case "abs" -> Estimator.ABS;
            case "mse", "k2" -> Estimator.K2;
            case "low_var_kl", "k3" -> Estimator.K3;
            case "full" -> Estimator.FULL;
            default -> throw new IllegalArgumentException("kl_penalty must be one of kl, k1, abs, mse, k2, low_var_kl, "
                + "k3, full (optionally with a '+' suffix for the straight-through k2 gradient), got '" + name + "'");
        };
        return new KlPenalty(e, plus && e != Estimator.K2);
    }

    /** @return verl's spelling ({@code k1}, {@code abs}, {@code k2}, {@code k3}, {@code full}, plus '+'). */
    public String verlName() {
        final String b = switch (estimator) {
            case K1 -> "k1";
            case ABS -> "abs";
            case K2 -> "k2";
            case K3 -> "k3";
            case FULL -> "full";
        };
        return straightThrough ? b + "+" : b;
    }
}
