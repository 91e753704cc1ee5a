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
#define CFG_MAX_WARNINGS 8 /* kept per load; more are dropped */
#define CFG_WARNING_MAX 256

enum svc_role {
	ROLE_SERVER,
	ROLE_CLIENT,
};

enum verify_mode {
	VERIFY_NONE, /* server: no CertificateRequest; client: no server verification */
	VERIFY_OPTIONAL, /* server: ask, verify what comes, accept none */
	VERIFY_REQUIRED, /* a verified certificate or the handshake fails */
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
	unsigned int handshake_timeout_ms;
	/* front-door mode: danced listens here and passes sockets to backend_socket */
	struct sockaddr_storage listen[CFG_MAX_LISTEN];
	socklen_t listen_len[CFG_MAX_LISTEN];
	size_t n_listen;
	char *backend_socket;
	unsigned int backlog;
};

struct config {
	char *path; /* the file it came from */
	char *socket_path; /* the handoff socket */
	unsigned int socket_mode;
	unsigned int workers; /* resolved: never 0 after config_load() */
	unsigned int max_handshakes; /* in flight, all workers together */
	unsigned int handshake_timeout_ms; /* default for services */
	uid_t allow_uid[CFG_MAX_IDS];
	size_t n_allow_uid;
	gid_t allow_gid[CFG_MAX_IDS];
	size_t n_allow_gid;
	char *user; /* drop privileges to this user after start-up; NULL: stay */
	uid_t user_uid; /* user, resolved at load; valid when user is set */
	gid_t user_gid; /* its primary group */
	int log_level; /* syslog level: LOG_ERR .. LOG_DEBUG */
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
