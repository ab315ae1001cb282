package io.rlvec.cli.io;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.SplittableRandom;

import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.CsvSource;
import org.junit.jupiter.params.provider.ValueSource;

import io.rlvec.Bf16;
import io.rlvec.ElementType;
import io.rlvec.OffHeapArray;

class SafetensorsTest {

    @TempDir
    Path dir;

    private static final long[] SCALAR = {};

    @ParameterizedTest(name = "seed {0}")
    @ValueSource(longs = {1, 2, 77, 123456789})
    void roundTripsEveryDtypeThroughTheWriter(final long seed) throws IOException {
        final SplittableRandom rng = new SplittableRandom(seed);
        final int n = 1 + rng.nextInt(40);
        final float[] f32 = new float[n];
        final double[] f64 = new double[n];
        final short[] bf16 = new short[n];
        final int[] i32 = new int[n];
        final long[] i64 = new long[n];
        final byte[] u8 = new byte[n];
        for (int i = 0; i < n; i++) {
            f32[i] = Float.intBitsToFloat(rng.nextInt());
            f64[i] = Double.longBitsToDouble(rng.nextLong());
            bf16[i] = (short) rng.nextInt(1 << 16);
            i32[i] = rng.nextInt();
            i64[i] = rng.nextInt();
            u8[i] = (byte) rng.nextInt(2);
        }
        final Path f = dir.resolve("rt-" + seed + ".safetensors");
        new SafetensorsWriter()
            .metadata("function", "f")
            .metadata("params", "{\"a\": 1}")
            .f32("a.f32", new long[] {n}, f32)
            .f64("b.f64", new long[] {1, n}, f64)
            .bf16("c.bf16", new long[] {n, 1}, bf16)
            .i32("d.i32", new long[] {n}, i32)
            .i64("e.i64", new long[] {n}, i64)
            .u8("f.u8", new long[] {n}, u8)
            .f32("g.scalar", SCALAR, 3.5f)
            .f32("h.empty", new long[] {0, 4})
            .write(f);
        try (Safetensors st = Safetensors.open(f)) {
            assertThat(st.metadata()).containsEntry("function", "f").containsEntry("params", "{\"a\": 1}");
            assertThat(st.names()).containsExactly("a.f32", "b.f64", "c.bf16", "d.i32", "e.i64", "f.u8", "g.scalar",
                "h.empty");
            final OffHeapArray a = st.view("a.f32");
            assertThat(a.isOwner()).as("seed %d: F32 must be a view", seed).isFalse();
            final OffHeapArray d = st.view("d.i32");
            final OffHeapArray c = st.view("c.bf16");
            assertThat(c.type()).isEqualTo(ElementType.BF16);
            for (int i = 0; i < n; i++) {
                assertThat(Float.floatToRawIntBits(a.getFloat(i))).as("seed %d f32[%d]", seed, i)
                    .isEqualTo(Float.floatToRawIntBits(f32[i]));
                assertThat(d.getInt(i)).as("seed %d i32[%d]", seed, i).isEqualTo(i32[i]);
                assertThat(Float.floatToRawIntBits(c.getFloat(i))).as("seed %d bf16[%d]", seed, i)
                    .isEqualTo(Float.floatToRawIntBits(Bf16.toFloat(bf16[i])));
            }
            final OffHeapArray b = st.float32("b.f64");
            final OffHeapArray e = st.int32("e.i64");
            final OffHeapArray m = st.float32("f.u8");
            final double[] exact = st.doubles("b.f64");
            for (int i = 0; i < n; i++) {
                final float expected = (float) f64[i];
                assertThat(Float.floatToIntBits(b.getFloat(i))).as("seed %d f64->f32[%d]", seed, i)
                    .isEqualTo(Float.floatToIntBits(expected));
                assertThat(Double.doubleToLongBits(exact[i])).as("seed %d doubles[%d]", seed, i)
                    .isEqualTo(Double.doubleToLongBits(f64[i]));
                assertThat(e.getInt(i)).isEqualTo((int) i64[i]);
                assertThat(m.getFloat(i)).isEqualTo(u8[i]);
            }
            assertThat(st.info("g.scalar").rank()).isZero();
            assertThat(st.info("g.scalar").elementCount()).isEqualTo(1);
            assertThat(st.float32("g.scalar").getFloat(0)).isEqualTo(3.5f);
            assertThat(st.info("h.empty").elementCount()).isZero();
            assertThat(st.view("h.empty").length()).isZero();
            assertThat(st.float32("a.f32")).as("F32 float32() is the view itself").isSameAs(a);
        }
    }

