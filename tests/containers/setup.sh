#!/usr/bin/env bash
# Container engine for the test suite: rootful podman, the localhost/pgprov-postgres:15 image and
# a Docker-compatible API socket for testcontainers, all kept under .cache/podman/ (no /etc edits).
#
#   bash tests/containers/setup.sh          # install/build/start as needed (idempotent), as root
#   source .cache/podman/env.sh             # DOCKER_HOST etc. for pytest
#   bash tests/containers/setup.sh --stop   # stop the API service and remove leftover containers
#
# Why podman and a home-made image: these machines have no Docker engine and no image registry,
# only Debian's apt mirror, so the image is debootstrapped from that mirror and imported.
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
# PGPROV_PODMAN_DIR moves everything (e.g. to /var/tmp/pgprov-podman) if the clone's filesystem
# can't hold overlay storage.
BASE=${PGPROV_PODMAN_DIR:-$REPO/.cache/podman}
IMAGE=localhost/pgprov-postgres:15
# Bump when the build steps below change in a way that needs a new image.
RECIPE_VERSION=1
ENTRYPOINT_SRC=$REPO/tests/containers/entrypoint.sh
PACKAGES=(podman runc uidmap fuse-overlayfs slirp4netns catatonit netavark aardvark-dns iptables
	debootstrap)
LOGS=$BASE/logs
PIDFILE=$BASE/service.pid
ROOTFS=$BASE/rootfs

