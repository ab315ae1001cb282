package io.rlvec.jmh;

import java.io.IOException;
import java.io.InputStream;
import java.lang.management.ManagementFactory;
import java.net.URL;
import java.util.ArrayList;
import java.util.Enumeration;
import java.util.List;
import java.util.jar.Manifest;

/**
 * The JVM arguments every benchmark fork runs with, as compile-time constants so that
 * {@code @Fork(jvmArgsAppend = {...})} can name them (annotation values cannot be computed).
 *
 * <p>The first three are the launch flags of design.md ("Launch flags"), which the build keeps in exactly one
 * place: the parent pom property {@code rlvec.jvm.flags}. The constants below mirror that property; they are
 * written in the {@code --option=value} form because that is how the JVM reports its input arguments. A drift
 * between the two is caught at run time: the jmh pom copies the property into the benchmarks jar's manifest
 * ({@value #MANIFEST_ATTRIBUTE}) and {@link #verify()}, called from every benchmark's setup, compares it with
 * these constants and with the arguments the fork actually received.
 *
 * <p>The others are benchmark settings (style.md P13): a fixed heap ({@code -Xms} = {@code -Xmx}) touched up front,
 * so that no heap growth or first-touch page fault lands inside a measurement.
 *
 * <p>Use: {@code @Fork(value = 3, jvmArgsAppend = {LaunchFlags.ADD_MODULES, LaunchFlags.ADD_OPENS,
 * LaunchFlags.NATIVE_ACCESS, LaunchFlags.XMS, LaunchFlags.XMX, LaunchFlags.PRE_TOUCH})}. Note that a
 * {@code -jvmArgsAppend} given on the JMH command line replaces the annotation's list; pass extra flags with
 * {@code -jvmArgsPrepend} instead.
 */
public final class LaunchFlags {
    /** The incubating Vector API module (javac, surefire, forks and javadoc all need it; style.md P10). */
    public static final String ADD_MODULES = "--add-modules=jdk.incubator.vector";
    /** Agrona 2.x reads {@code jdk.internal.misc.Unsafe} (style.md P10). */
    public static final String ADD_OPENS = "--add-opens=java.base/jdk.internal.misc=ALL-UNNAMED";
    /** {@code MemorySegment.reinterpret} is a restricted method (style.md P8). */
    public static final String NATIVE_ACCESS = "--enable-native-access=ALL-UNNAMED";

    /**
     * Initial heap = maximum heap, so the heap never resizes during a run. 1 GiB is far above what the largest
     * benchmark state keeps on the heap (the expected answers: 1 MiB for a (64, 4096) gradient, 39 MiB for 64
     * vocabulary rows of 151 936 floats; token and logit data live off heap), and no larger because
     * {@link #PRE_TOUCH} costs start-up time per fork in proportion (measured here with the two cores shared
     * with other work: 12 to 15 s per fork at 2 GiB, 6 s at 1 GiB).
     */
    public static final String XMS = "-Xms1g";
    /** Maximum heap, equal to {@link #XMS}. */
    public static final String XMX = "-Xmx1g";
    /** Touches every heap page at start-up instead of on first allocation inside a measurement. */
    public static final String PRE_TOUCH = "-XX:+AlwaysPreTouch";

    /** Manifest attribute of the benchmarks jar holding the parent pom's {@code rlvec.jvm.flags}, verbatim. */
    public static final String MANIFEST_ATTRIBUTE = "RLVec-JVM-Flags";

    /** The launch flags, in the order of the pom property. */
    static final List<String> LAUNCH = List.of(ADD_MODULES, ADD_OPENS, NATIVE_ACCESS);

    private LaunchFlags() {
    }

    /**
     * Checks that these constants equal the pom property recorded in the manifest (when the benchmarks run from
     * the jar) and that the running JVM received every launch flag.
     *
     * @throws IllegalStateException naming the missing or drifted flag.
     */
    public static void verify() {
        final String fromPom = pomFlags();
        if (fromPom != null) {
            final List<String> expected = normalize(fromPom);
            if (!expected.equals(LAUNCH)) {
                throw new IllegalStateException("LaunchFlags " + LAUNCH + " drifted from the parent pom property "
                    + "rlvec.jvm.flags " + expected + ": update io.rlvec.jmh.LaunchFlags to match the pom");
            }
        }
        final List<String> args = ManagementFactory.getRuntimeMXBean().getInputArguments();
        for (final String flag : LAUNCH) {
            if (!args.contains(flag)) {
                throw new IllegalStateException("this benchmark JVM lacks the launch flag " + flag + " (its arguments: "
                    + args + "); a -jvmArgsAppend on the JMH command line replaces the @Fork list, use "
                    + "-jvmArgsPrepend for extra flags");
            }
        }
    }

    /**
     * Turns a flag string as written in the pom ({@code --opt value} or {@code --opt=value}) into the
     * {@code --opt=value} form the JVM reports.
     *
     * @param flags whitespace-separated flags.
     * @return one entry per flag.
     */
    static List<String> normalize(final String flags) {
        final String[] tokens = flags.trim().split("\\s+");
        final List<String> out = new ArrayList<>();
        for (int i = 0; i < tokens.length; i++) {
            final String t = tokens[i];
            if (t.isEmpty()) {
                continue;
            }
            if (t.startsWith("--") && !t.contains("=") && i + 1 < tokens.length && !tokens[i + 1].startsWith("-")) {
                out.add(t + "=" + tokens[i + 1]);
                i++;
            } else {
                out.add(t);
            }
        }
        return out;
    }

    /** @return the pom property from the benchmarks jar's manifest, or null when not running from that jar. */
    private static String pomFlags() {
        try {
            final Enumeration<URL> manifests = LaunchFlags.class.getClassLoader().getResources("META-INF/MANIFEST.MF");
            while (manifests.hasMoreElements()) {
                try (InputStream in = manifests.nextElement().openStream()) {
                    final String v = new Manifest(in).getMainAttributes().getValue(MANIFEST_ATTRIBUTE);
                    if (v != null) {
                        return v;
                    }
                }
            }
            return null;
        } catch (final IOException e) {
            throw new IllegalStateException("cannot read the benchmarks jar manifest", e);
        }
    }
}
