package io.rlvec;

import java.util.Arrays;
import java.util.Collections;
import java.util.HashMap;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/**
 * The metrics of {@link Engine#rolloutCorrection}: every {@code rollout_corr/*} entry verl's
 * {@code compute_rollout_correction_and_rejection_mask} returns for the spec, under verl's names, in verl's order.
 * Reusable: an engine fills it in place without allocating ({@link #reset()}, then {@link #put(int, double)} by
 * key index); {@link #asMap()} is a fresh copy for callers.
 */
public final class RolloutCorrectionResult {
    /** The prefix of every key. */
    public static final String PREFIX = "rollout_corr/";

    /** IS keys, in verl's order (indices {@code IS_MEAN ...}). */
    public static final List<String> IS_KEYS = List.of("rollout_is_max", "rollout_is_min", "rollout_is_mean",
        "rollout_is_ratio_fraction_high", "rollout_is_ratio_fraction_low", "rollout_is_std",
        "rollout_is_eff_sample_size", "rollout_is_seq_mean", "rollout_is_seq_std", "rollout_is_seq_max",
        "rollout_is_seq_min", "rollout_is_seq_max_deviation", "rollout_is_seq_fraction_high",
        "rollout_is_seq_fraction_low", "rollout_is_oob_ratio", "rollout_is_batch_norm_factor");
    /** Per-option rejection keys (after {@code rollout_rs_<option>}), in verl's order. */
    public static final List<String> RS_OPTION_KEYS = List.of("_mean", "_max", "_min", "_fraction_high",
        "_fraction_low", "_std", "_seq_mean", "_seq_std", "_seq_max", "_seq_min", "_seq_max_deviation",
        "_seq_fraction_high", "_seq_fraction_low", "_masked_fraction", "_seq_masked_fraction");
    /** Overall rejection keys. */
    public static final List<String> RS_KEYS = List.of("rollout_rs_masked_fraction", "rollout_rs_seq_masked_fraction");
    /** Off-policy diagnostics, always present. */
    public static final List<String> OFFPOLICY_KEYS = List.of("training_ppl", "training_log_ppl", "kl", "k3_kl",
        "rollout_ppl", "rollout_log_ppl", "log_ppl_diff", "log_ppl_abs_diff", "log_ppl_diff_max", "log_ppl_diff_min",
        "ppl_ratio", "chi2_token", "chi2_seq");

    /** Index of the first IS key. */
    public static final int IS_BASE = 0;
    /** Index of the first per-option key of option {@code o} (in {@link RolloutCorrectionSpec#RS_OPTIONS}). */
    public static final int RS_OPTION_BASE = IS_BASE + IS_KEYS.size();
    /** Index of the first overall rejection key. */
    public static final int RS_BASE = RS_OPTION_BASE + RolloutCorrectionSpec.RS_OPTIONS.size() * RS_OPTION_KEYS.size();
    /** Index of the first off-policy key. */
    public static final int OFFPOLICY_BASE = RS_BASE + RS_KEYS.size();
    /** Number of keys. */
    public static final int KEYS = OFFPOLICY_BASE + OFFPOLICY_KEYS.size();

    private static final String[] NAMES = new String[KEYS];
    private static final Map<String, Integer> INDEX = new HashMap<>();

    static {
        for (int i = 0; i < IS_KEYS.size(); i++) {
            NAMES[IS_BASE + i] = PREFIX + IS_KEYS.get(i);
        }
        for (int o = 0; o < RolloutCorrectionSpec.RS_OPTIONS.size(); o++) {
            for (int k = 0; k < RS_OPTION_KEYS.size(); k++) {
                NAMES[RS_OPTION_BASE + o * RS_OPTION_KEYS.size() + k] = PREFIX + "rollout_rs_"
                    + RolloutCorrectionSpec.RS_OPTIONS.get(o) + RS_OPTION_KEYS.get(k);
            }
        }
        for (int i = 0; i < RS_KEYS.size(); i++) {
            NAMES[RS_BASE + i] = PREFIX + RS_KEYS.get(i);
        }
        for (int i = 0; i < OFFPOLICY_KEYS.size(); i++) {
            NAMES[OFFPOLICY_BASE + i] = PREFIX + OFFPOLICY_KEYS.get(i);
        }
        for (int i = 0; i < KEYS; i++) {
            INDEX.put(NAMES[i], i);
        }
    }