# Per-checkout tmpfs dir: podman's tmp_dir must be wiped on reboot (that is how it notices stale
# container state), and must not be the default /run/libpod, which another checkout's podman (e.g.
# CI's fresh clone on this machine) would share.
RUNDIR=/run/pgprov-podman-$(printf '%s' "$BASE" | sha256sum | cut -c1-12)
# A unix socket path must fit in sun_path (108 bytes); a deep CI checkout may not.
SOCK=$BASE/podman.sock
if [ ${#SOCK} -gt 100 ]; then
	SOCK=$RUNDIR/podman.sock
fi

export CONTAINERS_CONF=$BASE/containers.conf
export CONTAINERS_STORAGE_CONF=$BASE/storage.conf

now() { date +%s.%N; }
took() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1fs", b - a }'; }
phase() { printf '[setup] %-28s %s\n' "$1" "$2"; }
die() {
	echo "[setup] ERROR: $*" >&2
	exit 1
}

socket_answers() {
	[ -S "$SOCK" ] || return 1
	if command -v curl >/dev/null 2>&1; then
		curl -fsS --max-time 2 --unix-socket "$SOCK" http://d/_ping >/dev/null 2>&1
	else
		python3 - "$SOCK" <<-'EOF' >/dev/null 2>&1
			import socket, sys
			s = socket.socket(socket.AF_UNIX)
			s.settimeout(2)
			s.connect(sys.argv[1])
			s.sendall(b"GET /_ping HTTP/1.0\r\nHost: d\r\n\r\n")
			sys.exit(0 if s.recv(64).split()[1] == b"200" else 1)
		EOF
	fi
}

service_pid() {
	# Prints the pid from the pidfile only while that process is still our podman service.
	local pid
	[ -f "$PIDFILE" ] || return 1
	pid=$(cat "$PIDFILE")
	[ -n "$pid" ] && [ -r "/proc/$pid/cmdline" ] || return 1
	tr '\0' ' ' <"/proc/$pid/cmdline" | grep -q "podman system service .*unix://$SOCK" || return 1
	echo "$pid"
}

stop_service() {
	local pid
	if socket_answers; then
		# Our storage is private to this checkout, so every container in it is a test leftover.
		podman rm --all --force --time 5 >/dev/null 2>&1 || true
	fi
	if pid=$(service_pid); then
		kill "$pid" 2>/dev/null || true
		for _ in $(seq 50); do
			kill -0 "$pid" 2>/dev/null || break
			sleep 0.1
		done
		kill -9 "$pid" 2>/dev/null || true
		echo "[setup] podman service (pid $pid) stopped"
	else
		echo "[setup] podman service was not running"
	fi
	rm -f "$PIDFILE" "$SOCK"
}

if [ "${1:-}" = "--stop" ]; then
	stop_service
	exit 0
elif [ $# -gt 0 ]; then
	die "usage: $0 [--stop]"
fi

[ "$(id -u)" = 0 ] || die "run as root (rootful podman, apt-get, debootstrap)"
mkdir -p "$LOGS"
T_ALL=$(now)

# --- 1. packages --------------------------------------------------------------------------------
T=$(now)
missing=()
for p in "${PACKAGES[@]}"; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q '^install ok installed$' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq >"$LOGS/apt.log" 2>&1 || {
		cat "$LOGS/apt.log" >&2
		die "apt-get update failed"
	}
	apt-get install -y -qq "${PACKAGES[@]}" >>"$LOGS/apt.log" 2>&1 || {
		tail -n 30 "$LOGS/apt.log" >&2
		die "apt-get install failed (log: $LOGS/apt.log)"
	}
	phase "apt install (${#missing[@]} missing)" "$(took "$T")"
else
	phase "apt (all present)" "$(took "$T")"
fi

# --- 2. engine config ---------------------------------------------------------------------------
T=$(now)
# write_if_changed FILE: stdin becomes FILE only when it differs, so reruns touch nothing.
write_if_changed() {
	local tmp
	tmp=$(mktemp "$1.XXXXXX")
	cat >"$tmp"
	if cmp -s "$tmp" "$1"; then rm -f "$tmp"; else mv "$tmp" "$1"; fi
}
write_if_changed "$CONTAINERS_STORAGE_CONF" <<EOF
[storage]
driver = "overlay"
graphroot = "$BASE/storage"
runroot = "$BASE/runroot"
EOF
# Without CAP_SYS_RESOURCE, runc cannot raise limits above the hard limits of this shell; podman's
# defaults (nofile 1048576) would fail with "setrlimit RLIMIT_NOFILE: Operation not permitted".
NOFILE=$(ulimit -Hn)
NPROC=$(ulimit -Hu)
{ [ "$NOFILE" = unlimited ] || [ "$NOFILE" -gt 1048576 ]; } && NOFILE=1048576
{ [ "$NPROC" = unlimited ] || [ "$NPROC" -gt 32768 ]; } && NPROC=32768
# runc, not crun: crun rejects the hybrid cgroup v1/v2 layout these machines have.
# cgroupfs/file: there is no systemd to talk to. exit_command_delay: otherwise every exec that
# testcontainers' readiness check runs leaves a conmon waiting 300 s. tmp_dir: see RUNDIR.
write_if_changed "$CONTAINERS_CONF" <<EOF
[containers]
default_ulimits = ["nofile=$NOFILE:$NOFILE", "nproc=$NPROC:$NPROC"]

[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
exit_command_delay = 5
tmp_dir = "$RUNDIR/libpod"

[network]
network_backend = "netavark"
EOF
podman info --format '{{.Store.GraphDriverName}} {{.Host.OCIRuntime.Name}} {{.Version.Version}}' \
	>"$LOGS/info.txt" 2>"$LOGS/info.err" || {
	cat "$LOGS/info.err" >&2
	die "podman info failed with $CONTAINERS_CONF / $CONTAINERS_STORAGE_CONF"
}
read -r DRIVER RUNTIME PODMAN_VERSION <"$LOGS/info.txt"
[ "$DRIVER" = overlay ] || die "storage driver is '$DRIVER', not overlay (set PGPROV_PODMAN_DIR)"
phase "config (podman $PODMAN_VERSION, $DRIVER, $RUNTIME)" "$(took "$T")"

# --- 3. image -----------------------------------------------------------------------------------
# Identifies what the image was built from; a changed entrypoint or recipe means a rebuild.
RECIPE_ID="$RECIPE_VERSION-$(sha256sum "$ENTRYPOINT_SRC" | cut -c1-16)"

unmount_rootfs() {
	# Deepest first; lazy, so a process still holding /proc can't block the cleanup.
	local m
	awk -v r="$ROOTFS" '$2 == r || index($2, r "/") == 1 { print $2 }' /proc/self/mounts |
		sort -r | while read -r m; do umount -l "$m" 2>/dev/null || true; done
}
remove_rootfs() {
	unmount_rootfs
	if awk -v r="$ROOTFS" 'index($2, r "/") == 1 { found = 1 } END { exit !found }' /proc/self/mounts
	then
		# Never rm -rf through a live /proc or bind mount.
		echo "[setup] WARNING: $ROOTFS still has mounts; left in place" >&2
		return 0
	fi
	rm -rf "$ROOTFS"
}

apt_mirrors() {
	# Prints "MAIN SECURITY" from the machine's own apt configuration (deb822 or one-line).
	local main="" security=""
	if [ -f /etc/apt/sources.list.d/debian.sources ]; then
		main=$(awk '/^URIs:/ { u = $2 } /^Suites:/ && / bookworm( |$)/ { print u; exit }' \
			/etc/apt/sources.list.d/debian.sources)
		security=$(awk '/^URIs:/ { u = $2 } /^Suites:/ && /bookworm-security/ { print u; exit }' \
			/etc/apt/sources.list.d/debian.sources)
	fi
	if [ -z "$main" ] && [ -f /etc/apt/sources.list ]; then
		main=$(awk '$1 == "deb" && $3 == "bookworm" { print $2; exit }' /etc/apt/sources.list)
		security=$(awk '$1 == "deb" && $3 == "bookworm-security" { print $2; exit }' \
			/etc/apt/sources.list)
	fi
	main=${main:-http://deb.debian.org/debian}
	echo "$main ${security:-${main%/debian}/debian-security}"
}

build_image() {
	local mirror security t
	read -r mirror security < <(apt_mirrors)
	# A previous run killed hard (no trap) may have left a rootfs with /proc mounted.
	remove_rootfs
	trap 'remove_rootfs' EXIT
	trap 'exit 130' INT TERM

	t=$(now)
	# debootstrap ignores apt.conf; hand it the proxy, if apt has one.
	local proxy
	proxy=$(apt-config shell P Acquire::http::Proxy | sed -n "s/^P='\(.*\)'$/\1/p")
	http_proxy=${http_proxy:-$proxy} debootstrap --variant=minbase bookworm "$ROOTFS" "$mirror" \
		>"$LOGS/debootstrap.log" 2>&1 || {
		tail -n 20 "$LOGS/debootstrap.log" >&2
		die "debootstrap from $mirror failed (log: $LOGS/debootstrap.log)"
	}
	phase "debootstrap ($mirror)" "$(took "$t")"

	t=$(now)
	printf 'deb %s bookworm main\ndeb %s bookworm-updates main\ndeb %s bookworm-security main\n' \
		"$mirror" "$mirror" "$security" >"$ROOTFS/etc/apt/sources.list"
	# The host's Acquire settings (snapshot mirrors need Check-Valid-Until false, proxies).
	apt-config dump | grep -E '^Acquire::(Check-Valid-Until|Check-Date|https?::Proxy) ' \
		>"$ROOTFS/etc/apt/apt.conf.d/99pgprov-build" || true
	# No daemons may start inside the chroot, and the image's entrypoint creates the cluster.
	printf '#!/bin/sh\nexit 101\n' >"$ROOTFS/usr/sbin/policy-rc.d"
	chmod 755 "$ROOTFS/usr/sbin/policy-rc.d"
	mkdir -p "$ROOTFS/etc/postgresql-common/createcluster.d" "$ROOTFS/docker-entrypoint-initdb.d"
	echo 'create_main_cluster = false' \
		>"$ROOTFS/etc/postgresql-common/createcluster.d/pgprov-no-main.conf"
	cp /etc/resolv.conf "$ROOTFS/etc/resolv.conf"
	mount -t proc proc "$ROOTFS/proc"
	chroot "$ROOTFS" /bin/sh -c 'apt-get update -qq &&
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends postgresql-15' \
		>"$LOGS/chroot-apt.log" 2>&1 || {
		tail -n 20 "$LOGS/chroot-apt.log" >&2
		die "apt-get install postgresql-15 in the chroot failed (log: $LOGS/chroot-apt.log)"
	}
	umount "$ROOTFS/proc"
	phase "chroot install postgresql-15" "$(took "$t")"

	t=$(now)
	rm -rf "$ROOTFS/etc/resolv.conf" "$ROOTFS/etc/apt/apt.conf.d/99pgprov-build" \
		"$ROOTFS"/usr/share/{doc,man,info,locale}/* "$ROOTFS"/var/cache/apt/* \
		"$ROOTFS"/var/lib/apt/lists/*
	install -m 755 "$ENTRYPOINT_SRC" "$ROOTFS/usr/local/bin/docker-entrypoint.sh"
	podman rmi --force "$IMAGE" >/dev/null 2>&1 || true
	tar --numeric-owner -C "$ROOTFS" -c . | podman import \
		--change 'ENTRYPOINT ["docker-entrypoint.sh"]' \
		--change 'CMD ["postgres"]' \
		--change 'ENV PATH=/usr/lib/postgresql/15/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
		--change 'ENV PGDATA=/var/lib/postgresql/data' \
		--change 'ENV LANG=C.UTF-8' \
		--change 'EXPOSE 5432' \
		--change 'STOPSIGNAL SIGINT' \
		--change "LABEL pgprov.recipe=$RECIPE_ID" \
		--message "pgprov postgres 15 (debootstrap bookworm + Debian postgresql-15)" \
		- "$IMAGE" >"$LOGS/import.log" 2>&1 || {
		cat "$LOGS/import.log" >&2
		die "podman import failed"
	}
	phase "podman import" "$(took "$t")"

	t=$(now)
	remove_rootfs
	trap - EXIT INT TERM
	phase "remove rootfs" "$(took "$t")"
}

T=$(now)
built_from=""
if podman image exists "$IMAGE"; then
	built_from=$(podman image inspect --format '{{index .Labels "pgprov.recipe"}}' "$IMAGE")
fi
if [ "$built_from" = "$RECIPE_ID" ]; then
	phase "image $IMAGE (reused)" "$(took "$T")"
else
	[ -n "$built_from" ] && echo "[setup] $IMAGE was built from $built_from, want $RECIPE_ID"
	build_image
	phase "image $IMAGE (built, $(podman image inspect --format '{{.Size}}' "$IMAGE") bytes)" \
		"$(took "$T")"
fi

# --- 4. Docker-compatible API service -----------------------------------------------------------
T=$(now)
if socket_answers; then
	phase "podman service (running)" "$(took "$T")"
else
	# A stale service (e.g. wedged, or from an older config) or socket file would block this one.
	if pid=$(service_pid); then kill "$pid" 2>/dev/null || true; fi
	rm -f "$SOCK" "$PIDFILE"
	mkdir -p "$(dirname "$SOCK")"
	# setsid + nohup: the service must outlive this script and its session (CI runs setup.sh,
	# then pytest, then setup.sh --stop). --time=0: never exit for idleness between tests.
	setsid nohup podman system service --time=0 "unix://$SOCK" \
		>>"$LOGS/service.log" 2>&1 </dev/null &
	echo $! >"$PIDFILE"
	for _ in $(seq 100); do
		socket_answers && break
		kill -0 "$(cat "$PIDFILE")" 2>/dev/null || {
			tail -n 20 "$LOGS/service.log" >&2
			die "podman system service exited"
		}
		sleep 0.1
	done
	socket_answers || die "podman service did not answer on $SOCK within 10 s"
	phase "podman service (started, pid $(cat "$PIDFILE"))" "$(took "$T")"
fi

# --- 5. environment for the tests --------------------------------------------------------------
write_if_changed "$BASE/env.sh" <<EOF
# Written by tests/containers/setup.sh: the engine the tests use. Source it, don't edit it.
export DOCKER_HOST=unix://$SOCK
export TESTCONTAINERS_RYUK_DISABLED=true
export TESTCONTAINERS_CONNECTION_MODE=docker_host
export CONTAINERS_CONF=$CONTAINERS_CONF
export CONTAINERS_STORAGE_CONF=$CONTAINERS_STORAGE_CONF
export PGPROV_TEST_IMAGE=$IMAGE
EOF
phase "total" "$(took "$T_ALL")"
echo "[setup] ready: source ${BASE#"$PWD"/}/env.sh"
