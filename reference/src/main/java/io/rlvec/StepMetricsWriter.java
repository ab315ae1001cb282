package io.rlvec;

import java.io.Closeable;
import java.io.Flushable;
import java.io.IOException;
import java.io.Writer;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Map;
import java.util.Objects;

/**
 * Writes a run's metrics as JSON lines, one object per training step: {@code {"step":N,"actor/pg_loss":...}},
 * under verl's key names, plus the keys only this engine reports (the A&gt;0 / A&lt;0 split of pg_loss
 * {@code actor/pg_loss_pos_adv} / {@code actor/pg_loss_neg_adv}, the ratio shares {@code actor/pos_adv_ratio_gt1} /
 * {@code actor/neg_adv_ratio_gt1}, the sign-aware clip fractions; see {@link PolicyLossResult#metrics()}).
 * {@code rlvec diagnose} reads these files, as it reads verl's console and file-logger output.
 *
 * <p>Format: one line per {@link #write} call, keys in the order given (the step first), values as Java's shortest
 * decimal form of the double ({@code 0.125}, {@code 1.0E-7}); NaN and the infinities are written as Python's
 * {@code json.dumps} writes them ({@code NaN}, {@code Infinity}, {@code -Infinity}), since a NaN loss is exactly
 * what a reader of the log must see. Not for hot paths: one line allocates a little.
 */
public final class StepMetricsWriter implements Closeable, Flushable {
    private final Writer out;
    private final StringBuilder line = new StringBuilder(256);
    private long lastStep = Long.MIN_VALUE;

    /**
     * @param out where the lines go; closed by {@link #close()}
     */
    public StepMetricsWriter(final Writer out) {
        this.out = Objects.requireNonNull(out, "out");
    }

    /**
     * Opens (creates or truncates) a UTF-8 file.
     *
     * @param file the JSON-lines file
     * @return a writer on it
     * @throws IOException when the file cannot be opened
     */
    public static StepMetricsWriter open(final Path file) throws IOException {
        return new StepMetricsWriter(Files.newBufferedWriter(Objects.requireNonNull(file, "file"),
            StandardCharsets.UTF_8));
    }

    /**
     * Writes one step: its metrics, then those of {@code extra} (e.g. {@code critic/score/mean},
     * {@code response_length/mean}, {@code actor/grad_norm} from the trainer), in iteration order.
     *
     * @param step the training step; steps must increase from call to call
     * @param metrics metrics by verl key, e.g. {@link ActorLossResult#metrics()} or
     *        {@link PolicyLossResult#metrics()}
     * @param extra more metrics of the same step, or null
     * @throws IOException when the underlying writer fails
     * @throws IllegalArgumentException when {@code step} does not increase, a key is null, empty or "step", or a
     *         value is null
     */
    public void write(final long step, final Map<String, Double> metrics, final Map<String, Double> extra)
        throws IOException {
        Objects.requireNonNull(metrics, "metrics");
        if (step <= lastStep) {
            throw new IllegalArgumentException("step must increase from line to line: got " + step + " after "
                + lastStep);
        }
        line.setLength(0);
        line.append("{\"step\":").append(step);
        append(metrics);
        if (extra != null) {
            append(extra);
        }
        line.append("}\n");
        out.append(line);
        lastStep = step;
    }

    /**
     * Writes one step of the composed actor loss with the trainer's other metrics.
     *
     * @param step the training step
     * @param result the step's (merged) actor-loss result
     * @param extra more metrics of the step, or null
     * @throws IOException when the underlying writer fails
     */
    public void write(final long step, final ActorLossResult result, final Map<String, Double> extra)
        throws IOException {
        write(step, Objects.requireNonNull(result, "result").metrics(), extra);
    }

    /**
     * Writes one step of the policy loss with the trainer's other metrics.
     *
     * @param step the training step
     * @param result the step's (merged) policy-loss result
     * @param extra more metrics of the step, or null
     * @throws IOException when the underlying writer fails
     */
    public void write(final long step, final PolicyLossResult result, final Map<String, Double> extra)
        throws IOException {
        write(step, Objects.requireNonNull(result, "result").metrics(), extra);
    }

    private void append(final Map<String, Double> m) {
        for (final Map.Entry<String, Double> e : m.entrySet()) {
            final String key = e.getKey();
            if (key == null || key.isEmpty() || "step".equals(key)) {
                throw new IllegalArgumentException("metric key must be a non-empty name other than \"step\": "
                    + key);
            }
            if (e.getValue() == null) {
                throw new IllegalArgumentException("metric " + key + " has no value (null)");
            }
            line.append(',');
            quote(key);
            line.append(':');
            number(e.getValue());
        }
    }

    private void number(final double v) {
        if (Double.isNaN(v)) {
            line.append("NaN");
        } else if (Double.isInfinite(v)) {
            line.append(v > 0 ? "Infinity" : "-Infinity");
        } else {
            line.append(v);
        }
    }

    private void quote(final String s) {
        line.append('"');
        for (int i = 0; i < s.length(); i++) {
            final char c = s.charAt(i);
            switch (c) {
                case '"' -> line.append("\\\"");
                case '\\' -> line.append("\\\\");
                case '\n' -> line.append("\\n");
                case '\r' -> line.append("\\r");
                case '\t' -> line.append("\\t");
                default -> {
                    if (c < 0x20) {
                        line.append(String.format("\\u%04x", (int) c));
                    } else {
                        line.append(c);
                    }
                }
            }
        }
        line.append('"');
    }

    @Override
    public void flush() throws IOException {
        out.flush();
    }

    @Override
    public void close() throws IOException {
        out.close();
    }
}
