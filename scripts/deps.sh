#!/usr/bin/env bash
# The one place where ioc's dependencies are named. Debian packages only.
# Usage: scripts/deps.sh [build|run|test|bench|all]   (default: all)
# Installs only what is missing, so a second run is fast and offline.
set -euo pipefail

BUILD_PKGS=(
    gcc make meson ninja-build pkg-config
    liburing-dev libjansson-dev zlib1g-dev
    libcurl4-openssl-dev libyaml-dev            # control plane: etcd client, manifests
    libnbd-dev                                  # tools/ioc-verify (NBD client library)
    libssl-dev                                  # iSCSI CHAP: MD5, SHA-256 (libcrypto)
)
TEST_PKGS=(
    libcmocka-dev clang libclang-rt-14-dev     # unit tests, sanitizers, libFuzzer
    python3-pytest                              # e2e runner (/usr/bin/python3)
    qemu-utils                                  # qemu-img, qemu-io, qemu-nbd
    libnbd-bin                                  # nbdinfo, nbdcopy, nbdfuse
    fuse3                                       # nbdfuse needs fusermount3
    fio                                         # fio with the nbd engine
    libiscsi-bin qemu-block-extra               # iSCSI: iscsi-test-cu, iscsi-ls..., qemu iscsi://
    etcd-server etcd-client curl                # control plane e2e: a local etcd
    util-linux procps                           # fincore, ps
    iproute2                                    # ip netns + veth: network-cut and namespace tests
    nbdkit qemu-system-common                   # NBD servers the nbd_client bdev is tested against
)
RUN_PKGS=(
    etcd-server curl                            # make run: the demo's local etcd
    qemu-utils libnbd-bin                       # make run: qemu-io, nbdinfo to try the volume
)
BENCH_PKGS=(
    nbdkit                                      # peer: nbdkit file plugin
    qemu-system-common                          # peer: qemu-storage-daemon
    tgt                                         # peer: the tgt iSCSI target (bench/iscsi.sh)
)

case "${1:-all}" in
    build) want=("${BUILD_PKGS[@]}") ;;
    run)   want=("${BUILD_PKGS[@]}" "${RUN_PKGS[@]}") ;;
    test)  want=("${BUILD_PKGS[@]}" "${TEST_PKGS[@]}") ;;
    bench) want=("${BUILD_PKGS[@]}" "${TEST_PKGS[@]}" "${BENCH_PKGS[@]}") ;;
    all)   want=("${BUILD_PKGS[@]}" "${TEST_PKGS[@]}" "${BENCH_PKGS[@]}") ;;
    *) echo "usage: $0 [build|run|test|bench|all]" >&2; exit 2 ;;
esac

missing=()
for p in "${want[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
        missing+=("$p")
    fi
done
[ ${#missing[@]} -eq 0 ] && exit 0

echo "deps: installing ${missing[*]}" >&2
SUDO=""
[ "$(id -u)" -ne 0 ] && SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -q >/dev/null
$SUDO apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null
