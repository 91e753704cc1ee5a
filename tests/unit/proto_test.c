// SPDX-License-Identifier: GPL-2.0
/*
 * proto_test.c - host unit tests for agent/lib/proto.c, the handoff message checks.
 *
 * Both ends run every received message through these checks before touching a field,
 * so each rule gets a hostile message of its own, and random and mutated messages
 * (each in a buffer of exactly its length, so valgrind sees any read past it) must be
 * refused unless an independent reading of dance.h says they are valid.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "../harness.h"
#include "../../agent/lib/dance.h"

static struct dance_request *request_new(void)
{
	struct dance_request *r = calloc(1, sizeof(*r));

	dance_hdr_init(&r->hdr, DANCE_MSG_HANDSHAKE);
	r->id = 7;
	strcpy(r->service, "web");
	return r;
}

static struct dance_result *result_new(uint32_t pending_len)
{
	struct dance_result *r = calloc(1, sizeof(*r));

	dance_hdr_init(&r->hdr, DANCE_MSG_RESULT);
	r->id = 7;
	r->tls_version = 0x0304;
	r->pending_len = pending_len;
	strcpy(r->reason, "ok");
	strcpy(r->cipher_name, "TLS_AES_128_GCM_SHA256");
	memset(r->pending, 'p', pending_len);
	return r;
}

static size_t result_len(const struct dance_result *r)
{
	return DANCE_RESULT_HDR_LEN + r->pending_len;
}

static void ready_init(struct dance_ready *r, uint32_t n)
{
	memset(r, 0, sizeof(*r));
	dance_hdr_init(&r->hdr, DANCE_MSG_READY);
	r->n = n;
}

typedef int (*check_fn)(const void *msg, size_t len, const char **why);

/* The check refuses with @err and says why; it accepts with 0 and why == NULL. */
static void expect_check(struct __test_metadata *_metadata, int line, int err, check_fn check,
			 const void *msg, size_t len)
{
	const char *why = "unset";
	int ret = check(msg, len, &why);

	EXPECT_EQ(err, ret) TH_LOG("line %d, len %zu: %s", line, len, why ? why : "(null)");
	if (err) {
		EXPECT_TRUE(why && why[0] && strcmp(why, "unset")) TH_LOG("line %d", line);
	} else {
		EXPECT_EQ(NULL, why) TH_LOG("line %d", line);
	}
}

#define EXPECT_CHECK(err, check, msg, len) expect_check(_metadata, __LINE__, err, check, msg, len)

TEST(hdr_init_writes_magic_version_type)
{
	struct dance_hdr h;

	memset(&h, 0xff, sizeof(h));
	dance_hdr_init(&h, DANCE_MSG_READY);
	EXPECT_EQ(DANCE_MAGIC, h.magic);
	EXPECT_EQ(DANCE_PROTO_VERSION, h.version);
	EXPECT_EQ(DANCE_MSG_READY, h.type);
	/* "DANC" in memory is what a hexdump of the socket traffic shows. */
	EXPECT_EQ(0, memcmp(&h.magic, "DANC", 4));
}

TEST(request_accepts_valid_server_and_client_requests)
{
	struct dance_request *r = request_new();

	EXPECT_CHECK(0, dance_request_check, r, sizeof(*r));
	r->service[0] = '\0'; /* pick by SNI */
	EXPECT_CHECK(0, dance_request_check, r, sizeof(*r));
	r->flags = DANCE_REQ_CLIENT;
	strcpy(r->peer_name, "example.com");
	strcpy(r->alpn, "h2,http/1.1");
	r->timeout_ms = 0xffffffff;
	r->id = 0;
	EXPECT_CHECK(0, dance_request_check, r, sizeof(*r));
	/* Fields filled to the last byte before their NUL still fit. */
	memset(r->service, 'S', sizeof(r->service) - 1);
	memset(r->peer_name, 'P', sizeof(r->peer_name) - 1);
	memset(r->alpn, 'A', sizeof(r->alpn) - 1);
	EXPECT_CHECK(0, dance_request_check, r, sizeof(*r));
	free(r);
}

