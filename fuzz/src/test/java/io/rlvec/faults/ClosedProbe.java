package io.rlvec.faults;

import io.rlvec.AggMode;
import io.rlvec.Column;
import io.rlvec.ElementType;
import io.rlvec.Engine;
import io.rlvec.Logits;
import io.rlvec.LossSpec;
import io.rlvec.OffHeapArray;
import io.rlvec.PolicyLossResult;
import io.rlvec.SoftmaxStats;
import io.rlvec.TokenBatch;
import io.rlvec.engine.VectorEngine;

/**
 * Child-JVM main: one scenario of closing twice, using after close or closing from another thread; prints
 * {@code outcome=ok} or {@code outcome=<exception class>: <message>}. A crash shows as a nonzero exit code.
 */
public final class ClosedProbe {
    private static final LossSpec SPEC = LossSpec.builder().lossAggMode(AggMode.TOKEN_MEAN).build();

    private ClosedProbe() {
    }

    public static void main(final String[] args) throws Exception {
        String outcome;
        try {
            outcome = scenario(args[0]);
        } catch (final RuntimeException e) {
            outcome = e.getClass().getName() + ": " + e.getMessage();
        }
        System.out.println("outcome=" + outcome);
    }

    private static TokenBatch batch(final int n) {
        final float[] v = new float[n];
        for (int i = 0; i < n; i++) {
            v[i] = -0.5f - 0.001f * i;
        }
        return TokenBatch.padded(4, n / 4).column(Column.LOG_PROB, v).column(Column.OLD_LOG_PROB, v.clone())
            .column(Column.ADVANTAGES, v.clone()).build();
    }

    private static String scenario(final String name) throws Exception {
        final PolicyLossResult out = new PolicyLossResult();
        switch (name) {
            case "array-close-twice" -> {
                final OffHeapArray a = OffHeapArray.allocate(ElementType.F32, 1000);
                a.close();
                a.close();
                return "ok";
            }
            case "array-use-after-close" -> {
                final OffHeapArray a = OffHeapArray.allocate(ElementType.F32, 1 << 20);
                a.close();
                return "read " + a.getFloat(5);
            }
            case "output-closed" -> {
                try (Engine e = new VectorEngine(); TokenBatch b = batch(4096)) {
                    final OffHeapArray g = OffHeapArray.allocate(ElementType.F32, 4096);
                    g.close();
                    e.policyLoss(SPEC, b, g, out);
                    return "wrote into a closed gradient buffer";
                }
            }
            case "batch-close-twice" -> {
                final TokenBatch b = batch(64);
                b.close();
                b.close();
                return "ok";
            }
            case "batch-used-after-close" -> {
                try (Engine e = new VectorEngine()) {
                    final TokenBatch b = batch(1 << 16);
                    b.close();
                    e.policyLoss(SPEC, b, null, out);
                    return "computed " + out.pgLoss() + " from a closed batch";
                }
            }
            case "column-closed-after-build" -> {
                try (Engine e = new VectorEngine()) {
                    final OffHeapArray lp = OffHeapArray.allocate(ElementType.F32, 1 << 20);
                    final TokenBatch b = TokenBatch.padded(4, 1 << 18).column(Column.LOG_PROB, lp)
                        .column(Column.OLD_LOG_PROB, new float[1 << 20]).column(Column.ADVANTAGES, new float[1 << 20])
                        .build();
                    lp.close();
                    e.policyLoss(SPEC, b, null, out);
                    return "computed " + out.pgLoss() + " from a closed column";
                }
            }
            case "closed-from-other-thread" -> {
                try (Engine e = new VectorEngine(); TokenBatch b = batch(4096)) {
                    final OffHeapArray g = OffHeapArray.allocate(ElementType.F32, 4096);
                    final Thread t = new Thread(g::close);
                    t.start();
                    t.join();
                    e.policyLoss(SPEC, b, g, out);
                    return "wrote into a buffer closed by another thread";
                }
            }
            case "logits-closed" -> {
                try (Engine e = new VectorEngine(); OffHeapArray lab = OffHeapArray.ofInts(0, 1);
                     OffHeapArray lp = OffHeapArray.allocate(ElementType.F32, 2)) {
                    final OffHeapArray z = OffHeapArray.allocate(ElementType.F32, 2 * 5000);
                    final Logits lg = Logits.of(z, 2, 5000);
                    z.close();
                    e.logProbs(lg, lab, 1.0, null, lp, null);
                    return "read closed logits: " + lp.getFloat(0);
                }
            }
            case "stats-closed" -> {
                try (Engine e = new VectorEngine(); OffHeapArray lab = OffHeapArray.ofInts(0, 1);
                     OffHeapArray lp = OffHeapArray.allocate(ElementType.F32, 2);
                     OffHeapArray z = OffHeapArray.allocate(ElementType.F32, 10)) {
                    final SoftmaxStats s = SoftmaxStats.allocate(2);
                    s.close();
                    s.close();
                    e.logProbs(Logits.of(z, 2, 5), lab, 1.0, null, lp, null, s);
                    return "wrote closed statistics";
                }
            }
            case "engine-close-twice-then-use" -> {
                final Engine e = new VectorEngine(2);
                e.close();
                e.close();
                try (TokenBatch b = batch(1 << 16); OffHeapArray g = OffHeapArray.allocate(ElementType.F32, 1 << 16)) {
                    e.policyLoss(SPEC, b, g, out);
                    final PolicyLossResult fresh = new PolicyLossResult();
                    try (Engine f = new VectorEngine()) {
                        f.policyLoss(SPEC, b, null, fresh);
                    }
                    return Float.floatToIntBits(out.pgLoss()) == Float.floatToIntBits(fresh.pgLoss()) ? "ok"
                        : "a closed engine computed " + out.pgLoss() + ", a fresh one " + fresh.pgLoss();
                }
            }
            default -> throw new IllegalArgumentException("no scenario " + name);
        }
    }
}
