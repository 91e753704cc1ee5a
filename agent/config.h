/* SPDX-License-Identifier: GPL-2.0 */
/*
 * config.h - danced.conf, parsed (config.c). A loaded struct config is immutable: a
 * reload (SIGHUP) loads a new one and swaps a pointer, and handshakes in flight keep
 * the one they started with.
 */
#ifndef DANCED_CONFIG_H
#define DANCED_CONFIG_H

#include <stdbool.h>
#include <stdio.h>
#include <sys/socket.h>
#include <sys/types.h>

#include "lib/dance.h"

#define CFG_MAX_IDS 32 /* allow_uid / allow_gid entries */
#define CFG_MAX_NAMES 32 /* server_names per service */
#define CFG_MAX_LISTEN 8 /* listen addresses per service */
#define CFG_MAX_SERVICES 64
#define CFG_MAX_ANCHORS 16 /* dns_trust_anchor lines */
#define CFG_MAX_STUBS 16 /* dns_stub zones */
#define CFG_MAX_DANE_NAMES 32 /* dane_names per service */
#define CFG_MAX_WARNINGS 8 /* kept per load; more are dropped */
#define CFG_WARNING_MAX 256

enum svc_role {
	ROLE_SERVER,
	ROLE_CLIENT,
};

enum verify_mode {
	VERIFY_NONE, /* server: no CertificateRequest; client: no server verification */
	VERIFY_OPTIONAL, /* server: ask, verify what comes, accept none */
	VERIFY_REQUIRED, /* a verified certificate or the handshake fails (PKIX, ca) */
	VERIFY_DANE, /* client: the server's TLSA at _port._tcp.host, DNSSEC-secure, or fail */
	VERIFY_DANE_OR_PKIX, /* client: TLSA when secure records exist; PKIX when the
				zone is insecure or has none; a DNS failure fails */
	VERIFY_AFTER, /* server: no CertificateRequest in the handshake; a certificate
			 proved after it (exported authenticator, post-handshake
			 authentication) is verified against ca */
};

/* DANE client authentication of a server service (draft-ietf-dance-client-auth). */
enum dane_mode {
	DANE_OFF,
	DANE_OPTIONAL, /* a client that sends dane_clientid is checked by DANE; one that
			  does not falls back to client_auth (X.509, or none) */
	DANE_REQUIRED, /* no dane_clientid, or any DANE failure: handshake_failure */
};

struct dns_stub {
	char zone[DANCE_HOST_MAX]; /* "example.com." */
	char addr[64]; /* as ub_ctx_set_stub() takes it, canonical, no brackets:
			  "192.0.2.1", "192.0.2.1@5353", "2001:db8::1@53" */
};

struct svc_config {
	char name[DANCE_NAME_MAX];
	enum svc_role role;
	char *certificate; /* PEM: certificate, then its chain; optional for clients */
	char *key; /* PEM private key */
	char *ca; /* PEM CA bundle that peers' chains must lead to */
	enum verify_mode verify; /* server: client_auth (default none); client: verify
				    (default required) */
	char *server_names[CFG_MAX_NAMES]; /* server: SNI names, exact or "*.suffix" */
	size_t n_server_names;
	bool is_default; /* server: answers when SNI matches no service */
	char alpn[DANCE_ALPN_MAX]; /* comma list; server: in preference order */
	int tls_min, tls_max; /* TLS1_2_VERSION or TLS1_3_VERSION */
	char *ciphersuites; /* TLS 1.3, OpenSSL syntax; NULL: every kTLS-capable suite */
	char *ciphers; /* TLS 1.2, OpenSSL syntax; NULL: every kTLS-capable cipher */
	char *groups; /* key exchange groups in preference order, OpenSSL syntax; NULL:
			 OpenSSL's default (3.5 puts X25519MLKEM768 first) */
	unsigned int handshake_timeout_ms;
	unsigned int max_handshakes; /* in flight for this service; resolved: never 0 */
	/* front-door mode: danced listens here and passes sockets to backend_socket */
	struct sockaddr_storage listen[CFG_MAX_LISTEN];
	socklen_t listen_len[CFG_MAX_LISTEN];
	size_t n_listen;
	char *backend_socket;
	unsigned int backlog;
	/* DANE */
	enum dane_mode dane; /* server only; default off */
	char *dane_names[CFG_MAX_DANE_NAMES]; /* allowed client names: a name is allowed when
						 it equals an entry or ends in "." + entry;
						 required when dane is not off */
	size_t n_dane_names;
	bool dane_tls12_legacy; /* server: also accept the old drafts' TLS 1.2 signal
				   (dane_clientid in ClientHello, name in clear); default no */
	bool request_client_auth; /* server: send a CertificateRequest to a client that sets
				     the request_client_auth TLS flag; default yes */
	char identity[DANCE_HOST_MAX]; /* client: the dane_clientid name to present, "" for
					  none; needs certificate and key */
	/* RFC 7250 certificate types (DANCE_CERT_X509, DANCE_CERT_RPK) in preference order;
	   none set: X.509 only, and the extensions are not sent or answered. Client
	   certificates: what a server takes, what a client can present; server
	   certificates: what a server can present, what a client takes. */
	uint8_t client_cert_types[2], server_cert_types[2];
	uint8_t n_client_cert_types, n_server_cert_types;
	bool kernel; /* serve the kernel's net/handshake requests of this role; default no */
};

