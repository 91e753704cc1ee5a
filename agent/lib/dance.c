// SPDX-License-Identifier: GPL-2.0
/*
 * dance.c - libdance: how a server hands TCP sockets to danced and takes them back.
 *
 * Return mode sends a connected socket over the handoff channel (AF_UNIX SEQPACKET, one
 * SCM_RIGHTS descriptor) and receives the result; front-door mode receives sockets that
 * danced accepted. Either way the socket comes back with kTLS installed. Whenever a
 * handshake fails, the library closes the socket it was given, so every descriptor has
 * exactly one owner at every moment. Plain libc: servers link this without OpenSSL.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <poll.h>
#include <unistd.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <linux/tls.h>

#include "dance.h"

#ifndef SOL_TLS
#define SOL_TLS 282
#endif

/* TLS wire values (RFC 8446 and RFC 5246); libdance cannot take them from OpenSSL. */
#define DANCE_CT_ALERT 21
#define DANCE_CT_HANDSHAKE 22
#define DANCE_CT_DATA 23
#define DANCE_HS_NEW_SESSION_TICKET 4
#define DANCE_HS_CERTIFICATE 11
#define DANCE_HS_CERTIFICATE_REQUEST 13
#define DANCE_HS_FINISHED 20
#define DANCE_HS_KEY_UPDATE 24
#define DANCE_ALERT_WARNING 1
#define DANCE_ALERT_CLOSE_NOTIFY 0
#define DANCE_ALERT_USER_CANCELED 90

#define DANCE_WINDOW_DEFAULT 16
/* Descriptors one received message may carry before the kernel cuts its control data. */
#define DANCE_FDS_MAX 16

enum dance_kind {
	DANCE_HANDOFF, /* dance_open(): return mode */
	DANCE_BACKEND, /* dance_listen(): front-door mode */
};

/* An async request in flight: the socket it carries belongs to it until it completes. */
struct dance_flight {
	uint64_t id; /* 0: free slot */
	int fd;
};

struct dance {
	int sock; /* the channel; -1 when the next request must connect first */
	enum dance_kind kind;
	uint64_t next_id; /* dance_handshake()'s own request ids */
	/*
	 * Async requests in flight, id -> fd: open addressing with linear probing, so
	 * that dance_complete() can close a failed request's socket itself. When the
	 * channel dies they are packed into flights[0..nlost) and reported one by one.
	 */
	struct dance_flight *flights;
	size_t cap; /* a power of two, or 0 */
	size_t nflights;
	bool lost; /* the channel died under async requests: report them, then lost_status */
	size_t nlost;
	int lost_status;
	char lost_reason[DANCE_REASON_MAX];
	char path[sizeof(((struct sockaddr_un *)0)->sun_path)];
};

/* ---- the channel ---------------------------------------------------------------- */

static int dance_connect(const char *path, int *out)
{
	struct sockaddr_un sun = { .sun_family = AF_UNIX };
	int sock, err;

	memcpy(sun.sun_path, path, strlen(path) + 1);
	for (;;) {
		sock = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
		if (sock < 0)
			return -errno;
		if (!connect(sock, (struct sockaddr *)&sun, sizeof(sun))) {
			*out = sock;
			return 0;
		}
		err = errno;
		close(sock);
		/* An interrupted connect leaves the socket in no defined state: start over. */
		if (err != EINTR)
			return -err;
	}
}

static void dance_disconnect(struct dance *d)
{
	if (d->sock >= 0)
		close(d->sock);
	d->sock = -1;
}

/* The errors that mean the channel is gone, not that this message was wrong. */
static bool dance_broken(int err)
{
	return err == -EPIPE || err == -ECONNRESET || err == -ENOTCONN;
}

/* One message, with @fd attached as the only SCM_RIGHTS descriptor when @fd >= 0. */
static int dance_send(int sock, const void *buf, size_t len, int fd)
{
	union {
		char buf[CMSG_SPACE(sizeof(int))];
		struct cmsghdr align;
	} u;
	struct iovec iov = { .iov_base = (void *)buf, .iov_len = len };
	struct msghdr msg = { .msg_iov = &iov, .msg_iovlen = 1 };
	struct cmsghdr *cmsg;
	ssize_t n;

	if (fd >= 0) {
		memset(&u, 0, sizeof(u));
		msg.msg_control = u.buf;
		msg.msg_controllen = sizeof(u.buf);
		cmsg = CMSG_FIRSTHDR(&msg);
		cmsg->cmsg_level = SOL_SOCKET;
		cmsg->cmsg_type = SCM_RIGHTS;
		cmsg->cmsg_len = CMSG_LEN(sizeof(int));
		memcpy(CMSG_DATA(cmsg), &fd, sizeof(int));
	}
	do
		n = sendmsg(sock, &msg, MSG_NOSIGNAL);
	while (n < 0 && errno == EINTR);
	if (n < 0)
		return -errno;
	/* SEQPACKET sends a message whole or not at all; anything else is not our channel. */
	return (size_t)n == len ? 0 : -EMSGSIZE;
}

static void dance_close_fds(const int *fds, int nfds)
{
	int i;

	for (i = 0; i < nfds; i++)
		close(fds[i]);
}

/*
 * One message into @buf (@len: how much of it arrived), and every descriptor that came
 * with it into @fds, for the caller to close or keep. A message cut short has its
 * descriptors closed here: it is refused whole.
 *
 * Return: 0; -EAGAIN (MSG_DONTWAIT, nothing queued); -ECONNRESET when danced closed the
 * channel; -EMSGSIZE for a message longer than @size; -EPROTO when its descriptors did
 * not fit; or another negated errno of recvmsg().
 */
static int dance_recv_msg(int sock, void *buf, size_t size, int flags, int *fds, int *nfds,
			  size_t *len)
{
	union {
		char buf[CMSG_SPACE(DANCE_FDS_MAX * sizeof(int))];
		struct cmsghdr align;
	} u;
	struct iovec iov = { .iov_base = buf, .iov_len = size };
	struct msghdr msg = {
		.msg_iov = &iov,
		.msg_iovlen = 1,
		.msg_control = u.buf,
		.msg_controllen = sizeof(u.buf),
	};
	struct cmsghdr *cmsg;
	size_t i, k;
	ssize_t n;
	int fd;

	*nfds = 0;
	*len = 0;
	do
		n = recvmsg(sock, &msg, flags | MSG_CMSG_CLOEXEC);
	while (n < 0 && errno == EINTR);
	if (n < 0)
		return -errno;
	for (cmsg = CMSG_FIRSTHDR(&msg); cmsg; cmsg = CMSG_NXTHDR(&msg, cmsg)) {
		if (cmsg->cmsg_level != SOL_SOCKET || cmsg->cmsg_type != SCM_RIGHTS)
			continue;
		k = (cmsg->cmsg_len - CMSG_LEN(0)) / sizeof(int);
		for (i = 0; i < k; i++) {
			memcpy(&fd, CMSG_DATA(cmsg) + i * sizeof(int), sizeof(int));
			if (*nfds < DANCE_FDS_MAX)
				fds[(*nfds)++] = fd;
			else
				close(fd);
		}
	}
	*len = (size_t)n < size ? (size_t)n : size;
	if (msg.msg_flags & (MSG_TRUNC | MSG_CTRUNC)) {
		dance_close_fds(fds, *nfds);
		*nfds = 0;
		return msg.msg_flags & MSG_TRUNC ? -EMSGSIZE : -EPROTO;
	}
	if (n == 0) {
		dance_close_fds(fds, *nfds);
		*nfds = 0;
		return -ECONNRESET;
	}
	return 0;
}

