package io.rlvec.cli.golden;

import java.util.Collections;
import java.util.EnumSet;
import java.util.LinkedHashMap;
import java.util.Map;
import java.util.Objects;
import java.util.Set;

/**
 * What a {@link CaseHandler} computed with one engine: one entry per verl output name ({@code out.*}), each with
 * the tolerance it is held to and the {@link Deviation}s that may explain a non-finite verl value there, plus the
 * {@link CaseFacts} those deviations are checked against. Values are heap copies, valid after the case closed.
 */
public final class CaseOutputs {
    private final CaseFacts facts;
    private final Map<String, Output> outputs = new LinkedHashMap<>();

    /**
     * One computed tensor.
     *
     * @param name         verl's output name, e.g. {@code out.pg_loss}.
     * @param values       the engine's values in row-major order (one for a scalar).
     * @param tokenAligned whether element {@code i} belongs to token {@code i} (gradients, per-token values).
     * @param mask         for token-aligned outputs, the response mask per element (non-zero = valid); else null.
     * @param tolerance    how close to verl it must be.
     * @param allowed      deviations that may explain a non-finite verl value.
     * @param harness      null for an engine output; otherwise how the harness computed it (a verl output the
     *                     engine has no counterpart for), which every report of the tensor shows.
     * @param referee      null, or the harness's double-precision evaluation and float32 error budget: the referee
     *                     of {@link Deviation#TORCH_LESS_ACCURATE}.
     */
    public record Output(String name, float[] values, boolean tokenAligned, float[] mask, Tolerance tolerance,
                         Set<Deviation> allowed, String harness, Referee referee) {
        /** Validates the shape of the record. */
        public Output {
            Objects.requireNonNull(name, "name");
            Objects.requireNonNull(values, "values");
            Objects.requireNonNull(tolerance, "tolerance");
            if (tokenAligned && (mask == null || mask.length != values.length)) {
                throw new IllegalArgumentException("token-aligned output " + name + " needs a mask of "
                    + values.length + " elements");
            }
            allowed = Collections.unmodifiableSet(allowed.isEmpty() ? EnumSet.noneOf(Deviation.class)
                : EnumSet.copyOf(allowed));
            if (referee != null && referee.exact().length != values.length) {
                throw new IllegalArgumentException("output " + name + " has " + values.length + " values but "
                    + referee.exact().length + " refereed values");
            }
            if (allowed.contains(Deviation.TORCH_LESS_ACCURATE) && referee == null) {
                throw new IllegalArgumentException("output " + name + " allows " + Deviation.TORCH_LESS_ACCURATE
                    + " but has no double-precision evaluation to referee it");
            }
        }

        /** @return whether the engine computed this output (false: the harness did, see {@link #harness()}). */
        public boolean fromEngine() {
            return harness == null;
        }

        /** @return whether this is a 0-d value. */
        public boolean isScalar() {
            return !tokenAligned && values.length == 1;
        }
    }

    /**
     * The harness's own evaluation of an output, which referees {@link Deviation#TORCH_LESS_ACCURATE}, and, when
     * it carries an engine bound, judges the output by error analysis instead of a fixed tolerance
     * ({@link #judged()}, see {@link GoldenRunner#compare}).
     *
     * @param exact       per element, the quantity in double precision from the same float32 inputs.
     * @param budget      per element, a bound on the error a float32 evaluation (PyTorch's) can have there, derived
     *                    from the operation (see the handler that computes it).
     * @param engineBound null (the output's fixed tolerance applies), or per element a bound on the engine's error
     *                    against {@code exact}, derived from the operation as well.
     * @param rigorous    whether {@code budget} is a proven worst-case bound on any float32 evaluation (then verl
     *                    beyond it has computed something else: FAIL, never {@link Deviation#TORCH_LESS_ACCURATE});
     *                    false where the budget estimates PyTorch's error (long softmax sums, cancellation).
     */
    public record Referee(double[] exact, double[] budget, double[] engineBound, boolean rigorous) {
        /** Copies and checks the arrays. */
        public Referee {
            exact = exact.clone();
            budget = budget.clone();
            engineBound = engineBound == null ? null : engineBound.clone();
            if (exact.length != budget.length) {
                throw new IllegalArgumentException("exact has " + exact.length + " values, budget " + budget.length);
            }
            if (engineBound != null && engineBound.length != exact.length) {
                throw new IllegalArgumentException("exact has " + exact.length + " values, engineBound "
                    + engineBound.length);
            }
        }

