#!/usr/bin/env bash
# Install a hookrelay .deb on this machine and check it like a user would:
# the files are where Debian puts them, the conffile is a conffile, postinst
# made the secrets (and a reinstall keeps them), `hookrelay --version`,
# `man hookrelay`, the completions load, `systemd-analyze verify` accepts the
# installed unit, and the packaged config passes check-config with the secrets
# as the unit passes them. Then purges the package (unless --keep).
#
#   packaging/check-deb.sh [--keep] target/debian/hookrelay_*.deb
#
# Needs root (dpkg -i), man-db and systemd-analyze; .ci/run installs them.
set -euo pipefail

keep=false
if [ "${1:-}" = "--keep" ]; then keep=true; shift; fi
deb="${1:?usage: $0 [--keep] path/to/hookrelay.deb}"
[ "$(id -u)" = 0 ] || { echo "run as root (dpkg -i)" >&2; exit 2; }
for tool in man systemd-analyze dpkg-query; do
  command -v "$tool" >/dev/null || { echo "$tool is missing: apt-get install man-db systemd" >&2; exit 2; }
done
if grep -hs '^path-exclude' /etc/dpkg/dpkg.cfg.d/* | grep -q '/usr/share/man'; then
  echo "dpkg is set to drop man pages (path-exclude in /etc/dpkg/dpkg.cfg.d): man hookrelay cannot be checked" >&2
  exit 2
fi

fail() { echo "FAIL: $*" >&2; exit 1; }
ok() { echo "ok: $*"; }

if dpkg-query -W hookrelay >/dev/null 2>&1 && [ "$(dpkg-query -W -f='${Status}' hookrelay)" != "not-installed" ]; then
  fail "hookrelay is already installed here; remove it first (dpkg --purge hookrelay)"
fi
# Whether a store was here before this check ran (kept then, whatever happens).
had_state=false; [ -e /var/lib/hookrelay ] && had_state=true
cleanup() {
  if ! $keep; then
    local stored=false out
    [ -d /var/lib/hookrelay/data ] && stored=true
    out=$(dpkg --purge hookrelay 2>&1)
    for gone in /usr/bin/hookrelay /etc/hookrelay /usr/lib/systemd/system/hookrelay.service; do
      [ ! -e "$gone" ] || { echo "FAIL: $gone is still there after dpkg --purge" >&2; exit 1; }
    done
    echo "ok: purged"
    # A store with a callback in it (the daemon's run below) is kept, and named.
    if $stored; then
      { [ -d /var/lib/hookrelay/data ] && grep -q "kept the store in /var/lib/hookrelay" <<<"$out"; } \
        || { echo "FAIL: purge did not keep and name the store: $out" >&2; exit 1; }
      echo "ok: purge kept the store with its callbacks, and said so"
      $had_state || rm -rf /var/lib/hookrelay
    fi
  fi
}
trap cleanup EXIT

dpkg -i "$deb"
version=$(dpkg-query -W -f='${Version}' hookrelay)
# Every shared library the binary needs is a dependency (libgcc_s was not).
depends=$(dpkg-query -W -f='${Depends}' hookrelay)
for lib in $(readelf -d /usr/bin/hookrelay | sed -n 's/.*Shared library: \[\(.*\)\]/\1/p'); do
  case "$lib" in
    libc.so.*|libm.so.*|ld-linux*|libpthread.so.*|libdl.so.*|librt.so.*) pkg=libc6 ;;
    libgcc_s.so.*) pkg=libgcc-s1 ;;
    *) fail "the binary needs $lib: add its package to [package.metadata.deb] depends" ;;
  esac
  grep -q "$pkg" <<<"$depends" || fail "Depends ($depends) lacks $pkg for $lib"
done
ok "Depends: $depends"

# Files in their standard places, with their modes.
mode() { stat -c '%a %U' "$1" 2>/dev/null || echo "missing"; }
expect() { # path "mode owner"
  [ "$(mode "$1")" = "$2" ] || fail "$1: $(mode "$1"), expected $2"
}
expect /usr/bin/hookrelay "755 root"
expect /etc/hookrelay/config.toml "644 root"
expect /usr/lib/systemd/system/hookrelay.service "644 root"
# debhelper's record of the enablement, made after postinst made the secrets
# with umask 077 (it was 0600: the umask reached it).
expect /var/lib/systemd/deb-systemd-helper-enabled/multi-user.target.wants/hookrelay.service "644 root"
expect /usr/share/man/man1/hookrelay.1.gz "644 root"
expect /usr/share/man/man1/hookrelay-init.1.gz "644 root"
expect /usr/share/bash-completion/completions/hookrelay "644 root"
expect /usr/share/zsh/vendor-completions/_hookrelay "644 root"
expect /usr/share/fish/vendor_completions.d/hookrelay.fish "644 root"
expect /usr/share/doc/hookrelay/examples/hookrelay-forward.service "644 root"
# The README's links to the reference config and the systemd notes hold where it is installed.
expect /usr/share/doc/hookrelay/README.md "644 root"
expect /usr/share/doc/hookrelay/config.toml "644 root"
expect /usr/share/doc/hookrelay/systemd/README.md "644 root"
grep -q '^ExecStart=/usr/bin/hookrelay forward ' /usr/share/doc/hookrelay/examples/hookrelay-forward.service \
  || fail "the example forward unit does not run /usr/bin/hookrelay"
expect /etc/hookrelay/secrets "700 root"
for s in route-token subscriber-secret admin-token; do
  expect "/etc/hookrelay/secrets/$s" "600 root"
done
grep -qx 'whsec_[A-Za-z0-9+/=]\{43,\}' /etc/hookrelay/secrets/subscriber-secret || fail "subscriber-secret is not a whsec_ secret"
grep -qx '[0-9a-f]\{64\}' /etc/hookrelay/secrets/route-token || fail "route-token is not 64 hex digits"
dpkg-query -W -f='${Conffiles}\n' hookrelay | grep -q '^ /etc/hookrelay/config.toml ' || fail "/etc/hookrelay/config.toml is not a conffile"
if grep -Eq 'whsec_[A-Za-z0-9+/]{20}|[0-9a-f]{64}' /etc/hookrelay/config.toml; then
  fail "the packaged config holds a secret"
fi
ok "files, modes, conffile, secrets made by postinst"

# A reinstall (what an upgrade runs) keeps the secrets.
before=$(cat /etc/hookrelay/secrets/*)
dpkg -i "$deb" >/dev/null
[ "$(cat /etc/hookrelay/secrets/*)" = "$before" ] || fail "a reinstall replaced the secrets"
ok "reinstall keeps the secrets"

out=$(hookrelay --version)
[ "$out" = "hookrelay ${version%-*}" ] || fail "hookrelay --version says '$out', the package is $version"
ok "$out"

page=$(MANWIDTH=100 man -P cat hookrelay 2>&1) || fail "man hookrelay: $page"
for want in NAME SYNOPSIS SUBCOMMANDS FILES init check-config /etc/hookrelay/secrets; do
  grep -q -- "$want" <<<"$page" || fail "man hookrelay lacks '$want'"
done
MANWIDTH=100 man -P cat hookrelay-init | grep -q -- '--systemd' || fail "man hookrelay-init lacks --systemd"
ok "man hookrelay renders ($(wc -l <<<"$page") lines)"

bash -c 'source /usr/share/bash-completion/completions/hookrelay && complete -p hookrelay' >/dev/null \
  || fail "the bash completion does not load"
if command -v zsh >/dev/null; then zsh -n /usr/share/zsh/vendor-completions/_hookrelay || fail "zsh completion syntax"; fi
if command -v fish >/dev/null; then fish -n /usr/share/fish/vendor_completions.d/hookrelay.fish || fail "fish completion syntax"; fi
ok "completions"

verify=$(systemd-analyze verify /usr/lib/systemd/system/hookrelay.service 2>&1) \
  || fail "systemd-analyze verify: $verify"
grep -i hookrelay <<<"$verify" && fail "systemd-analyze verify warns about the unit: $verify"
ok "systemd-analyze verify hookrelay.service"
verify=$(systemd-analyze verify /usr/share/doc/hookrelay/examples/hookrelay-forward.service 2>&1) \
  || fail "systemd-analyze verify (forward unit): $verify"
ok "systemd-analyze verify hookrelay-forward.service (example)"

# The config as the unit sees it: the secrets are credentials.
CREDENTIALS_DIRECTORY=/etc/hookrelay/secrets hookrelay check-config --config /etc/hookrelay/config.toml \
  || fail "the packaged config does not pass check-config"
ok "check-config /etc/hookrelay/config.toml"
out=$(cd / && env -u CREDENTIALS_DIRECTORY -u HOOKRELAY_CONFIG hookrelay check-config 2>&1) \
  || fail "check-config from / (the packaged config and its secrets by default): $out"
grep -q '^/etc/hookrelay/config.toml: OK' <<<"$out" || fail "check-config from / did not check /etc/hookrelay/config.toml: $out"
ok "check-config from / checks /etc/hookrelay/config.toml with its secrets"

# The daemon runs with the installed config and secrets (not under systemd: it
# may not be running here), takes a callback with the route token, and the CLI
# finds it through the admin API with the admin token.
for port in 8080 9090; do
  if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then fail "127.0.0.1:$port is in use: cannot run the packaged config here"; fi
done
log=$(mktemp)
CREDENTIALS_DIRECTORY=/etc/hookrelay/secrets hookrelay run --config /etc/hookrelay/config.toml >"$log" 2>&1 &
daemon=$!
stop_daemon() {
  kill "$daemon" 2>/dev/null && wait "$daemon" 2>/dev/null
  rm -f "$log"
}
trap 'stop_daemon; cleanup' EXIT
# As an operator types them: from any directory, no --config, no
# CREDENTIALS_DIRECTORY (the packaged config, its secrets/ beside it).
admin() { (cd / && env -u CREDENTIALS_DIRECTORY -u HOOKRELAY_CONFIG hookrelay "$@"); }
for _ in $(seq 100); do
  admin subscribers >/dev/null 2>&1 && break
  kill -0 "$daemon" 2>/dev/null || fail "the daemon exited: $(cat "$log")"
  sleep 0.2
done
admin subscribers | grep -q '^app ' || fail "the admin API did not answer within 20s: $(cat "$log")"
token=$(cat /etc/hookrelay/secrets/route-token)
body='{"check":"check-deb"}'
answer=$(exec 3<>/dev/tcp/127.0.0.1/8080
  printf 'POST /hooks/main?token=%s HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s' \
    "$token" "${#body}" "$body" >&3
  cat <&3)
grep -q '^HTTP/1.1 200' <<<"$answer" || fail "the callback was not accepted: $answer"
id=$(grep -o 'evt_[0-9A-Z]*' <<<"$answer")
admin events | grep -q "$id" || fail "hookrelay events does not list $id"
grep -q "$token" "$log" && fail "the route token is in the log"
ok "the daemon runs with the installed config: callback $id accepted and listed"
