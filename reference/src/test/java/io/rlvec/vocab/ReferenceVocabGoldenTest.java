package io.rlvec.vocab;

import io.rlvec.Engine;
import io.rlvec.reference.ReferenceEngine;

/** verl's golden vocabulary-pass outputs against the scalar reference. */
class ReferenceVocabGoldenTest extends VocabGoldenTest {
    private final Engine engine = new ReferenceEngine();

    @Override
    protected Engine engine() {
        return engine;
    }
}
