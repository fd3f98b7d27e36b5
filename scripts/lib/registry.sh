# Shared by scripts/demo and scripts/screenshots (sourced, not run): start a throwaway loopback
# registry (the Debian docker-registry package, installed when missing and run as root) and push
# the sample hello-world-java image to it. Sets REGISTRY (host:port); stops it on exit.

start_sample_registry() {
  local registry_bin
  registry_bin=$(command -v docker-registry || command -v registry || true)
  if [ -z "$registry_bin" ]; then
    if [ "$(id -u)" = 0 ]; then
      DEBIAN_FRONTEND=noninteractive apt-get update -qq
      DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends docker-registry >/dev/null
      registry_bin=$(command -v docker-registry)
    else
      echo "$0: needs the docker-registry package (sudo apt-get install docker-registry)" >&2
      exit 1
    fi
  fi
  REGISTRY_WORK=$(mktemp -d)
  local port
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])' 2>/dev/null || echo 5000)
  cat >"$REGISTRY_WORK/config.yml" <<CONFIG
version: 0.1
log:
  level: error
storage:
  filesystem:
    rootdirectory: $REGISTRY_WORK/data
http:
  addr: 127.0.0.1:$port
CONFIG
  "$registry_bin" serve "$REGISTRY_WORK/config.yml" >"$REGISTRY_WORK/registry.log" 2>&1 &
  REGISTRY_PID=$!
  trap 'kill $REGISTRY_PID 2>/dev/null; rm -rf "$REGISTRY_WORK"' EXIT
  for _ in $(seq 50); do
    curl -sf "http://127.0.0.1:$port/v2/" >/dev/null && break
    sleep 0.1
  done
  REGISTRY="127.0.0.1:$port"
  target/release/examples/sample_image "http://$REGISTRY" hello-world-java:latest >&2
}

ensure_cargo() {
  if ! command -v cargo >/dev/null 2>&1; then
    curl --proto '=https' --tlsv1.2 -sSf https://sh.rustup.rs | sh -s -- -y --profile minimal
    # shellcheck disable=SC1091
    . "$HOME/.cargo/env"
  fi
}
