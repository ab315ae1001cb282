package io.rlvec;

import java.util.ServiceLoader;
import java.util.logging.Level;
import java.util.logging.Logger;

import io.rlvec.reference.ReferenceEngine;

/**
 * Finds the engine to use, once, and says why (style.md P2): the Vector API engine when it is on the class path
 * and can run fast here, otherwise the scalar reference with a logged reason. {@code -Drlvec.engine=vector} or
 * {@code =reference} forces a provider.
 */
public final class Engines {
    private static final Logger LOG = Logger.getLogger(Engines.class.getName());

    /** System property that forces a provider by name. */
    public static final String PROVIDER_PROPERTY = "rlvec.engine";

    private static volatile String lastChoiceReason = "";

    private Engines() {
    }

    /** The most threads an engine may run (a higher count is refused, not attempted). */
    public static final int MAX_THREADS = 256;

    /** @return the scalar reference engine. */
    public static Engine reference() {
        return new ReferenceEngine();
    }

    /** @return the preferred engine with one thread. */
    public static Engine preferred() {
        return preferred(1);
    }

    /**
     * @param parallelism worker threads for blocked kernels.
     * @return the preferred engine: forced by {@value #PROVIDER_PROPERTY}, else vector when usable, else reference.
     * @throws IllegalStateException when a forced provider is missing or refuses to run here.
     */
    public static Engine preferred(final int parallelism) {
        if (parallelism < 1 || parallelism > MAX_THREADS) {
            throw new IllegalArgumentException("parallelism must be in [1, " + MAX_THREADS + "], got " + parallelism);
        }
        final String forced = System.getProperty(PROVIDER_PROPERTY, "").trim();
        if ("reference".equals(forced)) {
            lastChoiceReason = "forced by -D" + PROVIDER_PROPERTY + "=reference";
            return new ReferenceEngine();
        }
        EngineFactory found = null;
        for (final EngineFactory f : ServiceLoader.load(EngineFactory.class)) {
            if (forced.isEmpty() || forced.equals(f.name())) {
                found = f;
                break;
            }
        }
        if (found == null) {
            if (!forced.isEmpty()) {
                throw new IllegalStateException("-D" + PROVIDER_PROPERTY + "=" + forced
                    + " names no provider on the class path (known: reference, vector)");
            }
            lastChoiceReason = "no vector engine on the class path";
            LOG.log(Level.INFO, "RLVec: using the reference engine: " + lastChoiceReason);
            return new ReferenceEngine();
        }
        final String refusal = found.refusal();
        if (refusal != null) {
            if (!forced.isEmpty()) {
                throw new IllegalStateException("-D" + PROVIDER_PROPERTY + "=" + forced + " cannot run here: " + refusal);
            }
            lastChoiceReason = found.name() + " refused: " + refusal;
            LOG.log(Level.WARNING, "RLVec: using the reference engine: " + lastChoiceReason);
            return new ReferenceEngine();
        }
        lastChoiceReason = forced.isEmpty() ? found.name() + " is available" : "forced by -D" + PROVIDER_PROPERTY;
        return found.create(parallelism);
    }

    /** @return why the last {@link #preferred} call chose what it chose. */
    public static String lastChoiceReason() {
        return lastChoiceReason;
    }
}
