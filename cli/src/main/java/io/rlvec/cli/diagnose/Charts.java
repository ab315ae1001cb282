package io.rlvec.cli.diagnose;

import java.awt.BasicStroke;
import java.awt.Color;
import java.awt.Font;
import java.io.IOException;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.Set;

import org.jfree.chart.ChartUtils;
import org.jfree.chart.JFreeChart;
import org.jfree.chart.axis.NumberAxis;
import org.jfree.chart.plot.CombinedDomainXYPlot;
import org.jfree.chart.plot.IntervalMarker;
import org.jfree.chart.plot.XYPlot;
import org.jfree.chart.renderer.xy.XYLineAndShapeRenderer;
import org.jfree.chart.ui.Layer;
import org.jfree.data.xy.XYSeries;
import org.jfree.data.xy.XYSeriesCollection;

/**
 * The main curves of a run as stacked panels sharing the step axis, drawn with JFreeChart in headless mode:
 * pg_loss (with its A&gt;0 / A&lt;0 parts when logged), pg_clipfrac (and pg_clipfrac_lower), ppo_kl, entropy,
 * KL to the reference, reward, response length, grad_norm; a panel per curve the run logged. The steps of every
 * WARNING (orange) and CRITICAL (red) finding are shaded on the panels of the metrics the finding reads.
 */
public final class Charts {
    /** Image width in pixels. */
    public static final int WIDTH = 1000;
    /** Height of one panel in pixels. */
    public static final int PANEL_HEIGHT = 170;
    /** Height of the title and legend in pixels. */
    public static final int FRAME_HEIGHT = 90;
    /** Shade of a CRITICAL finding. */
    public static final Color CRITICAL = new Color(230, 40, 40, 70);
    /** Shade of a WARNING finding. */
    public static final Color WARNING = new Color(255, 150, 0, 70);

    /** The curves each rule reads, for shading. */
    private static final Map<String, Set<Metric>> RULE_PANELS = Map.of(
        "pg-loss-sign", Set.of(Metric.PG_LOSS),
        "pg-loss-split", Set.of(Metric.PG_LOSS),
        "clipping", Set.of(Metric.CLIPFRAC, Metric.PPO_KL),
        "no-policy-movement", Set.of(Metric.CLIPFRAC, Metric.PPO_KL),
        "entropy", Set.of(Metric.ENTROPY),
        "kl-drift", Set.of(Metric.KL_REF),
        "reward", Set.of(Metric.REWARD),
        "reward-components", Set.of(Metric.REWARD),
        "response-length", Set.of(Metric.RESPONSE_LENGTH),
        "grad-norm-spike", Set.of(Metric.GRAD_NORM));

    static {
        System.setProperty("java.awt.headless", "true");
    }

    private Charts() {
    }

    /** @return the panels a chart of {@code run} has: the curves it logged, in order */
    public static List<Metric> panels(final Run run) {
        return Diagnosis.CURVES.stream().filter(m -> run.keyOf(m).isPresent()).toList();
    }

    /** @return the image height for {@code panels} panels */
    public static int height(final int panels) {
        return FRAME_HEIGHT + panels * PANEL_HEIGHT;
    }

    /**
     * Writes the chart as a PNG.
     *
     * @param d the diagnosis
     * @param png the file to write
     * @throws IOException when the file cannot be written
     * @throws IllegalArgumentException when the run logged none of the curves
     */
    public static void write(final Diagnosis d, final Path png) throws IOException {
        final List<Metric> panels = panels(d.run());
        if (panels.isEmpty()) {
            throw new IllegalArgumentException("RUN " + d.run().name() + ": none of the charted curves is logged ("
                + Diagnosis.CURVES.stream().map(Metric::label).toList() + ")");
        }
        final NumberAxis step = new NumberAxis("step");
        step.setAutoRangeIncludesZero(false);
        final CombinedDomainXYPlot plot = new CombinedDomainXYPlot(step);
        plot.setGap(8);
        for (final Metric m : panels) {
            plot.add(panel(d, m), 1);
        }
        final String counts = d.count(Severity.CRITICAL) + " critical, " + d.count(Severity.WARNING) + " warning, "
            + d.count(Severity.INFO) + " info";
        final JFreeChart chart = new JFreeChart(d.run().name() + "  (" + d.estimator().name() + "; " + counts + ")",
            new Font(Font.SANS_SERIF, Font.BOLD, 14), plot, plot.getLegendItems().getItemCount() > 0);
        chart.setBackgroundPaint(Color.WHITE);
        ChartUtils.saveChartAsPNG(png.toFile(), chart, WIDTH, height(panels.size()));
    }

    private static XYPlot panel(final Diagnosis d, final Metric m) {
        final XYSeriesCollection data = new XYSeriesCollection();
        final List<Metric> curves = new ArrayList<>(List.of(m));
        if (m == Metric.PG_LOSS) {
            curves.addAll(List.of(Metric.PG_LOSS_POS, Metric.PG_LOSS_NEG));
        } else if (m == Metric.CLIPFRAC) {
            curves.add(Metric.CLIPFRAC_LOWER);
        }
        for (final Metric c : curves) {
            final Optional<Series> s = d.run().series(c);
            if (s.isEmpty()) {
                continue;
            }
            final XYSeries xy = new XYSeries(s.get().key(), true, true);
            for (int i = 0; i < s.get().size(); i++) {
                final double v = s.get().values()[i];
                // A non-finite point breaks the line; the nan-inf finding shades it.
                xy.add(s.get().steps()[i], Double.isFinite(v) ? v : Double.NaN);
            }
            data.addSeries(xy);
        }
        final NumberAxis y = new NumberAxis(m.label());
        y.setAutoRangeIncludesZero(m == Metric.PG_LOSS);
        y.setLabelFont(new Font(Font.SANS_SERIF, Font.PLAIN, 11));
        final XYLineAndShapeRenderer r = new XYLineAndShapeRenderer(true, false);
        final Color[] colors = {new Color(30, 80, 180), new Color(20, 150, 60), new Color(200, 60, 140)};
        for (int i = 0; i < data.getSeriesCount(); i++) {
            r.setSeriesPaint(i, colors[i % colors.length]);
            r.setSeriesStroke(i, new BasicStroke(1.4f));
            // The legend names the curves of shared panels only; a lone curve is named by its axis.
            r.setSeriesVisibleInLegend(i, data.getSeriesCount() > 1);
        }
        final XYPlot p = new XYPlot(data, null, y, r);
        p.setBackgroundPaint(Color.WHITE);
        p.setRangeGridlinePaint(new Color(220, 220, 220));
        p.setDomainGridlinePaint(new Color(220, 220, 220));
        for (final Finding f : d.findings()) {
            if (f.severity() == Severity.INFO) {
                continue;
            }
            final Set<Metric> on = RULE_PANELS.get(f.rule());
            if (on == null || on.contains(m)) {
                final IntervalMarker marker = new IntervalMarker(f.firstStep() - 0.5, f.lastStep() + 0.5,
                    f.severity() == Severity.CRITICAL ? CRITICAL : WARNING);
                marker.setAlpha(1f); // the colour carries the transparency
                p.addDomainMarker(marker, Layer.BACKGROUND);
            }
        }
        return p;
    }
}
