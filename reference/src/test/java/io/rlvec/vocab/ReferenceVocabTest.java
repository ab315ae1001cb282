package io.rlvec.vocab;

import io.rlvec.Engine;
import io.rlvec.reference.ReferenceEngine;

/** The vocabulary-pass contract on the scalar reference. */
class ReferenceVocabTest extends VocabContractTest {
    private final Engine engine = new ReferenceEngine();

    @Override
    protected Engine engine() {
        return engine;
    }
}
