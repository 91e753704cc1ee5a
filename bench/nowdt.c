// SPDX-License-Identifier: GPL-2.0
/*
 * nowdt.so - LD_PRELOAD for HAProxy under callgrind: no per-thread CPU timers
 *
 * HAProxy's watchdog arms a CPU-time timer per thread and kills the process when one
 * task runs for two of its periods. Under callgrind inside an emulated VM a single TLS
 * handshake takes seconds, so the watchdog would end every measurement. Without
 * timer_create(2) HAProxy warns, runs without lockup detection, and does the same TLS
 * work. bench/insns preloads this for HAProxy only; nothing else uses it.
 */
#include <errno.h>
#include <signal.h>
#include <time.h>

int timer_create(clockid_t clockid, struct sigevent *sevp, timer_t *timerid)
{
	(void)clockid;
	(void)sevp;
	(void)timerid;
	errno = ENOTSUP;
	return -1;
}
