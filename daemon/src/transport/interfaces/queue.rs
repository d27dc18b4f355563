//! The outbound queue of one interface: strict priority (control, then data, then announces)
//! and a byte budget instead of an unbounded buffer. When the budget is spent, the frame that
//! matters least — the oldest of the lowest priority present — is dropped and counted, so a
//! slow link sheds announce floods before it delays a link handshake.

use std::{collections::VecDeque, sync::Mutex};

use mehr_transport::router::Priority;
use tokio::sync::Notify;

/// Default byte budget of an interface queue.
pub const DEFAULT_QUEUE_BYTES: usize = 1 << 20;

const LEVELS: usize = 3;

fn level(priority: Priority) -> usize {
    match priority {
        Priority::Control => 0,
        Priority::Data => 1,
        Priority::Announce => 2,
    }
}

#[derive(Default)]
struct Levels {
    frames: [VecDeque<Vec<u8>>; LEVELS],
    bytes: usize,
    closed: bool,
}

/// A bounded, prioritised frame queue shared by the router side (push) and the interface's
/// writer task (pop).
pub struct OutboundQueue {
    inner: Mutex<Levels>,
    ready: Notify,
    capacity: usize,
}

/// What [`OutboundQueue::push`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PushOutcome {
    /// Frames dropped to make room (possibly the pushed one).
    pub dropped: usize,
}

impl OutboundQueue {
    /// A queue holding at most `capacity` bytes.
    pub fn new(capacity: usize) -> Self {
        OutboundQueue {
            inner: Mutex::new(Levels::default()),
            ready: Notify::new(),
            capacity,
        }
    }

    /// Queues `frame`; drops lower-priority (or, failing that, older same-priority) frames
    /// while over budget. A frame larger than the whole budget is dropped.
    pub fn push(&self, frame: Vec<u8>, priority: Priority) -> PushOutcome {
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        if inner.closed || frame.len() > self.capacity {
            return PushOutcome { dropped: 1 };
        }
        let mut dropped = 0;
        let incoming = level(priority);
        while inner.bytes + frame.len() > self.capacity {
            // The least important level that holds anything at or below the new frame's rank.
            let Some(victim) = (incoming..LEVELS)
                .rev()
                .find(|l| !inner.frames[*l].is_empty())
            else {
                return PushOutcome {
                    dropped: dropped + 1,
                };
            };
            let removed = inner.frames[victim].pop_front().map_or(0, |f| f.len());
            inner.bytes -= removed;
            dropped += 1;
        }
        inner.bytes += frame.len();
        inner.frames[incoming].push_back(frame);
        drop(inner);
        self.ready.notify_one();
        PushOutcome { dropped }
    }

    /// Takes the most important frame, waiting for one. `None` once the queue is closed.
    pub async fn pop(&self) -> Option<Vec<u8>> {
        loop {
            let notified = self.ready.notified();
            {
                let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
                if inner.closed {
                    return None;
                }
                for l in 0..LEVELS {
                    if let Some(frame) = inner.frames[l].pop_front() {
                        inner.bytes -= frame.len();
                        return Some(frame);
                    }
                }
            }
            notified.await;
        }
    }

    /// Takes frames without waiting, most important first, while their total stays within
    /// `max_bytes` (at least one frame if any is queued). Lets a stream writer send many
    /// frames in one system call.
    pub fn pop_ready(&self, max_bytes: usize, into: &mut Vec<Vec<u8>>) {
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let mut taken = 0;
        for l in 0..LEVELS {
            while let Some(frame) = inner.frames[l].front() {
                if taken > 0 && taken + frame.len() > max_bytes {
                    return;
                }
                let frame = inner.frames[l].pop_front().expect("front exists");
                inner.bytes -= frame.len();
                taken += frame.len();
                into.push(frame);
            }
        }
    }

    /// Drops everything queued (the link went down) and returns how many frames that was.
    pub fn clear(&self) -> usize {
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let count = inner.frames.iter().map(VecDeque::len).sum();
        inner.frames.iter_mut().for_each(VecDeque::clear);
        inner.bytes = 0;
        count
    }

    /// Wakes the writer with `None` from now on.
    pub fn close(&self) {
        self.inner.lock().unwrap_or_else(|p| p.into_inner()).closed = true;
        self.ready.notify_waiters();
        self.ready.notify_one();
    }

    /// Bytes queued.
    pub fn queued_bytes(&self) -> usize {
        self.inner.lock().unwrap_or_else(|p| p.into_inner()).bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn control_goes_first_and_announces_are_shed_first() {
        let queue = OutboundQueue::new(30);
        assert_eq!(queue.push(vec![3; 10], Priority::Announce).dropped, 0);
        assert_eq!(queue.push(vec![2; 10], Priority::Data).dropped, 0);
        assert_eq!(queue.push(vec![1; 10], Priority::Control).dropped, 0);
        // Full: a new data frame evicts the announce, not the control frame.
        assert_eq!(queue.push(vec![4; 10], Priority::Data).dropped, 1);
        assert_eq!(queue.pop().await.unwrap()[0], 1);
        assert_eq!(queue.pop().await.unwrap()[0], 2);
        assert_eq!(queue.pop().await.unwrap()[0], 4);
        assert_eq!(queue.queued_bytes(), 0);
    }

    #[tokio::test]
    async fn announces_never_evict_more_important_frames() {
        let queue = OutboundQueue::new(20);
        queue.push(vec![1; 10], Priority::Control);
        queue.push(vec![2; 10], Priority::Data);
        assert_eq!(
            queue.push(vec![3; 10], Priority::Announce).dropped,
            1,
            "the announce itself is dropped"
        );
        assert_eq!(queue.queued_bytes(), 20);
        assert_eq!(
            queue.push(vec![0; 100], Priority::Control).dropped,
            1,
            "larger than the budget"
        );
    }

    #[tokio::test]
    async fn close_wakes_the_writer() {
        let queue = std::sync::Arc::new(OutboundQueue::new(100));
        let writer = tokio::spawn({
            let queue = queue.clone();
            async move { queue.pop().await }
        });
        tokio::task::yield_now().await;
        queue.close();
        assert_eq!(writer.await.unwrap(), None);
    }
}
