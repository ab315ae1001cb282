package io.rlvec.actor;

import io.rlvec.Engine;
import io.rlvec.reference.ReferenceEngine;

/** The actor-loss behaviour suite on the scalar reference. */
class ReferenceActorLossTest extends ActorLossContract {
    @Override
    protected Engine engine() {
        return new ReferenceEngine();
    }
}
