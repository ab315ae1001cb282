package io.rlvec.faults;

import java.lang.management.BufferPoolMXBean;
import java.lang.management.ManagementFactory;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

import javax.management.ObjectName;

import io.rlvec.AggMode;
import io.rlvec.Column;
import io.rlvec.ElementType;
import io.rlvec.Engine;
import io.rlvec.LossSpec;
import io.rlvec.OffHeapArray;
import io.rlvec.PolicyLossResult;
import io.rlvec.SoftmaxStats;
import io.rlvec.TokenBatch;
import io.rlvec.engine.VectorEngine;

/**
 * Child-JVM main: {@code cycles} allocate / use / close cycles of off-heap arrays, batches (whose builder allocates
 * columns and the default mask) and softmax statistics, each batch used by an engine call; prints the JVM's
 * direct-memory counters and NMT's committed native memory before and after (run with
 * {@code -XX:NativeMemoryTracking=summary}). With a second argument {@code leak}, a control run that leaks on
 * purpose.
 */
public final class LeakProbe {
    private static final Pattern OTHER = Pattern.compile("-\\s*Other \\(reserved=(\\d+)KB, committed=(\\d+)KB\\)");
    private static final Pattern TOTAL = Pattern.compile("Total: reserved=(\\d+)KB, committed=(\\d+)KB");

    private LeakProbe() {
    }

    public static void main(final String[] args) throws Exception {
        final long cycles = Long.parseLong(args[0]);
        final PolicyLossResult out = new PolicyLossResult();
        final LossSpec spec = LossSpec.builder().lossAggMode(AggMode.SEQ_MEAN_TOKEN_MEAN).build();
        final float[] lp = new float[64];
        for (int i = 0; i < lp.length; i++) {
            lp[i] = -0.01f * i;
        }
        try (Engine engine = new VectorEngine()) {
            run(engine, spec, out, lp, 20_000);
            System.gc();
            final long[] before = counters();
            final long t0 = System.nanoTime();
            final double sink = run(engine, spec, out, lp, cycles);
            final long ns = System.nanoTime() - t0;
            if (args.length > 1 && args[1].equals("leak")) {
                // Control: the same cycles, a quarter of them leaking their array (never closed).
                for (long i = 0; i < cycles; i++) {
                    final OffHeapArray a = OffHeapArray.allocate(ElementType.F32, 1 + i % 500);
                    if ((i & 3) != 0) {
                        a.close();
                    }
                }
            }
            System.gc();
            final long[] after = counters();
            System.out.println("cycles=" + cycles);
            System.out.println("seconds=" + ns / 1e9);
            System.out.println("sink=" + sink);
            System.out.println("direct.count.before=" + before[0]);
            System.out.println("direct.count.after=" + after[0]);
            System.out.println("direct.bytes.before=" + before[1]);
            System.out.println("direct.bytes.after=" + after[1]);
            System.out.println("nmt.other.kb.before=" + before[2]);
            System.out.println("nmt.other.kb.after=" + after[2]);
            System.out.println("nmt.total.kb.before=" + before[3]);
            System.out.println("nmt.total.kb.after=" + after[3]);
        }
    }

    private static double run(final Engine engine, final LossSpec spec, final PolicyLossResult out, final float[] lp,
                              final long cycles) {
        double sink = 0;
        for (long i = 0; i < cycles; i++) {
            switch ((int) (i & 3)) {
                case 0 -> {
                    try (OffHeapArray a = OffHeapArray.allocate(ElementType.F32, 1 + i % 1000)) {
                        a.setFloat(a.length() - 1, 1f);
                        sink += a.getFloat(a.length() - 1);
                    }
                }
                case 1 -> {
                    try (OffHeapArray a = OffHeapArray.ofInts(1, 2, 3); OffHeapArray b = OffHeapArray.ofBf16(1f, 2f)) {
                        sink += a.getInt(2) + b.getFloat(1);
                    }
                }
                case 2 -> {
                    final int len = 1 + (int) (i % 63);
                    try (TokenBatch batch = TokenBatch.packed(len / 2, len - len / 2)
                        .column(Column.LOG_PROB, java.util.Arrays.copyOf(lp, len))
                        .column(Column.OLD_LOG_PROB, java.util.Arrays.copyOf(lp, len))
                        .column(Column.ADVANTAGES, java.util.Arrays.copyOf(lp, len)).build()) {
                        engine.policyLoss(spec, batch, null, out);
                        sink += out.pgLoss();
                    }
                }
                default -> {
                    try (SoftmaxStats s = SoftmaxStats.allocate(1 + (int) (i % 7))) {
                        sink += s.capacity();
                    }
                }
            }
        }
        return sink;
    }

    /** @return direct buffer count and bytes, NMT "Other" committed KB and total committed KB (-1 without NMT). */
    private static long[] counters() throws Exception {
        long count = 0;
        long bytes = 0;
        for (final BufferPoolMXBean b : ManagementFactory.getPlatformMXBeans(BufferPoolMXBean.class)) {
            if (b.getName().equals("direct")) {
                count = b.getCount();
                bytes = b.getMemoryUsed();
            }
        }
        final String nmt = (String) ManagementFactory.getPlatformMBeanServer().invoke(
            new ObjectName("com.sun.management:type=DiagnosticCommand"), "vmNativeMemory",
            new Object[] {new String[] {"summary"}}, new String[] {String[].class.getName()});
        final Matcher o = OTHER.matcher(nmt);
        final Matcher t = TOTAL.matcher(nmt);
        return new long[] {count, bytes, o.find() ? Long.parseLong(o.group(2)) : -1,
            t.find() ? Long.parseLong(t.group(2)) : -1};
    }
}
