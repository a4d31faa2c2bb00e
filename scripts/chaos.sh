#!/usr/bin/env bash
# Fault scenarios against real services on this machine (Redis, PostgreSQL, the server as
# separate processes), one summary line each. The same scenarios run, small, in the test
# suite; here INVIGIL_CHAOS_SCALE (default 5) multiplies their students and traffic, and the
# PostgreSQL and DynamoDB outages last INVIGIL_CHAOS_OUTAGE_SECS (default 30) under steady
# traffic.
#
#   scripts/chaos.sh                 # every scenario
#   scripts/chaos.sh rolling-restart redis-restart
#
# Every scenario is bounded in time and cleans up its processes; all traffic stays on
# 127.0.0.1. Start Redis and PostgreSQL first (scripts/test.sh does).
set -uo pipefail
cd "$(dirname "$0")/.."

declare -A SCENARIOS=(
  [instance-killed]="redis_cluster::a_killed_instance_has_its_students_reported_lost_once_within_15_seconds"
  [killed-under-load]="instance_loss::a_killed_instance_under_traffic_loses_no_student_and_no_event"
  [redis-restart]="redis_cluster::a_redis_restart_pauses_cross_instance_traffic_and_it_resumes_within_5_seconds"
  [postgres-outage]="records::postgres_going_away_under_traffic_loses_no_event_and_duplicates_none"
  [dynamodb-outage]="dynamodb::a_dynamodb_outage_under_traffic_loses_no_latest_status"
  [rolling-restart]="redis_cluster::a_rolling_restart_shows_no_false_offline_and_loses_no_status"
  [slow-consumer]="limits::a_slow_proctor_is_closed_without_slowing_the_others"
  [cluster-restart]="dynamodb::statuses_are_coalesced_into_dynamodb_and_survive_a_cluster_restart"
)
ORDER=(instance-killed killed-under-load redis-restart postgres-outage dynamodb-outage rolling-restart slow-consumer cluster-restart)
chosen=("$@")
[ ${#chosen[@]} -eq 0 ] && chosen=("${ORDER[@]}")

export INVIGIL_CHAOS_SCALE="${INVIGIL_CHAOS_SCALE:-5}"
# How long the database outage of postgres-outage lasts, under steady traffic.
export INVIGIL_CHAOS_OUTAGE_SECS="${INVIGIL_CHAOS_OUTAGE_SECS:-30}"
cargo test --test api --no-run -q 2>/dev/null || { echo "chaos: the tests do not build" >&2; exit 2; }

failed=0
for name in "${chosen[@]}"; do
  test="${SCENARIOS[$name]:-}"
  if [ -z "$test" ]; then
    echo "chaos: $name unknown (known: ${ORDER[*]})"; failed=1; continue
  fi
  start=$(date +%s%N)
  if timeout 300 cargo test -q --test api -- --exact "$test" >"/tmp/invigil-chaos-$name.log" 2>&1; then
    verdict=PASS
  else
    verdict=FAIL; failed=1
  fi
  took_ms=$(( ($(date +%s%N) - start) / 1000000 ))
  printf 'chaos: %-16s %s  %4d.%01ds  scale %s  (log: /tmp/invigil-chaos-%s.log)\n' \
    "$name" "$verdict" $((took_ms / 1000)) $((took_ms % 1000 / 100)) "$INVIGIL_CHAOS_SCALE" "$name"
done
exit $failed
