package io.rlvec.cli.golden;

import java.nio.file.Path;
import java.util.List;

/**
 * One golden file run on every selected engine.
 *
 * @param file       the file.
 * @param function   verl's function (metadata), "" when unknown.
 * @param group      the case's group (metadata), "" when unknown.
 * @param verdict    the worst over engines, FAIL when the engines disagree beyond the contract.
 * @param runs       one report per engine, in the order they ran.
 * @param agreement  engine vs reference per output (empty unless two engines ran and both produced outputs).
 * @param message    case-level note (unsupported function, unreadable file), "" otherwise.
 */
public record CaseReport(Path file, String function, String group, Verdict verdict, List<EngineReport> runs,
                         List<Agreement> agreement, String message) {

    /** @return the file name without {@code .safetensors}. */
    public String caseName() {
        final String n = file.getFileName().toString();
        return n.endsWith(".safetensors") ? n.substring(0, n.length() - ".safetensors".length()) : n;
    }

    /** @return whether every agreement row holds (true when there is none). */
    public boolean enginesAgree() {
        for (final Agreement a : agreement) {
            if (!a.ok()) {
                return false;
            }
        }
        return true;
    }
}
