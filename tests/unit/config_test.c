// SPDX-License-Identifier: GPL-2.0
/*
 * config_test.c - host unit tests for agent/config.c.
 *
 * Every test writes danced.conf text into a temporary file and loads it: valid files
 * must give exactly the fields they say, with defaults filled in and print back into a
 * file that loads the same; invalid ones must fail with a sentence that names the
 * problem and its line. Hostile files (NULs, garbage, endless lines, devices) must fail
 * cleanly.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>
#include <unistd.h>
#include <sys/wait.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/stat.h>
#include <openssl/ssl.h>

#include "../harness.h"
#include "../../agent/config.h"

/* A valid server service, three lines; error cases put the mistake around it. */
#define WWW "[service www]\ncertificate = /etc/danced/www.pem\nkey = /etc/danced/www.key\n"
/* A valid client service for DANE, four lines. */
#define OUT "[service out]\nrole = client\ncertificate = /c\nkey = /k\n"

/* Trust anchors as keymgr(8) and ldns-key2ds(1) print them. */
#define DS_DIGEST "3E1D1FBBB6E1E7F2C25E7FCF6D06AFBB2E3A0C2E9A94A8C5C6BC8A48B1A5B0F1"
#define DS_KEYMGR "corp.example. DS 12345 13 2 " DS_DIGEST
#define DS_LDNS "Corp.Example.\t3600\tin\tds\t12345 13 2 " DS_DIGEST
#define DNSKEY_P256                                                                         \
	"corp.example. IN DNSKEY 257 3 13 mdsswUyr3DPW132mOi8V9xESWE8jTo0dxCjjnopKl+GqJxpV" \
	"XckHAeF+KkxLbxILfDLUT0rAK9iUzy1L53eKGQ=="

static void conf_write(struct __test_metadata *_metadata, char *path, const void *data, size_t len)
{
	int fd;

	strcpy(path, "/tmp/danced-conf-XXXXXX");
	fd = mkstemp(path);
	ASSERT_LE(0, fd);
	ASSERT_EQ((ssize_t)len, write(fd, data, len));
	close(fd);
}

/* Loads @len bytes of @data as a file; the file is gone afterwards. */
static int load_bytes(struct __test_metadata *_metadata, const void *data, size_t len,
		      struct config **cfg, char *err, size_t errlen)
{
	char path[64];
	int ret;

	conf_write(_metadata, path, data, len);
	ret = config_load(path, cfg, err, errlen);
	unlink(path);
	return ret;
}

static int load(struct __test_metadata *_metadata, const char *text, struct config **cfg, char *err,
		size_t errlen)
{
	return load_bytes(_metadata, text, strlen(text), cfg, err, errlen);
}

/* A file that must not load: its errno, the sentence, and the line it names (0: none). */
struct bad {
	const char *conf;
	int line;
	const char *says;
};

static void expect_rejected(struct __test_metadata *_metadata, const struct bad *cases, size_t n)
{
	char err[512], at[32];
	struct config *cfg;
	size_t i;
	int ret;

	for (i = 0; i < n; i++) {
		cfg = (struct config *)1;
		ret = load(_metadata, cases[i].conf, &cfg, err, sizeof(err));
		EXPECT_EQ(-EINVAL, ret) TH_LOG("case %zu: %s", i, cases[i].says);
		EXPECT_EQ(NULL, cfg);
		EXPECT_NE(NULL, strstr(err, cases[i].says))
		TH_LOG("case %zu: wanted \"%s\", got \"%s\"", i, cases[i].says, err);
		/* "/tmp/danced-conf-XXXXXX:LINE: " or, for no line, "/tmp/danced-conf-XXXXXX: " */
		if (cases[i].line)
			snprintf(at, sizeof(at), ":%d: ", cases[i].line);
		else
			snprintf(at, sizeof(at), ": ");
		EXPECT_EQ(0, strncmp(err + strlen("/tmp/danced-conf-XXXXXX"), at, strlen(at)))
		TH_LOG("case %zu: wanted \"%s\" in \"%s\"", i, at, err);
		if (cfg != (struct config *)1)
			config_free(cfg);
	}
}

static bool str_eq(const char *a, const char *b)
{
	return a == b || (a && b && !strcmp(a, b));
}

static void expect_same(struct __test_metadata *_metadata, const struct config *a,
			const struct config *b)
{
	size_t i, j;

	EXPECT_TRUE(str_eq(a->socket_path, b->socket_path));
	EXPECT_EQ(a->socket_mode, b->socket_mode);
	EXPECT_EQ(a->workers, b->workers);
	EXPECT_EQ(a->max_handshakes, b->max_handshakes);
	EXPECT_EQ(a->handshake_timeout_ms, b->handshake_timeout_ms);
	ASSERT_EQ(a->n_allow_uid, b->n_allow_uid);
	EXPECT_EQ(0, memcmp(a->allow_uid, b->allow_uid, a->n_allow_uid * sizeof(uid_t)));
	ASSERT_EQ(a->n_allow_gid, b->n_allow_gid);
	EXPECT_EQ(0, memcmp(a->allow_gid, b->allow_gid, a->n_allow_gid * sizeof(gid_t)));
	EXPECT_TRUE(str_eq(a->user, b->user));
	if (a->user) {
		EXPECT_EQ(a->user_uid, b->user_uid);
		EXPECT_EQ(a->user_gid, b->user_gid);
	}
	EXPECT_EQ(a->log_level, b->log_level);
	EXPECT_TRUE(str_eq(a->dns_trust_anchor_file, b->dns_trust_anchor_file));
	ASSERT_EQ(a->n_dns_trust_anchors, b->n_dns_trust_anchors);
	for (i = 0; i < a->n_dns_trust_anchors; i++)
		EXPECT_STREQ(a->dns_trust_anchors[i], b->dns_trust_anchors[i]);
	ASSERT_EQ(a->n_dns_stubs, b->n_dns_stubs);
	for (i = 0; i < a->n_dns_stubs; i++) {
		EXPECT_STREQ(a->dns_stubs[i].zone, b->dns_stubs[i].zone);
		EXPECT_STREQ(a->dns_stubs[i].addr, b->dns_stubs[i].addr);
	}
	EXPECT_TRUE(str_eq(a->dns_forwarder, b->dns_forwarder));
	EXPECT_EQ(a->dns_cache_size, b->dns_cache_size);
	EXPECT_EQ(a->dns_min_ttl, b->dns_min_ttl);
	EXPECT_EQ(a->dns_max_ttl, b->dns_max_ttl);
	EXPECT_EQ(a->dns_negative_ttl, b->dns_negative_ttl);
	EXPECT_EQ(a->dane_clientid_codepoint, b->dane_clientid_codepoint);
	EXPECT_EQ(a->tls_flags_codepoint, b->tls_flags_codepoint);
	EXPECT_EQ(a->request_client_auth_flag, b->request_client_auth_flag);
	ASSERT_EQ(a->n_svcs, b->n_svcs);
	for (i = 0; i < a->n_svcs; i++) {
		const struct svc_config *s = &a->svcs[i], *t = &b->svcs[i];

		EXPECT_STREQ(s->name, t->name);
		EXPECT_EQ(s->role, t->role);
		EXPECT_TRUE(str_eq(s->certificate, t->certificate));
		EXPECT_TRUE(str_eq(s->key, t->key));
		EXPECT_TRUE(str_eq(s->ca, t->ca));
		EXPECT_EQ(s->verify, t->verify);
		ASSERT_EQ(s->n_server_names, t->n_server_names);
		for (j = 0; j < s->n_server_names; j++)
			EXPECT_STREQ(s->server_names[j], t->server_names[j]);
		EXPECT_EQ(s->is_default, t->is_default);
		EXPECT_STREQ(s->alpn, t->alpn);
		EXPECT_EQ(s->tls_min, t->tls_min);
		EXPECT_EQ(s->tls_max, t->tls_max);
		EXPECT_TRUE(str_eq(s->ciphersuites, t->ciphersuites));
		EXPECT_TRUE(str_eq(s->ciphers, t->ciphers));
		EXPECT_EQ(s->handshake_timeout_ms, t->handshake_timeout_ms);
		ASSERT_EQ(s->n_listen, t->n_listen);
		for (j = 0; j < s->n_listen; j++) {
			EXPECT_EQ(s->listen_len[j], t->listen_len[j]);
			EXPECT_EQ(0, memcmp(&s->listen[j], &t->listen[j], s->listen_len[j]));
		}
		EXPECT_TRUE(str_eq(s->backend_socket, t->backend_socket));
		EXPECT_EQ(s->backlog, t->backlog);
		EXPECT_EQ(s->dane, t->dane);
		ASSERT_EQ(s->n_dane_names, t->n_dane_names);
		for (j = 0; j < s->n_dane_names; j++)
			EXPECT_STREQ(s->dane_names[j], t->dane_names[j]);
		EXPECT_EQ(s->dane_tls12_legacy, t->dane_tls12_legacy);
		EXPECT_EQ(s->request_client_auth, t->request_client_auth);
		EXPECT_STREQ(s->identity, t->identity);
	}
}

/* config_print() into a file, then config_load() of that file. */
static struct config *reload(struct __test_metadata *_metadata, const struct config *cfg,
			     char *printed, size_t printed_len)
{
	struct config *again = NULL;
	char path[64], err[512];
	FILE *f;
	int fd;

	strcpy(path, "/tmp/danced-conf-XXXXXX");
	fd = mkstemp(path);
	ASSERT_LE(0, fd);
	f = fdopen(fd, "w+");
	ASSERT_NE(NULL, f);
	config_print(cfg, f);
	fflush(f);
	if (printed) {
		rewind(f);
		printed[fread(printed, 1, printed_len - 1, f)] = '\0';
	}
	fclose(f);
	EXPECT_EQ(0, config_load(path, &again, err, sizeof(err))) TH_LOG("%s", err);
	unlink(path);
	return again;
}

static const char full_conf[] =
	"# every key danced.conf has\n"
	"[danced]\n"
	"socket = /run/test/danced.sock\n"
	"socket_mode = 0640\n"
	"workers = 3\n"
	"max_handshakes = 100\n"
	"handshake_timeout = 2s\n"
	"allow_uid = 0 daemon, 1000\n"
	"allow_uid = 2000\n"
	"allow_gid = root 50\n"
	"user = daemon\n"
	"log_level = debug\n"
	"dns_trust_anchor_file = /etc/danced/root.key\n"
	"dns_trust_anchor = " DS_LDNS "\n"
	"dns_trust_anchor = " DNSKEY_P256 "\n"
	"dns_stub = Corp.Example. 192.0.2.53@5353\n"
	"dns_stub = v6.example.\t[2001:DB8::0035]@53\n"
	"dns_forwarder = 2001:db8::1\n"
	"dns_cache_size = 500\n"
	"dns_min_ttl = 30s\n"
	"dns_max_ttl = 2h\n"
	"dns_negative_ttl = 90\n"
	"dane_clientid_codepoint = 65400\n"
	"tls_flags_codepoint = 63\n"
	"request_client_auth_flag = 81\n"
	"\n"
	"[service www]\n"
	"role = server\n"
	"certificate = /etc/danced/www.pem\n"
	"key = /etc/danced/www.key\n"
	"ca = /etc/danced/clients.pem\n"
	"client_auth = optional\n"
	"server_names = WWW.example.com *.example.net\n"
	"server_names = www.example.com example.org\n"
	"default = yes\n"
	"alpn = h2, http/1.1\n"
	"tls_min = 1.3\n"
	"tls_max = 1.3\n"
	"ciphersuites = TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256\n"
	"ciphers = ECDHE+AESGCM\n"
	"handshake_timeout = 500ms\n"
	"listen = 0.0.0.0:8443 [::1]:8443\n"
	"listen = 127.0.0.2:9443\n"
	"backend_socket = /run/danced/www.sock\n"
	"backlog = 128\n"
	"dane = optional\n"
	"dane_names = _device.Example.COM. device.example.net\n"
	"dane_names = _device.example.com\n"
	"\n"
	"[service api]\n"
	"certificate = /etc/danced/api.pem\n"
	"key = /etc/danced/api.key\n"
	"server_names = api.example.com\n"
	"dane = required\n"
	"dane_names = _smtp-client.example.org\n"
	"dane_tls12_legacy = yes\n"
	"request_client_auth = no\n"
	"\n"
	"[service out]\n"
	"role = client\n"
	"certificate = /etc/danced/client.pem\n"
	"key = /etc/danced/client.key\n"
	"ca = /etc/ssl/certs/ca-certificates.crt\n"
	"verify = required\n"
	"alpn = h2\n"
	"tls_min = 1.2\n"
	"tls_max = 1.3\n"
	"handshake_timeout = 1m\n"
	"identity = Sensor7._device.example.com.\n"
	"\n"
	"[service dns-out]\n"
	"role = client\n"
	"verify = dane\n";

static void expect_addr(struct __test_metadata *_metadata, const struct svc_config *svc, size_t i,
			int family, const char *host, int port)
{
	const struct sockaddr_in6 *sin6 = (const void *)&svc->listen[i];
	const struct sockaddr_in *sin = (const void *)&svc->listen[i];
	char buf[INET6_ADDRSTRLEN];

	ASSERT_LT(i, svc->n_listen);
	ASSERT_EQ(family, svc->listen[i].ss_family);
	if (family == AF_INET6) {
		EXPECT_EQ(sizeof(*sin6), (size_t)svc->listen_len[i]);
		EXPECT_EQ(port, ntohs(sin6->sin6_port));
		inet_ntop(AF_INET6, &sin6->sin6_addr, buf, sizeof(buf));
	} else {
		EXPECT_EQ(sizeof(*sin), (size_t)svc->listen_len[i]);
		EXPECT_EQ(port, ntohs(sin->sin_port));
		inet_ntop(AF_INET, &sin->sin_addr, buf, sizeof(buf));
	}
	EXPECT_STREQ(host, buf);
}

