package io.rlvec.cli.golden;

import java.io.IOException;
import java.net.URISyntaxException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.stream.Stream;

import io.rlvec.Engine;
import io.rlvec.Engines;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;

/**
 * What the golden-file tests share: verl's files copied into test resources, run through the runner the
 * {@code parity} command uses on the preferred engine and the reference.
 */
abstract class GoldenFileTest {
    static Engine preferred;
    static GoldenRunner runner;

    @BeforeAll
    static void engines() {
        preferred = Engines.preferred();
        runner = new GoldenRunner(CaseHandlers.defaults(), List.of(preferred, Engines.reference()));
    }

    @AfterAll
    static void closeEngine() {
        preferred.close();
    }

    /** @return a test-resource folder. */
    static Path dir(final String name) {
        try {
            return Path.of(GoldenFileTest.class.getResource("/" + name).toURI());
        } catch (final URISyntaxException e) {
            throw new IllegalStateException(e);
        }
    }

    /** @return the {@code .safetensors} files of the test-resource folders, folder by folder, sorted. */
    static Stream<Path> filesIn(final String... folders) {
        return Stream.of(folders).flatMap(d -> {
            try (Stream<Path> s = Files.list(dir(d))) {
                return s.filter(p -> p.toString().endsWith(".safetensors")).sorted().toList().stream();
            } catch (final IOException e) {
                throw new IllegalStateException(e);
            }
        });
    }
}
