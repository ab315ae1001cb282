package io.rlvec.jmh;

import io.rlvec.Engine;
import io.rlvec.Engines;
import io.rlvec.engine.VectorEngine;

/**
 * The {@code engine} parameter of every benchmark: both implementations are measured through the same
 * {@link Engine} calls on the same inputs (style.md P13).
 */
public final class EngineChoice {
    /** The parameter value selecting {@link VectorEngine} (one thread). */
    public static final String VECTOR = "vector";
    /** The parameter value selecting {@link VectorEngine} with two threads. */
    public static final String VECTOR2 = "vector2";
    /** The parameter value selecting the scalar reference. */
    public static final String REFERENCE = "reference";

    private EngineChoice() {
    }

    /**
     * @param name {@value #VECTOR}, {@value #VECTOR2} or {@value #REFERENCE}.
     * @return a new engine.
     * @throws IllegalArgumentException for any other name.
     */
    public static Engine create(final String name) {
        return switch (name) {
            case VECTOR -> new VectorEngine();
            case VECTOR2 -> new VectorEngine(2);
            case REFERENCE -> Engines.reference();
            default -> throw new IllegalArgumentException("engine must be '" + VECTOR + "', '" + VECTOR2 + "' or '" + REFERENCE
                + "', got '" + name + "'");
        };
    }
}
