/* SPDX-License-Identifier: GPL-2.0 */
/*
 * agent.h - danced's shared structures and, grouped by file, every stage's entry points:
 * a table of contents for following one socket through the daemon:
 *
 *   handoff.c (request in) -> conn.c -> handshake.c -> verify.c -> ktls.c
 *     -> conn.c (exactly one result) -> handoff.c (result out) or frontdoor.c (to a backend)
 */
#ifndef DANCED_AGENT_H
#define DANCED_AGENT_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <liburing.h>
#include <openssl/ssl.h>

#include "config.h"
#include "ktls.h"
#include "lib/dance.h"

/* Per-connection buffers: one TLS flight each way, usually; larger flights take turns. */
#define CONN_IN_SIZE 8192
#define CONN_OUT_SIZE 8192

struct worker;
struct channel;
struct backend_pool;

/* TLS state for one service, built from its svc_config (handshake.c). */
struct svc {
	const struct svc_config *cfg;
	SSL_CTX *ctx;
	uint8_t alpn_wire[DANCE_ALPN_MAX + 1]; /* the alpn list in wire format */
	size_t alpn_len;
};

/*
 * A front-door service's backends (frontdoor.c); fixed for the life of the process.
 * Everything whose address goes into a ring's user_data (op_data()) is 16-byte aligned:
 * the low 4 bits carry the operation. These live in an array, so the type must say it.
 */
struct __attribute__((aligned(16))) backend_pool {
	char name[DANCE_NAME_MAX];
	int lfd; /* the backend socket */
	const struct svc_config *cfg_listen; /* of the first config: addresses, socket */
	pthread_mutex_t lock; /* backends, next, and their credit */
	struct channel *backends;
	struct channel *next; /* round robin */
};

/*
 * Everything a handshake needs from the configuration. Reload builds a new state and
 * swaps the current pointer; each connection holds a reference to the state it
 * started with, so handshakes in flight finish on the old one.
 */
struct state {
	atomic_int refs;
	struct config *cfg;
	struct svc svcs[CFG_MAX_SERVICES];
	size_t n_svcs;
	struct svc *default_server; /* when SNI matches nothing; may be NULL */
	SSL_CTX *dane_ctx; /* for the scratch SSLs of verify_dane() */
};

/* The three outcomes of a TLSA lookup (dane.c); a failure is never "no TLSA". */
enum tlsa_outcome {
	TLSA_SECURE, /* DNSSEC-secure records */
	TLSA_NONE, /* DNSSEC-secure: no records, or no such name */
	TLSA_INSECURE, /* the zone is provably unsigned */
	TLSA_FAILURE, /* bogus, SERVFAIL, unreachable: unknown, so never authenticating */
};

struct tlsa_set {
	enum tlsa_outcome outcome;
	int status; /* the errno a failure to authenticate reports */
	unsigned int ttl;
	uint16_t n_records;
	uint8_t *rdata; /* per record: 2-byte length (host order), then the RDATA */
	size_t rdata_len;
	char why[160]; /* "tlsa-bogus: ...", for results and logs */
};

enum dane_wait {
	DANE_IDLE,
	DANE_WAITING, /* on a lookup's list of waiters (under the DNS lock) */
	DANE_DELIVERED, /* its answer is in its worker's mailbox */
};

enum conn_phase {
	PHASE_HANDSHAKE = 0, /* first: a new conn starts here; ring reads and writes feed it */
	PHASE_LOOKUP, /* client role: the server's TLSA, before the handshake */
	PHASE_DRAIN, /* handshake done; completing a record that arrived half */
	PHASE_FLUSH, /* last bytes OpenSSL wrote are on their way */
	PHASE_DANE, /* server role: the client's TLSA, after the handshake, before offload */
	PHASE_ALERT, /* the handshake failed; OpenSSL's alert is on its way */
	PHASE_RESULT, /* result sent or being sent; socket gone */
};

/* The record boundary in the bytes received so far (see handshake.c). */
struct rec_track {
	uint8_t hdr[5];
	uint8_t hdr_len; /* header bytes seen of the current record */
	uint32_t body_left; /* body bytes still to come */
};

