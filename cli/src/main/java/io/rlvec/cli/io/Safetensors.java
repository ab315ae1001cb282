package io.rlvec.cli.io;

import java.io.IOException;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.ByteOrder;
import java.nio.channels.FileChannel;
import java.nio.charset.CharacterCodingException;
import java.nio.charset.CodingErrorAction;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.util.ArrayList;
import java.util.Collections;
import java.util.Comparator;
import java.util.HashMap;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

import com.fasterxml.jackson.core.JsonParser;
import com.fasterxml.jackson.core.JsonProcessingException;
import com.fasterxml.jackson.databind.DeserializationFeature;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.json.JsonMapper;

import io.rlvec.ElementType;
import io.rlvec.OffHeapArray;

/**
 * A safetensors file, memory-mapped and validated once on {@link #open}.
 *
 * <p>Format: an unsigned 64-bit little-endian header length {@code N}, {@code N} bytes of UTF-8 JSON (an object
 * mapping tensor names to {@code {"dtype", "shape", "data_offsets"}}, plus an optional {@code __metadata__}
 * object of strings), then the data section, where each tensor's little-endian bytes sit at
 * {@code [begin, end)} relative to its start. Every offset, size and dtype is checked before any data is read:
 * offsets must lie inside the file, tensors must tile the data section without overlap or gap, and each byte
 * range must equal the shape's element count times the dtype size.
 *
 * <p>Tensors come out as {@link OffHeapArray}s. Where the dtype is one the engine reads (F32, BF16, I32) the array
 * is a view over the mapped bytes, without a copy. Otherwise it is converted once into an owned array:
 * F64 to F32 (rounded to nearest), F16 to F32 (exactly), U8/BOOL to F32 (0/1 masks), I64 to I32 (with a range check). Every array
 * handed out is closed, and the mapping released, by {@link #close()}: the arrays must not be used after it.
 * Not thread-safe for concurrent {@code open}/{@code close}; reading views from several threads is fine.
 */
public final class Safetensors implements AutoCloseable {
    /** Largest header accepted (the bound the reference implementation uses): 100 MB. */
    public static final long MAX_HEADER_BYTES = 100_000_000L;
    /** Name of the optional metadata entry. */
    public static final String METADATA_KEY = "__metadata__";

