// SPDX-License-Identifier: GPL-2.0
/*
 * main.c - danced: argv, start-up in order, privilege drop, and the signal loop.
 *
 * Start-up opens everything that needs privileges (sockets, keys), then drops to the
 * configured user and starts the workers. The main thread then only waits for signals:
 * SIGHUP reloads the configuration (new state, pointer swap), SIGTERM/SIGINT stop.
 * Failing at start-up is the only way danced exits with an error.
 */
#include <errno.h>
#include <getopt.h>
#include <grp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>
#include <sys/resource.h>
#include <sys/signalfd.h>

#include "agent.h"

#define DANCED_VERSION "0.1"
#define DEFAULT_CONFIG "/etc/danced/danced.conf"

struct agent agent = {
	.state_lock = PTHREAD_MUTEX_INITIALIZER,
	.handoff_fd = -1,
};

uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ULL + ts.tv_nsec;
}

static void usage(FILE *f)
{
	fprintf(f,
		"Usage: danced [-c FILE] [-n] [-h] [-V]\n"
		"\n"
		"danced is a TLS handshake agent. Servers hand it accepted TCP sockets over a\n"
		"unix socket (or let it accept for them); it runs the TLS handshake, installs the\n"
		"session keys into kernel TLS (kTLS), and hands each socket back with who the\n"
		"peer is. From then on the server reads and writes plaintext and the kernel does\n"
		"the record crypto. There is no fallback to userspace TLS: a socket that cannot\n"
		"be offloaded fails with the reason.\n"
		"\n"
		"Clients may be authenticated by DANE (their TLSA record, DNSSEC-validated inside\n"
		"danced; draft-ietf-dance-client-auth) as well as by X.509. Each returned socket's\n"
		"verified name goes into the kernel's policy (BPF LSM programs pinned under\n"
		"bpf_pin_path), which refuses data I/O on protected ports to names it does not\n"
		"allow, even if the server forgets to check; dancectl --help and bpftool manage it.\n"
		"\n"
		"Options:\n"
		"  -c FILE   configuration file (default %s); see danced.conf(5)\n"
		"  -n        check the configuration, load its certificates and keys, print the\n"
		"            effective configuration with every default filled in, and exit:\n"
		"            status 0 if danced would start with it, 1 if not\n"
		"  -h        show this help\n"
		"  -V        show the version\n"
		"\n"
		"Signals:\n"
		"  SIGHUP    reload the configuration; handshakes in flight finish with the old\n"
		"            one; a configuration that fails to load is logged and ignored\n"
		"            (the handoff socket, workers, listen addresses, dns_* and bpf_*\n"
		"            settings need a restart)\n"
		"  SIGTERM, SIGINT\n"
		"            stop accepting, let handshakes in flight finish (up to their\n"
		"            deadline), then exit; established connections are unaffected\n"
		"\n"
		"Logging goes to stderr, one line per event, with a <N> syslog-level prefix that\n"
		"journald understands. Key material is never logged.\n"
		"\n"
		"Requirements: a kernel with kTLS (CONFIG_TLS, the 'tls' module) and io_uring;\n"
		"for the policy (bpf_policy = yes, the default), root at start, bpffs at\n"
		"/sys/fs/bpf, kernel BTF and 'bpf' in the active LSM list. The policy stays\n"
		"pinned and enforced when danced stops; rm -r the pin directory to remove it.\n"
		"Exit status: 0 after a clean stop; 1 when start-up fails; 2 for bad usage.\n",
		DEFAULT_CONFIG);
}

static int load(const char *path, struct state **out)
{
	char err[512] = "";
	struct config *cfg;
	int ret;

	ret = config_load(path, &cfg, err, sizeof(err));
	if (ret) {
		log_err("%s", err[0] ? err : strerror(-ret));
		return ret;
	}
	for (size_t i = 0; i < cfg->n_warnings; i++)
		log_warn("%s", cfg->warnings[i]);
	ret = state_new(cfg, out, err, sizeof(err));
	if (ret)
		log_err("%s: %s", path, err);
	return ret;
}

