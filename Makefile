# SPDX-License-Identifier: GPL-2.0
#
# danced: everything builds into build/. `make deps` installs what a fresh Debian 12
# machine lacks, `make check` runs the host unit tests and the VM tests on every pinned
# kernel, `make demo` shows kTLS carrying real traffic. Third-party headers (the
# kselftest harness) come from Debian packages into a cache outside git, never into it.

B := build
CACHE ?= $(or $(DANCED_CACHE),$(HOME)/.cache/danced)

# Our users run Debian 13 (OpenSSL 3.5, liburing 2.9, libbpf 1.5, gcc 14), so build/ is
# built against it: natively on a Debian 13 machine, else inside the Debian 13 root that
# `make deps` puts in the cache (tests/vm/mkroot), entered by tests/vm/inroot. That same
# root is the VM guest's userland. A Debian 12 machine also builds danced and the unit
# tests against its own OpenSSL 3.0 into build/host, and runs those unit tests, so that
# danced keeps building there (features that need OpenSSL 3.2 compiled out).
HOST_SUITE := $(shell . /etc/os-release 2>/dev/null; echo $$VERSION_CODENAME)
ifneq ($(DANCED_IN_ROOT)$(filter trixie,$(HOST_SUITE)),)
INROOT :=
HOST_B ?= $(B)
else
INROOT := tests/vm/inroot
HOST_B ?= build/host
endif
KSFT_DIR ?= $(CACHE)/kselftest
KERNELS := $(shell awk '$$1 == "kernel" { print $$2 }' tests/vm/kernels 2>/dev/null)
KERNEL ?= $(firstword $(KERNELS))

CC ?= gcc
PKGS := libssl libcrypto liburing inih libunbound libbpf libnl-genl-3.0 libkeyutils
WARN := -Wall -Wextra -Werror -Wshadow -Wmissing-prototypes -Wstrict-prototypes
CFLAGS ?= -O2 -g
CFLAGS += -std=gnu11 -D_GNU_SOURCE $(WARN) -fstack-protector-strong -D_FORTIFY_SOURCE=2 \
	  -fPIE $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
LDFLAGS += -pie -Wl,-z,relro,-z,now
LDLIBS += $(shell pkg-config --libs $(PKGS) 2>/dev/null) -lpthread

# The sanitizer build: the same sources under AddressSanitizer and UBSan, built by a
# second make into build/asan with SANITIZE=1 (`make asan`). `make check` runs the host
# unit tests and ASAN_VM_TESTS (those that exist) under it, in the VM on ASAN_KERNEL.
ASAN_B := build/asan
ASAN_VM_TESTS := dns_test conn_test handoff_test dane_test ea_test kernel_test
ASAN_KERNEL ?= 6.12
SAN_FLAGS := -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined
ifeq ($(SANITIZE),1)
# -O1 keeps reports readable and runs about twice as fast as -O0 under TCG; FORTIFY's
# checked copies would hide some accesses from ASan's own interceptors.
CFLAGS += $(SAN_FLAGS) -O1 -U_FORTIFY_SOURCE
LDFLAGS += $(SAN_FLAGS)
endif

# The daemon's stages, in an archive so that a test links only the stages it uses.
AGENT_OBJS := $(addprefix $(B)/obj/agent/,ktls.o config.o log.o admit.o handshake.o verify.o conn.o \
	handoff.o loop.o frontdoor.o dane.o policy.o exported.o kernel.o)
AGENT_LIB := $(B)/libdanced.a
DANCED := $(B)/danced
LIBDANCE_OBJS := $(addprefix $(B)/obj/agent/lib/,dance.o proto.o)
LIBDANCE := $(B)/libdance.a
EXAMPLE := $(B)/dance-echo
DANCECTL := $(B)/dancectl
DANCE_BENCH := $(B)/dance-bench
POLICYCOST := $(B)/policycost
COST_BINS := $(B)/inflight $(B)/connmem $(B)/malloc_count.so $(B)/floor $(B)/nowdt.so $(B)/bulk \
	$(B)/upcall
