package io.rlvec.cli.golden;

import io.rlvec.Engine;

/**
 * Runs one verl function's golden case on an engine. A handler reads the case's {@code in.*} tensors and
 * {@code params}, calls the engine, and returns every output it computed under verl's {@code out.*} names; the
 * {@link GoldenRunner} then compares them with the file. Register new handlers in {@link CaseHandlers#defaults()},
 * one line each.
 *
 * <p>A handler validates nothing the engine validates: bad shapes or parameters surface as the engine's
 * {@link IllegalArgumentException} (which is what an {@code expect_error} case requires).
 */
@FunctionalInterface
public interface CaseHandler {

    /**
     * @param golden the open case.
     * @param engine the engine under test.
     * @return the computed outputs, named as verl's.
     * @throws IllegalArgumentException when the engine (or the spec) rejects the inputs.
     */
    CaseOutputs run(GoldenCase golden, Engine engine);
}
