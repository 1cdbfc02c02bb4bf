//! Work on every core, in order, with bounded memory: what create, restore, verify and a
//! repository's add share (extents read, compressed or checked on many threads, written
//! one after another).

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::mpsc::{channel, sync_channel};

use crate::error::ImageError;

/// How many threads compress or decompress: every core.
pub fn threads() -> usize {
    std::thread::available_parallelism().map_or(2, |n| n.get())
}

/// Runs `work` on `threads` threads over what `produce` yields, and hands the results to
/// `consume` in order; at most `window` items are between `produce` and `consume` at any
/// time (what bounds memory).
pub(crate) fn ordered<I: Send, O: Send>(
    threads: usize,
    window: usize,
    mut produce: impl FnMut(usize) -> Option<Result<I, ImageError>> + Send,
    work: impl Fn(usize, I) -> Result<O, ImageError> + Sync,
    mut consume: impl FnMut(usize, O) -> Result<(), ImageError>,
) -> Result<(), ImageError> {
    let (tokens_tx, tokens_rx) = sync_channel::<()>(window);
    for _ in 0..window {
        tokens_tx.send(()).expect("room for the window");
    }
    let (jobs_tx, jobs_rx) = sync_channel::<(usize, I)>(window);
    let (results_tx, results_rx) = channel::<(usize, Result<O, ImageError>)>();
    let jobs_rx = Mutex::new(jobs_rx);
    // Once the consumer has stopped (an error), workers only drain the jobs, so that the
    // producer is never left blocked on a full queue.
    let stopped = std::sync::atomic::AtomicBool::new(false);
    std::thread::scope(|scope| {
        // Owned here, so that an early return (an error) closes them: the producer and the
        // workers then stop instead of waiting for a consumer that is gone.
        let (tokens_tx, results_rx) = (tokens_tx, results_rx);
        let results_for_producer = results_tx.clone();
        scope.spawn(move || {
            let mut i = 0;
            while tokens_rx.recv().is_ok() {
                match produce(i) {
                    None => break,
                    Some(Ok(item)) => {
                        if jobs_tx.send((i, item)).is_err() {
                            break;
                        }
                    }
                    Some(Err(e)) => {
                        let _ = results_for_producer.send((i, Err(e)));
                        break;
                    }
                }
                i += 1;
            }
        });
        let work = &work;
        let jobs_rx = &jobs_rx;
        let stopped = &stopped;
        for _ in 0..threads.max(1) {
            let results_tx = results_tx.clone();
            scope.spawn(move || {
                loop {
                    let job = jobs_rx.lock().expect("not poisoned").recv();
                    let Ok((i, item)) = job else { break };
                    if stopped.load(std::sync::atomic::Ordering::Relaxed) {
                        continue;
                    }
                    if results_tx.send((i, work(i, item))).is_err() {
                        stopped.store(true, std::sync::atomic::Ordering::Relaxed);
                    }
                }
            });
        }
        drop(results_tx);
        let mut pending: BTreeMap<usize, Result<O, ImageError>> = BTreeMap::new();
        let mut next = 0;
        for (i, result) in results_rx.iter() {
            pending.insert(i, result);
            while let Some(result) = pending.remove(&next) {
                consume(next, result?)?;
                next += 1;
                let _ = tokens_tx.send(());
            }
        }
        Ok(())
    })
}
