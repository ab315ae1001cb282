package io.rlvec.contract;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import java.util.ArrayList;
import java.util.List;
import java.util.stream.Stream;

import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.Arguments;
import org.junit.jupiter.params.provider.EnumSource;
import org.junit.jupiter.params.provider.MethodSource;

import io.rlvec.AggMode;
import io.rlvec.Column;
import io.rlvec.ElementType;
import io.rlvec.Engine;
import io.rlvec.LossSpec;
import io.rlvec.OffHeapArray;
import io.rlvec.PolicyLossResult;
import io.rlvec.TokenBatch;
import io.rlvec.VerlRelease;
import io.rlvec.testing.Gen;
import io.rlvec.testing.Results;
import io.rlvec.testing.TokenData;
import io.rlvec.testing.Ulp;

/**
 * The behaviour of {@link Engine#policyLoss} (verl's compute_policy_loss_vanilla + agg_loss), written once and
 * run on every implementation: hand-computed cases, every aggregation mode, masking, validation, layouts and the
 * micro-batch merge. Randomised tests are seeded and print the seed.
 */
public abstract class PolicyLossContract {
    /** Bits written into gradient buffers before a call: every slot must be overwritten. */
    protected static final float SENTINEL = Float.intBitsToFloat(0x7fc0dead);
    private static final float W = Float.NaN;

    /** @return the engine under test (a new or shared instance). */
    protected abstract Engine engine();

    /** A finished call: the result and a heap copy of the gradient (null when none was asked for). */
    protected record Outcome(PolicyLossResult result, float[] grad) {
    }

    /** Runs the engine on a fresh off-heap copy of {@code d}, gradient included. */
    protected final Outcome run(final LossSpec spec, final TokenData d) {
        try (TokenBatch batch = d.batch();
             OffHeapArray grad = OffHeapArray.allocate(ElementType.F32, d.numTokens())) {
            grad.fill(SENTINEL);
            final PolicyLossResult out = new PolicyLossResult();
            engine().policyLoss(spec, batch, grad, out);
            return new Outcome(out, grad.toFloatArray());
        }
    }

    private static LossSpec spec(final AggMode mode) {
        return LossSpec.builder().lossAggMode(mode).build();
    }

    private static float ln(final double x) {
        return (float) Math.log(x);
    }

    /** One valid sequence with per-token (A, log-ratio) pairs: log_prob = -1 + d, old_log_prob = -1. */
    private static TokenData tokens(final float[] adv, final float[] logRatio) {
        final int n = adv.length;
        final float[] lp = new float[n];
        final float[] old = new float[n];
        final float[] mask = new float[n];
        for (int i = 0; i < n; i++) {
            old[i] = -1f;
            lp[i] = -1f + logRatio[i];
            mask[i] = 1f;
        }
        return TokenData.packed(new int[] {n}, lp, old, adv, mask, null);
    }

    /** The log-ratio as the engine computes it from {@link #tokens}: (-1 + d) - (-1) in float. */
    private static double ratioOf(final float logRatio) {
        return Math.exp((-1f + logRatio) - -1f);
    }

    private static void assertRel(final double expected, final float actual, final String what) {
        assertThat((double) actual).as(what).isCloseTo(expected, org.assertj.core.data.Offset.offset(
            Math.abs(expected) * 4e-6 + 1e-30));
    }

    // ---------------------------------------------------------------- hand-computed cases

    @Test
    void upperClipForPositiveAdvantageCutsLossAndGradient() {
        // A = 2, ratio = e^0.5 = 1.65 > 1.2: pg2 = -2 * 1.2 wins the maximum; clamp blocks the gradient.
        final Outcome o = run(LossSpec.builder().build(), tokens(new float[] {2f}, new float[] {0.5f}));
        assertThat(o.result().pgLoss()).isEqualTo(-2f * (float) (1.0 + 0.2));
        assertThat(o.grad()[0]).isZero();
        assertThat(o.result().pgClipfrac()).isEqualTo(1f);
        assertThat(o.result().clippedHighFrac()).isEqualTo(1f);
        assertThat(o.result().posRatioAboveOne()).isEqualTo(1f);
        assertThat(o.result().pgClipfracLower()).isZero();
    }

