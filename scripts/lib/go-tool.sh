# shellcheck shell=bash
# What scripts/helm-tool and scripts/cosign-tool share: a peer's CLI built
# from a module pinned (and checksummed) in tests/<name>/go.mod, with that
# module's own go.mod, as `go install PACKAGE@VERSION` would build it.
#
# The caller sets, before sourcing:
#   tool      the tool's name (helm, cosign): messages, cache directory
#   module    the directory of the pinning go.mod
#   bin_env   the variable that overrides the output directory
# and defines build_into DIR, which builds into DIR/ and checks the result.
#
# The binary goes to $<bin_env> (default ~/.cache/hoist/<tool>-tool/
# followed by a hash of the pins and of this build recipe), Go's build cache
# to its usual place: both outside the repository.

die() {
  echo "$tool-tool: $*" >&2
  exit 1
}

bin_dir() {
  if [ -n "${!bin_env:-}" ]; then
    echo "${!bin_env}"
    return
  fi
  local pins
  pins=$({ cat "$module/go.mod" "$module/go.sum"; declare -f build_into copy_module go_build; } |
    sha256sum | cut -c1-16)
  echo "${XDG_CACHE_HOME:-${HOME:-/tmp}/.cache}/hoist/$tool-tool/$pins"
}

# In the pinning module, with its go.sum checking every module.
pinned() {
  (cd "$module" && GOWORK=off GOFLAGS=-mod=readonly go "$@")
}

# copy_module MODULE DEST: a writable copy of the pinned module's source.
copy_module() {
  local src
  src=$(pinned list -m -f '{{.Dir}}' "$1")
  if [ -z "$src" ] || [ ! -d "$src" ]; then
    die "no source of $1 in the module cache"
  fi
  cp -R "$src" "$2"
  chmod -R u+w "$2"
}

# go_build DIR ARGS...: go build in the module copied to DIR, with that
# module's own go.mod and go.sum. -trimpath and no VCS stamp: the same
# inputs give the same binary.
go_build() {
  local dir=$1
  shift
  (cd "$dir" && CGO_ENABLED=0 GOWORK=off GOFLAGS=-mod=readonly go build -trimpath -buildvcs=false "$@")
}

# pinned_version MODULE: the version the pinning go.mod requires.
pinned_version() {
  local version
  version=$(pinned list -m -f '{{.Version}}' "$1")
  [ -n "$version" ] || die "${module#"$root"/} pins no $1"
  echo "$version"
}

# build MODULE: download MODULE and build_into a fresh directory, which
# replaces the output directory only once the tool runs.
build() {
  local bin
  bin=$(bin_dir)
  if [ -x "$bin/$tool" ]; then
    return
  fi
  command -v go >/dev/null || die "go is not installed (Go 1.26 builds ${module#"$root"/})"
  pinned mod download "$1" >&2 ||
    die "downloading the module pinned in ${module#"$root"/} failed (see above)"
  work=$(mktemp -d)
  # shellcheck disable=SC2064 # expanded now
  trap "rm -rf '$work'" EXIT
  rm -rf "$bin.partial"
  mkdir -p "$bin.partial"
  build_into "$bin.partial"
  rm -rf "$bin"
  mv "$bin.partial" "$bin"
}

main() {
  case ${1:-} in
  build) build "$2" ;;
  bin) bin_dir ;;
  *) die "usage: scripts/$tool-tool build | bin" ;;
  esac
}
