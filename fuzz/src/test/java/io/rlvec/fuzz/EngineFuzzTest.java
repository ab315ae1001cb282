package io.rlvec.fuzz;

import static io.rlvec.fuzz.Inputs.REFERENCE;
import static io.rlvec.fuzz.Outcomes.both;
import static io.rlvec.fuzz.Outcomes.close;
import static io.rlvec.fuzz.Outcomes.sameBits;
import static io.rlvec.fuzz.Outcomes.untouched;
import static io.rlvec.fuzz.Outcomes.zeroOutsideMask;

import java.util.List;
import java.util.function.DoubleSupplier;

import com.code_intelligence.jazzer.api.FuzzedDataProvider;
import com.code_intelligence.jazzer.junit.FuzzTest;

import io.rlvec.ActorLossResult;
import io.rlvec.AdvantageInputs;
import io.rlvec.AdvantageSpec;
import io.rlvec.AggMode;
import io.rlvec.AggResult;
import io.rlvec.Column;
import io.rlvec.ElementType;
import io.rlvec.Engine;
import io.rlvec.KlPenalty;
import io.rlvec.Logits;
import io.rlvec.LossSpec;
import io.rlvec.OffHeapArray;
import io.rlvec.PolicyLossResult;
import io.rlvec.RolloutCorrectionResult;
import io.rlvec.RolloutCorrectionSpec;
import io.rlvec.SoftmaxStats;
import io.rlvec.TokenBatch;
import io.rlvec.ValueLossResult;

/**
 * Fuzz targets over every {@link Engine} method and batch construction. Each execution builds its arguments in
 * guarded caller memory ({@link Guarded}), runs the reference and the vector engine (one or two threads), and
 * asserts: no exception but a documented IllegalArgumentException, the same accept/refuse decision, the parity
 * contract on accepted inputs (gradients bit-identical, reduced values within the parity tests' ulps), and no
 * write outside any caller buffer. Without JAZZER_FUZZ the targets replay their corpora under
 * {@code src/test/resources/io/rlvec/fuzz/EngineFuzzTestInputs/<target>/} (docs/reliability.md).
 */
class EngineFuzzTest {
    private static final List<Column> POLICY = List.of(Column.LOG_PROB, Column.OLD_LOG_PROB, Column.ADVANTAGES);
    private static final List<Column> VALUE = List.of(Column.VPREDS, Column.RETURNS, Column.VALUES);
    private static final List<Column> ADVANTAGE = List.of(Column.TOKEN_LEVEL_REWARDS, Column.VALUES,
        Column.OLD_LOG_PROB, Column.SUM_PI_SQUARED);
    private static final List<Column> REWARD_KL = List.of(Column.TOKEN_LEVEL_SCORES, Column.OLD_LOG_PROB,
        Column.REF_LOG_PROB);
    private static final List<Column> ROLLOUT = List.of(Column.OLD_LOG_PROB, Column.ROLLOUT_LOG_PROB);

    /** Batch construction: offsets, lengths, masks, column sizes and types; a built batch is consistent. */
    @FuzzTest(maxDuration = "2h", maxExecutions = 1_000_000)
    void batch(final FuzzedDataProvider d) {
        try (Guarded g = new Guarded()) {
            final TokenBatch b = Inputs.batch(d, g, List.of(Column.LOG_PROB), List.of(Column.ADVANTAGES));
            if (b == null) {
                g.check();
                return;
            }
            try (b) {
                final int n = b.numTokens();
                if (n < 0 || b.offset(0) != 0) {
                    throw new AssertionError("bad batch " + b);
                }
                for (int i = 0; i < b.numSequences(); i++) {
                    if (b.offset(i + 1) < b.offset(i)) {
                        throw new AssertionError("offsets decrease in " + b);
                    }
                }
                for (final Column c : Column.values()) {
                    if (b.has(c) && (b.column(c).length() < n || b.column(c).type() != ElementType.F32)) {
                        throw new AssertionError("column " + c + " of " + b.column(c) + " in " + b);
                    }
                }
                if (b.mask() == null) {
                    throw new AssertionError("no mask in " + b);
                }
                // A built batch is usable: agg_loss over its log_prob column, engine vs reference.
                final LossSpec spec = LossSpec.builder().lossAggMode(AggMode.values()[d.consumeInt(0, 3)])
                    .lossScaleFactor(16).build();
                final AggResult r1 = new AggResult();
                final AggResult r2 = new AggResult();
                final OffHeapArray g1 = g.alloc(ElementType.F32, n);
                final OffHeapArray g2 = g.alloc(ElementType.F32, n);
                final Engine v = Inputs.vector(d);
                if (b.has(Column.LOG_PROB) && both(() -> REFERENCE.aggLoss(spec, b, b.column(Column.LOG_PROB), g1, r1),
                    () -> v.aggLoss(spec, b, b.column(Column.LOG_PROB), g2, r2))) {
                    final OffHeapArray lp = b.column(Column.LOG_PROB);
                    assertAgg(r1, r2, g1, g2, () -> Conditioning.bound(spec, b, t -> Math.abs(lp.getFloat(t))),
                        "batch agg_loss " + spec + " " + describe(b) + " on " + v.name());
                }
            }
            g.check();
        }
    }

