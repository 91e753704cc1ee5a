// SPDX-License-Identifier: GPL-2.0
/*
 * policy.c - the kernel's name policy (bpf/danced.bpf.c): load it, or find it pinned
 * from an earlier run; hold each socket danced takes, so that its own handshake I/O
 * passes a protected port, and write the verified identity when the socket goes back.
 *
 * Receives, at start, the configuration; per connection, the socket when danced takes
 * it (policy_hold) and when it lets go (policy_identify on success, policy_release on
 * failure). The programs and maps are pinned under bpf_pin_path, so enforcement stays
 * on while danced is down or restarting (it fails closed: a socket without an identity
 * on a protected port cannot move data), and a restarted danced reuses them as they
 * are, rules included.
 */
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <time.h>
#include <linux/magic.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/random.h>
#include <sys/statfs.h>
#include <sys/syscall.h>
#include <bpf/bpf.h>
#include <bpf/libbpf.h>

#include "agent.h"
#include "danced.h"
#include "danced.skel.h"

#define EVENTS_LOGGED_PER_SEC 20 /* a server retrying in a loop must not flood the log */

static struct {
	bool on;
	int sk_ident, identities, services, rules, events, agent, agent_task; /* -1 when off */
	int pidfd; /* danced's own, the key of its mark in "agent_task" */
	uint64_t token; /* this run's, in "agent" and in every socket danced holds */
	struct ring_buffer *rb; /* "events", read by the main thread */
	pthread_mutex_t ea_lock; /* identity writes of exported-authenticator operations */
	uint64_t sec; /* the second being counted, and what it logged and held back */
	unsigned int logged, held;
} pol = { .sk_ident = -1,
	  .identities = -1,
	  .services = -1,
	  .rules = -1,
	  .events = -1,
	  .agent = -1,
	  .agent_task = -1,
	  .pidfd = -1,
	  .ea_lock = PTHREAD_MUTEX_INITIALIZER };

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

/* A state map: pinned, so that a restarted danced and operators find the same one. */
static bool pinnable(const struct bpf_map *map)
{
	/* Not the read-only data (format strings) nor per-CPU scratch: not state. */
	return !bpf_map__is_internal(map) && bpf_map__type(map) != BPF_MAP_TYPE_PERCPU_ARRAY;
}

/* What a pinned map differs in from this danced's, or NULL when it does not. */
static const char *map_differs(const struct bpf_map *map, int fd)
{
	struct bpf_map_info info = { 0 };
	__u32 len = sizeof(info);

	if (bpf_obj_get_info_by_fd(fd, &info, &len))
		return "unreadable";
	if (info.type != bpf_map__type(map))
		return "type";
	if (info.key_size != bpf_map__key_size(map))
		return "key layout";
	if (info.value_size != bpf_map__value_size(map))
		return "value layout";
	if (info.max_entries != bpf_map__max_entries(map) ||
	    info.map_flags != bpf_map__map_flags(map))
		return "size or flags";
	return NULL;
}

/*
 * Whether an earlier run pinned everything (every program's link is there), so that the
 * programs attached then are reused. Pins of another layout are refused with what to do:
 * the programs attached through them read their maps their own way, so new maps next to
 * them, or old maps read the new way, would judge sockets wrongly.
 */
