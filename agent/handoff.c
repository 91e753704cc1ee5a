// SPDX-License-Identifier: GPL-2.0
/*
 * handoff.c - servers hand sockets to danced here, and get results back here.
 *
 * Receives connections on the handoff socket (AF_UNIX SOCK_SEQPACKET), admits them by
 * SO_PEERCRED, and reads requests carrying one TCP socket each (SCM_RIGHTS). Every
 * request becomes a conn and so gets exactly one result on the same channel, including a
 * request so malformed that it carries no usable socket; every descriptor that arrives
 * is owned or closed on every path. A channel that closes cancels its conns' work and
 * takes their results with it. danced's copy of a socket is closed once its result is out.
 */
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/stat.h>
#include <sys/un.h>

#include "agent.h"

/**
 * handoff_listen - create the handoff socket
 *
 * A stale socket file from a dead danced is replaced; a live one is not.
 *
 * Return: the listening fd, or a negative errno: -EADDRINUSE when another process
 * listens there, -ENAMETOOLONG for a path sockaddr_un cannot hold, or what socket(2),
 * bind(2), chmod(2) or listen(2) said.
 */
int listen_unix(const char *path, unsigned int mode, int backlog)
{
	struct sockaddr_un sun = { .sun_family = AF_UNIX };
	int fd, probe, ret;

	if (strlen(path) >= sizeof(sun.sun_path))
		return -ENAMETOOLONG;
	strcpy(sun.sun_path, path);
	fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0)
		return -errno;
	probe = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
	if (probe >= 0) {
		ret = connect(probe, (struct sockaddr *)&sun, sizeof(sun));
		close(probe);
		if (!ret) {
			close(fd);
			return -EADDRINUSE;
		}
	}
	unlink(path); /* stale: nobody answered */
	if (bind(fd, (struct sockaddr *)&sun, sizeof(sun)) || chmod(path, mode) ||
	    listen(fd, backlog)) {
		ret = -errno;
		close(fd);
		return ret;
	}
	return fd;
}

int handoff_listen(struct agent *a, const struct config *cfg)
{
	int fd = listen_unix(cfg->socket_path, cfg->socket_mode, 1024);

	if (fd < 0) {
		log_err("cannot listen on handoff socket %s: %s", cfg->socket_path,
			fd == -EADDRINUSE ? "another danced is listening there" : strerror(-fd));
		return fd;
	}
	a->handoff_fd = fd;
	return 0;
}

/* Multishot: one submission accepts until the kernel says it stopped (no F_MORE). */
void handoff_arm_accept(struct worker *w, int lfd, void *obj, enum op op)
{
	struct io_uring_sqe *sqe = loop_sqe(w);

	io_uring_prep_multishot_accept(sqe, lfd, NULL, NULL, SOCK_CLOEXEC);
	io_uring_sqe_set_data64(sqe, op_data(obj, op));
}

/* Does the peer's uid, primary gid or any supplementary group appear in allow_*? */
static bool id_allowed(const struct config *cfg, const struct ucred *cred, int fd)
{
	gid_t small[64], *groups = small;
	socklen_t len = sizeof(small);
	size_t i, j, n;
	bool ok = false;

	for (i = 0; i < cfg->n_allow_uid; i++)
		if (cfg->allow_uid[i] == cred->uid)
			return true;
	for (i = 0; i < cfg->n_allow_gid; i++)
		if (cfg->allow_gid[i] == cred->gid)
			return true;
	if (!cfg->n_allow_gid)
		return false;
	if (getsockopt(fd, SOL_SOCKET, SO_PEERGROUPS, groups, &len)) {
		/* More groups than fit: the kernel said how much room they need. */
		if (errno != ERANGE || !(groups = malloc(len)) ||
		    getsockopt(fd, SOL_SOCKET, SO_PEERGROUPS, groups, &len)) {
			if (groups != small)
				free(groups);
			return false;
		}
	}
	n = len / sizeof(gid_t);
	for (i = 0; i < cfg->n_allow_gid && !ok; i++)
		for (j = 0; j < n && !ok; j++)
			ok = cfg->allow_gid[i] == groups[j];
	if (groups != small)
		free(groups);
	return ok;
}

static void channel_arm_recv(struct channel *ch)
{
	struct io_uring_sqe *sqe = loop_sqe(ch->w);

	memset(&ch->msg, 0, sizeof(ch->msg));
	memset(&ch->cmsg, 0, sizeof(ch->cmsg));
	ch->iov.iov_base = ch->buf.raw;
	ch->iov.iov_len = sizeof(ch->buf.raw);
	ch->msg.msg_iov = &ch->iov;
	ch->msg.msg_iovlen = 1;
	ch->msg.msg_control = ch->cmsg.buf;
	ch->msg.msg_controllen = sizeof(ch->cmsg.buf);
	io_uring_prep_recvmsg(sqe, ch->fd, &ch->msg, MSG_CMSG_CLOEXEC);
	io_uring_sqe_set_data64(sqe, op_data(ch, OP_CHAN_RECV));
	ch->refs++;
}

