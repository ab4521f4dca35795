//! cuda/reports.rs — where a layer's forward leaves its non-finite report, and how the host reads
//! it back: one ring of report words per stream, shared by every layer forwarding on that stream
//! (the executor keeps them, [`Exec::report_rings`]).
//!
//! A forward ([`crate::cuda::ops::DevLinear::enqueue`]) takes a clear word of its stream's ring;
//! its quantization kernel counts NaN/±inf there and its GEMM skips the output when the count
//! is not zero. Reading one forward's word back ([`Report`], [`ReportRing::finish`]) copies
//! every word handed out on that stream at once, in stream order, so it also settles every other
//! forward enqueued before the copy: a decode step that enqueues each layer's forward and then
//! waits on them all (`CudaQuantLinear::forward_device_async`) pays one copy and one
//! synchronization for all of them, not one of each per forward as with a word per forward.
//! The bits are the same either way; only the number of driver calls changes.
//!
//! A slot's life: free (its word clear on the device) → in flight (a forward was enqueued with
//! it) → read (a copy after that forward captured its word on the host) → free when the
//! forward's report is taken. A report dropped unread ([`Report`]'s `Drop`) abandons its slot:
//! the next copy frees it. When a copy finds any word not clear, the ring is written clear again
//! in stream order (every in-flight word has just been captured, so nothing is lost). With every
//! slot taken (more than [`RING_SLOTS`] forwards pending on one stream), a forward gets a word of
//! its own instead.

use std::sync::{Arc, Mutex, MutexGuard};

use super::exec::Exec;
use super::params::Status;
use crate::error::{Error, Result};

/// Report words per stream (16 bytes each). A copy reads only up to the highest slot in use,
/// which handing out the lowest free slot keeps to about as many as forwards are pending.
pub(crate) const RING_SLOTS: usize = 1024;

/// Rings kept beyond which those with no pending report are dropped. A ring keeps its stream
/// alive (its words are a buffer of that stream, as the layers' other per-stream caches), so a
/// stream's handle is not reused while its ring is kept.
const KEEP_RINGS: usize = 16;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Slot {
    Free,
    InFlight,
    Read(Status),
    Abandoned,
}

/// One stream's report words ([`RING_SLOTS`] on the device) and what the host knows of each.
pub(crate) struct ReportRing<E: Exec> {
    words: E::Buf<Status>,
    slots: Vec<Slot>,
    mirror: Vec<Status>,
    /// Writing the ring clear failed (a driver error): its words can no longer be trusted
    /// clear, so no slot is handed out again (forwards get words of their own).
    broken: bool,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl<E: Exec> ReportRing<E> {
    fn new(e: &E) -> Result<Self> {
        Ok(ReportRing {
            words: e.upload(&[Status::CLEAR; RING_SLOTS])?,
            slots: vec![Slot::Free; RING_SLOTS],
            mirror: vec![Status::CLEAR; RING_SLOTS],
            broken: false,
        })
    }

    /// The lowest free slot, now in flight (its word clear on the device), or `None` when all
    /// are taken. (A scan: as long as the forwards pending, a few hundred at most in practice.)
    pub(crate) fn take(&mut self) -> Option<usize> {
        if self.broken {
            return None;
        }
        let i = self.slots.iter().position(|s| *s == Slot::Free)?;
        self.slots[i] = Slot::InFlight;
        Some(i)
    }

    /// One past the highest slot in use: a copy reads `[0, high)`.
    fn high(&self) -> usize {
        self.slots
            .iter()
            .rposition(|s| *s != Slot::Free)
            .map_or(0, |i| i + 1)
    }

    /// The device words, for a launch's address of slot `index` (element `index`).
    pub(crate) fn words_mut(&mut self) -> &mut E::Buf<Status> {
        &mut self.words
    }

    /// A slot whose report nobody will read: freed by the next copy (a kernel may still write
    /// its word until then), or now if its word was already captured.
    pub(crate) fn abandon(&mut self, index: usize) {
        match self.slots[index] {
            Slot::InFlight => self.slots[index] = Slot::Abandoned,
            Slot::Read(_) => self.slots[index] = Slot::Free,
            Slot::Free | Slot::Abandoned => {}
        }
    }

    /// Copy the words handed out so far, in stream order (so after every forward enqueued on
    /// this stream so far), and wait for it: each in-flight slot is then read, each abandoned
    /// one free. Any word found not clear (a report of NaN/±inf, read or abandoned) has the
    /// whole ring written clear behind the copy.
    fn copy_back(&mut self, e: &E) -> Result<()> {
        let high = self.high();
        e.read(&self.words, &mut self.mirror[..high])?;
        let mut dirty = false;
        for i in 0..high {
            let word = self.mirror[i];
            dirty |= word != Status::CLEAR;
            match self.slots[i] {
                Slot::InFlight => self.slots[i] = Slot::Read(word),
                Slot::Abandoned => self.slots[i] = Slot::Free,
                Slot::Free | Slot::Read(_) => {}
            }
        }
        if dirty {
            if let Err(err) = e.write(&mut self.words, &vec![Status::CLEAR; high]) {
                self.broken = true;
                return Err(err);
            }
        }
        Ok(())
    }

    /// Slot `index`'s word (copying the ring back first unless an earlier copy captured it), the
    /// slot freed. On an error of the copy the slot is abandoned.
    pub(crate) fn finish(&mut self, e: &E, index: usize) -> Result<Status> {
        if self.slots[index] == Slot::InFlight {
            if let Err(err) = self.copy_back(e) {
                self.abandon(index);
                return Err(err);
            }
        }
        match self.slots[index] {
            Slot::Read(word) => {
                self.slots[index] = Slot::Free;
                Ok(word)
            }
            other => Err(Error::Cuda {
                context: "non-finite report".into(),
                detail: format!("report slot {index} is {other:?}, not read"),
            }),
        }
    }
}

/// A stream's ring, shared by the reports that point into it.
type SharedRing<E> = Arc<Mutex<ReportRing<E>>>;

/// Every stream's ring (by [`Exec::stream_key`]), on one executor (a device, or the simulation).
pub(crate) struct ReportRings<E: Exec> {
    rings: Mutex<Vec<(usize, SharedRing<E>)>>,
}

impl<E: Exec> ReportRings<E> {
    pub(crate) const fn new() -> Self {
        ReportRings {
            rings: Mutex::new(Vec::new()),
        }
    }

