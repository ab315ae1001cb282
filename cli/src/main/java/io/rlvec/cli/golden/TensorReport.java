package io.rlvec.cli.golden;

import java.util.Set;

/**
 * The comparison of one engine output with verl's value.
 *
 * @param name       verl's output name ({@code out.*}), or "-" for a case-level row.
 * @param verdict    the outcome.
 * @param elements   elements compared.
 * @param maxAbsErr  largest |engine - verl| over elements where both are finite (NaN when there is none).
 * @param maxRelErr  largest |engine - verl| / |verl| over the same elements (NaN when there is none).
 * @param maxUlp     largest distance in float32 ulps over the same elements (-1 when there is none).
 * @param deviations documented reasons accepted for non-finite verl values (empty unless DEVIATION).
 * @param detail     what failed or deviated, in words ("" for a plain pass).
 * @param judge      what held the finite elements to verl's values.
 */
public record TensorReport(String name, Verdict verdict, int elements, double maxAbsErr, double maxRelErr,
                           long maxUlp, Set<Deviation> deviations, String detail, Judge judge) {

    /** What a tensor check's finite elements were held to. */
    public enum Judge {
        /** Error analysis: the engine within its derived bound of a double-precision evaluation, verl within float32's. */
        BOUND,
        /** A fixed tolerance ({@link Tolerance}) on the distance between the engine and verl. */
        TOLERANCE,
        /** Nothing numeric: a case-level row, a shape mismatch, or no element finite on both sides. */
        NONE
    }

    /** @return a case-level row (no tensor compared). */
    static TensorReport caseLevel(final Verdict verdict, final String detail) {
        return new TensorReport("-", verdict, 0, Double.NaN, Double.NaN, -1, Set.of(), detail, Judge.NONE);
    }
}
