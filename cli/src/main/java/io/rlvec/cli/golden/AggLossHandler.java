package io.rlvec.cli.golden;

import java.util.Arrays;
import java.util.Map;

import io.rlvec.AggMode;
import io.rlvec.AggResult;
import io.rlvec.ElementType;
import io.rlvec.Engine;
import io.rlvec.LossSpec;
import io.rlvec.OffHeapArray;
import io.rlvec.TokenBatch;

/**
 * {@code agg_loss}: inputs {@code in.loss_mat}, {@code in.loss_mask} and the aggregation params (mode and the
 * global-batch arguments); outputs {@code out.loss} and {@code out.grad_loss_mat} (d loss / d loss_mat).
 *
 * <p>Both outputs are judged by error analysis ({@link #exact}): the harness evaluates verl's agg_loss in double
 * from the same float32 inputs, written from verl's definition of each mode and release (not from the library's
 * aggregation code). The loss is linear in the inputs, {@code loss = sum_t w_t x_t} with w_t the token's weight
 * (its gradient), so
 * <ul>
 *   <li>verl's float32 loss is within {@code (T + B + 4) u sum_t |w_t x_t| + 3 u |loss|} (u = 2^-24) of the
 *       double value, whatever order torch sums in (at most T + B additions of partial sums on any path, and three
 *       roundings of divisions and products);</li>
 *   <li>the engine, which sums in double and rounds once, within 1.5 ulp of the double value (half an ulp of
 *       rounding plus the engines' one-ulp contract on reduced scalars) plus its double sums' error: a loss three
 *       ulp off fails;</li>
 *   <li>each gradient element is the weight: verl's has up to four float32 roundings ({@code 4 u |w_t|}), the
 *       engine's one (half an ulp): two ulp off fails; masked tokens are exactly 0 on both.</li>
 * </ul>
 * A case stored in float64 is judged against verl's expression on the stored values
 * ({@link CaseOutputs.Referee#storedInDouble}). Without a valid token the loss and the gradient are exactly 0 on
 * both sides wherever verl's are finite (verl's token-mean loss is 0/0 there, a documented deviation).
 */
public final class AggLossHandler implements CaseHandler {
    /** The verl function this handler runs. */
    public static final String FUNCTION = "verl.trainer.ppo.core_algos.agg_loss";

    private static final String VALUES = "in.loss_mat";
    private static final String MASK = "in.loss_mask";

    @Override
    public CaseOutputs run(final GoldenCase golden, final Engine engine) {
        final LossSpec spec = golden.lossSpec().build();
        final int[] values = golden.matrixShape(VALUES);
        final int[] mask = golden.matrixShape(MASK);
        if (!Arrays.equals(values, mask)) {
            throw new IllegalArgumentException(VALUES + " has shape " + Arrays.toString(values) + ", but " + MASK
                + " has " + Arrays.toString(mask));
        }
        try (TokenBatch batch = golden.paddedBatch(MASK, Map.of());
             OffHeapArray grad = OffHeapArray.allocate(ElementType.F32, batch.numTokens())) {
            final AggResult r = new AggResult();
            engine.aggLoss(spec, batch, golden.float32(VALUES), grad, r);

            final CaseFacts facts = golden.facts(MASK, VALUES);
            final Deviation[] lossDeviations = spec.lossAggMode() == AggMode.TOKEN_MEAN
                ? new Deviation[] {Deviation.NO_VALID_TOKEN}
                : new Deviation[] {Deviation.NO_VALID_TOKEN, Deviation.MASKED_NONFINITE_SEQ_MEAN};
            final float[] x = golden.float32(VALUES).toFloatArray();
            final float[] m = batch.mask().toFloatArray();
            Exact exact = exact(spec, F32Term.widen(x), m, values[0], values[1]);
            if (exact != null && exact.loss() != null
                && golden.file().info(VALUES).dtype() == io.rlvec.cli.io.Dtype.F64) {
                final Exact stored = exact(spec, golden.expected(VALUES), m, values[0], values[1]);
                exact = stored == null || stored.loss() == null ? null
                    : new Exact(exact.loss().storedInDouble(stored.loss()), exact.gradient());
            }
            final CaseOutputs out = new CaseOutputs(facts);
            if (exact == null) {
                return out.scalar("out.loss", r.loss(), Tolerance.SCALAR, lossDeviations)
                    .tokens("out.grad_loss_mat", grad.toFloatArray(), m, Tolerance.GRADIENT,
                        Deviation.NO_VALID_TOKEN, Deviation.MASKED_NONFINITE_GRADIENT);
            }
            if (exact.loss() == null) {
                out.scalar("out.loss", r.loss(), Tolerance.SCALAR, lossDeviations);
            } else {
                out.judgedScalar("out.loss", r.loss(), exact.loss(), Tolerance.SCALAR, lossDeviations);
            }
            return out.judgedTokens("out.grad_loss_mat", grad.toFloatArray(), m, exact.gradient(),
                Tolerance.GRADIENT, Deviation.NO_VALID_TOKEN, Deviation.MASKED_NONFINITE_GRADIENT);
        }
    }

