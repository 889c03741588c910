#!/usr/bin/env bash
# The .deb, as a Debian packager builds it: Debian's compiler flags
# (dpkg-buildflags), CMAKE_BUILD_TYPE=None, -DBUILD_TESTING=OFF and no
# Criterion visible, then cpack. Checks: configuring with BUILD_TESTING=ON
# and no Criterion fails and says why; the package's contents and
# Depends; lintian without errors; unpacked into a scratch root with
# dpkg --root; the postinst with a stand-in systemd-sysusers; the unit
# passes systemd-analyze verify and its ExecStart command line is
# accepted by the installed despooler; both man pages render without a
# warning; --version and --help; the bash completion.
# Run: ctest -L packaging (or bash tests/packaging/check.sh).
# Exit 77 (skipped) when a tool it needs is missing.
set -euo pipefail
SRC=${DESPOOL_SRC:-$(cd "$(dirname "$0")/../.." && pwd)}

missing=()
for t in cmake cpack dpkg dpkg-deb dpkg-buildflags lintian systemd-analyze \
  man gzip pkg-config; do
  command -v "$t" >/dev/null 2>&1 || missing+=("$t")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "SKIP: missing ${missing[*]} (apt-get install dpkg-dev lintian" \
    "systemd man-db)" >&2
  exit 77
fi

T=$(mktemp -d /tmp/despool-pkg.XXXXXX)
trap 'rm -rf "$T"' EXIT
fails=0
fail() { echo "FAIL: $*" >&2; fails=$((fails + 1)); }
ok() { echo "ok: $*"; }
step() { echo "--- $*"; }
start=$(date +%s)

version=$(sed -nE 's/^project\(despool VERSION ([0-9.]+) .*/\1/p' \
  "$SRC/CMakeLists.txt")
[ -n "$version" ] || { echo "FAIL: no VERSION in project()" >&2; exit 1; }

# A pkg-config directory with every .pc file but criterion.pc: the build
# of a packager who has not installed Criterion.
mkdir -p "$T/pc"
IFS=: read -r -a pcdirs <<<"$(pkg-config --variable pc_path pkg-config)"
for d in "${pcdirs[@]}"; do
  for f in "$d"/*.pc; do
    [ -e "$f" ] || continue
    case ${f##*/} in criterion.pc) continue ;; esac
    [ -e "$T/pc/${f##*/}" ] || ln -s "$f" "$T/pc/${f##*/}"
  done
done
export PKG_CONFIG_LIBDIR=$T/pc
pkg-config --exists criterion && fail "criterion.pc still visible"

step "configure with BUILD_TESTING=ON and no Criterion: must fail"
if cmake -S "$SRC" -B "$T/b-tests" -DCMAKE_BUILD_TYPE=None \
  >"$T/cfg-tests.log" 2>&1; then
  fail "configure with tests and no Criterion succeeded"
elif grep -q "Criterion" "$T/cfg-tests.log" &&
  grep -q "BUILD_TESTING=OFF" "$T/cfg-tests.log"; then
  ok "configure error names Criterion and -DBUILD_TESTING=OFF"
else
  fail "configure failed without naming Criterion:"
  tail -20 "$T/cfg-tests.log" >&2
fi

step "build with Debian's flags, BUILD_TESTING=OFF, cpack -G DEB"
CFLAGS="$(dpkg-buildflags --get CFLAGS) $(dpkg-buildflags --get CPPFLAGS)"
LDFLAGS=$(dpkg-buildflags --get LDFLAGS)
export CFLAGS LDFLAGS
if ! { cmake -S "$SRC" -B "$T/b" -DCMAKE_BUILD_TYPE=None \
  -DCMAKE_INSTALL_PREFIX=/usr -DBUILD_TESTING=OFF &&
  cmake --build "$T/b" -j2 && (cd "$T/b" && cpack -G DEB); } \
  >"$T/build.log" 2>&1; then
  tail -40 "$T/build.log" >&2
  echo "FAIL: the .deb did not build; log above" >&2
  exit 1
fi
grep -q "BUILD_TESTING is OFF" "$T/build.log" ||
  fail "no message that the tests are not built"
if grep -qE 'warning:' "$T/build.log"; then
  fail "compiler warnings with Debian's flags:"
  grep -E 'warning:' "$T/build.log" >&2
fi
[ ! -e "$T/b/tests" ] || fail "BUILD_TESTING=OFF still configured tests/"
deb=$T/b/despool_${version}-1_$(dpkg --print-architecture).deb
[ -f "$deb" ] || { echo "FAIL: no $deb" >&2; ls "$T/b" >&2; exit 1; }
ok "built ${deb##*/} ($(stat -c %s "$deb") bytes)"

