#!/bin/sh
# make demo: 4D's example with three remote users, on a private port and
# admin socket. Each client shows its alerts; the transcript of each is
# printed at the end.
set -eu
herald=${1:-build/herald}
dir=$(mktemp -d)
trap 'kill $server_pid 2>/dev/null || true; rm -rf "$dir"' EXIT INT TERM

"$herald" serve --listen 127.0.0.1:0 --admin-socket "$dir/admin.sock" \
  --no-console >"$dir/server.log" 2>&1 &
server_pid=$!
port=""
for _ in $(seq 50); do
  port=$(sed -n 's/.*listening on [0-9.]*:\([0-9]*\).*/\1/p' "$dir/server.log")
  [ -n "$port" ] && [ -S "$dir/admin.sock" ] && break
  sleep 0.1
done
[ -n "$port" ] || { cat "$dir/server.log"; exit 1; }
export HERALD_SERVER="127.0.0.1:$port" HERALD_SOCKET="$dir/admin.sock"

for user in Vanessa Marc Lea; do
  "$herald" client --user "$user" --system-user "$user" \
    --machine "$(echo "$user" | tr A-Z a-z)-laptop" >"$dir/$user.out" 2>&1 &
done
for _ in $(seq 50); do
  [ "$(grep -c 'opened' "$dir/server.log")" -ge 3 ] && break
  sleep 0.1
done

echo "\$ herald run scripts/examples/maintenance_notice.lua"
"$herald" run scripts/examples/maintenance_notice.lua
sleep 1
for user in Vanessa Marc Lea; do
  echo
  echo "=== what $user saw ==="
  cat "$dir/$user.out"
done
