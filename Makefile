# mdiff: one Makefile. Every library through pkg-config; compile with mpicc.
#   make            build libmdiff.a and the three programs into build/
#   make test       install missing Debian packages, build, run every suite (prints each suite's time),
#                   then make sanitize
#   make sanitize   ASan + UBSan build (build-asan/): unit suites, end-to-end run, short fuzzing
#   make demo       install, build, make Fashion-MNIST HDF5, train ~10 min, sample (see README)
#   make bench      benchmarks (not tests)
#   make install PREFIX=/usr/local
#   NATIVE=1        add -march=native (default build is portable)

CC       := mpicc
PKGS     := ompi-c hdf5-openmpi openblas libpng zlib
PREFIX   ?= /usr/local
BUILD    ?= build
OPT      ?= -O3
ifeq ($(NATIVE),1)
OPT      += -march=native
endif
GIT_HASH := $(shell git rev-parse --short=12 HEAD 2>/dev/null || echo unknown)

PKG_CFLAGS = $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
PKG_LIBS   = $(shell pkg-config --libs $(PKGS) 2>/dev/null)
CHECK_CFLAGS = $(shell pkg-config --cflags check 2>/dev/null)
CHECK_LIBS   = $(shell pkg-config --libs check 2>/dev/null)

CFLAGS  ?= $(OPT) -g
CFLAGS  += -std=c11 -D_GNU_SOURCE -fopenmp -Wall -Wextra -Iinclude -MMD -MP $(PKG_CFLAGS)
LDLIBS  += $(PKG_LIBS) -lm -fopenmp

LIB_SRCS  := $(wildcard src/*.c src/*/*.c)
LIB_SRCS  := $(filter-out src/tools/%,$(LIB_SRCS))
LIB_OBJS  := $(LIB_SRCS:%.c=$(BUILD)/obj/%.o)
TOOLS     := mdiff-data mdiff-train mdiff-sample
TOOL_BINS := $(foreach t,$(TOOLS),$(if $(wildcard src/tools/$(t).c),$(BUILD)/bin/$(t)))
UNIT_SRCS := $(wildcard tests/unit/test_*.c)
UNIT_BINS := $(UNIT_SRCS:tests/unit/%.c=$(BUILD)/tests/%)
MPI_SRCS  := $(wildcard tests/mpi/test_*.c)
MPI_BINS  := $(MPI_SRCS:tests/mpi/%.c=$(BUILD)/tests/%)
BENCH_SRCS := $(wildcard bench/*.c)
BENCH_BINS := $(BENCH_SRCS:bench/%.c=$(BUILD)/bench/%)

DEB_PKGS := libopenmpi-dev openmpi-bin libhdf5-openmpi-dev hdf5-tools libopenblas-dev check \
            libpng-dev zlib1g-dev pkg-config dataset-fashion-mnist gnuplot-nox

# mpirun as root (CI and fresh machines run as root); harmless otherwise.
export OMPI_ALLOW_RUN_AS_ROOT := 1
export OMPI_ALLOW_RUN_AS_ROOT_CONFIRM := 1
export OMPI_MCA_rmaps_base_oversubscribe := 1

.PHONY: all lib tools tests deps test demo bench install clean check-deps sanitize
all: tools

lib: $(BUILD)/libmdiff.a
tools: $(TOOL_BINS)
tests: $(UNIT_BINS) $(MPI_BINS) tools

$(BUILD)/obj/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -c $< -o $@

$(BUILD)/obj/src/common.o: src/common.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -DMDIFF_GIT_HASH='"$(GIT_HASH)"' -c $< -o $@

$(BUILD)/libmdiff.a: $(LIB_OBJS)
	@mkdir -p $(dir $@)
	rm -f $@
	ar rcs $@ $^

$(BUILD)/bin/%: $(BUILD)/obj/src/tools/%.o $(BUILD)/libmdiff.a
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $< -o $@ $(BUILD)/libmdiff.a $(LDLIBS)

$(BUILD)/tests/%: tests/unit/%.c $(BUILD)/libmdiff.a
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(CHECK_CFLAGS) $< -o $@ $(BUILD)/libmdiff.a $(CHECK_LIBS) $(LDLIBS)

$(BUILD)/tests/%: tests/mpi/%.c $(BUILD)/libmdiff.a
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(CHECK_CFLAGS) $< -o $@ $(BUILD)/libmdiff.a $(CHECK_LIBS) $(LDLIBS)

$(BUILD)/bench/%: bench/%.c $(BUILD)/libmdiff.a
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $< -o $@ $(BUILD)/libmdiff.a $(LDLIBS)

# Installs the Debian packages that are missing; does nothing when all are present.
deps:
	@missing=""; for p in $(DEB_PKGS); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q 'install ok installed' || missing="$$missing $$p"; \
	done; \
	if [ -z "$$missing" ]; then echo "deps: all Debian packages present"; exit 0; fi; \
	if [ "$$(id -u)" != 0 ]; then \
	  echo "deps: missing:$$missing"; \
	  echo "deps: run as root: apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y$$missing"; exit 1; fi; \
	echo "deps: installing:$$missing"; \
	apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q $$missing

test: deps
	$(MAKE) --no-print-directory tests
	@BUILD=$(BUILD) bash tests/run.sh
	@$(MAKE) --no-print-directory sanitize

# ASan + UBSan build in build-asan: unit suites, an end-to-end run, short libFuzzer runs (tests/sanitize.sh)
sanitize: deps
	@bash tests/sanitize.sh

bench: deps
	$(MAKE) --no-print-directory tools $(BENCH_BINS)
	@BUILD=$(BUILD) bash bench/run.sh

demo: deps
	$(MAKE) --no-print-directory tools
	@BUILD=$(BUILD) bash jobs/demo.sh

install: tools
	install -d $(DESTDIR)$(PREFIX)/bin
	install -m 0755 $(TOOL_BINS) $(DESTDIR)$(PREFIX)/bin/

clean:
	rm -rf $(BUILD) build-asan build-fuzz

# The git hash is compiled into common.o; rebuild it only when the hash changes.
$(BUILD)/git-hash: FORCE
	@mkdir -p $(BUILD); echo '$(GIT_HASH)' | cmp -s - $@ || echo '$(GIT_HASH)' > $@
$(BUILD)/obj/src/common.o: $(BUILD)/git-hash
.PHONY: FORCE
FORCE:

-include $(LIB_OBJS:.o=.d) $(BUILD)/obj/src/tools/*.d
