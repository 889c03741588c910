#!/usr/bin/env bash
# transaction.timeout.ms is sized to the upload (librdkafka's 60 s default
# aborted any upload slower than that). The rule, from pkgpub --help:
# max(60 s, 30 s + compressed size at 2 MiB/s), clamped to the brokers'
# transaction.max.timeout.ms; -X transaction.timeout.ms wins. pkgpub
# reports the value it used (--json transaction_timeout_ms).
# Both brokers: a small update gets the 60 s floor; -X wins.
# Apache Kafka only (needs an 80 MiB update and a broker that enforces
# transaction timeouts): an 80 MiB incompressible update gets 30 s +
# 80 MiB / 2 MiB/s (the value is computed here from the zsize pkgpub
# reports), and the transaction coordinator holds that value (Kafka's
# TransactionsCommand describe); -X below the need warns; -X above the
# broker's maximum fails, naming transaction.max.timeout.ms; after a
# restart with transaction.max.timeout.ms=65000 the 80 MiB update gets
# 65000 and a warning that the upload needs more than the broker allows.
# What this does not prove: that a real upload slower than 60 s now
# commits (that would take minutes); it proves the coordinator was given
# the larger timeout, which is what decides.
. "$(dirname "$0")/lib.sh"

jget() { python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])' "$1" "$2"; }
P=$(pkg small); Q=$(pkg big)
make_tree "$T/src/$P" 1 5 8

BS=${B#@}; [ "$BS" != "$B" ] && BS=$(cat "$BS")
txn_describe() { # TRANSACTIONAL-ID -> its TransactionTimeoutMs at the coordinator
  "$SRC/scripts/kafka" cli org.apache.kafka.tools.TransactionsCommand \
    --bootstrap-server "$BS" describe --transactional-id "$1" 2>"$T/txn.err" |
    awk 'NR == 1 { for (i = 1; i <= NF; i++) if ($i == "TransactionTimeoutMs") c = i }
         NR == 2 && c { print $c }'
}
expect() { python3 -c 'import sys; z = int(sys.argv[1]); print(max(60000, 30000 + z * 1000 // (2 << 20)))' "$1"; }

if [ "$BROKER_KIND" = kafka ]; then
  make_random_tree "$T/src/$Q" 2 80
  publish "$Q" 1 "$T/src/$Q" >"$T/q1.json"
  z=$(jget "$T/q1.json" zsize); want=$(expect "$z")
  [ "$want" -gt 60000 ] || fail "test set-up: an 80 MiB update should need more than 60 s (want $want)"
  # Schema v2 sends parts while it packs, before the compressed size is
  # known: it sizes the timeout on an upper bound of the tar stream (at
  # most 1% over the tar's size here), at least the rule on zsize.
  size=$(jget "$T/q1.json" size); hi=$(expect $((size + size / 100)))
  coord=$(txn_describe "$(jget "$T/q1.json" transactional_id)")
  [ -n "$coord" ] && [ "$coord" -ge "$want" ] && [ "$coord" -le "$hi" ] ||
    fail "80 MiB update (zsize $z, size $size): the coordinator holds TransactionTimeoutMs=$coord, expected $want..$hi ($(cat "$T/txn.err"))"
  got=$(jget "$T/q1.json" transaction_timeout_ms 2>/dev/null) ||
    fail "pkgpub --json has no transaction_timeout_ms: $(cat "$T/q1.json")"
  [ "$got" = "$coord" ] || fail "80 MiB update: transaction_timeout_ms=$got, the coordinator holds $coord"
  log "80 MiB update (zsize $z): $got ms, and the coordinator holds $coord"
fi

publish "$P" 1 "$T/src/$P" >"$T/p1.json"
got=$(jget "$T/p1.json" transaction_timeout_ms 2>/dev/null) ||
  fail "pkgpub --json has no transaction_timeout_ms: $(cat "$T/p1.json")"
[ "$got" = 60000 ] || fail "small update: transaction_timeout_ms=$got, expected the 60000 floor"
publish "$P" 2 "$T/src/$P" -X transaction.timeout.ms=123000 >"$T/p2.json"
got=$(jget "$T/p2.json" transaction_timeout_ms)
[ "$got" = 123000 ] || fail "-X transaction.timeout.ms=123000: pkgpub used $got"
log "small update: 60000 ms; -X transaction.timeout.ms=123000 used as given"

if [ "$BROKER_KIND" != kafka ]; then
  log "PASS (embedded: floor and -X; the sizing of big updates and the broker's maximum need Apache Kafka: DESPOOL_BROKER=kafka)"
  exit 0
fi

: >"$T/pkgpub.log"
publish "$Q" 2 "$T/src/$Q" -X transaction.timeout.ms=61000 >"$T/q2.json"
[ "$(jget "$T/q2.json" transaction_timeout_ms)" = 61000 ] || fail "-X 61000 not used"
grep -q "msg=transaction-timeout-short .*transaction_timeout_ms=61000 needed_ms=$coord" "$T/pkgpub.log" ||
  fail "no transaction-timeout-short warning for -X below the need: $(cat "$T/pkgpub.log")"

rc=0
"$PKGPUB" -b "$B" -p "$Q" -V 3 --json --no-progress -X transaction.timeout.ms=1000000 \
  "$T/src/$Q" >"$T/q3.out" 2>"$T/q3.err" || rc=$?
[ $rc -ne 0 ] || fail "-X transaction.timeout.ms=1000000 (over the broker's 15 min) published: $(cat "$T/q3.out")"
grep -q "^pkgpub: .*transaction.timeout.ms=1000000 is more than the broker's transaction.max.timeout.ms" "$T/q3.err" ||
  fail "no clear message for a timeout over the broker's maximum: $(grep '^pkgpub' "$T/q3.err")"
log "-X below the need warns; -X over the broker's maximum fails and says so"

if [ -n "${DESPOOL_BOOTSTRAP:-}" ]; then
  log "PASS (the lowered-maximum part restarts its own broker: not run with DESPOOL_BOOTSTRAP)"
  exit 0
fi
"$SRC/scripts/kafka" stop --dir "$KAFKA_STATE" >/dev/null 2>&1 || fail "scripts/kafka stop failed"
echo "transaction.max.timeout.ms=65000" >>"$KAFKA_STATE/server.properties"
"$SRC/scripts/kafka" start --dir "$KAFKA_STATE" >/dev/null 2>"$T/kafka-start2.log" ||
  { cat "$T/kafka-start2.log"; fail "scripts/kafka restart failed"; }
: >"$T/pkgpub.log"
publish "$Q" 4 "$T/src/$Q" >"$T/q4.json"
got=$(jget "$T/q4.json" transaction_timeout_ms)
[ "$got" = 65000 ] || fail "broker maximum 65000: pkgpub used $got (needed $want)"
grep -q "msg=transaction-timeout-clamped needed_ms=$coord transaction_max_timeout_ms=65000 " "$T/pkgpub.log" ||
  fail "no warning that the upload needs more than the broker's maximum: $(cat "$T/pkgpub.log")"
log "broker maximum 65000: clamped to it, with a warning ($(grep -o 'detail=.*' "$T/pkgpub.log" | cut -c1-90)...)"
log "PASS"
