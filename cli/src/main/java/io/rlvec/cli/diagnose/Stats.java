package io.rlvec.cli.diagnose;

import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Locale;

/** Robust statistics of a series: medians, rolling medians, noise, early-vs-late trends, flagged stretches. */
final class Stats {
    private Stats() {
    }

    /** Early-vs-late comparison of a series (see {@link Thresholds}). */
    record Trend(int window, double early, double late, double sigma, double z) {
        boolean rises() {
            return z > Thresholds.TREND_Z;
        }

        boolean falls() {
            return z < -Thresholds.TREND_Z;
        }
    }

    /** A stretch of indices [from, to] of a series. */
    record Span(int from, int to) {
    }

    static double median(final double[] v, final int from, final int to) {
        final double[] c = Arrays.copyOfRange(v, Math.max(0, from), Math.min(v.length, to));
        if (c.length == 0) {
            return Double.NaN;
        }
        Arrays.sort(c);
        final int m = c.length / 2;
        return c.length % 2 == 1 ? c[m] : 0.5 * (c[m - 1] + c[m]);
    }

    static double median(final double[] v) {
        return median(v, 0, v.length);
    }

    /** Centred rolling median, the window shrinking at the ends. */
    static double[] rollingMedian(final double[] v, final int window) {
        final double[] r = new double[v.length];
        final int half = window / 2;
        for (int i = 0; i < v.length; i++) {
            r[i] = median(v, i - half, i - half + window);
        }
        return r;
    }

    /** Per-step noise sigma: 1.4826 * MAD of first differences / sqrt(2). */
    static double noise(final double[] v) {
        if (v.length < 3) {
            return 0;
        }
        final double[] d = new double[v.length - 1];
        for (int i = 1; i < v.length; i++) {
            d[i - 1] = v[i] - v[i - 1];
        }
        final double md = median(d);
        for (int i = 0; i < d.length; i++) {
            d[i] = Math.abs(d[i] - md);
        }
        return 1.4826 * median(d) / Math.sqrt(2);
    }

    static int trendWindow(final int n) {
        return Math.max(Thresholds.TREND_WINDOW_MIN,
            Math.min(Thresholds.TREND_WINDOW_MAX, n / Thresholds.TREND_WINDOW_DIVISOR));
    }

    /** @param v finite values */
    static Trend trend(final double[] v) {
        final int w = trendWindow(v.length);
        final double early = median(v, 0, w);
        final double late = median(v, v.length - w, v.length);
        final double sigma = noise(v);
        // standard error of a difference of two medians of w points: 1.2533 * sigma * sqrt(2 / w)
        final double se = 1.2533 * sigma * Math.sqrt(2.0 / w);
        final double diff = late - early;
        final double z = se > 0 ? diff / se : diff == 0 ? 0 : Math.copySign(Double.POSITIVE_INFINITY, diff);
        return new Trend(w, early, late, sigma, z);
    }

    /** Maximal stretches of true flags at least {@code minLen} long. */
    static List<Span> spans(final boolean[] flags, final int minLen) {
        final List<Span> out = new ArrayList<>();
        int start = -1;
        for (int i = 0; i <= flags.length; i++) {
            final boolean f = i < flags.length && flags[i];
            if (f && start < 0) {
                start = i;
            } else if (!f && start >= 0) {
                if (i - start >= minLen) {
                    out.add(new Span(start, i - 1));
                }
                start = -1;
            }
        }
        return out;
    }

    static int firstIndex(final double[] v, final java.util.function.DoublePredicate p, final int from) {
        for (int i = Math.max(0, from); i < v.length; i++) {
            if (p.test(v[i])) {
                return i;
            }
        }
        return -1;
    }

    /** A value for reports: 4 significant digits, plain where readable. */
    static String fmt(final double v) {
        if (Double.isNaN(v)) {
            return "NaN";
        }
        if (Double.isInfinite(v)) {
            return v > 0 ? "Inf" : "-Inf";
        }
        if (v == 0) {
            return "0";
        }
        final double a = Math.abs(v);
        if (a >= 1e5 || a < 1e-3) {
            return String.format(Locale.ROOT, "%.2e", v);
        }
        String s = String.format(Locale.ROOT, "%.4g", v);
        if (s.contains(".") && !s.contains("e")) {
            s = s.replaceAll("0+$", "").replaceAll("\\.$", "");
        }
        return s;
    }
}
