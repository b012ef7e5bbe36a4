#!/usr/bin/env bash
# Installs the Debian packages weft's demo and tests use, when any is missing.
# Needs root (the namespace tests and the demo need it anyway); $1 says who needs it.
set -euo pipefail
if [ "$(id -u)" != 0 ]; then
  echo "${1:-scripts/install-deps.sh: needs root}; run it as root (e.g. with sudo)" >&2
  exit 1
fi
need=()
have() { command -v "$1" >/dev/null 2>&1; }
have ip || need+=(iproute2)
have nft || need+=(nftables)
have ping || need+=(iputils-ping)
have python3 || need+=(python3)
# Network policy: the router loads br_netfilter when the kernel has not yet.
have modprobe || need+=(kmod)
# Data plane tests (packet capture of the sleeve) and bench/overlay (iperf3, wg for boringtun).
have tcpdump || need+=(tcpdump)
have iperf3 || need+=(iperf3)
have wg || need+=(wireguard-tools)
# Container runtimes for the CNI (podman) and Docker driver tests.
have podman || need+=(podman)
have dockerd || need+=(docker.io)
have runc || need+=(runc)
have iptables || need+=(iptables)
[ -x /usr/lib/cni/bridge ] || need+=(containernetworking-plugins)
[ -x /bin/busybox ] && ! ldd /bin/busybox >/dev/null 2>&1 || need+=(busybox-static)
# Prometheus 2.42: the metrics store is compared with it and benchmarked against it.
have prometheus || need+=(prometheus)
# DNS tests and bench/dns: dnsmasq as the upstream and the comparison server, dig as the client.
have dnsmasq || need+=(dnsmasq-base)
have dig || need+=(dnsutils)
if [ "${#need[@]}" -gt 0 ]; then
  echo "installing Debian packages: ${need[*]}"
  export DEBIAN_FRONTEND=noninteractive
  # Packages with daemons (docker.io) must not start them in the root namespace: tests start
  # their own, inside test namespaces. policy-rc.d exit 101 = "do not start services".
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
    chmod 755 /usr/sbin/policy-rc.d
    trap 'rm -f /usr/sbin/policy-rc.d' EXIT
  fi
  apt-get update -qq
  for attempt in 1 2; do
    if apt-get install -y -qq -o DPkg::Lock::Timeout=600 "${need[@]}"; then break; fi
    [ "$attempt" = 2 ] && exit 1
    sleep 5
  done
fi
