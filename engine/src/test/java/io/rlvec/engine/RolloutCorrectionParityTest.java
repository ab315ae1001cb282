package io.rlvec.engine;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import io.rlvec.Column;
import io.rlvec.ElementType;
import io.rlvec.Engine;
import io.rlvec.OffHeapArray;
import io.rlvec.RolloutCorrectionResult;
import io.rlvec.RolloutCorrectionSpec;
import io.rlvec.TokenBatch;
import io.rlvec.reference.ReferenceEngine;
import io.rlvec.testing.Gen;
import io.rlvec.testing.Results;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.MethodSource;

/**
 * The vector engine's rollout correction against the reference on random padded and packed (ragged) batches: IS
 * off, token or sequence with TIS or IcePop thresholds and batch normalisation, one to three rejection options,
 * mismatch from tiny to beyond the +-20 clamp, empty rows and garbage (NaN, Inf) at masked positions. IS weights and
 * the rejection mask bit-identical, every metric identical (the reductions are shared code over bit-identical
 * per-token terms), 1 and 3 threads and a second call on a warm engine identical, and verl's data errors raised by
 * both engines alike.
 */
class RolloutCorrectionParityTest {
    private static final int SEEDS = 150;
    private static final String[] K1 = {"token_k1", "seq_sum_k1", "seq_mean_k1"};
    private static final String[] K23 = {"token_k2", "token_k3", "seq_sum_k2", "seq_sum_k3", "seq_mean_k2",
        "seq_mean_k3", "seq_max_k2", "seq_max_k3"};

    /** One random case. */
    record Case(long seed, int[] lengths, boolean padded, int width, float[] old, float[] roll, float[] mask,
                RolloutCorrectionSpec spec) {
        TokenBatch batch() {
            final TokenBatch.Builder b = padded ? TokenBatch.padded(lengths.length, width) : TokenBatch.packed(lengths);
            return b.column(Column.OLD_LOG_PROB, old).column(Column.ROLLOUT_LOG_PROB, roll)
                .column(Column.RESPONSE_MASK, mask).build();
        }

        @Override
        public String toString() {
            return "seed " + seed + (padded ? " padded " + lengths.length + "x" + width : " packed " + lengths.length)
                + " " + spec;
        }
    }

    /** @return a random spec (also used by the bypass_mode parity cases). */
    static RolloutCorrectionSpec randomSpec(final Gen g, final boolean icePop) {
        return randomSpec(g, icePop, false);
    }

    /** @param releases whether a quarter of the specs follow verl 2026-01 (numeric threshold). */
    static RolloutCorrectionSpec randomSpec(final Gen g, final boolean icePop, final boolean releases) {
        final RolloutCorrectionSpec.Builder b = RolloutCorrectionSpec.builder();
        switch (g.nextInt(3)) {
            case 0 -> b.rolloutIs(null);
            case 1 -> b.rolloutIs("token");
            default -> b.rolloutIs("sequence");
        }
        if (releases && g.chance(0.25)) {
            b.release(io.rlvec.VerlRelease.V2026_01).rolloutIsThreshold(1.2 + 9 * g.uniform());
        } else if (icePop && g.chance(0.3)) {
            b.rolloutIsThreshold((0.1 + 0.8 * g.uniform()) + "_" + (1.1 + 4 * g.uniform()));
        } else {
            b.rolloutIsThreshold(g.chance(0.2) ? (Object) String.valueOf(1.2 + 9 * g.uniform()) : 1.2 + 9 * g.uniform());
        }
        b.rolloutIsBatchNormalize(g.chance(0.3));
        if (g.chance(0.7)) {
            final int options = 1 + g.nextInt(3);
            final StringBuilder names = new StringBuilder();
            final StringBuilder thresholds = new StringBuilder();
            final java.util.Set<String> used = new java.util.HashSet<>();
            for (int i = 0; i < options; i++) {
                final boolean k1 = g.chance(0.4);
                final String name = k1 ? K1[g.nextInt(K1.length)] : K23[g.nextInt(K23.length)];
                if (!used.add(name)) {
                    continue;
                }
                names.append(names.length() == 0 ? "" : ",").append(name);
                thresholds.append(thresholds.length() == 0 ? "" : ",").append(k1
                    ? (g.chance(0.5) ? String.valueOf(1.05 + 3 * g.uniform())
                        : (0.2 + 0.75 * g.uniform()) + "_" + (1.05 + 3 * g.uniform()))
                    : String.valueOf(0.001 + 2 * g.uniform() * g.uniform()));
            }
            b.rolloutRs(names.toString()).rolloutRsThreshold(thresholds.toString());
        }
        return b.build();
    }

