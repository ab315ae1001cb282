package io.rlvec.cli.io;

import java.io.IOException;
import java.io.OutputStream;
import java.lang.foreign.ValueLayout;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.LinkedHashMap;
import java.util.Map;
import java.util.Objects;

import com.fasterxml.jackson.core.JsonProcessingException;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.ObjectNode;

import io.rlvec.OffHeapArray;

/**
 * Writes safetensors files: tensors in insertion order, back to back, header padded with spaces to a multiple of
 * 8 bytes (as the reference implementation does). Collects everything in memory, then {@link #write} once.
 */
public final class SafetensorsWriter {
    private static final ObjectMapper JSON = new ObjectMapper();
    /** Header alignment in bytes. */
    private static final int HEADER_ALIGN = 8;

    private final Map<String, String> metadata = new LinkedHashMap<>();
    private final Map<String, Entry> tensors = new LinkedHashMap<>();

    private record Entry(Dtype dtype, long[] shape, byte[] bytes) {
    }

    /** Adds (or replaces) a {@code __metadata__} string. */
    public SafetensorsWriter metadata(final String key, final String value) {
        metadata.put(Objects.requireNonNull(key, "key"), Objects.requireNonNull(value, "value"));
        return this;
    }

    /**
     * Adds a tensor from raw little-endian bytes.
     *
     * @throws IllegalArgumentException when the byte count does not match the shape.
     */
    public SafetensorsWriter raw(final String name, final Dtype dtype, final long[] shape, final byte[] bytes) {
        Objects.requireNonNull(name, "name");
        Objects.requireNonNull(dtype, "dtype");
        if (Safetensors.METADATA_KEY.equals(name)) {
            throw new IllegalArgumentException("'" + Safetensors.METADATA_KEY + "' is reserved for metadata");
        }
        long n = 1;
        for (final long d : shape) {
            if (d < 0) {
                throw new IllegalArgumentException("shape of '" + name + "' has a negative dimension " + d);
            }
            n = Math.multiplyExact(n, d);
        }
        if (n * dtype.bytes() != bytes.length) {
            throw new IllegalArgumentException("'" + name + "' " + dtype.fileName() + " shape needs " + n * dtype.bytes()
                + " bytes, got " + bytes.length);
        }
        tensors.put(name, new Entry(dtype, shape.clone(), bytes.clone()));
        return this;
    }

    /** Adds a float32 tensor. */
    public SafetensorsWriter f32(final String name, final long[] shape, final float... values) {
        final ByteBuffer b = le(values.length * 4);
        for (final float v : values) {
            b.putFloat(v);
        }
        return raw(name, Dtype.F32, shape, b.array());
    }

    /** Adds a float64 tensor. */
    public SafetensorsWriter f64(final String name, final long[] shape, final double... values) {
        final ByteBuffer b = le(values.length * 8);
        for (final double v : values) {
            b.putDouble(v);
        }
        return raw(name, Dtype.F64, shape, b.array());
    }

    /** Adds a bf16 tensor given as raw 16-bit patterns. */
    public SafetensorsWriter bf16(final String name, final long[] shape, final short... bits) {
        final ByteBuffer b = le(bits.length * 2);
        for (final short v : bits) {
            b.putShort(v);
        }
        return raw(name, Dtype.BF16, shape, b.array());
    }

    /** Adds an int32 tensor. */
    public SafetensorsWriter i32(final String name, final long[] shape, final int... values) {
        final ByteBuffer b = le(values.length * 4);
        for (final int v : values) {
            b.putInt(v);
        }
        return raw(name, Dtype.I32, shape, b.array());
    }

    /** Adds an int64 tensor. */
    public SafetensorsWriter i64(final String name, final long[] shape, final long... values) {
        final ByteBuffer b = le(values.length * 8);
        for (final long v : values) {
            b.putLong(v);
        }
        return raw(name, Dtype.I64, shape, b.array());
    }

    /** Adds a uint8 tensor (masks). */
    public SafetensorsWriter u8(final String name, final long[] shape, final byte... values) {
        return raw(name, Dtype.U8, shape, values);
    }

