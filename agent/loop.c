// SPDX-License-Identifier: GPL-2.0
/*
 * loop.c - the workers: one thread and one io_uring each, all socket I/O on the ring.
 *
 * Every ring operation carries an object pointer with the operation in its low bits;
 * handle_cqe() decodes it and calls the one handler for that operation. Handlers that get
 * a conn finish with conn_put(), so a conn is freed only after its last completion.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <poll.h>
#include <sys/eventfd.h>

#include "agent.h"

#define RING_ENTRIES 1024

struct io_uring_sqe *loop_sqe(struct worker *w)
{
	struct io_uring_sqe *sqe = io_uring_get_sqe(&w->ring);

	while (!sqe) {
		/* The SQ is full: hand what is queued to the kernel and take a fresh slot. */
		io_uring_submit(&w->ring);
		sqe = io_uring_get_sqe(&w->ring);
	}
	return sqe;
}

/* Make room for @n entries that must be submitted together (a linked pair). */
void loop_reserve(struct worker *w, unsigned int n)
{
	if (io_uring_sq_space_left(&w->ring) < n)
		io_uring_submit(&w->ring);
}

void loop_wake(struct worker *w)
{
	uint64_t one = 1;

	if (write(w->wake_fd, &one, sizeof(one)) < 0)
		log_warn("waking worker %u: %s", w->index, strerror(errno));
}

/* Come back in a second (front-door sockets are waiting for a backend). */
void loop_tick(struct worker *w)
{
	struct io_uring_sqe *sqe;

	if (w->tick_armed)
		return;
	w->tick.tv_sec = 1;
	w->tick.tv_nsec = 0;
	sqe = loop_sqe(w);
	io_uring_prep_timeout(sqe, &w->tick, 0, 0);
	io_uring_sqe_set_data64(sqe, op_data(w, OP_TICK));
	w->tick_armed = true;
}

/* Worker 0 watches libunbound's descriptor; the others get answers by mailbox. */
static void arm_dns(struct worker *w)
{
	struct io_uring_sqe *sqe;

	if (w->index || dane_fd() < 0)
		return;
	sqe = loop_sqe(w);
	io_uring_prep_poll_multishot(sqe, dane_fd(), POLLIN);
	io_uring_sqe_set_data64(sqe, op_data(w, OP_DNS));
}

/* Worker 0 also reads the kernel policy's refusals, to log them. */
static void arm_policy(struct worker *w)
{
	struct io_uring_sqe *sqe;

	if (w->index || policy_events_fd() < 0)
		return;
	sqe = loop_sqe(w);
	io_uring_prep_poll_multishot(sqe, policy_events_fd(), POLLIN);
	io_uring_sqe_set_data64(sqe, op_data(w, OP_POLICY));
}

static void arm_wake(struct worker *w)
{
	struct io_uring_sqe *sqe = loop_sqe(w);

	io_uring_prep_read(sqe, w->wake_fd, &w->wake_buf, sizeof(w->wake_buf), 0);
	io_uring_sqe_set_data64(sqe, op_data(w, OP_WAKE));
}

static void handle_cqe(struct worker *w, struct io_uring_cqe *cqe)
{
	uint64_t data = io_uring_cqe_get_data64(cqe);
	void *obj = (void *)(uintptr_t)(data & ~OP_MASK);
	bool more = cqe->flags & IORING_CQE_F_MORE;

	switch ((enum op)(data & OP_MASK)) {
	case OP_CHAN_ACCEPT:
		handoff_accepted(w, cqe->res, NULL);
		if (!more && !atomic_load(&agent.stopping))
			handoff_arm_accept(w, agent.handoff_fd, w, OP_CHAN_ACCEPT);
		break;
	case OP_BACKEND_ACCEPT:
		frontdoor_backend_accepted(w, obj, cqe->res, more);
		break;
	case OP_CHAN_RECV:
		handoff_recv_done(obj, cqe->res);
		break;
	case OP_CONN_IO:
		conn_io_done(obj, cqe->res);
		break;
	case OP_CONN_TIMEOUT:
		conn_timeout_done(obj, cqe->res);
		break;
	case OP_RESULT_SEND:
		conn_result_sent(obj, cqe->res);
		break;
	case OP_TCP_ACCEPT:
		frontdoor_accepted(w, obj, cqe->res, more);
		break;
	case OP_WAKE:
		if (!atomic_load(&agent.stopping))
			arm_wake(w);
		mailbox_drain(w);
		frontdoor_pump(w);
		break;
	case OP_DNS:
		dane_process();
		if (!more)
			arm_dns(w);
		break;
	case OP_POLICY:
		policy_events_drain();
		if (!more)
			arm_policy(w);
		break;
	case OP_CONN_DNS_TIMEOUT:
		conn_dns_timeout_done(obj, cqe->res);
		break;
	case OP_IGNORE:
		break;
	case OP_TICK:
		w->tick_armed = false;
		frontdoor_pump(w);
		break;
	default:
		log_err("worker %u: completion with unknown user_data %#llx", w->index,
			(unsigned long long)data);
		break;
	}
}