/* Why dance_recv_msg() failed, in words. */
static const char *dance_recv_why(int err)
{
	switch (err) {
	case -ECONNRESET:
		return "danced closed the channel";
	case -EMSGSIZE:
		return "danced sent a message longer than any result";
	case -EPROTO:
		return "danced attached more descriptors than any message carries";
	default:
		return "cannot receive from danced";
	}
}

/* Describe a failure that libdance found itself: @res carries no message from danced. */
static int dance_fail(struct dance_result *res, int status, uint32_t flags, uint64_t id,
		      const char *why)
{
	memset(res, 0, DANCE_RESULT_HDR_LEN);
	res->status = status;
	res->flags = flags;
	res->id = id;
	snprintf(res->reason, sizeof(res->reason), "%s", why);
	return status;
}

/* dance_result_check() takes RESULT and ACCEPTED alike; each channel expects one. */
static int dance_result_valid(const struct dance_result *res, size_t len, enum dance_msg_type type,
			      const char **why)
{
	int ret = dance_result_check(res, len, why);

	if (ret)
		return ret;
	*why = type == DANCE_MSG_ACCEPTED ?
		       "danced sent a handshake result on a backend channel" :
		       "danced answered with a message of another kind than the request's";
	if (res->hdr.type != type)
		return -EPROTO;
	*why = NULL;
	return 0;
}

static int dance_new(const char *path, enum dance_kind kind, struct dance **out)
{
	struct dance *d;
	int ret;

	if (!out)
		return -EINVAL;
	*out = NULL;
	if (!path || !path[0])
		return -EINVAL;
	if (strlen(path) >= sizeof(d->path))
		return -ENAMETOOLONG;
	d = calloc(1, sizeof(*d));
	if (!d)
		return -ENOMEM;
	memcpy(d->path, path, strlen(path) + 1);
	d->kind = kind;
	d->next_id = 1;
	ret = dance_connect(d->path, &d->sock);
	if (ret) {
		free(d);
		return ret;
	}
	*out = d;
	return 0;
}

/**
 * dance_open - connect to danced's handoff socket (return mode)
 * @path: the handoff socket's filesystem path; kept, so that a later call can reconnect
 * @out: the new handle, or NULL on error
 *
 * A handle is one channel to danced and is not thread-safe: use one per thread. It
 * serves either blocking calls (dance_handshake()) or async ones (dance_submit() and
 * dance_complete()), not both at once.
 *
 * Return: 0; -EINVAL (NULL or empty @path, NULL @out); -ENAMETOOLONG (@path does not fit
 * a sockaddr_un); -ENOMEM; or the negated errno of socket(2) or connect(2): -ENOENT (no
 * socket there), -ECONNREFUSED (danced is not running), -EACCES, -EPROTOTYPE, ...
 */
int dance_open(const char *path, struct dance **out)
{
	return dance_new(path, DANCE_HANDOFF, out);
}

/**
 * dance_close - close the channel and free the handle; NULL is a no-op
 *
 * Async requests still in flight are abandoned: their sockets are closed here, and danced,
 * seeing the channel close, stops working on them.
 */
void dance_close(struct dance *d)
{
	size_t i;

	if (!d)
		return;
	dance_disconnect(d);
	for (i = 0; i < d->cap; i++)
		if (d->flights[i].id)
			close(d->flights[i].fd);
	free(d->flights);
	free(d);
}

/* ---- requests -------------------------------------------------------------------- */

/* A string that does not fit is refused, never cut: a cut name is another name. */
static int dance_copy(char *dst, size_t size, const char *src)
{
	size_t len;

	if (!src)
		return 0;
	len = strnlen(src, size);
	if (len == size)
		return -ENAMETOOLONG;
	memcpy(dst, src, len + 1);
	return 0;
}

static int dance_request_build(struct dance_request *req, const struct dance_params *p, uint64_t id,
			       const char **why)
{
	memset(req, 0, sizeof(*req));
	dance_hdr_init(&req->hdr, DANCE_MSG_HANDSHAKE);
	req->flags = p->client ? DANCE_REQ_CLIENT : 0;
	req->timeout_ms = p->timeout_ms;
	req->id = id;
	*why = "service name too long for the handoff protocol";
	if (dance_copy(req->service, sizeof(req->service), p->service))
		return -ENAMETOOLONG;
	*why = "peer name too long for the handoff protocol";
	if (dance_copy(req->peer_name, sizeof(req->peer_name), p->peer_name))
		return -ENAMETOOLONG;
	*why = "ALPN list too long for the handoff protocol";
	if (dance_copy(req->alpn, sizeof(req->alpn), p->alpn))
		return -ENAMETOOLONG;
	*why = "a client-role handshake needs peer_name (the server to verify)";
	if (p->client && !req->peer_name[0])
		return -EINVAL;
	return 0;
}

/* The argument checks shared by both modes; failing them leaves @fd alone. */
static int dance_request_args(const struct dance *d, int fd, const struct dance_params *p,
			      const char **why)
{
	*why = "invalid arguments (or a handle from dance_listen())";
	if (!d || !p || d->kind != DANCE_HANDOFF)
		return -EINVAL;
	*why = "not an open file descriptor";
	if (fd < 0 || fcntl(fd, F_GETFD) < 0)
		return -EBADF;
	return 0;
}

/*
 * Send @req with @fd, connecting first when the handle has no channel. A channel found
 * broken by the send is replaced once and the request sent again: it never reached
 * danced, so nothing can be answered twice. @may_retry is false while async requests are
 * in flight on the old channel, which must then be reported lost instead.
 */
static int dance_request_send(struct dance *d, const struct dance_request *req, int fd,
			      bool may_retry, const char **why)
{
	bool fresh = false;
	int ret;

	if (d->sock < 0) {
		*why = "cannot connect to danced's handoff socket";
		ret = dance_connect(d->path, &d->sock);
		if (ret)
			return ret;
		fresh = true;
	}
	ret = dance_send(d->sock, req, sizeof(*req), fd);
	if (ret && dance_broken(ret) && !fresh && may_retry) {
		dance_disconnect(d);
		*why = "cannot reconnect to danced's handoff socket";
		ret = dance_connect(d->path, &d->sock);
		if (ret)
			return ret;
		ret = dance_send(d->sock, req, sizeof(*req), fd);
	}
	*why = "cannot send the request to danced";
	if (dance_broken(ret)) {
		*why = "danced closed the handoff channel";
		ret = -ECONNRESET;
	}
	return ret;
}

/**
 * dance_handshake - hand a connected TCP socket to danced and wait for the TLS handshake
 * @d: a handle from dance_open() with no async request in flight
 * @fd: the socket; see below for who owns it afterwards
 * @p: role, names and timeout; strings are copied, never cut
 * @res: filled on every return; res->reason says why in words
 *
 * Blocks until danced answers; danced enforces the timeout (@p->timeout_ms, or the
 * service's). When the channel turns out to be broken before the request left (danced
 * restarted since the last call), the call reconnects once to the path given to
 * dance_open() and sends again.
 *
 * Ownership of @fd:
 *  - 0: @fd is the same socket, now with kTLS installed. res->pending[0..pending_len)
 *    is plaintext that the peer sent and danced already read: consume it before reading
 *    @fd. DANCE_RES_PEER_CLOSED in res->flags means a close_notify followed it.
 *  - -EINVAL, -ENAMETOOLONG, -EBADF, -EBUSY: the call was refused before anything was
 *    sent, and @fd is untouched and still the caller's. res->flags has DANCE_RES_FD_KEPT,
 *    which tells these apart from the same codes coming back from danced.
 *  - any other error: libdance has closed @fd (danced shut the connection down, or never
 *    got it); the caller must not use it again.
 *
 * Return: 0, or a negative errno, also in res->status: danced's own status for a failed
 * handshake (e.g. -ETIMEDOUT, -ECONNABORTED; see res->reason); -EINVAL (NULL argument,
 * a handle from dance_listen(), or a client role without peer_name; with a NULL @res,
 * nothing is filled in and @fd is untouched); -ENAMETOOLONG (a string does not fit the
 * protocol); -EBADF (@fd is not open); -EBUSY (async requests are in flight on @d);
 * -ENOENT, -ECONNREFUSED or another connect(2) error (danced is not there to reconnect
 * to); -ECONNRESET (danced closed the channel; the next call reconnects); -EMSGSIZE,
 * -EPROTO, -EBADMSG, -EPROTONOSUPPORT, -EOPNOTSUPP (danced's answer was malformed; the
 * channel is dropped and the next call reconnects); or another negated errno of
 * sendmsg(2) or recvmsg(2).
 */
