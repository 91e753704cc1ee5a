/* SPDX-License-Identifier: GPL-2.0 */
/*
 * dance.h - libdance, and the handoff protocol between servers and danced.
 *
 * This one header is the whole contract. A server either hands a connected TCP socket
 * to danced and gets back a result (return mode), or receives sockets that danced
 * accepted and handshook itself (front-door mode). Either way the socket arrives with
 * kernel TLS installed: the server reads and writes plaintext.
 *
 * The protocol runs over AF_UNIX SOCK_SEQPACKET, one message per datagram, host byte
 * order (both ends are on one machine), and is versioned by DANCE_PROTO_VERSION.
 *
 * Return mode:
 *   server -> danced  struct dance_request (type DANCE_MSG_HANDSHAKE) + the socket as
 *                     exactly one SCM_RIGHTS descriptor
 *   danced -> server  struct dance_result (type DANCE_MSG_RESULT), no descriptor: the
 *                     server's own descriptor refers to the same socket, which now
 *                     carries kTLS. The message is the struct up to `pending`, followed
 *                     by pending_len bytes of plaintext that danced already received
 *                     and decrypted; the server must consume them before reading the
 *                     socket.
 * Front-door mode (the server connects to a service's backend socket):
 *   server -> danced  struct dance_ready (type DANCE_MSG_READY): room for n sockets
 *   danced -> server  struct dance_result (type DANCE_MSG_ACCEPTED) + the socket as
 *                     one SCM_RIGHTS descriptor
 *
 * Exactly once: danced answers every DANCE_MSG_HANDSHAKE with exactly one
 * DANCE_MSG_RESULT on the same channel, or the channel closes. It keeps no socket after
 * answering. On failure it has shut the connection down (except when the request itself
 * was refused before any TLS byte moved: then the socket is left as it was).
 */
#ifndef DANCE_H
#define DANCE_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define DANCE_MAGIC 0x434e4144u /* "DANC" in memory on little-endian hosts */
#define DANCE_PROTO_VERSION 2 /* 2: group, peer_cert_type */

#define DANCE_NAME_MAX 64 /* service names, cipher names */
#define DANCE_HOST_MAX 256 /* DNS names: 253 octets and a NUL, rounded */
#define DANCE_ALPN_MAX 256 /* one protocol id (<= 255 octets) or a comma list */
#define DANCE_REASON_MAX 192
#define DANCE_SUBJECT_MAX 256
#define DANCE_NAMES_MAX 512
#define DANCE_PENDING_MAX 32768 /* plaintext danced may have read past the handshake */

enum dance_msg_type {
	DANCE_MSG_HANDSHAKE = 1,
	DANCE_MSG_RESULT = 2,
	DANCE_MSG_READY = 3,
	DANCE_MSG_ACCEPTED = 4,
};

/* dance_request.flags */
#define DANCE_REQ_CLIENT (1u << 0) /* danced is the TLS client on this socket */

struct dance_hdr {
	uint32_t magic;
	uint16_t version;
	uint16_t type;
};

struct dance_request {
	struct dance_hdr hdr;
	uint32_t flags;
	uint32_t timeout_ms; /* 0: the service's handshake_timeout; never more than it */
	uint64_t id; /* chosen by the server, echoed in the result */
	char service[DANCE_NAME_MAX]; /* "" picks by SNI (server role) */
	char peer_name[DANCE_HOST_MAX]; /* client role: SNI and the name to verify */
	char alpn[DANCE_ALPN_MAX]; /* client role: comma list to offer; "" = service's */
};

struct dance_ready {
	struct dance_hdr hdr;
	uint32_t n; /* sockets the backend can take now, on top of those it was promised */
};

/* How the peer was authenticated (dance_result.auth). */
enum dance_auth {
	DANCE_AUTH_NONE = 0, /* no certificate asked for, or none given where optional */
	DANCE_AUTH_X509 = 1, /* certificate chain verified against the service's CA file */
	DANCE_AUTH_DANE = 2, /* DNSSEC-secure TLSA record at verified_name matched (DANCE) */
};

/* dance_result.peer_cert_type: the TLS certificate types of RFC 7250. */
#define DANCE_CERT_X509 0
#define DANCE_CERT_RPK 2

