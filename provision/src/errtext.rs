//! Error messages with their causes.

/// The error and its causes on one line (`outer: cause: root cause`), skipping causes the
/// message already contains; reqwest's and tonic's top-level messages alone hide the TLS
/// or connection reason.
pub fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let m = c.to_string();
        if !s.contains(&m) {
            s.push_str(": ");
            s.push_str(&m);
        }
        cur = c.source();
    }
    s
}