    @Test
    void viewsReadTheMappedFileWithoutCopyAndCloseWithIt() throws IOException {
        final Path f = dir.resolve("view.safetensors");
        final float[] v = {1f, -2.5f, Float.NaN, Float.MIN_VALUE, -0f, 1e30f, 7f};
        new SafetensorsWriter().u8("mask", new long[] {1}, (byte) 1).f32("x", new long[] {7}, v).write(f);
        final OffHeapArray view;
        try (Safetensors st = Safetensors.open(f)) {
            view = st.view("x");
            assertThat(view.address()).as("the view points into the mapping")
                .isEqualTo(st.bytes("x").address());
            assertThat(view.toFloatArray()).usingElementComparator(SafetensorsTest::bitCompare).containsExactly(v);
            assertThat(st.view("x")).as("cached").isSameAs(view);
        }
        assertThat(view.isClosed()).as("closing the file closes its views").isTrue();
        assertThatThrownBy(() -> view.getFloat(0)).isInstanceOf(IllegalStateException.class);
    }

    private static int bitCompare(final Float a, final Float b) {
        return Integer.compare(Float.floatToRawIntBits(a), Float.floatToRawIntBits(b));
    }

    @Test
    void conversionsAreCheckedAndExplained() throws IOException {
        final Path f = dir.resolve("conv.safetensors");
        new SafetensorsWriter()
            .i64("labels", new long[] {3}, 1, 2L + Integer.MAX_VALUE, 3)
            .f64("x", new long[] {2}, 0.1, 1e300)
            .write(f);
        try (Safetensors st = Safetensors.open(f)) {
            assertThatThrownBy(() -> st.int32("labels")).isInstanceOf(IllegalArgumentException.class)
                .hasMessageContaining("'labels' element 1 = 2147483649 does not fit in int32");
            assertThatThrownBy(() -> st.view("x")).isInstanceOf(IllegalArgumentException.class)
                .hasMessageContaining("'x' is F64").hasMessageContaining("float32()");
            assertThatThrownBy(() -> st.int32("x")).isInstanceOf(IllegalArgumentException.class)
                .hasMessageContaining("cannot be read as int32");
            assertThatThrownBy(() -> st.float32("labels")).isInstanceOf(IllegalArgumentException.class)
                .hasMessageContaining("cannot be read as float32");
            assertThatThrownBy(() -> st.info("nope")).isInstanceOf(IllegalArgumentException.class)
                .hasMessageContaining("no tensor 'nope'").hasMessageContaining("[labels, x]");
            final OffHeapArray x = st.float32("x");
            assertThat(x.getFloat(0)).isEqualTo(0.1f);
            assertThat(x.getFloat(1)).as("F64 beyond float range rounds to infinity").isEqualTo(Float.POSITIVE_INFINITY);
        }
    }

    /** Writes the 8-byte length, the header text and the data. */
    private Path raw(final String name, final long declared, final String header, final byte[] data)
        throws IOException {
        final Path f = dir.resolve(name + ".safetensors");
        SafetensorsWriter.writeRaw(f, declared, header, data);
        return f;
    }

    private Path raw(final String name, final String header, final int dataBytes) throws IOException {
        return raw(name, header.getBytes(java.nio.charset.StandardCharsets.UTF_8).length, header,
            new byte[dataBytes]);
    }

