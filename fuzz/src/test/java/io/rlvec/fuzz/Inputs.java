package io.rlvec.fuzz;

import java.util.ArrayList;
import java.util.List;

import com.code_intelligence.jazzer.api.FuzzedDataProvider;

import io.rlvec.AggMode;
import io.rlvec.Column;
import io.rlvec.ElementType;
import io.rlvec.Engine;
import io.rlvec.KlPenalty;
import io.rlvec.Logits;
import io.rlvec.LossSpec;
import io.rlvec.OffHeapArray;
import io.rlvec.PolicyLossMode;
import io.rlvec.TokenBatch;
import io.rlvec.VerlRelease;
import io.rlvec.engine.VectorEngine;
import io.rlvec.reference.ReferenceEngine;
import io.rlvec.testing.Ulp;

/**
 * Turns fuzzer bytes into engine arguments (small shapes, hostile values and lengths, every mode), and holds the
 * outcome rules every target shares: only documented exceptions, the same accept/refuse decision from the engine
 * and the reference, and the parity contract's tolerances.
 */
final class Inputs {
    static final Engine REFERENCE = new ReferenceEngine();
    static final Engine ONE = new VectorEngine(1);
    static final Engine TWO = new VectorEngine(2);

    static final String[] KL_NAMES = {"kl", "k1", "abs", "mse", "k2", "low_var_kl", "k3", "full", "k1+", "abs+",
        "k2+", "low_var_kl+", "k3+", "full+"};
    private static final float[] SPECIALS = {Float.NaN, Float.POSITIVE_INFINITY, Float.NEGATIVE_INFINITY, 0f, -0f,
        Float.MIN_VALUE, -Float.MIN_VALUE, Float.MAX_VALUE, -Float.MAX_VALUE, Float.MIN_NORMAL, 1e-30f, -1e-30f, 88.7f,
        -88.7f, 1e20f, -1e20f, 1f, -1f};

    private Inputs() {
    }

    /** @return the vector engine under test: one thread or two (blocked kernels on a worker). */
    static Engine vector(final FuzzedDataProvider d) {
        return d.consumeBoolean() ? TWO : ONE;
    }

    /** @return a float: mostly moderate, sometimes a special value, sometimes any bit pattern. */
    static float value(final FuzzedDataProvider d) {
        final int k = d.consumeInt(0, 15);
        if (k == 0) {
            return Float.intBitsToFloat(d.consumeInt());
        }
        if (k == 1) {
            return SPECIALS[d.consumeInt(0, SPECIALS.length - 1)];
        }
        return d.consumeRegularFloat(-6f, 6f);
    }

    /** @return a double parameter: mostly from {@code usual}, sometimes any double (NaN, infinities, negatives). */
    static double param(final FuzzedDataProvider d, final double... usual) {
        if (d.consumeInt(0, 11) == 0) {
            return d.consumeDouble();
        }
        return usual[d.consumeInt(0, usual.length - 1)];
    }

    /** @return 0 mostly, else a small shortfall or excess for a buffer length. */
    static int delta(final FuzzedDataProvider d) {
        final int k = d.consumeInt(0, 15);
        return k == 0 ? -1 : k == 1 ? -d.consumeInt(2, 9) : k == 2 ? d.consumeInt(1, 9) : 0;
    }

    /** @return a buffer of {@code n + delta} elements (at least 0) of {@code type}, filled with fuzzed values. */
    static OffHeapArray filled(final FuzzedDataProvider d, final Guarded g, final ElementType type, final long n) {
        final OffHeapArray a = g.alloc(type, Math.max(0, n));
        for (long i = 0; i < a.length(); i++) {
            if (type == ElementType.I32) {
                a.setInt(i, d.consumeInt());
            } else {
                a.setFloat(i, value(d));
            }
        }
        return a;
    }

    /** @return a type for a float column: F32 almost always. */
    static ElementType floatType(final FuzzedDataProvider d) {
        final int k = d.consumeInt(0, 31);
        return k == 0 ? ElementType.BF16 : k == 1 ? ElementType.I32 : ElementType.F32;
    }

