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

    // ---- token kernels (policy loss, agg_loss): one work plan, one reusable task per kernel ----

    /** The piece/block plan of the current token-kernel call. */
    final SequencePieces pieces = new SequencePieces();
    private PolicyLossKernel.Task policyTask;
    private AggKernel.Task aggTask;
    private RuleKernel.State ruleState;

    /** @return the policy-loss task over {@link #pieces}, created on first use. */
    PolicyLossKernel.Task policyTask() {
        PolicyLossKernel.Task t = policyTask;
        if (t == null) {
            t = new PolicyLossKernel.Task(pieces);
            policyTask = t;
        }
        return t;
    }

    /** @return the agg_loss task over {@link #pieces}, created on first use. */
    /** Frees the off-heap scratch. */
    void close() {
        if (ruleState != null) {
            ruleState.close();
        }
    }

    RuleKernel.State ruleState() {
        RuleKernel.State t = ruleState;
        if (t == null) {
            t = new RuleKernel.State();
            ruleState = t;
        }
        return t;
    }

    AggKernel.Task aggTask() {
        AggKernel.Task t = aggTask;
        if (t == null) {
            t = new AggKernel.Task(pieces);
            aggTask = t;
        }
        return t;
    }
}
