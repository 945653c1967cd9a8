//! The client port's HTTP/2 settings from etcd's flags: `--max-concurrent-streams` (the
//! streams one connection may have open at once) and `--grpc-keepalive-interval` /
//! `--grpc-keepalive-timeout` (the server pings an idle connection, and closes it when
//! the ping is not answered). Each test passes against etcd 3.4 too.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use anyhow::Result;
use etcd_tests::{EtcdOptions, EtcdProcess};

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime")
}

/// With `--max-concurrent-streams=1` an open watch takes the connection's one stream: a
/// put on the same connection waits until the watch is gone. Without the flag it does not.
#[test]
fn max_concurrent_streams_limits_streams_per_connection() -> Result<()> {
    for limited in [false, true] {
        let mut opts = EtcdOptions::default();
        if limited {
            opts = opts.arg("--max-concurrent-streams=1");
        }
        let etcd = EtcdProcess::start(opts)?;
        rt().block_on(async {
            let mut c = etcd.client().await?;
            let stream = c.watch("w", None).await?;
            let put = tokio::time::timeout(Duration::from_secs(2), c.put("k", "v", None)).await;
            if !limited {
                assert!(
                    matches!(put, Ok(Ok(_))),
                    "without a limit a put goes beside a watch: {put:?}"
                );
                return anyhow::Ok(());
            }
            assert!(
                put.is_err(),
                "the put got a second stream beside the watch: {put:?}"
            );
            drop(stream);
            let put = tokio::time::timeout(Duration::from_secs(10), c.put("k", "v", None)).await;
            assert!(
                matches!(put, Ok(Ok(_))),
                "the put did not go once the watch was gone: {put:?}"
            );
            anyhow::Ok(())
        })?;
    }
    Ok(())
}

/// One HTTP/2 frame header: (type, flags, payload).
fn read_frame(s: &mut TcpStream) -> std::io::Result<Option<(u8, u8, Vec<u8>)>> {
    let mut h = [0u8; 9];
    match s.read_exact(&mut h) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e),
    }
    let len = u32::from_be_bytes([0, h[0], h[1], h[2]]) as usize;
    let mut payload = vec![0u8; len];
    s.read_exact(&mut payload)?;
    Ok(Some((h[3], h[4], payload)))
}

const SETTINGS: u8 = 4;
const PING: u8 = 6;
const GOAWAY: u8 = 7;
const ACK: u8 = 1;

/// What an idle HTTP/2 connection that never answers pings sees within `wait`: whether
/// the server pinged it and whether the server then closed it (GOAWAY or end of stream).
fn idle_connection(port: u16, wait: Duration) -> Result<(bool, bool)> {
    let mut s = TcpStream::connect(("127.0.0.1", port))?;
    s.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")?;
    s.write_all(&[0, 0, 0, SETTINGS, 0, 0, 0, 0, 0])?;
    let deadline = Instant::now() + wait;
    let (mut pinged, mut closed) = (false, false);
    while !closed {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        s.set_read_timeout(Some(left))?;
        match read_frame(&mut s) {
            Ok(Some((SETTINGS, flags, _))) if flags & ACK == 0 => {
                s.write_all(&[0, 0, 0, SETTINGS, ACK, 0, 0, 0, 0])?;
            }
            Ok(Some((PING, flags, _))) if flags & ACK == 0 => pinged = true,
            Ok(Some((GOAWAY, _, _))) | Ok(None) => closed = true,
            Ok(Some(_)) => {}
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                break
            }
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => closed = true,
            Err(e) => return Err(e.into()),
        }
    }
    Ok((pinged, closed))
}

/// `--grpc-keepalive-interval=1s --grpc-keepalive-timeout=1s`: an idle connection is
/// pinged, and closed when it does not answer. With the defaults (2 h, 20 s) the same
/// connection is left alone.
#[test]
fn keepalive_pings_idle_connections_and_closes_silent_ones() -> Result<()> {
    let etcd = EtcdProcess::start(
        EtcdOptions::default()
            .arg("--grpc-keepalive-interval=1s")
            .arg("--grpc-keepalive-timeout=1s"),
    )?;
    let (pinged, closed) = idle_connection(etcd.client_port(), Duration::from_secs(10))?;
    assert!(pinged, "no keepalive ping within 10 s at a 1 s interval");
    assert!(closed, "a connection that never answered was not closed");
    let log = etcd.stderr_log();
    etcd_tests::util::assert_acted_on(&log, "--grpc-keepalive-interval");
    etcd_tests::util::assert_acted_on(&log, "--grpc-keepalive-timeout");
    drop(etcd);

    let etcd = EtcdProcess::start(EtcdOptions::default())?;
    let (pinged, closed) = idle_connection(etcd.client_port(), Duration::from_secs(4))?;
    assert!(
        !pinged && !closed,
        "default keepalive (2 h): pinged {pinged}, closed {closed}"
    );
    Ok(())
}