    /** @return a response-mask buffer: 0/1 mostly, any float sometimes (nonzero counts as valid). */
    static OffHeapArray mask(final FuzzedDataProvider d, final Guarded g, final long n) {
        final OffHeapArray m = g.alloc(floatType(d), Math.max(0, n));
        if (m.type() == ElementType.I32) {
            return m;
        }
        final boolean wild = d.consumeInt(0, 7) == 0;
        for (long i = 0; i < m.length(); i++) {
            m.setFloat(i, wild ? value(d) : d.consumeInt(0, 3) == 0 ? 0f : 1f);
        }
        return m;
    }

    /**
     * A token batch over guarded caller memory: padded, packed or from raw offsets, with the required columns
     * (one sometimes missing), optional columns sometimes, and column lengths sometimes short.
     *
     * @return the batch, or null when the builder refused the shape (a documented refusal, checked).
     */
    static TokenBatch batch(final FuzzedDataProvider d, final Guarded g, final List<Column> required,
                            final List<Column> optional) {
        final TokenBatch.Builder b;
        final long n;
        try {
            switch (d.consumeInt(0, 2)) {
                case 0 -> {
                    final int rows = d.consumeInt(0, 20) == 0 ? d.consumeInt(-2, 1 << 20) : d.consumeInt(0, 6);
                    final int width = d.consumeInt(0, 20) == 0 ? d.consumeInt(-1, 1 << 20) : d.consumeInt(1, 24);
                    n = (long) Math.max(rows, 0) * Math.max(width, 0);
                    b = TokenBatch.padded(rows, width);
                }
                case 1 -> {
                    final int[] lengths = new int[d.consumeInt(0, 7)];
                    long total = 0;
                    for (int i = 0; i < lengths.length; i++) {
                        lengths[i] = d.consumeInt(0, 30) == 0 ? d.consumeInt() : d.consumeInt(0, 30);
                        total += Math.max(lengths[i], 0);
                    }
                    n = total;
                    b = TokenBatch.packed(lengths);
                }
                default -> {
                    final int[] offsets = new int[d.consumeInt(0, 8)];
                    for (int i = 0; i < offsets.length; i++) {
                        offsets[i] = d.consumeInt(0, 30) == 0 ? d.consumeInt() : (i == 0 ? 0 : offsets[i - 1])
                            + d.consumeInt(0, 25);
                    }
                    n = offsets.length == 0 ? 0 : Math.max(0, offsets[offsets.length - 1]);
                    b = TokenBatch.withOffsets(offsets);
                }
            }
        } catch (final IllegalArgumentException e) {
            Outcomes.documented(e);
            return null;
        }
        if (n > 4096) {
            // A huge shape the builder accepted: size the columns from it would allocate too much per execution;
            // give short columns, which build() must refuse.
            b.column(Column.LOG_PROB, g.alloc(ElementType.F32, 1));
            try {
                b.build().close();
                throw new AssertionError("a batch of " + n + " tokens was built from a 1-element column");
            } catch (final IllegalArgumentException e) {
                Outcomes.documented(e);
                return null;
            }
        }
        final List<Column> cols = new ArrayList<>(required);
        if (!cols.isEmpty() && d.consumeInt(0, 40) == 0) {
            cols.remove(d.consumeInt(0, cols.size() - 1));
        }
        for (final Column c : optional) {
            if (d.consumeBoolean()) {
                cols.add(c);
            }
        }
        for (final Column c : cols) {
            b.column(c, filledColumn(d, g, n + delta(d)));
        }
        if (d.consumeInt(0, 3) != 0) {
            b.column(Column.RESPONSE_MASK, mask(d, g, n + delta(d)));
        }
        try {
            return b.build();
        } catch (final IllegalArgumentException e) {
            Outcomes.documented(e);
            return null;
        }
    }

