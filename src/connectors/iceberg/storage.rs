//! Where the Iceberg connector's files go: the local file system, or S3 through iceberg-rust's
//! OpenDAL storage (feature `iceberg-s3`). The catalog, a SQLite file or a REST catalog server, is
//! the same either way; `warehouse.path` picks the storage every table's `FileIO` gets.

use super::config::IcebergConfig;
use crate::connectors::lakehouse::s3::StorageLocation;
use crate::error::{Error, Result};
use iceberg::io::{LocalFsStorageFactory, StorageFactory};
use std::sync::Arc;

/// The storage factory the SQL catalog hands to every table's `FileIO`.
pub(crate) fn factory(config: &IcebergConfig) -> Result<Arc<dyn StorageFactory>> {
    match &config.warehouse {
        StorageLocation::Local(_) => Ok(Arc::new(LocalFsStorageFactory)),
        #[cfg(feature = "iceberg-s3")]
        StorageLocation::S3 { .. } => {
            Ok(Arc::new(iceberg_storage_opendal::OpenDalStorageFactory::S3 { customized_credential_load: None }))
        }
        #[cfg(not(feature = "iceberg-s3"))]
        StorageLocation::S3 { url, .. } => Err(Error::config(format!(
            "option `warehouse.path` = `{url}`: `s3://` warehouses need the `iceberg-s3` cargo feature of \
             differential-sinks, which this build lacks"
        ))),
    }
}

/// The catalog properties that configure the storage (iceberg's `s3.*` property names); none for
/// a local warehouse. The catalog forwards them to the `FileIO` of every table it loads.
pub(crate) fn props(config: &IcebergConfig) -> Vec<(String, String)> {
    let StorageLocation::S3 { options, .. } = &config.warehouse else { return Vec::new() };
    use iceberg::io::{
        S3_ACCESS_KEY_ID, S3_DISABLE_CONFIG_LOAD, S3_DISABLE_EC2_METADATA, S3_ENDPOINT, S3_PATH_STYLE_ACCESS,
        S3_REGION, S3_SECRET_ACCESS_KEY,
    };
    let mut p = vec![
        (S3_REGION.to_string(), options.region.clone()),
        (S3_PATH_STYLE_ACCESS.to_string(), options.path_style.to_string()),
    ];
    if let Some(e) = &options.endpoint {
        p.push((S3_ENDPOINT.to_string(), e.clone()));
    }
    if let Some(c) = &options.credentials {
        p.push((S3_ACCESS_KEY_ID.to_string(), c.access_key.clone()));
        p.push((S3_SECRET_ACCESS_KEY.to_string(), c.secret_key.clone()));
        // Static credentials: no look-ups in ~/.aws or the instance metadata service.
        p.push((S3_DISABLE_CONFIG_LOAD.to_string(), "true".to_string()));
        p.push((S3_DISABLE_EC2_METADATA.to_string(), "true".to_string()));
    }
    p
}

/// An error reaching the storage on S3 says which options decide where the sink connects and as
/// whom (configuration, schema and progress errors are left as they are).
pub(crate) fn explain(config: &IcebergConfig, e: Error) -> Error {
    use crate::error::ErrorKind;
    match &config.warehouse {
        StorageLocation::S3 { options, .. } if matches!(e.kind(), ErrorKind::Retriable | ErrorKind::Fatal) => {
            let endpoint = options.endpoint.as_deref().unwrap_or("AWS");
            Error::new(
                e.kind(),
                format!(
                    "{e} (check `warehouse.path`'s bucket, `s3.endpoint` = `{endpoint}`, `s3.region` = `{}` and the \
                     credentials `s3.access.key` / `s3.secret.key`)",
                    options.region
                ),
            )
        }
        _ => e,
    }
}
