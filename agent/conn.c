// SPDX-License-Identifier: GPL-2.0
/*
 * conn.c - the one owner of a socket's state in danced, in the order it happens.
 *
 * Receives a conn that handoff.c or frontdoor.c made and admit.c let in; conn_run()
 * alone sets its phase, calls the stage for it, and acts on the verdict: submit a read
 * or a write, wait for DNS, install kTLS, finish. One deadline timer covers the whole
 * handshake. conn_finish() makes exactly one result per conn, on every path, and hands
 * it to the delivery chosen when the conn was made: back on the server's channel
 * (return mode) or to a backend (front door). Ring completions and DNS answers only
 * record what happened and call conn_run(). Conns, I/O buffers and result headers are
 * recycled per worker, up to a bound, so memory returns after a burst.
 */
#include <errno.h>
#include <malloc.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <openssl/crypto.h>

#include "agent.h"

#define FREE_CONNS_MAX 64 /* per worker: recycled objects kept after a burst */
#define FREE_BUFS_MAX 64
#define FREE_RESULTS_MAX 64
#define TRIM_AFTER 256 /* conns at once that make a burst worth trimming after */
#define TLS_ALERT_HANDSHAKE_FAILURE 40
#define TLS_ALERT_INTERNAL_ERROR 80

#define conn_of(ptr, member) ((struct conn *)((char *)(ptr)-offsetof(struct conn, member)))

/* ---- per-worker pools ------------------------------------------------------------- */

/* A TLS I/O buffer: held only while bytes wait in it or a recv may fill it. */
static uint8_t *buf_get(struct worker *w)
{
	uint8_t *b = (uint8_t *)w->free_io;

	if (b) {
		w->free_io = *(void **)b;
		w->n_free_io--;
		return b;
	}
	return malloc(TLS_BUF_SIZE);
}

static void buf_put(struct worker *w, uint8_t *b)
{
	if (!b)
		return;
	if (w->n_free_io >= FREE_BUFS_MAX) {
		free(b);
		return;
	}
	*(void **)b = w->free_io;
	w->free_io = b;
	w->n_free_io++;
}

/* A result is its header only: pending plaintext travels in a second iovec. */
static struct dance_result *result_get(struct worker *w)
{
	struct dance_result *r = w->free_results;

	if (r) {
		w->free_results = *(void **)r;
		w->n_free_results--;
	} else {
		/*
		 * Deliberately shorter than the struct (1.9 KB, not 34 KB): nothing
		 * here touches pending[], which travels from the conn's own buffer
		 * in a second iovec. Through void * because that is what it is.
		 */
		void *hdr = malloc(DANCE_RESULT_HDR_LEN);

		r = hdr;
	}
	if (r)
		memset(r, 0, DANCE_RESULT_HDR_LEN);
	return r;
}

static void result_put(struct worker *w, struct dance_result *r)
{
	if (!r)
		return;
	if (w->n_free_results >= FREE_RESULTS_MAX) {
		free(r);
		return;
	}
	*(void **)r = w->free_results;
	w->free_results = r;
	w->n_free_results++;
}

void conn_pool_fini(struct worker *w)
{
	struct conn *c;
	void *p;

	while ((c = w->free_conns)) {
		w->free_conns = c->next;
		free(c);
	}
	while ((p = w->free_io)) {
		w->free_io = *(void **)p;
		free(p);
	}
	while ((p = w->free_results)) {
		w->free_results = *(void **)p;
		free(p);
	}
	w->n_free_conns = w->n_free_io = w->n_free_results = 0;
	free(w->scratch);
	w->scratch = NULL;
}

static void dns_post(struct dns_wait *dw);
static void conn_run(struct conn *c);

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
	memset(c, 0, sizeof(*c));
	c->w = w;
	c->fd = fd;
	c->st = st;
	c->start_ns = now_ns();
	c->ticket.service = -1;
	c->tls.in_bid = -1;
	c->dw.post = dns_post;
	c->live_next = w->live;
	if (w->live)
		w->live->live_prev = c;
	w->live = c;
	if (++w->n_live > w->peak_live)
		w->peak_live = w->n_live;
	return c;
}

static void conn_free(struct conn *c)
{
	struct worker *w = c->w;

	if (c->kernel_held)
		kernel_done_now(c); /* the worker is going: the DONE it still owes */
	if (c->fd >= 0)
		close(c->fd);
	X509_free(c->tls.own_cert);
	EVP_PKEY_free(c->tls.own_key);
	if (c->tls.psk) {
		OPENSSL_cleanse(c->tls.psk, c->tls.psk_len);
		free(c->tls.psk);
	}
	free(c->tls.psk_identity);
	if (c->tls.pending) {
		OPENSSL_cleanse(c->tls.pending, c->tls.pending_len);
		free(c->tls.pending);
	}
	if (c->ea) {
		OPENSSL_cleanse(c->ea, sizeof(*c->ea));
		free(c->ea);
	}
	result_put(w, c->res);
	if (c->ch) {
		if (c->ch_prev)
			c->ch_prev->ch_next = c->ch_next;
		else
			c->ch->conns = c->ch_next;
		if (c->ch_next)
			c->ch_next->ch_prev = c->ch_prev;
		channel_put(c->ch);
	}
	state_put(c->st);
	if (c->live_prev)
		c->live_prev->live_next = c->live_next;
	else
		w->live = c->live_next;
	if (c->live_next)
		c->live_next->live_prev = c->live_prev;
	w->n_live--;
	if (w->n_free_conns < FREE_CONNS_MAX) {
		c->next = w->free_conns;
		w->free_conns = c;
		w->n_free_conns++;
	} else {
		free(c);
	}
	/*
	 * A burst is over: give its memory back to the system. glibc keeps freed memory in
	 * the thread's arena otherwise, and RSS would stay at the burst's peak.
	 */
	if (!w->n_live && w->peak_live >= TRIM_AFTER) {
		malloc_trim(0);
		w->peak_live = 0;
	}
}

