package io.rlvec.jmh.report;

import java.awt.Color;
import java.awt.Font;
import java.io.IOException;
import java.text.DecimalFormat;
import java.io.PrintStream;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.TreeMap;

import org.jfree.chart.ChartUtils;
import org.jfree.chart.JFreeChart;
import org.jfree.chart.axis.CategoryAxis;
import org.jfree.chart.axis.CategoryLabelPositions;
import org.jfree.chart.axis.LogAxis;
import org.jfree.chart.axis.NumberTickUnit;
import org.jfree.chart.plot.CategoryPlot;
import org.jfree.chart.plot.PlotOrientation;
import org.jfree.chart.renderer.category.BarRenderer;
import org.jfree.chart.renderer.category.StandardBarPainter;
import org.jfree.data.category.DefaultCategoryDataset;

/**
 * Renders JMH JSON reports of the engine, the reference, the PyTorch peer (jmh-peer) and the floor benchmarks as one
 * comparison: a Markdown table of ns per element (per logit for the vocabulary kernels, per token slot for the
 * token kernels) by kernel, shape, dtype and thread count, with the ratios PyTorch / engine and reference / engine,
 * and a PNG bar chart (log scale) of the same figures, drawn headless with JFreeChart.
 *
 * <pre>
 * java -Djava.awt.headless=true -cp jmh/target/benchmarks.jar io.rlvec.jmh.report.BenchReport \
 *     [--md report.md] [--png chart.png] [--title TEXT] REPORT.json...
 * </pre>
 *
 * <p>Which implementation a row measures: {@code VocabBenchmark}'s {@code impl} (vector: 1 thread, vector2: 2,
 * reference), the token benchmarks' {@code engine} (vector, vector2, reference), the peer's {@code Torch*}
 * classes with their {@code threads} (labelled "PyTorch", or "PyTorch jemalloc" when the report's file name contains
 * "jemalloc": the same benchmarks run with jemalloc preloaded), and the {@code *Floor*} classes (labelled by method).
 * Rows pair on one line when they compute the same thing ({@link #kernel}: the method, the policy-loss {@code mode},
 * an aggregation other than token-mean, the estimator of an {@code estimator@BxT} {@code config}), at the same shape,
 * dtype and thread count. Rows from different reports are compared only if they come from one sitting; the report
 * does not check that.
 */
public final class BenchReport {
    static final String ENGINE = "engine";
    static final String REFERENCE = "reference";
    static final String TORCH = "PyTorch";
    static final String TORCH_JEMALLOC = "PyTorch jemalloc";

    private BenchReport() {
    }

    /**
     * One measured configuration, keyed for comparison.
     *
     * @param kernel         what is computed ("vocab fwd+bwd (logits)", "policyLoss (log-probs)", ...).
     * @param shape          the shape parameter.
     * @param dtype          the dtype parameter, "f32" when the benchmark has none.
     * @param threads        1 or 2 (0 for the reference, which has one).
     * @param implementation engine, reference, PyTorch, PyTorch jemalloc, or a floor's name.
     * @param nsPerElement   ns per logit or per token slot.
     */
    record Point(String kernel, String shape, String dtype, int threads, String implementation, double nsPerElement) {
    }

    /**
     * Runs the report.
     *
     * @param args options and JMH JSON files (see the class comment).
     */
    public static void main(final String[] args) {
        System.setProperty("java.awt.headless", "true");
        System.exit(run(args, System.out, System.err));
    }

    static int run(final String[] args, final PrintStream out, final PrintStream err) {
        Path md = null;
        Path png = null;
        String title = "RLVec against PyTorch 2.7 (DJL) and the scalar reference";
        final List<Path> reports = new ArrayList<>();
        for (int i = 0; i < args.length; i++) {
            switch (args[i]) {
                case "--md" -> md = Path.of(value(args, ++i, "--md"));
                case "--png" -> png = Path.of(value(args, ++i, "--png"));
                case "--title" -> title = value(args, ++i, "--title");
                case "-h", "--help" -> {
                    out.println("usage: BenchReport [--md FILE] [--png FILE] [--title TEXT] REPORT.json...");
                    return 0;
                }
                default -> reports.add(Path.of(args[i]));
            }
        }
        if (reports.isEmpty()) {
            err.println("BenchReport: no JMH JSON report given; usage: BenchReport [--md FILE] [--png FILE] "
                + "REPORT.json...");
            return Summary.EXIT_USAGE;
        }
        final List<Point> points = new ArrayList<>();
        for (final Path p : reports) {
            try {
                points.addAll(points(Summary.read(Files.readString(p)),
                    p.getFileName().toString().contains("jemalloc")));
            } catch (final IOException | RuntimeException e) {
                err.println("BenchReport: cannot read " + p + ": " + e.getMessage());
                return Summary.EXIT_USAGE;
            }
        }
        final String table = markdown(points);
        out.print(table);
        try {
            if (md != null) {
                final StringBuilder sb = new StringBuilder("# ").append(title).append("\n\n").append(table);
                if (png != null) {
                    sb.append("\n![ns per element by kernel](").append(png.getFileName()).append(")\n");
                }
                Files.writeString(md, sb.toString());
            }
            if (png != null) {
                chart(points, title, png);
            }
        } catch (final IOException e) {
            err.println("BenchReport: cannot write: " + e.getMessage());
            return Summary.EXIT_USAGE;
        }
        return 0;
    }