TEST(request_refuses_wrong_lengths)
{
	struct dance_request *r = request_new();
	uint8_t *big = calloc(1, sizeof(*r) + 64);
	size_t lens[] = { 0,
			  1,
			  4,
			  sizeof(struct dance_hdr) - 1,
			  sizeof(struct dance_hdr),
			  offsetof(struct dance_request, service),
			  sizeof(*r) - 1 };
	size_t i;

	for (i = 0; i < sizeof(lens) / sizeof(lens[0]); i++)
		EXPECT_CHECK(-EBADMSG, dance_request_check, r, lens[i]);
	memcpy(big, r, sizeof(*r));
	EXPECT_CHECK(-EBADMSG, dance_request_check, big, sizeof(*r) + 1);
	EXPECT_CHECK(-EBADMSG, dance_request_check, big, sizeof(*r) + 64);
	free(big);
	free(r);
}

TEST(request_refuses_bad_header)
{
	struct dance_request *r = request_new();
	static const uint16_t versions[] = { 0, DANCE_PROTO_VERSION - 1, DANCE_PROTO_VERSION + 1,
					     65535 };
	static const uint16_t types[] = {
		0, DANCE_MSG_RESULT, DANCE_MSG_READY, DANCE_MSG_ACCEPTED, 5, 65535
	};
	size_t i;

	r->hdr.magic = 0x434e4145;
	EXPECT_CHECK(-EPROTO, dance_request_check, r, sizeof(*r));
	r->hdr.magic = __builtin_bswap32(DANCE_MAGIC); /* the other byte order */
	EXPECT_CHECK(-EPROTO, dance_request_check, r, sizeof(*r));
	r->hdr.magic = DANCE_MAGIC;
	for (i = 0; i < sizeof(versions) / sizeof(versions[0]); i++) {
		r->hdr.version = versions[i];
		EXPECT_CHECK(-EPROTONOSUPPORT, dance_request_check, r, sizeof(*r));
	}
	r->hdr.version = DANCE_PROTO_VERSION;
	for (i = 0; i < sizeof(types) / sizeof(types[0]); i++) {
		r->hdr.type = types[i];
		EXPECT_CHECK(-EOPNOTSUPP, dance_request_check, r, sizeof(*r));
	}
	free(r);
}

TEST(request_refuses_unterminated_strings)
{
	struct dance_request *r = request_new();

	memset(r->service, 'A', sizeof(r->service));
	EXPECT_CHECK(-EINVAL, dance_request_check, r, sizeof(*r));
	free(r);
	r = request_new();
	r->flags = DANCE_REQ_CLIENT;
	memset(r->peer_name, 'A', sizeof(r->peer_name));
	EXPECT_CHECK(-EINVAL, dance_request_check, r, sizeof(*r));
	free(r);
	r = request_new();
	memset(r->alpn, 'A', sizeof(r->alpn));
	EXPECT_CHECK(-EINVAL, dance_request_check, r, sizeof(*r));
	free(r);
}

TEST(request_refuses_unknown_flags)
{
	struct dance_request *r = request_new();
	int bit;

	strcpy(r->peer_name, "example.com");
	for (bit = 1; bit < 32; bit++) {
		r->flags = 1u << bit;
		EXPECT_CHECK(-EINVAL, dance_request_check, r, sizeof(*r));
		r->flags |= DANCE_REQ_CLIENT;
		EXPECT_CHECK(-EINVAL, dance_request_check, r, sizeof(*r));
	}
	free(r);
}

TEST(request_refuses_client_without_peer_name)
{
	struct dance_request *r = request_new();

	r->flags = DANCE_REQ_CLIENT;
	EXPECT_CHECK(-EINVAL, dance_request_check, r, sizeof(*r));
	/* Bytes after an empty name's NUL do not make it a name. */
	strcpy(r->peer_name + 1, "example.com");
	EXPECT_CHECK(-EINVAL, dance_request_check, r, sizeof(*r));
	free(r);
}