/*
 * One socket from the moment danced accepts it until its result is out. Owned by one
 * worker; freed by conn_put() once no ring operation refers to it.
 */
struct __attribute__((aligned(16))) conn {
	struct worker *w;
	struct state *st; /* reference */
	struct svc *svc;
	struct channel *ch; /* return mode: where the result goes (reference) */
	struct backend_pool *pool; /* front-door mode: where the socket goes */
	int fd; /* the TCP socket; danced's own descriptor */
	uint64_t id; /* the request's id */
	uint32_t flags; /* DANCE_REQ_* */
	enum conn_phase phase;
	int ops; /* ring operations in flight that carry this conn */
	bool io_busy; /* a recv or send is in flight */
	bool io_send; /* ... and it is a send */
	bool timed_out;
	bool touched; /* TLS bytes moved: on failure, shut the connection down */
	bool svc_fixed; /* the request named the service: no SNI switching */
	bool offloaded; /* kTLS is installed */
	bool counted; /* in agent.inflight */
	bool held; /* policy_hold() marked the socket: identify or release it */
	int fail_status; /* set where a failure is detected, reported at the end */
	const char *fail_reason;
	char why[DANCE_REASON_MAX];
	uint64_t start_ns, deadline_ns;
	SSL *ssl;
	struct ktls_conn kc;
	struct rec_track rt;
	struct dance_result *res; /* from the worker's pool, once there is something to say */
	struct msghdr rmsg; /* the result's sendmsg */
	struct iovec riov;
	union {
		char buf[CMSG_SPACE(sizeof(int))];
		struct cmsghdr align;
	} rcmsg;
	char peer_name[DANCE_HOST_MAX]; /* client role */
	/* DANE */
	char dane_name[DANCE_HOST_MAX]; /* what the client sent in dane_clientid */
	bool dane_sent; /* ... and it sent the extension at all */
	bool dane_done; /* the DANE decision is made (server role) */
	bool dns_cached; /* the answer came from the cache */
	bool server_wants_dane; /* client role: the CertificateRequest carried dane_clientid */
	bool flag_echo; /* server: echo request_client_auth in the CertificateRequest */
	enum dane_wait dane_wait; /* under the DNS lock */
	struct conn *dane_next; /* a lookup's waiters */
	void *dane_entry;
	struct conn *mail_next; /* the worker's mailbox */
	struct tlsa_set tlsa; /* the answer this conn got */
	uint32_t auth; /* enum dance_auth, decided by verify.c */
	char verified_name[DANCE_HOST_MAX];
	uint8_t tlsa_usage, tlsa_selector, tlsa_mtype; /* the record that matched */
	uint8_t ext_buf[256]; /* an extension we send (OpenSSL reads it after our callback) */
	char alpn[DANCE_ALPN_MAX]; /* client role: the request's offer */
	uint32_t in_off, in_len, out_off, out_len;
	struct conn *next; /* free list, or the worker's list of conns awaiting a backend */
	struct __kernel_timespec ts; /* the running op's link timeout */
	uint8_t in[CONN_IN_SIZE];
	uint8_t out[CONN_OUT_SIZE];
};

/* A server's connection to the handoff socket, or a backend's to a backend socket. */
struct __attribute__((aligned(16))) channel {
	struct worker *w;
	int fd;
	int refs; /* the channel itself, plus each conn that will answer on it */
	bool dead;
	bool backend; /* front-door backend channel */
	struct backend_pool *pool; /* backends only */
	bool in_pool; /* under pool->lock: */
	unsigned int credit; /* sockets it said it can take */
	struct channel *pool_next;
	struct ucred cred;
	struct msghdr msg;
	struct iovec iov;
	union {
		struct dance_request req;
		struct dance_ready ready;
		uint8_t raw[sizeof(struct dance_request) + 1]; /* +1: notice oversize */
	} buf;
	union {
		char buf[CMSG_SPACE(sizeof(int) * 4)];
		struct cmsghdr align;
	} cmsg;
};

