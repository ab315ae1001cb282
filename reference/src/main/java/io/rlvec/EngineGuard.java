package io.rlvec;

import java.util.concurrent.atomic.AtomicReference;

/**
 * An engine's one-caller-at-a-time rule, checked: {@link #enter()} at the start of every {@link Engine} method
 * refuses a second thread while a call is running (engines hold per-call scratch and worker hand-offs, so two
 * concurrent calls would give wrong numbers, not just slow ones) and every call after {@link #close()}, with the
 * same messages for every engine. A thread may nest calls (a composed term calling its parts). Entering and
 * leaving allocates nothing: one compare-and-set and one volatile write per call.
 */
public final class EngineGuard {
    /** The message of a call made while another thread's call is running. */
    public static final String BUSY = "this engine is in use by another thread: an Engine is used by one caller "
        + "at a time (give each thread its own engine)";
    /** The message of a call made after close(). */
    public static final String CLOSED = "this engine is closed";

    private final AtomicReference<Thread> owner = new AtomicReference<>();
    private final Call call = new Call();
    private int depth;
    private volatile boolean closed;

    /** The token {@link #enter()} returns; closing it ends the call. */
    public final class Call implements AutoCloseable {
        private Call() {
        }

        @Override
        public void close() {
            if (--depth == 0) {
                owner.set(null);
            }
        }
    }

    /**
     * Starts a call on the current thread.
     *
     * @return the token to close when the call ends (try-with-resources).
     * @throws IllegalStateException when the engine is closed, or another thread's call is running.
     */
    public Call enter() {
        if (closed) {
            throw new IllegalStateException(CLOSED);
        }
        final Thread me = Thread.currentThread();
        if (owner.get() == me) {
            depth++;
            return call;
        }
        if (!owner.compareAndSet(null, me)) {
            throw new IllegalStateException(BUSY);
        }
        depth = 1;
        Checks.beginCall();
        return call;
    }

    /** Marks the engine closed: every later call is refused. */
    public void close() {
        closed = true;
    }

    /** @return whether {@link #close()} was called. */
    public boolean isClosed() {
        return closed;
    }
}
