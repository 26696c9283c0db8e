//! ONNX Runtime behind worker threads, one session each.
//!
//! ort 2's `Session::run` takes `&mut self`, so a session cannot be shared by reference. Instead of
//! a mutex around the hot path, each session is owned by its own thread; a model has
//! [`SessionOptions::sessions`] of them, all taking jobs from one bounded queue, so that runs from
//! several frames (of one stream or many) overlap on a multi-core CPU the way several in-flight
//! requests do on an accelerator. Callers from any stream submit and wait for the reply. The queue
//! is also where requests from many streams meet, which is where cross-stream batching goes.

use std::path::{Path, PathBuf};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use ort::session::Session;
use ort::session::builder::GraphOptimizationLevel;
use ort::value::{DynValue, ValueType};
use tokio::sync::oneshot;
use tracing::{debug, info};

use crate::InferenceError;
use crate::tensor::{ElementType, Tensor, TensorData, TensorInfo};

static ORT_INIT: OnceLock<Result<PathBuf, String>> = OnceLock::new();

/// Loads the ONNX Runtime shared library once per process. ort panics later on a wrong path,
/// so the file is checked here and a failure becomes an error that names the path.
pub fn init_onnxruntime(library: &Path) -> Result<(), InferenceError> {
    let result = ORT_INIT.get_or_init(|| {
        let bytes = std::fs::read(library).map_err(|e| format!("{}: {e}", library.display()))?;
        if !bytes.starts_with(b"\x7fELF") {
            return Err(format!("{} is not a shared library", library.display()));
        }
        let path = library.to_string_lossy().into_owned();
        std::panic::catch_unwind(|| ort::init_from(path).with_name("media-analyzer").commit())
            .map_err(|_| {
                format!(
                    "loading {} panicked (wrong ONNX Runtime version?)",
                    library.display()
                )
            })?
            .map_err(|e| format!("{}: {e}", library.display()))?;
        info!(library = %library.display(), "ONNX Runtime loaded");
        Ok(library.to_path_buf())
    });
    match result {
        Ok(loaded) if loaded == library => Ok(()),
        Ok(loaded) => Err(InferenceError::Runtime(format!(
            "ONNX Runtime is already loaded from {}; cannot switch to {}",
            loaded.display(),
            library.display()
        ))),
        Err(e) => Err(InferenceError::Runtime(e.clone())),
    }
}

/// Where models run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Accelerator {
    /// TensorRT, then CUDA, when the loaded ONNX Runtime library has them; else the CPU.
    #[default]
    Auto,
    Cpu,
    /// CUDA, or an error (no silent fall back to the CPU).
    Cuda,
    /// TensorRT (with CUDA for what TensorRT can't run), or an error.
    Tensorrt,
}

impl std::str::FromStr for Accelerator {
    type Err = InferenceError;
    fn from_str(s: &str) -> Result<Self, InferenceError> {
        match s {
            "auto" => Ok(Self::Auto),
            "cpu" => Ok(Self::Cpu),
            "cuda" => Ok(Self::Cuda),
            "tensorrt" => Ok(Self::Tensorrt),
            other => Err(InferenceError::Unsupported(format!(
                "accelerator '{other}' (auto, cpu, cuda or tensorrt)"
            ))),
        }
    }
}

/// The execution providers the loaded ONNX Runtime library was built with, e.g.
/// `["CPUExecutionProvider"]` for the PyPI `onnxruntime` wheel; the GPU build adds
/// `CUDAExecutionProvider` and `TensorrtExecutionProvider`.
pub fn available_providers() -> Vec<&'static str> {
    use ort::execution_providers::{
        CPUExecutionProvider, CUDAExecutionProvider, ExecutionProvider, TensorRTExecutionProvider,
    };
    let mut found = Vec::new();
    if TensorRTExecutionProvider::default()
        .is_available()
        .unwrap_or(false)
    {
        found.push("TensorrtExecutionProvider");
    }
    if CUDAExecutionProvider::default()
        .is_available()
        .unwrap_or(false)
    {
        found.push("CUDAExecutionProvider");
    }
    if CPUExecutionProvider::default()
        .is_available()
        .unwrap_or(true)
    {
        found.push("CPUExecutionProvider");
    }
    found
}

/// Settings for one model's session.
#[derive(Debug, Clone)]
pub struct SessionOptions {
    /// Threads ONNX Runtime uses inside one operator (1 was fastest on 2 cores here).
    pub intra_threads: usize,
    /// Sessions (each on its own thread) that serve the model's queue, so this many runs can be in
    /// progress at once. Each holds its own copy of the weights.
    pub sessions: usize,
    /// Scheduling niceness of the model's threads (Linux; 0 leaves them as they are). Positive
    /// values let the video path and the decoders have the CPU first when it is short.
    pub nice: i32,
    /// Jobs that may wait for this model before callers are told it is busy.
    pub queue: usize,
    pub accelerator: Accelerator,
}

