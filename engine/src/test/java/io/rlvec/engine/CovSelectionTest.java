package io.rlvec.engine;

import static org.assertj.core.api.Assertions.assertThat;

import java.util.ArrayList;
import java.util.List;

import io.rlvec.LossSpec;
import io.rlvec.PolicyLossMode;
import io.rlvec.TokenBatch;
import io.rlvec.reference.Selection;
import io.rlvec.testing.Gen;
import io.rlvec.testing.TokenData;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.MethodSource;

/**
 * The engine's clip_cov / kl_cov selection (vector loops, radix select) picks exactly the reference's tokens: random
 * ragged and padded batches with special values, and adversarial ones where most covariances tie (advantages and
 * log-probs on a coarse grid), where valid covariances are NaN or infinite, where k is 1, where k is every token,
 * and where the k-th key sits inside a run of equal keys (the tie is then broken by token position).
 */
class CovSelectionTest {
    record Case(long seed, String kind, TokenData data, LossSpec spec) {
        @Override
        public String toString() {
            return kind + " seed=" + seed + " " + spec.policyLossMode().verlName() + " " + data;
        }
    }

    static List<Case> cases() {
        final List<Case> out = new ArrayList<>();
        for (int i = 0; i < 160; i++) {
            final long seed = 0xC0_5E1EL + i;
            final Gen g = new Gen(seed);
            final TokenData.Options o = TokenData.Options.of(g.chance(0.5)).sizes(30, i % 8 == 0 ? 3000 : 300);
            final String kind = switch (i % 4) {
                case 0 -> "random";
                case 1 -> "ties";
                case 2 -> "specials";
                default -> "few-values";
            };
            if (kind.equals("specials")) {
                o.validSpecials(0.05);
            }
            final TokenData d = TokenData.random(g, o);
            if (kind.equals("ties") || kind.equals("few-values")) {
                final int levels = kind.equals("ties") ? 2 : 5;
                for (int t = 0; t < d.numTokens(); t++) {
                    d.advantages[t] = g.nextInt(levels) - levels / 2;
                    d.logProb[t] = -g.nextInt(levels) * 0.5f;
                }
            }
            final boolean kl = i % 2 == 0;
            final double ratio = switch (g.nextInt(4)) {
                case 0 -> 1e-6;
                case 1 -> 1.0;
                default -> 0.001 + 0.5 * g.uniform();
            };
            final LossSpec.Builder b = LossSpec.builder()
                .policyLossMode(kl ? PolicyLossMode.KL_COV : PolicyLossMode.CLIP_COV);
            if (kl) {
                b.klCovRatio(ratio);
            } else {
                b.clipCovRatio(ratio).clipCovLb(g.chance(0.5) ? -1.0 : -10 * g.uniform())
                    .clipCovUb(g.chance(0.5) ? 5.0 : 10 * g.uniform()).clipCovSeed(seed)
                    .clipRatioLow(0.05 + 0.3 * g.uniform()).clipRatioHigh(0.05 + 0.3 * g.uniform());
            }
            out.add(new Case(seed, kind, d, b.build()));
        }
        return out;
    }

    @ParameterizedTest
    @MethodSource("cases")
    void selectsTheReferenceTokens(final Case c) {
        final int n = c.data().numTokens();
        final boolean[] expected = new boolean[n + 3];
        final boolean[] actual = new boolean[n + 3];
        java.util.Arrays.fill(actual, true);
        final CovSelection selection = new CovSelection(new AdvantageKernel());
        try (TokenBatch batch = c.data().batch()) {
            Selection.select(c.spec(), batch, expected);
            selection.select(c.spec(), batch, actual);
            // Twice on one instance: the reused scratch does not leak into the next call.
            selection.select(c.spec(), batch, actual);
        }
        assertThat(java.util.Arrays.copyOf(actual, n)).isEqualTo(java.util.Arrays.copyOf(expected, n));
        assertThat(actual[n]).as("untouched beyond the batch").isTrue();
    }

    /** A hot selection allocates nothing, clip_cov's draw included (its generator is spelled out, not created). */
    @org.junit.jupiter.api.Test
    @org.junit.jupiter.api.Tag("allocation")
    void hotSelectionsAllocateNothing() {
        final CovSelection selection = new CovSelection(new AdvantageKernel());
        for (final Case c : cases().subList(0, 12)) {
            final boolean[] flags = new boolean[c.data().numTokens()];
            try (TokenBatch batch = c.data().batch()) {
                Allocations.assertNoneWhenHot(() -> selection.select(c.spec(), batch, flags), c.toString());
            }
        }
    }
}