        /** A referee whose verl budget is an estimate (see {@code rigorous}). */
        public Referee(final double[] exact, final double[] budget, final double[] engineBound) {
            this(exact, budget, engineBound, false);
        }

        /** A referee without an engine bound: the output keeps its fixed tolerance. */
        public Referee(final double[] exact, final double[] budget) {
            this(exact, budget, null, false);
        }

        /**
         * The referee of a case whose inputs verl stored (and computed on) in float64, which the engines read
         * rounded to float32: the exact value is verl's expression on the stored inputs ({@code onStored}); verl,
         * which evaluated it in double, is held to the same bound with double's unit roundoff (2^-53 for 2^-24:
         * the bounds are linear in u); the engine, which computed from the rounded inputs, is held to its bound
         * there plus how far rounding the inputs moved the exact value ({@code |onStored - this|}, both in double).
         *
         * @param onStored the referee evaluated on the stored float64 inputs (same shape and derivation).
         * @return the referee of the float64 case.
         */
        public Referee storedInDouble(final Referee onStored) {
            if (!judged() || onStored.exact.length != exact.length) {
                throw new IllegalArgumentException("needs two judged referees of " + exact.length + " values");
            }
            final double[] x = onStored.exact.clone();
            final double[] verl = new double[x.length];
            final double[] engine = new double[x.length];
            for (int i = 0; i < x.length; i++) {
                verl[i] = onStored.budget[i] * DOUBLE_OVER_FLOAT_ROUNDOFF + 0x1p-1074;
                // The input rounding's effect, taken twice: once for itself and once as a margin for the double
                // evaluations that measure it.
                engine[i] = engineBound[i] + 2 * Math.abs(x[i] - exact[i]);
            }
            return new Referee(x, verl, engine, rigorous);
        }

        /** @return {@code f32.storedInDouble(f64)}, or null where either side has no referee. */
        static Referee storedInDouble(final Referee f32, final Referee f64) {
            return f32 == null || f64 == null ? null : f32.storedInDouble(f64);
        }

        /** double's unit roundoff over float32's. */
        private static final double DOUBLE_OVER_FLOAT_ROUNDOFF = 0x1p-29;

        /** @return whether the output is judged by the derived bounds rather than a fixed tolerance. */
        public boolean judged() {
            return engineBound != null;
        }

        /** @return a copy of the double-precision values. */
        @Override
        public double[] exact() {
            return exact.clone();
        }

        /** @return a copy of the float32 error budgets. */
        @Override
        public double[] budget() {
            return budget.clone();
        }

        /** @return a copy of the engine's bounds, or null. */
        @Override
        public double[] engineBound() {
            return engineBound == null ? null : engineBound.clone();
        }

        /** @return the double-precision value of element {@code i}. */
        public double exactAt(final int i) {
            return exact[i];
        }

        /** @return the float32 error budget of element {@code i}. */
        public double budgetAt(final int i) {
            return budget[i];
        }

        /** @return the engine's error bound at element {@code i} (only when {@link #judged()}). */
        public double engineBoundAt(final int i) {
            return engineBound[i];
        }

        /**
         * @return element {@code i} as a term of a further bound: the exact value with the engine's bound
         *     ({@code engine}, only when {@link #judged()}) or with verl's budget.
         */
        F32Term term(final int i, final boolean engine) {
            return new F32Term(exact[i], engine ? engineBound[i] : budget[i]);
        }
    }

    /** @param facts what the case's inputs are like (for deviation checks). */
    public CaseOutputs(final CaseFacts facts) {
        this.facts = Objects.requireNonNull(facts, "facts");
    }

    /** @return the facts deviations are checked against. */
    public CaseFacts facts() {
        return facts;
    }

