#!/bin/sh
# A certificate at COALESCE_TLS_CERT and its key at COALESCE_TLS_KEY (a mounted directory, see
# docs/deploying-compose.md) are used as they are. With neither, a self-signed one is made once, for
# COALESCE_TLS_SELF_SIGNED_NAME (localhost by default), and kept in that directory's volume.
set -eu
cert="${COALESCE_TLS_CERT:?}"
key="${COALESCE_TLS_KEY:?}"
if [ -s "$cert" ] && [ -s "$key" ]; then
  echo "$0: serving the certificate in $cert"
  exit 0
fi
if [ -e "$cert" ] || [ -e "$key" ]; then
  # Half a pair is a mistake in the mount, not something to paper over with a new key.
  echo "$0: only one of $cert and $key exists (or one is empty); mount both or neither" >&2
  exit 1
fi
name="${COALESCE_TLS_SELF_SIGNED_NAME:-localhost}"
mkdir -p "$(dirname "$cert")" "$(dirname "$key")"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 825 \
  -subj "/CN=$name" -addext "subjectAltName=DNS:$name,DNS:localhost,IP:127.0.0.1" \
  -keyout "$key" -out "$cert" 2>/dev/null
chmod 600 "$key"
echo "$0: no certificate was mounted; made a self-signed one for $name in $cert (clients must trust it explicitly)"
