#!/bin/sh
# A NAT router of the lab (compose.nat.yaml's router-* services). It has two interfaces: the
# upstream one holds UP_IP (its public address, on wan or on a carrier network), the other
# is the private network it serves. NAT picks the behaviour, as RFC 4787 classifies it:
#
#   none             plain routing: no translation, no filter (private addresses are routed)
#   full-cone        endpoint-independent mapping (EIM) and filtering (EIF): once a private
#                    endpoint has sent anything out, anyone may send to its public endpoint
#   port-restricted  EIM, address-and-port-dependent filtering (APDF): only the endpoints it
#                    sent to may answer (Linux's own NAT: conntrack is the filter)
#   symmetric        address-and-port-dependent mapping (EDM) and APDF: every destination
#                    gets its own random public port (MASQUERADE with fully-random)
#
# EIM comes from SNAT to one address without a port range: Linux keeps the private source
# port when the public one is free, whatever the destination. Linux has no EIF of its own: a
# dynamic nftables map, filled from each outgoing UDP packet after SNAT (public port ->
# private address and port), sends new inbound datagrams on that port to their owner.
# Every kind but none drops unsolicited inbound datagrams silently, as home routers do.
#
# Environment: NAT (the kind) or else NAT_VAR (NAT_A, ...), the line of /state/kinds.env
# that names it (`make nat-up` writes that file: a later `docker compose run` of a client then
# sees the same configuration and leaves this router as it is), port-restricted if neither;
# UP_IP; ROUTES (extra routes, lib.sh); MAPPING_TIMEOUT_S (the full-cone map's idle timeout,
# 120: RFC 4787 REQ-5's minimum). The kind in use goes to /run/natlab-kind.
set -eu
. /lab/lib.sh
: "${UP_IP:?}"
NAT=${NAT:-}
if [ -z "$NAT" ] && [ -n "${NAT_VAR:-}" ] && [ -r /state/kinds.env ]; then
    NAT=$(sed -n "s/^$NAT_VAR=//p" /state/kinds.env | tail -n 1)
fi
NAT=${NAT:-port-restricted}
up=$(iface_of "$UP_IP")
[ -n "$up" ] || die "no interface holds UP_IP=$UP_IP"
down=$(ip -o -4 addr show | awk -v up="$up" '$2 != "lo" && $2 != up { print $2; exit }')
[ -n "$down" ] || die "no private interface besides $up"
[ "$(cat /proc/sys/net/ipv4/ip_forward)" = 1 ] || die "ip_forward is off (compose sysctls)"
add_routes "${ROUTES:-}"

inbound=""
nat=""
case "$NAT" in
    none)
        inbound="iifname \"$up\" oifname \"$down\" accept"
        ;;
    port-restricted)
        nat="oifname \"$up\" snat to $UP_IP"
        ;;
    symmetric)
        nat="oifname \"$up\" masquerade fully-random"
        ;;
    full-cone)
        nat="oifname \"$up\" snat to $UP_IP"
        inbound="ct status dnat accept"
        ;;
    *)
        die "NAT=$NAT: want none, full-cone, port-restricted or symmetric"
        ;;
esac

{
    echo "flush ruleset"
    echo "table ip natlab {"
    echo "  chain forward {"
    echo "    type filter hook forward priority filter; policy drop;"
    echo "    iifname \"$down\" oifname \"$up\" accept"
    echo "    ct state established,related accept"
    echo "    $inbound"
    echo "  }"
    echo "  chain input {"
    echo "    type filter hook input priority filter; policy accept;"
    echo "    iifname \"$up\" ct state new drop"
    echo "  }"
    if [ -n "$nat" ]; then
        echo "  chain postrouting {"
        echo "    type nat hook postrouting priority srcnat; policy accept;"
        echo "    $nat"
        echo "  }"
    fi
    if [ "$NAT" = full-cone ]; then
        echo "  map fullcone {"
        echo "    type inet_service : ipv4_addr . inet_service"
        echo "    flags dynamic, timeout"
        echo "    timeout ${MAPPING_TIMEOUT_S:-120}s"
        echo "  }"
        echo "  chain prerouting {"
        echo "    type nat hook prerouting priority dstnat; policy accept;"
        echo "    iifname \"$up\" ip daddr $UP_IP dnat ip to udp dport map @fullcone"
        echo "  }"
        # After SNAT (priority srcnat + 10) the packet carries its public port; only the
        # original direction, so that replies of an inbound (DNATed) flow do not overwrite it.
        echo "  chain mappings {"
        echo "    type filter hook postrouting priority srcnat + 10; policy accept;"
        echo "    oifname \"$up\" ct direction original meta l4proto udp update @fullcone { udp sport : ct original ip saddr . ct original proto-src }"
        echo "  }"
    fi
    echo "}"
} >/run/natlab.nft
nft -f /run/natlab.nft || { cat /run/natlab.nft >&2; die "nft rejected the ruleset"; }
echo "$NAT" >/run/natlab-kind
say "NAT=$NAT: $UP_IP on $up, private side $down"
ready_and_wait