COST_KERNEL ?= 6.12
TESTLIB_OBJS := $(addprefix $(B)/obj/tests/lib/,pair.o record.o pki.o daemon.o dnsfix.o ea.o)
UNIT_TESTS := $(addprefix $(B)/tests/unit/,ktls_test config_test proto_test libdance_test \
	admit_test dane_test exported_test)
VM_TESTS := $(addprefix $(B)/tests/vm/,ktls_test agent_test dane_test bpf_test dns_test \
	conn_test handoff_test ea_test bench_test kernel_test kpatch_test)
VMROOT := $(B)/vm-root
# The test module (Kbuild, tests/kmod), for every guest kernel whose headers the Debian 13
# root holds: the kernels' own gcc 14 builds it, so only inside the root.
KMOD_SRCS := Kbuild tests/kmod/dance_hs.c tests/kmod/dance_hs.h
KMODS := $(foreach h,$(wildcard /usr/src/linux-headers-*-cloud-amd64),\
	$(B)/kmod/$(patsubst linux-headers-%,%,$(notdir $(h)))/dance_hs.ko)
ASAN_VM_BINS := $(addprefix $(B)/tests/vm/,$(filter $(basename $(notdir $(wildcard tests/vm/*_test.c))),\
	$(ASAN_VM_TESTS)))

.SECONDARY:
.PHONY: all bins host-bins unit-bins asan asan-stage asan-bins host-asan deps check unit unit-asan \
	vm-check demo bench cost vm-shell vm-fetch format format-check clean
all:
	@$(INROOT) $(MAKE) --no-print-directory bins
ifneq ($(INROOT),)
	@$(MAKE) --no-print-directory B=$(HOST_B) host-bins
endif

# Everything, against Debian 13's libraries (in the root on a Debian 12 machine).
bins: $(DANCED) $(DANCECTL) $(LIBDANCE) $(EXAMPLE) $(DANCE_BENCH) $(POLICYCOST) $(COST_BINS) \
	$(UNIT_TESTS) $(VM_TESTS) $(KMODS) $(VMROOT)/.stamp

# Kbuild writes its objects beside the sources: one copy of them per kernel, in build/.
# For the kernel that kernel-patches/ is against (KPATCH_BASE), the copy also gets
# Debian's own net/tls of that kernel (from linux-source, tests/vm/fetch) with the
# series applied, and Kbuild builds it as tls.ko beside dance_hs.ko.
KPATCH_BASE := 6.12.117+deb13-cloud-amd64
# The other series patches net/handshake, which is built in: its files are compiled
# with the kernel's flags (W=1, -Werror) as a check, never linked or loaded.
KPATCH_TLS := $(sort $(filter-out %/0000-cover-letter.patch,$(wildcard kernel-patches/tls-kfunc/*.patch)))
KPATCH_HS := $(sort $(filter-out %/0000-cover-letter.patch,\
	$(wildcard kernel-patches/handshake-sock-ref/*.patch)))
HS_OBJS := genl.o netlink.o request.o tlshd.o trace.o
$(B)/kmod/%/dance_hs.ko: $(KMOD_SRCS) $(KPATCH_TLS) $(KPATCH_HS)
	@rm -rf $(@D) && mkdir -p $(@D)/tests/kmod
	@cp Kbuild $(@D)/ && cp tests/kmod/dance_hs.c tests/kmod/dance_hs.h $(@D)/tests/kmod/
	@if [ "$*" = "$(KPATCH_BASE)" ]; then \
		mkdir -p $(@D)/net $(@D)/hs/net && cp -a $(KSFT_DIR)/linux/net/tls $(@D)/net/ && \
		cp -a $(KSFT_DIR)/linux/Documentation $(@D)/ && \
		cp -a $(KSFT_DIR)/linux/net/handshake $(@D)/hs/net/ && \
		for p in $(KPATCH_TLS); do \
			patch -d $(@D) -p1 -s --no-backup-if-mismatch < $$p || exit 1; \
		done; \
		for p in $(KPATCH_HS); do \
			patch -d $(@D)/hs -p1 -s --no-backup-if-mismatch < $$p || exit 1; \
		done; \
		printf 'obj-m := hs-check.o\nhs-check-y := $(HS_OBJS)\n' > $(@D)/hs/net/handshake/Kbuild; \
		$(MAKE) -s -C /usr/src/linux-headers-$* M=$(CURDIR)/$(@D)/hs/net/handshake \
			W=1 KCFLAGS=-Werror $(HS_OBJS) || exit 1; \
	fi
	$(MAKE) -s -C /usr/src/linux-headers-$* M=$(CURDIR)/$(@D) W=1 KCFLAGS=-Werror modules

# Against this machine's own libraries: what a Debian 12 machine still builds and tests.
host-bins: $(DANCED) $(DANCECTL) $(LIBDANCE) $(EXAMPLE) $(DANCE_BENCH) $(UNIT_TESTS)

# What the sanitizer pass needs, built in $(ASAN_B), staged under build/vm-root/asan; and
# the host's unit tests under the sanitizers, in $(HOST_B)/asan.
asan: all
	@$(INROOT) $(MAKE) --no-print-directory asan-stage
	@$(MAKE) --no-print-directory host-asan

host-asan:
	@$(MAKE) --no-print-directory B=$(HOST_B)/asan SANITIZE=1 unit-bins

unit-bins: $(UNIT_TESTS)

asan-stage:
	@$(MAKE) --no-print-directory B=$(ASAN_B) SANITIZE=1 asan-bins
	@rm -rf $(VMROOT)/asan && mkdir -p $(VMROOT)/asan/tests/vm/bin $(VMROOT)/asan/bin
	cp $(ASAN_B)/danced $(ASAN_B)/dance-echo $(DANCECTL) $(DANCE_BENCH) $(VMROOT)/asan/bin/
	cp $(patsubst $(B)/%,$(ASAN_B)/%,$(ASAN_VM_BINS)) $(VMROOT)/asan/tests/vm/bin/
	cp tests/lsan.supp $(VMROOT)/asan/

asan-bins: $(DANCED) $(EXAMPLE) $(UNIT_TESTS) $(ASAN_VM_BINS)

$(B)/obj/%.o: %.c
	@mkdir -p $(@D)
	$(CC) $(CFLAGS) -MMD -MP -c -o $@ $<

# Test sources see the harness from the cache; nothing else does. Its TEST*() macros
# expand to non-static functions, with parameters a test may not use.
$(B)/obj/tests/%.o: CFLAGS += -I$(KSFT_DIR) -Wno-unused-parameter \
			   -Wno-missing-prototypes -Wno-clobbered \
			   -Wno-misleading-indentation
$(B)/obj/tests/unit/%.o $(B)/obj/tests/vm/%.o: $(KSFT_DIR)/kselftest_harness.h

$(KSFT_DIR)/kselftest_harness.h:
	tests/vm/fetch

# BPF: vmlinux.h comes from the type information (BTF) of the first pinned guest kernel,
# which tests/vm/fetch extracted; it is generated, never committed. CO-RE relocates the
# object to whichever kernel loads it. The skeleton embeds the object for userspace.
BPF_BTF ?= $(CACHE)/kernels/$(KERNEL)/vmlinux
BPF_SKEL := $(B)/bpf/danced.skel.h

$(BPF_BTF):
	tests/vm/fetch

$(B)/bpf/vmlinux.h: | $(BPF_BTF)
	@mkdir -p $(@D)
	bpftool btf dump file $(BPF_BTF) format c > $@.tmp && mv $@.tmp $@

$(B)/bpf/danced.bpf.o: bpf/danced.bpf.c bpf/danced.h $(B)/bpf/vmlinux.h
	clang -O2 -g -target bpf -D__TARGET_ARCH_x86 -Wall -Wextra -Werror \
		-Wno-unused-parameter -I$(B)/bpf -Ibpf -c -o $@ $<

$(BPF_SKEL): $(B)/bpf/danced.bpf.o
	bpftool gen skeleton $< name danced_bpf > $@.tmp && mv $@.tmp $@

# kpatch_test's program calls the kfunc of kernel-patches/ (tests/vm/kpatch.bpf.c).
$(B)/bpf/kpatch.bpf.o: tests/vm/kpatch.bpf.c tests/vm/kpatch.h $(B)/bpf/vmlinux.h
	clang -O2 -g -target bpf -D__TARGET_ARCH_x86 -Wall -Wextra -Werror \
		-Wno-unused-parameter -I$(B)/bpf -Itests/vm -c -o $@ $<

$(B)/bpf/kpatch.skel.h: $(B)/bpf/kpatch.bpf.o
	bpftool gen skeleton $< name kpatch_bpf > $@.tmp && mv $@.tmp $@

$(B)/obj/tests/vm/kpatch_test.o: CFLAGS += -I$(B)/bpf
$(B)/obj/tests/vm/kpatch_test.o: $(B)/bpf/kpatch.skel.h

BPF_USERS := $(B)/obj/tests/vm/bpf_test.o $(B)/obj/tests/vm/dane_test.o $(B)/obj/tests/vm/ea_test.o \
	$(B)/obj/agent/policy.o \
	$(B)/obj/bench/policycost.o
$(BPF_USERS): CFLAGS += -I$(B)/bpf -Ibpf
$(B)/obj/agent/ctl/dancectl.o: CFLAGS += -Ibpf
$(BPF_USERS): $(BPF_SKEL)

$(LIBDANCE): $(LIBDANCE_OBJS)
	$(AR) rcs $@ $^

$(DANCE_BENCH): $(B)/obj/bench/dance_bench.o
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

$(POLICYCOST): $(B)/obj/bench/policycost.o
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

# Memory and work per handshake (make cost, bench/README.md).
$(B)/inflight: $(B)/obj/bench/inflight.o $(LIBDANCE)
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

$(B)/connmem: $(B)/obj/bench/connmem.o $(B)/obj/tests/lib/pki.o $(AGENT_LIB) $(LIBDANCE)
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

# After the handshake: server CPU per byte, kTLS (danced's install) against SSL_write.
$(B)/bulk: $(B)/obj/bench/bulk.o $(AGENT_LIB) $(LIBDANCE)
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

# The kernel's handshake upcall beside the handoff, the same danced (bench/upcall.c).
$(B)/upcall: $(B)/obj/bench/upcall.o $(B)/obj/tests/lib/pair.o $(AGENT_LIB) $(LIBDANCE)
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

# The library floor: OpenSSL's own handshake cost, for bench/insns to compare against.
$(B)/floor: $(B)/obj/bench/floor.o
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

$(B)/malloc_count.so: bench/malloc_count.c
	$(CC) $(filter-out -fPIE,$(CFLAGS)) -fPIC -shared -o $@ $<

$(B)/nowdt.so: bench/nowdt.c
	$(CC) $(filter-out -fPIE,$(CFLAGS)) -fPIC -shared -o $@ $<

$(AGENT_LIB): $(AGENT_OBJS)
	$(AR) rcs $@ $^

$(DANCED): $(B)/obj/agent/main.o $(AGENT_LIB) $(LIBDANCE)
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

$(EXAMPLE): $(B)/obj/agent/lib/examples/dance_echo.o $(LIBDANCE)
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

$(DANCECTL): $(B)/obj/agent/ctl/dancectl.o
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

$(B)/tests/%: $(B)/obj/tests/%.o $(TESTLIB_OBJS) $(AGENT_LIB) $(LIBDANCE)
	@mkdir -p $(@D)
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

# What the guest sees under /danced.
$(VMROOT)/.stamp: $(VM_TESTS) $(DANCED) $(DANCECTL) $(EXAMPLE) $(DANCE_BENCH) $(POLICYCOST) \
		$(COST_BINS) bench/cost-guest $(KMODS) \
		tests/run-tests README.md \
		tests/demo/guest \
		tests/demo/mkcerts tests/demo/mkzone bench/guest bench/setup bench/insns bench/cgsplit
	@rm -rf $(VMROOT) && mkdir -p $(VMROOT)/tests/vm/bin $(VMROOT)/bin
	cp tests/run-tests $(VMROOT)/tests/
	cp README.md $(VMROOT)/ # bpf_test runs its bpftool walkthrough
	cp $(VM_TESTS) $(VMROOT)/tests/vm/bin/
	cp $(DANCED) $(DANCECTL) $(EXAMPLE) $(DANCE_BENCH) $(POLICYCOST) tests/demo/mkcerts tests/demo/mkzone $(VMROOT)/bin/
	cp tests/demo/guest $(VMROOT)/bin/demo
	cp bench/guest $(VMROOT)/bin/bench
	cp bench/setup $(VMROOT)/bin/bench-setup
	cp bench/insns bench/cgsplit $(VMROOT)/bin/
	cp $(COST_BINS) $(VMROOT)/bin/
	cp bench/cost-guest $(VMROOT)/bin/cost
	@for k in $(KMODS); do r=$$(basename $$(dirname $$k)); mkdir -p $(VMROOT)/kmod/$$r && \
		cp $$k $(VMROOT)/kmod/$$r/ || exit 1; \
		if [ -f $$(dirname $$k)/net/tls/tls.ko ]; then \
			cp $$(dirname $$k)/net/tls/tls.ko $(VMROOT)/kmod/$$r/tls-patched.ko || exit 1; \
		fi; done
	@touch $@

deps:
	.ci/deps

# The unit tests run on this machine, against its own libraries.
unit: all
	tests/run-tests --prefix host $(HOST_B)/tests/unit/*

unit-asan: all host-asan
	tests/run-tests --san $(HOST_B)/asan/reports --prefix host-asan $(HOST_B)/asan/tests/unit/*

# These work on a fresh machine: deps first (a no-op when all is there), then the build.
check:
	@$(MAKE) --no-print-directory deps && $(MAKE) --no-print-directory all asan
	tests/check --host-build $(HOST_B) --asan $(ASAN_KERNEL) $(KERNELS)

vm-check:
	@$(MAKE) --no-print-directory deps && $(MAKE) --no-print-directory all asan
	tests/check --vm-only --asan $(ASAN_KERNEL) $(KERNELS)

demo:
	@$(MAKE) --no-print-directory deps && $(MAKE) --no-print-directory all
	tests/demo/run $(KERNEL)

# Handshake rates against nginx, in the VM; see bench/README.md.
bench:
	@$(MAKE) --no-print-directory deps && $(MAKE) --no-print-directory all
	bench/run $(BENCH_KERNEL)

# Memory and work per handshake, in the VM on one kernel; see bench/README.md.
cost:
	@$(MAKE) --no-print-directory deps && $(MAKE) --no-print-directory all
	bench/cost $(COST_KERNEL)

vm-shell: all
	tests/vm/run --kernel $(KERNEL) --shell $(VMROOT)

vm-fetch:
	tests/vm/fetch

C_SOURCES = $(shell git ls-files '*.c' '*.h' 2>/dev/null)
format:
	clang-format -i $(C_SOURCES)

format-check:
	clang-format --dry-run --Werror $(C_SOURCES)

clean:
	rm -rf $(B)

-include $(shell find $(B)/obj -name '*.d' 2>/dev/null)
