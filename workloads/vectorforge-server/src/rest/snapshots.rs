//! Collection snapshots over Qdrant's paths: create, list, download, delete, recover
//! from a `file://` location under the server's snapshot directory, and upload. The
//! archives themselves are the collection service's; this file streams the bytes.

use std::collections::HashMap;

use axum::body::Body as HttpBody;
use axum::extract::{Multipart, Path, Query, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use serde_json::Value;

use super::{AppState, Body, Reply, reply};
use crate::error::{ServiceError, ServiceResult};
use crate::store::io;

pub async fn create(State(st): State<AppState>, Path(name): Path<String>) -> ServiceResult<Reply> {
    reply(st.service.create_snapshot(&name).await?)
}

pub async fn list(State(st): State<AppState>, Path(name): Path<String>) -> ServiceResult<Reply> {
    reply(st.service.list_snapshots(&name).await?)
}

pub async fn download(
    State(st): State<AppState>,
    Path((name, snap)): Path<(String, String)>,
) -> ServiceResult<Response> {
    let (file, len) = st.service.open_snapshot(&name, &snap).await?;
    let body = HttpBody::from_stream(tokio_util::io::ReaderStream::new(file));
    Ok((
        [
            (header::CONTENT_TYPE, "application/octet-stream".to_string()),
            (header::CONTENT_LENGTH, len.to_string()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{snap}\""),
            ),
        ],
        body,
    )
        .into_response())
}

pub async fn delete(
    State(st): State<AppState>,
    Path((name, snap)): Path<(String, String)>,
) -> ServiceResult<Reply> {
    st.service.delete_snapshot(&name, &snap).await?;
    reply(true)
}

/// `PUT .../snapshots/recover {"location": "file:///...", "checksum"?}`.
pub async fn recover(
    State(st): State<AppState>,
    Path(name): Path<String>,
    Body(body): Body<Value>,
) -> ServiceResult<Reply> {
    let location = body
        .get("location")
        .and_then(Value::as_str)
        .ok_or_else(|| ServiceError::invalid("Wrong input: location: expected a file:// URL"))?;
    let checksum = body
        .get("checksum")
        .and_then(Value::as_str)
        .map(str::to_string);
    st.service
        .recover_snapshot(&name, location, checksum)
        .await?;
    reply(true)
}

/// `POST .../snapshots/upload` with a multipart field `snapshot`: restores the collection
/// from the uploaded archive.
pub async fn upload(
    State(st): State<AppState>,
    Path(name): Path<String>,
    Query(q): Query<HashMap<String, String>>,
    mut form: Multipart,
) -> ServiceResult<Reply> {
    st.service.check_name(&name)?;
    let tmp = st.service.upload_path();
    let mut got = false;
    let written: ServiceResult<()> =
        async {
            let mut file = tokio::fs::File::create(&tmp)
                .await
                .map_err(|e| io(&tmp, e))?;
            while let Some(mut field) = form
                .next_field()
                .await
                .map_err(|e| ServiceError::invalid(format!("Wrong input: multipart body: {e}")))?
            {
                if field.name() != Some("snapshot") {
                    continue;
                }
                while let Some(chunk) = field.chunk().await.map_err(|e| {
                    ServiceError::invalid(format!("Wrong input: multipart body: {e}"))
                })? {
                    tokio::io::AsyncWriteExt::write_all(&mut file, &chunk)
                        .await
                        .map_err(|e| io(&tmp, e))?;
                }
                got = true;
            }
            tokio::io::AsyncWriteExt::flush(&mut file)
                .await
                .map_err(|e| io(&tmp, e))?;
            if got {
                Ok(())
            } else {
                Err(ServiceError::invalid(
                    "Wrong input: the multipart body has no `snapshot` field",
                ))
            }
        }
        .await;
    if let Err(e) = written {
        let _ = tokio::fs::remove_file(&tmp).await;
        return Err(e);
    }
    st.service
        .restore_upload(&name, tmp, q.get("checksum").cloned())
        .await?;
    reply(true)
}