/* Free the conn once it is done and no ring operation or hold refers to it any more. */
void conn_put(struct conn *c)
{
	if (c->phase == PHASE_DONE && !c->ops)
		conn_free(c);
}

/* ---- logging ------------------------------------------------------------------------ */

/*
 * At most REFUSALS_LOGGED_PER_SEC refusal lines a second per worker; the rest are counted
 * and summed up in one line when the next second begins.
 */
#define REFUSALS_LOGGED_PER_SEC 20

static bool log_refusal_allowed(struct worker *w)
{
	uint64_t sec = now_ns() / 1000000000ULL;

	if (sec != w->refusal_sec) {
		if (w->refusals_held)
			log_notice("worker %u: %u more refused connections were not logged",
				   w->index, w->refusals_held);
		w->refusal_sec = sec;
		w->refusals_logged = w->refusals_held = 0;
	}
	if (w->refusals_logged < REFUSALS_LOGGED_PER_SEC) {
		w->refusals_logged++;
		return true;
	}
	w->refusals_held++;
	return false;
}

static const char *auth_word(const struct dance_result *r)
{
	switch (r->auth) {
	case DANCE_AUTH_DANE:
		return "dane name=";
	case DANCE_AUTH_X509:
		return "x509";
	case DANCE_AUTH_EA_DANE:
		return "ea-dane name=";
	case DANCE_AUTH_EA_X509:
		return "ea-x509";
	case DANCE_AUTH_PHA_DANE:
		return "pha-dane name=";
	case DANCE_AUTH_PHA_X509:
		return "pha-x509";
	default:
		return "none";
	}
}

/* One line per conn, written when its fate is sealed: delivered, or failed. */
static void conn_log(struct conn *c, const char *verb)
{
	char addr[64], sni[80], subj[160], name[DANCE_HOST_MAX], why[DANCE_REASON_MAX];
	const struct dance_result *r = c->res;
	const char *svc = r && r->service[0] ? r->service : "-";

	if (c->ea) {
		if (log_enabled(r && !r->status ? 6 : 5))
			log_msg(r && !r->status ? 6 : 5,
				"%s %s id=%llu service=%s cookie=%llu status=%d auth=%s%s "
				"reason=\"%s\" us=%llu",
				c->ea->op >= DANCE_EA_PHA_REQUEST ? "post-handshake auth" :
								    "exported authenticator",
				c->ea->op == DANCE_EA_REQUEST || c->ea->op == DANCE_EA_PHA_REQUEST ?
					"request" :
				c->ea->op == DANCE_EA_AUTHENTICATE ? "authenticate" :
				c->ea->op == DANCE_EA_PHA_ANSWER   ? "answer" :
				c->ea->op == DANCE_EA_VALIDATE ||
						c->ea->op == DANCE_EA_PHA_VALIDATE ?
								   "validate" :
								   "forget",
				(unsigned long long)c->id, svc, (unsigned long long)c->cookie,
				c->fail.status, r ? auth_word(r) : "none",
				r && (r->auth == DANCE_AUTH_DANE || r->auth == DANCE_AUTH_EA_DANE ||
				      r->auth == DANCE_AUTH_PHA_DANE) ?
					log_printable(r->verified_name, name, sizeof(name)) :
					"",
				log_printable(c->fail.status ? c->fail.why :
					      r		     ? r->reason :
							       "-",
					      why, sizeof(why)),
				(unsigned long long)((now_ns() - c->start_ns) / 1000));
		return;
	}
	if (r && !r->status) {
		if (!log_enabled(6))
			return;
		log_info(
			"%shandshake ok id=%llu service=%s peer=%s %s %s group=%s sni=\"%s\" alpn=%s "
			"auth=%s%s%s%s subject=\"%s\" pending=%u us=%u",
			c->kernel ? "kernel " : "", (unsigned long long)c->id, svc,
			log_addr(&c->peer, addr, sizeof(addr)),
			r->tls_version == 0x0304 ? "TLSv1.3" : "TLSv1.2", r->cipher_name,
			r->group[0] ? r->group : "-", log_printable(r->sni, sni, sizeof(sni)),
			r->alpn[0] ? r->alpn : "-", c->kernel_psk ? "psk" : auth_word(r),
			r->auth == DANCE_AUTH_DANE ?
				log_printable(r->verified_name, name, sizeof(name)) :
				"",
			r->auth == DANCE_AUTH_DANE && r->dns_cached ? " (cached)" : "",
			r->peer_cert_type == DANCE_CERT_RPK ? " key=rpk" : "",
			log_printable(r->peer_subject, subj, sizeof(subj)), r->pending_len,
			r->handshake_us);
		return;
	}
	if (!log_enabled(5))
		return;
	if (!c->touched && c->pool) {
		/* Front door, refused before any TLS byte: a flood must not flood the log. */
		if (log_refusal_allowed(c->w))
			log_notice("connection refused id=%llu peer=%s status=%d reason=\"%s\"",
				   (unsigned long long)c->id,
				   log_addr(&c->peer, addr, sizeof(addr)), c->fail.status,
				   log_printable(c->fail.why, why, sizeof(why)));
		return;
	}
	if (c->touched)
		log_notice("%s id=%llu service=%s peer=%s status=%d reason=\"%s\" us=%llu", verb,
			   (unsigned long long)c->id, svc, log_addr(&c->peer, addr, sizeof(addr)),
			   c->fail.status, log_printable(c->fail.why, why, sizeof(why)),
			   (unsigned long long)((now_ns() - c->start_ns) / 1000));
	else
		log_notice("%srequest refused id=%llu peer=%s status=%d reason=\"%s\"",
			   c->kernel ? "kernel " : "", (unsigned long long)c->id,
			   log_addr(&c->peer, addr, sizeof(addr)), c->fail.status,
			   log_printable(c->fail.why, why, sizeof(why)));
}

