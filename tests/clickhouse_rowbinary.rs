//! The ClickHouse sink's RowBinary encoding against a real server (`DSINK_CLICKHOUSE_URL`,
//! started by `scripts/services start clickhouse`): the encoder writes the same bytes the server
//! itself produces for each type, rows of every supported type read back as the server reads the
//! same rows sent as JSONEachRow, the sink really sends RowBinary (or JSONEachRow for a table it
//! cannot encode), and values that do not fit stop the sink with the column, type and key.

mod common;
mod drive;

use common::{expected_changes, keyed_history, tracked, Row};
use differential_sinks::connectors::clickhouse::ClickHouseConfig;
use differential_sinks::encode::rowbinary::{Encoded, RowBinaryEncoder};
use differential_sinks::{JsonRow, SinkSpec};
use drive::run;
use serde::Serialize;
use std::cmp::Ordering;
use std::sync::atomic::Ordering::Relaxed;

fn url() -> String {
    std::env::var("DSINK_CLICKHOUSE_URL").expect(
        "DSINK_CLICKHOUSE_URL is not set: start the server with `scripts/services start clickhouse` and \
         `source $DSINK_SERVICES_DIR/env` (this test needs a real ClickHouse)",
    )
}

/// Runs one query (or, with `data`, an insert whose SQL goes in the URL) and returns the raw
/// answer; panics on an error answer.
fn raw(sql: &str, data: Option<&[u8]>) -> Vec<u8> {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let http = reqwest::Client::new();
        let r = match data {
            None => http.post(format!("{}/", url())).body(sql.to_string()),
            Some(d) => http
                .post(reqwest::Url::parse_with_params(&format!("{}/", url()), &[("query", sql)]).unwrap())
                .body(d.to_vec()),
        };
        let r = r.send().await.unwrap();
        let status = r.status();
        let body = r.bytes().await.unwrap().to_vec();
        assert!(status.is_success(), "query `{sql}` failed: {}", String::from_utf8_lossy(&body));
        body
    })
}

fn q(sql: &str) -> String {
    String::from_utf8(raw(sql, None)).unwrap()
}

fn fresh(name: &str, ddl: &str) -> String {
    q(&format!("DROP TABLE IF EXISTS default.{name}"));
    q(&format!("CREATE TABLE default.{name} {ddl}"));
    name.to_string()
}

/// What the encoder writes for `value` as the only column, of type `ty`.
fn encode<T: Serialize>(ty: &str, value: T) -> Vec<u8> {
    #[derive(Serialize)]
    struct One<T> {
        c: T,
    }
    let tz = q("SELECT timezone()");
    let mut enc = RowBinaryEncoder::new([("c", ty)], tz.trim()).unwrap();
    let mut out = Vec::new();
    let Encoded::Columns(cols) = enc.encode(&One { c: &value }, &mut out).unwrap() else { panic!("first row") };
    enc.set_columns(cols);
    assert_eq!(enc.encode(&One { c: &value }, &mut out).unwrap(), Encoded::Written);
    out
}

