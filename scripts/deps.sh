#!/usr/bin/env bash
# Installs the Debian 12 packages cmi needs; only what is missing, with
# sudo when not run as root.
#   scripts/deps.sh          what building, running and testing need (scripts/test, CI)
#   scripts/deps.sh --run    what building and running need (scripts/quickstart): no
#                            valgrind, clang, nginx, wrk, debootstrap or Python modules
set -euo pipefail

RUN_PACKAGES=(
  build-essential autoconf automake libtool pkg-config
  libxml2-dev libxslt1-dev libh2o-evloop-dev libjansson-dev libcurl4-openssl-dev libssl-dev
  libcrypt-dev libqpid-proton11-dev
  libcunit1-dev libjwt-dev
  rabbitmq-server curl
)
# (CUnit and libjwt are the unit tests', 0.3 MB: configure asks for them.)
# The tests' own tools: the scenario and integration
# runners (Python, PyJWT, cryptography, proton's Python binding),
# sanitizers and fuzzing (clang), valgrind, the benchmarks (wrk, nginx) and
# RabbitMQ 4.0's Debian 13 root (debootstrap).
TEST_PACKAGES=(
  python3 python3-jwt python3-cryptography python3-qpid-proton
  valgrind clang libclang-rt-14-dev wrk nginx debootstrap
)

case "${1:-}" in
  --run) PACKAGES=("${RUN_PACKAGES[@]}") ;;
  "") PACKAGES=("${RUN_PACKAGES[@]}" "${TEST_PACKAGES[@]}") ;;
  *) echo "deps: unknown option $1 (--run: only what building and running need)" >&2; exit 2 ;;
esac

missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null || { echo "deps: need root or sudo to install: ${missing[*]}" >&2; exit 1; }
  SUDO="sudo"
fi
echo "deps: installing ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
# The packages' scripts must not start system services (nginx on port 80,
# a RabbitMQ node on 5672): cmi's tests, bench and quickstart start their
# own on loopback.  policy-rc.d says so for this install only.
policy=/usr/sbin/policy-rc.d
if [ ! -e "$policy" ]; then
  printf '#!/bin/sh\nexit 101\n' | $SUDO tee "$policy" >/dev/null
  $SUDO chmod 755 "$policy"
  trap '$SUDO rm -f "$policy"' EXIT
fi
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
