//! Chunks of a download handed from async code to a blocking reader, bounded by bytes.
//!
//! Sources hand over chunks of very different sizes: a registry's body arrives in frames of a
//! few KB, a layer file is read 256 KB at a time. A bound on the number of chunks in flight
//! would hold a few hundred KB of one and several MB of the other for every layer being
//! read; a bound on their bytes keeps both to [`BYTES_IN_FLIGHT`], which is still hundreds of
//! times what a decoder takes in one call.

use std::io::{self, Read};
use std::sync::Arc;

use bytes::{Buf, Bytes};
use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};

/// Bytes sent and not yet read, per channel: enough to ride out scheduling hiccups, small
/// enough that a slow reader slows the download instead of filling memory.
pub const BYTES_IN_FLIGHT: usize = 1 << 20;

/// Chunks the queue itself holds at most (the byte budget is the bound that matters; this one
/// keeps a stream of tiny chunks from queueing without end).
const CHUNKS_IN_FLIGHT: usize = 256;

/// A chunk and its share of the budget, given back when the reader is done with it.
struct Sent {
    chunk: io::Result<Bytes>,
    _share: Option<OwnedSemaphorePermit>,
}

/// The async end of a chunk channel.
pub struct ChunkSender {
    tx: mpsc::Sender<Sent>,
    budget: Arc<Semaphore>,
}

/// The reader went away: nothing more will be read.
#[derive(Debug)]
pub struct ReaderGone;

impl ChunkSender {
    /// Send `chunk` (or a failure the reader should see) once the chunks in flight leave room
    /// for it.
    pub async fn send(&self, chunk: io::Result<Bytes>) -> Result<(), ReaderGone> {
        let share = match &chunk {
            Ok(bytes) if !bytes.is_empty() => {
                // A chunk bigger than the whole budget waits for the channel to empty.
                let weight = bytes.len().min(BYTES_IN_FLIGHT) as u32;
                let permit = Arc::clone(&self.budget)
                    .acquire_many_owned(weight)
                    .await
                    .map_err(|_| ReaderGone)?;
                Some(permit)
            }
            _ => None,
        };
        self.tx
            .send(Sent {
                chunk,
                _share: share,
            })
            .await
            .map_err(|_| ReaderGone)
    }
}

/// A channel from a download to a blocking reader: the reader's `read` waits for chunks
/// and ends (`Ok(0)`) once every sender is dropped.
pub fn chunk_channel() -> (ChunkSender, ChannelReader) {
    let (tx, rx) = mpsc::channel(CHUNKS_IN_FLIGHT);
    let budget = Arc::new(Semaphore::new(BYTES_IN_FLIGHT));
    (
        ChunkSender { tx, budget },
        ChannelReader { rx, current: None },
    )
}

/// The blocking end of a [`chunk_channel`].
pub struct ChannelReader {
    rx: mpsc::Receiver<Sent>,
    /// The chunk being read, with its share of the budget.
    current: Option<(Bytes, Option<OwnedSemaphorePermit>)>,
}

impl Read for ChannelReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            if let Some((bytes, _)) = &mut self.current {
                let n = buf.len().min(bytes.len());
                buf[..n].copy_from_slice(&bytes[..n]);
                bytes.advance(n);
                if bytes.is_empty() {
                    // The chunk is read: its bytes and its share go back at once, so the
                    // sender need not wait for the next call.
                    self.current = None;
                }
                if n > 0 || buf.is_empty() {
                    return Ok(n);
                }
            }
            match self.rx.blocking_recv() {
                Some(Sent {
                    chunk: Ok(bytes),
                    _share,
                }) => self.current = Some((bytes, _share)),
                Some(Sent { chunk: Err(e), .. }) => return Err(e),
                None => return Ok(0),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_reader_gets_every_byte_in_order_and_the_end() {
        let (tx, mut reader) = chunk_channel();
        let chunks: Vec<Vec<u8>> = (0..40u8)
            .map(|i| vec![i; usize::from(i) * 37_000 + 1])
            .collect();
        let expected: Vec<u8> = chunks.concat();
        let read = tokio::task::spawn_blocking(move || {
            let mut out = Vec::new();
            reader.read_to_end(&mut out).map(|_| out)
        });
        for chunk in chunks {
            tx.send(Ok(Bytes::from(chunk)))
                .await
                .expect("reader present");
        }
        drop(tx);
        let out = read.await.expect("reader thread").expect("read");
        assert_eq!(out, expected);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_sender_waits_while_the_budget_is_spent() {
        let (tx, mut reader) = chunk_channel();
        // A chunk larger than the budget takes all of it and still goes through.
        tx.send(Ok(Bytes::from(vec![1u8; BYTES_IN_FLIGHT * 2])))
            .await
            .expect("sent");
        let blocked = tokio::time::timeout(
            std::time::Duration::from_millis(200),
            tx.send(Ok(Bytes::from_static(b"x"))),
        )
        .await;
        assert!(
            blocked.is_err(),
            "a second chunk must wait for the first to be read"
        );
        let read = tokio::task::spawn_blocking(move || {
            let mut first = vec![0u8; BYTES_IN_FLIGHT * 2];
            reader.read_exact(&mut first).map(|_| reader)
        });
        let mut reader = read.await.expect("reader thread").expect("read");
        // Reading the whole first chunk gave its share back.
        tx.send(Ok(Bytes::from_static(b"x"))).await.expect("sent");
        drop(tx);
        let mut rest = Vec::new();
        tokio::task::spawn_blocking(move || reader.read_to_end(&mut rest).map(|_| rest))
            .await
            .expect("reader thread")
            .map(|rest| assert_eq!(rest, b"x"))
            .expect("read");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_failure_reaches_the_reader_and_a_gone_reader_stops_the_sender() {
        let (tx, mut reader) = chunk_channel();
        tx.send(Err(io::Error::other("the download failed")))
            .await
            .expect("sent");
        let err = tokio::task::spawn_blocking(move || {
            let mut buf = [0u8; 8];
            reader.read(&mut buf).map(|_| ())
        })
        .await
        .expect("reader thread")
        .expect_err("the failure is read");
        assert_eq!(err.to_string(), "the download failed");
        // The reader was dropped with its thread: sending fails instead of waiting.
        assert!(tx.send(Ok(Bytes::from_static(b"late"))).await.is_err());
    }
}