/* user_data of a ring operation: an object pointer with the operation in its low bits. */
enum op {
	OP_CHAN_ACCEPT = 1, /* new connection on the handoff socket */
	OP_CHAN_RECV, /* a message from a channel */
	OP_CONN_IO, /* a conn's recv or send */
	OP_CONN_TIMEOUT, /* the link timeout of that recv or send */
	OP_RESULT_SEND, /* a result (and maybe a socket) on its way */
	OP_TCP_ACCEPT, /* front-door: a new TCP connection */
	OP_BACKEND_ACCEPT, /* front-door: a backend connects */
	OP_WAKE, /* eventfd: another thread has work for this worker */
	OP_TICK, /* a second passed while front-door sockets wait */
	OP_DNS, /* libunbound's descriptor is readable (worker 0) */
	OP_CONN_DNS_TIMEOUT, /* a conn's deadline while it waits for DNS */
	OP_IGNORE, /* completions nobody needs (timeout removals) */
	OP_POLICY, /* the kernel policy's events are readable (worker 0) */
	OP_MAX,
};

#define OP_BITS 4
#define OP_MASK ((1UL << OP_BITS) - 1)
_Static_assert(OP_MAX <= OP_MASK + 1, "enum op outgrew OP_BITS");

/* @obj must be 16-byte aligned (its type says so): a stray bit would misroute a completion. */
static inline uint64_t op_data(void *obj, enum op op)
{
	return (uint64_t)(uintptr_t)obj | op;
}

/* A front-door listener of one service, per worker; aligned for op_data(). */
struct listener {
	int fd;
	bool armed;
	struct backend_pool *pool;
} __attribute__((aligned(16)));

struct worker {
	unsigned int index;
	pthread_t thread;
	struct io_uring ring;
	int wake_fd; /* eventfd: stop, or queued front-door work */
	uint64_t wake_buf;
	struct conn *free_conns;
	unsigned int n_free_conns;
	struct dance_result *free_results;
	unsigned int live; /* conns alive on this worker */
	struct listener listeners[CFG_MAX_SERVICES * CFG_MAX_LISTEN];
	size_t n_listeners;
	struct conn *waiting; /* finished front-door conns awaiting a backend */
	unsigned int n_waiting;
	bool tick_armed;
	struct __kernel_timespec tick;
	pthread_mutex_t mail_lock; /* the mailbox: conns with a DNS answer for this worker */
	struct conn *mail;
} __attribute__((aligned(16)));

/* Process-wide state shared by the workers. */
struct agent {
	pthread_mutex_t state_lock;
	struct state *state; /* current; under state_lock */
	atomic_uint inflight; /* handshakes in flight, all workers */
	atomic_bool stopping;
	int handoff_fd; /* the listening handoff socket */
	struct backend_pool pools[CFG_MAX_SERVICES];
	size_t n_pools;
	struct worker *workers;
	unsigned int n_workers, n_started;
	uint64_t stop_grace_ns; /* how long a stop waits for handshakes in flight */
};

extern struct agent agent;

/* main.c */
uint64_t now_ns(void);

