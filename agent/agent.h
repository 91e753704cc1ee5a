/* SPDX-License-Identifier: GPL-2.0 */
/*
 * agent.h - danced's shared structures and, grouped by file in the order a socket passes
 * through them, every stage's entry points: a table of contents of the daemon.
 *
 *   handoff.c or frontdoor.c (a socket arrives) -> admit.c (limits) -> conn.c (owner)
 *     conn.c runs the stages: [dane.c, client role: the server's TLSA] -> handshake.c
 *     (OpenSSL over the ring) -> ktls.c (keys into the kernel) -> verify.c + dane.c
 *     (server role: the client's TLSA, decided with kTLS installed) -> policy.c (the
 *     identity into the BPF maps) -> conn.c (exactly one result)
 *   -> handoff.c (result back on the channel) or frontdoor.c (socket to a backend)
 *   kernel.c: the kernel's own requests (net/handshake) enter at admit.c and leave
 *   with one DONE, the socket staying the kernel's
 *
 * conn.c alone sets a conn's phase, submits its ring operations, arms its deadline and
 * finishes it. Stages take what they need and return a verdict; asynchronous services
 * (DNS) call a completion they are given and never see a conn.
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

struct worker;
struct channel;
struct backend_pool;
struct conn;
struct nl_sock;

/* ---- what a stage says ------------------------------------------------------------ */

/*
 * Why something failed: one errno and one sentence for the result and the log. This is
 * the one way a failure's reason travels; the first failure recorded wins, because it
 * is the cause and what follows is consequence.
 */
struct fail {
	int status; /* 0, or a negative errno */
	char why[DANCE_REASON_MAX];
};