static int pins_check(struct danced_bpf *skel, const struct config *cfg, bool *reuse, char *err,
		      size_t errlen)
{
	unsigned int progs = 0, links = 0;
	struct bpf_program *prog;
	struct bpf_map *map;
	const char *what = NULL, *which = NULL;
	char path[256];
	int fd;

	bpf_object__for_each_program(prog, skel->obj) {
		progs++;
		if (!pin_path(path, sizeof(path), cfg, bpf_program__name(prog)) &&
		    !access(path, F_OK))
			links++;
		else if (!which)
			which = bpf_program__name(prog);
	}
	if (links && links != progs)
		what = "the program link is missing";
	bpf_object__for_each_map(map, skel->obj) {
		if (what || !pinnable(map))
			continue;
		if (pin_path(path, sizeof(path), cfg, bpf_map__name(map)))
			continue;
		fd = bpf_obj_get(path);
		if (fd < 0) {
			if (links) {
				what = "the map is missing";
				which = bpf_map__name(map);
			}
			continue;
		}
		what = map_differs(map, fd);
		which = bpf_map__name(map);
		close(fd);
	}
	if (what) {
		snprintf(err, errlen,
			 "BPF policy: %s holds the pins of another danced version (%s: %s). "
			 "Note the policy (bpftool map dump pinned %s/services, and rules), "
			 "remove the pins (rm -r %s), start danced and enter the policy again "
			 "(README: upgrading)",
			 cfg->bpf_pin_path, which, what, cfg->bpf_pin_path, cfg->bpf_pin_path);
		return -EEXIST;
	}
	*reuse = links && links == progs;
	return 0;
}

/* One line per refusal the kernel reported, at most EVENTS_LOGGED_PER_SEC a second. */
static int log_event(void *ctx, void *data, size_t len)
{
	const struct danced_event *ev = data;
	uint64_t sec = now_ns() / 1000000000ULL;
	char name[DANCE_HOST_MAX], comm[17], why[DANCE_HOST_MAX + 64];
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
	if (ev->why == DANCED_WHY_NO_IDENTITY)
		snprintf(why, sizeof(why), "the socket has no verified identity");
	else if (ev->why == DANCED_WHY_PROOF)
		snprintf(why, sizeof(why), "%s (proven by %s, which its rule does not accept)",
			 name[0] ? name : "-", danced_auth_name(ev->auth));
	else
		snprintf(why, sizeof(why), "%s", name[0] ? name : "-");
	log_notice("policy: %s %s by pid %u (%s) on port %u (netns %u): %s",
		   ev->audit ? "audit, would refuse" : "refused",
		   ev->op == DANCED_EV_SEND ? "send" : "receive", ev->pid, comm, ev->port,
		   ev->netns, why);
	if (ev->why == DANCED_WHY_DENIED)
		log_debug("policy: %s is not allowed on port %u", name, ev->port);
	return 0;
}