    @Test
    void positiveAdvantageBelowTheClipIsNotClipped() {
        // A = 2, ratio = e^-0.5 = 0.607 < 0.8: pg1 = -1.21 > pg2 = -1.6, so the unclipped term and its gradient.
        final Outcome o = run(LossSpec.builder().build(), tokens(new float[] {2f}, new float[] {-0.5f}));
        final double ratio = ratioOf(-0.5f);
        assertRel(-2 * ratio, o.result().pgLoss(), "loss");
        // One token: token weight 1, gradient d(-A ratio)/d logp = -A ratio = the loss itself.
        assertThat(o.grad()[0]).isEqualTo(o.result().pgLoss());
        assertThat(o.result().pgClipfrac()).isZero();
        assertThat(o.result().clippedHighFrac()).isZero();
    }

    @Test
    void dualClipBoundsNegativeAdvantageLossAtClipRatioC() {
        // A = -1, ratio = 4: clip1 = max(4, 1.2) = 4; with c = 3 the dual clip gives 3 and no gradient.
        final TokenData d = tokens(new float[] {-1f}, new float[] {ln(4)});
        final Outcome c3 = run(LossSpec.builder().clipRatioC(3.0).build(), d);
        assertThat(c3.result().pgLoss()).isEqualTo(3f);
        assertThat(c3.grad()[0]).isZero();
        assertThat(c3.result().pgClipfracLower()).isEqualTo(1f);
        assertThat(c3.result().pgClipfrac()).isZero();
        // With c = 10 the bound is not reached: loss = ratio, gradient = -A ratio = ratio.
        final Outcome c10 = run(LossSpec.builder().clipRatioC(10.0).build(), d);
        assertRel(ratioOf(ln(4)), c10.result().pgLoss(), "loss with c=10");
        assertThat(c10.grad()[0]).isEqualTo(c10.result().pgLoss());
        assertThat(c10.result().pgClipfracLower()).isZero();
    }

    @Test
    void negativeAdvantageBelowTheClipIsClippedLow() {
        // A = -1, ratio = 0.607 < 0.8: pg2 = 0.8 > pg1 = 0.607 wins, clamp blocks the gradient.
        final Outcome o = run(LossSpec.builder().build(), tokens(new float[] {-1f}, new float[] {-0.5f}));
        assertThat(o.result().pgLoss()).isEqualTo((float) (1.0 - 0.2));
        assertThat(o.grad()[0]).isZero();
        assertThat(o.result().clippedLowFrac()).isEqualTo(1f);
        assertThat(o.result().pgClipfrac()).isEqualTo(1f);
        assertThat(o.result().negRatioAboveOne()).isZero();
    }

    @Test
    void asymmetricClipUsesLowAndHighSeparately() {
        final float[] adv = {1f, 1f, -1f, -1f};
        final float[] logRatio = {ln(1.25), ln(1.35), ln(0.85), ln(0.95)};
        final TokenData d = tokens(adv, logRatio);
        final Outcome o = run(LossSpec.builder().clipRatioLow(0.1).clipRatioHigh(0.3).build(), d);
        // [0.9, 1.3]: 1.25 inside (-ratio), 1.35 clipped to -1.3, 0.85 clipped to 0.9, 0.95 inside (ratio).
        final double r0 = ratioOf(logRatio[0]);
        final double r3 = ratioOf(logRatio[3]);
        assertRel((-r0 - (float) 1.3 + (float) 0.9 + r3) / 4, o.result().pgLoss(), "asymmetric loss");
        final float tw = 0.25f;
        assertRel(-r0 * tw, o.grad()[0], "gradient inside, A > 0");
        assertThat(o.grad()[1]).isZero();
        assertThat(o.grad()[2]).isZero();
        assertRel(r3 * tw, o.grad()[3], "gradient inside, A < 0");
        assertThat(o.result().clippedHighFrac()).isEqualTo(0.25f);
        assertThat(o.result().clippedLowFrac()).isEqualTo(0.25f);
        // The symmetric 0.2 clip treats the same tokens differently: 1.25 is clipped, 0.85 is not.
        final Outcome sym = run(LossSpec.builder().build(), d);
        assertThat(sym.grad()[0]).isZero();
        assertRel(ratioOf(logRatio[2]) * tw, sym.grad()[2], "symmetric clip keeps 0.85");
    }

    @Test
    void ratioOneSplitsTheTieAndGivesMinusAdvantageTimesTokenWeight() {
        // log_prob == old_log_prob: ratio = 1 exactly, pg1 == pg2; torch.maximum gives each half the gradient and
        // the clamp passes (1 is inside), so d loss/d logp = -A * (0.5 + 0.5) * 1 * token weight.
        final float[] adv = {2f, -3f, 0.5f};
        final Outcome o = run(LossSpec.builder().build(), tokens(adv, new float[3]));
        final float tw = (float) (1.0 / 3);
        for (int i = 0; i < adv.length; i++) {
            assertThat(o.grad()[i]).as("token %d", i).isEqualTo(-adv[i] * tw);
        }
        assertThat(o.result().pgLoss()).isEqualTo((float) ((-2.0 + 3.0 - 0.5) / 3));
        assertThat(o.result().pgClipfrac()).isZero();
        assertThat(o.result().ppoKl()).isZero();
    }

