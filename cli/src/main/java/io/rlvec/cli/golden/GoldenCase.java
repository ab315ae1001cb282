package io.rlvec.cli.golden;

import java.io.IOException;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Map;
import java.util.Set;

import com.fasterxml.jackson.core.JsonProcessingException;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.JsonNodeFactory;

import io.rlvec.Column;
import io.rlvec.LossSpec;
import io.rlvec.OffHeapArray;
import io.rlvec.TokenBatch;
import io.rlvec.VerlRelease;
import io.rlvec.cli.io.Safetensors;
import io.rlvec.cli.io.SafetensorsFormatException;
import io.rlvec.cli.io.TensorInfo;

/**
 * One verl golden case: a safetensors file whose {@code __metadata__} names the verl {@code function}, its
 * {@code params} (JSON) and, for cases where verl raised, {@code expect_error}; whose {@code in.*} tensors are
 * verl's inputs and {@code out.*} tensors verl's outputs (see the golden directory's INDEX.md).
 *
 * <p>Gives handlers what they need: float32 inputs (F64 rounded, U8 masks as 0/1), the padded {@code (B, T)}
 * {@link TokenBatch} over them without copies, a {@link LossSpec} builder filled from the params with verl's key
 * names, and the {@link CaseFacts} for deviation checks. Closing the case unmaps the file and frees every
 * converted array.
 */
public final class GoldenCase implements AutoCloseable {
    /** Metadata keys. */
    public static final String FUNCTION = "function";
    /** Metadata key of the case's group. */
    public static final String GROUP = "group";
    /** Metadata key of the case's parameters (a JSON object). */
    public static final String PARAMS = "params";
    /** Parameter present when verl raised on the inputs (its value is verl's exception). */
    public static final String EXPECT_ERROR = "expect_error";
    /** Parameters that document a case and are not verl configuration. */
    public static final Set<String> DOCUMENTATION_PARAMS = Set.of("scenario", EXPECT_ERROR);
    /** Parameter holding actor.policy_loss's keys. */
    public static final String POLICY_LOSS = "policy_loss";
    /** Parameter whose fields verl splats into agg_loss's keyword arguments. */
    public static final String GLOBAL_BATCH_INFO = "global_batch_info";

    private static final ObjectMapper JSON = new ObjectMapper();

    private final Safetensors file;
    private final JsonNode params;
    /** Keys that are not loss keys, each with the nearest known key, in the order met. */
    private final java.util.Set<String> foreignKeys = new java.util.LinkedHashSet<>();

    private GoldenCase(final Safetensors file, final JsonNode params) {
        this.file = file;
        this.params = params;
    }

    /**
     * Opens and validates a case file.
     *
     * @throws SafetensorsFormatException when the file is not valid safetensors or its params are not a JSON object.
     * @throws IOException                when it cannot be read.
     */
    public static GoldenCase open(final Path path) throws IOException {
        final Safetensors f = Safetensors.open(path);
        try {
            final String text = f.metadata().get(PARAMS);
            final JsonNode params;
            if (text == null) {
                params = JsonNodeFactory.instance.objectNode();
            } else {
                try {
                    params = JSON.readTree(text);
                } catch (final JsonProcessingException e) {
                    throw new SafetensorsFormatException(path, "metadata 'params' is not valid JSON: "
                        + e.getOriginalMessage(), e);
                }
                if (params == null || !params.isObject()) {
                    throw new SafetensorsFormatException(path, "metadata 'params' must be a JSON object");
                }
            }
            final GoldenCase c = new GoldenCase(f, params);
            for (final String key : f.metadata().keySet()) {
                // Descriptive top-level keys (seed, commit, notes...) are part of the format; a key within two
                // edits of a format key is most likely a misspelt one, and is reported.
                if (!KnownKeys.METADATA.contains(key) && key.length() >= 4 && key.indexOf('.') < 0
                    && KnownKeys.distance(key, KnownKeys.nearest(key, KnownKeys.METADATA)) <= 2) {
                    c.foreignKeys.add("metadata key '" + key + "' (nearest known key: '"
                        + KnownKeys.nearest(key, KnownKeys.METADATA) + "')");
                }
            }
            return c;
        } catch (final IOException | RuntimeException e) {
            f.close();
            throw e;
        }
    }

