// SPDX-License-Identifier: GPL-2.0
/*
 * bench_test.c - a short smoke of dance-bench, the load generator of bench/, so that
 * it cannot rot between benchmark runs: a few handshakes against danced (through
 * dance-echo --http) and against nginx, read back from its JSON summary, on several
 * threads, without a request, and with a raw public key named by DANE; and its errors
 * sorted by kind when the server is not there or refuses. And the other tools
 * `make bench` runs: bulk moves every byte in every mode with danced's kTLS install,
 * floor completes its handshakes in each authentication mode, and cgsplit reads what
 * callgrind wrote.
 */
#include <errno.h>
#include <stdbool.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include <openssl/pem.h>

#include "../harness.h"
#include "../lib/daemon.h"
#include "../lib/dnsfix.h"
#include "../lib/pki.h"

/*
 * danced, and dance-echo --http handing it every connection on a port of its own: 0,
 * or -1 (danced's log, or dance-echo's next to it, says why).
 */
static int serve(struct env *e, int *port, pid_t *server)
{
	char log[160];

	if (danced_start(e))
		return -1;
	*port = free_port();
	snprintf(log, sizeof(log), "%.100s/echo.log", e->dir);
	*server = echo_start(e, *port, log, "--http", "--async", NULL);
	return *server > 0 ? 0 : -1;
}

static void unserve(struct env *e, pid_t server)
{
	if (server > 0) {
		kill(server, SIGTERM);
		waitpid(server, NULL, 0);
	}
	danced_stop(e, SIGTERM);
}

FIXTURE(bench)
{
	struct env e;
	int port;
	pid_t server;
	char out[8192];
};

FIXTURE_SETUP(bench)
{
	signal(SIGPIPE, SIG_IGN);
	ASSERT_EQ(0, env_init(&self->e));
	ASSERT_EQ(0, env_conf(&self->e,
			      "workers = 2\n[service www]\ncertificate = %s\nkey = %s\n"
			      "client_auth = optional\nca = %s\n",
			      self->e.srv_cert, self->e.srv_key, self->e.cli_ca));
	ASSERT_EQ(0, serve(&self->e, &self->port, &self->server)) TH_LOG("log: %s", self->e.log);
}

FIXTURE_TEARDOWN(bench)
{
	unserve(&self->e, self->server);
	env_fini(&self->e);
}

/* dance-bench against @port with @extra options; its JSON summary lands in @out. */
static int bench_run(const struct env *e, char *out, size_t max, int port, char *const extra[])
{
	char p[16], *argv[40];
	int n = 0, i;

	snprintf(p, sizeof(p), "%d", port);
	argv[n++] = (char *)bin("dance-bench");
	argv[n++] = "-p";
	argv[n++] = p;
	argv[n++] = "-a";
	argv[n++] = (char *)e->ca;
	argv[n++] = "-G";
	argv[n++] = "x25519";
	argv[n++] = "--json";
	argv[n++] = "-";
	for (i = 0; extra[i] && n < 39; i++)
		argv[n++] = extra[i];
	argv[n] = NULL;
	memset(out, 0, max);
	return run(argv, NULL, 0, out, max - 1, 120);
}

#define bench(self, port, extra) \
	bench_run(&(self)->e, (self)->out, sizeof((self)->out), port, extra)

/* The integer after "key": in the JSON summary, or -1. */
static long field(const char *json, const char *key)
{
	char pat[64];
	const char *p;

	snprintf(pat, sizeof(pat), "\"%s\":", key);
	p = strstr(json, pat);
	return p ? strtol(p + strlen(pat), NULL, 10) : -1;
}

TEST_F(bench, counts_handshakes_against_danced)
{
	char *closed_loop[] = { "-N", "20", "-c", "4", NULL };
	char *client_cert[] = { "-N", "8", "-c", "2", "-C", self->e.cli_cert, "-K", self->e.cli_key,
				NULL };

	EXPECT_EQ(0, bench(self, self->port, closed_loop)) TH_LOG("%s", self->out);
	EXPECT_EQ(20, field(self->out, "conns")) TH_LOG("%s", self->out);
	EXPECT_EQ(0, field(self->out, "errors")) TH_LOG("%s", self->out);
	EXPECT_NE(NULL, strstr(self->out, "\"p99_9\":")) TH_LOG("%s", self->out);
	/* With a client certificate, which danced verifies (client_auth = optional). */
	EXPECT_EQ(0, bench(self, self->port, client_cert)) TH_LOG("%s", self->out);
	EXPECT_EQ(8, field(self->out, "conns")) TH_LOG("%s", self->out);
	EXPECT_EQ(0, field(self->out, "errors")) TH_LOG("%s", self->out);
}