    @Test
    void zeroAdvantageContributesNothing() {
        final float[] adv = {0f, -0f, 0f, 0f};
        final Outcome o = run(LossSpec.builder().build(),
            tokens(adv, new float[] {0.5f, -0.5f, 0f, 30f}));
        assertThat(o.result().pgLoss()).isZero();
        for (int i = 0; i < adv.length; i++) {
            assertThat(o.grad()[i]).as("token %d", i).isZero();
        }
        assertThat(o.result().posTokens()).isZero();
        assertThat(o.result().negTokens()).isZero();
        assertThat(o.result().validTokens()).isEqualTo(4);
        assertThat(o.result().posContribution()).isZero();
        assertThat(o.result().negContribution()).isZero();
    }

    @Test
    void logRatioIsClampedAtTwentyAndBlocksTheGradientOutside() {
        // d = 20 exactly: inside the closed interval, gradient passes; d = 20.5: clamped to 20, no gradient.
        final float[] adv = {-1e-9f, -1e-9f};
        final Outcome o = run(LossSpec.builder().clipRatioC(1e30).build(), tokens(adv, new float[] {20f, 20.5f}));
        assertThat(o.grad()[0]).isNotZero();
        assertThat(o.grad()[1]).isZero();
        assertRel(20.0, -o.result().ppoKl(), "ppo_kl = -mean(clamped log-ratio)");
    }

    @Test
    void rolloutWeightsMultiplyLossAndGradient() {
        final float[] adv = {1f, -2f, 0.5f, -0.25f, 3f};
        final float[] logRatio = {0.1f, -0.05f, 0f, 0.3f, -0.4f};
        final TokenData plain = tokens(adv, logRatio);
        final float[] twos = {2f, 2f, 2f, 2f, 2f};
        final TokenData doubled = TokenData.packed(new int[] {5}, plain.logProb, plain.oldLogProb, adv, plain.mask,
            twos);
        final Outcome p = run(LossSpec.builder().build(), plain);
        final Outcome w = run(LossSpec.builder().build(), doubled);
        // Doubling is exact in float and double: everything doubles bit for bit.
        assertThat(w.result().pgLoss()).isEqualTo(2f * p.result().pgLoss());
        for (int i = 0; i < adv.length; i++) {
            assertThat(w.grad()[i]).as("token %d", i).isEqualTo(2f * p.grad()[i]);
        }
        // A zero weight removes the token from the loss and the gradient (it still counts as valid). Token 2 has
        // ratio 1 and A = 0.5, so its own loss is exactly -0.5.
        final float[] oneZero = {1f, 1f, 0f, 1f, 1f};
        final Outcome z = run(LossSpec.builder().build(), TokenData.packed(new int[] {5}, plain.logProb,
            plain.oldLogProb, adv, plain.mask, oneZero));
        assertThat(z.grad()[2]).isZero();
        assertThat(z.result().validTokens()).isEqualTo(5);
        assertRel((p.result().pgLoss() * 5.0 + 0.5) / 5, z.result().pgLoss(), "loss without token 2");
    }

    @Test
    void signAwareClipFractionsAndCounts() {
        final float[] adv = {1f, 1f, -1f, -1f, -1f, 0f};
        final float[] logRatio = {ln(1.5), ln(0.5), ln(0.5), ln(1.5), ln(4), ln(1.5)};
        final Outcome o = run(LossSpec.builder().build(), tokens(adv, logRatio));
        final PolicyLossResult r = o.result();
        assertThat(r.posTokens()).isEqualTo(2);
        assertThat(r.negTokens()).isEqualTo(3);
        assertThat(r.validTokens()).isEqualTo(6);
        assertThat(r.posRatioAboveOne()).isEqualTo(0.5f);
        assertThat(r.negRatioAboveOne()).isEqualTo((float) (2.0 / 3));
        assertThat(r.clippedHighFrac()).isEqualTo((float) (1.0 / 6));
        assertThat(r.clippedLowFrac()).isEqualTo((float) (1.0 / 6));
        assertThat(r.clippedFrac()).isEqualTo((float) (2.0 / 6));
        assertThat(r.pgClipfrac()).isEqualTo((float) (2.0 / 6));
        assertThat(r.pgClipfracLower()).isEqualTo((float) (1.0 / 6));
        assertThat(r.metrics()).containsKeys("actor/pg_loss", "actor/pg_clipfrac", "actor/ppo_kl",
            "actor/pg_clipfrac_lower", "actor/pg_loss_pos_adv", "actor/pg_loss_neg_adv");
    }