TEST(loads_every_key_of_a_full_config)
{
	const struct svc_config *www, *api, *out;
	struct config *cfg = NULL;
	char err[512];

	ASSERT_EQ(0, load(_metadata, full_conf, &cfg, err, sizeof(err))) TH_LOG("%s", err);
	EXPECT_STREQ("", err);
	EXPECT_STREQ("/run/test/danced.sock", cfg->socket_path);
	EXPECT_EQ(0640u, cfg->socket_mode);
	EXPECT_EQ(3u, cfg->workers);
	EXPECT_EQ(100u, cfg->max_handshakes);
	EXPECT_EQ(2000u, cfg->handshake_timeout_ms);
	ASSERT_EQ(4u, cfg->n_allow_uid);
	EXPECT_EQ(0u, cfg->allow_uid[0]);
	EXPECT_EQ(1u, cfg->allow_uid[1]); /* daemon, resolved */
	EXPECT_EQ(1000u, cfg->allow_uid[2]);
	EXPECT_EQ(2000u, cfg->allow_uid[3]);
	ASSERT_EQ(2u, cfg->n_allow_gid);
	EXPECT_EQ(0u, cfg->allow_gid[0]);
	EXPECT_EQ(50u, cfg->allow_gid[1]);
	EXPECT_STREQ("daemon", cfg->user);
	EXPECT_EQ(1u, cfg->user_uid);
	EXPECT_EQ(1u, cfg->user_gid);
	EXPECT_EQ(LOG_DEBUG, cfg->log_level);
	EXPECT_STREQ("/etc/danced/root.key", cfg->dns_trust_anchor_file);
	/* Owner in lower case, type in upper case, one space between fields. */
	ASSERT_EQ(2u, cfg->n_dns_trust_anchors);
	EXPECT_STREQ("corp.example. 3600 IN DS 12345 13 2 " DS_DIGEST, cfg->dns_trust_anchors[0]);
	EXPECT_STREQ(DNSKEY_P256, cfg->dns_trust_anchors[1]);
	/* Zones in lower case; addresses in libunbound's form, without brackets. */
	ASSERT_EQ(2u, cfg->n_dns_stubs);
	EXPECT_STREQ("corp.example.", cfg->dns_stubs[0].zone);
	EXPECT_STREQ("192.0.2.53@5353", cfg->dns_stubs[0].addr);
	EXPECT_STREQ("v6.example.", cfg->dns_stubs[1].zone);
	EXPECT_STREQ("2001:db8::35@53", cfg->dns_stubs[1].addr);
	EXPECT_STREQ("2001:db8::1", cfg->dns_forwarder);
	EXPECT_EQ(500u, cfg->dns_cache_size);
	EXPECT_EQ(30u, cfg->dns_min_ttl);
	EXPECT_EQ(7200u, cfg->dns_max_ttl);
	EXPECT_EQ(90u, cfg->dns_negative_ttl);
	EXPECT_EQ(65400, cfg->dane_clientid_codepoint);
	EXPECT_EQ(63, cfg->tls_flags_codepoint);
	EXPECT_EQ(81, cfg->request_client_auth_flag);
	EXPECT_EQ(0u, cfg->n_warnings);
	ASSERT_EQ(4u, cfg->n_svcs);

	www = config_service(cfg, "www");
	ASSERT_NE(NULL, www);
	EXPECT_STREQ("www", www->name);
	EXPECT_EQ(ROLE_SERVER, (int)www->role);
	EXPECT_STREQ("/etc/danced/www.pem", www->certificate);
	EXPECT_STREQ("/etc/danced/www.key", www->key);
	EXPECT_STREQ("/etc/danced/clients.pem", www->ca);
	EXPECT_EQ(VERIFY_OPTIONAL, (int)www->verify);
	/* Lower case, and the repeated www.example.com only once. */
	ASSERT_EQ(3u, www->n_server_names);
	EXPECT_STREQ("www.example.com", www->server_names[0]);
	EXPECT_STREQ("*.example.net", www->server_names[1]);
	EXPECT_STREQ("example.org", www->server_names[2]);
	EXPECT_TRUE(www->is_default);
	EXPECT_STREQ("h2,http/1.1", www->alpn);
	EXPECT_EQ(TLS1_3_VERSION, www->tls_min);
	EXPECT_EQ(TLS1_3_VERSION, www->tls_max);
	EXPECT_STREQ("TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256", www->ciphersuites);
	EXPECT_STREQ("ECDHE+AESGCM", www->ciphers);
	EXPECT_EQ(500u, www->handshake_timeout_ms);
	ASSERT_EQ(3u, www->n_listen);
	expect_addr(_metadata, www, 0, AF_INET, "0.0.0.0", 8443);
	expect_addr(_metadata, www, 1, AF_INET6, "::1", 8443);
	expect_addr(_metadata, www, 2, AF_INET, "127.0.0.2", 9443);
	EXPECT_STREQ("/run/danced/www.sock", www->backend_socket);
	EXPECT_EQ(128u, www->backlog);
	EXPECT_EQ(DANE_OPTIONAL, (int)www->dane);
	/* Lower case, no trailing dot, the repeated _device.example.com only once. */
	ASSERT_EQ(2u, www->n_dane_names);
	EXPECT_STREQ("_device.example.com", www->dane_names[0]);
	EXPECT_STREQ("device.example.net", www->dane_names[1]);
	EXPECT_FALSE(www->dane_tls12_legacy);
	EXPECT_TRUE(www->request_client_auth);
	EXPECT_STREQ("", www->identity);

	api = config_service(cfg, "api");
	ASSERT_NE(NULL, api);
	EXPECT_EQ(ROLE_SERVER, (int)api->role);
	EXPECT_EQ(VERIFY_NONE, (int)api->verify);
	EXPECT_FALSE(api->is_default); /* www is */
	EXPECT_EQ(2000u, api->handshake_timeout_ms); /* [danced]'s */
	EXPECT_EQ(0u, api->n_listen);
	EXPECT_EQ(NULL, api->backend_socket);
	EXPECT_EQ(DANE_REQUIRED, (int)api->dane);
	ASSERT_EQ(1u, api->n_dane_names);
	EXPECT_STREQ("_smtp-client.example.org", api->dane_names[0]);
	EXPECT_TRUE(api->dane_tls12_legacy);
	EXPECT_FALSE(api->request_client_auth);

	out = config_service(cfg, "out");
	ASSERT_NE(NULL, out);
	EXPECT_EQ(ROLE_CLIENT, (int)out->role);
	EXPECT_STREQ("/etc/danced/client.pem", out->certificate);
	EXPECT_STREQ("/etc/danced/client.key", out->key);
	EXPECT_STREQ("/etc/ssl/certs/ca-certificates.crt", out->ca);
	EXPECT_EQ(VERIFY_REQUIRED, (int)out->verify);
	EXPECT_EQ(0u, out->n_server_names);
	EXPECT_FALSE(out->is_default);
	EXPECT_STREQ("h2", out->alpn);
	EXPECT_EQ(TLS1_2_VERSION, out->tls_min);
	EXPECT_EQ(TLS1_3_VERSION, out->tls_max);
	EXPECT_EQ(60000u, out->handshake_timeout_ms);
	EXPECT_STREQ("sensor7._device.example.com", out->identity);
	EXPECT_EQ(DANE_OFF, (int)out->dane);

	/* verify = dane needs no ca: the TLSA records are the trust anchors. */
	out = config_service(cfg, "dns-out");
	ASSERT_NE(NULL, out);
	EXPECT_EQ(VERIFY_DANE, (int)out->verify);
	EXPECT_EQ(NULL, out->ca);
	EXPECT_STREQ("", out->identity);
	config_free(cfg);
}

TEST(fills_defaults_for_a_minimal_config)
{
	const struct svc_config *www;
	struct config *cfg = NULL;
	char err[512];

	ASSERT_EQ(0, load(_metadata, WWW, &cfg, err, sizeof(err))) TH_LOG("%s", err);
	EXPECT_NE(NULL, strstr(cfg->path, "/tmp/danced-conf-"));
	EXPECT_STREQ("/run/danced/danced.sock", cfg->socket_path);
	EXPECT_EQ(0660u, cfg->socket_mode);
	EXPECT_LT(0u, cfg->workers);
	EXPECT_EQ(4096u, cfg->max_handshakes);
	EXPECT_EQ(10000u, cfg->handshake_timeout_ms);
	ASSERT_EQ(1u, cfg->n_allow_uid); /* root only */
	EXPECT_EQ(0u, cfg->allow_uid[0]);
	EXPECT_EQ(0u, cfg->n_allow_gid);
	EXPECT_EQ(NULL, cfg->user);
	EXPECT_EQ(LOG_INFO, cfg->log_level);
	ASSERT_EQ(1u, cfg->n_svcs);
	www = &cfg->svcs[0];
	EXPECT_STREQ("www", www->name);
	EXPECT_EQ(ROLE_SERVER, (int)www->role);
	EXPECT_EQ(NULL, www->ca);
	EXPECT_EQ(VERIFY_NONE, (int)www->verify);
	EXPECT_EQ(0u, www->n_server_names);
	EXPECT_TRUE(www->is_default); /* the only server service */
	EXPECT_STREQ("", www->alpn);
	EXPECT_EQ(TLS1_2_VERSION, www->tls_min);
	EXPECT_EQ(TLS1_3_VERSION, www->tls_max);
	EXPECT_EQ(NULL, www->ciphersuites);
	EXPECT_EQ(NULL, www->ciphers);
	EXPECT_EQ(10000u, www->handshake_timeout_ms);
	EXPECT_EQ(0u, www->n_listen);
	EXPECT_EQ(NULL, www->backend_socket);
	EXPECT_EQ(1024u, www->backlog);
	EXPECT_EQ(DANE_OFF, (int)www->dane);
	EXPECT_EQ(0u, www->n_dane_names);
	EXPECT_FALSE(www->dane_tls12_legacy);
	EXPECT_TRUE(www->request_client_auth);
	EXPECT_STREQ("", www->identity);
	/* DNS: the root anchor of dns-root-data, and the documented limits. */
	EXPECT_STREQ("/usr/share/dns/root.key", cfg->dns_trust_anchor_file);
	EXPECT_EQ(0u, cfg->n_dns_trust_anchors);
	EXPECT_EQ(0u, cfg->n_dns_stubs);
	EXPECT_EQ(NULL, cfg->dns_forwarder);
	EXPECT_EQ(10000u, cfg->dns_cache_size);
	EXPECT_EQ(0u, cfg->dns_min_ttl);
	EXPECT_EQ(3600u, cfg->dns_max_ttl);
	EXPECT_EQ(300u, cfg->dns_negative_ttl);
	EXPECT_EQ(65282, cfg->dane_clientid_codepoint); /* 0xff02: 0xff01 is taken */
	EXPECT_EQ(62, cfg->tls_flags_codepoint);
	EXPECT_EQ(80, cfg->request_client_auth_flag);
	EXPECT_EQ(0u, cfg->n_warnings);
	config_free(cfg);
}

TEST(client_defaults_to_verifying_the_server)
{
	struct config *cfg = NULL;
	char err[512];

	ASSERT_EQ(0, load(_metadata, "[service out]\nrole = client\nca = /etc/ca.pem\n", &cfg, err,
			  sizeof(err)))
	TH_LOG("%s", err);
	EXPECT_EQ(VERIFY_REQUIRED, (int)cfg->svcs[0].verify);
	EXPECT_EQ(NULL, cfg->svcs[0].certificate);
	EXPECT_FALSE(cfg->svcs[0].is_default);
	config_free(cfg);
}

TEST(workers_auto_is_one_per_online_cpu)
{
	long cpus = sysconf(_SC_NPROCESSORS_ONLN);
	struct config *cfg = NULL;
	char err[512];

	ASSERT_LT(0, cpus);
	ASSERT_EQ(0, load(_metadata, "[danced]\nworkers = auto\n" WWW, &cfg, err, sizeof(err)))
	TH_LOG("%s", err);
	EXPECT_EQ((unsigned int)cpus, cfg->workers);
	config_free(cfg);
	/* Unset is auto too. */
	ASSERT_EQ(0, load(_metadata, WWW, &cfg, err, sizeof(err)));
	EXPECT_EQ((unsigned int)cpus, cfg->workers);
	config_free(cfg);
}

TEST(parses_durations)
{
	static const struct {
		const char *text;
		unsigned int ms;
	} cases[] = {
		{ "500ms", 500 },   { "1ms", 1 },	{ "10s", 10000 },
		{ "2m", 120000 },   { "7", 7000 },	{ "10m", 600000 },
		{ "600s", 600000 }, { "0010s", 10000 }, { "600000ms", 600000 },
	};
	struct config *cfg = NULL;
	char conf[256], err[512];
	size_t i;

	for (i = 0; i < ARRAY_SIZE(cases); i++) {
		snprintf(conf, sizeof(conf), "[danced]\nhandshake_timeout = %s\n" WWW,
			 cases[i].text);
		ASSERT_EQ(0, load(_metadata, conf, &cfg, err, sizeof(err))) TH_LOG("%s", err);
		EXPECT_EQ(cases[i].ms, cfg->handshake_timeout_ms) TH_LOG("%s", cases[i].text);
		EXPECT_EQ(cases[i].ms, cfg->svcs[0].handshake_timeout_ms);
		config_free(cfg);
	}
}

TEST(rejects_bad_durations)
{
	static const struct {
		const char *text, *says;
	} cases[] = {
		{ "10 parsecs", "'10 parsecs' is not a duration (use 500ms, 10s or 2m)" },
		{ "1.5s", "is not a duration" },
		{ "-1s", "is not a duration" },
		{ "s", "is not a duration" },
		{ "ms10", "is not a duration" },
		{ "10 s", "is not a duration" },
		{ "10S", "is not a duration" },
		{ "1d", "'1d' is not a duration (use 500ms, 10s or 2m)" },
		{ "1h", "'1h' is out of range (allowed: 1ms..10m)" },
		{ "0", "'0' is out of range (allowed: 1ms..10m)" },
		{ "0ms", "out of range" },
		{ "11m", "out of range" },
		{ "601s", "out of range" },
		{ "600001ms", "out of range" },
		{ "99999999999999999999999s", "out of range" },
		{ "4294967296ms", "out of range" },
	};
	struct bad bad[ARRAY_SIZE(cases) * 2];
	char confs[ARRAY_SIZE(cases) * 2][256];
	size_t i;

	for (i = 0; i < ARRAY_SIZE(cases); i++) {
		snprintf(confs[2 * i], sizeof(confs[0]), "[danced]\nhandshake_timeout = %s\n" WWW,
			 cases[i].text);
		bad[2 * i] = (struct bad){ confs[2 * i], 2, cases[i].says };
		snprintf(confs[2 * i + 1], sizeof(confs[0]), WWW "handshake_timeout = %s\n",
			 cases[i].text);
		bad[2 * i + 1] = (struct bad){ confs[2 * i + 1], 4, cases[i].says };
	}
	expect_rejected(_metadata, bad, ARRAY_SIZE(bad));
}