impl Default for SessionOptions {
    fn default() -> Self {
        Self {
            intra_threads: 1,
            sessions: 1,
            nice: 0,
            queue: 64,
            accelerator: Accelerator::Auto,
        }
    }
}

/// Registers the providers `accelerator` asks for on `builder`; returns their names in priority
/// order (the CPU always comes last: ONNX Runtime runs there what the others can't).
fn with_accelerator(
    builder: ort::session::builder::SessionBuilder,
    accelerator: Accelerator,
) -> Result<(ort::session::builder::SessionBuilder, Vec<&'static str>), String> {
    use ort::execution_providers::{
        CUDAExecutionProvider, ExecutionProviderDispatch, TensorRTExecutionProvider,
    };
    let available = available_providers();
    let has = |name: &str| available.contains(&name);
    let (trt, cuda) = ("TensorrtExecutionProvider", "CUDAExecutionProvider");
    let wanted: Vec<&'static str> = match accelerator {
        Accelerator::Cpu => vec![],
        Accelerator::Auto => [trt, cuda].into_iter().filter(|p| has(p)).collect(),
        Accelerator::Cuda => vec![cuda],
        Accelerator::Tensorrt => vec![trt, cuda],
    };
    for name in &wanted {
        if !has(name) {
            return Err(format!(
                "{name} was asked for, but the loaded ONNX Runtime library only has {}. The PyPI \
                 `onnxruntime` wheel is CPU-only: point ORT_DYLIB_PATH at the library of the \
                 `onnxruntime-gpu` build (with CUDA 12 and cuDNN installed), or use --accelerator cpu",
                available.join(", ")
            ));
        }
    }
    let dispatch: Vec<ExecutionProviderDispatch> = wanted
        .iter()
        .map(|name| {
            if *name == trt {
                TensorRTExecutionProvider::default()
                    .build()
                    .error_on_failure()
            } else {
                CUDAExecutionProvider::default().build().error_on_failure()
            }
        })
        .collect();
    let builder = if dispatch.is_empty() {
        builder
    } else {
        builder
            .with_execution_providers(dispatch)
            .map_err(|e| format!("registering {}: {e}", wanted.join(", ")))?
    };
    let mut used = wanted;
    used.push("CPUExecutionProvider");
    Ok((builder, used))
}

struct Job {
    inputs: Vec<Tensor>,
    queued: Instant,
    reply: oneshot::Sender<Result<RunOutput, InferenceError>>,
}

/// Outputs of one run, with the time the model itself took.
#[derive(Debug)]
pub struct RunOutput {
    pub outputs: Vec<Tensor>,
    pub queued: Duration,
    pub compute: Duration,
    /// Which of the model's sessions ran it (0-based).
    pub session: usize,
}

/// Where a model's bytes are.
#[derive(Clone, Copy)]
enum ModelSource<'a> {
    File(&'a Path),
    Bytes(&'a [u8]),
}

/// A loaded model; cheap to clone, shared by every stream and tenant.
#[derive(Clone)]
pub struct Model {
    inner: Arc<ModelInner>,
}

struct ModelInner {
    name: String,
    /// Execution providers registered for this session, highest priority first.
    providers: Vec<&'static str>,
    inputs: Vec<TensorInfo>,
    outputs: Vec<TensorInfo>,
    sessions: usize,
    jobs: SyncSender<Job>,
    /// One thread per session; they end when the last handle to the model is dropped.
    workers: Vec<std::thread::JoinHandle<()>>,
}

/// Dropping the last handle closes the queue and waits for the workers: a run in progress
/// finishes (its caller may still be waiting for it), queued runs are answered, and then the
/// sessions are released before the drop returns, so a model swapped out frees its memory and
/// threads at a known point.
impl Drop for ModelInner {
    fn drop(&mut self) {
        drop(std::mem::replace(&mut self.jobs, sync_channel(1).0));
        let me = std::thread::current().id();
        for worker in self.workers.drain(..) {
            // Never joins the calling thread itself (a worker never holds a model, but a join of
            // oneself would fail rather than wait).
            if worker.thread().id() != me && worker.join().is_err() {
                tracing::error!(model = %self.name, "a model worker panicked");
            }
        }
    }
}

impl std::fmt::Debug for Model {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Model")
            .field("name", &self.inner.name)
            .finish_non_exhaustive()
    }
}