    // ---------------------------------------------------------------- aggregation modes

    /**
     * B = 3, T = 4, ratio 1 everywhere so that the per-token loss is exactly -A: row 0 holds losses 1, 2, 3 and a
     * padding slot, row 1 is fully masked, row 2 holds 4, 6 and two padding slots. Masked slots hold NaN.
     */
    static TokenData aggFixture() {
        final float[] adv = {-1f, -2f, -3f, W, W, W, W, W, -4f, -6f, W, W};
        final float[] mask = {1, 1, 1, 0, 0, 0, 0, 0, 1, 1, 0, 0};
        final float[] lp = new float[12];
        for (int i = 0; i < 12; i++) {
            lp[i] = mask[i] != 0f ? -0.5f : W;
        }
        return TokenData.padded(4, lp, lp, adv, mask, null);
    }

    /** (spec, expected loss, expected denominator, token weight of row 0, token weight of row 2). */
    static Stream<Arguments> aggCases() {
        final LossSpec.Builder b = LossSpec.builder();
        final VerlRelease jan = VerlRelease.V2026_01;
        return Stream.of(
            Arguments.of(b.lossAggMode(AggMode.TOKEN_MEAN).build(), 16.0 / 5, 5.0, 1.0 / 5, 1.0 / 5),
            Arguments.of(LossSpec.builder().lossAggMode(AggMode.TOKEN_MEAN).dpSize(2).batchNumTokens(10).build(),
                16.0 / 10 * 2, 10.0, 2.0 / 10, 2.0 / 10),
            // verl 2026-01 falls back to the local count with dp_size > 1; 2026-08 refuses (rejection tests).
            Arguments.of(LossSpec.builder().lossAggMode(AggMode.TOKEN_MEAN).dpSize(3).release(jan).build(),
                16.0 / 5 * 3, 5.0, 3.0 / 5, 3.0 / 5),
            Arguments.of(LossSpec.builder().lossAggMode(AggMode.TOKEN_SUM).build(), 16.0, 1.0, 1.0, 1.0),
            Arguments.of(LossSpec.builder().lossAggMode(AggMode.TOKEN_SUM).dpSize(2).build(), 32.0, 1.0, 2.0, 2.0),
            Arguments.of(LossSpec.builder().lossAggMode(AggMode.SEQ_MEAN_TOKEN_SUM).build(), 16.0 / 2, 2.0, 0.5, 0.5),
            Arguments.of(LossSpec.builder().lossAggMode(AggMode.SEQ_MEAN_TOKEN_SUM).dpSize(2).globalBatchSize(4)
                .build(), 16.0 / 4 * 2, 4.0, 2.0 / 4, 2.0 / 4),
            Arguments.of(LossSpec.builder().lossAggMode(AggMode.SEQ_MEAN_TOKEN_MEAN).build(), (2.0 + 5.0) / 2, 2.0,
                1.0 / (2 * 3), 1.0 / (2 * 2)),
            Arguments.of(LossSpec.builder().lossAggMode(AggMode.SEQ_MEAN_TOKEN_MEAN).dpSize(2).globalBatchSize(4)
                .build(), 7.0 / 4 * 2, 4.0, 2.0 / (4 * 3), 2.0 / (4 * 2)),
            // 2026-01: the token sum over the factor (padded width 4, or given), no dp_size.
            Arguments.of(LossSpec.builder().lossAggMode(AggMode.SEQ_MEAN_TOKEN_SUM_NORM).release(jan).build(),
                16.0 / 4, 4.0, 1.0 / 4, 1.0 / 4),
            Arguments.of(LossSpec.builder().lossAggMode(AggMode.SEQ_MEAN_TOKEN_SUM_NORM).dpSize(2)
                .lossScaleFactor(8).release(jan).build(), 16.0 / 8, 8.0, 1.0 / 8, 1.0 / 8),
            // 2026-08: the seq-mean-token-sum over the factor: D = sequences * factor, times dp_size.
            Arguments.of(LossSpec.builder().lossAggMode(AggMode.SEQ_MEAN_TOKEN_SUM_NORM).build(),
                16.0 / 8, 8.0, 1.0 / 8, 1.0 / 8),
            Arguments.of(LossSpec.builder().lossAggMode(AggMode.SEQ_MEAN_TOKEN_SUM_NORM).dpSize(2).globalBatchSize(4)
                .lossScaleFactor(8).build(), 16.0 / 32 * 2, 32.0, 2.0 / 32, 2.0 / 32));
    }

