package io.rlvec.jmh.report;

import java.io.IOException;
import java.io.PrintStream;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

/**
 * Summarises JMH JSON reports ({@code -rf json}): one row per benchmark and parameter set with score, error,
 * unit, ns/token and {@code gc.alloc.rate.norm}, then the vector/reference speed-up of every pair of rows that
 * differ only in the {@code engine} parameter. Optionally fails on allocation, for the CI smoke run.
 *
 * <pre>
 * java -cp jmh/target/benchmarks.jar io.rlvec.jmh.report.Summary [options] REPORT.json...
 *   --markdown           GitHub markdown tables (for the README) instead of aligned text
 *   --max-alloc BYTES    fail when a selected row's gc.alloc.rate.norm exceeds BYTES per op, or has none
 *   --where KEY=VALUE    select the rows --max-alloc applies to by a parameter (repeatable, all must match)
 *   --expect-rows N      fail unless the reports hold exactly N results (a benchmark that threw has none)
 * </pre>
 *
 * <p>ns/token is derived from a parameter holding {@code BxT} (the {@code shape} parameter,
 * {@code padded-64x4096}: B*T token slots, the same count for the packed shapes) or from an integer
 * {@code tokens} parameter. Exit status: 0 fine, 1 bad usage or unreadable report, 2 a check failed.
 */
public final class Summary {
    /** Exit status for bad usage or an unreadable report. */
    public static final int EXIT_USAGE = 1;
    /** Exit status when a requested check fails. */
    public static final int EXIT_CHECK_FAILED = 2;

    /** Parameter whose values {@link #VECTOR} and {@link #REFERENCE} form a speed-up pair. */
    static final String ENGINE_PARAM = "engine";
    static final String VECTOR = "vector";
    static final String REFERENCE = "reference";
    static final String GC_NORM = "gc.alloc.rate.norm";
    private static final String PACKAGE_PREFIX = "io.rlvec.jmh.";
    private static final Pattern SHAPE = Pattern.compile("(?<![0-9])([0-9]+)x([0-9]+)$");

    private Summary() {
    }

    /**
     * One benchmark result.
     *
     * @param benchmark  fully qualified benchmark method.
     * @param mode       JMH mode (avgt, thrpt, ss, sample).
     * @param params     parameter values.
     * @param score      primary score.
     * @param error      its 99.9% error (NaN for a single iteration).
     * @param unit       score unit, e.g. ns/op.
     * @param allocNorm  gc.alloc.rate.norm in B/op, NaN without {@code -prof gc}.
     * @param allocMin   the smallest gc.alloc.rate.norm of any one measurement iteration (equal to allocNorm for a
     *                   single iteration): what the call allocates in steady state, without an iteration in which
     *                   a late recompilation ran some calls through interpreted or C1 code (boxed vectors).
     * @param tokens     token slots per op, 0 when unknown.
     */
    record Row(String benchmark, String mode, Map<String, String> params, double score, double error, String unit,
               double allocNorm, double allocMin, long tokens) {

        String shortName() {
            return benchmark.startsWith(PACKAGE_PREFIX) ? benchmark.substring(PACKAGE_PREFIX.length()) : benchmark;
        }

        /** @return nanoseconds per operation, NaN when the unit is not a time or rate unit JMH uses. */
        double nsPerOp() {
            final int slash = unit.indexOf('/');
            if (slash < 0) {
                return Double.NaN;
            }
            final String num = unit.substring(0, slash);
            final String den = unit.substring(slash + 1);
            if ("op".equals(den)) {
                return score * nanos(num);
            }
            if ("ops".equals(num)) {
                return nanos(den) / score;
            }
            return Double.NaN;
        }

        double nsPerToken() {
            return tokens > 0 ? nsPerOp() / tokens : Double.NaN;
        }

        String paramText(final boolean withEngine) {
            final StringBuilder sb = new StringBuilder();
            for (final Map.Entry<String, String> e : params.entrySet()) {
                if (!withEngine && ENGINE_PARAM.equals(e.getKey())) {
                    continue;
                }
                sb.append(sb.isEmpty() ? "" : " ").append(e.getKey()).append('=').append(e.getValue());
            }
            return sb.toString();
        }

        /** @return the row's identity without the engine, for pairing. */
        String pairKey() {
            return benchmark + "|" + mode + "|" + paramText(false);
        }

        private static double nanos(final String timeUnit) {
            return switch (timeUnit) {
                case "ns" -> 1.0;
                case "us" -> 1e3;
                case "ms" -> 1e6;
                case "s" -> 1e9;
                case "min" -> 6e10;
                default -> Double.NaN;
            };
        }
    }

    /**
     * Runs the summary and exits with its status.
     *
     * @param args options and report files (see the class comment).
     */
    public static void main(final String[] args) {
        System.exit(run(args, System.out, System.err));
    }

