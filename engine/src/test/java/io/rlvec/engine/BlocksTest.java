package io.rlvec.engine;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import java.lang.management.ManagementFactory;
import java.util.List;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.concurrent.atomic.AtomicIntegerArray;
import java.util.concurrent.atomic.AtomicLong;
import java.util.stream.Stream;

import org.junit.jupiter.api.Tag;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.Arguments;
import org.junit.jupiter.params.provider.MethodSource;
import org.junit.jupiter.params.provider.ValueSource;

/** The block runner: every block once, failures, nesting, lifecycle, no allocation, no lost wake-up. */
@Timeout(value = 60, unit = TimeUnit.SECONDS)
class BlocksTest {
    /** How long a test waits for a worker to show up before failing (a loaded 2-core machine can be slow). */
    private static final long PATIENCE_NANOS = TimeUnit.SECONDS.toNanos(10);

    static Stream<Arguments> parallelismAndCount() {
        final Stream.Builder<Arguments> b = Stream.builder();
        for (final int p : new int[] {1, 2, 3, 4}) {
            for (final int count : new int[] {0, 1, 2, 3, 17, 1000}) {
                b.add(Arguments.of(p, count));
            }
        }
        return b.build();
    }

    @ParameterizedTest(name = "parallelism {0}, {1} blocks")
    @MethodSource("parallelismAndCount")
    void everyBlockRunsExactlyOnce(final int parallelism, final int count) {
        final int calls = 200;
        try (Blocks blocks = new Blocks(parallelism)) {
            assertThat(blocks.parallelism()).isEqualTo(parallelism);
            assertThat(blocks.workers()).hasSize(parallelism - 1);
            final AtomicIntegerArray hits = new AtomicIntegerArray(Math.max(count, 1));
            final AtomicInteger blocksOutOfRange = new AtomicInteger();
            for (int call = 0; call < calls; call++) {
                blocks.forEach(count, i -> {
                    if (i < 0 || i >= count) {
                        blocksOutOfRange.incrementAndGet();
                    } else {
                        hits.incrementAndGet(i);
                    }
                });
            }
            assertThat(blocksOutOfRange.get()).as("blocks outside 0..%d", count - 1).isZero();
            for (int i = 0; i < count; i++) {
                assertThat(hits.get(i)).as("runs of block %d of %d over %d calls, parallelism %d", i, count, calls,
                    parallelism).isEqualTo(calls);
            }
        }
    }

    @Test
    void writesOfEveryBlockAreVisibleToTheCallerAndOrderIsIrrelevant() {
        // Plain (non-atomic) writes into per-block slots, read right after the call: the hand-off must publish them.
        try (Blocks blocks = new Blocks(3)) {
            final long[] slots = new long[257];
            for (int call = 1; call <= 2_000; call++) {
                final long stamp = call;
                blocks.forEach(slots.length, i -> slots[i] = stamp * 1_000 + i);
                for (int i = 0; i < slots.length; i++) {
                    assertThat(slots[i]).as("slot %d after call %d", i, call).isEqualTo(stamp * 1_000 + i);
                }
            }
        }
    }

    @Test
    void unevenBlocksAreSharedWithTheWorker() {
        // Block 0 holds the caller until some other thread has run a block: only a worker claiming blocks from the
        // shared counter lets the call finish.
        try (Blocks blocks = new Blocks(2)) {
            final Thread caller = Thread.currentThread();
            final AtomicBoolean workerRan = new AtomicBoolean();
            final AtomicIntegerArray hits = new AtomicIntegerArray(64);
            blocks.forEach(64, i -> {
                if (Thread.currentThread() == caller) {
                    awaitTrue(workerRan, "a worker to run a block");
                } else {
                    assertThat(Thread.currentThread().getName()).startsWith("rlvec-blocks-");
                    workerRan.set(true);
                }
                hits.incrementAndGet(i);
            });
            for (int i = 0; i < 64; i++) {
                assertThat(hits.get(i)).as("runs of block %d", i).isEqualTo(1);
            }
        }
    }

