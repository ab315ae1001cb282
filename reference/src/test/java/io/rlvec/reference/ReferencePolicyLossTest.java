package io.rlvec.reference;

import io.rlvec.Engine;
import io.rlvec.contract.PolicyLossContract;

/** The policy-loss behaviour suite on the scalar reference. */
class ReferencePolicyLossTest extends PolicyLossContract {
    private final Engine engine = new ReferenceEngine();

    @Override
    protected Engine engine() {
        return engine;
    }
}
