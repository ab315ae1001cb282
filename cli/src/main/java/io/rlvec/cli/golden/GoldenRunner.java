package io.rlvec.cli.golden;

import java.io.IOException;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.EnumSet;
import java.util.List;
import java.util.Map;
import java.util.Objects;
import java.util.Set;

import io.rlvec.Engine;

/**
 * Runs golden cases: opens the file, dispatches on its {@code function} to the registered {@link CaseHandler},
 * runs it on each engine, compares every {@code out.*} tensor with verl's value, and, when two engines ran,
 * compares the first with the second (the reference) under the engine-vs-reference contract.
 *
 * <p>Rules: a function without a handler is UNSUPPORTED (never skipped); an {@code expect_error} case passes only
 * when the engine throws {@link IllegalArgumentException}; an output verl has but the handler did not compute is
 * a FAIL; a non-finite verl value is a DEVIATION only under a documented {@link Deviation} whose precondition
 * holds and whose contract the engine's value meets, else a FAIL; a finite verl value outside tolerance is a
 * DEVIATION only under {@link Deviation#TORCH_LESS_ACCURATE} (refereed by the handler's double-precision
 * evaluation), else a FAIL.
 */
public final class GoldenRunner {
    /** Opens the detail of every tensor the harness computed instead of the engine. */
    public static final String HARNESS_LABEL = "not an engine output, computed by the harness: ";

    private final CaseHandlers handlers;
    private final List<Engine> engines;
    private final boolean strict;

    /**
     * @param handlers the registry.
     * @param engines  engines to run, the engine under test first; with two, the second is the reference the
     *                 first is held to bit-parity against.
     */
    public GoldenRunner(final CaseHandlers handlers, final List<Engine> engines) {
        this(handlers, engines, false);
    }

    /**
     * @param strict true: keys that are not loss keys (see {@link GoldenCase#foreignKeys}) fail the case; false:
     *               they are reported in the case's message.
     */
    public GoldenRunner(final CaseHandlers handlers, final List<Engine> engines, final boolean strict) {
        this.strict = strict;
        this.handlers = Objects.requireNonNull(handlers, "handlers");
        if (engines.isEmpty() || engines.size() > 2) {
            throw new IllegalArgumentException("engines must hold one or two engines, got " + engines.size());
        }
        this.engines = List.copyOf(engines);
    }

    /** @return the engines, in run order. */
    public List<Engine> engines() {
        return engines;
    }

    /**
     * Runs one file on every engine.
     *
     * @param file a golden case file.
     * @return the report (never throws for a bad file: that is a FAIL row).
     */
    public CaseReport run(final Path file) {
        final GoldenCase golden;
        try {
            golden = GoldenCase.open(file);
        } catch (final IOException | RuntimeException e) {
            return new CaseReport(file, "", "", Verdict.FAIL, List.of(), List.of(),
                "cannot read the case: " + e.getMessage());
        }
        try (golden) {
            if (golden.function().isEmpty()) {
                return new CaseReport(file, "", golden.group(), Verdict.UNSUPPORTED, List.of(), List.of(),
                    "no `function` in the metadata: the file's __metadata__ must name the verl function it holds");
            }
            final CaseHandler handler = handlers.find(golden.function());
            if (handler == null) {
                return new CaseReport(file, golden.function(), golden.group(), Verdict.UNSUPPORTED, List.of(),
                    List.of(), "no handler for function '" + golden.function() + "' (group '" + golden.group() + "')");
            }
            final List<EngineReport> runs = new ArrayList<>();
            Verdict verdict = Verdict.PASS;
            for (final Engine engine : engines) {
                final EngineReport r = runOn(golden, handler, engine);
                runs.add(r);
                verdict = verdict.worst(r.verdict());
            }
            final List<Agreement> agreement = runs.size() == 2 && runs.get(0).outputs() != null
                && runs.get(1).outputs() != null ? agreement(runs.get(0).outputs(), runs.get(1).outputs()) : List.of();
            String message = "";
            for (final Agreement a : agreement) {
                if (!a.ok()) {
                    verdict = Verdict.FAIL;
                    message = "engine and reference disagree beyond the contract";
                }
            }
            final List<String> foreign = golden.foreignKeys();
            if (!foreign.isEmpty()) {
                final String keys = "not loss keys: " + String.join(", ", foreign);
                message = message.isEmpty() ? keys : message + "; " + keys;
                if (strict) {
                    verdict = Verdict.FAIL;
                    message = "--strict: " + message;
                }
            }
            return new CaseReport(file, golden.function(), golden.group(), verdict, List.copyOf(runs),
                List.copyOf(agreement), message);
        }
    }

