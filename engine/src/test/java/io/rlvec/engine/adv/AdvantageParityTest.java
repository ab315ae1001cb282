package io.rlvec.engine.adv;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;
import static org.assertj.core.api.Assertions.catchThrowable;

import io.rlvec.AdvantageEstimator;
import io.rlvec.AdvantageInputs;
import io.rlvec.AdvantageSpec;
import io.rlvec.Column;
import io.rlvec.ElementType;
import io.rlvec.Engine;
import io.rlvec.OffHeapArray;
import io.rlvec.TokenBatch;
import io.rlvec.VerlRelease;
import io.rlvec.engine.Allocations;
import io.rlvec.engine.VectorEngine;
import io.rlvec.reference.ReferenceEngine;
import io.rlvec.testing.Results;
import java.util.ArrayList;
import java.util.List;
import java.util.SplittableRandom;
import org.junit.jupiter.api.Tag;
import org.junit.jupiter.api.Test;

/**
 * The vector engine's advantage estimators against the reference: the same bits for every estimator and release,
 * on padded and packed (ragged) batches with groups of 1..16 sequences shuffled through the batch, groups of
 * identical rewards, fully masked rows and lengths that are no multiple of any vector width; cold, hot (after
 * enough calls for C2), and with two threads; verl's errors raised alike and before anything is written.
 */
class AdvantageParityTest {
    private static final int CASES = 60;

    /** One random batch and its per-sequence inputs. */
    record Data(int[] lengths, int width, float[] rewards, float[] values, float[] mask, long[] index,
                float[] baselines) {
        int numTokens() {
            return rewards.length;
        }

        TokenBatch batch() {
            final TokenBatch.Builder b = width > 0 ? TokenBatch.padded(lengths.length, width)
                : TokenBatch.packed(lengths);
            final float[] lp = new float[values.length];
            final float[] spi = new float[values.length];
            for (int t = 0; t < lp.length; t++) {
                lp[t] = -Math.abs(values[t]) * 0.7f;
                spi[t] = Math.abs(rewards[t]) * 0.3f + 0.05f;
            }
            return b.column(Column.TOKEN_LEVEL_REWARDS, rewards).column(Column.VALUES, values)
                .column(Column.OLD_LOG_PROB, lp).column(Column.SUM_PI_SQUARED, spi)
                .column(Column.ROLLOUT_IS_WEIGHTS, spi)
                .mask(valid()).build();
        }

        boolean[] valid() {
            final boolean[] v = new boolean[mask.length];
            for (int t = 0; t < v.length; t++) {
                v[t] = mask[t] != 0;
            }
            return v;
        }

        @Override
        public String toString() {
            return (width > 0 ? "padded " + lengths.length + "x" + width : "packed " + lengths.length + " seqs")
                + ", " + numTokens() + " tokens";
        }
    }

    static Data random(final SplittableRandom r) {
        final int b = 1 + r.nextInt(40);
        final boolean padded = r.nextBoolean();
        final int width = padded ? 1 + r.nextInt(70) : 0;
        final int[] lengths = new int[b];
        int n = 0;
        for (int i = 0; i < b; i++) {
            lengths[i] = padded ? width : r.nextInt(90);
            n += lengths[i];
        }
        final float[] rewards = new float[n];
        final float[] values = new float[n];
        final float[] mask = new float[n];
        // Groups of 1..16 sequences, ids shuffled through the batch and not contiguous.
        final long[] index = new long[b];
        int filled = 0;
        long id = r.nextLong(1_000_000);
        final List<Long> ids = new ArrayList<>();
        while (filled < b) {
            final int size = Math.min(b - filled, 1 + r.nextInt(16));
            for (int k = 0; k < size; k++) {
                ids.add(id);
            }
            filled += size;
            id += 1 + r.nextInt(1000);
        }
        for (int i = b - 1; i > 0; i--) {
            final int j = r.nextInt(i + 1);
            final Long t = ids.get(i);
            ids.set(i, ids.get(j));
            ids.set(j, t);
        }
        final boolean identical = r.nextInt(3) == 0;
        final float[] baselines = new float[b];
        int at = 0;
        for (int i = 0; i < b; i++) {
            index[i] = ids.get(i);
            baselines[i] = (float) r.nextGaussian();
            final int valid = r.nextInt(8) == 0 ? 0 : Math.min(lengths[i], 1 + r.nextInt(Math.max(1, lengths[i])));
            final boolean dense = r.nextInt(4) == 0;
            final float outcome = identical ? 0.1f * (index[i] % 3) : r.nextInt(3) == 0 ? 1f : (float) r.nextGaussian();
            for (int t = 0; t < lengths[i]; t++) {
                final boolean m = t < valid && (r.nextInt(12) != 0 || t == valid - 1);
                mask[at + t] = m ? 1f : 0f;
                values[at + t] = m || r.nextBoolean() ? (float) r.nextGaussian() : Float.NaN;
                rewards[at + t] = dense && m ? (float) (r.nextGaussian() * 0.1) : t == valid - 1 ? outcome : 0f;
            }
            at += lengths[i];
        }
        return new Data(lengths, width, rewards, values, mask, index, baselines);
    }

