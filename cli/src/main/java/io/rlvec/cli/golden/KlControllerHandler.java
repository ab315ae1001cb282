package io.rlvec.cli.golden;

import io.rlvec.Engine;
import io.rlvec.KlController;

/**
 * verl's {@code AdaptiveKLController.update}, applied in sequence: inputs {@code in.current_kl} and
 * {@code in.n_steps} (one update per element), params {@code init_kl_coef}, {@code target_kl}, {@code horizon};
 * output {@code out.value_after}, the coefficient after each update. The controller is plain double arithmetic
 * on both sides (the engine is not involved; it is the same {@link KlController} for every engine): judged
 * against the double values, within half an ulp of float32 for the compared float32 values and a few units of
 * 2^-53 per update.
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
        // Both sides are double arithmetic (a handful of operations per update); the engine's value is compared
        // as float32 (half an ulp), verl's as stored.
        final double[] exact = new double[kl.length];
        final double[] engineBound = new double[kl.length];
        final double[] verlBudget = new double[kl.length];
        final KlController twin = KlController.adaptive(golden.params().path("init_kl_coef").asDouble(),
            golden.params().path("target_kl").asDouble(), golden.params().path("horizon").asDouble());
        final boolean storedF32 = golden.file().info("out.value_after").dtype() == io.rlvec.cli.io.Dtype.F32;
        for (int i = 0; i < kl.length; i++) {
            twin.update(kl[i], (long) steps[i]);
            exact[i] = twin.value();
            final double drift = 0x1p-50 * (i + 1) * Math.abs(exact[i]);
            engineBound[i] = 0.5 * Math.ulp((float) exact[i]) + drift;
            verlBudget[i] = (storedF32 ? 0.5 * Math.ulp((float) exact[i]) : 0) + drift;
        }
        return new CaseOutputs(new CaseFacts(kl.length, false))
            .refereed("out.value_after", after, new CaseOutputs.Referee(exact, verlBudget, engineBound, true),
                Tolerance.SCALAR, "KlController.update in double, in sequence");
    }
}