    /** policyLoss: every aggregation, clip setting and global-batch argument, gradient or not. */
    @FuzzTest(maxDuration = "2h", maxExecutions = 1_000_000)
    void policyLoss(final FuzzedDataProvider d) {
        try (Guarded g = new Guarded()) {
            final LossSpec spec = Inputs.spec(d);
            final TokenBatch b = spec == null ? null : Inputs.batch(d, g, POLICY, List.of(Column.ROLLOUT_IS_WEIGHTS));
            if (b == null) {
                g.check();
                return;
            }
            try (b) {
                final boolean grad = d.consumeInt(0, 7) != 0;
                final long len = Math.max(0, b.numTokens() + Inputs.delta(d));
                final OffHeapArray g1 = grad ? g.alloc(ElementType.F32, len) : null;
                final OffHeapArray g2 = grad ? g.alloc(ElementType.F32, len) : null;
                final PolicyLossResult r1 = new PolicyLossResult();
                final PolicyLossResult r2 = new PolicyLossResult();
                final Engine v = Inputs.vector(d);
                if (both(() -> REFERENCE.policyLoss(spec, b, g1, r1), () -> v.policyLoss(spec, b, g2, r2))) {
                    final String ctx = "policyLoss " + spec + " " + describe(b) + " on " + v.name();
                    sameBits(g1, g2, ctx + " gradient");
                    Conditioning.policy(r1, r2, 1, () -> Conditioning.bound(spec.aggregationSpec(), b,
                        Conditioning.policyMagnitude(spec, b, null)),
                        () -> Conditioning.meanBound(b, Conditioning.klMagnitude(b, null)), ctx);
                }
            }
            g.check();
        }
    }

    /** aggLoss on an arbitrary loss column, every mode, gradient or not. */
    @FuzzTest(maxDuration = "2h", maxExecutions = 1_000_000)
    void aggLoss(final FuzzedDataProvider d) {
        try (Guarded g = new Guarded()) {
            final LossSpec spec = Inputs.spec(d);
            final TokenBatch b = spec == null ? null : Inputs.batch(d, g, List.of(), List.of());
            if (b == null) {
                g.check();
                return;
            }
            try (b) {
                final OffHeapArray lossMat = Inputs.filled(d, g, Inputs.floatType(d),
                    b.numTokens() + Inputs.delta(d));
                final boolean grad = d.consumeInt(0, 7) != 0;
                final long len = Math.max(0, b.numTokens() + Inputs.delta(d));
                final OffHeapArray g1 = grad ? g.alloc(ElementType.F32, len) : null;
                final OffHeapArray g2 = grad ? g.alloc(ElementType.F32, len) : null;
                final AggResult r1 = new AggResult();
                final AggResult r2 = new AggResult();
                final Engine v = Inputs.vector(d);
                if (both(() -> REFERENCE.aggLoss(spec, b, lossMat, g1, r1), () -> v.aggLoss(spec, b, lossMat, g2, r2))) {
                    assertAgg(r1, r2, g1, g2, () -> Conditioning.bound(spec, b, t -> Math.abs(lossMat.getFloat(t))),
                        "aggLoss " + spec + " " + describe(b) + " on " + v.name());
                }
            }
            g.check();
        }
    }

    /**
     * valueLoss: cliprange_value, every aggregation and global-batch argument, both releases (2026-01 aggregates
     * without the global arguments), gradient or not. Gradient bit-identical and 0 outside the mask, counts and
     * vf_clipfrac exact, vf_loss and vpred_mean within 1 ulp plus their conditioning bounds, the other thread count
     * the same bits; a refused call writes nothing.
     */
    @FuzzTest(maxDuration = "2h", maxExecutions = 1_000_000)
    void valueLoss(final FuzzedDataProvider d) {
        try (Guarded g = new Guarded()) {
            final LossSpec base = Inputs.spec(d);
            final LossSpec spec = base == null ? null : Inputs.valueSpec(d, base);
            final TokenBatch b = spec == null ? null : Inputs.batch(d, g, VALUE, List.of());
            if (b == null) {
                g.check();
                return;
            }
            try (b) {
                final int n = b.numTokens();
                final boolean grad = d.consumeInt(0, 7) != 0;
                final long len = Math.max(0, n + Inputs.delta(d));
                final OffHeapArray g1 = grad ? g.alloc(ElementType.F32, len) : null;
                final OffHeapArray g2 = grad ? g.alloc(ElementType.F32, len) : null;
                Outcomes.poison(g1);
                Outcomes.poison(g2);
                final ValueLossResult r1 = new ValueLossResult();
                final ValueLossResult r2 = new ValueLossResult();
                final Engine v = Inputs.vector(d);
                if (both(() -> REFERENCE.valueLoss(spec, b, g1, r1), () -> v.valueLoss(spec, b, g2, r2))) {
                    final String ctx = "valueLoss " + spec + " " + describe(b) + " on " + v.name();
                    sameBits(g1, g2, ctx + " gradient");
                    zeroOutsideMask(g1, b.mask(), n, ctx + " gradient");
                    if (r1.validTokens() != r2.validTokens() || r1.validSequences() != r2.validSequences()
                        || r1.clippedTokens() != r2.clippedTokens()
                        || Double.doubleToLongBits(r1.denominator()) != Double.doubleToLongBits(r2.denominator())) {
                        throw new AssertionError(ctx + ": counts " + r2 + " vs reference " + r1);
                    }
                    Outcomes.close(r1.vfClipfrac(), r2.vfClipfrac(), 0, ctx + " vf_clipfrac");
                    final OffHeapArray vp = b.column(Column.VPREDS);
                    Conditioning.close(r1.vfLoss(), r2.vfLoss(), 1, () -> Conditioning.bound(
                        spec.valueAggregationSpec(), b, Conditioning.valueMagnitude(spec, b)), ctx + " vf_loss");
                    Conditioning.close(r1.vpredMean(), r2.vpredMean(), 1,
                        () -> Conditioning.meanBound(b, t -> Math.abs((double) vp.getFloat(t))), ctx + " vpred_mean");
                    final Engine other = v == Inputs.ONE ? Inputs.TWO : Inputs.ONE;
                    final OffHeapArray g3 = grad ? g.alloc(ElementType.F32, len) : null;
                    Outcomes.poison(g3);
                    final ValueLossResult r3 = new ValueLossResult();
                    other.valueLoss(spec, b, g3, r3);
                    sameBits(g2, g3, ctx + " gradient on " + other.name());
                    if (Double.doubleToLongBits(r2.numerator()) != Double.doubleToLongBits(r3.numerator())
                        || Double.doubleToLongBits(r2.vpredSum()) != Double.doubleToLongBits(r3.vpredSum())
                        || Float.floatToRawIntBits(r2.vfLoss()) != Float.floatToRawIntBits(r3.vfLoss())
                        || r2.clippedTokens() != r3.clippedTokens()) {
                        throw new AssertionError(ctx + ": " + r3 + " on " + other.name() + " vs " + r2);
                    }
                } else {
                    untouched(g1, "valueLoss " + spec + " refused, gradient (reference)");
                    untouched(g2, "valueLoss " + spec + " refused, gradient");
                }
            }
            g.check();
        }
    }

