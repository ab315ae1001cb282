package io.rlvec.engine.kl;

import io.rlvec.Engine;
import io.rlvec.Engines;
import io.rlvec.kl.KlFullContract;

/** The full-KL behaviour suite on the preferred engine (vector, or the reference when forced). */
class EngineKlFullTest extends KlFullContract {
    private final Engine engine = Engines.preferred();

    @Override
    protected Engine engine() {
        return engine;
    }
}
