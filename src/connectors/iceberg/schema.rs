//! The row schema as an Iceberg schema and back, and the check of an existing table's columns
//! against the rows. Pure, no I/O. The type mapping is in the [connector's docs](super#schema).

use crate::error::{Error, Result};
use crate::schema::{Column, ColumnType, Schema};
use iceberg::spec::{NestedField, PrimitiveType, Type};
use std::sync::Arc;

/// The Iceberg type of a row schema column.
pub fn iceberg_type(column: &Column) -> Result<PrimitiveType> {
    Ok(match column.ty {
        ColumnType::Boolean => PrimitiveType::Boolean,
        ColumnType::Int32 => PrimitiveType::Int,
        ColumnType::Int64 => PrimitiveType::Long,
        ColumnType::Float32 => PrimitiveType::Float,
        ColumnType::Float64 => PrimitiveType::Double,
        ColumnType::Decimal { precision, scale } => {
            if precision == 0 || precision > 38 || scale > precision {
                return Err(Error::schema(format!(
                    "column `{}`: decimal({precision},{scale}) is not an Iceberg decimal (precision 1 to 38, scale \
                     at most the precision)",
                    column.name
                )));
            }
            PrimitiveType::Decimal { precision: precision.into(), scale: scale.into() }
        }
        ColumnType::String => PrimitiveType::String,
        ColumnType::Date => PrimitiveType::Date,
        ColumnType::Timestamp => PrimitiveType::Timestamp,
        ColumnType::Timestamptz => PrimitiveType::Timestamptz,
        ColumnType::Bytes | ColumnType::Json => {
            return Err(Error::schema(format!(
                "column `{}` is of type {}, which the iceberg sink does not write yet; declare it as string",
                column.name, column.ty
            )))
        }
    })
}

/// The row schema as an Iceberg schema, field ids `1..` in column order.
pub fn iceberg_schema(schema: &Schema) -> Result<iceberg::spec::Schema> {
    let fields = schema
        .columns
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let ty = Type::Primitive(iceberg_type(c)?);
            let id = i as i32 + 1;
            let f = if c.nullable {
                NestedField::optional(id, &c.name, ty)
            } else {
                NestedField::required(id, &c.name, ty)
            };
            Ok(Arc::new(f))
        })
        .collect::<Result<Vec<_>>>()?;
    iceberg::spec::Schema::builder()
        .with_fields(fields)
        .build()
        .map_err(|e| Error::schema(format!("the row schema is not an Iceberg schema: {e}")))
}

/// The row schema of an Iceberg table's schema (top-level primitive columns only).
pub fn schema_from_iceberg(schema: &iceberg::spec::Schema, table: &str) -> Result<Schema> {
    let columns = schema
        .as_struct()
        .fields()
        .iter()
        .map(|f| {
            let ty = match &*f.field_type {
                Type::Primitive(p) => match p {
                    PrimitiveType::Boolean => Some(ColumnType::Boolean),
                    PrimitiveType::Int => Some(ColumnType::Int32),
                    PrimitiveType::Long => Some(ColumnType::Int64),
                    PrimitiveType::Float => Some(ColumnType::Float32),
                    PrimitiveType::Double => Some(ColumnType::Float64),
                    PrimitiveType::Decimal { precision, scale } => Some(ColumnType::Decimal {
                        precision: u8::try_from(*precision).unwrap_or(u8::MAX),
                        scale: u8::try_from(*scale).unwrap_or(u8::MAX),
                    }),
                    PrimitiveType::String => Some(ColumnType::String),
                    PrimitiveType::Date => Some(ColumnType::Date),
                    PrimitiveType::Timestamp => Some(ColumnType::Timestamp),
                    PrimitiveType::Timestamptz => Some(ColumnType::Timestamptz),
                    _ => None,
                },
                _ => None,
            };
            let ty = ty.ok_or_else(|| {
                Error::schema(format!(
                    "the Iceberg table `{table}`'s column `{}` has type {}, which the iceberg sink does not write",
                    f.name, f.field_type
                ))
            })?;
            Ok(Column { name: f.name.clone(), ty, nullable: !f.required })
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(Schema { columns })
}

/// Checks that an existing table's columns are the row schema's: the same names in the same
/// order, of the same types and nullability. Every difference is named in the error.
pub fn check_table_schema(table: &Schema, rows: &Schema, name: &str) -> Result<()> {
    let mut problems = Vec::new();
    let word = |n: bool| if n { "nullable" } else { "not nullable" };
    for r in &rows.columns {
        match table.columns.iter().find(|t| t.name == r.name) {
            None => problems.push(format!("column `{}` is not in the table", r.name)),
            Some(t) => {
                if t.ty != r.ty {
                    problems.push(format!("column `{}` is {} in the table but {} in the rows", r.name, t.ty, r.ty));
                }
                if t.nullable != r.nullable {
                    problems.push(format!(
                        "column `{}` is {} in the table but {} in the rows",
                        r.name,
                        word(t.nullable),
                        word(r.nullable)
                    ));
                }
            }
        }
    }
    for t in &table.columns {
        if !rows.columns.iter().any(|r| r.name == t.name) {
            problems.push(format!("the table's column `{}` is not in the rows", t.name));
        }
    }
    if problems.is_empty() && table.columns.iter().map(|c| &c.name).ne(rows.columns.iter().map(|c| &c.name)) {
        problems.push("the columns are in a different order".to_string());
    }
    if problems.is_empty() {
        return Ok(());
    }
    Err(Error::schema(format!(
        "the Iceberg table `{name}` does not match the row schema: {}; fix the schema, or write to a new `table.name`",
        problems.join("; ")
    )))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorKind;
    #[test]
    fn row_schemas_map_to_iceberg_and_back() {
        let rows: Schema = "id:int64!,n:int32,f:float32,d:float64!,p:decimal(38,10),s:string,b:boolean,day:date,\
                            at:timestamp,utc:timestamptz!"
            .parse()
            .unwrap();
        let ice = iceberg_schema(&rows).unwrap();
        let ids: Vec<i32> = ice.as_struct().fields().iter().map(|f| f.id).collect();
        assert_eq!(ids, (1..=10).collect::<Vec<_>>());
        assert_eq!(schema_from_iceberg(&ice, "t").unwrap(), rows);
        check_table_schema(&rows, &rows, "t").unwrap();
        for bad in ["j:json", "b:bytes"] {
            let e = iceberg_schema(&bad.parse().unwrap()).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::Schema, "{bad}: {e}");
        }
        // A schema built in code is not checked by the parser.
        let wide = Column { name: "p".into(), ty: ColumnType::Decimal { precision: 39, scale: 2 }, nullable: true };
        let e = iceberg_schema(&Schema { columns: vec![wide] }).unwrap_err();
        assert!(e.to_string().contains("decimal(39,2)"), "{e}");
    }

    #[test]
    fn schema_mismatches_are_named() {
        let table: Schema = "id:int64!,name:string".parse().unwrap();
        let rows: Schema = "id:int32!,name:string!,extra:boolean".parse().unwrap();
        let e = check_table_schema(&table, &rows, "db.t").unwrap_err().to_string();
        assert!(e.contains("column `id` is int64 in the table but int32"), "{e}");
        assert!(e.contains("column `name` is nullable in the table but not nullable"), "{e}");
        assert!(e.contains("column `extra` is not in the table"), "{e}");
        let swapped: Schema = "name:string,id:int64!".parse().unwrap();
        let e = check_table_schema(&table, &swapped, "db.t").unwrap_err().to_string();
        assert!(e.contains("different order"), "{e}");
    }
}
