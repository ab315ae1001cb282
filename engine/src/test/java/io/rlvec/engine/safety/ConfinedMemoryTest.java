package io.rlvec.engine.safety;

import static org.assertj.core.api.Assertions.assertThat;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.util.SplittableRandom;

import io.rlvec.ActorLossResult;
import io.rlvec.Column;
import io.rlvec.ElementType;
import io.rlvec.Logits;
import io.rlvec.LossSpec;
import io.rlvec.OffHeapArray;
import io.rlvec.PolicyLossResult;
import io.rlvec.TokenBatch;
import io.rlvec.engine.VectorEngine;
import org.junit.jupiter.api.Test;

/**
 * Memory confined to the calling thread ({@code Arena.ofConfined()}) given to a multi-threaded engine: its workers
 * cannot touch it, so the call runs on the calling thread, with the bits a one-thread engine gives (before, a
 * large enough call threw WrongThreadException from a worker, a finding of the actorLoss fuzz target).
 */
class ConfinedMemoryTest {
    private static OffHeapArray floats(final Arena arena, final int n, final SplittableRandom r, final float lo,
                                       final float hi) {
        final MemorySegment s = arena.allocate(4L * n, 64);
        final OffHeapArray a = OffHeapArray.wrap(ElementType.F32, s, n);
        for (int i = 0; i < n; i++) {
            a.setFloat(i, lo + (hi - lo) * (float) r.nextDouble());
        }
        return a;
    }

    @Test
    void runsOnTheCallerWithTheSameBits() {
        final int rows = 96;
        final int vocab = 3000;
        final SplittableRandom r = new SplittableRandom(11);
        try (Arena arena = Arena.ofConfined();
             VectorEngine one = new VectorEngine(1);
             VectorEngine three = new VectorEngine(3)) {
            final OffHeapArray lp = floats(arena, rows, r, -3f, -0.1f);
            final OffHeapArray old = floats(arena, rows, r, -3f, -0.1f);
            final OffHeapArray adv = floats(arena, rows, r, -1f, 1f);
            final OffHeapArray logitData = floats(arena, rows * vocab, r, -5f, 5f);
            final OffHeapArray labels = OffHeapArray.wrap(ElementType.I32, arena.allocate(4L * rows, 64), rows);
            for (int i = 0; i < rows; i++) {
                labels.setInt(i, r.nextInt(vocab));
            }
            final OffHeapArray g1 = OffHeapArray.wrap(ElementType.F32, arena.allocate(4L * rows * vocab, 64),
                (long) rows * vocab);
            final OffHeapArray g3 = OffHeapArray.wrap(ElementType.F32, arena.allocate(4L * rows * vocab, 64),
                (long) rows * vocab);
            final OffHeapArray p1 = OffHeapArray.wrap(ElementType.F32, arena.allocate(4L * rows, 64), rows);
            final OffHeapArray p3 = OffHeapArray.wrap(ElementType.F32, arena.allocate(4L * rows, 64), rows);
            final LossSpec spec = LossSpec.builder().entropyCoeff(0.01).build();
            try (TokenBatch batch = TokenBatch.padded(4, rows / 4).column(Column.LOG_PROB, lp)
                     .column(Column.OLD_LOG_PROB, old).column(Column.ADVANTAGES, adv).build()) {
                final Logits logits = Logits.of(logitData, rows, vocab);
                final ActorLossResult a1 = new ActorLossResult();
                final ActorLossResult a3 = new ActorLossResult();
                one.actorLoss(spec, batch, logits, labels, null, null, g1, a1);
                three.actorLoss(spec, batch, logits, labels, null, null, g3, a3);
                assertThat(Float.floatToRawIntBits(a3.loss())).isEqualTo(Float.floatToRawIntBits(a1.loss()));
                for (long i = 0; i < (long) rows * vocab; i++) {
                    assertThat(Float.floatToRawIntBits(g3.getFloat(i))).as("logit %d", i)
                        .isEqualTo(Float.floatToRawIntBits(g1.getFloat(i)));
                }
                final PolicyLossResult r1 = new PolicyLossResult();
                final PolicyLossResult r3 = new PolicyLossResult();
                one.policyLoss(spec, batch, p1, r1);
                three.policyLoss(spec, batch, p3, r3);
                assertThat(r3.pgLoss()).isEqualTo(r1.pgLoss());
                assertThat(p3.toFloatArray()).isEqualTo(p1.toFloatArray());
            }
        }
    }
}
