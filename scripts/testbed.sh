#!/usr/bin/env bash
# Set up everything maintainer's tests drive for real, on a fresh Debian 12 machine
# or again on one already set up (then it only checks, and takes seconds):
#   - Debian packages: docker.io, debootstrap, docker-registry, PostgreSQL 15 server
#     and client binaries (the apt cluster is kept stopped), zstd, curl, iproute2,
#     age (the standard CLI that tests check maintainer's encryption against), chromium
#     (the headless browser that loads the status page in tests);
#   - a running Docker engine;
#   - images built locally, since no container registry is reachable:
#       maintainer-test/postgres:15  (bookworm, stand-in for the official postgres:15)
#       maintainer-test/postgres:17  (trixie; a server newer than the local pg_dump 15)
#       maintainer-test/python:3.11  (bookworm python3 + postgresql-client-15)
#       maintainer-test/moto:latest  (an S3 API server for container-to-container tests)
#   - a container registry on 127.0.0.1:5555;
#   - the Python virtual environment .venv with the project and its test extra.
#
# Usage: scripts/testbed.sh [--only-docker]
# Every step logs what it does; any failure exits non-zero with a one-line reason.
# See shared/TESTING.md for why each piece looks the way it does.
set -Eeuo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TESTBED_DIR="$REPO_ROOT/docker/testbed"
STATE_DIR=/var/lib/maintainer-testbed
LOG_DIR=/var/log/maintainer-testbed
DOCKERD_LOG=/var/log/dockerd-testbed.log
REGISTRY_ADDR=127.0.0.1:5555
# The engine's own client (docker.io) matches the engine; another docker CLI earlier
# on PATH may default to BuildKit/buildx, which is not installed here.
DOCKER=/usr/bin/docker
export DOCKER_BUILDKIT=0
export DEBIAN_FRONTEND=noninteractive

APT_PACKAGES=(docker.io debootstrap docker-registry postgresql-15 postgresql-client-15 zstd curl iproute2 age chromium)

declare -a TIMINGS=()

log() { printf '[testbed %s] %s\n' "$(date '+%H:%M:%S')" "$*" >&2; }
die() { printf '[testbed] error: %s\n' "$*" >&2; exit 1; }
trap 'die "command failed (line $LINENO): $BASH_COMMAND"' ERR

# run_step NAME FUNCTION [ARGS...]: run one step and remember how long it took.
run_step() {
	local name="$1" start
	shift
	start=$(date +%s%3N)
	"$@"
	local ms=$(($(date +%s%3N) - start))
	TIMINGS+=("$(printf '%-28s %4d.%d s' "$name" $((ms / 1000)) $((ms % 1000 / 100)))")
}

# ---------------------------------------------------------------- packages

is_installed() {
	dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q 'install ok installed'
}

# ensure_packages PKG...: apt-get install what is missing (apt-get update first, once).
ensure_packages() {
	local missing=() pkg
	for pkg in "$@"; do
		is_installed "$pkg" || missing+=("$pkg")
	done
	if [ "${#missing[@]}" -eq 0 ]; then
		log "packages present: $*"
		return
	fi
	log "installing ${missing[*]}"
	# Keep apt from starting services (the PostgreSQL cluster, the engine, the
	# registry on :5000): this script starts what the tests need, itself.
	local policy=/usr/sbin/policy-rc.d own_policy=0
	if [ ! -e "$policy" ]; then
		printf '#!/bin/sh\nexit 101\n' > "$policy"
		chmod +x "$policy"
		own_policy=1
	fi
	apt-get update -qq >/dev/null || { [ "$own_policy" = 1 ] && rm -f "$policy"; die "apt-get update failed"; }
	if ! apt-get install -y -qq "${missing[@]}" >"$LOG_DIR/apt.log" 2>&1; then
		[ "$own_policy" = 1 ] && rm -f "$policy"
		tail -n 20 "$LOG_DIR/apt.log" >&2
		die "apt-get install ${missing[*]} failed (log: $LOG_DIR/apt.log)"
	fi
	[ "$own_policy" = 1 ] && rm -f "$policy"
	return 0
}