    /**
     * advantages: every estimator and its keys, both releases, group ids in any order (not contiguous, singletons,
     * any long), reward baselines and gdpo components present, missing, short or mistyped, overlapping outputs.
     * Advantages and returns bit-identical (one or two threads); verl's errors (pass@k groups of one, whitening
     * over at most one valid token) and every refusal leave both outputs unwritten.
     */
    @FuzzTest(maxDuration = "2h", maxExecutions = 1_000_000)
    void advantages(final FuzzedDataProvider d) {
        try (Guarded g = new Guarded()) {
            final AdvantageSpec spec = Inputs.advantageSpec(d);
            final TokenBatch b = spec == null ? null : Inputs.batch(d, g, ADVANTAGE, List.of());
            if (b == null) {
                g.check();
                return;
            }
            try (b) {
                final int seqs = b.numSequences();
                final AdvantageInputs in = d.consumeInt(0, 15) == 0 ? null : new AdvantageInputs();
                if (in != null) {
                    if (d.consumeInt(0, 15) != 0) {
                        in.index(Inputs.groupIds(d, g, seqs + Inputs.delta(d)));
                    }
                    if (d.consumeBoolean()) {
                        in.rewardBaselines(Inputs.filled(d, g, Inputs.floatType(d), seqs + Inputs.delta(d)));
                    }
                    for (final String key : new String[] {"acc", "fmt"}) {
                        if (d.consumeInt(0, 5) != 0) {
                            in.rewardComponent(key, Inputs.filled(d, g, Inputs.floatType(d), seqs + Inputs.delta(d)));
                        }
                    }
                }
                final long len = Math.max(0, b.numTokens() + Inputs.delta(d));
                final boolean overlap = d.consumeInt(0, 30) == 0;
                final OffHeapArray a1 = g.alloc(ElementType.F32, len);
                final OffHeapArray a2 = g.alloc(ElementType.F32, len);
                final long rlen = Math.max(0, b.numTokens() + Inputs.delta(d));
                final OffHeapArray t1 = overlap ? a1 : g.alloc(ElementType.F32, rlen);
                final OffHeapArray t2 = overlap ? a2 : g.alloc(ElementType.F32, rlen);
                for (final OffHeapArray a : new OffHeapArray[] {a1, a2, t1, t2}) {
                    Outcomes.poison(a);
                }
                final Engine v = Inputs.vector(d);
                if (both(() -> REFERENCE.advantages(spec, b, in, a1, t1), () -> v.advantages(spec, b, in, a2, t2))) {
                    final String ctx = "advantages " + spec + " " + describe(b) + " on " + v.name();
                    sameBits(a1, a2, ctx + " advantages");
                    sameBits(t1, t2, ctx + " returns");
                } else {
                    untouched(a1, "advantages " + spec + " refused, advantages (reference)");
                    untouched(t1, "advantages " + spec + " refused, returns (reference)");
                    untouched(a2, "advantages " + spec + " refused, advantages");
                    untouched(t2, "advantages " + spec + " refused, returns");
                }
            }
            g.check();
        }
    }

