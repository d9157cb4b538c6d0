# The connector SDK as an outside author gets it: `make install` into a
# temporary folder, build tests/connectors/outoftree/hello.c with nothing but
# the installed headers and cmi-connector.pc, have the installed cmi load,
# describe and validate it, and build and run its unit test (hello_test.c)
# against the installed test host (cmi-connector-test.pc).
set -eu
: "${CMI_BUILDDIR:?}" "${CMI_SRCDIR:?}"
MAKE=${MAKE:-make}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }

$MAKE -C "$CMI_BUILDDIR" install DESTDIR="$tmp/root" >"$tmp/install.log" 2>&1 ||
    { cat "$tmp/install.log" >&2; fail "make install"; }
pc=$(find "$tmp/root" -name cmi-connector.pc | head -n1)
[ -n "$pc" ] || fail "cmi-connector.pc is not installed"
cmi=$(find "$tmp/root" -path '*/bin/cmi' | head -n1)
[ -x "$cmi" ] || fail "cmi is not installed"
for h in connector.h host.h params.h types.h testhost.h; do
    find "$tmp/root" -path "*/include/cmi/$h" | grep -q . || fail "cmi/$h is not installed"
done
find "$tmp/root" -name cmi-connector-test.pc | grep -q . || fail "cmi-connector-test.pc is not installed"

# The default deployment, every file of it (synapse-configs/local.mk lists
# them by hand), and an installed cmi checks it clean.
deploy=$(find "$tmp/root" -path '*/etc/cmi/synapse-configs/default' -type d | head -n1)
[ -n "$deploy" ] || fail "the default deployment is not installed"
want=$(cd "$CMI_SRCDIR/synapse-configs/default" && find . -type f | sort)
got=$(cd "$deploy" && find . -type f | sort)
[ "$want" = "$got" ] || fail "installed deployment differs from synapse-configs/default: $got"
"$cmi" check "$deploy" --connectors "$CMI_BUILDDIR/connectors/rabbitmq/.libs" >"$tmp/check.log" 2>&1 ||
    { cat "$tmp/check.log" >&2; fail "the installed default deployment does not check"; }

# The .pc file names the install prefix; the staged copy lives under $tmp.
prefix=$(sed -n 's/^prefix=//p' "$pc")
export PKG_CONFIG_PATH="$(dirname "$pc")"
cflags=$(pkg-config --define-variable=prefix="$tmp/root$prefix" --cflags cmi-connector)
case "$cflags" in *"$tmp/root"*) ;; *) fail "pkg-config --cflags does not point at the staged headers: $cflags";; esac

# The .pc file's ABI version is the header's (both come from connector.h).
abi=$(printf '#include <cmi/connector.h>\nCMI_ABI CMI_CONNECTOR_ABI_MAJOR CMI_CONNECTOR_ABI_MINOR\n' |
    ${CC:-cc} -E -P $cflags - | sed -n 's/^CMI_ABI //p')
[ -n "$abi" ] || fail "cannot read the ABI version from the installed connector.h"
abi_major=${abi% *}
abi_minor=${abi#* }
pc_abi="$(pkg-config --variable=abi_major cmi-connector) $(pkg-config --variable=abi_minor cmi-connector)"
[ "$pc_abi" = "$abi_major $abi_minor" ] ||
    fail "cmi-connector.pc says ABI $pc_abi, connector.h says $abi_major $abi_minor"

mkdir "$tmp/mods"
${CC:-cc} -std=c11 -Wall -Wextra -Werror -shared -fPIC $cflags "$CMI_SRCDIR/tests/connectors/outoftree/hello.c" \
    -o "$tmp/mods/hello.so" $(pkg-config --libs jansson) || fail "building hello.so against the installed SDK"

# Only the descriptor is exported (the .pc file brings -fvisibility=hidden).
exported=$(nm -D --defined-only "$tmp/mods/hello.so" | awk '{print $3}' | grep -v '^_' | sort | tr '\n' ' ')
[ "$exported" = "cmi_connector " ] || fail "hello.so exports more than cmi_connector: $exported"

# The same holds for the modules this tree builds.
for so in "$CMI_BUILDDIR"/tests/connectors/*/.libs/*.so; do
    exported=$(nm -D --defined-only "$so" | awk '{print $3}' | grep -v '^_' | sort | tr '\n' ' ')
    [ "$exported" = "cmi_connector " ] || fail "$so exports more than cmi_connector: $exported"
done

out=$("$cmi" describe hello --connectors "$tmp/mods") || fail "cmi describe hello"
echo "$out" | grep -q "^hello 0.1.0 (connector ABI $abi_major.$abi_minor" || fail "describe: no header line: $out"
echo "$out" | grep -q 'Operation: <hello.greet>' || fail "describe: no greet operation: $out"

mkdir -p "$tmp/deploy/api"
cat >"$tmp/deploy/api/hello.xml" <<'XML'
<api xmlns="http://ws.apache.org/ns/synapse" name="Hello" context="/hello">
  <resource methods="GET" uri-template="/{who}">
    <inSequence>
      <hello.greet><name>${params.pathParams.who}</name><responseVariable>g</responseVariable></hello.greet>
      <respond/>
    </inSequence>
  </resource>
</api>
XML
"$cmi" check "$tmp/deploy" --connectors "$tmp/mods" >"$tmp/check.log" 2>&1 ||
    { cat "$tmp/check.log" >&2; fail "cmi check with the out-of-tree connector"; }
# The same element is an error when the module is not on the path.
if "$cmi" check "$tmp/deploy" --connectors "$tmp" >"$tmp/check2.log" 2>&1; then
    fail "cmi check passed without the hello module"
fi
grep -q "no connector module named 'hello' is loaded" "$tmp/check2.log" || { cat "$tmp/check2.log" >&2; fail "missing-module message"; }
# hello.c's unit test against the installed test host, through pkg-config
# only.  A sanitizer build's library needs the sanitizer's runtime first.
testflags=$(pkg-config --define-variable=prefix="$tmp/root$prefix" --cflags --libs cmi-connector-test) ||
    fail "pkg-config cmi-connector-test"
case "$testflags" in *-lcmi-testhost*) ;; *) fail "cmi-connector-test.pc does not link the test host: $testflags";; esac
${CC:-cc} -std=c11 -Wall -Wextra -Werror ${CMI_SAN_LDFLAGS:-} "$CMI_SRCDIR/tests/connectors/outoftree/hello_test.c" \
    "$CMI_SRCDIR/tests/connectors/outoftree/hello.c" -o "$tmp/hello_test" $testflags ||
    fail "building hello_test against the installed test host"
libdir=$(dirname "$(find "$tmp/root" -name 'libcmi-testhost.so' | head -n1)")
LD_LIBRARY_PATH="$libdir${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" "$tmp/hello_test" || fail "hello_test"
# The library exports the test API and nothing of the engine it shares code with.
leaked=$(nm -D --defined-only "$libdir/libcmi-testhost.so" | awk '{print $3}' | grep -v '^_' | grep -v '^cmi_test_' |
    tr '\n' ' ' || true)
[ -z "$leaked" ] || fail "libcmi-testhost.so exports more than cmi_test_*: $leaked"
echo "PASS: out-of-tree connector built against the installed SDK loads, describes and validates; its unit test passes"