/* Several threads share the load: together they make exactly the count asked. */
TEST_F(bench, threads_share_the_count)
{
	char *two[] = { "-N", "21", "-c", "4", "-T", "2", NULL };
	char *zero[] = { "-N", "2", "-T", "0", NULL };

	EXPECT_EQ(0, bench(self, self->port, two)) TH_LOG("%s", self->out);
	EXPECT_EQ(21, field(self->out, "conns")) TH_LOG("%s", self->out);
	EXPECT_EQ(2, field(self->out, "threads")) TH_LOG("%s", self->out);
	EXPECT_EQ(0, field(self->out, "errors")) TH_LOG("%s", self->out);
	EXPECT_EQ(2, bench(self, self->port, zero)) TH_LOG("%s", self->out);
}

/*
 * --no-request: the client says close_notify after its handshake, and a connection
 * counts when the server closes in turn: danced hands the socket back, and dance-echo
 * reads the alert through kTLS (or among the pending bytes) and closes.
 */
TEST_F(bench, no_request_counts_when_the_server_closes)
{
	char *quiet[] = { "-N", "10", "-c", "2", "--no-request", NULL };
	char *tls12[] = { "-N", "2",   "-c", "1",	   "--no-request",
			  "-V", "1.2", "-s", "AES128-SHA", NULL };

	EXPECT_EQ(0, bench(self, self->port, quiet)) TH_LOG("%s", self->out);
	EXPECT_EQ(10, field(self->out, "conns")) TH_LOG("%s", self->out);
	EXPECT_EQ(0, field(self->out, "errors")) TH_LOG("%s", self->out);
	/* A handshake that fails is still a handshake error, request or not. */
	EXPECT_EQ(1, bench(self, self->port, tls12)) TH_LOG("%s", self->out);
	EXPECT_EQ(2, field(self->out, "handshake")) TH_LOG("%s", self->out);
}

/* Open loop: a fixed arrival rate, counted from when each connection was due. */
TEST_F(bench, open_loop_keeps_its_rate)
{
	char *open_loop[] = { "-r", "20", "-N", "10", "-c", "10", NULL };

	EXPECT_EQ(0, bench(self, self->port, open_loop)) TH_LOG("%s", self->out);
	EXPECT_EQ(10, field(self->out, "conns")) TH_LOG("%s", self->out);
	EXPECT_EQ(20, field(self->out, "offered_rate")) TH_LOG("%s", self->out);
	/* Ten due 50 ms apart take at least 450 ms, however fast the server. */
	EXPECT_LE(0.45, strtod(strstr(self->out, "\"secs\":") + 7, NULL)) TH_LOG("%s", self->out);
}

/*
 * A timed run ends with connections in flight: the clock cut them off, they did not
 * fail. A counted run whose guard time runs out did fail them.
 */
TEST_F(bench, a_timed_run_cuts_off_without_errors)
{
	char *timed[] = { "-t", "2", "-c", "8", NULL };
	char *guarded[] = { "-N", "1000000", "-c", "4", "-t", "2", NULL };

	EXPECT_EQ(0, bench(self, self->port, timed)) TH_LOG("%s", self->out);
	EXPECT_LT(0, field(self->out, "conns")) TH_LOG("%s", self->out);
	EXPECT_EQ(0, field(self->out, "errors")) TH_LOG("%s", self->out);
	EXPECT_LE(0, field(self->out, "cut_off")) TH_LOG("%s", self->out);
	EXPECT_GE(8, field(self->out, "cut_off")) TH_LOG("%s", self->out);
	/* A million handshakes do not fit in two seconds: the rest in flight are errors. */
	EXPECT_EQ(0, bench(self, self->port, guarded)) TH_LOG("%s", self->out);
	EXPECT_LT(0, field(self->out, "unfinished")) TH_LOG("%s", self->out);
	EXPECT_EQ(field(self->out, "unfinished"), field(self->out, "errors"))
	TH_LOG("%s", self->out);
	EXPECT_EQ(0, field(self->out, "cut_off")) TH_LOG("%s", self->out);
}

