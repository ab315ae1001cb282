package io.rlvec.jmh.report;

import java.io.PrintStream;
import java.util.ArrayList;
import java.util.List;

/** A table of text cells, printed either aligned for a terminal or as a GitHub markdown table. */
final class Table {
    private final String[] headers;
    private final boolean[] rightAligned;
    private final List<String[]> rows = new ArrayList<>();

    /**
     * @param headers      column titles.
     * @param rightAligned per column, whether it holds numbers (right-aligned).
     */
    Table(final String[] headers, final boolean[] rightAligned) {
        if (headers.length != rightAligned.length) {
            throw new IllegalArgumentException("headers and rightAligned must have the same length");
        }
        this.headers = headers.clone();
        this.rightAligned = rightAligned.clone();
    }

    /** Appends a row of exactly one cell per column. */
    void add(final String... cells) {
        if (cells.length != headers.length) {
            throw new IllegalArgumentException("row has " + cells.length + " cells, the table " + headers.length);
        }
        rows.add(cells.clone());
    }

    boolean isEmpty() {
        return rows.isEmpty();
    }

    void print(final PrintStream out, final boolean markdown) {
        if (markdown) {
            printMarkdown(out);
        } else {
            printAligned(out);
        }
    }

    private void printAligned(final PrintStream out) {
        final int[] width = new int[headers.length];
        for (int c = 0; c < headers.length; c++) {
            width[c] = headers[c].length();
            for (final String[] r : rows) {
                width[c] = Math.max(width[c], r[c].length());
            }
        }
        out.println(line(headers, width));
        for (final String[] r : rows) {
            out.println(line(r, width));
        }
    }

    private String line(final String[] cells, final int[] width) {
        final StringBuilder sb = new StringBuilder();
        for (int c = 0; c < cells.length; c++) {
            if (c > 0) {
                sb.append("  ");
            }
            final String pad = " ".repeat(width[c] - cells[c].length());
            sb.append(rightAligned[c] ? pad + cells[c] : cells[c] + (c == cells.length - 1 ? "" : pad));
        }
        return sb.toString();
    }

    private void printMarkdown(final PrintStream out) {
        out.println(markdownLine(headers));
        final StringBuilder sep = new StringBuilder("|");
        for (final boolean right : rightAligned) {
            sep.append(right ? " ---: |" : " --- |");
        }
        out.println(sep);
        for (final String[] r : rows) {
            out.println(markdownLine(r));
        }
    }

    private static String markdownLine(final String[] cells) {
        final StringBuilder sb = new StringBuilder("|");
        for (final String c : cells) {
            sb.append(' ').append(c.replace("|", "\\|")).append(" |");
        }
        return sb.toString();
    }
}
