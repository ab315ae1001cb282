package io.rlvec.engine.vocab;

import io.rlvec.Engine;
import io.rlvec.Engines;
import io.rlvec.vocab.VocabGoldenTest;

/** verl's golden vocabulary-pass outputs against the preferred engine of this run. */
class EngineVocabGoldenTest extends VocabGoldenTest {
    static {
        ColdVocabRun.touch();
    }

    private static final Engine ENGINE = Engines.preferred(1);

    @Override
    protected Engine engine() {
        return ENGINE;
    }
}