    /** The judged loss (null where verl's is 0/0: no valid token) and gradient. */
    record Exact(CaseOutputs.Referee loss, CaseOutputs.Referee gradient) {
    }

    private static final double U = 0x1p-24;

    /**
     * d loss / d x of verl's agg_loss for each element (0 on masked ones), as verl's expression for the mode and
     * release defines the loss; shared with the handlers whose losses go through agg_loss.
     *
     * @param mask the mask, row-major (b, t), non-zero = valid.
     * @return the weights, or null when no token is valid.
     */
    static double[] weights(final LossSpec spec, final float[] mask, final int b, final int t) {
        final int dp = spec.dpSize();
        final int[] count = new int[b];
        int tokens = 0;
        int rows = 0;
        for (int i = 0; i < b; i++) {
            for (int j = 0; j < t; j++) {
                count[i] += mask[i * t + j] != 0 ? 1 : 0;
            }
            tokens += count[i];
            rows += count[i] > 0 ? 1 : 0;
        }
        final double seqDenominator = spec.globalBatchSize() != LossSpec.UNSET ? spec.globalBatchSize() : rows;
        final double scaleFactor = Double.isNaN(spec.lossScaleFactor()) ? t : spec.lossScaleFactor();
        final boolean jan = spec.release() == io.rlvec.VerlRelease.V2026_01;
        final double[] w = new double[b * t];
        for (int i = 0; i < b; i++) {
            // d loss / d x for a valid token of row i, as verl's expression for the mode defines the loss.
            final double weight = switch (spec.lossAggMode()) {
                case TOKEN_MEAN -> (double) dp / (spec.batchNumTokens() != LossSpec.UNSET ? spec.batchNumTokens()
                    : tokens);
                case TOKEN_SUM -> dp;
                case SEQ_MEAN_TOKEN_SUM -> dp / seqDenominator;
                // verl divides by (count + 1e-8) in float32, which is count for count >= 1.
                case SEQ_MEAN_TOKEN_MEAN -> dp / seqDenominator / count[i];
                // 2026-01: sum(seq_losses) / scale; 2026-08: the seq-mean-token-sum over the scale.
                case SEQ_MEAN_TOKEN_SUM_NORM -> jan ? 1.0 / scaleFactor : dp / seqDenominator / scaleFactor;
            };
            for (int j = 0; j < t; j++) {
                w[i * t + j] = mask[i * t + j] != 0 ? weight : 0.0;
            }
        }
        return tokens == 0 ? null : w;
    }

    /**
     * verl's agg_loss in double from the given inputs (the float32 values, or a float64 case's stored ones; see the
     * class comment for the bounds).
     *
     * @param x    the loss matrix, row-major (b, t).
     * @param mask the mask, non-zero = valid.
     * @return the referees (without a valid token, the loss and the gradient exactly 0 on both sides wherever
     *     verl's are finite), or null where there is nothing to judge (a valid value not finite).
     */
    static Exact exact(final LossSpec spec, final double[] x, final float[] mask, final int b, final int t) {
        final double[] w = weights(spec, mask, b, t);
        if (w == null) {
            // No valid token: a sum over none, exactly 0 wherever verl's value is finite (verl's 0 / 0 is the
            // documented NO_VALID_TOKEN deviation).
            final double[] zero = new double[mask.length];
            final double[] one = new double[1];
            return new Exact(new CaseOutputs.Referee(one, one, one, true),
                new CaseOutputs.Referee(zero, zero, zero, true));
        }
        double loss = 0;
        double magnitude = 0;
        for (int k = 0; k < w.length; k++) {
            if (w[k] != 0 || mask[k] != 0) {
                if (!Double.isFinite(x[k]) || !Double.isFinite(w[k])) {
                    return null;
                }
                loss += w[k] * x[k];
                magnitude += Math.abs(w[k] * x[k]);
            }
        }
        if (!Double.isFinite(loss)) {
            return null;
        }
        // Proven bounds (the Referee is rigorous): verl beyond them has not evaluated agg_loss on these inputs.
        final double verlLoss = (t + b + 4) * U * magnitude + 3 * U * Math.abs(loss);
        // The engine rounds once from double (half an ulp) and may be one more ulp off (the engines' contract on
        // reduced scalars); its gradient rounds once.
        final double engineLoss = 1.5 * Math.ulp((float) loss) + (w.length + 4) * 0x1p-52 * magnitude;
        final double[] gv = new double[w.length];
        final double[] ge = new double[w.length];
        for (int k = 0; k < w.length; k++) {
            gv[k] = 4 * U * Math.abs(w[k]);
            ge[k] = w[k] == 0 ? 0 : 0.5 * Math.ulp((float) w[k]) + 0x1p-50 * Math.abs(w[k]);
        }
        return new Exact(new CaseOutputs.Referee(new double[] {loss}, new double[] {verlLoss},
            new double[] {engineLoss}, true), new CaseOutputs.Referee(w, gv, ge, true));
    }
}
