package io.rlvec.testing;

import java.io.IOException;
import java.io.InputStream;
import java.io.UncheckedIOException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/**
 * A minimal safetensors reader for the golden cases on the test class path: u64 little-endian header length, a
 * JSON header ({@code __metadata__} of strings, then tensors with dtype, shape and data_offsets), raw
 * little-endian data. Dtypes F32, F64, I64, U8.
 */
public final class Safetensors {
    /** One tensor entry of the header. */
    public record Tensor(String dtype, int[] shape, long begin, long end) {
        /** @return number of elements (1 for a 0-d scalar). */
        public int size() {
            int n = 1;
            for (final int d : shape) {
                n *= d;
            }
            return n;
        }
    }

    private final String name;
    private final ByteBuffer data;
    private final Map<String, String> metadata = new LinkedHashMap<>();
    private final Map<String, Tensor> tensors = new LinkedHashMap<>();

    private Safetensors(final String name, final byte[] bytes) {
        this.name = name;
        final ByteBuffer bb = ByteBuffer.wrap(bytes).order(ByteOrder.LITTLE_ENDIAN);
        final long headerLen = bb.getLong(0);
        final String json = new String(bytes, 8, (int) headerLen, StandardCharsets.UTF_8);
        this.data = ByteBuffer.wrap(bytes, 8 + (int) headerLen, bytes.length - 8 - (int) headerLen).slice()
            .order(ByteOrder.LITTLE_ENDIAN);
        @SuppressWarnings("unchecked")
        final Map<String, Object> header = (Map<String, Object>) new Json(json).value();
        for (final Map.Entry<String, Object> e : header.entrySet()) {
            @SuppressWarnings("unchecked")
            final Map<String, Object> v = (Map<String, Object>) e.getValue();
            if (e.getKey().equals("__metadata__")) {
                v.forEach((k, x) -> metadata.put(k, (String) x));
                continue;
            }
            @SuppressWarnings("unchecked")
            final List<Object> shape = (List<Object>) v.get("shape");
            @SuppressWarnings("unchecked")
            final List<Object> off = (List<Object>) v.get("data_offsets");
            final int[] s = new int[shape.size()];
            for (int i = 0; i < s.length; i++) {
                s[i] = ((Number) shape.get(i)).intValue();
            }
            tensors.put(e.getKey(), new Tensor((String) v.get("dtype"), s, ((Number) off.get(0)).longValue(),
                ((Number) off.get(1)).longValue()));
        }
    }

    /** @return the file at {@code resource} on the class path. */
    public static Safetensors load(final String resource) {
        try (InputStream in = Safetensors.class.getResourceAsStream(resource)) {
            if (in == null) {
                throw new IllegalArgumentException("no resource " + resource);
            }
            return new Safetensors(resource, in.readAllBytes());
        } catch (final IOException e) {
            throw new UncheckedIOException(e);
        }
    }

    /** @return the file names listed in {@code dir/files.txt} on the class path. */
    public static List<String> list(final String dir) {
        try (InputStream in = Safetensors.class.getResourceAsStream(dir + "/files.txt")) {
            if (in == null) {
                throw new IllegalArgumentException("no resource " + dir + "/files.txt");
            }
            final List<String> out = new ArrayList<>();
            for (final String line : new String(in.readAllBytes(), StandardCharsets.UTF_8).split("\n")) {
                if (!line.isBlank()) {
                    out.add(line.trim());
                }
            }
            return out;
        } catch (final IOException e) {
            throw new UncheckedIOException(e);
        }
    }

    /** @return the resource name. */
    public String name() {
        return name;
    }

    /** @return a metadata string, or null. */
    public String meta(final String key) {
        return metadata.get(key);
    }

    /** @return whether the tensor exists. */
    public boolean has(final String tensor) {
        return tensors.containsKey(tensor);
    }

    /** @return the tensor's header entry. */
    public Tensor tensor(final String tensor) {
        final Tensor t = tensors.get(tensor);
        if (t == null) {
            throw new IllegalArgumentException(name + " has no tensor " + tensor + " (has " + tensors.keySet() + ")");
        }
        return t;
    }

    /** @return the tensor's values as doubles (F32, F64, I64 or U8). */
    public double[] doubles(final String tensor) {
        final Tensor t = tensor(tensor);
        final double[] out = new double[t.size()];
        final int b = (int) t.begin();
        for (int i = 0; i < out.length; i++) {
            out[i] = switch (t.dtype()) {
                case "F32" -> data.getFloat(b + 4 * i);
                case "F64" -> data.getDouble(b + 8 * i);
                case "I64" -> data.getLong(b + 8 * i);
                case "U8" -> data.get(b + i) & 0xFF;
                default -> throw new IllegalArgumentException("dtype " + t.dtype());
            };
        }
        return out;
    }

    /** @return the tensor's values rounded to float (the engine is a float32 engine). */
    public float[] floats(final String tensor) {
        final double[] d = doubles(tensor);
        final float[] f = new float[d.length];
        for (int i = 0; i < f.length; i++) {
            f[i] = (float) d[i];
        }
        return f;
    }

    /** @return the tensor's values as ints (I64 or U8). */
    public int[] ints(final String tensor) {
        final double[] d = doubles(tensor);
        final int[] out = new int[d.length];
        for (int i = 0; i < out.length; i++) {
            out[i] = Math.toIntExact((long) d[i]);
        }
        return out;
    }

    /** @return the single value of a 0-d (or one-element) tensor. */
    public double scalar(final String tensor) {
        return doubles(tensor)[0];
    }

    /** Just enough JSON for safetensors headers: objects, arrays, strings, numbers, true/false/null. */
    private static final class Json {
        private final String s;
        private int i;

        Json(final String s) {
            this.s = s;
        }

        Object value() {
            ws();
            final char c = s.charAt(i);
            if (c == '{') {
                final Map<String, Object> m = new LinkedHashMap<>();
                i++;
                ws();
                if (s.charAt(i) == '}') {
                    i++;
                    return m;
                }
                while (true) {
                    ws();
                    final String k = string();
                    ws();
                    expect(':');
                    m.put(k, value());
                    ws();
                    if (s.charAt(i) == ',') {
                        i++;
                    } else {
                        expect('}');
                        return m;
                    }
                }
            }
            if (c == '[') {
                final List<Object> l = new ArrayList<>();
                i++;
                ws();
                if (s.charAt(i) == ']') {
                    i++;
                    return l;
                }
                while (true) {
                    l.add(value());
                    ws();
                    if (s.charAt(i) == ',') {
                        i++;
                    } else {
                        expect(']');
                        return l;
                    }
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
            return Double.parseDouble(s.substring(start, i));
        }

        private String string() {
            expect('"');
            final StringBuilder b = new StringBuilder();
            while (true) {
                final char c = s.charAt(i++);
                if (c == '"') {
                    return b.toString();
                }
                if (c == '\\') {
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
                } else {
                    b.append(c);
                }
            }
        }

        private void ws() {
            while (i < s.length() && Character.isWhitespace(s.charAt(i))) {
                i++;
            }
        }

        private void expect(final char c) {
            if (s.charAt(i) != c) {
                throw new IllegalArgumentException("JSON: expected '" + c + "' at " + i + " in " + s);
            }
            i++;
        }
    }
}
