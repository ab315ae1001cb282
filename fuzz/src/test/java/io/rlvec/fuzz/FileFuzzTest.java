package io.rlvec.fuzz;

import static io.rlvec.fuzz.Inputs.REFERENCE;
import static io.rlvec.fuzz.Outcomes.both;

import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.Paths;
import java.util.List;

import com.code_intelligence.jazzer.api.FuzzedDataProvider;
import com.code_intelligence.jazzer.junit.FuzzTest;

import io.rlvec.Engine;
import io.rlvec.OffHeapArray;
import io.rlvec.cli.golden.Agreement;
import io.rlvec.cli.golden.CaseHandler;
import io.rlvec.cli.golden.CaseHandlers;
import io.rlvec.cli.golden.CaseOutputs;
import io.rlvec.cli.golden.CaseReport;
import io.rlvec.cli.golden.GoldenCase;
import io.rlvec.cli.golden.GoldenRunner;
import io.rlvec.cli.io.Safetensors;
import io.rlvec.cli.io.SafetensorsFormatException;
import io.rlvec.cli.io.TensorInfo;

/**
 * Fuzz targets over the file readers: the safetensors reader (raw bytes seeded with real golden files, and headers
 * assembled from hostile pieces) and the golden-case / parity reader. A file is either refused with a
 * {@link SafetensorsFormatException} that says what is wrong, or every tensor in it can be read (a dtype that does
 * not convert is an IllegalArgumentException); a case the handlers accept on both engines agrees within the
 * parity contract. Nothing else may be thrown.
 */
class FileFuzzTest {
    private static final CaseHandlers HANDLERS = CaseHandlers.defaults();
    private static final Path FILE = scratch();

    private static Path scratch() {
        try {
            final Path shm = Paths.get("/dev/shm");
            final Path dir = Files.isDirectory(shm) && Files.isWritable(shm)
                ? Files.createTempDirectory(shm, "rlvec-fuzz") : Files.createTempDirectory("rlvec-fuzz");
            dir.toFile().deleteOnExit();
            final Path f = dir.resolve("case.safetensors");
            f.toFile().deleteOnExit();
            return f;
        } catch (final IOException e) {
            throw new UncheckedIOException(e);
        }
    }

    private static Path write(final byte[] bytes) {
        try {
            return Files.write(FILE, bytes);
        } catch (final IOException e) {
            throw new UncheckedIOException(e);
        }
    }

    /** Raw bytes: truncated, bit-flipped, spliced safetensors files (seeded with verl's golden cases). */
    @FuzzTest(maxDuration = "2h", maxExecutions = 1_000_000)
    void safetensors(final byte[] bytes) {
        readAll(write(bytes));
    }

    /**
     * Headers assembled from hostile pieces: huge, negative and overlapping offsets, wrong dtypes and shapes,
     * duplicate names, deep or long JSON, a header length that lies.
     */
    @FuzzTest(maxDuration = "2h", maxExecutions = 1_000_000)
    void safetensorsHeader(final FuzzedDataProvider d) {
        final StringBuilder h = new StringBuilder("{");
        final int tensors = d.consumeInt(0, 4);
        final String[] dtypes = {"F32", "F64", "BF16", "I32", "I64", "U8", "BOOL", "F16", "f32", ""};
        long offset = 0;
        for (int t = 0; t < tensors; t++) {
            if (t > 0) {
                h.append(',');
            }
            final String name = d.consumeInt(0, 8) == 0 ? "t0" : d.consumeInt(0, 8) == 0 ? "__metadata__"
                : "t" + t;
            final String dtype = dtypes[d.consumeInt(0, dtypes.length - 1)];
            final int rank = d.consumeInt(0, 3);
            final StringBuilder shape = new StringBuilder("[");
            long count = 1;
            for (int i = 0; i < rank; i++) {
                final long dim = d.consumeInt(0, 10) == 0 ? d.consumeLong() : d.consumeLong(0, 6);
                count = count * Math.max(0, dim);
                shape.append(i > 0 ? "," : "").append(dim);
            }
            shape.append(']');
            final int width = switch (dtype) {
                case "F64", "I64" -> 8;
                case "F32", "I32" -> 4;
                case "BF16", "F16" -> 2;
                default -> 1;
            };
            long begin = offset;
            long end = offset + count * width;
            switch (d.consumeInt(0, 12)) {
                case 0 -> begin = d.consumeLong();
                case 1 -> end = d.consumeLong();
                case 2 -> end = end + d.consumeInt(-3, 3);
                case 3 -> begin = Math.max(0, begin - d.consumeInt(1, 8));
                default -> { }
            }
            offset = end;
            h.append('"').append(name).append("\":{\"dtype\":\"").append(dtype).append("\",\"shape\":")
                .append(d.consumeInt(0, 30) == 0 ? "\"x\"" : shape).append(",\"data_offsets\":[").append(begin)
                .append(',').append(end).append("]}");
        }
        switch (d.consumeInt(0, 10)) {
            case 0 -> h.append(tensors > 0 ? "," : "").append("\"__metadata__\":{\"function\":\"")
                .append(d.consumeAsciiString(12)).append("\",\"params\":\"").append(d.consumeAsciiString(40))
                .append("\"}");
            case 1 -> h.append(tensors > 0 ? "," : "").append("\"x\":").append("[".repeat(d.consumeInt(1, 3000)));
            case 2 -> h.append(tensors > 0 ? "," : "").append("\"__metadata__\":{\"k\":")
                .append(d.consumeInt(0, 5)).append('}');
            default -> { }
        }
        h.append('}');
        final byte[] header = h.toString().getBytes(StandardCharsets.UTF_8);
        final long dataBytes = Math.max(0, Math.min(1 << 16, offset + d.consumeInt(-4, 4)));
        final byte[] file = new byte[(int) (8 + header.length + dataBytes)];
        final long declared = switch (d.consumeInt(0, 12)) {
            case 0 -> d.consumeLong();
            case 1 -> header.length + d.consumeInt(-3, 3);
            default -> header.length;
        };
        for (int i = 0; i < 8; i++) {
            file[i] = (byte) (declared >>> (8 * i));
        }
        System.arraycopy(header, 0, file, 8, header.length);
        final byte[] rest = d.consumeRemainingAsBytes();
        System.arraycopy(rest, 0, file, 8 + header.length, (int) Math.min(rest.length, dataBytes));
        readAll(write(file));
    }