    private static String value(final String[] args, final int i, final String option) {
        if (i >= args.length) {
            throw new IllegalArgumentException(option + " needs a value");
        }
        return args[i];
    }

    /** @return the comparable points of one report's rows (rows it cannot place are left out). */
    static List<Point> points(final List<Summary.Row> rows, final boolean jemalloc) {
        final List<Point> out = new ArrayList<>();
        for (final Summary.Row r : rows) {
            final String cls = r.benchmark().substring(0, r.benchmark().lastIndexOf('.'));
            final String simple = cls.substring(cls.lastIndexOf('.') + 1);
            final String method = r.benchmark().substring(r.benchmark().lastIndexOf('.') + 1);
            final Map<String, String> p = r.params();
            final String dtype = p.getOrDefault("dtype", "f32");
            final String kernel = kernel(simple, method, p);
            final String config = p.get("config");
            final String shape = config != null && config.contains("@") ? config.substring(config.indexOf('@') + 1)
                : p.getOrDefault("shape", "?");
            final String impl;
            final int threads;
            if (simple.startsWith("Torch")) {
                impl = jemalloc ? TORCH_JEMALLOC : TORCH;
                threads = Integer.parseInt(p.getOrDefault("threads", "1"));
            } else if (simple.contains("Floor")) {
                impl = "floor: " + method;
                threads = Integer.parseInt(p.getOrDefault("threads", "1"));
            } else {
                final String e = p.getOrDefault("impl", p.getOrDefault("engine", ""));
                switch (e) {
                    case "vector" -> {
                        impl = ENGINE;
                        threads = 1;
                    }
                    case "vector2" -> {
                        impl = ENGINE;
                        threads = 2;
                    }
                    case "reference" -> {
                        impl = REFERENCE;
                        threads = 0;
                    }
                    default -> {
                        if (!e.matches("vector[0-9]+")) {
                            continue;
                        }
                        impl = ENGINE;
                        threads = Integer.parseInt(e.substring("vector".length()));
                    }
                }
            }
            final double ns = r.nsPerToken();
            if (!Double.isNaN(ns)) {
                out.add(new Point(simple.contains("Floor") ? "floors (logits)" : kernel, shape, dtype, threads, impl,
                    ns));
            }
        }
        return out;
    }

    /**
     * What a row computes, the key that pairs a peer's row with the engine's: the method, then the policy-loss
     * {@code mode} (vanilla left out: the default), a {@code loss_agg_mode} other than token-mean, or the estimator
     * of an {@code estimator@BxT} {@code config}, then what the figures are per (logits, log-probs, tokens).
     */
    static String kernel(final String simpleClass, final String method, final Map<String, String> params) {
        final StringBuilder k = new StringBuilder(method);
        final String mode = params.get("mode");
        if (mode != null && !mode.equals("vanilla")) {
            k.append(' ').append(mode);
        }
        final String agg = params.get("agg");
        if (agg != null && !agg.equals("token-mean")) {
            k.append(' ').append(agg);
        }
        final String config = params.get("config");
        if (config != null && config.contains("@")) {
            k.append(' ').append(config, 0, config.indexOf('@'));
        }
        if (simpleClass.contains("Vocab")) {
            k.append(" (logits)");
        } else if (config != null) {
            k.append(" (tokens)");
        } else {
            k.append(" (log-probs)");
        }
        return k.toString();
    }

