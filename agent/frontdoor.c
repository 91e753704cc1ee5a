// SPDX-License-Identifier: GPL-2.0
/*
 * frontdoor.c - front-door mode: danced accepts TCP connections for a service itself
 * and passes each finished kTLS socket, with its result, to a backend.
 *
 * Each worker has its own SO_REUSEPORT listener per address, so the kernel spreads
 * connections. Backends connect to the service's backend socket and grant credit
 * (DANCE_MSG_READY); a finished socket goes to a backend with credit, round robin, or
 * waits on its worker. With no backend, or too many sockets waiting, the worker stops
 * accepting: the kernel's backlog is the backpressure, and nothing is dropped. A socket
 * that waited too long is given up only once no backend has unread credit for it.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/ioctl.h>

#include "agent.h"

#define WAIT_MAX 64 /* finished sockets a worker holds before it stops accepting */

static int listen_tcp(const struct sockaddr_storage *ss, socklen_t len, unsigned int backlog)
{
	int fd, one = 1, ret;

	fd = socket(ss->ss_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, IPPROTO_TCP);
	if (fd < 0)
		return -errno;
	if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) ||
	    setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) ||
	    (ss->ss_family == AF_INET6 &&
	     setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one))) ||
	    bind(fd, (const struct sockaddr *)ss, len) || listen(fd, backlog)) {
		ret = -errno;
		close(fd);
		return ret;
	}
	return fd;
}

/**
 * frontdoor_init - the backend sockets, once per process
 *
 * Listen addresses and backend sockets are fixed for the life of the process; reload
 * changes everything else about a service.
 *
 * Return: 0, or the negative errno of a backend socket that cannot be created.
 */
int frontdoor_init(struct agent *a, const struct config *cfg)
{
	size_t i;
	int fd;

	for (i = 0; i < cfg->n_svcs; i++) {
		const struct svc_config *s = &cfg->svcs[i];
		struct backend_pool *p;

		if (!s->n_listen)
			continue;
		fd = listen_unix(s->backend_socket, cfg->socket_mode, 128);
		if (fd < 0) {
			log_err("[service %s]: cannot listen on backend socket %s: %s", s->name,
				s->backend_socket,
				fd == -EADDRINUSE ? "another process listens there" :
						    strerror(-fd));
			return fd;
		}
		p = &a->pools[a->n_pools++];
		snprintf(p->name, sizeof(p->name), "%s", s->name);
		p->lfd = fd;
		p->cfg_listen = s;
		pthread_mutex_init(&p->lock, NULL);
	}
	return 0;
}

/* This worker's listeners, one per address of every front-door service. */
int frontdoor_listen(struct agent *a, struct worker *w)
{
	const struct svc_config *s;
	char buf[64];
	size_t i, j;
	int fd;

	for (i = 0; i < a->n_pools; i++) {
		s = a->pools[i].cfg_listen;
		for (j = 0; j < s->n_listen; j++) {
			struct listener *l = &w->listeners[w->n_listeners];

			fd = listen_tcp(&s->listen[j], s->listen_len[j], s->backlog);
			if (fd < 0) {
				log_err("[service %s]: cannot listen on %s: %s", s->name,
					log_addr(&s->listen[j], buf, sizeof(buf)), strerror(-fd));
				frontdoor_close(w);
				return fd;
			}
			l->fd = fd;
			l->pool = &a->pools[i];
			w->n_listeners++;
		}
	}
	return 0;
}

void frontdoor_close(struct worker *w)
{
	size_t i;

	for (i = 0; i < w->n_listeners; i++)
		close(w->listeners[i].fd);
	w->n_listeners = 0;
}

static bool pool_open(struct backend_pool *p)
{
	bool open;

	pthread_mutex_lock(&p->lock);
	open = p->backends != NULL;
	pthread_mutex_unlock(&p->lock);
	return open;
}

/* Accept only while a backend is there and this worker is not holding too many. */
void frontdoor_arm_listeners(struct worker *w)
{
	struct io_uring_sqe *sqe;
	size_t i;

	if (atomic_load(&agent.stopping))
		return;
	for (i = 0; i < w->n_listeners; i++) {
		struct listener *l = &w->listeners[i];

		if (l->armed || w->n_waiting >= WAIT_MAX || !pool_open(l->pool))
			continue;
		l->peer_len = sizeof(l->peer);
		sqe = loop_sqe(w);
		io_uring_prep_accept(sqe, l->fd, (struct sockaddr *)&l->peer, &l->peer_len,
				     SOCK_CLOEXEC);
		io_uring_sqe_set_data64(sqe, op_data(l, OP_TCP_ACCEPT));
		l->armed = true;
	}
}

void frontdoor_arm(struct worker *w)
{
	size_t i;

	for (i = 0; i < agent.n_pools; i++)
		handoff_arm_accept(w, agent.pools[i].lfd, &agent.pools[i], OP_BACKEND_ACCEPT);
	frontdoor_arm_listeners(w);
}

void frontdoor_backend_accepted(struct worker *w, struct backend_pool *p, int res, bool more)
{
	handoff_accepted(w, res, p);
	if (!more && !atomic_load(&agent.stopping))
		handoff_arm_accept(w, p->lfd, p, OP_BACKEND_ACCEPT);
}

