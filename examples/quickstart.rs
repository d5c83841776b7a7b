//! Quickstart: orders joined with customers and reduced into per-customer totals, sunk as an
//! upsert stream into the embedded file sink, then read back and checked.
//!
//! ```text
//! cargo run --release --example quickstart            # one worker
//! cargo run --release --example quickstart -- -w 2    # two workers
//! ```
//!
//! Three rounds of input (new orders, changed and cancelled orders, a renamed and a removed
//! customer) change the totals; after each round the program waits until the sink has committed
//! the round, replays the committed file output, and compares it with totals computed directly
//! from the inputs in plain Rust.
//!
//! The embedded target stays the file sink rather than a local Iceberg or Delta table: it builds
//! with the default features in seconds (a lakehouse table brings Arrow, Parquet and a catalog —
//! minutes of build) and its committed output reads back with `read_committed` alone. The same
//! totals go into a table by changing the connector (`IcebergConfig::new(dir, "shop", "totals")
//! .create_table_if_not_exists(true)` with `--features iceberg`, or `DeltaLakeConfig`), upserted
//! by position deletes or deletion vectors.

use differential_dataflow::input::Input;
use differential_sinks::connectors::file::{read_committed, FileConfig};
use differential_sinks::{SinkCollection, SinkSpec};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use timely::dataflow::operators::probe::Probe;

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
struct Customer {
    id: u32,
    name: String,
}

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
struct Order {
    order_id: u32,
    customer_id: u32,
    cents: i64,
}

/// The sink's row: one per customer with orders.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
struct Total {
    customer_id: u32,
    name: String,
    orders: u64,
    cents: i64,
}

/// One round of input changes: `(record, +1 | -1)`.
struct Round {
    customers: Vec<(Customer, isize)>,
    orders: Vec<(Order, isize)>,
}

fn rounds() -> Vec<Round> {
    let c = |id, name: &str| Customer { id, name: name.into() };
    let o = |order_id, customer_id, cents| Order { order_id, customer_id, cents };
    vec![
        Round {
            customers: vec![(c(1, "Ada"), 1), (c(2, "Grace"), 1), (c(3, "Edsger"), 1)],
            orders: vec![(o(10, 1, 1250), 1), (o(11, 1, 990), 1), (o(12, 2, 4500), 1), (o(13, 3, 100), 1)],
        },
        Round {
            customers: vec![(c(2, "Grace"), -1), (c(2, "Grace H."), 1)],
            // Order 11 changes its amount, order 13 is cancelled, a new order for customer 2.
            orders: vec![(o(11, 1, 990), -1), (o(11, 1, 1990), 1), (o(13, 3, 100), -1), (o(14, 2, 700), 1)],
        },
        Round {
            // Customer 1 leaves: their total disappears from the sink (a delete).
            customers: vec![(c(1, "Ada"), -1)],
            orders: vec![(o(15, 3, 300), 1)],
        },
    ]
}

/// Totals computed straight from the inputs, without the dataflow.
fn reference(upto: usize) -> BTreeMap<u32, Total> {
    let (mut customers, mut orders) = (BTreeMap::new(), BTreeMap::new());
    for round in &rounds()[..upto] {
        for (c, d) in &round.customers {
            *customers.entry(c.clone()).or_insert(0) += d;
        }
        for (o, d) in &round.orders {
            *orders.entry(o.clone()).or_insert(0) += d;
        }
    }
    let mut totals = BTreeMap::new();
    for (c, _) in customers.iter().filter(|(_, n)| **n > 0) {
        let mine: Vec<&Order> =
            orders.iter().filter(|(o, n)| **n > 0 && o.customer_id == c.id).map(|(o, _)| o).collect();
        if !mine.is_empty() {
            let t = Total {
                customer_id: c.id,
                name: c.name.clone(),
                orders: mine.len() as u64,
                cents: mine.iter().map(|o| o.cents).sum(),
            };
            totals.insert(c.id, t);
        }
    }
    totals
}

/// Replays the committed upsert lines into customer → total.
fn replay(dir: &std::path::Path) -> BTreeMap<u32, Total> {
    let mut state = BTreeMap::new();
    for line in read_committed(dir).expect("committed output reads back") {
        let id = line["key"]["customer_id"].as_u64().expect("key") as u32;
        match line["value"].is_null() {
            true => state.remove(&id),
            false => state.insert(id, serde_json::from_value(line["value"].clone()).expect("a Total")),
        };
    }
    state
}

fn main() {
    let out = std::env::temp_dir().join(format!("differential-sinks-quickstart-{}", std::process::id()));
    let spec = SinkSpec::builder("customer_totals", FileConfig::new(&out))
        .upsert()
        .primary_key(["customer_id"])
        .build()
        .expect("a valid sink");
    let out2 = out.clone();

    let guards = timely::execute_from_args(std::env::args().skip(1), move |worker| {
        let index = worker.index();
        let (mut customers, mut orders, probe, handle) = worker.dataflow::<u64, _, _>(|scope| {
            let (customers_in, customers) = scope.new_collection::<Customer, isize>();
            let (orders_in, orders) = scope.new_collection::<Order, isize>();
            let totals = orders
                .map(|o| (o.customer_id, o.cents))
                .join(customers.map(|c| (c.id, c.name)))
                .map(|(id, (cents, name))| ((id, name), cents))
                .reduce(|_key, input, output| {
                    let orders: isize = input.iter().map(|(_, n)| *n).sum();
                    let cents: i64 = input.iter().map(|(c, n)| **c * *n as i64).sum();
                    output.push(((orders as u64, cents), 1));
                })
                .map(|((customer_id, name), (orders, cents))| Total { customer_id, name, orders, cents });
            let sunk = totals.sink(&spec).expect("the sink opens");
            let (probe, _) = sunk.committed.probe();
            (customers_in, orders_in, probe, sunk.handle)
        });

        for (i, round) in rounds().into_iter().enumerate() {
            if index == 0 {
                for (c, d) in round.customers {
                    customers.update(c, d);
                }
                for (o, d) in round.orders {
                    orders.update(o, d);
                }
            }
            let next = i as u64 + 1;
            customers.advance_to(next);
            orders.advance_to(next);
            customers.flush();
            orders.flush();
            handle.step_until_committed(worker, &probe, &next).expect("the sink commits");
            if index == 0 {
                let (got, want) = (replay(&out2), reference(i + 1));
                println!("after round {next}: the file sink holds {} customer totals", got.len());
                for t in got.values() {
                    println!(
                        "  customer {:>2} {:<10} {} orders {:>8.2}",
                        t.customer_id,
                        t.name,
                        t.orders,
                        t.cents as f64 / 100.0
                    );
                }
                assert_eq!(got, want, "the committed output differs from the totals computed from the inputs");
            }
        }
    })
    .expect("timely starts");
    for r in guards.join() {
        r.expect("worker finished");
    }
    println!(
        "OK: after every round, the committed file output equals the totals computed from the inputs ({})",
        out.display()
    );
}