/* ---- the ring -------------------------------------------------------------------------- */

static void arm_deadline(struct conn *c)
{
	uint64_t now = now_ns(), left = c->deadline_ns > now ? c->deadline_ns - now : 1;
	struct io_uring_sqe *sqe = loop_sqe(c->w);

	c->ts.tv_sec = left / 1000000000ULL;
	c->ts.tv_nsec = left % 1000000000ULL;
	io_uring_prep_timeout(sqe, &c->ts, 0, 0);
	io_uring_sqe_set_data64(sqe, op_data(c, OP_CONN_DEADLINE));
	c->deadline_armed = true;
	c->ops++;
}

/* The deadline's completion drops its hold on the conn when it comes (-ECANCELED). */
static void disarm_deadline(struct conn *c)
{
	struct io_uring_sqe *sqe;

	if (!c->deadline_armed)
		return;
	sqe = loop_sqe(c->w);
	io_uring_prep_timeout_remove(sqe, op_data(c, OP_CONN_DEADLINE), 0);
	io_uring_sqe_set_data64(sqe, op_data(c->w, OP_IGNORE));
	c->deadline_armed = false;
}

/* The receive buffer goes back where it came from: the ring's, or the pool's. */
static void in_put(struct conn *c)
{
	struct tls *t = &c->tls;

	if (!t->in)
		return;
	if (t->in_bid >= 0)
		loop_buf_return(c->w, t->in_bid);
	else
		buf_put(c->w, t->in);
	t->in = NULL;
	t->in_bid = -1;
	t->in_off = t->in_len = 0;
}

/*
 * A recv or a send on the ring. A recv with nothing buffered lets the kernel pick a
 * provided buffer when the data arrives (@own: bring our own, after the ring's ran out).
 */
static int submit_io(struct conn *c, bool send, bool own)
{
	struct tls *t = &c->tls;
	struct io_uring_sqe *sqe;

	c->io_select = false;
	if (!send && !t->in && (own || !c->w->br)) {
		t->in = buf_get(c->w);
		if (!t->in)
			return fail_set(&c->fail, -ENOMEM, "out of memory for handshake buffers");
	}
	sqe = loop_sqe(c->w);
	if (send) {
		io_uring_prep_send(sqe, c->fd, t->out + t->out_off, t->out_len - t->out_off,
				   MSG_NOSIGNAL);
	} else if (t->in) {
		io_uring_prep_recv(sqe, c->fd, t->in + t->in_len, t->want, 0);
	} else {
		io_uring_prep_recv(sqe, c->fd, NULL, t->want, 0);
		sqe->flags |= IOSQE_BUFFER_SELECT;
		sqe->buf_group = LOOP_BGID;
		c->io_select = true;
	}
	io_uring_sqe_set_data64(sqe, op_data(c, OP_CONN_IO));
	c->ops++;
	c->io_busy = true;
	c->io_send = send;
	c->touched = true;
	return 0;
}

/* The output buffer the next step may write into. */
static int bufs_take(struct conn *c)
{
	struct tls *t = &c->tls;

	if (!t->out)
		t->out = buf_get(c->w);
	if (!t->out)
		return fail_set(&c->fail, -ENOMEM, "out of memory for handshake buffers");
	return 0;
}

/*
 * Buffers go back as soon as they hold nothing and no operation in flight targets them:
 * a handshake waiting for its peer holds none.
 */
static void bufs_release(struct conn *c)
{
	struct tls *t = &c->tls;

	if (c->io_busy)
		return;
	if (t->out && t->out_len == t->out_off) {
		buf_put(c->w, t->out);
		t->out = NULL;
		t->out_off = t->out_len = 0;
	}
	if (t->in && t->in_len == t->in_off)
		in_put(c);
}

/* ---- DNS waits --------------------------------------------------------------------- */

/* The DNS thread: an answer for @dw's conn; its own worker picks it up (mailbox_drain()). */
static void dns_post(struct dns_wait *dw)
{
	struct conn *c = conn_of(dw, dw);
	struct worker *w = c->w;
	bool wake;

	pthread_mutex_lock(&w->mail_lock);
	c->next = w->mail;
	w->mail = c;
	wake = !w->mail_armed;
	w->mail_armed = true;
	pthread_mutex_unlock(&w->mail_lock);
	if (wake)
		loop_wake(w);
}

/*
 * Ask for the TLSA RRset at @name. Return: 0 with the answer in c->dw.answer (the cache
 * had it), -EINPROGRESS while the conn waits (it is held until the answer is posted or
 * the wait is cancelled), or a negative errno with c->fail set.
 */
static int dns_ask(struct conn *c, const char *name)
{
	int ret = dane_lookup(name, &c->dw);

	log_debug("id=%llu TLSA %s: %s", (unsigned long long)c->id, name,
		  !ret		      ? "answered from the cache" :
		  ret == -EINPROGRESS ? "asking" :
					"failed");
	if (ret == -EINPROGRESS) {
		c->dns_waiting = true;
		c->ops++;
		return ret;
	}
	if (ret)
		fail_set(&c->fail, ret, "dns-error: cannot start the TLSA lookup (%s)",
			 ret == -ENOSYS ? "danced runs without a resolver" : strerror(-ret));
	return ret;
}