    private final double[] values = new double[KEYS];
    private final int[] order = new int[KEYS];
    private final boolean[] present = new boolean[KEYS];
    private int size;
    /** How many calls' metrics this result holds (0 empty, 1 after a call, more after {@link #merge}). */
    private int parts;

    /** @return the key index of a full name ({@code rollout_corr/...}), or -1. */
    public static int indexOf(final String name) {
        final Integer i = INDEX.get(name);
        return i == null ? -1 : i;
    }

    /** @return the full name of a key index. */
    public static String name(final int index) {
        return NAMES[index];
    }

    /** @return the index of the per-option key {@code suffix} (one of {@link #RS_OPTION_KEYS}) of an option. */
    public static int rsOptionKey(final String option, final int suffix) {
        return RS_OPTION_BASE + RolloutCorrectionSpec.RS_OPTIONS.indexOf(option) * RS_OPTION_KEYS.size() + suffix;
    }

    /** Empties the result. */
    public void reset() {
        for (int i = 0; i < size; i++) {
            present[order[i]] = false;
        }
        size = 0;
        parts = 0;
    }

    /** Sets a metric (appended in call order the first time). */
    public void put(final int index, final double value) {
        parts = Math.max(parts, 1);
        if (!present[index]) {
            present[index] = true;
            order[size++] = index;
        }
        values[index] = value;
    }

    /** @return the number of metrics. */
    public int size() {
        return size;
    }

    /** @return whether the metric (full name) is present. */
    public boolean has(final String name) {
        final int i = indexOf(name);
        return i >= 0 && present[i];
    }

    /**
     * @param name the full name, e.g. {@code rollout_corr/rollout_is_mean}.
     * @return its value.
     * @throws IllegalArgumentException when the metric is not present.
     */
    public double get(final String name) {
        final int i = indexOf(name);
        if (i < 0 || !present[i]) {
            throw new IllegalArgumentException("no metric '" + name + "' in this result (it has " + keys() + ")");
        }
        return values[i];
    }

    /** @return the value at a key index (NaN when absent). */
    public double value(final int index) {
        return present[index] ? values[index] : Double.NaN;
    }

    /** @return the present names, in verl's order. */
    public List<String> keys() {
        final String[] k = new String[size];
        for (int i = 0; i < size; i++) {
            k[i] = NAMES[order[i]];
        }
        return Arrays.asList(k);
    }

    /** @return a copy of the metrics as verl's dict (insertion order = verl's order). */
    public Map<String, Double> asMap() {
        final Map<String, Double> m = new LinkedHashMap<>();
        for (int i = 0; i < size; i++) {
            m.put(NAMES[order[i]], values[order[i]]);
        }
        return Collections.unmodifiableMap(m);
    }

    /** Copies another result into this one. */
    public void copyFrom(final RolloutCorrectionResult other) {
        reset();
        for (int i = 0; i < other.size; i++) {
            put(other.order[i], other.values[other.order[i]]);
        }
        parts = other.parts;
    }

    /** @return how many calls' metrics this result holds: 0 when empty, 1 after a call, the sum after merges. */
    public int parts() {
        return parts;
    }

    /**
     * Merges another micro-batch's metrics into this one the way verl's trainer reduces the lists it appends them
     * to ({@code reduce_metrics}): a key whose name contains {@code max} keeps the largest value, one containing
     * {@code min} the smallest, every other key the plain mean over the micro-batches (each merged call counts
     * once, whatever its token count; a merged result counts as the calls it holds). So the merged values are what
     * verl logs for the same micro-batches, not a recomputation over the whole batch. NaN propagates as in numpy.
     * A key present on one side only keeps that side's value.
     */
    public void merge(final RolloutCorrectionResult other) {
        if (other.size == 0) {
            return;
        }
        if (size == 0) {
            copyFrom(other);
            return;
        }
        for (int i = 0; i < other.size; i++) {
            final int k = other.order[i];
            final double o = other.values[k];
            if (!present[k]) {
                put(k, o);
            } else if (NAMES[k].contains("max")) {
                values[k] = Double.isNaN(o) || Double.isNaN(values[k]) ? Double.NaN : Math.max(values[k], o);
            } else if (NAMES[k].contains("min")) {
                values[k] = Double.isNaN(o) || Double.isNaN(values[k]) ? Double.NaN : Math.min(values[k], o);
            } else {
                values[k] = (values[k] * parts + o * other.parts) / (parts + other.parts);
            }
        }
        parts += other.parts;
    }

    @Override
    public String toString() {
        return asMap().toString();
    }
}