    /**
     * rewardKlPenalty (verl's apply_kl_penalty) with a KL controller's coefficient: every estimator ("full" is
     * refused), hostile beta, kld and rewards bit-identical, kld 0 outside the mask, current_kl the same bits,
     * rewards written over the token_level_scores column itself (on the other thread count) the same bits; then
     * the controller's update: a fixed coefficient stays, an adaptive one moves by at most 20% x n / horizon.
     */
    @FuzzTest(maxDuration = "2h", maxExecutions = 1_000_000)
    void rewardKl(final FuzzedDataProvider d) {
        try (Guarded g = new Guarded()) {
            final KlPenalty kl = KlPenalty.fromVerl(Inputs.KL_NAMES[d.consumeInt(0, Inputs.KL_NAMES.length - 1)]);
            final Inputs.Controller ctl = d.consumeInt(0, 3) == 0 ? null : Inputs.klController(d);
            final double beta = ctl == null ? Inputs.param(d, 0.001, 0.1, 0.0, -0.5) : ctl.kl().value();
            final TokenBatch b = Inputs.batch(d, g, REWARD_KL, List.of());
            if (b == null) {
                g.check();
                return;
            }
            try (b) {
                final int n = b.numTokens();
                final long len = Math.max(0, n + Inputs.delta(d));
                final OffHeapArray k1 = g.alloc(ElementType.F32, len);
                final OffHeapArray k2 = g.alloc(ElementType.F32, len);
                final boolean overlap = d.consumeInt(0, 30) == 0;
                final long rlen = Math.max(0, n + Inputs.delta(d));
                final OffHeapArray w1 = overlap ? k1 : g.alloc(ElementType.F32, rlen);
                final OffHeapArray w2 = overlap ? k2 : g.alloc(ElementType.F32, rlen);
                for (final OffHeapArray a : new OffHeapArray[] {k1, k2, w1, w2}) {
                    Outcomes.poison(a);
                }
                final boolean inPlace = d.consumeInt(0, 3) == 0;
                final Engine v = Inputs.vector(d);
                final double[] kls = new double[3];
                if (both(() -> kls[0] = REFERENCE.rewardKlPenalty(kl, beta, b, k1, w1),
                    () -> kls[1] = v.rewardKlPenalty(kl, beta, b, k2, w2))) {
                    final String ctx = "rewardKl " + kl.verlName() + " beta=" + beta + " " + b + " on " + v.name();
                    sameBits(k1, k2, ctx + " kld");
                    sameBits(w1, w2, ctx + " rewards");
                    zeroOutsideMask(k1, b.mask(), n, ctx + " kld");
                    if (Double.doubleToLongBits(kls[0]) != Double.doubleToLongBits(kls[1])) {
                        throw new AssertionError(ctx + ": current_kl " + kls[1] + " vs reference " + kls[0]);
                    }
                    if (inPlace) {
                        final Engine other = v == Inputs.ONE ? Inputs.TWO : Inputs.ONE;
                        final OffHeapArray scores = b.column(Column.TOKEN_LEVEL_SCORES);
                        final OffHeapArray k3 = g.alloc(ElementType.F32, n);
                        kls[2] = other.rewardKlPenalty(kl, beta, b, k3, scores);
                        sameBits(k1, k3, n, ctx + " kld (in place, " + other.name() + ")");
                        sameBits(w1, scores, n, ctx + " rewards over token_level_scores (" + other.name() + ")");
                        if (Double.doubleToLongBits(kls[0]) != Double.doubleToLongBits(kls[2])) {
                            throw new AssertionError(ctx + ": current_kl in place " + kls[2] + " vs " + kls[0]);
                        }
                    }
                    if (ctl != null) {
                        controllerStep(ctl, kls[0], b.numSequences(), ctx);
                    }
                } else {
                    for (final OffHeapArray a : new OffHeapArray[] {k1, k2, w1, w2}) {
                        untouched(a, "rewardKl " + kl.verlName() + " beta=" + beta + " refused, output");
                    }
                }
            }
            g.check();
        }
    }

    /** The controller's update after a step: fixed keeps its bits; adaptive moves by a factor in 1 +- 0.2 n / h. */
    private static void controllerStep(final Inputs.Controller ctl, final double currentKl, final int n,
                                       final String ctx) {
        final double before = ctl.kl().value();
        ctl.kl().update(currentKl, n);
        final double after = ctl.kl().value();
        if (!ctl.kl().isAdaptive()) {
            if (Double.doubleToLongBits(before) != Double.doubleToLongBits(after)) {
                throw new AssertionError(ctx + ": a fixed controller moved from " + before + " to " + after);
            }
            return;
        }
        if (!Double.isFinite(currentKl) || !Double.isFinite(before)) {
            return;
        }
        final double step = 0.2 * n / ctl.horizon();
        final double lo = Math.min(before * (1 - step), before * (1 + step));
        final double hi = Math.max(before * (1 - step), before * (1 + step));
        final double slack = 1e-12 * Math.abs(before) * (1 + step);
        if (!(after >= lo - slack && after <= hi + slack)) {
            throw new AssertionError(ctx + ": " + ctl.kl() + " moved from " + before + " to " + after + " on kl "
                + currentKl + " and " + n + " sequences, outside [" + lo + ", " + hi + "]");
        }
    }