void mailbox_drain(struct worker *w)
{
	struct conn *c, *next;

	pthread_mutex_lock(&w->mail_lock);
	c = w->mail;
	w->mail = NULL;
	w->mail_armed = false;
	pthread_mutex_unlock(&w->mail_lock);
	for (; c; c = next) {
		next = c->next;
		c->next = NULL;
		c->dns_waiting = false;
		c->ops--; /* the wait's hold */
		if (c->phase == PHASE_DONE) {
			tlsa_set_put(c->dw.answer);
			c->dw.answer = NULL;
		} else {
			conn_run(c);
		}
		conn_put(c);
	}
}

/* ---- the end of a conn ---------------------------------------------------------------- */

/* The SSL, its secrets and the I/O buffers: what only the handshake needs. */
static void tls_release(struct conn *c)
{
	tls_end(&c->tls);
	in_put(c);
	buf_put(c->w, c->tls.out);
	c->tls.out = NULL;
}

/*
 * A peer that finished its handshake deserves to know why it is dropped: a fatal alert
 * through the kernel's send key. DANE refusals say handshake_failure, as the draft asks;
 * everything else is danced's own failure.
 */
static void send_alert(struct conn *c)
{
	uint8_t desc = c->phase == PHASE_DANE || c->phase == PHASE_LOOKUP ?
			       TLS_ALERT_HANDSHAKE_FAILURE :
			       TLS_ALERT_INTERNAL_ERROR;
	int ret;

	if (!c->offloaded)
		return;
	ret = ktls_send_alert(c->fd, SSL3_AL_FATAL, desc);
	if (ret)
		log_debug("id=%llu could not send the alert: %s", (unsigned long long)c->id,
			  strerror(-ret));
}

/*
 * Make the one result of this conn from c->fail (status 0: success) and hand it to its
 * delivery. Runs once per conn (later calls do nothing). A failed connection is shut down
 * when TLS bytes already moved, so the peer is not left hanging while the server holds
 * its descriptor. Does not free @c: the caller's conn_put() does, once the ring lets go.
 */