    @ParameterizedTest(name = "{0}")
    @CsvSource(delimiter = '|', quoteCharacter = '`', textBlock = """
        not-json       | {"a": [1, 2                                                           | 0 | not valid JSON
        array          | [1, 2]                                                                | 0 | JSON object starting with '{'
        trailing       | {} {}                                                                 | 0 | not valid JSON
        duplicate      | {"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}} | 4 | not valid JSON
        meta-nonstring | {"__metadata__":{"k":1}}                                              | 0 | __metadata__.k must be a string
        meta-array     | {"__metadata__":[1]}                                                  | 0 | __metadata__ must be an object
        entry-number   | {"a":3}                                                               | 0 | tensor 'a' must be an object
        no-dtype       | {"a":{"shape":[1],"data_offsets":[0,4]}}                              | 4 | tensor 'a' needs a string 'dtype'
        bad-dtype      | {"a":{"dtype":"F8_E4M3","shape":[1],"data_offsets":[0,1]}}            | 1 | dtype 'F8_E4M3', which this reader does not support
        no-shape       | {"a":{"dtype":"F32","data_offsets":[0,4]}}                            | 4 | needs an array 'shape'
        neg-shape      | {"a":{"dtype":"F32","shape":[-1],"data_offsets":[0,4]}}               | 4 | shape[0] must be an integer >= 0
        float-shape    | {"a":{"dtype":"F32","shape":[1.5],"data_offsets":[0,4]}}              | 4 | shape[0] must be an integer >= 0
        huge-shape     | {"a":{"dtype":"F32","shape":[4294967296,4294967296],"data_offsets":[0,4]}} | 4 | overflows 64 bits
        no-offsets     | {"a":{"dtype":"F32","shape":[1]}}                                     | 4 | needs 'data_offsets' = [begin, end]
        one-offset     | {"a":{"dtype":"F32","shape":[1],"data_offsets":[0]}}                  | 4 | needs 'data_offsets' = [begin, end]
        past-end       | {"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}                | 4 | lie outside the file: its data section holds 4 bytes
        far-past-end   | {"a":{"dtype":"F32","shape":[1],"data_offsets":[4611686018427387904,4611686018427387908]}} | 4 | lie outside the file
        reversed       | {"a":{"dtype":"F32","shape":[0],"data_offsets":[4,0]}}                | 4 | must satisfy 0 <= begin <= end
        size-mismatch  | {"a":{"dtype":"F32","shape":[2],"data_offsets":[0,4]}}                | 4 | needs 2 x 4 = 8 bytes, but data_offsets [0, 4) hold 4
        overlap        | {"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}} | 8 | overlap tensor 'a'
        gap            | {"a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}                | 8 | gap of 4 bytes in the data section before tensor 'a'
        trailing-data  | {"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}                | 6 | data section holds 6 bytes but the tensors cover 4
        """)
    void rejectsMalformedHeadersWithClearMessages(final String name, final String header, final int dataBytes,
                                                  final String message) throws IOException {
        final Path f = raw(name, header.strip(), dataBytes);
        assertThatThrownBy(() -> Safetensors.open(f)).isInstanceOf(SafetensorsFormatException.class)
            .hasMessageContaining(f.toString()).hasMessageContaining(message);
    }

    @Test
    void rejectsBadLengthsAndEncodings() throws IOException {
        final Path tiny = dir.resolve("tiny.safetensors");
        Files.write(tiny, new byte[] {1, 2, 3});
        assertThatThrownBy(() -> Safetensors.open(tiny)).isInstanceOf(SafetensorsFormatException.class)
            .hasMessageContaining("file has 3 bytes, fewer than the 8-byte header length");

        final Path tooLong = raw("too-long", 1000, "{}", new byte[0]);
        assertThatThrownBy(() -> Safetensors.open(tooLong)).isInstanceOf(SafetensorsFormatException.class)
            .hasMessageContaining("truncated: 10 bytes, the header needs 1008");

        final Path u64max = raw("u64max", -1L, "{}", new byte[0]);
        assertThatThrownBy(() -> Safetensors.open(u64max)).isInstanceOf(SafetensorsFormatException.class)
            .hasMessageContaining("header length 18446744073709551615 is over the 100000000-byte limit");

        final Path overLimit = raw("over-limit", Safetensors.MAX_HEADER_BYTES + 1, "{}", new byte[0]);
        assertThatThrownBy(() -> Safetensors.open(overLimit)).isInstanceOf(SafetensorsFormatException.class)
            .hasMessageContaining("100000001 is over the 100000000-byte limit");

        final Path zero = raw("zero", 0, "{}", new byte[0]);
        assertThatThrownBy(() -> Safetensors.open(zero)).isInstanceOf(SafetensorsFormatException.class)
            .hasMessageContaining("header length 0 is over the 100000000-byte limit (or under 2)");

        final Path text = dir.resolve("notes.txt");
        Files.writeString(text, "hello world, this is a text file\nwith two lines\n");
        assertThatThrownBy(() -> Safetensors.open(text)).isInstanceOf(SafetensorsFormatException.class)
            .hasMessageContaining("not a safetensors file").hasMessageContaining("\"hello world, thi\"");

        // Plausible length but a body that is not JSON: still "not a safetensors file", not offset arithmetic.
        final Path small = dir.resolve("small.bin");
        Files.write(small, new byte[] {(byte) 200, 0, 0, 0, 0, 0, 0, 0, 'x', 'y'});
        assertThatThrownBy(() -> Safetensors.open(small)).isInstanceOf(SafetensorsFormatException.class)
            .hasMessageContaining("not a safetensors file").hasMessageContaining("\\xc8");

        // A real file cut short inside its header, then inside its data.
        final Path whole = dir.resolve("whole.safetensors");
        new SafetensorsWriter().metadata("function", "f").f32("x", new long[] {4}, 1f, 2f, 3f, 4f).write(whole);
        final byte[] all = Files.readAllBytes(whole);
        final Path cutHeader = dir.resolve("cut-header.safetensors");
        Files.write(cutHeader, java.util.Arrays.copyOf(all, 20));
        assertThatThrownBy(() -> Safetensors.open(cutHeader)).isInstanceOf(SafetensorsFormatException.class)
            .hasMessageContaining("truncated: 20 bytes, the header needs " + (all.length - 16));
        final Path cutData = dir.resolve("cut-data.safetensors");
        Files.write(cutData, java.util.Arrays.copyOf(all, all.length - 6));
        assertThatThrownBy(() -> Safetensors.open(cutData)).isInstanceOf(SafetensorsFormatException.class)
            .hasMessageContaining("lie outside the file").hasMessageContaining("truncated");

        final Path utf = dir.resolve("utf.safetensors");
        final ByteBuffer b = ByteBuffer.allocate(8 + 4).order(ByteOrder.LITTLE_ENDIAN);
        b.putLong(4).put(new byte[] {'{', (byte) 0xC3, (byte) 0x28, '}'});
        Files.write(utf, b.array());
        assertThatThrownBy(() -> Safetensors.open(utf)).isInstanceOf(SafetensorsFormatException.class)
            .hasMessageContaining("not valid UTF-8");
    }

