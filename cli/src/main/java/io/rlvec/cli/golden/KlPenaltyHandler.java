package io.rlvec.cli.golden;

import io.rlvec.Column;
import io.rlvec.ElementType;
import io.rlvec.Engine;
import io.rlvec.KlPenalty;
import io.rlvec.OffHeapArray;
import io.rlvec.TokenBatch;
import io.rlvec.cli.io.Dtype;

/**
 * {@code kl_penalty(logprob, ref_logprob, kl_penalty)}: inputs {@code in.logprob}, {@code in.ref_logprob} (a
 * {@code (B, T)} matrix, no mask: every entry is valid) and the param {@code kl_penalty} (any verl name, including
 * the straight-through {@code +} forms); outputs {@code out.kld} per token and {@code out.grad_logprob}.
 *
 * <p>The golden gradient is of {@code kld.mean()} over all {@code B * T} entries (param {@code grad_of}), so the
 * engine's per-token d kld / d logprob is divided by {@code B * T} (in double, rounded to float once; engine and
 * reference go through the same division, so their agreement is unaffected).
 *
 * <p>{@code out.kld} and {@code out.grad_logprob} are judged by error analysis ({@link KlBounds}): PASS when the
 * engine is within the derived bound of a double-precision evaluation of verl's expression on the same float32
 * inputs and agrees with verl within the two bounds; TORCH_LESS_ACCURATE when verl is the farther of the two. A
 * case stored in float64 is judged against the expression on its stored inputs
 * ({@link CaseOutputs.Referee#storedInDouble}): rounding both inputs to float32 moves {@code logprob - ref_logprob}
 * by up to half an ulp of each input (about 5e-7 for inputs near -8), a large relative change of every estimator at
 * the {@code +-1e-6} log-ratio specials of the {@code b4t33_wide} scenario, and the engine's bound there includes
 * exactly that move. {@code full} (the exact KL from logits) has no per-token bound here and keeps the fixed
 * tolerances.
 */
public final class KlPenaltyHandler implements CaseHandler {
    /** The verl function this handler runs. */
    public static final String FUNCTION = "verl.trainer.ppo.core_algos.kl_penalty";

    private static final String LOG_PROB = "in.logprob";
    private static final String REF_LOG_PROB = "in.ref_logprob";
    /** Params that describe the case and are not arguments of kl_penalty. */
    private static final String[] DESCRIPTIVE = {"kl_penalty", "grad_of", "verl_literal_call"};

    @Override
    public CaseOutputs run(final GoldenCase golden, final Engine engine) {
        if (!golden.params().hasNonNull("kl_penalty")) {
            throw new IllegalArgumentException("params must name the estimator in 'kl_penalty'");
        }
        // Any other parameter is one this handler does not know: the spec builder names it.
        golden.lossSpec(DESCRIPTIVE).build();
        final KlPenalty kl = KlPenalty.fromVerl(golden.params().get("kl_penalty").asText());
        final int[] bt = golden.matrixShape(LOG_PROB);
        final int[] ref = golden.matrixShape(REF_LOG_PROB);
        if (bt[0] != ref[0] || bt[1] != ref[1]) {
            throw new IllegalArgumentException(REF_LOG_PROB + " has shape [" + ref[0] + ", " + ref[1] + "], but "
                + LOG_PROB + " has [" + bt[0] + ", " + bt[1] + "]");
        }
        final int n = bt[0] * bt[1];
        try (TokenBatch batch = TokenBatch.padded(bt[0], bt[1]).column(Column.LOG_PROB, golden.float32(LOG_PROB))
                 .column(Column.REF_LOG_PROB, golden.float32(REF_LOG_PROB)).build();
             OffHeapArray kld = OffHeapArray.allocate(ElementType.F32, n);
             OffHeapArray grad = OffHeapArray.allocate(ElementType.F32, n)) {
            engine.klPenalty(kl, batch, kld, grad);
            final float[] g = grad.toFloatArray();
            final double entries = n;
            for (int i = 0; i < n; i++) {
                g[i] = (float) (g[i] / entries);
            }
            final boolean f64 = golden.file().info(LOG_PROB).dtype() == Dtype.F64
                || golden.file().info(REF_LOG_PROB).dtype() == Dtype.F64;
            final float[] mask = batch.mask().toFloatArray();
            final CaseOutputs outputs = new CaseOutputs(new CaseFacts(n, false));
            if (kl.estimator() == KlPenalty.Estimator.FULL) {
                return outputs.tokens("out.kld", kld.toFloatArray(), mask, Tolerance.VALUE)
                    .tokens("out.grad_logprob", g, mask, Tolerance.GRADIENT);
            }
            // Judged by error analysis (KlBounds); a float64 case against its stored inputs' values.
            final double[] lp = F32Term.widen(golden.float32(LOG_PROB).toFloatArray());
            final double[] rf = F32Term.widen(golden.float32(REF_LOG_PROB).toFloatArray());
            final double[] lp64 = f64 ? golden.expected(LOG_PROB) : null;
            final double[] rf64 = f64 ? golden.expected(REF_LOG_PROB) : null;
            final CaseOutputs.Referee value = KlBounds.of(kl, lp, rf);
            final CaseOutputs.Referee gradient = KlBounds.gradient(kl, lp, rf, n);
            return outputs.judgedTokens("out.kld", kld.toFloatArray(), mask,
                    f64 ? value.storedInDouble(KlBounds.of(kl, lp64, rf64)) : value, Tolerance.VALUE)
                .judgedTokens("out.grad_logprob", g, mask,
                    f64 ? gradient.storedInDouble(KlBounds.gradient(kl, lp64, rf64, n)) : gradient,
                    Tolerance.GRADIENT);
        }
    }
}
