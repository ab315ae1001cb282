package io.rlvec.kl;

import io.rlvec.Engine;
import io.rlvec.reference.ReferenceEngine;

/** The KL-penalty behaviour suite on the scalar reference. */
class ReferenceKlPenaltyTest extends KlPenaltyContract {
    @Override
    protected Engine engine() {
        return new ReferenceEngine();
    }
}
