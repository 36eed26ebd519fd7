# ioc: the two commands a newcomer needs are `make run` and `make test`.
# Everything else is a building block of those.

BUILD      ?= build
BUILD_ASAN ?= build-asan
DATA       ?= data

.PHONY: all build deps run stop test unit e2e fuzz bench clean

all: build

deps:
	@scripts/deps.sh build

# Leaves build/iocd and build/iocctl.
build: deps
	@[ -f $(BUILD)/build.ninja ] || meson setup $(BUILD) --buildtype=debugoptimized >/dev/null
	@ninja -C $(BUILD) >/dev/null || ninja -C $(BUILD)
	@ln -sfn tools/iocctl $(BUILD)/iocctl
	@ln -sfn tools/vblk-perf $(BUILD)/vblk-perf
	@[ ! -e $(BUILD)/tools/ioc-verify ] || ln -sfn tools/ioc-verify $(BUILD)/ioc-verify
	@echo "built: $(BUILD)/iocd $(BUILD)/iocctl"

# The demo: local etcd + three iocd nodes (data under ./data), a 3-replica
# Volume served over NBD (scripts/run.sh, scripts/demo.sh). make stop ends it.
run:
	@scripts/run.sh start

stop:
	@scripts/run.sh stop

# Install what is missing, build (gcc -Werror, plus ASan+UBSan), run unit, e2e
# and fuzz smoke tests; ends with "N passed, M failed".
test:
	@scripts/test.sh

unit:
	@scripts/test.sh unit

e2e:
	@scripts/test.sh e2e

fuzz:
	@scripts/fuzz.sh $(FUZZ_SECONDS)

bench:
	@bench/nbd.sh

clean:
	rm -rf $(BUILD) $(BUILD_ASAN) build-fuzz