TEST(print_output_loads_back_to_the_same_config)
{
	static const char *const confs[] = {
		full_conf,
		WWW,
		"[service out]\nrole = client\nverify = none\n",
		"[service a]\ncertificate = /a\nkey = /k\ndefault = no\n"
		"[service b]\ncertificate = /b\nkey = /k\nserver_names = b.example\n",
		/* "none" is a value, not a missing key (which would mean the root's anchor). */
		"[danced]\ndns_trust_anchor_file = none\ndns_trust_anchor = " DS_LDNS "\n"
		"dns_stub = corp.example. [::1]@5353\n" WWW
		"tls_min = 1.3\ndane = required\ndane_names = corp.example\n"
		"request_client_auth = off\n" OUT "identity = a.corp.example\nverify = dane\n",
		"[danced]\ndns_max_ttl = 0\ndns_negative_ttl = 0\n" WWW,
	};
	struct config *cfg = NULL, *again;
	char printed[16384], err[512];
	size_t i;

	for (i = 0; i < ARRAY_SIZE(confs); i++) {
		ASSERT_EQ(0, load(_metadata, confs[i], &cfg, err, sizeof(err))) TH_LOG("%s", err);
		again = reload(_metadata, cfg, printed, sizeof(printed));
		ASSERT_NE(NULL, again) TH_LOG("printed:\n%s", printed);
		EXPECT_EQ(0, strncmp(printed, "# effective configuration of /tmp/danced-conf-",
				     strlen("# effective configuration of /tmp/danced-conf-")));
		expect_same(_metadata, cfg, again);
		config_free(again);
		config_free(cfg);
	}
}

/* Pins must be on bpffs; anything else would fail only at start, with a vaguer error. */
TEST(bpf_pin_path_must_be_under_sys_fs_bpf)
{
	static const char *const bad[] = { "/tmp/danced", "/sys/fs/bpf/", "/sys/fs/bpfx/d",
					   "/sys/fs/bpf/../../tmp/x", "danced" };
	struct config *cfg = NULL;
	char conf[256], err[512];
	size_t i;

	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		snprintf(conf, sizeof(conf), "[danced]\nbpf_pin_path = %s\n" WWW, bad[i]);
		EXPECT_NE(0, load(_metadata, conf, &cfg, err, sizeof(err))) TH_LOG("%s", bad[i]);
		EXPECT_NE(NULL, strstr(err, "bpf_pin_path")) TH_LOG("%s", err);
	}
	ASSERT_EQ(0,
		  load(_metadata, "[danced]\nbpf_pin_path = /sys/fs/bpf/d2\nbpf_policy = no\n" WWW,
		       &cfg, err, sizeof(err)))
	TH_LOG("%s", err);
	EXPECT_STREQ("/sys/fs/bpf/d2", cfg->bpf_pin_path);
	EXPECT_FALSE(cfg->bpf_policy);
	config_free(cfg);
}

TEST(print_writes_every_key_with_its_resolved_value)
{
	struct config *cfg = NULL, *again;
	char printed[16384], err[512];

	ASSERT_EQ(0, load(_metadata, "[danced]\nallow_uid = root\n" WWW, &cfg, err, sizeof(err)));
	again = reload(_metadata, cfg, printed, sizeof(printed));
	ASSERT_NE(NULL, again);
	EXPECT_NE(NULL, strstr(printed, "\n[danced]\nsocket = /run/danced/danced.sock\n"
					"socket_mode = 0660\nworkers = "))
	TH_LOG("%s", printed);
	EXPECT_NE(NULL, strstr(printed, "\nmax_handshakes = 4096\nsource_max_handshakes = 512\n"
					"source_rate = 0\nhandshake_timeout = 10s\n"
					"allow_uid = 0\n# allow_gid is not set"));
	EXPECT_NE(NULL, strstr(printed, "\n# user is not set"));
	EXPECT_NE(NULL, strstr(printed, "\nlog_level = info\n"));
	EXPECT_NE(NULL, strstr(printed, "\n[service www]\nrole = server\n"
					"certificate = /etc/danced/www.pem\n"
					"key = /etc/danced/www.key\n# ca is not set"));
	EXPECT_NE(NULL, strstr(printed, "\nclient_auth = none\n"));
	EXPECT_NE(NULL, strstr(printed, "\ndefault = yes\n"));
	EXPECT_NE(NULL, strstr(printed, "\ntls_min = 1.2\ntls_max = 1.3\n# ciphersuites is not"));
	EXPECT_NE(NULL, strstr(printed, "\nhandshake_timeout = 10s\nmax_handshakes = 4096\n"
					"# listen is not set"));
	EXPECT_NE(NULL, strstr(printed, "\nbacklog = 1024\n"));
	EXPECT_EQ(NULL, strstr(printed, "verify ="));
	EXPECT_NE(NULL,
		  strstr(printed, "\nlog_level = info\n"
				  "dns_trust_anchor_file = /usr/share/dns/root.key\n"
				  "# dns_trust_anchor is not set: only dns_trust_anchor_file"
				  " anchors DNSSEC validation\n"
				  "# dns_stub is not set: no zone has a server of its own\n"
				  "# dns_forwarder is not set: danced resolves from the root down\n"
				  "dns_cache_size = 10000\n"
				  "dns_min_ttl = 0s\n"
				  "dns_max_ttl = 1h\n"
				  "dns_negative_ttl = 5m\n"
				  "dane_clientid_codepoint = 65282\n"
				  "tls_flags_codepoint = 62\n"
				  "request_client_auth_flag = 80\n"
				  "bpf_policy = yes\n"
				  "bpf_pin_path = /sys/fs/bpf/danced\n"
				  "exported_authenticators = 16384\n"
				  "kernel_share_with_tlshd = no\n\n[service www]\n"));
	EXPECT_NE(NULL, strstr(printed, "\nbacklog = 1024\n"
					"dane = off\n"
					"# dane_names is not set: no client name is allowed DANE"
					" authentication\n"
					"dane_tls12_legacy = no\n"
					"request_client_auth = yes\n"));
	EXPECT_EQ(NULL, strstr(printed, "identity"));
	config_free(again);
	config_free(cfg);

	/* A client: identity, not the server's DANE keys. */
	ASSERT_EQ(0, load(_metadata, "[service out]\nrole = client\nverify = dane\n", &cfg, err,
			  sizeof(err)));
	again = reload(_metadata, cfg, printed, sizeof(printed));
	ASSERT_NE(NULL, again);
	EXPECT_NE(NULL, strstr(printed, "\nverify = dane\n")) TH_LOG("%s", printed);
	EXPECT_NE(NULL, strstr(printed, "\n# identity is not set: no dane_clientid is sent\n"));
	EXPECT_EQ(NULL, strstr(printed, "dane ="));
	EXPECT_EQ(NULL, strstr(printed, "dane_names"));
	EXPECT_EQ(NULL, strstr(printed, "request_client_auth ="));
	config_free(again);
	config_free(cfg);
}

#define LABEL63 "abcdefghijklmnopqrstuvwxyz-0123456789_abcdefghijklmnopqrstuvwxy"

/* Full lists print over several lines, each within the line limit, and load back. */
TEST(print_wraps_long_lists_into_lines_that_load)
{
	char conf[32768], printed[65536], err[512], *line;
	struct config *cfg = NULL, *again;
	size_t n = 0, i, len;

	n += snprintf(conf + n, sizeof(conf) - n, "[danced]\n");
	for (i = 0; i < CFG_MAX_IDS; i++)
		n += snprintf(conf + n, sizeof(conf) - n, "allow_uid = %zu\nallow_gid = %zu\n",
			      4000000000u + i, 4000000000u + i);
	/* Every DNS key at its largest; each line 197 bytes where the value has room. */
	n += snprintf(conf + n, sizeof(conf) - n,
		      "dns_trust_anchor_file = /" LABEL63 "/" LABEL63 "/%.44s\n"
		      "dns_forwarder = [ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255]@65535\n"
		      "dns_cache_size = 10000000\ndns_min_ttl = 24h\ndns_max_ttl = 86400s\n"
		      "dns_negative_ttl = 1440m\ndane_clientid_codepoint = 65535\n"
		      "tls_flags_codepoint = 65534\nrequest_client_auth_flag = 2039\n",
		      LABEL63);
	for (i = 0; i < CFG_MAX_ANCHORS; i++) /* 19 + 75 + 30 + 73 */
		n += snprintf(conf + n, sizeof(conf) - n,
			      "dns_trust_anchor = " LABEL63
			      ".%02zu.example. 2147483647 IN DS 65535 "
			      "253 4 " DS_DIGEST "012345678\n",
			      i);
	for (i = 0; i < CFG_MAX_STUBS; i++)
		n += snprintf(conf + n, sizeof(conf) - n,
			      "dns_stub = %02zu." LABEL63 "." LABEL63 ". "
			      "[ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.%zu]@65535\n",
			      i, 200 + i);
	n += snprintf(conf + n, sizeof(conf) - n, WWW);
	for (i = 0; i < CFG_MAX_NAMES; i++)
		n += snprintf(conf + n, sizeof(conf) - n,
			      "server_names = host-%02zu.a-rather-long-domain-name.example\n", i);
	for (i = 0; i < CFG_MAX_LISTEN; i++)
		n += snprintf(conf + n, sizeof(conf) - n,
			      "listen = [2001:db8:1234:5678:9abc:def0:1234:%zu]:65535\n", i);
	n += snprintf(conf + n, sizeof(conf) - n, "backend_socket = /run/b.sock\n");
	/* Every DANE key at its largest, in names of 63-octet labels. */
	n += snprintf(conf + n, sizeof(conf) - n, "tls_min = 1.3\ndane = required\n");
	for (i = 0; i < CFG_MAX_DANE_NAMES; i++) /* 13 + 184 */
		n += snprintf(conf + n, sizeof(conf) - n,
			      "dane_names = _device.%02zu." LABEL63 "." LABEL63 ".%.45s\n", i,
			      LABEL63);
	n += snprintf(conf + n, sizeof(conf) - n, /* 11 + 186 */
		      "[service out]\nrole = client\ncertificate = /c\nkey = /k\nverify = dane\n"
		      "identity = " LABEL63 "." LABEL63 ".%.58s\n",
		      LABEL63);
	ASSERT_GT(sizeof(conf), n);
	ASSERT_EQ(0, load(_metadata, conf, &cfg, err, sizeof(err))) TH_LOG("%s", err);
	EXPECT_EQ((size_t)CFG_MAX_IDS, cfg->n_allow_uid);
	EXPECT_EQ((size_t)CFG_MAX_NAMES, cfg->svcs[0].n_server_names);
	EXPECT_EQ((size_t)CFG_MAX_LISTEN, cfg->svcs[0].n_listen);
	EXPECT_EQ((size_t)CFG_MAX_DANE_NAMES, cfg->svcs[0].n_dane_names);
	EXPECT_EQ((size_t)CFG_MAX_ANCHORS, cfg->n_dns_trust_anchors);
	EXPECT_EQ((size_t)CFG_MAX_STUBS, cfg->n_dns_stubs);
	EXPECT_STREQ("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff@65535", cfg->dns_forwarder);
	EXPECT_EQ(86400u, cfg->dns_min_ttl);
	EXPECT_EQ(186u, strlen(cfg->svcs[1].identity));
	EXPECT_EQ(173u, strlen(cfg->dns_trust_anchor_file));
	EXPECT_EQ(0u, cfg->n_warnings);
	again = reload(_metadata, cfg, printed, sizeof(printed));
	ASSERT_NE(NULL, again);
	expect_same(_metadata, cfg, again);
	for (line = printed; *line; line += len + 1) {
		len = strcspn(line, "\n");
		EXPECT_GE(197u, len) TH_LOG("%.*s", (int)len, line);
		if (!line[len])
			break;
	}
	config_free(again);
	config_free(cfg);
}

TEST(rejects_unknown_sections_and_keys)
{
	static const struct bad cases[] = {
		{ "[service www]\nsertificate = /x\n", 2,
		  "unknown key 'sertificate' in [service www] (did you mean 'certificate'?)" },
		{ "[danced]\nwrokers = 2\n" WWW, 2,
		  "unknown key 'wrokers' in [danced] (did you mean 'workers'?)" },
		{ "[danced]\nfrobnicate = 2\n" WWW, 2, "unknown key 'frobnicate' in [danced]" },
		{ WWW "Role = server\n", 4,
		  "unknown key 'Role' in [service www] (keys are lower case: 'role')" },
		{ WWW "socket = /run/x.sock\n", 4,
		  "unknown key 'socket' in [service www]: socket belongs in [danced]" },
		{ "[danced]\nrole = server\n" WWW, 2,
		  "unknown key 'role' in [danced]: role belongs in [service NAME]" },
		{ "[servcie www]\n", 1,
		  "unknown section [servcie www] (did you mean [service www]?)" },
		{ "[dancd]\n", 1, "unknown section [dancd] (did you mean [danced]?)" },
		{ "[global]\n" WWW, 1,
		  "unknown section [global]: the sections are [danced] and [service NAME]" },
		{ "[Danced]\n" WWW, 1, "unknown section [Danced] (did you mean [danced]?)" },
		{ "socket = /run/x.sock\n[danced]\n" WWW, 1,
		  "key 'socket' outside any section: put it under [danced] or [service NAME]" },
		{ "[danced]\n= 5\n" WWW, 2, "missing key name before '='" },
	};

	expect_rejected(_metadata, cases, ARRAY_SIZE(cases));
}

TEST(rejects_bad_syntax)
{
	static const struct bad cases[] = {
		{ "[danced]\nworkers 4\n" WWW, 2,
		  "expected 'key = value', a [section] or a comment" },
		{ "[danced]\nworkers: 4\n" WWW, 2, "expected 'key = value'" },
		{ "[danced]\nworkers ;x = 4\n" WWW, 2, "expected 'key = value'" },
		{ "[danced\nworkers = 4\n" WWW, 1, "section header without ']'" },
		{ "[danced] workers = 4\n" WWW, 1, "text after the section header: 'workers = 4'" },
		{ "[service]\n", 1, "[service] needs a name: [service NAME]" },
		{ "[service a/b]\n", 1,
		  "service name 'a/b' may only have letters, digits, '.', '_' and '-'" },
		{ "[service a b]\n", 1, "service name 'a b' may only have" },
		{ "[service aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa]\n", 1,
		  "is 64 characters; at most 63" },
		{ "[danced]\nsocket =\n" WWW, 2, "socket: empty value" },
		{ WWW "alpn = ;just a comment\n", 4, "alpn: empty value" },
		{ "", 0, "no [service] section: danced has nothing to serve" },
		{ "[danced]\nworkers = 2\n", 0, "no [service] section" },
		{ "; only comments\n# here\n", 0, "no [service] section" },
	};

	expect_rejected(_metadata, cases, ARRAY_SIZE(cases));
}

