package io.rlvec.cli.golden;

import java.io.IOException;
import java.io.PrintWriter;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.EnumMap;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;

import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.SerializationFeature;

/**
 * The reports of a parity run: a table (one row per case, tensor and engine), a summary, the documented
 * deviations met, and a JSON form.
 */
public final class ParityReport {
    private static final String[] HEADER = {"case", "tensor", "engine", "max_abs_err", "max_rel_err", "max_ulp",
        "verdict", "vs_reference", "note"};

    /** How many tolerance-judged outputs the text summary names (the JSON names all). */
    private static final int SUMMARY_TOLERANCE_OUTPUTS = 5;

    private final List<String> engines;
    private final List<CaseReport> cases = new ArrayList<>();

    /** @param engines names of the engines, in run order (the second, if any, is the reference). */
    public ParityReport(final List<String> engines) {
        this.engines = List.copyOf(engines);
    }

    /** Adds a case. */
    public void add(final CaseReport c) {
        cases.add(c);
    }

    /** @return the cases, in the order added. */
    public List<CaseReport> cases() {
        return List.copyOf(cases);
    }

    /** @return cases per verdict. */
    public Map<Verdict, Integer> caseCounts() {
        final Map<Verdict, Integer> m = new EnumMap<>(Verdict.class);
        for (final Verdict v : Verdict.values()) {
            m.put(v, 0);
        }
        for (final CaseReport c : cases) {
            m.merge(c.verdict(), 1, Integer::sum);
        }
        return m;
    }

    /** @return tensor checks per verdict, over every engine (case-level rows count as one check). */
    public Map<Verdict, Integer> tensorCounts() {
        final Map<Verdict, Integer> m = new EnumMap<>(Verdict.class);
        for (final Verdict v : Verdict.values()) {
            m.put(v, 0);
        }
        for (final CaseReport c : cases) {
            if (c.runs().isEmpty()) {
                m.merge(c.verdict(), 1, Integer::sum);
            }
            for (final EngineReport r : c.runs()) {
                for (final TensorReport t : r.tensors()) {
                    m.merge(t.verdict(), 1, Integer::sum);
                }
            }
        }
        return m;
    }

    /** @return tensor checks per documented deviation reason. */
    public Map<Deviation, Integer> deviationCounts() {
        final Map<Deviation, Integer> m = new EnumMap<>(Deviation.class);
        for (final CaseReport c : cases) {
            for (final EngineReport r : c.runs()) {
                for (final TensorReport t : r.tensors()) {
                    for (final Deviation d : t.deviations()) {
                        m.merge(d, 1, Integer::sum);
                    }
                }
            }
        }
        return m;
    }

    /** @return tensor checks per {@link TensorReport.Judge}, over every engine (case-level rows are NONE). */
    public Map<TensorReport.Judge, Integer> judgeCounts() {
        final Map<TensorReport.Judge, Integer> m = new EnumMap<>(TensorReport.Judge.class);
        for (final TensorReport.Judge j : TensorReport.Judge.values()) {
            m.put(j, 0);
        }
        for (final CaseReport c : cases) {
            if (c.runs().isEmpty()) {
                m.merge(TensorReport.Judge.NONE, 1, Integer::sum);
            }
            for (final EngineReport r : c.runs()) {
                for (final TensorReport t : r.tensors()) {
                    m.merge(t.judge(), 1, Integer::sum);
                }
            }
        }
        return m;
    }

    /**
     * @return the tensor checks still held to a fixed tolerance, counted per verl function and output name
     *     ("function out.name"), most frequent first: what error analysis does not judge yet.
     */
    public Map<String, Integer> toleranceJudged() {
        final Map<String, Integer> m = new LinkedHashMap<>();
        for (final CaseReport c : cases) {
            for (final EngineReport r : c.runs()) {
                for (final TensorReport t : r.tensors()) {
                    if (t.judge() == TensorReport.Judge.TOLERANCE) {
                        m.merge((c.function().isEmpty() ? "?" : c.function()) + " " + t.name(), 1, Integer::sum);
                    }
                }
            }
        }
        final Map<String, Integer> sorted = new LinkedHashMap<>();
        m.entrySet().stream().sorted(Map.Entry.<String, Integer>comparingByValue().reversed()
                .thenComparing(Map.Entry.comparingByKey()))
            .forEach(e -> sorted.put(e.getKey(), e.getValue()));
        return sorted;
    }