    static AdvantageSpec randomSpec(final SplittableRandom r, final AdvantageEstimator e) {
        final AdvantageSpec.Builder b = AdvantageSpec.builder(e);
        if (e == AdvantageEstimator.GDPO && r.nextBoolean()) {
            b.gdpoRewardKeys(List.of("acc", "fmt")).gdpoRewardWeights(r.nextBoolean() ? null
                : new double[] {1.0 + r.nextDouble(), r.nextDouble()});
        }
        return b.gamma(r.nextBoolean() ? 1.0 : 0.9 + 0.1 * r.nextDouble())
            .lam(r.nextBoolean() ? 1.0 : 0.9 + 0.1 * r.nextDouble()).normAdvByStd(r.nextInt(4) != 0)
            .release(r.nextBoolean() ? VerlRelease.V2026_01 : VerlRelease.V2026_08).build();
    }

    /** The outputs of one call, or the exception it threw (with the outputs untouched). */
    record Outcome(float[] adv, float[] ret, Throwable error) {
    }

    static Outcome run(final Engine engine, final AdvantageSpec spec, final Data d) {
        try (TokenBatch batch = d.batch();
             OffHeapArray index = OffHeapArray.ofLongs(d.index());
             OffHeapArray baselines = OffHeapArray.of(d.baselines());
             OffHeapArray format = OffHeapArray.of(rounded(d.baselines()));
             OffHeapArray adv = OffHeapArray.allocate(ElementType.F32, d.numTokens());
             OffHeapArray ret = OffHeapArray.allocate(ElementType.F32, d.numTokens())) {
            adv.fill(42f);
            ret.fill(42f);
            final AdvantageInputs in = new AdvantageInputs().index(index).rewardBaselines(baselines)
                .rewardComponent("acc", baselines).rewardComponent("fmt", format);
            final Throwable error = catchThrowable(() -> engine.advantages(spec, batch, in, adv, ret));
            if (error != null) {
                for (final float v : adv.toFloatArray()) {
                    assertThat(v).as("nothing written before the error").isEqualTo(42f);
                }
            }
            return new Outcome(adv.toFloatArray(), ret.toFloatArray(), error);
        }
    }

    private static float[] rounded(final float[] v) {
        final float[] out = new float[v.length];
        for (int i = 0; i < v.length; i++) {
            out[i] = v[i] > 0 ? 1f : 0f;
        }
        return out;
    }

    private static void assertSame(final Outcome ref, final Outcome vec, final String ctx) {
        if (ref.error() != null) {
            assertThat(vec.error()).as(ctx).isNotNull().hasMessage(ref.error().getMessage());
            return;
        }
        assertThat(vec.error()).as(ctx).isNull();
        Results.assertSameBits(ref.adv(), vec.adv(), ctx + ": advantages");
        Results.assertSameBits(ref.ret(), vec.ret(), ctx + ": returns");
    }

