// SPDX-License-Identifier: GPL-2.0
/*
 * conn.c - the life of one socket in danced, in the order it happens: created from a
 * request (or a front-door accept), driven through its handshake by ring reads and
 * writes under one deadline, finished exactly once, freed when the ring is done with it.
 *
 * conn_finish() is the only place a result is made; it runs once per conn, on every
 * path, and hands the conn to handoff.c or frontdoor.c for delivery. Conns and result
 * buffers are recycled per worker, so a handshake allocates nothing of ours.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <netinet/in.h>
#include <openssl/err.h>

#include "agent.h"

#define FREE_CONNS_MAX 1024 /* per worker; beyond that, memory goes back */

/**
 * conn_new - a conn for a socket that danced now holds
 * @fd: danced's descriptor, or -1 when the request came without a usable one
 * @st: a state reference, which the conn takes over
 *
 * Return: the conn, or NULL when out of memory (@fd and @st are then still the caller's).
 */
struct conn *conn_new(struct worker *w, int fd, struct state *st)
{
	struct conn *c = w->free_conns;

	if (c) {
		w->free_conns = c->next;
		w->n_free_conns--;
	} else {
		c = malloc(sizeof(*c));
		if (!c)
			return NULL;
	}
	/* The I/O buffers at the end need no clearing: lengths say what is valid. */
	memset(c, 0, offsetof(struct conn, in));
	c->w = w;
	c->fd = fd;
	c->st = st;
	c->start_ns = now_ns();
	w->live++;
	return c;
}

struct dance_result *conn_result_buf(struct conn *c)
{
	struct worker *w = c->w;
	struct dance_result *r = w->free_results;

	if (r)
		w->free_results = *(struct dance_result **)r;
	else
		r = malloc(sizeof(*r));
	if (r)
		memset(r, 0, DANCE_RESULT_HDR_LEN);
	return r;
}

static void result_buf_put(struct worker *w, struct dance_result *r)
{
	*(struct dance_result **)r = w->free_results;
	w->free_results = r;
}

/**
 * conn_start - count the conn as in flight and begin its handshake
 *
 * The caller has set svc, deadline and the request fields. On return the conn belongs
 * to the ring and to conn_finish().
 */
void conn_start(struct conn *c)
{
	c->counted = true;
	if (handshake_start(c))
		conn_finish(c, -ENOMEM, "out of memory for the TLS session");
}

static void conn_free(struct conn *c)
{
	struct worker *w = c->w;

	SSL_free(c->ssl);
	ktls_conn_wipe(&c->kc);
	tlsa_set_free(&c->tlsa);
	if (c->fd >= 0)
		close(c->fd);
	if (c->res)
		result_buf_put(w, c->res);
	if (c->ch)
		channel_put(c->ch);
	state_put(c->st);
	w->live--;
	if (w->n_free_conns < FREE_CONNS_MAX) {
		c->next = w->free_conns;
		w->free_conns = c;
		w->n_free_conns++;
	} else {
		free(c);
	}
}

/* Free the conn once it is finished and no ring operation refers to it any more. */
void conn_put(struct conn *c)
{
	if (c->phase == PHASE_RESULT && !c->ops)
		conn_free(c);
}

void conn_pool_fini(struct worker *w)
{
	struct dance_result *r;
	struct conn *c;

	while ((c = w->free_conns)) {
		w->free_conns = c->next;
		free(c);
	}
	while ((r = w->free_results)) {
		w->free_results = *(struct dance_result **)r;
		free(r);
	}
}

/* Logs carry what peers sent (SNI, subjects): keep them one printable line. */
static const char *printable(const char *in, char *out, size_t max)
{
	size_t i;

	for (i = 0; in[i] && i + 1 < max; i++)
		out[i] = in[i] >= 0x20 && in[i] < 0x7f && in[i] != '"' ? in[i] : '?';
	out[i] = '\0';
	return out;
}

