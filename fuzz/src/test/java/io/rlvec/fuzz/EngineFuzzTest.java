package io.rlvec.fuzz;

import static io.rlvec.fuzz.Inputs.REFERENCE;
import static io.rlvec.fuzz.Outcomes.both;
import static io.rlvec.fuzz.Outcomes.close;
import static io.rlvec.fuzz.Outcomes.sameBits;

import java.util.List;
import java.util.function.DoubleSupplier;

import com.code_intelligence.jazzer.api.FuzzedDataProvider;
import com.code_intelligence.jazzer.junit.FuzzTest;

import io.rlvec.ActorLossResult;
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
import io.rlvec.SoftmaxStats;
import io.rlvec.TokenBatch;

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

    /** @return the batch with its offsets, mask and log_prob values (small batches), for a finding's message. */
    static String describe(final TokenBatch b) {
        final StringBuilder s = new StringBuilder(b.toString()).append(" offsets=[");
        for (int i = 0; i <= b.numSequences() && i < 64; i++) {
            s.append(i > 0 ? "," : "").append(b.offset(i));
        }
        s.append("]");
        for (final Column c : new Column[] {Column.RESPONSE_MASK, Column.LOG_PROB, Column.OLD_LOG_PROB,
            Column.ADVANTAGES, Column.ROLLOUT_IS_WEIGHTS}) {
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
