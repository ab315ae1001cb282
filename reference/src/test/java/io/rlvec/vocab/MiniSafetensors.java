package io.rlvec.vocab;

import java.io.IOException;
import java.io.InputStream;
import java.io.UncheckedIOException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/**
 * A minimal safetensors reader for the golden tests: an 8-byte little-endian header length, a JSON header
 * ({@code name -> {dtype, shape, data_offsets}} plus {@code __metadata__} of strings), then the raw little-endian
 * tensor bytes. Reads F32, F64, I64 and U8 tensors into heap arrays; nothing more.
 */
public final class MiniSafetensors {
    /** One tensor's header entry. */
    public record Tensor(String dtype, long[] shape, long begin, long end) {
        /** @return number of elements. */
        public long count() {
            long n = 1;
            for (final long s : shape) {
                n *= s;
            }
            return n;
        }
    }

    private final ByteBuffer data;
    private final Map<String, Tensor> tensors = new LinkedHashMap<>();
    private final Map<String, String> metadata = new LinkedHashMap<>();

    private MiniSafetensors(final byte[] bytes) {
        final ByteBuffer all = ByteBuffer.wrap(bytes).order(ByteOrder.LITTLE_ENDIAN);
        final long headerLen = all.getLong(0);
        if (headerLen < 2 || 8 + headerLen > bytes.length) {
            throw new IllegalArgumentException("bad safetensors header length " + headerLen);
        }
        final String json = new String(bytes, 8, (int) headerLen, java.nio.charset.StandardCharsets.UTF_8);
        final Object parsed = new Json(json).value();
        if (!(parsed instanceof Map<?, ?> header)) {
            throw new IllegalArgumentException("safetensors header is not a JSON object");
        }
        for (final Map.Entry<?, ?> e : header.entrySet()) {
            final String name = (String) e.getKey();
            final Map<?, ?> v = (Map<?, ?>) e.getValue();
            if (name.equals("__metadata__")) {
                v.forEach((k, s) -> metadata.put((String) k, (String) s));
                continue;
            }
            final List<?> shape = (List<?>) v.get("shape");
            final long[] dims = new long[shape.size()];
            for (int i = 0; i < dims.length; i++) {
                dims[i] = ((Number) shape.get(i)).longValue();
            }
            final List<?> off = (List<?>) v.get("data_offsets");
            tensors.put(name, new Tensor((String) v.get("dtype"), dims, ((Number) off.get(0)).longValue(),
                ((Number) off.get(1)).longValue()));
        }
        data = ByteBuffer.wrap(bytes, (int) (8 + headerLen), (int) (bytes.length - 8 - headerLen)).slice()
            .order(ByteOrder.LITTLE_ENDIAN);
    }

    /** @return the file read from the class path ({@code /golden/...}). */
    public static MiniSafetensors resource(final String path) {
        try (InputStream in = MiniSafetensors.class.getResourceAsStream(path)) {
            if (in == null) {
                throw new IllegalArgumentException("no resource " + path);
            }
            return new MiniSafetensors(in.readAllBytes());
        } catch (final IOException e) {
            throw new UncheckedIOException(e);
        }
    }

    /** @return the header entry of a tensor. */
    public Tensor tensor(final String name) {
        final Tensor t = tensors.get(name);
        if (t == null) {
            throw new IllegalArgumentException("no tensor " + name + " (have " + tensors.keySet() + ")");
        }
        return t;
    }

    /** @return the string metadata. */
    public Map<String, String> metadata() {
        return metadata;
    }

    /** @return a float tensor (F32, or F64 rounded to float) as doubles. */
    public double[] doubles(final String name) {
        final Tensor t = tensor(name);
        final int n = Math.toIntExact(t.count());
        final double[] out = new double[n];
        for (int i = 0; i < n; i++) {
            out[i] = switch (t.dtype()) {
                case "F32" -> data.getFloat((int) t.begin() + 4 * i);
                case "F64" -> data.getDouble((int) t.begin() + 8 * i);
                default -> throw new IllegalArgumentException(name + " is " + t.dtype() + ", not a float tensor");
            };
        }
        return out;
    }

