#!/bin/sh
# The lab's STUN server: coturn's turnserver on two addresses of wan (STUN_IP and STUN_ALT_IP)
# and two ports (3478 and 3479), which RFC 5780's behaviour tests need: a CHANGE-REQUEST is
# answered from the other address and/or port, and OTHER-ADDRESS names them.
set -eu
. /lab/lib.sh
: "${STUN_IP:?}" "${STUN_ALT_IP:?}"
dev=$(iface_of "$STUN_IP")
[ -n "$dev" ] || die "no interface holds $STUN_IP"
prefix=$(ip -o -4 addr show dev "$dev" | awk '{ split($4, a, "/"); print a[2]; exit }')
ip addr replace "$STUN_ALT_IP/$prefix" dev "$dev"
add_routes "${ROUTES:-}"
touch /run/natlab-ready
say "STUN on $STUN_IP and $STUN_ALT_IP, ports 3478 and 3479"
exec turnserver -n --stun-only --no-auth --no-cli --no-tls --no-dtls --no-software-attribute \
    --listening-ip "$STUN_IP" --listening-ip "$STUN_ALT_IP" \
    --listening-port 3478 --alt-listening-port 3479 \
    --log-file stdout --simple-log
