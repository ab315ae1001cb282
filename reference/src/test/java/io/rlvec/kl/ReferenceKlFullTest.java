package io.rlvec.kl;

import io.rlvec.Engine;
import io.rlvec.reference.ReferenceEngine;

/** The full-KL behaviour suite on the scalar reference. */
class ReferenceKlFullTest extends KlFullContract {
    @Override
    protected Engine engine() {
        return new ReferenceEngine();
    }
}
