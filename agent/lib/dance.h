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
/* 2: group, peer_cert_type; 3: exported authenticators; 4: offload_us */
#define DANCE_PROTO_VERSION 4

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
	DANCE_MSG_EA = 5,
	DANCE_MSG_EA_RESULT = 6,
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
	/* After the handshake, by an exported authenticator (RFC 9261) on the connection: */
	DANCE_AUTH_EA_X509 = 3, /* ... whose certificate chain the service's CA file verified */
	DANCE_AUTH_EA_DANE = 4, /* ... whose key the TLSA record at verified_name matched */
	/* After the handshake, by TLS 1.3 post-handshake authentication: */
	DANCE_AUTH_PHA_X509 = 5, /* ... a certificate chain the service's CA file verified */
	DANCE_AUTH_PHA_DANE = 6, /* ... a key the TLSA record at verified_name matched */
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
	uint32_t handshake_us; /* time from request to result (of an EA operation: its own) */
	/*
	 * What the offload itself took: from the end of the TLS handshake to this result,
	 * less the TLSA lookup's wait and match (DANE): draining to a record boundary, the
	 * kTLS keys, the BPF map writes, the result. 0 when the handshake failed, and for
	 * exported-authenticator operations.
	 */
	uint32_t offload_us;
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
	uint8_t reserved[7]; /* zero; keeps the struct free of padding on the wire */
	uint8_t pending[DANCE_PENDING_MAX]; /* on the wire: only pending_len bytes */
};

#define DANCE_RESULT_HDR_LEN offsetof(struct dance_result, pending)

/*
 * Exported authenticators (RFC 9261) on a socket danced offloaded: the server asks danced
 * to make a request, to answer the peer's request with the service's key (which never
 * leaves danced), or to validate the peer's authenticator; danced finds the connection by
 * the socket's SO_COOKIE and uses only the four exporter values it kept at the end of
 * the handshake. The messages themselves travel however the application likes (over the
 * same connection is fine); danced never reads or writes the socket for them, except
 * for the CertificateRequest of post-handshake authentication, which TLS puts on the
 * connection itself.
 *
 *   server -> danced  struct dance_ea (type DANCE_MSG_EA): the fixed part up to `data`,
 *                     then request_len + auth_len bytes; the socket as exactly one
 *                     SCM_RIGHTS descriptor (danced closes its copy after answering)
 *   danced -> server  struct dance_result (type DANCE_MSG_EA_RESULT): status and reason;
 *                     for DANCE_EA_VALIDATE who was proved and how (auth, verified_name,
 *                     peer_subject, peer_names, tlsa_*); for DANCE_EA_REQUEST and
 *                     DANCE_EA_AUTHENTICATE the message made, as pending_len bytes in
 *                     `pending`.
 * Exactly one DANCE_MSG_EA_RESULT answers each DANCE_MSG_EA, with its id. The socket
 * only names the connection: it stays the caller's, open and untouched, whatever the
 * outcome (libdance sets DANCE_RES_FD_KEPT on every failed call), and a failed
 * operation never harms the connection.
 */
enum dance_ea_op {
	DANCE_EA_REQUEST = 1, /* make a CertificateRequest (danced was the TLS server) or a
				 ClientCertificateRequest (danced was the TLS client) */
	DANCE_EA_AUTHENTICATE = 2, /* answer the peer's request (or, as the TLS server, none:
				      a spontaneous authenticator) with the service's key */
	DANCE_EA_VALIDATE = 3, /* judge the peer's authenticator against danced's request */
	DANCE_EA_FORGET = 4, /* drop the connection's exporter values now */
	/*
	 * TLS 1.3 post-handshake authentication (RFC 8446 section 4.6.2), danced being
	 * the TLS server of a client that offered it: danced sends a CertificateRequest
	 * over the connection itself, as a handshake record through kTLS, and returns it
	 * in `pending`; the client's Certificate, CertificateVerify and Finished arrive
	 * at the server as handshake records (dance_recv() fails with ENOMSG before
	 * them), and PHA_VALIDATE judges them, with the request, as VALIDATE does.
	 */
	DANCE_EA_PHA_REQUEST = 5,
	DANCE_EA_PHA_VALIDATE = 6,
	/*
	 * danced was the TLS client, and offered post_handshake_auth (its service has a
	 * certificate): it answers the server's CertificateRequest, which dance_recv()
	 * reported with ENOMSG, with Certificate (dane_clientid when asked),
	 * CertificateVerify and Finished, sent on the connection through kTLS.
	 */
	DANCE_EA_PHA_ANSWER = 7,
};

/* dance_ea.flags */
#define DANCE_EA_DANE \
	(1u << 0) /* REQUEST: ask for dane_clientid (the peer proves a DNS
				   name by DANE); the default is what the service's dane and
				   verify settings ask for in a handshake */
#define DANCE_EA_NO_DANE (1u << 1) /* REQUEST: never ask for dane_clientid */
#define DANCE_EA_REFUSE (1u << 2) /* AUTHENTICATE: the empty authenticator (a refusal) */

#define DANCE_EA_DATA_MAX 16384 /* request and authenticator together */

struct dance_ea {
	struct dance_hdr hdr;
	uint32_t op; /* enum dance_ea_op */
	uint32_t flags; /* DANCE_EA_* */
	uint64_t id; /* chosen by the server, echoed in the result */
	char server_name[DANCE_HOST_MAX]; /* REQUEST by a TLS client: server_name, or "" */
	uint32_t request_len; /* AUTHENTICATE, VALIDATE: the request, at data[0] */
	uint32_t auth_len; /* VALIDATE: the authenticator, at data[request_len] */
	uint8_t data[DANCE_EA_DATA_MAX];
};

#define DANCE_EA_HDR_LEN offsetof(struct dance_ea, data)

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

int dance_ea_request(struct dance *d, int fd, unsigned int flags, const char *server_name,
		     struct dance_result *res);
int dance_ea_authenticate(struct dance *d, int fd, const void *req, size_t req_len,
			  unsigned int flags, struct dance_result *res);
int dance_ea_validate(struct dance *d, int fd, const void *req, size_t req_len, const void *auth,
		      size_t auth_len, struct dance_result *res);
int dance_ea_forget(struct dance *d, int fd, struct dance_result *res);
int dance_pha_request(struct dance *d, int fd, unsigned int flags, struct dance_result *res);
int dance_pha_validate(struct dance *d, int fd, const void *req, size_t req_len,
		       struct dance_result *res);
int dance_pha_answer(struct dance *d, int fd, struct dance_result *res);
int dance_shutdown(int fd);
const char *dance_strerror(int status);

/* ---- the codec both ends use ---------------------------------------------------- */

int dance_request_check(const void *msg, size_t len, const char **why);
int dance_result_check(const void *msg, size_t len, const char **why);
int dance_ready_check(const void *msg, size_t len, const char **why);
int dance_ea_check(const void *msg, size_t len, const char **why);
void dance_hdr_init(struct dance_hdr *h, enum dance_msg_type type);

#endif
