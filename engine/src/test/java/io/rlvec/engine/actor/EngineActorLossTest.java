package io.rlvec.engine.actor;

import io.rlvec.Engine;
import io.rlvec.Engines;
import io.rlvec.actor.ActorLossContract;

/** The actor-loss behaviour suite on the preferred engine (vector, or the reference when forced). */
class EngineActorLossTest extends ActorLossContract {
    private final Engine engine = Engines.preferred();

    @Override
    protected Engine engine() {
        return engine;
    }
}