impl Model {
    /// Loads `file` into [`SessionOptions::sessions`] sessions, each owned by a new worker thread.
    pub fn load(name: &str, file: &Path, options: &SessionOptions) -> Result<Self, InferenceError> {
        Self::load_from(name, ModelSource::File(file), options)
    }

    /// [`Self::load`] from the model's bytes (an upload being checked, nothing on disk yet).
    pub fn load_bytes(
        name: &str,
        bytes: &[u8],
        options: &SessionOptions,
    ) -> Result<Self, InferenceError> {
        Self::load_from(name, ModelSource::Bytes(bytes), options)
    }

    fn load_from(
        name: &str,
        source: ModelSource<'_>,
        options: &SessionOptions,
    ) -> Result<Self, InferenceError> {
        let load = |e: ort::Error| InferenceError::Load {
            model: name.to_string(),
            reason: e.to_string(),
        };
        let open = || {
            let builder = Session::builder()
                .and_then(|b| b.with_optimization_level(GraphOptimizationLevel::Level3))
                .and_then(|b| b.with_intra_threads(options.intra_threads.max(1)))
                .and_then(|b| b.with_inter_threads(1))
                .map_err(load)?;
            let (builder, providers) =
                with_accelerator(builder, options.accelerator).map_err(|reason| {
                    InferenceError::Load {
                        model: name.to_string(),
                        reason,
                    }
                })?;
            let session = match source {
                ModelSource::File(file) => builder.commit_from_file(file),
                ModelSource::Bytes(bytes) => builder.commit_from_memory(bytes),
            };
            Ok::<_, InferenceError>((session.map_err(load)?, providers))
        };
        let (session, providers) = open()?;
        let mut sessions = vec![session];
        for _ in 1..options.sessions.max(1) {
            sessions.push(open()?.0);
        }
        let session = &sessions[0];
        let inputs = session
            .inputs
            .iter()
            .map(|i| tensor_info(&i.name, &i.input_type))
            .collect::<Result<Vec<_>, _>>()?;
        let outputs = session
            .outputs
            .iter()
            .map(|o| tensor_info(&o.name, &o.output_type))
            .collect::<Result<Vec<_>, _>>()?;
        Self::start(name, providers, inputs, outputs, sessions, options)
    }

    /// A graph the host computes itself (not ONNX Runtime): `graphs` are its sessions, each run
    /// on a worker thread of its own like an ONNX Runtime session, behind the same queue, input
    /// checks and timings.
    pub fn native(
        name: &str,
        inputs: Vec<TensorInfo>,
        outputs: Vec<TensorInfo>,
        graphs: Vec<Box<dyn NativeGraph>>,
        options: &SessionOptions,
    ) -> Result<Self, InferenceError> {
        if graphs.is_empty() {
            return Err(InferenceError::Load {
                model: name.to_string(),
                reason: "no sessions".into(),
            });
        }
        Self::start(name, vec!["native"], inputs, outputs, graphs, options)
    }

    fn start<S: Runs>(
        name: &str,
        providers: Vec<&'static str>,
        inputs: Vec<TensorInfo>,
        outputs: Vec<TensorInfo>,
        sessions: Vec<S>,
        options: &SessionOptions,
    ) -> Result<Self, InferenceError> {
        let (jobs, queue) = sync_channel::<Job>(options.queue.max(1));
        // The workers take turns waiting on the queue: whoever holds the lock waits for the next
        // job, and lets go of it before running the job.
        let queue = Arc::new(Mutex::new(queue));
        let count = sessions.len();
        let mut workers = Vec::with_capacity(count);
        for (i, session) in sessions.into_iter().enumerate() {
            let (model_name, queue, nice) = (name.to_string(), queue.clone(), options.nice);
            let worker = std::thread::Builder::new()
                .name(format!("model-{name}-{i}"))
                .spawn(move || {
                    set_thread_nice(nice);
                    serve_jobs(model_name, i, session, &queue)
                })
                .map_err(|e| InferenceError::Runtime(format!("starting the {name} worker: {e}")))?;
            workers.push(worker);
        }
        debug!(
            model = name,
            ?inputs,
            ?outputs,
            ?providers,
            sessions = count,
            "model loaded"
        );
        Ok(Self {
            inner: Arc::new(ModelInner {
                providers,
                name: name.to_string(),
                inputs,
                outputs,
                sessions: count,
                jobs,
                workers,
            }),
        })
    }

    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// Where this model runs: its execution providers, highest priority first.
    pub fn providers(&self) -> &[&'static str] {
        &self.inner.providers
    }