/* A socket with an identity closed: what danced keeps for it goes. */
static int socket_closed(void *ctx, void *data, size_t len)
{
	uint64_t cookie;

	(void)ctx;
	if (len >= sizeof(cookie)) {
		memcpy(&cookie, data, sizeof(cookie));
		exported_forget(cookie);
	}
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

/*
 * This run's token, in "agent" for the programs and in danced's own task storage, so
 * that its threads (and io_uring's workers for it) are recognised as danced, and only
 * while this token is the live one. Another danced live on the same pins would have its
 * handshakes refused from now on: refuse to start instead.
 */
static int agent_register(char *err, size_t errlen)
{
	struct danced_agent a = { .pid = getpid() }, old;
	struct danced_agent_task t;
	__u32 zero = 0;

	if (!bpf_map_lookup_elem(pol.agent, &zero, &old) && old.token) {
		snprintf(err, errlen,
			 "BPF policy: another danced (pid %u in its PID namespace) is running "
			 "with these pins; give each danced its own bpf_pin_path",
			 old.pid);
		return -EBUSY;
	}
	while (!a.token)
		if (getrandom(&a.token, sizeof(a.token), 0) != sizeof(a.token)) {
			snprintf(err, errlen, "BPF policy: getrandom: %s", strerror(errno));
			return -errno;
		}
	t.token = a.token;
	pol.pidfd = syscall(SYS_pidfd_open, getpid(), 0);
	if (pol.pidfd < 0 || bpf_map_update_elem(pol.agent_task, &pol.pidfd, &t, BPF_ANY) ||
	    bpf_map_update_elem(pol.agent, &zero, &a, BPF_ANY)) {
		snprintf(err, errlen, "BPF policy: cannot register danced: %s", strerror(errno));
		return -errno;
	}
	pol.token = a.token;
	return 0;
}

/**
 * policy_init - load the policy programs, or reuse the pinned ones, before privileges go
 *
 * Return: 0 (also when bpf_policy = no); or a negative errno with @err saying what is
 * missing or wrong: bpffs, BTF, BPF LSM in the active list, privileges, pins of another
 * danced version (-EEXIST), another danced on the same pins (-EBUSY).
 */
int policy_init(const struct config *cfg, char *err, size_t errlen)
{
	struct danced_bpf *skel;
	struct bpf_map *map;
	struct statfs fs;
	char path[256];
	bool reuse;
	int ret;

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
		if (!pinnable(map))
			continue;
		ret = pin_path(path, sizeof(path), cfg, bpf_map__name(map)) ?:
			      bpf_map__set_pin_path(map, path);
		if (ret) {
			snprintf(err, errlen, "BPF policy: %s: %s", path, strerror(-ret));
			goto out;
		}
	}
	ret = pins_check(skel, cfg, &reuse, err, errlen);
	if (ret)
		goto out;
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
	pol.sk_ident = dup(bpf_map__fd(skel->maps.sk_ident));
	pol.identities = dup(bpf_map__fd(skel->maps.identities));
	pol.services = dup(bpf_map__fd(skel->maps.services));
	pol.rules = dup(bpf_map__fd(skel->maps.rules));
	pol.events = dup(bpf_map__fd(skel->maps.events));
	pol.agent = dup(bpf_map__fd(skel->maps.agent));
	pol.agent_task = dup(bpf_map__fd(skel->maps.agent_task));
	if (pol.sk_ident < 0 || pol.identities < 0 || pol.services < 0 || pol.rules < 0 ||
	    pol.events < 0 || pol.agent < 0 || pol.agent_task < 0) {
		ret = -errno;
		snprintf(err, errlen, "BPF policy: %s", strerror(-ret));
		goto out;
	}
	ret = agent_register(err, errlen);
	if (ret)
		goto out;
	pol.rb = ring_buffer__new(pol.events, log_event, NULL, NULL);
	if (!pol.rb ||
	    ring_buffer__add(pol.rb, bpf_map__fd(skel->maps.closed), socket_closed, NULL)) {
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

static void close_fd(int *fd)
{
	if (*fd >= 0)
		close(*fd);
	*fd = -1;
}

/* danced stops: from now on nothing is exempt, sockets it still held included. */
void policy_fini(void)
{
	struct danced_agent none = { 0 };
	__u32 zero = 0;

	if (pol.token) {
		bpf_map_update_elem(pol.agent, &zero, &none, BPF_ANY);
		bpf_map_delete_elem(pol.agent_task, &pol.pidfd);
		pol.token = 0;
	}
	ring_buffer__free(pol.rb);
	pol.rb = NULL;
	close_fd(&pol.sk_ident);
	close_fd(&pol.identities);
	close_fd(&pol.services);
	close_fd(&pol.rules);
	close_fd(&pol.events);
	close_fd(&pol.agent);
	close_fd(&pol.agent_task);
	close_fd(&pol.pidfd);
	pol.on = false;
}

/**
 * policy_hold - danced has taken @fd: let its own handshake I/O pass a protected port
 *
 * Marks the socket with this run's token; only danced's threads pass on it, only while
 * danced runs. Call it for every socket danced takes, before any I/O on it; then, for a
 * held socket, exactly one of policy_identify() and policy_release(). One map update.
 *
 * Return: 1 when the socket is now held; 0 when the policy is off (nothing to hold); or
 * the negated errno of the map update (the handshake would be refused on a protected
 * port: fail the request with it).
 */
int policy_hold(int fd)
{
	struct danced_ident id = { .hold = pol.token };

	if (!pol.on)
		return 0;
	return bpf_map_update_elem(pol.sk_ident, &fd, &id, BPF_ANY) ? -errno : 1;
}

/**
 * policy_release - the handshake on @fd failed: drop the hold, write no identity
 *
 * For a socket policy_hold() held, and only for one: on any other it would remove an
 * identity. The socket then moves no data on a protected port, for anybody. One map
 * update; none is needed when danced's descriptor was the socket's last (front door).
 */
void policy_release(int fd)
{
	if (pol.on && fd >= 0 && bpf_map_delete_elem(pol.sk_ident, &fd) && errno != ENOENT)
		log_warn("policy: cannot release socket %d: %s", fd, strerror(errno));
}

/* A name the rules can name: DNS characters, no empty label, no wildcard. */
static bool rule_name(const char *name, size_t n)
{
	size_t i;

	if (!n || n >= DANCED_BPF_NAME_MAX || name[0] == '.' || name[n - 1] == '.')
		return false;
	for (i = 0; i < n; i++)
		if (!(isalnum((unsigned char)name[i]) || name[i] == '-' || name[i] == '_' ||
		      (name[i] == '.' && name[i + 1] != '.')))
			return false;
	return true;
}

/*
 * The name the policy judges: DANE's verified name, or an X.509 peer's first SAN
 * dNSName that is not a wildcard ("*.example.com" names no one peer, so it is never
 * an identity; a certificate with only wildcards has none).
 */
static size_t policy_name(const struct dance_result *r, char *out, size_t max)
{
	bool dane = r->auth == DANCE_AUTH_DANE || r->auth == DANCE_AUTH_EA_DANE ||
		    r->auth == DANCE_AUTH_PHA_DANE;
	const char *p = dane ? r->verified_name : r->peer_names;
	size_t n;

	if (r->auth == DANCE_AUTH_NONE)
		return 0;
	for (; *p; p += n + (p[n] == ' ')) {
		n = dane ? strlen(p) : strcspn(p, " ");
		if (n >= max || !rule_name(p, n))
			continue;
		memcpy(out, p, n);
		out[n] = '\0';
		return n;
	}
	return 0;
}

/*
 * Would the kernel refuse this identity's I/O? The same decision as the hooks'
 * (refusal() in danced.bpf.c), made here for plaintext danced read before offload, which
 * no hook will see. @mode is what the programs noted while danced's handshake I/O
 * passed: a service that was not enforcing then costs no lookup. A socket danced could
 * not place (netns 0) counts as refused.
 */
static bool refused(const struct danced_ident *id, __u8 mode)
{
	struct danced_service_key sk = danced_service_key(id->netns, id->port);
	struct danced_rule_key k = { .netns = id->netns, .port = id->port };
	struct danced_service svc;
	struct danced_rule r;

	if (!id->netns)
		return true;
	if (mode != DANCED_MODE_ENFORCE)
		return false;
	if (bpf_map_lookup_elem(pol.services, &sk, &svc) || svc.mode != DANCED_MODE_ENFORCE)
		return false;
	if (id->auth == DANCED_AUTH_NONE || !id->name_len)
		return true;
	k.prefixlen = 8 * (sizeof(k.netns) + sizeof(k.port) + sizeof(k.rname));
	memcpy(k.rname, id->rname, sizeof(k.rname));
	if (bpf_map_lookup_elem(pol.rules, &k, &r))
		return svc.dflt != DANCED_VERDICT_ALLOW;
	return r.verdict != DANCED_VERDICT_ALLOW || !danced_proof_admits(r.proof, id->auth);
}

/**
 * policy_proof_asked - the server asked danced for a proof of @fd's peer: note when
 *
 * Where the service has a proof window (danced_service.proof_window), the programs let
 * a socket the policy refuses carry that exchange for so long. Nothing changes for a
 * socket danced holds or never identified. Map operations: 1, and 2 more to note it.
 *
 * Return: 0, or the negated errno of a map operation.
 */
int policy_proof_asked(int fd)
{
	struct danced_ident id;
	struct timespec ts;
	int ret = 0;

	if (!pol.on)
		return 0;
	/* Read, change, write: a proof validated meanwhile must not be written over. */
	pthread_mutex_lock(&pol.ea_lock);
	/* One window per socket: asking again must not keep a refused socket open. */
	if (bpf_map_lookup_elem(pol.sk_ident, &fd, &id) || id.hold || id.proof_asked)
		goto out;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	id.proof_asked = (uint64_t)ts.tv_sec * 1000000000ULL + ts.tv_nsec ?: 1;
	if ((bpf_map_update_elem(pol.identities, &id.cookie, &id, BPF_EXIST) && errno != ENOENT) ||
	    bpf_map_update_elem(pol.sk_ident, &fd, &id, BPF_EXIST))
		ret = -errno;
out:
	pthread_mutex_unlock(&pol.ea_lock);
	return ret;
}

/*
 * policy_identify() for a proof after the handshake: serialised with
 * policy_proof_asked(), which another worker may run on the same socket.
 */
int policy_reidentify(int fd, const struct svc_config *cfg, struct dance_result *r)
{
	int ret;

	pthread_mutex_lock(&pol.ea_lock);
	ret = policy_identify(fd, cfg, r);
	pthread_mutex_unlock(&pol.ea_lock);
	return ret;
}

/* The socket's local port, when the programs did not note it. */
static __u16 local_port(int fd)
{
	struct sockaddr_storage ss;
	socklen_t len = sizeof(ss);

	if (getsockname(fd, (struct sockaddr *)&ss, &len))
		return 0;
	return ntohs(ss.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&ss)->sin6_port :
						((struct sockaddr_in *)&ss)->sin_port);
}

/**
 * policy_identify - record who is behind @fd, before the server gets it; the hold goes
 * @cfg: the service that answered (a client role only marks the socket)
 * @r: the result (auth, names, cookie, TLS version and cipher)
 *
 * Socket storage (by fd) is what the hooks read, written in the same update that ends
 * the hold; "identities" (by cookie) is what operators list. Without this, a protected
 * port would refuse the socket's I/O, so a failure fails the connection rather than
 * handing over a socket that cannot work: the hold then still stands, for an alert, and
 * the caller calls policy_release(). Map operations: 3 (read the hold, write the
 * identity twice), 5 on an enforcing service; a client role's 1 (the hold goes).
 *
 * Return: 0; 1 when the kernel will refuse the socket's I/O, so plaintext danced read
 * behind the handshake must be withheld as the kernel would have refused its read; or
 * the negated errno of a map operation.
 */
int policy_identify(int fd, const struct svc_config *cfg, struct dance_result *r)
{
	struct danced_ident id = { 0 }, held = { 0 };
	char name[DANCE_HOST_MAX];
	size_t n;
	int ret;

	if (!pol.on)
		return 0;
	/*
	 * A client role names nobody to the policy, but the socket stays marked (its
	 * cookie, no identity, no hold) so that its close is reported too.
	 */
	if (cfg->role != ROLE_SERVER) {
		id.cookie = r->cookie;
		return bpf_map_update_elem(pol.sk_ident, &fd, &id, BPF_ANY) ? -errno : 0;
	}
	/* The programs noted the socket's service while danced's handshake I/O passed. */
	bpf_map_lookup_elem(pol.sk_ident, &fd, &held);
	id.netns = held.netns;
	id.port = held.port ?: local_port(fd);
	id.cookie = r->cookie;
	id.auth = r->auth;
	id.tls_version = r->tls_version;
	id.cipher = r->cipher;
	/* Reversed and dot-terminated: suffix rules are then prefixes (bpf/danced.h). */
	n = policy_name(r, name, sizeof(name));
	id.name_len = danced_rname(name, n, id.rname, sizeof(id.rname)) ? n : 0;
	/* The socket's storage last: until it is written, the hold stands. */
	if (bpf_map_update_elem(pol.identities, &id.cookie, &id, BPF_ANY))
		return -errno;
	if (bpf_map_update_elem(pol.sk_ident, &fd, &id, BPF_ANY)) {
		ret = -errno;
		bpf_map_delete_elem(pol.identities, &id.cookie);
		return ret;
	}
	return refused(&id, held.mode) ? 1 : 0;
}