    @ParameterizedTest
    @MethodSource("aggCases")
    void everyAggregationModeWithDefaultAndGlobalArguments(final LossSpec spec, final double loss,
                                                           final double denominator, final double tw0,
                                                           final double tw2) {
        final TokenData d = aggFixture();
        final Outcome o = run(spec, d);
        assertThat(o.result().pgLoss()).as("%s", spec).isEqualTo((float) loss);
        assertThat(o.result().denominator()).as("%s", spec).isEqualTo(denominator);
        assertThat(o.result().validTokens()).isEqualTo(5);
        assertThat(o.result().validSequences()).isEqualTo(2);
        for (int t = 0; t < d.numTokens(); t++) {
            final float expected = d.mask[t] == 0f ? 0f : -d.advantages[t] * (float) (t < 4 ? tw0 : tw2);
            assertThat(Float.floatToRawIntBits(o.grad()[t])).as("%s token %d: %s", spec, t, o.grad()[t])
                .isEqualTo(Float.floatToRawIntBits(expected));
        }
        // All advantages are negative: the whole loss is the A < 0 part.
        assertThat(o.result().negContribution()).isEqualTo(o.result().pgLoss());
        assertThat(o.result().posContribution()).isZero();
    }

    @ParameterizedTest
    @EnumSource(AggMode.class)
    void noValidTokenGivesZeroNotNaN(final AggMode mode) {
        final TokenData d = aggFixture();
        final float[] none = new float[d.numTokens()];
        final float[] nan = new float[d.numTokens()];
        java.util.Arrays.fill(nan, Float.NaN);
        final TokenData empty = TokenData.padded(4, nan, nan, nan, none, nan);
        final Outcome o = run(spec(mode), empty);
        final PolicyLossResult r = o.result();
        assertThat(r.pgLoss()).as("%s", mode).isZero();
        assertThat(r.posContribution()).isZero();
        assertThat(r.negContribution()).isZero();
        assertThat(r.ppoKl()).isZero();
        assertThat(r.pgClipfrac()).isZero();
        assertThat(r.pgClipfracLower()).isZero();
        assertThat(r.clippedFrac()).isZero();
        assertThat(r.posRatioAboveOne()).isZero();
        assertThat(r.validTokens()).isZero();
        assertThat(r.validSequences()).isZero();
        for (final float g : o.grad()) {
            assertThat(Float.floatToRawIntBits(g)).isZero();
        }
    }

    @Test
    void emptyBatchAndEmptySequences() {
        final Outcome none = run(spec(AggMode.TOKEN_MEAN),
            TokenData.packed(new int[0], new float[0], new float[0], new float[0], new float[0], null));
        assertThat(none.result().pgLoss()).isZero();
        final TokenData d = tokens(new float[] {-1f, 2f}, new float[] {0f, 0f});
        final TokenData withEmpties = TokenData.packed(new int[] {0, 2, 0}, d.logProb, d.oldLogProb, d.advantages,
            d.mask, null);
        final Outcome o = run(spec(AggMode.SEQ_MEAN_TOKEN_MEAN), withEmpties);
        assertThat(o.result().validSequences()).isEqualTo(1);
        assertThat(o.result().pgLoss()).isEqualTo((float) ((1.0 - 2.0) / 2));
    }

    @ParameterizedTest
    @MethodSource("seedsAndModes")
    void maskedNaNAndInfNeverLeak(final long seed, final AggMode mode) {
        final Gen g = new Gen(seed);
        final TokenData clean = TokenData.random(g, TokenData.Options.of(g.chance(0.5)).weights(g.chance(0.5))
            .sizes(12, 70));
        // The same valid data, masked slots first zero, then NaN / Inf / random bits in every column.
        final TokenData zeroed = withMasked(clean, () -> 0f);
        final TokenData dirty = withMasked(clean, g::garbage);
        final LossSpec spec = specFor(mode, clean, 1);
        final Outcome a = run(spec, zeroed);
        final Outcome b = run(spec, dirty);
        final String ctx = "seed=" + seed + " " + mode + " " + clean;
        Results.assertClose(a.result(), b.result(), 0, ctx);
        Results.assertSameBits(a.grad(), b.grad(), ctx);
        for (int t = 0; t < clean.numTokens(); t++) {
            if (clean.mask[t] == 0f) {
                assertThat(Float.floatToRawIntBits(b.grad()[t])).as("%s: masked token %d", ctx, t).isZero();
            }
        }
        assertThat(Float.isNaN(b.result().pgLoss())).as(ctx).isFalse();
        assertThat(Float.isNaN(b.result().ppoKl())).as(ctx).isFalse();
    }