    private static OffHeapArray filledColumn(final FuzzedDataProvider d, final Guarded g, final long n) {
        final ElementType t = floatType(d);
        return filled(d, g, t, n);
    }

    /**
     * A loss spec from fuzzed parameters (every aggregation, global-batch arguments, KL and entropy settings).
     *
     * @return the spec, or null when the builder refused a parameter (a documented refusal, checked).
     */
    static LossSpec spec(final FuzzedDataProvider d) {
        final LossSpec.Builder b = LossSpec.builder();
        try {
            b.lossAggMode(AggMode.values()[d.consumeInt(0, AggMode.values().length - 1)]);
            switch (d.consumeInt(0, 3)) {
                case 0 -> b.clipRatio(param(d, 0.2, 0.0, 0.28, 1.0));
                case 1 -> b.clipRatioLow(param(d, 0.2, 0.05, 0.9)).clipRatioHigh(param(d, 0.28, 0.3, 2.5));
                case 2 -> b.clipRatio(d.consumeRegularDouble(0, 3));
                default -> { }
            }
            b.clipRatioC(param(d, 3.0, 10.0, 1.0 + 1e-3, 1.5));
            b.dpSize(d.consumeInt(0, 10) == 0 ? d.consumeInt() : d.consumeInt(1, 4));
            if (d.consumeBoolean()) {
                b.batchNumTokens(d.consumeInt(0, 10) == 0 ? d.consumeLong() : d.consumeLong(1, 20_000));
                b.globalBatchSize(d.consumeInt(0, 10) == 0 ? d.consumeLong() : d.consumeLong(1, 64));
            }
            if (d.consumeBoolean()) {
                b.lossScaleFactor(param(d, 1, 24, 64, 4096, 0.5));
            }
            b.entropyCoeff(param(d, 0, 0.001, -0.01, 1));
            b.calculateEntropy(d.consumeBoolean());
            b.useKlLoss(d.consumeBoolean());
            b.klLossCoef(param(d, 0.001, 0, 0.5));
            b.klLossType(KlPenalty.fromVerl(KL_NAMES[d.consumeInt(0, KL_NAMES.length - 1)]));
            b.temperature(param(d, 1.0, 0.7, 1.3));
            b.microBatchScale(param(d, 1.0, 0.25, 0.5));
            b.release(d.consumeBoolean() ? VerlRelease.V2026_08 : VerlRelease.V2026_01);
            // Every policy-loss mode with its own keys (consumed last, so older corpus inputs keep the
            // parameters they had; vanilla most often).
            final PolicyLossMode mode = d.consumeInt(0, 3) == 0
                ? PolicyLossMode.values()[d.consumeInt(0, PolicyLossMode.values().length - 1)] : PolicyLossMode.VANILLA;
            b.policyLossMode(mode);
            switch (mode) {
                case SAPO -> b.tauPos(param(d, 1.0, 0.5, 4.0, 0.0)).tauNeg(param(d, 1.05, 0.5, 4.0, -1.0));
                case DRO -> b.droBeta(param(d, 0.1, 1.0, 0.0, -1.0));
                case KL_COV -> b.klCovRatio(param(d, 0.0002, 0.1, 1.0, 0.0)).ppoKlCoef(param(d, 0.1, 1.0, 0.0));
                case CLIP_COV -> b.clipCovRatio(param(d, 0.0002, 0.1, 1.0)).clipCovLb(param(d, 1.0, -1.0, 0.0))
                    .clipCovUb(param(d, 5.0, 0.5, 100.0)).clipCovSeed(d.consumeLong());
                case BYPASS_MODE -> {
                    // verl's rollout_correction (rolloutSpec's bytes, so older corpus inputs keep their spec).
                    final io.rlvec.RolloutCorrectionSpec.Builder rc = rolloutSpec(d);
                    b.rolloutCorrection(rc.build());
                    b.bypassLossType(d.consumeBoolean() ? "ppo_clip" : d.consumeBoolean() ? "reinforce" : "other");
                }
                default -> { }
            }
            return b.build();
        } catch (final IllegalArgumentException e) {
            Outcomes.documented(e);
            return null;
        }
    }