    @Test
    void sameBitsAsTheReferenceColdHotAndWithTwoThreads() {
        final Engine reference = new ReferenceEngine();
        try (Engine one = new VectorEngine(1); Engine two = new VectorEngine(2)) {
            final SplittableRandom r = new SplittableRandom(20261203);
            final List<Object[]> cases = new ArrayList<>();
            for (int c = 0; c < CASES; c++) {
                final Data d = random(r);
                for (final AdvantageEstimator e : AdvantageEstimator.values()) {
                    cases.add(new Object[] {randomSpec(r, e), d});
                }
            }
            for (final Object[] c : cases) {
                final AdvantageSpec spec = (AdvantageSpec) c[0];
                final Data d = (Data) c[1];
                assertSame(run(reference, spec, d), run(one, spec, d), "cold " + spec + " " + d);
            }
            // Hot: enough calls on a small batch for C2 to compile every kernel path.
            final Data small = random(new SplittableRandom(7));
            for (int k = 0; k < 1500; k++) {
                for (final AdvantageEstimator e : AdvantageEstimator.values()) {
                    run(one, AdvantageSpec.builder(e).build(), small);
                }
            }
            for (final Object[] c : cases) {
                final AdvantageSpec spec = (AdvantageSpec) c[0];
                final Data d = (Data) c[1];
                final Outcome ref = run(reference, spec, d);
                assertSame(ref, run(one, spec, d), "hot " + spec + " " + d);
                assertSame(ref, run(two, spec, d), "two threads " + spec + " " + d);
            }
        }
    }

    /**
     * GAE's transposed tiles on long ragged packed sequences: longer than one run of rows, lengths that are no
     * multiple of the block, empty and one-token sequences, a last tile of fewer sequences than lanes, masked
     * holes and NaN values under the mask; and a padded batch whose width is no multiple of the block.
     */
    @Test
    void gaeOnLongRaggedSequencesMatchesTheReference() {
        final SplittableRandom r = new SplittableRandom(1212);
        final int[][] shapes = {{2500, 1, 0, 1030, 2049, 7, 1024, 1025, 3001, 13, 0}, {1, 2, 3, 4, 5, 6, 7, 8, 9}};
        final List<Data> batches = new ArrayList<>();
        for (final int[] lengths : shapes) {
            batches.add(ragged(r, lengths, 0));
        }
        final int[] padded = new int[11];
        java.util.Arrays.fill(padded, 1037);
        batches.add(ragged(r, padded, 1037));
        final Engine reference = new ReferenceEngine();
        try (Engine one = new VectorEngine(1)) {
            for (final Data d : batches) {
                final AdvantageSpec spec = AdvantageSpec.builder(AdvantageEstimator.GAE).gamma(0.99).lam(0.95).build();
                assertSame(run(reference, spec, d), run(one, spec, d), "gae " + d);
            }
        }
    }

    private static Data ragged(final SplittableRandom r, final int[] lengths, final int width) {
        int n = 0;
        for (final int l : lengths) {
            n += l;
        }
        final float[] rewards = new float[n];
        final float[] values = new float[n];
        final float[] mask = new float[n];
        int at = 0;
        for (final int len : lengths) {
            final int valid = len == 0 ? 0 : 1 + r.nextInt(len);
            for (int t = 0; t < len; t++) {
                final boolean m = t < valid && (r.nextInt(10) != 0 || t == valid - 1);
                mask[at + t] = m ? 1f : 0f;
                values[at + t] = m || r.nextBoolean() ? (float) r.nextGaussian() : Float.NaN;
                rewards[at + t] = m ? (float) (r.nextGaussian() * 0.1) : 0f;
            }
            at += len;
        }
        final long[] index = new long[lengths.length];
        return new Data(lengths, width, rewards, values, mask, index, new float[lengths.length]);
    }

    @Test
    void aGroupOfEqualScoresGetsExactlyZero() {
        final Data d = new Data(new int[] {3, 3, 3, 3}, 3,
            new float[] {0, 0, 0.1f, 0, 0, 0.1f, 0, 0, 0.1f, 0, 0, 0.7f},
            new float[12], new float[] {1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1}, new long[] {5, 5, 5, 9}, new float[4]);
        try (Engine engine = new VectorEngine(1)) {
            for (final AdvantageEstimator e : List.of(AdvantageEstimator.GRPO, AdvantageEstimator.GRPO_VECTORIZED,
                    AdvantageEstimator.RLOO, AdvantageEstimator.RLOO_VECTORIZED, AdvantageEstimator.GPG)) {
                final Outcome o = run(engine, AdvantageSpec.builder(e).build(), d);
                for (int t = 0; t < 9; t++) {
                    assertThat(o.adv()[t]).as("%s token %d", e, t).isEqualTo(0f);
                }
            }
        }
    }

