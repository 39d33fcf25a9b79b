# Shared by the NAT lab's container scripts (sh, not bash: the router image is Debian minbase).

say() { echo "natlab[$(hostname)]: $*"; }
die() { echo "natlab[$(hostname)]: error: $*" >&2; exit 1; }

# The interface that holds address $1.
iface_of() {
    ip -o -4 addr show | awk -v ip="$1" '{ split($4, a, "/"); if (a[1] == ip) print $2 }'
}

# Docker gives a container a default route through the host's bridge even on an `internal`
# network (Docker 20.10; the host drops what it forwards there). Remove it: in the lab, the
# only ways out are the routes below. Then add each route of $1 ("DEST via GW; ..."): those
# whose gateway is one of this container's own addresses are skipped (a router is not its
# own next hop), and each goes in with metric 100, so that a directly connected subnet keeps
# its own (metric 0) route.
add_routes() {
    while ip route del default 2>/dev/null; do :; done
    printf '%s\n' "$1" | tr ';' '\n' | while read -r dest via gw; do
        [ -n "${dest:-}" ] || continue
        [ "$via" = via ] || die "bad route '$dest $via $gw' (want: DEST via GW)"
        if [ -n "$(iface_of "$gw")" ]; then continue; fi
        ip route replace "$dest" via "$gw" metric 100 || die "ip route replace $dest via $gw"
    done
}

# Mark this container ready (its compose healthcheck tests the file), then wait for a signal.
ready_and_wait() {
    touch /run/natlab-ready
    say "ready"
    exec sleep infinity
}
