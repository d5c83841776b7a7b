//! Reading Kafka topics back to their end with a plain rdkafka consumer, for the tests that check
//! what a sink left on the broker (`tests/kafka.rs` and the Kafka crash test of
//! `tests/crash_streams.rs`).

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::{BorrowedMessage, Message};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use std::collections::BTreeSet;
use std::time::{Duration, Instant};

/// A consumer of the broker at `bootstrap` in group `group` (never committing) that reads with
/// `isolation` (`read_committed` or `read_uncommitted`) and reports the end of each partition,
/// as [`read_to_end`] needs.
pub fn reader(bootstrap: &str, group: &str, isolation: &str) -> BaseConsumer {
    secured_reader(bootstrap, group, isolation, &[])
}

/// A [`reader`] with more librdkafka settings (`security.protocol`, `ssl.*`, `sasl.*`).
#[allow(dead_code)] // used by tests/kafka_security.rs only
pub fn secured_reader(bootstrap: &str, group: &str, isolation: &str, settings: &[(&str, &str)]) -> BaseConsumer {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", bootstrap)
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .set("isolation.level", isolation)
        .set("enable.partition.eof", "true");
    for (k, v) in settings {
        c.set(*k, *v);
    }
    c.create().expect("a consumer")
}

/// The partitions of `topic`; panics if it has none.
pub fn partitions(consumer: &BaseConsumer, topic: &str) -> Vec<i32> {
    let md = consumer
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .unwrap_or_else(|e| panic!("metadata of {topic}: {e}"));
    let partitions: Vec<i32> =
        md.topics().iter().filter(|t| t.name() == topic).flat_map(|t| t.partitions()).map(|p| p.id()).collect();
    assert!(!partitions.is_empty(), "topic {topic} has no partitions");
    partitions
}

/// Every message of `partitions` of `topic`, read with `consumer` (from [`reader`]) from the
/// beginning of each partition to its end and made into a `T` by `record`, partition by partition
/// in offset order. Panics on a read error, or if the ends are not reached by `deadline`.
pub fn read_to_end<T>(
    consumer: &BaseConsumer,
    topic: &str,
    partitions: &[i32],
    deadline: Instant,
    record: impl Fn(&BorrowedMessage<'_>) -> T,
) -> Vec<T> {
    let mut tpl = TopicPartitionList::new();
    let mut pending = BTreeSet::new();
    for &p in partitions {
        let (low, high) = consumer.fetch_watermarks(topic, p, Duration::from_secs(10)).expect("watermarks");
        if high > low {
            tpl.add_partition_offset(topic, p, Offset::Beginning).unwrap();
            pending.insert(p);
        }
    }
    if pending.is_empty() {
        return Vec::new();
    }
    consumer.assign(&tpl).unwrap();
    let mut out = Vec::new();
    while !pending.is_empty() {
        assert!(Instant::now() < deadline, "reading {topic} did not reach its end");
        match consumer.poll(Duration::from_millis(200)) {
            None => {}
            Some(Err(KafkaError::PartitionEOF(p))) => {
                pending.remove(&p);
            }
            Some(Err(e)) => panic!("reading {topic}: {e}"),
            Some(Ok(m)) => out.push((m.partition(), m.offset(), record(&m))),
        }
    }
    out.sort_by_key(|(p, o, _)| (*p, *o));
    out.into_iter().map(|(_, _, r)| r).collect()
}
