package io.rlvec.cli.golden;

import com.fasterxml.jackson.databind.JsonNode;
import io.rlvec.AdvantageEstimator;
import io.rlvec.AdvantageInputs;
import io.rlvec.AdvantageSpec;
import io.rlvec.Column;
import io.rlvec.ElementType;
import io.rlvec.Engine;
import io.rlvec.OffHeapArray;
import io.rlvec.TokenBatch;
import io.rlvec.VerlRelease;
import java.util.Iterator;
import java.util.LinkedHashMap;
import java.util.Map;

/**
 * verl's advantage estimators ({@code core_algos.compute_*_advantage*}): inputs {@code in.token_level_rewards},
 * {@code in.response_mask} (a {@code (B, T)} matrix), plus {@code in.values} (gae), {@code in.index} (int64 group
 * ids) or {@code in.reward_baselines} (remax); params by verl's names ({@code gamma}, {@code lam},
 * {@code epsilon}, {@code norm_adv_by_std_in_grpo}, and grpo_passk's and reinforce_plus_plus's {@code config_*}
 * forms of the algorithm config); the release from the file's {@code verl_commit}. Outputs
 * {@code out.advantages} and {@code out.returns}.
 *
 * <p>The outcome estimators (grpo, grpo_vectorized, grpo_passk, rloo, rloo_vectorized, opo, gpg,
 * reinforce_plus_plus_baseline, gdpo) and the recurrences (gae, reinforce_plus_plus, remax) are judged by derived
 * bounds ({@link AdvantageBounds}): the engine within its bound of a double-precision evaluation on the same
 * inputs, verl within a float32 estimate (the same float32 bound for the recurrences, which both evaluate in
 * float32). A group whose scores are all equal gives exactly 0; verl's float32 mean can leave a residue there that
 * epsilon divides, which that estimate covers. The optimal-token baselines likewise
 * ({@link AdvantageBounds#tokenBaseline}). A case no bound covers (an input not finite) keeps relative 1e-5 with
 * an absolute floor of 1e-5.
 */
public final class AdvantageHandler implements CaseHandler {
    /** verl's function of each estimator. */
    public static final Map<String, AdvantageEstimator> FUNCTIONS = functions();

    /** The absolute floor of the advantages and returns (see the class comment). */
    public static final double ABSOLUTE_FLOOR = 1e-5;

    private static final String PREFIX = "verl.trainer.ppo.core_algos.";

    private static Map<String, AdvantageEstimator> functions() {
        final Map<String, AdvantageEstimator> m = new LinkedHashMap<>();
        m.put(PREFIX + "compute_gae_advantage_return", AdvantageEstimator.GAE);
        m.put(PREFIX + "compute_grpo_outcome_advantage", AdvantageEstimator.GRPO);
        m.put(PREFIX + "compute_grpo_vectorized_outcome_advantage", AdvantageEstimator.GRPO_VECTORIZED);
        m.put(PREFIX + "compute_grpo_passk_outcome_advantage", AdvantageEstimator.GRPO_PASSK);
        m.put(PREFIX + "compute_reinforce_plus_plus_outcome_advantage", AdvantageEstimator.REINFORCE_PLUS_PLUS);
        m.put(PREFIX + "compute_reinforce_plus_plus_baseline_outcome_advantage",
            AdvantageEstimator.REINFORCE_PLUS_PLUS_BASELINE);
        m.put(PREFIX + "compute_remax_outcome_advantage", AdvantageEstimator.REMAX);
        m.put(PREFIX + "compute_rloo_outcome_advantage", AdvantageEstimator.RLOO);
        m.put(PREFIX + "compute_rloo_vectorized_outcome_advantage", AdvantageEstimator.RLOO_VECTORIZED);
        m.put(PREFIX + "compute_opo_outcome_advantage", AdvantageEstimator.OPO);
        m.put(PREFIX + "compute_gpg_outcome_advantage", AdvantageEstimator.GPG);
        m.put(PREFIX + "compute_optimal_token_baseline_advantage", AdvantageEstimator.OPTIMAL_TOKEN_BASELINE);
        m.put(PREFIX + "compute_gdpo_outcome_advantage", AdvantageEstimator.GDPO);
        m.put(PREFIX + "compute_multi_turn_optimal_token_baseline_advantage",
            AdvantageEstimator.TIR_OPTIMAL_TOKEN_BASELINE);
        return Map.copyOf(m);
    }

