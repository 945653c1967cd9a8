//! systemd integration through sd-notify: `READY=1` once the member serves
//! linearizable requests, `STATUS=` lines, `STOPPING=1` on shutdown, and watchdog pings
//! at half of `WATCHDOG_USEC` when the unit asks for them. Without `NOTIFY_SOCKET`
//! every call is a no-op.

use std::time::Duration;

use sd_notify::NotifyState;

fn notify(states: &[NotifyState<'_>]) {
    if let Err(e) = sd_notify::notify(states) {
        tracing::warn!(error = %e, "failed to notify systemd");
    }
}

/// Reports readiness.
pub fn ready(status: &str) {
    notify(&[NotifyState::Ready, NotifyState::Status(status)]);
}

/// Reports a status line.
pub fn status(status: &str) {
    notify(&[NotifyState::Status(status)]);
}

/// Reports that shutdown has begun.
pub fn stopping() {
    notify(&[NotifyState::Stopping, NotifyState::Status("shutting down")]);
}

/// Pings the watchdog periodically if systemd enabled it for this process.
pub fn spawn_watchdog() {
    if let Some(timeout) = sd_notify::watchdog_enabled() {
        let period = (timeout / 2).max(Duration::from_millis(10));
        tokio::spawn(async move {
            let mut t = tokio::time::interval(period);
            loop {
                t.tick().await;
                notify(&[NotifyState::Watchdog]);
            }
        });
    }
}