    /**
     * @param args options and report files.
     * @param out  where the tables go.
     * @param err  where usage and check messages go.
     * @return the exit status.
     */
    static int run(final String[] args, final PrintStream out, final PrintStream err) {
        boolean markdown = false;
        double maxAlloc = Double.NaN;
        int expectRows = -1;
        final Map<String, String> where = new LinkedHashMap<>();
        final List<Path> files = new ArrayList<>();
        try {
            for (int i = 0; i < args.length; i++) {
                switch (args[i]) {
                    case "--markdown" -> markdown = true;
                    case "--max-alloc" -> maxAlloc = Double.parseDouble(next(args, ++i, "--max-alloc"));
                    case "--expect-rows" -> expectRows = Integer.parseInt(next(args, ++i, "--expect-rows"));
                    case "--where" -> {
                        final String kv = next(args, ++i, "--where");
                        final int eq = kv.indexOf('=');
                        if (eq < 1) {
                            throw new IllegalArgumentException("--where needs KEY=VALUE, got '" + kv + "'");
                        }
                        where.put(kv.substring(0, eq), kv.substring(eq + 1));
                    }
                    case "-h", "--help" -> {
                        out.println(usage());
                        return 0;
                    }
                    default -> {
                        if (args[i].startsWith("--")) {
                            throw new IllegalArgumentException("unknown option " + args[i]);
                        }
                        files.add(Path.of(args[i]));
                    }
                }
            }
            if (files.isEmpty()) {
                throw new IllegalArgumentException("no report file given");
            }
        } catch (final IllegalArgumentException e) {
            err.println("Summary: " + e.getMessage());
            err.println(usage());
            return EXIT_USAGE;
        }

        final List<Row> rows = new ArrayList<>();
        for (final Path f : files) {
            try {
                rows.addAll(read(Files.readString(f)));
            } catch (final IOException | IllegalArgumentException | ClassCastException e) {
                err.println("Summary: cannot read JMH report " + f + ": " + e.getMessage());
                return EXIT_USAGE;
            }
        }

        results(rows).print(out, markdown);
        final Table pairs = speedUps(rows);
        if (!pairs.isEmpty()) {
            out.println();
            out.println(markdown ? "Speed-up = reference time / vector time (higher: the vector engine is faster)."
                : "Vector vs reference (speed-up = reference time / vector time):");
            if (markdown) {
                out.println();
            }
            pairs.print(out, markdown);
        }

        int status = 0;
        if (expectRows >= 0 && rows.size() != expectRows) {
            err.println("CHECK FAILED: expected " + expectRows + " results, the reports hold " + rows.size()
                + " (a benchmark that threw in setup or teardown leaves no result)");
            status = EXIT_CHECK_FAILED;
        }
        if (!Double.isNaN(maxAlloc)) {
            status = Math.max(status, checkAlloc(rows, where, maxAlloc, err));
        }
        return status;
    }

    /** Parses a JMH JSON report into rows. */
    @SuppressWarnings("unchecked")
    static List<Row> read(final String json) {
        final List<Row> rows = new ArrayList<>();
        for (final Object o : (List<Object>) Json.parse(json)) {
            final Map<String, Object> r = (Map<String, Object>) o;
            final Map<String, String> params = new LinkedHashMap<>();
            final Object p = r.get("params");
            if (p instanceof Map<?, ?> pm) {
                for (final Map.Entry<?, ?> e : pm.entrySet()) {
                    params.put(String.valueOf(e.getKey()), String.valueOf(e.getValue()));
                }
            }
            final Map<String, Object> primary = (Map<String, Object>) r.get("primaryMetric");
            double alloc = Double.NaN;
            double allocMin = Double.NaN;
            if (r.get("secondaryMetrics") instanceof Map<?, ?> sec && sec.get(GC_NORM) instanceof Map<?, ?> gc) {
                alloc = Json.number(gc.get("score"));
                allocMin = minimum(gc.get("rawData"), alloc);
            }
            rows.add(new Row(String.valueOf(r.get("benchmark")), String.valueOf(r.get("mode")), params,
                Json.number(primary.get("score")), Json.number(primary.get("scoreError")),
                String.valueOf(primary.get("scoreUnit")), alloc, allocMin, tokens(params)));
        }
        return rows;
    }

    /** @return the smallest number in JMH's rawData (one list per fork), or {@code fallback} when there is none. */
    static double minimum(final Object rawData, final double fallback) {
        double min = Double.NaN;
        if (rawData instanceof List<?> forks) {
            for (final Object fork : forks) {
                if (fork instanceof List<?> values) {
                    for (final Object v : values) {
                        final double d = Json.number(v);
                        if (!Double.isNaN(d) && (Double.isNaN(min) || d < min)) {
                            min = d;
                        }
                    }
                }
            }
        }
        return Double.isNaN(min) ? fallback : min;
    }

    /** @return token slots per op from a {@code BxT} parameter or a {@code tokens} parameter, else 0. */
    static long tokens(final Map<String, String> params) {
        final String t = params.get("tokens");
        if (t != null && t.matches("[0-9]+")) {
            return Long.parseLong(t);
        }
        for (final String v : params.values()) {
            final Matcher m = SHAPE.matcher(v);
            if (m.find()) {
                return Long.parseLong(m.group(1)) * Long.parseLong(m.group(2));
            }
        }
        return 0;
    }

