// SPDX-License-Identifier: GPL-2.0
/*
 * proto.c - validation of handoff messages, shared by danced and libdance.
 *
 * A message is accepted only when its length, magic, version and type are exactly what
 * dance.h says and every string is NUL-terminated inside its field; anything else gets
 * its own errno and a sentence, so a peer speaking the protocol wrongly learns how.
 */
#include <errno.h>
#include <stdbool.h>
#include <string.h>

#include "dance.h"

/* The wire form is the struct itself: no padding may hide in it. */
_Static_assert(DANCE_RESULT_HDR_LEN % 8 == 0 &&
		       sizeof(struct dance_result) == DANCE_RESULT_HDR_LEN + DANCE_PENDING_MAX,
	       "struct dance_result has padding");

void dance_hdr_init(struct dance_hdr *h, enum dance_msg_type type)
{
	h->magic = DANCE_MAGIC;
	h->version = DANCE_PROTO_VERSION;
	h->type = type;
}

#define DANCE_STR_(x) #x
#define DANCE_STR(x) DANCE_STR_(x)

static int hdr_check(const void *msg, size_t len, enum dance_msg_type type, const char **why)
{
	struct dance_hdr h;

	*why = "truncated message: shorter than the protocol header";
	if (len < sizeof(h))
		return -EBADMSG;
	memcpy(&h, msg, sizeof(h));
	*why = "not a danced handoff message (bad magic)";
	if (h.magic != DANCE_MAGIC)
		return -EPROTO;
	*why = "unsupported handoff protocol version (this danced speaks version " DANCE_STR(
		DANCE_PROTO_VERSION) ")";
	if (h.version != DANCE_PROTO_VERSION)
		return -EPROTONOSUPPORT;
	*why = "unexpected message type";
	if (h.type != type)
		return -EOPNOTSUPP;
	return 0;
}

static bool terminated(const char *s, size_t max)
{
	return memchr(s, '\0', max) != NULL;
}

/**
 * dance_request_check - validate a DANCE_MSG_HANDSHAKE as received
 * @len: the datagram's length (a longer datagram was cut and must be refused before)
 *
 * Return: 0, or -EBADMSG (truncated or wrong size), -EPROTO (magic), -EPROTONOSUPPORT
 * (version), -EOPNOTSUPP (type), -EINVAL (unterminated string, unknown flag, or a client
 * request without a peer name), with @why set.
 */
int dance_request_check(const void *msg, size_t len, const char **why)
{
	const struct dance_request *r = msg;
	int ret = hdr_check(msg, len, DANCE_MSG_HANDSHAKE, why);

	if (ret)
		return ret;
	*why = "truncated handshake request";
	if (len < sizeof(*r))
		return -EBADMSG;
	*why = "oversized handshake request";
	if (len > sizeof(*r))
		return -EBADMSG;
	*why = "unknown request flags";
	if (r->flags & ~DANCE_REQ_CLIENT)
		return -EINVAL;
	*why = "a string field of the request is not NUL-terminated";
	if (!terminated(r->service, sizeof(r->service)) ||
	    !terminated(r->peer_name, sizeof(r->peer_name)) ||
	    !terminated(r->alpn, sizeof(r->alpn)))
		return -EINVAL;
	*why = "a client-role request needs peer_name (the server to verify)";
	if ((r->flags & DANCE_REQ_CLIENT) && !r->peer_name[0])
		return -EINVAL;
	*why = NULL;
	return 0;
}

/**
 * dance_result_check - validate a DANCE_MSG_RESULT or DANCE_MSG_ACCEPTED as received
 *
 * Return: 0, or the errors of dance_request_check() with @why set.
 */