    /** @return the underlying file. */
    public Safetensors file() {
        return file;
    }

    /** @return the file's path. */
    public Path path() {
        return file.path();
    }

    /**
     * @return the verl release whose semantics the case was computed with, from metadata {@code verl_commit}
     *         (a known commit's release; {@link VerlRelease#DEFAULT} when absent or unknown).
     */
    public VerlRelease release() {
        final String commit = file.metadata().get("verl_commit");
        if (commit != null) {
            for (final VerlRelease r : VerlRelease.values()) {
                if (commit.length() >= 7 && r.commit().startsWith(commit.toLowerCase(java.util.Locale.ROOT))) {
                    return r;
                }
            }
        }
        return VerlRelease.DEFAULT;
    }

    /** @return verl's function (metadata {@code function}), or "" when absent. */
    public String function() {
        return file.metadata().getOrDefault(FUNCTION, "");
    }

    /** @return the case's group (metadata {@code group}), or "" when absent. */
    public String group() {
        return file.metadata().getOrDefault(GROUP, "");
    }

    /** @return the parameters (an empty object when absent). */
    public JsonNode params() {
        return params;
    }

    /** @return verl's exception for an {@code expect_error} case, else null. */
    public String expectedError() {
        final JsonNode e = params.get(EXPECT_ERROR);
        return e == null || e.isNull() ? null : e.asText();
    }

    /** @return the {@code out.*} tensor names in file order. */
    public List<String> outputNames() {
        final List<String> out = new ArrayList<>();
        for (final String n : file.names()) {
            if (n.startsWith("out.")) {
                out.add(n);
            }
        }
        return out;
    }

    /** @return whether the file has the tensor. */
    public boolean has(final String name) {
        return file.has(name);
    }

    /** @return a float32 view (or converted copy) of a tensor, freed by {@link #close()}. */
    public OffHeapArray float32(final String name) {
        return file.float32(name);
    }

    /** @return an int32 view (I32) or range-checked copy (I64) of a tensor, freed by {@link #close()}. */
    public OffHeapArray int32(final String name) {
        return file.int32(name);
    }

    /** @return verl's exact values of a tensor (F64 kept at full precision). */
    public double[] expected(final String name) {
        return file.doubles(name);
    }

    /**
     * @return {@code [B, T]} of a 2-D tensor.
     * @throws IllegalArgumentException when it is not 2-D.
     */
    public int[] matrixShape(final String name) {
        final TensorInfo t = file.info(name);
        if (t.rank() != 2 || t.dim(0) > Integer.MAX_VALUE || t.dim(1) > Integer.MAX_VALUE) {
            throw new IllegalArgumentException(name + " must be a (B, T) matrix, got " + t.describe());
        }
        return new int[] {(int) t.dim(0), (int) t.dim(1)};
    }

    /**
     * Builds the padded {@code (B, T)} batch over the named 2-D tensors, without copying F32 data.
     *
     * @param maskName name of the response mask tensor.
     * @param columns  batch columns and the tensor each comes from.
     * @return the batch (close it; the arrays stay owned by this case).
     * @throws IllegalArgumentException when the tensors do not share one (B, T) shape.
     */
    public TokenBatch paddedBatch(final String maskName, final Map<Column, String> columns) {
        final int[] bt = matrixShape(maskName);
        for (final String name : columns.values()) {
            final int[] other = matrixShape(name);
            if (!Arrays.equals(other, bt)) {
                throw new IllegalArgumentException(name + " has shape " + Arrays.toString(other) + ", but "
                    + maskName + " has " + Arrays.toString(bt));
            }
        }
        final TokenBatch.Builder b = TokenBatch.padded(bt[0], bt[1]);
        b.column(Column.RESPONSE_MASK, float32(maskName));
        for (final Map.Entry<Column, String> e : columns.entrySet()) {
            b.column(e.getKey(), float32(e.getValue()));
        }
        return b.build();
    }

