//! Column schemas: the names and types of a row's columns, where a typed target needs them.
//!
//! Rust rows carry their types in their `Serialize` implementations, but a schema-aware encoding
//! (Kafka Connect's `{schema, payload}`, Avro, a table's columns) needs them spelled out. A
//! [`Schema`] is declared in code or parsed from `name:type,…` (the `dsink --schema` flag).

use crate::error::{Error, Result};
use std::fmt;
use std::str::FromStr;

/// A column type.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ColumnType {
    /// true / false.
    Boolean,
    /// 32-bit signed integer.
    Int32,
    /// 64-bit signed integer.
    Int64,
    /// 32-bit float.
    Float32,
    /// 64-bit float.
    Float64,
    /// Exact decimal with `precision` digits, `scale` after the point (given as a JSON string or number).
    Decimal {
        /// Total digits.
        precision: u8,
        /// Digits after the point.
        scale: u8,
    },
    /// UTF-8 text.
    String,
    /// Bytes (base64 in JSON).
    Bytes,
    /// A calendar date, `YYYY-MM-DD`.
    Date,
    /// A timestamp without zone, RFC 3339 text or microseconds.
    Timestamp,
    /// A timestamp with zone, RFC 3339 text.
    Timestamptz,
    /// Any JSON value.
    Json,
}

impl ColumnType {
    /// The Kafka Connect schema type name.
    pub fn connect_type(&self) -> &'static str {
        match self {
            ColumnType::Boolean => "boolean",
            ColumnType::Int32 => "int32",
            ColumnType::Int64 => "int64",
            ColumnType::Float32 => "float",
            ColumnType::Float64 => "double",
            ColumnType::Bytes => "bytes",
            _ => "string",
        }
    }
}

impl fmt::Display for ColumnType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ColumnType::Boolean => f.write_str("boolean"),
            ColumnType::Int32 => f.write_str("int32"),
            ColumnType::Int64 => f.write_str("int64"),
            ColumnType::Float32 => f.write_str("float32"),
            ColumnType::Float64 => f.write_str("float64"),
            ColumnType::Decimal { precision, scale } => write!(f, "decimal({precision},{scale})"),
            ColumnType::String => f.write_str("string"),
            ColumnType::Bytes => f.write_str("bytes"),
            ColumnType::Date => f.write_str("date"),
            ColumnType::Timestamp => f.write_str("timestamp"),
            ColumnType::Timestamptz => f.write_str("timestamptz"),
            ColumnType::Json => f.write_str("json"),
        }
    }
}

impl FromStr for ColumnType {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        let l = s.trim().to_ascii_lowercase();
        Ok(match l.as_str() {
            "bool" | "boolean" => ColumnType::Boolean,
            "int" | "int32" | "integer" => ColumnType::Int32,
            "bigint" | "int64" | "long" => ColumnType::Int64,
            "float" | "float32" | "real" => ColumnType::Float32,
            "double" | "float64" => ColumnType::Float64,
            "string" | "text" | "varchar" => ColumnType::String,
            "bytes" | "bytea" | "binary" => ColumnType::Bytes,
            "date" => ColumnType::Date,
            "timestamp" => ColumnType::Timestamp,
            "timestamptz" => ColumnType::Timestamptz,
            "json" | "jsonb" => ColumnType::Json,
            _ if l.starts_with("decimal(") && l.ends_with(')') => {
                let inner = &l["decimal(".len()..l.len() - 1];
                let (p, s) = inner.split_once(',').unwrap_or((inner, "0"));
                let precision: u8 = p.trim().parse().map_err(|_| Error::config(format!("bad decimal precision in `{s}`")))?;
                let scale: u8 = s.trim().parse().map_err(|_| Error::config(format!("bad decimal scale in `{s}`")))?;
                if precision == 0 || precision > 38 || scale > precision {
                    return Err(Error::config(format!("`{l}`: decimal needs 1 ≤ precision ≤ 38 and scale ≤ precision")));
                }
                ColumnType::Decimal { precision, scale }
            }
            _ => {
                return Err(Error::config(format!(
                    "unknown column type `{s}`; use boolean, int32, int64, float32, float64, decimal(p,s), string, bytes, date, timestamp, timestamptz or json"
                )))
            }
        })
    }
}

/// One column.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Column {
    /// The name, as the row's field.
    pub name: String,
    /// The type.
    pub ty: ColumnType,
    /// Whether the column may be null.
    pub nullable: bool,
}