    static Table results(final List<Row> rows) {
        final Table t = new Table(new String[] {"Benchmark", "Params", "Score", "Error", "Unit", "ns/token",
            "alloc B/op"}, new boolean[] {false, false, true, true, false, true, true});
        for (final Row r : rows) {
            t.add(r.shortName() + (r.mode().equals("avgt") ? "" : " (" + r.mode() + ")"), r.paramText(true),
                fmt(r.score()), Double.isNaN(r.error()) ? "n/a" : "± " + fmt(r.error()), r.unit(),
                fmt(r.nsPerToken()), fmt(r.allocNorm()));
        }
        return t;
    }

    static Table speedUps(final List<Row> rows) {
        final Map<String, Row[]> pairs = new LinkedHashMap<>();
        for (final Row r : rows) {
            final String engine = r.params().get(ENGINE_PARAM);
            final int slot = VECTOR.equals(engine) ? 0 : REFERENCE.equals(engine) ? 1 : -1;
            if (slot >= 0) {
                pairs.computeIfAbsent(r.pairKey(), k -> new Row[2])[slot] = r;
            }
        }
        final Table t = new Table(new String[] {"Benchmark", "Params", "vector ns/op", "reference ns/op",
            "vector ns/token", "reference ns/token", "speed-up"},
            new boolean[] {false, false, true, true, true, true, true});
        for (final Row[] p : pairs.values()) {
            if (p[0] == null || p[1] == null) {
                continue;
            }
            final double v = p[0].nsPerOp();
            final double ref = p[1].nsPerOp();
            final double ratio = ref / v;
            // Relative errors add in quadrature; the same for ns/op as for the raw scores (one unit per pair).
            final double relErr = Math.hypot(relative(p[0]), relative(p[1]));
            t.add(p[0].shortName(), p[0].paramText(false), fmt(v), fmt(ref), fmt(p[0].nsPerToken()),
                fmt(p[1].nsPerToken()), String.format(Locale.ROOT, "%.2fx", ratio)
                    + (Double.isNaN(relErr) ? "" : String.format(Locale.ROOT, " ± %.2f", ratio * relErr)));
        }
        return t;
    }

    private static double relative(final Row r) {
        return r.error() / r.score();
    }

    static int checkAlloc(final List<Row> rows, final Map<String, String> where, final double maxAlloc,
                          final PrintStream err) {
        int selected = 0;
        int status = 0;
        for (final Row r : rows) {
            boolean match = true;
            for (final Map.Entry<String, String> w : where.entrySet()) {
                match &= w.getValue().equals(r.params().get(w.getKey()));
            }
            if (!match) {
                continue;
            }
            selected++;
            final String id = r.shortName() + " [" + r.paramText(true) + "]";
            if (Double.isNaN(r.allocMin())) {
                err.println("CHECK FAILED: " + id + " has no " + GC_NORM + " (run it with -prof gc)");
                status = EXIT_CHECK_FAILED;
            } else if (r.allocMin() > maxAlloc) {
                err.println("CHECK FAILED: " + id + " allocates " + fmt(r.allocMin()) + " B/op at " + fmt(r.nsPerOp())
                    + " ns/op, more than the " + fmt(maxAlloc) + " B/op allowed: the hot path must not allocate "
                    + "(style.md P1, P2). JMH counts every thread's allocation; background allocation in the fork "
                    + "adds about 0.2 B/op per microsecond of call time, so a much larger figure is the call's own.");
                status = EXIT_CHECK_FAILED;
            } else {
                err.println("CHECK OK: " + id + " allocates " + fmt(r.allocMin()) + " B/op in its quietest iteration"
                    + " (mean " + fmt(r.allocNorm()) + ", bound " + fmt(maxAlloc) + ")");
            }
        }
        if (selected == 0) {
            err.println("CHECK FAILED: no result matches " + where + " (did the benchmark fail?)");
            status = EXIT_CHECK_FAILED;
        }
        return status;
    }

    /** @return a number with a precision that suits its size; "n/a" for NaN. */
    static String fmt(final double v) {
        if (Double.isNaN(v)) {
            return "n/a";
        }
        final double a = Math.abs(v);
        if (a >= 1000) {
            return String.format(Locale.ROOT, "%,.0f", v);
        }
        if (a >= 100) {
            return String.format(Locale.ROOT, "%.1f", v);
        }
        if (a >= 1) {
            return String.format(Locale.ROOT, "%.2f", v);
        }
        if (a == 0) {
            return "0";
        }
        if (a >= 0.01) {
            return String.format(Locale.ROOT, "%.3f", v);
        }
        return String.format(Locale.ROOT, "%.1e", v);
    }

    private static String next(final String[] args, final int i, final String option) {
        if (i >= args.length) {
            throw new IllegalArgumentException(option + " needs a value");
        }
        return args[i];
    }

    private static String usage() {
        return "usage: java -cp jmh/target/benchmarks.jar io.rlvec.jmh.report.Summary [--markdown] "
            + "[--max-alloc BYTES [--where KEY=VALUE]...] [--expect-rows N] REPORT.json...";
    }
}
