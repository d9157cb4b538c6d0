#!/bin/sh
# The RabbitMQ connector's shape (connectors/rabbitmq/rmq_core.h): no call
# cycle among its files, and the pool core (rmq_pool, rmq_conn, rmq_declare,
# rmq_send, rmq_pub) calls no feature or operation (consuming, publish,
# sendRpc, the listener, the module) but through hook tables and callbacks.
set -eu
top=${CMI_SRCDIR:-$(dirname "$0")/../..}
objs=${CMI_BUILDDIR:-.}/connectors/rabbitmq/.libs
out=$(python3 "$top/scripts/deps-graph" "$objs"/*.o) || { echo "$out"; echo "FAIL: call cycle"; exit 1; }
echo "$out"
bad=$(echo "$out" | grep -E '^rmq_(pool|conn|declare|send|pub) -> ' |
      grep -E 'rmq_(consume|delivery|publish|rpc|listener|module)\b' || true)
if [ -n "$bad" ]; then
    echo "FAIL: the core calls a feature: $bad"
    exit 1
fi
# The checker itself finds a cycle when there is one.
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
printf 'int b(void);\nint a(void) { return b(); }\n' > "$tmp/a.c"
printf 'int a(void);\nint b(void) { return a(); }\n' > "$tmp/b.c"
${CC:-cc} -c -o "$tmp/a.o" "$tmp/a.c"
${CC:-cc} -c -o "$tmp/b.o" "$tmp/b.c"
if python3 "$top/scripts/deps-graph" "$tmp/a.o" "$tmp/b.o" > /dev/null; then
    echo "FAIL: deps-graph missed the cycle a <-> b"
    exit 1
fi
echo "ok"