int fail_set(struct fail *f, int status, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/* What a stage asks of its owner (conn.c). */
enum verdict {
	V_DONE, /* this stage is finished; go on */
	V_READ, /* wants bytes from the peer (tls->want of them at most) */
	V_WRITE, /* has bytes for the peer in its output buffer */
	V_LOOKUP, /* needs the TLSA RRset at a name */
	V_FAIL, /* failed; the struct fail says why */
};

/* ---- TLS state: one SSL_CTX per service, rebuilt by reload (handshake.c) ----------- */

struct svc {
	const struct svc_config *cfg;
	SSL_CTX *ctx;
	uint8_t alpn_wire[DANCE_ALPN_MAX + 1]; /* the alpn list in wire format */
	size_t alpn_len;
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
	SSL_CTX *dane_ctx; /* for the scratch SSLs of verify_dane_match() */
};

/* ---- DNS (dane.c) ----------------------------------------------------------------- */

/* The three outcomes of a TLSA lookup; a failure is never "no TLSA". */
enum tlsa_outcome {
	TLSA_SECURE, /* DNSSEC-secure records */
	TLSA_NONE, /* DNSSEC-secure: no records, or no such name */
	TLSA_INSECURE, /* the zone is provably unsigned */
	TLSA_FAILURE, /* bogus, SERVFAIL, unreachable: unknown, so never authenticating */
};

/*
 * One answer, shared by the cache and every handshake that asked for it (reference
 * counted, immutable once made).
 */
struct tlsa_set {
	atomic_int refs;
	enum tlsa_outcome outcome;
	int status; /* the errno a failure to authenticate reports */
	unsigned int ttl;
	uint16_t n_records;
	uint32_t rdata_len;
	char why[160]; /* "tlsa-bogus: ...", for results and logs */
	uint8_t rdata[]; /* per record: 2-byte length (host order), then the RDATA */
};

/*
 * A lookup's waiter, embedded by whoever waits. dane_lookup() calls @post from the DNS
 * thread once the answer is in @answer (never after dane_cancel() took it back); the
 * waiter moves to its own thread there and reads @answer.
 */
struct dns_wait {
	void (*post)(struct dns_wait *w);
	struct tlsa_set *answer; /* a reference, for the waiter to put */
	bool cached; /* answered from the cache */
	/* dane.c's, under its lock */
	bool waiting;
	struct dns_wait *next;
	void *entry;
};

/* ---- one TLS session (handshake.c, verify.c) --------------------------------------- */

/* The record boundary in the bytes received so far. */
struct rec_track {
	uint8_t hdr[5];
	uint8_t hdr_len; /* header bytes seen of the current record */
	uint32_t body_left; /* body bytes still to come */
};

/*
 * A buffer for moving handshake bytes, from the worker's pool, held only while bytes
 * wait in it or a recv may fill it. One TLS flight fits, usually; larger ones take turns.
 */
#define TLS_BUF_SIZE 8192
/* The largest plaintext of one record (RFC 8446 section 5.1): the drain's scratch. */
#define TLS_RECORD_PLAIN_MAX 16384

/*
 * The handshake of one socket: OpenSSL reads and writes @io through a BIO that never
 * touches the socket; the owner moves the bytes. The SSL's app data points here, so
 * OpenSSL's callbacks (SNI, ALPN, the DANCE extensions, verification) see this and
 * nothing else.
 */
struct tls {
	SSL *ssl;
	struct state *st; /* the owner's reference */
	struct svc *svc; /* may change with the ClientHello's SNI */
	bool svc_fixed; /* the request named the service: no SNI switching */
	bool client;
	const char *peer_name; /* client role: SNI and the name to verify */
	const char *peer_alpn; /* client role: the request's ALPN offer, or "" */
	uint8_t *in, *out; /* TLS_BUF_SIZE each, or NULL */
	int in_bid; /* in is the ring's provided buffer number in_bid; -1: the pool's */
	uint32_t in_off, in_len, out_off, out_len;
	uint32_t want; /* V_READ: bytes wanted at most */
	struct rec_track rt;
	struct ktls_conn kc;
	struct fail *fail; /* where callbacks put their reasons */
	/* plaintext received behind the handshake, for the result */
	uint8_t *pending;
	uint32_t pending_len, pending_cap;
	bool peer_closed; /* close_notify among it */
	/* the DANCE extensions */
	bool dane_sent; /* server: the client sent dane_clientid */
	bool server_wants_dane; /* client: the CertificateRequest carried it */
	bool flag_echo; /* server: echo request_client_auth in the CertificateRequest */
	/*
	 * A kernel request (kernel.c): TLS 1.3 only, and every recv stops at a record's end,
	 * because nothing read past the handshake could be handed to the kernel consumer.
	 */
	bool kernel;
	bool no_own_cert; /* the kernel asked for an anonymous client */
	X509 *own_cert; /* the kernel's request named these keys; NULL: the service's */
	EVP_PKEY *own_key;
	/* a kernel PSK request (TLS 1.3 external PSK): both ends prove the key, no
	   certificates; wiped when the conn goes */
	char *psk_identity;
	uint8_t *psk;
	uint16_t psk_len;
	uint8_t dane_name_len;
	char dane_name[DANCE_HOST_MAX]; /* what the client sent, checked later */
};

/*
 * What the server-side DANE decision needs once the SSL is gone: the client's chain,
 * its claimed name, and the service that judges (verify.c).
 */
struct dane_check {
	EVP_PKEY *rpk; /* a raw public key (RFC 7250) instead of leaf and chain */
	bool is_rpk; /* der holds the rpk's SubjectPublicKeyInfo */
	X509 *leaf;
	STACK_OF(X509) * chain; /* untrusted certificates the client sent after its leaf */
	uint8_t *der; /* while waiting for DNS: leaf and chain as DER, one after another */
	size_t der_len;
	char name[DANCE_HOST_MAX]; /* the TLSA owner name, checked and lower case */
};

/* ---- a socket in danced (conn.c) ---------------------------------------------------- */

enum conn_phase {
	PHASE_NEW, /* made, not started: a refusal ends it here */
	PHASE_LOOKUP, /* client role: the server's TLSA, before any TLS byte */
	PHASE_HANDSHAKE, /* OpenSSL and the ring move the handshake */
	PHASE_DRAIN, /* done; records that came behind Finished, to a record boundary */
	PHASE_DANE, /* server role, kTLS installed: the client's TLSA, then the match */
	PHASE_ALERT, /* failed; OpenSSL's alert is on its way to the peer */
	PHASE_DELIVER, /* front door: finished, waiting for a backend with credit */
	PHASE_EA, /* an exported-authenticator operation, before any DNS */
	PHASE_DONE, /* the result is made; the conn waits for the ring to let go of it */
};

/* A conn's hold on the admission limits (admit.c). */
struct admit_ticket {
	void *source; /* the source address's entry, or NULL */
	int service; /* the service's slot, or -1 */
	bool global; /* counted in agent.inflight */
};

/*
 * One socket from the moment danced takes it until its result is out. Owned by one
 * worker; freed once it is done and no ring operation refers to it (conn_put()).
 */
struct __attribute__((aligned(16))) conn {
	struct worker *w;
	struct state *st; /* reference */
	struct channel *ch; /* return mode: where the result goes (reference) */
	struct backend_pool *pool; /* front-door mode: where the socket goes */
	int fd; /* the TCP socket: danced's own descriptor */
	uint64_t id; /* the request's id; front door: danced's own count */
	enum conn_phase phase;
	int ops; /* ring operations in flight that carry this conn, and holds */
	bool io_busy; /* a recv or send is in flight */
	bool io_send; /* ... and it is a send */
	bool io_select; /* ... a recv into a buffer the kernel picks when data comes */
	bool deadline_armed; /* the deadline timeout is in the ring */
	bool stopping; /* the deadline passed, or the channel died: end at the next step */
	bool touched; /* TLS bytes moved: on failure, shut the connection down */
	bool offloaded; /* kTLS is installed */
	bool dns_waiting; /* on a lookup's list, or its answer on the way */
	bool held; /* the BPF policy exempts this socket's I/O (policy_hold()) */
	bool dns_cached; /* client role: the server's TLSA came from the cache */
	bool kernel; /* a kernel request (kernel.c): answered by DONE, the socket is not ours */
	int32_t kernel_psk; /* its PSK's key serial, for DONE once the peer proved it */
	int32_t kernel_peer; /* a DONE held back (kernel_done_later()): its peer, and */
	bool kernel_held; /* ... that it is still owed */
	uint32_t rx, tx; /* TLS bytes received and sent: a timeout says how far it got */
	uint64_t start_ns, deadline_ns, wait_until_ns;
	/*
	 * The offload's own time (the result's offload_us): since mark_ns, the end of the
	 * TLS handshake or of the TLSA match, plus offload_ns already spent before a DNS wait.
	 */
	uint64_t mark_ns, offload_ns;
	struct admit_ticket ticket;
	struct sockaddr_storage peer; /* the TCP peer, for limits and logs */
	struct tls tls;
	struct dane_check dane; /* server role, PHASE_DANE */
	struct dns_wait dw;
	struct fail fail; /* why it failed, once it did */
	struct dance_result *res; /* header only (DANCE_RESULT_HDR_LEN bytes), from a pool */
	bool ea_op; /* an exported-authenticator operation instead of a handshake: */
	struct dance_ea *ea; /* its message, once accepted */
	uint64_t cookie; /* SO_COOKIE, once known */
	struct msghdr rmsg; /* the result's sendmsg: header, then pending plaintext */
	struct iovec riov[2];
	struct __kernel_timespec ts; /* the deadline's timeout */
	char alpn[DANCE_ALPN_MAX]; /* client role: the request's offer */
	char peer_name[DANCE_HOST_MAX]; /* client role */
	struct conn *live_prev, *live_next; /* the worker's live conns */
	struct conn *ch_prev, *ch_next; /* the channel's conns (return mode) */
	struct conn *next; /* free list, the worker's delivery queue or its mailbox */
};

/* ---- channels, workers, the agent --------------------------------------------------- */

/* A server's connection to the handoff socket, or a backend's to a backend socket. */
struct __attribute__((aligned(16))) channel {
	struct worker *w;
	int fd;
	int refs; /* the channel itself, its recv, and each conn that answers on it */
	bool dead;
	bool backend; /* front-door backend channel */
	struct backend_pool *pool; /* backends only */
	bool in_pool; /* under pool->lock: */
	unsigned int credit; /* sockets it said it can take */
	struct channel *pool_next;
	struct conn *conns; /* return mode: the conns that answer here */
	struct channel *w_prev, *w_next; /* the worker's channels */
	struct ucred cred;
	struct msghdr msg;
	struct iovec iov;
	union {
		struct dance_request req;
		struct dance_ready ready;
		struct dance_ea ea;
		uint8_t raw[sizeof(struct dance_ea) + 1]; /* +1: notice oversize */
	} buf;
	union {
		char buf[CMSG_SPACE(sizeof(int) * 4)];
		struct cmsghdr align;
	} cmsg;
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

/* user_data of a ring operation: an object pointer with the operation in its low bits. */
enum op {
	OP_CHAN_ACCEPT = 1, /* new connection on the handoff socket */
	OP_CHAN_RECV, /* a message from a channel */
	OP_CONN_IO, /* a conn's recv or send */
	OP_CONN_DEADLINE, /* a conn's deadline */
	OP_RESULT_SEND, /* a result on its way back to a server */
	OP_TCP_ACCEPT, /* front-door: a new TCP connection */
	OP_BACKEND_ACCEPT, /* front-door: a backend connects */
	OP_WAKE, /* eventfd: another thread has work for this worker */
	OP_TICK, /* a second passed while front-door sockets wait */
	OP_IGNORE, /* completions nobody needs (timeout removals, cancellations) */
	OP_KERNEL, /* the kernel announced handshake requests (kernel.c) */
	OP_KERNEL_DONE, /* a kernel request's refusal may be answered now (kernel.c) */
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
	struct sockaddr_storage peer; /* accept's peer address */
	socklen_t peer_len;
} __attribute__((aligned(16)));

struct worker {
	unsigned int index;
	pthread_t thread;
	struct io_uring ring;
	bool ring_dead; /* the ring failed; the worker fails what it holds and leaves */
	unsigned int submits; /* DANCED_DEBUG_RING_FAIL counts these */
	int wake_fd; /* eventfd: stop, or queued work */
	uint64_t wake_buf;
	struct conn *live; /* every conn this worker holds */
	struct channel *channels; /* every channel this worker accepted */
	unsigned int n_live, peak_live;
	struct conn *free_conns;
	unsigned int n_free_conns;
	void *free_io;
	unsigned int n_free_io;
	struct io_uring_buf_ring *br; /* receive buffers the kernel picks from, or NULL */
	uint8_t *br_bufs;
	unsigned int br_n;
	void *free_results;
	unsigned int n_free_results;
	uint8_t *scratch; /* one TLS record of plaintext (handshake.c) */
	struct listener listeners[CFG_MAX_SERVICES * CFG_MAX_LISTEN];
	size_t n_listeners;
	struct conn *waiting; /* finished front-door conns awaiting a backend */
	unsigned int n_waiting;
	bool tick_armed;
	struct __kernel_timespec tick;
	pthread_mutex_t mail_lock; /* the mailbox: conns with a DNS answer for this worker */
	struct conn *mail;
	bool mail_armed; /* a wake is on its way */
	struct nl_sock *kmc,
		*kcmd; /* kernel.c: READY comes on one, ACCEPT and DONE go on the other */
	bool kernel_armed;
	uint64_t refusal_sec; /* refusal lines logged this second, and held back */
	unsigned int refusals_logged, refusals_held;
} __attribute__((aligned(16)));

/* Process-wide state shared by the workers. */
struct agent {
	pthread_mutex_t state_lock;
	struct state *state; /* current; under state_lock */
	atomic_uint inflight; /* handshakes in flight, all workers */
	atomic_bool stopping;
	atomic_int exit_status; /* 1 once a worker failed for good */
	int handoff_fd; /* the listening handoff socket */
	int control_fd; /* eventfd: wakes the main thread (a worker failed, or left) */
	struct backend_pool pools[CFG_MAX_SERVICES];
	size_t n_pools;
	struct worker *workers;
	unsigned int n_workers, n_started;
	atomic_uint n_running; /* workers still in their loop */
	uint64_t stop_grace_ns; /* how long a stop waits for handshakes in flight */
	unsigned int ring_entries; /* 0: the default; DANCED_DEBUG_RING_ENTRIES */
	unsigned int ring_fail_at; /* DANCED_DEBUG_RING_FAIL: the Nth submission fails */
	atomic_ullong next_id; /* ids of front-door conns */
};

extern struct agent agent;

/* ---- entry points, by file, in the order a socket meets them ------------------------- */

/* main.c */
uint64_t now_ns(void);

/* log.c */
void log_init(int level);
void log_set_level(int level);
bool log_enabled(int level);
void log_msg(int level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
#define log_err(...) log_msg(3, __VA_ARGS__)
#define log_warn(...) log_msg(4, __VA_ARGS__)
#define log_notice(...) log_msg(5, __VA_ARGS__)
#define log_info(...) log_msg(6, __VA_ARGS__)
#define log_debug(...) log_msg(7, __VA_ARGS__)
void log_ssl_errors(const char *what);
const char *log_printable(const char *in, char *out, size_t max);
const char *log_addr(const struct sockaddr_storage *ss, char *out, size_t max);

/* loop.c */
int loop_init(struct agent *a);
int loop_run(struct agent *a);
void loop_stop_begin(struct agent *a);
void loop_stop(struct agent *a);
struct io_uring_sqe *loop_sqe(struct worker *w);
void loop_wake(struct worker *w);
void loop_tick(struct worker *w);
#define LOOP_BGID 0 /* the buffer group of a worker's receive buffers */
uint8_t *loop_buf(struct worker *w, unsigned int bid);
void loop_buf_return(struct worker *w, unsigned int bid);

/* handoff.c: servers hand sockets in, results go back */
int listen_unix(const char *path, unsigned int mode, int backlog);
int handoff_listen(struct agent *a, const struct config *cfg);
int socket_check(int fd, struct sockaddr_storage *peer, struct fail *f);
void handoff_arm_accept(struct worker *w, int lfd, void *obj, enum op op);
void handoff_accepted(struct worker *w, int res, struct backend_pool *pool);
void handoff_recv_done(struct channel *ch, int res);
void handoff_send_result(struct conn *c);
int handoff_send_result_now(struct conn *c);
void channel_put(struct channel *ch);
void channel_free_all(struct worker *w);

/* frontdoor.c: danced accepts for a service, finished sockets go to backends */
int frontdoor_init(struct agent *a, const struct config *cfg);
int frontdoor_listen(struct agent *a, struct worker *w);
void frontdoor_close(struct worker *w);
void frontdoor_arm(struct worker *w);
void frontdoor_backend_accepted(struct worker *w, struct backend_pool *p, int res, bool more);
void frontdoor_accepted(struct worker *w, struct listener *l, int res);
bool frontdoor_offer(struct conn *c);
bool frontdoor_credit_unread(struct backend_pool *p);
void frontdoor_ready(struct channel *ch, const struct dance_ready *r);
void frontdoor_backend_gone(struct channel *ch);
void frontdoor_arm_listeners(struct worker *w);
void frontdoor_pump(struct worker *w, bool stop);

/* kernel.c: the kernel's handshake requests (net/handshake) */
int kernel_probe(void);
int kernel_tlshd(void);
int kernel_init(const struct config *cfg, char *err, size_t errlen);
bool kernel_reload_check(const struct config *cfg);
int kernel_worker_init(struct worker *w);
void kernel_worker_fini(struct worker *w);
void kernel_arm(struct worker *w);
void kernel_ready(struct worker *w, int res);
int32_t kernel_peer(struct conn *c);
void kernel_done(struct conn *c, int32_t peer);
void kernel_done_later(struct conn *c, int32_t peer);
void kernel_done_now(struct conn *c);
void kernel_held_done(struct conn *c);

/* admit.c: limits before any work */
int admit_init(const struct config *cfg);
void admit_fini(void);
int admit(struct admit_ticket *t, const struct state *st, const struct svc_config *svc,
	  const struct sockaddr_storage *peer, struct fail *f);
void admit_release(struct admit_ticket *t);

/* conn.c: the one owner of a socket's state */
struct conn *conn_new(struct worker *w, int fd, struct state *st);
void conn_start(struct conn *c, struct svc *svc, bool svc_fixed, unsigned int timeout_ms);
void conn_start_ea(struct conn *c, unsigned int timeout_ms);
void conn_refuse(struct conn *c, int status, const char *why);
void conn_io_done(struct conn *c, int res, unsigned int flags);
void conn_deadline_done(struct conn *c, int res);
void conn_result_sent(struct conn *c, int res);
void conn_cancel(struct conn *c, int status, const char *why);
void conn_delivered(struct conn *c);
void conn_give_up(struct conn *c, const char *why);
void conn_put(struct conn *c);
void conn_fail_all(struct worker *w, int status, const char *why);
void conn_free_all(struct worker *w);
void conn_pool_fini(struct worker *w);
void mailbox_drain(struct worker *w);

/* state (handshake.c) */
int handshake_init(void);
int state_new(struct config *cfg, struct state **out, char *err, size_t errlen);
struct state *state_get(struct agent *a);
void state_put(struct state *st);
void state_swap(struct agent *a, struct state *st);
struct svc *state_service(struct state *st, const char *name);
struct svc *state_pick(struct state *st, const struct dance_request *req, struct fail *f);

/* handshake.c: one handshake */
int tls_begin(struct tls *t, int fd, struct fail *f);
int tls_client_dane(struct tls *t, const struct tlsa_set *set, struct fail *f);
void tls_received(struct tls *t, size_t n);
enum verdict tls_handshake(struct tls *t);
enum verdict tls_drain(struct tls *t, uint8_t *scratch);
void tls_describe(struct tls *t, struct dance_result *r);
void tls_end(struct tls *t);
const char *tls_client_tlsa_name(const struct tls *t, const struct sockaddr_storage *peer,
				 char *out, size_t max);

/* verify.c: who the peer is */
int verify_setup_ctx(SSL_CTX *ctx, const struct svc_config *cfg, char *err, size_t errlen);
int verify_ext_add(SSL_CTX *ctx, const struct config *cfg, bool server, char *err, size_t errlen);
const char *verify_failure(SSL *ssl, const struct svc_config *cfg, int *status);
void verify_identity(struct tls *t, struct dance_result *res);
void verify_describe(X509 *cert, struct dance_result *res);
enum verdict verify_dane_begin(struct tls *t, struct dane_check *d, struct fail *f);
int verify_dane_match(const struct state *st, const struct svc *svc, struct dane_check *d,
		      const struct tlsa_set *set, struct dance_result *res, struct fail *f);
int verify_dane_pack(struct dane_check *d);
void verify_dane_end(struct dane_check *d);

/* dane.c: TLSA lookups, DNSSEC-validated */
int dane_init(const struct config *cfg, char *err, size_t errlen);
int dane_reload(const struct config *cfg, char *err, size_t errlen);
bool dane_config_equal(const struct config *a, const struct config *b);
void dane_fini(void);
int dane_poll_fds(int *fds, int max);
void dane_process(void);
int dane_lookup(const char *name, struct dns_wait *w);
bool dane_cancel(struct dns_wait *w);
int dane_name_check(const struct svc_config *cfg, const char *name, size_t len, char *out,
		    size_t max);
void tlsa_set_put(struct tlsa_set *set);
int tlsa_next(const struct tlsa_set *set, size_t *off, const uint8_t **rdata, uint16_t *len);

/* exported.c: exported authenticators (RFC 9261) on offloaded sockets */
extern const char *const exported_labels[2][2];
int exported_init(const struct config *cfg, char *err, size_t errlen);
void exported_fini(void);
void exported_keep(SSL *ssl, struct ktls_conn *kc, uint64_t cookie, const char *service,
		   bool server);
bool exported_forget(uint64_t cookie);
bool exported_enabled(void);
struct exported_stats {
	unsigned int live, cap, pha;
	unsigned long long evicted;
};
void exported_stats(struct exported_stats *st);
enum verdict exported_op(const struct dance_ea *m, uint64_t cookie, struct state *st,
			 struct svc **svc, uint8_t *out, uint32_t *out_len, struct dane_check *d,
			 struct dance_result *res, struct fail *f);

/* policy.c: the verified name into the kernel's policy */
int policy_init(const struct config *cfg, char *err, size_t errlen);
void policy_fini(void);
int policy_hold(int fd);
int policy_identify(int fd, const struct svc_config *cfg, struct dance_result *r);
int policy_proof_asked(int fd);
int policy_reidentify(int fd, const struct svc_config *cfg, struct dance_result *r);
void policy_release(int fd);
int policy_events_fd(void);
void policy_events_drain(void);

#endif