    /**
     * rolloutCorrection: every IS level (token, sequence, TIS or IcePop thresholds, batch-normalised or not) and
     * rejection option (one to three, thresholds shared or each its own, hostile strings), IS weights requested or
     * not, short outputs. Weights and mask bit-identical, every metric the same, weights (when computed) and mask 0
     * outside the response mask, weights not written when the spec computes none, nothing written on a refusal,
     * and the mask written over the batch's own response_mask (on the other thread count) the same bits.
     */
    @FuzzTest(maxDuration = "2h", maxExecutions = 1_000_000)
    void rolloutCorrection(final FuzzedDataProvider d) {
        try (Guarded g = new Guarded()) {
            final RolloutCorrectionSpec spec = Inputs.rolloutCorrection(d);
            final TokenBatch b = spec == null ? null : Inputs.batch(d, g, ROLLOUT, List.of());
            if (b == null) {
                g.check();
                return;
            }
            try (b) {
                final int n = b.numTokens();
                final boolean weights = d.consumeInt(0, 3) != 0;
                final long wlen = Math.max(0, n + Inputs.delta(d));
                final OffHeapArray w1 = weights ? g.alloc(ElementType.F32, wlen) : null;
                final OffHeapArray w2 = weights ? g.alloc(ElementType.F32, wlen) : null;
                final long len = Math.max(0, n + Inputs.delta(d));
                final OffHeapArray m1 = g.alloc(ElementType.F32, len);
                final OffHeapArray m2 = g.alloc(ElementType.F32, len);
                for (final OffHeapArray a : new OffHeapArray[] {w1, w2, m1, m2}) {
                    Outcomes.poison(a);
                }
                final boolean inPlace = d.consumeInt(0, 3) == 0;
                final RolloutCorrectionResult r1 = new RolloutCorrectionResult();
                final RolloutCorrectionResult r2 = new RolloutCorrectionResult();
                final Engine v = Inputs.vector(d);
                if (both(() -> REFERENCE.rolloutCorrection(spec, b, w1, m1, r1),
                    () -> v.rolloutCorrection(spec, b, w2, m2, r2))) {
                    final String ctx = "rolloutCorrection " + spec + " " + describe(b) + " on " + v.name();
                    sameBits(w1, w2, ctx + " IS weights");
                    sameBits(m1, m2, ctx + " mask");
                    final java.util.Map<String, Double> metrics = r1.asMap();
                    if (!metrics.equals(r2.asMap())) {
                        throw new AssertionError(ctx + ": metrics " + r2.asMap() + " vs reference " + metrics);
                    }
                    zeroOutsideMask(m1, b.mask(), n, ctx + " mask");
                    if (spec.hasIs()) {
                        zeroOutsideMask(w1, b.mask(), n, ctx + " IS weights");
                    } else {
                        untouched(w1, ctx + " IS weights (reference, none computed)");
                        untouched(w2, ctx + " IS weights (none computed)");
                    }
                    if (inPlace) {
                        final Engine other = v == Inputs.ONE ? Inputs.TWO : Inputs.ONE;
                        final OffHeapArray w3 = weights ? g.alloc(ElementType.F32, wlen) : null;
                        Outcomes.poison(w3);
                        final RolloutCorrectionResult r3 = new RolloutCorrectionResult();
                        other.rolloutCorrection(spec, b, w3, b.mask(), r3);
                        if (spec.hasIs()) {
                            sameBits(w1, w3, ctx + " IS weights (mask in place, " + other.name() + ")");
                        }
                        sameBits(m1, b.mask(), n, ctx + " mask over response_mask (" + other.name() + ")");
                        if (!metrics.equals(r3.asMap())) {
                            throw new AssertionError(ctx + ": metrics in place " + r3.asMap() + " vs " + metrics);
                        }
                    }
                } else {
                    for (final OffHeapArray a : new OffHeapArray[] {w1, w2, m1, m2}) {
                        untouched(a, "rolloutCorrection " + spec + " refused, output");
                    }
                }
            }
            g.check();
        }
    }

    /** @return the batch with its offsets, mask and log_prob values (small batches), for a finding's message. */
    static String describe(final TokenBatch b) {
        final StringBuilder s = new StringBuilder(b.toString()).append(" offsets=[");
        for (int i = 0; i <= b.numSequences() && i < 64; i++) {
            s.append(i > 0 ? "," : "").append(b.offset(i));
        }
        s.append("]");
        for (final Column c : new Column[] {Column.RESPONSE_MASK, Column.LOG_PROB, Column.OLD_LOG_PROB,
            Column.ADVANTAGES, Column.ROLLOUT_IS_WEIGHTS, Column.VPREDS, Column.RETURNS, Column.VALUES,
            Column.TOKEN_LEVEL_REWARDS, Column.TOKEN_LEVEL_SCORES, Column.REF_LOG_PROB, Column.ROLLOUT_LOG_PROB,
            Column.SUM_PI_SQUARED}) {
            if (b.has(c) && b.numTokens() <= 64) {
                s.append(' ').append(c.verlName()).append('=').append(java.util.Arrays.toString(
                    java.util.Arrays.copyOf(b.column(c).toFloatArray(), b.numTokens())));
            }
        }
        return s.toString();
    }

    private static void assertAgg(final AggResult r1, final AggResult r2, final OffHeapArray g1, final OffHeapArray g2,
                                  final DoubleSupplier bound, final String ctx) {
        sameBits(g1, g2, ctx + " gradient");
        if (r1.validTokens() != r2.validTokens() || r1.validSequences() != r2.validSequences()
            || Double.doubleToLongBits(r1.denominator()) != Double.doubleToLongBits(r2.denominator())) {
            throw new AssertionError(ctx + ": counts " + r2 + " vs reference " + r1);
        }
        Conditioning.close(r1.loss(), r2.loss(), 1, bound, ctx + " loss");
    }

