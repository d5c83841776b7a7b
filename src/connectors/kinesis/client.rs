//! The Kinesis API client: `PutRecords` is a SigV4-signed JSON POST
//! (`X-Amz-Target: Kinesis_20131202.<action>`), signed with `aws-sigv4` and sent with
//! `reqwest`; an error answer becomes an error of the kind its AWS error type calls for.

use super::config::{AwsCredentials, KinesisConfig};
use crate::error::{Error, ErrorKind, Result};
use crate::secret::Secret;
use serde_json::Value;
use std::time::SystemTime;

/// A minimal Kinesis API client: one signed JSON POST per call.
#[derive(Clone)]
pub struct KinesisClient {
    http: reqwest::Client,
    endpoint: String,
    region: String,
    identity: aws_smithy_runtime_api::client::identity::Identity,
}

impl std::fmt::Debug for KinesisClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KinesisClient").field("endpoint", &self.endpoint).field("region", &self.region).finish()
    }
}

/// A failed API call: the HTTP status (0 if none) and the error type AWS named.
fn api_error(status: u16, body: &[u8], action: &str) -> Error {
    let v: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    let ty = v["__type"].as_str().unwrap_or("").rsplit('#').next().unwrap_or("").to_string();
    let msg = v["message"].as_str().or(v["Message"].as_str()).unwrap_or("").to_string();
    let retriable = status >= 500
        || matches!(
            ty.as_str(),
            "ProvisionedThroughputExceededException"
                | "LimitExceededException"
                | "ThrottlingException"
                | "InternalFailure"
                | "ServiceUnavailable"
        );
    let kind = if retriable { ErrorKind::Retriable } else { ErrorKind::Fatal };
    let hint = match ty.as_str() {
        "ResourceNotFoundException" => "; create the stream or fix option `stream`",
        "UnrecognizedClientException" | "InvalidSignatureException" | "AccessDeniedException" => {
            "; check the credentials and region"
        }
        _ => "",
    };
    Error::new(kind, format!("Kinesis {action}: HTTP {status} {ty}: {msg}{hint}"))
}

impl KinesisClient {
    /// A client for `config`'s endpoint and region; credentials from the config or the
    /// environment.
    pub fn new(config: &KinesisConfig) -> Result<Self> {
        let creds = match &config.credentials {
            Some(c) => c.clone(),
            None => {
                let var = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
                match (var("AWS_ACCESS_KEY_ID"), var("AWS_SECRET_ACCESS_KEY")) {
                    (Some(access_key_id), Some(secret_access_key)) => AwsCredentials {
                        access_key_id: Secret::new(access_key_id),
                        secret_access_key: Secret::new(secret_access_key),
                        session_token: var("AWS_SESSION_TOKEN").map(Secret::new),
                    },
                    _ => {
                        return Err(Error::config(
                            "Kinesis: no credentials: set `aws.credentials.access_key_id` and \
                             `aws.credentials.secret_access_key`, or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY",
                        ))
                    }
                }
            }
        };
        let identity = aws_credential_types::Credentials::new(
            creds.access_key_id.expose(),
            creds.secret_access_key.expose(),
            creds.session_token.as_ref().map(|t| t.expose().to_string()),
            None,
            "differential-sinks",
        )
        .into();
        // reqwest is built without a bundled crypto provider; use ring, which the other
        // connectors use too. Installing twice is harmless.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let http = reqwest::Client::builder()
            .timeout(std::time::Duration::from_secs(30))
            .build()
            .map_err(|e| Error::new(ErrorKind::Fatal, format!("Kinesis: building the HTTP client: {e}")))?;
        Ok(KinesisClient { http, endpoint: config.endpoint.clone(), region: config.region.clone(), identity })
    }

    /// Calls `action` (e.g. `PutRecords`) with a JSON body, returning the JSON answer.
    pub async fn call(&self, action: &str, body: Vec<u8>) -> Result<Value> {
        use aws_sigv4::http_request::{sign, SignableBody, SignableRequest, SigningSettings};
        let target = format!("Kinesis_20131202.{action}");
        let content_type = "application/x-amz-json-1.1";
        let headers = [("content-type", content_type), ("x-amz-target", target.as_str())];
        let params = aws_sigv4::sign::v4::SigningParams::builder()
            .identity(&self.identity)
            .region(&self.region)
            .name("kinesis")
            .time(SystemTime::now())
            .settings(SigningSettings::default())
            .build()
            .map_err(|e| Error::config(format!("Kinesis: signing parameters: {e}")))?
            .into();
        let signable =
            SignableRequest::new("POST", &self.endpoint, headers.iter().copied(), SignableBody::Bytes(&body))
                .map_err(|e| Error::config(format!("Kinesis: endpoint `{}`: {e}", self.endpoint)))?;
        let (instructions, _) = sign(signable, &params)
            .map_err(|e| Error::new(ErrorKind::Fatal, format!("Kinesis: signing: {e}")))?
            .into_parts();
        let mut req =
            self.http.post(&self.endpoint).header("content-type", content_type).header("x-amz-target", &target);
        for (k, v) in instructions.headers() {
            req = req.header(k, v);
        }
        let resp = req
            .body(body)
            .send()
            .await
            .map_err(|e| Error::new(ErrorKind::Retriable, format!("Kinesis {action}: {e}")))?;
        let status = resp.status().as_u16();
        let bytes =
            resp.bytes().await.map_err(|e| Error::new(ErrorKind::Retriable, format!("Kinesis {action}: {e}")))?;
        if status != 200 {
            return Err(api_error(status, &bytes, action));
        }
        serde_json::from_slice(&bytes)
            .map_err(|e| Error::new(ErrorKind::Retriable, format!("Kinesis {action}: unreadable answer: {e}")))
    }
}
