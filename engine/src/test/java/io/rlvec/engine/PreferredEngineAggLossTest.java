package io.rlvec.engine;

import io.rlvec.Engine;
import io.rlvec.Engines;
import io.rlvec.contract.AggLossContract;

/** The agg_loss behaviour suite on {@link Engines#preferred()} (see {@link PreferredEnginePolicyLossTest}). */
class PreferredEngineAggLossTest extends AggLossContract {
    private final Engine engine = Engines.preferred();

    @Override
    protected Engine engine() {
        return engine;
    }
}