TEST(result_accepts_valid_results)
{
	struct dance_result *r = result_new(0);

	EXPECT_CHECK(0, dance_result_check, r, result_len(r));
	r->status = -ETIMEDOUT;
	strcpy(r->reason, "handshake timed out");
	EXPECT_CHECK(0, dance_result_check, r, result_len(r));
	r->status = -2147483647 - 1;
	EXPECT_CHECK(0, dance_result_check, r, result_len(r));
	free(r);

	r = result_new(5);
	EXPECT_CHECK(0, dance_result_check, r, result_len(r));
	r->hdr.type = DANCE_MSG_ACCEPTED;
	EXPECT_CHECK(0, dance_result_check, r, result_len(r));
	free(r);

	r = result_new(DANCE_PENDING_MAX);
	EXPECT_CHECK(0, dance_result_check, r, sizeof(*r));
	memset(r->peer_names, 'n', sizeof(r->peer_names) - 1);
	memset(r->peer_subject, 's', sizeof(r->peer_subject) - 1);
	EXPECT_CHECK(0, dance_result_check, r, sizeof(*r));
	free(r);
}

TEST(result_refuses_wrong_lengths)
{
	struct dance_result *r = result_new(5);
	size_t lens[] = { 0,
			  3,
			  sizeof(struct dance_hdr) - 1,
			  sizeof(struct dance_hdr),
			  offsetof(struct dance_result, pending_len),
			  DANCE_RESULT_HDR_LEN - 1,
			  DANCE_RESULT_HDR_LEN,
			  DANCE_RESULT_HDR_LEN + 4,
			  DANCE_RESULT_HDR_LEN + 6,
			  sizeof(*r) };
	size_t i;

	for (i = 0; i < sizeof(lens) / sizeof(lens[0]); i++)
		EXPECT_CHECK(-EBADMSG, dance_result_check, r, lens[i]);
	free(r);
}

TEST(result_refuses_pending_len_past_the_message_or_the_limit)
{
	struct dance_result *r = result_new(0);
	uint8_t *big = calloc(1, sizeof(*r) + 16);

	/* More pending bytes announced than sent. */
	r->pending_len = 100;
	EXPECT_CHECK(-EBADMSG, dance_result_check, r, DANCE_RESULT_HDR_LEN + 99);
	EXPECT_CHECK(-EBADMSG, dance_result_check, r, DANCE_RESULT_HDR_LEN);
	/* Over the limit, even when the length agrees. */
	r->pending_len = DANCE_PENDING_MAX + 1;
	memcpy(big, r, DANCE_RESULT_HDR_LEN);
	EXPECT_CHECK(-EBADMSG, dance_result_check, big,
		     DANCE_RESULT_HDR_LEN + DANCE_PENDING_MAX + 1);
	/* Lengths that would wrap a 32-bit sum. */
	r->pending_len = 0xffffffff;
	EXPECT_CHECK(-EBADMSG, dance_result_check, r, sizeof(*r));
	r->pending_len = 0xffffffff - DANCE_RESULT_HDR_LEN + 1;
	EXPECT_CHECK(-EBADMSG, dance_result_check, r, 0);
	EXPECT_CHECK(-EBADMSG, dance_result_check, r, sizeof(*r));
	free(big);
	free(r);
}

