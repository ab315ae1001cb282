package io.rlvec.cli.diagnose;

import java.util.ArrayList;
import java.util.Collections;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.Set;
import java.util.SortedMap;
import java.util.TreeSet;

/**
 * A run's logged metrics by step, as read from one log file.
 *
 * @param name the file name
 * @param format what the file was read as (e.g. "verl console log")
 * @param rows metric values by step, in step order (a later line for the same step adds to and overrides it)
 * @param roundedKeys keys whose every value was printed with at most 3 decimals (verl's older console format),
 *        where a printed 0.000 stands for anything below 0.0005 in magnitude
 * @param configText text in the log that may carry the run's config (where the estimator can be read), or ""
 * @param notes what the reader skipped or repaired, for the report
 */
public record Run(String name, String format, SortedMap<Long, Map<String, Double>> rows, Set<String> roundedKeys,
    String configText, List<String> notes) {

    /** @return the logged steps, increasing */
    public long[] steps() {
        return rows.keySet().stream().mapToLong(Long::longValue).toArray();
    }

    /** @return every key logged at least once, sorted */
    public Set<String> keys() {
        final Set<String> k = new TreeSet<>();
        rows.values().forEach(m -> k.addAll(m.keySet()));
        return Collections.unmodifiableSet(k);
    }

    /** @return the first key of {@code m} that this run logged, if any */
    public Optional<String> keyOf(final Metric m) {
        final Set<String> k = keys();
        return m.keys().stream().filter(k::contains).findFirst();
    }

    /** @return the series of {@code m} under its first logged key, if any */
    public Optional<Series> series(final Metric m) {
        return keyOf(m).map(this::series);
    }

    /** @return the series of {@code key} (empty when never logged) */
    public Series series(final String key) {
        final List<Long> s = new ArrayList<>();
        final List<Double> v = new ArrayList<>();
        rows.forEach((step, m) -> {
            final Double x = m.get(key);
            if (x != null) {
                s.add(step);
                v.add(x);
            }
        });
        return new Series(key, s.stream().mapToLong(Long::longValue).toArray(),
            v.stream().mapToDouble(Double::doubleValue).toArray());
    }
}
