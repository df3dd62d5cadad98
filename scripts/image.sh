#!/usr/bin/env bash
# Builds the two images of the Dockerfile without a Docker engine, and runs each binary's --help
# in the built filesystem:
#
#   scripts/image.sh            (make image)
#
# buildah (Debian package) with the vfs storage driver and chroot isolation: no daemon, no
# overlay mounts, works as root in a plain VM. The Dockerfile names two public base images
# (rust:1.95-bookworm, gcr.io/distroless/cc-debian12:nonroot). Where no container registry is
# reachable (IMAGE_OFFLINE=1, the default when docker.io does not resolve) the script first makes
# stand-ins for both from Debian packages and passes them as build arguments:
#
#   localhost/mcp-warden/build-base  debootstrap bookworm (minbase + gcc, libc6-dev) with the
#                                    host's Rust toolchain bound in at /usr/local/rust
#   localhost/mcp-warden/cc-base     FROM scratch: libc6, libgcc-s1, ca-certificates extracted
#                                    from their .debs, user nonroot (65532): distroless cc's contents
#
# Everything else (the build commands, COPY, USER, ENTRYPOINT) is the Dockerfile's own.
# Storage lives in IMAGE_ROOT (default ~/.cache/mcp-warden/containers), outside the clone.
set -euo pipefail

cd "$(dirname "$0")/.."
root=${IMAGE_ROOT:-$HOME/.cache/mcp-warden/containers}
tag=${IMAGE_TAG:-dev}
log() { printf '[image] %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

need=()
command -v buildah >/dev/null || need+=(buildah)
command -v debootstrap >/dev/null || need+=(debootstrap)
if ((${#need[@]})); then
  [[ $(id -u) == 0 ]] || die "missing ${need[*]}: as root run apt-get install -y ${need[*]}"
  log "installing ${need[*]} (Debian packages)"
  apt-get update -qq && apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
[[ $(id -u) == 0 ]] || die "buildah with chroot isolation needs root here"

bah() { buildah --root "$root/storage" --runroot "$root/run" --storage-driver vfs "$@"; }
export BUILDAH_ISOLATION=chroot

offline=${IMAGE_OFFLINE:-}
if [[ -z $offline ]]; then
  if getent hosts registry-1.docker.io >/dev/null 2>&1; then offline=0; else offline=1; fi
fi

args=()
volumes=()
if [[ $offline == 1 ]]; then
  log "no container registry reachable: base images from Debian packages"
  mirror=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
  if ! bah inspect localhost/mcp-warden/build-base >/dev/null 2>&1; then
    rootfs="$root/build-rootfs"
    rm -rf "$rootfs"
    log "debootstrap bookworm (minbase + gcc) into $rootfs"
    debootstrap --variant=minbase --include=gcc,libc6-dev,ca-certificates,pkg-config \
      bookworm "$rootfs" "$mirror" >"$root/debootstrap.log" 2>&1 ||
      die "debootstrap failed: $(tail -3 "$root/debootstrap.log")"
    c=$(bah from scratch)
    mnt=$(bah mount "$c")
    cp -a "$rootfs/." "$mnt/"
    bah umount "$c" >/dev/null
    bah config --env PATH=/usr/local/rust/bin:/usr/local/cargo/bin:/usr/sbin:/usr/bin:/sbin:/bin \
      --env CARGO_HOME=/usr/local/cargo "$c"
    bah commit --quiet "$c" localhost/mcp-warden/build-base >/dev/null
    bah rm "$c" >/dev/null
    rm -rf "$rootfs"
  fi
  if ! bah inspect localhost/mcp-warden/cc-base >/dev/null 2>&1; then
    debs="$root/cc-debs"
    rm -rf "$debs" && mkdir -p "$debs/rootfs/etc" "$debs/rootfs/tmp"
    (cd "$debs" && apt-get download libc6 libgcc-s1 ca-certificates >/dev/null 2>&1) ||
      die "apt-get download libc6 libgcc-s1 ca-certificates failed"
    for deb in "$debs"/*.deb; do dpkg-deb -x "$deb" "$debs/rootfs"; done
    # ca-certificates ships the certificates; the bundle is what update-ca-certificates makes.
    mkdir -p "$debs/rootfs/etc/ssl/certs"
    find "$debs/rootfs/usr/share/ca-certificates" -name '*.crt' -exec cat {} + \
      >"$debs/rootfs/etc/ssl/certs/ca-certificates.crt"
    printf 'root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n' \
      >"$debs/rootfs/etc/passwd"
    printf 'root:x:0:\nnonroot:x:65532:\n' >"$debs/rootfs/etc/group"
    chmod 1777 "$debs/rootfs/tmp"
    c=$(bah from scratch)
    mnt=$(bah mount "$c")
    cp -a "$debs/rootfs/." "$mnt/"
    bah umount "$c" >/dev/null
    bah config --user 65532:65532 "$c"
    bah commit --quiet "$c" localhost/mcp-warden/cc-base >/dev/null
    bah rm "$c" >/dev/null
    rm -rf "$debs"
  fi
  toolchain=$(rustc --print sysroot)
  "$toolchain/bin/rustc" --version | grep -q '1\.9[5-9]\|1\.[1-9][0-9][0-9]' ||
    log "warning: the host toolchain is $("$toolchain/bin/rustc" --version), the Dockerfile names 1.95"
  args+=(--build-arg BUILD_IMAGE=localhost/mcp-warden/build-base
    --build-arg RUNTIME_IMAGE=localhost/mcp-warden/cc-base)
  volumes+=(-v "$toolchain:/usr/local/rust:ro")
  # The host's CA bundle for the build's downloads (crates.io): a machine whose registries sit
  # behind a TLS-inspecting proxy trusts its CA there. The images ship Debian's own CA set.
  volumes+=(-v /etc/ssl/certs/ca-certificates.crt:/etc/ssl/certs/ca-certificates.crt:ro)
fi

started=$SECONDS
for target in sidecar operator; do
  log "buildah bud --target $target (vfs, chroot isolation)"
  bah bud --quiet --layers=false --target "$target" -t "localhost/mcp-warden-$target:$tag" \
    "${args[@]}" "${volumes[@]}" . >"$root/bud-$target.log" 2>&1 ||
    die "the $target image did not build: $(tail -5 "$root/bud-$target.log")"
done
log "built in $((SECONDS - started)) s"

# Each image's entrypoint, run in its own filesystem as its own user.
for target in sidecar operator; do
  c=$(bah from "localhost/mcp-warden-$target:$tag")
  bin=mcp-warden-$target
  out=$(bah run --isolation chroot "$c" -- "/usr/local/bin/$bin" --help 2>&1) ||
    die "$bin --help failed in the image: $out"
  user=$(bah inspect --format '{{.OCIv1.Config.User}}' "localhost/mcp-warden-$target:$tag")
  bah rm "$c" >/dev/null
  [[ $user == 65532:65532 ]] || die "$bin's image runs as $user, not 65532:65532"
  log "$bin --help in the image (user $user): $(head -1 <<<"$out")"
done
bah images --format '{{.Name}}:{{.Tag}} {{.Size}}' | grep mcp-warden- >&2