    private static TokenData withMasked(final TokenData d, final java.util.function.Supplier<Float> value) {
        final float[][] cols = {d.logProb.clone(), d.oldLogProb.clone(), d.advantages.clone(),
            d.weights == null ? null : d.weights.clone()};
        for (int t = 0; t < d.numTokens(); t++) {
            if (d.mask[t] == 0f) {
                for (final float[] c : cols) {
                    if (c != null) {
                        c[t] = value.get();
                    }
                }
            }
        }
        return d.isPadded() ? TokenData.padded(d.paddedWidth, cols[0], cols[1], cols[2], d.mask, cols[3])
            : TokenData.packed(d.rowLengths, cols[0], cols[1], cols[2], d.mask, cols[3]);
    }

    static Stream<Arguments> seedsAndModes() {
        final List<Arguments> out = new ArrayList<>();
        long seed = 0x5EED_0000L;
        for (final AggMode m : AggMode.values()) {
            for (int i = 0; i < 4; i++) {
                out.add(Arguments.of(seed++, m));
            }
        }
        return out.stream();
    }

    /** A spec for {@code mode} that can run on {@code d} (sum-norm on a packed batch needs loss_scale_factor). */
    static LossSpec specFor(final AggMode mode, final TokenData d, final int dpSize) {
        final LossSpec.Builder b = LossSpec.builder().lossAggMode(mode).dpSize(dpSize);
        if (mode == AggMode.SEQ_MEAN_TOKEN_SUM_NORM && !d.isPadded()) {
            b.lossScaleFactor(64);
        }
        if (dpSize > 1) {
            // From verl 2026-08 on, dp_size > 1 needs the global counts.
            b.batchNumTokens(Math.max(1, d.validTokens())).globalBatchSize(Math.max(1, d.validSequences()));
        }
        return b.build();
    }

    @ParameterizedTest
    @MethodSource("seedsAndModes")
    void signSplitAddsUpToTheLoss(final long seed, final AggMode mode) {
        final Gen g = new Gen(seed);
        final TokenData d = TokenData.random(g, TokenData.Options.of(g.chance(0.5)).weights(g.chance(0.5))
            .sizes(16, 120));
        final Outcome o = run(specFor(mode, d, 1 + g.nextInt(3)), d);
        final PolicyLossResult r = o.result();
        final float pos = r.posContribution();
        final float neg = r.negContribution();
        final double scale = Math.max(Math.abs(pos), Math.max(Math.abs(neg), Math.abs(r.pgLoss())));
        // pos and neg are each rounded to float once and added once: at most 2 ulps of the largest apart.
        assertThat(Math.abs((double) pos + neg - r.pgLoss())).as("seed=%d %s: %s + %s vs %s", seed, mode, pos, neg,
            r.pgLoss()).isLessThanOrEqualTo(2 * Math.ulp((float) scale));
        assertThat(pos).as("seed=%d: A > 0 tokens only lower the loss", seed).isLessThanOrEqualTo(0f);
        assertThat(neg).as("seed=%d: A < 0 tokens only raise the loss", seed).isGreaterThanOrEqualTo(0f);
    }

    // ---------------------------------------------------------------- validation

    @Test
    void specValidationNamesTheArgument() {
        assertThatThrownBy(() -> LossSpec.builder().clipRatioC(1.0).build())
            .isInstanceOf(IllegalArgumentException.class).hasMessageContaining("clip_ratio_c");
        assertThatThrownBy(() -> LossSpec.builder().set("clip_ratio_c", 0.5).build())
            .isInstanceOf(IllegalArgumentException.class).hasMessageContaining("clip_ratio_c").hasMessageContaining("> 1");
        assertThatThrownBy(() -> LossSpec.builder().clipRatio(-0.1).build())
            .isInstanceOf(IllegalArgumentException.class).hasMessageContaining("clip_ratio");
        assertThatThrownBy(() -> LossSpec.builder().clipRatioLow(-0.1).build())
            .isInstanceOf(IllegalArgumentException.class).hasMessageContaining("clip_ratio_low");
        assertThatThrownBy(() -> LossSpec.builder().clipRatioHigh(Double.POSITIVE_INFINITY).build())
            .isInstanceOf(IllegalArgumentException.class).hasMessageContaining("clip_ratio_high");
        assertThatThrownBy(() -> LossSpec.builder().dpSize(0).build())
            .isInstanceOf(IllegalArgumentException.class).hasMessageContaining("dp_size");
        assertThatThrownBy(() -> LossSpec.builder().batchNumTokens(0).build())
            .isInstanceOf(IllegalArgumentException.class).hasMessageContaining("batch_num_tokens");
    }

