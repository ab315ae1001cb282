package io.rlvec.cli.diagnose;

/** How much a finding should worry the reader. */
public enum Severity {
    /** A reading of the curves; nothing to fix. */
    INFO,
    /** Something to check before trusting or continuing the run. */
    WARNING,
    /** The run is broken or diverging; stop and fix. */
    CRITICAL
}