TEST(result_refuses_bad_header)
{
	struct dance_result *r = result_new(0);
	static const uint16_t versions[] = { 0, DANCE_PROTO_VERSION - 1, DANCE_PROTO_VERSION + 1,
					     65535 };
	static const uint16_t types[] = { 0, DANCE_MSG_HANDSHAKE, DANCE_MSG_READY, 5, 65535 };
	size_t i;

	r->hdr.magic = 0;
	EXPECT_CHECK(-EPROTO, dance_result_check, r, result_len(r));
	r->hdr.magic = DANCE_MAGIC;
	for (i = 0; i < sizeof(versions) / sizeof(versions[0]); i++) {
		r->hdr.version = versions[i];
		EXPECT_CHECK(-EPROTONOSUPPORT, dance_result_check, r, result_len(r));
	}
	r->hdr.version = DANCE_PROTO_VERSION;
	for (i = 0; i < sizeof(types) / sizeof(types[0]); i++) {
		r->hdr.type = types[i];
		EXPECT_CHECK(-EOPNOTSUPP, dance_result_check, r, result_len(r));
	}
	free(r);
}

TEST(result_refuses_unterminated_strings)
{
	static const size_t fields[][2] = {
		{ offsetof(struct dance_result, reason), DANCE_REASON_MAX },
		{ offsetof(struct dance_result, service), DANCE_NAME_MAX },
		{ offsetof(struct dance_result, cipher_name), DANCE_NAME_MAX },
		{ offsetof(struct dance_result, group), DANCE_NAME_MAX },
		{ offsetof(struct dance_result, alpn), DANCE_ALPN_MAX },
		{ offsetof(struct dance_result, sni), DANCE_HOST_MAX },
		{ offsetof(struct dance_result, peer_subject), DANCE_SUBJECT_MAX },
		{ offsetof(struct dance_result, peer_names), DANCE_NAMES_MAX },
		{ offsetof(struct dance_result, verified_name), DANCE_HOST_MAX },
	};
	size_t i;

	for (i = 0; i < sizeof(fields) / sizeof(fields[0]); i++) {
		struct dance_result *r = result_new(3);

		memset((char *)r + fields[i][0], 'A', fields[i][1]);
		EXPECT_CHECK(-EINVAL, dance_result_check, r, result_len(r));
		r->hdr.type = DANCE_MSG_ACCEPTED;
		EXPECT_CHECK(-EINVAL, dance_result_check, r, result_len(r));
		free(r);
	}
}

TEST(result_refuses_positive_status)
{
	struct dance_result *r = result_new(0);

	r->status = 1;
	EXPECT_CHECK(-EINVAL, dance_result_check, r, result_len(r));
	r->status = 2147483647;
	EXPECT_CHECK(-EINVAL, dance_result_check, r, result_len(r));
	free(r);
}

TEST(ready_accepts_valid_and_refuses_the_rest)
{
	struct dance_ready *r = malloc(sizeof(*r));
	uint8_t big[sizeof(*r) + 8];

	ready_init(r, 1);
	EXPECT_CHECK(0, dance_ready_check, r, sizeof(*r));
	r->n = 0xffffffff;
	EXPECT_CHECK(0, dance_ready_check, r, sizeof(*r));
	r->n = 0;
	EXPECT_CHECK(-EINVAL, dance_ready_check, r, sizeof(*r));
	r->n = 16;
	EXPECT_CHECK(-EBADMSG, dance_ready_check, r, 0);
	EXPECT_CHECK(-EBADMSG, dance_ready_check, r, sizeof(struct dance_hdr) - 1);
	EXPECT_CHECK(-EBADMSG, dance_ready_check, r, sizeof(struct dance_hdr));
	EXPECT_CHECK(-EBADMSG, dance_ready_check, r, sizeof(*r) - 1);
	memset(big, 0, sizeof(big));
	memcpy(big, r, sizeof(*r));
	EXPECT_CHECK(-EBADMSG, dance_ready_check, big, sizeof(big));
	r->hdr.magic = 1;
	EXPECT_CHECK(-EPROTO, dance_ready_check, r, sizeof(*r));
	r->hdr.magic = DANCE_MAGIC;
	r->hdr.version = DANCE_PROTO_VERSION + 1;
	EXPECT_CHECK(-EPROTONOSUPPORT, dance_ready_check, r, sizeof(*r));
	r->hdr.version = 0;
	EXPECT_CHECK(-EPROTONOSUPPORT, dance_ready_check, r, sizeof(*r));
	r->hdr.version = DANCE_PROTO_VERSION;
	r->hdr.type = DANCE_MSG_ACCEPTED;
	EXPECT_CHECK(-EOPNOTSUPP, dance_ready_check, r, sizeof(*r));
	r->hdr.type = DANCE_MSG_HANDSHAKE;
	EXPECT_CHECK(-EOPNOTSUPP, dance_ready_check, r, sizeof(*r));
	free(r);
}

