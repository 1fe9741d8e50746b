# guardd build.
#
# Everything under model/ and daemon/ (except the two programs' main files and
# guardctl's subcommand files) goes into one static library, build/libguardd.a,
# which guardd, guardctl and every test link. New modules need no Makefile edit:
# drop a .c file into model/ or daemon/ and it is built.
#
# Tests: tests/check_*.c are Check suites (one executable each); tests/t_*.sh are
# script tests (exit 0 = pass, 77 = skipped, anything else = fail). tests/run.sh
# runs them all and prints the closing "N passed, N failed" line.
#
# SANITIZE=1 builds everything into build-san/ with ASan+UBSan;
# SANITIZE=thread into build-tsan/ with ThreadSanitizer, every program
# linking tests/sanitizer/tsan_c11threads.c (librdkafka's C11 threads made
# visible to TSan; tests/run.sh then reads tests/tsan.supp).
#
# Fuzzing: tests/fuzz/fuzz_*.c are libFuzzer harnesses, one per parser of
# outside input, built with clang (-fsanitize=fuzzer,address,undefined) into
# build-fuzz/ from the library sources (FUZZ_LIB_SRC). `make fuzz` runs
# each for FUZZ_SECONDS (FUZZ_TARGETS=a,b to choose, FUZZ_JOBS=N at once),
# starting from the seed corpus tests/fuzz/corpus/NAME/ and keeping what it
# finds in build-fuzz/corpus/NAME/; `make check` runs each for a few seconds.

PREFIX   ?= /usr
DESTDIR  ?=
SANITIZE ?= 0

ifeq ($(SANITIZE),1)
BUILD    ?= build-san
SANFLAGS := -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined
else ifeq ($(SANITIZE),thread)
BUILD    ?= build-tsan
SANFLAGS := -fsanitize=thread -fno-omit-frame-pointer
SAN_OBJ  := $(BUILD)/tests/sanitizer/tsan_c11threads.o
else
BUILD    ?= build
SANFLAGS :=
endif
SAN_OBJ  ?=

CC       ?= cc
BLIS_INC := /usr/include/x86_64-linux-gnu/blis-openmp
PKGS     := rdkafka msgpack libconfig libsystemd libpcre2-8 jansson libmicrohttpd
CFLAGS   ?= -O2 -g
CFLAGS   += -std=gnu11 -Wall -Wextra -pthread -fopenmp -MMD -MP $(SANFLAGS) \
            -Imodel -Idaemon -I$(BLIS_INC) $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
LDFLAGS  += -pthread -fopenmp $(SANFLAGS)
LDLIBS   += $(shell pkg-config --libs $(PKGS) 2>/dev/null) -lblis -ldnnl -lm
CHECK_LIBS := $(shell pkg-config --libs check 2>/dev/null)

