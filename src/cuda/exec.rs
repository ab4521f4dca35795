//! cuda/exec.rs — where kernels run, abstracted: device buffers, copies and launches. Two
//! implementations: the CUDA driver on one stream (`cuda::driver::CudaExec`) and, in test
//! builds, the host simulation of the kernels (`cuda::sim::SimExec`). The host wrappers in
//! `cuda::ops` are written once against this trait, so the simulation tests exercise the same
//! launch geometry, parameter blocks and epilogue constants that run on a GPU.

use super::params::{KernelParams, TmaMap};
use super::registry::KernelId;
use crate::error::Result;

/// Element types of device buffers.
#[cfg(feature = "cuda")]
pub(crate) trait Elem:
    bytemuck::Pod + cudarc::driver::DeviceRepr + cudarc::driver::ValidAsZeroBits + Send + Sync
{
}
#[cfg(feature = "cuda")]
impl<
        T: bytemuck::Pod + cudarc::driver::DeviceRepr + cudarc::driver::ValidAsZeroBits + Send + Sync,
    > Elem for T
{
}

/// Element types of device buffers.
#[cfg(not(feature = "cuda"))]
pub(crate) trait Elem: bytemuck::Pod + Send + Sync {}
#[cfg(not(feature = "cuda"))]
impl<T: bytemuck::Pod + Send + Sync> Elem for T {}

/// A launch geometry: blocks per grid, threads per block and bytes of dynamic shared memory per
/// block.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Grid {
    pub grid: [u32; 3],
    pub block: [u32; 3],
    pub smem: u32,
}

/// An executor: owns the ordering of its operations (a stream), allocates, copies, launches.
pub(crate) trait Exec {
    /// A device buffer of `T`.
    type Buf<T: Elem>;
    /// Keeps a buffer's use recorded until the launch that reads or writes it is enqueued.
    type Guard<'a>
    where
        Self: 'a;

    /// `len` zeroed elements.
    fn alloc<T: Elem>(&self, len: usize) -> Result<Self::Buf<T>>;
    /// `len` elements with unspecified contents (scratch a kernel writes before it reads it;
    /// `T` is plain data, so any bytes are a valid value). The simulation fills them with
    /// poison, so a kernel that reads scratch it did not write fails its test.
    fn alloc_scratch<T: Elem>(&self, len: usize) -> Result<Self::Buf<T>>;
    /// A new buffer holding `src`.
    fn upload<T: Elem>(&self, src: &[T]) -> Result<Self::Buf<T>>;
    /// Copy `src` into the start of `dst` (`src.len() ≤ len(dst)`), in the executor's order
    /// (`src` may be reused when this returns).
    fn write<T: Elem>(&self, dst: &mut Self::Buf<T>, src: &[T]) -> Result<()>;
    /// Copy the start of `src` into `dst` and wait for it (`dst.len() ≤ len(src)`).
    fn read<T: Elem>(&self, src: &Self::Buf<T>, dst: &mut [T]) -> Result<()>;
    /// Elements in a buffer.
    fn len<T: Elem>(b: &Self::Buf<T>) -> usize;
    /// The device address of a buffer the next launch reads.
    fn addr<'a, T: Elem>(&'a self, b: &'a Self::Buf<T>) -> (u64, Self::Guard<'a>);
    /// The device address of a buffer the next launch writes.
    fn addr_mut<'a, T: Elem>(&'a self, b: &'a mut Self::Buf<T>) -> (u64, Self::Guard<'a>);
    /// The device's compute capability, `major · 10 + minor` (the simulation's is chosen by the
    /// test).
    fn arch(&self) -> u32;
    /// The device's streaming multiprocessors.
    fn sm_count(&self) -> u32;
    /// Whether the sm_90a `wgmma` tiles can run here (the device is sm_90 and their module
    /// loads); `GemmKernel::Auto` chooses them on Hopper only then.
    fn wgmma_available(&self) -> bool {
        self.arch() == 90
    }
    /// A tensor map for the TMA tiles (`kernels/gemm_tma.cu`): the int8 matrix at device
    /// address `addr` (from [`Exec::addr`], its guard held until the launch), `rows` rows of
    /// `cols` bytes, `ld` bytes apart (a multiple of 16), read in boxes of `box_rows` rows ×
    /// 128 bytes that land with the 128-byte swizzle, zeros outside the matrix. `cols` and
    /// `rows` are at least 1 (an empty matrix is never read: map one byte).
    fn tensor_map(
        &self,
        addr: u64,
        rows: usize,
        cols: usize,
        ld: usize,
        box_rows: usize,
    ) -> Result<TmaMap>;
    /// Identifies the executor's stream: work with equal keys runs in order, so scratch cached
    /// under a key may be reused by the next call with that key.
    fn stream_key(&self) -> usize;
    /// The non-finite report words of every stream of this executor's device, shared by the
    /// layers forwarding on it ([`super::reports`]).
    fn report_rings(&self) -> &super::reports::ReportRings<Self>
    where
        Self: Sized;
    /// Enqueue kernel `k` with parameter block `p`.
    ///
    /// # Safety
    /// Every address in `p` comes from [`Exec::addr`] / [`Exec::addr_mut`] of a live buffer of
    /// this executor whose guard is still held, and every index the kernel can form from `p`'s
    /// sizes and strides lies inside the buffer it addresses (the wrappers in `cuda::ops` check
    /// this before launching). `P` is the block `k` takes.
    unsafe fn launch<P: KernelParams>(&self, k: KernelId, g: Grid, p: &P) -> Result<()>;
    /// [`Exec::launch`], allowed to begin before the work ahead of it on the stream has finished
    /// (programmatic dependent launch, sm_90 and newer): for kernels that wait for their
    /// predecessor themselves ([`KernelId::waits_for_predecessor`]). An executor without the
    /// feature (or the simulation, whose launches run one after another) launches normally.
    ///
    /// # Safety
    /// As [`Exec::launch`].
    unsafe fn launch_overlapped<P: KernelParams>(&self, k: KernelId, g: Grid, p: &P) -> Result<()> {
        // SAFETY: the caller's guarantees are those of `launch`.
        unsafe { self.launch(k, g, p) }
    }
}
