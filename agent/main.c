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
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/resource.h>
#include <sys/signalfd.h>

#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/ssl.h>

#include "agent.h"

#define DANCED_VERSION "0.1"
#define DEFAULT_CONFIG "/etc/danced/danced.conf"

struct agent agent = {
	.state_lock = PTHREAD_MUTEX_INITIALIZER,
	.handoff_fd = -1,
	.control_fd = -1,
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
		"bpf_pin_path), which refuses data I/O on protected TCP services (a port in a\n"
		"network namespace) to names it does not allow, even if the server forgets to\n"
		"check. A rule also says which proof it accepts (dane by default, x509, any).\n"
		"danced's own handshake I/O passes per socket, while it holds the socket; with\n"
		"danced down, nothing does. dancectl --help and bpftool manage the policy.\n"
		"\n"
		"danced can also be the kernel's handshake agent (net/handshake, the role of\n"
		"tlshd): a service with kernel = yes answers the TLS handshakes that in-kernel\n"
		"consumers such as NFS over TLS ask for, with the same DANE; see danced.conf(5),\n"
		"THE KERNEL'S HANDSHAKE REQUESTS.\n"
		"\n"
		"Options:\n"
		"  -c FILE   configuration file (default %s); see danced.conf(5)\n"
		"  -n        check the configuration, load its certificates and keys, print the\n"
		"            effective configuration with every default filled in, and exit:\n"
		"            status 0 if danced would start with it, 1 if not\n"
		"  -h        show this help\n"
		"  -V        show the version, the OpenSSL it was built with and runs on, which\n"
		"            features that needs are there, and whether the kernel has\n"
		"            net/handshake and tlshd runs\n"
		"\n"
		"Signals:\n"
		"  SIGHUP    reload the configuration; handshakes in flight finish with the old\n"
		"            one; a configuration that fails to load is logged and ignored.\n"
		"            New dns_* settings bring a new resolver with an empty cache; lookups\n"
		"            in flight finish on the old one. The handoff socket, workers, listen\n"
		"            addresses and bpf_* settings need a restart.\n"
		"  SIGUSR1   log one status line: handshakes in flight, and how many connections'\n"
		"            exported-authenticator values danced keeps (of exported_authenticators)\n"
		"  SIGTERM, SIGINT\n"
		"            stop accepting, let handshakes in flight finish (up to their\n"
		"            deadline), then exit; established connections are unaffected\n"
		"\n"
		"Limits: max_handshakes in flight in all, a share of it per service, and per\n"
		"source address source_max_handshakes in flight and source_rate new ones a\n"
		"second; over a limit a request is refused at once with the limit's name.\n"
		"\n"
		"Logging goes to stderr, one line per event, with a <N> syslog-level prefix that\n"
		"journald understands. Key material is never logged.\n"
		"\n"
		"Requirements: a kernel with kTLS (CONFIG_TLS, the 'tls' module) and io_uring;\n"
		"for kernel = yes, Linux 6.5 or later with CONFIG_NET_HANDSHAKE and\n"
		"CAP_NET_ADMIN;\n"
		"for the policy (bpf_policy = yes, the default), root at start, bpffs at\n"
		"/sys/fs/bpf, kernel BTF and 'bpf' in the active LSM list. The policy stays\n"
		"pinned and enforced when danced stops; rm -r the pin directory to remove it.\n"
		"Exit status: 0 after a clean stop; 1 when start-up fails, or when a worker's\n"
		"io_uring failed (every socket it held got its result first); 2 for bad usage.\n"
		"\n"
		"Debugging knobs (environment; for tests, never for production):\n"
		"  DANCED_DEBUG_RING_ENTRIES=N  each worker's io_uring gets N submission entries\n"
		"                               and 2N completion entries\n"
		"  DANCED_DEBUG_RING_FAIL=N     a worker's Nth ring submission fails as if the\n"
		"                               kernel had refused it (-EIO)\n",
		DEFAULT_CONFIG);
}

/* What the kernel's handshake upcall needs here, for -V and -n. */
static void kernel_print(FILE *f, const char *prefix)
{
	int family = kernel_probe(), pid = kernel_tlshd();

	if (family >= 0)
		fprintf(f, "%skernel handshake requests (net/handshake): yes, family %d\n", prefix,
			family);
	else
		fprintf(f, "%skernel handshake requests (net/handshake): no (%s)\n", prefix,
			family == -ENOENT ? "the kernel has no handshake family: Linux 6.5 or"
					    " later with CONFIG_NET_HANDSHAKE" :
					    strerror(-family));
	if (pid)
		fprintf(f, "%stlshd is running (pid %d): it takes the kernel's requests too\n",
			prefix, pid);
}

/*
 * What this danced can do that depends on the OpenSSL it was built with and runs on,
 * for -V and -n: an operator on Debian 12 must see what is missing, not find out.
 */