MODEL_SRC  := $(wildcard model/*.c)
CTL_SRC    := daemon/guardctl.c $(wildcard daemon/ctl_*.c)
MAIN_SRC   := daemon/guardd.c
DAEMON_SRC := $(filter-out $(CTL_SRC) $(MAIN_SRC),$(wildcard daemon/*.c))
LIB_OBJ    := $(patsubst %.c,$(BUILD)/%.o,$(MODEL_SRC) $(DAEMON_SRC))
CTL_OBJ    := $(patsubst %.c,$(BUILD)/%.o,$(CTL_SRC))
MAIN_OBJ   := $(patsubst %.c,$(BUILD)/%.o,$(MAIN_SRC))
TEST_SRC   := $(wildcard tests/check_*.c)
TEST_BIN   := $(patsubst tests/%.c,$(BUILD)/tests/%,$(TEST_SRC))
TEST_HELPER_SRC := $(wildcard tests/helpers/*.c)
TEST_HELPER_OBJ := $(patsubst %.c,$(BUILD)/%.o,$(TEST_HELPER_SRC))
BENCH_SRC  := $(wildcard tests/bench/*.c)
BENCH_BIN  := $(patsubst tests/bench/%.c,$(BUILD)/bench/%,$(BENCH_SRC))

# Outside the tracked tree: the genuine tokenizer, npm test tools, cached fixtures.
DEPS_DIR   ?= $(CURDIR)/.deps
TOKENIZER  := $(DEPS_DIR)/tokenizer.json

.PHONY: all deps check bench install clean demo run tests-build fuzz fuzz-build
all: $(BUILD)/libguardd.a $(BUILD)/guardd $(BUILD)/guardctl

$(BUILD)/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -c $< -o $@

$(BUILD)/libguardd.a: $(LIB_OBJ)
	@mkdir -p $(dir $@)
	rm -f $@ && ar rcs $@ $^

$(BUILD)/guardd: $(MAIN_OBJ) $(BUILD)/libguardd.a $(SAN_OBJ)
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

$(BUILD)/guardctl: $(CTL_OBJ) $(BUILD)/libguardd.a $(SAN_OBJ)
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

$(BUILD)/tests/%: tests/%.c $(TEST_HELPER_OBJ) $(BUILD)/libguardd.a $(SAN_OBJ)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -Itests -o $@ $< $(TEST_HELPER_OBJ) $(SAN_OBJ) $(BUILD)/libguardd.a $(LDFLAGS) $(CHECK_LIBS) $(LDLIBS)

$(BUILD)/bench/%: tests/bench/%.c $(BUILD)/libguardd.a $(SAN_OBJ)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -Itests -o $@ $< $(SAN_OBJ) $(BUILD)/libguardd.a $(LDFLAGS) $(LDLIBS)

tests-build: all $(TEST_BIN)

# Installs every Debian package and pinned npm tool the build and tests need,
# and the checksum-verified genuine Llama 3.2 tokenizer.json. Idempotent.
deps:
	tools/deps.sh $(DEPS_DIR)

$(TOKENIZER):
	tools/deps.sh $(DEPS_DIR)

check: $(TOKENIZER)
	$(MAKE) tests-build
	if command -v $(FUZZ_CC) >/dev/null 2>&1; then $(MAKE) fuzz-build; fi
	BUILD=$(BUILD) DEPS_DIR=$(DEPS_DIR) SANITIZE=$(SANITIZE) tests/run.sh

bench: $(TOKENIZER) all $(BENCH_BIN)
	BUILD=$(BUILD) DEPS_DIR=$(DEPS_DIR) tools/bench.sh

demo: $(TOKENIZER) all
	BUILD=$(BUILD) DEPS_DIR=$(DEPS_DIR) tools/demo.sh

run: $(TOKENIZER) all
	BUILD=$(BUILD) DEPS_DIR=$(DEPS_DIR) tools/run.sh

install: all
	install -d $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(PREFIX)/sbin
	install -m 0755 $(BUILD)/guardd $(DESTDIR)$(PREFIX)/sbin/guardd
	install -m 0755 $(BUILD)/guardctl $(DESTDIR)$(PREFIX)/bin/guardctl
	install -d $(DESTDIR)/etc/guardd $(DESTDIR)$(PREFIX)/share/guardd/schemas
	install -m 0644 etc/guardd.conf $(DESTDIR)/etc/guardd/guardd.conf
	install -m 0644 schemas/*.json $(DESTDIR)$(PREFIX)/share/guardd/schemas/
	install -d $(DESTDIR)$(PREFIX)/lib/systemd/system $(DESTDIR)$(PREFIX)/lib/sysusers.d $(DESTDIR)$(PREFIX)/lib/tmpfiles.d
	install -m 0644 systemd/guardd.service $(DESTDIR)$(PREFIX)/lib/systemd/system/guardd.service
	install -m 0644 systemd/guardd.sysusers $(DESTDIR)$(PREFIX)/lib/sysusers.d/guardd.conf
	install -m 0644 systemd/guardd.tmpfiles $(DESTDIR)$(PREFIX)/lib/tmpfiles.d/guardd.conf

# ---- libFuzzer harnesses (clang; always ASan+UBSan; see tests/fuzz/) ----
FUZZ_BUILD   := build-fuzz
FUZZ_CC      ?= clang
FUZZ_SAN     := -fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer
FUZZ_CFLAGS  := -std=gnu11 -g -O1 -Wall -Wextra -pthread -MMD -MP $(FUZZ_SAN) -fsanitize=fuzzer-no-link \
                -Imodel -Idaemon -Itests/fuzz $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
FUZZ_LDLIBS  := $(shell pkg-config --libs $(PKGS) 2>/dev/null) -lm
# Every library source that needs neither BLIS nor OpenMP (no parser does);
# the link takes from the archive only what the harnesses reach.
FUZZ_LIB_SRC := $(shell grep -L -E '\#include [<"](blis|omp)|\#pragma omp' $(MODEL_SRC) $(DAEMON_SRC))
FUZZ_LIB_OBJ := $(patsubst %.c,$(FUZZ_BUILD)/%.o,$(FUZZ_LIB_SRC))
FUZZ_SRC     := $(wildcard tests/fuzz/fuzz_*.c)
FUZZ_BIN     := $(patsubst tests/fuzz/%.c,$(FUZZ_BUILD)/%,$(FUZZ_SRC))
FUZZ_SECONDS ?= 600
FUZZ_TARGETS ?=
FUZZ_JOBS    ?= 1

$(FUZZ_BUILD)/%.o: %.c
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(FUZZ_CFLAGS) -c $< -o $@

$(FUZZ_BUILD)/libguardd-fuzz.a: $(FUZZ_LIB_OBJ)
	rm -f $@ && ar rcs $@ $^

$(FUZZ_BUILD)/fuzz_%: $(FUZZ_BUILD)/tests/fuzz/fuzz_%.o $(FUZZ_BUILD)/libguardd-fuzz.a
	$(FUZZ_CC) $(FUZZ_SAN) -fsanitize=fuzzer -pthread -o $@ $^ $(FUZZ_LDLIBS)

fuzz-build: $(FUZZ_BIN)
.SECONDARY: $(patsubst tests/fuzz/%.c,$(FUZZ_BUILD)/tests/fuzz/%.o,$(FUZZ_SRC))

fuzz: $(TOKENIZER) fuzz-build
	FUZZ_BUILD=$(FUZZ_BUILD) GUARDD_TOKENIZER=$(TOKENIZER) FUZZ_JOBS=$(FUZZ_JOBS) \
	    tests/fuzz/run.sh $(FUZZ_SECONDS) $(subst $(comma), ,$(FUZZ_TARGETS))

comma := ,

clean:
	rm -rf build build-san build-fuzz

-include $(LIB_OBJ:.o=.d) $(CTL_OBJ:.o=.d) $(MAIN_OBJ:.o=.d)
# test and bench programs too, so that editing a header they share (tests/check_main.h)
# rebuilds them
-include $(TEST_BIN:=.d) $(TEST_HELPER_OBJ:.o=.d) $(BENCH_BIN:=.d)
-include $(FUZZ_LIB_OBJ:.o=.d) $(patsubst tests/fuzz/%.c,$(FUZZ_BUILD)/tests/fuzz/%.d,$(FUZZ_SRC))
