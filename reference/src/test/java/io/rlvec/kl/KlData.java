package io.rlvec.kl;

import java.util.SplittableRandom;

import io.rlvec.Column;
import io.rlvec.KlPenalty;
import io.rlvec.TokenBatch;

/**
 * Seeded test data over raw float bits, and a double-precision model of verl's estimators for finite
 * differences. Every assertion message carries the seed.
 */
public final class KlData {
    /** Every verl name of a per-token estimator (aliases included), plain and straight-through. */
    public static final String[] NAMES = {"kl", "k1", "abs", "mse", "k2", "low_var_kl", "k3",
        "kl+", "k1+", "abs+", "k2+", "low_var_kl+", "k3+"};

    /** Lengths straddling vector widths and the token block. */
    public static final int[] SIZES = {1, 7, 8, 9, 15, 16, 17, 31, 33, 100, 1000};

    private KlData() {
    }

    /** @return a negative log-prob-like value drawn over raw bits: magnitudes 2^-20 .. 2^5, zeros, subnormals. */
    public static float logProb(final SplittableRandom r) {
        final int k = r.nextInt(100);
        if (k < 75) {
            final int exp = 127 - 20 + r.nextInt(25);
            return -Float.intBitsToFloat((exp << 23) | r.nextInt(1 << 23));
        }
        if (k < 79) {
            return 0f;
        }
        if (k < 82) {
            return -0f;
        }
        if (k < 86) {
            return -Float.intBitsToFloat(r.nextInt(1, 1 << 23));
        }
        if (k < 92) {
            final int exp = 127 + 5 + r.nextInt(6);
            return -Float.intBitsToFloat((exp << 23) | r.nextInt(1 << 23));
        }
        return Float.intBitsToFloat(((127 - 30 + r.nextInt(30)) << 23) | r.nextInt(1 << 23)) - 1f;
    }

    /**
     * @return a reference log-prob for {@code lp}: often close (small KL), sometimes equal (ratio exactly 1), at
     *         log-ratio exactly +-20 or beyond the clamp, or independent.
     */
    public static float refFor(final SplittableRandom r, final float lp) {
        final int k = r.nextInt(100);
        if (k < 45) {
            return lp + (float) (r.nextGaussian() * 0.3);
        }
        if (k < 55) {
            return lp;
        }
        if (k < 60) {
            return lp + (r.nextBoolean() ? 20f : -20f);
        }
        if (k < 65) {
            return lp + (r.nextBoolean() ? 25f : -25f) * (1 + r.nextFloat());
        }
        if (k < 72) {
            // around the k3 value clamp: e^r - r - 1 = 10 at r ~ 2.528 (and beyond)
            return lp + (float) (2.0 + r.nextDouble());
        }
        return logProb(r);
    }

    /** @return a value a masked position may hold: NaN, +-Inf, huge, or anything. */
    public static float garbage(final SplittableRandom r) {
        return switch (r.nextInt(5)) {
            case 0 -> Float.NaN;
            case 1 -> Float.POSITIVE_INFINITY;
            case 2 -> Float.NEGATIVE_INFINITY;
            case 3 -> r.nextBoolean() ? Float.MAX_VALUE : -Float.MAX_VALUE;
            default -> Float.intBitsToFloat(r.nextInt());
        };
    }

    /**
     * A packed batch of {@code n} tokens in ragged sequences with log_prob, ref_log_prob and a mask (about 20 %
     * masked, masked tokens holding garbage).
     */
    public static TokenBatch adversarial(final long seed, final int n) {
        final SplittableRandom r = new SplittableRandom(seed);
        final float[] lp = new float[n];
        final float[] ref = new float[n];
        final boolean[] mask = new boolean[n];
        for (int i = 0; i < n; i++) {
            mask[i] = r.nextInt(5) != 0;
            if (mask[i]) {
                lp[i] = logProb(r);
                ref[i] = refFor(r, lp[i]);
            } else {
                lp[i] = garbage(r);
                ref[i] = garbage(r);
            }
        }
        return TokenBatch.packed(lengths(r, n)).column(Column.LOG_PROB, lp).column(Column.REF_LOG_PROB, ref)
            .mask(mask).build();
    }

    /** @return random sequence lengths summing to n (some empty). */
    public static int[] lengths(final SplittableRandom r, final int n) {
        final int b = 1 + r.nextInt(Math.max(1, Math.min(n, 6)));
        final int[] len = new int[b];
        int left = n;
        for (int i = 0; i < b - 1; i++) {
            len[i] = left == 0 ? 0 : r.nextInt(left + 1);
            left -= len[i];
        }
        len[b - 1] = left;
        return len;
    }

    /** @return float bits equal, NaNs of any payload counted equal. */
    public static boolean same(final float a, final float b) {
        return Float.floatToIntBits(a) == Float.floatToIntBits(b);
    }

    /** Double-precision model of verl's {@code kl_penalty_forward} (for finite differences). */
    public static double model(final KlPenalty.Estimator e, final double lp, final double ref) {
        final double d = lp - ref;
        return switch (e) {
            case K1 -> d;
            case ABS -> Math.abs(d);
            case K2 -> 0.5 * d * d;
            case K3 -> {
                final double kl = Math.max(-20, Math.min(20, ref - lp));
                yield Math.max(-10, Math.min(10, Math.exp(kl) - kl - 1));
            }
            case FULL -> throw new IllegalArgumentException("full");
        };
    }

    /**
     * @return a code of the piecewise region of the estimator at (lp, ref): finite differences are only taken
     *         where it is the same at lp - h, lp and lp + h.
     */
    public static int region(final KlPenalty.Estimator e, final double lp, final double ref) {
        final double d = lp - ref;
        return switch (e) {
            case K1, K2 -> 0;
            case ABS -> d > 0 ? 1 : (d < 0 ? -1 : 0);
            case K3 -> {
                final double raw = ref - lp;
                final int a = raw < -20 ? -1 : (raw > 20 ? 1 : 0);
                final double kl = Math.max(-20, Math.min(20, raw));
                final double k = Math.exp(kl) - kl - 1;
                yield 3 * a + (k < -10 ? -1 : (k > 10 ? 1 : 0));
            }
            case FULL -> throw new IllegalArgumentException("full");
        };
    }
}