    /** Adds an F16 tensor from raw binary16 bit patterns (see {@link Float#floatToFloat16}). */
    public SafetensorsWriter f16(final String name, final long[] shape, final short... bits) {
        final ByteBuffer b = le(bits.length * 2);
        for (final short v : bits) {
            b.putShort(v);
        }
        return raw(name, Dtype.F16, shape, b.array());
    }

    /** Adds a BOOL tensor (one byte per element, 0 or 1). */
    public SafetensorsWriter bool(final String name, final long[] shape, final boolean... values) {
        final byte[] b = new byte[values.length];
        for (int i = 0; i < values.length; i++) {
            b[i] = (byte) (values[i] ? 1 : 0);
        }
        return raw(name, Dtype.BOOL, shape, b);
    }

    /** Adds a tensor holding a copy of an off-heap array (F32, BF16, I32 or I64). */
    public SafetensorsWriter array(final String name, final long[] shape, final OffHeapArray a) {
        Objects.requireNonNull(a, "array");
        final Dtype dtype = switch (a.type()) {
            case F32 -> Dtype.F32;
            case BF16 -> Dtype.BF16;
            case I32 -> Dtype.I32;
            case I64 -> Dtype.I64;
        };
        final long bytes = a.byteSize();
        if (bytes > Integer.MAX_VALUE - 8) {
            throw new IllegalArgumentException("'" + name + "' is " + bytes + " bytes, too large for this writer");
        }
        return raw(name, dtype, shape, a.segment().asSlice(0, bytes).toArray(ValueLayout.JAVA_BYTE));
    }

    /** @return the JSON header, unpadded. */
    public String headerJson() {
        final ObjectNode root = JSON.createObjectNode();
        if (!metadata.isEmpty()) {
            final ObjectNode m = root.putObject(Safetensors.METADATA_KEY);
            metadata.forEach(m::put);
        }
        long offset = 0;
        for (final Map.Entry<String, Entry> e : tensors.entrySet()) {
            final ObjectNode t = root.putObject(e.getKey());
            t.put("dtype", e.getValue().dtype().fileName());
            final ArrayNode shape = t.putArray("shape");
            for (final long d : e.getValue().shape()) {
                shape.add(d);
            }
            final ArrayNode off = t.putArray("data_offsets");
            off.add(offset);
            offset += e.getValue().bytes().length;
            off.add(offset);
        }
        try {
            return JSON.writeValueAsString(root);
        } catch (final JsonProcessingException e) {
            throw new IllegalStateException("cannot serialise the header", e);
        }
    }

    /** Writes the file (replacing it). */
    public void write(final Path file) throws IOException {
        final byte[] header = headerJson().getBytes(StandardCharsets.UTF_8);
        final int padded = (header.length + HEADER_ALIGN - 1) / HEADER_ALIGN * HEADER_ALIGN;
        final byte[] headerPadded = new byte[padded];
        java.util.Arrays.fill(headerPadded, (byte) ' ');
        System.arraycopy(header, 0, headerPadded, 0, header.length);
        try (OutputStream out = Files.newOutputStream(file)) {
            out.write(le(8).putLong(padded).array());
            out.write(headerPadded);
            for (final Entry e : tensors.values()) {
                out.write(e.bytes());
            }
        }
    }

    /**
     * Writes a file from a given header text and data section, without any check: for crafting edge cases and
     * malformed files in tests.
     *
     * @param declaredHeaderLength the value of the leading u64 (normally the header's byte length).
     */
    public static void writeRaw(final Path file, final long declaredHeaderLength, final String header,
                                final byte[] data) throws IOException {
        try (OutputStream out = Files.newOutputStream(file)) {
            out.write(le(8).putLong(declaredHeaderLength).array());
            out.write(header.getBytes(StandardCharsets.UTF_8));
            out.write(data);
        }
    }

    private static ByteBuffer le(final int bytes) {
        return ByteBuffer.allocate(bytes).order(ByteOrder.LITTLE_ENDIAN);
    }
}
