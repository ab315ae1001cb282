package io.rlvec.engine.kl;

import io.rlvec.Engine;
import io.rlvec.Engines;
import io.rlvec.kl.KlPenaltyContract;

/** The KL-penalty behaviour suite on the preferred engine (vector, or the reference when forced). */
class EngineKlPenaltyTest extends KlPenaltyContract {
    private final Engine engine = Engines.preferred();

    @Override
    protected Engine engine() {
        return engine;
    }
}
