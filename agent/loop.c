// SPDX-License-Identifier: GPL-2.0
/*
 * loop.c - the workers: one thread and one io_uring each, all socket I/O on the ring.
 *
 * Every ring operation carries an object pointer with the operation in its low bits;
 * handle_cqe() decodes it and calls the one handler for that operation. Each completion
 * is taken off the ring before its handler runs, so handlers that submit find room.
 * Handlers that get a conn finish with conn_put(), so a conn is freed only after its
 * last completion. A ring that fails ends its worker: every socket it holds gets its
 * result without the ring, and danced exits with status 1 for its supervisor to restart.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/eventfd.h>
#include <sys/mman.h>

#include "agent.h"

#define RING_ENTRIES 1024
#define RING_CQ_MAX 65536 /* the kernel's limit */
/*
 * Receive buffers the kernel picks only when data arrives: a handshake that waits for
 * its peer then holds none. Only completions not yet handled hold one (a buffer goes
 * back as soon as OpenSSL has taken its bytes), so a few dozen serve thousands of
 * handshakes; when they run out, a recv falls back to a buffer of its own.
 */
#define RECV_BUFS 128

/*
 * Where preparations go once the ring is dead: callers need not check, nothing from it
 * is ever submitted.
 */
static __thread struct io_uring_sqe dead_sqe;

static void ring_failed(struct worker *w, int err)
{
	if (w->ring_dead)
		return;
	w->ring_dead = true;
	log_err("worker %u: io_uring failed: %s; failing the %u connections it holds", w->index,
		strerror(-err), w->n_live);
}

uint8_t *loop_buf(struct worker *w, unsigned int bid)
{
	return bid < w->br_n ? w->br_bufs + (size_t)bid * TLS_BUF_SIZE : NULL;
}

void loop_buf_return(struct worker *w, unsigned int bid)
{
	io_uring_buf_ring_add(w->br, loop_buf(w, bid), TLS_BUF_SIZE, bid,
			      io_uring_buf_ring_mask(w->br_n), 0);
	io_uring_buf_ring_advance(w->br, 1);
}

/* The provided receive buffers; without them (an old kernel), recvs bring their own. */
static void bufs_init(struct worker *w)
{
	struct io_uring_buf_reg reg = { 0 };
	size_t len = RECV_BUFS * sizeof(struct io_uring_buf);
	unsigned int i;
	void *ring;

	ring = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_ANONYMOUS | MAP_PRIVATE, -1, 0);
	w->br_bufs = malloc((size_t)RECV_BUFS * TLS_BUF_SIZE);
	if (ring == MAP_FAILED || !w->br_bufs)
		goto fail;
	reg.ring_addr = (unsigned long)ring;
	reg.ring_entries = RECV_BUFS;
	reg.bgid = LOOP_BGID;
	if (io_uring_register_buf_ring(&w->ring, &reg, 0))
		goto fail;
	w->br = ring;
	w->br_n = RECV_BUFS;
	io_uring_buf_ring_init(w->br);
	for (i = 0; i < RECV_BUFS; i++)
		io_uring_buf_ring_add(w->br, loop_buf(w, i), TLS_BUF_SIZE, i,
				      io_uring_buf_ring_mask(RECV_BUFS), i);
	io_uring_buf_ring_advance(w->br, RECV_BUFS);
	return;
fail:
	log_info("worker %u: no provided receive buffers; each recv brings its own", w->index);
	if (ring != MAP_FAILED)
		munmap(ring, len);
	free(w->br_bufs);
	w->br_bufs = NULL;
}

static void bufs_fini(struct worker *w)
{
	if (w->br)
		munmap(w->br, RECV_BUFS * sizeof(struct io_uring_buf));
	free(w->br_bufs);
	w->br = NULL;
	w->br_bufs = NULL;
	w->br_n = 0;
}

static int ring_submit(struct worker *w)
{
	int ret;

	if (w->ring_dead)
		return -EIO;
	if (agent.ring_fail_at && ++w->submits >= agent.ring_fail_at)
		ret = -EIO; /* DANCED_DEBUG_RING_FAIL: as if the kernel had refused */
	else
		ret = io_uring_submit(&w->ring);
	if (ret < 0 && ret != -EINTR && ret != -EAGAIN && ret != -EBUSY)
		ring_failed(w, ret);
	return ret;
}

/**
 * loop_sqe - a submission entry on @w's ring
 *
 * When the submission queue is full, what is queued goes to the kernel first (the
 * completions those make land in the kernel's overflow list until the loop reaps them).
 * Never NULL: on a dead ring it returns a scratch entry that is never submitted.
 */
struct io_uring_sqe *loop_sqe(struct worker *w)
{
	struct io_uring_sqe *sqe;
	int tries = 0;

