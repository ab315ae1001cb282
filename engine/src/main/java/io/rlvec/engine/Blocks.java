package io.rlvec.engine;

import java.lang.invoke.MethodHandles;
import java.lang.invoke.VarHandle;
import java.lang.ref.Cleaner;
import java.lang.ref.Reference;
import java.util.List;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.concurrent.locks.LockSupport;

/**
 * Runs a kernel over fixed blocks, inline or on persistent worker threads, without allocating per call.
 *
 * <p><b>Determinism.</b> Blocks are defined by the data (never by the thread count) and each block writes only its
 * own output slots; callers combine block partials in block order. Which thread runs a block, and in which order
 * blocks start, therefore never changes a bit of the result: the same bits for any parallelism.
 *
 * <p><b>Threads.</b> With {@code parallelism} p &gt; 1 the constructor starts p - 1 daemon workers named
 * {@code rlvec-blocks-<pool>-<worker>}; the thread calling {@link #forEach} is the p-th and takes blocks too.
 * With p = 1, or a call of at most one block, every block runs inline on the calling thread.
 *
 * <p><b>Hand-off.</b> A call publishes (generation, block count) and the body through volatile fields, wakes the
 * workers that are parked, and then every thread, the caller included, claims blocks one at a time from a shared
 * counter (an atomic increment per block), so uneven blocks balance themselves. An idle worker spins for about
 * 50 us, then parks; the caller waits for the last block the same way (spin, then park until the
 * thread finishing it unparks the caller). No lock, no task object, nothing allocated on any thread.
 *
 * <p><b>One caller at a time.</b> Calls on one instance are meant to come from one thread at a time (an engine is
 * not thread-safe). A call made while another call on the same instance is in progress, typically a body that calls
 * {@code forEach} again, runs its blocks inline on its own thread instead of waiting for the workers, so nesting
 * cannot deadlock (and an accidental concurrent call still computes every block once, only without help).
 *
 * <p><b>Memory effects.</b> What the caller did before {@code forEach} happens-before every block; every block
 * happens-before {@code forEach} returns (or throws).
 *
 * <p><b>Failures.</b> If a block throws, blocks not yet started are skipped, and after every started block has
 * finished the first exception is rethrown to the caller (a {@link RuntimeException} or {@link Error} as it was
 * thrown; anything else wrapped in an {@link IllegalStateException}). Workers survive it; the instance stays usable.
 *
 * <p><b>Lifecycle.</b> {@link #close()} stops and joins the workers and is idempotent; afterwards {@code forEach}
 * throws {@link IllegalStateException} when {@code parallelism} &gt; 1 (with parallelism 1 there is nothing to
 * stop and calls keep running inline). An instance that becomes unreachable without {@code close()} stops its
 * workers as well, through a {@link Cleaner}.
 */
public final class Blocks implements AutoCloseable {

    /** Work on one block. */
    @FunctionalInterface
    public interface Body {
        /** Processes block {@code block}. */
        void run(int block);
    }

    /**
     * How long an idle worker, or the caller waiting for the last block, spins before parking. Back-to-back kernel
     * calls of one engine call (forward, then backward; per-token pass, then per-row pass) follow each other within
     * microseconds, so a spinning worker takes the next call at once; a wake-up from park costs ~10-50 us on Linux,
     * so spinning much longer than that buys nothing and only burns a core.
     */
    static final long SPIN_NANOS = 50_000L;

    /** Spins between two reads of the clock (a read costs ~20 ns, a spin-wait hint a few ns to ~100 ns). */
    private static final int CLOCK_EVERY_MASK = 63;

    /** Numbers the pools in thread names. */
    private static final AtomicInteger POOLS = new AtomicInteger();

    private final int parallelism;
    private final Pool pool;
    private final Cleaner.Cleanable cleanable;

    /** @param parallelism threads running blocks, the caller included; 1 runs every block on the calling thread. */
    public Blocks(final int parallelism) {
        if (parallelism < 1 || parallelism > io.rlvec.Engines.MAX_THREADS) {
            throw new IllegalArgumentException("parallelism must be in [1, " + io.rlvec.Engines.MAX_THREADS
                + "], got " + parallelism);
        }
        this.parallelism = parallelism;
        if (parallelism > 1) {
            this.pool = new Pool(parallelism - 1, POOLS.incrementAndGet());
            // The action refers to the pool only, never to this instance, so that this instance can become
            // unreachable and the workers (which refer to the pool only) stop.
            this.cleanable = Reaper.CLEANER.register(this, pool::shutdown);
        } else {
            this.pool = null;
            this.cleanable = null;
        }
    }

    /** @return threads running blocks, the caller included. */
    public int parallelism() {
        return parallelism;
    }