TEST(rejects_duplicates)
{
	static const struct bad cases[] = {
		{ WWW "[service www]\n", 4, "duplicate [service www] (first at line 1)" },
		{ "[danced]\n[danced]\n" WWW, 2, "[danced] appears twice (first at line 1)" },
		{ "[danced]\nworkers = 2\nworkers = 3\n" WWW, 3,
		  "duplicate key 'workers' in [danced] (first set at line 2)" },
		{ WWW "role = server\nrole = server\n", 5,
		  "duplicate key 'role' in [service www] (first set at line 4)" },
		{ WWW "key = /other\n", 4,
		  "duplicate key 'key' in [service www] (first set at line 3)" },
		/* A section that comes back does not get a second chance either. */
		{ "[service a]\ncertificate = /a\nkey = /k\n[service b]\ncertificate = /b\n"
		  "key = /k\n[service a]\n",
		  7, "duplicate [service a] (first at line 1)" },
	};

	expect_rejected(_metadata, cases, ARRAY_SIZE(cases));
}

TEST(lists_may_repeat)
{
	struct config *cfg = NULL;
	char err[512];

	ASSERT_EQ(0, load(_metadata,
			  "[danced]\nallow_uid = 1\nallow_uid = 2,3\nallow_gid = 4\nallow_gid = 5\n"
			  "[service www]\ncertificate = /c\nkey = /k\nserver_names = a.example\n"
			  "server_names = b.example\nlisten = 127.0.0.1:1\nlisten = 127.0.0.1:2\n"
			  "backend_socket = /run/www.sock\n",
			  &cfg, err, sizeof(err)))
	TH_LOG("%s", err);
	EXPECT_EQ(3u, cfg->n_allow_uid);
	EXPECT_EQ(2u, cfg->n_allow_gid);
	EXPECT_EQ(2u, cfg->svcs[0].n_server_names);
	EXPECT_EQ(2u, cfg->svcs[0].n_listen);
	config_free(cfg);
}

TEST(rejects_bad_numbers)
{
	static const struct bad cases[] = {
		{ "[danced]\nmax_handshakes = 0\n" WWW, 2,
		  "max_handshakes: 0 is out of range (allowed: 1..1000000)" },
		{ "[danced]\nmax_handshakes = 1000001\n" WWW, 2, "1000001 is out of range" },
		{ "[danced]\nmax_handshakes = -5\n" WWW, 2,
		  "max_handshakes: -5 is negative (allowed: 1..1000000)" },
		{ "[danced]\nmax_handshakes = 99999999999999999999999\n" WWW, 2,
		  "99999999999999999999999 is out of range" },
		{ "[danced]\nmax_handshakes = 12abc\n" WWW, 2,
		  "max_handshakes: '12abc' is not a number (allowed: 1..1000000)" },
		{ "[danced]\nmax_handshakes = 0x10\n" WWW, 2, "'0x10' is not a number" },
		{ "[danced]\nmax_handshakes = +5\n" WWW, 2, "'+5' is not a number" },
		{ "[danced]\nmax_handshakes = 1 000\n" WWW, 2, "'1 000' is not a number" },
		{ "[danced]\nworkers = 0\n" WWW, 2,
		  "workers: 0 is out of range (allowed: 1..1024)" },
		{ "[danced]\nworkers = 1025\n" WWW, 2, "workers: 1025 is out of range" },
		{ "[danced]\nworkers = many\n" WWW, 2, "workers: 'many' is not a number" },
		{ WWW "backlog = 65536\n", 4,
		  "backlog: 65536 is out of range (allowed: 1..65535)" },
		{ WWW "backlog = 0\n", 4, "backlog: 0 is out of range" },
		{ "[danced]\nsocket_mode = 0999\n" WWW, 2,
		  "socket_mode: '0999' is not an octal mode from 0000 to 0777" },
		{ "[danced]\nsocket_mode = 1777\n" WWW, 2, "not an octal mode" },
		{ "[danced]\nsocket_mode = -660\n" WWW, 2, "not an octal mode" },
		{ "[danced]\nsocket_mode = 00000000000000000000000001777\n" WWW, 2,
		  "not an octal mode" },
		{ "[danced]\nallow_uid = 4294967295\n" WWW, 2,
		  "allow_uid: 4294967295 is out of range" },
		{ "[danced]\nallow_gid = 99999999999999999999999\n" WWW, 2,
		  "allow_gid: 99999999999999999999999 is out of range" },
	};

	expect_rejected(_metadata, cases, ARRAY_SIZE(cases));
}

TEST(rejects_bad_words)
{
	static const struct bad cases[] = {
		{ "[service www]\nrole = sever\n", 2,
		  "role: 'sever' is not one of: server, client" },
		{ "[danced]\nlog_level = verbose\n" WWW, 2,
		  "log_level: 'verbose' is not one of: error, warning, notice, info, debug" },
		{ WWW "default = maybe\n", 4,
		  "default: 'maybe' is not one of: yes, no, true, false, on, off, 1, 0" },
		{ WWW "default = YES\n", 4, "default: 'YES' is not one of" },
		{ WWW "tls_min = 1.1\n", 4, "tls_min: '1.1' is not one of: 1.2, 1.3" },
		{ WWW "tls_max = TLSv1.3\n", 4, "tls_max: 'TLSv1.3' is not one of: 1.2, 1.3" },
		{ WWW "ca = /ca\nclient_auth = yes\n", 5,
		  "client_auth: 'yes' is not one of: none, optional, required, after" },
		{ "[service c]\nrole = client\nca = /ca\nverify = optional\n", 4,
		  "verify: 'optional' is not one of: required, none, dane, dane-or-pkix" },
		{ "[service c]\nrole = client\nverify = DANE\n", 3,
		  "verify: 'DANE' is not one of: required, none, dane, dane-or-pkix" },
		{ WWW "dane = yes\n", 4, "dane: 'yes' is not one of: off, optional, required" },
		{ WWW "dane = Required\n", 4, "dane: 'Required' is not one of" },
		{ WWW "request_client_auth = always\n", 4,
		  "request_client_auth: 'always' is not one of: yes, no," },
		{ WWW "dane_tls12_legacy = 2\n", 4, "dane_tls12_legacy: '2' is not one of" },
	};

	expect_rejected(_metadata, cases, ARRAY_SIZE(cases));
}

/* RFC 7250 certificate types: a list of x509 and rpk, in preference order, each once. */
TEST(certificate_types_are_a_preference_list)
{
	static const struct bad cases[] = {
		{ WWW "client_certificate_types = raw\n", 4,
		  "client_certificate_types: 'raw' is not a certificate type (x509, rpk)" },
		{ WWW "client_certificate_types = RPK\n", 4, "'RPK' is not a certificate type" },
		{ WWW "server_certificate_types = rpk, rpk\n", 4,
		  "server_certificate_types: rpk is listed twice" },
		{ WWW "client_certificate_types = ,\n", 4,
		  "client_certificate_types: empty; name x509, rpk or both" },
	};
	char err[512];
	struct config *cfg;
	const struct svc_config *s;

	ASSERT_EQ(0,
		  load(_metadata,
		       WWW
		       "client_certificate_types = rpk, x509\nserver_certificate_types = x509\n" OUT
		       "verify = none\nclient_certificate_types = rpk\n",
		       &cfg, err, sizeof(err)))
	TH_LOG("%s", err);
	s = config_service(cfg, "www");
	ASSERT_EQ(2, s->n_client_cert_types);
	EXPECT_EQ(DANCE_CERT_RPK, s->client_cert_types[0]);
	EXPECT_EQ(DANCE_CERT_X509, s->client_cert_types[1]);
	ASSERT_EQ(1, s->n_server_cert_types);
	EXPECT_EQ(DANCE_CERT_X509, s->server_cert_types[0]);
	s = config_service(cfg, "out");
	ASSERT_EQ(1, s->n_client_cert_types);
	EXPECT_EQ(DANCE_CERT_RPK, s->client_cert_types[0]);
	EXPECT_EQ(0, s->n_server_cert_types);
	config_free(cfg);
	expect_rejected(_metadata, cases, ARRAY_SIZE(cases));
}

TEST(accepts_every_boolean_spelling)
{
	static const char *const yes[] = { "yes", "true", "on", "1" };
	static const char *const no[] = { "no", "false", "off", "0" };
	struct config *cfg = NULL;
	char conf[256], err[512];
	size_t i;

	for (i = 0; i < ARRAY_SIZE(yes); i++) {
		snprintf(conf, sizeof(conf), WWW "default = %s\n", yes[i]);
		ASSERT_EQ(0, load(_metadata, conf, &cfg, err, sizeof(err))) TH_LOG("%s", err);
		EXPECT_TRUE(cfg->svcs[0].is_default);
		config_free(cfg);
		snprintf(conf, sizeof(conf), WWW "default = %s\n", no[i]);
		ASSERT_EQ(0, load(_metadata, conf, &cfg, err, sizeof(err))) TH_LOG("%s", err);
		EXPECT_FALSE(cfg->svcs[0].is_default); /* said so: not implicit */
		config_free(cfg);
	}
}

TEST(rejects_unknown_users_and_groups)
{
	static const struct bad cases[] = {
		{ "[danced]\nallow_uid = 0 no-such-user-danced\n" WWW, 2,
		  "allow_uid: no user 'no-such-user-danced' on this system" },
		{ "[danced]\nallow_gid = no-such-group-danced\n" WWW, 2,
		  "allow_gid: no group 'no-such-group-danced' on this system" },
		{ "[danced]\nuser = no-such-user-danced\n" WWW, 2,
		  "user: no user 'no-such-user-danced' on this system" },
		{ "[danced]\nuser = 4000000000\n" WWW, 2, "user: no user '4000000000'" },
	};

	expect_rejected(_metadata, cases, ARRAY_SIZE(cases));
}

TEST(resolves_users_and_groups_to_ids)
{
	struct config *cfg = NULL;
	char err[512];

	ASSERT_EQ(0, load(_metadata,
			  "[danced]\nallow_uid = root,daemon 0\nallow_gid = daemon\n"
			  "user = 0\n" WWW,
			  &cfg, err, sizeof(err)))
	TH_LOG("%s", err);
	ASSERT_EQ(2u, cfg->n_allow_uid); /* 0 once */
	EXPECT_EQ(0u, cfg->allow_uid[0]);
	EXPECT_EQ(1u, cfg->allow_uid[1]);
	ASSERT_EQ(1u, cfg->n_allow_gid);
	EXPECT_EQ(1u, cfg->allow_gid[0]);
	EXPECT_STREQ("root", cfg->user); /* the name, for initgroups() */
	EXPECT_EQ(0u, cfg->user_uid);
	EXPECT_EQ(0u, cfg->user_gid);
	config_free(cfg);
}

TEST(rejects_relative_and_oversized_paths)
{
	static const struct bad cases[] = {
		{ "[danced]\nsocket = run/danced.sock\n" WWW, 2,
		  "socket: 'run/danced.sock' is not an absolute path" },
		{ "[danced]\nsocket = /run/aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
		  "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa.sock\n" WWW,
		  2, "socket: path is 137 bytes; a unix socket path holds at most 107" },
		{ "[service www]\ncertificate = www.pem\nkey = /k\n", 2,
		  "certificate: 'www.pem' is not an absolute path" },
		{ "[service www]\ncertificate = /c\nkey = ./www.key\n", 3,
		  "key: './www.key' is not an absolute path" },
		{ WWW "ca = ~/ca.pem\n", 4, "ca: '~/ca.pem' is not an absolute path" },
		{ WWW "listen = 127.0.0.1:443\nbackend_socket = www.sock\n", 5,
		  "backend_socket: 'www.sock' is not an absolute path" },
	};

	expect_rejected(_metadata, cases, ARRAY_SIZE(cases));
}

TEST(enforces_role_rules)
{
	static const struct bad cases[] = {
		{ "[service c]\nrole = client\nca = /ca\nclient_auth = required\n", 4,
		  "[service c]: client_auth is not for role = client; use verify" },
		{ WWW "verify = none\n", 4,
		  "[service www]: verify is not for role = server; use "
		  "client_auth" },
		/* The role may come last; the rule holds all the same. */
		{ "[service c]\nserver_names = a.example\nrole = client\nca = /ca\n", 2,
		  "[service c]: server_names is not for role = client" },
		{ "[service c]\nrole = client\nca = /ca\ndefault = yes\n", 4,
		  "default is not for role = client" },
		{ "[service c]\nrole = client\nca = /ca\nlisten = 127.0.0.1:443\n"
		  "backend_socket = /run/c.sock\n",
		  4, "[service c]: listen is not for role = client" },
		{ "[service www]\nrole = server\n", 1,
		  "[service www]: role = server needs certificate and key" },
		{ "[service www]\nca = /ca\n", 1, "role = server needs certificate and key" },
		{ "[service www]\ncertificate = /c\n", 2,
		  "[service www]: certificate needs key (its private key)" },
		{ "[service c]\nrole = client\nca = /ca\nkey = /k\n", 4,
		  "[service c]: key without certificate" },
		{ WWW "client_auth = optional\n", 4,
		  "[service www]: client_auth = optional needs ca, the CA bundle that client"
		  " certificates must lead to" },
		{ WWW "client_auth = required\n", 4, "client_auth = required needs ca" },
		{ WWW "client_auth = after\n", 4, "client_auth = after needs ca" },
		{ "[service c]\nrole = client\n", 1,
		  "[service c]: verify = required (the default) needs ca" },
		{ "[service c]\nrole = client\nverify = required\n", 3,
		  "[service c]: verify = required needs ca" },
		{ WWW "tls_min = 1.3\ntls_max = 1.2\n", 5,
		  "[service www]: tls_min = 1.3 is above tls_max = 1.2" },
		{ WWW "tls_max = 1.2\ntls_min = 1.3\n", 5, "tls_min = 1.3 is above tls_max = 1.2" },
		{ "[service a]\ncertificate = /a\nkey = /k\ndefault = yes\n"
		  "[service b]\ncertificate = /b\nkey = /k\ndefault = yes\n",
		  8, "more than one default service: [service a] and [service b]" },
	};

	expect_rejected(_metadata, cases, ARRAY_SIZE(cases));
}

TEST(one_server_service_is_the_default)
{
	struct config *cfg = NULL;
	char err[512];

	/* Two servers, no default: neither is. */
	ASSERT_EQ(0, load(_metadata,
			  "[service a]\ncertificate = /a\nkey = /k\n"
			  "[service b]\ncertificate = /b\nkey = /k\n"
			  "[service c]\nrole = client\nca = /ca\n",
			  &cfg, err, sizeof(err)))
	TH_LOG("%s", err);
	EXPECT_FALSE(cfg->svcs[0].is_default);
	EXPECT_FALSE(cfg->svcs[1].is_default);
	config_free(cfg);
	/* One server among clients: it is. */
	ASSERT_EQ(0, load(_metadata,
			  "[service c]\nrole = client\nca = /ca\n"
			  "[service a]\ncertificate = /a\nkey = /k\n",
			  &cfg, err, sizeof(err)))
	TH_LOG("%s", err);
	EXPECT_FALSE(cfg->svcs[0].is_default);
	EXPECT_TRUE(cfg->svcs[1].is_default);
	config_free(cfg);
	/* Explicit choice among two. */
	ASSERT_EQ(0, load(_metadata,
			  "[service a]\ncertificate = /a\nkey = /k\n"
			  "[service b]\ncertificate = /b\nkey = /k\ndefault = on\n",
			  &cfg, err, sizeof(err)))
	TH_LOG("%s", err);
	EXPECT_FALSE(cfg->svcs[0].is_default);
	EXPECT_TRUE(cfg->svcs[1].is_default);
	config_free(cfg);
}

