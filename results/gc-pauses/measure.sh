#!/bin/sh
# Full garbage collections of the iobench service under load: each gen-2 collection's duration, logged by a
# gc.callbacks hook that sitecustomize.py installs in the service's process (nothing of iobench changes).
set -e
here=$(cd "$(dirname "$0")" && pwd)
rm -f "$here"/gc-*.txt
export IOBENCH_GC_LOG="$here"
PYTHONPATH="$here" .venv/bin/iobench serve --like default --port 8011 > "$here/serve.log" 2>&1 &
server=$!
sleep 6
for route in lookup/sync/psycopg2 lookup/async/asyncpg; do
  name=$(echo "$route" | tr / _)
  echo "$route" > "$here/gc-current.txt"
  ab -q -c 40 -t 10 -n 1000000 "http://127.0.0.1:8011/bench/$route" > "$here/ab-$name.txt" 2>&1
done
kill "$server"; wait "$server" 2>/dev/null || true
rm -f "$here/gc-current.txt"
