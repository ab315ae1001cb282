package io.rlvec.cli.diagnose;

import static io.rlvec.cli.diagnose.Stats.fmt;

import java.util.ArrayList;
import java.util.List;
import java.util.Locale;
import java.util.stream.Collectors;

/** The terminal summary and the Markdown report of a {@link Diagnosis}. */
public final class Reports {
    private static final int WIDTH = 100;

    private Reports() {
    }

    /**
     * @param d the diagnosis
     * @return the terminal summary: the run, the estimator, the findings (most severe first), the window table
     */
    public static String text(final Diagnosis d) {
        final StringBuilder b = new StringBuilder();
        header(d).forEach(l -> b.append(l).append('\n'));
        b.append('\n').append(countLine(d)).append('\n');
        for (final Finding f : d.findings()) {
            b.append('\n').append(String.format(Locale.ROOT, "[%s] %s (%s, rule %s)%n", f.severity(), f.title(),
                f.steps(), f.rule()));
            for (final String e : f.evidence()) {
                wrap(b, "  - " + e, "    ");
            }
            wrap(b, "  " + f.reading(), "  ");
        }
        b.append('\n').append("Windows (mean per window; flags: C critical, W warning, I info):\n");
        table(d, b, false);
        return b.toString();
    }

    /**
     * @param d the diagnosis
     * @param png the chart's path relative to the report, or null for none
     * @return the Markdown report
     */
    public static String markdown(final Diagnosis d, final String png) {
        final StringBuilder b = new StringBuilder();
        b.append("# Diagnosis of ").append(d.run().name()).append("\n\n");
        header(d).stream().skip(1).forEach(l -> b.append("- ").append(l.strip()).append('\n'));
        b.append("\n**").append(countLine(d)).append("**\n\n");
        if (png != null) {
            b.append("![curves of ").append(d.run().name()).append("](").append(png).append(")\n\n");
            b.append("Shaded: the steps of each CRITICAL (red) and WARNING (orange) finding, on the panels of the "
                + "metrics it reads.\n\n");
        }
        b.append("## Findings\n");
        for (final Finding f : d.findings()) {
            b.append("\n### ").append(f.severity()).append(": ").append(f.title()).append("\n\n");
            b.append("*").append(f.steps()).append(", rule `").append(f.rule()).append("`*\n\n");
            for (final String e : f.evidence()) {
                b.append("- `").append(e.replace("`", "'")).append("`\n");
            }
            b.append('\n').append(f.reading()).append('\n');
        }
        b.append("\n## Windows\n\nMean per window; flags: C critical, W warning, I info.\n\n");
        table(d, b, true);
        return b.toString();
    }

    private static List<String> header(final Diagnosis d) {
        final Run r = d.run();
        final List<String> h = new ArrayList<>();
        h.add("rlvec diagnose: " + r.name());
        h.add("read as: " + r.format() + ", " + r.rows().size() + " steps (" + r.rows().firstKey() + ".."
            + r.rows().lastKey() + "), " + r.keys().size() + " metrics");
        h.add("estimator: " + d.estimator().name() + " (" + (d.estimator().family() == Estimator.Family.CRITIC
            ? "critic: pg_loss read against the value baseline"
            : "normalised advantages: pg_loss near 0 by construction") + "), " + d.estimator().source());
        final List<String> used = new ArrayList<>();
        for (final Metric m : Metric.values()) {
            r.keyOf(m).ifPresent(k -> used.add(m.label() + "=" + k));
        }
        h.add("curves: " + String.join(", ", used));
        r.notes().forEach(n -> h.add("note: " + n));
        return h;
    }

    private static String countLine(final Diagnosis d) {
        if (d.findings().isEmpty()) {
            return "No findings.";
        }
        return d.findings().size() + " finding(s): " + d.count(Severity.CRITICAL) + " critical, "
            + d.count(Severity.WARNING) + " warning, " + d.count(Severity.INFO) + " info";
    }

    private static void table(final Diagnosis d, final StringBuilder b, final boolean md) {
        final List<Metric> cols = Diagnosis.CURVES.stream().filter(m -> d.run().keyOf(m).isPresent()).toList();
        final List<String> head = new ArrayList<>();
        head.add("steps");
        cols.forEach(m -> head.add(m.label()));
        head.add("flags");
        final List<List<String>> rows = new ArrayList<>();
        for (final long[] w : d.windows()) {
            final List<String> row = new ArrayList<>();
            row.add(w[0] == w[1] ? Long.toString(w[0]) : w[0] + "-" + w[1]);
            for (final Metric m : cols) {
                final double v = d.mean(m, w[0], w[1]);
                row.add(Double.isNaN(v) ? "-" : fmt(v));
            }
            row.add(d.findings().stream().filter(f -> f.overlaps(w[0], w[1]))
                .map(f -> f.severity().name().charAt(0) + ":" + f.rule()).distinct()
                .collect(Collectors.joining(" ")));
            rows.add(row);
        }
        if (md) {
            b.append("| ").append(String.join(" | ", head)).append(" |\n|");
            head.forEach(x -> b.append("---|"));
            b.append('\n');
            rows.forEach(r -> b.append("| ").append(String.join(" | ", r)).append(" |\n"));
            return;
        }
        final int[] width = new int[head.size()];
        for (int c = 0; c < head.size(); c++) {
            width[c] = head.get(c).length();
            for (final List<String> r : rows) {
                width[c] = Math.max(width[c], r.get(c).length());
            }
        }
        final List<List<String>> all = new ArrayList<>();
        all.add(head);
        all.addAll(rows);
        for (final List<String> r : all) {
            final StringBuilder line = new StringBuilder(" ");
            for (int c = 0; c < r.size(); c++) {
                final String cell = r.get(c);
                line.append(c == 0 || c == r.size() - 1 ? String.format("%-" + width[c] + "s", cell)
                    : String.format("%" + width[c] + "s", cell)).append("  ");
            }
            b.append(line.toString().stripTrailing()).append('\n');
        }
    }

    private static void wrap(final StringBuilder b, final String text, final String indent) {
        int col = 0;
        boolean firstWord = true;
        for (final String word : text.split(" ")) {
            if (!firstWord && col + 1 + word.length() > WIDTH) {
                b.append('\n').append(indent);
                col = indent.length();
            } else if (!firstWord) {
                b.append(' ');
                col++;
            }
            b.append(word);
            col += word.length();
            firstWord = false;
        }
        b.append('\n');
    }
}