TEST(enforces_front_door_rules)
{
	static const struct bad cases[] = {
		{ WWW "listen = 127.0.0.1:443\n", 4,
		  "[service www]: listen needs backend_socket, the unix socket that backends "
		  "connect to" },
		{ WWW "backend_socket = /run/www.sock\n", 4,
		  "[service www]: backend_socket needs listen" },
		{ WWW "listen = 127.0.0.1:443\nbackend_socket = /run/www.sock\n"
		      "[service api]\ncertificate = /a\nkey = /k\nlisten = 127.0.0.1:443\n"
		      "backend_socket = /run/api.sock\n",
		  9,
		  "[service api]: listen 127.0.0.1:443 collides with 127.0.0.1:443 of [service www]" },
		{ WWW "listen = 0.0.0.0:443\nbackend_socket = /run/www.sock\n"
		      "[service api]\ncertificate = /a\nkey = /k\nlisten = 127.0.0.1:443\n"
		      "backend_socket = /run/api.sock\n",
		  9, "listen 127.0.0.1:443 collides with 0.0.0.0:443 of [service www]" },
		{ WWW "listen = [::]:443 [::1]:443\nbackend_socket = /run/www.sock\n", 4,
		  "listen [::1]:443 collides with [::]:443 of [service www]" },
		{ WWW "listen = 127.0.0.1:443, 127.0.0.1:443\nbackend_socket = /run/www.sock\n", 4,
		  "collides with 127.0.0.1:443 of [service www]" },
		{ WWW "listen = 127.0.0.1:443\nbackend_socket = /run/www.sock\n"
		      "[service api]\ncertificate = /a\nkey = /k\nlisten = 127.0.0.1:444\n"
		      "backend_socket = /run/www.sock\n",
		  10, "[service api]: backend_socket /run/www.sock is also [service www]'s" },
		{ "[danced]\nsocket = /run/d.sock\n" WWW "listen = 127.0.0.1:443\n"
		  "backend_socket = /run/d.sock\n",
		  7, "[service www]: backend_socket is danced's own socket" },
		{ WWW "listen = 127.0.0.1\n", 4,
		  "listen: '127.0.0.1' is not an address (use 192.0.2.1:443 or [2001:db8::1]:443)" },
		{ WWW "listen = localhost:443\n", 4, "listen: 'localhost:443' is not an address" },
		{ WWW "listen = [::1:443\n", 4, "listen: '[::1:443' is not an address" },
		{ WWW "listen = ::1:443\n", 4, "listen: '::1:443' is not an address" },
		{ WWW "listen = [127.0.0.1]:443\n", 4, "is not an address" },
		{ WWW "listen = 256.0.0.1:443\n", 4, "is not an address" },
		{ WWW "listen = 127.0.0.1:0\n", 4,
		  "listen: port of '127.0.0.1:0' is not in 1..65535" },
		{ WWW "listen = [::1]:65536\n", 4, "port of '[::1]:65536' is not in 1..65535" },
		{ WWW "listen = 127.0.0.1:https\n", 4, "is not in 1..65535" },
		{ WWW "listen = 127.0.0.1:-1\n", 4, "is not in 1..65535" },
		{ WWW "listen = 127.0.0.1:1 127.0.0.1:2 127.0.0.1:3 127.0.0.1:4 127.0.0.1:5\n"
		      "listen = 127.0.0.1:6 127.0.0.1:7 127.0.0.1:8 127.0.0.1:9\n",
		  5, "listen: more than 8 addresses" },
	};

	expect_rejected(_metadata, cases, ARRAY_SIZE(cases));
}

TEST(rejects_bad_names_and_lists)
{
	static const struct bad cases[] = {
		{ WWW "server_names = bad_name!\n", 4,
		  "server_names: 'bad_name!' is not a host name (use www.example.com, or "
		  "*.example.com for any one label)" },
		{ WWW "server_names = *.*.example.com\n", 4,
		  "'*.*.example.com' is not a host name" },
		{ WWW "server_names = www.*.com\n", 4, "is not a host name" },
		{ WWW "server_names = *\n", 4, "'*' is not a host name" },
		{ WWW "server_names = example..com\n", 4, "is not a host name" },
		{ WWW "server_names = .example.com\n", 4, "is not a host name" },
		{ WWW "server_names = example.com.\n", 4, "is not a host name" },
		{ WWW
		  "server_names = aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
		  ".example\n",
		  4, "is not a host name" },
		{ "[service a]\ncertificate = /a\nkey = /k\nserver_names = www.example.com\n"
		  "[service b]\ncertificate = /b\nkey = /k\nserver_names = WWW.example.com\n",
		  8, "[service b]: server name www.example.com is also in [service a]" },
		{ WWW "alpn = h2,,http/1.1\n", 4, "alpn: empty protocol id in 'h2,,http/1.1'" },
		{ WWW "alpn = h2,\n", 4, "alpn: empty protocol id" },
		{ WWW "alpn = h2 http/1.1\n", 4,
		  "alpn: 'h2 http/1.1': separate protocol ids with commas" },
	};

	expect_rejected(_metadata, cases, ARRAY_SIZE(cases));
}

/* Every list has a limit, and the first entry past it is an error, not dropped. */
TEST(rejects_too_many_entries)
{
	char conf[6][4096], svcs[70 * 64], ids[256], one[512];
	struct bad cases[8];
	size_t n, i;

	n = snprintf(conf[0], sizeof(conf[0]), "[danced]\n");
	for (i = 0; i <= CFG_MAX_IDS; i++)
		n += snprintf(conf[0] + n, sizeof(conf[0]) - n, "allow_gid = %zu\n", i);
	snprintf(conf[0] + n, sizeof(conf[0]) - n, WWW);
	cases[0] = (struct bad){ conf[0], CFG_MAX_IDS + 2, "allow_gid: more than 32 entries" };

	for (i = 0, n = 0; i <= CFG_MAX_IDS; i++)
		n += snprintf(ids + n, sizeof(ids) - n, "%s%zu", i ? "," : "", i);
	snprintf(one, sizeof(one), "[danced]\nallow_uid = %s\n" WWW, ids);
	cases[1] = (struct bad){ one, 2, "allow_uid: more than 32 entries" };

	n = snprintf(conf[1], sizeof(conf[1]), WWW);
	for (i = 0; i <= CFG_MAX_NAMES; i++)
		n += snprintf(conf[1] + n, sizeof(conf[1]) - n, "server_names = n%zu.example\n", i);
	cases[2] = (struct bad){ conf[1], CFG_MAX_NAMES + 4, "server_names: more than 32 names" };

	for (i = 0, n = 0; i <= CFG_MAX_SERVICES; i++)
		n += snprintf(svcs + n, sizeof(svcs) - n,
			      "[service s%zu]\ncertificate = /c\nkey = /k\n", i);
	cases[3] = (struct bad){ svcs, 3 * CFG_MAX_SERVICES + 1, "too many services: at most 64" };

	n = snprintf(conf[2], sizeof(conf[2]), "[danced]\n");
	for (i = 0; i <= CFG_MAX_ANCHORS; i++)
		n += snprintf(conf[2] + n, sizeof(conf[2]) - n,
			      "dns_trust_anchor = corp.example. DS %zu 13 2 %s\n", i, DS_DIGEST);
	snprintf(conf[2] + n, sizeof(conf[2]) - n, WWW);
	cases[4] = (struct bad){ conf[2], CFG_MAX_ANCHORS + 2,
				 "dns_trust_anchor: more than 16 anchors" };

	n = snprintf(conf[3], sizeof(conf[3]), "[danced]\n");
	for (i = 0; i <= CFG_MAX_STUBS; i++)
		n += snprintf(conf[3] + n, sizeof(conf[3]) - n,
			      "dns_stub = z%zu.example. 192.0.2.1\n", i);
	snprintf(conf[3] + n, sizeof(conf[3]) - n, WWW);
	cases[5] = (struct bad){ conf[3], CFG_MAX_STUBS + 2, "dns_stub: more than 16 zones" };

	n = snprintf(conf[4], sizeof(conf[4]), WWW "dane = optional\n");
	for (i = 0; i <= CFG_MAX_DANE_NAMES; i++)
		n += snprintf(conf[4] + n, sizeof(conf[4]) - n, "dane_names = n%zu.example\n", i);
	cases[6] =
		(struct bad){ conf[4], CFG_MAX_DANE_NAMES + 5, "dane_names: more than 32 names" };

	/* One line with 33 names. */
	for (i = 0, n = 0; i <= CFG_MAX_DANE_NAMES; i++)
		n += snprintf(ids + n, sizeof(ids) - n, "%s%zu", i ? "," : "", i);
	snprintf(conf[5], sizeof(conf[5]), WWW "dane_names = %s\n", ids);
	cases[7] = (struct bad){ conf[5], 4, "dane_names: more than 32 names" };

	expect_rejected(_metadata, cases, ARRAY_SIZE(cases));
}

TEST(rejects_values_too_long_to_print_back)
{
	char conf[512], pad[256];
	struct bad bad;

	/* 197 bytes fit a line, but "ciphers = " and this value would not. */
	memset(pad, 'A', 189);
	pad[189] = '\0';
	snprintf(conf, sizeof(conf), WWW "ciphers=%s\n", pad);
	bad = (struct bad){ conf, 4, "ciphers: value too long for one line" };
	expect_rejected(_metadata, &bad, 1);
}

/* DNS server addresses end up in libunbound's "ADDR[@PORT]" form, canonical, no brackets. */
TEST(stores_dns_addresses_the_way_libunbound_takes_them)
{
	static const struct {
		const char *text, *stored;
	} cases[] = {
		{ "192.0.2.53", "192.0.2.53" },
		{ "192.0.2.53@5353", "192.0.2.53@5353" },
		{ "192.0.2.53@053", "192.0.2.53@53" },
		{ "192.0.2.53@65535", "192.0.2.53@65535" },
		{ "2001:DB8:0::0035", "2001:db8::35" },
		{ "2001:db8::53@5353", "2001:db8::53@5353" },
		{ "[2001:db8::53]@53", "2001:db8::53@53" },
		{ "[::1]", "::1" },
		{ "::1@1", "::1@1" },
		{ "::ffff:192.0.2.1", "::ffff:192.0.2.1" },
	};
	struct config *cfg = NULL;
	char conf[256], err[512];
	size_t i;

	for (i = 0; i < ARRAY_SIZE(cases); i++) {
		snprintf(conf, sizeof(conf),
			 "[danced]\ndns_forwarder = %s\ndns_stub = corp.example. %s\n" WWW,
			 cases[i].text, cases[i].text);
		ASSERT_EQ(0, load(_metadata, conf, &cfg, err, sizeof(err))) TH_LOG("%s", err);
		EXPECT_STREQ(cases[i].stored, cfg->dns_forwarder);
		ASSERT_EQ(1u, cfg->n_dns_stubs);
		EXPECT_STREQ("corp.example.", cfg->dns_stubs[0].zone);
		EXPECT_STREQ(cases[i].stored, cfg->dns_stubs[0].addr);
		config_free(cfg);
	}
}

TEST(rejects_bad_dns_addresses)
{
	static const struct {
		const char *text;
		bool port; /* the address is fine, the port is not */
	} cases[] = {
		{ "localhost", false },
		{ "192.0.2", false },
		{ "256.0.0.1", false },
		{ "192.0.2.1:53", false },
		{ "[192.0.2.1]@53", false },
		{ "[2001:db8::1", false },
		{ "[2001:db8::1]53", false },
		{ "[2001:db8::1]:53", false },
		{ "[]@53", false },
		{ "@53", false },
		{ "2001:db8::1::2", false },
		{ "2001:db8:0:0:0:0:0:0:1", false },
		{ "fe80::1%eth0", false },
		{ "2001:db8::g", false },
		{ "192.0.2.1@0", true },
		{ "192.0.2.1@65536", true },
		{ "192.0.2.1@999999999999999999999", true },
		{ "192.0.2.1@", true },
		{ "192.0.2.1@domain", true },
		{ "192.0.2.1@-1", true },
		{ "192.0.2.1@53@54", true },
		{ "[::1]@0", true },
		{ "[::1]@", true },
	};
	struct bad bad[ARRAY_SIZE(cases) * 2 + 1];
	char confs[ARRAY_SIZE(cases) * 2][256], says[ARRAY_SIZE(cases) * 2][160];
	size_t i, j;

	for (i = 0; i < ARRAY_SIZE(cases); i++) {
		for (j = 0; j < 2; j++) {
			const char *key = j ? "dns_stub" : "dns_forwarder";

			snprintf(
				confs[2 * i + j], sizeof(confs[0]),
				j ? "[danced]\nlog_level = info\ndns_stub = corp.example. %s\n" WWW :
				    "[danced]\ndns_forwarder = %s\n" WWW,
				cases[i].text);
			snprintf(says[2 * i + j], sizeof(says[0]),
				 cases[i].port ? "%s: port of '%s' is not in 1..65535" :
						 "%s: '%s' is not an IP address",
				 key, cases[i].text);
			bad[2 * i + j] = (struct bad){ confs[2 * i + j], 2 + j, says[2 * i + j] };
		}
	}
	bad[2 * i] = (struct bad){ "[danced]\ndns_forwarder = dns.example\n" WWW, 2,
				   "dns_forwarder: 'dns.example' is not an IP address (use "
				   "192.0.2.53, 192.0.2.53@5353 or 2001:db8::53@5353)" };
	expect_rejected(_metadata, bad, ARRAY_SIZE(bad));
}

TEST(parses_dns_stubs)
{
	struct config *cfg = NULL;
	char err[512];

	ASSERT_EQ(0, load(_metadata,
			  "[danced]\ndns_stub = .  192.0.2.1\ndns_stub = A.B.example. ::1@5353\n"
			  "dns_stub = b.example.\t192.0.2.2\n" WWW,
			  &cfg, err, sizeof(err)))
	TH_LOG("%s", err);
	ASSERT_EQ(3u, cfg->n_dns_stubs);
	EXPECT_STREQ(".", cfg->dns_stubs[0].zone); /* the root: every query */
	EXPECT_STREQ("192.0.2.1", cfg->dns_stubs[0].addr);
	EXPECT_STREQ("a.b.example.", cfg->dns_stubs[1].zone);
	EXPECT_STREQ("::1@5353", cfg->dns_stubs[1].addr);
	EXPECT_STREQ("b.example.", cfg->dns_stubs[2].zone);
	EXPECT_EQ(0u, cfg->n_warnings); /* the root anchor may secure them */
	config_free(cfg);
}