    /**
     * verl's rollout_correction keys: IS level (off, token, sequence, or a hostile name) and threshold (TIS number,
     * IcePop "lower_upper" string, or a malformed one), batch normalisation, rejection options (one or two, one
     * threshold shared or one each, sometimes an unknown option).
     *
     * @return the builder with those keys set (build() may still refuse the combination).
     */
    static io.rlvec.RolloutCorrectionSpec.Builder rolloutSpec(final FuzzedDataProvider d) {
        final io.rlvec.RolloutCorrectionSpec.Builder rc = io.rlvec.RolloutCorrectionSpec.builder();
        rc.rolloutIs(new String[] {null, "token", "sequence", "tok"}[d.consumeInt(0, 3)]);
        rc.rolloutIsThreshold(d.consumeBoolean() ? (Object) param(d, 2.0, 1.5, 10.0, 0.0)
            : new String[] {"0.5_2", "0.9_1.1", "2_0.5", "_", "x"}[d.consumeInt(0, 4)]);
        rc.rolloutIsBatchNormalize(d.consumeBoolean());
        if (d.consumeBoolean()) {
            final String[] opts = {"token_k1", "token_k2", "token_k3", "seq_sum_k1", "seq_mean_k2",
                "seq_mean_k3", "seq_max_k2", "seq_max_k3", "seq_sum_k9"};
            final String first = opts[d.consumeInt(0, opts.length - 1)];
            final String options = d.consumeBoolean() ? first
                : first + "," + opts[d.consumeInt(0, opts.length - 1)];
            rc.rolloutRs(options);
            rc.rolloutRsThreshold(d.consumeBoolean() ? (Object) param(d, 2.0, 0.01, 5.0)
                : new String[] {"0.5_2", "0.01", "2.0,0.5", "_"}[d.consumeInt(0, 3)]);
        }
        return rc;
    }

    /**
     * A rollout-correction spec over every IS level and rejection option and both releases, including the options the policy-loss
     * spec does not draw (seq_mean_k1, seq_sum_k2/k3, three options at once).
     *
     * @return the spec, or null when the builder refused it (a documented refusal, checked).
     */
    static io.rlvec.RolloutCorrectionSpec rolloutCorrection(final FuzzedDataProvider d) {
        try {
            final io.rlvec.RolloutCorrectionSpec.Builder rc = rolloutSpec(d);
            if (d.consumeInt(0, 3) == 0) {
                final List<String> all = io.rlvec.RolloutCorrectionSpec.RS_OPTIONS;
                final int k = d.consumeInt(1, 3);
                final StringBuilder names = new StringBuilder();
                final StringBuilder thresholds = new StringBuilder();
                for (int i = 0; i < k; i++) {
                    final String o = all.get(d.consumeInt(0, all.size() - 1));
                    names.append(i == 0 ? "" : ",").append(o);
                    thresholds.append(i == 0 ? "" : ",").append(o.endsWith("k1")
                        ? (d.consumeBoolean() ? "0.5_" : "") + param(d, 2.0, 1.05, 4.0)
                        : String.valueOf(param(d, 0.01, 0.5, 2.0, 1e-6)));
                }
                rc.rolloutRs(names.toString()).rolloutRsThreshold(d.consumeInt(0, 5) == 0
                    ? (Object) param(d, 2.0, 0.01) : thresholds.toString());
            }
            // verl_semantics (consumed last, so older corpus inputs keep their spec): 2026-01 reports the IS
            // metrics from the raw weights and takes a numeric threshold only.
            rc.release(d.consumeInt(0, 2) == 0 ? VerlRelease.V2026_01 : VerlRelease.V2026_08);
            return rc.build();
        } catch (final IllegalArgumentException e) {
            Outcomes.documented(e);
            return null;
        }
    }

