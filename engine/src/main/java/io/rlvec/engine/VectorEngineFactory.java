package io.rlvec.engine;

import java.lang.management.ManagementFactory;
import java.util.List;

import com.sun.management.HotSpotDiagnosticMXBean;

import io.rlvec.Engine;
import io.rlvec.EngineFactory;

/**
 * Provides {@link VectorEngine} when it can run fast and bit-exactly here (style.md P2, P5): the incubator
 * module is readable, C2 is the top tier (no -Xint, no TieredStopAtLevel below 4, no JVMCI compiler), HotSpot
 * uses FMA, and vectors hold at least four floats.
 */
public final class VectorEngineFactory implements EngineFactory {

    @Override
    public String name() {
        return "vector";
    }

    @Override
    public String refusal() {
        if (ModuleLayer.boot().findModule("jdk.incubator.vector").isEmpty()) {
            return "module jdk.incubator.vector is not readable (add --add-modules jdk.incubator.vector)";
        }
        final String vmInfo = System.getProperty("java.vm.info", "");
        if (vmInfo.contains("interpreted mode")) {
            return "the JVM runs interpreted (-Xint): the Vector API would be ~10^4 times slower";
        }
        final List<String> args = ManagementFactory.getRuntimeMXBean().getInputArguments();
        for (final String a : args) {
            if (a.startsWith("-XX:TieredStopAtLevel=") && !a.endsWith("=4")) {
                return "C2 is disabled (" + a + "): Vector API intrinsics need C2";
            }
            if (a.equals("-XX:+UseJVMCICompiler")) {
                return "a JVMCI compiler is in use: Vector API intrinsics need C2";
            }
        }
        final HotSpotDiagnosticMXBean hs = ManagementFactory.getPlatformMXBean(HotSpotDiagnosticMXBean.class);
        if (hs != null && !Boolean.parseBoolean(hs.getVMOption("UseFMA").getValue())) {
            return "HotSpot reports UseFMA=false: without FMA the canonical exp would be slow and change bits";
        }
        return VectorProbe.refusal();
    }

    @Override
    public Engine create(final int parallelism) {
        return new VectorEngine(parallelism);
    }

    /** Touches Vector API classes only after the module check passed. */
    private static final class VectorProbe {
        static String refusal() {
            return Vec.FL < 4 ? "vectors hold only " + Vec.FL + " floats" : null;
        }
    }
}