# The apt package creates a cluster 15/main; nothing here uses it, so it must neither
# run nor start by itself (its port 5432 would only confuse tests).
keep_apt_clusters_stopped() {
	local conf
	for conf in /etc/postgresql/*/*/start.conf; do
		[ -e "$conf" ] || continue
		grep -qx 'manual' "$conf" || echo manual > "$conf"
	done
	if command -v pg_lsclusters >/dev/null; then
		pg_lsclusters -h 2>/dev/null | while read -r ver name _port status _rest; do
			if [ "$status" = online ]; then
				log "stopping apt's PostgreSQL cluster $ver/$name"
				pg_ctlcluster "$ver" "$name" stop || die "cannot stop cluster $ver/$name"
			fi
		done
	fi
}

step_packages() {
	ensure_packages "${APT_PACKAGES[@]}"
	keep_apt_clusters_stopped
	[ -x /usr/lib/postgresql/15/bin/pg_dump ] || die "/usr/lib/postgresql/15/bin/pg_dump missing after install"
}

# ---------------------------------------------------------------- docker engine

docker_answers() { timeout 10 "$DOCKER" info >/dev/null 2>&1; }

# A live (not zombie) dockerd process exists.
dockerd_alive() {
	local pid state
	for pid in $(pgrep -x dockerd || true); do
		state=$(awk '{ print $3 }' "/proc/$pid/stat" 2>/dev/null || true)
		[ -n "$state" ] && [ "$state" != Z ] && return 0
	done
	return 1
}

step_dockerd() {
	if docker_answers; then
		log "docker engine is running"
		return
	fi
	local deadline=$((SECONDS + 60)) started=0
	until [ -S /var/run/docker.sock ] && docker_answers; do
		if ! dockerd_alive; then
			[ "$started" = 0 ] || { tail -n 15 "$DOCKERD_LOG" >&2 || true; die "dockerd exited (log: $DOCKERD_LOG)"; }
			if [ -e /var/run/docker.pid ]; then
				log "removing stale /var/run/docker.pid (no dockerd process)"
				rm -f /var/run/docker.pid
			fi
			log "starting dockerd (log: $DOCKERD_LOG)"
			setsid nohup dockerd >>"$DOCKERD_LOG" 2>&1 < /dev/null 9>&- &
			started=1
		fi
		if [ "$SECONDS" -ge "$deadline" ]; then
			tail -n 15 "$DOCKERD_LOG" >&2 || true
			die "docker engine did not answer within 60 s (log: $DOCKERD_LOG)"
		fi
		sleep 0.5
	done
	log "docker engine answers"
}

# ---------------------------------------------------------------- images

image_exists() { "$DOCKER" image inspect "$1" >/dev/null 2>&1; }

# image_hash IMAGE: the recipe hash recorded in the image's label (empty if none).
image_hash() {
	"$DOCKER" image inspect -f '{{ index .Config.Labels "maintainer.testbed.hash" }}' "$1" 2>/dev/null || true
}