#[test]
fn the_encoder_writes_what_the_server_writes() {
    let long = "x".repeat(300);
    let cases: Vec<(&str, String, Vec<u8>)> = vec![
        ("UInt8", "CAST(200 AS UInt8)".into(), encode("UInt8", 200u8)),
        ("UInt8", "CAST(1 AS UInt8)".into(), encode("UInt8", true)),
        ("UInt16", "CAST(65535 AS UInt16)".into(), encode("UInt16", 65_535u16)),
        ("UInt32", "CAST(4000000000 AS UInt32)".into(), encode("UInt32", 4_000_000_000u32)),
        ("UInt64", "toUInt64('18446744073709551615')".into(), encode("UInt64", u64::MAX)),
        ("Int8", "CAST(-128 AS Int8)".into(), encode("Int8", -128i8)),
        ("Int16", "CAST(-300 AS Int16)".into(), encode("Int16", -300i64)),
        ("Int32", "CAST(-2147483648 AS Int32)".into(), encode("Int32", i32::MIN)),
        ("Int64", "toInt64('-9223372036854775808')".into(), encode("Int64", i64::MIN)),
        ("Int64", "toInt64('12')".into(), encode("Int64", "12")),
        ("Float32", "toFloat32('0.1')".into(), encode("Float32", 0.1f32)),
        ("Float32", "toFloat32('-3.25')".into(), encode("Float32", -3.25f64)),
        ("Float64", "toFloat64('-2.5e-300')".into(), encode("Float64", -2.5e-300f64)),
        ("Float64", "toFloat64('12345678901234567')".into(), encode("Float64", 12_345_678_901_234_567u64)),
        ("String", "'héllo, 日本 🎉 \\'q\\' \\\\'".into(), encode("String", "héllo, 日本 🎉 'q' \\")),
        ("String", format!("'{long}'"), encode("String", &long)),
        ("String", "''".into(), encode("String", "")),
        ("FixedString(5)", "toFixedString('ab', 5)".into(), encode("FixedString(5)", "ab")),
        ("FixedString(3)", "toFixedString('日', 3)".into(), encode("FixedString(3)", "日")),
        ("Date", "toDate('2019-02-28')".into(), encode("Date", "2019-02-28")),
        ("Date", "toDate('2000-01-01')".into(), encode("Date", 10_957u16)),
        ("Date", "toDate('2105-12-31')".into(), encode("Date", "2105-12-31")),
        ("DateTime", "toDateTime('2019-02-28 13:14:15')".into(), encode("DateTime", "2019-02-28 13:14:15")),
        ("DateTime", "toDateTime('2019-02-28 11:14:15')".into(), encode("DateTime", "2019-02-28T13:14:15+02:00")),
        ("DateTime", "toDateTime(1000000000)".into(), encode("DateTime", 1_000_000_000u32)),
        (
            "DateTime('Asia/Tokyo')",
            "toDateTime('2019-02-28 20:14:15', 'Asia/Tokyo')".into(),
            encode("DateTime('Asia/Tokyo')", "2019-02-28T11:14:15Z"),
        ),
        ("Nullable(UInt32)", "CAST(NULL AS Nullable(UInt32))".into(), encode("Nullable(UInt32)", None::<u32>)),
        ("Nullable(UInt32)", "toNullable(toUInt32(7))".into(), encode("Nullable(UInt32)", Some(7u32))),
        ("Nullable(String)", "toNullable('x')".into(), encode("Nullable(String)", "x")),
        ("Decimal(9, 2)", "CAST('-123.45' AS Decimal(9, 2))".into(), encode("Decimal(9, 2)", "-123.45")),
        ("Decimal(18, 4)", "toDecimal64('1.25', 4)".into(), encode("Decimal(18, 4)", 1.25f64)),
        ("Decimal(18, 4)", "toDecimal64('-42', 4)".into(), encode("Decimal64(4)", -42i32)),
        (
            "Decimal(38, 10)",
            "toDecimal128('1234567890123456789012345678.0123456789', 10)".into(),
            encode("Decimal(38, 10)", "1234567890123456789012345678.0123456789"),
        ),
        (
            "UUID",
            "toUUID('61f0c404-5cb3-11e7-907b-a6006ad3dba0')".into(),
            encode("UUID", "61f0c404-5cb3-11e7-907b-a6006ad3dba0"),
        ),
        ("Enum8", "CAST('b' AS Enum8('a' = 1, 'b' = -2))".into(), encode("Enum8('a' = 1, 'b' = -2)", "b")),
        (
            "Enum16",
            "CAST('y' AS Enum16('x' = 1000, 'y' = -1000))".into(),
            encode("Enum16('x' = 1000, 'y' = -1000)", "y"),
        ),
        (
            "Array(Nullable(String))",
            "CAST([NULL, 'a'] AS Array(Nullable(String)))".into(),
            encode("Array(Nullable(String))", vec![None, Some("a")]),
        ),
        ("Array(UInt64)", "emptyArrayUInt64()".into(), encode("Array(UInt64)", Vec::<u64>::new())),
        (
            "Array(Array(Int16))",
            "CAST([[1, -1], []] AS Array(Array(Int16)))".into(),
            encode("Array(Array(Int16))", vec![vec![1i16, -1], vec![]]),
        ),
        (
            "LowCardinality(String)",
            "CAST('lc' AS LowCardinality(String))".into(),
            encode("LowCardinality(String)", "lc"),
        ),
    ];
    for (ty, expr, ours) in cases {
        let theirs = raw(&format!("SELECT {expr} AS c FORMAT RowBinary"), None);
        assert_eq!(ours, theirs, "{ty}: {expr}");
    }
}