static void *worker_main(void *arg)
{
	struct worker *w = arg;
	struct io_uring_cqe *cqe;
	unsigned int head, n;
	uint64_t stop_deadline = 0;
	struct __kernel_timespec ts = { .tv_nsec = 100000000 };
	int ret;

	handoff_arm_accept(w, agent.handoff_fd, w, OP_CHAN_ACCEPT);
	frontdoor_arm(w);
	arm_wake(w);
	arm_dns(w);
	arm_policy(w);
	for (;;) {
		if (atomic_load(&agent.stopping)) {
			/* Let handshakes in flight finish, within the longest deadline. */
			if (!stop_deadline)
				stop_deadline = now_ns() + agent.stop_grace_ns;
			if (!w->live || now_ns() > stop_deadline)
				break;
			ret = io_uring_submit_and_wait_timeout(&w->ring, &cqe, 1, &ts, NULL);
		} else {
			ret = io_uring_submit_and_wait(&w->ring, 1);
		}
		if (ret < 0 && ret != -EINTR && ret != -ETIME && ret != -EAGAIN && ret != -EBUSY) {
			log_err("worker %u: io_uring: %s", w->index, strerror(-ret));
			break;
		}
		n = 0;
		io_uring_for_each_cqe(&w->ring, head, cqe) {
			handle_cqe(w, cqe);
			n++;
		}
		io_uring_cq_advance(&w->ring, n);
	}
	return NULL;
}

/**
 * loop_init - create the workers' rings and listeners, before privileges are dropped
 *
 * Return: 0, or a negative errno from io_uring_queue_init(), eventfd(2) or a listener.
 */
int loop_init(struct agent *a)
{
	struct io_uring_params p = { 0 };
	unsigned int i;
	int ret;

	a->workers = calloc(a->n_workers, sizeof(*a->workers));
	if (!a->workers)
		return -ENOMEM;
	for (i = 0; i < a->n_workers; i++) {
		struct worker *w = &a->workers[i];

		w->index = i;
		pthread_mutex_init(&w->mail_lock, NULL);
		/* One thread submits; completions run when it asks, not by interrupt. */
		memset(&p, 0, sizeof(p));
		p.flags = IORING_SETUP_SUBMIT_ALL | IORING_SETUP_COOP_TASKRUN;
		p.flags |= IORING_SETUP_CQSIZE;
		p.cq_entries = RING_ENTRIES * 8;
		ret = io_uring_queue_init_params(RING_ENTRIES, &w->ring, &p);
		if (ret == -EINVAL) {
			/* Older kernels lack some flags; the ring works without them. */
			memset(&p, 0, sizeof(p));
			p.flags = IORING_SETUP_CQSIZE;
			p.cq_entries = RING_ENTRIES * 8;
			ret = io_uring_queue_init_params(RING_ENTRIES, &w->ring, &p);
		}
		if (ret) {
			log_err("worker %u: io_uring_queue_init: %s", i, strerror(-ret));
			goto fail;
		}
		w->wake_fd = eventfd(0, EFD_CLOEXEC);
		if (w->wake_fd < 0) {
			ret = -errno;
			io_uring_queue_exit(&w->ring);
			goto fail;
		}
		ret = frontdoor_listen(a, w);
		if (ret) {
			close(w->wake_fd);
			io_uring_queue_exit(&w->ring);
			goto fail;
		}
	}
	return 0;
fail:
	while (i--) {
		frontdoor_close(&a->workers[i]);
		close(a->workers[i].wake_fd);
		io_uring_queue_exit(&a->workers[i].ring);
	}
	free(a->workers);
	a->workers = NULL;
	return ret;
}

/**
 * loop_run - start the worker threads
 *
 * Return: 0, or the negative errno of pthread_create(3); started workers are stopped.
 */
int loop_run(struct agent *a)
{
	unsigned int i;
	int ret;

	for (i = 0; i < a->n_workers; i++) {
		ret = -pthread_create(&a->workers[i].thread, NULL, worker_main, &a->workers[i]);
		if (ret) {
			log_err("cannot start worker %u: %s", i, strerror(-ret));
			loop_stop(a);
			return ret;
		}
		a->n_started = i + 1;
	}
	return 0;
}

/* Ask every worker to stop, wait for them, and release their rings. */
void loop_stop(struct agent *a)
{
	unsigned int i;

	atomic_store(&a->stopping, true);
	for (i = 0; i < a->n_started; i++)
		loop_wake(&a->workers[i]);
	for (i = 0; i < a->n_started; i++)
		pthread_join(a->workers[i].thread, NULL);
	for (i = 0; i < a->n_workers; i++) {
		frontdoor_close(&a->workers[i]);
		close(a->workers[i].wake_fd);
		io_uring_queue_exit(&a->workers[i].ring);
		conn_pool_fini(&a->workers[i]);
	}
	free(a->workers);
	a->workers = NULL;
}
