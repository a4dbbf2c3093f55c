#!/usr/bin/env bash
# Makes a distroless-like runtime base image from this machine's files, for builds where no
# container registry can be reached:
#   scripts/make-base-image.sh [IMAGE] [BINARY...]
# IMAGE defaults to localhost/stratus-base:local; the BINARYs (default: the debug and release
# stratus binaries that exist) decide which shared libraries go in. The image holds the
# dynamic loader and those libraries, the CA bundle, /etc/passwd and /etc/group with the
# user nonroot (65532), /tmp and /var/lib/stratus; no shell. File times are fixed
# (SOURCE_DATE_EPOCH, default 0), so the same inputs make the same layer.
set -euo pipefail
IMAGE="${1:-localhost/stratus-base:local}"
shift || true
REPO="$(cd "$(dirname "$0")/.." && pwd)"
TARGET="${CARGO_TARGET_DIR:-$REPO/target}"
BINS=("$@")
if [ ${#BINS[@]} -eq 0 ]; then
  for b in "$TARGET"/{debug,release}/{stratus,stratus-operator}; do [ -x "$b" ] && BINS+=("$b"); done
fi
[ ${#BINS[@]} -gt 0 ] || { echo "make-base-image: no binary to take libraries from" >&2; exit 1; }
TOOL="$(command -v podman || command -v buildah || true)"
[ -n "$TOOL" ] || { echo "make-base-image: needs podman or buildah (apt-get install podman)" >&2; exit 1; }

ROOT="$(mktemp -d)"
trap 'rm -rf "$ROOT"' EXIT
mkdir -p "$ROOT"/{etc/ssl/certs,tmp,var/lib/stratus,usr/local/bin}
chmod 1777 "$ROOT/tmp"
# Shared libraries (and the loader) the binaries need, at their own paths.
for lib in $(ldd "${BINS[@]}" 2>/dev/null | grep -oE '/[^ ]+\.so[^ ]*' | sort -u); do
  mkdir -p "$ROOT$(dirname "$lib")"
  cp -L "$lib" "$ROOT$lib"
done
cp -L /etc/ssl/certs/ca-certificates.crt "$ROOT/etc/ssl/certs/ca-certificates.crt"
printf 'root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n' \
  > "$ROOT/etc/passwd"
printf 'root:x:0:\nnonroot:x:65532:\n' > "$ROOT/etc/group"
printf 'hosts: files dns\n' > "$ROOT/etc/nsswitch.conf"
EPOCH="${SOURCE_DATE_EPOCH:-0}"
# Everything belongs to root but /var/lib/stratus, the broker user's.
chown -R 0:0 "$ROOT" 2>/dev/null || true
chown 65532:65532 "$ROOT/var/lib/stratus" 2>/dev/null || true
tar --sort=name --mtime="@$EPOCH" --numeric-owner -C "$ROOT" -cf "$ROOT.tar" .
"$TOOL" import --change 'USER 65532:65532' "$ROOT.tar" "$IMAGE" >/dev/null 2>&1 || {
  # buildah has no import: build it from scratch.
  ctr="$(buildah from scratch)"
  buildah add "$ctr" "$ROOT.tar" / >/dev/null
  buildah config --user 65532:65532 "$ctr"
  buildah commit --quiet "$ctr" "$IMAGE" >/dev/null
  buildah rm "$ctr" >/dev/null
}
rm -f "$ROOT.tar"
echo "$IMAGE"