static void conn_finish(struct conn *c)
{
	struct dance_result *r;
	uint64_t cookie, now;
	socklen_t len = sizeof(cookie);
	int ret;

	if (c->phase == PHASE_DONE || c->phase == PHASE_DELIVER)
		return;
	disarm_deadline(c);
	if (c->fail.status && c->offloaded)
		send_alert(c);
	tls_release(c);
	verify_dane_end(&c->dane);
	tlsa_set_put(c->dw.answer);
	c->dw.answer = NULL;
	admit_release(&c->ticket);
	if (!c->res)
		c->res = result_get(c->w);
	r = c->res;
	if (!r) {
		/* Nothing to answer with: closing the channel is the other half of the contract. */
		log_err("out of memory for a result: closing the channel of request %llu",
			(unsigned long long)c->id);
		c->phase = PHASE_DONE;
		if (c->held)
			policy_release(c->fd);
		if (c->kernel) {
			if (!c->fail.status)
				fail_set(&c->fail, -ENOMEM, "out of memory for the result");
			kernel_done(c, 0);
			return;
		}
		if (c->ch)
			shutdown(c->ch->fd, SHUT_RDWR);
		/* An exported-authenticator operation never harms the connection it names. */
		if (c->fd >= 0 && !c->ea_op)
			shutdown(c->fd, SHUT_RDWR);
		return;
	}
	dance_hdr_init(&r->hdr, c->ea_op ? DANCE_MSG_EA_RESULT :
				c->ch	 ? DANCE_MSG_RESULT :
					   DANCE_MSG_ACCEPTED);
	r->id = c->id;
	if (c->tls.svc)
		snprintf(r->service, sizeof(r->service), "%s", c->tls.svc->cfg->name);
	if (c->ea_op) {
		/* The proof may come over the connection: a proof window can let it pass. */
		if (!c->fail.status &&
		    (c->ea->op == DANCE_EA_REQUEST || c->ea->op == DANCE_EA_PHA_REQUEST) &&
		    c->tls.svc->cfg->role == ROLE_SERVER) {
			ret = policy_proof_asked(c->fd);
			if (ret < 0)
				log_warn("id=%llu cannot note the proof request in the BPF policy "
					 "maps: %s",
					 (unsigned long long)c->id, strerror(-ret));
		}
		/* TLS puts post-handshake authentication on the connection itself. */
		if (!c->fail.status &&
		    (c->ea->op == DANCE_EA_PHA_REQUEST || c->ea->op == DANCE_EA_PHA_ANSWER)) {
			ret = ktls_send_record(c->fd, KTLS_CONTENT_HANDSHAKE, c->tls.pending,
					       c->tls.pending_len);
			if (ret)
				fail_set(&c->fail, ret, "pha-send: the %s could not be sent: %s%s",
					 c->ea->op == DANCE_EA_PHA_REQUEST ? "CertificateRequest" :
									     "answer",
					 strerror(-ret),
					 ret == -EAGAIN ?
						 " (the socket's send buffer is full)" :
					 ret == -EACCES ?
						 " (the kernel's policy refuses this "
						 "socket; give the service a proof window)" :
						 "");
		}
		/* A new proof of who the peer is: the kernel's policy follows it at once. */
		if (!c->fail.status &&
		    (c->ea->op == DANCE_EA_VALIDATE || c->ea->op == DANCE_EA_PHA_VALIDATE) &&
		    c->tls.svc->cfg->role == ROLE_SERVER) {
			ret = policy_reidentify(c->fd, c->tls.svc->cfg, r);
			if (ret < 0)
				fail_set(&c->fail, ret,
					 "cannot record the proved identity in the BPF policy "
					 "maps: %s",
					 strerror(-ret));
		}
	} else if (!c->fail.status) {
		r->cookie = c->cookie;
		if (!r->cookie && !getsockopt(c->fd, SOL_SOCKET, SO_COOKIE, &cookie, &len))
			r->cookie = cookie;
		ret = policy_identify(c->fd, c->tls.svc->cfg, r);
		if (ret < 0) {
			/* A protected port would refuse it anyway: say why now, and close. */
			fail_set(&c->fail, ret,
				 "cannot record the peer's identity in the BPF policy maps: %s",
				 strerror(-ret));
			send_alert(c);
		} else {
			c->held = false;
			/* Plaintext read during the handshake would reach the server past the hooks. */
			if (ret == 1 && c->tls.pending_len) {
				OPENSSL_cleanse(c->tls.pending, c->tls.pending_len);
				c->tls.pending_len = 0;
				c->tls.peer_closed = false;
			}
		}
	}
	/* Nothing can carry plaintext to a kernel consumer: failing is better than losing it. */
	if (c->kernel && !c->fail.status && c->tls.pending_len)
		fail_set(&c->fail, -EPROTO,
			 "%u bytes of application data came before the kernel had the socket,"
			 " and danced cannot hand them to a kernel consumer",
			 c->tls.pending_len);
	r->status = c->fail.status;
	if (c->fail.status || !c->ea_op || !r->reason[0])
		snprintf(r->reason, sizeof(r->reason), "%s", c->fail.status ? c->fail.why : "ok");
	if (c->fail.status && c->cookie && !c->ea_op)
		exported_forget(c->cookie); /* a failed handshake has nothing to authenticate */
	if (c->fail.status) {
		c->tls.pending_len = 0;
		r->flags = 0;
		r->auth = DANCE_AUTH_NONE;
		r->verified_name[0] = '\0';
		if (c->ea_op) {
			/* What an unproven certificate says is nobody's identity. */
			r->peer_subject[0] = r->peer_names[0] = '\0';
			r->tlsa_usage = r->tlsa_selector = r->tlsa_mtype = 0;
		}
		if (c->held)
			policy_release(c->fd);
		c->held = false;
		/* A kernel consumer's socket is the consumer's to end, after DONE. */
		if (c->touched && c->fd >= 0 && !c->kernel)
			shutdown(c->fd, SHUT_RDWR);
	} else {
		r->pending_len = c->tls.pending_len;
		if (c->tls.peer_closed)
			r->flags |= DANCE_RES_PEER_CLOSED;
	}
	/* Read last: the BPF map writes above are the offload's too. */
	now = now_ns();
	r->handshake_us = (now - c->start_ns) / 1000;
	if (!r->status && !c->ea_op && c->mark_ns)
		r->offload_us = (c->offload_ns + now - c->mark_ns) / 1000;
	c->rmsg.msg_iov = c->riov;
	c->rmsg.msg_iovlen = r->pending_len ? 2 : 1;
	c->riov[0].iov_base = r;
	c->riov[0].iov_len = DANCE_RESULT_HDR_LEN;
	c->riov[1].iov_base = c->tls.pending;
	c->riov[1].iov_len = r->pending_len;

	if (c->kernel) {
		int32_t peer = kernel_peer(c);

		c->phase = PHASE_DONE;
		conn_log(c, "kernel handshake failed");
		/* Refused before any byte moved: see kernel_done_later(). */
		if (!c->touched && !c->w->ring_dead)
			kernel_done_later(c, peer);
		else
			kernel_done(c, peer);
		return;
	}
	if (c->ch) {
		c->phase = PHASE_DONE;
		if (r->status || c->ea)
			conn_log(c, "handshake failed");
		if (c->w->ring_dead)
			handoff_send_result_now(c);
		else
			handoff_send_result(c);
		return;
	}
	/* Front door: a failed socket is closed here; a good one goes to a backend. */
	if (r->status) {
		c->phase = PHASE_DONE;
		conn_log(c, "handshake failed");
		return;
	}
	c->phase = PHASE_DELIVER;
	if (frontdoor_offer(c)) {
		conn_delivered(c);
		return;
	}
	/* Hold it until a backend has room (loop.c's tick calls frontdoor_pump()). */
	c->wait_until_ns = now_ns() + (c->deadline_ns - c->start_ns);
	c->next = c->w->waiting;
	c->w->waiting = c;
	c->w->n_waiting++;
	c->ops++; /* the waiting list's hold */
	loop_tick(c->w);
}

/* Front door: a backend took the socket (frontdoor_offer() said so). */
void conn_delivered(struct conn *c)
{
	c->phase = PHASE_DONE;
	conn_log(c, NULL);
	close(c->fd);
	c->fd = -1;
}

/* Front door: nobody took a finished socket in time, or danced is leaving. */
void conn_give_up(struct conn *c, const char *why)
{
	c->phase = PHASE_DONE;
	fail_set(&c->fail, -ETIMEDOUT, "%s", why);
	if (c->res)
		c->res->status = c->fail.status;
	/* Its identity replaced danced's hold: take the hold back, or the policy may refuse
	 * danced's own alert (the socket closes right after, so nothing releases it). */
	if (c->offloaded && policy_hold(c->fd) > 0)
		c->held = true;
	send_alert(c);
	conn_log(c, "connection given up");
	shutdown(c->fd, SHUT_RDWR);
}