/*
 * Every handshake in flight holds a socket, and servers hand them over in bursts: take
 * all the descriptors the hard limit allows, and say so when that is fewer than
 * max_handshakes can need.
 */
static void raise_fd_limit(const struct config *cfg)
{
	struct rlimit rl;

	if (getrlimit(RLIMIT_NOFILE, &rl))
		return;
	rl.rlim_cur = rl.rlim_max;
	if (setrlimit(RLIMIT_NOFILE, &rl))
		return;
	if (rl.rlim_cur < (rlim_t)cfg->max_handshakes + 64)
		log_warn("open file limit %llu is below max_handshakes (%u) + 64: raise "
			 "LimitNOFILE, or requests beyond it fail with EMFILE",
			 (unsigned long long)rl.rlim_cur, cfg->max_handshakes);
}

/* Drop to the configured user for good; keys and sockets are already open. */
static int drop_privileges(const struct config *cfg)
{
	if (!cfg->user)
		return 0;
	if (setgroups(0, NULL) || setgid(cfg->user_gid) || setuid(cfg->user_uid)) {
		log_err("cannot drop privileges to %s: %s", cfg->user, strerror(errno));
		return -errno;
	}
	if (cfg->user_uid && setuid(0) == 0) {
		log_err("privileges could be regained after dropping to %s", cfg->user);
		return -EPERM;
	}
	return 0;
}

/* Only a configuration that uses DANE needs a resolver (and the root trust anchor). */
static bool config_uses_dns(const struct config *cfg)
{
	size_t i;

	for (i = 0; i < cfg->n_svcs; i++)
		if (cfg->svcs[i].dane != DANE_OFF || cfg->svcs[i].verify == VERIFY_DANE ||
		    cfg->svcs[i].verify == VERIFY_DANE_OR_PKIX)
			return true;
	return false;
}

static bool str_equal(const char *a, const char *b)
{
	return a == b || (a && b && !strcmp(a, b));
}

/* The resolver is built once; tell the operator when a reload asks for a different one. */
static bool dns_config_equal(const struct config *a, const struct config *b)
{
	size_t i;

	if (!str_equal(a->dns_trust_anchor_file, b->dns_trust_anchor_file) ||
	    !str_equal(a->dns_forwarder, b->dns_forwarder) ||
	    a->n_dns_trust_anchors != b->n_dns_trust_anchors || a->n_dns_stubs != b->n_dns_stubs ||
	    a->dns_cache_size != b->dns_cache_size || a->dns_min_ttl != b->dns_min_ttl ||
	    a->dns_max_ttl != b->dns_max_ttl || a->dns_negative_ttl != b->dns_negative_ttl)
		return false;
	for (i = 0; i < a->n_dns_trust_anchors; i++)
		if (strcmp(a->dns_trust_anchors[i], b->dns_trust_anchors[i]))
			return false;
	for (i = 0; i < a->n_dns_stubs; i++)
		if (strcmp(a->dns_stubs[i].zone, b->dns_stubs[i].zone) ||
		    strcmp(a->dns_stubs[i].addr, b->dns_stubs[i].addr))
			return false;
	return true;
}

/* SIGHUP: a new state for new handshakes; a bad file changes nothing. */
static void reload(const char *path)
{
	struct state *st, *cur;
	const struct config *old, *cfg;

	if (load(path, &st)) {
		log_err("reload of %s failed; keeping the running configuration", path);
		return;
	}
	cur = state_get(&agent);
	old = cur->cfg;
	cfg = st->cfg;
	if (strcmp(old->socket_path, cfg->socket_path) || old->workers != cfg->workers)
		log_warn("reload: socket and workers keep their values until a restart");
	if (!dns_config_equal(old, cfg) || config_uses_dns(cfg) != config_uses_dns(old))
		log_warn("reload: dns_* settings, and whether DANE is used at all, keep their "
			 "values until a restart");
	if (old->bpf_policy != cfg->bpf_policy || strcmp(old->bpf_pin_path, cfg->bpf_pin_path))
		log_warn("reload: bpf_policy and bpf_pin_path keep their values until a restart");
	state_put(cur);
	state_swap(&agent, st);
	log_set_level(cfg->log_level);
	log_notice("reloaded %s: %zu services", path, cfg->n_svcs);
}

