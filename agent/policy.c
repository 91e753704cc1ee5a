// SPDX-License-Identifier: GPL-2.0
/*
 * policy.c - the kernel's name policy (bpf/danced.bpf.c): load it, or find it pinned
 * from an earlier run, and write each returned socket's verified identity into it.
 *
 * Receives, at start, the configuration; per connection, a conn whose handshake
 * succeeded, just before its socket goes back. The programs and maps are pinned under
 * bpf_pin_path, so enforcement stays on while danced is down or restarting (it fails
 * closed: a socket without an identity on a protected port cannot move data), and a
 * restarted danced reuses them as they are, rules included.
 */
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include <linux/magic.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <bpf/bpf.h>
#include <bpf/libbpf.h>

#include "agent.h"
#include "danced.h"
#include "danced.skel.h"

#define EVENTS_LOGGED_PER_SEC 20 /* a server retrying in a loop must not flood the log */

static struct {
	bool on;
	int sk_ident, identities, services, rules, events; /* map fds; -1 when off */
	struct ring_buffer *rb; /* "events", read by the main thread */
	uint64_t sec; /* the second being counted, and what it logged and held back */
	unsigned int logged, held;
} pol = { .sk_ident = -1, .identities = -1, .services = -1, .rules = -1, .events = -1 };

/*
 * libbpf speaks on stderr by default; only its warnings are worth an operator's time,
 * and they come with a failure that stops danced, so they go out as warnings.
 */
static int libbpf_log(enum libbpf_print_level level, const char *fmt, va_list ap)
{
	char line[512];

	if (level != LIBBPF_WARN)
		return 0;
	vsnprintf(line, sizeof(line), fmt, ap);
	line[strcspn(line, "\n")] = '\0';
	log_warn("libbpf: %s", line);
	return 0;
}

/* Turn a load failure into what to do about it. */
static const char *load_why(int err)
{
	static const char lsm_path[] = "/sys/kernel/security/lsm";
	char lsm[512] = "";
	FILE *f;

	if (access("/sys/kernel/btf/vmlinux", R_OK))
		return "the kernel has no BTF (/sys/kernel/btf/vmlinux): it needs "
		       "CONFIG_DEBUG_INFO_BTF";
	f = fopen(lsm_path, "r");
	if (f) {
		if (!fgets(lsm, sizeof(lsm), f))
			lsm[0] = '\0';
		fclose(f);
		if (!strstr(lsm, "bpf"))
			return "BPF LSM is not in the kernel's active LSM list "
			       "(/sys/kernel/security/lsm): boot with lsm=...,bpf";
	}
	if (err == EPERM || err == EACCES)
		return "missing privileges: loading BPF LSM programs needs root (CAP_BPF, "
		       "CAP_PERFMON and CAP_SYS_ADMIN), and kernel lockdown must allow it";
	return strerror(err);
}

static int pin_path(char *out, size_t max, const struct config *cfg, const char *name)
{
	int n = snprintf(out, max, "%s/%s", cfg->bpf_pin_path, name);

	return n < 0 || (size_t)n >= max ? -ENAMETOOLONG : 0;
}

/* Attach each program and pin its link, so that it stays attached without us. */
static int attach_and_pin(struct danced_bpf *skel, const struct config *cfg, char *err,
			  size_t errlen)
{
	struct bpf_program *prog;
	char path[256];
	int ret;

	bpf_object__for_each_program(prog, skel->obj) {
		struct bpf_link *link = bpf_program__attach(prog);

		if (!link) {
			ret = -errno;
			snprintf(err, errlen, "BPF policy: cannot attach %s: %s",
				 bpf_program__name(prog), load_why(-ret));
			return ret;
		}
		ret = pin_path(path, sizeof(path), cfg, bpf_program__name(prog));
		if (!ret)
			ret = bpf_link__pin(link, path);
		bpf_link__destroy(link); /* the pin holds it now */
		if (ret) {
			snprintf(err, errlen, "BPF policy: cannot pin %s: %s", path,
				 strerror(-ret));
			return ret;
		}
	}
	return 0;
}

/* Everything pinned by an earlier run: every program's link is there. */
static bool pinned(struct danced_bpf *skel, const struct config *cfg)
{
	struct bpf_program *prog;
	char path[256];

	bpf_object__for_each_program(prog, skel->obj)
		if (pin_path(path, sizeof(path), cfg, bpf_program__name(prog)) ||
		    access(path, F_OK))
			return false;
	return true;
}