    /** @return cases whose engine and reference disagree beyond the contract. */
    public int agreementBreaches() {
        int n = 0;
        for (final CaseReport c : cases) {
            n += c.enginesAgree() ? 0 : 1;
        }
        return n;
    }

    /** @return cases where an engine-vs-reference comparison was made. */
    public int agreementCompared() {
        int n = 0;
        for (final CaseReport c : cases) {
            n += c.agreement().isEmpty() ? 0 : 1;
        }
        return n;
    }

    /** @return whether any case failed or was unsupported (the command then exits non-zero). */
    public boolean hasFailures() {
        for (final CaseReport c : cases) {
            if (c.verdict().isFailure()) {
                return true;
            }
        }
        return false;
    }

    /**
     * Prints the table and the summary.
     *
     * @param out      where to print.
     * @param problems true: only rows that are not PASS.
     */
    public void print(final PrintWriter out, final boolean problems) {
        final List<String[]> rows = new ArrayList<>();
        rows.add(HEADER);
        for (final CaseReport c : cases) {
            if (c.runs().isEmpty()) {
                rows.add(new String[] {c.caseName(), "-", "-", "-", "-", "-", c.verdict().name(), "", c.message()});
                continue;
            }
            final Map<String, Agreement> agreement = new LinkedHashMap<>();
            for (final Agreement a : c.agreement()) {
                agreement.put(a.name(), a);
            }
            for (int e = 0; e < c.runs().size(); e++) {
                final EngineReport r = c.runs().get(e);
                for (final TensorReport t : r.tensors()) {
                    final Agreement a = e == 0 ? agreement.get(t.name()) : null;
                    if (problems && t.verdict() == Verdict.PASS && (a == null || a.ok())) {
                        continue;
                    }
                    rows.add(new String[] {c.caseName(), t.name(), r.engine(), sci(t.maxAbsErr()), sci(t.maxRelErr()),
                        t.maxUlp() < 0 ? "-" : Long.toString(t.maxUlp()), t.verdict().name(),
                        a == null ? "" : a.describe(), t.detail()});
                }
            }
        }
        if (rows.size() > 1) {
            printTable(out, rows);
            out.println();
        }
        for (final CaseReport c : cases) {
            if (!c.runs().isEmpty() && !c.message().isEmpty()) {
                out.println("note: " + c.caseName() + ": " + c.message());
            }
        }
        for (final String line : summary()) {
            out.println(line);
        }
        out.flush();
    }