    /** The table: one line per kernel, shape, dtype and thread count; the reference's figure on every line. */
    static String markdown(final List<Point> points) {
        final Map<String, Map<String, Double>> lines = new TreeMap<>();
        final Map<String, Double> reference = new LinkedHashMap<>();
        for (final Point p : points) {
            final String key = p.kernel() + "|" + p.shape() + "|" + p.dtype();
            if (p.implementation().equals(REFERENCE)) {
                reference.put(key, p.nsPerElement());
            } else if (!p.kernel().startsWith("floors")) {
                lines.computeIfAbsent(key + "|" + p.threads(), k -> new LinkedHashMap<>())
                    .put(p.implementation(), p.nsPerElement());
            }
        }
        final StringBuilder sb = new StringBuilder();
        sb.append("| kernel | shape | dtype | threads | engine ns | reference ns | PyTorch ns | PyTorch jemalloc ns "
            + "| PyTorch / engine | PyTorch jemalloc / engine | reference / engine |\n");
        sb.append("|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|\n");
        for (final Map.Entry<String, Map<String, Double>> e : lines.entrySet()) {
            final String[] k = e.getKey().split("\\|");
            final Map<String, Double> v = e.getValue();
            final double eng = v.getOrDefault(ENGINE, Double.NaN);
            final double ref = reference.getOrDefault(k[0] + "|" + k[1] + "|" + k[2], Double.NaN);
            final double pt = v.getOrDefault(TORCH, Double.NaN);
            final double ptj = v.getOrDefault(TORCH_JEMALLOC, Double.NaN);
            sb.append("| ").append(k[0]).append(" | ").append(k[1]).append(" | ").append(k[2]).append(" | ")
                .append(k[3]).append(" | ").append(Summary.fmt(eng)).append(" | ").append(Summary.fmt(ref))
                .append(" | ").append(Summary.fmt(pt)).append(" | ").append(Summary.fmt(ptj)).append(" | ")
                .append(ratio(pt, eng)).append(" | ").append(ratio(ptj, eng)).append(" | ").append(ratio(ref, eng))
                .append(" |\n");
        }
        final List<Point> floors = points.stream().filter(p -> p.kernel().startsWith("floors")).toList();
        if (!floors.isEmpty()) {
            sb.append("\n| floor | shape | dtype | threads | ns per logit |\n|---|---|---|---:|---:|\n");
            for (final Point p : floors) {
                sb.append("| ").append(p.implementation().substring("floor: ".length())).append(" | ")
                    .append(p.shape()).append(" | ").append(p.dtype()).append(" | ").append(p.threads())
                    .append(" | ").append(Summary.fmt(p.nsPerElement())).append(" |\n");
            }
        }
        return sb.toString();
    }

    private static String ratio(final double slow, final double fast) {
        return Double.isNaN(slow) || Double.isNaN(fast) || fast == 0 ? "" : String.format("%.1fx", slow / fast);
    }

    /** A grouped bar chart, one group per configuration, one bar per implementation, ns per element on a log axis. */
    static void chart(final List<Point> points, final String title, final Path png) throws IOException {
        final DefaultCategoryDataset data = new DefaultCategoryDataset();
        for (final Point p : points) {
            final String group = p.kernel() + " " + p.shape() + " " + p.dtype()
                + (p.threads() == 0 ? "" : " " + p.threads() + "t");
            data.addValue(p.nsPerElement(), p.implementation(), group);
        }
        final CategoryAxis x = new CategoryAxis();
        x.setCategoryLabelPositions(CategoryLabelPositions.UP_45);
        x.setTickLabelFont(new Font(Font.SANS_SERIF, Font.PLAIN, 10));
        final LogAxis y = new LogAxis("ns per logit / per token (log scale)");
        y.setBase(10);
        y.setTickUnit(new NumberTickUnit(1.0));
        y.setNumberFormatOverride(new DecimalFormat("0.####"));
        y.setSmallestValue(points.stream().mapToDouble(Point::nsPerElement).filter(v -> v > 0).min().orElse(1) / 2);
        final BarRenderer bars = new BarRenderer();
        bars.setBarPainter(new StandardBarPainter());
        bars.setShadowVisible(false);
        bars.setItemMargin(0.02);
        final CategoryPlot plot = new CategoryPlot(data, x, y, bars);
        plot.setOrientation(PlotOrientation.VERTICAL);
        plot.setBackgroundPaint(Color.WHITE);
        plot.setRangeGridlinePaint(Color.LIGHT_GRAY);
        final JFreeChart chart = new JFreeChart(title, JFreeChart.DEFAULT_TITLE_FONT, plot, true);
        chart.setBackgroundPaint(Color.WHITE);
        final int width = Math.max(1000, 60 * data.getColumnCount());
        ChartUtils.saveChartAsPNG(png.toFile(), chart, width, 800);
    }
}
