package io.rlvec.engine.actor;

import static org.assertj.core.api.Assertions.assertThat;

import java.util.SplittableRandom;

import org.junit.jupiter.api.Tag;
import org.junit.jupiter.api.Test;

import io.rlvec.ActorLossResult;
import io.rlvec.AggMode;
import io.rlvec.ElementType;
import io.rlvec.Engine;
import io.rlvec.Engines;
import io.rlvec.Logits;
import io.rlvec.LossSpec;
import io.rlvec.OffHeapArray;
import io.rlvec.TokenBatch;
import io.rlvec.actor.ActorData;
import io.rlvec.engine.Allocations;

/**
 * Hot actor-loss calls allocate nothing: from log-probs, and from logits with the exps kept in a separate gradient
 * buffer and in place, entropy_coeff 0 and 0.01, on a small packed batch (short token loops, the case where the
 * token kernels take longest to reach C2), then with two threads on every thread. Fresh JVM per class in the
 * {@code allocation} executions.
 */
@Tag("allocation")
class ActorAllocationTest {
    private static final Engine ENGINE = Engines.preferred();

    @Test
    void hotActorLossAllocatesNothing() {
        final com.sun.management.ThreadMXBean threads =
            (com.sun.management.ThreadMXBean) java.lang.management.ManagementFactory.getThreadMXBean();
        final ActorData.Inputs in = ActorData.inputs(5, 40, false, false);
        final int rows = in.lp().length;
        final int v = 301;
        final SplittableRandom r = new SplittableRandom(5);
        final float[] z = new float[rows * v];
        final int[] labels = new int[rows];
        for (int i = 0; i < rows; i++) {
            labels[i] = r.nextInt(v);
            for (int j = 0; j < v; j++) {
                z[i * v + j] = (float) (3 * r.nextGaussian());
            }
        }
        final LossSpec plain = ActorData.spec(AggMode.TOKEN_MEAN, "low_var_kl", 0.001, 1.0).toBuilder()
            .temperature(0.7).build();
        final LossSpec entropy = plain.toBuilder().entropyCoeff(0.01).build();
        try (TokenBatch batch = in.batch();
             OffHeapArray logits = OffHeapArray.of(z);
             OffHeapArray own = OffHeapArray.of(z);
             OffHeapArray lab = OffHeapArray.ofInts(labels);
             OffHeapArray glp = OffHeapArray.allocate(ElementType.F32, rows);
             OffHeapArray g = OffHeapArray.allocate(ElementType.F32, z.length)) {
            final Logits view = Logits.of(logits, rows, v);
            final Logits ownView = Logits.of(own, rows, v);
            final ActorLossResult out = new ActorLossResult();
            final Runnable[] calls = {
                () -> ENGINE.actorLoss(plain, batch, glp, out),
                () -> ENGINE.actorLoss(plain, batch, view, lab, null, null, g, out),
                () -> ENGINE.actorLoss(entropy, batch, view, lab, null, glp, g, out),
                // In place: the logits become the gradient (their values stop mattering for the allocation count).
                () -> ENGINE.actorLoss(entropy, batch, ownView, lab, null, null, own, out),
            };
            final String[] names = {"from log-probs", "from logits, exps kept", "from logits with entropy",
                "in place"};
            for (int k = 0; k < calls.length; k++) {
                final Runnable call = calls[k];
                // Each form warmed on its own first: the token kernels of a 40-token batch need some 10^4 calls
                // before C2 compiles them (their loops are short); until then C1 code boxes vectors.
                for (int c = 0; c < 30_000; c++) {
                    call.run();
                }
            }
            for (int k = 0; k < calls.length; k++) {
                final long bytes = Allocations.leastAllocated(threads, calls[k], 1);
                assertThat(bytes).as("%s actorLoss %s allocated %d bytes per call", ENGINE.name(), names[k], bytes)
                    .isZero();
            }
            // Run after the one-thread forms, so that the token kernels are compiled already.
            twoThreadsAllocateNothingOnAnyThread(threads, in, plain, entropy);
        }
    }

    /**
     * The actor loss from logits with two threads (several blocks of rows, so the workers run rows, and with them
     * the row-by-row step): no allocation on the caller or on any worker over 100 hot calls.
     */
    private static void twoThreadsAllocateNothingOnAnyThread(final com.sun.management.ThreadMXBean threads,
                                                           final ActorData.Inputs in, final LossSpec plain,
                                                           final LossSpec entropy) {
        final int rows = in.lp().length;
        final int v = 20_000;
        final SplittableRandom r = new SplittableRandom(7);
        final float[] z = new float[rows * v];
        final int[] labels = new int[rows];
        for (int i = 0; i < rows; i++) {
            labels[i] = r.nextInt(v);
        }
        for (int i = 0; i < z.length; i++) {
            z[i] = (float) (3 * r.nextGaussian());
        }
        try (Engine two = Engines.preferred(2);
             TokenBatch batch = in.batch();
             OffHeapArray logits = OffHeapArray.of(z);
             OffHeapArray lab = OffHeapArray.ofInts(labels);
             OffHeapArray glp = OffHeapArray.allocate(ElementType.F32, rows);
             OffHeapArray g = OffHeapArray.allocate(ElementType.F32, z.length)) {
            final Logits view = Logits.of(logits, rows, v);
            final ActorLossResult out = new ActorLossResult();
            final Runnable call = () -> {
                two.actorLoss(plain, batch, view, lab, null, null, g, out);
                two.actorLoss(entropy, batch, view, lab, null, glp, g, out);
            };
            final long best = Allocations.leastAllocatedOnAllThreads(threads, call, 3_000);
            assertThat(Allocations.workerIds()).as("a two-thread engine has a worker thread").isNotEmpty();
            assertThat(best).as("%s actorLoss from logits allocated %d bytes over 100 pairs of calls", two.name(),
                best).isZero();
        }
    }
}
