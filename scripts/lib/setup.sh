# Shared by the scripts (sourced, not run): install what a fresh Debian machine lacks. As root
# the missing Debian packages are installed with apt-get; otherwise the script stops and prints
# the apt-get command to run. Rust comes from rustup when cargo is missing.

# need_packages COMMAND:PACKAGE ...: install PACKAGE for every COMMAND not on the PATH. A
# COMMAND that starts with `/` is a file that must exist instead (a library, a script).
need_packages() {
  local missing=() pair command package
  for pair in "$@"; do
    command=${pair%%:*}
    package=${pair#*:}
    if [ "${command#/}" != "$command" ]; then
      [ -e "$command" ] && continue
    elif command -v "$command" >/dev/null 2>&1; then
      continue
    fi
    case " ${missing[*]} " in *" $package "*) ;; *) missing+=("$package") ;; esac
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  if [ "$(id -u)" = 0 ]; then
    echo "$(basename "$0"): installing Debian packages: ${missing[*]}" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  else
    echo "$(basename "$0"): missing Debian packages; run as root, or first:" >&2
    echo "  sudo apt-get install --no-install-recommends ${missing[*]}" >&2
    exit 1
  fi
}

# need_build_tools: what building layerscope needs besides Rust: a C compiler and the C library
# headers (zstd and the TLS library's C parts are compiled from source), pkg-config, and curl
# with the CA certificates to fetch rustup and crates.
need_build_tools() {
  need_packages cc:gcc /usr/include/stdio.h:libc6-dev pkg-config:pkg-config curl:curl \
    /etc/ssl/certs/ca-certificates.crt:ca-certificates
}

# ensure_cargo: Rust's cargo on the PATH, installed with rustup (into ~/.cargo) when missing.
ensure_cargo() {
  if ! command -v cargo >/dev/null 2>&1 && [ -x "$HOME/.cargo/bin/cargo" ]; then
    # Installed by rustup earlier, in a shell that has not read ~/.cargo/env yet.
    # shellcheck disable=SC1091
    . "$HOME/.cargo/env"
  fi
  if ! command -v cargo >/dev/null 2>&1; then
    echo "$(basename "$0"): installing the Rust toolchain with rustup (into ~/.cargo)" >&2
    curl --proto '=https' --tlsv1.2 -sSf https://sh.rustup.rs | sh -s -- -y --profile minimal "$@"
    # shellcheck disable=SC1091
    . "$HOME/.cargo/env"
  fi
}

# ensure_cargo_deb: the cargo-deb subcommand, built from crates.io when missing (a few minutes).
ensure_cargo_deb() {
  if ! cargo deb --version >/dev/null 2>&1; then
    echo "$(basename "$0"): installing cargo-deb (cargo install cargo-deb --locked; compiles for a few minutes)" >&2
    cargo install cargo-deb --locked
  fi
}