    @Test
    void readsF16AndBoolAndWrapsAlignedF32WithoutACopy() throws IOException {
        final Path f = dir.resolve("f16.safetensors");
        final float[] values = {0f, -0f, 1f, -2.5f, 65504f, 6.0e-8f, Float.POSITIVE_INFINITY, Float.NaN};
        final short[] bits = new short[values.length];
        for (int i = 0; i < bits.length; i++) {
            bits[i] = Float.floatToFloat16(values[i]);
        }
        new SafetensorsWriter().f16("h", new long[] {values.length}, bits)
            .bool("m", new long[] {2, 2}, true, false, false, true)
            .f32("x", new long[] {3}, 1f, 2f, 3f)
            .write(f);
        try (Safetensors st = Safetensors.open(f)) {
            assertThat(st.info("h").describe()).isEqualTo("F16[8]");
            assertThat(st.info("h").dtype().isFloatingPoint()).isTrue();
            final float[] back = st.float32("h").toFloatArray();
            for (int i = 0; i < values.length; i++) {
                assertThat(Float.floatToRawIntBits(back[i])).as("F16 element %d", i)
                    .isEqualTo(Float.floatToRawIntBits(Float.float16ToFloat(bits[i])));
                assertThat(Double.doubleToRawLongBits(st.doubles("h")[i]))
                    .isEqualTo(Double.doubleToRawLongBits(Float.float16ToFloat(bits[i])));
            }
            assertThat(Float.floatToRawIntBits(back[1])).as("negative zero kept").isEqualTo(0x80000000);
            assertThat(st.info("m").describe()).isEqualTo("BOOL[2, 2]");
            assertThat(st.float32("m").toFloatArray()).containsExactly(1f, 0f, 0f, 1f);
            assertThatThrownBy(() -> st.int32("h")).isInstanceOf(IllegalArgumentException.class)
                .hasMessageContaining("'h' is F16");
            // F32 comes out as a view over the mapped bytes: the same address as the file's data.
            assertThat(st.float32("x").segment().address()).isEqualTo(st.bytes("x").address());
            assertThat(st.float32("x").toFloatArray()).containsExactly(1f, 2f, 3f);
        }
    }

    @Test
    void acceptsSpacePaddedHeadersAndEmptyFiles() throws IOException {
        final Path f = raw("padded", 16, "{}              ", new byte[0]);
        try (Safetensors st = Safetensors.open(f)) {
            assertThat(st.names()).isEmpty();
            assertThat(st.metadata()).isEmpty();
        }
    }

    @Test
    void writerPadsTheHeaderToEightBytes() throws IOException {
        final Path f = dir.resolve("pad.safetensors");
        new SafetensorsWriter().f32("x", new long[] {1}, 1f).write(f);
        final byte[] all = Files.readAllBytes(f);
        final long len = ByteBuffer.wrap(all, 0, 8).order(ByteOrder.LITTLE_ENDIAN).getLong();
        assertThat(len % 8).isZero();
        assertThat(all.length).isEqualTo(8 + len + 4);
    }

    @Test
    void writerCopiesOffHeapArrays() throws IOException {
        final Path f = dir.resolve("arr.safetensors");
        try (OffHeapArray a = OffHeapArray.of(1f, 2f, 3f, 4f, 5f, 6f)) {
            new SafetensorsWriter().array("a", new long[] {2, 3}, a).write(f);
        }
        try (Safetensors st = Safetensors.open(f)) {
            assertThat(st.info("a").describe()).isEqualTo("F32[2, 3]");
            assertThat(st.view("a").toFloatArray()).containsExactly(1f, 2f, 3f, 4f, 5f, 6f);
        }
        assertThatThrownBy(() -> new SafetensorsWriter().f32("x", new long[] {2}, 1f))
            .isInstanceOf(IllegalArgumentException.class).hasMessageContaining("needs 8 bytes, got 4");
    }
}
