package io.rlvec.cli;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;

/** Checks that output files can be written before a command spends time computing what goes in them. */
final class OutputFiles {
    private OutputFiles() {
    }

    /**
     * @param file an output file, or null when none was asked for.
     * @return null when the file can be created or replaced, else why not (for the error line).
     */
    static String unwritable(final Path file) {
        if (file == null) {
            return null;
        }
        if (Files.isDirectory(file)) {
            return file + " is a directory";
        }
        final Path parent = file.toAbsolutePath().getParent();
        if (parent == null || !Files.isDirectory(parent)) {
            return file + " cannot be written: no directory " + parent;
        }
        if (Files.exists(file)) {
            return Files.isWritable(file) ? null : file + " cannot be written: permission denied";
        }
        try {
            final Path probe = Files.createTempFile(parent, ".rlvec-probe", ".tmp");
            Files.delete(probe);
            return null;
        } catch (final IOException | SecurityException e) {
            return file + " cannot be written: " + e;
        }
    }
}
