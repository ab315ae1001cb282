package io.rlvec.engine;

/**
 * Per-engine scratch that grows to the largest batch seen and is then reused, so that steady-state calls
 * allocate nothing. Kernels own disjoint fields.
 */
final class Workspace {
    /** valid-token count per sequence. */
    long[] seqCounts = new long[0];
    /** per-sequence (or per-block) double partials, laid out by the kernel that uses them. */
    double[] partials = new double[0];

    long[] seqCounts(final int n) {
        if (seqCounts.length < n) {
            seqCounts = new long[Math.max(n, seqCounts.length * 2)];
        }
        return seqCounts;
    }

    double[] partials(final int n) {
        if (partials.length < n) {
            partials = new double[Math.max(n, partials.length * 2)];
        }
        return partials;
    }
}
