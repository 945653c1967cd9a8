//! `etcdserverpb.Maintenance`: status, alarms, hashes, snapshot, defragment, leader moves.

use std::io::Read;
use std::pin::Pin;
use std::sync::Arc;

use futures::Stream;
use tonic::{Request, Response, Status};

use crate::proto::etcdserverpb::{
    maintenance_server::Maintenance, AlarmRequest, AlarmResponse, DefragmentRequest,
    DefragmentResponse, DowngradeRequest, DowngradeResponse, HashKvRequest, HashKvResponse,
    HashRequest, HashResponse, MoveLeaderRequest, MoveLeaderResponse, SnapshotRequest,
    SnapshotResponse, StatusRequest, StatusResponse,
};
use crate::rpctypes::EtcdError;
use crate::server::{facade::SERVER_VERSION, snapshot, EtcdServer};

/// The Maintenance service.
pub struct MaintenanceService(pub Arc<EtcdServer>);

type SnapshotStream = Pin<Box<dyn Stream<Item = Result<SnapshotResponse, Status>> + Send>>;

const CHUNK: usize = 32 * 1024;

#[tonic::async_trait]
impl Maintenance for MaintenanceService {
    async fn alarm(&self, r: Request<AlarmRequest>) -> Result<Response<AlarmResponse>, Status> {
        Ok(Response::new(self.0.alarm(r.into_inner()).await?))
    }

    async fn status(&self, _r: Request<StatusRequest>) -> Result<Response<StatusResponse>, Status> {
        Ok(Response::new(self.0.status()))
    }

    async fn defragment(
        &self,
        r: Request<DefragmentRequest>,
    ) -> Result<Response<DefragmentResponse>, Status> {
        super::auth::require_admin(&self.0, &r)?;
        tracing::info!("starting defragment");
        self.0.defragment().await?;
        tracing::info!("finished defragment");
        Ok(Response::new(DefragmentResponse {
            header: Some(self.0.header(0)),
        }))
    }

    async fn hash(&self, r: Request<HashRequest>) -> Result<Response<HashResponse>, Status> {
        super::auth::require_admin(&self.0, &r)?;
        let r = self.0.hash_kv(0).await?;
        Ok(Response::new(HashResponse {
            header: r.header,
            hash: r.hash,
        }))
    }

    async fn hash_kv(&self, r: Request<HashKvRequest>) -> Result<Response<HashKvResponse>, Status> {
        super::auth::require_admin(&self.0, &r)?;
        Ok(Response::new(
            self.0.hash_kv(r.into_inner().revision).await?,
        ))
    }

    type SnapshotStream = SnapshotStream;

    async fn snapshot(
        &self,
        r: Request<SnapshotRequest>,
    ) -> Result<Response<Self::SnapshotStream>, Status> {
        super::auth::require_admin(&self.0, &r)?;
        let storage = self.0.storage().clone();
        // Scratch space beside the database directory (never inside it).
        let scratch = storage
            .path()
            .parent()
            .unwrap_or(storage.path())
            .join("snapshot-tmp");
        let snap = tokio::task::spawn_blocking(move || snapshot::create(&storage, &scratch))
            .await
            .map_err(|e| EtcdError::Internal(e.to_string()).to_status())?
            .map_err(|e| EtcdError::Internal(e.to_string()).to_status())?;
        tracing::info!(size = snap.size, "sending database snapshot to client");
        let header = self.0.header(0);
        let (tx, rx) = tokio::sync::mpsc::channel(4);
        tokio::task::spawn_blocking(move || {
            let mut file = snap.file;
            let mut remaining = snap.size;
            let mut first = true;
            loop {
                let mut buf = vec![0u8; CHUNK];
                let n = match file.read(&mut buf) {
                    Ok(n) => n,
                    Err(e) => {
                        let _ = tx.blocking_send(Err(Status::internal(e.to_string())));
                        return;
                    }
                };
                if n == 0 {
                    return;
                }
                buf.truncate(n);
                remaining -= n as u64;
                let resp = SnapshotResponse {
                    header: Some(header),
                    remaining_bytes: remaining,
                    blob: buf,
                    version: if first {
                        SERVER_VERSION.to_string()
                    } else {
                        String::new()
                    },
                };
                first = false;
                if tx.blocking_send(Ok(resp)).is_err() {
                    return;
                }
            }
        });
        Ok(Response::new(Box::pin(
            tokio_stream::wrappers::ReceiverStream::new(rx),
        )))
    }

    async fn move_leader(
        &self,
        r: Request<MoveLeaderRequest>,
    ) -> Result<Response<MoveLeaderResponse>, Status> {
        self.0.move_leader(r.into_inner().target_id).await?;
        Ok(Response::new(MoveLeaderResponse {
            header: Some(self.0.header(0)),
        }))
    }

    async fn downgrade(
        &self,
        _r: Request<DowngradeRequest>,
    ) -> Result<Response<DowngradeResponse>, Status> {
        Err(EtcdError::NotCapable.to_status())
    }
}