    /** @return the summary lines (counts, deviations met, engine agreement). */
    public List<String> summary() {
        final List<String> lines = new ArrayList<>();
        final Map<Verdict, Integer> cc = caseCounts();
        final Map<Verdict, Integer> tc = tensorCounts();
        lines.add(String.format(Locale.ROOT, "summary: %d case(s) on %s: %d PASS, %d DEVIATION, %d FAIL, "
                + "%d UNSUPPORTED; tensor checks: %d PASS, %d DEVIATION, %d FAIL",
            cases.size(), String.join(" + ", engines), cc.get(Verdict.PASS), cc.get(Verdict.DEVIATION),
            cc.get(Verdict.FAIL), cc.get(Verdict.UNSUPPORTED), tc.get(Verdict.PASS), tc.get(Verdict.DEVIATION),
            tc.get(Verdict.FAIL)));
        final Map<Deviation, Integer> dc = deviationCounts();
        for (final Map.Entry<Deviation, Integer> d : dc.entrySet()) {
            lines.add(String.format(Locale.ROOT, "deviation %s x %d: %s; engine: %s", d.getKey().name(),
                d.getValue(), d.getKey().reason(), d.getKey().contract()));
        }
        if (engines.size() == 2) {
            lines.add(String.format(Locale.ROOT, "engine vs reference (%s vs %s): %d of %d case(s) within the "
                    + "contract (gradients bit-identical, scalars within 1 ulp)", engines.get(0), engines.get(1),
                agreementCompared() - agreementBreaches(), agreementCompared()));
        }
        final Map<TensorReport.Judge, Integer> jc = judgeCounts();
        lines.add(String.format(Locale.ROOT, "judges: %d tensor check(s) by derived error bounds, %d by a fixed "
                + "tolerance, %d with no value finite on both sides (deviations, errors, case-level rows)",
            jc.get(TensorReport.Judge.BOUND), jc.get(TensorReport.Judge.TOLERANCE), jc.get(TensorReport.Judge.NONE)));
        final Map<String, Integer> fixed = toleranceJudged();
        if (!fixed.isEmpty()) {
            final StringBuilder sb = new StringBuilder("fixed tolerance still judges " + fixed.size()
                + " output(s) of verl functions; the most frequent:");
            fixed.entrySet().stream().limit(SUMMARY_TOLERANCE_OUTPUTS)
                .forEach(e -> sb.append(' ').append(e.getKey()).append(" x").append(e.getValue()).append(';'));
            sb.setLength(sb.length() - 1);
            lines.add(sb + (fixed.size() > SUMMARY_TOLERANCE_OUTPUTS ? " (--json lists every one under "
                + "summary.toleranceJudged)" : ""));
        }
        lines.add("error bounds vs verl: every output of every function is judged against a double-precision "
            + "evaluation of verl's expression on the same inputs (a float64 case's stored ones), the engine within "
            + "its derived bound and verl within float32's (docs/parity-verdicts.md)");
        lines.add("tolerances vs verl where no bound applies (a valid input not finite, a term that cannot be bounded): "
            + Tolerance.SCALAR + " on losses and metrics, " + Tolerance.VALUE + " on per-token values, "
            + Tolerance.GRADIENT + " on gradients");
        return lines;
    }

    private static void printTable(final PrintWriter out, final List<String[]> rows) {
        final int[] width = new int[HEADER.length];
        for (final String[] r : rows) {
            for (int i = 0; i < r.length - 1; i++) {
                width[i] = Math.max(width[i], r[i].length());
            }
        }
        final boolean anyAgreement = rows.stream().skip(1).anyMatch(r -> !r[7].isEmpty());
        for (final String[] r : rows) {
            final StringBuilder sb = new StringBuilder();
            for (int i = 0; i < r.length; i++) {
                if (i == 7 && !anyAgreement) {
                    continue;
                }
                final boolean last = i == r.length - 1;
                sb.append(last ? r[i] : pad(r[i], width[i])).append(last ? "" : "  ");
            }
            out.println(sb.toString().stripTrailing());
        }
    }

    private static String pad(final String s, final int w) {
        return s.length() >= w ? s : s + " ".repeat(w - s.length());
    }

    private static String sci(final double v) {
        if (Double.isNaN(v)) {
            return "-";
        }
        return v == 0 ? "0" : String.format(Locale.ROOT, "%.2e", v);
    }