/* An exported-authenticator message as libdance sends it: the fixed part, then data. */
static struct dance_ea *ea_new(uint32_t op, uint32_t req_len, uint32_t auth_len)
{
	struct dance_ea *m = calloc(1, sizeof(*m) + 1);

	dance_hdr_init(&m->hdr, DANCE_MSG_EA);
	m->op = op;
	m->request_len = req_len;
	m->auth_len = auth_len;
	return m;
}

TEST(ea_accepts_each_operation_with_its_data)
{
	struct dance_ea *m = ea_new(DANCE_EA_REQUEST, 0, 0);
	const char *why;

	EXPECT_EQ(0, dance_ea_check(m, DANCE_EA_HDR_LEN, &why));
	strcpy(m->server_name, "upstream.example");
	m->flags = DANCE_EA_DANE;
	EXPECT_EQ(0, dance_ea_check(m, DANCE_EA_HDR_LEN, &why));
	m->op = DANCE_EA_AUTHENTICATE;
	m->request_len = 100;
	EXPECT_EQ(0, dance_ea_check(m, DANCE_EA_HDR_LEN + 100, &why));
	m->op = DANCE_EA_VALIDATE;
	m->auth_len = DANCE_EA_DATA_MAX - 100;
	EXPECT_EQ(0, dance_ea_check(m, sizeof(*m), &why));
	m->op = DANCE_EA_FORGET;
	m->request_len = m->auth_len = 0;
	EXPECT_EQ(0, dance_ea_check(m, DANCE_EA_HDR_LEN, &why));
	/* Post-handshake authentication: no server_name; validation needs both parts. */
	m->op = DANCE_EA_PHA_REQUEST;
	EXPECT_EQ(-EINVAL, dance_ea_check(m, DANCE_EA_HDR_LEN, &why));
	EXPECT_NE(NULL, strstr(why, "server_name"));
	m->server_name[0] = '\0';
	EXPECT_EQ(0, dance_ea_check(m, DANCE_EA_HDR_LEN, &why));
	m->op = DANCE_EA_PHA_VALIDATE;
	m->auth_len = 100;
	EXPECT_EQ(-EINVAL, dance_ea_check(m, DANCE_EA_HDR_LEN + 100, &why));
	m->request_len = 50;
	EXPECT_EQ(0, dance_ea_check(m, DANCE_EA_HDR_LEN + 150, &why));
	m->op = DANCE_EA_PHA_ANSWER;
	EXPECT_EQ(-EINVAL, dance_ea_check(m, DANCE_EA_HDR_LEN + 150, &why));
	m->auth_len = 0;
	EXPECT_EQ(0, dance_ea_check(m, DANCE_EA_HDR_LEN + 50, &why));
	m->op = DANCE_EA_PHA_ANSWER + 1;
	EXPECT_EQ(-EINVAL, dance_ea_check(m, DANCE_EA_HDR_LEN + 50, &why));
	free(m);
}