/* ---- the state machine ------------------------------------------------------------- */

/* Install kTLS, describe the session, and decide whether DANE still has to speak. */
static enum verdict conn_offload(struct conn *c)
{
	struct tls *t = &c->tls;
	socklen_t len;
	const char *why = NULL;
	enum verdict v = V_DONE;
	int ret;

	/* RFC 9261's four values, before kTLS takes the secrets and wipes them. */
	len = sizeof(c->cookie);
	if (!getsockopt(c->fd, SOL_SOCKET, SO_COOKIE, &c->cookie, &len) && !c->kernel)
		exported_keep(t->ssl, &t->kc, c->cookie, t->svc->cfg->name, !t->client);
	/* A PSK request is authenticated by the key alone: a certificate handshake instead
	   (the peer did not offer it, or did not know it) proves nothing the kernel asked. */
	if (t->psk && !SSL_session_reused(t->ssl)) {
		fail_set(&c->fail, -EACCES,
			 "psk-unused: the peer did not use the pre-shared key (identity %s)",
			 t->psk_identity);
		return V_FAIL;
	}
	ret = ktls_install(&t->kc, t->ssl, c->fd, &why);
	if (ret) {
		fail_set(&c->fail, ret, "%s", why);
		return V_FAIL;
	}
	c->offloaded = true;
	c->res = result_get(c->w);
	if (!c->res) {
		fail_set(&c->fail, -ENOMEM, "out of memory for the result");
		return V_FAIL;
	}
	tls_describe(t, c->res);
	if (t->client)
		c->res->dns_cached = c->dns_cached;
	if (!t->client && t->svc->cfg->dane != DANE_OFF && !t->psk)
		v = verify_dane_begin(t, &c->dane, &c->fail);
	/* The SSL and the buffers go now; a DNS wait keeps the conn small. */
	tls_release(c);
	return v;
}

/*
 * The conn must end now (deadline, a dead channel, a worker leaving). Bytes already in
 * hand are used first, without new I/O: a handshake they complete still gets kTLS, so
 * that its peer, who may have sent its request already, is told with an alert.
 */
static void conn_stop(struct conn *c)
{
	struct tls *t = &c->tls;
	const char *why;

	if (!c->offloaded && t->ssl && t->in && !c->io_busy &&
	    (c->phase == PHASE_HANDSHAKE || c->phase == PHASE_DRAIN) && !bufs_take(c)) {
		if (c->phase == PHASE_HANDSHAKE && t->in_len > t->in_off &&
		    tls_handshake(t) == V_DONE)
			c->phase = PHASE_DRAIN;
		if (c->phase == PHASE_DRAIN && tls_drain(t, c->w->scratch) == V_DONE &&
		    !ktls_install(&t->kc, t->ssl, c->fd, &why))
			c->offloaded = true;
	}
	conn_finish(c);
}

/*
 * The deadline passed during the handshake. Operators (and tests) need to know who
 * stalled: the peer that never sent its next flight, or a send that never drained.
 */
static void fail_timeout(struct conn *c)
{
	const char *state = c->tls.ssl ? SSL_state_string_long(c->tls.ssl) : "not started";

	fail_set(&c->fail, -ETIMEDOUT,
		 "handshake timed out after %llu ms, waiting %s (TLS state \"%s\", %u bytes "
		 "received, %u sent)",
		 (unsigned long long)((c->deadline_ns - c->start_ns) / 1000000),
		 c->io_send ? "to send to the peer" : "for the peer", state, c->rx, c->tx);
}

/**
 * conn_run - take the conn as far as it can go now
 *
 * The only place that moves a conn from phase to phase. Returns when the conn waits for
 * the ring or for DNS, or has finished. May finish @c, never frees it (the caller's
 * conn_put() does).
 */