    /** Writes the report as JSON (non-finite numbers as strings). */
    public void writeJson(final Path file) throws IOException {
        final Map<String, Object> root = new LinkedHashMap<>();
        root.put("engines", engines);
        final Map<String, Object> summary = new LinkedHashMap<>();
        summary.put("cases", caseCounts());
        summary.put("tensorChecks", tensorCounts());
        summary.put("deviations", deviationCounts());
        summary.put("judges", judgeCounts());
        summary.put("toleranceJudged", toleranceJudged());
        summary.put("agreementCompared", agreementCompared());
        summary.put("agreementBreaches", agreementBreaches());
        summary.put("failed", hasFailures());
        root.put("summary", summary);
        final Map<String, Object> reasons = new LinkedHashMap<>();
        for (final Deviation d : Deviation.values()) {
            reasons.put(d.name(), Map.of("reason", d.reason(), "contract", d.contract()));
        }
        root.put("deviationReasons", reasons);
        root.put("tolerances", Map.of("scalar", Tolerance.SCALAR.toString(), "gradient",
            Tolerance.GRADIENT.toString(), "value", Tolerance.VALUE.toString()));
        final List<Object> list = new ArrayList<>();
        for (final CaseReport c : cases) {
            final Map<String, Object> m = new LinkedHashMap<>();
            m.put("file", c.file().toString());
            m.put("function", c.function());
            m.put("group", c.group());
            m.put("verdict", c.verdict().name());
            m.put("message", c.message());
            final List<Object> runs = new ArrayList<>();
            for (final EngineReport r : c.runs()) {
                final Map<String, Object> rm = new LinkedHashMap<>();
                rm.put("engine", r.engine());
                rm.put("verdict", r.verdict().name());
                final List<Object> tensors = new ArrayList<>();
                for (final TensorReport t : r.tensors()) {
                    final Map<String, Object> tm = new LinkedHashMap<>();
                    tm.put("name", t.name());
                    tm.put("verdict", t.verdict().name());
                    tm.put("elements", t.elements());
                    tm.put("maxAbsErr", t.maxAbsErr());
                    tm.put("maxRelErr", t.maxRelErr());
                    tm.put("maxUlp", t.maxUlp());
                    tm.put("deviations", t.deviations().stream().map(Enum::name).sorted().toList());
                    tm.put("judge", t.judge().name());
                    tm.put("detail", t.detail());
                    tensors.add(tm);
                }
                rm.put("tensors", tensors);
                runs.add(rm);
            }
            m.put("runs", runs);
            final List<Object> agreement = new ArrayList<>();
            for (final Agreement a : c.agreement()) {
                final Map<String, Object> am = new LinkedHashMap<>();
                am.put("name", a.name());
                am.put("elements", a.elements());
                am.put("mismatches", a.mismatches());
                am.put("maxUlp", a.maxUlp());
                am.put("ok", a.ok());
                agreement.add(am);
            }
            m.put("agreement", agreement);
            list.add(m);
        }
        root.put("cases", list);
        new ObjectMapper().enable(SerializationFeature.INDENT_OUTPUT).writeValue(file.toFile(), root);
    }

    /**
     * Writes the report as JUnit XML: one test suite, one test case per file, tensor and engine (classname: the
     * case, name: the tensor and engine), a failure element for FAIL and UNSUPPORTED, the deviations in the test
     * case's system-out, so that CI systems show the parity run natively.
     */
    public void writeJunit(final Path file) throws IOException {
        final Map<Verdict, Integer> counts = tensorCounts();
        final int tests = counts.values().stream().mapToInt(Integer::intValue).sum();
        final int failures = counts.get(Verdict.FAIL) + counts.get(Verdict.UNSUPPORTED);
        try (java.io.Writer w = java.nio.file.Files.newBufferedWriter(file, java.nio.charset.StandardCharsets.UTF_8)) {
            final javax.xml.stream.XMLStreamWriter x =
                javax.xml.stream.XMLOutputFactory.newFactory().createXMLStreamWriter(w);
            x.writeStartDocument("UTF-8", "1.0");
            x.writeCharacters("\n");
            x.writeStartElement("testsuites");
            x.writeStartElement("testsuite");
            x.writeAttribute("name", "rlvec parity (" + String.join(" + ", engines) + ")");
            x.writeAttribute("tests", Integer.toString(tests));
            x.writeAttribute("failures", Integer.toString(failures));
            x.writeAttribute("errors", "0");
            x.writeAttribute("skipped", "0");
            x.writeCharacters("\n");
            for (final CaseReport c : cases) {
                if (c.runs().isEmpty()) {
                    testCase(x, c.caseName(), "case", c.verdict(), c.message(), c.file().toString());
                    continue;
                }
                for (final EngineReport r : c.runs()) {
                    for (final TensorReport t : r.tensors()) {
                        final String detail = t.detail() + (c.message().isEmpty() ? "" : " (" + c.message() + ")");
                        testCase(x, c.caseName(), t.name() + " [" + r.engine() + "]", t.verdict(), detail,
                            c.file() + ": max_abs_err " + sci(t.maxAbsErr()) + ", max_rel_err " + sci(t.maxRelErr())
                                + ", max_ulp " + t.maxUlp());
                    }
                }
            }
            x.writeEndElement();
            x.writeCharacters("\n");
            x.writeEndElement();
            x.writeCharacters("\n");
            x.writeEndDocument();
            x.close();
        } catch (final javax.xml.stream.XMLStreamException e) {
            throw new IOException("cannot write " + file + ": " + e.getMessage(), e);
        }
    }