TEST(ea_refuses_what_does_not_add_up)
{
	struct dance_ea *m = ea_new(DANCE_EA_VALIDATE, 1, DANCE_EA_DATA_MAX);
	const char *why = NULL;

	/* Each length within the limit, together one byte over: the message is exactly
	 * one byte longer than the struct, which a receive buffer of sizeof + 1 takes. */
	EXPECT_EQ(-EMSGSIZE, dance_ea_check(m, DANCE_EA_HDR_LEN + 1 + DANCE_EA_DATA_MAX, &why));
	EXPECT_NE(NULL, why);
	m->request_len = 0xffffffffu; /* and no wrap-around */
	m->auth_len = 2;
	EXPECT_EQ(-EMSGSIZE, dance_ea_check(m, DANCE_EA_HDR_LEN + 1, &why));
	m->request_len = 10;
	m->auth_len = 10;
	EXPECT_EQ(-EBADMSG, dance_ea_check(m, DANCE_EA_HDR_LEN + 19, &why));
	EXPECT_EQ(-EBADMSG, dance_ea_check(m, DANCE_EA_HDR_LEN - 1, &why));
	EXPECT_EQ(0, dance_ea_check(m, DANCE_EA_HDR_LEN + 20, &why));
	m->auth_len = 0; /* nothing to validate */
	EXPECT_EQ(-EINVAL, dance_ea_check(m, DANCE_EA_HDR_LEN + 10, &why));
	m->op = DANCE_EA_AUTHENTICATE; /* authenticators are not made from one */
	m->auth_len = 5;
	EXPECT_EQ(-EINVAL, dance_ea_check(m, DANCE_EA_HDR_LEN + 15, &why));
	m->op = DANCE_EA_REQUEST; /* requests take no data */
	m->request_len = m->auth_len = 0;
	m->flags = DANCE_EA_DANE | DANCE_EA_NO_DANE;
	EXPECT_EQ(-EINVAL, dance_ea_check(m, DANCE_EA_HDR_LEN, &why));
	m->flags = 1u << 9;
	EXPECT_EQ(-EINVAL, dance_ea_check(m, DANCE_EA_HDR_LEN, &why));
	m->flags = 0;
	m->op = 9;
	EXPECT_EQ(-EINVAL, dance_ea_check(m, DANCE_EA_HDR_LEN, &why));
	m->op = DANCE_EA_REQUEST;
	memset(m->server_name, 'a', sizeof(m->server_name));
	EXPECT_EQ(-EINVAL, dance_ea_check(m, DANCE_EA_HDR_LEN, &why));
	free(m);
}

TEST(each_check_refuses_the_other_messages)
{
	struct dance_request *req = request_new();
	struct dance_result *res = result_new(0);
	struct dance_ready ready;

	ready_init(&ready, 1);
	EXPECT_CHECK(-EOPNOTSUPP, dance_request_check, res, result_len(res));
	EXPECT_CHECK(-EOPNOTSUPP, dance_request_check, &ready, sizeof(ready));
	EXPECT_CHECK(-EOPNOTSUPP, dance_result_check, req, sizeof(*req));
	EXPECT_CHECK(-EOPNOTSUPP, dance_result_check, &ready, sizeof(ready));
	EXPECT_CHECK(-EOPNOTSUPP, dance_ready_check, req, sizeof(*req));
	EXPECT_CHECK(-EOPNOTSUPP, dance_ready_check, res, result_len(res));
	free(req);
	free(res);
}

/* ---- random and mutated messages ------------------------------------------------ */

static uint64_t rnd_state = 0x243f6a8885a308d3ull;

static uint64_t rnd(void)
{
	/* xorshift64*: the same sequence on every run, so a failure can be replayed. */
	rnd_state ^= rnd_state >> 12;
	rnd_state ^= rnd_state << 25;
	rnd_state ^= rnd_state >> 27;
	return rnd_state * 0x2545f4914f6cdd1dull;
}

static bool has_nul(const char *s, size_t max)
{
	return memchr(s, 0, max) != NULL;
}

static bool hdr_ok(const uint8_t *m, size_t len, uint16_t type)
{
	struct dance_hdr h;

	if (len < sizeof(h))
		return false;
	memcpy(&h, m, sizeof(h));
	return h.magic == DANCE_MAGIC && h.version == DANCE_PROTO_VERSION && h.type == type;
}