static void peer_addr(int fd, char *out, size_t max)
{
	struct sockaddr_storage ss;
	socklen_t len = sizeof(ss);
	char host[INET6_ADDRSTRLEN] = "?";
	int port = 0;

	snprintf(out, max, "-");
	if (fd < 0 || getpeername(fd, (struct sockaddr *)&ss, &len))
		return;
	if (ss.ss_family == AF_INET) {
		struct sockaddr_in *s = (struct sockaddr_in *)&ss;

		inet_ntop(AF_INET, &s->sin_addr, host, sizeof(host));
		port = ntohs(s->sin_port);
		snprintf(out, max, "%s:%d", host, port);
	} else if (ss.ss_family == AF_INET6) {
		struct sockaddr_in6 *s = (struct sockaddr_in6 *)&ss;

		inet_ntop(AF_INET6, &s->sin6_addr, host, sizeof(host));
		port = ntohs(s->sin6_port);
		snprintf(out, max, "[%s]:%d", host, port);
	}
}

static void conn_log(struct conn *c, const struct dance_result *r)
{
	char addr[64], sni[80], subj[160], name[DANCE_HOST_MAX], why[DANCE_REASON_MAX];

	if (r->status == 0) {
		peer_addr(c->fd, addr, sizeof(addr));
		log_info("handshake ok id=%llu service=%s peer=%s %s %s sni=\"%s\" alpn=%s "
			 "auth=%s%s%s subject=\"%s\" pending=%u us=%u",
			 (unsigned long long)c->id, r->service, addr,
			 r->tls_version == 0x0304 ? "TLSv1.3" : "TLSv1.2", r->cipher_name,
			 printable(r->sni, sni, sizeof(sni)), r->alpn[0] ? r->alpn : "-",
			 r->auth == DANCE_AUTH_DANE ? "dane name=" :
			 r->auth == DANCE_AUTH_X509 ? "x509" :
						      "none",
			 r->auth == DANCE_AUTH_DANE ?
				 printable(r->verified_name, name, sizeof(name)) :
				 "",
			 r->auth == DANCE_AUTH_DANE && r->dns_cached ? " (cached)" : "",
			 printable(r->peer_subject, subj, sizeof(subj)), r->pending_len,
			 r->handshake_us);
	} else if (c->ssl || c->fd >= 0) {
		peer_addr(c->fd, addr, sizeof(addr));
		log_notice(
			"handshake failed id=%llu service=%s peer=%s status=%d reason=\"%s\" us=%u",
			(unsigned long long)c->id, r->service[0] ? r->service : "-", addr,
			r->status, printable(r->reason, why, sizeof(why)), r->handshake_us);
	} else {
		log_notice("request refused id=%llu status=%d reason=\"%s\"",
			   (unsigned long long)c->id, r->status,
			   printable(r->reason, why, sizeof(why)));
	}
}

/**
 * conn_finish - make the one result of this conn and send it on its way
 * @status: 0, or a negative errno
 * @reason: for people; copied
 *
 * Runs exactly once per conn (later calls are ignored). A failed connection is shut down
 * when TLS bytes already moved, so the peer is not left hanging while the server still
 * holds its descriptor. May not free @c: the delivery holds it until the ring is done.
 */
void conn_finish(struct conn *c, int status, const char *reason)
{
	struct dance_result *r;
	uint64_t cookie;
	socklen_t len = sizeof(cookie);

	if (c->phase == PHASE_RESULT)
		return;
	c->phase = PHASE_RESULT;
	if (c->counted) {
		atomic_fetch_sub(&agent.inflight, 1);
		c->counted = false;
	}
	if (!c->res)
		c->res = conn_result_buf(c);
	r = c->res;
	if (!r) {
		/* Nothing to answer with: closing the channel is the other half of the contract. */
		log_err("out of memory for a result: closing the channel of request %llu",
			(unsigned long long)c->id);
		if (c->ch)
			shutdown(c->ch->fd, SHUT_RDWR);
		if (c->touched && c->fd >= 0)
			shutdown(c->fd, SHUT_RDWR);
		return;
	}
	dance_hdr_init(&r->hdr, c->ch ? DANCE_MSG_RESULT : DANCE_MSG_ACCEPTED);
	r->status = status;
	r->id = c->id;
	r->handshake_us = (now_ns() - c->start_ns) / 1000;
	snprintf(r->reason, sizeof(r->reason), "%s", reason);
	if (c->svc)
		snprintf(r->service, sizeof(r->service), "%s", c->svc->cfg->name);
	if (!status) {
		handshake_describe(c, r);
		if (!getsockopt(c->fd, SOL_SOCKET, SO_COOKIE, &cookie, &len))
			r->cookie = cookie;
		status = policy_identify(c->fd, c->svc->cfg, r);
		if (status == 1) {
			/* Plaintext read during the handshake would reach the server past the hooks. */
			OPENSSL_cleanse(r->pending, r->pending_len);
			r->pending_len = 0;
			r->flags &= ~DANCE_RES_PEER_CLOSED;
			status = 0;
		}
		c->held = c->held && status; /* on success, the identity replaced the hold */
		if (status) {
			/* A protected port would refuse it anyway: say why now, and close. */
			r->status = status;
			snprintf(r->reason, sizeof(r->reason),
				 "cannot record the peer's identity in the BPF policy maps: %s",
				 strerror(-status));
		}
	}
	if (status) {
		if (c->held)
			policy_release(c->fd);
		c->held = false;
		r->pending_len = 0;
		r->flags = 0;
		if (c->touched && c->fd >= 0)
			shutdown(c->fd, SHUT_RDWR);
	}
	conn_log(c, r);
	/* The session is over for danced either way; its secrets go now. */
	ktls_conn_wipe(&c->kc);
	SSL_free(c->ssl);
	c->ssl = NULL;
	if (c->ch)
		handoff_return(c);
	else
		frontdoor_deliver(c);
}