    /** klPenalty: every estimator and straight-through form ("full" is refused here), gradient or not. */
    @FuzzTest(maxDuration = "2h", maxExecutions = 1_000_000)
    void klPenalty(final FuzzedDataProvider d) {
        try (Guarded g = new Guarded()) {
            final KlPenalty kl = KlPenalty.fromVerl(Inputs.KL_NAMES[d.consumeInt(0, Inputs.KL_NAMES.length - 1)]);
            final TokenBatch b = Inputs.batch(d, g, List.of(Column.LOG_PROB, Column.REF_LOG_PROB), List.of());
            if (b == null) {
                g.check();
                return;
            }
            try (b) {
                final long len = Math.max(0, b.numTokens() + Inputs.delta(d));
                final OffHeapArray k1 = g.alloc(ElementType.F32, len);
                final OffHeapArray k2 = g.alloc(ElementType.F32, len);
                final boolean grad = d.consumeInt(0, 5) != 0;
                final long glen = Math.max(0, b.numTokens() + Inputs.delta(d));
                final OffHeapArray g1 = grad ? g.alloc(ElementType.F32, glen) : null;
                final OffHeapArray g2 = grad ? g.alloc(ElementType.F32, glen) : null;
                final Engine v = Inputs.vector(d);
                if (both(() -> REFERENCE.klPenalty(kl, b, k1, g1), () -> v.klPenalty(kl, b, k2, g2))) {
                    final String ctx = "klPenalty " + kl.verlName() + " " + b + " on " + v.name();
                    sameBits(k1, k2, ctx + " kld");
                    sameBits(g1, g2, ctx + " gradient");
                }
            }
            g.check();
        }
    }

    /** klFull: policy and reference logits of fuzzed shapes, strides and types; upstream and gradient or not. */
    @FuzzTest(maxDuration = "2h", maxExecutions = 1_000_000)
    void klFull(final FuzzedDataProvider d) {
        try (Guarded g = new Guarded()) {
            final int rows = d.consumeInt(0, 20) == 0 ? -1 : d.consumeInt(0, 5);
            final int vocab = d.consumeInt(0, 20) == 0 ? d.consumeInt(-1, 0) : d.consumeInt(1, 150);
            final Logits p = Inputs.logits(d, g, rows, vocab);
            final Logits q = p == null ? null : Inputs.logits(d, g, d.consumeInt(0, 15) == 0 ? rows + 1 : rows,
                d.consumeInt(0, 15) == 0 ? vocab + 1 : vocab);
            if (q == null) {
                g.check();
                return;
            }
            final double t = Inputs.param(d, 1.0, 0.7, 2.0);
            final OffHeapArray mask = d.consumeBoolean() ? null : Inputs.mask(d, g, rows + Inputs.delta(d));
            final long len = Math.max(0, rows + Inputs.delta(d));
            final OffHeapArray k1 = g.alloc(ElementType.F32, len);
            final OffHeapArray k2 = g.alloc(ElementType.F32, len);
            final OffHeapArray up = d.consumeInt(0, 3) == 0 ? null : Inputs.filled(d, g, ElementType.F32,
                rows + Inputs.delta(d));
            final boolean grad = d.consumeInt(0, 3) != 0;
            final long glen = Math.max(0, p.requiredLength() + Inputs.delta(d));
            final OffHeapArray g1 = grad ? g.alloc(ElementType.F32, glen) : null;
            final OffHeapArray g2 = grad ? g.alloc(ElementType.F32, glen) : null;
            final Engine v = Inputs.vector(d);
            if (both(() -> REFERENCE.klFull(p, q, t, mask, k1, up, g1), () -> v.klFull(p, q, t, mask, k2, up, g2))) {
                final String ctx = "klFull " + p + " " + q + " T=" + t + " on " + v.name();
                sameBits(k1, k2, ctx + " kld");
                sameBits(g1, g2, ctx + " gradient");
            }
            g.check();
        }
    }

