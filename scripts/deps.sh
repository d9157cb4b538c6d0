#!/usr/bin/env bash
# Installs the Debian 12 packages cmi needs to build, test and run.
# Only what is missing is installed; uses sudo when not run as root.
set -euo pipefail

PACKAGES=(
  build-essential autoconf automake libtool pkg-config
  libxml2-dev libxslt1-dev libh2o-evloop-dev libjansson-dev libcurl4-openssl-dev libssl-dev libcunit1-dev
  libcrypt-dev libjwt-dev python3-jwt python3-cryptography
  libqpid-proton11-dev rabbitmq-server python3-qpid-proton
  python3 curl valgrind clang libclang-rt-14-dev
  wrk nginx debootstrap
)

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
