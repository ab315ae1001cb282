package io.rlvec.engine;

import io.rlvec.Engine;
import io.rlvec.Engines;
import io.rlvec.contract.PolicyLossContract;

/**
 * The policy-loss behaviour suite on whatever {@link Engines#preferred()} picks in this JVM: the vector engine at
 * the preferred or forced width, or the reference under {@code -Drlvec.engine=reference} (the module's three
 * Surefire executions cover all three).
 */
class PreferredEnginePolicyLossTest extends PolicyLossContract {
    private final Engine engine = Engines.preferred();

    @Override
    protected Engine engine() {
        return engine;
    }
}