    /**
     * Runs {@code body} for blocks {@code 0..count-1} and returns when all are done (see the class comment for the
     * threading contract and the failure rule).
     *
     * @throws IllegalStateException if this instance has been closed and {@code parallelism} &gt; 1
     */
    public void forEach(final int count, final Body body) {
        final Pool p = pool;
        if (p == null) {
            inline(count, body);
            return;
        }
        if (p.closed) {
            throw new IllegalStateException("Blocks with parallelism " + parallelism
                + " is closed: forEach called after close()");
        }
        if (count <= 1 || io.rlvec.Checks.confinedMemoryInCall()) {
            // Memory confined to the caller (Arena.ofConfined) is out of the workers' reach: the caller runs all.
            inline(count, body);
            return;
        }
        try {
            p.run(count, body);
        } finally {
            // Keeps this instance reachable until the call is over, so the Cleaner cannot stop the workers mid-call.
            Reference.reachabilityFence(this);
        }
    }

    /** Stops and joins the workers; idempotent. */
    @Override
    public void close() {
        if (cleanable != null) {
            cleanable.clean();
        }
    }

    /** The worker threads (empty for parallelism 1), for tests that look at them. */
    List<Thread> workers() {
        return pool == null ? List.of() : List.of(pool.workers);
    }

    private static void inline(final int count, final Body body) {
        for (int i = 0; i < count; i++) {
            body.run(i);
        }
    }

    /** Holds the Cleaner's thread, started only once a pool exists. */
    private static final class Reaper {
        static final Cleaner CLEANER = Cleaner.create(
            r -> Thread.ofPlatform().name("rlvec-blocks-cleaner").daemon(true).unstarted(r));
    }

    /**
     * The shared state of one instance with workers. It never refers to its {@link Blocks}, so that the Cleaner can
     * stop it.
     *
     * <p>Claims and generations: {@code claim} packs (generation, next block) into one long and every thread claims a
     * block with one atomic increment of it; {@code job} packs (generation, block count). A claim is valid when its
     * generation equals the one in {@code job} and its block is below the count. A claim from a generation that has
     * already ended (a worker that woke late) fails that test, because a generation ends only when every block below
     * its count has been claimed and finished; a valid claim holds back the end of its generation until its block is
     * done, so the body it reads is that generation's body. Hence no barrier with the workers per call: the caller
     * waits only for the blocks, never for a worker that has nothing to do.
     */
    private static final class Pool {
        private static final VarHandle CLAIM;
        private static final VarHandle DONE;
        private static final VarHandle FAILURE;
        private static final VarHandle OWNER;
        private static final VarHandle PARKED = MethodHandles.arrayElementVarHandle(int[].class);

        static {
            try {
                final MethodHandles.Lookup l = MethodHandles.lookup();
                CLAIM = l.findVarHandle(Pool.class, "claim", long.class);
                DONE = l.findVarHandle(Pool.class, "done", int.class);
                FAILURE = l.findVarHandle(Pool.class, "failure", Throwable.class);
                OWNER = l.findVarHandle(Pool.class, "owner", Thread.class);
            } catch (final ReflectiveOperationException e) {
                throw new ExceptionInInitializerError(e);
            }
        }

        final Thread[] workers;
        /** Per worker: 1 while it is parked or about to park (the caller then unparks it). */
        private final int[] parked;

        volatile boolean closed;

        /** (generation &lt;&lt; 32) | next block to claim; incremented once per claim. */
        private volatile long claim;
        /** (generation &lt;&lt; 32) | block count of that generation; written before {@code claim}. */
        private volatile long job;
        /** Blocks of the current generation finished (run, or skipped after a failure). */
        private volatile int done;
        /** First throwable of the current generation, or null. */
        private volatile Throwable failure;
        /** True while the caller is parked (or about to park) waiting for the last block. */
        private volatile boolean waiting;
        /** The thread inside {@link #run}, or null. */
        private volatile Thread owner;

        // Written by the owner before it publishes a generation (job, claim), read by threads holding a valid claim.
        private Body body;
        private Thread caller;
        // Owner only.
        private int generation;

        Pool(final int workerCount, final int id) {
            workers = new Thread[workerCount];
            parked = new int[workerCount];
            for (int i = 0; i < workerCount; i++) {
                final int index = i;
                workers[i] = Thread.ofPlatform().name("rlvec-blocks-" + id + "-" + (i + 1)).daemon(true)
                    .unstarted(() -> work(index));
            }
            for (final Thread w : workers) {
                w.start();
            }
        }