/* One line per refusal the kernel reported, at most EVENTS_LOGGED_PER_SEC a second. */
static int log_event(void *ctx, void *data, size_t len)
{
	const struct danced_event *ev = data;
	uint64_t sec = now_ns() / 1000000000ULL;
	char name[DANCE_HOST_MAX], comm[17];
	size_t i;

	(void)ctx;
	if (len < sizeof(*ev))
		return 0;
	if (sec != pol.sec) {
		if (pol.held)
			log_notice("policy: %u more refusals in the last second were not logged",
				   pol.held);
		pol.sec = sec;
		pol.logged = pol.held = 0;
	}
	if (pol.logged++ >= EVENTS_LOGGED_PER_SEC) {
		pol.held++;
		return 0;
	}
	danced_fname(ev->rname, sizeof(ev->rname), name, sizeof(name));
	memcpy(comm, ev->comm, 16);
	comm[16] = '\0';
	for (i = 0; comm[i]; i++)
		if (!isprint((unsigned char)comm[i]))
			comm[i] = '?';
	log_notice("policy: %s %s by pid %u (%s) on port %u: %s",
		   ev->audit ? "audit, would refuse" : "refused",
		   ev->op == DANCED_EV_SEND ? "send" : "receive", ev->pid, comm, ev->port,
		   ev->why == DANCED_WHY_NO_IDENTITY ? "the socket has no verified identity" :
		   name[0]			     ? name :
						       "-");
	if (ev->why == DANCED_WHY_DENIED)
		log_debug("policy: %s is not allowed on port %u", name, ev->port);
	return 0;
}

/* The main thread polls this; -1 when the policy is off. */
int policy_events_fd(void)
{
	return pol.rb ? ring_buffer__epoll_fd(pol.rb) : -1;
}

void policy_events_drain(void)
{
	if (pol.rb)
		ring_buffer__consume(pol.rb);
}

/**
 * policy_init - load the policy programs, or reuse the pinned ones, before privileges go
 *
 * Return: 0 (also when bpf_policy = no); or a negative errno with @err saying what is
 * missing: bpffs, BTF, BPF LSM in the active list, privileges.
 */
int policy_init(const struct config *cfg, char *err, size_t errlen)
{
	struct danced_agent me = { .tgid = getpid() };
	struct danced_bpf *skel;
	struct bpf_map *map;
	struct statfs fs;
	char path[256];
	bool reuse;
	__u32 zero = 0;
	int ret, fd;

	if (!cfg->bpf_policy)
		return 0;
	libbpf_set_print(libbpf_log);
	if (statfs("/sys/fs/bpf", &fs) || fs.f_type != BPF_FS_MAGIC) {
		snprintf(err, errlen,
			 "BPF policy: no bpffs at /sys/fs/bpf (mount -t bpf bpf /sys/fs/bpf), or "
			 "set bpf_policy = no to run without kernel enforcement");
		return -ENOENT;
	}
	if (mkdir(cfg->bpf_pin_path, 0700) && errno != EEXIST) {
		ret = -errno;
		snprintf(err, errlen, "BPF policy: %s: %s", cfg->bpf_pin_path, strerror(-ret));
		return ret;
	}
	skel = danced_bpf__open();
	if (!skel) {
		ret = -errno;
		snprintf(err, errlen, "BPF policy: cannot open the programs: %s", strerror(-ret));
		return ret;
	}
	/* libbpf reuses a map already pinned at its path, and pins a new one there. */
	bpf_object__for_each_map(map, skel->obj) {
		/* Not the read-only data (format strings) nor per-CPU scratch: not state. */
		if (bpf_map__is_internal(map) || bpf_map__type(map) == BPF_MAP_TYPE_PERCPU_ARRAY)
			continue;
		ret = pin_path(path, sizeof(path), cfg, bpf_map__name(map)) ?:
			      bpf_map__set_pin_path(map, path);
		if (ret) {
			snprintf(err, errlen, "BPF policy: %s: %s", path, strerror(-ret));
			goto out;
		}
	}
	reuse = pinned(skel, cfg);
	ret = danced_bpf__load(skel);
	if (ret) {
		snprintf(err, errlen, "BPF policy: cannot load the programs: %s", load_why(-ret));
		goto out;
	}
	if (!reuse) {
		ret = attach_and_pin(skel, cfg, err, errlen);
		if (ret)
			goto out;
	}
	fd = bpf_map__fd(skel->maps.agent);
	if (bpf_map_update_elem(fd, &zero, &me, BPF_ANY)) {
		ret = -errno;
		snprintf(err, errlen, "BPF policy: cannot register danced: %s", strerror(-ret));
		goto out;
	}
	pol.sk_ident = dup(bpf_map__fd(skel->maps.sk_ident));
	pol.identities = dup(bpf_map__fd(skel->maps.identities));
	pol.services = dup(bpf_map__fd(skel->maps.services));
	pol.rules = dup(bpf_map__fd(skel->maps.rules));
	pol.events = dup(bpf_map__fd(skel->maps.events));
	if (pol.sk_ident < 0 || pol.identities < 0 || pol.services < 0 || pol.rules < 0 ||
	    pol.events < 0) {
		ret = -errno;
		snprintf(err, errlen, "BPF policy: %s", strerror(-ret));
		goto out;
	}
	pol.rb = ring_buffer__new(pol.events, log_event, NULL, NULL);
	if (!pol.rb) {
		ret = -errno;
		snprintf(err, errlen, "BPF policy: cannot read its events: %s", strerror(-ret));
		goto out;
	}
	pol.on = true;
	log_info("BPF policy: %s under %s",
		 reuse ? "reusing the programs and maps pinned" : "loaded and pinned",
		 cfg->bpf_pin_path);
	ret = 0;
out:
	/* The programs stay attached through their pinned links, the maps through pins. */
	danced_bpf__destroy(skel);
	if (ret)
		policy_fini();
	return ret;
}