    private static EngineReport runOn(final GoldenCase golden, final CaseHandler handler, final Engine engine) {
        final String expectedError = golden.expectedError();
        final CaseOutputs outputs;
        try {
            outputs = handler.run(golden, engine);
        } catch (final IllegalArgumentException e) {
            if (expectedError != null) {
                return caseLevel(engine, Verdict.PASS, "rejected as verl did (" + expectedError + "): "
                    + e.getMessage());
            }
            return caseLevel(engine, Verdict.FAIL, "rejected the inputs: " + e.getMessage());
        } catch (final RuntimeException e) {
            return caseLevel(engine, Verdict.FAIL, (expectedError != null ? "verl raised " + expectedError
                + "; the engine threw " : "error: ") + e);
        }
        if (expectedError != null) {
            return new EngineReport(engine.name(), Verdict.FAIL, List.of(TensorReport.caseLevel(Verdict.FAIL,
                "verl raised " + expectedError + ", but the engine accepted the inputs")), outputs);
        }
        final List<String> names = golden.outputNames();
        if (names.isEmpty()) {
            return new EngineReport(engine.name(), Verdict.FAIL, List.of(TensorReport.caseLevel(Verdict.FAIL,
                "the file has no out.* tensor and no expect_error: nothing to compare")), outputs);
        }
        final List<TensorReport> tensors = new ArrayList<>();
        Verdict verdict = Verdict.PASS;
        for (final String name : names) {
            final CaseOutputs.Output out = outputs.get(name);
            final TensorReport t = out == null
                ? new TensorReport(name, Verdict.FAIL, 0, Double.NaN, Double.NaN, -1, Set.of(),
                    "verl has this output but the handler computed none", TensorReport.Judge.NONE)
                : compare(golden.expected(name), out, outputs.facts());
            tensors.add(t);
            verdict = verdict.worst(t.verdict());
        }
        return new EngineReport(engine.name(), verdict, List.copyOf(tensors), outputs);
    }

    private static EngineReport caseLevel(final Engine engine, final Verdict v, final String detail) {
        return new EngineReport(engine.name(), v, List.of(TensorReport.caseLevel(v, detail)), null);
    }

    /**
     * How far beyond an estimated (not proven) float32 budget verl may be for {@link Deviation#TORCH_LESS_ACCURATE}:
     * an estimate may undercount PyTorch's roundings by the summation order it assumes (a float32 sum accumulated
     * left to right errs by up to n u, not log2(n) u: on a 151,936-wide row, 8 times the entropy's budget), not by
     * orders of magnitude; verl beyond it computed something else. On both golden directories every such deviation
     * lies within twice its budget.
     */
    static final double ESTIMATE_SLACK = 64;

