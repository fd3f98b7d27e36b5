# Shared by scripts/demo and scripts/screenshots (sourced, not run): loopback registries (the
# Debian docker-registry package, installed when missing) holding the sample hello-world-java
# image. start_sample_registry: a throwaway one on a free port, stopped on exit (screenshots).
# serve_demo_registry / stop_demo_registry: the one the demo leaves running at localhost:5000.
# shellcheck source=scripts/lib/setup.sh
. "$(dirname "${BASH_SOURCE[0]}")/setup.sh"

registry_command() {
  need_packages docker-registry:docker-registry
  command -v docker-registry || command -v registry
}

start_sample_registry() {
  local registry_bin
  registry_bin=$(registry_command)
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

# The demo's registry: its address, and where it keeps its data, log and process id (inside
# the clone, so nothing of the user's is touched).
DEMO_REGISTRY=localhost:5000
DEMO_DIR=target/demo

# demo_registry_status: `ours` (started by the demo and running), `other` (some registry
# answers at localhost:5000), `login` (one answers but wants a login), `busy` (the port answers
# but not as a registry) or `none`.
demo_registry_status() {
  local code
  if [ -f "$DEMO_DIR/registry.pid" ] && is_demo_registry "$(cat "$DEMO_DIR/registry.pid")"; then
    echo ours
    return
  fi
  code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 5 "http://$DEMO_REGISTRY/v2/" || true)
  case "$code" in
    200) echo other ;;
    401) echo login ;;
    000) echo none ;;
    *) echo busy ;;
  esac
}

# is_demo_registry PID: whether PID is the registry this clone's demo started.
is_demo_registry() {
  [ -n "$1" ] && [ -r "/proc/$1/cmdline" ] &&
    tr '\0' ' ' <"/proc/$1/cmdline" | grep -q -- "$(pwd)/$DEMO_DIR/registry.yml"
}

# serve_demo_registry: make localhost:5000 serve the sample image: reuse the registry already
# there, else start one that keeps running after the demo (stop_demo_registry stops it), then
# push the sample (pushing again is harmless: same blobs, same manifest).
serve_demo_registry() {
  local status registry_bin
  status=$(demo_registry_status)
  case "$status" in
    ours) echo "demo: the registry started by an earlier demo answers at $DEMO_REGISTRY" >&2 ;;
    other) echo "demo: reusing the registry that already answers at $DEMO_REGISTRY" >&2 ;;
    login)
      echo "demo: the registry at $DEMO_REGISTRY asks for a login, so the sample cannot be pushed to it;" >&2
      echo "      stop it (or free port 5000) and run scripts/demo again" >&2
      exit 1
      ;;
    busy)
      echo "demo: something that is not a registry answers at $DEMO_REGISTRY; free port 5000 and run scripts/demo again" >&2
      exit 1
      ;;
    none)
      registry_bin=$(registry_command)
      mkdir -p "$DEMO_DIR/registry"
      cat >"$DEMO_DIR/registry.yml" <<CONFIG
version: 0.1
log:
  level: error
storage:
  filesystem:
    rootdirectory: $(pwd)/$DEMO_DIR/registry
http:
  addr: 127.0.0.1:5000
CONFIG
      # setsid: its own session, so closing this terminal does not stop it.
      setsid "$registry_bin" serve "$(pwd)/$DEMO_DIR/registry.yml" \
        >"$DEMO_DIR/registry.log" 2>&1 </dev/null &
      echo $! >"$DEMO_DIR/registry.pid"
      for _ in $(seq 100); do
        curl -sf --max-time 2 "http://$DEMO_REGISTRY/v2/" >/dev/null && break
        sleep 0.1
      done
      if ! curl -sf --max-time 2 "http://$DEMO_REGISTRY/v2/" >/dev/null; then
        echo "demo: the registry did not start; its log, $DEMO_DIR/registry.log, says:" >&2
        cat "$DEMO_DIR/registry.log" >&2
        exit 1
      fi
      echo "demo: started a registry at $DEMO_REGISTRY (pid $(cat "$DEMO_DIR/registry.pid"), data in $DEMO_DIR/registry); it keeps running until scripts/demo stop" >&2
      ;;
  esac
  echo "demo: pushing the sample image to $DEMO_REGISTRY/hello-world-java" >&2
  target/release/examples/sample_image "http://$DEMO_REGISTRY" hello-world-java:latest >&2
}

# stop_demo_registry: stop the registry the demo started; any other is left alone.
stop_demo_registry() {
  local pid
  pid=$(cat "$DEMO_DIR/registry.pid" 2>/dev/null || true)
  if is_demo_registry "$pid"; then
    kill "$pid"
    for _ in $(seq 50); do
      [ -e "/proc/$pid" ] || break
      sleep 0.1
    done
    rm -f "$DEMO_DIR/registry.pid"
    echo "demo: stopped the registry at $DEMO_REGISTRY (its data stays in $DEMO_DIR/registry)" >&2
    return
  fi
  rm -f "$DEMO_DIR/registry.pid"
  case "$(demo_registry_status)" in
    none) echo "demo: no registry is running at $DEMO_REGISTRY" >&2 ;;
    *) echo "demo: the registry at $DEMO_REGISTRY was not started by scripts/demo; left alone" >&2 ;;
  esac
}
