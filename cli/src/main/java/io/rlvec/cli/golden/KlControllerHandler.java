package io.rlvec.cli.golden;

import io.rlvec.Engine;
import io.rlvec.KlController;

/**
 * verl's {@code AdaptiveKLController.update}, applied in sequence: inputs {@code in.current_kl} and
 * {@code in.n_steps} (one update per element), params {@code init_kl_coef}, {@code target_kl}, {@code horizon};
 * output {@code out.value_after}, the coefficient after each update. The controller is plain double arithmetic
 * on both sides (the engine is not involved; it is the same {@link KlController} for every engine), so the
 * tolerance is relative 1e-5 only because outputs are compared as float32.
 */
public final class KlControllerHandler implements CaseHandler {
    /** verl's function. */
    public static final String FUNCTION = "verl.trainer.ppo.core_algos.AdaptiveKLController.update";

    @Override
    public CaseOutputs run(final GoldenCase golden, final Engine engine) {
        final KlController ctrl = KlController.adaptive(golden.params().path("init_kl_coef").asDouble(),
            golden.params().path("target_kl").asDouble(), golden.params().path("horizon").asDouble());
        final double[] kl = golden.expected("in.current_kl");
        final double[] steps = golden.expected("in.n_steps");
        final float[] after = new float[kl.length];
        for (int i = 0; i < kl.length; i++) {
            ctrl.update(kl[i], (long) steps[i]);
            after[i] = (float) ctrl.value();
        }
        return new CaseOutputs(new CaseFacts(kl.length, false))
            .harness("out.value_after", after, Tolerance.SCALAR, "KlController.update in double, in sequence");
    }
}
