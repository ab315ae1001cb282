package io.rlvec.cli.golden;

/**
 * What a case's inputs are like, as far as the documented {@link Deviation}s need to know.
 *
 * @param validTokens     tokens where the mask is non-zero.
 * @param maskedNonFinite whether some input holds NaN or Inf at a masked position.
 */
public record CaseFacts(long validTokens, boolean maskedNonFinite) {
}
