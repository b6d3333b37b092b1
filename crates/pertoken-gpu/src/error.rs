//! The runtime's error type.

use crate::DType;

/// What can go wrong in pertoken-gpu, and so in every kernel crate above it.
///
/// Every variant says what was wrong and, where there is one, what to do about it.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// No adapter matched the options.
    #[error(
        "no GPU adapter found (backends tried: {backends}{wanted}); adapters present: {available}. \
         On Linux without a GPU, install Mesa's software Vulkan: \
         `apt-get install mesa-vulkan-drivers`. Set PERTOKEN_ADAPTER to pick an adapter by name \
         and WGPU_BACKEND to pick backends (vulkan, metal, dx12, gl)",
        wanted = .wanted.as_ref().map(|w| format!(", name containing {w:?}")).unwrap_or_default(),
        available = if .available.is_empty() { "none".to_string() } else { .available.join("; ") }
    )]
    NoAdapter {
        /// The backends searched.
        backends: String,
        /// The adapter-name substring asked for, if any.
        wanted: Option<String>,
        /// Every adapter that was present, as `name (backend)`.
        available: Vec<String>,
    },

    /// An option (or the environment variable behind it) has a value that cannot be used.
    #[error("invalid option {name}={value:?}: {reason}")]
    InvalidOption {
        /// The option or variable.
        name: &'static str,
        /// The value given.
        value: String,
        /// Why it is invalid and what is accepted.
        reason: String,
    },

    /// The adapter refused to create a device.
    #[error("could not create a device on adapter {adapter:?}: {message}")]
    RequestDevice {
        /// Adapter name.
        adapter: String,
        /// wgpu's message.
        message: String,
    },

    /// Two operands of an op have shapes that do not fit together.
    #[error("{op}: shapes do not fit: {lhs:?} and {rhs:?} ({expected})")]
    ShapeMismatch {
        /// The op.
        op: &'static str,
        /// Shape of the first operand.
        lhs: Vec<usize>,
        /// Shape of the second operand.
        rhs: Vec<usize>,
        /// What the op needs.
        expected: String,
    },

    /// A shape that no op accepts: a zero dimension, the wrong rank, or an element count that
    /// overflows.
    #[error("{op}: invalid shape {shape:?}: {reason}")]
    InvalidShape {
        /// The op.
        op: &'static str,
        /// The shape given.
        shape: Vec<usize>,
        /// What is wrong with it.
        reason: String,
    },

    /// Host data whose length does not match the shape it was given with.
    #[error("{op}: {got} elements given for shape {shape:?}, which holds {expected}")]
    DataLength {
        /// The op.
        op: &'static str,
        /// The shape given.
        shape: Vec<usize>,
        /// Elements the shape holds.
        expected: usize,
        /// Elements given.
        got: usize,
    },

    /// A tensor of the wrong dtype.
    #[error("{op}: expected dtype {expected}, got {got}")]
    DTypeMismatch {
        /// The op.
        op: &'static str,
        /// The dtype needed.
        expected: DType,
        /// The dtype given.
        got: DType,
    },

    /// A buffer or binding larger than the adapter allows.
    #[error(
        "{op}: {what} of {bytes} bytes exceeds the adapter's limit of {limit} bytes \
         ({limit_name}); use smaller shapes or an adapter with a larger limit"
    )]
    TooLarge {
        /// The op.
        op: &'static str,
        /// What is too large (`"buffer"`, `"storage binding"`, ...).
        what: &'static str,
        /// Its size.
        bytes: u64,
        /// The limit.
        limit: u64,
        /// The wgpu limit's name.
        limit_name: &'static str,
    },

    /// A dispatch with more workgroups in one dimension than the adapter allows.
    #[error(
        "{op}: dispatch of {workgroups:?} workgroups exceeds the adapter's limit of {limit} per \
         dimension (max_compute_workgroups_per_dimension); the shape is too large for this kernel"
    )]
    DispatchTooLarge {
        /// The op.
        op: &'static str,
        /// Workgroups asked for.
        workgroups: [u32; 3],
        /// The per-dimension limit.
        limit: u32,
    },

    /// A kernel variant the adapter cannot run (workgroup too large, a missing feature).
    #[error("{op}: not supported on this adapter: {reason}")]
    Unsupported {
        /// The op.
        op: &'static str,
        /// Why.
        reason: String,
    },

    /// wgpu reported a validation error: a bug in pertoken or in the driver. Please report it.
    #[error("{op}: wgpu validation error (please report this as a pertoken bug): {message}")]
    Validation {
        /// The op (or `"submit"`, for errors found when work was submitted).
        op: &'static str,
        /// wgpu's message.
        message: String,
    },

    /// The device ran out of memory.
    #[error("{op}: the GPU is out of memory: {message}; free tensors or use smaller shapes")]
    OutOfMemory {
        /// The op.
        op: &'static str,
        /// wgpu's message.
        message: String,
    },

    /// The device was lost (a driver reset, the GPU removed or hung, or `destroy`): nothing
    /// more can run on this handle.
    #[error(
        "{op}: the GPU device was lost ({reason}); nothing more can run on it: restart the \
         program (and if it recurs, check the driver's log, e.g. dmesg, for a reset or a hang)"
    )]
    DeviceLost {
        /// The op that found it lost.
        op: &'static str,
        /// Why, as the driver said.
        reason: String,
    },

    /// The device was lost or a buffer could not be read back.
    #[error("{op}: device error: {message}")]
    Device {
        /// The op.
        op: &'static str,
        /// What happened.
        message: String,
    },

    /// A shader failed naga's checks.
    #[error(transparent)]
    Shader(#[from] pertoken_shaders::ShaderError),
}

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// Converts an error popped from a wgpu error scope.
    pub(crate) fn from_wgpu(op: &'static str, e: wgpu::Error) -> Self {
        match e {
            wgpu::Error::OutOfMemory { source } => Error::OutOfMemory {
                op,
                message: source.to_string(),
            },
            wgpu::Error::Validation { description, .. } => Error::Validation {
                op,
                message: description,
            },
            other => Error::Device {
                op,
                message: other.to_string(),
            },
        }
    }
}