/* log.c */
void log_init(int level);
void log_set_level(int level);
void log_msg(int level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
#define log_err(...) log_msg(3, __VA_ARGS__)
#define log_warn(...) log_msg(4, __VA_ARGS__)
#define log_notice(...) log_msg(5, __VA_ARGS__)
#define log_info(...) log_msg(6, __VA_ARGS__)
#define log_debug(...) log_msg(7, __VA_ARGS__)
void log_ssl_errors(const char *what);

/* loop.c */
int loop_init(struct agent *a);
int loop_run(struct agent *a);
void loop_stop(struct agent *a);
struct io_uring_sqe *loop_sqe(struct worker *w);
void loop_reserve(struct worker *w, unsigned int n);
void loop_wake(struct worker *w);
void loop_tick(struct worker *w);

/* conn.c */
struct conn *conn_new(struct worker *w, int fd, struct state *st);
void conn_start(struct conn *c);
void conn_finish(struct conn *c, int status, const char *reason);
void conn_io_done(struct conn *c, int res);
void conn_timed_out(struct conn *c);
bool conn_arm_deadline(struct conn *c);
void conn_timeout_done(struct conn *c, int res);
void conn_result_sent(struct conn *c, int res);
void conn_put(struct conn *c);
void conn_submit_recv(struct conn *c, size_t len);
void conn_submit_send(struct conn *c);
void conn_pool_fini(struct worker *w);
struct dance_result *conn_result_buf(struct conn *c);

/* state (handshake.c) */
int state_new(struct config *cfg, struct state **out, char *err, size_t errlen);
struct state *state_get(struct agent *a);
void state_put(struct state *st);
int state_swap(struct agent *a, struct state *st);
struct svc *state_service(struct state *st, const char *name);

/* handshake.c */
int handshake_init(void);
int handshake_start(struct conn *c);
void handshake_received(struct conn *c, size_t n);
void handshake_step(struct conn *c);
void handshake_describe(struct conn *c, struct dance_result *r);
void handshake_dns_done(struct conn *c, bool timed_out);

/* verify.c */
int verify_setup_ctx(SSL_CTX *ctx, const struct svc_config *cfg, char *err, size_t errlen);
int verify_dane(struct conn *c, const char *name, int purpose, const char **why);
int verify_ext_add(SSL_CTX *ctx, const struct config *cfg, bool server, char *err, size_t errlen);
int verify_dane_start(struct conn *c);
int verify_dane_verdict(struct conn *c);
void verify_identity(struct conn *c, struct dance_result *res);
const char *verify_failure(SSL *ssl, const struct svc_config *cfg, int *status);

/* handoff.c */
int listen_unix(const char *path, unsigned int mode, int backlog);
int handoff_listen(struct agent *a, const struct config *cfg);
void handoff_arm_accept(struct worker *w, int lfd, void *obj, enum op op);
void handoff_accepted(struct worker *w, int res, struct backend_pool *pool);
void handoff_recv_done(struct channel *ch, int res);
void handoff_return(struct conn *c);
void channel_put(struct channel *ch);

/* dane.c */
int dane_init(const struct config *cfg, char *err, size_t errlen);
void dane_fini(void);
int dane_fd(void);
void dane_process(void);
int dane_lookup(struct conn *c, const char *name);
bool dane_cancel(struct conn *c);
int dane_name_check(const struct svc_config *cfg, const char *name, char *out, size_t max);
int tlsa_set_copy(struct tlsa_set *dst, const struct tlsa_set *src);
void tlsa_set_free(struct tlsa_set *set);
int tlsa_next(const struct tlsa_set *set, size_t *off, const uint8_t **rdata, uint16_t *len);

/* policy.c */
int policy_init(const struct config *cfg, char *err, size_t errlen);
void policy_fini(void);
int policy_hold(int fd);
int policy_identify(int fd, const struct svc_config *cfg, struct dance_result *r);
void policy_release(int fd);
int policy_events_fd(void);
void policy_events_drain(void);

/* conn.c, DNS waits */
void mailbox_post(struct conn *c);
void mailbox_drain(struct worker *w);
int conn_wait_dns(struct conn *c, const char *name);
void conn_dns_timeout_done(struct conn *c, int res);

/* frontdoor.c */
int frontdoor_init(struct agent *a, const struct config *cfg);
int frontdoor_listen(struct agent *a, struct worker *w);
void frontdoor_close(struct worker *w);
void frontdoor_arm(struct worker *w);
void frontdoor_backend_accepted(struct worker *w, struct backend_pool *p, int res, bool more);
void frontdoor_accepted(struct worker *w, struct listener *l, int res, bool more);
void frontdoor_deliver(struct conn *c);
void frontdoor_ready(struct channel *ch, const struct dance_ready *r);
void frontdoor_backend_gone(struct channel *ch);
void frontdoor_pump(struct worker *w);

#endif