TEST(rejects_bad_dns_stubs)
{
	static const struct bad cases[] = {
		{ "[danced]\ndns_stub = corp.example.\n" WWW, 2,
		  "dns_stub: 'corp.example.' is not 'ZONE ADDRESS' (such as corp.example. "
		  "192.0.2.53@5353)" },
		{ "[danced]\ndns_stub = corp.example. 192.0.2.1 192.0.2.2\n" WWW, 2,
		  "is not 'ZONE ADDRESS'" },
		{ "[danced]\ndns_stub = corp.example.,192.0.2.1\n" WWW, 2,
		  "is not 'ZONE ADDRESS'" },
		{ "[danced]\ndns_stub = corp.example 192.0.2.1\n" WWW, 2,
		  "dns_stub: zone 'corp.example' is not absolute: end it with a dot (corp.example.)" },
		{ "[danced]\ndns_stub = corp..example. 192.0.2.1\n" WWW, 2,
		  "dns_stub: zone 'corp..example.' has an empty label" },
		{ "[danced]\ndns_stub = .corp.example. 192.0.2.1\n" WWW, 2, "has an empty label" },
		{ "[danced]\ndns_stub = corp.example.. 192.0.2.1\n" WWW, 2, "has an empty label" },
		{ "[danced]\ndns_stub = *.example. 192.0.2.1\n" WWW, 2,
		  "dns_stub: zone '*.example.' has a '*': wildcards are not allowed" },
		{ "[danced]\ndns_stub = c\\068rp.example. 192.0.2.1\n" WWW, 2,
		  "has a character other than letters, digits, '-' and '_'" },
		{ "[danced]\ndns_stub = b\xc3\xbc"
		  "cher.example. 192.0.2.1\n" WWW,
		  2, "has a character other than letters, digits, '-' and '_'" },
		{ "[danced]\ndns_stub = "
		  "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa.example. "
		  "192.0.2.1\n" WWW,
		  2, "has a label longer than 63 octets" },
		{ "[danced]\ndns_stub = corp.example. 192.0.2.1\nlog_level = info\n"
		  "dns_stub = CORP.example. 192.0.2.2\n" WWW,
		  4,
		  "dns_stub: zone corp.example. already has its server at line 2 (one per zone)" },
	};

	expect_rejected(_metadata, cases, ARRAY_SIZE(cases));
}

TEST(parses_trust_anchors)
{
	struct config *cfg = NULL;
	char err[512];

	ASSERT_EQ(0, load(_metadata,
			  "[danced]\ndns_trust_anchor_file = none\n"
			  "dns_trust_anchor = " DS_KEYMGR "\n"
			  "dns_trust_anchor = " DS_LDNS "\n"
			  "dns_trust_anchor = " DS_KEYMGR "\n" /* the same again: once */
			  "dns_trust_anchor = corp.example. 60 ds 1 8 2 AB CD\n"
			  "dns_trust_anchor = . IN 172800 DNSKEY 257 3 8 AwEAAa 96EA==\n" WWW,
			  &cfg, err, sizeof(err)))
	TH_LOG("%s", err);
	EXPECT_EQ(NULL, cfg->dns_trust_anchor_file);
	ASSERT_EQ(4u, cfg->n_dns_trust_anchors);
	EXPECT_STREQ(DS_KEYMGR, cfg->dns_trust_anchors[0]);
	EXPECT_STREQ("corp.example. 3600 IN DS 12345 13 2 " DS_DIGEST, cfg->dns_trust_anchors[1]);
	EXPECT_STREQ("corp.example. 60 DS 1 8 2 AB CD", cfg->dns_trust_anchors[2]);
	EXPECT_STREQ(". IN 172800 DNSKEY 257 3 8 AwEAAa 96EA==", cfg->dns_trust_anchors[3]);
	config_free(cfg);
}

TEST(rejects_bad_trust_anchors)
{
	static const struct bad cases[] = {
		{ "[danced]\ndns_trust_anchor = corp.example DS 1 13 2 AB\n" WWW, 2,
		  "dns_trust_anchor: owner 'corp.example' is not absolute: end it with a dot "
		  "(corp.example.)" },
		{ "[danced]\ndns_trust_anchor = corp..example. DS 1 13 2 AB\n" WWW, 2,
		  "dns_trust_anchor: owner 'corp..example.' has an empty label" },
		{ "[danced]\ndns_trust_anchor = *.example. DS 1 13 2 AB\n" WWW, 2,
		  "owner '*.example.' has a '*'" },
		{ "[danced]\ndns_trust_anchor = corp.example. A 192.0.2.1\n" WWW, 2,
		  "dns_trust_anchor: 'A' is not DS or DNSKEY: a trust anchor is 'zone. DS ...' or "
		  "'zone. DNSKEY ...'" },
		{ "[danced]\ndns_trust_anchor = corp.example. CH DS 1 13 2 AB\n" WWW, 2,
		  "'CH' is not DS or DNSKEY" },
		{ "[danced]\ndns_trust_anchor = corp.example. 60 60 DS 1 13 2 AB\n" WWW, 2,
		  "'60' is not DS or DNSKEY" },
		{ "[danced]\ndns_trust_anchor = corp.example. IN IN DS 1 13 2 AB\n" WWW, 2,
		  "'IN' is not DS or DNSKEY" },
		{ "[danced]\ndns_trust_anchor = corp.example. DSKEY 257 3 13 AB\n" WWW, 2,
		  "'DSKEY' is not DS or DNSKEY" },
		{ "[danced]\ndns_trust_anchor = corp.example. 3600 IN\n" WWW, 2,
		  "dns_trust_anchor: no DS or DNSKEY in 'corp.example. 3600 IN'" },
		{ "[danced]\ndns_trust_anchor = corp.example.\n" WWW, 2, "no DS or DNSKEY in" },
		{ "[danced]\ndns_trust_anchor = corp.example. DS\n" WWW, 2,
		  "dns_trust_anchor: the DS record has 0 of its 4 fields (key tag, algorithm, "
		  "digest type, digest)" },
		{ "[danced]\ndns_trust_anchor = corp.example. DS 12345 13 2\n" WWW, 2,
		  "the DS record has 3 of its 4 fields" },
		{ "[danced]\ndns_trust_anchor = corp.example. DNSKEY 257 3 13\n" WWW, 2,
		  "the DNSKEY record has 3 of its 4 fields (flags, protocol, algorithm, public "
		  "key)" },
		{ "[danced]\ndns_trust_anchor_file = root.key\n" WWW, 2,
		  "dns_trust_anchor_file: 'root.key' is not an absolute path" },
		{ "[danced]\ndns_trust_anchor_file = None\n" WWW, 2,
		  "dns_trust_anchor_file: 'None' is not an absolute path" },
	};

	expect_rejected(_metadata, cases, ARRAY_SIZE(cases));
}

TEST(parses_dns_ttls_in_seconds)
{
	static const struct {
		const char *text;
		unsigned int s;
	} cases[] = {
		{ "0", 0 },	    { "0s", 0 },	{ "90", 90 },	      { "30s", 30 },
		{ "5m", 300 },	    { "1h", 3600 },	{ "24h", 86400 },     { "2000ms", 2 },
		{ "1440m", 86400 }, { "86400", 86400 }, { "0000001h", 3600 },
	};
	struct config *cfg = NULL;
	char conf[256], err[512];
	size_t i;

	for (i = 0; i < ARRAY_SIZE(cases); i++) {
		snprintf(
			conf, sizeof(conf),
			"[danced]\ndns_max_ttl = %s\ndns_min_ttl = %s\ndns_negative_ttl = %s\n" WWW,
			cases[i].text, cases[i].text, cases[i].text);
		ASSERT_EQ(0, load(_metadata, conf, &cfg, err, sizeof(err))) TH_LOG("%s", err);
		EXPECT_EQ(cases[i].s, cfg->dns_max_ttl) TH_LOG("%s", cases[i].text);
		EXPECT_EQ(cases[i].s, cfg->dns_min_ttl);
		EXPECT_EQ(cases[i].s, cfg->dns_negative_ttl);
		config_free(cfg);
	}
}

TEST(rejects_bad_dns_ttls)
{
	static const struct bad cases[] = {
		{ "[danced]\ndns_max_ttl = 1500ms\n" WWW, 2,
		  "dns_max_ttl: '1500ms' is not a whole number of seconds" },
		{ "[danced]\ndns_max_ttl = 25h\n" WWW, 2,
		  "dns_max_ttl: '25h' is out of range (allowed: 0s..24h)" },
		{ "[danced]\ndns_max_ttl = 86401\n" WWW, 2, "'86401' is out of range" },
		{ "[danced]\ndns_max_ttl = 1d\n" WWW, 2,
		  "dns_max_ttl: '1d' is not a duration (use 30s, 5m or 1h)" },
		{ "[danced]\ndns_negative_ttl = -5\n" WWW, 2, "'-5' is not a duration" },
		{ "[danced]\ndns_min_ttl = 99999999999999999999h\n" WWW, 2, "is out of range" },
		{ "[danced]\ndns_min_ttl = 4294967296\n" WWW, 2, "is out of range" },
		{ "[danced]\ndns_min_ttl = 1.5h\n" WWW, 2, "is not a duration" },
		/* Against each other, at the later line; the default maximum is 1h. */
		{ "[danced]\ndns_min_ttl = 2h\n" WWW, 2,
		  "dns_min_ttl = 2h is above dns_max_ttl = 1h (the default)" },
		{ "[danced]\ndns_min_ttl = 10m\nlog_level = info\ndns_max_ttl = 5m\n" WWW, 4,
		  "dns_min_ttl = 10m is above dns_max_ttl = 5m" },
		{ "[danced]\ndns_max_ttl = 0\nlog_level = info\ndns_negative_ttl = 1s\n" WWW, 4,
		  "dns_negative_ttl = 1s is above dns_max_ttl = 0s" },
		{ "[danced]\ndns_max_ttl = 1m\n" WWW, 2,
		  "dns_negative_ttl = 5m is above dns_max_ttl = 1m" },
		/* dns_min_ttl is a floor for negative answers as well. */
		{ "[danced]\ndns_min_ttl = 10m\n" WWW, 2,
		  "dns_min_ttl = 10m is above dns_negative_ttl = 5m (the default)" },
		{ "[danced]\ndns_negative_ttl = 1m\nlog_level = info\ndns_min_ttl = 2m\n" WWW, 4,
		  "dns_min_ttl = 2m is above dns_negative_ttl = 1m" },
	};

	expect_rejected(_metadata, cases, ARRAY_SIZE(cases));
}

TEST(rejects_bad_codepoints_and_flags)
{
	static const struct bad cases[] = {
		{ "[danced]\ndns_cache_size = 15\n" WWW, 2,
		  "dns_cache_size: 15 is out of range (allowed: 16..10000000)" },
		{ "[danced]\ndns_cache_size = 10000001\n" WWW, 2, "10000001 is out of range" },
		{ "[danced]\ndane_clientid_codepoint = 0\n" WWW, 2,
		  "dane_clientid_codepoint: 0 is out of range (allowed: 1..65535)" },
		{ "[danced]\ndane_clientid_codepoint = 65536\n" WWW, 2, "65536 is out of range" },
		{ "[danced]\ndane_clientid_codepoint = 0xff02\n" WWW, 2,
		  "'0xff02' is not a number" },
		{ "[danced]\ndane_clientid_codepoint = 65281\n" WWW, 2,
		  "dane_clientid_codepoint: 65281 is renegotiation_info, an extension OpenSSL "
		  "handles itself; pick an unused one, such as 65282 (private use)" },
		{ "[danced]\ndane_clientid_codepoint = 16\n" WWW, 2,
		  "16 is application_layer_protocol_negotiation, an extension OpenSSL handles" },
		{ "[danced]\ndane_clientid_codepoint = 10\n" WWW, 2, "10 is supported_groups" },
		{ "[danced]\ndane_clientid_codepoint = 11\n" WWW, 2, "11 is ec_point_formats" },
		{ "[danced]\ndane_clientid_codepoint = 13\n" WWW, 2, "13 is signature_algorithms" },
		{ "[danced]\ndane_clientid_codepoint = 41\n" WWW, 2, "41 is pre_shared_key" },
		{ "[danced]\ndane_clientid_codepoint = 42\n" WWW, 2, "42 is early_data" },
		{ "[danced]\ndane_clientid_codepoint = 43\n" WWW, 2, "43 is supported_versions" },
		{ "[danced]\ndane_clientid_codepoint = 44\n" WWW, 2, "44 is cookie" },
		{ "[danced]\ndane_clientid_codepoint = 45\n" WWW, 2,
		  "45 is psk_key_exchange_modes" },
		{ "[danced]\ndane_clientid_codepoint = 51\n" WWW, 2, "51 is key_share" },
		{ "[danced]\ntls_flags_codepoint = 0\n" WWW, 2,
		  "tls_flags_codepoint: 0 is out of range (allowed: 1..65535)" },
		{ "[danced]\ntls_flags_codepoint = 43\n" WWW, 2,
		  "tls_flags_codepoint: 43 is supported_versions, an extension OpenSSL handles" },
		{ "[danced]\ntls_flags_codepoint = 65281\n" WWW, 2, "65281 is renegotiation_info" },
		{ "[danced]\ndane_clientid_codepoint = 62\n" WWW, 2,
		  "dane_clientid_codepoint and tls_flags_codepoint are both 62: two extensions "
		  "cannot share a codepoint" },
		{ "[danced]\ntls_flags_codepoint = 65282\n" WWW, 2,
		  "both 65282: two extensions cannot share a codepoint" },
		{ "[danced]\ntls_flags_codepoint = 70\nlog_level = info\n"
		  "dane_clientid_codepoint = 70\n" WWW,
		  4, "both 70" },
		{ "[danced]\nrequest_client_auth_flag = 2040\n" WWW, 2,
		  "request_client_auth_flag: 2040 is out of range (allowed: 0..2039)" },
		{ "[danced]\nrequest_client_auth_flag = -1\n" WWW, 2,
		  "request_client_auth_flag: -1 is negative (allowed: 0..2039)" },
		{ "[danced]\nrequest_client_auth_flag = 65616\n" WWW, 2, "65616 is out of range" },
	};

	expect_rejected(_metadata, cases, ARRAY_SIZE(cases));
}

