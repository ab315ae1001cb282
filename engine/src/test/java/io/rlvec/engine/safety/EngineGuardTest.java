package io.rlvec.engine.safety;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import io.rlvec.Column;
import io.rlvec.ElementType;
import io.rlvec.Engine;
import io.rlvec.EngineGuard;
import io.rlvec.Engines;
import io.rlvec.LossSpec;
import io.rlvec.OffHeapArray;
import io.rlvec.PolicyLossResult;
import io.rlvec.TokenBatch;
import io.rlvec.engine.VectorEngine;
import io.rlvec.reference.ReferenceEngine;
import java.util.List;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.atomic.AtomicReference;
import org.junit.jupiter.api.Test;

/**
 * Engines refuse what they cannot do right: a call after close() (before, a one-thread engine went on working
 * while a two-thread one threw), a second thread's call while one is running (before, wrong losses and a
 * NullPointerException), and a thread count past the bound (before, `demo --threads 100000` ran out of memory).
 */
class EngineGuardTest {
    private static TokenBatch batch(final int b, final int t) {
        final int n = b * t;
        final float[] lp = new float[n];
        final float[] adv = new float[n];
        for (int i = 0; i < n; i++) {
            lp[i] = -1f - (i % 7) * 0.01f;
            adv[i] = (i % 3) - 1f;
        }
        return TokenBatch.padded(b, t).column(Column.LOG_PROB, lp).column(Column.OLD_LOG_PROB, lp)
            .column(Column.ADVANTAGES, adv).build();
    }

    @Test
    void everyEngineRefusesCallsAfterCloseWithOneMessage() {
        try (TokenBatch batch = batch(4, 16);
             OffHeapArray grad = OffHeapArray.allocate(ElementType.F32, 64)) {
            for (final Engine engine : List.of(new ReferenceEngine(), new VectorEngine(1), new VectorEngine(2))) {
                engine.policyLoss(LossSpec.builder().build(), batch, grad, new PolicyLossResult());
                engine.close();
                engine.close();
                assertThatThrownBy(() -> engine.policyLoss(LossSpec.builder().build(), batch, grad,
                    new PolicyLossResult())).as(engine.name()).isInstanceOf(IllegalStateException.class)
                    .hasMessage(EngineGuard.CLOSED);
            }
        }
    }

    @Test
    void aSecondConcurrentCallIsRefused() throws InterruptedException {
        try (Engine engine = new VectorEngine(2);
             TokenBatch big = batch(64, 16_384);
             OffHeapArray grad = OffHeapArray.allocate(ElementType.F32, 64 * 16_384);
             TokenBatch small = batch(2, 8);
             OffHeapArray smallGrad = OffHeapArray.allocate(ElementType.F32, 16)) {
            final AtomicReference<Throwable> refused = new AtomicReference<>();
            final CountDownLatch started = new CountDownLatch(1);
            final Thread other = new Thread(() -> {
                started.countDown();
                for (int i = 0; i < 200_000 && refused.get() == null; i++) {
                    try {
                        engine.policyLoss(LossSpec.builder().build(), small, smallGrad, new PolicyLossResult());
                    } catch (final IllegalStateException e) {
                        refused.set(e);
                    }
                }
            });
            other.start();
            started.await();
            for (int i = 0; i < 200 && refused.get() == null; i++) {
                try {
                    engine.policyLoss(LossSpec.builder().build(), big, grad, new PolicyLossResult());
                } catch (final IllegalStateException e) {
                    refused.compareAndSet(null, e);
                }
            }
            other.join();
            assertThat(refused.get()).isNotNull().hasMessage(EngineGuard.BUSY);
            // The engine stays usable once the calls no longer overlap.
            engine.policyLoss(LossSpec.builder().build(), small, smallGrad, new PolicyLossResult());
        }
    }

    @Test
    void threadCountsAreBounded() {
        assertThatThrownBy(() -> Engines.preferred(100_000)).isInstanceOf(IllegalArgumentException.class)
            .hasMessageContaining("[1, " + Engines.MAX_THREADS + "]");
        assertThatThrownBy(() -> new VectorEngine(Engines.MAX_THREADS + 1))
            .isInstanceOf(IllegalArgumentException.class).hasMessageContaining("got " + (Engines.MAX_THREADS + 1));
    }
}
