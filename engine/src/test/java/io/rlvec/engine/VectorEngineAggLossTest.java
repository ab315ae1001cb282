package io.rlvec.engine;

import org.junit.jupiter.api.AfterAll;

import io.rlvec.Engine;
import io.rlvec.contract.AggLossContract;

/** The agg_loss behaviour suite on the vector engine with two threads (results must not depend on them). */
class VectorEngineAggLossTest extends AggLossContract {
    private static final VectorEngine ENGINE = new VectorEngine(2);

    @Override
    protected Engine engine() {
        return ENGINE;
    }

    @AfterAll
    static void close() {
        ENGINE.close();
    }
}