static void conn_run(struct conn *c)
{
	struct tls *t = &c->tls;
	char name[DANCE_HOST_MAX + 16];
	enum verdict v = V_FAIL;
	int ret;

	for (;;) {
		if (c->phase == PHASE_DONE || c->phase == PHASE_DELIVER || c->io_busy ||
		    c->dns_waiting)
			return;
		if (!c->stopping && now_ns() >= c->deadline_ns) {
			c->stopping = true;
			if (c->phase == PHASE_DANE || c->phase == PHASE_LOOKUP)
				fail_set(&c->fail, -ETIMEDOUT,
					 "dns-timeout: no answer to the TLSA lookup within the "
					 "handshake deadline");
			else
				fail_timeout(c);
		}
		if (c->stopping) {
			conn_stop(c);
			return;
		}
		switch (c->phase) {
		case PHASE_LOOKUP:
			/* Client role: what the server's TLSA says decides how to verify it. */
			if (!c->dw.answer) {
				ret = dns_ask(c, tls_client_tlsa_name(t, &c->peer, name,
								      sizeof(name)));
				if (ret == -EINPROGRESS)
					return;
				if (ret) {
					conn_finish(c);
					return;
				}
			}
			ret = tls_client_dane(t, c->dw.answer, &c->fail);
			c->dns_cached = c->dw.cached;
			tlsa_set_put(c->dw.answer);
			c->dw.answer = NULL;
			if (ret) {
				conn_finish(c);
				return;
			}
			c->phase = PHASE_HANDSHAKE;
			continue;
		case PHASE_HANDSHAKE:
			if (bufs_take(c)) {
				conn_finish(c);
				return;
			}
			v = tls_handshake(t);
			if (v == V_DONE) {
				c->mark_ns = now_ns(); /* the offload starts */
				c->phase = PHASE_DRAIN;
				continue;
			}
			break;
		case PHASE_DRAIN:
			if (bufs_take(c)) {
				conn_finish(c);
				return;
			}
			v = tls_drain(t, c->w->scratch);
			if (v != V_DONE)
				break;
			v = conn_offload(c);
			if (v == V_DONE) {
				conn_finish(c);
				return;
			}
			if (v == V_FAIL) {
				c->phase = PHASE_DANE; /* for the alert: a DANE refusal */
				conn_finish(c);
				return;
			}
			/* V_LOOKUP: the client's TLSA, with kTLS installed and the SSL gone */
			c->offload_ns = now_ns() - c->mark_ns; /* the wait is not the offload's */
			c->mark_ns = 0;
			c->phase = PHASE_DANE;
			ret = dns_ask(c, c->dane.name);
			if (ret == -EINPROGRESS) {
				verify_dane_pack(&c->dane); /* small while it waits */
				return;
			}
			if (ret) {
				conn_finish(c);
				return;
			}
			continue;
		case PHASE_DANE:
			ret = verify_dane_match(c->st, t->svc, &c->dane, c->dw.answer, c->res,
						&c->fail);
			if (!ret) {
				c->res->dns_cached = c->dw.cached;
				c->mark_ns = now_ns(); /* the rest of the offload */
			}
			if (!ret && c->ea)
				c->res->auth = c->ea->op == DANCE_EA_PHA_VALIDATE ?
						       DANCE_AUTH_PHA_DANE :
						       DANCE_AUTH_EA_DANE;
			conn_finish(c);
			return;
		case PHASE_ALERT:
			/* OpenSSL's alert went out (or could not): now the result. */
			conn_finish(c);
			return;
		case PHASE_NEW:
		case PHASE_EA:
		case PHASE_DELIVER:
		case PHASE_DONE:
			return;
		}
		/* A stage's verdict: bytes to move, or the end. */
		switch (v) {
		case V_READ:
		case V_WRITE:
			bufs_release(c); /* nothing in flight yet */
			if (submit_io(c, v == V_WRITE, false)) {
				conn_finish(c);
				return;
			}
			return;
		case V_FAIL:
		default:
			/* OpenSSL wrote its alert into our buffer: let the peer see why first. */
			if (t->out && t->out_len > t->out_off) {
				c->phase = PHASE_ALERT;
				submit_io(c, true, false);
				return;
			}
			conn_finish(c);
			return;
		}
	}
}

/**
 * conn_start - begin the handshake of an admitted conn
 * @svc: the service (SNI may still move a server-role conn to another, unless @svc_fixed)
 * @timeout_ms: the whole handshake's deadline, DNS included
 *
 * From here on the conn belongs to conn_run() and the ring, and is finished exactly once.
 */
void conn_start(struct conn *c, struct svc *svc, bool svc_fixed, unsigned int timeout_ms)
{
	struct tls *t = &c->tls;
	int ret;

	c->deadline_ns = c->start_ns + (uint64_t)timeout_ms * 1000000ULL;
	t->st = c->st;
	t->svc = svc;
	t->svc_fixed = svc_fixed;
	t->client = svc->cfg->role == ROLE_CLIENT;
	t->peer_name = c->peer_name;
	t->peer_alpn = c->alpn;
	t->fail = &c->fail;
	t->kernel = c->kernel;
	c->phase = PHASE_HANDSHAKE;
	arm_deadline(c);
	ret = policy_hold(c->fd);
	if (ret < 0) {
		fail_set(&c->fail, ret,
			 "cannot exempt danced's handshake in the BPF policy maps: %s",
			 strerror(-ret));
		conn_finish(c);
		return;
	}
	c->held = ret > 0;
	if (tls_begin(t, c->fd, &c->fail)) {
		conn_finish(c);
		return;
	}
	/* A PSK handshake has no certificate for DANE to judge. */
	if (t->client && !t->psk &&
	    (svc->cfg->verify == VERIFY_DANE || svc->cfg->verify == VERIFY_DANE_OR_PKIX))
		c->phase = PHASE_LOOKUP;
	conn_run(c);
}

/**
 * conn_start_ea - carry out an exported-authenticator operation (c->ea, for c->cookie)
 * @timeout_ms: for the DNS lookup a DANE validation may need
 *
 * The socket stays the server's: danced neither reads nor writes it, and its failure
 * leaves the connection as it was. Finished exactly once, like a handshake.
 */
void conn_start_ea(struct conn *c, unsigned int timeout_ms)
{
	struct tls *t = &c->tls;
	enum verdict v;
	uint32_t n;
	int ret;

	c->deadline_ns = c->start_ns + (uint64_t)timeout_ms * 1000000ULL;
	c->phase = PHASE_EA;
	c->res = result_get(c->w);
	t->pending = malloc(DANCE_EA_DATA_MAX);
	if (!c->res || !t->pending) {
		fail_set(&c->fail, -ENOMEM, "out of memory for an exported authenticator");
		conn_finish(c);
		return;
	}
	t->pending_cap = DANCE_EA_DATA_MAX;
	v = exported_op(c->ea, c->cookie, c->st, &t->svc, t->pending, &n, &c->dane, c->res,
			&c->fail);
	t->pending_len = n;
	if (v != V_LOOKUP) {
		conn_finish(c);
		return;
	}
	arm_deadline(c);
	c->phase = PHASE_DANE;
	ret = dns_ask(c, c->dane.name);
	if (ret == -EINPROGRESS) {
		verify_dane_pack(&c->dane);
		return;
	}
	if (ret) {
		conn_finish(c);
		return;
	}
	conn_run(c);
}