int dance_handshake(struct dance *d, int fd, const struct dance_params *p, struct dance_result *res)
{
	int fds[DANCE_FDS_MAX], nfds, ret;
	struct dance_request req;
	const char *why;
	uint64_t id = 0;
	size_t len;

	if (!res)
		return -EINVAL;
	ret = dance_request_args(d, fd, p, &why);
	if (ret)
		goto out_kept;
	/* Lost requests left over from async use are reported before the channel is reused. */
	ret = -EBUSY;
	why = "async requests are in flight on this handle";
	if (d->nflights || (d->lost && d->nlost))
		goto out_kept;
	if (d->lost) {
		d->lost = false;
		dance_disconnect(d);
	}
	id = d->next_id++;
	ret = dance_request_build(&req, p, id, &why);
	if (ret)
		goto out_kept;

	ret = dance_request_send(d, &req, fd, true, &why);
	if (ret == -ECONNRESET)
		dance_disconnect(d);
	if (ret)
		goto out_close_fd;
	for (;;) {
		ret = dance_recv_msg(d->sock, res, sizeof(*res), 0, fds, &nfds, &len);
		why = dance_recv_why(ret);
		if (ret)
			goto out_drop;
		ret = -EPROTO;
		why = "danced attached a descriptor to a handshake result";
		if (nfds) {
			dance_close_fds(fds, nfds);
			goto out_drop;
		}
		ret = dance_result_valid(res, len, DANCE_MSG_RESULT, &why);
		if (ret)
			goto out_drop;
		/* Id 0: danced could not read the request, and this is the only one. */
		if (res->id == id || !res->id)
			break;
		/* Not this request's answer (none other can be outstanding): ignore it. */
	}
	ret = -EPROTO;
	why = "danced answered an unreadable request with success";
	if (!res->id && !res->status)
		goto out_drop;
	res->flags &= ~DANCE_RES_FD_KEPT;
	if (res->status)
		close(fd);
	return res->status;

out_drop:
	/* After a broken answer the channel cannot be trusted; danced lets go when it closes. */
	dance_disconnect(d);
out_close_fd:
	close(fd);
	return dance_fail(res, ret, 0, id, why);
out_kept:
	return dance_fail(res, ret, DANCE_RES_FD_KEPT, 0, why);
}

/* ---- exported authenticators (RFC 9261) --------------------------------------------- */

/*
 * One DANCE_MSG_EA and its answer, on a handle with nothing else in flight. @fd only
 * names the connection: it stays the caller's whatever happens.
 */
static int dance_ea_call(struct dance *d, int fd, struct dance_ea *m, struct dance_result *res)
{
	int fds[DANCE_FDS_MAX], nfds, ret;
	const char *why;
	uint64_t id;
	size_t len;

	ret = dance_request_args(d, fd, &(struct dance_params){ 0 }, &why);
	if (ret)
		goto out_kept;
	ret = -EBUSY;
	why = "async requests are in flight on this handle";
	if (d->nflights || (d->lost && d->nlost))
		goto out_kept;
	if (d->lost) {
		d->lost = false;
		dance_disconnect(d);
	}
	id = d->next_id++;
	dance_hdr_init(&m->hdr, DANCE_MSG_EA);
	m->id = id;
	len = DANCE_EA_HDR_LEN + m->request_len + m->auth_len;
	if (d->sock < 0) {
		why = "cannot connect to danced's handoff socket";
		ret = dance_connect(d->path, &d->sock);
		if (ret)
			goto out;
	}
	ret = dance_send(d->sock, m, len, fd);
	if (ret && dance_broken(ret)) {
		dance_disconnect(d);
		why = "cannot reconnect to danced's handoff socket";
		ret = dance_connect(d->path, &d->sock);
		if (!ret)
			ret = dance_send(d->sock, m, len, fd);
	}
	why = "cannot send the request to danced";
	if (ret)
		goto out_drop;
	for (;;) {
		ret = dance_recv_msg(d->sock, res, sizeof(*res), 0, fds, &nfds, &len);
		why = dance_recv_why(ret);
		if (ret)
			goto out_drop;
		dance_close_fds(fds, nfds);
		ret = -EPROTO;
		why = "danced attached a descriptor to an exported-authenticator result";
		if (nfds)
			goto out_drop;
		ret = dance_result_valid(res, len, DANCE_MSG_EA_RESULT, &why);
		if (ret)
			goto out_drop;
		if (res->id == id || !res->id)
			break;
	}
	/* The socket only named the connection: it is the caller's, whatever happened. */
	res->flags = res->status ? DANCE_RES_FD_KEPT : 0;
	return res->status;
out_drop:
	dance_disconnect(d);
out:
	return dance_fail(res, ret, DANCE_RES_FD_KEPT, 0, why);
out_kept:
	return dance_fail(res, ret, DANCE_RES_FD_KEPT, 0, why);
}

/**
 * dance_ea_request - make an authenticator request for the connection on @fd
 * @flags: DANCE_EA_DANE to ask the peer to name itself (dane_clientid), DANCE_EA_NO_DANE
 *	never to; neither: as the service asks in its handshakes
 * @server_name: a TLS client's ClientCertificateRequest may name the server it wants
 *	proved; NULL or "" for none
 * @res: on success res->pending[0..pending_len) is the request, to send to the peer
 *	however the application likes, and to pass back with its answer to
 *	dance_ea_validate()
 *
 * danced makes a CertificateRequest when it was the TLS server on @fd, else a
 * ClientCertificateRequest, with a fresh random certificate_request_context, and
 * remembers it (the last four per connection) until it is answered. @fd stays the
 * caller's and is neither read nor written.
 *
 * Return: 0, or a negative errno also in res->status, with res->reason: -ENOENT (danced
 * keeps nothing for this socket: not offloaded by it, closed, or forgotten), -EPROTO
 * (TLS 1.2 without extended master secret), -EINVAL, -ENAMETOOLONG, -EBADF, -EBUSY (as
 * dance_handshake(), with DANCE_RES_FD_KEPT), or a channel error.
 */
int dance_ea_request(struct dance *d, int fd, unsigned int flags, const char *server_name,
		     struct dance_result *res)
{
	struct dance_ea *m;
	int ret;

	if (!res)
		return -EINVAL;
	m = calloc(1, sizeof(*m));
	if (!m)
		return dance_fail(res, -ENOMEM, DANCE_RES_FD_KEPT, 0, "out of memory");
	m->op = DANCE_EA_REQUEST;
	m->flags = flags;
	ret = dance_copy(m->server_name, sizeof(m->server_name), server_name);
	if (ret)
		ret = dance_fail(res, ret, DANCE_RES_FD_KEPT, 0,
				 "server name too long for the handoff protocol");
	else
		ret = dance_ea_call(d, fd, m, res);
	free(m);
	return ret;
}