    @ParameterizedTest(name = "parallelism {0}")
    @ValueSource(ints = {2, 3})
    void exceptionOnAWorkerReachesTheCallerAndThePoolStaysUsable(final int parallelism) {
        try (Blocks blocks = new Blocks(parallelism)) {
            final List<Thread> workers = blocks.workers();
            final Thread caller = Thread.currentThread();
            final AtomicBoolean thrown = new AtomicBoolean();
            final IllegalArgumentException boom = new IllegalArgumentException("boom on a worker");
            // The caller's first block waits until a worker has thrown, so the failure surely comes from a worker.
            assertThatThrownBy(() -> blocks.forEach(8, i -> {
                if (Thread.currentThread() == caller) {
                    awaitTrue(thrown, "a worker to throw");
                } else {
                    thrown.set(true);
                    throw boom;
                }
            })).isSameAs(boom);
            for (final Thread w : workers) {
                assertThat(w.isAlive()).as("%s after a failed call", w.getName()).isTrue();
            }
            // An Error passes through as it is.
            final AssertionError error = new AssertionError("error in block 5");
            assertThatThrownBy(() -> blocks.forEach(100, i -> {
                if (i == 5) {
                    throw error;
                }
            })).isSameAs(error);
            // A checked exception thrown sneakily is wrapped, with the original as cause.
            final Exception checked = new java.io.IOException("checked in block 3");
            assertThatThrownBy(() -> blocks.forEach(10, i -> {
                if (i == 3) {
                    BlocksTest.<RuntimeException>sneakyThrow(checked);
                }
            })).isInstanceOf(IllegalStateException.class).hasCause(checked);
            // Usable afterwards: every block once, and a worker still takes blocks.
            final AtomicIntegerArray hits = new AtomicIntegerArray(50);
            final AtomicBoolean workerRan = new AtomicBoolean();
            blocks.forEach(50, i -> {
                if (Thread.currentThread() == caller) {
                    awaitTrue(workerRan, "a worker to run a block after the failures");
                } else {
                    workerRan.set(true);
                }
                hits.incrementAndGet(i);
            });
            for (int i = 0; i < 50; i++) {
                assertThat(hits.get(i)).as("runs of block %d after failures", i).isEqualTo(1);
            }
        }
    }

    @Test
    void exceptionOnTheCallerWaitsForTheWorkersBlocks() {
        try (Blocks blocks = new Blocks(2)) {
            final Thread caller = Thread.currentThread();
            final AtomicBoolean callerStarted = new AtomicBoolean();
            final AtomicBoolean workerStarted = new AtomicBoolean();
            final AtomicBoolean workerFinished = new AtomicBoolean();
            final IllegalStateException boom = new IllegalStateException("boom on the caller");
            // Each of the two blocks waits for the other to start, so the caller and a worker run one each.
            assertThatThrownBy(() -> blocks.forEach(2, i -> {
                if (Thread.currentThread() == caller) {
                    callerStarted.set(true);
                    awaitTrue(workerStarted, "a worker to start a block");
                    throw boom;
                }
                workerStarted.set(true);
                awaitTrue(callerStarted, "the caller to start a block");
                sleep(50);
                workerFinished.set(true);
            })).isSameAs(boom);
            assertThat(workerFinished.get()).as("the worker's block finished before forEach threw").isTrue();
        }
    }