/**
 * handoff_accepted - a server (or, with @pool, a front-door backend) connected
 * @res: the accepted fd, or a negative errno from accept
 */
void handoff_accepted(struct worker *w, int res, struct backend_pool *pool)
{
	struct ucred cred;
	socklen_t len = sizeof(cred);
	struct channel *ch;
	struct state *st;
	bool ok;

	if (res < 0) {
		if (res != -ECANCELED)
			log_warn("accept on %s socket: %s", pool ? "backend" : "handoff",
				 strerror(-res));
		return;
	}
	if (getsockopt(res, SOL_SOCKET, SO_PEERCRED, &cred, &len)) {
		log_warn("SO_PEERCRED: %s; closing the connection", strerror(errno));
		close(res);
		return;
	}
	st = state_get(&agent);
	ok = id_allowed(st->cfg, &cred, res);
	state_put(st);
	if (!ok) {
		log_notice(
			"%s connection refused: uid %u gid %u pid %d is not in allow_uid/allow_gid",
			pool ? "backend" : "handoff", cred.uid, cred.gid, cred.pid);
		close(res);
		return;
	}
	ch = calloc(1, sizeof(*ch));
	if (!ch) {
		log_err("out of memory for a channel; closing it");
		close(res);
		return;
	}
	ch->w = w;
	ch->fd = res;
	ch->refs = 1;
	ch->cred = cred;
	ch->pool = pool;
	ch->backend = pool != NULL;
	ch->w_next = w->channels;
	if (w->channels)
		w->channels->w_prev = ch;
	w->channels = ch;
	log_debug("%s channel from uid %u pid %d", pool ? "backend" : "handoff", cred.uid,
		  cred.pid);
	channel_arm_recv(ch);
}

static void channel_free(struct channel *ch)
{
	struct worker *w = ch->w;

	if (ch->w_prev)
		ch->w_prev->w_next = ch->w_next;
	else
		w->channels = ch->w_next;
	if (ch->w_next)
		ch->w_next->w_prev = ch->w_prev;
	close(ch->fd);
	free(ch);
}

void channel_put(struct channel *ch)
{
	if (!--ch->refs)
		channel_free(ch);
}

/* The worker and its ring are gone: its channels go, whatever still referred to them. */
void channel_free_all(struct worker *w)
{
	while (w->channels)
		channel_free(w->channels);
}

/*
 * What danced can work with: a connected TCP socket. One TCP_INFO answers "a socket?",
 * "TCP?" and "established?" at once; the ULP check happens when danced puts its own on.
 */
int socket_check(int fd, struct sockaddr_storage *peer, struct fail *f)
{
	struct tcp_info ti;
	socklen_t len = sizeof(ti);

	if (getsockopt(fd, IPPROTO_TCP, TCP_INFO, &ti, &len)) {
		if (errno == ENOTSOCK || errno == EBADF)
			return fail_set(f, -ENOTSOCK, "the descriptor is not a socket");
		return fail_set(f, -EPROTOTYPE, "not a TCP socket: kTLS works on TCP only");
	}
	if (ti.tcpi_state == TCP_LISTEN)
		return fail_set(f, -ENOTCONN,
				"a listening socket: hand over an accepted connection");
	if (ti.tcpi_state != TCP_ESTABLISHED)
		return fail_set(f, -ENOTCONN, "the socket is not an established connection");
	len = sizeof(*peer);
	if (getpeername(fd, (struct sockaddr *)peer, &len))
		return fail_set(f, -ENOTCONN, "the socket has no peer: %s", strerror(errno));
	return 0;
}

/* All descriptors that came with the message; more than fit are closed here. */
static int take_fds(struct msghdr *msg, int *fds, int max)
{
	struct cmsghdr *cm;
	int n = 0, i, k;

	for (cm = CMSG_FIRSTHDR(msg); cm; cm = CMSG_NXTHDR(msg, cm)) {
		if (cm->cmsg_level != SOL_SOCKET || cm->cmsg_type != SCM_RIGHTS)
			continue;
		k = (cm->cmsg_len - CMSG_LEN(0)) / sizeof(int);
		for (i = 0; i < k; i++) {
			int fd;

			memcpy(&fd, CMSG_DATA(cm) + i * sizeof(int), sizeof(int));
			if (n < max)
				fds[n++] = fd;
			else
				close(fd);
		}
	}
	return n;
}

static void close_fds(const int *fds, int n)
{
	int i;

	for (i = 0; i < n; i++)
		close(fds[i]);
}

