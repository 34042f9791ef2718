//! A loop on its own thread that runs until told to stop, then hands back what it gathered.

use std::{
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    thread::JoinHandle,
};

/// Stops the loop when dropped, so a panicking test does not leave it running.
pub struct Background<T> {
    stop: Arc<AtomicBool>,
    handle: Option<JoinHandle<T>>,
}

impl<T: Send + 'static> Background<T> {
    /// Runs `work` on a new thread; it should return soon after its flag turns true.
    pub fn spawn(work: impl FnOnce(&AtomicBool) -> T + Send + 'static) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        Self {
            stop,
            handle: Some(std::thread::spawn(move || work(&flag))),
        }
    }

    /// Tells the loop to stop and waits for what it gathered.
    #[track_caller]
    pub fn finish(mut self) -> T {
        self.stop.store(true, Ordering::SeqCst);
        self.handle
            .take()
            .expect("finish runs once")
            .join()
            .expect("the background loop does not panic")
    }
}

impl<T> Drop for Background<T> {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}
