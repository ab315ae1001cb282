package io.rlvec.cli.diagnose;

import java.util.ArrayList;
import java.util.List;

/**
 * A run, its estimator, the findings, and the run cut into windows for the summary table.
 *
 * @param run the run
 * @param estimator its estimator and where that came from
 * @param clipRatio the clip range the clipping rules compared with
 * @param findings most severe first
 */
public record Diagnosis(Run run, Estimator estimator, double clipRatio, List<Finding> findings) {

    /** The curves the table and the chart show, in panel order. */
    public static final List<Metric> CURVES = List.of(Metric.PG_LOSS, Metric.CLIPFRAC, Metric.PPO_KL,
        Metric.ENTROPY, Metric.KL_REF, Metric.REWARD, Metric.RESPONSE_LENGTH, Metric.GRAD_NORM);

    /** Largest number of windows in the summary table. */
    public static final int MAX_WINDOWS = 8;

    /**
     * @param run the run
     * @param estimator its estimator
     * @param clipRatio verl's clip_ratio
     * @return the diagnosis
     */
    public static Diagnosis of(final Run run, final Estimator estimator, final double clipRatio) {
        return new Diagnosis(run, estimator, clipRatio, Rules.diagnose(run, estimator, clipRatio));
    }

    /** @return the number of findings of severity {@code s} */
    public long count(final Severity s) {
        return findings.stream().filter(f -> f.severity() == s).count();
    }

    /** @return the worst severity found, or null with no finding */
    public Severity worst() {
        return findings.isEmpty() ? null : findings.get(0).severity();
    }

    /** @return the step windows of the summary table: [first, last] pairs covering the run */
    public List<long[]> windows() {
        final long[] steps = run.steps();
        final int k = Math.min(MAX_WINDOWS, steps.length);
        final List<long[]> w = new ArrayList<>();
        for (int i = 0; i < k; i++) {
            final int from = (int) ((long) i * steps.length / k);
            final int to = (int) ((long) (i + 1) * steps.length / k) - 1;
            w.add(new long[] {steps[from], steps[to]});
        }
        return w;
    }

    /** @return the mean of the finite values of {@code m} over steps [from, to], NaN when none */
    public double mean(final Metric m, final long from, final long to) {
        return run.series(m).map(s -> {
            double sum = 0;
            int n = 0;
            for (int i = 0; i < s.size(); i++) {
                if (s.steps()[i] >= from && s.steps()[i] <= to && Double.isFinite(s.values()[i])) {
                    sum += s.values()[i];
                    n++;
                }
            }
            return n == 0 ? Double.NaN : sum / n;
        }).orElse(Double.NaN);
    }
}
