package io.rlvec.engine.actor;

import io.rlvec.Engine;
import io.rlvec.Engines;
import io.rlvec.actor.ActorLogitsContract;

/** The actor-loss-from-logits behaviour suite on the preferred engine (vector, or the reference when forced). */
class EngineActorLogitsTest extends ActorLogitsContract {
    private final Engine engine = Engines.preferred();

    @Override
    protected Engine engine() {
        return engine;
    }
}
