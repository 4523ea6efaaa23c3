//! The stream's bucket as an [`ObjectSource`]: objects read as they download, listings a page
//! at a time.

use std::time::Duration;

use async_trait::async_trait;
use aws_config::timeout::TimeoutConfig;
use aws_sdk_s3::Client;

use crate::aws::aws_error;
use crate::aws_calls::{S3_GET_OBJECT, S3_LIST_OBJECTS_V2};
use crate::ports::{ObjectBody, ObjectError, ObjectListing, ObjectRef, ObjectSource};

pub struct S3Objects {
    client: Client,
}

impl S3Objects {
    /// Path-style addressing with an endpoint of one's own (`AWS_ENDPOINT_URL`: moto, MinIO),
    /// where bucket host names do not resolve. An object downloads for as long as it takes, a
    /// stalled download fails after 30 s without a byte.
    pub fn new(sdk: &aws_config::SdkConfig) -> Self {
        let timeouts = TimeoutConfig::builder()
            .connect_timeout(Duration::from_secs(3))
            .read_timeout(Duration::from_secs(30))
            .build();
        let config = aws_sdk_s3::config::Builder::from(sdk)
            .force_path_style(sdk.endpoint_url().is_some())
            .timeout_config(timeouts)
            .build();
        Self { client: Client::from_conf(config) }
    }
}

#[async_trait]
impl ObjectSource for S3Objects {
    async fn open(&self, object: &ObjectRef) -> Result<ObjectBody, ObjectError> {
        let answer = self.client.get_object().bucket(&object.bucket).key(&object.key).send().await.map_err(|e| {
            ObjectError::Unreadable(format!(
                "cannot get s3://{}/{}: {}",
                object.bucket,
                object.key,
                aws_error(&S3_GET_OBJECT, &e)
            ))
        })?;
        let etag = answer.e_tag().unwrap_or_default().to_owned();
        Ok(ObjectBody { etag, bytes: Box::new(answer.body.into_async_read()) })
    }

    async fn list(
        &self,
        bucket: &str,
        prefix: Option<&str>,
        next: Option<String>,
    ) -> Result<ObjectListing, ObjectError> {
        let answer = self
            .client
            .list_objects_v2()
            .bucket(bucket)
            .set_prefix(prefix.map(str::to_owned))
            .set_continuation_token(next)
            .send()
            .await
            .map_err(|e| {
                ObjectError::Listing(format!("cannot list s3://{bucket}: {}", aws_error(&S3_LIST_OBJECTS_V2, &e)))
            })?;
        let objects = answer
            .contents()
            .iter()
            .filter_map(|o| o.key().map(|key| (key.to_owned(), o.e_tag().map(str::to_owned))))
            .collect();
        Ok(ObjectListing { objects, next: answer.next_continuation_token().map(str::to_owned) })
    }
}