    @Test
    void verlsErrorsAreRaisedBeforeAnythingIsWritten() {
        final Data single = new Data(new int[] {2, 2}, 2, new float[] {0, 1, 0, 0}, new float[4],
            new float[] {1, 1, 1, 0}, new long[] {3, 4}, new float[2]);
        final Data oneToken = new Data(new int[] {2}, 2, new float[] {0, 1}, new float[2], new float[] {1, 0},
            new long[] {1}, new float[1]);
        for (final Engine engine : List.of(new ReferenceEngine(), new VectorEngine(1))) {
            assertThat(run(engine, AdvantageSpec.builder(AdvantageEstimator.GRPO_PASSK).build(), single).error())
                .hasMessageContaining("at least 2 samples per group").hasMessageContaining("group 3");
            assertThat(run(engine, AdvantageSpec.builder(AdvantageEstimator.GAE).build(), oneToken).error())
                .hasMessageContaining("sum of the mask is one");
            assertThat(run(engine, AdvantageSpec.builder(AdvantageEstimator.REINFORCE_PLUS_PLUS).build(), oneToken)
                .error()).hasMessageContaining("sum of the mask is one");
            engine.close();
        }
        assertThatThrownBy(() -> AdvantageSpec.builder(AdvantageEstimator.GAE).set("lam", 1.5))
            .hasMessageContaining("lam must be in [0, 1]");
        assertThatThrownBy(() -> AdvantageEstimator.fromVerl("grpo_plus")).hasMessageContaining("unknown advantage");
    }

    @Test
    void aMissingInputIsNamed() {
        final Data d = random(new SplittableRandom(3));
        try (Engine engine = new VectorEngine(1);
             TokenBatch batch = d.batch();
             OffHeapArray adv = OffHeapArray.allocate(ElementType.F32, d.numTokens());
             OffHeapArray ret = OffHeapArray.allocate(ElementType.F32, d.numTokens())) {
            assertThatThrownBy(() -> engine.advantages(AdvantageSpec.builder(AdvantageEstimator.GRPO).build(), batch,
                new AdvantageInputs(), adv, ret)).hasMessageContaining("needs the group ids");
            assertThatThrownBy(() -> engine.advantages(AdvantageSpec.builder(AdvantageEstimator.REMAX).build(), batch,
                null, adv, ret)).hasMessageContaining("reward_baselines");
            assertThatThrownBy(() -> engine.advantages(AdvantageSpec.builder(AdvantageEstimator.GAE).build(), batch,
                null, adv, adv)).hasMessageContaining("must not overlap");
        }
    }

    @Test
    @Tag("allocation")
    void hotCallsAllocateNothing() {
        final com.sun.management.ThreadMXBean threads =
            (com.sun.management.ThreadMXBean) java.lang.management.ManagementFactory.getThreadMXBean();
        final Data d = random(new SplittableRandom(11));
        try (Engine engine = new VectorEngine(1);
             TokenBatch batch = d.batch();
             OffHeapArray index = OffHeapArray.ofLongs(d.index());
             OffHeapArray baselines = OffHeapArray.of(d.baselines());
             OffHeapArray adv = OffHeapArray.allocate(ElementType.F32, d.numTokens());
             OffHeapArray ret = OffHeapArray.allocate(ElementType.F32, d.numTokens())) {
            final AdvantageInputs in = new AdvantageInputs().index(index).rewardBaselines(baselines);
            for (final AdvantageEstimator e : AdvantageEstimator.values()) {
                final AdvantageSpec spec = AdvantageSpec.builder(e).build();
                if (e == AdvantageEstimator.GRPO_PASSK
                    || catchThrowable(() -> engine.advantages(spec, batch, in, adv, ret)) != null) {
                    continue;
                }
                final long bytes = Allocations.leastAllocated(threads,
                    () -> engine.advantages(spec, batch, in, adv, ret), 1024);
                assertThat(bytes).as("%s allocated %d bytes per call", e, bytes).isLessThan(64);
            }
        }
    }
}