/* dance.h read again, independently of proto.c: is this a valid request? */
static bool oracle_request(const uint8_t *m, size_t len)
{
	struct dance_request r;

	if (!hdr_ok(m, len, DANCE_MSG_HANDSHAKE) || len != sizeof(r))
		return false;
	memcpy(&r, m, sizeof(r));
	return (r.flags | DANCE_REQ_CLIENT) == DANCE_REQ_CLIENT &&
	       has_nul(r.service, sizeof(r.service)) && has_nul(r.peer_name, sizeof(r.peer_name)) &&
	       has_nul(r.alpn, sizeof(r.alpn)) && (!(r.flags & DANCE_REQ_CLIENT) || r.peer_name[0]);
}

static bool oracle_result(const uint8_t *m, size_t len)
{
	static struct dance_result r;

	if (!hdr_ok(m, len, DANCE_MSG_RESULT) && !hdr_ok(m, len, DANCE_MSG_ACCEPTED) &&
	    !hdr_ok(m, len, DANCE_MSG_EA_RESULT))
		return false;
	if (len < DANCE_RESULT_HDR_LEN || len > sizeof(r))
		return false;
	memcpy(&r, m, len);
	return len - DANCE_RESULT_HDR_LEN == r.pending_len && r.status <= 0 &&
	       has_nul(r.reason, sizeof(r.reason)) && has_nul(r.service, sizeof(r.service)) &&
	       has_nul(r.cipher_name, sizeof(r.cipher_name)) && has_nul(r.alpn, sizeof(r.alpn)) &&
	       has_nul(r.sni, sizeof(r.sni)) && has_nul(r.peer_subject, sizeof(r.peer_subject)) &&
	       has_nul(r.peer_names, sizeof(r.peer_names)) &&
	       has_nul(r.verified_name, sizeof(r.verified_name));
}

static bool oracle_ea(const uint8_t *m, size_t len)
{
	static struct dance_ea e;
	bool takes_data, pha;

	if (!hdr_ok(m, len, DANCE_MSG_EA) || len < DANCE_EA_HDR_LEN || len > sizeof(e))
		return false;
	memcpy(&e, m, len);
	takes_data = e.op == DANCE_EA_AUTHENTICATE || e.op == DANCE_EA_VALIDATE ||
		     e.op == DANCE_EA_PHA_VALIDATE || e.op == DANCE_EA_PHA_ANSWER;
	pha = e.op >= DANCE_EA_PHA_REQUEST;
	return (uint64_t)e.request_len + e.auth_len <= DANCE_EA_DATA_MAX &&
	       (uint64_t)DANCE_EA_HDR_LEN + e.request_len + e.auth_len == len &&
	       e.op >= DANCE_EA_REQUEST && e.op <= DANCE_EA_PHA_ANSWER &&
	       (e.op != DANCE_EA_PHA_ANSWER || (e.request_len && !e.auth_len)) &&
	       (!pha || !e.server_name[0]) &&
	       (e.op != DANCE_EA_PHA_VALIDATE || (e.request_len && e.auth_len)) &&
	       !(e.flags & ~(DANCE_EA_DANE | DANCE_EA_NO_DANE | DANCE_EA_REFUSE)) &&
	       (e.flags & (DANCE_EA_DANE | DANCE_EA_NO_DANE)) !=
		       (DANCE_EA_DANE | DANCE_EA_NO_DANE) &&
	       has_nul(e.server_name, sizeof(e.server_name)) &&
	       (takes_data || (!e.request_len && !e.auth_len)) &&
	       (e.op != DANCE_EA_AUTHENTICATE || !e.auth_len) &&
	       (e.op != DANCE_EA_VALIDATE || e.auth_len);
}

static bool oracle_ready(const uint8_t *m, size_t len)
{
	struct dance_ready r;

	if (!hdr_ok(m, len, DANCE_MSG_READY) || len != sizeof(r))
		return false;
	memcpy(&r, m, sizeof(r));
	return r.n != 0;
}