/**
 * dance_ea_authenticate - answer the peer's authenticator request with the service's key
 * @req: the request the peer sent, as received; NULL with @req_len 0: a spontaneous
 *	authenticator (only where danced was the TLS server)
 * @flags: DANCE_EA_REFUSE for the empty authenticator, an authenticated "no"
 * @res: on success res->pending[0..pending_len) is the authenticator, for the peer
 *
 * The key never leaves danced. The Certificate carries dane_clientid with the service's
 * identity when the request asked for it and the service has one.
 *
 * Return: 0, or a negative errno with res->reason (see dance_ea_request()), and:
 * -EBADMSG (a malformed request), -EALREADY (danced already answered this context),
 * -EOPNOTSUPP (no signature algorithm of the request fits the key), -ENOKEY (the
 * service has no certificate), -EMSGSIZE.
 */
int dance_ea_authenticate(struct dance *d, int fd, const void *req, size_t req_len,
			  unsigned int flags, struct dance_result *res)
{
	struct dance_ea *m;
	int ret;

	if (!res)
		return -EINVAL;
	if ((req_len && !req) || req_len > DANCE_EA_DATA_MAX)
		return dance_fail(res, req_len ? -EMSGSIZE : -EINVAL, DANCE_RES_FD_KEPT, 0,
				  "the request is missing or longer than DANCE_EA_DATA_MAX");
	m = calloc(1, sizeof(*m));
	if (!m)
		return dance_fail(res, -ENOMEM, DANCE_RES_FD_KEPT, 0, "out of memory");
	m->op = DANCE_EA_AUTHENTICATE;
	m->flags = flags;
	m->request_len = req_len;
	if (req_len)
		memcpy(m->data, req, req_len);
	ret = dance_ea_call(d, fd, m, res);
	free(m);
	return ret;
}

/**
 * dance_ea_validate - judge the peer's authenticator, answering a request danced made
 * @req: that request, as dance_ea_request() returned it; NULL with @req_len 0 for a
 *	spontaneous authenticator from the TLS server (danced was the client)
 * @auth: the authenticator the peer sent
 * @res: on success who was proved and how: auth DANCE_AUTH_EA_DANE (verified_name, the
 *	TLSA record in tlsa_*) or DANCE_AUTH_EA_X509 (peer_subject, peer_names)
 *
 * Each request validates once. On success where danced was the TLS server, the
 * socket's identity in the BPF policy maps is the proved one from now on: the kernel
 * allows or refuses its I/O by it at once.
 *
 * Return: 0, or a negative errno with res->reason: -EACCES (not authenticated:
 * "ea-finished", "ea-signature", "ea-empty", or the reasons of a handshake's DANE and
 * X.509 failures), -ESRCH (a context danced never asked with), -EALREADY (already
 * validated), -EBADMSG (malformed), the errors of dance_ea_request(), -EMSGSIZE.
 */
int dance_ea_validate(struct dance *d, int fd, const void *req, size_t req_len, const void *auth,
		      size_t auth_len, struct dance_result *res)
{
	struct dance_ea *m;
	int ret;

	if (!res)
		return -EINVAL;
	if ((req_len && !req) || !auth || !auth_len)
		return dance_fail(res, -EINVAL, DANCE_RES_FD_KEPT, 0,
				  "an authenticator (and its request) to validate is needed");
	if (req_len > DANCE_EA_DATA_MAX || auth_len > DANCE_EA_DATA_MAX - req_len)
		return dance_fail(res, -EMSGSIZE, DANCE_RES_FD_KEPT, 0,
				  "request and authenticator exceed DANCE_EA_DATA_MAX");
	m = calloc(1, sizeof(*m));
	if (!m)
		return dance_fail(res, -ENOMEM, DANCE_RES_FD_KEPT, 0, "out of memory");
	m->op = DANCE_EA_VALIDATE;
	m->request_len = req_len;
	m->auth_len = auth_len;
	if (req_len)
		memcpy(m->data, req, req_len);
	memcpy(m->data + req_len, auth, auth_len);
	ret = dance_ea_call(d, fd, m, res);
	free(m);
	return ret;
}

/**
 * dance_ea_forget - danced drops what it keeps for exported authenticators on @fd
 *
 * It does so by itself when the socket closes (with the BPF policy on) or when newer
 * connections push it out; a server that is done with them says so sooner.
 *
 * Return: 0, -ENOENT (nothing kept), or the errors of dance_ea_request().
 */
int dance_ea_forget(struct dance *d, int fd, struct dance_result *res)
{
	struct dance_ea m = { .op = DANCE_EA_FORGET };

	if (!res)
		return -EINVAL;
	return dance_ea_call(d, fd, &m, res);
}

/* ---- async requests ------------------------------------------------------------- */

static size_t dance_hash(uint64_t id, size_t cap)
{
	/* Fibonacci hashing: callers' ids are often counters or pointers, both clustered. */
	return (id * 0x9e3779b97f4a7c15ull) >> 32 & (cap - 1);
}

static size_t dance_slot(const struct dance *d, uint64_t id)
{
	return dance_hash(id, d->cap);
}

static long dance_flight_find(const struct dance *d, uint64_t id)
{
	size_t i;

	if (!d->cap)
		return -1;
	for (i = dance_slot(d, id); d->flights[i].id; i = (i + 1) & (d->cap - 1))
		if (d->flights[i].id == id)
			return i;
	return -1;
}

static void dance_flight_put(struct dance_flight *tab, size_t cap, struct dance_flight f)
{
	size_t i = dance_hash(f.id, cap);

	while (tab[i].id)
		i = (i + 1) & (cap - 1);
	tab[i] = f;
}

/* Make room for one more request; the table stays at most half full. */
static int dance_flight_reserve(struct dance *d)
{
	struct dance_flight *tab;
	size_t i, cap;

	if (d->nflights >= DANCE_INFLIGHT_MAX)
		return -ENOBUFS;
	if ((d->nflights + 1) * 2 <= d->cap)
		return 0;
	cap = d->cap ? d->cap * 2 : 16;
	tab = calloc(cap, sizeof(*tab));
	if (!tab)
		return -ENOMEM;
	for (i = 0; i < d->cap; i++)
		if (d->flights[i].id)
			dance_flight_put(tab, cap, d->flights[i]);
	free(d->flights);
	d->flights = tab;
	d->cap = cap;
	return 0;
}

/* Remove slot @i, moving later entries of its probe run back so that lookups still work. */
static void dance_flight_del(struct dance *d, size_t i)
{
	size_t mask = d->cap - 1, j = i, home;

	for (;;) {
		j = (j + 1) & mask;
		if (!d->flights[j].id)
			break;
		home = dance_slot(d, d->flights[j].id);
		/* Entry j may fill the hole at i only if its home is not in (i, j]. */
		if (((j - home) & mask) >= ((j - i) & mask)) {
			d->flights[i] = d->flights[j];
			i = j;
		}
	}
	d->flights[i] = (struct dance_flight){ 0 };
	d->nflights--;
}

/*
 * The channel died (or spoke nonsense) under async requests. Shut it down instead of
 * closing it, so that it keeps polling readable until dance_complete() has reported
 * every request, and danced, seeing it end, lets go of their sockets.
 */
