//! The row schema as a Delta table schema and its Arrow form. Pure, no I/O.
//!
//! Rows become Arrow record batches of [`arrow_schema()`] through the shared encoder
//! ([`crate::encode::arrow`], which lists the forms a column's value may take).
//!
//! | row schema type   | Delta type        | Arrow type                       |
//! |-------------------|-------------------|----------------------------------|
//! | `boolean`         | `boolean`         | `Boolean`                        |
//! | `int32`           | `integer`         | `Int32`                          |
//! | `int64`           | `long`            | `Int64`                          |
//! | `float32`         | `float`           | `Float32`                        |
//! | `float64`         | `double`          | `Float64`                        |
//! | `decimal(p,s)`    | `decimal(p,s)`    | `Decimal128(p, s)`               |
//! | `string`          | `string`          | `Utf8`                           |
//! | `date`            | `date`            | `Date32`                         |
//! | `timestamp`       | `timestamp_ntz`   | `Timestamp(Microsecond, None)`   |
//! | `timestamptz`     | `timestamp`       | `Timestamp(Microsecond, "UTC")`  |
//!
//! `bytes` and `json` columns are refused when the sink is created.

use crate::error::{Error, Result};
use crate::schema::{Column, ColumnType, Schema};
use arrow_schema::SchemaRef;
use deltalake::kernel::engine::arrow_conversion::TryIntoArrow;
use deltalake::kernel::{DataType, PrimitiveType, StructField, StructType};
use std::sync::Arc;

/// The Delta type of a row schema column.
pub fn delta_type(column: &Column) -> Result<DataType> {
    Ok(match column.ty {
        ColumnType::Boolean => DataType::BOOLEAN,
        ColumnType::Int32 => DataType::INTEGER,
        ColumnType::Int64 => DataType::LONG,
        ColumnType::Float32 => DataType::FLOAT,
        ColumnType::Float64 => DataType::DOUBLE,
        ColumnType::Decimal { precision, scale } => DataType::Primitive(
            PrimitiveType::decimal(precision, scale)
                .map_err(|e| Error::schema(format!("column `{}`: {e}", column.name)))?,
        ),
        ColumnType::String => DataType::STRING,
        ColumnType::Date => DataType::DATE,
        ColumnType::Timestamp => DataType::Primitive(PrimitiveType::TimestampNtz),
        ColumnType::Timestamptz => DataType::Primitive(PrimitiveType::Timestamp),
        ColumnType::Bytes | ColumnType::Json => {
            return Err(Error::schema(format!(
                "column `{}` is of type {}, which the deltalake sink does not write yet; declare it as string",
                column.name, column.ty
            )))
        }
    })
}

/// The row schema as a Delta table schema.
pub fn delta_schema(schema: &Schema) -> Result<StructType> {
    let fields = schema
        .columns
        .iter()
        .map(|c| Ok(StructField::new(c.name.clone(), delta_type(c)?, c.nullable)))
        .collect::<Result<Vec<_>>>()?;
    StructType::try_new(fields).map_err(|e| Error::schema(format!("the row schema is not a Delta schema: {e}")))
}

/// The Arrow schema delta-rs writes for a Delta table schema.
pub fn arrow_schema(delta: &StructType) -> Result<SchemaRef> {
    let arrow: arrow_schema::Schema =
        delta.try_into_arrow().map_err(|e| Error::schema(format!("the Delta schema has no Arrow form: {e}")))?;
    Ok(Arc::new(arrow))
}

