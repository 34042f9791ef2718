//! Stopping a child process: a polite signal, a grace period, then SIGKILL; always reaped.

use std::{
    process::Child,
    time::{Duration, Instant},
};

use nix::sys::signal::{kill, Signal};

/// Stops a PostgreSQL server process with `signal` (SIGINT fast, SIGQUIT immediate), giving it
/// ten seconds before SIGKILL.
pub fn stop_server(child: &mut Child, signal: Signal) {
    stop_child(child, signal, Duration::from_secs(10));
}

pub fn stop_child(child: &mut Child, signal: Signal, grace: Duration) {
    if let Ok(Some(_)) = child.try_wait() {
        return; // already reaped: its pid may belong to another process by now
    }
    let _ = kill(nix::unistd::Pid::from_raw(child.id() as i32), signal);
    let deadline = Instant::now() + grace;
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
}