static void dance_lose(struct dance *d, int status, const char *why)
{
	size_t i, k = 0;

	if (d->sock >= 0)
		shutdown(d->sock, SHUT_RDWR);
	for (i = 0; i < d->cap; i++) {
		if (!d->flights[i].id)
			continue;
		d->flights[k] = d->flights[i];
		if (i != k)
			d->flights[i] = (struct dance_flight){ 0 };
		k++;
	}
	d->nlost = k;
	d->nflights = 0;
	d->lost = true;
	d->lost_status = status;
	snprintf(d->lost_reason, sizeof(d->lost_reason), "handoff channel lost: %s", why);
}

/**
 * dance_submit - hand a socket to danced without waiting (async mode)
 * @d: a handle from dance_open(), not used with dance_handshake() meanwhile
 * @fd: the connected TCP socket
 * @p: as for dance_handshake()
 * @id: nonzero, unique among this handle's requests in flight; returned in
 *      dance_result.id (a pointer to the caller's connection works)
 *
 * On success @fd belongs to the request until dance_complete() reports @id: the caller
 * must neither read, write nor close it meanwhile. The send may block briefly when danced
 * is behind. The channel may be replaced (reconnect), so poll dance_fd() anew each time.
 *
 * On failure, as for dance_handshake(): -EINVAL, -ENAMETOOLONG, -EBADF, -EEXIST, -ENOBUFS
 * and -ENOMEM leave @fd untouched and the caller's; after any other error libdance has
 * closed @fd.
 *
 * Return: 0; -EINVAL (NULL argument, @id 0, a handle from dance_listen(), or a client
 * role without peer_name); -ENAMETOOLONG; -EBADF; -EEXIST (@id is already in flight);
 * -ENOBUFS (DANCE_INFLIGHT_MAX requests in flight); -ENOMEM; -ENOENT, -ECONNREFUSED or
 * another connect(2) error (cannot reconnect); -ECONNRESET (the channel died: requests
 * in flight on it are reported by dance_complete() first); or another negated errno of
 * sendmsg(2).
 */
int dance_submit(struct dance *d, int fd, const struct dance_params *p, uint64_t id)
{
	struct dance_request req;
	const char *why;
	int ret;

	ret = dance_request_args(d, fd, p, &why);
	if (ret)
		return ret;
	if (!id)
		return -EINVAL;
	ret = dance_request_build(&req, p, id, &why);
	if (ret)
		return ret;
	if (d->lost) {
		/* No new channel until the requests on the dead one have been reported. */
		ret = -ECONNRESET;
		if (d->nlost)
			goto out_close_fd;
		d->lost = false;
		dance_disconnect(d);
	}
	if (dance_flight_find(d, id) >= 0)
		return -EEXIST;
	ret = dance_flight_reserve(d);
	if (ret)
		return ret;

	ret = dance_request_send(d, &req, fd, !d->nflights, &why);
	if (ret) {
		if (d->nflights && dance_broken(ret))
			dance_lose(d, -ECONNRESET, "danced closed the handoff channel");
		else if (dance_broken(ret))
			dance_disconnect(d);
		goto out_close_fd;
	}
	dance_flight_put(d->flights, d->cap, (struct dance_flight){ .id = id, .fd = fd });
	d->nflights++;
	return 0;

out_close_fd:
	close(fd);
	return ret;
}

/**
 * dance_fd - the descriptor to poll for POLLIN before calling dance_complete() or
 * dance_accept()
 *
 * It changes when a call reconnects; fetch it again before each poll.
 *
 * Return: the channel's descriptor; -1 when the handle has none right now (the next
 * dance_submit() connects); -EINVAL for a NULL @d.
 */
int dance_fd(const struct dance *d)
{
	return d ? d->sock : -EINVAL;
}

/* Report one request lost with the channel, or, when none is left, the channel's end. */
static int dance_report_lost(struct dance *d, struct dance_result *res)
{
	struct dance_flight f;
	int ret;

	if (d->nlost) {
		f = d->flights[--d->nlost];
		d->flights[d->nlost] = (struct dance_flight){ 0 };
		close(f.fd);
		dance_fail(res, -ECONNRESET, 0, f.id, d->lost_reason);
		return 0;
	}
	ret = d->lost_status;
	d->lost = false;
	dance_disconnect(d);
	return ret;
}

/**
 * dance_complete - collect one finished async request without blocking
 * @res: on 0, res->id names the request and res->status is its outcome
 *
 * A request that succeeded gives its socket back to the caller, with kTLS installed and
 * res->pending to consume first, as with dance_handshake(). A request that failed has
 * had its socket closed here, exactly once; the caller only forgets it.
 *
 * When the channel dies (danced exits, or sends something malformed), every request in
 * flight is reported once, each as 0 with res->status -ECONNRESET and its socket closed;
 * the call after the last one returns the reason the channel ended, and the next
 * dance_submit() reconnects. Call this until it returns nonzero each time dance_fd()
 * polls readable.
 *
 * Return: 0 with @res filled; -EAGAIN when nothing is ready (or nothing is in flight and
 * there is no channel); -EINVAL (NULL argument or a handle from dance_listen());
 * -ECONNRESET once after danced closed the channel; or, once after a malformed message
 * from danced, what was wrong with it: -EMSGSIZE, -EPROTO, -EBADMSG, -EPROTONOSUPPORT,
 * -EOPNOTSUPP, -EINVAL, or the status of a request danced could not read (id 0).
 */
int dance_complete(struct dance *d, struct dance_result *res)
{
	int fds[DANCE_FDS_MAX], nfds, ret;
	const char *why;
	size_t len;
	long i;
	int fd;

	if (!d || !res || d->kind != DANCE_HANDOFF)
		return -EINVAL;
	for (;;) {
		if (d->lost)
			return dance_report_lost(d, res);
		if (d->sock < 0)
			return -EAGAIN;
		ret = dance_recv_msg(d->sock, res, sizeof(*res), MSG_DONTWAIT, fds, &nfds, &len);
		if (ret == -EAGAIN)
			return ret;
		if (ret) {
			dance_lose(d, ret, dance_recv_why(ret));
			continue;
		}
		ret = -EPROTO;
		why = "danced attached a descriptor to a handshake result";
		if (nfds) {
			dance_close_fds(fds, nfds);
			dance_lose(d, ret, why);
			continue;
		}
		ret = dance_result_valid(res, len, DANCE_MSG_RESULT, &why);
		if (ret) {
			dance_lose(d, ret, why);
			continue;
		}
		/* Id 0 answers a request danced could not read, and we cannot tell which. */
		if (!res->id) {
			dance_lose(d, res->status ? res->status : -EPROTO, res->reason);
			continue;
		}
		i = dance_flight_find(d, res->id);
		if (i < 0)
			continue; /* not a request of ours: nothing to give back */
		fd = d->flights[i].fd;
		dance_flight_del(d, i);
		res->flags &= ~DANCE_RES_FD_KEPT;
		if (res->status)
			close(fd);
		return 0;
	}
}

/* ---- front door ------------------------------------------------------------------ */

static int dance_send_ready(int sock, uint32_t n)
{
	struct dance_ready r;

	memset(&r, 0, sizeof(r));
	dance_hdr_init(&r.hdr, DANCE_MSG_READY);
	r.n = n;
	return dance_send(sock, &r, sizeof(r), -1);
}

/* danced meant this as an accepted socket, so it took one from our window for it. */
static bool dance_is_accepted(const void *msg, size_t len)
{
	struct dance_hdr h;

	if (len < sizeof(h))
		return false;
	memcpy(&h, msg, sizeof(h));
	return h.magic == DANCE_MAGIC && h.version == DANCE_PROTO_VERSION &&
	       h.type == DANCE_MSG_ACCEPTED;
}

