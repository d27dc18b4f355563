//! Reports the transport hands to the parts above it (forwarded packets to the ledger, proved
//! deliveries to the market). The transport never waits for a reader: a full queue drops the
//! report and counts it, so a slow ledger or market cannot hold up relaying or sending.

use std::sync::{
    Arc,
    atomic::{AtomicU64, Ordering},
};

use tokio::sync::mpsc;

/// The reading end: the reports, and how many were dropped because the queue was full.
pub struct Reports<T> {
    /// The reports.
    pub receiver: mpsc::Receiver<T>,
    /// Reports dropped because the queue was full.
    pub dropped: Arc<AtomicU64>,
}

/// The transport's end of a report queue.
pub(super) struct ReportSink<T> {
    sender: mpsc::Sender<T>,
    dropped: Arc<AtomicU64>,
}

/// A queue of at most `capacity` reports (at least one).
pub(super) fn channel<T>(capacity: usize) -> (ReportSink<T>, Reports<T>) {
    let (sender, receiver) = mpsc::channel(capacity.max(1));
    let dropped = Arc::new(AtomicU64::new(0));
    let sink = ReportSink {
        sender,
        dropped: dropped.clone(),
    };
    (sink, Reports { receiver, dropped })
}

impl<T> ReportSink<T> {
    /// Queues `report` without waiting, counting it as dropped when the queue is full.
    /// Returns false once the reader is gone (the sink can be let go).
    pub(super) fn offer(&self, report: T) -> bool {
        match self.sender.try_send(report) {
            Ok(()) => true,
            Err(mpsc::error::TrySendError::Full(_)) => {
                self.dropped.fetch_add(1, Ordering::Relaxed);
                true
            }
            Err(mpsc::error::TrySendError::Closed(_)) => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_queue_drops_and_counts_and_a_gone_reader_is_told() {
        let (sink, mut reports) = channel(1);
        assert!(sink.offer(1));
        assert!(sink.offer(2), "full: dropped, not refused");
        assert_eq!(reports.dropped.load(Ordering::Relaxed), 1);
        assert_eq!(reports.receiver.try_recv().unwrap(), 1);
        drop(reports);
        assert!(!sink.offer(3));
    }
}
