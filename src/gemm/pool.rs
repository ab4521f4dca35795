//! gemm/pool — the opt-in spinning worker pool behind [`super::Context::with_spin`]. The CPU
//! driver (`gemm::cpu`) fans its tasks out through [`super::Context::for_each`], which uses this
//! pool when the context has one and rayon's otherwise.
//!
//! Why it exists: a rayon pool's workers sleep between calls, and waking them costs tens of
//! microseconds on a small VM. That is a large share of a decode-sized GEMM (one token through a
//! 4096² layer streams 16 MiB in about 0.3 ms on two cores). Here the calling thread takes part in
//! the work and `threads − 1` helpers spin for a bounded window after each call before they park,
//! so a model's next layer finds them awake. bench/RESULTS.md has the measurement that motivated
//! it (`bench/probes/pool_wake.rs`) and what it gives.
//!
//! The protocol. One job at a time lives on the caller's stack; helpers reach it through a raw
//! pointer, so everything below exists to guarantee that no helper touches the job after the call
//! that owns it returns:
//! - `state` packs an epoch (upper 32 bits), a CLOSED bit and the number of helpers inside the
//!   current job (lower 31 bits).
//! - The caller publishes a job by writing its pointer and then storing `(epoch + 1, open, 0)`.
//! - A helper joins only by a compare-exchange that raises the count of an open state whose epoch
//!   it has not served yet, and reads the job pointer only after that join succeeded.
//! - The caller runs task indices itself until they run out, sets CLOSED (no helper can join
//!   afterwards: every join is a compare-exchange on an open state) and waits for the count to
//!   fall to zero. Only then does the call return and the job die.
//! - A panic in a task, on any thread, is caught, stops the remaining indices, and is resumed in
//!   the caller after the wait.
//! - Parking: a helper registers as a sleeper under the mutex and rechecks `state` before waiting;
//!   the caller stores the new state and then reads the sleeper count, both sequentially
//!   consistent, and notifies under the mutex, so a wake-up cannot be lost.
//! - One call at a time: a second caller (another thread sharing the context, or a task calling
//!   back into the pool) finds `busy` set and gets `false`, and the context runs it on rayon.

use std::any::Any;
use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicPtr, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

const CLOSED: u64 = 1 << 31;
const COUNT: u64 = CLOSED - 1;
const EPOCH_SHIFT: u32 = 32;

fn epoch(state: u64) -> u64 {
    state >> EPOCH_SHIFT
}

/// One call's work: `f(i)` for every `i < tasks`, indices handed out by `next`.
struct Job<'a> {
    f: &'a (dyn Fn(usize) + Sync),
    tasks: usize,
    next: AtomicUsize,
    panic: Mutex<Option<Box<dyn Any + Send>>>,
}

impl Job<'_> {
    /// Take indices until they run out; a panicking task ends the job for everyone.
    fn run(&self) {
        loop {
            let i = self.next.fetch_add(1, Ordering::Relaxed);
            if i >= self.tasks {
                return;
            }
            if let Err(payload) = catch_unwind(AssertUnwindSafe(|| (self.f)(i))) {
                self.next.store(self.tasks, Ordering::Relaxed);
                let mut slot = self.panic.lock().unwrap_or_else(PoisonError::into_inner);
                slot.get_or_insert(payload);
                return;
            }
        }
    }
}

struct Shared {
    state: AtomicU64,
    /// The current job; valid to dereference only for a helper that joined the current epoch.
    job: AtomicPtr<Job<'static>>,
    sleepers: AtomicUsize,
    lock: Mutex<()>,
    wake: Condvar,
    shutdown: AtomicBool,
    spin: Duration,
}

/// `helpers` threads that, with the caller, run one job at a time (see the module header).
pub(crate) struct SpinPool {
    shared: Arc<Shared>,
    busy: AtomicBool,
    handles: Vec<JoinHandle<()>>,
}

