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
 * <p>Tolerance: relative 1e-5 with an absolute floor of 1e-5. Scores are float32 sums that verl and the engine
 * round alike; verl's group means and variances are float32 and the engine's double, so an advantage of order
 * one carries verl's float32 statistics error, a few units of 2^-24 times the group's scale, divided by its std.
 * Near zero (s close to the group mean) that error is absolute, not relative, hence the floor. A group whose
 * scores are all equal gives the engine exactly 0; verl's float32 mean can leave a residue there that epsilon
 * divides ({@link Deviation#TORCH_LESS_ACCURATE}, refereed by the exact value 0).
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
            final boolean gdpoFallback = estimator == AdvantageEstimator.GDPO && spec.gdpoRewardKeys() == null;
            if ((estimator == AdvantageEstimator.GRPO || estimator == AdvantageEstimator.GRPO_VECTORIZED
                || gdpoFallback) && spec.normAdvByStd()) {
                final CaseOutputs.Referee grpo = grpoReferee(golden, spec, bt);
                final CaseOutputs.Referee referee = gdpoFallback ? whitened(grpo, golden.expected(maskName)) : grpo;
                return out.refereed("out.advantages", adv.toFloatArray(), referee, tolerance, null,
                        Deviation.TORCH_LESS_ACCURATE)
                    .refereed("out.returns", ret.toFloatArray(), referee, tolerance, null,
                        Deviation.TORCH_LESS_ACCURATE);
            }
            return out.tokens("out.advantages", adv.toFloatArray(), mask, tolerance)
                .tokens("out.returns", ret.toFloatArray(), mask, tolerance);
        }
    }

    /**
     * The harness's double-precision GRPO advantage of every token, from the float32 rewards (scores summed in
     * double, group mean and unbiased std in double, verl's singleton and variance-floor rules), and the float32
     * budget of verl's evaluation: its mean and std carry up to about n * 2^-24 * max|s| each (n = group size,
     * float32 sums), which the division by (std + eps) amplifies: budget = 8 * n * 2^-24 * max|s| / (std + eps).
     */
    static CaseOutputs.Referee grpoReferee(final GoldenCase golden, final AdvantageSpec spec, final int[] bt) {
        final double[] r = golden.expected("in.token_level_rewards");
        final double[] m = golden.expected("in.response_mask");
        final double[] ids = golden.expected("in.index");
        final int b = bt[0];
        final int t = bt[1];
        final double[] s = new double[b];
        for (int i = 0; i < b; i++) {
            double acc = 0;
            for (int k = 0; k < t; k++) {
                acc += (float) r[i * t + k];
            }
            s[i] = (float) acc;
        }
        final double floor = spec.estimator() == AdvantageEstimator.GRPO_VECTORIZED
            && spec.release() == VerlRelease.V2026_01 ? spec.epsilon() : 0.0;
        final double[] exact = new double[b * t];
        final double[] budget = new double[b * t];
        for (int i = 0; i < b; i++) {
            int n = 0;
            double sum = 0;
            double maxAbs = 0;
            for (int j = 0; j < b; j++) {
                if (ids[j] == ids[i]) {
                    n++;
                    sum += s[j];
                    maxAbs = Math.max(maxAbs, Math.abs(s[j]));
                }
            }
            final double mean = n > 1 ? sum / n : 0.0;
            double sq = 0;
            for (int j = 0; j < b; j++) {
                if (ids[j] == ids[i]) {
                    sq += (s[j] - mean) * (s[j] - mean);
                }
            }
            final double std = n > 1 ? Math.sqrt(Math.max(sq / (n - 1), floor)) : 1.0;
            final double a = (s[i] - mean) / (std + spec.epsilon());
            final double tol = 8.0 * n * Math.ulp(1.0f) / 2 * maxAbs / (std + spec.epsilon());
            for (int k = 0; k < t; k++) {
                exact[i * t + k] = a * m[i * t + k];
                budget[i * t + k] = tol;
            }
        }
        return new CaseOutputs.Referee(exact, budget);
    }

    /**
     * The referee of gdpo without reward components: the double GRPO values whitened in double over the mask
     * (times the mask), with verl's per-token GRPO budget D carried through the whitening to first order:
     * budget = 3 * D_max * rstd * (1 + |z|), z the exact whitened value (the mean moves by at most D_max, the
     * variance by about 2 |x - mean| D_max).
     */
    static CaseOutputs.Referee whitened(final CaseOutputs.Referee grpo, final double[] mask) {
        final double[] x = grpo.exact();
        double n = 0;
        double sum = 0;
        double dmax = 0;
        for (int t = 0; t < x.length; t++) {
            if (mask[t] != 0) {
                n++;
                sum += x[t];
                dmax = Math.max(dmax, grpo.budgetAt(t));
            }
        }
        final double mean = sum / (n + 1e-8);
        double sq = 0;
        for (int t = 0; t < x.length; t++) {
            if (mask[t] != 0) {
                sq += (x[t] - mean) * (x[t] - mean);
            }
        }
        final double var = sq / (n + 1e-8) * (n / (n - 1));
        final double rstd = 1 / Math.sqrt(var + 1e-8);
        final double[] exact = new double[x.length];
        final double[] budget = new double[x.length];
        for (int t = 0; t < x.length; t++) {
            final double z = (x[t] - mean) * rstd;
            exact[t] = z * mask[t];
            budget[t] = 3 * dmax * rstd * (1 + Math.abs(z));
        }
        return new CaseOutputs.Referee(exact, budget);
    }

    private static OffHeapArray longs(final double[] values) {
        final long[] ids = new long[values.length];
        for (int i = 0; i < ids.length; i++) {
            ids[i] = (long) values[i];
        }
        return OffHeapArray.ofLongs(ids);
    }
}
