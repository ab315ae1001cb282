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
 */
public record TensorReport(String name, Verdict verdict, int elements, double maxAbsErr, double maxRelErr,
                           long maxUlp, Set<Deviation> deviations, String detail) {

    /** @return a case-level row (no tensor compared). */
    static TensorReport caseLevel(final Verdict verdict, final String detail) {
        return new TensorReport("-", verdict, 0, Double.NaN, Double.NaN, -1, Set.of(), detail);
    }
}