    private final AdvantageEstimator estimator;

    /** @param estimator the estimator this handler's function computes. */
    public AdvantageHandler(final AdvantageEstimator estimator) {
        this.estimator = estimator;
    }

    /** @return the spec a case asks for: its params by verl's names, its release from verl_commit. */
    static AdvantageSpec spec(final GoldenCase golden, final AdvantageEstimator estimator) {
        final AdvantageSpec.Builder b = AdvantageSpec.builder(estimator).release(golden.release());
        final Iterator<Map.Entry<String, JsonNode>> it = golden.params().fields();
        while (it.hasNext()) {
            final Map.Entry<String, JsonNode> e = it.next();
            final String key = e.getKey().startsWith("config_") ? e.getKey().substring("config_".length()) : e.getKey();
            if (GoldenCase.DOCUMENTATION_PARAMS.contains(key) || "rollout_is_weights".equals(key)
                || "config".equals(key)) {
                continue;
            }
            final JsonNode v = e.getValue();
            if (v.isNull()) {
                b.set(key, null);
                continue;
            }
            if (v.isArray()) {
                final java.util.List<Object> list = new java.util.ArrayList<>();
                v.forEach(x -> list.add(x.isNumber() ? (Object) x.asDouble() : x.asText()));
                b.set(key, list);
                continue;
            }
            b.set(key, v.isBoolean() ? (Object) v.asBoolean() : v.isNumber() ? (Object) v.asDouble() : v.asText());
        }
        return b.build();
    }

    @Override
    public CaseOutputs run(final GoldenCase golden, final Engine engine) {
        final AdvantageSpec spec = spec(golden, estimator);
        final String maskName = "in.response_mask";
        final Map<Column, String> columns = new LinkedHashMap<>();
        columns.put(Column.TOKEN_LEVEL_REWARDS, "in.token_level_rewards");
        if (estimator == AdvantageEstimator.GAE) {
            columns.put(Column.VALUES, "in.values");
        }
        if (golden.has("in.sum_pi_squared")) {
            columns.put(Column.OLD_LOG_PROB, "in.old_log_probs");
            columns.put(Column.SUM_PI_SQUARED, "in.sum_pi_squared");
        }
        if (golden.has("in.rollout_is_weights")) {
            columns.put(Column.ROLLOUT_IS_WEIGHTS, "in.rollout_is_weights");
        }
        final int[] bt = golden.matrixShape(maskName);
        final int n = bt[0] * bt[1];
        try (TokenBatch batch = golden.paddedBatch(maskName, columns);
             OffHeapArray index = golden.has("in.index") ? longs(golden.expected("in.index")) : null;
             OffHeapArray adv = OffHeapArray.allocate(ElementType.F32, n);
             OffHeapArray ret = OffHeapArray.allocate(ElementType.F32, n)) {
            final AdvantageInputs inputs = new AdvantageInputs().index(index);
            if (golden.has("in.reward_baselines")) {
                inputs.rewardBaselines(golden.float32("in.reward_baselines"));
            }
            for (final String name : golden.file().names()) {
                if (name.startsWith("in.reward.")) {
                    inputs.rewardComponent(name.substring("in.reward.".length()), golden.float32(name));
                }
            }
            engine.advantages(spec, batch, inputs, adv, ret);
            final Tolerance tolerance = Tolerance.VALUE.orAbsolute(ABSOLUTE_FLOOR);
            final float[] mask = batch.mask().toFloatArray();
            final CaseOutputs out = new CaseOutputs(golden.facts(maskName, "in.token_level_rewards"));
            if (AdvantageBounds.covers(estimator)) {
                final AdvantageBounds.Bounded exact = AdvantageBounds.outcome(spec,
                    golden.expected("in.token_level_rewards"), golden.expected(maskName),
                    golden.has("in.index") ? golden.expected("in.index") : new double[bt[0]],
                    components(golden, spec), bt[0], bt[1]);
                if (exact != null) {
                    return out.judgedTokens("out.advantages", adv.toFloatArray(), mask, exact.referee(), tolerance)
                        .judgedTokens("out.returns", ret.toFloatArray(), mask, exact.referee(), tolerance);
                }
            }
            if (AdvantageBounds.coversRecurrence(estimator)) {
                final CaseOutputs.Referee[] exact = recurrence(golden, spec, bt);
                if (exact != null) {
                    return out.judgedTokens("out.advantages", adv.toFloatArray(), mask, exact[0], tolerance)
                        .judgedTokens("out.returns", ret.toFloatArray(), mask, exact[1], tolerance);
                }
            }
            if (AdvantageBounds.coversTokenBaseline(estimator)) {
                final AdvantageBounds.Bounded[] exact = AdvantageBounds.tokenBaseline(spec,
                    golden.expected("in.token_level_rewards"), golden.expected("in.old_log_probs"),
                    golden.expected("in.sum_pi_squared"),
                    golden.has("in.rollout_is_weights") ? golden.expected("in.rollout_is_weights") : null,
                    golden.expected(maskName), golden.expected("in.index"), bt[0], bt[1]);
                if (exact != null) {
                    return out.judgedTokens("out.advantages", adv.toFloatArray(), mask, exact[0].referee(),
                            tolerance)
                        .judgedTokens("out.returns", ret.toFloatArray(), mask, exact[1].referee(), tolerance);
                }
            }
            return out.tokens("out.advantages", adv.toFloatArray(), mask, tolerance)
                .tokens("out.returns", ret.toFloatArray(), mask, tolerance);
        }
    }