/* A request refused before any TLS byte moved: the socket goes back as it came. */
void conn_refuse(struct conn *c, int status, const char *why)
{
	fail_set(&c->fail, status, "%s", why);
	conn_finish(c);
}

/* The recv or send of a conn completed; @flags say which provided buffer a recv used. */
void conn_io_done(struct conn *c, int res, unsigned int flags)
{
	struct tls *t = &c->tls;

	c->ops--;
	c->io_busy = false;
	if (!c->io_send && (flags & IORING_CQE_F_BUFFER)) {
		/* Ours now, whatever the result: the kernel consumed it. */
		t->in_bid = flags >> IORING_CQE_BUFFER_SHIFT;
		t->in = loop_buf(c->w, t->in_bid);
		t->in_off = t->in_len = 0;
	}
	if (c->phase == PHASE_DONE)
		goto out;
	if (res == -ENOBUFS && c->io_select) {
		/* The ring's buffers are all in use: this recv brings its own. */
		if (submit_io(c, false, true))
			conn_finish(c);
		goto out;
	}
	if (res == -ECANCELED) {
		/* conn_cancel() took it back: conn_run() says why the conn ends */
	} else if (c->io_send) {
		if (res < 0) {
			/* A failed alert send ends the conn with the failure that caused it. */
			fail_set(&c->fail, res, "send to the peer failed: %s", strerror(-res));
			conn_finish(c);
			goto out;
		}
		t->out_off += res;
		c->tx += res;
		if (t->out_off < t->out_len && !c->stopping) {
			if (submit_io(c, true, false))
				conn_finish(c);
			goto out;
		}
		t->out_off = t->out_len = 0;
	} else if (res <= 0) {
		if (!res)
			fail_set(&c->fail, -ECONNRESET,
				 "the peer closed the connection during the handshake");
		else
			fail_set(&c->fail, res, "recv from the peer failed: %s", strerror(-res));
		conn_finish(c);
		goto out;
	} else {
		c->rx += res;
		tls_received(t, res);
	}
	conn_run(c);
	/* Whatever OpenSSL took from a provided buffer, the rest is not needed there. */
	if (c->phase != PHASE_DONE)
		bufs_release(c);
out:
	conn_put(c);
}

/* The deadline fired (-ETIME), or was removed (-ECANCELED) because the conn finished. */
void conn_deadline_done(struct conn *c, int res)
{
	c->ops--;
	if (res == -ETIME) {
		c->deadline_armed = false;
		if (c->phase != PHASE_DONE && c->phase != PHASE_DELIVER)
			conn_cancel(c, 0, NULL);
	}
	conn_put(c);
}

/**
 * conn_cancel - end a conn early, whatever it is waiting for
 * @status: the failure to report, or 0 for "the deadline passed" (conn_run() words it)
 *
 * An operation in flight is cancelled and the conn ends when it comes back; a DNS wait
 * is taken back, or its answer is awaited. Does not free @c.
 */
void conn_cancel(struct conn *c, int status, const char *why)
{
	struct io_uring_sqe *sqe;

	if (c->phase == PHASE_DONE || c->phase == PHASE_DELIVER || c->stopping)
		return;
	if (status)
		fail_set(&c->fail, status, "%s", why);
	else if (now_ns() < c->deadline_ns)
		c->deadline_ns = now_ns(); /* the timer can fire a hair early */
	if (c->io_busy) {
		if (status)
			c->stopping = true;
		sqe = loop_sqe(c->w);
		io_uring_prep_cancel64(sqe, op_data(c, OP_CONN_IO), 0);
		io_uring_sqe_set_data64(sqe, op_data(c->w, OP_IGNORE));
		return;
	}
	if (c->dns_waiting) {
		if (!dane_cancel(&c->dw))
			return; /* the answer is in the mailbox; conn_run() ends it there */
		c->dns_waiting = false;
		c->ops--;
	}
	if (status)
		c->stopping = true;
	conn_run(c);
}

/* The result left on the channel (or could not); the socket is the server's alone now. */
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
		shutdown(c->ch->fd, SHUT_RDWR);
		if (c->fd >= 0 && !c->ea_op)
			shutdown(c->fd, SHUT_RDWR);
	} else if (!c->res->status && !c->ea_op) {
		conn_log(c, NULL); /* an exported-authenticator operation logged at its end */
	}
	if (c->fd >= 0) {
		close(c->fd);
		c->fd = -1;
	}
	conn_put(c);
}

/* The worker is gone: free every conn it still has, whatever it was waiting for. */
void conn_free_all(struct worker *w)
{
	while (w->live) {
		w->live->phase = PHASE_DONE;
		w->live->ops = 0;
		conn_put(w->live);
	}
}

/**
 * conn_fail_all - the worker's ring is gone: every conn it holds ends now, without it
 *
 * Results go out by plain sendmsg() (MSG_DONTWAIT), sockets are shut down. The conns stay
 * allocated: operations the dead ring still holds may point into them.
 */
void conn_fail_all(struct worker *w, int status, const char *why)
{
	struct conn *c;

	for (c = w->live; c; c = c->live_next) {
		if (c->phase == PHASE_DONE)
			continue;
		if (c->dns_waiting && dane_cancel(&c->dw))
			c->dns_waiting = false;
		c->io_busy = false;
		c->stopping = true;
		if (c->phase == PHASE_DELIVER) {
			conn_give_up(c, why);
			continue;
		}
		fail_set(&c->fail, status, "%s", why);
		conn_finish(c);
		if (c->phase == PHASE_DELIVER)
			conn_give_up(c, why);
	}
}