    /**
     * An advantage spec: any estimator, gamma and lam in [0, 1] (hostile values sometimes), epsilon, f_norm,
     * norm_adv_by_std, handle_zero_tail, gdpo's keys and weights (sometimes mismatched), either release.
     *
     * @return the spec, or null when the builder refused a parameter (a documented refusal, checked).
     */
    static io.rlvec.AdvantageSpec advantageSpec(final FuzzedDataProvider d) {
        final io.rlvec.AdvantageEstimator[] all = io.rlvec.AdvantageEstimator.values();
        final io.rlvec.AdvantageSpec.Builder b = io.rlvec.AdvantageSpec.builder(all[d.consumeInt(0, all.length - 1)]);
        try {
            b.gamma(param(d, 1.0, 0.99, 0.0, 0.5));
            b.lam(param(d, 1.0, 0.95, 0.0));
            if (d.consumeInt(0, 3) == 0) {
                b.epsilon(param(d, 1e-6, 0.0, 1e-8, 1.0));
            }
            b.normAdvByStd(d.consumeInt(0, 3) != 0);
            if (d.consumeInt(0, 3) == 0) {
                b.fNorm(param(d, 1.0, 0.5, -2.0, 0.0));
            }
            b.handleZeroTail(new Boolean[] {null, true, false}[d.consumeInt(0, 2)]);
            if (d.consumeBoolean()) {
                final int k = d.consumeInt(0, 3);
                final List<String> keys = new ArrayList<>();
                for (int i = 0; i < k; i++) {
                    keys.add(GDPO_KEYS[d.consumeInt(0, GDPO_KEYS.length - 1)]);
                }
                b.gdpoRewardKeys(keys);
                if (d.consumeBoolean()) {
                    final double[] w = new double[d.consumeInt(0, 10) == 0 ? d.consumeInt(0, 4) : k];
                    for (int i = 0; i < w.length; i++) {
                        w[i] = param(d, 1.0, 0.5, 0.0, -1.0);
                    }
                    b.gdpoRewardWeights(w);
                }
            }
            b.release(d.consumeBoolean() ? VerlRelease.V2026_08 : VerlRelease.V2026_01);
            return b.build();
        } catch (final IllegalArgumentException e) {
            Outcomes.documented(e);
            return null;
        }
    }

    /** gdpo's reward component names the advantage target draws from ("missing" is never provided). */
    static final String[] GDPO_KEYS = {"acc", "fmt", "missing"};

    /**
     * Group ids, one per sequence (plus a fuzzed excess or shortfall): a few small ids in any order mostly (groups
     * not contiguous, of any size, singletons included), any long sometimes; now and then the wrong type.
     */
    static OffHeapArray groupIds(final FuzzedDataProvider d, final Guarded g, final long n) {
        final ElementType type = d.consumeInt(0, 30) == 0 ? ElementType.F32 : ElementType.I64;
        final OffHeapArray a = g.alloc(type, Math.max(0, n));
        if (type == ElementType.I64) {
            final int spread = d.consumeInt(0, 3);
            final java.lang.foreign.ValueLayout.OfLong i64 = java.lang.foreign.ValueLayout.JAVA_LONG_UNALIGNED
                .withOrder(java.nio.ByteOrder.LITTLE_ENDIAN);
            for (long i = 0; i < a.length(); i++) {
                a.segment().setAtIndex(i64, i, d.consumeInt(0, 20) == 0 ? d.consumeLong()
                    : d.consumeInt(0, spread == 0 ? 1 : spread == 1 ? 3 : 7) * (spread == 3 ? 1_000_003L : 1));
            }
        }
        return a;
    }

    /** A KL controller and the horizon it was built with (NaN for a fixed one). */
    record Controller(io.rlvec.KlController kl, double horizon) {
    }