    /**
     * Compares an engine output with verl's values element by element.
     *
     * @param expected verl's values (exact, F64 kept).
     * @param out      the engine's output.
     * @param facts    the case's facts, for deviation preconditions.
     * @return the report.
     */
    public static TensorReport compare(final double[] expected, final CaseOutputs.Output out, final CaseFacts facts) {
        final float[] actual = out.values();
        if (actual.length != expected.length) {
            return new TensorReport(out.name(), Verdict.FAIL, 0, Double.NaN, Double.NaN, -1, Set.of(),
                "the engine produced " + actual.length + " values, verl " + expected.length, TensorReport.Judge.NONE);
        }
        double maxAbs = Double.NaN;
        double maxRel = Double.NaN;
        long maxUlp = -1;
        int failures = 0;
        String firstFailure = "";
        int deviating = 0;
        final EnumSet<Deviation> deviations = EnumSet.noneOf(Deviation.class);
        for (int i = 0; i < actual.length; i++) {
            final double e = expected[i];
            final float a = actual[i];
            String failure = null;
            if (Double.isFinite(e) && Float.isFinite(a)) {
                final double abs = Math.abs(a - e);
                final double rel = e != 0 ? abs / Math.abs(e) : (abs == 0 ? 0 : Double.POSITIVE_INFINITY);
                maxAbs = Double.isNaN(maxAbs) ? abs : Math.max(maxAbs, abs);
                maxRel = Double.isNaN(maxRel) ? rel : Math.max(maxRel, rel);
                maxUlp = Math.max(maxUlp, ulpDistance((float) e, a));
                if (out.referee() != null && out.referee().judged()) {
                    final CaseOutputs.Referee r = out.referee();
                    final double x = r.exactAt(i);
                    final double engineOff = Math.abs(a - x);
                    final double verlOff = Math.abs(e - x);
                    final double be = r.engineBoundAt(i);
                    final double bv = r.budgetAt(i);
                    if (!(engineOff <= be)) {
                        failure = "engine off the double-precision value " + x + " by " + engineOff
                            + ", over its error bound " + be;
                    } else if (!(abs <= bv + be)) {
                        if (out.allowed().contains(Deviation.MASKED_NONFINITE_SEQUENCE)
                            && Deviation.MASKED_NONFINITE_SEQUENCE.applies(facts, out, i)) {
                            // verl's row is poisoned by a masked NaN (its value there is not of these inputs).
                            deviations.add(Deviation.MASKED_NONFINITE_SEQUENCE);
                            deviating++;
                        } else if (r.rigorous()) {
                            // verl's budget is a proven bound on any float32 evaluation of these inputs: verl is
                            // off by more, so it computed something else (or was given other inputs).
                            failure = "verl off the double-precision value " + x + " by " + verlOff + ", over the "
                                + "proven float32 bound " + bv + " (engine off by " + engineOff + ", within its "
                                + "bound " + be + ")";
                        } else if (verlOff > engineOff && verlOff <= ESTIMATE_SLACK * bv) {
                            deviations.add(Deviation.TORCH_LESS_ACCURATE);
                            deviating++;
                        } else if (verlOff > engineOff) {
                            // The budget estimates PyTorch's rounding: it may undercount it by a small factor, not
                            // by orders of magnitude. verl this far off computed something else.
                            failure = "verl off the double-precision value " + x + " by " + verlOff + ", more than "
                                + (int) ESTIMATE_SLACK + " times its float32 budget " + bv + " (engine off by "
                                + engineOff + ", within its bound " + be + ")";
                        } else {
                            failure = "engine and verl differ by " + abs + ", over the bound " + (bv + be);
                        }
                    }
                } else if (!out.tolerance().accepts(abs, e)) {
                    if (Deviation.torchLessAccurate(out, i, e, a)) {
                        deviations.add(Deviation.TORCH_LESS_ACCURATE);
                        deviating++;
                    } else if (out.allowed().contains(Deviation.MASKED_NONFINITE_SEQUENCE)
                        && Deviation.MASKED_NONFINITE_SEQUENCE.applies(facts, out, i)) {
                        deviations.add(Deviation.MASKED_NONFINITE_SEQUENCE);
                        deviating++;
                    } else {
                        failure = "outside " + out.tolerance() + (out.referee() == null ? ""
                            : "; double-precision value " + out.referee().exactAt(i) + ", float32 budget "
                            + out.referee().budgetAt(i));
                    }
                }
            } else if (Double.isFinite(e)) {
                failure = "engine not finite";
            } else {
                // verl is not finite. Where a documented reason applies, the engine is held to its contract
                // (matching verl's NaN is then a breach); elsewhere it must match verl's NaN/Inf.
                final Deviation d = deviation(out, facts, i);
                if (d == null) {
                    if (Float.isFinite(a)) {
                        failure = "verl not finite, no documented reason applies";
                    } else if (Double.isNaN(e) != Float.isNaN(a) || (!Double.isNaN(e) && Math.signum(e) != Math.signum(a))) {
                        failure = "non-finite mismatch";
                    }
                } else if (!d.contractHolds(a)) {
                    failure = "verl not finite (" + d + "), but the engine's value breaks the contract ("
                        + d.contract() + ")";
                } else {
                    deviations.add(d);
                    deviating++;
                }
            }
            if (failure != null) {
                if (failures == 0) {
                    firstFailure = (actual.length > 1 ? "first at [" + i + "]: " : "") + "verl " + e + ", engine " + a
                        + " (" + failure + ")";
                }
                failures++;
            }
        }
        final TensorReport.Judge judge = maxUlp < 0 ? TensorReport.Judge.NONE
            : out.referee() != null && out.referee().judged() ? TensorReport.Judge.BOUND : TensorReport.Judge.TOLERANCE;
        if (failures > 0) {
            final String count = actual.length > 1 ? failures + "/" + actual.length + " elements wrong; " : "";
            return new TensorReport(out.name(), Verdict.FAIL, actual.length, maxAbs, maxRel, maxUlp, Set.of(),
                (out.fromEngine() ? "" : HARNESS_LABEL + out.harness() + "; ") + count + firstFailure, judge);
        }
        if (!deviations.isEmpty()) {
            final StringBuilder sb = new StringBuilder();
            for (final Deviation d : deviations) {
                sb.append(sb.length() == 0 ? "" : ", ").append(d.name());
            }
            if (actual.length > 1) {
                sb.append(" (").append(deviating).append('/').append(actual.length).append(" elements)");
            }
            return new TensorReport(out.name(), Verdict.DEVIATION, actual.length, maxAbs, maxRel, maxUlp,
                Set.copyOf(deviations), sb + (out.fromEngine() ? "" : "; " + HARNESS_LABEL + out.harness()), judge);
        }
        return new TensorReport(out.name(), Verdict.PASS, actual.length, maxAbs, maxRel, maxUlp, Set.of(),
            out.fromEngine() ? "" : HARNESS_LABEL + out.harness(), judge);
    }