/* One request: a conn that gets exactly one result, whatever the message was. */
static void handoff_request(struct channel *ch, int len, const int *fds, int nfds)
{
	const struct dance_request *req = &ch->buf.req;
	const char *why = NULL;
	struct state *st;
	struct conn *c;
	struct svc *s;
	unsigned int timeout;
	int status;

	st = state_get(&agent);
	c = conn_new(ch->w, -1, st);
	if (!c) {
		log_err("out of memory for a request: closing its channel");
		close_fds(fds, nfds);
		state_put(st);
		shutdown(ch->fd, SHUT_RDWR);
		return;
	}
	c->ch = ch;
	ch->refs++;
	c->ch_next = ch->conns;
	if (ch->conns)
		ch->conns->ch_prev = c;
	ch->conns = c;
	if ((size_t)len >= offsetof(struct dance_request, id) + sizeof(req->id))
		memcpy(&c->id, &req->id, sizeof(c->id)); /* best effort, for the answer */

	if (!len && nfds)
		status = fail_set(&c->fail, -EBADMSG, "empty message with a descriptor attached");
	else if (ch->msg.msg_flags & MSG_TRUNC)
		status = fail_set(&c->fail, -EMSGSIZE, "message longer than a handshake request");
	else if ((status = dance_request_check(req, len, &why)))
		fail_set(&c->fail, status, "%s", why);
	else if ((ch->msg.msg_flags & MSG_CTRUNC) || nfds > 1)
		status = fail_set(&c->fail, -ETOOMANYREFS,
				  "several descriptors attached: send exactly one socket");
	else if (!nfds)
		status = fail_set(&c->fail, -EBADF,
				  "no socket attached: send it as one SCM_RIGHTS descriptor");
	if (status) {
		close_fds(fds, nfds);
		goto refuse;
	}
	c->fd = fds[0];
	if (socket_check(c->fd, &c->peer, &c->fail))
		goto refuse;
	s = state_pick(st, req, &c->fail);
	if (!s)
		goto refuse;
	if (atomic_load(&agent.stopping)) {
		fail_set(&c->fail, -ESHUTDOWN, "danced is shutting down");
		goto refuse;
	}
	if (admit(&c->ticket, st, s->cfg, &c->peer, &c->fail))
		goto refuse;
	memcpy(c->peer_name, req->peer_name, sizeof(c->peer_name));
	memcpy(c->alpn, req->alpn, sizeof(c->alpn));
	timeout = s->cfg->handshake_timeout_ms;
	if (req->timeout_ms && req->timeout_ms < timeout)
		timeout = req->timeout_ms;
	conn_start(c, s, req->service[0] != '\0', timeout);
	conn_put(c);
	return;
refuse:
	conn_refuse(c, c->fail.status, c->fail.why);
	conn_put(c);
}

/*
 * An exported-authenticator operation: a conn too, so that it gets exactly one answer,
 * and may wait for DNS like a handshake. The socket only names the connection.
 */
static void handoff_ea(struct channel *ch, int len, const int *fds, int nfds)
{
	const struct dance_ea *m = &ch->buf.ea;
	socklen_t clen = sizeof(uint64_t);
	const char *why = NULL;
	struct state *st;
	struct conn *c;
	int status;

	st = state_get(&agent);
	c = conn_new(ch->w, -1, st);
	if (!c) {
		log_err("out of memory for a request: closing its channel");
		close_fds(fds, nfds);
		state_put(st);
		shutdown(ch->fd, SHUT_RDWR);
		return;
	}
	c->ch = ch;
	c->ea_op = true;
	ch->refs++;
	c->ch_next = ch->conns;
	if (ch->conns)
		ch->conns->ch_prev = c;
	ch->conns = c;
	if ((size_t)len >= offsetof(struct dance_ea, id) + sizeof(m->id))
		memcpy(&c->id, &m->id, sizeof(c->id));
	if (ch->msg.msg_flags & MSG_TRUNC)
		status = fail_set(&c->fail, -EMSGSIZE,
				  "message longer than an exported-authenticator request");
	else if ((status = dance_ea_check(m, len, &why)))
		fail_set(&c->fail, status, "%s", why);
	else if ((ch->msg.msg_flags & MSG_CTRUNC) || nfds > 1)
		status = fail_set(&c->fail, -ETOOMANYREFS,
				  "several descriptors attached: send exactly one socket");
	else if (!nfds)
		status = fail_set(&c->fail, -EBADF,
				  "no socket attached: send it as one SCM_RIGHTS descriptor");
	if (status) {
		close_fds(fds, nfds);
		goto refuse;
	}
	c->fd = fds[0];
	if (getsockopt(c->fd, SOL_SOCKET, SO_COOKIE, &c->cookie, &clen) || !c->cookie) {
		fail_set(&c->fail, -ENOTSOCK, "the descriptor is not a socket danced can name");
		goto refuse;
	}
	c->ea = malloc(sizeof(*c->ea));
	if (!c->ea) {
		fail_set(&c->fail, -ENOMEM, "out of memory for an exported authenticator");
		goto refuse;
	}
	/* dance_ea_check() bounded it; never more than the struct, whatever comes. */
	memcpy(c->ea, m, (size_t)len < sizeof(*c->ea) ? (size_t)len : sizeof(*c->ea));
	conn_start_ea(c, st->cfg->handshake_timeout_ms);
	conn_put(c);
	return;
refuse:
	conn_refuse(c, c->fail.status, c->fail.why);
	conn_put(c);
}