    /**
     * @param maskName name of the mask tensor.
     * @param inputs   the value tensors (same element count as the mask).
     * @return valid tokens, and whether any input holds NaN/Inf at a masked position.
     */
    public CaseFacts facts(final String maskName, final String... inputs) {
        final double[] mask = expected(maskName);
        long valid = 0;
        for (final double m : mask) {
            valid += m != 0 ? 1 : 0;
        }
        boolean maskedNonFinite = false;
        boolean validNonFinite = false;
        for (final String in : inputs) {
            final double[] v = expected(in);
            if (v.length != mask.length) {
                throw new IllegalArgumentException(in + " has " + v.length + " elements, " + maskName + " has "
                    + mask.length);
            }
            for (int i = 0; i < v.length; i++) {
                if (!Double.isFinite(v[i])) {
                    maskedNonFinite |= mask[i] == 0;
                    validNonFinite |= mask[i] != 0;
                }
            }
        }
        return new CaseFacts(valid, maskedNonFinite, new boolean[0], validNonFinite);
    }

    /**
     * A spec builder filled from the params with verl's keys: every top-level parameter except the
     * documentation ones ({@link #DOCUMENTATION_PARAMS}) and the fields of {@code global_batch_info}, as verl
     * splats them into {@code agg_loss}. A null value means "not given" (e.g. {@code clip_ratio_low: null} falls
     * back to {@code clip_ratio}).
     *
     * @param ignored further parameter names the caller handles itself.
     * @throws IllegalArgumentException for a parameter LossSpec does not know or a value of the wrong kind.
     */
    public LossSpec.Builder lossSpec(final String... ignored) {
        final Set<String> skip = Set.of(ignored);
        final LossSpec.Builder b = LossSpec.builder().release(release());
        for (final Map.Entry<String, JsonNode> e : params.properties()) {
            final String key = e.getKey();
            if (DOCUMENTATION_PARAMS.contains(key) || skip.contains(key)) {
                continue;
            }
            if (POLICY_LOSS.equals(key) && e.getValue().isObject()) {
                // actor.policy_loss.*: the mode's own keys (loss_mode, clip_cov_ratio, dro_beta, ...).
                for (final Map.Entry<String, JsonNode> g : e.getValue().properties()) {
                    b.set(g.getKey(), value(g.getValue()));
                }
            } else if (GLOBAL_BATCH_INFO.equals(key)) {
                if (!e.getValue().isObject()) {
                    throw new IllegalArgumentException(GLOBAL_BATCH_INFO + " must be an object, got " + e.getValue());
                }
                for (final Map.Entry<String, JsonNode> g : e.getValue().properties()) {
                    b.set(g.getKey(), value(g.getValue()));
                }
            } else {
                try {
                    b.set(key, value(e.getValue()));
                } catch (final IllegalArgumentException unknown) {
                    if (!String.valueOf(unknown.getMessage()).startsWith("unknown loss key")) {
                        throw unknown;
                    }
                    // A descriptive key (a note, a storage dtype) is reported, not a reason to reject the file.
                    foreignKeys.add("params key '" + key + "' (nearest loss key: '"
                        + KnownKeys.nearest(key, KnownKeys.PARAMS) + "')");
                }
            }
        }
        return b;
    }

    /**
     * @return the keys of this file that are not loss keys (params met by {@link #lossSpec}, and top-level
     *     metadata keys within two edits of a format key), each with the nearest known key; the runner reports them, and fails the case in
     *     strict mode.
     */
    public List<String> foreignKeys() {
        return List.copyOf(foreignKeys);
    }

    private static Object value(final JsonNode n) {
        if (n == null || n.isNull()) {
            return null;
        }
        if (n.isIntegralNumber()) {
            return n.longValue();
        }
        if (n.isNumber()) {
            return n.doubleValue();
        }
        if (n.isBoolean()) {
            return n.booleanValue();
        }
        if (n.isTextual()) {
            return n.textValue();
        }
        throw new IllegalArgumentException("parameter value " + n + " is not a number, boolean, string or null");
    }

    /** Unmaps the file and frees converted arrays. */
    @Override
    public void close() {
        file.close();
    }

    @Override
    public String toString() {
        return "GoldenCase[" + path().getFileName() + ", " + function() + "]";
    }
}
