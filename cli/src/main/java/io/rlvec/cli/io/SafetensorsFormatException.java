package io.rlvec.cli.io;

import java.io.IOException;
import java.nio.file.Path;

/** A file is not a valid safetensors file (or uses something this reader does not support); says what and where. */
public final class SafetensorsFormatException extends IOException {
    private static final long serialVersionUID = 1L;

    /**
     * @param file    the file.
     * @param message what is wrong.
     */
    public SafetensorsFormatException(final Path file, final String message) {
        super(file + ": " + message);
    }

    /**
     * @param file    the file.
     * @param message what is wrong.
     * @param cause   the underlying parse error.
     */
    public SafetensorsFormatException(final Path file, final String message, final Throwable cause) {
        super(file + ": " + message, cause);
    }
}