TEST_F(bench, counts_handshakes_against_nginx)
{
	char conf[256], dir[160], log[200], *extra[] = { "-N", "20", "-c", "4", NULL };
	int port = free_port();
	pid_t nginx;
	FILE *f;

	snprintf(dir, sizeof(dir), "%.100s/nginx", self->e.dir);
	ASSERT_EQ(0, mkdir(dir, 0700));
	snprintf(conf, sizeof(conf), "%.100s/nginx.conf", self->e.dir);
	f = fopen(conf, "w");
	ASSERT_NE(NULL, f);
	fprintf(f,
		"daemon off;\nmaster_process off;\nuser root;\nerror_log %s/error.log;\n"
		"pid %s/nginx.pid;\nevents { worker_connections 256; }\n"
		"http {\n access_log off;\n client_body_temp_path %s; proxy_temp_path %s;\n"
		" fastcgi_temp_path %s; uwsgi_temp_path %s; scgi_temp_path %s;\n"
		" server {\n  listen 127.0.0.1:%d ssl;\n  ssl_certificate %s;\n"
		"  ssl_certificate_key %s;\n  ssl_protocols TLSv1.3;\n"
		"  location / { return 200 \"ok\\n\"; }\n }\n}\n",
		dir, dir, dir, dir, dir, dir, dir, port, self->e.srv_cert, self->e.srv_key);
	fclose(f);
	{
		char *argv[] = {
			"/usr/sbin/nginx", "-p", dir, "-c", conf, "-e", "/dev/stderr", NULL
		};

		snprintf(log, sizeof(log), "%.150s/nginx.log", dir);
		nginx = spawn(argv, log);
	}
	ASSERT_LT(0, nginx);
	ASSERT_EQ(0, wait_connectable(NULL, port, 10000)) TH_LOG("nginx's log: %s", log);
	EXPECT_EQ(0, bench(self, port, extra)) TH_LOG("%s", self->out);
	EXPECT_EQ(20, field(self->out, "conns")) TH_LOG("%s", self->out);
	EXPECT_EQ(0, field(self->out, "errors")) TH_LOG("%s", self->out);
	kill(nginx, SIGTERM);
	waitpid(nginx, NULL, 0);
}

/* Failures are counted by kind, and no connection served is a failed run. */
TEST_F(bench, errors_are_sorted_by_kind)
{
	char *extra[] = { "-N", "5", "-c", "1", NULL };
	char *tls12[] = { "-N", "3", "-c", "1", "-V", "1.2", "-s", "AES128-SHA", NULL };
	char *bad[] = { "-p", "0", NULL };
	char *rpk_alone[] = { "-N", "1", "--rpk", NULL };
	char *not_an_address[] = { "-N", "1", "-A", "localhost", NULL };

	/* Nobody listens there. */
	EXPECT_EQ(1, bench(self, free_port(), extra)) TH_LOG("%s", self->out);
	EXPECT_EQ(0, field(self->out, "conns")) TH_LOG("%s", self->out);
	EXPECT_EQ(5, field(self->out, "connect")) TH_LOG("%s", self->out);
	/* A suite danced does not offer: the handshake fails. */
	EXPECT_EQ(1, bench(self, self->port, tls12)) TH_LOG("%s", self->out);
	EXPECT_EQ(3, field(self->out, "handshake")) TH_LOG("%s", self->out);
	/* Bad usage: no port; a raw public key with no key to take it from. */
	EXPECT_EQ(2, bench(self, self->port, bad)) TH_LOG("%s", self->out);
	EXPECT_EQ(2, bench(self, self->port, rpk_alone)) TH_LOG("%s", self->out);
	EXPECT_EQ(2, bench(self, self->port, not_an_address)) TH_LOG("%s", self->out);
	EXPECT_NE(NULL, strstr(self->out, "not an IPv4 or IPv6 address")) TH_LOG("%s", self->out);
}

/* The value after "key=" in a line of key=value words, or -1. */
static double word(const char *line, const char *key)
{
	char pat[64];
	const char *p;

	snprintf(pat, sizeof(pat), " %s=", key);
	if (!strncmp(line, pat + 1, strlen(pat + 1)))
		return strtod(line + strlen(pat + 1), NULL);
	p = strstr(line, pat);
	return p ? strtod(p + strlen(pat), NULL) : -1;
}

