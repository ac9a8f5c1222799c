/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Test helpers for tshark's `-T fields -E header=y -E separator=/t -E aggregator=|` output
 * (the corpus's <name>.tsv files, or tshark run by a test): rows by column name, the
 * '|'-joined parts of a field, an address field as 16 bytes.
 * Not for running tshark, nor for deciding what a row means: the tests do that.
 */
#ifndef LOUPE_TEST_TSV_H
#define LOUPE_TEST_TSV_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct loupe_tsv {
	char *text;
	char **cols; /* header names */
	int ncols;
	char ***rows; /* rows[i][col], padded to ncols with "" */
	int nrows;
};

/*
 * Splits @text (owned by *@ret from now on, even on failure; NULL allowed) into a header
 * and rows; false when there is no header line. loupe_tsv_free() it either way.
 */
bool loupe_tsv_parse(char *text, struct loupe_tsv *ret);
void loupe_tsv_free(struct loupe_tsv *t);
/* The field of column @col in @row; NULL when there is no such column. */
const char *loupe_tsv_field(const struct loupe_tsv *t, int row, const char *col);

/* Number of '|'-separated parts of a tsv field; 0 for an empty field. */
int loupe_tsv_parts(const char *s);
/* Copies part @n (0-based) of a '|'-separated field into @out; "" when there is none. */
void loupe_tsv_part(const char *s, int n, char *out, size_t size);
/* An IPv6 or IPv4 address as 16 bytes, IPv4 mapped (::ffff:a.b.c.d); false if neither. */
bool loupe_tsv_addr(const char *s, uint8_t out[16]);

#endif
