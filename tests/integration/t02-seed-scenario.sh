#!/usr/bin/env bash
# The seed's defect (KB Q235788): an update arriving while the previous
# version is still being decompressed. Versions 1, 2, 3 are published back
# to back while 1 is decompressing; a sampler reads `current` every few ms.
# 3 must win, current must never go backwards, 2 must never be visible
# after 3, every visible tree must be complete; then a stale re-publish of
# 2 changes nothing and is committed.
. "$(dirname "$0")/lib.sh"

P=$(pkg big); S=$(site dp); L=$T/lib
make_tree "$T/src1" 1 3000 32 & g1=$!   # big: extraction takes a while
make_tree "$T/src2" 2 300 32 & g2=$!
make_tree "$T/src3" 3 300 32 & g3=$!
wait $g1 $g2 $g3

start_worker w1 "$S" "$L"
wait_log w1 'msg=assigned'

# Sampler: every version tree holds VERSION = "seed N"; log what current
# shows, and whether the tree it points at is complete.
(
  while [ ! -e "$T/stop-sampler" ]; do
    t=$(readlink "$L/$P/current" 2>/dev/null) || { sleep 0.003; continue; }
    v=${t#versions/}
    if c=$(cat "$L/$P/versions/$v/VERSION" 2>/dev/null); then
      [ "$c" = "seed $v" ] && echo "$v ok" || echo "$v BAD"
    fi
    sleep 0.003
  done
) >"$T/samples" &
SAMPLER=$!; PIDS+=($SAMPLER)

publish "$P" 1 "$T/src1" >/dev/null
wait_log w1 "msg=update-started .*package=$P version=1"
publish "$P" 2 "$T/src2" >/dev/null
publish "$P" 3 "$T/src3" >/dev/null
wait_current "$L" "$P" 3 120
sleep 0.5
touch "$T/stop-sampler"; wait "$SAMPLER" || true

assert_same_tree "$T/src3" "$L/$P/current/"
grep -q BAD "$T/samples" && fail "sampler saw a mixed or partial tree"
awk '{ if ($1 < max) { print "downgrade " max " -> " $1; bad=1 } if ($1 > max) max = $1 }
     END { exit bad }' "$T/samples" || fail "current went backwards"
awk '$1 == 3 { seen3 = 1 } seen3 && $1 == 2 { exit 1 }' "$T/samples" ||
  fail "version 2 visible after 3"
log "samples: $(sort -n "$T/samples" | uniq -c | tr '\n' ' ')"
wait_lag0 "$S"

# A stale re-publish of 2: nothing changes, offset committed.
publish "$P" 2 "$T/src2" >/dev/null
wait_log w1 "msg=discarded .*package=$P version=2 .*reason=stale"
wait_lag0 "$S"
[ "$(current_version "$L" "$P")" = 3 ] || fail "stale v2 moved current"
kept=$(ls "$L/$P/versions" | sort -n | tr '\n' ' ')
[ -d "$L/$P/versions/3" ] && [ "$(ls "$L/$P/versions" | wc -l)" -le 2 ] ||
  fail "keep-versions 2: versions/ holds $kept"
stop_worker w1
no_staging_left "$L"
log "PASS"