    static Case randomCase(final long seed) {
        return randomCase(seed, false);
    }

    static Case randomCase(final long seed, final boolean releases) {
        final Gen g = new Gen(seed);
        final int b = 1 + g.nextInt(24);
        final boolean padded = g.chance(0.5);
        final int width = 1 + g.nextInt(130);
        final int[] lengths = new int[b];
        int n = 0;
        for (int i = 0; i < b; i++) {
            lengths[i] = padded ? width : g.nextInt(140);
            n += lengths[i];
        }
        final double sd = switch (g.nextInt(4)) {
            case 0 -> 0.01;
            case 1 -> 0.1;
            case 2 -> 1.0;
            default -> 15.0;
        };
        final float[] old = new float[n];
        final float[] roll = new float[n];
        final float[] mask = new float[n];
        int t = 0;
        for (int i = 0; i < b; i++) {
            final int valid = g.chance(0.1) ? 0 : g.nextInt(lengths[i] + 1);
            for (int j = 0; j < lengths[i]; j++, t++) {
                final boolean v = j < valid && !g.chance(0.05);
                mask[t] = v ? 1f : 0f;
                if (v) {
                    old[t] = -Math.abs(g.gaussian(2.0));
                    roll[t] = old[t] + g.gaussian(sd);
                } else {
                    old[t] = g.chance(0.3) ? g.garbage() : -Math.abs(g.gaussian(2.0));
                    roll[t] = g.chance(0.3) ? g.garbage() : old[t];
                }
            }
        }
        return new Case(seed, lengths, padded, width, old, roll, mask, randomSpec(g, true, releases));
    }

    static List<Case> cases() {
        final List<Case> out = new ArrayList<>();
        for (int i = 0; i < SEEDS; i++) {
            out.add(randomCase(0x0C0F_0000L + i));
        }
        return out;
    }

    /** An outcome: weights, mask, metrics, or the error. */
    record Outcome(float[] weights, float[] mask, Map<String, Double> metrics, String error) {
    }

    static Outcome run(final Engine engine, final Case c) {
        try (TokenBatch batch = c.batch();
             OffHeapArray w = OffHeapArray.allocate(ElementType.F32, Math.max(1, batch.numTokens()));
             OffHeapArray m = OffHeapArray.allocate(ElementType.F32, Math.max(1, batch.numTokens()))) {
            w.fill(Float.intBitsToFloat(0x7fc0dead));
            m.fill(Float.intBitsToFloat(0x7fc0dead));
            final RolloutCorrectionResult r = new RolloutCorrectionResult();
            try {
                engine.rolloutCorrection(c.spec(), batch, w, m, r);
            } catch (final IllegalArgumentException e) {
                return new Outcome(w.toFloatArray(), m.toFloatArray(), null, e.getMessage());
            }
            return new Outcome(w.toFloatArray(), m.toFloatArray(), r.asMap(), null);
        }
    }

    /**
     * The same batches under verl 2026-01, whose IS metrics read the raw weights (each case's spec with a numeric
     * threshold: 2026-01 has no IcePop band).
     */
    static List<Case> cases202601() {
        final List<Case> out = new ArrayList<>();
        for (final Case c : cases()) {
            if (!c.spec().icePop()) {
                final RolloutCorrectionSpec.Builder b = c.spec().toBuilder().release(io.rlvec.VerlRelease.V2026_01);
                if (c.spec().hasIs()) {
                    b.rolloutIsThreshold(c.spec().isUpper());
                }
                out.add(new Case(c.seed(), c.lengths(), c.padded(), c.width(), c.old(), c.roll(), c.mask(),
                    b.build()));
            }
        }
        return out;
    }