bool conn_arm_deadline(struct conn *c)
{
	uint64_t now = now_ns();
	uint64_t left;

	if (now >= c->deadline_ns) {
		c->timed_out = true;
		return false;
	}
	left = c->deadline_ns - now;
	c->ts.tv_sec = left / 1000000000ULL;
	c->ts.tv_nsec = left % 1000000000ULL;
	return true;
}

/* A recv or send, linked to a timeout for what is left of the handshake's deadline. */
static void conn_submit_io(struct conn *c, bool send, size_t len)
{
	struct io_uring_sqe *sqe;

	if (!conn_arm_deadline(c)) {
		conn_timed_out(c);
		return;
	}
	loop_reserve(c->w, 2); /* the pair must reach the kernel in one submission */
	sqe = loop_sqe(c->w);
	if (send)
		io_uring_prep_send(sqe, c->fd, c->out + c->out_off, c->out_len - c->out_off,
				   MSG_NOSIGNAL);
	else
		io_uring_prep_recv(sqe, c->fd, c->in + c->in_len, len, 0);
	io_uring_sqe_set_data64(sqe, op_data(c, OP_CONN_IO));
	sqe->flags |= IOSQE_IO_LINK;
	sqe = loop_sqe(c->w);
	io_uring_prep_link_timeout(sqe, &c->ts, 0);
	io_uring_sqe_set_data64(sqe, op_data(c, OP_CONN_TIMEOUT));
	c->ops += 2;
	c->io_busy = true;
	c->io_send = send;
	c->touched = true;
}

void conn_submit_recv(struct conn *c, size_t len)
{
	conn_submit_io(c, false, len);
}

void conn_submit_send(struct conn *c)
{
	conn_submit_io(c, true, 0);
}

void conn_timed_out(struct conn *c)
{
	snprintf(c->why, sizeof(c->why), "handshake timed out after %llu ms",
		 (unsigned long long)((c->deadline_ns - c->start_ns) / 1000000));
	conn_finish(c, -ETIMEDOUT, c->why);
}

/* The recv or send of a conn completed (see conn_submit_io()). */
void conn_io_done(struct conn *c, int res)
{
	c->ops--;
	c->io_busy = false;
	if (c->phase == PHASE_RESULT)
		goto out;
	if (res == -ECANCELED || c->timed_out) {
		conn_timed_out(c);
		goto out;
	}
	if (c->io_send) {
		if (res < 0) {
			if (c->phase == PHASE_ALERT) {
				conn_finish(c, c->fail_status, c->fail_reason);
			} else {
				snprintf(c->why, sizeof(c->why), "send to the peer failed: %s",
					 strerror(-res));
				conn_finish(c, res, c->why);
			}
			goto out;
		}
		c->out_off += res;
		if (c->out_off < c->out_len) {
			conn_submit_send(c);
			goto out;
		}
		c->out_off = c->out_len = 0;
	} else {
		if (res <= 0) {
			if (!res)
				snprintf(c->why, sizeof(c->why),
					 "the peer closed the connection during the handshake");
			else
				snprintf(c->why, sizeof(c->why), "recv from the peer failed: %s",
					 strerror(-res));
			conn_finish(c, res ? res : -ECONNRESET, c->why);
			goto out;
		}
		handshake_received(c, res);
	}
	handshake_step(c);
out:
	conn_put(c);
}

