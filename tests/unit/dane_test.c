// SPDX-License-Identifier: GPL-2.0
/*
 * dane_test.c - host unit tests for the TLSA record walk in agent/dane.c.
 *
 * A TLSA set is packed as records of a 2-byte length and that many bytes of RDATA.
 * tlsa_next() hands each record to code that reads all of it (SSL_dane_tlsa_add), so
 * a record whose length runs past the set must end the walk, never be handed out.
 * Every set here lives in a heap buffer of exactly its length, and the test reads every
 * byte of every record it is given, as the callers do: under AddressSanitizer
 * (`make unit-asan`) a read past the set is reported where it happens.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "../harness.h"
#include "../../agent/agent.h"

/* What main.c defines for the stages; dane.o's other users in the archive want them. */
struct agent agent;

uint64_t now_ns(void)
{
	return 0;
}

/* A set whose records are exactly @len bytes from @bytes, ending its heap allocation. */
static struct tlsa_set *set_of(const void *bytes, size_t len, uint16_t n_records)
{
	struct tlsa_set *s = calloc(1, sizeof(*s) + len);

	s->outcome = TLSA_SECURE;
	s->n_records = n_records;
	if (len)
		memcpy(s->rdata, bytes, len);
	s->rdata_len = len;
	return s;
}

/* Append one record: its length field says @claimed, @have bytes of RDATA follow. */
static size_t put(uint8_t *buf, size_t off, uint16_t claimed, size_t have, uint8_t fill)
{
	memcpy(buf + off, &claimed, 2);
	memset(buf + off + 2, fill, have);
	return off + 2 + have;
}

struct walk {
	int n; /* records handed out */
	int end; /* what ended the walk */
	unsigned int sum; /* of every byte handed out: each one is read */
	bool inside; /* every record handed out lay inside the set */
};

static struct walk walk(const struct tlsa_set *s)
{
	struct walk w = { .inside = true };
	const uint8_t *rd;
	size_t off = 0;
	uint16_t len;
	int i;

	while (w.n < 16 && !(w.end = tlsa_next(s, &off, &rd, &len))) {
		/* What the callers do with a record: read all of it. */
		for (i = 0; i < len; i++)
			w.sum += rd[i];
		if (rd < s->rdata || rd + len > s->rdata + s->rdata_len)
			w.inside = false;
		w.n++;
	}
	return w;
}

TEST(well_formed_set_is_walked_record_by_record)
{
	uint8_t buf[64];
	size_t n = put(buf, 0, 35, 35, 1);
	struct tlsa_set *s;
	struct walk w;

	n = put(buf, n, 3, 3, 2);
	s = set_of(buf, n, 2);
	w = walk(s);
	EXPECT_EQ(2, w.n);
	EXPECT_EQ(-ENOENT, w.end);
	EXPECT_EQ(35U + 6U, w.sum);
	EXPECT_TRUE(w.inside);
	free(s);
}

TEST(empty_set_has_no_record)
{
	struct tlsa_set *s = set_of(NULL, 0, 0);
	struct walk w = walk(s);

	EXPECT_EQ(0, w.n);
	EXPECT_EQ(-ENOENT, w.end);
	free(s);
}

/* The last record says 40 bytes, 35 follow: the walk ends after the first record. */
TEST(last_record_running_past_the_set_ends_the_walk)
{
	uint8_t buf[128];
	size_t n = put(buf, 0, 35, 35, 1);
	struct tlsa_set *s;
	struct walk w;

	n = put(buf, n, 40, 35, 2);
	s = set_of(buf, n, 2);
	w = walk(s);
	EXPECT_EQ(1, w.n) TH_LOG("a record running past the set was handed out");
	EXPECT_TRUE(w.end == -ENOENT || w.end == -EBADMSG) TH_LOG("end %d", w.end);
	EXPECT_TRUE(w.inside);
	EXPECT_EQ(35U, w.sum);
	free(s);
}

/* One byte short is enough to be refused. */
TEST(only_record_one_byte_short_is_not_handed_out)
{
	uint8_t buf[64];
	size_t n = put(buf, 0, 36, 35, 7);
	struct tlsa_set *s = set_of(buf, n, 1);
	struct walk w = walk(s);

	EXPECT_EQ(0, w.n) TH_LOG("a record running past the set was handed out");
	EXPECT_TRUE(w.end == -ENOENT || w.end == -EBADMSG) TH_LOG("end %d", w.end);
	EXPECT_TRUE(w.inside);
	free(s);
}

/* Half a length field after a good record: the good one, then the end. */
TEST(trailing_byte_ends_the_walk)
{
	uint8_t buf[64];
	size_t n = put(buf, 0, 35, 35, 1);
	struct tlsa_set *s;
	struct walk w;

	buf[n++] = 9;
	s = set_of(buf, n, 1);
	w = walk(s);
	EXPECT_EQ(1, w.n);
	EXPECT_TRUE(w.end == -ENOENT || w.end == -EBADMSG) TH_LOG("end %d", w.end);
	EXPECT_TRUE(w.inside);
	free(s);
}

/* A walk that ended on a bad record stays ended. */
TEST(walk_stays_ended_after_a_bad_record)
{
	uint8_t buf[64];
	size_t n = put(buf, 0, 60, 10, 1), off = 0;
	struct tlsa_set *s = set_of(buf, n, 1);
	const uint8_t *rd;
	uint16_t len;
	int first, second;

	first = tlsa_next(s, &off, &rd, &len);
	second = tlsa_next(s, &off, &rd, &len);
	EXPECT_NE(0, first);
	EXPECT_NE(0, second);
	free(s);
}

DANCED_HARNESS_MAIN