step "contents"
dpkg-deb -c "$deb" | awk '{print $6}' | sed 's,^\./,/,' >"$T/contents"
for f in /usr/bin/pkgpub /usr/bin/despooler \
  /usr/share/man/man1/pkgpub.1.gz /usr/share/man/man1/despooler.1.gz \
  /usr/lib/systemd/system/despooler@.service /usr/lib/sysusers.d/despool.conf \
  /usr/share/bash-completion/completions/pkgpub \
  /usr/share/bash-completion/completions/despooler \
  /usr/share/doc/despool/examples/site.conf /usr/share/doc/despool/copyright \
  /usr/share/doc/despool/changelog.Debian.gz /etc/despool/; do
  grep -qxF "$f" "$T/contents" || fail "$f not in the package"
done
# Nothing of the tests (ktool, unit tests) and nothing under /usr/local.
if grep -E 'ktool|/test-|bench|^/usr/local' "$T/contents"; then
  fail "unexpected files in the package (above)"
fi
ok "$(grep -cv '/$' "$T/contents") files, all expected ones present"
depends=$(dpkg-deb -f "$deb" Depends)
for lib in libc6 librdkafka1 libmicrohttpd libzstd libarchive libssl \
  libmsgpackc libjansson libsystemd0; do
  grep -q "$lib" <<<"$depends" || fail "Depends lacks $lib: $depends"
done
ok "Depends: $depends"

# cmake --install puts the same files where the package does.
DESTDIR=$T/inst cmake --install "$T/b" >"$T/install.log" 2>&1 ||
  fail "DESTDIR=... cmake --install: $(tail -3 "$T/install.log")"
(cd "$T/inst" && find . ! -type d | sed 's,^\.,,' | sort) >"$T/installed"
grep -v '/$' "$T/contents" | sort >"$T/packaged"
if diff "$T/installed" "$T/packaged" >"$T/install.diff"; then
  ok "cmake --install: the package's $(wc -l <"$T/installed") files"
else
  cat "$T/install.diff" >&2
  fail "cmake --install and the .deb differ (< installed, > packaged)"
fi

step "lintian"
# Errors fail (lintian exits 1; 2 and more: it did not run); warnings,
# info and pedantic tags are listed.
lrc=0
lintian --fail-on error --tag-display-limit 0 -I --pedantic "$deb" \
  >"$T/lintian.out" 2>&1 || lrc=$?
grep -E '^[A-Z]: ' "$T/lintian.out" | sed 's/^/  /'
if [ "$lrc" -eq 1 ] || grep -q '^E:' "$T/lintian.out"; then
  fail "lintian reports errors"
elif [ "$lrc" -ne 0 ]; then
  cat "$T/lintian.out" >&2
  fail "lintian did not run (exit $lrc)"
else
  ok "lintian: no error, $(grep -c '^W:' "$T/lintian.out" || true)" \
    "warning(s), $(grep -c '^I:' "$T/lintian.out" || true) info"
fi

step "apt: the package's Depends resolve on this Debian"
# A simulation (apt-get -s): apt plans the install of the .deb with what
# this machine has and its archive offers, and changes nothing.
if apt-get install -s "$deb" >"$T/apt.out" 2>&1 &&
  grep -q '^Inst despool ' "$T/apt.out"; then
  ok "apt-get -s install: $(grep -c '^Inst ' "$T/apt.out") package(s) to install, despool among them"
else
  tail -5 "$T/apt.out" >&2
  fail "apt-get -s install $deb"
fi

step "dpkg --root: unpack into a scratch root"
R=$T/root
mkdir -p "$R/var/lib/dpkg/info" "$R/var/lib/dpkg/updates" \
  "$R/var/lib/dpkg/triggers"
touch "$R/var/lib/dpkg/status" "$R/var/lib/dpkg/available"
# --unpack: the postinst (it would create a user) is run below with
# stand-ins instead, never against this machine.
if dpkg --root="$R" --force-not-root --unpack "$deb" >"$T/dpkg.log" 2>&1 &&
  dpkg --root="$R" -s despool | grep -q '^Status: install ok unpacked'; then
  ok "unpacked: $(dpkg --root="$R" -L despool | wc -l) paths"
else
  cat "$T/dpkg.log" >&2
  fail "dpkg --root --unpack"
fi
for f in $(grep -v '/$' "$T/contents"); do
  [ -e "$R$f" ] || fail "$f listed but not installed"
