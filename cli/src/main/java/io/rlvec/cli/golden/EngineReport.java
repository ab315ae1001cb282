package io.rlvec.cli.golden;

import java.util.List;

/**
 * One case run on one engine and compared with verl.
 *
 * @param engine  the engine's name ({@code Engine.name()}).
 * @param verdict the worst tensor verdict (or the case-level verdict).
 * @param tensors one report per verl output (or one case-level row).
 * @param outputs what the engine computed (null when it threw or the case was not run).
 */
public record EngineReport(String engine, Verdict verdict, List<TensorReport> tensors, CaseOutputs outputs) {
}