/// A row with a column of every supported kind.
#[derive(Clone, Debug, Serialize, serde::Deserialize)]
struct Wide {
    id: u64,
    i8v: i8,
    i64v: i64,
    f32v: f32,
    f64v: f64,
    name: String,
    code: String,
    opt: Option<i32>,
    optname: Option<String>,
    day: String,
    at: String,
    unix: u32,
    price: f64,
    uid: String,
    kind: String,
    tags: Vec<String>,
    flag: bool,
}

// The dataflow needs a total order; this one compares every field (floats by their bits).
impl Wide {
    fn cmp_key(&self) -> impl Ord + '_ {
        let r = self;
        (
            (r.id, r.i8v, r.i64v, r.f32v.to_bits(), r.f64v.to_bits(), &r.name, &r.code, r.opt, &r.optname),
            (&r.day, &r.at, r.unix, r.price.to_bits(), &r.uid, &r.kind, &r.tags, r.flag),
        )
    }
}
impl PartialEq for Wide {
    fn eq(&self, o: &Self) -> bool {
        self.cmp(o) == Ordering::Equal
    }
}
impl Eq for Wide {}
impl PartialOrd for Wide {
    fn partial_cmp(&self, o: &Self) -> Option<Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Wide {
    fn cmp(&self, o: &Self) -> Ordering {
        self.cmp_key().cmp(&o.cmp_key())
    }
}

const WIDE: &str = "(id UInt64, i8v Int8, i64v Int64, f32v Float32, f64v Float64, name String, code FixedString(4), \
                    opt Nullable(Int32), optname Nullable(String), day Date, at DateTime, unix DateTime, \
                    price Decimal(18, 4), uid UUID, kind Enum8('a' = 1, 'b' = 2), tags Array(String), flag UInt8) \
                    ENGINE = MergeTree ORDER BY id";

fn wide(i: u64) -> Wide {
    let names = ["", "α", "b\"q", "c\\d", "日本語 🎉", "tab\there\nnewline", "x"];
    Wide {
        id: u64::MAX - i,
        i8v: [i8::MIN, -1, 0, i8::MAX][i as usize % 4],
        i64v: [i64::MIN, -7, 0, i64::MAX][i as usize % 4] / (1 + i as i64 % 3),
        f32v: [0.1f32, -3.4e38, 1.0e-30, 0.0][i as usize % 4],
        f64v: [0.1, -1.7976931348623157e308, 5e-324, 12345.678][i as usize % 4] / (i as f64 + 1.0),
        name: names[i as usize % names.len()].repeat(1 + i as usize % 3),
        code: ["", "ab", "abcd", "日"][i as usize % 4].to_string(),
        opt: (!i.is_multiple_of(3)).then_some(i as i32 * -1_000_003),
        optname: i.is_multiple_of(2).then(|| format!("n{i}✓")),
        day: format!("20{:02}-{:02}-{:02}", i % 100, 1 + i % 12, 1 + i % 28),
        at: format!("2024-02-29 {:02}:{:02}:{:02}", i % 24, i % 60, (i * 7) % 60),
        unix: 1_000_000_000 + i as u32 * 86_461,
        price: [0.0, -1.5, 123_456_789.062_5, 0.0001][i as usize % 4],
        uid: format!("{:08x}-5cb3-11e7-907b-{:012x}", i * 2_654_435_761 % (1 << 32), i * 97),
        kind: ["a", "b"][i as usize % 2].to_string(),
        tags: (0..i % 4).map(|j| format!("t{j}é")).collect(),
        flag: i % 2 == 1,
    }
}

#[test]
fn every_type_reads_back_as_the_same_rows_sent_as_json() {
    let rows: Vec<Wide> = (0..120).map(wide).collect();
    let table = fresh("rb_wide", WIDE);
    let twin = fresh("rb_wide_json", WIDE);
    // The reference: the server parsing the same rows as JSONEachRow.
    let json: Vec<u8> = rows.iter().flat_map(|r| serde_json::to_vec(r).unwrap().into_iter().chain([b'\n'])).collect();
    raw(&format!("INSERT INTO default.{twin} FORMAT JSONEachRow"), Some(&json));
    let history: Vec<(Wide, u64, isize)> =
        rows.iter().enumerate().map(|(i, r)| (r.clone(), i as u64 / 10, 1)).collect();
    let c = ClickHouseConfig::new(url(), "default", &table).batch(25, 1 << 20);
    let s = SinkSpec::builder(format!("{table}_{}", std::process::id()), c).build().unwrap();
    assert_eq!(run(&history, &s, 2, None), None);
    // Floats are left out of that comparison: this server's text parser is not correctly rounded
    // (JSON `-3.4e38` becomes the Float32 after it), so they are checked against the rows below.
    let cols = "id, i8v, i64v, name, code, opt, optname, day, at, unix, price, uid, kind, tags, flag";
    let read = |t: &str| q(&format!("SELECT {cols} FROM default.{t} ORDER BY id FORMAT JSONEachRow"));
    let (ours, theirs) = (read(&table), read(&twin));
    assert_eq!(ours.lines().count(), rows.len());
    for (i, (a, b)) in ours.lines().zip(theirs.lines()).enumerate() {
        assert_eq!(a, b, "row {i} differs from the server's reading of the same row as JSON");
    }
    // The stored floats, as the server returns them in binary, are bit for bit the rows' floats.
    let floats = raw(&format!("SELECT id, f32v, f64v FROM default.{table} ORDER BY id FORMAT RowBinary"), None);
    let mut want: Vec<&Wide> = rows.iter().collect();
    want.sort_by_key(|r| r.id);
    assert_eq!(floats.len(), 20 * rows.len());
    for (chunk, row) in floats.chunks(20).zip(want) {
        assert_eq!(u64::from_le_bytes(chunk[0..8].try_into().unwrap()), row.id);
        assert_eq!(f32::from_le_bytes(chunk[8..12].try_into().unwrap()).to_bits(), row.f32v.to_bits(), "{row:?}");
        assert_eq!(f64::from_le_bytes(chunk[12..20].try_into().unwrap()).to_bits(), row.f64v.to_bits(), "{row:?}");
    }
    let ours = q(&format!("SELECT * FROM default.{table} ORDER BY id FORMAT JSONEachRow"));
    // And a few values checked by hand, independently of either insert.
    let row0: serde_json::Value = serde_json::from_str(ours.lines().last().unwrap()).unwrap();
    assert_eq!(row0["id"], "18446744073709551615");
    assert_eq!(row0["i64v"], "-9223372036854775808");
    assert_eq!(row0["opt"], serde_json::Value::Null);
    assert_eq!(row0["optname"], "n0✓");
    assert_eq!(row0["day"], "2000-01-01");
    assert_eq!(row0["unix"], "2001-09-09 01:46:40");
    let nulls = q(&format!("SELECT countIf(isNull(opt)), countIf(isNull(optname)) FROM default.{table} FORMAT TSV"));
    assert_eq!(nulls.trim(), "40\t60");
    let unicode = q(&format!("SELECT name FROM default.{table} WHERE id = {} FORMAT TSVRaw", u64::MAX - 4));
    assert_eq!(unicode.trim_end_matches('\n'), "日本語 🎉日本語 🎉");
}

#[test]
fn the_sink_sends_rowbinary_with_the_version_and_delete_columns() {
    let history = keyed_history(21, 40, 12, 20);
    let table = fresh(
        "rb_bytes",
        "(k UInt32, v UInt32, s String, ver UInt64, del UInt8) ENGINE = ReplacingMergeTree(ver) ORDER BY k",
    );
    // Every inserted row stays visible for the count below: no background merge may collapse them.
    q(&format!("SYSTEM STOP MERGES default.{table}"));
    let c = ClickHouseConfig::new(url(), "default", &table).delete_column("del").batch(50, 1 << 20);
    let s =
        SinkSpec::builder(format!("{table}_{}", std::process::id()), c).upsert().primary_key(["k"]).build().unwrap();
    assert_eq!(run(&history, &s, 2, None), None);
    // One row per change: the new row, or the old one marked deleted, at the change's time.
    let changes = expected_changes(&history);
    let mut expected: Vec<(u32, u32, String, u64, u8)> = changes
        .iter()
        .map(|(&(t, k), (before, after))| match after {
            Some(r) => (k, r.v, r.s.clone(), t, 0),
            None => {
                let r: &Row = before.as_ref().unwrap();
                (k, r.v, r.s.clone(), t, 1)
            }
        })
        .collect();
    expected.sort();
    // RowBinary of (UInt32, UInt32, String, UInt64, UInt8): 4 + 4 + 1 + len + 8 + 1 bytes (short strings).
    let bytes: u64 = expected.iter().map(|(_, _, s, _, _)| 18 + s.len() as u64).sum();
    assert_eq!(s.metrics().records_out.load(Relaxed), expected.len() as u64);
    assert_eq!(s.metrics().bytes_out.load(Relaxed), bytes);
    let got: Vec<(u32, u32, String, u64, u8)> = q(&format!(
        "SELECT k, v, s, toString(ver) AS ver, del FROM default.{table} ORDER BY k, ver, del FORMAT JSONEachRow"
    ))
    .lines()
    .map(|l| {
        let v: serde_json::Value = serde_json::from_str(l).unwrap();
        let s = v["s"].as_str().unwrap().to_string();
        (
            v["k"].as_u64().unwrap() as u32,
            v["v"].as_u64().unwrap() as u32,
            s,
            v["ver"].as_str().unwrap().parse().unwrap(),
            v["del"].as_u64().unwrap() as u8,
        )
    })
    .collect();
    let mut got_sorted = got;
    got_sorted.sort();
    assert_eq!(got_sorted, expected);
}

#[test]
fn a_table_the_encoder_cannot_write_gets_json_each_row() {
    let table = fresh(
        "rb_fallback",
        "(k UInt32, v UInt32, s String, t Tuple(UInt8, String) DEFAULT (1, 'x')) ENGINE = MergeTree ORDER BY k",
    );
    let rows: Vec<Row> = (0..60u32).map(|i| Row { k: i, v: i * 3, s: format!("r{i}é") }).collect();
    let history: Vec<(Row, u64, isize)> = rows.iter().map(|r| (r.clone(), u64::from(r.k / 7), 1)).collect();
    let c = ClickHouseConfig::new(url(), "default", &table);
    let s = SinkSpec::builder(format!("{table}_{}", std::process::id()), c).build().unwrap();
    assert_eq!(run(&history, &s, 1, None), None);
    let json: u64 = rows.iter().map(|r| serde_json::to_vec(r).unwrap().len() as u64 + 1).sum();
    assert_eq!(s.metrics().bytes_out.load(Relaxed), json, "JSONEachRow lines were sent");
    assert_eq!(q(&format!("SELECT count(), sum(v) FROM default.{table} FORMAT TSV")).trim(), "60\t5310");
}

#[test]
fn map_rows_with_other_fields_start_a_block_with_their_columns() {
    let table = fresh("rb_fields", "(k UInt32, a UInt32, b String DEFAULT 'dflt') ENGINE = MergeTree ORDER BY k");
    let rows: Vec<serde_json::Value> = (0..40u32)
        .map(|k| match k % 3 {
            0 => serde_json::json!({"k": k, "a": k * 2, "b": format!("b{k}")}),
            1 => serde_json::json!({"k": k, "a": k * 2}),
            _ => serde_json::json!({"b": "ü", "a": k * 2, "k": k}),
        })
        .collect();
    let history: Vec<(JsonRow, u64, isize)> = rows.iter().map(|r| (JsonRow::from(r), 0, 1)).collect();
    let c = ClickHouseConfig::new(url(), "default", &table);
    let s = SinkSpec::builder(format!("{table}_{}", std::process::id()), c).build().unwrap();
    assert_eq!(run(&history, &s, 1, None), None);
    let got = q(&format!("SELECT k, a, b FROM default.{table} ORDER BY k FORMAT TSV"));
    let want: String = (0..40u32)
        .map(|k| {
            let b = match k % 3 {
                0 => format!("b{k}"),
                1 => "dflt".to_string(),
                _ => "ü".to_string(),
            };
            format!("{k}\t{}\t{b}\n", k * 2)
        })
        .collect();
    assert_eq!(got, want);
}

#[test]
fn values_that_do_not_fit_stop_the_sink_with_column_type_and_key() {
    let table =
        fresh("rb_narrow", "(k UInt32, v UInt8, s String, sign Int8) ENGINE = CollapsingMergeTree(sign) ORDER BY k");
    let spec = |name: &str| {
        let c = ClickHouseConfig::new(url(), "default", &table);
        SinkSpec::builder(format!("{table}_{name}_{}", std::process::id()), c)
            .upsert()
            .primary_key(["k"])
            .build()
            .unwrap()
    };
    let history = vec![(Row { k: 5, v: 300, s: "x".into() }, 0, 1)];
    let e = run(&history, &spec("range"), 1, None).expect("refused");
    assert!(
        e.contains("column `v` (UInt8)")
            && e.contains("300 is out of range")
            && e.contains(r#"{"k":5}"#)
            && e.contains("default.rb_narrow"),
        "{e}"
    );
    let history = vec![(JsonRow::from(serde_json::json!({"k": 9, "v": null, "s": "x"})), 0, 1)];
    let e = run(&history, &spec("null"), 1, None).expect("refused");
    assert!(e.contains("column `v` (UInt8)") && e.contains("NULL") && e.contains(r#"{"k":9}"#), "{e}");
    let history = vec![(JsonRow::from(serde_json::json!({"k": 1, "v": 1, "s": 2.5})), 0, 1)];
    let e = run(&history, &spec("type"), 1, None).expect("refused");
    assert!(e.contains("column `s` (String)") && e.contains("the number 2.5 cannot be written"), "{e}");
    assert_eq!(q(&format!("SELECT count() FROM default.{table}")).trim(), "0", "nothing was inserted");
}

/// Large blocks go out while they are encoded (streamed inserts, on servers without insert
/// deduplication tokens): the final state and the bytes sent are still exact.
#[test]
fn large_streamed_blocks_end_in_the_final_state() {
    let history = keyed_history(31, 30_000, 4, 40_000);
    let table = fresh(
        "rb_stream",
        "(k UInt32, v UInt32, s String, ver UInt64, del UInt8) ENGINE = ReplacingMergeTree(ver) ORDER BY k",
    );
    let c = ClickHouseConfig::new(url(), "default", &table).delete_column("del");
    let s =
        SinkSpec::builder(format!("{table}_{}", std::process::id()), c).upsert().primary_key(["k"]).build().unwrap();
    assert_eq!(run(&history, &s, 1, None), None);
    let changes = expected_changes(&history);
    let bytes: u64 =
        changes.values().map(|(before, after)| 18 + after.as_ref().or(before.as_ref()).unwrap().s.len() as u64).sum();
    assert!(bytes / 4 > 256 << 10, "each time's block is larger than a streamed chunk");
    assert_eq!(s.metrics().bytes_out.load(Relaxed), bytes);
    let state = q(&format!("SELECT k, v, s FROM default.{table} FINAL WHERE del = 0 ORDER BY k FORMAT JSONEachRow"));
    let got: std::collections::BTreeMap<u32, Row> = state
        .lines()
        .map(|l| {
            let r: Row = serde_json::from_str(l).unwrap();
            (r.k, r)
        })
        .collect();
    assert_eq!(got, common::state_before(&history, u64::MAX));
}

/// A row that does not fit, after a large part of its block has been streamed, leaves nothing
/// of that block in the table: the streamed insert is aborted, not ended early.
#[test]
fn a_bad_row_late_in_a_streamed_block_inserts_nothing() {
    let table = fresh("rb_abort", "(k UInt32, v UInt8, s String) ENGINE = MergeTree ORDER BY k");
    // Changes reach the writer in key order; the bad row gets the last key of the block.
    let key = |k: u32| differential_sinks::key::Key::from_bytes(format!(r#"{{"k":{k}}}"#).into_bytes());
    let bad = (0..20_000u32).max_by_key(|&k| key(k)).unwrap();
    let history: Vec<(Row, u64, isize)> =
        (0..20_000u32).map(|k| (Row { k, v: if k == bad { 300 } else { k % 200 }, s: "s".repeat(40) }, 0, 1)).collect();
    let c = ClickHouseConfig::new(url(), "default", &table);
    let s = SinkSpec::builder(format!("{table}_{}", std::process::id()), c).upsert().primary_key(["k"]);
    // Upserts need a table that can cancel rows; this one is plain, so write append-only with a key.
    let s = s.append_only(false).build().unwrap();
    let e = run(&history, &s, 1, None).expect("refused");
    assert!(e.contains("column `v` (UInt8)") && e.contains(&format!(r#"{{"k":{bad}}}"#)), "{e}");
    assert_eq!(q(&format!("SELECT count() FROM default.{table}")).trim(), "0", "part of the block was inserted");
}

/// Rows are encoded once, as RowBinary naming their columns, on the worker that produced them:
/// their `Serialize` runs there only, once for the key and once for the row, never after the
/// exchange. The rows' fields come in another order than the table's columns, and every round
/// retracts the rows of the round before: the retractions cancel by their bytes, and the table
/// ends in the state computed from the input.
#[test]
fn rows_are_encoded_once_on_the_worker_that_produced_them() {
    let table = fresh(
        "rb_encode_once",
        "(k UInt32, v UInt32, s String, ver UInt64, del UInt8) ENGINE = ReplacingMergeTree(ver) ORDER BY k",
    );
    let sink = format!("{table}_{}", std::process::id());
    let cfg = ClickHouseConfig::new(url(), "default", &table).delete_column("del");
    let spec = SinkSpec::builder(sink, cfg).upsert().primary_key(["k"]).build().unwrap();
    let seen = tracked::run(spec, 3);
    tracked::assert_encoded_once(&seen, 3);
    let state: Vec<Row> =
        q(&format!("SELECT k, v, s FROM default.{table} FINAL WHERE del = 0 ORDER BY k FORMAT JSONEachRow"))
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
    assert_eq!(state, tracked::reference(3));
}
