#!/usr/bin/env bash
# Build a local Debian bookworm base image for the SliceTwin Dockerfiles when public registries
# cannot be pulled: debootstrap (minbase) + python3, venv, CA certificates and a non-root user
# `slicetwin` (uid 10001), imported with `docker import`.
#
#   sudo deploy/base/build-local-base.sh [TAG]        # default TAG: slicetwin/base:bookworm
#   docker compose build --build-arg BASE_IMAGE=slicetwin/base:bookworm   (or scripts/compose-check.sh --local)
#
# Mirror: $DEBIAN_MIRROR, else the first deb.debian.org-style URI of this host's apt sources,
# else http://deb.debian.org/debian. Needs root, debootstrap and a running Docker engine.
set -euo pipefail

TAG=${1:-slicetwin/base:bookworm}
SUITE=${DEBIAN_SUITE:-bookworm}
PACKAGES=python3,python3-venv,ca-certificates,passwd

die() { echo "build-local-base: $*" >&2; exit 1; }
[ "$(id -u)" = 0 ] || die "needs root (debootstrap creates device nodes and chroots)"
command -v debootstrap >/dev/null || die "debootstrap missing: apt-get install debootstrap"
docker info >/dev/null 2>&1 || die "no Docker engine answers (docker info failed)"

mirror=${DEBIAN_MIRROR:-}
if [ -z "$mirror" ]; then
  mirror=$(grep -hoE '^(URIs:|deb) +[^ ]*https?://[^ ]+/debian/?( |$)' \
             /etc/apt/sources.list /etc/apt/sources.list.d/* 2>/dev/null \
           | grep -oE 'https?://[^ ]+' | grep -v security | head -n1 || true)
fi
mirror=${mirror:-http://deb.debian.org/debian}

root=$(mktemp -d /var/tmp/slicetwin-base.XXXXXX)
trap 'rm -rf "$root"' EXIT
echo "build-local-base: debootstrap $SUITE from $mirror into $root" >&2
debootstrap --variant=minbase --include="$PACKAGES" "$SUITE" "$root" "$mirror" >&2

# A lean base: no apt lists, docs, man pages or caches; the non-root user every service runs as.
chroot "$root" useradd --system --create-home --uid 10001 --shell /usr/sbin/nologin slicetwin
chroot "$root" apt-get clean
rm -rf "$root"/var/lib/apt/lists/* "$root"/usr/share/doc/* "$root"/usr/share/man/* \
       "$root"/usr/share/locale/* "$root"/var/cache/debconf/*-old "$root"/var/log/*.log
# apt sources inside the image: the same mirror, main + updates + security
cat > "$root/etc/apt/sources.list" <<SOURCES
deb $mirror $SUITE main
deb $mirror $SUITE-updates main
deb ${mirror%/debian*}/debian-security $SUITE-security main
SOURCES

chmod 755 "$root"  # mktemp made it 0700: the image's / would shut out non-root users
tar -C "$root" -c . | docker import \
  --change 'ENV LANG=C.UTF-8 PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
  --change 'CMD ["python3"]' - "$TAG" >/dev/null
echo "build-local-base: $TAG $(docker image inspect -f '{{.Size}}' "$TAG" | awk '{printf "%.0f MB", $1/1e6}')" >&2