TEST(accepts_free_codepoints_and_flag_bounds)
{
	struct config *cfg = NULL;
	char err[512];

	ASSERT_EQ(0, load(_metadata,
			  "[danced]\ndane_clientid_codepoint = 65535\ntls_flags_codepoint = 2\n"
			  "request_client_auth_flag = 0\n" WWW,
			  &cfg, err, sizeof(err)))
	TH_LOG("%s", err);
	EXPECT_EQ(65535, cfg->dane_clientid_codepoint);
	EXPECT_EQ(2, cfg->tls_flags_codepoint);
	EXPECT_EQ(0, cfg->request_client_auth_flag);
	config_free(cfg);
}

TEST(parses_dane_names_and_identity)
{
	struct config *cfg = NULL;
	char err[512];

	ASSERT_EQ(0, load(_metadata,
			  WWW "tls_min = 1.3\ndane = required\n"
			      "dane_names = _Device.EXAMPLE.com., xn--bcher-kva.example\n"
			      "dane_names = a_b.c-d.0.example\tdevice.example.net\n"
			      "[service out]\nrole = client\ncertificate = /c\nkey = /k\nca = /ca\n"
			      "identity = XN--bcher-kva._device.example.com\n",
			  &cfg, err, sizeof(err)))
	TH_LOG("%s", err);
	ASSERT_EQ(4u, cfg->svcs[0].n_dane_names);
	EXPECT_STREQ("_device.example.com", cfg->svcs[0].dane_names[0]);
	EXPECT_STREQ("xn--bcher-kva.example", cfg->svcs[0].dane_names[1]);
	EXPECT_STREQ("a_b.c-d.0.example", cfg->svcs[0].dane_names[2]);
	EXPECT_STREQ("device.example.net", cfg->svcs[0].dane_names[3]);
	EXPECT_STREQ("xn--bcher-kva._device.example.com", cfg->svcs[1].identity);
	EXPECT_EQ(0u, cfg->n_warnings);
	config_free(cfg);
}

TEST(rejects_bad_dane_names_and_identities)
{
	static const struct bad cases[] = {
		{ WWW "dane_names = *\n", 4,
		  "dane_names: '*' has a '*': wildcards are not allowed (use names or suffixes "
		  "such as _device.example.com)" },
		{ WWW "dane_names = *._device.example.com\n", 4,
		  "'*._device.example.com' has a '*'" },
		{ WWW "dane_names = .\n", 4,
		  "dane_names: '.' is the root, which would allow every name" },
		{ WWW "dane_names = example..com\n", 4, "'example..com' has an empty label" },
		{ WWW "dane_names = .example.com\n", 4, "'.example.com' has an empty label" },
		{ WWW "dane_names = example.com..\n", 4, "has an empty label" },
		{ WWW "dane_names = dev!ce.example.com\n", 4,
		  "'dev!ce.example.com' has a character other than letters, digits, '-' and '_'" },
		{ WWW "dane_names = b\xc3\xbc"
		      "cher.example\n",
		  4, "has a character other than" },
		{ WWW "dane_names = "
		      "x123456789012345678901234567890123456789012345678901234567890123.example\n",
		  4, "has a label longer than 63 octets" },
		{ OUT "identity = *.example.com\n", 5,
		  "identity: '*.example.com' has a '*': wildcards are not allowed (use the TLSA "
		  "owner name, such as sensor7._device.example.com)" },
		{ OUT "identity = .\n", 5, "identity: '.' is the root, not a client's name" },
		{ OUT "identity = a..example\n", 5, "identity: 'a..example' has an empty label" },
		{ OUT "identity = sensor 7.example\n", 5,
		  "'sensor 7.example' has a character other than" },
		{ OUT "identity = sensor7@example.com\n", 5, "has a character other than" },
		{ OUT "identity = "
		      "x123456789012345678901234567890123456789012345678901234567890123.example\n",
		  5, "has a label longer than 63 octets" },
		{ OUT "identity = a.example\nidentity = b.example\n", 6,
		  "duplicate key 'identity' in [service out] (first set at line 5)" },
	};

	expect_rejected(_metadata, cases, ARRAY_SIZE(cases));
}

/* A name longer than a line can hold is refused as a line, never cut short. */
TEST(rejects_names_longer_than_a_line)
{
	char conf[3][1024], name[300];
	struct bad cases[3];
	size_t i;

	for (i = 0; i < 250; i++)
		name[i] = i % 50 == 49 ? '.' : 'a';
	name[250] = '\0';
	snprintf(conf[0], sizeof(conf[0]), WWW "dane_names = %s\n", name);
	cases[0] = (struct bad){ conf[0], 4, "line longer than 197 bytes" };
	snprintf(conf[1], sizeof(conf[1]), OUT "identity = %s\n", name);
	cases[1] = (struct bad){ conf[1], 5, "line longer than 197 bytes" };
	snprintf(conf[2], sizeof(conf[2]), "[danced]\ndns_stub = %s. 192.0.2.1\n" WWW, name);
	cases[2] = (struct bad){ conf[2], 2, "line longer than 197 bytes" };
	expect_rejected(_metadata, cases, ARRAY_SIZE(cases));
}

TEST(enforces_dane_rules)
{
	static const struct bad cases[] = {
		/* Roles. */
		{ OUT "dane = required\n", 5,
		  "[service out]: dane is not for role = client; use identity to present a DANE "
		  "name, or verify = dane to check the server by DANE" },
		{ OUT "dane_names = example.com\n", 5,
		  "[service out]: dane_names is not for role = client" },
		{ OUT "dane_tls12_legacy = no\n", 5, "dane_tls12_legacy is not for role = client" },
		{ OUT "request_client_auth = yes\n", 5,
		  "request_client_auth is not for role = client" },
		{ WWW "identity = a.example\n", 4,
		  "[service www]: identity is not for role = server; use dane and dane_names" },
		{ WWW "verify = dane\n", 4, "verify is not for role = server; use client_auth" },
		/* A server's DANE. */
		{ WWW "tls_min = 1.3\ndane = optional\n", 5,
		  "[service www]: dane = optional needs dane_names, the client names it allows "
		  "(checked before any DNS query)" },
		{ WWW "dane = required\ndane_names = example.com\n", 4,
		  "[service www]: dane = required: DANE client authentication needs TLS 1.3 (set "
		  "tls_min = 1.3), or dane_tls12_legacy = yes for the old drafts' weaker TLS 1.2 "
		  "signal" },
		{ WWW "dane = required\ndane_names = example.com\ntls_min = 1.2\n", 6,
		  "DANE client authentication needs TLS 1.3 (set tls_min = 1.3)" },
		{ WWW "dane = optional\ndane_names = example.com\ntls_max = 1.2\n", 6,
		  "[service www]: dane = optional with tls_max = 1.2 never happens: DANE client "
		  "authentication needs TLS 1.3 (set tls_max = 1.3), or dane_tls12_legacy = yes" },
		{ WWW "dane_tls12_legacy = yes\n", 4,
		  "[service www]: dane_tls12_legacy = yes needs dane = optional or required" },
		{ WWW "dane = off\ndane_tls12_legacy = on\n", 5,
		  "dane_tls12_legacy = yes needs dane" },
		{ WWW "ca = /ca\nclient_auth = required\ntls_min = 1.3\ndane = required\n"
		      "dane_names = example.com\n",
		  5,
		  "[service www]: client_auth = required is never used with dane = required, where "
		  "DANE authenticates every client (remove it, or use dane = optional to fall back "
		  "to it)" },
		{ WWW "ca = /ca\nclient_auth = optional\ntls_min = 1.3\ndane = required\n"
		      "dane_names = example.com\n",
		  5, "client_auth = optional is never used with dane = required" },
		{ WWW "ca = /ca\nclient_auth = after\ntls_min = 1.3\ndane = required\n"
		      "dane_names = example.com\n",
		  5, "client_auth = after is never used with dane = required" },
		/* dane = optional falls back to client_auth, which still needs its ca. */
		{ WWW "client_auth = required\ntls_min = 1.3\ndane = optional\n"
		      "dane_names = example.com\n",
		  4, "client_auth = required needs ca" },
		/* No anchor at all: nothing could ever be DNSSEC-secure. */
		{ "[danced]\ndns_trust_anchor_file = none\n" WWW "tls_min = 1.3\ndane = optional\n"
		  "dane_names = example.com\n",
		  7,
		  "[service www]: dane = optional needs a DNSSEC trust anchor, but "
		  "dns_trust_anchor_file = none and there is no dns_trust_anchor" },
		/* A client's DANE. */
		{ "[danced]\ndns_trust_anchor_file = none\n[service out]\nrole = client\n"
		  "verify = dane\n",
		  5, "[service out]: verify = dane needs a DNSSEC trust anchor" },
		{ "[danced]\ndns_trust_anchor_file = none\n[service out]\nrole = client\nca = /ca\n"
		  "verify = dane-or-pkix\n",
		  6, "[service out]: verify = dane-or-pkix needs a DNSSEC trust anchor" },
		{ "[service out]\nrole = client\nverify = dane-or-pkix\n", 3,
		  "[service out]: verify = dane-or-pkix needs ca, the CA bundle for servers whose "
		  "zone is unsigned or has no TLSA records" },
		{ "[service out]\nrole = client\nca = /ca\nidentity = sensor7._device.example.com\n",
		  4,
		  "[service out]: identity needs certificate and key, which the server matches "
		  "against the TLSA records at sensor7._device.example.com" },
		{ OUT "identity = a.example\ntls_max = 1.2\nverify = none\n", 6,
		  "[service out]: identity needs TLS 1.3 (tls_max = 1.3): the name travels in the "
		  "TLS 1.3 Certificate message" },
	};

	expect_rejected(_metadata, cases, ARRAY_SIZE(cases));
}

TEST(accepts_dane_variants)
{
	struct config *cfg = NULL;
	char err[512];

	/* Optional DANE over TLS 1.2 and 1.3: a TLS 1.2 client falls back to client_auth. */
	ASSERT_EQ(0, load(_metadata, WWW "dane = optional\ndane_names = example.com\n", &cfg, err,
			  sizeof(err)))
	TH_LOG("%s", err);
	EXPECT_EQ(DANE_OPTIONAL, (int)cfg->svcs[0].dane);
	EXPECT_EQ(0u, cfg->n_warnings);
	config_free(cfg);
	/* Required DANE over TLS 1.2 with the legacy signal; no ca, no client_auth. */
	ASSERT_EQ(0, load(_metadata,
			  WWW "dane = required\ndane_names = example.com\ndane_tls12_legacy = yes\n"
			      "client_auth = none\n",
			  &cfg, err, sizeof(err)))
	TH_LOG("%s", err);
	EXPECT_EQ(DANE_REQUIRED, (int)cfg->svcs[0].dane);
	EXPECT_TRUE(cfg->svcs[0].dane_tls12_legacy);
	EXPECT_EQ(NULL, cfg->svcs[0].ca);
	config_free(cfg);
	/* Anchored only by dns_trust_anchor lines. */
	ASSERT_EQ(0, load(_metadata,
			  "[danced]\ndns_trust_anchor_file = none\ndns_trust_anchor = " DS_KEYMGR
			  "\n" WWW "tls_min = 1.3\ndane = required\ndane_names = corp.example\n"
			  "[service out]\nrole = client\nverify = dane\n",
			  &cfg, err, sizeof(err)))
	TH_LOG("%s", err);
	EXPECT_EQ(VERIFY_DANE, (int)cfg->svcs[1].verify);
	config_free(cfg);
	/* dane-or-pkix with its ca. */
	ASSERT_EQ(0,
		  load(_metadata, "[service out]\nrole = client\nca = /ca\nverify = dane-or-pkix\n",
		       &cfg, err, sizeof(err)))
	TH_LOG("%s", err);
	EXPECT_EQ(VERIFY_DANE_OR_PKIX, (int)cfg->svcs[0].verify);
	EXPECT_EQ(0u, cfg->n_warnings);
	config_free(cfg);
}

TEST(warns_about_dane_settings_that_do_nothing)
{
	struct config *cfg = NULL;
	char err[512];

	ASSERT_EQ(0, load(_metadata,
			  "[danced]\ndns_trust_anchor_file = none\n"
			  "dns_trust_anchor = " DS_KEYMGR "\n"
			  "dns_stub = corp.example. 192.0.2.1\n" /* anchored */
			  "dns_stub = a.b.corp.example. 192.0.2.1\n" /* below an anchor */
			  "dns_stub = example. 192.0.2.1\n" /* holds an anchored zone */
			  "dns_stub = other.example. 192.0.2.1\n" /* 7: no anchor */
			  "dns_stub = xcorp.example. 192.0.2.1\n" /* 8: no anchor either */
			  "[service a]\ncertificate = /c\nkey = /k\ntls_min = 1.3\n"
			  "dane = required\ndane_names = corp.example\n"
			  "dane_tls12_legacy = yes\n" /* 15 */
			  "[service b]\ncertificate = /c\nkey = /k\n"
			  "dane_names = corp.example\n", /* 19 */
			  &cfg, err, sizeof(err)))
	TH_LOG("%s", err);
	ASSERT_EQ(4u, cfg->n_warnings);
	EXPECT_NE(NULL, strstr(cfg->warnings[0],
			       ":7: dns_stub: no dns_trust_anchor covers other.example. and "
			       "dns_trust_anchor_file = none, so none of its answers can be "
			       "DNSSEC-secure"))
	TH_LOG("%s", cfg->warnings[0]);
	EXPECT_NE(NULL, strstr(cfg->warnings[1], ":8: dns_stub: no dns_trust_anchor covers"
						 " xcorp.example."))
	TH_LOG("%s", cfg->warnings[1]);
	EXPECT_NE(NULL, strstr(cfg->warnings[2], ":15: [service a]: dane_tls12_legacy = yes does"
						 " nothing with tls_min = 1.3"))
	TH_LOG("%s", cfg->warnings[2]);
	EXPECT_NE(NULL, strstr(cfg->warnings[3],
			       ":19: [service b]: dane_names does nothing with dane = off"))
	TH_LOG("%s", cfg->warnings[3]);
	config_free(cfg);
}

