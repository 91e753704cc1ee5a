// SPDX-License-Identifier: GPL-2.0
/*
 * bench_test.c - a short smoke of dance-bench, the load generator of bench/, so that
 * it cannot rot between benchmark runs: a few handshakes against danced (through
 * dance-echo --http) and against nginx, read back from its JSON summary; and its
 * errors sorted by kind when the server is not there or refuses.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include "../harness.h"
#include "../lib/daemon.h"

FIXTURE(bench)
{
	struct env e;
	int port;
	pid_t server;
	char out[8192];
};

FIXTURE_SETUP(bench)
{
	char log[160];

	signal(SIGPIPE, SIG_IGN);
	ASSERT_EQ(0, env_init(&self->e));
	ASSERT_EQ(0, env_conf(&self->e,
			      "workers = 2\n[service www]\ncertificate = %s\nkey = %s\n"
			      "client_auth = optional\nca = %s\n",
			      self->e.srv_cert, self->e.srv_key, self->e.cli_ca));
	ASSERT_EQ(0, danced_start(&self->e)) TH_LOG("log: %s", self->e.log);
	self->port = free_port();
	snprintf(log, sizeof(log), "%.100s/echo.log", self->e.dir);
	self->server = echo_start(&self->e, self->port, log, "--http", "--async", NULL);
	ASSERT_LT(0, self->server) TH_LOG("dance-echo's log: %s", log);
}

FIXTURE_TEARDOWN(bench)
{
	if (self->server > 0) {
		kill(self->server, SIGTERM);
		waitpid(self->server, NULL, 0);
	}
	danced_stop(&self->e, SIGTERM);
	env_fini(&self->e);
}

/* dance-bench against @port with @extra options; its JSON summary lands in out. */
static int bench(FIXTURE_DATA(bench) * self, int port, char *const extra[])
{
	char p[16], *argv[40];
	int n = 0, i;

	snprintf(p, sizeof(p), "%d", port);
	argv[n++] = (char *)bin("dance-bench");
	argv[n++] = "-p";
	argv[n++] = p;
	argv[n++] = "-a";
	argv[n++] = self->e.ca;
	argv[n++] = "-G";
	argv[n++] = "x25519";
	argv[n++] = "--json";
	argv[n++] = "-";
	for (i = 0; extra[i] && n < 39; i++)
		argv[n++] = extra[i];
	argv[n] = NULL;
	memset(self->out, 0, sizeof(self->out));
	return run(argv, NULL, 0, self->out, sizeof(self->out) - 1, 120);
}

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

	/* Nobody listens there. */
	EXPECT_EQ(1, bench(self, free_port(), extra)) TH_LOG("%s", self->out);
	EXPECT_EQ(0, field(self->out, "conns")) TH_LOG("%s", self->out);
	EXPECT_EQ(5, field(self->out, "connect")) TH_LOG("%s", self->out);
	/* A suite danced does not offer: the handshake fails. */
	EXPECT_EQ(1, bench(self, self->port, tls12)) TH_LOG("%s", self->out);
	EXPECT_EQ(3, field(self->out, "handshake")) TH_LOG("%s", self->out);
	/* Bad usage. */
	EXPECT_EQ(2, bench(self, self->port, bad)) TH_LOG("%s", self->out);
}

DANCED_HARNESS_MAIN