	while (!w->ring_dead) {
		sqe = io_uring_get_sqe(&w->ring);
		if (sqe)
			return sqe;
		if (ring_submit(w) < 0 && ++tries > 1000)
			ring_failed(w, -EBUSY);
	}
	memset(&dead_sqe, 0, sizeof(dead_sqe));
	return &dead_sqe;
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

static void arm_wake(struct worker *w)
{
	struct io_uring_sqe *sqe = loop_sqe(w);

	io_uring_prep_read(sqe, w->wake_fd, &w->wake_buf, sizeof(w->wake_buf), 0);
	io_uring_sqe_set_data64(sqe, op_data(w, OP_WAKE));
}

static void handle_cqe(struct worker *w, uint64_t data, int res, unsigned int flags)
{
	void *obj = (void *)(uintptr_t)(data & ~OP_MASK);
	bool more = flags & IORING_CQE_F_MORE;

	switch ((enum op)(data & OP_MASK)) {
	case OP_CHAN_ACCEPT:
		handoff_accepted(w, res, NULL);
		if (!more && !atomic_load(&agent.stopping))
			handoff_arm_accept(w, agent.handoff_fd, w, OP_CHAN_ACCEPT);
		break;
	case OP_BACKEND_ACCEPT:
		frontdoor_backend_accepted(w, obj, res, more);
		break;
	case OP_CHAN_RECV:
		handoff_recv_done(obj, res);
		break;
	case OP_CONN_IO:
		conn_io_done(obj, res, flags);
		break;
	case OP_CONN_DEADLINE:
		conn_deadline_done(obj, res);
		break;
	case OP_RESULT_SEND:
		conn_result_sent(obj, res);
		break;
	case OP_TCP_ACCEPT:
		frontdoor_accepted(w, obj, res);
		break;
	case OP_WAKE:
		arm_wake(w); /* also while stopping: DNS answers still come this way */
		mailbox_drain(w);
		frontdoor_pump(w, false);
		break;
	case OP_TICK:
		w->tick_armed = false;
		frontdoor_pump(w, false);
		break;
	case OP_KERNEL:
		kernel_ready(w, res);
		break;
	case OP_KERNEL_DONE:
		kernel_held_done(obj);
		break;
	case OP_IGNORE:
		break;
	default:
		log_err("worker %u: completion with unknown user_data %#llx", w->index,
			(unsigned long long)data);
		break;
	}
}

/* Tell the main thread that this worker left (it may have failed). */
static void worker_left(struct worker *w)
{
	uint64_t one = 1;

	(void)w;
	atomic_fetch_sub(&agent.n_running, 1);
	if (write(agent.control_fd, &one, sizeof(one)) < 0)
		log_err("waking the main thread: %s", strerror(errno));
}

static void *worker_main(void *arg)
{
	struct worker *w = arg;
	struct io_uring_cqe *cqe;
	uint64_t stop_deadline = 0, data;
	struct __kernel_timespec ts = { .tv_nsec = 100000000 };
	unsigned int flags;
	int ret, res;

	handoff_arm_accept(w, agent.handoff_fd, w, OP_CHAN_ACCEPT);
	frontdoor_arm(w);
	kernel_arm(w);
	arm_wake(w);
	while (!w->ring_dead) {
		if (atomic_load(&agent.stopping)) {
			/* Let handshakes in flight finish, within the longest deadline. */
			if (!stop_deadline) {
				stop_deadline = now_ns() + agent.stop_grace_ns;
				frontdoor_pump(w, true);
			}
			if (!w->n_live || now_ns() > stop_deadline)
				break;
			if (agent.ring_fail_at && ++w->submits >= agent.ring_fail_at) {
				ring_failed(w, -EIO);
				break;
			}
			ret = io_uring_submit_and_wait_timeout(&w->ring, &cqe, 1, &ts, NULL);
		} else {
			if (agent.ring_fail_at && ++w->submits >= agent.ring_fail_at) {
				ring_failed(w, -EIO);
				break;
			}
			ret = io_uring_submit_and_wait(&w->ring, 1);
		}
		if (ret < 0 && ret != -EINTR && ret != -ETIME && ret != -EAGAIN && ret != -EBUSY) {
			ring_failed(w, ret);
			break;
		}
		/* One at a time, off the ring before the handler: the CQ keeps room. */
		while (!w->ring_dead && io_uring_peek_cqe(&w->ring, &cqe) == 0) {
			data = io_uring_cqe_get_data64(cqe);
			res = cqe->res;
			flags = cqe->flags;
			io_uring_cqe_seen(&w->ring, cqe);
			handle_cqe(w, data, res, flags);
		}
	}
	if (w->ring_dead) {
		/* Exactly once, without the ring: every socket still held gets its result. */
		conn_fail_all(w, -EIO, "danced's io_uring failed on this worker (ring error)");
		atomic_store(&agent.exit_status, 1);
		atomic_store(&agent.stopping, true);
	} else if (w->n_live) {
		w->ring_dead = true; /* from here on, nothing goes through the ring */
		conn_fail_all(w, -ESHUTDOWN, "danced stopped before the handshake finished");
	}
	worker_left(w);
	return NULL;
}

/* Each worker's ring; sizes may be forced small to test a full ring. */
static int ring_init(struct worker *w, unsigned int max_handshakes)
{
	struct io_uring_params p;
	unsigned int sq = agent.ring_entries ?: RING_ENTRIES, cq;
	int ret;

	/*
	 * Room for every conn's operations at once (a read or send, its deadline, a cancel
	 * or removal, its result): overflow is survivable (the kernel keeps the entries), but
	 * costs. A forced tiny ring gets a tiny completion queue too, to test exactly that.
	 */
	cq = agent.ring_entries ? 2 * sq : 4 * max_handshakes + 8 * sq;
	if (cq > RING_CQ_MAX)
		cq = RING_CQ_MAX;
	/* One thread submits; completions run when it asks, not by interrupt. */
	memset(&p, 0, sizeof(p));
	p.flags = IORING_SETUP_SUBMIT_ALL | IORING_SETUP_COOP_TASKRUN | IORING_SETUP_CQSIZE;
	p.cq_entries = cq;
	ret = io_uring_queue_init_params(sq, &w->ring, &p);
	if (ret == -EINVAL) {
		/* Older kernels lack some flags; the ring works without them. */
		memset(&p, 0, sizeof(p));
		p.flags = IORING_SETUP_CQSIZE;
		p.cq_entries = cq;
		ret = io_uring_queue_init_params(sq, &w->ring, &p);
	}
	if (ret)
		log_err("worker %u: io_uring_queue_init: %s", w->index, strerror(-ret));
	else
		bufs_init(w);
	return ret;
}

/**
 * loop_init - create the workers' rings and listeners, before privileges are dropped
 *
 * Return: 0, or a negative errno from io_uring_queue_init(), eventfd(2), malloc or a
 * listener.
 */
int loop_init(struct agent *a)
{
	unsigned int i, max = a->state->cfg->max_handshakes;
	int ret;

	a->workers = calloc(a->n_workers, sizeof(*a->workers));
	if (!a->workers)
		return -ENOMEM;
	for (i = 0; i < a->n_workers; i++) {
		struct worker *w = &a->workers[i];

		w->index = i;
		pthread_mutex_init(&w->mail_lock, NULL);
		w->scratch = malloc(TLS_RECORD_PLAIN_MAX);
		if (!w->scratch) {
			ret = -ENOMEM;
			goto fail;
		}
		ret = ring_init(w, max);
		if (ret) {
			free(w->scratch);
			goto fail;
		}
		w->wake_fd = eventfd(0, EFD_CLOEXEC);
		if (w->wake_fd < 0) {
			ret = -errno;
			io_uring_queue_exit(&w->ring);
			bufs_fini(w);
			free(w->scratch);
			goto fail;
		}
		ret = frontdoor_listen(a, w) ?: kernel_worker_init(w);
		if (ret) {
			frontdoor_close(w);
			close(w->wake_fd);
			io_uring_queue_exit(&w->ring);
			bufs_fini(w);
			free(w->scratch);
			goto fail;
		}
	}
	return 0;
fail:
	while (i--) {
		kernel_worker_fini(&a->workers[i]);
		frontdoor_close(&a->workers[i]);
		close(a->workers[i].wake_fd);
		io_uring_queue_exit(&a->workers[i].ring);
		bufs_fini(&a->workers[i]);
		free(a->workers[i].scratch);
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
		atomic_fetch_add(&a->n_running, 1);
		ret = -pthread_create(&a->workers[i].thread, NULL, worker_main, &a->workers[i]);
		if (ret) {
			atomic_fetch_sub(&a->n_running, 1);
			log_err("cannot start worker %u: %s", i, strerror(-ret));
			loop_stop(a);
			return ret;
		}
		a->n_started = i + 1;
	}
	return 0;
}

/* Ask every worker to stop: each drains its handshakes within the grace period. */
void loop_stop_begin(struct agent *a)
{
	unsigned int i;

	atomic_store(&a->stopping, true);
	for (i = 0; i < a->n_started; i++)
		loop_wake(&a->workers[i]);
}

/* Stop, wait for every worker, and release what they had. */
void loop_stop(struct agent *a)
{
	unsigned int i;

	loop_stop_begin(a);
	for (i = 0; i < a->n_started; i++)
		pthread_join(a->workers[i].thread, NULL);
	for (i = 0; i < a->n_workers; i++) {
		struct worker *w = &a->workers[i];

		frontdoor_close(w);
		close(w->wake_fd);
		/* The kernel cancels what the ring still holds; conns it pointed to go after. */
		io_uring_queue_exit(&w->ring);
		bufs_fini(w);
		conn_free_all(w);
		conn_pool_fini(w);
		kernel_worker_fini(w); /* after the workers' last DONE */
	}
	/* The pools' lists of backends point at channels that go now. */
	for (i = 0; i < a->n_pools; i++)
		a->pools[i].backends = a->pools[i].next = NULL;
	for (i = 0; i < a->n_workers; i++)
		channel_free_all(&a->workers[i]);
	free(a->workers);
	a->workers = NULL;
	a->n_started = 0;
}
