package io.rlvec.faults;

import static org.assertj.core.api.Assertions.assertThat;

import java.util.ArrayList;
import java.util.List;
import java.util.Set;
import java.util.SplittableRandom;
import java.util.concurrent.ConcurrentLinkedQueue;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.atomic.AtomicLong;
import java.util.stream.Collectors;

import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Tag;
import org.junit.jupiter.api.Test;

import io.rlvec.ActorLossResult;
import io.rlvec.AggMode;
import io.rlvec.AggResult;
import io.rlvec.Column;
import io.rlvec.ElementType;
import io.rlvec.Engine;
import io.rlvec.KlPenalty;
import io.rlvec.Logits;
import io.rlvec.LossSpec;
import io.rlvec.OffHeapArray;
import io.rlvec.PolicyLossResult;
import io.rlvec.TokenBatch;
import io.rlvec.engine.VectorEngine;
import io.rlvec.reference.ReferenceEngine;
import io.rlvec.testing.Gen;
import io.rlvec.testing.TokenData;

/**
 * Engines under concurrent use, as documented (one caller at a time per engine): many engines on many threads at
 * once, mixed terms and shapes, give the bits serial use gives; close() stops an engine's workers; interrupting a
 * caller mid-call leaves the engine computing the same bits.
 */
class ConcurrencyTest {
    private static final int THREADS = 16;
    /** Calls per thread in the default build (the documented measurement runs 10^5 per thread). */
    private static final int CALLS = Integer.getInteger("rlvec.concurrencyCalls", 600);
    private static final int TASKS = 30;

    private static final List<Task> TASK_LIST = new ArrayList<>();
    /** Expected digest per task: [0] from a serial vector engine, [1] from a serial reference engine. */
    private static long[][] expected;

    /** One engine call with fixed inputs; returns a digest of every output bit. */
    interface Task {
        long run(Engine e);
    }

    @BeforeAll
    static void tasks() {
        for (int i = 0; i < TASKS; i++) {
            TASK_LIST.add(task(i));
        }
        expected = new long[TASKS][2];
        try (Engine v = new VectorEngine(); Engine r = new ReferenceEngine()) {
            for (int i = 0; i < TASKS; i++) {
                expected[i][0] = TASK_LIST.get(i).run(v);
                expected[i][1] = TASK_LIST.get(i).run(r);
            }
        }
    }

    @AfterAll
    static void free() {
        TASK_LIST.clear();
    }

    private static long mix(final long h, final float f) {
        return (h ^ Float.floatToIntBits(f)) * 0x9E3779B97F4A7C15L;
    }

    private static long mix(final long h, final OffHeapArray a) {
        long x = h;
        if (a != null) {
            for (long i = 0; i < a.length(); i++) {
                x = mix(x, a.getFloat(i));
            }
        }
        return x;
    }

    private static long mix(final long h, final java.util.Map<String, Double> m) {
        long x = h;
        for (final var e : new java.util.TreeMap<>(m).entrySet()) {
            x = (x ^ e.getKey().hashCode() ^ Double.doubleToLongBits(e.getValue())) * 0x9E3779B97F4A7C15L;
        }
        return x;
    }