/* Run all three checks on @len bytes in a buffer of exactly that size. */
static void check_all(struct __test_metadata *_metadata, const uint8_t *src, size_t len,
		      int *accepted)
{
	uint8_t *m = malloc(len ? len : 1);
	const char *why;
	int ret;

	memcpy(m, src, len);
	ret = dance_request_check(m, len, &why);
	ASSERT_EQ(oracle_request(m, len), ret == 0) TH_LOG("request len %zu: %d", len, ret);
	ASSERT_TRUE(ret == 0 || (ret < 0 && why));
	*accepted += !ret;
	ret = dance_result_check(m, len, &why);
	ASSERT_EQ(oracle_result(m, len), ret == 0) TH_LOG("result len %zu: %d", len, ret);
	ASSERT_TRUE(ret == 0 || (ret < 0 && why));
	*accepted += !ret;
	ret = dance_ready_check(m, len, &why);
	ASSERT_EQ(oracle_ready(m, len), ret == 0) TH_LOG("ready len %zu: %d", len, ret);
	ASSERT_TRUE(ret == 0 || (ret < 0 && why));
	*accepted += !ret;
	ret = dance_ea_check(m, len, &why);
	ASSERT_EQ(oracle_ea(m, len), ret == 0) TH_LOG("ea len %zu: %d", len, ret);
	ASSERT_TRUE(ret == 0 || (ret < 0 && why));
	*accepted += !ret;
	free(m);
}

TEST(random_buffers_are_refused)
{
	static uint8_t buf[sizeof(struct dance_result) + 64];
	int i, accepted = 0;
	size_t len, j;

	for (i = 0; i < 100000; i++) {
		/* Mostly short lengths, where every branch of the header checks lives. */
		len = rnd() % (i % 4 ? 64 : sizeof(buf));
		for (j = 0; j < len; j++)
			buf[j] = rnd();
		check_all(_metadata, buf, len, &accepted);
	}
	EXPECT_EQ(0, accepted);
}

TEST(mutated_messages_are_refused_unless_still_valid)
{
	static uint8_t buf[sizeof(struct dance_result) + 64];
	struct dance_request *req = request_new();
	struct dance_result *res = result_new(40);
	struct dance_ea *ea = calloc(1, sizeof(*ea));
	struct dance_ready ready;
	int i, k, flips, accepted = 0;
	size_t len, pos;

	strcpy(req->peer_name, "example.com");
	ready_init(&ready, 3);
	dance_hdr_init(&ea->hdr, DANCE_MSG_EA);
	ea->op = DANCE_EA_VALIDATE;
	ea->request_len = 20;
	ea->auth_len = 40;
	for (i = 0; i < 100000; i++) {
		switch (i % 4) {
		case 0:
			len = sizeof(*req);
			memcpy(buf, req, len);
			break;
		case 1:
			len = result_len(res);
			memcpy(buf, res, len);
			break;
		case 2:
			len = DANCE_EA_HDR_LEN + ea->request_len + ea->auth_len;
			memcpy(buf, ea, len);
			break;
		default:
			len = sizeof(ready);
			memcpy(buf, &ready, len);
			break;
		}
		/* Flip a few bytes, mostly in the header and the fields after it. */
		flips = rnd() % 4;
		for (k = 0; k < flips; k++) {
			pos = rnd() % (rnd() % 2 ? 32 : len);
			buf[pos] = rnd() % 3 ? rnd() : 0;
		}
		if (rnd() % 4 == 0)
			len = (len + rnd() % 9 - 4) % sizeof(buf);
		check_all(_metadata, buf, len, &accepted);
	}
	/* Some mutations leave a message valid (a byte of pending data, a flipped id). */
	EXPECT_LT(0, accepted);
	EXPECT_LT(accepted, 100000);
	free(req);
	free(res);
	free(ea);
}

DANCED_HARNESS_MAIN