/// The columns of a row type.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Schema {
    /// The columns, in order.
    pub columns: Vec<Column>,
}

impl Schema {
    /// Parses `name:type,name:type?` (a trailing `?` would be redundant: columns are nullable
    /// unless followed by `!`, e.g. `id:int64!`).
    ///
    /// ```
    /// let s: differential_sinks::Schema = "id:int64!,name:string,amount:decimal(10,2)".parse().unwrap();
    /// assert_eq!(s.columns.len(), 3);
    /// assert!(!s.columns[0].nullable && s.columns[1].nullable);
    /// ```
    pub fn parse(spec: &str) -> Result<Self> {
        let mut columns: Vec<Column> = Vec::new();
        // Split on commas that are not inside parentheses (decimal(10,2)).
        let mut depth = 0;
        let mut start = 0;
        let mut parts = Vec::new();
        for (i, ch) in spec.char_indices() {
            match ch {
                '(' => depth += 1,
                ')' => depth -= 1,
                ',' if depth == 0 => {
                    parts.push(&spec[start..i]);
                    start = i + 1;
                }
                _ => {}
            }
        }
        parts.push(&spec[start..]);
        for part in parts.into_iter().map(str::trim).filter(|p| !p.is_empty()) {
            let (name, ty) = part
                .split_once(':')
                .ok_or_else(|| Error::config(format!("schema entry `{part}` is not of the form name:type")))?;
            let (ty, nullable) = match ty.trim().strip_suffix('!') {
                Some(t) => (t, false),
                None => (ty.trim().strip_suffix('?').unwrap_or(ty.trim()), true),
            };
            let name = name.trim().to_string();
            if columns.iter().any(|c| c.name == name) {
                return Err(Error::config(format!("schema names column `{name}` twice")));
            }
            columns.push(Column { name, ty: ty.parse()?, nullable });
        }
        if columns.is_empty() {
            return Err(Error::config("the schema names no column"));
        }
        Ok(Schema { columns })
    }

    /// The column called `name`.
    pub fn column(&self, name: &str) -> Option<&Column> {
        self.columns.iter().find(|c| c.name == name)
    }
}

impl Schema {
    /// Checks a JSON row against the schema: every field a known column, every column present
    /// (or null where nullable) and of its type's JSON form.
    ///
    /// ```
    /// let s: differential_sinks::Schema = "id:int64!,name:string".parse().unwrap();
    /// assert!(s.check_json(&serde_json::json!({"id": 1, "name": null})).is_ok());
    /// assert!(s.check_json(&serde_json::json!({"id": "x"})).unwrap_err().to_string().contains("`id`"));
    /// ```
    pub fn check_json(&self, row: &serde_json::Value) -> Result<()> {
        use serde_json::Value;
        let obj = row.as_object().ok_or_else(|| Error::schema("the row is not a JSON object"))?;
        for key in obj.keys() {
            if self.column(key).is_none() {
                return Err(Error::schema(format!("the row has column `{key}`, which the schema does not name")));
            }
        }
        for c in &self.columns {
            let v = obj.get(&c.name).unwrap_or(&Value::Null);
            if v.is_null() {
                if c.nullable {
                    continue;
                }
                return Err(Error::schema(format!(
                    "column `{}` is not nullable but the row has no value for it",
                    c.name
                )));
            }
            let ok = match c.ty {
                ColumnType::Boolean => v.is_boolean(),
                ColumnType::Int32 => v.as_i64().is_some_and(|i| i32::try_from(i).is_ok()),
                ColumnType::Int64 => v.is_i64(),
                ColumnType::Float32 | ColumnType::Float64 => v.is_number(),
                ColumnType::Decimal { .. } => v.is_number() || v.as_str().is_some_and(|s| s.parse::<f64>().is_ok()),
                ColumnType::String | ColumnType::Bytes => v.is_string(),
                ColumnType::Date => {
                    v.as_str().is_some_and(|s| s.len() == 10 && s.as_bytes()[4] == b'-' && s.as_bytes()[7] == b'-')
                }
                ColumnType::Timestamp | ColumnType::Timestamptz => v.is_string() || v.is_i64(),
                ColumnType::Json => true,
            };
            if !ok {
                return Err(Error::schema(format!("column `{}` should be {} but the row has {v}", c.name, c.ty)));
            }
        }
        Ok(())
    }
}

impl FromStr for Schema {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        Schema::parse(s)
    }
}
