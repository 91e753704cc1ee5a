// SPDX-License-Identifier: GPL-2.0
/*
 * handoff.c - servers hand sockets to danced here, and get results back here.
 *
 * Receives connections on the handoff socket (AF_UNIX SOCK_SEQPACKET), admits them by
 * SO_PEERCRED, and reads requests carrying one TCP socket each (SCM_RIGHTS). Every
 * request becomes a conn and so gets exactly one result on the same channel, including a
 * request so malformed that it carries no usable socket; a channel that closes takes its
 * pending results with it. danced's copy of the socket is closed once the result is out.
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

static bool id_allowed(const struct config *cfg, const struct ucred *cred, int fd)
{
	gid_t groups[64];
	socklen_t len = sizeof(groups);
	size_t i, j, n;

	for (i = 0; i < cfg->n_allow_uid; i++)
		if (cfg->allow_uid[i] == cred->uid)
			return true;
	for (i = 0; i < cfg->n_allow_gid; i++)
		if (cfg->allow_gid[i] == cred->gid)
			return true;
	if (!cfg->n_allow_gid || getsockopt(fd, SOL_SOCKET, SO_PEERGROUPS, groups, &len))
		return false;
	n = len / sizeof(gid_t);
	for (i = 0; i < cfg->n_allow_gid; i++)
		for (j = 0; j < n; j++)
			if (cfg->allow_gid[i] == groups[j])
				return true;
	return false;
}

static void channel_arm_recv(struct channel *ch)
{
	struct io_uring_sqe *sqe = loop_sqe(ch->w);

	memset(&ch->msg, 0, sizeof(ch->msg));
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
	log_debug("%s channel from uid %u pid %d", pool ? "backend" : "handoff", cred.uid,
		  cred.pid);
	channel_arm_recv(ch);
}

void channel_put(struct channel *ch)
{
	if (--ch->refs)
		return;
	close(ch->fd);
	free(ch);
}

/* What danced can work with: a connected TCP socket that nothing else has taken over. */
static int socket_check(int fd, const char **why)
{
	struct tcp_info ti;
	char ulp[16] = "";
	socklen_t len = sizeof(int);
	int proto;

	if (getsockopt(fd, SOL_SOCKET, SO_PROTOCOL, &proto, &len)) {
		*why = errno == ENOTSOCK ? "the descriptor is not a socket" :
					   "cannot inspect the descriptor";
		return -ENOTSOCK;
	}
	*why = "not a TCP socket: kTLS works on TCP only";
	if (proto != IPPROTO_TCP)
		return -EPROTOTYPE;
	len = sizeof(ti);
	*why = "cannot read the socket's TCP state";
	if (getsockopt(fd, IPPROTO_TCP, TCP_INFO, &ti, &len))
		return -ENOTCONN;
	*why = "a listening socket: hand over an accepted connection";
	if (ti.tcpi_state == TCP_LISTEN)
		return -ENOTCONN;
	*why = "the socket is not an established connection";
	if (ti.tcpi_state != TCP_ESTABLISHED)
		return -ENOTCONN;
	len = sizeof(ulp);
	*why = "the socket already carries an upper-layer protocol (kTLS installed before?)";
	if (!getsockopt(fd, IPPROTO_TCP, TCP_ULP, ulp, &len) && ulp[0])
		return -EALREADY;
	*why = NULL;
	return 0;
}

/* All descriptors that came with the message; more than fit are closed by the kernel. */
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

static struct svc *pick_service(struct state *st, const struct dance_request *req, int *status,
				const char **why, char *buf, size_t buflen)
{
	bool client = req->flags & DANCE_REQ_CLIENT;
	struct svc *s = NULL;
	size_t i;

	if (req->service[0]) {
		s = state_service(st, req->service);
		if (!s) {
			snprintf(buf, buflen, "no service named '%s' in %s", req->service,
				 st->cfg->path);
			*status = -ENOENT;
			*why = buf;
			return NULL;
		}
		if ((s->cfg->role == ROLE_CLIENT) != client) {
			snprintf(buf, buflen,
				 "service '%s' is a %s service; the request is for the %s role",
				 req->service, client ? "server" : "client",
				 client ? "client" : "server");
			*status = -EINVAL;
			*why = buf;
			return NULL;
		}
		return s;
	}
	/*
	 * Server role: start from the default service, or any server service; the
	 * ClientHello's SNI then picks the one that answers (handshake.c).
	 */
	s = client ? NULL : st->default_server;
	for (i = 0; i < st->n_svcs && !s; i++)
		if ((st->svcs[i].cfg->role == ROLE_CLIENT) == client)
			s = &st->svcs[i];
	if (!s) {
		*status = -ENOENT;
		*why = client ? "no client service is configured" :
				"no server service is configured";
	}
	return s;
}