done

step "postinst with stand-ins"
# PATH holds only the stand-ins: nothing of this machine is touched.
dpkg-deb -e "$deb" "$T/control"
mkdir -p "$T/fakebin"
for t in systemd-sysusers useradd systemctl; do
  printf '#!/bin/sh\necho "%s $*" >>"%s/calls"\n' "$t" "$T" \
    >"$T/fakebin/$t"
done
printf '#!/bin/sh\necho "getent $*" >>"%s/calls"\nexit 2\n' "$T" \
  >"$T/fakebin/getent"
chmod +x "$T/fakebin"/*
f0=$fails
PATH=$T/fakebin /bin/sh -e "$T/control/postinst" configure ||
  fail "postinst configure failed"
grep -qx "systemd-sysusers despool.conf" "$T/calls" ||
  fail "postinst did not run systemd-sysusers despool.conf"
rm -f "$T/calls" "$T/fakebin/systemd-sysusers"
PATH=$T/fakebin /bin/sh -e "$T/control/postinst" configure ||
  fail "postinst configure (no systemd-sysusers) failed"
grep -q "^useradd --system .* despool$" "$T/calls" 2>/dev/null ||
  fail "postinst without systemd-sysusers did not useradd despool"
[ "$fails" -ne "$f0" ] || ok "postinst: systemd-sysusers, else useradd"
grep -qE '^u despool ' "$R/usr/lib/sysusers.d/despool.conf" ||
  fail "sysusers.d/despool.conf does not create user despool"

step "systemd-analyze verify despooler@east.service"
unit=$R/usr/lib/systemd/system/despooler@.service
mkdir -p "$T/units"
cp "$unit" "$T/units/"
# Documentation=man:despooler(1) is checked with man: the scratch root's.
if MANPATH=$R/usr/share/man systemd-analyze verify \
  "$T/units/despooler@east.service" >"$T/verify.out" 2>&1 &&
  [ ! -s "$T/verify.out" ]; then
  ok "systemd-analyze verify: clean"
else
  cat "$T/verify.out" >&2
  fail "systemd-analyze verify"
fi
for k in 'User=despool' 'EnvironmentFile=/etc/despool/%i.conf' \
  'NoNewPrivileges=yes' 'ProtectSystem=strict' 'ProtectHome=yes' \
  'PrivateTmp=yes' 'StateDirectory=despool/%i' \
  'ReadWritePaths=/var/lib/despool/%i' 'Type=notify' 'NotifyAccess=main' \
  'ExecReload=/bin/kill -HUP $MAINPID' 'WatchdogSec=120s'; do
  grep -qxF "$k" "$unit" || fail "unit lacks $k"
done
systemd-analyze security --offline=yes "$T/units/despooler@east.service" \
  2>/dev/null | grep 'Overall exposure' || true

step "the unit's ExecStart, as systemd would run it, against the package"
exec_line=$(sed -n 's/^ExecStart=//p' "$unit")
bin=$(grep -oE '/[^ ]*/despooler run' <<<"$exec_line" | sed 's/ run$//')
[ "$bin" = /usr/bin/despooler ] || fail "ExecStart runs '$bin'"
[ -x "$R$bin" ] || fail "$bin is not in the package"
# systemd: %i is the instance, $$ a literal $. The binary: the scratch
# root's. The config: the example, then with every optional setting.
argv=${exec_line//%i/east}
argv=${argv//\$\$/\$}
argv=${argv//$bin/$R$bin}
# An EnvironmentFile read as systemd reads it: KEY=VALUE lines, # and ;
# comments, whitespace around the value dropped, one pair of quotes
# removed, no expansion.
envfile() {
  local line k v
  while IFS= read -r line || [ -n "$line" ]; do
    case $line in '' | '#'* | ';'*) continue ;; esac
    k=${line%%=*} v=${line#*=}
    v=${v#"${v%%[![:space:]]*}"} v=${v%"${v##*[![:space:]]}"}
    case $v in \"*\") v=${v:1:${#v}-2} ;; \'*\') v=${v:1:${#v}-2} ;; esac
    printf '%s=%s\0' "$k" "$v"
  done <"$1"
}
run_unit() { # ENV-FILE: the command line must reach --help (exit 0)
  local -a envs
  mapfile -d '' envs < <(envfile "$1")
  # --help last: it is reached only if every option before it parsed.
  env -i PATH=/usr/bin:/bin "${envs[@]}" timeout 10 bash -c \
    'DESPOOL_ARGS="$DESPOOL_ARGS --help"; eval "exec $1"' _ "$argv" \
    >"$T/unit-run.out" 2>&1
}
if run_unit "$R/usr/share/doc/despool/examples/site.conf" &&
  grep -q 'Usage: despooler run' "$T/unit-run.out"; then
  ok "example site.conf: despooler run accepts the command line"
else
  cat "$T/unit-run.out" >&2
  fail "example site.conf: despooler run refused the unit's command line"
fi
printf 'bootstrap.servers=x:1\n' >"$T/east.properties"
mkdir -p "$T/keys"
"$R/usr/bin/pkgpub" keygen --key-id site-test --dir "$T/keys" >/dev/null ||
  fail "pkgpub keygen"
sed -e "s|^DESPOOL_KAFKA_PROPERTIES=.*|DESPOOL_KAFKA_PROPERTIES=$T/east.properties|" \
  -e "s|^DESPOOL_TRUSTED_KEYS=.*|DESPOOL_TRUSTED_KEYS=$T/keys|" \
  -e "s|^DESPOOL_METRICS=.*|DESPOOL_METRICS=127.0.0.1:0|" \
  -e 's|^DESPOOL_ARGS=.*|DESPOOL_ARGS="--keep-versions 3 --on-retire remove"|' \
  "$R/usr/share/doc/despool/examples/site.conf" >"$T/east.conf"
if run_unit "$T/east.conf" && grep -q 'Usage: despooler run' "$T/unit-run.out"
then
  ok "every setting: despooler run accepts the command line"
else
  cat "$T/unit-run.out" >&2
  fail "every setting: despooler run refused the unit's command line"
fi
# The arguments themselves, seen by a stand-in despooler.
printf '#!/bin/sh\nprintf "%%s\\n" "$@"\n' >"$T/argv.sh"
chmod +x "$T/argv.sh"
argv_of() { # ENV-FILE -> the stand-in's arguments, one a line
  local -a envs
  mapfile -d '' envs < <(envfile "$1")
  env -i PATH=/usr/bin:/bin "${envs[@]}" bash -c 'eval "exec $1"' _ \
    "${argv//$R$bin/$T/argv.sh}"
}
want=$(printf '%s\n' run --site east -b kafka-1:9092,kafka-2:9092,kafka-3:9092 \
  --library /var/lib/despool/east)
[ "$(argv_of "$R/usr/share/doc/despool/examples/site.conf")" = "$want" ] ||
  fail "example site.conf gives: $(argv_of "$R/usr/share/doc/despool/examples/site.conf" | tr '\n' ' ')"
want=$(printf '%s\n' "$want" -F "$T/east.properties" --trusted-keys "$T/keys" \
  --metrics 127.0.0.1:0 --keep-versions 3 --on-retire remove)
[ "$(argv_of "$T/east.conf")" = "$want" ] ||
  fail "every setting gives: $(argv_of "$T/east.conf" | tr '\n' ' ')"
# No DESPOOL_BOOTSTRAP: no -b, the properties file's bootstrap.servers
# is the broker list.
sed 's|^DESPOOL_BOOTSTRAP=.*|DESPOOL_BOOTSTRAP=|' "$T/east.conf" >"$T/east-nob.conf"
want=$(printf '%s\n' run --site east --library /var/lib/despool/east \
  -F "$T/east.properties" --trusted-keys "$T/keys" --metrics 127.0.0.1:0 \
  --keep-versions 3 --on-retire remove)
[ "$(argv_of "$T/east-nob.conf")" = "$want" ] ||
  fail "empty DESPOOL_BOOTSTRAP gives: $(argv_of "$T/east-nob.conf" | tr '\n' ' ')"
if run_unit "$T/east-nob.conf" &&
  grep -q 'Usage: despooler run' "$T/unit-run.out"; then
  ok "empty DESPOOL_BOOTSTRAP (bootstrap.servers in -F): command line accepted"
else
  cat "$T/unit-run.out" >&2
  fail "empty DESPOOL_BOOTSTRAP: despooler run refused the command line"
fi
for k in DESPOOL_BOOTSTRAP DESPOOL_LIBRARY DESPOOL_KAFKA_PROPERTIES \
  DESPOOL_TRUSTED_KEYS DESPOOL_METRICS DESPOOL_ARGS; do
  grep -q "^$k=" "$R/usr/share/doc/despool/examples/site.conf" ||
    fail "site.conf lacks $k"
  grep -q "$k" <<<"$exec_line" || fail "ExecStart ignores $k"
done

step "man pages"
for p in pkgpub despooler; do
  page=$R/usr/share/man/man1/$p.1.gz
  if MANWIDTH=80 man --warnings -l "$page" >"$T/$p.txt" 2>"$T/$p.err" &&
    [ ! -s "$T/$p.err" ] && grep -q "^NAME" "$T/$p.txt"; then
    ok "man -l $p.1.gz: $(wc -l <"$T/$p.txt") lines, no warning"
  else
    cat "$T/$p.err" >&2
    fail "man -l $p.1.gz"
  fi
done
# Every long option of every --help text is in the program's page.
for cmd in "pkgpub --help" "despooler run --help" "despooler lag --help" \
  "despooler status --help" "despooler dev-broker --help"; do
  p=${cmd%% *}
  for o in $("$R/usr/bin/$p" ${cmd#* } | grep -oE -- '--[a-z][a-z-]+' |
    sort -u); do
    grep -qF -- "$o" "$T/$p.txt" || fail "$p.1 lacks $o (from $cmd)"
  done
done

step "--version and --help"
f0=$fails
for p in pkgpub despooler; do
  out=$("$R/usr/bin/$p" --version) || fail "$p --version exit $?"
  [ "$(head -1 <<<"$out")" = "$p $version" ] ||
    fail "$p --version: '$(head -1 <<<"$out")', want '$p $version'"
  grep -qE '^librdkafka [0-9]' <<<"$out" ||
    fail "$p --version names no librdkafka version"
done
for cmd in "pkgpub --help" "pkgpub retire --help" "pkgpub keygen --help" \
  "despooler --help" "despooler run --help" "despooler lag --help" \
  "despooler status --help" "despooler dev-broker --help"; do
  "$R/usr/bin/${cmd%% *}" ${cmd#* } >/dev/null || fail "$cmd: exit $?"
done
# --version with a number is still the package version (-V).
if out=$("$R/usr/bin/pkgpub" --version 3 2>&1); then
  fail "pkgpub --version 3 (no SOURCE) exited 0"
elif ! grep -q 'SOURCE is required' <<<"$out"; then
  fail "pkgpub --version 3: '$out'"
fi
[ "$fails" -ne "$f0" ] ||
  ok "--version: pkgpub $version, despooler $version; --help exits 0"

step "bash completion"
# Minimal stand-ins for bash-completion's helpers.
f0=$fails
for p in pkgpub despooler; do
  f=$R/usr/share/bash-completion/completions/$p
  bash -n "$f" || fail "$f: syntax"
done
complete_test() { # PROGRAM WORDS... (the command line) -> COMPREPLY
  bash -c '_init_completion() { words=("${COMP_WORDS[@]}"); cword=$COMP_CWORD
      cur=${words[cword]}; prev=${words[cword-1]}; }
    _filedir() { :; }
    . "$1"; shift; COMP_WORDS=("$@"); COMP_CWORD=$(($# - 1))
    "_$1"; printf "%s\n" "${COMPREPLY[@]}"' _ \
    "$R/usr/share/bash-completion/completions/$1" "$@"
}
[ "$(complete_test despooler r)" = run ] ||
  fail "despooler r<TAB> is not run"
complete_test despooler run --lib | grep -qx -- --library ||
  fail "despooler run --lib<TAB> is not --library"
complete_test despooler run --create | grep -qx -- --create-library ||
  fail "despooler run --create<TAB> is not --create-library"
complete_test despooler lag --all | grep -qx -- --all-sites ||
  fail "despooler lag --all<TAB> is not --all-sites"
[ "$(complete_test despooler run --on-retire r)" = remove ] ||
  fail "--on-retire r<TAB> is not remove"
[ "$(complete_test despooler status --log-level d)" = debug ] ||
  fail "despooler status --log-level d<TAB> is not debug"
complete_test pkgpub --log | grep -qx -- --log-level ||
  fail "pkgpub --log<TAB> is not --log-level"
complete_test pkgpub ret | grep -qx retire ||
  fail "pkgpub ret<TAB> is not retire"
complete_test pkgpub --sign | grep -qx -- --sign-key ||
  fail "pkgpub --sign<TAB> is not --sign-key"
complete_test pkgpub keygen --k | grep -qx -- --key-id ||
  fail "pkgpub keygen --k<TAB> is not --key-id"
[ "$fails" -ne "$f0" ] || ok "bash completion of commands and options"

echo "packaging check: $((fails)) failure(s), $(($(date +%s) - start)) s"
[ "$fails" -eq 0 ]
