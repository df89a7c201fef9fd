#!/usr/bin/env bash
# Installs the Debian packages the test suite drives, only when they are
# missing, without prompting. Safe to run any number of times.
#
#   tshark              - decodes the ISAKMP/GDOI packets groupvpn writes (isakmp tests); decrypts the
#                         core's ESP with tmd's key log (internal/system)
#   strongswan-charon   - charon, our IKEv1 peer in interop tests (internal/ikeudp)
#   strongswan-swanctl  - swanctl, to configure charon and list its SAs
#   libstrongswan-standard-plugins - charon's openssl plugin: ECP groups and ECDSA
#   libcharon-extra-plugins - charon's kernel-libipsec: the CHILD SA of the IKEv2 interop
#                         test installed in userland ESP (internal/ikev2udp; no kernel ESP here)
#   iproute2            - ip netns / veth for the test hosts (internal/testnet)
#   util-linux          - unshare and mount: a private /run per charon
#   nftables            - nft: random packet loss in test namespaces (internal/testnet DropRandom)
#   python3-scapy       - scapy's ESP, the independent judge of internal/esp and internal/system
#   python3-cryptography - the ciphers scapy's ESP uses
#   iputils-ping        - ping between the hosts of the data-plane namespaces (internal/dataplane)
#   iperf3              - throughput through the data plane (internal/dataplane, internal/system)
#   wireguard-tools     - wg, to configure wireguard-go, the yardstick of `groupvpn bench dataplane`
#   prometheus          - promtool check metrics, the judge of the -metrics endpoint's output
#                         (internal/metrics; 19 MB download, 96 MB installed, no recommends)
#   rsyslog             - rsyslogd, the judge of our syslog messages (internal/syslog)
set -euo pipefail

# command -> Debian package that provides it
declare -A want=(
  [tshark]=tshark
  [/usr/lib/ipsec/charon]=strongswan-charon
  [swanctl]=strongswan-swanctl
  [/usr/lib/ipsec/plugins/libstrongswan-openssl.so]=libstrongswan-standard-plugins
  [/usr/lib/ipsec/plugins/libstrongswan-kernel-libipsec.so]=libcharon-extra-plugins
  [ip]=iproute2
  [unshare]=util-linux
  [nft]=nftables
  [/usr/lib/python3/dist-packages/scapy/layers/ipsec.py]=python3-scapy
  [/usr/lib/python3/dist-packages/cryptography/__init__.py]=python3-cryptography
  [ping]=iputils-ping
  [iperf3]=iperf3
  [wg]=wireguard-tools
  [promtool]=prometheus
  [/usr/sbin/rsyslogd]=rsyslog
)

missing=()
# present: a command on PATH, or a file given by its absolute path
present() { if [[ $1 == /* ]]; then [ -e "$1" ]; else command -v "$1" >/dev/null 2>&1; fi; }

for cmd in "${!want[@]}"; do
  present "$cmd" || missing+=("${want[$cmd]}")
done

if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
  echo "install-test-deps: missing packages: ${missing[*]}" >&2
  echo "install-test-deps: run as root (or: sudo apt-get install -y ${missing[*]}); tests that need them skip outside CI and fail under CI=true" >&2
  exit 0
fi

export DEBIAN_FRONTEND=noninteractive
# wireshark-common asks whether non-root users may capture; answer no.
echo "wireshark-common wireshark-common/install-setuid boolean false" | debconf-set-selections 2>/dev/null || true
echo "install-test-deps: installing ${missing[*]}" >&2
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
# The tests need promtool only: on a host run by systemd, the prometheus
# package also starts a Prometheus server on :9090; stop and disable it.
if [[ " ${missing[*]} " == *" prometheus "* ]] && command -v systemctl >/dev/null 2>&1; then
  systemctl disable --now prometheus.service >/dev/null 2>&1 || true
fi
for cmd in "${!want[@]}"; do
  present "$cmd" || { echo "install-test-deps: $cmd still missing after install" >&2; exit 1; }
done