/**
 * dance_listen - connect to a service's backend socket and ask for sockets (front door)
 * @backend_path: the service's backend_socket in danced.conf
 * @window: how many sockets danced may send before dance_accept() takes them; 0: 16
 * @out: the new handle, or NULL on error
 *
 * Nothing reconnects a backend channel: when danced closes it, dance_accept() says
 * -ECONNRESET and the caller decides whether to dance_close() and listen again.
 *
 * Return: 0; -EINVAL; -ENAMETOOLONG; -ENOMEM; -ENOENT, -ECONNREFUSED or another error of
 * socket(2) or connect(2); -ECONNRESET (danced closed the channel at once); or another
 * negated errno of sendmsg(2).
 */
int dance_listen(const char *backend_path, unsigned int window, struct dance **out)
{
	struct dance *d;
	int ret;

	if (!out)
		return -EINVAL;
	*out = NULL;
	ret = dance_new(backend_path, DANCE_BACKEND, &d);
	if (ret)
		return ret;
	ret = dance_send_ready(d->sock, window ? window : DANCE_WINDOW_DEFAULT);
	if (ret) {
		dance_close(d);
		return dance_broken(ret) ? -ECONNRESET : ret;
	}
	*out = d;
	return 0;
}

/**
 * dance_accept - wait for the next socket danced accepted and handshook (front door)
 * @d: a handle from dance_listen()
 * @res: filled on every return: the handshake's result, or why there is no socket
 *
 * Before returning, gives danced room for one more socket, so the window stays full.
 * The socket carries kTLS; res->pending[0..pending_len) is plaintext already read, to
 * consume before reading it. It is the caller's, close-on-exec.
 *
 * Return: the socket (>= 0); -EINVAL (NULL argument or a handle from dance_open());
 * -ECONNRESET (danced closed the channel; every later call says so too); -EPROTO (the
 * message carried no descriptor, several, or a failure status; all were closed);
 * -EMSGSIZE, -EBADMSG, -EPROTONOSUPPORT, -EOPNOTSUPP (a malformed message, skipped);
 * or another negated errno of recvmsg(2).
 */
int dance_accept(struct dance *d, struct dance_result *res)
{
	int fds[DANCE_FDS_MAX], nfds, ret, err;
	const char *why;
	bool accepted;
	size_t len;

	if (!res)
		return -EINVAL;
	if (!d || d->kind != DANCE_BACKEND)
		return dance_fail(res, -EINVAL, 0, 0, "not a handle from dance_listen()");
	if (d->sock < 0)
		return dance_fail(res, -ECONNRESET, 0, 0, "danced closed the backend channel");
	ret = dance_recv_msg(d->sock, res, sizeof(*res), 0, fds, &nfds, &len);
	if (ret == -ECONNRESET) {
		dance_disconnect(d);
		return dance_fail(res, ret, 0, 0, "danced closed the backend channel");
	}
	why = dance_recv_why(ret);
	accepted = dance_is_accepted(res, len);
	if (!ret)
		ret = dance_result_valid(res, len, DANCE_MSG_ACCEPTED, &why);
	if (!ret && res->status) {
		ret = -EPROTO;
		why = "danced passed on a socket whose handshake failed";
	}
	if (!ret && nfds != 1) {
		ret = -EPROTO;
		why = nfds ? "danced attached several descriptors to an accepted socket" :
			     "danced sent an accepted socket without its descriptor";
	}
	if (ret)
		dance_close_fds(fds, nfds);
	if (accepted) {
		/* The socket is good even if this fails; the next call reports the channel. */
		err = dance_send_ready(d->sock, 1);
		if (dance_broken(err))
			dance_disconnect(d);
	}
	if (ret)
		return dance_fail(res, ret, 0, 0, why);
	res->flags &= ~DANCE_RES_FD_KEPT;
	return fds[0];
}

/* ---- after the handshake: reading and closing a kTLS socket ----------------------- */

/* Where the handshake messages that arrive after offload have got to. */
struct dance_hs {
	uint8_t hdr[4]; /* msg_type, length<3> */
	size_t hdr_len;
	size_t body_left;
};

/* Follow handshake bytes: only NewSessionTicket may appear after the handshake. */
static int dance_hs_feed(struct dance_hs *hs, const uint8_t *p, size_t n)
{
	size_t take;

	while (n) {
		if (hs->body_left) {
			take = n < hs->body_left ? n : hs->body_left;
			hs->body_left -= take;
			p += take;
			n -= take;
			continue;
		}
		hs->hdr[hs->hdr_len++] = *p++;
		n--;
		if (hs->hdr_len == 1 && hs->hdr[0] == DANCE_HS_KEY_UPDATE)
			return -EKEYEXPIRED;
		if (hs->hdr_len == 1 && hs->hdr[0] != DANCE_HS_NEW_SESSION_TICKET)
			return -EPROTO;
		if (hs->hdr_len == 4) {
			hs->body_left = (size_t)hs->hdr[1] << 16 | hs->hdr[2] << 8 | hs->hdr[3];
			hs->hdr_len = 0;
		}
	}
	return 0;
}

/* One recvmsg() that reports the TLS record type (data when the socket has no kTLS). */
static ssize_t dance_recv_record(int fd, void *buf, size_t len, int flags, uint8_t *type)
{
	union {
		char buf[CMSG_SPACE(sizeof(uint8_t))];
		struct cmsghdr align;
	} u;
	struct iovec iov = { .iov_base = buf, .iov_len = len };
	struct msghdr msg = {
		.msg_iov = &iov,
		.msg_iovlen = 1,
		.msg_control = u.buf,
		.msg_controllen = sizeof(u.buf),
	};
	struct cmsghdr *cmsg;
	ssize_t n;

	n = recvmsg(fd, &msg, flags);
	if (n < 0)
		return -errno;
	*type = DANCE_CT_DATA;
	cmsg = CMSG_FIRSTHDR(&msg);
	if (cmsg && cmsg->cmsg_level == SOL_TLS && cmsg->cmsg_type == TLS_GET_RECORD_TYPE)
		*type = *CMSG_DATA(cmsg);
	return n;
}

/*
 * Consume handshake messages whose first @n bytes are in @buf (none if they were only
 * peeked). The kernel hands out a control record in pieces when the buffer is smaller,
 * so the messages' own lengths say where they end.
 */
static int dance_skip_handshake(int fd, const uint8_t *buf, size_t n, int flags)
{
	struct dance_hs hs = { .hdr_len = 0 };
	uint8_t scratch[512], type;
	ssize_t got;
	int ret;

	flags &= ~MSG_PEEK;
	ret = dance_hs_feed(&hs, buf, n);
	while (!ret && (!n || hs.hdr_len || hs.body_left)) {
		got = dance_recv_record(fd, scratch, sizeof(scratch), flags, &type);
		if (got < 0)
			return got;
		if (!got || type != DANCE_CT_HANDSHAKE)
			return -EPROTO;
		n += got;
		ret = dance_hs_feed(&hs, scratch, got);
	}
	return ret;
}

/**
 * dance_recv - recv(2) for a socket with kTLS, which also understands control records
 * @fd: a socket from dance_handshake(), dance_complete() or dance_accept()
 * @flags: as for recv(2): MSG_DONTWAIT, MSG_PEEK, MSG_WAITALL
 *
 * The kernel delivers each non-data record whole, with its type in a control message,
 * and a plain read() of one fails with EIO; this reads them and turns them into what a
 * server expects from a socket. TLS 1.3 NewSessionTicket messages (a server sends them
 * to a client after the handshake) and user_canceled warnings are skipped. A socket
 * without kTLS reads as with recv(2).
 *
 * Return: bytes of application data (> 0); 0 at the end of the stream (TCP FIN, or a
 * close_notify alert); or -1 with errno: ECONNABORTED (the peer sent any other alert),
 * EBADMSG (a record failed authentication), EKEYEXPIRED (the peer sent a TLS 1.3
 * KeyUpdate, which cannot be followed yet), ENOMSG (post-handshake authentication is
 * next, still queued: a server passes the socket to dance_pha_validate() for the
 * client's answer, a client to dance_pha_answer() for the server's request), EPROTO
 * (any other unexpected record), or an errno of
 * recvmsg(2) such as EAGAIN.
 */