impl std::fmt::Debug for SpinPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SpinPool")
            .field("helpers", &self.handles.len())
            .field("spin", &self.shared.spin)
            .finish()
    }
}

impl SpinPool {
    /// Start `helpers` threads named `int8rt-spin-{i}` that spin for `spin` after each job.
    pub(crate) fn new(helpers: usize, spin: Duration) -> std::io::Result<SpinPool> {
        let shared = Arc::new(Shared {
            state: AtomicU64::new(CLOSED),
            job: AtomicPtr::new(std::ptr::null_mut()),
            sleepers: AtomicUsize::new(0),
            lock: Mutex::new(()),
            wake: Condvar::new(),
            shutdown: AtomicBool::new(false),
            spin,
        });
        let mut pool = SpinPool {
            shared,
            busy: AtomicBool::new(false),
            handles: Vec::with_capacity(helpers),
        };
        for i in 0..helpers {
            let sh = pool.shared.clone();
            // On a spawn failure `pool` drops here and stops the helpers already started.
            let h = std::thread::Builder::new()
                .name(format!("int8rt-spin-{i}"))
                .spawn(move || helper(&sh))?;
            pool.handles.push(h);
        }
        Ok(pool)
    }

    /// Helper threads (the caller makes one more worker).
    #[cfg(test)]
    pub(crate) fn helpers(&self) -> usize {
        self.handles.len()
    }

    /// Run `f(i)` for every `i < tasks` on the caller and the helpers, returning `true` when all
    /// ran; `false`, having run nothing, when another call holds the pool. A task's panic is
    /// resumed here after every helper has left the job.
    pub(crate) fn try_for_each(&self, tasks: usize, f: &(dyn Fn(usize) + Sync)) -> bool {
        if self
            .busy
            .compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed)
            .is_err()
        {
            return false;
        }
        struct Release<'a>(&'a AtomicBool);
        impl Drop for Release<'_> {
            fn drop(&mut self) {
                self.0.store(false, Ordering::Release);
            }
        }
        let _release = Release(&self.busy);

        let job = Job {
            f,
            tasks,
            next: AtomicUsize::new(0),
            panic: Mutex::new(None),
        };
        let sh = &*self.shared;
        // The previous call left the state closed with no helper inside, and nothing but this
        // call (it holds `busy`) changes it while it is closed, so a plain store opens the job.
        let old = sh.state.load(Ordering::Relaxed);
        debug_assert!(old & CLOSED != 0 && old & COUNT == 0);
        sh.job.store(
            &job as *const Job<'_> as *mut Job<'static>,
            Ordering::Relaxed,
        );
        sh.state
            .store((epoch(old) + 1) << EPOCH_SHIFT, Ordering::SeqCst);
        if sh.sleepers.load(Ordering::SeqCst) > 0 {
            let _g = sh.lock.lock().unwrap_or_else(PoisonError::into_inner);
            sh.wake.notify_all();
        }
        job.run();
        // Close, then wait for every helper that joined to leave: after this loop no thread
        // holds a reference to `job`, and every write a task made happens-before this point.
        sh.state.fetch_or(CLOSED, Ordering::AcqRel);
        let mut spins = 0u32;
        while sh.state.load(Ordering::Acquire) & COUNT != 0 {
            spins = spins.wrapping_add(1);
            if spins.is_multiple_of(1024) {
                std::thread::yield_now();
            } else {
                std::hint::spin_loop();
            }
        }
        sh.job.store(std::ptr::null_mut(), Ordering::Relaxed);
        if let Some(payload) = job
            .panic
            .into_inner()
            .unwrap_or_else(PoisonError::into_inner)
        {
            resume_unwind(payload);
        }
        true
    }
}

impl Drop for SpinPool {
    fn drop(&mut self) {
        self.shared.shutdown.store(true, Ordering::SeqCst);
        {
            let _g = self
                .shared
                .lock
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            self.shared.wake.notify_all();
        }
        for h in self.handles.drain(..) {
            // A helper cannot panic outside a task (tasks are caught), so there is nothing to
            // report; ignoring the result keeps drop from panicking.
            let _ = h.join();
        }
    }
}

