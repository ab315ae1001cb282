package io.rlvec.engine;

import static org.assertj.core.api.Assertions.assertThat;

import java.lang.management.ManagementFactory;

/** Measures what a hot call allocates on the calling thread. */
public final class Allocations {
    /** Rounds of warm-up + measurement before giving up on reaching the steady state. */
    private static final int ROUNDS = 40;
    /** Wall-clock patience for the JIT on a busy machine. */
    static final long PATIENCE_NANOS = 30_000_000_000L;

    private Allocations() {
    }

    /**
     * Asserts that {@code call} reaches a steady state that allocates (almost) nothing: rounds of 5,000 calls to
     * settle the JIT, then 500 measured calls, until one measured round stays under 1 KiB. A boxed vector per
     * vector iteration would be well over 10^5 bytes per round; a few stray bytes of the management bean are
     * tolerated. Several rounds are allowed because a call shape the compiled code has not seen (here: a tiny
     * batch after large ones) deoptimises it, and interpreted Vector API code allocates until C2 recompiles.
     */
    static void assertNoneWhenHot(final Runnable call, final String what) {
        final com.sun.management.ThreadMXBean mx =
            (com.sun.management.ThreadMXBean) ManagementFactory.getThreadMXBean();
        final int calls = 500;
        long bytes = Long.MAX_VALUE;
        // On a loaded machine C2 can take seconds to compile a large vector kernel: keep going past ROUNDS for up
        // to PATIENCE_NANOS before concluding that the steady state allocates.
        final long start = System.nanoTime();
        for (int round = 0; bytes >= 1024 && (round < ROUNDS || System.nanoTime() - start < PATIENCE_NANOS); round++) {
            for (int i = 0; i < 5_000; i++) {
                call.run();
            }
            final long before = mx.getCurrentThreadAllocatedBytes();
            for (int i = 0; i < calls; i++) {
                call.run();
            }
            bytes = mx.getCurrentThreadAllocatedBytes() - before;
        }
        assertThat(bytes).as("bytes allocated by %d hot calls of %s after %d rounds", calls, what, ROUNDS)
            .isLessThan(1024);
    }

    /**
     * The least bytes one call allocated on this thread, over rounds of 200 warm calls and one measured call, until
     * a round measures below {@code enough} (at least 20 rounds, or {@link #PATIENCE_NANOS} of wall clock).
     */
    public static long leastAllocated(final com.sun.management.ThreadMXBean threads, final Runnable call,
                                      final long enough) {
        long least = Long.MAX_VALUE;
        final long start = System.nanoTime();
        for (int round = 0; least >= enough && (round < 20 || System.nanoTime() - start < PATIENCE_NANOS); round++) {
            for (int c = 0; c < 200; c++) {
                call.run();
            }
            final long before = threads.getCurrentThreadAllocatedBytes();
            call.run();
            least = Math.min(least, threads.getCurrentThreadAllocatedBytes() - before);
        }
        return least;
    }
}