    /**
     * verl's kl_ctrl: fixed or adaptive, directly or by its verl type name (hostile names sometimes), with hostile
     * coefficients, targets and horizons now and then.
     *
     * @return the controller, or null when it was refused (a documented refusal, checked).
     */
    static Controller klController(final FuzzedDataProvider d) {
        final double coef = param(d, 0.001, 0.1, 0.0, -0.5, 2.0);
        final double target = param(d, 0.1, 6.0, 1e-3, 0.0, -1.0);
        final double horizon = param(d, 10_000, 1, 0.5, 0);
        try {
            return switch (d.consumeInt(0, 2)) {
                case 0 -> new Controller(io.rlvec.KlController.fixed(coef), Double.NaN);
                case 1 -> new Controller(io.rlvec.KlController.adaptive(coef, target, horizon), horizon);
                default -> {
                    final String type = new String[] {"fixed", "adaptive", " Adaptive ", "pid", null, ""}
                        [d.consumeInt(0, 5)];
                    final io.rlvec.KlController c = io.rlvec.KlController.fromVerl(type, coef, target, horizon);
                    yield new Controller(c, c.isAdaptive() ? horizon : Double.NaN);
                }
            };
        } catch (final IllegalArgumentException e) {
            Outcomes.documented(e);
            return null;
        }
    }

    /** @return the spec with a fuzzed cliprange_value, or null when refused (a documented refusal, checked). */
    static LossSpec valueSpec(final FuzzedDataProvider d, final LossSpec base) {
        try {
            return base.toBuilder().cliprangeValue(param(d, 0.5, 0.2, 0.0, 1e-3, 10.0, 1e30)).build();
        } catch (final IllegalArgumentException e) {
            Outcomes.documented(e);
            return null;
        }
    }

    /** Logits over guarded memory, F32 or BF16, with a fuzzed row stride; null when the view was refused. */
    static Logits logits(final FuzzedDataProvider d, final Guarded g, final int rows, final int vocab) {
        final long stride = d.consumeInt(0, 8) == 0 ? d.consumeLong(-1, 3L * vocab + 70) : vocab + d.consumeInt(0, 3)
            * (d.consumeBoolean() ? 1 : 17);
        final ElementType type = d.consumeInt(0, 30) == 0 ? ElementType.I32
            : d.consumeBoolean() ? ElementType.F32 : ElementType.BF16;
        final long need = rows <= 0 || stride < vocab ? Math.max(0, vocab) : (rows - 1L) * stride + vocab;
        final OffHeapArray data = g.alloc(type, Math.max(0, Math.min(need + delta(d), 1 << 16)));
        if (type != ElementType.I32) {
            final boolean peaked = d.consumeInt(0, 5) == 0;
            for (long i = 0; i < data.length(); i++) {
                data.setFloat(i, peaked ? (d.consumeInt(0, 40) == 0 ? 30f : -30f) + d.consumeRegularFloat(-1, 1)
                    : d.consumeInt(0, 30) == 0 ? value(d) : d.consumeRegularFloat(-8f, 8f));
            }
        }
        try {
            return Logits.of(data, rows, vocab, stride);
        } catch (final IllegalArgumentException e) {
            Outcomes.documented(e);
            return null;
        }
    }

    /** Labels for {@code rows} rows: in range mostly, sometimes anything (masked rows may hold -100). */
    static OffHeapArray labels(final FuzzedDataProvider d, final Guarded g, final int rows, final int vocab) {
        final OffHeapArray l = g.alloc(d.consumeInt(0, 40) == 0 ? ElementType.F32 : ElementType.I32,
            Math.max(0, rows + delta(d)));
        if (l.type() == ElementType.I32) {
            for (long i = 0; i < l.length(); i++) {
                final int k = d.consumeInt(0, 30);
                l.setInt(i, k == 0 ? -100 : k == 1 ? vocab : k == 2 ? d.consumeInt() : d.consumeInt(0, vocab - 1));
            }
        }
        return l;
    }

    /** Float distance in ulps for results ({@link Ulp#distance}: NaN equals NaN). */
    static boolean within(final float a, final float b, final long ulps) {
        return Ulp.distance(a, b) <= ulps;
    }

}
