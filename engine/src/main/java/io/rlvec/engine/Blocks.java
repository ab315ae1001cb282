package io.rlvec.engine;

import java.util.concurrent.ForkJoinPool;
import java.util.concurrent.ForkJoinTask;
import java.util.concurrent.RecursiveAction;

/**
 * Runs a kernel over fixed blocks, inline or on a private pool. Blocks are defined by the data (never by the
 * thread count) and each writes only its own output slots; callers combine block partials in block order, so
 * results are bit-identical for any parallelism.
 */
public final class Blocks implements AutoCloseable {

    /** Work on one block. */
    @FunctionalInterface
    public interface Body {
        /** Processes block {@code block}. */
        void run(int block);
    }

    private final int parallelism;
    private final ForkJoinPool pool;

    /** @param parallelism worker threads; 1 runs every block on the calling thread. */
    public Blocks(final int parallelism) {
        if (parallelism < 1) {
            throw new IllegalArgumentException("parallelism must be >= 1, got " + parallelism);
        }
        this.parallelism = parallelism;
        this.pool = parallelism > 1 ? new ForkJoinPool(parallelism) : null;
    }

    /** @return worker threads. */
    public int parallelism() {
        return parallelism;
    }

    /** Runs {@code body} for blocks {@code 0..count-1} and returns when all are done. */
    public void forEach(final int count, final Body body) {
        if (pool == null || count <= 1) {
            for (int i = 0; i < count; i++) {
                body.run(i);
            }
            return;
        }
        final int chunks = Math.min(count, parallelism);
        pool.invoke(new RecursiveAction() {
            @Override
            protected void compute() {
                final RecursiveAction[] parts = new RecursiveAction[chunks];
                for (int c = 0; c < chunks; c++) {
                    final int from = (int) ((long) count * c / chunks);
                    final int to = (int) ((long) count * (c + 1) / chunks);
                    parts[c] = new RecursiveAction() {
                        @Override
                        protected void compute() {
                            for (int i = from; i < to; i++) {
                                body.run(i);
                            }
                        }
                    };
                }
                ForkJoinTask.invokeAll(parts);
            }
        });
    }

    @Override
    public void close() {
        if (pool != null) {
            pool.shutdown();
        }
    }
}
