#!/bin/sh
# Makes the example's secrets in keys/: an API key per caller, and the audit log's HMAC key.
# Each is 32 random bytes, base64url: a new set on every machine, none committed. Run it again
# with --force to replace them (the gateway then needs a restart, and a keyed audit log cannot
# be continued with a new key: remove state/ too).
set -eu
cd "$(dirname "$0")"
umask 077
mkdir -p keys
for name in nurse-a nurse-b lead-a ops audit; do
  f="keys/$name.key"
  if [ -e "$f" ] && [ "${1:-}" != "--force" ]; then
    echo "keeping $f"
    continue
  fi
  head -c 32 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=\n' > "$f"
  echo "wrote $f"
done
