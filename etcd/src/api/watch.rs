//! `etcdserverpb.Watch`: one bidirectional stream multiplexing many watchers.
//! Every response carries a header; `created` responses come back in request order.

use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::Arc;

use futures::{Stream, StreamExt};
use prost::Message as _;
use tokio::sync::oneshot;
use tonic::{Request, Response, Status, Streaming};

use super::auth::{caller_of, ClientCn};
use crate::auth::Access;
use crate::proto::etcdserverpb::{
    watch_create_request::FilterType, watch_request::RequestUnion, watch_server::Watch,
    WatchCreateRequest, WatchRequest, WatchResponse,
};
use crate::rpctypes::EtcdError;
use crate::server::EtcdServer;
use crate::watch::{StreamQueue, WatchMessage, WatchSpec};

/// What a watch stream's caller presented when it opened the stream: its metadata (the
/// token) and its connection's client certificate name. Each create request is checked
/// with them against the auth state of that moment.
#[derive(Default)]
pub struct Credentials {
    /// The stream's request headers.
    pub headers: http::HeaderMap,
    /// The verified client certificate's common name.
    pub cn: Option<ClientCn>,
}

/// Whether the stream's caller may watch what `c` asks for (read access to its keys).
fn permitted(
    server: &EtcdServer,
    creds: &Credentials,
    c: &WatchCreateRequest,
) -> Result<(), EtcdError> {
    let auth = server.auth();
    if !auth.is_enabled() {
        return Ok(());
    }
    let who = caller_of(server, &creds.headers, creds.cn.as_ref())?;
    let key: &[u8] = if c.key.is_empty() { &[0] } else { &c.key };
    auth.check_range(who.as_ref(), key, &c.range_end, Access::Read)
}

/// etcd's cancel reason for a refused watch: the gRPC error as Go prints it.
fn refusal_reason(e: &EtcdError) -> String {
    format!("rpc error: code = {:?} desc = {e}", e.code())
}

/// The Watch service.
pub struct WatchService(pub Arc<EtcdServer>);

/// Turns a create request into a watcher spec.
pub fn spec_of(c: &WatchCreateRequest) -> WatchSpec {
    WatchSpec {
        key: c.key.clone(),
        range_end: c.range_end.clone(),
        start_revision: c.start_revision,
        prev_kv: c.prev_kv,
        no_put: c.filters.contains(&(FilterType::Noput as i32)),
        no_delete: c.filters.contains(&(FilterType::Nodelete as i32)),
        progress_notify: c.progress_notify,
        fragment: c.fragment,
    }
}

/// Runs one watch session: requests in, responses out. The session (and its watchers)
/// lives until the consumer of the responses goes away; the end of the request stream
/// alone does not end it (as in etcd). A response is produced when the consumer asks for
/// one, so a slow consumer leaves messages waiting in the stream's queue, where the events
/// of each watcher merge (see [`crate::watch::StreamQueue`]).
pub fn session(
    server: Arc<EtcdServer>,
    creds: Credentials,
    mut requests: impl Stream<Item = Result<WatchRequest, Status>> + Send + Unpin + 'static,
) -> impl Stream<Item = Result<WatchResponse, Status>> + Send {
    let (mut ws, queue) = server.hub().open_stream();
    // Dropped with the response stream: tells the request task its consumer is gone.
    let (consumer_alive, consumer_gone) = oneshot::channel::<()>();
    let srv = server.clone();
    tokio::spawn(async move {
        let mut consumer_gone = consumer_gone;
        let mut input_open = true;
        loop {
            tokio::select! {
                req = requests.next(), if input_open => match req {
                    Some(Ok(WatchRequest { request_union: Some(u) })) => match u {
                        RequestUnion::CreateRequest(c) => match permitted(&srv, &creds, &c) {
                            Ok(()) => {
                                let _ = ws.create(spec_of(&c), c.watch_id);
                            }
                            Err(e) => ws.refuse(refusal_reason(&e)),
                        },
                        RequestUnion::CancelRequest(c) => {
                            ws.cancel(c.watch_id);
                        }
                        RequestUnion::ProgressRequest(_) => {
                            ws.request_progress();
                        }
                    },
                    Some(Ok(_)) => {}
                    Some(Err(_)) => break,
                    None => input_open = false,
                },
                _ = &mut consumer_gone => break,
                _ = srv.hub().closed() => break,
            }
        }
        // Dropping `ws` removes the watchers and closes the queue.
    });
    let hub = server.hub().clone();
    let out = Outbound {
        hub_closed: Box::pin(async move { hub.closed().await }),
        server,
        queue,
        ready: VecDeque::new(),
        _consumer_alive: consumer_alive,
    };
    futures::stream::unfold(out, |mut out| async move {
        let resp = out.next().await?;
        Some((Ok(resp), out))
    })
}