TEST(accepts_indentation_crlf_bom_and_comments)
{
	static const char conf[] = "\xef\xbb\xbf# a comment\r\n"
				   "; another\r\n"
				   "  [danced]   ; trailing comment\r\n"
				   "\tworkers = 2 ; two\r\n"
				   "    max_handshakes   =   7\r\n"
				   "\r\n"
				   "   [service www]\r\n"
				   "      certificate = /etc/danced/www.pem\r\n"
				   "      key = /etc/danced/www.key\r\n"
				   "      ciphers = HIGH;!aNULL\r\n"
				   "      alpn = h2 , http/1.1\r\n"
				   "      server_names = a.example,\tb.example\r\n";
	struct config *cfg = NULL;
	char err[512];

	ASSERT_EQ(0, load(_metadata, conf, &cfg, err, sizeof(err))) TH_LOG("%s", err);
	EXPECT_EQ(2u, cfg->workers);
	EXPECT_EQ(7u, cfg->max_handshakes);
	EXPECT_STREQ("/etc/danced/www.pem", cfg->svcs[0].certificate);
	/* Indented lines are keys, not libinih's continuations of the line before. */
	EXPECT_STREQ("/etc/danced/www.key", cfg->svcs[0].key);
	EXPECT_STREQ("HIGH;!aNULL", cfg->svcs[0].ciphers); /* ';' only after a space */
	EXPECT_STREQ("h2,http/1.1", cfg->svcs[0].alpn);
	EXPECT_EQ(2u, cfg->svcs[0].n_server_names);
	config_free(cfg);
}

TEST(warns_about_verify_none)
{
	struct config *cfg = NULL;
	char err[512];

	ASSERT_EQ(0, load(_metadata, WWW "[service out]\nrole = client\nverify = none\n", &cfg, err,
			  sizeof(err)))
	TH_LOG("%s", err);
	EXPECT_EQ(VERIFY_NONE, (int)cfg->svcs[1].verify);
	ASSERT_EQ(1u, cfg->n_warnings);
	EXPECT_NE(NULL, strstr(cfg->warnings[0], ":6: [service out]: verify = none:"))
	TH_LOG("%s", cfg->warnings[0]);
	EXPECT_NE(NULL, strstr(cfg->warnings[0], "/tmp/danced-conf-"));
	config_free(cfg);
}

TEST(finds_services_by_name)
{
	struct config *cfg = NULL;
	char err[512];

	ASSERT_EQ(0, load(_metadata, full_conf, &cfg, err, sizeof(err))) TH_LOG("%s", err);
	EXPECT_EQ(&cfg->svcs[0], config_service(cfg, "www"));
	EXPECT_EQ(&cfg->svcs[2], config_service(cfg, "out"));
	EXPECT_EQ(NULL, config_service(cfg, "WWW"));
	EXPECT_EQ(NULL, config_service(cfg, ""));
	EXPECT_EQ(NULL, config_service(cfg, "nope"));
	EXPECT_EQ(NULL, config_service(cfg, NULL));
	config_free(cfg);
	config_free(NULL);
}

TEST(rejects_nul_bytes)
{
	/* libinih alone would read "/good" and drop the rest of the line. */
	static const char conf[] = "[danced]\nsocket = /good\0/evil\n" WWW;
	struct config *cfg = NULL;
	char err[512];

	EXPECT_EQ(-EINVAL, load_bytes(_metadata, conf, sizeof(conf) - 1, &cfg, err, sizeof(err)));
	EXPECT_EQ(NULL, cfg);
	EXPECT_NE(NULL, strstr(err, ":2: NUL byte in column 15")) TH_LOG("%s", err);
}

TEST(rejects_control_characters)
{
	struct bad cases[] = {
		{ "[danced]\nsocket = /run/\x1b[31m.sock\n" WWW, 2,
		  "control character 0x1b in column 15" },
		{ "[danced]\nsocket = /run/a\rb.sock\n" WWW, 2, "control character 0x0d" },
		{ "[danced]\nsocket = /run/a\x7f.sock\n" WWW, 2, "control character 0x7f" },
	};

	expect_rejected(_metadata, cases, ARRAY_SIZE(cases));
}

TEST(rejects_binary_garbage)
{
	unsigned char junk[65536];
	struct config *cfg;
	char err[512];
	unsigned int seed;
	size_t i;
	int ret;

	for (seed = 1; seed <= 20; seed++) {
		srandom(seed);
		for (i = 0; i < sizeof(junk); i++)
			junk[i] = random();
		cfg = (struct config *)1;
		ret = load_bytes(_metadata, junk, sizeof(junk), &cfg, err, sizeof(err));
		EXPECT_EQ(-EINVAL, ret) TH_LOG("seed %u: %s", seed, err);
		EXPECT_EQ(NULL, cfg);
		EXPECT_NE(NULL, strstr(err, "/tmp/danced-conf-")) TH_LOG("%s", err);
	}
}

TEST(rejects_an_overlong_line_instead_of_splitting_it)
{
	char *conf, err[512];
	struct config *cfg = NULL;
	size_t n;

	/*
	 * libinih alone splits a line this long in two and parses both parts as lines; the
	 * second could be "user = root". It must be an error.
	 */
	conf = malloc(300 + 100 * 1024);
	ASSERT_NE(NULL, conf);
	n = sprintf(conf, WWW "ciphers = ");
	memset(conf + n, 'x', 184);
	n += 184;
	n += sprintf(conf + n, "user = root\n");
	EXPECT_EQ(-EINVAL, load(_metadata, conf, &cfg, err, sizeof(err)));
	EXPECT_NE(NULL, strstr(err, ":4: line longer than 197 bytes")) TH_LOG("%s", err);

	/* Exactly 197 bytes is a line. */
	n = sprintf(conf, WWW "ciphers = ");
	memset(conf + n, 'x', 187);
	n += 187;
	n += sprintf(conf + n, "\r\n");
	ASSERT_EQ(0, load(_metadata, conf, &cfg, err, sizeof(err))) TH_LOG("%s", err);
	EXPECT_EQ(187u, strlen(cfg->svcs[0].ciphers));
	config_free(cfg);
	cfg = NULL;

	/* 100 KB, without and with a newline at the end. */
	n = sprintf(conf, "[danced]\n\n# comment\nsocket = /");
	memset(conf + n, 'a', 100 * 1024);
	n += 100 * 1024;
	conf[n] = '\0';
	EXPECT_EQ(-EINVAL, load(_metadata, conf, &cfg, err, sizeof(err)));
	EXPECT_NE(NULL, strstr(err, ":4: line longer than 197 bytes")) TH_LOG("%s", err);
	strcpy(conf + n, "\n" WWW);
	EXPECT_EQ(-EINVAL, load(_metadata, conf, &cfg, err, sizeof(err)));
	EXPECT_NE(NULL, strstr(err, ":4: line longer than 197 bytes")) TH_LOG("%s", err);
	EXPECT_EQ(NULL, cfg);
	free(conf);
}

TEST(rejects_ten_thousand_sections)
{
	size_t len = 10000 * 48, n = 0, i;
	char *conf = malloc(len), err[512];
	struct config *cfg = NULL;

	ASSERT_NE(NULL, conf);
	for (i = 0; i < 10000; i++)
		n += snprintf(conf + n, len - n, "[service s%zu]\ncertificate = /c\nkey = /k\n", i);
	EXPECT_EQ(-EINVAL, load(_metadata, conf, &cfg, err, sizeof(err)));
	EXPECT_NE(NULL, strstr(err, ":193: too many services: at most 64")) TH_LOG("%s", err);
	/* Empty sections are sections too. */
	for (i = 0, n = 0; i < 10000; i++)
		n += snprintf(conf + n, len - n, "[service s%zu]\n", i);
	EXPECT_EQ(-EINVAL, load(_metadata, conf, &cfg, err, sizeof(err)));
	EXPECT_NE(NULL, strstr(err, ":65: too many services")) TH_LOG("%s", err);
	EXPECT_EQ(NULL, cfg);
	free(conf);
}

TEST(refuses_a_directory)
{
	struct config *cfg = (struct config *)1;
	char err[512];

	EXPECT_EQ(-EISDIR, config_load("/tmp", &cfg, err, sizeof(err)));
	EXPECT_EQ(NULL, cfg);
	EXPECT_STREQ("/tmp: is a directory, not a configuration file", err);
}

TEST(refuses_devices_and_fifos)
{
	struct config *cfg = (struct config *)1;
	char err[512], dir[64], path[96];

	EXPECT_EQ(-EINVAL, config_load("/dev/zero", &cfg, err, sizeof(err)));
	EXPECT_EQ(NULL, cfg);
	EXPECT_STREQ("/dev/zero: not a regular file", err);
	/* Opening a FIFO with no writer must not hang. */
	strcpy(dir, "/tmp/danced-fifo-XXXXXX");
	ASSERT_NE(NULL, mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/danced.conf", dir);
	ASSERT_EQ(0, mkfifo(path, 0600));
	EXPECT_EQ(-EINVAL, config_load(path, &cfg, err, sizeof(err)));
	EXPECT_NE(NULL, strstr(err, "/danced.conf: not a regular file"));
	unlink(path);
	rmdir(dir);
}

TEST(missing_file_is_enoent)
{
	struct config *cfg = (struct config *)1;
	char err[512];

	EXPECT_EQ(-ENOENT, config_load("/nonexistent/danced.conf", &cfg, err, sizeof(err)));
	EXPECT_EQ(NULL, cfg);
	EXPECT_STREQ("/nonexistent/danced.conf: No such file or directory", err);
}

TEST(unreadable_file_is_eacces)
{
	struct config *cfg = (struct config *)1;
	char err[512], path[64];
	int status;
	pid_t pid;

	conf_write(_metadata, path, WWW, strlen(WWW));
	ASSERT_EQ(0, chmod(path, 0));
	/* Root reads any file: check as nobody, in a child, so that the test never skips. */
	pid = fork();
	ASSERT_LE(0, pid);
	if (!pid) {
		if (geteuid() == 0 && (setgid(65534) || setuid(65534)))
			_exit(2);
		if (config_load(path, &cfg, err, sizeof(err)) != -EACCES || cfg ||
		    !strstr(err, "Permission denied"))
			_exit(1);
		_exit(0);
	}
	ASSERT_EQ(pid, waitpid(pid, &status, 0));
	EXPECT_TRUE(WIFEXITED(status));
	EXPECT_EQ(0, WEXITSTATUS(status));
	unlink(path);
}

TEST(survives_small_and_missing_error_buffers)
{
	struct config *cfg = NULL;
	char err[8];

	EXPECT_EQ(-EINVAL, load(_metadata, "[nope]\n", &cfg, NULL, 0));
	EXPECT_EQ(-EINVAL, load(_metadata, "[nope]\n", &cfg, err, sizeof(err)));
	EXPECT_EQ(sizeof(err) - 1, strlen(err));
	EXPECT_EQ(-ENOENT, config_load("/nonexistent", &cfg, NULL, 0));
	EXPECT_EQ(0, load(_metadata, WWW, &cfg, NULL, 0));
	config_free(cfg);
}

TEST(limits_default_to_shares_of_the_pool)
{
	struct config *cfg = NULL;
	char err[512];

	/* One service: it may use the whole pool; a source an eighth of it. */
	ASSERT_EQ(0,
		  load(_metadata, "[danced]\nmax_handshakes = 800\n" WWW, &cfg, err, sizeof(err)))
	TH_LOG("%s", err);
	EXPECT_EQ(100U, cfg->source_max_handshakes);
	EXPECT_EQ(0U, cfg->source_rate);
	EXPECT_EQ(800U, cfg->svcs[0].max_handshakes);
	config_free(cfg);
	/* Several: each may use three quarters, so a flooded one leaves room. */
	ASSERT_EQ(0,
		  load(_metadata,
		       "[danced]\nmax_handshakes = 800\nsource_rate = 50\n" WWW
		       "[service b]\ncertificate = /etc/danced/www.pem\nkey = /etc/danced/www.key\n"
		       "max_handshakes = 10\n",
		       &cfg, err, sizeof(err)))
	TH_LOG("%s", err);
	EXPECT_EQ(600U, cfg->svcs[0].max_handshakes);
	EXPECT_EQ(10U, cfg->svcs[1].max_handshakes);
	EXPECT_EQ(50U, cfg->source_rate);
	config_free(cfg);
	/* Out of range: said so, with the range. */
	EXPECT_EQ(-EINVAL, load(_metadata, "[danced]\nsource_max_handshakes = 0\n" WWW, &cfg, err,
				sizeof(err)));
	EXPECT_NE(NULL, strstr(err, "source_max_handshakes: 0 is out of range")) TH_LOG("%s", err);
	EXPECT_EQ(-EINVAL,
		  load(_metadata, "[danced]\nsource_rate = -1\n" WWW, &cfg, err, sizeof(err)));
	EXPECT_NE(NULL, strstr(err, "source_rate: -1 is negative")) TH_LOG("%s", err);
}

/*
 * kernel = yes: one service per role answers the kernel; TLS 1.3 only; and never with
 * user =, which would drop the CAP_NET_ADMIN the kernel's commands need.
 */
TEST(kernel_services_are_checked)
{
	static const struct bad cases[] = {
		{ WWW "kernel = yes\n"
		      "[service two]\ncertificate = /c\nkey = /k\nkernel = yes\n",
		  8,
		  "[service two]: kernel = yes: [service www] already serves the kernel's"
		  " server-role requests; one service per role" },
		{ OUT "verify = none\nkernel = yes\n[service in]\nrole = client\nverify = none\n"
		      "kernel = yes\n",
		  10,
		  "[service in]: kernel = yes: [service out] already serves the kernel's"
		  " client-role requests" },
		{ WWW "tls_max = 1.2\nkernel = yes\n", 5,
		  "[service www]: kernel = yes needs TLS 1.3 (tls_max = 1.3)" },
		{ "[danced]\nuser = daemon\n" WWW "kernel = yes\n", 6,
		  "[service www]: kernel = yes needs CAP_NET_ADMIN for the kernel's handshake"
		  " commands, and user = daemon drops it" },
		{ WWW "kernel = maybe\n", 4, "kernel" },
		{ "[danced]\nkernel = yes\n", 2,
		  "unknown key 'kernel' in [danced]: kernel belongs in"
		  " [service NAME]" },
	};
	char err[512];
	struct config *cfg;

	expect_rejected(_metadata, cases, ARRAY_SIZE(cases));
	/* One per role is fine, and both keys print back. */
	ASSERT_EQ(0, load(_metadata,
			  "[danced]\nkernel_share_with_tlshd = yes\n" WWW "kernel = yes\n"
			  "[service out]\nrole = client\nkernel = yes\nverify = none\n",
			  &cfg, err, sizeof(err)))
	TH_LOG("%s", err);
	EXPECT_TRUE(cfg->kernel_share_with_tlshd);
	EXPECT_TRUE(cfg->svcs[0].kernel);
	EXPECT_TRUE(cfg->svcs[1].kernel);
	config_free(cfg);
	ASSERT_EQ(0, load(_metadata, WWW, &cfg, err, sizeof(err)));
	EXPECT_FALSE(cfg->kernel_share_with_tlshd);
	EXPECT_FALSE(cfg->svcs[0].kernel);
	config_free(cfg);
}

DANCED_HARNESS_MAIN