    private static final ObjectMapper JSON = JsonMapper.builder()
        .enable(JsonParser.Feature.STRICT_DUPLICATE_DETECTION)
        .enable(DeserializationFeature.FAIL_ON_TRAILING_TOKENS)
        .build();
    /** u64 header length and I64 elements: both little-endian 64-bit integers. */
    private static final ValueLayout.OfLong I64 = ValueLayout.JAVA_LONG_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);
    private static final ValueLayout.OfDouble F64 = ValueLayout.JAVA_DOUBLE_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);
    private static final ValueLayout.OfFloat F32 = ValueLayout.JAVA_FLOAT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);
    private static final ValueLayout.OfInt I32 = ValueLayout.JAVA_INT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);
    private static final ValueLayout.OfShort I16 = ValueLayout.JAVA_SHORT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);

    private final Path path;
    private final Arena arena;
    private final MemorySegment data;
    private final Map<String, String> metadata;
    private final Map<String, TensorInfo> tensors;
    private final Map<String, OffHeapArray> float32Cache = new HashMap<>();
    private final Map<String, OffHeapArray> int32Cache = new HashMap<>();
    private final Map<String, OffHeapArray> viewCache = new HashMap<>();
    private boolean closed;

    private Safetensors(final Path path, final Arena arena, final MemorySegment data,
                        final Map<String, String> metadata, final Map<String, TensorInfo> tensors) {
        this.path = path;
        this.arena = arena;
        this.data = data;
        this.metadata = metadata;
        this.tensors = tensors;
    }

    /**
     * Maps and validates a file.
     *
     * @param file the file.
     * @return the open file (close it to unmap).
     * @throws SafetensorsFormatException when the file is not valid safetensors, saying what is wrong.
     * @throws IOException                when it cannot be read.
     */
    public static Safetensors open(final Path file) throws IOException {
        final Arena arena = Arena.ofShared();
        try {
            final MemorySegment whole;
            try (FileChannel ch = FileChannel.open(file, StandardOpenOption.READ)) {
                final long size = ch.size();
                if (size < Long.BYTES) {
                    throw new SafetensorsFormatException(file, "file has " + size
                        + " bytes, fewer than the 8-byte header length that starts a safetensors file");
                }
                whole = ch.map(FileChannel.MapMode.READ_ONLY, 0, size, arena);
            }
            final long size = whole.byteSize();
            final long headerLen = whole.get(I64, 0);
            checkHeaderLength(file, whole, size, headerLen);
            final byte[] headerBytes = whole.asSlice(Long.BYTES, headerLen).toArray(ValueLayout.JAVA_BYTE);
            final String headerText = decodeUtf8(file, headerBytes);
            final MemorySegment data = whole.asSlice(Long.BYTES + headerLen);
            final JsonNode root = parseHeader(file, headerText);
            final Map<String, String> metadata = readMetadata(file, root);
            final Map<String, TensorInfo> tensors = readTensors(file, root, data.byteSize());
            return new Safetensors(file, arena, data, metadata, tensors);
        } catch (final IOException | RuntimeException e) {
            arena.close();
            throw e;
        }
    }

    /**
     * Says what is wrong with a leading u64 that cannot be a header length, in the terms a user needs: a file that
     * does not start like a safetensors file at all (a text file, another format), a header over the sane size, or
     * a file cut short before its header ends.
     */
    private static void checkHeaderLength(final Path file, final MemorySegment whole, final long size,
                                          final long headerLen) throws SafetensorsFormatException {
        final boolean startsLikeHeader = size > Long.BYTES && whole.get(ValueLayout.JAVA_BYTE, Long.BYTES) == '{';
        if (headerLen < 2 || Long.compareUnsigned(headerLen, MAX_HEADER_BYTES) > 0) {
            if (!startsLikeHeader) {
                throw new SafetensorsFormatException(file, "not a safetensors file: it must start with an 8-byte "
                    + "little-endian header length followed by a JSON header '{...', but starts with "
                    + printable(whole, Math.min(size, 16)));
            }
            throw new SafetensorsFormatException(file, "header length " + Long.toUnsignedString(headerLen)
                + " is over the " + MAX_HEADER_BYTES + "-byte limit (or under 2): refused before reading it");
        }
        if (headerLen > size - Long.BYTES) {
            if (!startsLikeHeader) {
                throw new SafetensorsFormatException(file, "not a safetensors file: the header length "
                    + headerLen + " is not followed by a JSON header '{...'; the file starts with "
                    + printable(whole, Math.min(size, 16)));
            }
            throw new SafetensorsFormatException(file, "truncated: " + size + " bytes, the header needs "
                + (Long.BYTES + headerLen));
        }
    }

    private static String printable(final MemorySegment s, final long n) {
        final StringBuilder sb = new StringBuilder("\"");
        for (long i = 0; i < n; i++) {
            final int b = s.get(ValueLayout.JAVA_BYTE, i) & 0xFF;
            sb.append(b >= 0x20 && b < 0x7F ? String.valueOf((char) b) : String.format("\\x%02x", b));
        }
        return sb.append('"').toString();
    }

    private static String decodeUtf8(final Path file, final byte[] bytes) throws SafetensorsFormatException {
        try {
            return StandardCharsets.UTF_8.newDecoder()
                .onMalformedInput(CodingErrorAction.REPORT)
                .onUnmappableCharacter(CodingErrorAction.REPORT)
                .decode(java.nio.ByteBuffer.wrap(bytes)).toString();
        } catch (final CharacterCodingException e) {
            throw new SafetensorsFormatException(file, "header is not valid UTF-8", e);
        }
    }

    private static JsonNode parseHeader(final Path file, final String text) throws SafetensorsFormatException {
        if (!text.startsWith("{")) {
            throw new SafetensorsFormatException(file, "header must be a JSON object starting with '{', starts with "
                + quote(text.substring(0, Math.min(16, text.length()))));
        }
        final JsonNode root;
        try {
            root = JSON.readTree(text);
        } catch (final JsonProcessingException e) {
            throw new SafetensorsFormatException(file, "header is not valid JSON: " + e.getOriginalMessage(), e);
        }
        if (root == null || !root.isObject()) {
            throw new SafetensorsFormatException(file, "header must be a JSON object");
        }
        return root;
    }

    private static Map<String, String> readMetadata(final Path file, final JsonNode root)
        throws SafetensorsFormatException {
        final JsonNode meta = root.get(METADATA_KEY);
        if (meta == null || meta.isNull()) {
            return Map.of();
        }
        if (!meta.isObject()) {
            throw new SafetensorsFormatException(file, METADATA_KEY + " must be an object of strings, got "
                + meta.getNodeType());
        }
        final Map<String, String> out = new LinkedHashMap<>();
        for (final Map.Entry<String, JsonNode> e : meta.properties()) {
            if (!e.getValue().isTextual()) {
                throw new SafetensorsFormatException(file, METADATA_KEY + "." + e.getKey()
                    + " must be a string, got " + e.getValue().getNodeType());
            }
            out.put(e.getKey(), e.getValue().textValue());
        }
        return Collections.unmodifiableMap(out);
    }

    private static Map<String, TensorInfo> readTensors(final Path file, final JsonNode root, final long dataSize)
        throws SafetensorsFormatException {
        final List<TensorInfo> list = new ArrayList<>();
        for (final Map.Entry<String, JsonNode> e : root.properties()) {
            if (!METADATA_KEY.equals(e.getKey())) {
                list.add(readTensor(file, e.getKey(), e.getValue(), dataSize));
            }
        }
        // The tensors must tile the data section: sorted by offset, each starts where the previous ended.
        final List<TensorInfo> sorted = new ArrayList<>(list);
        sorted.sort(Comparator.comparingLong(TensorInfo::begin).thenComparingLong(TensorInfo::end));
        long expectedBegin = 0;
        TensorInfo previous = null;
        for (final TensorInfo t : sorted) {
            if (t.begin() < expectedBegin) {
                throw new SafetensorsFormatException(file, "tensor " + quote(t.name()) + " data_offsets ["
                    + t.begin() + ", " + t.end() + ") overlap tensor " + quote(previous.name()) + " ["
                    + previous.begin() + ", " + previous.end() + ")");
            }
            if (t.begin() > expectedBegin) {
                throw new SafetensorsFormatException(file, "gap of " + (t.begin() - expectedBegin)
                    + " bytes in the data section before tensor " + quote(t.name()) + " (data_offsets start at "
                    + t.begin() + ", previous data ends at " + expectedBegin + ")");
            }
            expectedBegin = t.end();
            previous = t;
        }
        if (expectedBegin != dataSize) {
            throw new SafetensorsFormatException(file, "data section holds " + dataSize + " bytes but the tensors "
                + "cover " + expectedBegin + " (the file is truncated or has trailing bytes)");
        }
        final Map<String, TensorInfo> out = new LinkedHashMap<>();
        for (final TensorInfo t : list) {
            out.put(t.name(), t);
        }
        return Collections.unmodifiableMap(out);
    }

    private static TensorInfo readTensor(final Path file, final String name, final JsonNode node, final long dataSize)
        throws SafetensorsFormatException {
        final String where = "tensor " + quote(name);
        if (!node.isObject()) {
            throw new SafetensorsFormatException(file, where + " must be an object with dtype, shape and "
                + "data_offsets, got " + node.getNodeType());
        }
        final JsonNode dtypeNode = node.get("dtype");
        if (dtypeNode == null || !dtypeNode.isTextual()) {
            throw new SafetensorsFormatException(file, where + " needs a string 'dtype'");
        }
        final Dtype dtype = Dtype.fromFileName(dtypeNode.textValue());
        if (dtype == null) {
            throw new SafetensorsFormatException(file, where + " has dtype " + quote(dtypeNode.textValue())
                + ", which this reader does not support (supported: " + Dtype.supportedNames() + ")");
        }
        final JsonNode shapeNode = node.get("shape");
        if (shapeNode == null || !shapeNode.isArray()) {
            throw new SafetensorsFormatException(file, where + " needs an array 'shape' ([] for a scalar)");
        }
        final long[] shape = new long[shapeNode.size()];
        long count = 1;
        for (int i = 0; i < shape.length; i++) {
            final JsonNode d = shapeNode.get(i);
            if (!d.isIntegralNumber() || !d.canConvertToLong() || d.longValue() < 0) {
                throw new SafetensorsFormatException(file, where + " shape[" + i + "] must be an integer >= 0, got "
                    + d);
            }
            shape[i] = d.longValue();
            try {
                count = Math.multiplyExact(count, shape[i]);
            } catch (final ArithmeticException overflow) {
                throw new SafetensorsFormatException(file, where + " shape " + shapeNode + " overflows 64 bits");
            }
        }
        final JsonNode offsets = node.get("data_offsets");
        if (offsets == null || !offsets.isArray() || offsets.size() != 2
            || !offsets.get(0).isIntegralNumber() || !offsets.get(1).isIntegralNumber()
            || !offsets.get(0).canConvertToLong() || !offsets.get(1).canConvertToLong()) {
            throw new SafetensorsFormatException(file, where + " needs 'data_offsets' = [begin, end] (two integers),"
                + " got " + offsets);
        }
        final long begin = offsets.get(0).longValue();
        final long end = offsets.get(1).longValue();
        if (begin < 0 || end < begin) {
            throw new SafetensorsFormatException(file, where + " data_offsets [" + begin + ", " + end + ") must satisfy "
                + "0 <= begin <= end");
        }
        if (end > dataSize) {
            throw new SafetensorsFormatException(file, where + " data_offsets [" + begin + ", " + end + ") lie outside "
                + "the file: its data section holds " + dataSize + " bytes (truncated: the file needs at least "
                + end + " data bytes)");
        }
        final long expectedBytes;
        try {
            expectedBytes = Math.multiplyExact(count, (long) dtype.bytes());
        } catch (final ArithmeticException overflow) {
            throw new SafetensorsFormatException(file, where + " byte size overflows 64 bits");
        }
        if (end - begin != expectedBytes) {
            throw new SafetensorsFormatException(file, where + " " + dtype.fileName() + shapeNode + " needs "
                + count + " x " + dtype.bytes() + " = " + expectedBytes + " bytes, but data_offsets [" + begin + ", "
                + end + ") hold " + (end - begin));
        }
        return new TensorInfo(name, dtype, shape, begin, end);
    }

    private static String quote(final String s) {
        return "'" + s + "'";
    }

    /** @return the file this was read from. */
    public Path path() {
        return path;
    }

    /** @return the {@code __metadata__} strings (empty when absent), in file order. */
    public Map<String, String> metadata() {
        return metadata;
    }

    /** @return tensor names in header order. */
    public List<String> names() {
        return List.copyOf(tensors.keySet());
    }

    /** @return whether the file holds a tensor of this name. */
    public boolean has(final String name) {
        return tensors.containsKey(name);
    }

    /**
     * @param name a tensor name.
     * @return its header entry.
     * @throws IllegalArgumentException when the file has no such tensor.
     */
    public TensorInfo info(final String name) {
        final TensorInfo t = tensors.get(name);
        if (t == null) {
            throw new IllegalArgumentException(path + " has no tensor " + quote(name) + " (it has " + tensors.keySet()
                + ")");
        }
        return t;
    }

    /**
     * @param name a tensor name.
     * @return a read-only view of its raw little-endian bytes (valid until {@link #close()}).
     */
    public MemorySegment bytes(final String name) {
        checkOpen();
        final TensorInfo t = info(name);
        return data.asSlice(t.begin(), t.byteSize());
    }

    /**
     * The tensor in the engine's element type, without a copy: F32, BF16 and I32 tensors only.
     *
     * @param name a tensor name.
     * @return a view over the mapped bytes (closed by {@link #close()}).
     * @throws IllegalArgumentException for another dtype (use {@link #float32} or {@link #int32}).
     */
    public OffHeapArray view(final String name) {
        checkOpen();
        final TensorInfo t = info(name);
        final ElementType type = switch (t.dtype()) {
            case F32 -> ElementType.F32;
            case BF16 -> ElementType.BF16;
            case I32 -> ElementType.I32;
            case I64 -> ElementType.I64;
            default -> throw new IllegalArgumentException("tensor " + quote(name) + " is " + t.dtype().fileName()
                + ": only F32, BF16, I32 and I64 tensors can be viewed without conversion (use float32() or int32())");
        };
        return viewCache.computeIfAbsent(name, n -> OffHeapArray.wrap(type, bytes(n), t.elementCount()));
    }

    /**
     * The tensor as float32: a view for F32, otherwise a converted copy made once (F64 rounded to nearest, BF16 and F16
     * widened exactly, U8/BOOL as 0/1 or the byte's value).
     *
     * @param name a tensor name.
     * @return float32 elements in row-major order (closed by {@link #close()}).
     * @throws IllegalArgumentException for integer dtypes other than U8/BOOL.
     */
    public OffHeapArray float32(final String name) {
        checkOpen();
        final TensorInfo t = info(name);
        if (t.dtype() == Dtype.F32) {
            return view(name);
        }
        final OffHeapArray cached = float32Cache.get(name);
        if (cached != null) {
            return cached;
        }
        final long n = t.elementCount();
        final MemorySegment src = bytes(name);
        final OffHeapArray out = OffHeapArray.allocate(ElementType.F32, n);
        final MemorySegment dst = out.segment();
        switch (t.dtype()) {
            case F64 -> {
                for (long i = 0; i < n; i++) {
                    dst.set(F32, i * 4, (float) src.get(F64, i * 8));
                }
            }
            case BF16 -> {
                for (long i = 0; i < n; i++) {
                    dst.set(F32, i * 4, Float.intBitsToFloat((src.get(I16, i * 2) & 0xFFFF) << 16));
                }
            }
            case F16 -> {
                for (long i = 0; i < n; i++) {
                    dst.set(F32, i * 4, Float.float16ToFloat(src.get(I16, i * 2)));
                }
            }
            case U8, BOOL -> {
                for (long i = 0; i < n; i++) {
                    dst.set(F32, i * 4, (float) (src.get(ValueLayout.JAVA_BYTE, i) & 0xFF));
                }
            }
            default -> {
                out.close();
                throw new IllegalArgumentException("tensor " + quote(name) + " is " + t.dtype().fileName()
                    + " and cannot be read as float32 (floating-point and U8/BOOL tensors can)");
            }
        }
        float32Cache.put(name, out);
        return out;
    }

    /**
     * The tensor as int32: a view for I32, a range-checked copy for I64.
     *
     * @param name a tensor name.
     * @return int32 elements in row-major order (closed by {@link #close()}).
     * @throws IllegalArgumentException for other dtypes, or an I64 value outside the int range.
     */
    public OffHeapArray int32(final String name) {
        checkOpen();
        final TensorInfo t = info(name);
        if (t.dtype() == Dtype.I32) {
            return view(name);
        }
        if (t.dtype() != Dtype.I64) {
            throw new IllegalArgumentException("tensor " + quote(name) + " is " + t.dtype().fileName()
                + " and cannot be read as int32 (I32 and I64 tensors can)");
        }
        final OffHeapArray cached = int32Cache.get(name);
        if (cached != null) {
            return cached;
        }
        final long n = t.elementCount();
        final MemorySegment src = bytes(name);
        for (long i = 0; i < n; i++) {
            final long v = src.get(I64, i * 8);
            if (v < Integer.MIN_VALUE || v > Integer.MAX_VALUE) {
                throw new IllegalArgumentException("tensor " + quote(name) + " element " + i + " = " + v
                    + " does not fit in int32");
            }
        }
        final OffHeapArray out = OffHeapArray.allocate(ElementType.I32, n);
        for (long i = 0; i < n; i++) {
            out.segment().set(I32, i * 4, (int) src.get(I64, i * 8));
        }
        int32Cache.put(name, out);
        return out;
    }

    /**
     * The exact values of a numeric tensor as doubles (F64 kept at full precision), for comparisons.
     *
     * @param name a tensor name.
     * @return a heap copy in row-major order.
     */
    public double[] doubles(final String name) {
        checkOpen();
        final TensorInfo t = info(name);
        final long n = t.elementCount();
        if (n > Integer.MAX_VALUE - 8) {
            throw new IllegalArgumentException("tensor " + quote(name) + " has " + n + " elements, too many for an array");
        }
        final MemorySegment src = bytes(name);
        final double[] out = new double[(int) n];
        for (int i = 0; i < out.length; i++) {
            out[i] = switch (t.dtype()) {
                case F32 -> src.get(F32, (long) i * 4);
                case F64 -> src.get(F64, (long) i * 8);
                case BF16 -> Float.intBitsToFloat((src.get(I16, (long) i * 2) & 0xFFFF) << 16);
                case F16 -> Float.float16ToFloat(src.get(I16, (long) i * 2));
                case I32 -> src.get(I32, (long) i * 4);
                case I64 -> (double) src.get(I64, (long) i * 8);
                case U8, BOOL -> src.get(ValueLayout.JAVA_BYTE, i) & 0xFF;
            };
        }
        return out;
    }

    private void checkOpen() {
        if (closed) {
            throw new IllegalStateException(path + " is closed");
        }
    }

    /** Closes every array handed out and unmaps the file. Idempotent. */
    @Override
    public void close() {
        if (closed) {
            return;
        }
        closed = true;
        for (final OffHeapArray a : viewCache.values()) {
            a.close();
        }
        for (final OffHeapArray a : float32Cache.values()) {
            a.close();
        }
        for (final OffHeapArray a : int32Cache.values()) {
            a.close();
        }
        arena.close();
    }

    @Override
    public String toString() {
        return "Safetensors[" + path + ", " + tensors.size() + " tensors]";
    }
}