    /** Opens the file and reads every tensor every way; only the documented exceptions are allowed. */
    private static void readAll(final Path path) {
        final Safetensors f;
        try {
            f = Safetensors.open(path);
        } catch (final SafetensorsFormatException e) {
            documented(e);
            return;
        } catch (final IOException e) {
            throw new AssertionError("an I/O error that is not a format error on a readable file", e);
        }
        try (f) {
            f.metadata().forEach((k, v) -> {
                if (k == null || v == null) {
                    throw new AssertionError("null metadata entry");
                }
            });
            for (final String name : f.names()) {
                final TensorInfo t = f.info(name);
                if (t.end() - t.begin() != f.bytes(name).byteSize() || t.begin() < 0 || t.end() < t.begin()) {
                    throw new AssertionError("tensor " + name + " " + t + " has a view of " + f.bytes(name).byteSize()
                        + " bytes");
                }
                final OffHeapArray view = Outcomes.refusal(() -> f.view(name)) == null ? f.view(name) : null;
                if (view != null && view.byteSize() != t.end() - t.begin()) {
                    throw new AssertionError("view of " + name + " is " + view.byteSize() + " bytes");
                }
                if (Outcomes.refusal(() -> f.float32(name)) == null && f.float32(name).length() != t.elementCount()) {
                    throw new AssertionError("float32 of " + name + " has the wrong length");
                }
                if (Outcomes.refusal(() -> f.int32(name)) == null && f.int32(name).length() != t.elementCount()) {
                    throw new AssertionError("int32 of " + name + " has the wrong length");
                }
                final double[][] box = new double[1][];
                if (Outcomes.refusal(() -> box[0] = f.doubles(name)) == null && box[0].length != t.elementCount()) {
                    throw new AssertionError("doubles of " + name + " has the wrong length");
                }
            }
            Outcomes.refusal(() -> f.info("no such tensor"));
        }
    }

    private static void documented(final SafetensorsFormatException e) {
        final String m = e.getMessage();
        if (m == null || m.length() < 12) {
            throw new AssertionError("a format exception without a useful message: '" + m + "'", e);
        }
    }

    /**
     * Golden case files (verl's dumps) as the parity command reads them: the runner never throws; a handler
     * either refuses with a documented exception on both engines, or both agree within the contract.
     */
    @FuzzTest(maxDuration = "2h", maxExecutions = 1_000_000)
    void goldenCase(final byte[] bytes) {
        final Path path = write(bytes);
        final Engine v = bytes.length > 0 && (bytes[bytes.length - 1] & 1) == 1 ? Inputs.TWO : Inputs.ONE;
        final CaseReport report = new GoldenRunner(HANDLERS, List.of(v, REFERENCE)).run(path);
        if (report == null || report.verdict() == null) {
            throw new AssertionError("no report");
        }
        final GoldenCase golden;
        try {
            golden = GoldenCase.open(path);
        } catch (final SafetensorsFormatException e) {
            documented(e);
            return;
        } catch (final IOException e) {
            throw new AssertionError("an I/O error that is not a format error on a readable file", e);
        }
        try (golden) {
            final CaseHandler handler = HANDLERS.find(golden.function());
            if (handler == null) {
                return;
            }
            final CaseOutputs[] out = new CaseOutputs[2];
            if (both(() -> out[0] = handler.run(golden, REFERENCE), () -> out[1] = handler.run(golden, v))) {
                for (final Agreement a : GoldenRunner.agreement(out[1], out[0])) {
                    if (!a.ok()) {
                        throw new AssertionError(golden.function() + " on " + v.name() + ": " + a.describe());
                    }
                }
            }
        }
    }
}