    @ParameterizedTest(name = "parallelism {0}")
    @ValueSource(ints = {1, 2, 3})
    void closeIsIdempotentAndStopsTheWorkers(final int parallelism) {
        final Blocks blocks = new Blocks(parallelism);
        final List<Thread> workers = blocks.workers();
        for (final Thread w : workers) {
            assertThat(w.isDaemon()).as("%s is a daemon", w.getName()).isTrue();
            assertThat(w.getName()).matches("rlvec-blocks-\\d+-\\d+");
        }
        final AtomicIntegerArray hits = new AtomicIntegerArray(10);
        blocks.forEach(10, hits::incrementAndGet);
        blocks.close();
        blocks.close();
        for (final Thread w : workers) {
            assertThat(w.isAlive()).as("%s after close", w.getName()).isFalse();
        }
        if (parallelism == 1) {
            blocks.forEach(10, hits::incrementAndGet);
            for (int i = 0; i < 10; i++) {
                assertThat(hits.get(i)).as("block %d, parallelism 1 keeps running inline after close", i)
                    .isEqualTo(2);
            }
        } else {
            for (final int count : new int[] {0, 1, 10}) {
                assertThatThrownBy(() -> blocks.forEach(count, hits::incrementAndGet))
                    .as("forEach(%d) after close", count)
                    .isInstanceOf(IllegalStateException.class)
                    .hasMessageContaining("closed");
            }
        }
    }

    @Test
    void workersOfAnUnreachableInstanceStop() throws InterruptedException {
        final List<Thread> workers = workersOfAnAbandonedInstance();
        final long start = System.nanoTime();
        while (workers.stream().anyMatch(Thread::isAlive) && System.nanoTime() - start < PATIENCE_NANOS) {
            System.gc();
            Thread.sleep(20);
        }
        for (final Thread w : workers) {
            assertThat(w.isAlive()).as("%s of an unreachable, unclosed instance", w.getName()).isFalse();
        }
    }

    /** Creates, uses and drops an instance without closing it (a separate frame, so no local keeps it alive). */
    private static List<Thread> workersOfAnAbandonedInstance() {
        final Blocks blocks = new Blocks(3);
        final AtomicIntegerArray hits = new AtomicIntegerArray(10);
        blocks.forEach(10, hits::incrementAndGet);
        assertThat(blocks.workers()).hasSize(2).allMatch(Thread::isAlive);
        return blocks.workers();
    }

    @ParameterizedTest(name = "parallelism {0}")
    @ValueSource(ints = {2, 3})
    void nestedCallRunsInlineWithoutDeadlock(final int parallelism) {
        try (Blocks blocks = new Blocks(parallelism)) {
            final int outer = 16;
            final int inner = 9;
            final AtomicIntegerArray hits = new AtomicIntegerArray(outer * inner);
            final AtomicBoolean nestedOnOtherThread = new AtomicBoolean();
            for (int call = 0; call < 20; call++) {
                blocks.forEach(outer, o -> {
                    final Thread t = Thread.currentThread();
                    blocks.forEach(inner, i -> {
                        if (Thread.currentThread() != t) {
                            nestedOnOtherThread.set(true);
                        }
                        hits.incrementAndGet(o * inner + i);
                    });
                });
            }
            assertThat(nestedOnOtherThread.get()).as("a nested block ran off its outer block's thread").isFalse();
            for (int k = 0; k < outer * inner; k++) {
                assertThat(hits.get(k)).as("runs of nested block %d", k).isEqualTo(20);
            }
        }
    }

