package io.rlvec.jmh;

import java.lang.management.ManagementFactory;
import java.util.Locale;

/**
 * An exact, thread-local count of what one engine call allocates, taken at the end of a trial.
 *
 * <p>JMH's {@code -prof gc} figure ({@code gc.alloc.rate.norm}) divides the allocation of every thread in the
 * fork by the operation count, so JIT and JMH background work adds noise that grows with the call time and the
 * machine's load (measured here: 0.15 to 1.2 MB/s, i.e. up to ~30 B/op on a 27 us call). This probe reads the
 * calling thread's own allocation counter around rounds of calls instead, so a zero-allocation call reads
 * exactly 0. It cannot see allocation on other threads (a worker pool's), which the JMH figure does: the two
 * complement each other.
 *
 * <p>The probe calls the engine from its own call site, which the JIT may not have compiled yet even though the
 * benchmark loop is hot (there the engine is inlined into JMH's loop); interpreted and C1 code allocate what C2's
 * escape analysis removes. So it measures rounds of up to {@link #ROUND_CALLS} calls or {@link #ROUND_NANOS}
 * and keeps the least allocation per call seen: for the vector engine until a round reads 0 or
 * {@link #PROBE_NANOS} have passed, for the reference engine one round. A call that allocates in steady state
 * allocates in every round.
 *
 * <p>The result is printed into the JMH log. When the system property {@value #MAX_VECTOR_PROPERTY} is set
 * (the CI smoke run sets it to 0 with {@code -jvmArgsPrepend}), a vector engine allocating more bytes per call
 * than that fails the trial, and {@link #prewarm} runs in the setup: a smoke run's 200 ms JMH warm-up cannot
 * promise compiled code on a loaded 2-core machine (style.md P6), and interpreted or C1-compiled Vector API code
 * allocates thousands of bytes per call, which would make the {@code gc.alloc.rate.norm} check flaky. The
 * reference engine is only reported: it is the specification, not the fast path.
 */
public final class AllocationProbe {
    /** System property: the most bytes per call the vector engine may allocate; unset: report only. */
    public static final String MAX_VECTOR_PROPERTY = "rlvec.bench.maxVectorAllocPerCall";

    /** Most calls in one round: enough to expose amortised allocation (a buffer grown every few calls). */
    static final int ROUND_CALLS = 256;
    /** Longest round (a (64, 4096) reference call takes milliseconds). */
    static final long ROUND_NANOS = 50_000_000L;
    /** Longest probe of the vector engine, while its rounds still allocate (the JIT catching up). */
    static final long PROBE_NANOS = 3_000_000_000L;

    private static final com.sun.management.ThreadMXBean THREADS =
        (com.sun.management.ThreadMXBean) ManagementFactory.getThreadMXBean();

    private AllocationProbe() {
    }

    /**
     * The outcome of a probe.
     *
     * @param least  the least allocation per call of any round, in bytes.
     * @param first  the first round's allocation per call.
     * @param rounds rounds run.
     */
    record Probe(double least, double first, int rounds) {
    }

    /**
     * Runs {@code call} in rounds on the calling thread and checks the least allocation per call of a round.
     *
     * @param engine the {@code engine} parameter ({@link EngineChoice#VECTOR} is held to the bound).
     * @param what   the engine, kernel and shape, for the log line and the message.
     * @param call   one engine call, created before the measurement.
     * @throws IllegalStateException when the engine is the vector engine, the bound is set and exceeded.
     */
    public static void check(final String engine, final String what, final Runnable call) {
        final boolean vector = EngineChoice.VECTOR.equals(engine);
        final Probe p = probe(call, vector);
        System.out.printf(Locale.ROOT, "%n# allocation probe: %s: %.2f B/call (calling thread, least of %d round(s); "
            + "first round %.2f)%n", what, p.least(), p.rounds(), p.first());
        final String bound = System.getProperty(MAX_VECTOR_PROPERTY);
        if (bound != null && vector && p.least() > Double.parseDouble(bound)) {
            throw new IllegalStateException(what + " allocates " + p.least() + " bytes per call on the calling thread "
                + "in every one of " + p.rounds() + " rounds, more than the " + bound + " allowed by -D"
                + MAX_VECTOR_PROPERTY + ": a call must allocate nothing (design.md; style.md P1, P2)");
        }
    }

    /**
     * In a smoke run ({@value #MAX_VECTOR_PROPERTY} set) and for the vector engine only: calls the engine until
     * a round of calls allocates nothing (at most {@link #PROBE_NANOS}), so that the JIT has compiled it before
     * JMH's short warm-up starts. Does nothing otherwise; never throws (the teardown check judges).
     *
     * @param engine the {@code engine} parameter.
     * @param what   the engine, kernel and shape, for the log line.
     * @param call   one engine call.
     */
    public static void prewarm(final String engine, final String what, final Runnable call) {
        if (System.getProperty(MAX_VECTOR_PROPERTY) == null || !EngineChoice.VECTOR.equals(engine)) {
            return;
        }
        final long start = System.nanoTime();
        final Probe p = probe(call, true);
        System.out.printf(Locale.ROOT, "%n# smoke pre-warm: %s: %.2f B/call after %d round(s), %d ms%n", what,
            p.least(), p.rounds(), (System.nanoTime() - start) / 1_000_000);
    }

    /** Rounds of calls; with {@code untilZero}, repeats until a round allocates nothing or time runs out. */
    private static Probe probe(final Runnable call, final boolean untilZero) {
        final long start = System.nanoTime();
        double least = Double.POSITIVE_INFINITY;
        double first = Double.NaN;
        int rounds = 0;
        do {
            final long roundStart = System.nanoTime();
            final long before = THREADS.getCurrentThreadAllocatedBytes();
            int calls = 0;
            do {
                call.run();
                calls++;
            } while (calls < ROUND_CALLS && System.nanoTime() - roundStart < ROUND_NANOS);
            final long after = THREADS.getCurrentThreadAllocatedBytes();
            final double perCall = (after - before) / (double) calls;
            first = rounds == 0 ? perCall : first;
            least = Math.min(least, perCall);
            rounds++;
        } while (untilZero && least > 0 && System.nanoTime() - start < PROBE_NANOS);
        return new Probe(least, first, rounds);
    }
}