/*
 * The server went away: its conns stop now (their results have nowhere to go), instead
 * of running their handshakes to the end for nobody.
 */
static void channel_closed(struct channel *ch)
{
	struct conn *c, *next;

	for (c = ch->conns; c; c = next) {
		next = c->ch_next;
		c->ops++; /* keep it while cancelling: conn_put() below may free it */
		conn_cancel(c, -ECONNRESET, "the server closed its channel");
		c->ops--;
		next = c->ch_next;
		conn_put(c);
	}
}

/**
 * handoff_recv_done - a message (or the end) arrived on a channel
 *
 * The channel's recv holds one reference, dropped here; a live channel re-arms first.
 * A zero-length datagram with descriptors is a message (a malformed one), not the end.
 */
void handoff_recv_done(struct channel *ch, int res)
{
	int fds[4], nfds = 0;

	if (res >= 0)
		nfds = take_fds(&ch->msg, fds, 4);
	if (res < 0 || (res == 0 && !nfds) || ch->dead) {
		close_fds(fds, nfds);
		/* The server went away: results still owed are dropped with their sockets. */
		if (!ch->dead) {
			log_debug("%s channel of pid %d closed",
				  ch->backend ? "backend" : "handoff", ch->cred.pid);
			ch->dead = true;
			if (ch->backend)
				frontdoor_backend_gone(ch);
			else
				channel_closed(ch);
		}
		ch->refs--; /* the recv's; never the last, the channel holds its own */
		channel_put(ch); /* the channel's own */
		return;
	}
	if (ch->backend) {
		const char *why;

		/* Backends only grant credit; a descriptor from one is never taken. */
		close_fds(fds, nfds);
		if (nfds) {
			log_warn("backend pid %d sent a descriptor; closing its channel",
				 ch->cred.pid);
			shutdown(ch->fd, SHUT_RDWR);
		} else if (dance_ready_check(ch->buf.raw, res, &why)) {
			log_warn("backend pid %d: %s; closing its channel", ch->cred.pid, why);
			shutdown(ch->fd, SHUT_RDWR);
		} else {
			frontdoor_ready(ch, &ch->buf.ready);
		}
	} else if ((size_t)res >= sizeof(struct dance_hdr) && ch->buf.ea.hdr.type == DANCE_MSG_EA &&
		   ch->buf.ea.hdr.magic == DANCE_MAGIC) {
		handoff_ea(ch, res, fds, nfds);
	} else {
		handoff_request(ch, res, fds, nfds);
	}
	channel_arm_recv(ch);
	channel_put(ch);
}

/* The result, back on the conn's channel; the socket itself stays where it is. */
void handoff_send_result(struct conn *c)
{
	struct io_uring_sqe *sqe;

	if (c->ch->dead) {
		log_info("result of request %llu dropped: its channel closed",
			 (unsigned long long)c->id);
		if (c->fd >= 0 && c->touched)
			shutdown(c->fd, SHUT_RDWR);
		return;
	}
	sqe = loop_sqe(c->w);
	io_uring_prep_sendmsg(sqe, c->ch->fd, &c->rmsg, MSG_NOSIGNAL);
	io_uring_sqe_set_data64(sqe, op_data(c, OP_RESULT_SEND));
	c->ops++;
}

/*
 * The same without the ring, when the worker's ring is gone: a result that does not fit
 * the channel's buffer now is lost, and the channel closes with it (exactly once).
 */
int handoff_send_result_now(struct conn *c)
{
	ssize_t n = -1;

	if (!c->ch->dead)
		n = sendmsg(c->ch->fd, &c->rmsg, MSG_NOSIGNAL | MSG_DONTWAIT);
	if (n < 0 && !c->ch->dead)
		shutdown(c->ch->fd, SHUT_RDWR);
	if (c->fd >= 0) {
		if ((n < 0 || c->res->status) && !c->ea_op)
			shutdown(c->fd, SHUT_RDWR);
		close(c->fd);
		c->fd = -1;
	}
	return n < 0 ? -EPIPE : 0;
}