/*
 * bulk, one megabyte each way, every mode, with AES-GCM and ChaCha20-Poly1305: the
 * receiver checks every byte, so exit 0 means the stream arrived whole through kTLS.
 */
TEST_F(bench, bulk_moves_every_byte_in_each_mode)
{
	static const char *const modes[] = { "send", "sendfile", "ssl-write", "recv", "ssl-read" };
	static const char *const suites[] = { "TLS_AES_128_GCM_SHA256",
					      "TLS_CHACHA20_POLY1305_SHA256" };
	unsigned int i, j;

	for (j = 0; j < 2; j++) {
		for (i = 0; i < 5; i++) {
			char *argv[] = { (char *)bin("bulk"),
					 "-c",
					 self->e.srv_cert,
					 "-k",
					 self->e.srv_key,
					 "-m",
					 (char *)modes[i],
					 "-s",
					 (char *)suites[j],
					 "-M",
					 "1",
					 "-f",
					 "1",
					 NULL };

			memset(self->out, 0, sizeof(self->out));
			EXPECT_EQ(0, run(argv, NULL, 0, self->out, sizeof(self->out) - 1, 120))
			TH_LOG("%s %s: %s", modes[i], suites[j], self->out);
			EXPECT_EQ(1048576, word(self->out, "bytes")) TH_LOG("%s", self->out);
			EXPECT_LT(0, word(self->out, "mb_per_cpu_s")) TH_LOG("%s", self->out);
			EXPECT_NE(NULL, strstr(self->out, suites[j])) TH_LOG("%s", self->out);
		}
	}
}

/* bulk refuses what it cannot do, with its reason and its own exit status. */
TEST_F(bench, bulk_refuses_bad_input)
{
	char bulk[256];
	char *mode[] = { bulk, "-c", self->e.srv_cert, "-k", self->e.srv_key, "-m", "splice", NULL };
	char *chunk[] = { bulk, "-c", self->e.srv_cert, "-k", self->e.srv_key, "-b", "3000", NULL };
	char *key[] = { bulk, "-c", self->e.srv_cert, "-k", self->e.cli_key, "-M", "1", NULL };
	char *suite[] = { bulk,
			  "-c",
			  self->e.srv_cert,
			  "-k",
			  self->e.srv_key,
			  "-s",
			  "TLS_NO_SUCH_SUITE",
			  "-M",
			  "1",
			  NULL };

	snprintf(bulk, sizeof(bulk), "%s", bin("bulk"));
	EXPECT_EQ(2, run(mode, NULL, 0, self->out, sizeof(self->out) - 1, 30));
	EXPECT_NE(NULL, strstr(self->out, "splice")) TH_LOG("%s", self->out);
	/* A chunk that does not divide the repeated block. */
	EXPECT_EQ(2, run(chunk, NULL, 0, self->out, sizeof(self->out) - 1, 30));
	EXPECT_NE(NULL, strstr(self->out, "divides")) TH_LOG("%s", self->out);
	/* The client's key does not match the server's certificate. */
	EXPECT_EQ(1, run(key, NULL, 0, self->out, sizeof(self->out) - 1, 30));
	EXPECT_NE(NULL, strstr(self->out, "server setup")) TH_LOG("%s", self->out);
	EXPECT_EQ(1, run(suite, NULL, 0, self->out, sizeof(self->out) - 1, 30));
	EXPECT_NE(NULL, strstr(self->out, "TLS_NO_SUCH_SUITE")) TH_LOG("%s", self->out);
}

