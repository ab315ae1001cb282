package io.rlvec.engine.safety;

import static org.assertj.core.api.Assertions.assertThat;

import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.Test;

/**
 * Memory freed before or during an engine call never crashes the JVM: {@link ClosedMemoryProbe} runs in a child
 * JVM, so that a SIGSEGV (what wrapped memory whose arena was closed gave before: exit 134 in
 * FloatVector.memorySegmentGet) fails this test instead of killing the build.
 */
class ClosedMemoryTest {
    @Test
    void freedMemoryIsRefusedNeverRead() throws IOException, InterruptedException {
        final List<String> cmd = new ArrayList<>();
        cmd.add(ProcessHandle.current().info().command().orElse("java"));
        cmd.add("--add-modules");
        cmd.add("jdk.incubator.vector");
        cmd.add("--enable-native-access=ALL-UNNAMED");
        cmd.add("-cp");
        cmd.add(System.getProperty("java.class.path"));
        cmd.add(ClosedMemoryProbe.class.getName());
        final Process p = new ProcessBuilder(cmd).redirectErrorStream(true).start();
        final String out = new String(p.getInputStream().readAllBytes(), StandardCharsets.UTF_8);
        assertThat(p.waitFor(120, TimeUnit.SECONDS)).isTrue();
        assertThat(p.exitValue()).as("child JVM output:%n%s", out).isZero();
        assertThat(out).contains("OK");
    }
}