    @ParameterizedTest
    @MethodSource({"cases", "cases202601"})
    void matchesTheReferenceOnAnyThreadCount(final Case c) {
        final Outcome ref = run(new ReferenceEngine(), c);
        try (VectorEngine one = new VectorEngine(1); VectorEngine three = new VectorEngine(3)) {
            for (final Outcome vec : List.of(run(one, c), run(three, c), run(one, c))) {
                assertThat(vec.error()).as("%s", c).isEqualTo(ref.error());
                Results.assertSameBits(ref.weights(), vec.weights(), c + " weights");
                Results.assertSameBits(ref.mask(), vec.mask(), c + " mask");
                assertThat(vec.metrics()).as("%s", c).isEqualTo(ref.metrics());
            }
        }
        if (ref.error() == null) {
            assertThat(ref.metrics()).as("%s", c).containsKey("rollout_corr/chi2_seq");
            final float[] mask = c.mask();
            for (int t = 0; t < mask.length; t++) {
                if (mask[t] == 0f) {
                    assertThat(ref.mask()[t]).as("%s masked token %d", c, t).isEqualTo(0f);
                }
            }
        }
    }

    @Test
    void mostRandomCasesComputeAndCoverEveryOption() {
        int computed = 0;
        final java.util.Set<String> keys = new java.util.HashSet<>();
        try (Engine reference = new ReferenceEngine()) {
            for (final Case c : cases()) {
                final Outcome o = run(reference, c);
                if (o.error() == null) {
                    computed++;
                    keys.addAll(o.metrics().keySet());
                }
            }
        }
        assertThat(computed).isGreaterThan(SEEDS * 8 / 10);
        for (final String option : RolloutCorrectionSpec.RS_OPTIONS) {
            assertThat(keys).contains("rollout_corr/rollout_rs_" + option + "_masked_fraction");
        }
        assertThat(keys).contains("rollout_corr/rollout_is_oob_ratio", "rollout_corr/rollout_is_batch_norm_factor");
    }

    /**
     * The steady state allocates nothing for a caller reusing its spec, batch and buffers, after a history of
     * differently configured calls on the same engine (both releases: a history like this once left the row sums
     * inlined into a large caller, boxing 15 KB per call).
     */
    @Test
    @org.junit.jupiter.api.Tag("allocation")
    void hotCallsAllocateNothing() {
        // The seeds with both releases in the draw (a history of specs that once left the row sums boxing), then
        // the usual ones.
        final List<Case> all = new ArrayList<>();
        for (int i = 0; i < SEEDS; i++) {
            all.add(randomCase(0x0C0F_0000L + i, true));
        }
        all.addAll(cases());
        try (VectorEngine engine = new VectorEngine()) {
            for (final Case c : all) {
                if (c.seed() % 15 != 0) {
                    continue;
                }
                try (TokenBatch batch = c.batch();
                     OffHeapArray w = OffHeapArray.allocate(ElementType.F32, Math.max(1, batch.numTokens()));
                     OffHeapArray m = OffHeapArray.allocate(ElementType.F32, Math.max(1, batch.numTokens()))) {
                    final RolloutCorrectionResult r = new RolloutCorrectionResult();
                    if (run(engine, c).error() != null) {
                        continue;
                    }
                    Allocations.assertNoneWhenHot(() -> engine.rolloutCorrection(c.spec(), batch, w, m, r),
                        "rolloutCorrection " + c);
                }
            }
        }
    }

    @Test
    void refusesAMaskWithoutValidTokensBeforeWriting() {
        final Case c = new Case(1, new int[] {2}, false, 0, new float[] {-1f, -2f}, new float[] {-1f, -2f},
            new float[] {0f, 0f}, RolloutCorrectionSpec.builder().rolloutIs("token").build());
        for (final Engine e : List.of(new ReferenceEngine(), new VectorEngine(1))) {
            final Outcome o = run(e, c);
            assertThat(o.error()).isEqualTo("response_mask must contain at least one valid token (1).");
            assertThat(Float.floatToRawIntBits(o.mask()[0])).isEqualTo(0x7fc0dead);
        }
    }

    @Test
    void missingRolloutColumnIsNamed() {
        try (TokenBatch batch = TokenBatch.packed(3).column(Column.OLD_LOG_PROB, new float[3]).build();
             OffHeapArray m = OffHeapArray.allocate(ElementType.F32, 3)) {
            assertThatThrownBy(() -> new VectorEngine(1).rolloutCorrection(RolloutCorrectionSpec.builder().build(),
                batch, null, m, new RolloutCorrectionResult()))
                .isInstanceOf(IllegalArgumentException.class).hasMessageContaining("rollout_log_prob");
        }
    }
}
