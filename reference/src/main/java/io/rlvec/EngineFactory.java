package io.rlvec;

/**
 * Service-provider interface through which {@link Engines} finds implementations on the class path
 * ({@code META-INF/services/io.rlvec.EngineFactory}).
 */
public interface EngineFactory {

    /** @return the provider's name, as accepted by {@code -Drlvec.engine}. */
    String name();

    /** @return null when the provider can run here, else the reason it cannot (logged by {@link Engines}). */
    String refusal();

    /**
     * @param parallelism worker threads for blocked kernels (1 = run on the calling thread).
     * @return a new engine.
     */
    Engine create(int parallelism);
}
