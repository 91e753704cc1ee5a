// SPDX-License-Identifier: GPL-2.0
/*
 * malloc_count.c - an LD_PRELOAD shim that counts a process's heap calls: malloc,
 * calloc, realloc, free, posix_memalign, aligned_alloc, memalign, valloc; the bytes
 * asked for; and the bytes live now (by malloc_usable_size()). It changes nothing
 * else: every call goes on to glibc's allocator.
 *
 *   LD_PRELOAD=build/malloc_count.so MALLOC_COUNT_FILE=/tmp/mc danced -c ...
 *   kill -USR2 $(pidof danced)     # appends one line of totals to /tmp/mc
 *
 * A line is written at each SIGUSR2 and at exit (to stderr without MALLOC_COUNT_FILE):
 *   malloc_count pid=P malloc=N calloc=N realloc=N free=N memalign=N bytes=N live=N
 * The difference of two lines, divided by the handshakes between them, is the cost per
 * handshake. The counters are process-wide and the handler only reads them and calls
 * write(2), so it is safe in any thread at any moment.
 */
#include <errno.h>
#include <fcntl.h>
#include <malloc.h>
#include <signal.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* glibc's own entry points: no dlsym(), which itself allocates. */
extern void *__libc_malloc(size_t size);
extern void *__libc_calloc(size_t n, size_t size);
extern void *__libc_realloc(void *p, size_t size);
extern void __libc_free(void *p);
extern void *__libc_memalign(size_t align, size_t size);

enum {
	MC_MALLOC,
	MC_CALLOC,
	MC_REALLOC,
	MC_FREE,
	MC_MEMALIGN, /* posix_memalign, aligned_alloc, memalign, valloc, pvalloc */
	MC_BYTES, /* asked for, by every allocating call */
	MC_LIVE, /* usable bytes allocated and not yet freed */
	MC_N,
};

static const char *const mc_names[MC_N] = { "malloc",	"calloc", "realloc", "free",
					    "memalign", "bytes",  "live" };
static int64_t mc[MC_N];
static int mc_fd = 2;

static void count(int what, int64_t n)
{
	__atomic_fetch_add(&mc[what], n, __ATOMIC_RELAXED);
}

static void *counted(void *p, int what, size_t asked)
{
	if (p) {
		count(what, 1);
		count(MC_BYTES, asked);
		count(MC_LIVE, malloc_usable_size(p));
	}
	return p;
}

void *malloc(size_t size)
{
	return counted(__libc_malloc(size), MC_MALLOC, size);
}

void *calloc(size_t n, size_t size)
{
	return counted(__libc_calloc(n, size), MC_CALLOC, n * size);
}

void free(void *p)
{
	if (!p)
		return;
	count(MC_FREE, 1);
	count(MC_LIVE, -(int64_t)malloc_usable_size(p));
	__libc_free(p);
}

void *realloc(void *p, size_t size)
{
	size_t old = p ? malloc_usable_size(p) : 0;
	void *q = __libc_realloc(p, size);

	if (!q)
		return NULL; /* p is unchanged (or size was 0 and p is gone: rare enough) */
	count(MC_REALLOC, 1);
	count(MC_BYTES, size);
	count(MC_LIVE, (int64_t)malloc_usable_size(q) - (int64_t)old);
	return q;
}

void *memalign(size_t align, size_t size)
{
	return counted(__libc_memalign(align, size), MC_MEMALIGN, size);
}

void *aligned_alloc(size_t align, size_t size)
{
	return memalign(align, size);
}

int posix_memalign(void **out, size_t align, size_t size)
{
	void *p;

	if (!align || (align & (align - 1)) || align % sizeof(void *))
		return EINVAL;
	p = memalign(align, size);
	if (!p)
		return ENOMEM;
	*out = p;
	return 0;
}

void *valloc(size_t size)
{
	return memalign(sysconf(_SC_PAGESIZE), size);
}

void *pvalloc(size_t size)
{
	size_t page = sysconf(_SC_PAGESIZE);

	return memalign(page, (size + page - 1) & ~(page - 1));
}

/* Decimal, without stdio: this runs in a signal handler. */
static size_t put_num(char *out, int64_t v)
{
	char tmp[24];
	size_t n = 0, i = 0;
	uint64_t u = v < 0 ? -(uint64_t)v : (uint64_t)v;

	do {
		tmp[n++] = '0' + u % 10;
		u /= 10;
	} while (u);
	if (v < 0)
		out[i++] = '-';
	while (n)
		out[i++] = tmp[--n];
	return i;
}

static size_t put_str(char *out, const char *s)
{
	size_t n = strlen(s);

	memcpy(out, s, n);
	return n;
}

static void mc_dump(void)
{
	char line[512];
	size_t n = put_str(line, "malloc_count pid=");
	int i, saved = errno;

	n += put_num(line + n, getpid());
	for (i = 0; i < MC_N; i++) {
		line[n++] = ' ';
		n += put_str(line + n, mc_names[i]);
		line[n++] = '=';
		n += put_num(line + n, __atomic_load_n(&mc[i], __ATOMIC_RELAXED));
	}
	line[n++] = '\n';
	/* A failed write has nowhere to be reported. */
	n = write(mc_fd, line, n);
	errno = saved;
}

static void mc_signal(int sig)
{
	(void)sig;
	mc_dump();
}

__attribute__((constructor)) static void mc_init(void)
{
	const char *path = getenv("MALLOC_COUNT_FILE");
	struct sigaction sa;

	if (path && *path) {
		int fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);

		if (fd >= 0)
			mc_fd = fd;
	}
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = mc_signal;
	sa.sa_flags = SA_RESTART;
	sigaction(SIGUSR2, &sa, NULL);
}

__attribute__((destructor)) static void mc_fini(void)
{
	mc_dump();
}
