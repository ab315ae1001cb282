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
     * @param name {@value #VECTOR}, {@value #VECTOR2}, {@code vector<N>} ({@link VectorEngine} with N threads, N in
     *             [1, {@link Engines#MAX_THREADS}]: thread scaling on machines with more cores) or {@value #REFERENCE}.
     * @return a new engine.
     * @throws IllegalArgumentException for any other name.
     */
    public static Engine create(final String name) {
        return switch (name) {
            case VECTOR -> new VectorEngine();
            case VECTOR2 -> new VectorEngine(2);
            case REFERENCE -> Engines.reference();
            default -> new VectorEngine(threads(name));
        };
    }

    private static int threads(final String name) {
        if (name.matches("vector[1-9][0-9]{0,3}")) {
            final int n = Integer.parseInt(name.substring("vector".length()));
            if (n <= Engines.MAX_THREADS) {
                return n;
            }
        }
        throw new IllegalArgumentException("engine must be '" + VECTOR + "', '" + VECTOR2 + "', 'vector<N>' (N in [1, "
            + Engines.MAX_THREADS + "] threads) or '" + REFERENCE + "', got '" + name + "'");
    }
}