    /**
     * The vocabulary pass: logProbs (entropy or not, statistics or not, exps kept in the gradient buffer or not)
     * then logProbsBackward (gradEntropy or not, from the statistics or not); vocab, row stride, labels,
     * temperature, F32 and BF16, statistics capacities that do not fit.
     */
    @FuzzTest(maxDuration = "2h", maxExecutions = 1_000_000)
    void vocab(final FuzzedDataProvider d) {
        try (Guarded g = new Guarded()) {
            final int rows = d.consumeInt(0, 20) == 0 ? -1 : d.consumeInt(0, 6);
            final int vocab = d.consumeInt(0, 20) == 0 ? d.consumeInt(-1, 0) : d.consumeInt(1, 200);
            final Logits lg = Inputs.logits(d, g, rows, vocab);
            if (lg == null) {
                g.check();
                return;
            }
            final OffHeapArray labels = Inputs.labels(d, g, rows, vocab);
            final double t = Inputs.param(d, 1.0, 0.7, 1.3, 1e-3, 50.0);
            final OffHeapArray mask = d.consumeBoolean() ? null : Inputs.mask(d, g, rows + Inputs.delta(d));
            final long len = Math.max(0, rows + Inputs.delta(d));
            final OffHeapArray lp1 = g.alloc(ElementType.F32, len);
            final OffHeapArray lp2 = g.alloc(ElementType.F32, len);
            final boolean entropy = d.consumeBoolean();
            final OffHeapArray e1 = entropy ? g.alloc(ElementType.F32, len) : null;
            final OffHeapArray e2 = entropy ? g.alloc(ElementType.F32, len) : null;
            final int cap = Math.max(0, rows + (d.consumeInt(0, 10) == 0 ? -1 : d.consumeInt(0, 2)));
            final boolean withStats = d.consumeBoolean();
            try (SoftmaxStats s1 = withStats ? SoftmaxStats.allocate(cap) : null;
                 SoftmaxStats s2 = withStats ? SoftmaxStats.allocate(cap) : null) {
                final long glen = Math.max(0, lg.requiredLength() + Inputs.delta(d));
                final boolean keep = withStats && d.consumeBoolean();
                final OffHeapArray gl1 = g.alloc(ElementType.F32, glen);
                final OffHeapArray gl2 = g.alloc(ElementType.F32, glen);
                final Engine v = Inputs.vector(d);
                final String ctx = "vocab " + lg + " T=" + t + " stats=" + withStats + " keep=" + keep + " on "
                    + v.name();
                final boolean forward = both(
                    () -> REFERENCE.logProbs(lg, labels, t, mask, lp1, e1, s1, keep ? gl1 : null),
                    () -> v.logProbs(lg, labels, t, mask, lp2, e2, s2, keep ? gl2 : null));
                if (forward) {
                    for (long r = 0; r < rows; r++) {
                        close(lp1.getFloat(r), lp2.getFloat(r), 1, ctx + " log_prob[" + r + "]");
                        if (entropy) {
                            close(e1.getFloat(r), e2.getFloat(r), 1, ctx + " entropy[" + r + "]");
                        }
                    }
                }
                final OffHeapArray up = Inputs.filled(d, g, ElementType.F32, rows + Inputs.delta(d));
                final OffHeapArray upE = d.consumeBoolean() ? null : Inputs.filled(d, g, ElementType.F32,
                    rows + Inputs.delta(d));
                final double tb = d.consumeInt(0, 20) == 0 ? Inputs.param(d, 0.5, 2.0) : t;
                final boolean fromStats = forward && withStats && d.consumeInt(0, 5) != 0;
                if (!forward && keep) {
                    return;
                }
                if (both(() -> REFERENCE.logProbsBackward(lg, labels, tb, mask, up, upE, gl1, fromStats ? s1 : null),
                    () -> v.logProbsBackward(lg, labels, tb, mask, up, upE, gl2, fromStats ? s2 : null))) {
                    sameBits(gl1, gl2, ctx + " backward T=" + tb + " fromStats=" + fromStats + " gradient");
                }
            }
            g.check();
        }
    }

    /** actorLoss from log-probs: every policy/KL/aggregation setting (entropy and KL 'full' are refused here). */
    @FuzzTest(maxDuration = "2h", maxExecutions = 1_000_000)
    void actorLoss(final FuzzedDataProvider d) {
        try (Guarded g = new Guarded()) {
            final LossSpec spec = Inputs.spec(d);
            final TokenBatch b = spec == null ? null : Inputs.batch(d, g, POLICY,
                List.of(Column.REF_LOG_PROB, Column.ROLLOUT_IS_WEIGHTS));
            if (b == null) {
                g.check();
                return;
            }
            try (b) {
                final boolean grad = d.consumeInt(0, 7) != 0;
                final long len = Math.max(0, b.numTokens() + Inputs.delta(d));
                final OffHeapArray g1 = grad ? g.alloc(ElementType.F32, len) : null;
                final OffHeapArray g2 = grad ? g.alloc(ElementType.F32, len) : null;
                final ActorLossResult r1 = new ActorLossResult();
                final ActorLossResult r2 = new ActorLossResult();
                final Engine v = Inputs.vector(d);
                if (both(() -> REFERENCE.actorLoss(spec, b, g1, r1), () -> v.actorLoss(spec, b, g2, r2))) {
                    final String ctx = "actorLoss " + spec + " " + describe(b) + " on " + v.name();
                    sameBits(g1, g2, ctx + " gradient");
                    assertActor(r1, r2, spec, b, null, 0, ctx);
                }
            }
            g.check();
        }
    }

