package io.rlvec.cli.diagnose;

import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.Iterator;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.Set;
import java.util.TreeMap;
import java.util.TreeSet;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

import com.fasterxml.jackson.core.json.JsonReadFeature;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.json.JsonMapper;

/**
 * Reads a run's metrics from a log file, line by line, whatever mix of these it holds:
 * <ul>
 * <li>verl's console lines {@code step:N - key:value - key:value ...}, with or without a Ray process prefix such
 * as {@code (TaskRunner pid=123)} and ANSI colour codes; values may be wrapped as {@code np.float64(x)};</li>
 * <li>verl's file logger (JSON lines {@code {"step": N, "data": {...}}}; orjson writes NaN and Inf as
 * {@code null}, read back as NaN);</li>
 * <li>flat JSON lines {@code {"step": N, "key": value, ...}} (the engine's {@code StepMetricsWriter});</li>
 * <li>TRL's printed log dicts {@code {'loss': 0.0, 'reward': ...}}, one per logging step, numbered by position
 * unless they carry a step.</li>
 * </ul>
 * Other lines are ignored, except lines naming {@code adv_estimator}, kept as config text.
 */
public final class RunReader {
    private static final Pattern ANSI = Pattern.compile("\u001B\\[[0-9;]*[A-Za-z]");
    private static final Pattern CONSOLE = Pattern.compile("(?:^|[\\s)])step:\\s*(\\d+)\\s+-\\s+(.*)$");
    private static final Pattern WRAPPED = Pattern.compile("^[A-Za-z_][A-Za-z_0-9.]*\\((.*)\\)$");
    private static final Pattern PY_PAIR = Pattern.compile("'([^']+)'\\s*:\\s*([^,}]+)");
    private static final Pattern DECIMALS = Pattern.compile("^[-+]?\\d+\\.(\\d+)$");
    private static final ObjectMapper JSON = JsonMapper.builder()
        .enable(JsonReadFeature.ALLOW_NON_NUMERIC_NUMBERS).build();

    private RunReader() {
    }

    /**
     * @param file the log
     * @return the run it holds
     * @throws IOException when the file cannot be read
     * @throws IllegalArgumentException when no line of it holds step metrics
     */
    public static Run read(final Path file) throws IOException {
        return parse(file.getFileName().toString(), Files.readAllLines(file, StandardCharsets.UTF_8));
    }

