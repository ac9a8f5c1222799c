// SPDX-License-Identifier: Apache-2.0
/*
 * tshark's tab-separated fields, read for the tests that compare loupe with tshark; see tsv.h.
 * Not for running tshark.
 */
#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <criterion/criterion.h>

#include "tsv.h"

static int split_tabs(char *line, char ***ret)
{
	char **v = NULL, *p = line, *tab;
	int n = 0;

	for (;;) {
		v = realloc(v, (n + 1) * sizeof(*v));
		cr_assert_not_null(v);
		tab = strchr(p, '\t');
		v[n++] = p;
		if (!tab)
			break;
		*tab = '\0';
		p = tab + 1;
	}
	*ret = v;
	return n;
}

bool loupe_tsv_parse(char *text, struct loupe_tsv *ret)
{
	char *line, *next, **fields;
	int n;

	memset(ret, 0, sizeof(*ret));
	ret->text = text;
	for (line = text; line && *line; line = next) {
		next = strchr(line, '\n');
		if (next)
			*next++ = '\0';
		n = split_tabs(line, &fields);
		if (!ret->cols) {
			ret->cols = fields;
			ret->ncols = n;
			continue;
		}
		/* tshark leaves trailing empty fields out: pad to the header */
		if (n < ret->ncols) {
			fields = realloc(fields, ret->ncols * sizeof(*fields));
			cr_assert_not_null(fields);
			while (n < ret->ncols)
				fields[n++] = "";
		}
		ret->rows = realloc(ret->rows, (ret->nrows + 1) * sizeof(*ret->rows));
		cr_assert_not_null(ret->rows);
		ret->rows[ret->nrows++] = fields;
	}
	return ret->cols != NULL;
}

void loupe_tsv_free(struct loupe_tsv *t)
{
	for (int i = 0; i < t->nrows; i++)
		free(t->rows[i]);
	free(t->rows);
	free(t->cols);
	free(t->text);
	memset(t, 0, sizeof(*t));
}

const char *loupe_tsv_field(const struct loupe_tsv *t, int row, const char *col)
{
	for (int i = 0; i < t->ncols; i++)
		if (strcmp(t->cols[i], col) == 0)
			return t->rows[row][i];
	return NULL;
}

int loupe_tsv_parts(const char *s)
{
	int n = 1;

	if (!*s)
		return 0;
	for (; *s; s++)
		n += *s == '|';
	return n;
}

void loupe_tsv_part(const char *s, int n, char *out, size_t size)
{
	const char *end;

	out[0] = '\0';
	if (!*s)
		return;
	while (n-- > 0) {
		s = strchr(s, '|');
		if (!s)
			return;
		s++;
	}
	end = strchr(s, '|');
	if (!end)
		end = s + strlen(s);
	snprintf(out, size, "%.*s", (int)(end - s), s);
}

bool loupe_tsv_addr(const char *s, uint8_t out[16])
{
	struct in_addr a4;

	if (inet_pton(AF_INET6, s, out) == 1)
		return true;
	if (inet_pton(AF_INET, s, &a4) != 1)
		return false;
	memset(out, 0, 10);
	out[10] = out[11] = 0xff;
	memcpy(out + 12, &a4, 4);
	return true;
}