void policy_fini(void)
{
	if (pol.sk_ident >= 0)
		close(pol.sk_ident);
	if (pol.identities >= 0)
		close(pol.identities);
	if (pol.services >= 0)
		close(pol.services);
	if (pol.rules >= 0)
		close(pol.rules);
	ring_buffer__free(pol.rb);
	pol.rb = NULL;
	if (pol.events >= 0)
		close(pol.events);
	pol.sk_ident = pol.identities = pol.services = pol.rules = pol.events = -1;
	pol.on = false;
}

/* The name the policy judges: DANE's verified name, or an X.509 peer's first dNSName. */
static size_t policy_name(const struct dance_result *r, char *out, size_t max)
{
	const char *name = r->auth == DANCE_AUTH_DANE ? r->verified_name : r->peer_names;
	size_t n = strcspn(name, " ");

	if (r->auth == DANCE_AUTH_NONE || n >= max)
		return 0;
	memcpy(out, name, n);
	out[n] = '\0';
	return n;
}

/*
 * Would the kernel refuse this identity's I/O? The same decision as the hooks', made
 * here only for plaintext danced read before offload, which no hook will see.
 */
static bool refused(const struct danced_ident *id)
{
	struct danced_service svc;
	struct danced_rule_key k = { .port = id->port };
	struct danced_rule r;

	if (bpf_map_lookup_elem(pol.services, &id->port, &svc) || svc.mode != DANCED_MODE_ENFORCE)
		return false;
	if (id->auth == DANCED_AUTH_NONE || !id->name_len)
		return true;
	k.prefixlen = 8 * (sizeof(k.port) + sizeof(k.rname));
	memcpy(k.rname, id->rname, sizeof(k.rname));
	if (!bpf_map_lookup_elem(pol.rules, &k, &r))
		return r.verdict != DANCED_VERDICT_ALLOW;
	return svc.dflt != DANCED_VERDICT_ALLOW;
}

/**
 * policy_hold - danced takes a socket: its own handshake I/O must pass the hooks
 *
 * Return: 1 when the socket is now held, 0 when the policy is off (nothing to hold), or
 * a negative errno.
 */
int policy_hold(int fd)
{
	(void)fd;
	return 0; /* danced's tgid is exempt as a whole (the agent map) */
}

/* A failed handshake: the hold goes and no identity is written. */
void policy_release(int fd)
{
	(void)fd;
}

/**
 * policy_identify - record who is behind a socket, before the server gets it
 *
 * Socket storage (by fd) is what the hooks read; "identities" (by cookie) is what
 * operators list. Without this, a protected port would refuse the socket's I/O, so a
 * failure fails the connection rather than handing over a socket that cannot work.
 *
 * Return: 0 (also with the policy off); 1 when the kernel will refuse the socket's I/O,
 * so plaintext danced read behind the handshake must be withheld as the kernel would
 * have refused its read; or the negated errno of the map update.
 */
int policy_identify(int fd, const struct svc_config *cfg, struct dance_result *r)
{
	struct danced_ident id = { 0 };
	struct sockaddr_storage ss;
	socklen_t len = sizeof(ss);
	char name[DANCE_HOST_MAX];
	size_t n;

	if (!pol.on || cfg->role != ROLE_SERVER)
		return 0;
	id.cookie = r->cookie;
	id.auth = r->auth;
	id.tls_version = r->tls_version;
	id.cipher = r->cipher;
	if (!getsockname(fd, (struct sockaddr *)&ss, &len))
		id.port = ntohs(ss.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&ss)->sin6_port :
							   ((struct sockaddr_in *)&ss)->sin_port);
	/* Reversed and dot-terminated: suffix rules are then prefixes (bpf/danced.h). */
	n = policy_name(r, name, sizeof(name));
	id.name_len = danced_rname(name, n, id.rname, sizeof(id.rname)) ? n : 0;
	if (bpf_map_update_elem(pol.sk_ident, &fd, &id, BPF_ANY) ||
	    bpf_map_update_elem(pol.identities, &id.cookie, &id, BPF_ANY))
		return -errno;
	return refused(&id) ? 1 : 0;
}