    /** Task {@code i}: policy loss, agg_loss, kl penalty, the vocabulary pass or the actor loss, on its own shape. */
    private static Task task(final int i) {
        final Gen g = new Gen(0xC0C0_0000L + i);
        final TokenData d = TokenData.random(g, TokenData.Options.of(i % 2 == 0).weights(i % 3 == 0)
            .sizes(2 + i % 9, 40 + 37 * (i % 7)));
        final AggMode mode = AggMode.values()[i % 4];
        final LossSpec spec = LossSpec.builder().lossAggMode(mode).lossScaleFactor(64).useKlLoss(i % 5 != 0)
            .klLossType(KlPenalty.fromVerl(new String[] {"k1", "abs", "k2", "low_var_kl", "k3+"}[i % 5])).build();
        final int n = d.numTokens();
        switch (i % 5) {
            case 0 -> {
                final TokenBatch b = d.batch();
                return e -> {
                    try (OffHeapArray grad = OffHeapArray.allocate(ElementType.F32, n)) {
                        final PolicyLossResult out = new PolicyLossResult();
                        e.policyLoss(spec, b, grad, out);
                        return mix(mix(mix(1, out.pgLoss()), out.metrics()), grad);
                    }
                };
            }
            case 1 -> {
                final TokenBatch b = d.batch();
                return e -> {
                    try (OffHeapArray grad = OffHeapArray.allocate(ElementType.F32, n)) {
                        final AggResult out = new AggResult();
                        e.aggLoss(spec, b, b.column(Column.ADVANTAGES), grad, out);
                        return mix(mix(2, out.loss()), grad);
                    }
                };
            }
            case 2 -> {
                final TokenBatch b = TokenBatch.withOffsets(d.offsets).column(Column.LOG_PROB, d.logProb)
                    .column(Column.REF_LOG_PROB, d.oldLogProb).column(Column.RESPONSE_MASK, d.mask).build();
                final KlPenalty kl = KlPenalty.fromVerl(new String[] {"kl", "abs", "mse", "low_var_kl", "k1+"}[i % 4]);
                return e -> {
                    try (OffHeapArray kld = OffHeapArray.allocate(ElementType.F32, n);
                         OffHeapArray grad = OffHeapArray.allocate(ElementType.F32, n)) {
                        e.klPenalty(kl, b, kld, grad);
                        return mix(mix(3, kld), grad);
                    }
                };
            }
            case 3 -> {
                final int rows = 3 + i % 5;
                final int vocab = new int[] {97, 1000, 4099}[i % 3];
                final SplittableRandom r = new SplittableRandom(i);
                final OffHeapArray z = OffHeapArray.allocate(i % 2 == 0 ? ElementType.F32 : ElementType.BF16,
                    (long) rows * vocab);
                for (long k = 0; k < z.length(); k++) {
                    z.setFloat(k, (float) (3 * r.nextGaussian()));
                }
                final int[] lab = new int[rows];
                final float[] up = new float[rows];
                for (int k = 0; k < rows; k++) {
                    lab[k] = r.nextInt(vocab);
                    up[k] = (float) r.nextGaussian();
                }
                final OffHeapArray labels = OffHeapArray.ofInts(lab);
                final OffHeapArray upstream = OffHeapArray.of(up);
                final Logits lg = Logits.of(z, rows, vocab);
                return e -> {
                    try (OffHeapArray lp = OffHeapArray.allocate(ElementType.F32, rows);
                         OffHeapArray ent = OffHeapArray.allocate(ElementType.F32, rows);
                         OffHeapArray grad = OffHeapArray.allocate(ElementType.F32, (long) rows * vocab)) {
                        e.logProbs(lg, labels, 0.7, null, lp, ent);
                        e.logProbsBackward(lg, labels, 0.7, null, upstream, upstream, grad);
                        return mix(mix(mix(4, lp), ent), grad);
                    }
                };
            }
            default -> {
                final TokenBatch b = TokenBatch.withOffsets(d.offsets).column(Column.LOG_PROB, d.logProb)
                    .column(Column.OLD_LOG_PROB, d.oldLogProb).column(Column.ADVANTAGES, d.advantages)
                    .column(Column.REF_LOG_PROB, d.oldLogProb).column(Column.RESPONSE_MASK, d.mask).build();
                return e -> {
                    try (OffHeapArray grad = OffHeapArray.allocate(ElementType.F32, n)) {
                        final ActorLossResult out = new ActorLossResult();
                        e.actorLoss(spec, b, grad, out);
                        return mix(mix(mix(5, out.loss()), out.metrics()), grad);
                    }
                };
            }
        }
    }

    /** Runs {@code calls} random tasks on each of {@code THREADS} threads, each with its own engine. */
    static long[] hammer(final int calls) throws InterruptedException {
        final AtomicLong mismatches = new AtomicLong();
        final AtomicLong done = new AtomicLong();
        final ConcurrentLinkedQueue<String> first = new ConcurrentLinkedQueue<>();
        final ConcurrentLinkedQueue<Throwable> errors = new ConcurrentLinkedQueue<>();
        final CountDownLatch start = new CountDownLatch(1);
        final List<Thread> threads = new ArrayList<>();
        for (int t = 0; t < THREADS; t++) {
            final int id = t;
            threads.add(Thread.ofPlatform().name("hammer-" + t).start(() -> {
                final int kind = id % 3;
                try (Engine e = kind == 0 ? new VectorEngine() : kind == 1 ? new VectorEngine(2)
                    : new ReferenceEngine()) {
                    final SplittableRandom r = new SplittableRandom(id);
                    start.await();
                    for (int c = 0; c < calls; c++) {
                        final int k = r.nextInt(TASKS);
                        final long got = TASK_LIST.get(k).run(e);
                        if (got != expected[k][kind == 2 ? 1 : 0]) {
                            mismatches.incrementAndGet();
                            first.add(e.name() + " task " + k + " call " + c);
                        }
                        done.incrementAndGet();
                    }
                } catch (final Throwable ex) {
                    errors.add(ex);
                }
            }));
        }
        final long t0 = System.nanoTime();
        start.countDown();
        for (final Thread th : threads) {
            th.join();
        }
        final long ns = System.nanoTime() - t0;
        assertThat(errors).as("exceptions on the hammer threads").isEmpty();
        assertThat(mismatches.get()).as("calls whose bits differ from serial use, first: %s", first.peek()).isZero();
        return new long[] {done.get(), ns};
    }