    /** actorLoss from logits: vocabulary pass, entropy, KL (per token or full), backward into the logits. */
    @FuzzTest(maxDuration = "2h", maxExecutions = 1_000_000)
    void actorLossLogits(final FuzzedDataProvider d) {
        try (Guarded g = new Guarded()) {
            final LossSpec spec = Inputs.spec(d);
            final TokenBatch b = spec == null ? null : Inputs.batch(d, g, List.of(Column.OLD_LOG_PROB,
                Column.ADVANTAGES), List.of(Column.REF_LOG_PROB, Column.ROLLOUT_IS_WEIGHTS, Column.LOG_PROB));
            if (b == null) {
                g.check();
                return;
            }
            try (b) {
                final int rows = d.consumeInt(0, 20) == 0 ? b.numTokens() + 1 : b.numTokens();
                final int vocab = d.consumeInt(1, 80);
                final Logits lg = Inputs.logits(d, g, rows, vocab);
                final boolean full = spec.useKlLoss() && spec.klLossType().estimator() == KlPenalty.Estimator.FULL;
                final Logits ref = lg == null || (full == (d.consumeInt(0, 20) == 0)) ? null
                    : Inputs.logits(d, g, rows, vocab);
                if (lg == null) {
                    g.check();
                    return;
                }
                final OffHeapArray labels = Inputs.labels(d, g, rows, vocab);
                final long len = Math.max(0, rows + Inputs.delta(d));
                final OffHeapArray lp1 = d.consumeBoolean() ? null : g.alloc(ElementType.F32, len);
                final OffHeapArray lp2 = lp1 == null ? null : g.alloc(ElementType.F32, len);
                final long glen = Math.max(0, lg.requiredLength() + Inputs.delta(d));
                final OffHeapArray gl1 = d.consumeInt(0, 5) == 0 ? null : g.alloc(ElementType.F32, glen);
                final OffHeapArray gl2 = gl1 == null ? null : g.alloc(ElementType.F32, glen);
                final ActorLossResult r1 = new ActorLossResult();
                final ActorLossResult r2 = new ActorLossResult();
                final Engine v = Inputs.vector(d);
                if (both(() -> REFERENCE.actorLoss(spec, b, lg, labels, ref, lp1, gl1, r1),
                    () -> v.actorLoss(spec, b, lg, labels, ref, lp2, gl2, r2))) {
                    final String ctx = "actorLoss(logits) " + spec + " " + b + " " + lg + " on " + v.name();
                    sameBits(lp1, lp2, ctx + " d loss / d log_prob");
                    sameBits(gl1, gl2, ctx + " d loss / d logits");
                    assertActor(r1, r2, spec, b, logProbs(lg, labels, spec, b), vocab, ctx);
                }
            }
            g.check();
        }
    }

    /**
     * The actor parity contract: reduced terms within 1 ulp, their composition and every metric within 2, each plus
     * its conditioning bound ({@link Conditioning}).
     *
     * @param logProb the per-token log-probs the loss saw (from the logits), or null to read the batch's column.
     */
    private static void assertActor(final ActorLossResult r1, final ActorLossResult r2, final LossSpec spec,
                                    final TokenBatch b, final float[] logProb, final int vocab, final String ctx) {
        final DoubleSupplier pg = () -> Conditioning.bound(spec.aggregationSpec(), b,
            Conditioning.policyMagnitude(spec, b, logProb));
        Conditioning.policy(r1.policy(), r2.policy(), 1, pg,
            () -> Conditioning.meanBound(b, Conditioning.klMagnitude(b, logProb)), ctx);
        if (r1.hasKl() != r2.hasKl() || r1.hasEntropy() != r2.hasEntropy()) {
            throw new AssertionError(ctx + ": terms differ");
        }
        final OffHeapArray lp = b.column(Column.LOG_PROB);
        final OffHeapArray ref = b.column(Column.REF_LOG_PROB);
        final DoubleSupplier kl = !r1.hasKl() ? () -> 0 : ref == null
            ? () -> Conditioning.bound(spec, b, t -> 2 * Math.log(Math.max(2, vocab)) + 40)
            : () -> Conditioning.bound(spec, b, t -> {
                final double d = (logProb != null ? logProb[t] : lp.getFloat(t)) - (double) ref.getFloat(t);
                return Math.max(Math.max(Math.abs(d), 0.5 * d * d), 10);
            });
        if (r1.hasKl()) {
            Conditioning.close(r1.klLoss(), r2.klLoss(), 1, kl, ctx + " kl_loss");
        }
        final DoubleSupplier ent = !r1.hasEntropy() ? () -> 0
            : () -> Conditioning.bound(spec, b, t -> Math.log(Math.max(2, vocab)) + 1);
        if (r1.hasEntropy()) {
            Conditioning.close(r1.entropyAgg(), r2.entropyAgg(), 1, ent, ctx + " entropy");
        }
        final DoubleSupplier total = () -> (pg.getAsDouble() + Math.abs(spec.klLossCoef()) * kl.getAsDouble()
            + Math.abs(spec.entropyCoeff()) * ent.getAsDouble()) * Math.max(1, spec.microBatchScale()) * 2;
        Conditioning.close(r1.loss(), r2.loss(), 2, total, ctx + " loss");
        final java.util.Map<String, Double> m1 = r1.metrics();
        final java.util.Map<String, Double> m2 = r2.metrics();
        if (!m1.keySet().equals(m2.keySet())) {
            throw new AssertionError(ctx + ": metric keys " + m2.keySet() + " vs " + m1.keySet());
        }
        // Metrics are the loss's terms or masked means over valid tokens (ppo_kl: of |log-ratio| terms).
        final DoubleSupplier metric = () -> total.getAsDouble()
            + Conditioning.meanBound(b, Conditioning.klMagnitude(b, logProb));
        for (final String k : m1.keySet()) {
            Conditioning.close(m1.get(k).floatValue(), m2.get(k).floatValue(), 2, metric, ctx + " metric " + k);
        }
    }

    /** @return the per-token log-probs the actor loss computes from these logits (reference vocabulary pass). */
    private static float[] logProbs(final Logits lg, final OffHeapArray labels, final LossSpec spec,
                                    final TokenBatch b) {
        try (Guarded g = new Guarded()) {
            final OffHeapArray lp = g.alloc(ElementType.F32, Math.max(1, lg.rows()));
            REFERENCE.logProbs(lg, labels, spec.temperature(), b.mask(), lp, null);
            return lp.toFloatArray();
        }
    }
}