ssize_t dance_recv(int fd, void *buf, size_t len, int flags)
{
	uint8_t alert[2], type, scratch[512];
	ssize_t n;
	int ret;

	for (;;) {
		/*
		 * Data needs no control message. Without room for one, kTLS refuses a
		 * control record with EIO and leaves it queued, so it can be looked at
		 * before it is taken: a client's answer to a post-handshake
		 * CertificateRequest stays for dance_pha_validate().
		 */
		n = recv(fd, buf, len, flags);
		if (n >= 0 || errno != EIO)
			return n;
		n = dance_recv_record(fd, scratch, 1, MSG_PEEK | (flags & MSG_DONTWAIT), &type);
		if (n < 0) {
			errno = -n;
			return -1;
		}
		if (type == DANCE_CT_HANDSHAKE && n == 1 &&
		    (scratch[0] == DANCE_HS_CERTIFICATE ||
		     scratch[0] == DANCE_HS_CERTIFICATE_REQUEST)) {
			errno = ENOMSG;
			return -1;
		}
		n = dance_recv_record(fd, buf, len, flags, &type);
		if (n < 0) {
			errno = -n;
			return -1;
		}
		if (type == DANCE_CT_DATA)
			return n;
		if (type == DANCE_CT_HANDSHAKE) {
			ret = dance_skip_handshake(fd, buf, flags & MSG_PEEK ? 0 : n, flags);
			if (ret) {
				errno = -ret;
				return -1;
			}
			continue;
		}
		if (type != DANCE_CT_ALERT || !n) {
			errno = EPROTO;
			return -1;
		}
		memcpy(alert, buf, n < 2 ? 1 : 2);
		if (n < 2) {
			/*
			 * A one-byte buffer holds half an alert, and the kernel keeps the
			 * rest queued: read it, or peek at the whole alert again.
			 */
			n = dance_recv_record(fd, scratch, 2, flags, &type);
			if (n < 0) {
				errno = -n;
				return -1;
			}
			if (type != DANCE_CT_ALERT || n < (flags & MSG_PEEK ? 2 : 1)) {
				errno = EPROTO;
				return -1;
			}
			alert[1] = scratch[flags & MSG_PEEK ? 1 : 0];
		}
		if (alert[1] == DANCE_ALERT_CLOSE_NOTIFY)
			return 0;
		/* user_canceled is a warning that a close_notify follows; keep reading. */
		if (alert[1] == DANCE_ALERT_USER_CANCELED && alert[0] == DANCE_ALERT_WARNING) {
			/* A peeked alert is still queued: take it off, or we would see it again. */
			if ((flags & MSG_PEEK) && dance_recv_record(fd, scratch, sizeof(scratch),
								    flags & ~MSG_PEEK, &type) < 0)
				return -1;
			continue;
		}
		errno = ECONNABORTED;
		return -1;
	}
}

/**
 * dance_pha_request - ask the TLS 1.3 client on @fd for a certificate, after the handshake
 * @flags: DANCE_EA_DANE to ask the client to name itself (dane_clientid), DANCE_EA_NO_DANE
 *	never to; neither: as the service asks in its handshakes
 * @res: on success res->pending[0..pending_len) is the CertificateRequest danced sent,
 *	to pass to dance_pha_validate() with the client's answer
 *
 * Post-handshake authentication (RFC 8446 section 4.6.2) on a socket danced offloaded as
 * the TLS server, for a client that offered post_handshake_auth: danced sends the
 * CertificateRequest over the connection itself, as a handshake record through kTLS.
 * The client answers when it next reads: dance_recv() then fails with ENOMSG, and
 * dance_pha_validate() takes the answer. The last four requests per connection may
 * still be answered. Where the kernel's policy refuses the socket, the request goes
 * out only inside the service's proof window, which this call opens.
 *
 * Return: 0, or a negative errno with res->reason: -EPROTO ("pha-not-offered": the
 * client did not offer it; "pha-version": TLS 1.2), -EINVAL ("pha-client": danced was
 * the TLS client), -EAGAIN ("pha-send": the send buffer is full), or the errors of
 * dance_ea_request().
 */
int dance_pha_request(struct dance *d, int fd, unsigned int flags, struct dance_result *res)
{
	struct dance_ea m = { .op = DANCE_EA_PHA_REQUEST, .flags = flags };

	if (!res)
		return -EINVAL;
	return dance_ea_call(d, fd, &m, res);
}

/*
 * Where the messages of a post-handshake exchange end: the length through the message
 * of type @last (Finished of the client's answer; the server's CertificateRequest, which
 * is all of its flight), or 0 while incomplete. The first message must be @first.
 */
static size_t dance_pha_end(const uint8_t *a, size_t have, uint8_t first, uint8_t last, int *err)
{
	size_t pos = 0, mlen;

	while (pos + 4 <= have) {
		if (!pos && a[0] != first) {
			*err = -EPROTO;
			return 0;
		}
		mlen = (size_t)a[pos + 1] << 16 | a[pos + 2] << 8 | a[pos + 3];
		if (pos + 4 + mlen > have)
			return 0;
		pos += 4 + mlen;
		if (a[pos - 4 - mlen] == last) {
			/* It ends the flight; nothing may follow it in it. */
			if (pos != have)
				*err = -EPROTO;
			return pos;
		}
	}
	return 0;
}

/*
 * Read the handshake messages of a post-handshake flight into @buf (at most @cap
 * bytes), waiting up to 10 seconds for all of it. Return its length, or a negative
 * errno with res set.
 */
static ssize_t dance_pha_read(int fd, uint8_t *buf, size_t cap, uint8_t first, uint8_t last,
			      struct dance_result *res)
{
	struct pollfd pfd = { .fd = fd, .events = POLLIN };
	size_t have = 0, end = 0;
	int ret = 0, waited = 0;
	uint8_t type;
	ssize_t n;

	while (!end) {
		if (have == cap)
			return dance_fail(res, -EMSGSIZE, DANCE_RES_FD_KEPT, 0,
					  "pha-malformed: the flight exceeds DANCE_EA_DATA_MAX");
		n = dance_recv_record(fd, buf + have, cap - have, MSG_DONTWAIT, &type);
		if (n == -EAGAIN && waited < 10000) {
			poll(&pfd, 1, 100);
			waited += 100;
			continue;
		}
		if (n < 0)
			return dance_fail(res, n == -EAGAIN ? -ETIMEDOUT : (int)n,
					  DANCE_RES_FD_KEPT, 0,
					  "pha-read: the peer's flight did not come whole");
		if (!n)
			return dance_fail(res, -ECONNRESET, DANCE_RES_FD_KEPT, 0,
					  "pha-read: the connection ended inside the flight");
		if (type != DANCE_CT_HANDSHAKE)
			return dance_fail(res, -EPROTO, DANCE_RES_FD_KEPT, 0,
					  "pha-read: a record other than handshake came inside "
					  "the flight; the connection is no longer usable");
		have += n;
		end = dance_pha_end(buf, have, first, last, &ret);
		if (ret)
			return dance_fail(res, ret, DANCE_RES_FD_KEPT, 0,
					  "pha-malformed: not the flight expected; the "
					  "connection is no longer usable");
	}
	return end;
}

