#!/usr/bin/env bash
# The compaction tooling of the schema v2 tests, on plain records: that
# Apache Kafka's log cleaner, with lib.sh's compact_fast settings (topic
# segment.ms=1000, min.cleanable.dirty.ratio=0, delete.retention.ms=1000,
# min.compaction.lag.ms=0; broker log.cleaner.backoff.ms=1000), compacts
# within seconds on one node, and that lib.sh's helpers (kafka_topic_config,
# kafka_broker_config, roll_segments, count_records, wait_compacted) and
# ktool (put -n, dump -p, get) see it.
# On a compacted topic of 2 partitions: 5 records of key A (100 KiB each,
# like parts: big next to the tombstones) in partition 0 are all there
# (the active segment is never cleaned); after the segments roll, only the
# newest A is left, at its own offset (offsets never move) with its value;
# `ktool get` at a compacted-away offset returns the next record and exits
# 3 (how a consumer of pkg.content sees a missing part); a tombstone of A
# (a few bytes after 100 KiB: the case KAFKA-LOCAL.md's dirty ratio 0.01
# never cleans), rolled, deletes A; rolled again, after delete.retention.ms,
# the tombstone is gone too; B in partition 1 stays throughout.
# Fails if compaction does not happen within 60 s. Prints how long each
# compaction took. Apache Kafka only.
. "$(dirname "$0")/lib.sh"
[ "$BROKER_KIND" = kafka ] || { log "skipped: needs Apache Kafka (DESPOOL_BROKER=kafka)"; exit 77; }

TOP=compact-tools-$RUN
kafka_cli kafka-topics --create --topic "$TOP" --partitions 2 --replication-factor 1 \
  --config cleanup.policy=compact
# Set after creation, as the v2 tests do on pkg.updates and pkg.content.
compact_fast "$TOP"
kafka_cli kafka-configs --describe --entity-type topics --entity-name "$TOP"
grep -q 'min.cleanable.dirty.ratio=0.0 ' "$T/kafka-cli.out" && grep -q 'segment.ms=1000 ' "$T/kafka-cli.out" ||
  fail "compact_fast did not set the configs of $TOP: $(cat "$T/kafka-cli.out")"

for i in 1 2 3 4 5; do
  { printf 'A version %d\n' "$i"; head -c 102400 /dev/urandom; } >"$T/a$i"
done
"$KTOOL" put -b "$B" -t "$TOP" -k A -p 0 "$T"/a{1,2,3,4,5} || fail "put 5 records of A"
printf 'B\n' >"$T/b"
"$KTOOL" put -b "$B" -t "$TOP" -k B -p 1 "$T/b" || fail "put B"
n=$(count_records "$TOP" A)
[ "$n" = 5 ] || fail "count_records $TOP A: $n right after putting 5 (nothing can be cleaned yet)"
n=$(count_records "$TOP")
[ "$n" = 6 ] || fail "count_records $TOP: $n, expected 6"
"$KTOOL" dump -b "$B" -t "$TOP" -p 1 >"$T/p1" || fail "dump -p 1"
[ "$(wc -l <"$T/p1")" = 1 ] && grep -q '^partition=1 offset=0 key=B len=2$' "$T/p1" ||
  fail "dump -p 1: $(cat "$T/p1")"

roll_segments "$TOP" 1000
wait_compacted "$TOP" A 1 60
log "5 records of A compacted to 1 in ${COMPACTED_AFTER_S}s after the roll"
"$KTOOL" get -b "$B" -t "$TOP" -p 0 -o 4 -x >"$T/get4" || fail "get offset 4: exit $?: $(cut -c1-200 "$T/get4")"
want=$(od -An -v -tx1 "$T/a5" | tr -d ' \n')
got=$(sed -n 's/.* value_hex=//p' "$T/get4")
grep -q "^partition=0 offset=4 key=A len=$(stat -c %s "$T/a5") value_hex=" "$T/get4" && [ "$got" = "$want" ] ||
  fail "the record left of A is not the newest at offset 4 (value ${#got} hex digits, expected ${#want}): $(cut -c1-200 "$T/get4")"
rc=0; "$KTOOL" get -b "$B" -t "$TOP" -p 0 -o 1 >"$T/get1" || rc=$?
[ $rc = 3 ] || fail "get at compacted-away offset 1: exit $rc, expected 3: $(cat "$T/get1")"
grep -q '^partition=0 offset=4 key=A ' "$T/get1" || fail "get -o 1 should find offset 4: $(cat "$T/get1")"
n=$(count_records "$TOP" B)
[ "$n" = 1 ] || fail "B: $n records, expected 1"

# A tombstone deletes A at the next cleaning. The tombstone itself goes
# only at a later cleaning, once delete.retention.ms has passed since the
# first one (that one sets its delete horizon): and a partition is
# cleaned again only when it has new dirty records, so roll once more.
"$KTOOL" put -b "$B" -t "$TOP" -k A -p 0 -n || fail "put tombstone of A"
"$KTOOL" get -b "$B" -t "$TOP" -p 0 -o 6 >"$T/get6" || fail "get the tombstone: $(cat "$T/get6")"
grep -q '^partition=0 offset=6 key=A len=null$' "$T/get6" || fail "tombstone not seen as len=null: $(cat "$T/get6")"
roll_segments "$TOP" 1000
wait_compacted "$TOP" A 1 60
"$KTOOL" dump -b "$B" -t "$TOP" -p 0 >"$T/p0" || fail "dump -p 0"
grep -q '^partition=0 offset=6 key=A len=null$' "$T/p0" && [ "$(grep -c ' key=A ' "$T/p0")" = 1 ] ||
  fail "after the tombstone's cleaning, A should be only its tombstone: $(cat "$T/p0")"
log "A deleted by its tombstone ${COMPACTED_AFTER_S}s after the roll"
roll_segments "$TOP" 1000
wait_compacted "$TOP" A 0 60
log "the tombstone of A gone ${COMPACTED_AFTER_S}s after the next roll"
n=$(count_records "$TOP" B)
[ "$n" = 1 ] || fail "B: $n records after A's tombstone, expected 1"
log "ok"
