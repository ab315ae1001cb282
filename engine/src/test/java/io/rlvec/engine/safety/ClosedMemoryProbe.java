package io.rlvec.engine.safety;

import io.rlvec.AdvantageEstimator;
import io.rlvec.AdvantageInputs;
import io.rlvec.AdvantageSpec;
import io.rlvec.AggResult;
import io.rlvec.Column;
import io.rlvec.ElementType;
import io.rlvec.Engine;
import io.rlvec.KlPenalty;
import io.rlvec.LossSpec;
import io.rlvec.OffHeapArray;
import io.rlvec.PolicyLossResult;
import io.rlvec.TokenBatch;
import io.rlvec.engine.VectorEngine;
import io.rlvec.reference.ReferenceEngine;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.util.List;
import java.util.concurrent.atomic.AtomicReference;

/**
 * Run in a child JVM by {@link ClosedMemoryTest}: every engine call on memory whose arena was closed before the
 * call is refused with an IllegalArgumentException, and memory closed from another thread during a long call
 * ends that call with an exception; a read of freed memory would crash this JVM (SIGSEGV, exit 134) instead.
 * Exits 0 when every call behaved, 1 otherwise.
 */
public final class ClosedMemoryProbe {
    private ClosedMemoryProbe() {
    }

    public static void main(final String[] args) throws Exception {
        int failures = 0;
        for (final Engine engine : List.of(new ReferenceEngine(), new VectorEngine(1), new VectorEngine(2))) {
            failures += closedBefore(engine);
            failures += closedDuring(engine);
            engine.close();
        }
        System.out.println(failures == 0 ? "OK" : failures + " FAILURES");
        System.exit(failures == 0 ? 0 : 1);
    }

    private static OffHeapArray wrapped(final Arena arena, final int n, final float value) {
        final MemorySegment s = arena.allocate((long) n * Float.BYTES, 64);
        for (int i = 0; i < n; i++) {
            s.setAtIndex(ValueLayout.JAVA_FLOAT_UNALIGNED, i, value);
        }
        return OffHeapArray.wrap(ElementType.F32, s, n);
    }

    private static int closedBefore(final Engine engine) {
        final int b = 8;
        final int t = 64;
        final int n = b * t;
        final Arena arena = Arena.ofShared();
        final OffHeapArray lp = wrapped(arena, n, -1f);
        final OffHeapArray grad = wrapped(arena, n, 0f);
        try (TokenBatch batch = TokenBatch.padded(b, t).column(Column.LOG_PROB, lp)
                 .column(Column.OLD_LOG_PROB, wrapped(arena, n, -1.1f)).column(Column.ADVANTAGES, wrapped(arena, n, 1f))
                 .column(Column.REF_LOG_PROB, wrapped(arena, n, -0.9f))
                 .column(Column.TOKEN_LEVEL_REWARDS, wrapped(arena, n, 0.5f)).build();
             OffHeapArray index = OffHeapArray.ofLongs(new long[b]);
             OffHeapArray own = OffHeapArray.allocate(ElementType.F32, n);
             OffHeapArray own2 = OffHeapArray.allocate(ElementType.F32, n)) {
            arena.close();
            int failures = 0;
            failures += refused(engine, "policyLoss", () -> engine.policyLoss(LossSpec.builder().build(), batch, own,
                new PolicyLossResult()));
            failures += refused(engine, "policyLoss into freed gradient", () -> engine.policyLoss(
                LossSpec.builder().build(), batch, grad, new PolicyLossResult()));
            failures += refused(engine, "aggLoss", () -> engine.aggLoss(LossSpec.builder().build(), batch, lp, own,
                new AggResult()));
            failures += refused(engine, "klPenalty", () -> engine.klPenalty(KlPenalty.fromVerl("low_var_kl"), batch,
                own, own2));
            failures += refused(engine, "advantages", () -> engine.advantages(
                AdvantageSpec.builder(AdvantageEstimator.GRPO).build(), batch, new AdvantageInputs().index(index),
                own, own2));
            return failures;
        }
    }

    private static int refused(final Engine engine, final String what, final Runnable call) {
        try {
            call.run();
            System.out.println(engine.name() + " " + what + ": accepted freed memory");
            return 1;
        } catch (final IllegalArgumentException | IllegalStateException expected) {
            return 0;
        }
    }

    /** A long policy-loss call while another thread closes the arena of its log-probs. */
    private static int closedDuring(final Engine engine) throws InterruptedException {
        final int b = 64;
        final int t = 16_384;
        final int n = b * t;
        final Arena arena = Arena.ofShared();
        final OffHeapArray lp = wrapped(arena, n, -1f);
        int outcomes = 0;
        try (TokenBatch batch = TokenBatch.padded(b, t).column(Column.LOG_PROB, lp)
                 .column(Column.OLD_LOG_PROB, OffHeapArray.allocate(ElementType.F32, n))
                 .column(Column.ADVANTAGES, OffHeapArray.allocate(ElementType.F32, n)).build();
             OffHeapArray grad = OffHeapArray.allocate(ElementType.F32, n)) {
            final AtomicReference<Throwable> seen = new AtomicReference<>();
            final Thread caller = new Thread(() -> {
                try {
                    for (int i = 0; i < 10_000; i++) {
                        engine.policyLoss(LossSpec.builder().build(), batch, grad, new PolicyLossResult());
                    }
                } catch (final Throwable e) {
                    seen.set(e);
                }
            });
            caller.start();
            Thread.sleep(200);
            arena.close();
            caller.join();
            final Throwable e = seen.get();
            if (!(e instanceof IllegalStateException || e instanceof IllegalArgumentException
                || e != null && e.getCause() instanceof IllegalStateException)) {
                System.out.println(engine.name() + " closed during a call: " + e);
                outcomes++;
            }
        }
        return outcomes;
    }
}