    private static void testCase(final javax.xml.stream.XMLStreamWriter x, final String classname, final String name,
                                 final Verdict v, final String detail, final String where)
        throws javax.xml.stream.XMLStreamException {
        x.writeStartElement("testcase");
        x.writeAttribute("classname", classname);
        x.writeAttribute("name", name);
        x.writeAttribute("time", "0");
        if (v.isFailure()) {
            x.writeStartElement("failure");
            x.writeAttribute("type", v.name());
            x.writeAttribute("message", detail);
            x.writeCharacters(where);
            x.writeEndElement();
        } else if (v == Verdict.DEVIATION || !detail.isEmpty()) {
            x.writeStartElement("system-out");
            x.writeCharacters(v.name() + ": " + detail);
            x.writeEndElement();
        }
        x.writeEndElement();
        x.writeCharacters("\n");
    }

    /**
     * Writes a short Markdown summary for CI logs and job summaries: the counts, the deviations met and a table of
     * the checks that did not pass (at most {@code 50} rows, then a count).
     */
    public void writeMarkdown(final Path file) throws IOException {
        final StringBuilder sb = new StringBuilder();
        final Map<Verdict, Integer> cc = caseCounts();
        sb.append("## rlvec parity: ").append(hasFailures() ? "FAILED" : "passed").append("\n\n");
        sb.append("Engines: ").append(String.join(" + ", engines)).append(". ");
        sb.append(cases.size()).append(" case(s): ");
        sb.append(cc.get(Verdict.PASS)).append(" PASS, ").append(cc.get(Verdict.DEVIATION)).append(" DEVIATION, ")
            .append(cc.get(Verdict.FAIL)).append(" FAIL, ").append(cc.get(Verdict.UNSUPPORTED))
            .append(" UNSUPPORTED.");
        if (agreementCompared() > 0) {
            sb.append(" Engine vs reference: ").append(agreementCompared() - agreementBreaches()).append(" of ")
                .append(agreementCompared()).append(" within the contract.");
        }
        sb.append("\n");
        final Map<Deviation, Integer> dc = deviationCounts();
        if (!dc.isEmpty()) {
            sb.append("\n| deviation | tensor checks | reason |\n|---|---|---|\n");
            dc.forEach((d, n) -> sb.append("| ").append(d.name()).append(" | ").append(n).append(" | ")
                .append(md(d.reason())).append(" |\n"));
        }
        final List<String> problems = new ArrayList<>();
        for (final CaseReport c : cases) {
            if (c.runs().isEmpty() && c.verdict() != Verdict.PASS) {
                problems.add("| " + md(c.caseName()) + " | - | - | " + c.verdict() + " | " + md(c.message()) + " |");
            }
            for (final EngineReport r : c.runs()) {
                for (final TensorReport t : r.tensors()) {
                    if (t.verdict().isFailure()) {
                        problems.add("| " + md(c.caseName()) + " | " + md(t.name()) + " | " + r.engine() + " | "
                            + t.verdict() + " | " + md(t.detail()) + " |");
                    }
                }
            }
            if (c.verdict().isFailure() && !c.runs().isEmpty() && !c.message().isEmpty()) {
                problems.add("| " + md(c.caseName()) + " | - | - | " + c.verdict() + " | " + md(c.message()) + " |");
            }
        }
        if (!problems.isEmpty()) {
            sb.append("\n| case | tensor | engine | verdict | detail |\n|---|---|---|---|---|\n");
            final int shown = Math.min(50, problems.size());
            for (int i = 0; i < shown; i++) {
                sb.append(problems.get(i)).append("\n");
            }
            if (problems.size() > shown) {
                sb.append("\n... and ").append(problems.size() - shown).append(" more (see the JSON or JUnit report)\n");
            }
        }
        java.nio.file.Files.writeString(file, sb.toString());
    }

    private static String md(final String s) {
        return s.replace("|", "\\|").replace("\n", " ");
    }
}