static int signal_loop(const char *path)
{
	struct signalfd_siginfo si;
	sigset_t set;
	int fd;

	sigemptyset(&set);
	sigaddset(&set, SIGHUP);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	fd = signalfd(-1, &set, SFD_CLOEXEC);
	if (fd < 0) {
		log_err("signalfd: %s", strerror(errno));
		return -errno;
	}
	for (;;) {
		if (read(fd, &si, sizeof(si)) != sizeof(si)) {
			if (errno == EINTR)
				continue;
			log_err("reading signals: %s", strerror(errno));
			break;
		}
		if (si.ssi_signo == SIGHUP) {
			reload(path);
			continue;
		}
		log_notice("signal %u: stopping", si.ssi_signo);
		break;
	}
	close(fd);
	return 0;
}

int main(int argc, char **argv)
{
	const char *path = DEFAULT_CONFIG;
	bool check = false;
	struct state *st;
	sigset_t set;
	int opt, ret;

	while ((opt = getopt(argc, argv, "c:nhV")) != -1) {
		switch (opt) {
		case 'c':
			path = optarg;
			break;
		case 'n':
			check = true;
			break;
		case 'h':
			usage(stdout);
			return 0;
		case 'V':
			printf("danced %s\n", DANCED_VERSION);
			return 0;
		default:
			usage(stderr);
			return 2;
		}
	}
	if (optind != argc) {
		fprintf(stderr, "danced: unexpected argument '%s'\n", argv[optind]);
		usage(stderr);
		return 2;
	}
	log_init(LOG_INFO);

	/* Signals are read from a signalfd; no thread may take them asynchronously. */
	sigemptyset(&set);
	sigaddset(&set, SIGHUP);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	pthread_sigmask(SIG_BLOCK, &set, NULL);
	signal(SIGPIPE, SIG_IGN);

	ret = ktls_init() ?: handshake_init();
	if (ret) {
		log_err("OpenSSL lacks what danced needs (HKDF, TLS 1.2 PRF, BIO methods)");
		return 1;
	}
	if (load(path, &st))
		return 1;
	if (check) {
		config_print(st->cfg, stdout);
		state_put(st);
		return 0;
	}
	agent.state = st;
	agent.n_workers = st->cfg->workers;
	raise_fd_limit(st->cfg);
	log_set_level(st->cfg->log_level);
	agent.stop_grace_ns = (uint64_t)st->cfg->handshake_timeout_ms * 1000000 + 1000000000ULL;

	if (config_uses_dns(st->cfg)) {
		char err[512];

		/* One resolver for the process: libunbound's thread and cache, our TLSA cache. */
		ret = dane_init(st->cfg, err, sizeof(err));
		if (ret) {
			log_err("%s: %s", path, err);
			goto out_state;
		}
	}
	{
		char err[512];

		/* Before privileges go: loading BPF LSM programs needs root. */
		ret = policy_init(st->cfg, err, sizeof(err));
		if (ret) {
			log_err("%s", err);
			goto out_state;
		}
	}
	ret = handoff_listen(&agent, st->cfg);
	if (ret)
		goto out_state;
	ret = frontdoor_init(&agent, st->cfg);
	if (ret)
		goto out_handoff;
	ret = loop_init(&agent);
	if (ret)
		goto out_handoff;
	ret = drop_privileges(st->cfg);
	if (ret)
		goto out_loop;
	ret = loop_run(&agent);
	if (ret)
		goto out_loop;
	log_notice("danced %s: %u workers, handoff socket %s, %zu services", DANCED_VERSION,
		   agent.n_workers, st->cfg->socket_path, st->cfg->n_svcs);
	signal_loop(path);
	loop_stop(&agent);
	unlink(agent.state->cfg->socket_path);
	state_put(agent.state);
	dane_fini();
	policy_fini();
	log_notice("stopped");
	return 0;
out_loop:
	loop_stop(&agent);
out_handoff:
	close(agent.handoff_fd);
	unlink(st->cfg->socket_path);
out_state:
	state_put(st);
	dane_fini();
	policy_fini();
	return 1;
}