/* floor in each mode, and what its callgrind counts look like through cgsplit. */
TEST_F(bench, floor_handshakes_in_each_mode_and_cgsplit_reads_callgrind)
{
	/* bin() lends one of four buffers: five names need their own. */
	char floor[256], cgsplit[256];
	char *none[] = { floor, "-c", self->e.srv_cert, "-k", self->e.srv_key, "-N", "3", "-W",
			 "0",	NULL };
	char *x509[] = {
		floor,		"-c", self->e.srv_cert, "-k", self->e.srv_key, "-m", "x509", "-a",
		self->e.cli_ca, "-C", self->e.cli_cert, "-K", self->e.cli_key, "-N", "3",    NULL
	};
	/* The client's key alone, as a raw public key (RFC 7250). */
	char *rpk[] = { floor, "-c", self->e.srv_cert, "-k", self->e.srv_key, "-m",
			"rpk", "-C", self->e.cli_cert, "-K", self->e.cli_key, "-N",
			"2",   NULL };
	/* The client's certificate is not from the CA floor is told to trust. */
	char *wrong_ca[] = {
		floor,	    "-c", self->e.srv_cert, "-k", self->e.srv_key, "-m", "x509", "-a",
		self->e.ca, "-C", self->e.cli_cert, "-K", self->e.cli_key, "-N", "1",	 NULL
	};
	char cg[200], *vg[] = { "/usr/bin/valgrind",
				"--tool=callgrind",
				"--collect-atstart=no",
				"--toggle-collect=floor_server_*",
				NULL,
				floor,
				"-c",
				self->e.srv_cert,
				"-k",
				self->e.srv_key,
				"-N",
				"2",
				"-W",
				"1",
				NULL };
	char out_file[256], *split[] = { cgsplit, "--per", "2", out_file, NULL };

	snprintf(floor, sizeof(floor), "%s", bin("floor"));
	snprintf(cgsplit, sizeof(cgsplit), "%s", bin("cgsplit"));
	EXPECT_EQ(0, run(none, NULL, 0, self->out, sizeof(self->out) - 1, 120))
	TH_LOG("%s", self->out);
	EXPECT_NE(NULL, strstr(self->out, "handshakes=3 mode=none")) TH_LOG("%s", self->out);
	EXPECT_EQ(0, run(x509, NULL, 0, self->out, sizeof(self->out) - 1, 120))
	TH_LOG("%s", self->out);
	EXPECT_NE(NULL, strstr(self->out, "mode=x509")) TH_LOG("%s", self->out);
	EXPECT_EQ(0, run(rpk, NULL, 0, self->out, sizeof(self->out) - 1, 120))
	TH_LOG("%s", self->out);
	EXPECT_NE(NULL, strstr(self->out, "handshakes=2 mode=rpk")) TH_LOG("%s", self->out);
	EXPECT_EQ(1, run(wrong_ca, NULL, 0, self->out, sizeof(self->out) - 1, 120))
	TH_LOG("%s", self->out);
	EXPECT_NE(NULL, strstr(self->out, "handshake 1 failed")) TH_LOG("%s", self->out);

	snprintf(out_file, sizeof(out_file), "%.200s/cg.floor", self->e.dir);
	snprintf(cg, sizeof(cg), "--callgrind-out-file=%.170s", out_file);
	vg[4] = cg;
	ASSERT_EQ(0, run(vg, NULL, 0, self->out, sizeof(self->out) - 1, 600))
	TH_LOG("%s", self->out);
	ASSERT_EQ(0, run(split, NULL, 0, self->out, sizeof(self->out) - 1, 60))
	TH_LOG("%s", self->out);
	/* A handshake is millions of instructions, nearly all of them OpenSSL's. */
	EXPECT_LT(1000000, word(self->out, "total")) TH_LOG("%s", self->out);
	EXPECT_LT(0.9 * word(self->out, "total"), word(self->out, "openssl"))
	TH_LOG("%s", self->out);
	/* Not a callgrind file: cgsplit says so and fails. */
	split[3] = (char *)self->e.srv_cert;
	EXPECT_EQ(1, run(split, NULL, 0, self->out, sizeof(self->out) - 1, 60));
	EXPECT_NE(NULL, strstr(self->out, "not a callgrind file")) TH_LOG("%s", self->out);
}

/*
 * DANE over a raw public key (RFC 7250), the cheapest client authentication danced
 * does: the client's key is in a TLSA record (3 1 1) of a zone Knot DNS signs, and
 * dance-bench sends that key alone and its name in dane_clientid.
 */
FIXTURE(bench_dane)
{
	struct env e;
	struct dnsfix f;
	int port;
	pid_t server;
	char out[8192];
	char id_cert[160], id_key[160], other_cert[160], other_key[160];
};