# The Debian mirror this machine uses, read from apt's own configuration.
debian_mirror() {
	local uri=""
	if [ -r /etc/apt/sources.list.d/debian.sources ]; then
		# The first URIs of a stanza whose suites are not the security ones.
		uri=$(awk '
			/^[[:space:]]*$/ { if (u != "" && s !~ /security/) { print u; exit } u=""; s=""; next }
			/^URIs:/ { u=$2 }
			/^Suites:/ { s=$0 }
			END { if (u != "" && s !~ /security/) print u }
		' /etc/apt/sources.list.d/debian.sources | head -n 1)
	fi
	if [ -z "$uri" ] && [ -r /etc/apt/sources.list ]; then
		uri=$(awk '$1 == "deb" && $0 !~ /security/ { for (i = 2; i <= NF; i++) if ($i ~ /^[a-z]+:\/\//) { print $i; exit } }' /etc/apt/sources.list)
	fi
	[ -n "$uri" ] || die "cannot find the Debian mirror in /etc/apt/sources.list.d/debian.sources or /etc/apt/sources.list"
	echo "$uri"
}

unmount_below() {
	local dir="$1"
	awk -v d="$dir" '$2 == d || index($2, d "/") == 1 { print $2 }' /proc/mounts | sort -r | while read -r m; do
		umount -l "$m" || true
	done
}

# build_rootfs_image IMAGE SUITE INCLUDES [IMPORT_CHANGE...]
# debootstrap a minimal Debian SUITE with INCLUDES (comma separated), strip caches and
# docs, and docker-import it as IMAGE. Skipped when IMAGE exists with the same recipe.
build_rootfs_image() {
	local image="$1" suite="$2" includes="$3"
	shift 3
	local hash
	hash=$(printf '%s|%s|%s|%s' "$image" "$suite" "$includes" "$*" | sha256sum | cut -c1-16)
	if image_exists "$image" && [ "$(image_hash "$image")" = "$hash" ]; then
		log "$image exists"
		return
	fi
	local mirror dir logf="$LOG_DIR/debootstrap-${image//[\/:]/_}.log"
	mirror=$(debian_mirror)
	dir="$STATE_DIR/rootfs/${image//[\/:]/_}"
	unmount_below "$dir"
	rm -rf "$dir"
	mkdir -p "$dir"
	log "debootstrap $suite ($includes) from $mirror for $image (log: $logf)"
	local keyring=()
	[ -r /usr/share/keyrings/debian-archive-keyring.gpg ] && keyring=(--keyring=/usr/share/keyrings/debian-archive-keyring.gpg)
	if ! debootstrap --variant=minbase "${keyring[@]}" --include="$includes" \
		"$suite" "$dir" "$mirror" >"$logf" 2>&1; then
		unmount_below "$dir"
		tail -n 5 "$logf" >&2
		die "debootstrap of $suite for $image failed (log: $logf)"
	fi
	unmount_below "$dir"
	# The postgresql package's postinst created a cluster "main" we do not want.
	rm -rf "$dir"/var/lib/postgresql/*/main "$dir"/etc/postgresql/*/main
	rm -rf "$dir"/var/cache/apt/archives/*.deb "$dir"/var/cache/apt/*.bin \
		"$dir"/var/lib/apt/lists/* "$dir"/usr/share/doc/* "$dir"/usr/share/man/* \
		"$dir"/usr/share/info/* "$dir"/var/log/*.log "$dir"/tmp/*
	local changes=(-c "LABEL maintainer.testbed.hash=$hash" -c "LABEL maintainer.testbed.suite=$suite")
	local c
	for c in "$@"; do changes+=(-c "$c"); done
	tar -C "$dir" --numeric-owner --exclude='./dev/*' --exclude='./proc/*' --exclude='./sys/*' -c . \
		| "$DOCKER" import "${changes[@]}" - "$image" >/dev/null \
		|| die "docker import of $image failed"
	rm -rf "$dir"
	log "imported $image"
}

# The mirror serves the suite (checked before trying to debootstrap it).
mirror_has_suite() {
	curl -fsS -o /dev/null --max-time 20 "$(debian_mirror)/dists/$1/Release"
}

PY_BASE_CHANGES=(
	'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin'
	'ENV LANG=C.UTF-8'
	'CMD ["python3"]'
)

# The three debootstraps are mostly downloading and unpacking: run them side by side.
step_rootfs_images() {
	local pids=() names=() i failed=0
	build_rootfs_image maintainer-test/rootfs:bookworm-pg15 bookworm \
		postgresql-15,ca-certificates,zstd,gzip 'CMD ["bash"]' &
	pids+=($!); names+=("postgres 15 rootfs")
	if mirror_has_suite trixie; then
		build_rootfs_image maintainer-test/rootfs:trixie-pg17 trixie \
			postgresql-17,ca-certificates,zstd,gzip 'CMD ["bash"]' &
		pids+=($!); names+=("postgres 17 rootfs")
	else
		log "WARNING: the mirror does not serve trixie; maintainer-test/postgres:17 is NOT built and tests that need it will fail"
	fi
	build_rootfs_image maintainer-test/python:3.11 bookworm \
		python3,python3-venv,python3-pip,postgresql-client-15,ca-certificates,zstd "${PY_BASE_CHANGES[@]}" &
	pids+=($!); names+=("python rootfs")
	for i in "${!pids[@]}"; do
		wait "${pids[$i]}" || { log "FAILED: ${names[$i]}"; failed=1; }
	done
	[ "$failed" = 0 ] || die "building a base image failed (see above)"
}

# build_dockerfile_image IMAGE CONTEXT PREPARE [BUILD_ARG...]: docker build, skipped
# when the image exists and was built from the same context files and base image.
# PREPARE (a function name, or "-") gets a scratch copy of CONTEXT to add files to.
build_dockerfile_image() {
	local image="$1" context="$2" prepare="$3"
	shift 3
	local args=() a base_ids="" hash
	for a in "$@"; do
		args+=(--build-arg "$a")
		case "$a" in BASE=*) base_ids=$("$DOCKER" image inspect -f '{{.Id}}' "${a#BASE=}") ;; esac
	done
	hash=$( (cd "$context" && find . -type f -print0 | sort -z | xargs -0 sha256sum; echo "$* $base_ids") | sha256sum | cut -c1-16)
	if image_exists "$image" && [ "$(image_hash "$image")" = "$hash" ]; then
		log "$image exists"
		return
	fi
	local logf="$LOG_DIR/build-${image//[\/:]/_}.log" scratch
	scratch="$STATE_DIR/build/${image//[\/:]/_}"
	rm -rf "$scratch"
	mkdir -p "$scratch"
	cp -a "$context/." "$scratch/"
	[ "$prepare" = - ] || "$prepare" "$scratch"
	log "docker build $image from ${context#"$REPO_ROOT"/} (log: $logf)"
	if ! "$DOCKER" build --force-rm --label "maintainer.testbed.hash=$hash" -t "$image" "${args[@]}" "$scratch" >"$logf" 2>&1; then
		tail -n 10 "$logf" >&2
		die "docker build of $image failed (log: $logf)"
	fi
	rm -rf "$scratch"
	log "built $image"
}

step_postgres_images() {
	build_dockerfile_image maintainer-test/postgres:15 "$TESTBED_DIR/postgres" - \
		BASE=maintainer-test/rootfs:bookworm-pg15 PG_MAJOR=15
	if image_exists maintainer-test/rootfs:trixie-pg17; then
		build_dockerfile_image maintainer-test/postgres:17 "$TESTBED_DIR/postgres" - \
			BASE=maintainer-test/rootfs:trixie-pg17 PG_MAJOR=17
	fi
}

# Containers here cannot verify PyPI's certificate (the host trusts a CA of its own),
# so the host downloads moto's wheels with its own pip setup and the build installs
# them offline. The image's python3 is bookworm's 3.11, like the host's.
download_moto_wheels() {
	local py
	py=$(pick_python)
	log "downloading moto[server] wheels with $py (log: $LOG_DIR/pip-download-moto.log)"
	if ! "$py" -m pip download --only-binary=:all: --dest "$1/wheels" -r "$1/requirements.txt" \
		>"$LOG_DIR/pip-download-moto.log" 2>&1; then
		tail -n 10 "$LOG_DIR/pip-download-moto.log" >&2
		die "pip download of moto[server] failed (log: $LOG_DIR/pip-download-moto.log)"
	fi
}

step_moto_image() {
	build_dockerfile_image maintainer-test/moto:latest "$TESTBED_DIR/moto" download_moto_wheels \
		BASE=maintainer-test/python:3.11
}

# ---------------------------------------------------------------- registry

registry_answers() { curl -fs -o /dev/null --max-time 3 "http://$REGISTRY_ADDR/v2/"; }

step_registry() {
	if registry_answers; then
		log "registry answers on $REGISTRY_ADDR"
		return
	fi
	mkdir -p "$STATE_DIR/registry"
	local config="$STATE_DIR/registry.yml" logf="$LOG_DIR/registry.log"
	cat > "$config" <<-EOF
		version: 0.1
		log:
		  level: warn
		storage:
		  filesystem:
		    rootdirectory: $STATE_DIR/registry
		  delete:
		    enabled: true
		http:
		  addr: $REGISTRY_ADDR
	EOF
	log "starting docker-registry on $REGISTRY_ADDR (log: $logf)"
	setsid nohup docker-registry serve "$config" >>"$logf" 2>&1 < /dev/null 9>&- &
	local deadline=$((SECONDS + 30))
	until registry_answers; do
		if [ "$SECONDS" -ge "$deadline" ]; then
			tail -n 10 "$logf" >&2 || true
			die "registry did not answer on http://$REGISTRY_ADDR/v2/ within 30 s (log: $logf)"
		fi
		sleep 0.3
	done
	log "registry answers on $REGISTRY_ADDR"
}

# ---------------------------------------------------------------- python

pick_python() {
	local py
	for py in /root/.pyenv/versions/3.11.7/bin/python3 python3.11 python3; do
		if command -v "$py" >/dev/null && "$py" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
			command -v "$py"
			return
		fi
	done
	die "no python3 >= 3.11 found"
}

step_venv() {
	local venv="$REPO_ROOT/.venv" stamp="$REPO_ROOT/.venv/.testbed-stamp" want
	[ -f "$REPO_ROOT/pyproject.toml" ] || die "$REPO_ROOT/pyproject.toml not found: nothing to install"
	if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
		local py
		py=$(pick_python)
		log "creating .venv with $py"
		rm -rf "$venv"
		"$py" -m venv "$venv" || die "python -m venv failed"
	fi
	want=$(sha256sum "$REPO_ROOT/pyproject.toml" | cut -d' ' -f1)
	if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
		log ".venv is up to date with pyproject.toml"
		return
	fi
	log "pip install -e '.[test]' into .venv (log: $LOG_DIR/pip.log)"
	if ! (cd "$REPO_ROOT" && "$venv/bin/python" -m pip install -e '.[test]') >"$LOG_DIR/pip.log" 2>&1; then
		tail -n 10 "$LOG_DIR/pip.log" >&2
		die "pip install -e '.[test]' failed (log: $LOG_DIR/pip.log)"
	fi
	echo "$want" > "$stamp"
}

# ---------------------------------------------------------------- main

summary() {
	log "done in ${SECONDS} s"
	printf '  %s\n' "${TIMINGS[@]}" >&2
	"$DOCKER" image ls --format '{{.Repository}}:{{.Tag}} {{.Size}}' | grep -E '^maintainer-test/(postgres|python|moto)' | sort | sed 's/^/  /' >&2 || true
	echo "  registry: http://$REGISTRY_ADDR/v2/" >&2
}

# One run at a time: concurrent runs (two engineers, or a test run beside a manual
# one) would debootstrap into the same directories. The later run waits, then finds
# everything in place.
take_lock() {
	exec 9>"$STATE_DIR/testbed.lock"
	if ! flock -n 9; then
		log "another testbed.sh run is in progress; waiting for it (up to 15 min)"
		flock -w 900 9 || die "another testbed.sh run held $STATE_DIR/testbed.lock for 15 min"
	fi
}

main() {
	[ "$(id -u)" = 0 ] || die "run as root (installs packages, starts dockerd)"
	mkdir -p "$STATE_DIR" "$LOG_DIR"
	take_lock
	case "${1:-}" in
		--only-docker)
			run_step "packages (docker.io)" ensure_packages docker.io
			run_step "docker engine" step_dockerd
			summary
			return ;;
		"") ;;
		*) die "unknown argument $1 (usage: scripts/testbed.sh [--only-docker])" ;;
	esac
	run_step "packages" step_packages
	run_step "docker engine" step_dockerd
	run_step "base images (debootstrap)" step_rootfs_images
	run_step "postgres images" step_postgres_images
	run_step "moto image" step_moto_image
	run_step "registry" step_registry
	run_step "python .venv" step_venv
	summary
}

main "$@"
