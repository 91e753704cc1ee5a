/* SPDX-License-Identifier: GPL-2.0 */
/*
 * daemon.h - a danced for tests: a temporary directory with certificates and a
 * configuration, the daemon started from the build, and real peers (openssl, curl)
 * run as child processes with their output captured.
 */
#ifndef DANCED_TESTS_DAEMON_H
#define DANCED_TESTS_DAEMON_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

struct env {
	char dir[64];
	char conf[128];
	char sock[128]; /* the handoff socket */
	char log[128]; /* danced's stderr */
	char ca[128], srv_cert[128], srv_key[128]; /* the server's CA and identity */
	char cli_ca[128], cli_cert[128], cli_key[128]; /* clients' CA and a good client */
	char bad_cert[128], bad_key[128]; /* a client signed by an unknown CA */
	char other_cert[128], other_key[128]; /* a second server name, same CA */
	/* The kernel policy: off unless a test sets this before env_conf(); then its pins
	 * live under /sys/fs/bpf/<bpf_pin> and env_fini() removes them. */
	char bpf_pin[64];
	pid_t pid;
};

const char *bin(const char *name);
int env_init(struct env *e);
void env_fini(struct env *e);
int env_conf(struct env *e, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
int danced_start(struct env *e);
int danced_stop(struct env *e, int sig);
int danced_wait(struct env *e, int timeout_ms);
int danced_fds(const struct env *e);
bool log_contains(const struct env *e, const char *needle);
int run(char *const argv[], const void *in, size_t in_len, char *out, size_t out_max,
	int timeout_s);
pid_t spawn(char *const argv[], const char *log_path);
pid_t echo_start(const struct env *e, int port, const char *log_path, ...);
int wait_connectable(const char *unix_path, int port, int timeout_ms);
int tcp_listen_any(int *port);
int tcp_connect(int port);
int tcp_connect_from(const char *src, int port);
int free_port(void);
int wait_all_closed(const int *fds, int n, int timeout_ms);
long ms_now(void);
int raw_channel(const char *path);
int send_raw(int ch, const void *msg, size_t len, const int *fds, int nfds);
int send_raw_fd(int ch, const void *msg, size_t len, int fd);

#endif
