package io.rlvec.cli.golden;

import java.util.Collections;
import java.util.LinkedHashMap;
import java.util.Map;
import java.util.Objects;

/** The registry from a golden file's {@code function} metadata to the {@link CaseHandler} that runs it. */
public final class CaseHandlers {
    private final Map<String, CaseHandler> handlers = new LinkedHashMap<>();

    /** An empty registry (see {@link #defaults()} for the project's handlers). */
    public CaseHandlers() {
    }

    /** @return a registry with every handler of the project; add new groups here, one line each. */
    public static CaseHandlers defaults() {
        return new CaseHandlers()
            .registerPolicyLosses()
            .register(AggLossHandler.FUNCTION, new AggLossHandler())
            .register(ValueLossHandler.FUNCTION, new ValueLossHandler())
            .register(KlPenaltyHandler.FUNCTION, new KlPenaltyHandler())
            .register(LogitsHandler.FUNCTION, new LogitsHandler())
            .register(ActorLogProbHandler.FUNCTION, new ActorLogProbHandler())
            .register(ActorLogitsHandler.FUNCTION, new ActorLogitsHandler())
            .register(RolloutCorrectionHandler.FUNCTION, new RolloutCorrectionHandler())
            .registerAdvantages();
    }

    /**
     * @param function the exact {@code function} metadata string of the files the handler runs.
     * @param handler  the handler.
     * @return this registry.
     * @throws IllegalArgumentException when the function already has a handler.
     */
    private CaseHandlers registerPolicyLosses() {
        for (final io.rlvec.PolicyLossMode m : io.rlvec.PolicyLossMode.values()) {
            if (m != io.rlvec.PolicyLossMode.BYPASS_MODE) {
                register(PolicyLossHandler.function(m), new PolicyLossHandler(m));
            }
        }
        return register(BypassPolicyLossHandler.FUNCTION, new BypassPolicyLossHandler());
    }

    private CaseHandlers registerAdvantages() {
        AdvantageHandler.FUNCTIONS.forEach((function, estimator) -> register(function,
            new AdvantageHandler(estimator)));
        return register(RewardKlHandler.APPLY, new RewardKlHandler(true))
            .register(RewardKlHandler.COMPUTE_REWARDS, new RewardKlHandler(false))
            .register(KlControllerHandler.FUNCTION, new KlControllerHandler())
            .register(MaskedStatsHandler.FUNCTION, new MaskedStatsHandler());
    }

    public CaseHandlers register(final String function, final CaseHandler handler) {
        Objects.requireNonNull(function, "function");
        Objects.requireNonNull(handler, "handler");
        if (handlers.putIfAbsent(function, handler) != null) {
            throw new IllegalArgumentException("function '" + function + "' already has a handler");
        }
        return this;
    }

    /** @return the handler for the function, or null when there is none. */
    public CaseHandler find(final String function) {
        return handlers.get(function);
    }

    /** @return the registered functions and their handlers, in registration order. */
    public Map<String, CaseHandler> all() {
        return Collections.unmodifiableMap(handlers);
    }
}
