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
     */
    public record Output(String name, float[] values, boolean tokenAligned, float[] mask, Tolerance tolerance,
                         Set<Deviation> allowed) {
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
        }

        /** @return whether this is a 0-d value. */
        public boolean isScalar() {
            return !tokenAligned && values.length == 1;
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
        return put(new Output(name, new float[] {value}, false, null, tolerance, set(allowed)));
    }

    /**
     * Adds a per-token tensor (a gradient or elementwise output), element {@code i} belonging to token {@code i}.
     *
     * @param mask the response mask per element (non-zero = valid).
     */
    public CaseOutputs tokens(final String name, final float[] values, final float[] mask, final Tolerance tolerance,
                              final Deviation... allowed) {
        return put(new Output(name, values, true, mask, tolerance, set(allowed)));
    }

    /** Adds any other tensor (no per-token deviation applies to it). */
    public CaseOutputs tensor(final String name, final float[] values, final Tolerance tolerance,
                              final Deviation... allowed) {
        return put(new Output(name, values, false, null, tolerance, set(allowed)));
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