    @Test
    void batchValidationNamesTheArgument() {
        assertThatThrownBy(() -> TokenBatch.padded(2, 4).column(Column.ADVANTAGES, new float[7]).build())
            .isInstanceOf(IllegalArgumentException.class).hasMessageContaining("advantages")
            .hasMessageContaining("8");
        assertThatThrownBy(() -> TokenBatch.withOffsets(0, 5, 3).build())
            .isInstanceOf(IllegalArgumentException.class).hasMessageContaining("offsets");
        assertThatThrownBy(() -> TokenBatch.withOffsets(1, 5).build())
            .isInstanceOf(IllegalArgumentException.class).hasMessageContaining("offsets[0]");
        assertThatThrownBy(() -> TokenBatch.packed(3, -1))
            .isInstanceOf(IllegalArgumentException.class).hasMessageContaining("lengths[1]");
    }

    /** Runs {@code call} expecting an IllegalArgumentException naming {@code argument}, grad left untouched. */
    private void assertRejected(final LossSpec spec, final TokenBatch batch, final OffHeapArray grad,
                                final String argument) {
        if (grad != null && !grad.isClosed()) {
            grad.fill(SENTINEL);
        }
        final PolicyLossResult out = new PolicyLossResult();
        assertThatThrownBy(() -> engine().policyLoss(spec, batch, grad, out))
            .isInstanceOf(IllegalArgumentException.class).hasMessageContaining(argument);
        if (grad != null && !grad.isClosed() && grad.type() == ElementType.F32) {
            for (final float g : grad.toFloatArray()) {
                assertThat(Float.floatToRawIntBits(g)).as("nothing written before validation")
                    .isEqualTo(Float.floatToRawIntBits(SENTINEL));
            }
        }
    }

    @Test
    void engineRejectsBadArgumentsBeforeTouchingMemory() {
        final TokenData d = aggFixture();
        final LossSpec spec = LossSpec.builder().build();
        try (TokenBatch full = d.batch();
             TokenBatch noAdvantages = TokenBatch.padded(3, 4).column(Column.LOG_PROB, d.logProb)
                 .column(Column.OLD_LOG_PROB, d.oldLogProb).column(Column.RESPONSE_MASK, d.mask).build();
             TokenBatch packed = d.packed().batch();
             OffHeapArray shortGrad = OffHeapArray.allocate(ElementType.F32, d.numTokens() - 1);
             OffHeapArray bf16Grad = OffHeapArray.allocate(ElementType.BF16, d.numTokens());
             OffHeapArray grad = OffHeapArray.allocate(ElementType.F32, d.numTokens())) {
            final OffHeapArray closedGrad = OffHeapArray.allocate(ElementType.F32, d.numTokens());
            assertRejected(spec, noAdvantages, grad, "advantages");
            assertRejected(spec, full, shortGrad, "gradLogProb");
            assertRejected(spec, full, bf16Grad, "gradLogProb");
            closedGrad.close();
            assertRejected(spec, full, closedGrad, "gradLogProb");
            assertRejected(LossSpec.builder().lossAggMode(AggMode.SEQ_MEAN_TOKEN_SUM_NORM).build(), packed, grad,
                "loss_scale_factor");
            // The same packed batch runs once the factor is given.
            final PolicyLossResult out = new PolicyLossResult();
            engine().policyLoss(LossSpec.builder().lossAggMode(AggMode.SEQ_MEAN_TOKEN_SUM_NORM).lossScaleFactor(4)
                .build(), packed, null, out);
            // verl 2026-08: the seq-mean-token-sum (16 / 2 sequences) over the factor 4.
            assertThat(out.pgLoss()).isEqualTo(2f);
            assertThatThrownBy(() -> engine().policyLoss(null, full, grad, out))
                .isInstanceOf(NullPointerException.class).hasMessageContaining("spec");
        }
    }

