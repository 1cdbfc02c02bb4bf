//! Versions no longer served are freed on a thread of their own: dropping a 10,000-name
//! zone's tables and records takes milliseconds, which must not land on the update that
//! replaced it or on the answering thread that happened to hold the last reference.

use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

/// How often held versions are looked at again while any wait.
const POLL: Duration = Duration::from_millis(10);

/// Hands `old` to the freeing thread, which drops it once nobody else holds it (an
/// answering thread lets go at its next batch). Without that thread (it could not be
/// started) it is dropped here.
pub fn retire<T: Send + Sync + 'static>(old: Arc<T>) {
    let boxed: Box<dyn Held> = Box::new(old);
    match sender() {
        Some(tx) => {
            if let Err(back) = tx.lock().expect("not poisoned").send(boxed) {
                drop(back.0);
            }
        }
        None => drop(boxed),
    }
}

/// Something the freeing thread holds until it is the last holder.
trait Held: Send {
    /// Whether this is the last reference (dropping it frees).
    fn last(&self) -> bool;
}

impl<T: Send + Sync> Held for Arc<T> {
    fn last(&self) -> bool {
        Arc::strong_count(self) == 1 && Arc::weak_count(self) == 0
    }
}

/// The way to the freeing thread.
type ToFreeing = Mutex<Sender<Box<dyn Held>>>;

fn sender() -> Option<&'static ToFreeing> {
    static SENDER: OnceLock<Option<ToFreeing>> = OnceLock::new();
    SENDER
        .get_or_init(|| {
            let (tx, rx) = std::sync::mpsc::channel();
            let started = std::thread::Builder::new().name("lct-dns-free".into()).spawn(move || free_loop(rx));
            match started {
                Ok(_) => Some(Mutex::new(tx)),
                Err(e) => {
                    tracing::warn!("no thread to free old zone versions ({e}): they are freed where they are let go");
                    None
                }
            }
        })
        .as_ref()
}

fn free_loop(rx: Receiver<Box<dyn Held>>) {
    let mut waiting: Vec<Box<dyn Held>> = Vec::new();
    loop {
        let next = if waiting.is_empty() {
            rx.recv().map_err(|_| RecvTimeoutError::Disconnected)
        } else {
            rx.recv_timeout(POLL)
        };
        match next {
            Ok(held) => waiting.push(held),
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => return,
        }
        // Freed here, on this thread: the answering ones only dropped a count.
        waiting.retain(|held| !held.last());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Records the thread it is dropped on.
    struct Marked(Arc<Mutex<Option<String>>>);

    impl Drop for Marked {
        fn drop(&mut self) {
            *self.0.lock().unwrap() = std::thread::current().name().map(str::to_string);
        }
    }

    #[test]
    fn a_retired_version_is_freed_on_the_freeing_thread_once_let_go() {
        let dropped_on = Arc::new(Mutex::new(None));
        let version = Arc::new(Marked(dropped_on.clone()));
        let still_answering = version.clone();
        retire(version);
        std::thread::sleep(POLL * 5);
        assert_eq!(*dropped_on.lock().unwrap(), None, "held by an answering thread: not freed");
        drop(still_answering); // the answering thread's next batch
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while dropped_on.lock().unwrap().is_none() && std::time::Instant::now() < deadline {
            std::thread::sleep(POLL);
        }
        assert_eq!(dropped_on.lock().unwrap().as_deref(), Some("lct-dns-free"), "freed off the answer path");
    }
}
