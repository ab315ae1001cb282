package io.rlvec.engine;

import io.rlvec.TokenBatch;

/**
 * The work plan of the token kernels, derived from the batch's offsets only (never from the thread count), so
 * that results are bit-identical for any parallelism.
 *
 * <p>Every sequence is cut into <em>pieces</em> of at most {@link #PIECE_TOKENS} tokens (a sequence of length 0
 * has none). A piece is the unit of accumulation: the kernels reduce each piece into its own partial slots, and
 * the caller adds the partials of a sequence in piece order, then the sequences in sequence order. Consecutive
 * pieces are grouped into <em>blocks</em> of at least {@link #BLOCK_TOKENS} tokens (the last block may be
 * smaller), the unit {@link Blocks} hands to a thread.
 *
 * <p>Reused across calls: the arrays grow to the largest batch seen, then nothing is allocated.
 */
final class SequencePieces {
    /**
     * Longest piece: 16384 tokens = 64 KiB per float column, so the 4-5 columns of a piece stay in L2 while it is
     * processed; a multiple of every lane count (4, 8, 16), so only the last piece of a sequence has a tail.
     */
    static final int PIECE_TOKENS = 1 << 14;
    /** Fewest tokens per block (except the last): large enough that handing a block to a thread is cheap. */
    static final int BLOCK_TOKENS = 1 << 14;

    /** pieces planned. */
    int numPieces;
    /** blocks planned. */
    int numBlocks;
    /** sequences of the batch. */
    int numSequences;
    /** first token of each piece. */
    int[] start = new int[0];
    /** end (exclusive) of each piece. */
    int[] end = new int[0];
    /** sequence of each piece. */
    int[] seq = new int[0];
    /** {@code seqFirst[s]..seqFirst[s+1]-1} are the pieces of sequence {@code s} ({@code numSequences + 1} entries). */
    int[] seqFirst = new int[0];
    /** {@code blockFirst[b]..blockFirst[b+1]-1} are the pieces of block {@code b} ({@code numBlocks + 1} entries). */
    int[] blockFirst = new int[0];

    /** Plans the pieces and blocks of {@code batch}. */
    void plan(final TokenBatch batch) {
        final int b = batch.numSequences();
        numSequences = b;
        // Upper bound on the number of pieces: one per sequence plus one per full PIECE_TOKENS of tokens.
        final long maxPieces = (long) b + batch.numTokens() / PIECE_TOKENS;
        ensure((int) maxPieces, b);
        int p = 0;
        int blocks = 0;
        int blockTokens = 0;
        for (int s = 0; s < b; s++) {
            seqFirst[s] = p;
            final int e = batch.offset(s + 1);
            for (int t = batch.offset(s); t < e; t += PIECE_TOKENS) {
                if (blockTokens == 0) {
                    blockFirst[blocks++] = p;
                }
                start[p] = t;
                end[p] = Math.min(e, t + PIECE_TOKENS);
                seq[p] = s;
                blockTokens += end[p] - t;
                if (blockTokens >= BLOCK_TOKENS) {
                    blockTokens = 0;
                }
                p++;
            }
        }
        seqFirst[b] = p;
        blockFirst[blocks] = p;
        numPieces = p;
        numBlocks = blocks;
    }

    private void ensure(final int pieces, final int sequences) {
        if (start.length < pieces) {
            final int n = Math.max(pieces, start.length * 2);
            start = new int[n];
            end = new int[n];
            seq = new int[n];
        }
        if (blockFirst.length < pieces + 1) {
            blockFirst = new int[Math.max(pieces + 1, blockFirst.length * 2)];
        }
        if (seqFirst.length < sequences + 1) {
            seqFirst = new int[Math.max(sequences + 1, seqFirst.length * 2)];
        }
    }
}