    @Test
    void manyEnginesOnManyThreadsGiveTheBitsOfSerialUse() throws InterruptedException {
        final long[] r = hammer(CALLS);
        assertThat(r[0]).isEqualTo((long) THREADS * CALLS);
        System.out.printf("concurrency: %d threads x %d calls = %d calls in %.1f s, all bit-identical to serial%n",
            THREADS, CALLS, r[0], r[1] / 1e9);
    }

    /**
     * The documented measurement (opt-in, see docs/reliability.md): 16 threads x {@code rlvec.campaignCalls} calls
     * each (default 10^5).
     */
    @Tag("campaign")
    @Test
    void campaign() throws InterruptedException {
        final int calls = Integer.getInteger("rlvec.campaignCalls", 100_000);
        final long[] r = hammer(calls);
        System.out.printf("concurrency: %d threads x %d calls = %d calls in %.1f s, all bit-identical to serial%n",
            THREADS, calls, r[0], r[1] / 1e9);
    }

    private static Set<Thread> workers() {
        return Thread.getAllStackTraces().keySet().stream().filter(t -> t.getName().startsWith("rlvec-blocks-")
            && !t.getName().equals("rlvec-blocks-cleaner")).collect(Collectors.toSet());
    }

    @Test
    void closeStopsEveryWorker() throws InterruptedException {
        final Set<Thread> before = workers();
        final List<Engine> engines = new ArrayList<>();
        for (int p = 2; p <= 5; p++) {
            engines.add(new VectorEngine(p));
        }
        for (final Engine e : engines) {
            for (int k = 0; k < TASKS; k++) {
                assertThat(TASK_LIST.get(k).run(e)).isEqualTo(expected[k][0]);
            }
        }
        final Set<Thread> started = workers();
        started.removeAll(before);
        assertThat(started).as("workers of engines with parallelism 2..5").hasSize(1 + 2 + 3 + 4);
        for (final Engine e : engines) {
            e.close();
        }
        for (final Thread t : started) {
            t.join(10_000);
            assertThat(t.isAlive()).as("%s after close()", t.getName()).isFalse();
        }
    }

    @Test
    void interruptedCallersLeaveTheEngineComputingTheSameBits() throws InterruptedException {
        try (Engine e = new VectorEngine(3)) {
            final AtomicLong wrong = new AtomicLong();
            final AtomicLong calls = new AtomicLong();
            final ConcurrentLinkedQueue<Throwable> errors = new ConcurrentLinkedQueue<>();
            final Thread caller = Thread.ofPlatform().name("interrupted-caller").start(() -> {
                final SplittableRandom r = new SplittableRandom(7);
                for (int c = 0; c < 400; c++) {
                    final int k = r.nextInt(TASKS);
                    try {
                        if (TASK_LIST.get(k).run(e) != expected[k][0]) {
                            wrong.incrementAndGet();
                        }
                    } catch (final RuntimeException ex) {
                        // A clear failure is allowed; a wrong number is not.
                        errors.add(ex);
                    }
                    calls.incrementAndGet();
                    Thread.interrupted();
                }
            });
            final SplittableRandom r = new SplittableRandom(11);
            while (caller.isAlive()) {
                caller.interrupt();
                Thread.sleep(0, r.nextInt(500_000));
            }
            assertThat(wrong.get()).as("calls with wrong bits after interrupts").isZero();
            for (final Throwable t : errors) {
                assertThat(t.getMessage()).as("a failure under interrupts says what happened: %s", t).isNotBlank();
            }
            System.out.printf("interrupts: %d calls, %d clear failures, 0 wrong%n", calls.get(), errors.size());
            for (int k = 0; k < TASKS; k++) {
                assertThat(TASK_LIST.get(k).run(e)).as("task %d after the interrupts", k).isEqualTo(expected[k][0]);
            }
        }
    }
}