/* dance_result.flags */
#define DANCE_RES_PEER_CLOSED (1u << 0) /* close_notify arrived among the pending bytes */
/*
 * Set by libdance only, never on the wire: the call failed before the socket left the
 * caller (-EINVAL, -ENAMETOOLONG, -EBADF, -EBUSY), so it is still open and the caller's.
 * After any other failure libdance has closed it.
 */
#define DANCE_RES_FD_KEPT (1u << 31)

struct dance_result {
	struct dance_hdr hdr;
	int32_t status; /* 0, or a negative errno; reason says more */
	uint32_t flags;
	uint64_t id; /* the request's id; 0 when the request was unreadable */
	uint64_t cookie; /* SO_COOKIE of the socket, the key in danced's BPF maps */
	uint16_t tls_version; /* 0x0303 TLS 1.2, 0x0304 TLS 1.3 */
	uint16_t cipher; /* IANA cipher suite value */
	uint32_t auth; /* enum dance_auth */
	uint32_t handshake_us; /* time from request to result */
	uint32_t pending_len;
	char reason[DANCE_REASON_MAX]; /* "ok", or why not, for people */
	char service[DANCE_NAME_MAX];
	char cipher_name[DANCE_NAME_MAX];
	char group[DANCE_NAME_MAX]; /* the key exchange group, OpenSSL's name for it:
				       "X25519MLKEM768" (hybrid post-quantum), "x25519" */
	char alpn[DANCE_ALPN_MAX]; /* the protocol selected, if any */
	char sni[DANCE_HOST_MAX]; /* server role: what the client asked for */
	char peer_subject[DANCE_SUBJECT_MAX]; /* RFC 2253 subject of the verified peer */
	char peer_names[DANCE_NAMES_MAX]; /* its SAN dNSNames, space-separated */
	char verified_name[DANCE_HOST_MAX]; /* DANE: the name the peer proved (its TLSA owner
					       name; client role: the server's name) */
	uint8_t tlsa_usage, tlsa_selector, tlsa_mtype; /* DANE: the record that matched */
	uint8_t dns_cached; /* DANE: 1 when the TLSA answer came from danced's cache */
	uint8_t peer_cert_type; /* what the peer authenticated with (RFC 7250 values):
				   DANCE_CERT_X509, or DANCE_CERT_RPK, a raw public key */
	uint8_t reserved[3]; /* zero; keeps the struct free of padding on the wire */
	uint8_t pending[DANCE_PENDING_MAX]; /* on the wire: only pending_len bytes */
};

#define DANCE_RESULT_HDR_LEN offsetof(struct dance_result, pending)

/* ---- libdance ------------------------------------------------------------------- */

/*
 * Ownership, in short (dance.c has the details): a socket given to dance_handshake()
 * or dance_submit() comes back with kTLS on success, and is closed by libdance on
 * failure, except when the call refused its arguments before sending anything. One
 * struct dance per thread; blocking and async calls are not mixed on one handle.
 */
struct dance;

#define DANCE_INFLIGHT_MAX 65536 /* async requests one handle can have in flight */

struct dance_params {
	const char *service; /* NULL or "": server role picks by SNI */
	const char *peer_name; /* client role: required */
	const char *alpn; /* client role: comma list */
	unsigned int timeout_ms; /* 0: the service's */
	int client; /* nonzero: danced is the TLS client */
};

int dance_open(const char *path, struct dance **out);
void dance_close(struct dance *d);
int dance_handshake(struct dance *d, int fd, const struct dance_params *p,
		    struct dance_result *res);
int dance_submit(struct dance *d, int fd, const struct dance_params *p, uint64_t id);
int dance_fd(const struct dance *d);
int dance_complete(struct dance *d, struct dance_result *res);
int dance_listen(const char *backend_path, unsigned int window, struct dance **out);
int dance_accept(struct dance *d, struct dance_result *res);
ssize_t dance_recv(int fd, void *buf, size_t len, int flags);
int dance_shutdown(int fd);
const char *dance_strerror(int status);

/* ---- the codec both ends use ---------------------------------------------------- */

int dance_request_check(const void *msg, size_t len, const char **why);
int dance_result_check(const void *msg, size_t len, const char **why);
int dance_ready_check(const void *msg, size_t len, const char **why);
void dance_hdr_init(struct dance_hdr *h, enum dance_msg_type type);

#endif