    /** @return a float tensor rounded to float32. */
    public float[] floats(final String name) {
        final double[] d = doubles(name);
        final float[] out = new float[d.length];
        for (int i = 0; i < d.length; i++) {
            out[i] = (float) d[i];
        }
        return out;
    }

    /** @return an I64 tensor. */
    public long[] longs(final String name) {
        final Tensor t = tensor(name);
        if (!t.dtype().equals("I64")) {
            throw new IllegalArgumentException(name + " is " + t.dtype() + ", not I64");
        }
        final long[] out = new long[Math.toIntExact(t.count())];
        for (int i = 0; i < out.length; i++) {
            out[i] = data.getLong((int) t.begin() + 8 * i);
        }
        return out;
    }

    /** Just enough JSON: objects, arrays, strings with escapes, numbers, true/false/null. */
    private static final class Json {
        private final String s;
        private int i;

        Json(final String s) {
            this.s = s;
        }

        Object value() {
            skip();
            final char c = s.charAt(i);
            if (c == '{') {
                final Map<String, Object> m = new LinkedHashMap<>();
                i++;
                skip();
                if (s.charAt(i) == '}') {
                    i++;
                    return m;
                }
                while (true) {
                    skip();
                    final String k = string();
                    skip();
                    expect(':');
                    m.put(k, value());
                    skip();
                    if (s.charAt(i) == ',') {
                        i++;
                        continue;
                    }
                    expect('}');
                    return m;
                }
            }
            if (c == '[') {
                final List<Object> l = new ArrayList<>();
                i++;
                skip();
                if (s.charAt(i) == ']') {
                    i++;
                    return l;
                }
                while (true) {
                    l.add(value());
                    skip();
                    if (s.charAt(i) == ',') {
                        i++;
                        continue;
                    }
                    expect(']');
                    return l;
                }
            }
            if (c == '"') {
                return string();
            }
            if (s.startsWith("true", i)) {
                i += 4;
                return Boolean.TRUE;
            }
            if (s.startsWith("false", i)) {
                i += 5;
                return Boolean.FALSE;
            }
            if (s.startsWith("null", i)) {
                i += 4;
                return null;
            }
            final int start = i;
            while (i < s.length() && "+-0123456789.eE".indexOf(s.charAt(i)) >= 0) {
                i++;
            }
            final String num = s.substring(start, i);
            if (num.isEmpty()) {
                throw new IllegalArgumentException("bad JSON at " + start);
            }
            return num.contains(".") || num.contains("e") || num.contains("E") ? (Number) Double.parseDouble(num)
                : (Number) Long.parseLong(num);
        }

        private String string() {
            expect('"');
            final StringBuilder b = new StringBuilder();
            while (true) {
                final char c = s.charAt(i++);
                if (c == '"') {
                    return b.toString();
                }
                if (c != '\\') {
                    b.append(c);
                    continue;
                }
                final char e = s.charAt(i++);
                switch (e) {
                    case 'n' -> b.append('\n');
                    case 't' -> b.append('\t');
                    case 'r' -> b.append('\r');
                    case 'b' -> b.append('\b');
                    case 'f' -> b.append('\f');
                    case 'u' -> {
                        b.append((char) Integer.parseInt(s.substring(i, i + 4), 16));
                        i += 4;
                    }
                    default -> b.append(e);
                }
            }
        }

        private void expect(final char c) {
            if (s.charAt(i) != c) {
                throw new IllegalArgumentException("expected '" + c + "' at " + i + ", got '" + s.charAt(i) + "'");
            }
            i++;
        }

        private void skip() {
            while (i < s.length() && Character.isWhitespace(s.charAt(i))) {
                i++;
            }
        }
    }
}
