//! Helpers for asserting on gRPC errors returned through `etcd-client`.

use etcd_client::Error;
pub use tonic::Code;

/// The gRPC status code and message of `err`, if it is a gRPC status error.
pub fn status_of(err: &Error) -> Option<(Code, String)> {
    match err {
        Error::GRpcStatus(s) => Some((s.code(), s.message().to_string())),
        _ => None,
    }
}

/// Asserts that `res` failed with gRPC status `code` and exactly `message`.
#[track_caller]
pub fn assert_status<T: std::fmt::Debug>(res: Result<T, Error>, code: Code, message: &str) {
    match res {
        Ok(v) => panic!("expected error {code:?} {message:?}, got success: {v:?}"),
        Err(e) => match status_of(&e) {
            Some((c, m)) => {
                assert_eq!(
                    (c, m.as_str()),
                    (code, message),
                    "unexpected gRPC status (full error: {e:?})"
                );
            }
            None => panic!("expected gRPC status {code:?} {message:?}, got non-status error {e:?}"),
        },
    }
}
