#!/usr/bin/env bash
# Build the .deb: the binary, the generated assets (man pages, completions and
# the packaged config from `hookrelay generate-assets`; the packaged unit from
# systemd/hookrelay.service), then `cargo deb --no-build`. Nothing generated is
# checked in: everything lands in target/packaging/.
#
#   packaging/build-deb.sh [--profile NAME] [-- CARGO-DEB OPTIONS]
#
# The default profile is release (optimised, stripped, with a -dbgsym .ddeb).
# CI checks the packaging with the binary its tests built, since what it checks
# is the package, not the code:
#   packaging/build-deb.sh --profile dev -- --no-dbgsym --no-compress-debug-symbols --fast
#
# Needs cargo-deb 3 (cargo install cargo-deb --locked). Prints the .deb's path last.
set -euo pipefail
cd "$(dirname "$0")/.."

profile=release
while [ $# -gt 0 ]; do
  case "$1" in
    --profile) profile="$2"; shift 2 ;;
    --) shift; break ;;
    *) echo "usage: $0 [--profile NAME] [-- CARGO-DEB OPTIONS]" >&2; exit 2 ;;
  esac
done

if ! cargo deb --version 2>/dev/null | grep -q '^cargo-deb 3\.'; then
  echo "cargo-deb 3.x is needed: cargo install cargo-deb --locked" >&2
  exit 1
fi

cargo build --locked --profile "$profile" --bin hookrelay
target_dir=$(cargo metadata --format-version 1 --no-deps | sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')
case "$profile" in
  dev) bin="$target_dir/debug/hookrelay" ;;
  *) bin="$target_dir/$profile/hookrelay" ;;
esac

out=target/packaging
rm -rf "$out"
mkdir -p "$out/systemd"
"$bin" generate-assets "$out" >&2

# The packaged unit: the binary is in /usr/bin, and the secrets postinst made
# are credentials (the repository's unit is for /usr/local/bin and leaves them
# to the operator).
unit="$out/systemd/hookrelay.service"
sed -e 's|/usr/local/bin/hookrelay|/usr/bin/hookrelay|g' \
    -e '/^# LoadCredential=/d' \
    -e '/^# The three .hookrelay init --systemd. writes/d' \
    -e '/^# Secrets stay out of the config file/a\
# The package made these (postinst); hookrelay init --systemd names them the same.\
LoadCredential=route-token:/etc/hookrelay/secrets/route-token\
LoadCredential=subscriber-secret:/etc/hookrelay/secrets/subscriber-secret\
LoadCredential=admin-token:/etc/hookrelay/secrets/admin-token' \
    systemd/hookrelay.service > "$unit"
# Fail here, not on a user's machine, if systemd/hookrelay.service changed shape.
for want in 'ExecStart=/usr/bin/hookrelay run --config /etc/hookrelay/config.toml' \
            'RestartPreventExitStatus=2' \
            'LoadCredential=admin-token:/etc/hookrelay/secrets/admin-token' \
            'ConfigurationDirectory=hookrelay' 'StateDirectory=hookrelay hookrelay/acme'; do
  grep -qxF "$want" "$unit" || { echo "packaged unit lacks: $want (systemd/hookrelay.service changed?)" >&2; exit 1; }
done
if grep -q /usr/local "$unit"; then
  echo "packaged unit still names /usr/local" >&2; exit 1
fi

# The forwarder's unit, for the private side: shipped as an example (it needs
# the relay URL and --to before it can run), naming the packaged binary.
fwd="$out/examples/hookrelay-forward.service"
mkdir -p "$out/examples"
sed -e 's|/usr/local/bin/hookrelay|/usr/bin/hookrelay|g' systemd/hookrelay-forward.service > "$fwd"
grep -q '^ExecStart=/usr/bin/hookrelay forward ' "$fwd" \
  || { echo "packaged forward unit lacks ExecStart=/usr/bin/hookrelay forward (systemd/hookrelay-forward.service changed?)" >&2; exit 1; }
if grep -q /usr/local "$fwd"; then
  echo "packaged forward unit still names /usr/local" >&2; exit 1
fi

cargo deb --no-build --profile "$profile" --output target/debian/ "$@" >&2
deb=$(ls -t target/debian/hookrelay_*.deb | head -n1)
echo "$deb"