/// The row schema of an existing Delta table, for sinks that declare none.
pub fn schema_from_delta(delta: &StructType) -> Result<Schema> {
    let columns = delta
        .fields()
        .map(|f| {
            let ty = match f.data_type() {
                DataType::Primitive(p) => match p {
                    PrimitiveType::Boolean => Some(ColumnType::Boolean),
                    PrimitiveType::Integer => Some(ColumnType::Int32),
                    PrimitiveType::Long => Some(ColumnType::Int64),
                    PrimitiveType::Float => Some(ColumnType::Float32),
                    PrimitiveType::Double => Some(ColumnType::Float64),
                    PrimitiveType::Decimal(d) => {
                        Some(ColumnType::Decimal { precision: d.precision(), scale: d.scale() })
                    }
                    PrimitiveType::String => Some(ColumnType::String),
                    PrimitiveType::Date => Some(ColumnType::Date),
                    PrimitiveType::TimestampNtz => Some(ColumnType::Timestamp),
                    PrimitiveType::Timestamp => Some(ColumnType::Timestamptz),
                    _ => None,
                },
                _ => None,
            };
            let ty = ty.ok_or_else(|| {
                Error::schema(format!(
                    "the Delta table's column `{}` has type {}, which the deltalake sink does not write",
                    f.name(),
                    f.data_type()
                ))
            })?;
            Ok(Column { name: f.name().clone(), ty, nullable: f.is_nullable() })
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(Schema { columns })
}

/// Checks that an existing table's schema is the row schema: the same column names in the same
/// order, of the same types and nullability. Every difference is named in the error.
pub fn check_table_schema(table: &StructType, rows: &StructType, location: &str) -> Result<()> {
    let mut problems = Vec::new();
    let table_fields: Vec<&StructField> = table.fields().collect();
    let row_fields: Vec<&StructField> = rows.fields().collect();
    for r in &row_fields {
        match table_fields.iter().find(|t| t.name() == r.name()) {
            None => problems.push(format!("column `{}` is not in the table", r.name())),
            Some(t) => {
                if t.data_type() != r.data_type() {
                    problems.push(format!(
                        "column `{}` is {} in the table but {} in the rows",
                        r.name(),
                        t.data_type(),
                        r.data_type()
                    ));
                }
                if t.is_nullable() != r.is_nullable() {
                    let word = |n: bool| if n { "nullable" } else { "not nullable" };
                    problems.push(format!(
                        "column `{}` is {} in the table but {} in the rows",
                        r.name(),
                        word(t.is_nullable()),
                        word(r.is_nullable())
                    ));
                }
            }
        }
    }
    for t in &table_fields {
        if !row_fields.iter().any(|r| r.name() == t.name()) {
            problems.push(format!("the table's column `{}` is not in the rows", t.name()));
        }
    }
    if problems.is_empty() {
        let a: Vec<&String> = table_fields.iter().map(|f| f.name()).collect();
        let b: Vec<&String> = row_fields.iter().map(|f| f.name()).collect();
        if a != b {
            problems.push("the columns are in a different order".to_string());
        }
    }
    if problems.is_empty() {
        return Ok(());
    }
    Err(Error::schema(format!(
        "the Delta table at `{location}` does not match the row schema: {}; fix the schema, or write to a new \
         `location`",
        problems.join("; ")
    )))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::encode::arrow::RowBatcher;
    use arrow_array::cast::AsArray;
    use arrow_array::types::{Date32Type, Decimal128Type, Int64Type, TimestampMicrosecondType};
    use serde::Serialize;

    #[derive(Serialize)]
    struct R {
        id: i64,
        name: Option<String>,
        price: String,
        day: &'static str,
        at: &'static str,
        ok: bool,
    }

    fn schema() -> Schema {
        "id:int64!,name:string,price:decimal(10,2),day:date,at:timestamptz,ok:boolean".parse().unwrap()
    }

    #[test]
    fn rows_become_columns() {
        let arrow = arrow_schema(&delta_schema(&schema()).unwrap()).unwrap();
        let mut b = RowBatcher::new(arrow).unwrap();
        let rows = [
            R {
                id: 1,
                name: Some("a".into()),
                price: "12.34".into(),
                day: "2024-02-29",
                at: "1970-01-01T00:00:01Z",
                ok: true,
            },
            R {
                id: 2,
                name: None,
                price: "-0.50".into(),
                day: "1970-01-02",
                at: "2024-01-01T00:00:00.000001Z",
                ok: false,
            },
        ];
        b.push(&rows).unwrap();
        let batch = b.finish().unwrap().unwrap();
        assert_eq!(batch.num_rows(), 2);
        assert_eq!(batch.column(0).as_primitive::<Int64Type>().values(), &[1, 2]);
        assert!(batch.column(1).is_null(1));
        assert_eq!(batch.column(2).as_primitive::<Decimal128Type>().values(), &[1234, -50]);
        assert_eq!(batch.column(3).as_primitive::<Date32Type>().value(1), 1);
        assert_eq!(batch.column(4).as_primitive::<TimestampMicrosecondType>().value(0), 1_000_000);
        assert_eq!(batch.column(4).as_primitive::<TimestampMicrosecondType>().value(1), 1_704_067_200_000_001);
        assert!(b.finish().unwrap().is_none());
    }

    #[test]
    fn an_unknown_field_or_a_missing_value_is_an_encode_error() {
        let s: Schema = "id:int64!".parse().unwrap();
        let mut b = RowBatcher::new(arrow_schema(&delta_schema(&s).unwrap()).unwrap()).unwrap();
        let e = b.push(&[serde_json::json!({"id": 1, "other": 2})]).and_then(|_| b.finish().map(|_| ())).unwrap_err();
        assert_eq!(e.kind(), crate::ErrorKind::Encode);
        let e = b.push(&[serde_json::json!({"id": null})]).and_then(|_| b.finish().map(|_| ())).unwrap_err();
        assert_eq!(e.kind(), crate::ErrorKind::Encode);
        b.push(&[serde_json::json!({"id": 7})]).unwrap();
        assert_eq!(b.finish().unwrap().unwrap().num_rows(), 1);
    }

    #[test]
    fn schema_mismatches_are_named() {
        let table = delta_schema(&"id:int64!,name:string".parse().unwrap()).unwrap();
        let rows = delta_schema(&"id:int32!,name:string!,extra:boolean".parse().unwrap()).unwrap();
        let e = check_table_schema(&table, &rows, "/t").unwrap_err().to_string();
        assert!(e.contains("column `id` is long in the table but integer"), "{e}");
        assert!(e.contains("column `name` is nullable in the table but not nullable"), "{e}");
        assert!(e.contains("column `extra` is not in the table"), "{e}");
        check_table_schema(&table, &table, "/t").unwrap();
        let back = schema_from_delta(&table).unwrap();
        assert_eq!(back, "id:int64!,name:string".parse().unwrap());
    }
}
