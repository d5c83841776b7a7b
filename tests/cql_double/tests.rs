//! The double's own rules: reconciliation, row tombstones and the statements it refuses.

use super::error::*;
use super::execute::*;
use super::storage::*;

#[test]
fn double_cells_keep_the_last_write_and_ties_go_to_tombstones_then_greater_values() {
    let c = |ts, v: Option<&[u8]>| Cell { ts, value: v.map(<[u8]>::to_vec) };
    assert_eq!(reconcile(&c(2, Some(b"a")), &c(1, Some(b"z"))), c(2, Some(b"a")));
    assert_eq!(reconcile(&c(1, Some(b"z")), &c(2, None)), c(2, None));
    assert_eq!(reconcile(&c(3, Some(b"z")), &c(3, None)), c(3, None));
    assert_eq!(reconcile(&c(3, Some(b"a")), &c(3, Some(b"b"))), c(3, Some(b"b")));
    // Unsigned comparison of the bytes: 0xff… (a negative int) beats 0x00….
    assert_eq!(reconcile(&c(3, Some(&[0xff])), &c(3, Some(&[0x01]))), c(3, Some(&[0xff])));
}

#[test]
fn double_row_tombstones_shadow_older_and_equal_writes_but_not_newer_ones() {
    let v = |s: &str| vec![("v".to_string(), Some(s.as_bytes().to_vec()))];
    let mut r = StoredRow::default();
    assert!(r.write(5, true, &v("a")));
    assert!(!r.write(5, true, &v("a")), "a replay changes nothing");
    assert!(r.delete(7));
    assert!(!r.live());
    assert!(!r.write(6, true, &v("old")), "an older write after the delete stays shadowed");
    assert!(!r.write(7, true, &v("tie")), "a write at the tombstone's timestamp is shadowed");
    assert!(!r.live());
    assert!(!r.delete(3), "an older delete changes nothing");
    assert!(r.write(8, true, &v("new")));
    assert!(r.live());
    assert_eq!(r.cells["v"].value.as_deref(), Some(&b"new"[..]));
    assert!(!r.delete(7), "a replayed delete does not shadow a newer write");
    assert!(r.live());
}

#[test]
fn double_refuses_statements_it_does_not_know() {
    let mut db = Db::default();
    db.execute(
        "CREATE KEYSPACE ks WITH replication = {'class': 'SimpleStrategy', 'replication_factor': 1}",
        &[],
        0,
        None,
    )
    .unwrap();
    db.execute("CREATE TABLE ks.t (k int PRIMARY KEY, v text)", &[], 0, None).unwrap();
    for (q, code) in [
        ("UPDATE ks.t SET v = 'x' WHERE k = 1", SYNTAX),
        ("INSERT INTO ks.t (k, v) VALUES (1, 'x') IF NOT EXISTS", SYNTAX),
        ("INSERT INTO ks.t JSON '{\"k\": 1, \"w\": 2}'", INVALID),
        ("INSERT INTO ks.t JSON '{\"k\": \"x\"}'", INVALID),
        ("DELETE FROM ks.t WHERE v = 'x'", INVALID),
        ("SELECT k FROM ks.nope", INVALID),
        ("SELECT w FROM ks.t", INVALID),
        ("SELECT k FROM ks.t WHERE v = 'x'", INVALID),
        ("SELECT k FROM t", INVALID),
        ("CREATE TABLE ks.t (k int PRIMARY KEY)", ALREADY_EXISTS),
    ] {
        let e = db.execute(q, &[], 0, None).expect_err(q);
        assert_eq!(e.code, code, "{q}: {e:?}");
    }
    db.execute("INSERT INTO ks.t JSON '{\"k\": 1}' USING TIMESTAMP 4", &[], 0, None).unwrap();
    assert!(
        matches!(db.execute("SELECT k, v FROM ks.t WHERE k = 1", &[], 0, None).unwrap(), Outcome::Rows { rows, .. } if rows == vec![vec![Some(1i32.to_be_bytes().to_vec()), None]])
    );
}
