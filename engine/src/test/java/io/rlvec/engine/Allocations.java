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

    /**
     * The least bytes 100 calls allocated on this thread and on every worker thread of the engines' pools
     * ({@code rlvec-blocks-*}), over rounds of 100 warm calls and 100 measured ones after {@code warmUp} calls, until a
     * round measures 0 (at least 10 rounds, or {@link #PATIENCE_NANOS} of wall clock).
     */
    public static long leastAllocatedOnAllThreads(final com.sun.management.ThreadMXBean threads, final Runnable call,
                                                  final int warmUp) {
        long best = Long.MAX_VALUE;
        final long start = System.nanoTime();
        for (int attempt = -1; best != 0 && (attempt < 10 || System.nanoTime() - start < PATIENCE_NANOS); attempt++) {
            for (int i = 0; i < (attempt < 0 ? warmUp : 100); i++) {
                call.run();
            }
            final long[] ids = workerIds();
            final long[] before = threads.getThreadAllocatedBytes(ids);
            final long callerBefore = threads.getCurrentThreadAllocatedBytes();
            for (int i = 0; i < 100; i++) {
                call.run();
            }
            long bytes = threads.getCurrentThreadAllocatedBytes() - callerBefore;
            final long[] after = threads.getThreadAllocatedBytes(ids);
            for (int w = 0; w < ids.length; w++) {
                bytes += after[w] - before[w];
            }
            if (attempt >= 0) {
                best = Math.min(best, bytes);
            }
        }
        return best;
    }

    /** The ids of the live worker threads of every {@link Blocks} pool (not their cleaners). */
    public static long[] workerIds() {
        return Thread.getAllStackTraces().keySet().stream()
            .filter(t -> t.getName().startsWith("rlvec-blocks-") && !t.getName().contains("cleaner"))
            .mapToLong(Thread::threadId).toArray();
    }
}