    /// The ring of `e`'s stream, made (its words uploaded clear) on first use.
    pub(crate) fn ring(&self, e: &E) -> Result<SharedRing<E>> {
        let key = e.stream_key();
        let mut rings = lock(&self.rings);
        if let Some((_, r)) = rings.iter().find(|(k, _)| *k == key) {
            return Ok(r.clone());
        }
        if rings.len() >= KEEP_RINGS {
            // (a ring that a pending report still holds stays)
            rings.retain(|(_, r)| Arc::strong_count(r) > 1);
        }
        let r = Arc::new(Mutex::new(ReportRing::new(e)?));
        rings.push((key, r.clone()));
        Ok(r)
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        lock(&self.rings).len()
    }
}

enum Where<E: Exec> {
    Slot {
        ring: SharedRing<E>,
        index: usize,
    },
    /// A word of its own (every slot of the stream's ring was taken).
    Word(E::Buf<Status>),
}

/// One forward's non-finite report, readable once its kernels have run ([`Report::take`]).
/// Dropped unread, its slot goes back to the ring at the next copy.
pub(crate) struct Report<E: Exec> {
    at: Option<Where<E>>,
}

impl<E: Exec> Report<E> {
    /// A slot of `e`'s stream's ring — or a word uploaded clear when every slot is taken — for
    /// `enqueue` to hand its kernels: `f(words, index)` launches them with element `index` of
    /// `words` as the report word, under the ring's lock (so no copy can capture the slot before
    /// they are enqueued). On an error of `f` the slot is abandoned.
    pub(crate) fn enqueue_with<T>(
        e: &E,
        f: impl FnOnce(&mut E::Buf<Status>, usize) -> Result<T>,
    ) -> Result<(T, Report<E>)> {
        let ring = e.report_rings().ring(e)?;
        let mut g = lock(&ring);
        if let Some(index) = g.take() {
            return match f(g.words_mut(), index) {
                Ok(t) => {
                    drop(g);
                    Ok((
                        t,
                        Report {
                            at: Some(Where::Slot { ring, index }),
                        },
                    ))
                }
                Err(err) => {
                    g.abandon(index);
                    Err(err)
                }
            };
        }
        drop(g);
        let mut word = e.upload(&[Status::CLEAR])?;
        let t = f(&mut word, 0)?;
        Ok((
            t,
            Report {
                at: Some(Where::Word(word)),
            },
        ))
    }

    /// The report: waits for the executor up to (at least) this forward — unless a copy for
    /// another report on the stream already captured it, then without a driver call.
    pub(crate) fn take(mut self, e: &E) -> Result<Status> {
        match self.at.take() {
            Some(Where::Slot { ring, index }) => lock(&ring).finish(e, index),
            Some(Where::Word(word)) => {
                let mut s = [Status::CLEAR];
                e.read(&word, &mut s)?;
                Ok(s[0])
            }
            None => Err(Error::Cuda {
                context: "non-finite report".into(),
                detail: "already taken".into(),
            }),
        }
    }
}

impl<E: Exec> Drop for Report<E> {
    fn drop(&mut self) {
        if let Some(Where::Slot { ring, index }) = self.at.take() {
            lock(&ring).abandon(index);
        }
    }
}