struct config {
	char *path; /* the file it came from */
	char *socket_path; /* the handoff socket */
	unsigned int socket_mode;
	unsigned int workers; /* resolved: never 0 after config_load() */
	unsigned int max_handshakes; /* in flight, all workers together */
	unsigned int source_max_handshakes; /* in flight from one source address (IPv4
					       address, IPv6 /64); resolved: never 0 */
	unsigned int source_rate; /* new handshakes per second from one source; 0: any */
	unsigned int handshake_timeout_ms; /* default for services */
	uid_t allow_uid[CFG_MAX_IDS];
	size_t n_allow_uid;
	gid_t allow_gid[CFG_MAX_IDS];
	size_t n_allow_gid;
	char *user; /* drop privileges to this user after start-up; NULL: stay */
	uid_t user_uid; /* user, resolved at load; valid when user is set */
	gid_t user_gid; /* its primary group */
	int log_level; /* syslog level: LOG_ERR .. LOG_DEBUG */
	/* DNS, for DANE: libunbound validates DNSSEC itself from these anchors */
	char *dns_trust_anchor_file; /* default /usr/share/dns/root.key; NULL for "none" */
	char *dns_trust_anchors[CFG_MAX_ANCHORS]; /* "zone. DS ..." or "zone. DNSKEY ..." */
	size_t n_dns_trust_anchors;
	struct dns_stub dns_stubs[CFG_MAX_STUBS]; /* where to ask for a zone, recursively */
	size_t n_dns_stubs;
	char *dns_forwarder; /* "addr[@port]": send every query there; NULL: recurse */
	unsigned int dns_cache_size; /* TLSA answers kept (entries); default 10000 */
	unsigned int dns_min_ttl; /* seconds; default 0 */
	unsigned int dns_max_ttl; /* seconds; default 3600 */
	unsigned int dns_negative_ttl; /* seconds, for secure "no TLSA"; default 300 */
	uint16_t dane_clientid_codepoint; /* ExtensionType; IANA has not assigned one;
					     default 65282 (0xff02, private use; 0xff01
					     is renegotiation_info) */
	uint16_t tls_flags_codepoint; /* the tls_flags extension; default 62 */
	uint16_t request_client_auth_flag; /* its bit number; default 80 */
	unsigned int exported_authenticators; /* connections whose RFC 9261 exporter values
						 are kept (the most recent); 0: none; default
						 16384 */
	bool kernel_share_with_tlshd; /* serve the kernel's requests while tlshd runs too;
					 default no: refuse to start */
	bool bpf_policy; /* load and feed the kernel's name policy (bpf/); default yes */
	char *bpf_pin_path; /* where its maps and links are pinned; default /sys/fs/bpf/danced */
	struct svc_config svcs[CFG_MAX_SERVICES];
	size_t n_svcs;
	/* loads, but the operator should know ("FILE:LINE: ..."); log each after loading */
	char warnings[CFG_MAX_WARNINGS][CFG_WARNING_MAX];
	size_t n_warnings;
};

int config_load(const char *path, struct config **out, char *err, size_t errlen);
void config_free(struct config *cfg);
void config_print(const struct config *cfg, FILE *f);
const struct svc_config *config_service(const struct config *cfg, const char *name);

#endif