    @Test
    void closedRolloutWeightsAreRejected() {
        final TokenData d = aggFixture();
        // A column that was long enough when the batch was built may be closed by its owner afterwards.
        final OffHeapArray weights = OffHeapArray.of(new float[d.numTokens()]);
        try (TokenBatch withWeights = TokenBatch.padded(3, 4).column(Column.LOG_PROB, d.logProb)
                 .column(Column.OLD_LOG_PROB, d.oldLogProb).column(Column.ADVANTAGES, d.advantages)
                 .column(Column.RESPONSE_MASK, d.mask).column(Column.ROLLOUT_IS_WEIGHTS, weights).build();
             OffHeapArray grad = OffHeapArray.allocate(ElementType.F32, d.numTokens())) {
            weights.close();
            assertRejected(LossSpec.builder().build(), withWeights, grad, "rollout_is_weights");
        }
    }

    @Test
    void gradientIsOptional() {
        final TokenData d = aggFixture();
        try (TokenBatch batch = d.batch()) {
            final PolicyLossResult out = new PolicyLossResult();
            engine().policyLoss(LossSpec.builder().build(), batch, null, out);
            assertThat(out.pgLoss()).isEqualTo((float) (16.0 / 5));
        }
    }

    // ---------------------------------------------------------------- layouts and micro-batches

    @ParameterizedTest
    @MethodSource("seedsAndModes")
    void paddedAndPackedLayoutsAgree(final long seed, final AggMode mode) {
        final Gen g = new Gen(seed);
        final TokenData padded = TokenData.random(g, TokenData.Options.of(true).weights(g.chance(0.5))
            .sizes(24, 150));
        final TokenData packed = padded.packed();
        final LossSpec.Builder b = LossSpec.builder().lossAggMode(mode).clipRatioLow(0.15).clipRatioHigh(0.28);
        if (mode == AggMode.SEQ_MEAN_TOKEN_SUM_NORM) {
            b.lossScaleFactor(padded.paddedWidth);
        }
        final LossSpec spec = b.build();
        final Outcome p = run(spec, padded);
        final Outcome k = run(spec, packed);
        final String ctx = "seed=" + seed + " " + mode + " " + padded;
        Results.assertClose(p.result(), k.result(), 1, ctx);
        for (int s = 0; s < padded.numSequences(); s++) {
            for (int j = 0; j < padded.paddedWidth; j++) {
                final float gp = p.grad()[padded.offsets[s] + j];
                if (j < padded.rowLengths[s]) {
                    final float gk = k.grad()[packed.offsets[s] + j];
                    assertThat(Ulp.sameBits(gp, gk)).as("%s: seq %d token %d: %s vs %s", ctx, s, j, gp, gk).isTrue();
                } else {
                    assertThat(Float.floatToRawIntBits(gp)).as("%s: padding", ctx).isZero();
                }
            }
        }
    }

    @ParameterizedTest
    @MethodSource("seedsAndModes")
    void microBatchesWithGlobalDenominatorsMergeIntoTheWholeBatch(final long seed, final AggMode mode) {
        final Gen g = new Gen(seed);
        final TokenData d = TokenData.random(g, TokenData.Options.of(g.chance(0.5)).weights(g.chance(0.5))
            .sizes(30, 90));
        final int dp = 1 + g.nextInt(4);
        final LossSpec.Builder b = LossSpec.builder().lossAggMode(mode).dpSize(dp)
            .clipRatioC(g.chance(0.5) ? 3.0 : 10.0);
        switch (mode) {
            case TOKEN_MEAN -> b.batchNumTokens(Math.max(1, d.validTokens()));
            case SEQ_MEAN_TOKEN_SUM, SEQ_MEAN_TOKEN_MEAN -> b.globalBatchSize(Math.max(1, d.validSequences()));
            case SEQ_MEAN_TOKEN_SUM_NORM -> b.lossScaleFactor(d.isPadded() ? d.paddedWidth : 77)
                .globalBatchSize(Math.max(1, d.validSequences()));
            case TOKEN_SUM -> { }
        }
        final LossSpec spec = b.build();
        final Outcome whole = run(spec, d);
        // Uneven micro-batches: random cut points, some micro-batches of a single sequence.
        final PolicyLossResult merged = new PolicyLossResult();
        merged.reset();
        int from = 0;
        final String ctx = "seed=" + seed + " " + mode + " dp=" + dp + " " + d;
        while (from < d.numSequences()) {
            final int to = Math.min(d.numSequences(), from + 1 + g.nextInt(Math.max(1, d.numSequences() / 2)));
            final Outcome part = run(spec, d.sequences(from, to));
            Results.assertSameBits(d.sliceTokens(whole.grad(), from, to), part.grad(),
                ctx + " micro-batch [" + from + ", " + to + ")");
            merged.merge(part.result());
            from = to;
        }
        Results.assertClose(whole.result(), merged, 1, ctx + " merged");
    }
}
