package io.rlvec.cli.diagnose;

import java.util.List;

/**
 * One diagnosis: a rule that fired on a stretch of steps.
 *
 * @param rule the rule's id (see {@link Thresholds})
 * @param severity how much it matters
 * @param title one line
 * @param firstStep first step it rests on
 * @param lastStep last step it rests on
 * @param evidence the metrics and values that show it, one per item ("actor/entropy: 0.21 at step 1 -> ...")
 * @param reading what it means, whether it is good or bad, and what to check next
 */
public record Finding(String rule, Severity severity, String title, long firstStep, long lastStep,
    List<String> evidence, String reading) {

    /** @return whether the finding's steps overlap [from, to] */
    public boolean overlaps(final long from, final long to) {
        return firstStep <= to && lastStep >= from;
    }

    /** @return "steps a-b" or "step a" */
    public String steps() {
        return firstStep == lastStep ? "step " + firstStep : "steps " + firstStep + "-" + lastStep;
    }
}