/// A helper's life: join each new open job once, spin while idle for the pool's window, then
/// park until a job or shutdown arrives.
fn helper(sh: &Shared) {
    // Epoch 0 is the closed initial state: there is no job 0 to serve.
    let mut seen = 0u64;
    let mut idle_since = Instant::now();
    let mut spins = 0u32;
    loop {
        if sh.shutdown.load(Ordering::Acquire) {
            return;
        }
        let s = sh.state.load(Ordering::Acquire);
        if epoch(s) != seen {
            if s & CLOSED != 0 {
                // Finished before this helper looked: nothing to join.
                seen = epoch(s);
                continue;
            }
            if sh
                .state
                .compare_exchange_weak(s, s + 1, Ordering::AcqRel, Ordering::Acquire)
                .is_err()
            {
                continue;
            }
            seen = epoch(s);
            // SAFETY: the join above succeeded on an open state of epoch `seen`, whose publisher
            // wrote `job` before storing that state (the acquire reads it); that caller cannot
            // return, and the job cannot die, until this helper's decrement below.
            let job = unsafe { &*sh.job.load(Ordering::Relaxed) };
            job.run();
            sh.state.fetch_sub(1, Ordering::Release);
            idle_since = Instant::now();
            spins = 0;
            continue;
        }
        spins = spins.wrapping_add(1);
        // Reading the clock every 64 spins keeps the poll loop tight.
        if !spins.is_multiple_of(64) || idle_since.elapsed() < sh.spin {
            std::hint::spin_loop();
            continue;
        }
        let mut g = sh.lock.lock().unwrap_or_else(PoisonError::into_inner);
        sh.sleepers.fetch_add(1, Ordering::SeqCst);
        loop {
            let s = sh.state.load(Ordering::SeqCst);
            if sh.shutdown.load(Ordering::SeqCst) || (epoch(s) != seen && s & CLOSED == 0) {
                break;
            }
            g = sh.wake.wait(g).unwrap_or_else(PoisonError::into_inner);
        }
        sh.sleepers.fetch_sub(1, Ordering::SeqCst);
        drop(g);
        idle_since = Instant::now();
        spins = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicU32;

    /// Repetitions, scaled down under Miri (`cargo +nightly miri test`), which checks the
    /// protocol's memory accesses and orderings but runs a thousand times slower.
    const REPS: usize = if cfg!(miri) { 2 } else { 20 };

    fn counts(n: usize) -> Vec<AtomicU32> {
        (0..n).map(|_| AtomicU32::new(0)).collect()
    }

    #[test]
    fn every_index_runs_exactly_once_whatever_the_helpers_and_task_count() {
        for helpers in [0, 1, 3] {
            for spin in [Duration::ZERO, Duration::from_millis(5)] {
                let pool = SpinPool::new(helpers, spin).unwrap();
                assert_eq!(pool.helpers(), helpers);
                for tasks in [0usize, 1, 2, 7, 64, 1000] {
                    for _ in 0..REPS {
                        let c = counts(tasks);
                        let ran = pool.try_for_each(tasks, &|i| {
                            c[i].fetch_add(1, Ordering::Relaxed);
                        });
                        assert!(ran, "an idle pool refused a call");
                        let bad: Vec<_> = (0..tasks)
                            .filter(|&i| c[i].load(Ordering::Relaxed) != 1)
                            .collect();
                        assert!(bad.is_empty(), "{helpers} helpers, {tasks} tasks: {bad:?}");
                    }
                }
            }
        }
    }

    #[test]
    fn helpers_take_part_and_parked_helpers_wake_for_the_next_job() {
        // With no spin window the helper parks right after each job; a task that waits until a
        // second thread has entered shows the helper woke and joined (the caller alone never
        // finishes it, so a lost wake-up fails this test at the deadline instead of passing).
        let pool = SpinPool::new(1, Duration::ZERO).unwrap();
        for round in 0..REPS * 2 {
            if round % 10 == 0 {
                // Let the helper reach the condvar.
                std::thread::sleep(Duration::from_millis(5));
            }
            let entered = AtomicUsize::new(0);
            let deadline = Instant::now() + Duration::from_secs(30);
            pool.try_for_each(2, &|_| {
                entered.fetch_add(1, Ordering::SeqCst);
                while entered.load(Ordering::SeqCst) < 2 {
                    assert!(
                        Instant::now() < deadline,
                        "round {round}: the helper never joined"
                    );
                    std::hint::spin_loop();
                }
            });
            assert_eq!(entered.load(Ordering::SeqCst), 2);
        }
    }

    #[test]
    fn a_call_made_while_the_pool_is_busy_is_refused_and_runs_nothing() {
        let pool = SpinPool::new(1, Duration::from_millis(1)).unwrap();
        let inner_ran = AtomicBool::new(false);
        let refused = AtomicBool::new(false);
        let ok = pool.try_for_each(1, &|_| {
            let r = pool.try_for_each(4, &|_| inner_ran.store(true, Ordering::Relaxed));
            refused.store(!r, Ordering::Relaxed);
        });
        assert!(ok);
        assert!(
            refused.load(Ordering::Relaxed),
            "a nested call was accepted"
        );
        assert!(
            !inner_ran.load(Ordering::Relaxed),
            "a refused call ran tasks"
        );
        // And the pool is free again afterwards.
        assert!(pool.try_for_each(3, &|_| {}));
    }

    #[test]
    fn concurrent_callers_each_get_all_their_tasks_run_once() {
        let pool = SpinPool::new(2, Duration::from_millis(1)).unwrap();
        let accepted = AtomicUsize::new(0);
        std::thread::scope(|s| {
            for t in 0..4 {
                let (pool, accepted) = (&pool, &accepted);
                s.spawn(move || {
                    for round in 0..REPS * 10 {
                        let tasks = 1 + (t * 7 + round) % 40;
                        let c = counts(tasks);
                        let f = |i: usize| {
                            c[i].fetch_add(1, Ordering::Relaxed);
                        };
                        if pool.try_for_each(tasks, &f) {
                            accepted.fetch_add(1, Ordering::Relaxed);
                        } else {
                            (0..tasks).for_each(f);
                        }
                        assert!(c.iter().all(|v| v.load(Ordering::Relaxed) == 1));
                    }
                });
            }
        });
        assert!(accepted.load(Ordering::Relaxed) > 0);
    }

    #[test]
    fn a_panicking_task_reaches_the_caller_after_the_job_ends_and_the_pool_still_works() {
        let pool = SpinPool::new(2, Duration::from_millis(1)).unwrap();
        for bad in [0usize, 5, 63] {
            let r = catch_unwind(AssertUnwindSafe(|| {
                pool.try_for_each(64, &|i| {
                    if i == bad {
                        panic!("task {i} failed");
                    }
                })
            }));
            let payload = r.expect_err("the panic was swallowed");
            let msg = payload
                .downcast_ref::<String>()
                .cloned()
                .unwrap_or_default();
            assert_eq!(msg, format!("task {bad} failed"));
            let c = counts(100);
            assert!(pool.try_for_each(100, &|i| {
                c[i].fetch_add(1, Ordering::Relaxed);
            }));
            assert!(c.iter().all(|v| v.load(Ordering::Relaxed) == 1));
        }
    }

    #[test]
    fn dropping_the_pool_stops_every_helper() {
        for spin in [Duration::ZERO, Duration::from_secs(60)] {
            let pool = SpinPool::new(3, spin).unwrap();
            assert!(pool.try_for_each(10, &|_| {}));
            let weak = Arc::downgrade(&pool.shared);
            drop(pool);
            assert!(weak.upgrade().is_none(), "a helper outlived its pool");
        }
    }
}
