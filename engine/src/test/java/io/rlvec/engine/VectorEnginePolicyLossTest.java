package io.rlvec.engine;

import org.junit.jupiter.api.AfterAll;

import io.rlvec.Engine;
import io.rlvec.contract.PolicyLossContract;

/** The policy-loss behaviour suite on the vector engine (one thread). */
class VectorEnginePolicyLossTest extends PolicyLossContract {
    private static final VectorEngine ENGINE = new VectorEngine();

    @Override
    protected Engine engine() {
        return ENGINE;
    }

    @AfterAll
    static void close() {
        ENGINE.close();
    }
}