/* A TCP connection for a front-door service: handshake it like a handed-over socket. */
void frontdoor_accepted(struct worker *w, struct listener *l, int res)
{
	struct state *st;
	struct conn *c;
	struct svc *s;

	l->armed = false;
	if (res < 0) {
		if (res != -ECANCELED)
			log_warn("[service %s]: accept: %s", l->pool->name, strerror(-res));
		frontdoor_arm_listeners(w);
		return;
	}
	st = state_get(&agent);
	c = conn_new(w, res, st);
	if (!c) {
		log_err("[service %s]: out of memory for a connection; closing it", l->pool->name);
		close(res);
		state_put(st);
		frontdoor_arm_listeners(w);
		return;
	}
	c->pool = l->pool;
	c->id = atomic_fetch_add(&agent.next_id, 1) + 1;
	memcpy(&c->peer, &l->peer, sizeof(c->peer));
	s = state_service(st, l->pool->name);
	if (!s) {
		fail_set(&c->fail, -ENOENT, "the service is gone since reload");
	} else if (!admit(&c->ticket, st, s->cfg, &c->peer, &c->fail)) {
		conn_start(c, s, true, s->cfg->handshake_timeout_ms);
		conn_put(c);
		frontdoor_arm_listeners(w);
		return;
	}
	/* No room: the peer sees a closed connection, the log says why (rate-limited). */
	conn_refuse(c, c->fail.status, c->fail.why);
	conn_put(c);
	frontdoor_arm_listeners(w);
}

/**
 * frontdoor_offer - give a finished socket to a backend with credit, round robin
 *
 * Runs on the conn's worker; the pool lock makes the pick and the send one step, so a
 * backend that leaves is never sent to after it left.
 *
 * Return: true when a backend took it (the caller closes danced's copy).
 */
bool frontdoor_offer(struct conn *c)
{
	struct backend_pool *p = c->pool;
	char cbuf[CMSG_SPACE(sizeof(int))] = { 0 };
	struct msghdr msg = c->rmsg;
	struct cmsghdr *cm;
	struct channel *b, *start;
	bool sent = false;

	msg.msg_control = cbuf;
	msg.msg_controllen = sizeof(cbuf);
	cm = CMSG_FIRSTHDR(&msg);
	cm->cmsg_level = SOL_SOCKET;
	cm->cmsg_type = SCM_RIGHTS;
	cm->cmsg_len = CMSG_LEN(sizeof(int));
	memcpy(CMSG_DATA(cm), &c->fd, sizeof(int));
	pthread_mutex_lock(&p->lock);
	start = p->next ?: p->backends;
	b = start;
	while (b && !sent) {
		if (b->credit > 0 && !b->dead) {
			if (sendmsg(b->fd, &msg, MSG_DONTWAIT | MSG_NOSIGNAL) >= 0) {
				b->credit--;
				sent = true;
			} else if (errno != EAGAIN) {
				b->credit = 0; /* it is going away; its recv will tell */
			}
		}
		b = b->pool_next ?: p->backends;
		if (b == start)
			break;
	}
	p->next = b;
	pthread_mutex_unlock(&p->lock);
	return sent;
}

/*
 * Has a backend sent credit that its worker has not read yet? After danced was stopped
 * (SIGSTOP, a long stall), READY messages can sit in the socket while a waiting socket's
 * time runs out: they must count before it is given up.
 */
bool frontdoor_credit_unread(struct backend_pool *p)
{
	struct channel *b;
	bool unread = false;
	int n;

	pthread_mutex_lock(&p->lock);
	for (b = p->backends; b && !unread; b = b->pool_next)
		unread = !b->dead && !ioctl(b->fd, FIONREAD, &n) && n > 0;
	pthread_mutex_unlock(&p->lock);
	return unread;
}

/* A backend granted credit: workers holding sockets try again. */
void frontdoor_ready(struct channel *ch, const struct dance_ready *r)
{
	struct backend_pool *p = ch->pool;
	unsigned int i;
	bool first;

	pthread_mutex_lock(&p->lock);
	first = !ch->in_pool;
	if (first) {
		ch->pool_next = p->backends;
		p->backends = ch;
		ch->in_pool = true;
		ch->refs++; /* the pool's */
	}
	ch->credit += r->n;
	pthread_mutex_unlock(&p->lock);
	if (first)
		log_info("[service %s]: backend pid %d ready", p->name, ch->cred.pid);
	for (i = 0; i < agent.n_started; i++)
		loop_wake(&agent.workers[i]);
}

void frontdoor_backend_gone(struct channel *ch)
{
	struct backend_pool *p = ch->pool;
	struct channel **pp;
	bool was = false;

	pthread_mutex_lock(&p->lock);
	for (pp = &p->backends; *pp; pp = &(*pp)->pool_next)
		if (*pp == ch) {
			*pp = ch->pool_next;
			was = true;
			break;
		}
	if (p->next == ch)
		p->next = NULL;
	ch->in_pool = false;
	pthread_mutex_unlock(&p->lock);
	if (was) {
		log_info("[service %s]: backend pid %d left", p->name, ch->cred.pid);
		channel_put(ch); /* the pool's */
	}
}

/*
 * Deliver what waits, give up what waited too long (once no credit is left unread), and
 * accept again when there is room. @stop: danced is leaving; nothing waits any more.
 */
void frontdoor_pump(struct worker *w, bool stop)
{
	struct conn *c, *next, **pp = &w->waiting;
	uint64_t now = now_ns();

	for (c = w->waiting; c; c = next) {
		next = c->next;
		if (frontdoor_offer(c)) {
			conn_delivered(c);
		} else if (stop) {
			conn_give_up(c, "danced is stopping and no backend took the connection");
		} else if (now > c->wait_until_ns && !frontdoor_credit_unread(c->pool)) {
			conn_give_up(c, "no backend took the finished connection in time");
		} else {
			pp = &c->next;
			continue;
		}
		*pp = next;
		c->next = NULL;
		w->n_waiting--;
		c->ops--; /* the waiting list's hold */
		conn_put(c);
	}
	if (w->waiting)
		loop_tick(w);
	frontdoor_arm_listeners(w);
}
