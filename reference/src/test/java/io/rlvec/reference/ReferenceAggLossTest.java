package io.rlvec.reference;

import io.rlvec.Engine;
import io.rlvec.contract.AggLossContract;

/** The agg_loss behaviour suite on the scalar reference. */
class ReferenceAggLossTest extends AggLossContract {
    private final Engine engine = new ReferenceEngine();

    @Override
    protected Engine engine() {
        return engine;
    }
}
