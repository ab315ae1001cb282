package io.rlvec.cli.golden;

/**
 * Engine against reference on one output (design.md: elementwise outputs and gradients bit-identical, reduced
 * scalars within 1 ulp).
 *
 * @param name       the output.
 * @param elements   elements compared.
 * @param mismatches elements whose bits differ (NaNs of any payload count as equal).
 * @param maxUlp     largest distance in float32 ulps (0 when bit-identical; NaN against a number counts as
 *                   {@link Long#MAX_VALUE}).
 * @param ok         whether the contract holds: scalars within 1 ulp, everything else bit-identical.
 */
public record Agreement(String name, int elements, int mismatches, long maxUlp, boolean ok) {

    /** @return e.g. {@code "bit-identical"}, {@code "1 ulp"}, {@code "3/2048 differ (max 2 ulp)"}. */
    public String describe() {
        if (mismatches == 0) {
            return "bit-identical";
        }
        final String ulp = maxUlp == Long.MAX_VALUE ? "NaN vs number" : maxUlp + " ulp";
        return (elements == 1 ? ulp : mismatches + "/" + elements + " differ (max " + ulp + ")")
            + (ok ? "" : " BREACH");
    }
}
