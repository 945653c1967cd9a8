//! Raft messages on the wire: envelopes, and a `MsgSnapshot` split into chunks and put
//! back together.

use ::raft::prelude::Message;
use bytes::{Bytes, BytesMut};
use protobuf::Message as _;

use crate::proto::etcdpeer::{snapshot_chunk::Chunk, PeerEnvelope, SnapshotChunk, SnapshotHeader};

/// Wraps `msg` for the wire (raft-rs encoding, protobuf 2).
pub(super) fn envelope(
    cluster_id: u64,
    msg: &Message,
) -> Result<PeerEnvelope, protobuf::ProtobufError> {
    Ok(PeerEnvelope {
        cluster_id,
        from: msg.from,
        to: msg.to,
        message: Bytes::from(msg.write_to_bytes()?),
    })
}

/// Decodes the raft message an envelope carries.
pub(super) fn decode(env: &PeerEnvelope) -> Result<Message, protobuf::ProtobufError> {
    Message::parse_from_bytes(&env.message)
}

/// Splits a `MsgSnapshot` into a header (the message without its snapshot data) and
/// data chunks of at most `chunk_size` bytes (zero-copy slices of the data).
pub(super) fn snapshot_chunks(
    cluster_id: u64,
    mut msg: Message,
    chunk_size: usize,
) -> Result<Vec<SnapshotChunk>, protobuf::ProtobufError> {
    let data = std::mem::take(&mut msg.mut_snapshot().data);
    let header = SnapshotHeader {
        envelope: Some(envelope(cluster_id, &msg)?),
        data_size: data.len() as u64,
    };
    let chunk_size = chunk_size.max(1);
    let mut chunks = Vec::with_capacity(1 + data.len().div_ceil(chunk_size));
    chunks.push(SnapshotChunk {
        chunk: Some(Chunk::Header(header)),
    });
    let mut at = 0;
    while at < data.len() {
        let end = (at + chunk_size).min(data.len());
        chunks.push(SnapshotChunk {
            chunk: Some(Chunk::Data(data.slice(at..end))),
        });
        at = end;
    }
    Ok(chunks)
}

/// Why a snapshot stream could not be reassembled.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub(super) enum AssembleError {
    /// More data arrived than the header announced.
    #[error("snapshot data exceeds the announced {0} bytes")]
    TooLong(u64),
    /// The stream ended early.
    #[error("snapshot data truncated: {got} of {want} bytes")]
    Truncated {
        /// Bytes received.
        got: u64,
        /// Bytes announced.
        want: u64,
    },
    /// A chunk that is neither header-first nor data.
    #[error("unexpected snapshot chunk")]
    Unexpected,
}

/// Collects the data chunks that follow a snapshot header.
pub(super) struct SnapshotAssembler {
    want: u64,
    data: BytesMut,
}

impl SnapshotAssembler {
    /// Expects `data_size` bytes (memory grows with what actually arrives).
    pub(super) fn new(data_size: u64) -> Self {
        const PREALLOC_LIMIT: u64 = 64 * 1024 * 1024;
        SnapshotAssembler {
            want: data_size,
            data: BytesMut::with_capacity(data_size.min(PREALLOC_LIMIT) as usize),
        }
    }

    /// Adds the next chunk.
    pub(super) fn push(&mut self, chunk: SnapshotChunk) -> Result<(), AssembleError> {
        let Some(Chunk::Data(d)) = chunk.chunk else {
            return Err(AssembleError::Unexpected);
        };
        if self.data.len() as u64 + d.len() as u64 > self.want {
            return Err(AssembleError::TooLong(self.want));
        }
        self.data.extend_from_slice(&d);
        Ok(())
    }

    /// Puts the collected data back into `msg` once all of it arrived.
    pub(super) fn finish(self, msg: &mut Message) -> Result<(), AssembleError> {
        let got = self.data.len() as u64;
        if got != self.want {
            return Err(AssembleError::Truncated {
                got,
                want: self.want,
            });
        }
        msg.mut_snapshot().data = self.data.freeze();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use ::raft::prelude::MessageType;

    use super::*;

    fn snapshot_msg(len: usize) -> Message {
        let mut m = Message::default();
        m.set_msg_type(MessageType::MsgSnapshot);
        m.from = 1;
        m.to = 2;
        m.term = 7;
        let data: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
        m.mut_snapshot().data = Bytes::from(data);
        m.mut_snapshot().mut_metadata().index = 42;
        m.mut_snapshot().mut_metadata().term = 6;
        m
    }

    #[test]
    fn envelope_round_trip() {
        let mut m = Message::default();
        m.set_msg_type(MessageType::MsgAppend);
        m.from = 3;
        m.to = 9;
        m.commit = 5;
        let env = envelope(0xabc, &m).unwrap();
        assert_eq!((env.cluster_id, env.from, env.to), (0xabc, 3, 9));
        assert_eq!(decode(&env).unwrap(), m);
    }

    #[test]
    fn snapshot_split_and_reassembled() {
        for len in [0usize, 1, 10, 11, 25] {
            let m = snapshot_msg(len);
            let chunks = snapshot_chunks(5, m.clone(), 10).unwrap();
            assert_eq!(chunks.len(), 1 + len.div_ceil(10), "len {len}");
            let mut it = chunks.into_iter();
            let Some(Chunk::Header(h)) = it.next().unwrap().chunk else {
                panic!("header first")
            };
            assert_eq!(h.data_size, len as u64);
            let env = h.envelope.unwrap();
            assert_eq!(env.cluster_id, 5);
            let mut got = decode(&env).unwrap();
            assert!(got.get_snapshot().data.is_empty(), "header carries no data");
            let mut asm = SnapshotAssembler::new(h.data_size);
            for c in it {
                asm.push(c).unwrap();
            }
            asm.finish(&mut got).unwrap();
            assert_eq!(got, m);
        }
    }

    #[test]
    fn reassembly_checks_sizes() {
        let data = |n: usize| SnapshotChunk {
            chunk: Some(Chunk::Data(Bytes::from(vec![0u8; n]))),
        };
        let mut asm = SnapshotAssembler::new(4);
        asm.push(data(3)).unwrap();
        assert_eq!(asm.push(data(2)), Err(AssembleError::TooLong(4)));
        let mut asm = SnapshotAssembler::new(4);
        asm.push(data(3)).unwrap();
        let mut m = snapshot_msg(0);
        assert_eq!(
            asm.finish(&mut m),
            Err(AssembleError::Truncated { got: 3, want: 4 })
        );
        let mut asm = SnapshotAssembler::new(4);
        assert_eq!(
            asm.push(SnapshotChunk { chunk: None }),
            Err(AssembleError::Unexpected)
        );
    }
}
