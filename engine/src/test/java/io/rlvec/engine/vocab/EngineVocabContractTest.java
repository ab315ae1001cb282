package io.rlvec.engine.vocab;

import io.rlvec.Engine;
import io.rlvec.Engines;
import io.rlvec.vocab.VocabContractTest;

/**
 * The vocabulary-pass contract on the preferred engine of this run (the vector engine at the preferred width or
 * at 128 bits, or the reference when the run forces it), with two worker threads so that rows are split.
 */
class EngineVocabContractTest extends VocabContractTest {
    static {
        ColdVocabRun.touch();
    }

    private static final Engine ENGINE = Engines.preferred(2);

    @Override
    protected Engine engine() {
        return ENGINE;
    }
}
