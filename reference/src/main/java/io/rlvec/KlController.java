package io.rlvec;

import java.util.Locale;

/**
 * verl's in-reward KL coefficient controllers ({@code algorithm.kl_ctrl}): {@code fixed} keeps
 * {@code kl_coef}; {@code adaptive} (Ziegler et al.) multiplies it after each step by
 * {@code 1 + clip(current_kl / target_kl - 1, -0.2, 0.2) * n_steps / horizon}, with {@code n_steps} the number of
 * sequences of the step. The reward of a step uses the coefficient from before its update
 * ({@link Engine#rewardKlPenalty}, then {@link #update}).
 *
 * <p>Deviation: verl asserts only {@code horizon > 0}; this class also refuses {@code target_kl <= 0} (verl
 * divides by it) and non-finite values, with a message naming the key.
 */
public final class KlController {
    private final boolean adaptive;
    private final double target;
    private final double horizon;
    private double value;

    private KlController(final boolean adaptive, final double value, final double target, final double horizon) {
        this.adaptive = adaptive;
        this.value = value;
        this.target = target;
        this.horizon = horizon;
    }

    /** @return a fixed controller ({@code kl_ctrl.type=fixed}). */
    public static KlController fixed(final double klCoef) {
        return new KlController(false, finite("kl_coef", klCoef), Double.NaN, Double.NaN);
    }

    /** @return an adaptive controller ({@code kl_ctrl.type=adaptive}). */
    public static KlController adaptive(final double initKlCoef, final double targetKl, final double horizon) {
        if (!(targetKl > 0) || Double.isInfinite(targetKl)) {
            throw new IllegalArgumentException("kl_ctrl.target_kl must be a finite number > 0, got " + targetKl);
        }
        if (!(horizon > 0) || Double.isInfinite(horizon)) {
            throw new IllegalArgumentException("kl_ctrl.horizon must be a finite number > 0, got " + horizon);
        }
        return new KlController(true, finite("kl_coef", initKlCoef), targetKl, horizon);
    }

    /** @return the controller of verl's {@code kl_ctrl.type} ("fixed" or "adaptive"). */
    public static KlController fromVerl(final String type, final double klCoef, final double targetKl,
                                        final double horizon) {
        return switch (type == null ? "" : type.trim().toLowerCase(Locale.ROOT)) {
            case "fixed" -> fixed(klCoef);
            case "adaptive" -> adaptive(klCoef, targetKl, horizon);
            default -> throw new IllegalArgumentException("kl_ctrl.type must be 'fixed' or 'adaptive', got '"
                + type + "'");
        };
    }

    private static double finite(final String key, final double v) {
        if (!Double.isFinite(v)) {
            throw new IllegalArgumentException("kl_ctrl." + key + " must be finite, got " + v);
        }
        return v;
    }

    /** @return the current coefficient (verl's {@code kl_ctrl.value}). */
    public double value() {
        return value;
    }

    /** @return whether the coefficient adapts. */
    public boolean isAdaptive() {
        return adaptive;
    }

    /**
     * verl's {@code update(current_kl, n_steps)}; a no-op for a fixed controller.
     *
     * @param currentKl the step's mean KL ({@link Engine#rewardKlPenalty}'s result).
     * @param nSteps    the number of sequences of the step.
     */
    public void update(final double currentKl, final long nSteps) {
        if (adaptive) {
            final double error = Math.min(0.2, Math.max(-0.2, currentKl / target - 1));
            value *= 1 + error * nSteps / horizon;
        }
    }

    @Override
    public String toString() {
        return adaptive ? "KlController{adaptive, value=" + value + ", target_kl=" + target + ", horizon=" + horizon
            + "}" : "KlController{fixed, kl_coef=" + value + "}";
    }
}
