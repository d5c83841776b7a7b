//! Avro schemas derived from the sink's row [`Schema`], and their JSON form for the registry.

use super::AvroType;
use crate::error::{Error, Result};
use crate::schema::{ColumnType, Schema};
use serde_json::Value;

fn column_type(t: ColumnType) -> AvroType {
    match t {
        ColumnType::Boolean => AvroType::Boolean,
        ColumnType::Int32 => AvroType::Int,
        ColumnType::Int64 => AvroType::Long,
        ColumnType::Float32 => AvroType::Float,
        ColumnType::Float64 => AvroType::Double,
        ColumnType::Decimal { precision, scale } => AvroType::Decimal { precision, scale },
        ColumnType::String => AvroType::String,
        ColumnType::Bytes => AvroType::Bytes,
        ColumnType::Date => AvroType::Date,
        ColumnType::Timestamp | ColumnType::Timestamptz => AvroType::TimestampMicros,
        ColumnType::Json => AvroType::JsonText,
    }
}

/// A valid Avro name from arbitrary text (letters, digits, `_`; not starting with a digit).
pub fn avro_name(s: &str) -> String {
    let mut out: String = s.chars().map(|c| if c.is_ascii_alphanumeric() { c } else { '_' }).collect();
    if out.is_empty() || out.as_bytes()[0].is_ascii_digit() {
        out.insert(0, '_');
    }
    out
}

/// The record schema of a row.
pub fn row_schema(name: &str, schema: &Schema) -> AvroType {
    AvroType::Record {
        name: name.to_string(),
        fields: schema
            .columns
            .iter()
            .map(|c| {
                let t = column_type(c.ty);
                (c.name.clone(), if c.nullable { AvroType::Nullable(Box::new(t)) } else { t })
            })
            .collect(),
    }
}

/// The record schema of a key made of `columns` of `schema` (key columns are never null).
pub fn key_schema(name: &str, schema: &Schema, columns: &[String]) -> Result<AvroType> {
    let fields = columns
        .iter()
        .map(|c| {
            schema
                .column(c)
                .map(|col| (c.clone(), column_type(col.ty)))
                .ok_or_else(|| Error::schema(format!("primary key column `{c}` is not in the schema")))
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(AvroType::Record { name: name.to_string(), fields })
}

/// The schema of a Debezium event over rows of `row`.
pub fn debezium_schema(name: &str, row: AvroType) -> AvroType {
    AvroType::Record {
        name: format!("{name}_Envelope"),
        fields: vec![
            ("before".into(), AvroType::Nullable(Box::new(row.clone()))),
            ("after".into(), AvroType::Nullable(Box::new(row))),
            ("op".into(), AvroType::String),
            ("ts_ms".into(), AvroType::Nullable(Box::new(AvroType::Long))),
            (
                "source".into(),
                AvroType::Record {
                    name: format!("{name}_Source"),
                    fields: vec![
                        ("connector".into(), AvroType::String),
                        ("name".into(), AvroType::String),
                        ("ts".into(), AvroType::Long),
                    ],
                },
            ),
        ],
    }
}

impl AvroType {
    /// The schema as Avro's JSON form (what the registry stores). A record used twice is named
    /// the second time, as Avro requires.
    pub fn to_json(&self) -> Value {
        let mut defined = Vec::new();
        self.json(&mut defined)
    }

    fn json(&self, defined: &mut Vec<String>) -> Value {
        use serde_json::json;
        match self {
            AvroType::Null => json!("null"),
            AvroType::Boolean => json!("boolean"),
            AvroType::Int => json!("int"),
            AvroType::Long => json!("long"),
            AvroType::Float => json!("float"),
            AvroType::Double => json!("double"),
            AvroType::Bytes => json!("bytes"),
            AvroType::String | AvroType::JsonText => json!("string"),
            AvroType::Date => json!({"type": "int", "logicalType": "date"}),
            AvroType::TimestampMicros => json!({"type": "long", "logicalType": "timestamp-micros"}),
            AvroType::Decimal { precision, scale } => {
                json!({"type": "bytes", "logicalType": "decimal", "precision": precision, "scale": scale})
            }
            AvroType::Nullable(t) => json!(["null", t.json(defined)]),
            AvroType::Record { name, fields } => {
                if defined.contains(name) {
                    return json!(name);
                }
                defined.push(name.clone());
                let fields: Vec<Value> = fields
                    .iter()
                    .map(|(n, t)| {
                        let mut f = json!({"name": n, "type": t.json(defined)});
                        if matches!(t, AvroType::Nullable(_)) {
                            f["default"] = Value::Null;
                        }
                        f
                    })
                    .collect();
                json!({"type": "record", "name": name, "fields": fields})
            }
        }
    }
}
