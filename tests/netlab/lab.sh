#!/usr/bin/env bash
# The NAT lab's network: namespaces joined by veth pairs, NAT by nftables.
# Root only. Every address lives inside namespaces this script creates.
#
#   usage: lab.sh up PREFIX [KIND_A [KIND_B]] | move PREFIX SIDE | drop-udp PREFIX SIDE
#          | down PREFIX
#
#                          ┌───────────── PREFIX-pub ─────────────┐
#                          │  br0 203.0.113.1/24 (broker, TURN)   │
#                          └──────┬─────────────────────┬─────────┘
#                    203.0.113.10 │ wan            wan  │ 203.0.113.20
#                          PREFIX-ra (router)     PREFIX-rb (router)
#                        10.0.1.1 │ lan            lan  │ 10.0.2.1
#                      10.0.1.2   │ eth0          eth0  │  10.0.2.2
#                          PREFIX-a (client)      PREFIX-b (client)
#
# The public namespace does not forward, and has no route to 10.0.0.0/8: a
# client reaches the other only through the routers' NAT. KIND sets a
# router's behaviour (eim when not given):
#   eim        endpoint-independent mapping (masquerade keeps the port),
#              address-and-port-dependent filtering (conntrack);
#   symmetric  a new random port for every flow (masquerade fully-random);
#   noudp      eim, and every UDP packet from the client is dropped.
# `move` gives a client a new link in a new subnet (10.K.X.2 on the K-th) and
# takes the old one away: a network change mid-session. It prints the new
# address. `drop-udp` makes a side's router drop every UDP packet from then
# on, both ways (flows already open included): a direct path cut for good.
set -euo pipefail

PUB_IP=203.0.113.1
cmd=${1:?usage: lab.sh up|move|down PREFIX ...}
P=${2:?a namespace prefix}
ns() { local n=$1; shift; ip netns exec "$P-$n" "$@"; }

side_num() { case $1 in a) echo 1 ;; b) echo 2 ;; *) echo "side is a or b, not $1" >&2; exit 2 ;; esac; }

up() { # kind_a kind_b
  local kind_a=$1 kind_b=$2
  for n in pub ra rb a b; do
    ip netns add "$P-$n"
    ns "$n" ip link set lo up
    ns "$n" sysctl -qw net.ipv6.conf.all.disable_ipv6=1
  done
  ns pub ip link add br0 type bridge
  ns pub ip addr add "$PUB_IP/24" dev br0
  ns pub ip link set br0 up
  ns pub sysctl -qw net.ipv4.ip_forward=0
  for s in a b; do
    local x; x=$(side_num "$s")
    # router WAN side on the public bridge
    ip link add "$P-w$s" type veth peer name wan netns "$P-r$s"
    ip link set "$P-w$s" netns "$P-pub"
    ns pub ip link set "$P-w$s" master br0 up
    ns "r$s" ip addr add "203.0.113.${x}0/24" dev wan
    ns "r$s" ip link set wan up
    ns "r$s" sysctl -qw net.ipv4.ip_forward=1
    # client LAN
    ip link add "$P-l$s" type veth peer name eth0 netns "$P-$s"
    ip link set "$P-l$s" netns "$P-r$s"
    ns "r$s" ip link set "$P-l$s" name lan
    ns "r$s" ip addr add "10.0.$x.1/24" dev lan
    ns "r$s" ip link set lan up
    ns "$s" ip addr add "10.0.$x.2/24" dev eth0
    ns "$s" ip link set eth0 up
    ns "$s" ip route add default via "10.0.$x.1"
    if [ "$s" = a ]; then nat_rules a "$kind_a"; else nat_rules b "$kind_b"; fi
  done
}

nat_rules() { # side kind
  local s=$1 kind=$2 masq="masquerade" udp=""
  case $kind in
    eim) ;;
    symmetric) masq="masquerade fully-random" ;;
    noudp) udp='iifname "lan*" meta l4proto udp drop' ;;
    *) echo "NAT kind is eim, symmetric or noudp, not $kind" >&2; exit 2 ;;
  esac
  ns "r$s" nft -f - <<NFT
flush ruleset
table ip nat {
  chain postrouting {
    type nat hook postrouting priority srcnat; policy accept;
    oifname "wan" $masq
  }
}
table inet filter {
  chain forward {
    type filter hook forward priority filter; policy drop;
    $udp
    iifname "lan*" oifname "wan" accept
    iifname "wan" oifname "lan*" ct state established,related accept
  }
  # Unsolicited packets to the router itself are dropped, as home routers
  # do. (Were they answered with ICMP, conntrack would keep an entry for
  # them and take their port pair away from the next outbound mapping.)
  chain input {
    type filter hook input priority filter; policy accept;
    iifname "wan" ct state established,related accept
    iifname "wan" drop
  }
}
NFT
}

move() { # side: the client's link goes, a new one in a new subnet comes
  local s=$1 x; x=$(side_num "$s")
  local k; k=$(ns "r$s" ip -o link show | grep -c ' lan' || true)
  local net="10.$k.$x"
  ip link add "$P-l$s$k" type veth peer name "eth$k" netns "$P-$s"
  ip link set "$P-l$s$k" netns "$P-r$s"
  ns "r$s" ip link set "$P-l$s$k" name "lan$k"
  ns "r$s" ip addr add "$net.1/24" dev "lan$k"
  ns "r$s" ip link set "lan$k" up
  ns "$s" ip addr add "$net.2/24" dev "eth$k"
  ns "$s" ip link set "eth$k" up
  # The old link goes down and away (both ends of its veth pair).
  local old; old=$(ns "$s" ip -o link show | awk -F': ' '{print $2}' | cut -d@ -f1 | grep '^eth' | grep -v "^eth$k\$")
  for o in $old; do ns "$s" ip link del "$o"; done
  ns "$s" ip route replace default via "$net.1"
  echo "$net.2"
}

drop_udp() { # side: from now on the router passes no UDP at all
  local s=$1; side_num "$s" >/dev/null
  ns "r$s" nft insert rule inet filter forward meta l4proto udp drop
}

down() { # what runs inside the namespaces is stopped by pid, then they go
  local pids
  for n in a b ra rb pub; do
    pids=$(ip netns pids "$P-$n" 2>/dev/null || true)
    [ -n "$pids" ] && kill $pids 2>/dev/null || true
  done
  for n in a b ra rb pub; do ip netns del "$P-$n" 2>/dev/null || true; done
}

case $cmd in
  up) down; up "${3:-eim}" "${4:-eim}" ;;
  move) move "${3:?side}" ;;
  drop-udp) drop_udp "${3:?side}" ;;
  down) down ;;
  *) echo "usage: lab.sh up|move|drop-udp|down PREFIX ..." >&2; exit 2 ;;
esac