    /// How many runs of this model can be in progress at once.
    pub fn sessions(&self) -> usize {
        self.inner.sessions
    }

    pub fn inputs(&self) -> &[TensorInfo] {
        &self.inner.inputs
    }

    pub fn outputs(&self) -> &[TensorInfo] {
        &self.inner.outputs
    }

    /// Queues a run; the receiver resolves with the outputs. Fails at once when the model's queue
    /// is full (the caller decides whether to drop the frame) or the inputs don't fit the model.
    pub fn submit(
        &self,
        inputs: Vec<Tensor>,
    ) -> Result<oneshot::Receiver<Result<RunOutput, InferenceError>>, InferenceError> {
        self.check_inputs(&inputs)?;
        let (reply, receiver) = oneshot::channel();
        let job = Job {
            inputs,
            queued: Instant::now(),
            reply,
        };
        match self.inner.jobs.try_send(job) {
            Ok(()) => Ok(receiver),
            Err(TrySendError::Full(_)) => Err(InferenceError::Busy(self.inner.name.clone())),
            Err(TrySendError::Disconnected(_)) => Err(InferenceError::Runtime(format!(
                "the {} worker stopped",
                self.inner.name
            ))),
        }
    }

    /// Runs and waits (for async callers).
    pub async fn run(&self, inputs: Vec<Tensor>) -> Result<RunOutput, InferenceError> {
        self.submit(inputs)?.await.map_err(|_| {
            InferenceError::Runtime(format!("the {} worker dropped a job", self.inner.name))
        })?
    }

    /// Runs and waits (for synchronous callers such as a Wasm host call on a blocking thread).
    pub fn run_blocking(&self, inputs: Vec<Tensor>) -> Result<RunOutput, InferenceError> {
        self.submit(inputs)?.blocking_recv().map_err(|_| {
            InferenceError::Runtime(format!("the {} worker dropped a job", self.inner.name))
        })?
    }

    fn check_inputs(&self, inputs: &[Tensor]) -> Result<(), InferenceError> {
        let bad = |reason: String| InferenceError::BadInput {
            model: self.inner.name.clone(),
            reason,
        };
        for t in inputs {
            let info = self
                .inner
                .inputs
                .iter()
                .find(|i| i.name == t.name)
                .ok_or_else(|| {
                    bad(format!(
                        "no input named '{}' (inputs: {})",
                        t.name,
                        names(&self.inner.inputs)
                    ))
                })?;
            if info.element_type != t.data.element_type() {
                return Err(bad(format!(
                    "'{}' wants {:?}, got {:?}",
                    t.name,
                    info.element_type,
                    t.data.element_type()
                )));
            }
            let fits = info.shape.len() == t.shape.len()
                && info
                    .shape
                    .iter()
                    .zip(&t.shape)
                    .all(|(&want, &got)| got > 0 && (want < 0 || want == got));
            if !fits {
                return Err(bad(format!(
                    "'{}' wants shape {:?}, got {:?}",
                    t.name, info.shape, t.shape
                )));
            }
            if t.shape_elements() != Some(t.data.len()) {
                return Err(bad(format!(
                    "'{}' has {} elements for shape {:?}",
                    t.name,
                    t.data.len(),
                    t.shape
                )));
            }
        }
        if inputs.len() != self.inner.inputs.len() {
            return Err(bad(format!(
                "needs inputs {}, got {}",
                names(&self.inner.inputs),
                inputs.len()
            )));
        }
        Ok(())
    }
}