void conn_timeout_done(struct conn *c, int res)
{
	c->ops--;
	if (res == -ETIME)
		c->timed_out = true;
	conn_put(c);
}

/* The result (and, front-door, the socket) left; danced keeps nothing of it. */
void conn_result_sent(struct conn *c, int res)
{
	c->ops--;
	if (res < 0) {
		/*
		 * Exactly once: a result that cannot be delivered takes the channel with it. A
		 * server that exited with requests in flight is routine, not an error of ours.
		 */
		if (res == -EPIPE || res == -ECONNRESET)
			log_info("result of request %llu not delivered: the server closed its "
				 "channel",
				 (unsigned long long)c->id);
		else
			log_err("result of request %llu not delivered (%s): closing its channel",
				(unsigned long long)c->id, strerror(-res));
		if (c->ch)
			shutdown(c->ch->fd, SHUT_RDWR);
		if (c->fd >= 0)
			shutdown(c->fd, SHUT_RDWR);
	}
	if (c->fd >= 0) {
		close(c->fd);
		c->fd = -1;
	}
	conn_put(c);
}

/* ---- waiting for DNS ---------------------------------------------------------------- */

/**
 * conn_wait_dns - look up the TLSA RRset at @name for @c, within its deadline
 *
 * Return: 0 when @c->tlsa holds the answer already (cache); -EINPROGRESS when the conn
 * now waits, with a ring timeout for its deadline (handshake_dns_done() runs once,
 * either way); a negative errno with @c->why when no lookup could start.
 */
int conn_wait_dns(struct conn *c, const char *name)
{
	struct io_uring_sqe *sqe;
	int ret;

	if (!conn_arm_deadline(c)) {
		snprintf(c->why, sizeof(c->why), "dns-timeout: no time left for the TLSA lookup");
		return -ETIMEDOUT;
	}
	ret = dane_lookup(c, name);
	log_debug("id=%llu TLSA %s: %s", (unsigned long long)c->id, name,
		  !ret		      ? "answered from the cache" :
		  ret == -EINPROGRESS ? "asking" :
					"failed");
	if (ret != -EINPROGRESS) {
		if (ret)
			snprintf(c->why, sizeof(c->why),
				 "dns-error: cannot start the TLSA lookup (%s)", strerror(-ret));
		return ret;
	}
	sqe = loop_sqe(c->w);
	io_uring_prep_timeout(sqe, &c->ts, 0, 0);
	io_uring_sqe_set_data64(sqe, op_data(c, OP_CONN_DNS_TIMEOUT));
	c->ops++;
	return -EINPROGRESS;
}

/* The deadline of a DNS wait fired, or was removed because the answer came first. */
void conn_dns_timeout_done(struct conn *c, int res)
{
	c->ops--;
	if (res == -ETIME && c->phase != PHASE_RESULT && dane_cancel(c))
		handshake_dns_done(c, true);
	conn_put(c);
}

/* Any thread: an answer for @c; its own worker picks it up (mailbox_drain()). */
void mailbox_post(struct conn *c)
{
	struct worker *w = c->w;
	bool first;

	pthread_mutex_lock(&w->mail_lock);
	first = !w->mail;
	c->mail_next = w->mail;
	w->mail = c;
	pthread_mutex_unlock(&w->mail_lock);
	if (first)
		loop_wake(w);
}

void mailbox_drain(struct worker *w)
{
	struct conn *c, *next;
	struct io_uring_sqe *sqe;

	pthread_mutex_lock(&w->mail_lock);
	c = w->mail;
	w->mail = NULL;
	pthread_mutex_unlock(&w->mail_lock);
	for (; c; c = next) {
		next = c->mail_next;
		c->dane_wait = DANE_IDLE;
		/* The deadline is no longer needed; its completion drops its hold on c. */
		sqe = loop_sqe(w);
		io_uring_prep_timeout_remove(sqe, op_data(c, OP_CONN_DNS_TIMEOUT), 0);
		io_uring_sqe_set_data64(sqe, op_data(w, OP_IGNORE));
		if (c->phase != PHASE_RESULT)
			handshake_dns_done(c, false);
		conn_put(c);
	}
}