    /**
     * The recurrences' referees ({@link AdvantageBounds#recurrence}) on the float32 inputs the engines read, and for
     * a case stored in float64 against the same recurrence on the stored values
     * ({@link CaseOutputs.Referee#storedInDouble}).
     */
    private static CaseOutputs.Referee[] recurrence(final GoldenCase golden, final AdvantageSpec spec,
                                                    final int[] bt) {
        final String[] names = {"in.token_level_rewards", "in.values", "in.reward_baselines"};
        final double[][] f32 = new double[names.length][];
        final double[][] stored = new double[names.length][];
        boolean f64 = false;
        for (int k = 0; k < names.length; k++) {
            if (golden.has(names[k])) {
                f32[k] = F32Term.widen(golden.float32(names[k]).toFloatArray());
                stored[k] = golden.expected(names[k]);
                f64 |= golden.file().info(names[k]).dtype() == io.rlvec.cli.io.Dtype.F64;
            }
        }
        final double[] mask = golden.expected("in.response_mask");
        final AdvantageBounds.Bounded[] onFloat32 = AdvantageBounds.recurrence(spec, f32[0], f32[1], f32[2], mask,
            bt[0], bt[1]);
        if (onFloat32 == null) {
            return null;
        }
        final AdvantageBounds.Bounded[] onStored = f64 ? AdvantageBounds.recurrence(spec, stored[0], stored[1],
            stored[2], mask, bt[0], bt[1]) : null;
        if (f64 && onStored == null) {
            return null;
        }
        final CaseOutputs.Referee[] r = new CaseOutputs.Referee[2];
        for (int k = 0; k < 2; k++) {
            r[k] = f64 ? onFloat32[k].referee().storedInDouble(onStored[k].referee()) : onFloat32[k].referee();
        }
        return r;
    }

    /** gdpo's reward components in the spec's key order (their stored values), or null where it names none. */
    private static double[][] components(final GoldenCase golden, final AdvantageSpec spec) {
        if (spec.estimator() != AdvantageEstimator.GDPO || spec.gdpoRewardKeys() == null) {
            return null;
        }
        final java.util.List<String> keys = spec.gdpoRewardKeys();
        final double[][] c = new double[keys.size()][];
        for (int k = 0; k < c.length; k++) {
            c[k] = golden.expected("in.reward." + keys.get(k));
        }
        return c;
    }

    private static OffHeapArray longs(final double[] values) {
        final long[] ids = new long[values.length];
        for (int i = 0; i < ids.length; i++) {
            ids[i] = (long) values[i];
        }
        return OffHeapArray.ofLongs(ids);
    }
}
