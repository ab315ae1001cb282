package io.rlvec.cli.golden;

import static org.assertj.core.api.Assertions.assertThat;

import java.io.IOException;
import java.lang.foreign.ValueLayout;
import java.net.URISyntaxException;
import java.nio.file.Path;
import java.util.Arrays;
import java.util.List;
import java.util.Map;
import java.util.function.Consumer;
import java.util.function.UnaryOperator;

import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.io.TempDir;

import io.rlvec.Engine;
import io.rlvec.Engines;
import io.rlvec.cli.io.Safetensors;
import io.rlvec.cli.io.SafetensorsWriter;
import io.rlvec.cli.io.TensorInfo;

/**
 * What the mutation tests of the derived-bound verdicts share: the preferred engine and the reference, a runner
 * whose handlers may mutate every engine's outputs before they are judged, copies of a case with other params or
 * one element zeroed (a dropped token), and a value moved by a number of ulps.
 */
abstract class MutatedEngineTest {
    static Engine vector;
    static Engine reference;

    @TempDir
    static Path dir;

    @BeforeAll
    static void engines() {
        vector = Engines.preferred();
        reference = Engines.reference();
    }

    @AfterAll
    static void close() throws Exception {
        if (vector instanceof AutoCloseable c) {
            c.close();
        }
    }

    /** @return a test resource by its absolute name. */
    static Path resource(final String name) {
        try {
            return Path.of(MutatedEngineTest.class.getResource(name).toURI());
        } catch (final URISyntaxException e) {
            throw new IllegalStateException(e);
        }
    }

    /** Runs a case on both engines, {@code mutation} applied to every engine's outputs (null: none). */
    static CaseReport run(final Path f, final Consumer<CaseOutputs> mutation) {
        final CaseHandlers handlers = new CaseHandlers();
        for (final Map.Entry<String, CaseHandler> e : CaseHandlers.defaults().all().entrySet()) {
            final CaseHandler real = e.getValue();
            handlers.register(e.getKey(), mutation == null ? real : (golden, engine) -> {
                final CaseOutputs o = real.run(golden, engine);
                mutation.accept(o);
                return o;
            });
        }
        return new GoldenRunner(handlers, List.of(vector, reference)).run(f);
    }

    /** @return the report of one output on one engine (0: the preferred engine). */
    static TensorReport tensor(final CaseReport r, final int engine, final String name) {
        return r.runs().get(engine).tensors().stream().filter(t -> t.name().equals(name)).findFirst().orElseThrow();
    }

    /** @return the preferred engine's outputs on a case. */
    static CaseOutputs outputs(final Path f) throws IOException {
        try (GoldenCase g = GoldenCase.open(f)) {
            return CaseHandlers.defaults().find(g.file().metadata().get(GoldenCase.FUNCTION)).run(g, vector);
        }
    }

    /**
     * Runs verl's case unmutated on both engines, which must PASS or DEVIATE.
     *
     * @return the preferred engine's outputs, or null for an expect_error case (refused like verl: a PASS).
     */
    static CaseOutputs passingOutputs(final Path f) throws IOException {
        final CaseReport r = run(f, null);
        assertThat(r.verdict()).as(f + ": " + r).isIn(Verdict.PASS, Verdict.DEVIATION);
        try {
            return outputs(f);
        } catch (final IllegalArgumentException expected) {
            return null;
        }
    }

    /** Runs a case with every engine output replaced by {@code other}'s (an engine run on another case). */
    static CaseReport withOutputsOf(final Path f, final CaseOutputs other) {
        return run(f, o -> o.all().forEach((name, out) -> System.arraycopy(other.get(name).values(), 0, out.values(),
            0, out.values().length)));
    }

    /**
     * A copy of a case with its params rewritten and, where {@code zeroIn} is not null, element {@code index} of
     * that tensor set to 0 (a token dropped from the mask).
     */
    static Path copy(final Path src, final String name, final UnaryOperator<String> params, final String zeroIn,
                     final int index) throws IOException {
        final Path f = dir.resolve(name);
        try (Safetensors st = Safetensors.open(src)) {
            final SafetensorsWriter w = new SafetensorsWriter();
            st.metadata().forEach((k, v) -> w.metadata(k, k.equals(GoldenCase.PARAMS) ? params.apply(v) : v));
            for (final String t : st.names()) {
                final TensorInfo info = st.info(t);
                final byte[] bytes = st.bytes(t).toArray(ValueLayout.JAVA_BYTE);
                if (t.equals(zeroIn)) {
                    final int size = info.dtype().bytes();
                    Arrays.fill(bytes, index * size, (index + 1) * size, (byte) 0);
                }
                w.raw(t, info.dtype(), info.shape(), bytes);
            }
            w.write(f);
        }
        return f;
    }

    /**
     * A copy of a case with one token dropped from its mask ({@code in.response_mask}): the first whose element of
     * {@code by} is nonzero (the mask itself: the first valid token; a gradient: the first token the loss reads).
     */
    static Path dropped(final Path src, final String by) throws IOException {
        final String mask = "in.response_mask";
        return copy(src, "dropped_" + src.getFileName(), p -> p, mask, firstNonZero(src, by));
    }

    /** @return the index of the first nonzero element of a tensor of the case. */
    static int firstNonZero(final Path f, final String tensor) throws IOException {
        try (GoldenCase g = GoldenCase.open(f)) {
            final float[] x = g.float32(tensor).toFloatArray();
            int k = 0;
            while (x[k] == 0) {
                k++;
            }
            return k;
        }
    }

    /** @return x moved up by n ulps. */
    static float ulps(final float x, final int n) {
        float y = x;
        for (int i = 0; i < n; i++) {
            y = Math.nextUp(y);
        }
        return y;
    }

    /** @return a mutation negating every element of an output. */
    static Consumer<CaseOutputs> negate(final String output) {
        return o -> {
            final float[] g = o.get(output).values();
            for (int i = 0; i < g.length; i++) {
                g[i] = -g[i];
            }
        };
    }
}
