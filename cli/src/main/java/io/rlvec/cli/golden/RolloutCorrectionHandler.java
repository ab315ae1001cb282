package io.rlvec.cli.golden;

import com.fasterxml.jackson.databind.JsonNode;
import io.rlvec.Column;
import io.rlvec.ElementType;
import io.rlvec.Engine;
import io.rlvec.OffHeapArray;
import io.rlvec.RolloutCorrectionResult;
import io.rlvec.RolloutCorrectionSpec;
import io.rlvec.TokenBatch;
import java.util.EnumMap;
import java.util.Map;

/**
 * {@code compute_rollout_correction_and_rejection_mask}: inputs {@code in.old_log_prob}, {@code in.rollout_log_prob},
 * {@code in.response_mask}, params {@code rollout_is}, {@code rollout_is_threshold},
 * {@code rollout_is_batch_normalize}, {@code rollout_rs}, {@code rollout_rs_threshold}; outputs
 * {@code out.rollout_is_weights} (when IS is on), {@code out.response_mask} (the rejection mask, exact) and every
 * {@code out.metric.rollout_corr/*}. The weights, the mask and the metrics are judged by their derived error bounds
 * ({@link RolloutCorrectionBounds#outputs}, {@link RolloutCorrectionBounds#metrics}), standard deviations and
 * effective sample size included; a case stored in float64 against the expression on its stored values
 * ({@link CaseOutputs.Referee#storedInDouble}).
 */
public final class RolloutCorrectionHandler implements CaseHandler {
    /** The verl function this handler runs. */
    public static final String FUNCTION =
        "verl.trainer.ppo.rollout_corr_helper.compute_rollout_correction_and_rejection_mask";
    /** The prefix of verl's metric tensors. */
    public static final String METRIC = "out.metric.";

    private static final String MASK = "in.response_mask";
    /** The mask is 0/1 either way: it must match exactly. */
    private static final Tolerance EXACT = new Tolerance(false, 0);

    @Override
    public CaseOutputs run(final GoldenCase golden, final Engine engine) {
        final RolloutCorrectionSpec spec = spec(golden.params(), golden.release());
        final Map<Column, String> columns = new EnumMap<>(Column.class);
        columns.put(Column.OLD_LOG_PROB, "in.old_log_prob");
        columns.put(Column.ROLLOUT_LOG_PROB, "in.rollout_log_prob");
        try (TokenBatch batch = golden.paddedBatch(MASK, columns);
             OffHeapArray weights = OffHeapArray.allocate(ElementType.F32, batch.numTokens());
             OffHeapArray mask = OffHeapArray.allocate(ElementType.F32, batch.numTokens())) {
            final RolloutCorrectionResult r = new RolloutCorrectionResult();
            engine.rolloutCorrection(spec, batch, weights, mask, r);
            final CaseOutputs out = new CaseOutputs(golden.facts(MASK, columns.values().toArray(String[]::new)));
            final float[] m = batch.mask().toFloatArray();
            final int[] bt = golden.matrixShape(MASK);
            final double[] train = F32Term.widen(batch.column(Column.OLD_LOG_PROB).toFloatArray());
            final double[] roll = F32Term.widen(batch.column(Column.ROLLOUT_LOG_PROB).toFloatArray());
            CaseOutputs.Referee[] tensors = RolloutCorrectionBounds.outputs(spec, train, roll, m, bt);
            Map<String, CaseOutputs.Referee> derived = RolloutCorrectionBounds.metrics(spec, train, roll, m, bt);
            if (golden.file().info("in.old_log_prob").dtype() == io.rlvec.cli.io.Dtype.F64
                || golden.file().info("in.rollout_log_prob").dtype() == io.rlvec.cli.io.Dtype.F64) {
                // verl computed on the stored float64 values: judged against the expression on them.
                final double[] train64 = golden.expected("in.old_log_prob");
                final double[] roll64 = golden.expected("in.rollout_log_prob");
                tensors = stored(tensors, RolloutCorrectionBounds.outputs(spec, train64, roll64, m, bt));
                derived = stored(derived, RolloutCorrectionBounds.metrics(spec, train64, roll64, m, bt));
            }
            if (spec.hasIs()) {
                if (tensors != null && tensors[0] != null) {
                    out.judgedTokens("out.rollout_is_weights", weights.toFloatArray(), m, tensors[0],
                        Tolerance.VALUE);
                } else {
                    out.tensor("out.rollout_is_weights", weights.toFloatArray(), Tolerance.VALUE);
                }
            }
            if (tensors != null) {
                out.judgedTokens("out.response_mask", mask.toFloatArray(), m, tensors[1], EXACT);
            } else {
                out.tensor("out.response_mask", mask.toFloatArray(), EXACT);
            }
            return metrics(out, r, spec, out.facts().validTokens(), derived);
        }
    }

