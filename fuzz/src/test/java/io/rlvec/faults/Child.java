package io.rlvec.faults;

import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Paths;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.TimeUnit;

/**
 * Runs a main class in a forked JVM with the test class path and the project's launch flags, so that a crash (a
 * SIGSEGV from a read of freed memory, an abort) fails the test that asked for it instead of killing the build.
 */
final class Child {
    /** What a child did: its exit code and everything it printed. */
    record Result(int exitCode, String output) {
        /** @return the value printed on a line {@code key=value}, or null. */
        String value(final String key) {
            for (final String line : output.split("\n")) {
                if (line.startsWith(key + "=")) {
                    return line.substring(key.length() + 1).trim();
                }
            }
            return null;
        }
    }

    private Child() {
    }

    static Result run(final Class<?> main, final List<String> jvmArgs, final String... args) {
        final List<String> cmd = new ArrayList<>();
        cmd.add(Paths.get(System.getProperty("java.home"), "bin", "java").toString());
        cmd.addAll(List.of("--add-modules", "jdk.incubator.vector", "--enable-native-access=ALL-UNNAMED",
            "-Xmx512m", "-XX:+UseParallelGC", "-XX:-CreateCoredumpOnCrash", "-XX:ErrorFile=/dev/null"));
        cmd.addAll(jvmArgs);
        cmd.add("-cp");
        cmd.add(System.getProperty("java.class.path"));
        cmd.add(main.getName());
        cmd.addAll(List.of(args));
        try {
            final Process p = new ProcessBuilder(cmd).redirectErrorStream(true).start();
            final byte[] out = p.getInputStream().readAllBytes();
            if (!p.waitFor(10, TimeUnit.MINUTES)) {
                p.destroyForcibly();
                throw new AssertionError("child " + main.getSimpleName() + " did not finish");
            }
            return new Result(p.exitValue(), new String(out, StandardCharsets.UTF_8));
        } catch (final IOException e) {
            throw new AssertionError("cannot start a child JVM", e);
        } catch (final InterruptedException e) {
            Thread.currentThread().interrupt();
            throw new AssertionError(e);
        }
    }
}
