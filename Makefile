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
# SANITIZE=1 builds everything into build-san/ with ASan+UBSan.

PREFIX   ?= /usr
DESTDIR  ?=
SANITIZE ?= 0

ifeq ($(SANITIZE),1)
BUILD    ?= build-san
SANFLAGS := -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined
else
BUILD    ?= build
SANFLAGS :=
endif

CC       ?= cc
BLIS_INC := /usr/include/x86_64-linux-gnu/blis-openmp
PKGS     := rdkafka msgpack libconfig libsystemd libpcre2-8 jansson libmicrohttpd
CFLAGS   ?= -O2 -g
CFLAGS   += -std=gnu11 -Wall -Wextra -pthread -fopenmp -MMD -MP $(SANFLAGS) \
            -Imodel -Idaemon -I$(BLIS_INC) $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
LDFLAGS  += -pthread -fopenmp $(SANFLAGS)
LDLIBS   += $(shell pkg-config --libs $(PKGS) 2>/dev/null) -lblis -lm
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

.PHONY: all deps check bench install clean demo run tests-build
all: $(BUILD)/libguardd.a $(BUILD)/guardd $(BUILD)/guardctl

$(BUILD)/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -c $< -o $@

$(BUILD)/libguardd.a: $(LIB_OBJ)
	@mkdir -p $(dir $@)
	rm -f $@ && ar rcs $@ $^

$(BUILD)/guardd: $(MAIN_OBJ) $(BUILD)/libguardd.a
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

$(BUILD)/guardctl: $(CTL_OBJ) $(BUILD)/libguardd.a
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

$(BUILD)/tests/%: tests/%.c $(TEST_HELPER_OBJ) $(BUILD)/libguardd.a
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -Itests -o $@ $< $(TEST_HELPER_OBJ) $(BUILD)/libguardd.a $(LDFLAGS) $(CHECK_LIBS) $(LDLIBS)

$(BUILD)/bench/%: tests/bench/%.c $(BUILD)/libguardd.a
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -Itests -o $@ $< $(BUILD)/libguardd.a $(LDFLAGS) $(LDLIBS)

tests-build: all $(TEST_BIN)

# Installs every Debian package and pinned npm tool the build and tests need,
# and the checksum-verified genuine Llama 3.2 tokenizer.json. Idempotent.
deps:
	tools/deps.sh $(DEPS_DIR)

$(TOKENIZER):
	tools/deps.sh $(DEPS_DIR)

check: $(TOKENIZER)
	$(MAKE) tests-build
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

clean:
	rm -rf build build-san

-include $(LIB_OBJ:.o=.d) $(CTL_OBJ:.o=.d) $(MAIN_OBJ:.o=.d)