int dance_result_check(const void *msg, size_t len, const char **why)
{
	const struct dance_result *r = msg;
	struct dance_hdr h;
	int ret;

	*why = "truncated message: shorter than the protocol header";
	if (len < sizeof(h))
		return -EBADMSG;
	memcpy(&h, msg, sizeof(h));
	ret = hdr_check(msg, len,
			h.type == DANCE_MSG_ACCEPTED  ? DANCE_MSG_ACCEPTED :
			h.type == DANCE_MSG_EA_RESULT ? DANCE_MSG_EA_RESULT :
							DANCE_MSG_RESULT,
			why);
	if (ret)
		return ret;
	*why = "truncated result";
	if (len < DANCE_RESULT_HDR_LEN)
		return -EBADMSG;
	*why = "result length does not match its pending_len";
	if (r->pending_len > DANCE_PENDING_MAX || len != DANCE_RESULT_HDR_LEN + r->pending_len)
		return -EBADMSG;
	*why = "a string field of the result is not NUL-terminated";
	if (!terminated(r->reason, sizeof(r->reason)) ||
	    !terminated(r->service, sizeof(r->service)) ||
	    !terminated(r->cipher_name, sizeof(r->cipher_name)) ||
	    !terminated(r->group, sizeof(r->group)) || !terminated(r->alpn, sizeof(r->alpn)) ||
	    !terminated(r->sni, sizeof(r->sni)) ||
	    !terminated(r->peer_subject, sizeof(r->peer_subject)) ||
	    !terminated(r->peer_names, sizeof(r->peer_names)) ||
	    !terminated(r->verified_name, sizeof(r->verified_name)))
		return -EINVAL;
	*why = "status is positive; errors are negative errnos";
	if (r->status > 0)
		return -EINVAL;
	*why = NULL;
	return 0;
}

/**
 * dance_ready_check - validate a DANCE_MSG_READY as received
 *
 * Return: 0, or the errors of dance_request_check() with @why set.
 */
int dance_ready_check(const void *msg, size_t len, const char **why)
{
	const struct dance_ready *r = msg;
	int ret = hdr_check(msg, len, DANCE_MSG_READY, why);

	if (ret)
		return ret;
	*why = "ready message has the wrong size";
	if (len != sizeof(*r))
		return -EBADMSG;
	*why = "ready message offers no room (n = 0)";
	if (!r->n)
		return -EINVAL;
	*why = NULL;
	return 0;
}

/**
 * dance_ea_check - validate a DANCE_MSG_EA as received
 *
 * Return: 0, or the errors of dance_request_check() with @why set; -EMSGSIZE when the
 * lengths do not add up to the message.
 */
int dance_ea_check(const void *msg, size_t len, const char **why)
{
	const struct dance_ea *m = msg;
	int ret = hdr_check(msg, len, DANCE_MSG_EA, why);

	if (ret)
		return ret;
	*why = "truncated exported-authenticator request";
	if (len < DANCE_EA_HDR_LEN)
		return -EBADMSG;
	*why = "request_len and auth_len exceed DANCE_EA_DATA_MAX together";
	if ((uint64_t)m->request_len + m->auth_len > DANCE_EA_DATA_MAX)
		return -EMSGSIZE;
	*why = "request_len and auth_len do not add up to the message";
	if (len != DANCE_EA_HDR_LEN + m->request_len + m->auth_len)
		return -EBADMSG;
	*why = "unknown exported-authenticator operation";
	if (m->op < DANCE_EA_REQUEST || m->op > DANCE_EA_PHA_ANSWER)
		return -EINVAL;
	*why = "unknown exported-authenticator flags";
	if (m->flags & ~(DANCE_EA_DANE | DANCE_EA_NO_DANE | DANCE_EA_REFUSE))
		return -EINVAL;
	*why = "server_name is not NUL-terminated";
	if (!terminated(m->server_name, sizeof(m->server_name)))
		return -EINVAL;
	*why = "DANCE_EA_DANE and DANCE_EA_NO_DANE contradict each other";
	if ((m->flags & DANCE_EA_DANE) && (m->flags & DANCE_EA_NO_DANE))
		return -EINVAL;
	*why = "this operation takes no request or authenticator";
	if ((m->op == DANCE_EA_REQUEST || m->op == DANCE_EA_FORGET ||
	     m->op == DANCE_EA_PHA_REQUEST) &&
	    (m->request_len || m->auth_len))
		return -EINVAL;
	*why = "post-handshake authentication is asked of a TLS client: no server_name";
	if (m->op >= DANCE_EA_PHA_REQUEST && m->server_name[0])
		return -EINVAL;
	*why = "post-handshake authentication validates the client's answer to a request";
	if (m->op == DANCE_EA_PHA_VALIDATE && (!m->request_len || !m->auth_len))
		return -EINVAL;
	*why = "post-handshake authentication answers the server's request, and only that";
	if (m->op == DANCE_EA_PHA_ANSWER && (!m->request_len || m->auth_len))
		return -EINVAL;
	*why = "an authenticator is validated, not made, from auth_len bytes";
	if (m->op == DANCE_EA_AUTHENTICATE && m->auth_len)
		return -EINVAL;
	*why = "nothing to validate: auth_len is 0";
	if (m->op == DANCE_EA_VALIDATE && !m->auth_len)
		return -EINVAL;
	*why = NULL;
	return 0;
}