    /** The float64 case's referees, element by element ({@link CaseOutputs.Referee#storedInDouble}). */
    private static CaseOutputs.Referee[] stored(final CaseOutputs.Referee[] f32, final CaseOutputs.Referee[] f64) {
        if (f32 == null || f64 == null) {
            return null;
        }
        final CaseOutputs.Referee[] r = new CaseOutputs.Referee[f32.length];
        for (int i = 0; i < r.length; i++) {
            r[i] = CaseOutputs.Referee.storedInDouble(f32[i], f64[i]);
        }
        return r;
    }

    private static Map<String, CaseOutputs.Referee> stored(final Map<String, CaseOutputs.Referee> f32,
                                                           final Map<String, CaseOutputs.Referee> f64) {
        final Map<String, CaseOutputs.Referee> r = new java.util.LinkedHashMap<>();
        f32.forEach((k, v) -> {
            if (f64.containsKey(k)) {
                r.put(k, v.storedInDouble(f64.get(k)));
            }
        });
        return r;
    }

    /**
     * Adds every metric of the result as {@code out.metric.<name>}: judged by its derived bound where
     * {@code derived} holds one ({@link RolloutCorrectionBounds#metrics}), else relative 1e-5. Where a case has no
     * derived bounds (2026-01, float64, a non-finite input), the IS/RS "std"
     * metrics are {@code sqrt(max(E[c^2] - E[c]^2, 0))} of a statistic clamped to {@code [lo, hi]}: in float32
     * (verl) the difference cancels, so a small std carries an absolute error up to {@code sqrt(delta)} with
     * {@code delta = 2 n 2^-24 M^2} ({@code n} valid tokens, {@code M = max(|lo|, |hi|)}, a bound of float32
     * summation of {@code n} terms of at most {@code M^2}). Where verl is farther than that from the engine's
     * double-precision value and the engine is within 1e-5 of it, the check is a TORCH_LESS_ACCURATE deviation.
     *
     * @param derived the judged metrics' referees by full name (may be empty).
     */
    static CaseOutputs metrics(final CaseOutputs out, final RolloutCorrectionResult r,
                               final RolloutCorrectionSpec spec, final long validTokens,
                               final Map<String, CaseOutputs.Referee> derived) {
        for (final Map.Entry<String, Double> e : r.asMap().entrySet()) {
            final String key = e.getKey();
            final double bandEdge = stdBand(spec, key);
            if (derived.containsKey(key)) {
                out.judgedScalar(METRIC + key, e.getValue().floatValue(), derived.get(key), Tolerance.SCALAR);
            } else if (Double.isNaN(bandEdge)) {
                out.scalar(METRIC + key, e.getValue().floatValue(), Tolerance.SCALAR);
            } else {
                final double delta = 2.0 * validTokens * Math.ulp(1.0f) / 2 * bandEdge * bandEdge;
                out.refereed(METRIC + key, new float[] {e.getValue().floatValue()},
                    new CaseOutputs.Referee(new double[] {e.getValue()}, new double[] {Math.sqrt(delta)}),
                    Tolerance.SCALAR, null, Deviation.TORCH_LESS_ACCURATE);
            }
        }
        return out;
    }

    /** @return M, the largest magnitude of the clamp band of a clamped-std metric; NaN for any other metric. */
    private static double stdBand(final RolloutCorrectionSpec spec, final String key) {
        final String name = key.substring(RolloutCorrectionResult.PREFIX.length());
        if (name.equals("rollout_is_std")) {
            return spec.isUpper();
        }
        for (final RolloutCorrectionSpec.RsOption o : spec.rsOptions()) {
            if (name.equals("rollout_rs_" + o.name() + "_std")) {
                return Math.max(Math.abs(o.lowerStat()), Math.abs(o.upperStat()));
            }
        }
        return Double.NaN;
    }

    /**
     * @param params  an object with verl's rollout_correction keys (others are ignored).
     * @param release the verl release of the file (its IS metrics differ between releases).
     * @return the spec.
     */
    static RolloutCorrectionSpec spec(final JsonNode params, final io.rlvec.VerlRelease release) {
        final RolloutCorrectionSpec.Builder b = RolloutCorrectionSpec.builder().release(release);
        for (final String key : new String[] {"rollout_is", "rollout_is_threshold", "rollout_is_batch_normalize",
            "rollout_rs", "rollout_rs_threshold"}) {
            final JsonNode v = params.get(key);
            if (v != null) {
                b.set(key, v.isNull() ? null : v.isBoolean() ? v.booleanValue() : v.isNumber() ? v.doubleValue()
                    : v.asText());
            }
        }
        return b.build();
    }
}