static void features_print(FILE *f, const char *prefix)
{
	SSL_CTX *ctx = SSL_CTX_new(TLS_method());
	bool pq = ctx && SSL_CTX_set1_groups_list(ctx, "X25519MLKEM768") == 1;

	ERR_clear_error();
	SSL_CTX_free(ctx);
	fprintf(f, "%sbuilt with %s, running with %s\n", prefix, OPENSSL_VERSION_TEXT,
		OpenSSL_version(OPENSSL_VERSION));
	fprintf(f, "%shybrid post-quantum key exchange (X25519MLKEM768): %s\n", prefix,
		pq ? "yes" : "no (needs OpenSSL 3.5)");
	fprintf(f, "%sraw public keys (RFC 7250, DANE-EE 3 1 x): %s\n", prefix,
		OPENSSL_VERSION_NUMBER >= 0x30200000L ? "yes" : "no (needs OpenSSL 3.2)");
	kernel_print(f, prefix);
}

/* Knobs for tests only (see -h): a tiny ring, and a ring that fails on purpose. */
static int debug_knobs(void)
{
	static const struct {
		const char *name;
		unsigned int *val;
		unsigned int min;
	} knobs[] = {
		{ "DANCED_DEBUG_RING_ENTRIES", &agent.ring_entries, 2 },
		{ "DANCED_DEBUG_RING_FAIL", &agent.ring_fail_at, 1 },
	};
	unsigned long v;
	const char *s;
	char *end;
	size_t i;

	for (i = 0; i < sizeof(knobs) / sizeof(knobs[0]); i++) {
		s = getenv(knobs[i].name);
		if (!s || !*s)
			continue;
		errno = 0;
		v = strtoul(s, &end, 10);
		if (errno || *end || v < knobs[i].min || v > 65536) {
			log_err("%s=%s: want a number from %u to 65536", knobs[i].name, s,
				knobs[i].min);
			return -EINVAL;
		}
		*knobs[i].val = v;
		log_warn("%s=%lu: a debugging knob, not for production", knobs[i].name, v);
	}
	return 0;
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

/* SIGUSR1: what danced holds now, for operators and for tests of its bounds. */
static void status_log(void)
{
	struct exported_stats ea;

	exported_stats(&ea);
	log_notice("status: %u handshakes in flight; exported authenticators: %u of %u "
		   "connections kept, %llu pushed out by newer ones; %u with a transcript "
		   "for post-handshake authentication",
		   atomic_load(&agent.inflight), ea.live, ea.cap, ea.evicted, ea.pha);
}

/*
 * SIGHUP: a new state for new handshakes; a bad file changes nothing. New DNS settings
 * bring a new resolver (and an empty cache); lookups in flight finish on the old one.
 */
static void reload(const char *path)
{
	struct state *st, *cur;
	const struct config *old, *cfg;
	char err[512];

	if (load(path, &st)) {
		log_err("reload of %s failed; keeping the running configuration", path);
		return;
	}
	cur = state_get(&agent);
	old = cur->cfg;
	cfg = st->cfg;
	if (!dane_config_equal(old, cfg) && dane_reload(cfg, err, sizeof(err))) {
		log_err("reload of %s failed: %s; keeping the running configuration", path, err);
		state_put(cur);
		state_put(st);
		return;
	}
	if (strcmp(old->socket_path, cfg->socket_path) || old->workers != cfg->workers)
		log_warn("reload: socket and workers keep their values until a restart");
	if (old->bpf_policy != cfg->bpf_policy || strcmp(old->bpf_pin_path, cfg->bpf_pin_path))
		log_warn("reload: bpf_policy and bpf_pin_path keep their values until a restart");
	if (old->exported_authenticators != cfg->exported_authenticators)
		log_warn("reload: exported_authenticators keeps its value until a restart");
	if (kernel_reload_check(cfg))
		log_warn("reload: kernel = yes takes effect at a restart: danced joins the"
			 " kernel's handshake group only at start");
	state_put(cur);
	state_swap(&agent, st);
	log_set_level(cfg->log_level);
	log_notice("reloaded %s: %zu services", path, cfg->n_svcs);
}

/*
 * The main thread, once the workers run: signals, DNS answers (libunbound's descriptors),
 * the kernel policy's refusals, and workers that left. A stop keeps answering DNS until
 * the last worker has drained, so that no handshake waits for an answer nobody reads.
 */
static int control_loop(const char *path)
{
	struct pollfd pfd[3 + 8];
	struct signalfd_siginfo si;
	uint64_t n;
	sigset_t set;
	int sfd, dfds[8], ndns, i, np;
	bool stopping = false;

	sigemptyset(&set);
	sigaddset(&set, SIGHUP);
	sigaddset(&set, SIGUSR1);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	sfd = signalfd(-1, &set, SFD_CLOEXEC | SFD_NONBLOCK);
	if (sfd < 0) {
		log_err("signalfd: %s", strerror(errno));
		return -errno;
	}
	for (;;) {
		if (atomic_load(&agent.stopping) && !stopping) {
			/* A worker failed for good: the others drain, then danced exits. */
			stopping = true;
			loop_stop_begin(&agent);
		}
		if (stopping && !atomic_load(&agent.n_running))
			break;
		pfd[0] = (struct pollfd){ .fd = sfd, .events = POLLIN };
		pfd[1] = (struct pollfd){ .fd = agent.control_fd, .events = POLLIN };
		pfd[2] = (struct pollfd){ .fd = policy_events_fd(), .events = POLLIN };
		np = 3;
		ndns = dane_poll_fds(dfds, 8);
		for (i = 0; i < ndns; i++)
			pfd[np++] = (struct pollfd){ .fd = dfds[i], .events = POLLIN };
		if (poll(pfd, np, stopping ? 100 : -1) < 0 && errno != EINTR) {
			log_err("poll: %s", strerror(errno));
			break;
		}
		if (pfd[1].revents && read(agent.control_fd, &n, sizeof(n)) < 0 && errno != EAGAIN)
			log_err("control: %s", strerror(errno));
		if (pfd[2].revents)
			policy_events_drain();
		for (i = 3; i < np; i++)
			if (pfd[i].revents) {
				dane_process();
				break;
			}
		while (read(sfd, &si, sizeof(si)) == sizeof(si)) {
			if (si.ssi_signo == SIGHUP) {
				if (!stopping)
					reload(path);
				continue;
			}
			if (si.ssi_signo == SIGUSR1) {
				status_log();
				continue;
			}
			if (!stopping) {
				log_notice("signal %u: stopping", si.ssi_signo);
				stopping = true;
				loop_stop_begin(&agent);
			}
		}
	}
	close(sfd);
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
			features_print(stdout, "");
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
	sigaddset(&set, SIGUSR1);
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
		char err[512];

		/* A kernel = yes that could not be served would stop the start: say so now. */
		ret = kernel_init(st->cfg, err, sizeof(err));
		if (ret)
			log_err("%s: %s", path, err);
		config_print(st->cfg, stdout);
		features_print(stdout, "# ");
		state_put(st);
		return ret ? 1 : 0;
	}
	agent.state = st;
	agent.n_workers = st->cfg->workers;
	raise_fd_limit(st->cfg);
	log_set_level(st->cfg->log_level);
	agent.stop_grace_ns = (uint64_t)st->cfg->handshake_timeout_ms * 1000000 + 1000000000ULL;
	ret = debug_knobs();
	if (ret)
		goto out_state;
	agent.control_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (agent.control_fd < 0 || admit_init(st->cfg)) {
		log_err("cannot set up: %s", strerror(errno));
		goto out_state;
	}
	{
		char err[512];

		/* One resolver when a service uses DANE: libunbound's thread and our cache. */
		ret = dane_init(st->cfg, err, sizeof(err));
		if (ret) {
			log_err("%s: %s", path, err);
			goto out_state;
		}
		/* Before privileges go: loading BPF LSM programs needs root. */
		ret = policy_init(st->cfg, err, sizeof(err));
		if (ret) {
			log_err("%s", err);
			goto out_state;
		}
		ret = exported_init(st->cfg, err, sizeof(err));
		if (ret) {
			log_err("%s", err);
			goto out_state;
		}
		ret = kernel_init(st->cfg, err, sizeof(err));
		if (ret) {
			log_err("%s: %s", path, err);
			goto out_state;
		}
	}
	/*
	 * The handoff socket comes last: once a server can connect to it, the backend
	 * sockets and listeners exist too (tests and supervisors wait for it alone).
	 */
	ret = frontdoor_init(&agent, st->cfg);
	if (ret)
		goto out_state;
	ret = loop_init(&agent);
	if (ret)
		goto out_state;
	ret = handoff_listen(&agent, st->cfg);
	if (ret)
		goto out_loop;
	ret = drop_privileges(st->cfg);
	if (ret)
		goto out_handoff;
	ret = loop_run(&agent);
	if (ret)
		goto out_handoff;
	log_notice("danced %s: %u workers, handoff socket %s, %zu services", DANCED_VERSION,
		   agent.n_workers, st->cfg->socket_path, st->cfg->n_svcs);
	control_loop(path);
	loop_stop(&agent);
	unlink(agent.state->cfg->socket_path);
	state_put(agent.state);
	dane_fini();
	policy_fini();
	exported_fini();
	admit_fini();
	ret = atomic_load(&agent.exit_status);
	if (ret)
		log_err("stopped after a worker failed; exit status %d", ret);
	else
		log_notice("stopped");
	return ret;
out_handoff:
	close(agent.handoff_fd);
	unlink(st->cfg->socket_path);
out_loop:
	loop_stop(&agent);
out_state:
	state_put(st);
	dane_fini();
	policy_fini();
	exported_fini();
	admit_fini();
	return 1;
}