    /**
     * Adds a scalar (loss or metric).
     *
     * @param allowed deviations that may explain a non-finite verl value.
     */
    public CaseOutputs scalar(final String name, final float value, final Tolerance tolerance,
                              final Deviation... allowed) {
        return put(new Output(name, new float[] {value}, false, null, tolerance, set(allowed), null, null));
    }

    /**
     * Adds a per-token tensor (a gradient or elementwise output), element {@code i} belonging to token {@code i}.
     *
     * @param mask the response mask per element (non-zero = valid).
     */
    public CaseOutputs tokens(final String name, final float[] values, final float[] mask, final Tolerance tolerance,
                              final Deviation... allowed) {
        return put(new Output(name, values, true, mask, tolerance, set(allowed), null, null));
    }

    /** Adds any other tensor (no per-token deviation applies to it). */
    public CaseOutputs tensor(final String name, final float[] values, final Tolerance tolerance,
                              final Deviation... allowed) {
        return put(new Output(name, values, false, null, tolerance, set(allowed), null, null));
    }

    /**
     * Adds a verl output the engine has no counterpart for, computed by the harness itself; reports label it with
     * {@code how} so that it is never mistaken for an engine check.
     *
     * @param how how the harness computed it, e.g. "sum of softmax^2 in double from the float32 logits".
     */
    public CaseOutputs harness(final String name, final float[] values, final Tolerance tolerance, final String how) {
        Objects.requireNonNull(how, "how");
        return put(new Output(name, values, false, null, tolerance, Set.of(), how, null));
    }

    /**
     * Adds a tensor together with the harness's double-precision evaluation of the same quantity from the same
     * float32 inputs and a float32 error budget, which referee {@link Deviation#TORCH_LESS_ACCURATE} where the
     * tensor allows it.
     *
     * @param harness null for an engine output, else how the harness computed the values (see {@link #harness}).
     * @param referee one double-precision value and one budget per value.
     */
    public CaseOutputs refereed(final String name, final float[] values, final Referee referee,
                                final Tolerance tolerance, final String harness, final Deviation... allowed) {
        Objects.requireNonNull(referee, "referee");
        return put(new Output(name, values, false, null, tolerance, set(allowed), harness, referee));
    }

    /**
     * Adds a per-token tensor judged by error analysis: {@code referee} carries the double-precision value, the
     * float32 (verl) bound and the engine's bound per element (see {@link GoldenRunner#compare}).
     */
    public CaseOutputs judgedTokens(final String name, final float[] values, final float[] mask,
                                    final Referee referee, final Tolerance tolerance, final Deviation... allowed) {
        if (!referee.judged()) {
            throw new IllegalArgumentException("output " + name + " needs a referee with an engine bound");
        }
        final Set<Deviation> all = set(allowed);
        all.add(Deviation.TORCH_LESS_ACCURATE);
        return put(new Output(name, values, true, mask, tolerance, all, null, referee));
    }

    /**
     * Adds a scalar judged by error analysis (see {@link #judgedTokens}); {@code allowed} may explain a non-finite
     * verl value.
     */
    public CaseOutputs judgedScalar(final String name, final float value, final Referee referee,
                                    final Tolerance tolerance, final Deviation... allowed) {
        if (!referee.judged() || referee.exact().length != 1) {
            throw new IllegalArgumentException("output " + name + " needs a one-value referee with an engine bound");
        }
        final Set<Deviation> all = set(allowed);
        all.add(Deviation.TORCH_LESS_ACCURATE);
        return put(new Output(name, new float[] {value}, false, null, tolerance, all, null, referee));
    }

    private CaseOutputs put(final Output o) {
        if (outputs.put(o.name(), o) != null) {
            throw new IllegalArgumentException("output " + o.name() + " added twice");
        }
        return this;
    }

    private static Set<Deviation> set(final Deviation... allowed) {
        final EnumSet<Deviation> s = EnumSet.noneOf(Deviation.class);
        Collections.addAll(s, allowed);
        return s;
    }

    /** @return the output of that name, or null. */
    public Output get(final String name) {
        return outputs.get(name);
    }

    /** @return every output, in the order added. */
    public Map<String, Output> all() {
        return Collections.unmodifiableMap(outputs);
    }
}