FIXTURE_SETUP(bench_dane)
{
	char zone[1024], tlsa[2][256], dir[160];

	signal(SIGPIPE, SIG_IGN);
	ASSERT_EQ(0, env_init(&self->e));
	ASSERT_EQ(0, dnsfix_dane_ee(self->e.dir, "sensor1", "sensor1._device." DNSFIX_ZONE,
				    self->id_cert, self->id_key, tlsa[0]));
	ASSERT_EQ(0, dnsfix_dane_ee(self->e.dir, "other", "sensor1._device." DNSFIX_ZONE,
				    self->other_cert, self->other_key, tlsa[1]));
	/* sensor1's key, and a name whose record holds another key. */
	snprintf(zone, sizeof(zone), "sensor1._device IN TLSA %s\nmismatch._device IN TLSA %s\n",
		 tlsa[0], tlsa[1]);
	{
		struct dnsfix_zones z = { .parent = zone };

		snprintf(dir, sizeof(dir), "%.100s/dns", self->e.dir);
		ASSERT_EQ(0, mkdir(dir, 0700));
		ASSERT_EQ(0, dnsfix_start(&self->f, dir, 53, &z));
	}
	ASSERT_EQ(0, env_conf(&self->e,
			      "workers = 2\ndns_trust_anchor_file = none\ndns_trust_anchor = %s\n"
			      "dns_stub = " DNSFIX_ZONE " %s\n"
			      "[service www]\ncertificate = %s\nkey = %s\ntls_min = 1.3\n"
			      "dane = required\ndane_names = _device." DNSFIX_ZONE "\n"
			      "client_certificate_types = rpk, x509\n",
			      self->f.trust_anchor, self->f.stubs[0].addr, self->e.srv_cert,
			      self->e.srv_key));
	ASSERT_EQ(0, serve(&self->e, &self->port, &self->server)) TH_LOG("log: %s", self->e.log);
}

FIXTURE_TEARDOWN(bench_dane)
{
	unserve(&self->e, self->server);
	dnsfix_fini(&self->f);
	env_fini(&self->e);
}

/* dance-bench, @n connections as sensor1: its key alone (@rpk) or its certificate. */
static int as_sensor(FIXTURE_DATA(bench_dane) * self, const char *n, bool rpk, const char *name)
{
	char *argv[12] = { "-N", (char *)n, "-c", "2", "-C", self->id_cert, "-K", self->id_key };
	int k = 8;

	if (rpk)
		argv[k++] = "--rpk";
	if (name) {
		argv[k++] = "-D";
		argv[k++] = (char *)name;
	}
	argv[k] = NULL;
	return bench(self, self->port, argv);
}

TEST_F(bench_dane, a_raw_public_key_named_by_dane)
{
	/* The key alone, and the same key in its self-signed certificate. */
	EXPECT_EQ(0, as_sensor(self, "6", true, "sensor1._device." DNSFIX_ZONE))
	TH_LOG("%s", self->out);
	EXPECT_EQ(6, field(self->out, "conns")) TH_LOG("%s", self->out);
	EXPECT_EQ(0, field(self->out, "errors")) TH_LOG("%s", self->out);
	EXPECT_EQ(0, as_sensor(self, "2", false, "sensor1._device." DNSFIX_ZONE))
	TH_LOG("%s", self->out);
	EXPECT_EQ(2, field(self->out, "conns")) TH_LOG("%s", self->out);
	/*
	 * A name whose TLSA record holds another key, and a raw public key that names
	 * nobody: danced refuses both (after the client's side of the handshake, so the
	 * client sees its connection end with no answer, or a refusal in the handshake).
	 */
	EXPECT_EQ(1, as_sensor(self, "3", true, "mismatch._device." DNSFIX_ZONE))
	TH_LOG("%s", self->out);
	EXPECT_EQ(0, field(self->out, "conns")) TH_LOG("%s", self->out);
	EXPECT_EQ(3, field(self->out, "errors")) TH_LOG("%s", self->out);
	EXPECT_EQ(1, as_sensor(self, "2", true, NULL)) TH_LOG("%s", self->out);
	EXPECT_EQ(0, field(self->out, "conns")) TH_LOG("%s", self->out);
	EXPECT_EQ(2, field(self->out, "errors")) TH_LOG("%s", self->out);
	EXPECT_TRUE(log_contains(&self->e, "tlsa-mismatch")) TH_LOG("log: %s", self->e.log);
	EXPECT_TRUE(log_contains(&self->e, "rpk-without-dane")) TH_LOG("log: %s", self->e.log);
}

DANCED_HARNESS_MAIN
