#!/bin/sh
# One-shot topic creation for docker-compose.yml (runs in the apache/kafka image, POSIX sh).
# Input topics and the account topic keep everything (retention -1): a worker whose data
# directory is lost rebuilds its graph by re-reading them from offset 0 (docs/operating.md).
# leads.scores is compacted (the newest score of every lead stays); the other outputs keep the
# broker's default retention. Existing topics are left as they are. The same as
# `leadpulse topics create`; `leadpulse topics check` verifies the result.
set -eu
BOOTSTRAP="${KAFKA_BOOTSTRAP:-kafka:9092}"
PARTITIONS="${LEADPULSE_PARTITIONS:-4}"
REPLICATION="${LEADPULSE_REPLICATION:-1}"
TOPICS_SH="${KAFKA_HOME:-/opt/kafka}/bin/kafka-topics.sh"

create() {  # name, extra --config arguments...
  name="$1"; shift
  "$TOPICS_SH" --bootstrap-server "$BOOTSTRAP" --create --if-not-exists --topic "$name" \
    --partitions "$PARTITIONS" --replication-factor "$REPLICATION" "$@"
}

for t in "${LEADPULSE_TOPIC_COMPANIES:-crm.companies}" "${LEADPULSE_TOPIC_CONTACTS:-crm.contacts}" \
         "${LEADPULSE_TOPIC_ACTIVITIES:-crm.activities}" "${LEADPULSE_TOPIC_OPPORTUNITIES:-crm.opportunities}" \
         "${LEADPULSE_TOPIC_ORDERS:-crm.orders}" "${LEADPULSE_TOPIC_ACCOUNTS:-leadpulse.accounts}"; do
  create "$t" --config retention.ms=-1 --config retention.bytes=-1
done
create "${LEADPULSE_TOPIC_SCORES:-leads.scores}" --config cleanup.policy=compact
for t in "${LEADPULSE_TOPIC_ALERTS:-leads.alerts}" "${LEADPULSE_TOPIC_DEADLETTER:-crm.deadletter}" \
         "${LEADPULSE_TOPIC_MODEL_UPDATES:-models.updates}"; do
  create "$t"
done
"$TOPICS_SH" --bootstrap-server "$BOOTSTRAP" --list