/*
 * Read the peer's flight behind what @m holds already (the request, when validating),
 * as the next field (the answer, or the request when answering), and send @m to
 * danced. Frees @m.
 */
static int dance_pha_call(struct dance *d, int fd, struct dance_ea *m, uint8_t first, uint8_t last,
			  struct dance_result *res)
{
	ssize_t n;
	int ret;

	n = dance_pha_read(fd, m->data + m->request_len, DANCE_EA_DATA_MAX - m->request_len, first,
			   last, res);
	if (n > 0) {
		if (m->request_len)
			m->auth_len = n;
		else
			m->request_len = n;
		ret = dance_ea_call(d, fd, m, res);
	} else {
		ret = n;
	}
	free(m);
	return ret;
}

/**
 * dance_pha_validate - take the client's answer to a post-handshake request, and judge it
 * @req: the request, as dance_pha_request() returned it
 * @res: on success who was proved and how: auth DANCE_AUTH_PHA_DANE (verified_name, the
 *	TLSA record in tlsa_*) or DANCE_AUTH_PHA_X509 (peer_subject, peer_names)
 *
 * Call it when dance_recv() failed with ENOMSG: it reads the client's Certificate,
 * CertificateVerify and Finished (handshake records, waiting up to 10 seconds for all
 * of them), and danced checks them against the handshake's transcript as RFC 8446
 * section 4.4 says, then the name, as dance_ea_validate() does; the kernel's policy
 * follows the proved name at once. A client that declines sends an empty Certificate
 * ("pha-empty"). Application data then continues with dance_recv().
 *
 * Return: 0, or a negative errno with res->reason: those of dance_ea_validate(), and
 * -EPROTO when something other than the answer was on the connection (it is then no
 * longer usable), -ETIMEDOUT, -ECONNRESET.
 */
int dance_pha_validate(struct dance *d, int fd, const void *req, size_t req_len,
		       struct dance_result *res)
{
	struct dance_ea *m;

	if (!res)
		return -EINVAL;
	if (!req || !req_len || req_len >= DANCE_EA_DATA_MAX)
		return dance_fail(res, -EINVAL, DANCE_RES_FD_KEPT, 0,
				  "the request dance_pha_request() returned is needed");
	m = calloc(1, sizeof(*m));
	if (!m)
		return dance_fail(res, -ENOMEM, DANCE_RES_FD_KEPT, 0, "out of memory");
	m->op = DANCE_EA_PHA_VALIDATE;
	m->request_len = req_len;
	memcpy(m->data, req, req_len);
	return dance_pha_call(d, fd, m, DANCE_HS_CERTIFICATE, DANCE_HS_FINISHED, res);
}

/**
 * dance_pha_answer - answer the server's post-handshake CertificateRequest on @fd
 * @res: on success res->reason says what was sent
 *
 * Where danced was the TLS client and its service has a certificate, it offered
 * post_handshake_auth. Call this when dance_recv() failed with ENOMSG: it reads the
 * request, and danced sends the answer on the connection through kTLS: Certificate
 * (carrying dane_clientid with the service's identity when the request asked for it),
 * CertificateVerify and Finished, made with the service's key, which never leaves
 * danced. Application data then continues with dance_recv().
 *
 * Return: 0, or a negative errno with res->reason: -EPROTO ("pha-not-offered", or not
 * a CertificateRequest on the connection), -EINVAL ("pha-server": danced was the
 * server), -EALREADY (that context was answered), -EOPNOTSUPP (no signature algorithm
 * of the request suits the key), -ETIMEDOUT, -ECONNRESET, or a channel error.
 */
int dance_pha_answer(struct dance *d, int fd, struct dance_result *res)
{
	struct dance_ea *m;

	if (!res)
		return -EINVAL;
	m = calloc(1, sizeof(*m));
	if (!m)
		return dance_fail(res, -ENOMEM, DANCE_RES_FD_KEPT, 0, "out of memory");
	m->op = DANCE_EA_PHA_ANSWER;
	return dance_pha_call(d, fd, m, DANCE_HS_CERTIFICATE_REQUEST, DANCE_HS_CERTIFICATE_REQUEST,
			      res);
}

/**
 * dance_shutdown - end the sending side of a kTLS socket cleanly
 *
 * Sends a close_notify alert, which TLS peers expect before the end of the stream
 * (OpenSSL 3 reports a bare FIN as "unexpected eof"), then shuts down writing; reading
 * continues until the peer ends its side. On a socket without kTLS it only shuts down.
 * The caller still closes @fd.
 *
 * Return: 0, or the negated errno of sendmsg(2) or shutdown(2) (e.g. -EPIPE when the
 * peer has gone, -ENOTCONN, -EBADF).
 */
int dance_shutdown(int fd)
{
	uint8_t alert[2] = { 1 /* warning */, DANCE_ALERT_CLOSE_NOTIFY };
	union {
		char buf[CMSG_SPACE(sizeof(uint8_t))];
		struct cmsghdr align;
	} u;
	struct iovec iov = { .iov_base = alert, .iov_len = sizeof(alert) };
	struct msghdr msg = {
		.msg_iov = &iov,
		.msg_iovlen = 1,
		.msg_control = u.buf,
		.msg_controllen = sizeof(u.buf),
	};
	struct cmsghdr *cmsg;
	char ulp[16] = "";
	socklen_t ulp_len = sizeof(ulp);

	/* Plain TCP would send the alert's two bytes as data; only the tls ULP frames it. */
	if (!getsockopt(fd, SOL_TCP, TCP_ULP, ulp, &ulp_len) && !strcmp(ulp, "tls")) {
		memset(&u, 0, sizeof(u));
		cmsg = CMSG_FIRSTHDR(&msg);
		cmsg->cmsg_level = SOL_TLS;
		cmsg->cmsg_type = TLS_SET_RECORD_TYPE;
		cmsg->cmsg_len = CMSG_LEN(sizeof(uint8_t));
		*CMSG_DATA(cmsg) = DANCE_CT_ALERT;
		if (sendmsg(fd, &msg, MSG_NOSIGNAL) != (ssize_t)sizeof(alert))
			return -errno;
	}
	return shutdown(fd, SHUT_WR) ? -errno : 0;
}

/**
 * dance_strerror - a short description of a status, for logs
 * @status: 0 or a negative errno, as libdance and danced return them
 *
 * res->reason says more about a particular failure; this names the kind.
 *
 * Return: a static string; never NULL.
 */
const char *dance_strerror(int status)
{
	switch (status) {
	case 0:
		return "ok";
	case -ECONNREFUSED:
		return "danced is not running (nothing accepts on its socket)";
	case -ECONNRESET:
		return "danced closed the channel";
	case -ETIMEDOUT:
		return "the TLS handshake timed out";
	case -ECONNABORTED:
		return "the TLS peer aborted the connection (fatal alert)";
	case -EPROTO:
		return "protocol error (TLS or handoff; the reason says which)";
	case -EACCES:
		return "access denied (peer not authenticated, or no access to the socket)";
	case -ESHUTDOWN:
		return "danced is shutting down";
	case -EPROTONOSUPPORT:
		return "danced speaks another handoff protocol version";
	case -EBADMSG:
		return "malformed message";
	case -EMSGSIZE:
		return "message too long for the handoff protocol";
	case -ENAMETOOLONG:
		return "a name is too long for the handoff protocol";
	case -EBUSY:
		return "busy (too many handshakes in flight)";
	case -EKEYEXPIRED:
		return "the TLS peer updated its keys (KeyUpdate is not supported)";
	}
	return strerror(status < 0 ? -status : status);
}