    @ParameterizedTest(name = "parallelism {0}")
    @ValueSource(ints = {1, 2, 3})
    @Tag("allocation")
    void hotCallsAllocateNothingOnAnyThread(final int parallelism) {
        final com.sun.management.ThreadMXBean mx =
            (com.sun.management.ThreadMXBean) ManagementFactory.getThreadMXBean();
        assertThat(mx.isThreadAllocatedMemorySupported() && mx.isThreadAllocatedMemoryEnabled())
            .as("per-thread allocation accounting").isTrue();
        try (Blocks blocks = new Blocks(parallelism)) {
            final long[] slots = new long[64];
            final Thread caller = Thread.currentThread();
            final AtomicLong workerBlocks = new AtomicLong();
            // A body that allocates nothing itself (anything measured comes from the hand-off) and counts the
            // blocks the workers ran, so that a round in which they ran none does not count as clean.
            final Blocks.Body body = i -> {
                slots[i] += i;
                if (Thread.currentThread() != caller) {
                    workerBlocks.incrementAndGet();
                }
            };
            final List<Thread> workers = blocks.workers();
            final long[] ids = new long[workers.size()];
            for (int w = 0; w < ids.length; w++) {
                ids[w] = workers.get(w).threadId();
            }
            final long[] before = new long[ids.length];
            final int calls = 10_000;
            long callerBytes = Long.MAX_VALUE;
            long workerBytes = Long.MAX_VALUE;
            long workerRan = ids.length == 0 ? 1 : 0;
            final long start = System.nanoTime();
            // Rounds until one is clean: the first ones may still run interpreted or C1 code.
            for (int round = 0; ((callerBytes | workerBytes) != 0 || workerRan == 0)
                && (round < 5 || System.nanoTime() - start < PATIENCE_NANOS); round++) {
                for (int i = 0; i < 20_000; i++) {
                    blocks.forEach(1 + (i & 63), body);
                }
                for (int w = 0; w < ids.length; w++) {
                    before[w] = mx.getThreadAllocatedBytes(ids[w]);
                }
                final long workerBlocksBefore = workerBlocks.get();
                final long callerBefore = mx.getCurrentThreadAllocatedBytes();
                for (int i = 0; i < calls; i++) {
                    blocks.forEach(1 + (i & 63), body);
                }
                callerBytes = mx.getCurrentThreadAllocatedBytes() - callerBefore;
                workerRan = ids.length == 0 ? 1 : workerBlocks.get() - workerBlocksBefore;
                workerBytes = 0;
                for (int w = 0; w < ids.length; w++) {
                    workerBytes += mx.getThreadAllocatedBytes(ids[w]) - before[w];
                }
            }
            assertThat(workerRan).as("blocks run by the workers in the measured calls, parallelism %d",
                parallelism).isPositive();
            assertThat(callerBytes).as("bytes allocated by the caller over %d calls, parallelism %d", calls,
                parallelism).isZero();
            assertThat(workerBytes).as("bytes allocated by the workers over %d calls, parallelism %d", calls,
                parallelism).isZero();
        }
    }

    @ParameterizedTest(name = "parallelism {0}")
    @ValueSource(ints = {2, 4})
    @Timeout(value = 30, unit = TimeUnit.SECONDS)
    void manyTinyBackToBackCallsComplete(final int parallelism) {
        try (Blocks blocks = new Blocks(parallelism)) {
            final long[] sum = new long[4];
            final Blocks.Body body = i -> sum[i]++;
            final int calls = parallelism == 2 ? 100_000 : 20_000;
            long expected = 0;
            for (int call = 0; call < calls; call++) {
                final int count = 2 + (call & 1) + ((call >> 3) & 1);
                blocks.forEach(count, body);
                expected += count;
            }
            assertThat(sum[0] + sum[1] + sum[2] + sum[3]).as("blocks run by %d calls", calls).isEqualTo(expected);
        }
    }

    /** Waits (bounded) for {@code flag}; fails the block if it never comes. */
    private static void awaitTrue(final AtomicBoolean flag, final String what) {
        final long start = System.nanoTime();
        while (!flag.get()) {
            if (System.nanoTime() - start > PATIENCE_NANOS) {
                throw new AssertionError("timed out waiting for " + what);
            }
            Thread.onSpinWait();
        }
    }

    private static void sleep(final long millis) {
        try {
            Thread.sleep(millis);
        } catch (final InterruptedException e) {
            Thread.currentThread().interrupt();
        }
    }

    @SuppressWarnings("unchecked")
    private static <T extends Throwable> void sneakyThrow(final Throwable t) throws T {
        throw (T) t;
    }
}
