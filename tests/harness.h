/* SPDX-License-Identifier: GPL-2.0 */
/*
 * harness.h - the kernel's kselftest harness, plus a machine-readable test list.
 *
 * kselftest_harness.h comes from Debian's linux-source package at build time (see
 * tests/vm/fetch); it is never committed. tests/run-tests runs every test on its own
 * (`BIN -r NAME`) so that a kernel splat can be pinned to the test that caused it, and
 * `BIN --list` tells it the names, which the harness's own column listing cannot do
 * reliably.
 */
#ifndef DANCED_TESTS_HARNESS_H
#define DANCED_TESTS_HARNESS_H

#include <unistd.h>

/*
 * The harness ends each test's processes with _exit(), which skips LeakSanitizer's
 * check at exit, so a unit test could leak unseen. Under the sanitizers, check first:
 * a report goes where ASAN_OPTIONS says, and tests/run-tests fails the test for it.
 */
#ifdef __SANITIZE_ADDRESS__
#include <sanitizer/lsan_interface.h>

static inline void harness_exit(int code)
{
	__lsan_do_recoverable_leak_check();
	_exit(code);
}
#define _exit harness_exit
#endif

/* The harness is kernel code written for the kernel's warning set, not ours. */
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmissing-prototypes"
#pragma GCC diagnostic ignored "-Wshadow"
#pragma GCC diagnostic ignored "-Wsign-compare"
#pragma GCC diagnostic ignored "-Wunused-parameter"
#include "kselftest_harness.h"
#pragma GCC diagnostic pop

/* Names in the form that `-r` accepts: fixture.variant.test, or fixture.test. */
static inline void harness_list(void)
{
	struct __fixture_variant_metadata no_variant = { .name = "" };
	struct __fixture_variant_metadata *v;
	struct __fixture_metadata *f;
	struct __test_metadata *t;

	for (f = __fixture_list; f; f = f->next)
		for (v = f->variant ?: &no_variant; v; v = v->next)
			for (t = f->tests; t; t = t->next)
				printf("%s.%s%s%s\n", f->name, v->name, v->name[0] ? "." : "",
				       t->name);
}

#define DANCED_HARNESS_MAIN                                    \
	int main(int argc, char **argv)                        \
	{                                                      \
		if (argc == 2 && !strcmp(argv[1], "--list")) { \
			harness_list();                        \
			return 0;                              \
		}                                              \
		return test_harness_run(argc, argv);           \
	}

#endif