    /**
     * @param name the run's name for the report
     * @param lines the log's lines
     * @return the run they hold
     * @throws IllegalArgumentException when no line holds step metrics
     */
    public static Run parse(final String name, final List<String> lines) {
        final TreeMap<Long, Map<String, Double>> rows = new TreeMap<>();
        final Map<String, Integer> maxDecimals = new HashMap<>();
        final Map<String, Integer> formats = new LinkedHashMap<>();
        final List<String> notes = new ArrayList<>();
        final StringBuilder config = new StringBuilder();
        int nulls = 0;
        long trlStep = 0;
        int lineNo = 0;
        for (final String raw : lines) {
            lineNo++;
            final String line = ANSI.matcher(raw).replaceAll("").strip();
            if (line.contains("adv_estimator")) {
                config.append(line).append('\n');
            }
            final Matcher console = CONSOLE.matcher(line);
            if (line.startsWith("{\"") || line.startsWith("{ \"")) {
                final JsonNode node;
                try {
                    node = JSON.readTree(line);
                } catch (final com.fasterxml.jackson.core.JsonProcessingException e) {
                    notes.add("line " + lineNo + ": not valid JSON, skipped (" + e.getOriginalMessage() + ")");
                    continue;
                }
                final JsonNode step = node.get("step");
                if (step == null || !step.canConvertToLong()) {
                    continue;
                }
                final JsonNode data = node.get("data");
                final boolean fileLogger = data != null && data.isObject();
                final Map<String, Double> row = row(rows, step.asLong());
                final Iterator<Map.Entry<String, JsonNode>> it = (fileLogger ? data : node).fields();
                while (it.hasNext()) {
                    final Map.Entry<String, JsonNode> e = it.next();
                    final JsonNode v = e.getValue();
                    if (e.getKey().equals("step") && !fileLogger) {
                        continue;
                    }
                    if (v.isNumber()) {
                        row.put(e.getKey(), v.asDouble());
                    } else if (v.isNull()) {
                        row.put(e.getKey(), Double.NaN);
                        nulls++;
                    }
                }
                formats.merge(fileLogger ? "verl file logger (JSON lines)" : "JSON lines (step + metrics)", 1,
                    Integer::sum);
            } else if (line.startsWith("{'")) {
                final Map<String, Double> pairs = new LinkedHashMap<>();
                final Matcher m = PY_PAIR.matcher(line);
                String lastKey = null;
                String lastText = null;
                while (m.find()) {
                    final Double v = number(m.group(2).strip());
                    if (v != null) {
                        pairs.put(m.group(1), v);
                        lastKey = m.group(1);
                        lastText = m.group(2).strip();
                    }
                }
                if (pairs.isEmpty()) {
                    continue;
                }
                if (!line.endsWith("}") && lastKey != null) {
                    // A line cut off mid-value: with a decimal point and digits after it the integer part is
                    // whole and only precision is lost; otherwise digits may be missing, so drop the value.
                    if (lastText.matches("[-+]?\\d+\\.\\d+")) {
                        notes.add("line " + lineNo + " is cut off; its last value " + lastKey + " = " + lastText
                            + " is kept (integer part complete, precision lost)");
                    } else {
                        pairs.remove(lastKey);
                        notes.add("line " + lineNo + " is cut off; its last value " + lastKey + " = " + lastText
                            + " may be missing digits and is dropped");
                    }
                }
                final Double given = pairs.containsKey("step") ? pairs.remove("step") : pairs.remove("global_step");
                trlStep = given != null ? given.longValue() : trlStep + 1;
                row(rows, trlStep).putAll(pairs);
                formats.merge(given != null ? "TRL log lines" : "TRL log lines (step = position in the file)", 1,
                    Integer::sum);
            } else if (console.find()) {
                final Map<String, Double> row = row(rows, Long.parseLong(console.group(1)));
                for (final String pair : console.group(2).split("\\s+-\\s+")) {
                    final int colon = pair.indexOf(':');
                    if (colon <= 0) {
                        continue;
                    }
                    final String key = pair.substring(0, colon).strip();
                    String text = pair.substring(colon + 1).strip();
                    final Matcher w = WRAPPED.matcher(text);
                    if (w.matches()) {
                        text = w.group(1).strip();
                    }
                    final Double v = number(text);
                    if (v != null) {
                        row.put(key, v);
                        final Matcher d = DECIMALS.matcher(text);
                        maxDecimals.merge(key, d.matches() ? d.group(1).length() : 99, Math::max);
                    }
                }
                formats.merge("verl console log", 1, Integer::sum);
            }
        }
        rows.values().removeIf(Map::isEmpty);
        if (rows.isEmpty()) {
            throw new IllegalArgumentException("RUN " + name + ": no step metrics found (expected verl console "
                + "lines 'step:N - key:value - ...', JSON lines with a \"step\" field, or TRL log dicts)");
        }
        if (nulls > 0) {
            notes.add(nulls + " null value(s) read as NaN (verl's file logger writes NaN and Inf as null)");
        }
        final Set<String> rounded = new TreeSet<>();
        maxDecimals.forEach((k, d) -> {
            if (d <= 3) {
                rounded.add(k);
            }
        });
        final String format = formats.entrySet().stream().max(Map.Entry.comparingByValue()).orElseThrow().getKey();
        return new Run(name, format, rows, rounded, config.toString(), notes);
    }

    private static Map<String, Double> row(final TreeMap<Long, Map<String, Double>> rows, final long step) {
        return rows.computeIfAbsent(step, s -> new LinkedHashMap<>());
    }

    /** @return the number in {@code text} (Python's nan/inf spellings too), or null when it is not one */
    static Double number(final String text) {
        final String t = text.strip();
        switch (t.toLowerCase(Locale.ROOT)) {
            case "nan", "+nan", "-nan" -> {
                return Double.NaN;
            }
            case "inf", "+inf", "infinity", "+infinity" -> {
                return Double.POSITIVE_INFINITY;
            }
            case "-inf", "-infinity" -> {
                return Double.NEGATIVE_INFINITY;
            }
            default -> {
                if (t.isEmpty() || !(Character.isDigit(t.charAt(0)) || t.charAt(0) == '-' || t.charAt(0) == '+'
                    || t.charAt(0) == '.')) {
                    return null;
                }
                try {
                    return Double.parseDouble(t);
                } catch (final NumberFormatException e) {
                    return null;
                }
            }
        }
    }
}
