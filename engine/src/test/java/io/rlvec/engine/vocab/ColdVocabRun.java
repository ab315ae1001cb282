package io.rlvec.engine.vocab;

import java.util.ArrayList;
import java.util.List;

import io.rlvec.ElementType;
import io.rlvec.Engine;
import io.rlvec.Engines;
import io.rlvec.vocab.VocabCase;
import io.rlvec.vocab.VocabCase.Fill;

/**
 * The first vocabulary-pass calls of this JVM, captured before anything else runs the kernels: every vocabulary
 * test class touches {@link #RESULTS} in its static initialiser, so these results come from interpreted (cold)
 * code whatever the class order (style.md P6). {@link VocabParityTest} compares them with the reference and with
 * the same calls once the code is hot.
 */
final class ColdVocabRun {
    /** Outputs of one case, cold. */
    record Result(VocabCase.Spec spec, int threads, VocabCase.Forward forward, float[] gradient, float[] inPlace) {
    }

    static final List<Result> RESULTS = capture();

    private ColdVocabRun() {
    }

    static List<VocabCase.Spec> specs() {
        return List.of(
            VocabCase.spec().seed(101).rows(5).vocab(37).fill(Fill.NORMAL).temperature(0.7).masked(true),
            VocabCase.spec().seed(102).rows(4).vocab(45).fill(Fill.PEAKED).type(ElementType.BF16).pad(3),
            VocabCase.spec().seed(103).rows(3).vocab(1000).fill(Fill.NEG_INF).temperature(1.3),
            VocabCase.spec().seed(104).rows(6).vocab(9).fill(Fill.HUGE).temperature(0.6).masked(true),
            VocabCase.spec().seed(105).rows(2).vocab(4099).fill(Fill.RAW_BITS).type(ElementType.BF16));
    }

    private static List<Result> capture() {
        final List<Result> out = new ArrayList<>();
        for (final int threads : new int[] {1, 2}) {
            final Engine e = Engines.preferred(threads);
            for (final VocabCase.Spec s : specs()) {
                try (VocabCase c = s.build()) {
                    out.add(new Result(s, threads, c.forward(e), c.backward(e),
                        c.type == ElementType.F32 ? c.backwardInPlace(e) : null));
                }
            }
        }
        return out;
    }

    /** Forces the capture (called from static initialisers). */
    static void touch() {
        if (RESULTS.isEmpty()) {
            throw new IllegalStateException("no cold results");
        }
    }
}