    private static Deviation deviation(final CaseOutputs.Output out, final CaseFacts facts, final int i) {
        for (final Deviation d : out.allowed()) {
            if (d.applies(facts, out, i)) {
                return d;
            }
        }
        return null;
    }

    /**
     * Engine vs reference on every output both computed.
     *
     * @param engine    the engine under test.
     * @param reference the reference.
     * @return one row per output, in the engine's order.
     */
    public static List<Agreement> agreement(final CaseOutputs engine, final CaseOutputs reference) {
        final List<Agreement> rows = new ArrayList<>();
        for (final Map.Entry<String, CaseOutputs.Output> e : engine.all().entrySet()) {
            final CaseOutputs.Output r = reference.get(e.getKey());
            final float[] a = e.getValue().values();
            if (r == null || r.values().length != a.length) {
                rows.add(new Agreement(e.getKey(), a.length, a.length, Long.MAX_VALUE, false));
                continue;
            }
            final float[] b = r.values();
            int mismatches = 0;
            long maxUlp = 0;
            for (int i = 0; i < a.length; i++) {
                if (Float.floatToIntBits(a[i]) != Float.floatToIntBits(b[i])) {
                    mismatches++;
                    maxUlp = Math.max(maxUlp, Float.isNaN(a[i]) || Float.isNaN(b[i]) ? Long.MAX_VALUE
                        : ulpDistance(a[i], b[i]));
                }
            }
            final boolean ok = e.getValue().isScalar() ? maxUlp <= 1 : mismatches == 0;
            rows.add(new Agreement(e.getKey(), a.length, mismatches, maxUlp, ok));
        }
        return rows;
    }

    /**
     * @return the distance between two finite floats in units in the last place (the number of representable
     *     floats between them; +0 and -0 are the same point).
     */
    public static long ulpDistance(final float x, final float y) {
        return Math.abs(ordinal(x) - ordinal(y));
    }

    private static long ordinal(final float f) {
        final int bits = Float.floatToRawIntBits(f);
        return bits >= 0 ? bits : -(long) (bits & 0x7FFFFFFF);
    }
}
