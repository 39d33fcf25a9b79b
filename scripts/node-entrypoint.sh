#!/bin/sh
# Entrypoint of a swarm node container (scripts/node-image.sh, labkit/swarm.py): the cgroup v1
# controllers arrive mounted read-only, so each is mounted again read-write, then dockerd runs
# with the vfs storage driver (overlay on overlay does not work inside a container).
set -eu
for dir in /sys/fs/cgroup/*/; do
    c=$(basename "$dir")
    [ -L "/sys/fs/cgroup/$c" ] && continue      # cpu -> cpu,cpuacct and the like
    case "$c" in
        systemd) opts=none,name=systemd ;;
        unified) continue ;;
        *) opts=$c ;;
    esac
    umount "/sys/fs/cgroup/$c" 2>/dev/null || true
    mount -t cgroup -o "$opts" cgroup "/sys/fs/cgroup/$c"
done
exec dockerd --storage-driver=vfs --host=unix:///var/run/docker.sock "$@"