fn names(infos: &[TensorInfo]) -> String {
    infos
        .iter()
        .map(|i| i.name.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

fn tensor_info(name: &str, ty: &ValueType) -> Result<TensorInfo, InferenceError> {
    match ty {
        ValueType::Tensor { ty, shape, .. } => {
            let element_type = match ty {
                ort::tensor::TensorElementType::Float32 => ElementType::F32,
                ort::tensor::TensorElementType::Int64 => ElementType::I64,
                ort::tensor::TensorElementType::Uint8 => ElementType::U8,
                other => {
                    return Err(InferenceError::Unsupported(format!(
                        "tensor '{name}' has element type {other:?}"
                    )));
                }
            };
            Ok(TensorInfo {
                name: name.to_string(),
                element_type,
                shape: shape.iter().copied().collect(),
            })
        }
        other => Err(InferenceError::Unsupported(format!(
            "'{name}' is not a tensor: {other:?}"
        ))),
    }
}

/// Sets the calling thread's niceness (on Linux, niceness belongs to a thread; elsewhere this does
/// nothing). Raising it needs no privilege; a failure is logged and otherwise ignored.
pub fn set_thread_nice(nice: i32) {
    if nice == 0 {
        return;
    }
    #[cfg(target_os = "linux")]
    if let Err(e) = rustix::process::setpriority_process(Some(rustix::thread::gettid()), nice) {
        debug!(nice, "setpriority: {e}");
    }
}

/// The calling thread's niceness (0 where it can't be read).
pub fn thread_nice() -> i32 {
    #[cfg(target_os = "linux")]
    return rustix::process::getpriority_process(Some(rustix::thread::gettid())).unwrap_or(0);
    #[cfg(not(target_os = "linux"))]
    0
}

/// A graph the host computes itself, served by a [`Model`] ([`Model::native`]). Its inputs were
/// checked against the model's declared inputs; a run that panics fails that run only.
pub trait NativeGraph: Send + 'static {
    fn run(&mut self, inputs: Vec<Tensor>) -> Result<Vec<Tensor>, String>;
}

/// What a model worker runs jobs on: an ONNX Runtime session or a native graph.
trait Runs: Send + 'static {
    fn run(&mut self, inputs: Vec<Tensor>) -> Result<Vec<Tensor>, String>;
}

impl Runs for Session {
    fn run(&mut self, inputs: Vec<Tensor>) -> Result<Vec<Tensor>, String> {
        run_session(self, inputs)
    }
}

impl Runs for Box<dyn NativeGraph> {
    fn run(&mut self, inputs: Vec<Tensor>) -> Result<Vec<Tensor>, String> {
        let graph = &mut **self;
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| graph.run(inputs)))
            .unwrap_or_else(|_| Err("the graph panicked (caught)".into()))
    }
}

fn serve_jobs<S: Runs>(name: String, index: usize, mut session: S, queue: &Mutex<Receiver<Job>>) {
    loop {
        let next = queue.lock().unwrap_or_else(|e| e.into_inner()).recv();
        let Ok(job) = next else { break };
        let queued = job.queued.elapsed();
        let started = Instant::now();
        let result = session.run(job.inputs).map(|outputs| RunOutput {
            outputs,
            queued,
            compute: started.elapsed(),
            session: index,
        });
        let result = result.map_err(|reason| InferenceError::Run {
            model: name.clone(),
            reason,
        });
        let _ = job.reply.send(result);
    }
    debug!(model = %name, "model worker stopped");
}

fn run_session(session: &mut Session, inputs: Vec<Tensor>) -> Result<Vec<Tensor>, String> {
    let mut values: Vec<(String, DynValue)> = Vec::with_capacity(inputs.len());
    for t in inputs {
        let value = match t.data {
            TensorData::F32(v) => {
                ort::value::Tensor::from_array((t.shape.clone(), v)).map(|v| v.into_dyn())
            }
            TensorData::I64(v) => {
                ort::value::Tensor::from_array((t.shape.clone(), v)).map(|v| v.into_dyn())
            }
            TensorData::U8(v) => {
                ort::value::Tensor::from_array((t.shape.clone(), v)).map(|v| v.into_dyn())
            }
        }
        .map_err(|e| e.to_string())?;
        values.push((t.name, value));
    }
    let outputs = session.run(values).map_err(|e| e.to_string())?;
    let mut result = Vec::with_capacity(outputs.len());
    for (name, value) in outputs.iter() {
        let tensor = if let Ok((shape, data)) = value.try_extract_tensor::<f32>() {
            Tensor {
                name: name.to_string(),
                shape: shape.to_vec(),
                data: TensorData::F32(data.to_vec()),
            }
        } else if let Ok((shape, data)) = value.try_extract_tensor::<i64>() {
            Tensor {
                name: name.to_string(),
                shape: shape.to_vec(),
                data: TensorData::I64(data.to_vec()),
            }
        } else if let Ok((shape, data)) = value.try_extract_tensor::<u8>() {
            Tensor {
                name: name.to_string(),
                shape: shape.to_vec(),
                data: TensorData::U8(data.to_vec()),
            }
        } else {
            return Err(format!("output '{name}' has an unsupported type"));
        };
        result.push(tensor);
    }
    Ok(result)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn niceness_is_set_for_the_calling_thread_only() {
        let before = thread_nice();
        let wanted = (before + 3).min(19);
        let set = std::thread::spawn(move || {
            set_thread_nice(wanted);
            thread_nice()
        })
        .join()
        .unwrap();
        if cfg!(target_os = "linux") {
            assert_eq!(set, wanted, "the thread's niceness was not set");
        }
        assert_eq!(thread_nice(), before, "another thread's niceness changed");
    }
}