/// The response side of a session.
struct Outbound {
    server: Arc<EtcdServer>,
    queue: Arc<StreamQueue>,
    /// Responses of one message (several when fragmented) not yet handed out.
    ready: VecDeque<WatchResponse>,
    /// Resolves at server shutdown (one subscription for the session, not one per message).
    hub_closed: Pin<Box<dyn std::future::Future<Output = ()> + Send>>,
    _consumer_alive: oneshot::Sender<()>,
}

impl Outbound {
    /// The next response; `None` when the session ended.
    async fn next(&mut self) -> Option<WatchResponse> {
        loop {
            if let Some(r) = self.ready.pop_front() {
                return Some(r);
            }
            let m = tokio::select! {
                m = self.queue.next() => m?,
                _ = &mut self.hub_closed => return None,
            };
            self.ready.extend(to_responses(&self.server, m));
        }
    }
}

fn to_responses(server: &EtcdServer, m: WatchMessage) -> Vec<WatchResponse> {
    let header = |rev: i64| Some(server.header(rev));
    match m {
        WatchMessage::Created { watch_id, revision } => vec![WatchResponse {
            header: header(revision),
            watch_id,
            created: true,
            ..Default::default()
        }],
        WatchMessage::CreateFailed { reason, revision } => vec![WatchResponse {
            header: header(revision),
            watch_id: -1,
            created: true,
            canceled: true,
            cancel_reason: reason,
            ..Default::default()
        }],
        WatchMessage::Canceled {
            watch_id,
            revision,
            compact_revision,
            reason,
        } => vec![WatchResponse {
            header: header(revision),
            watch_id,
            canceled: true,
            compact_revision,
            cancel_reason: reason,
            ..Default::default()
        }],
        WatchMessage::Progress { watch_id, revision } => vec![WatchResponse {
            header: header(revision),
            watch_id,
            ..Default::default()
        }],
        WatchMessage::Events {
            watch_id,
            revision,
            events,
            fragment,
        } => {
            let resp = WatchResponse {
                header: header(revision),
                watch_id,
                // The events' keys and values are shared (`Bytes`): a copy is cheap.
                events: events
                    .into_iter()
                    .map(|e| Arc::try_unwrap(e).unwrap_or_else(|e| (*e).clone()))
                    .collect(),
                ..Default::default()
            };
            let limit = server.settings().max_request_bytes + 512 * 1024;
            if fragment && resp.events.len() > 1 && resp.encoded_len() >= limit {
                fragments(resp, limit)
            } else {
                vec![resp]
            }
        }
    }
}

/// Splits a response into pieces under `limit` bytes; all but the last carry
/// `fragment = true`. A single event is never split.
fn fragments(mut resp: WatchResponse, limit: usize) -> Vec<WatchResponse> {
    let mut out = Vec::new();
    let events = std::mem::take(&mut resp.events);
    let mut cur = resp.clone();
    let mut size = cur.encoded_len();
    for ev in events {
        let sz = ev.encoded_len() + 8;
        if !cur.events.is_empty() && size + sz > limit {
            let mut done = std::mem::replace(&mut cur, resp.clone());
            done.fragment = true;
            out.push(done);
            size = cur.encoded_len();
        }
        size += sz;
        cur.events.push(ev);
    }
    cur.fragment = false;
    out.push(cur);
    out
}

type WatchStream = Pin<Box<dyn Stream<Item = Result<WatchResponse, Status>> + Send>>;

#[tonic::async_trait]
impl Watch for WatchService {
    type WatchStream = WatchStream;

    async fn watch(
        &self,
        r: Request<Streaming<WatchRequest>>,
    ) -> Result<Response<Self::WatchStream>, Status> {
        let require_leader = r
            .metadata()
            .get("hasleader")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v == "true");
        if require_leader && self.0.raft().status().leader() == 0 {
            return Err(crate::rpctypes::EtcdError::NoLeader.to_status());
        }
        let creds = Credentials {
            cn: r.extensions().get::<ClientCn>().cloned(),
            headers: r.metadata().clone().into_headers(),
        };
        let input = r.into_inner();
        Ok(Response::new(Box::pin(session(
            self.0.clone(),
            creds,
            input,
        ))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::mvccpb::{Event, KeyValue};

    #[test]
    fn fragments_split_but_keep_single_events() {
        let ev = |i: u8| Event {
            kv: Some(KeyValue {
                key: vec![i].into(),
                value: vec![0; 100].into(),
                ..Default::default()
            }),
            ..Default::default()
        };
        let resp = WatchResponse {
            watch_id: 3,
            events: (0..10).map(ev).collect(),
            ..Default::default()
        };
        let parts = fragments(resp, 350);
        assert!(parts.len() > 1);
        assert!(parts[..parts.len() - 1].iter().all(|p| p.fragment));
        assert!(!parts[parts.len() - 1].fragment);
        assert_eq!(parts.iter().map(|p| p.events.len()).sum::<usize>(), 10);
        assert!(parts.iter().all(|p| p.watch_id == 3));
    }
}