        /** One call with {@code count >= 2} blocks, on the calling thread. */
        void run(final int count, final Body b) {
            final Thread me = Thread.currentThread();
            if (!OWNER.compareAndSet(this, null, me)) {
                // Nested (a body calling forEach) or a concurrent call: run here, never wait for the workers.
                inline(count, b);
                return;
            }
            try {
                final long g = (long) ++generation << 32;
                body = b;
                caller = me;
                DONE.set(this, 0);
                // Publication order matters: job before claim, so that any claim of this generation sees its job.
                job = g | count;
                claim = g;
                for (int i = 0; i < workers.length; i++) {
                    if ((int) PARKED.getVolatile(parked, i) != 0) {
                        LockSupport.unpark(workers[i]);
                    }
                }
                while (runClaim((long) CLAIM.getAndAdd(this, 1L))) {
                    // Claims blocks until none is left.
                }
                awaitDone(count);
                final Throwable f = failure;
                // Nothing holds a valid claim any more: drop the references so that they do not outlive the call.
                body = null;
                caller = null;
                FAILURE.set(this, null);
                if (f != null) {
                    rethrow(f);
                }
            } finally {
                owner = null;
            }
        }

        /**
         * Runs the block of claim {@code c} if the claim is valid.
         *
         * @return false when the claim is void (generation over, or no block left), i.e. stop claiming
         */
        private boolean runClaim(final long c) {
            final long j = job;
            if ((int) (j >>> 32) != (int) (c >>> 32)) {
                return false;
            }
            final int n = (int) j;
            final long block = c & 0xFFFF_FFFFL;
            if (block >= n) {
                return false;
            }
            if (failure == null) {
                try {
                    body.run((int) block);
                } catch (final Throwable t) {
                    FAILURE.compareAndSet(this, null, t);
                }
            }
            // Read before counting the block: once the last block is counted, the owner may start a new call.
            final Thread waiter = caller;
            if ((int) DONE.getAndAdd(this, 1) == n - 1 && waiting) {
                LockSupport.unpark(waiter);
            }
            return true;
        }

        /** The caller's wait for the last block: spin, then park until the thread finishing it unparks us. */
        private void awaitDone(final int n) {
            long start = 0L;
            for (int spins = 1; done < n; spins++) {
                if ((spins & CLOCK_EVERY_MASK) == 0) {
                    final long now = System.nanoTime();
                    if (start == 0L) {
                        start = now;
                    } else if (now - start > SPIN_NANOS) {
                        waiting = true;
                        // An interrupted caller returns from park at once: it then spins until done, and its
                        // interrupt status is left as it was.
                        while (done < n) {
                            LockSupport.park(this);
                        }
                        waiting = false;
                        return;
                    }
                }
                Thread.onSpinWait();
            }
        }

        /** A worker's life: wait for a generation, claim its blocks, repeat until closed. */
        private void work(final int index) {
            int seen = 0;
            while (awaitGeneration(index, seen)) {
                long c;
                do {
                    c = (long) CLAIM.getAndAdd(this, 1L);
                } while (runClaim(c));
                // If the void claim came from a later generation than the job's, the wait below returns at once.
                seen = (int) (c >>> 32);
            }
        }

        /** @return false once closed, true when a generation other than {@code seen} is published */
        private boolean awaitGeneration(final int index, final int seen) {
            long start = 0L;
            boolean spin = true;
            for (int spins = 1; ; spins++) {
                if (closed) {
                    return false;
                }
                if ((int) (claim >>> 32) != seen) {
                    return true;
                }
                if (spin) {
                    if ((spins & CLOCK_EVERY_MASK) == 0) {
                        final long now = System.nanoTime();
                        if (start == 0L) {
                            start = now;
                        } else if (now - start > SPIN_NANOS) {
                            spin = false;
                        }
                    }
                    Thread.onSpinWait();
                } else {
                    // Flag first, then re-check: the caller publishes, then reads the flag, so one of us sees the
                    // other (all volatile) and no wake-up is lost.
                    PARKED.setVolatile(parked, index, 1);
                    if (!closed && (int) (claim >>> 32) == seen) {
                        LockSupport.park(this);
                    }
                    PARKED.setVolatile(parked, index, 0);
                    // A stray interrupt (set by a body) would turn park into a busy loop: clear it.
                    Thread.interrupted();
                }
            }
        }

        /** Stops and joins the workers (a worker closing its own pool does not join itself). */
        void shutdown() {
            closed = true;
            for (final Thread w : workers) {
                LockSupport.unpark(w);
            }
            boolean interrupted = false;
            for (final Thread w : workers) {
                if (w == Thread.currentThread()) {
                    continue;
                }
                while (true) {
                    try {
                        w.join();
                        break;
                    } catch (final InterruptedException e) {
                        interrupted = true;
                    }
                }
            }
            if (interrupted) {
                Thread.currentThread().interrupt();
            }
        }

        private static void rethrow(final Throwable f) {
            if (f instanceof RuntimeException r) {
                throw r;
            }
            if (f instanceof Error e) {
                throw e;
            }
            throw new IllegalStateException("a block threw " + f, f);
        }
    }
}