static void handoff_request(struct channel *ch, int len)
{
	const struct dance_request *req = &ch->buf.req;
	int fds[4], nfds, status = 0, i;
	const char *why = NULL;
	struct state *st;
	struct conn *c;
	struct svc *s;
	unsigned int timeout, n;

	nfds = take_fds(&ch->msg, fds, 4);
	st = state_get(&agent);
	c = conn_new(ch->w, -1, st);
	if (!c) {
		log_err("out of memory for a request: closing its channel");
		for (i = 0; i < nfds; i++)
			close(fds[i]);
		state_put(st);
		shutdown(ch->fd, SHUT_RDWR);
		return;
	}
	c->ch = ch;
	ch->refs++;
	if ((size_t)len >= offsetof(struct dance_request, id) + sizeof(req->id))
		memcpy(&c->id, &req->id, sizeof(c->id)); /* best effort, for the answer */

	if (ch->msg.msg_flags & MSG_TRUNC) {
		status = -EMSGSIZE;
		why = "message longer than a handshake request";
	} else {
		status = dance_request_check(req, len, &why);
	}
	if (!status && ((ch->msg.msg_flags & MSG_CTRUNC) || nfds > 1)) {
		status = -ETOOMANYREFS;
		why = "several descriptors attached: send exactly one socket";
	} else if (!status && !nfds) {
		status = -EBADF;
		why = "no socket attached: send it as one SCM_RIGHTS descriptor";
	}
	if (status) {
		for (i = 0; i < nfds; i++)
			close(fds[i]);
		goto refuse;
	}
	c->fd = fds[0];
	status = socket_check(c->fd, &why);
	if (status)
		goto refuse;
	s = pick_service(st, req, &status, &why, c->why, sizeof(c->why));
	if (!s)
		goto refuse;
	if (atomic_load(&agent.stopping)) {
		status = -ESHUTDOWN;
		why = "danced is shutting down";
		goto refuse;
	}
	n = atomic_fetch_add(&agent.inflight, 1);
	if (n >= st->cfg->max_handshakes) {
		atomic_fetch_sub(&agent.inflight, 1);
		snprintf(c->why, sizeof(c->why),
			 "danced is busy: %u handshakes in flight (max_handshakes)", n);
		status = -EBUSY;
		why = c->why;
		goto refuse;
	}
	/* Before any I/O: on a protected port, only a held socket lets danced's through. */
	status = policy_hold(c->fd);
	if (status < 0) {
		atomic_fetch_sub(&agent.inflight, 1);
		why = "cannot hold the socket in the BPF policy maps";
		goto refuse;
	}
	c->held = status > 0;
	status = 0;
	c->svc = s;
	c->svc_fixed = req->service[0] != '\0';
	c->flags = req->flags;
	memcpy(c->peer_name, req->peer_name, sizeof(c->peer_name));
	memcpy(c->alpn, req->alpn, sizeof(c->alpn));
	timeout = s->cfg->handshake_timeout_ms;
	if (req->timeout_ms && req->timeout_ms < timeout)
		timeout = req->timeout_ms;
	c->deadline_ns = c->start_ns + (uint64_t)timeout * 1000000;
	c->counted = true;
	if (handshake_start(c))
		conn_finish(c, -ENOMEM, "out of memory for the TLS session");
	conn_put(c);
	return;
refuse:
	conn_finish(c, status, why);
	conn_put(c);
}

/**
 * handoff_recv_done - a message (or the end) arrived on a channel
 *
 * The channel's recv holds one reference, dropped here; a live channel re-arms first.
 */
void handoff_recv_done(struct channel *ch, int res)
{
	if (res <= 0 || ch->dead) {
		/* The server went away: results still owed are dropped with their sockets. */
		if (!ch->dead)
			log_debug("%s channel of pid %d closed",
				  ch->backend ? "backend" : "handoff", ch->cred.pid);
		ch->dead = true;
		if (ch->backend)
			frontdoor_backend_gone(ch);
		ch->refs--; /* the recv's; never the last, the channel holds its own */
		channel_put(ch); /* the channel's own */
		return;
	}
	if (ch->backend) {
		const char *why;
		int nfds, fds[4], i;

		nfds = take_fds(&ch->msg, fds, 4);
		for (i = 0; i < nfds; i++)
			close(fds[i]);
		if (dance_ready_check(ch->buf.raw, res, &why)) {
			log_warn("backend pid %d: %s; closing its channel", ch->cred.pid, why);
			shutdown(ch->fd, SHUT_RDWR);
		} else {
			frontdoor_ready(ch, &ch->buf.ready);
		}
	} else {
		handoff_request(ch, res);
	}
	channel_arm_recv(ch);
	channel_put(ch);
}

/* Send the conn's result back on its channel; the socket itself stays where it is. */
void handoff_return(struct conn *c)
{
	struct dance_result *r = c->res;
	struct io_uring_sqe *sqe;

	if (c->ch->dead) {
		log_info("result of request %llu dropped: its channel closed",
			 (unsigned long long)c->id);
		if (c->fd >= 0 && c->touched)
			shutdown(c->fd, SHUT_RDWR);
		return;
	}
	c->riov.iov_base = r;
	c->riov.iov_len = DANCE_RESULT_HDR_LEN + r->pending_len;
	memset(&c->rmsg, 0, sizeof(c->rmsg));
	c->rmsg.msg_iov = &c->riov;
	c->rmsg.msg_iovlen = 1;
	sqe = loop_sqe(c->w);
	io_uring_prep_sendmsg(sqe, c->ch->fd, &c->rmsg, MSG_NOSIGNAL);
	io_uring_sqe_set_data64(sqe, op_data(c, OP_RESULT_SEND));
	c->ops++;
}
