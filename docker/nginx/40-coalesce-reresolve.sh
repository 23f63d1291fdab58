#!/bin/sh
# nginx resolves the upstream's name (COALESCE_API_UPSTREAM's host) only when it loads its
# configuration. This watches the addresses Docker's DNS gives that name and reloads nginx when they
# change (a `--scale api=N`, a replica recreated with a new address): the reload is graceful, requests
# in flight finish on the old workers. COALESCE_RERESOLVE_SECONDS=0 turns it off.
set -eu
interval="${COALESCE_RERESOLVE_SECONDS:-5}"
[ "$interval" = "0" ] && exit 0
host="${COALESCE_API_UPSTREAM%:*}"
addresses() { getent ahostsv4 "$host" 2>/dev/null | awk '{ print $1 }' | sort -u | tr '\n' ' '; }
(
  # nginx is not running yet when entrypoint scripts run; its first load sees the addresses of now.
  last="$(addresses)"
  while sleep "$interval"; do
    now="$(addresses)"
    # No answer at all (a DNS hiccup, every replica down at once) keeps the last known set.
    if [ -n "$now" ] && [ "$now" != "$last" ]; then
      echo "$0: $host is now [$now] (was [$last]); reloading nginx"
      nginx -s reload || true
      last="$now"
    fi
  done
) &
