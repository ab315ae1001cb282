package io.rlvec.actor;

import io.rlvec.Engine;
import io.rlvec.reference.ReferenceEngine;

/** The actor-loss-from-logits behaviour suite on the scalar reference. */
class ReferenceActorLogitsTest extends ActorLogitsContract {
    @Override
    protected Engine engine() {
        return new ReferenceEngine();
    }
}
