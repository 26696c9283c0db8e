//! The host side of the detector world: frames, wasi-nn over the host's models, and log, all
//! against one call's [`CallState`]. A component gets no filesystem, no sockets, no environment
//! variables; its stdout and stderr are captured (bounded) as its log.
//!
//! Whatever a host call creates for the component (crops, tensors, model outputs) is charged to
//! the call's [`HostBudget`] before it is allocated and released when the component drops it; a
//! call past the budget traps with [`HostLimit::HostMemory`]. The argument checks are the plain
//! functions of [`crate::args`].

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use inference::{Model, TensorData, TensorSpec};
use runtime_wit::detector::media_analyzer::pipeline::{frames, log, tensors, types};
use runtime_wit::detector::wasi::nn::{errors, graph, inference as nn_inference, tensor};
use runtime_wit::{ExecutionContext, Frame, Graph, NnError, Tensor};
use wasmtime::component::{Resource, ResourceTable};
use wasmtime::{StoreLimits, StoreLimitsBuilder};
use wasmtime_wasi::p2::pipe::MemoryOutputPipe;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use crate::SandboxConfig;
use crate::args::{self, ArgError, ElementType, HostBudget, HostLimit};

/// Models a component may load by name.
pub type ModelRegistry = HashMap<String, Model>;

/// The models one call may load by name: its tenant's own (uploaded, in the tenant's namespace)
/// and the host's bundled ones. A tenant's model never shadows a bundled one (the upload refuses
/// those names), and no other tenant's model is in reach.
#[derive(Clone, Default)]
pub struct ModelScope {
    pub bundled: Arc<ModelRegistry>,
    pub tenant: Arc<ModelRegistry>,
}

impl ModelScope {
    fn get(&self, name: &str) -> Option<&Model> {
        self.bundled.get(name).or_else(|| self.tenant.get(name))
    }

    /// The names in reach, sorted (what a `not-found` error lists).
    fn names(&self) -> Vec<String> {
        let mut names: Vec<String> = self
            .bundled
            .keys()
            .chain(self.tenant.keys())
            .cloned()
            .collect();
        names.sort();
        names
    }
}

/// Everything one call can touch.
pub struct CallState {
    pub(crate) table: ResourceTable,
    pub(crate) wasi: WasiCtx,
    pub(crate) limits: StoreLimits,
    pub(crate) models: ModelScope,
    pub(crate) output: MemoryOutputPipe,
    pub(crate) log: Vec<String>,
    /// Time spent inside model runs during this call.
    pub(crate) inference: std::time::Duration,
    /// Host memory this call holds for the component.
    pub(crate) budget: HostBudget,
    /// When the call must end; host calls that wait give up then.
    pub(crate) deadline: Instant,
    pub(crate) config: SandboxConfig,
    /// A trigger call's state (its tenant's and component's); `None` for detectors.
    pub(crate) rule_state: Option<Arc<crate::trigger::RuleState>>,
    /// A Spin component's variables and allowed Redis addresses; `None` for our own worlds.
    pub(crate) spin: Option<crate::spin::SpinScope>,
}

impl CallState {
    /// The state of one call that starts now, under `config`'s limits.
    pub fn new(models: ModelScope, config: &SandboxConfig) -> Self {
        let output = MemoryOutputPipe::new(config.log_bytes);
        let wasi = WasiCtx::builder()
            .stdout(output.clone())
            .stderr(output.clone())
            .allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false)
            .build();
        let limits = StoreLimitsBuilder::new()
            .memory_size(config.memory_bytes)
            .trap_on_grow_failure(true)
            .instances(16)
            .tables(16)
            .memories(4)
            .build();
        Self {
            table: ResourceTable::new(),
            wasi,
            limits,
            models,
            output,
            log: Vec::new(),
            inference: Default::default(),
            budget: HostBudget::new(config.host_memory_bytes),
            deadline: Instant::now() + config.deadline,
            config: config.clone(),
            rule_state: None,
            spin: None,
        }
    }

    /// Host memory held for the component right now.
    pub fn host_bytes(&self) -> usize {
        self.budget.used()
    }

    /// Charges `bytes` to the budget: a trap (not an error the component could ignore and retry)
    /// when it is spent.
    fn charge(&mut self, bytes: u64) -> wasmtime::Result<()> {
        self.budget.charge(bytes).map_err(wasmtime::Error::new)
    }

    /// Puts a tensor in the table, charged to the budget.
    fn push_tensor(&mut self, tensor: Tensor) -> wasmtime::Result<Resource<Tensor>> {
        let bytes = args::tensor_bytes(&tensor.data);
        self.charge(bytes as u64)?;
        match self.table.push(tensor) {
            Ok(handle) => Ok(handle),
            Err(e) => {
                self.budget.release(bytes);
                Err(e.into())
            }
        }
    }

    /// The component's log: explicit `log` calls, then whatever it printed.
    pub fn take_log(&mut self) -> Vec<String> {
        let printed = self.output.contents();
        let mut lines = std::mem::take(&mut self.log);
        lines.extend(
            String::from_utf8_lossy(&printed)
                .lines()
                .map(|l| format!("stdout: {l}")),
        );
        lines
    }
}

impl WasiView for CallState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

fn nn_error(
    table: &mut ResourceTable,
    code: errors::ErrorCode,
    message: impl Into<String>,
) -> wasmtime::Result<Resource<NnError>> {
    Ok(table.push(NnError {
        code,
        message: message.into(),
    })?)
}

// ---- frames ----

impl types::Host for CallState {}

impl frames::Host for CallState {}

impl frames::HostFrame for CallState {
    fn info(&mut self, frame: Resource<Frame>) -> wasmtime::Result<frames::FrameInfo> {
        let f = self.table.get(&frame)?;
        Ok(frames::FrameInfo {
            stream: f.stream.clone(),
            seq: f.seq,
            pts_ms: f.pts_ms,
            width: f.width,
            height: f.height,
        })
    }

    fn tensor(
        &mut self,
        frame: Resource<Frame>,
        spec: frames::TensorSpec,
    ) -> wasmtime::Result<Result<(Resource<Tensor>, frames::Placement), String>> {
        let f = self.table.get(&frame)?.clone();
        let spec = TensorSpec {
            width: spec.width,
            height: spec.height,
            layout: match spec.layout {
                frames::Layout::Nchw => inference::Layout::Nchw,
                frames::Layout::Nhwc => inference::Layout::Nhwc,
            },
            channels: match spec.channels {
                frames::ChannelOrder::Rgb => inference::ChannelOrder::Rgb,
                frames::ChannelOrder::Bgr => inference::ChannelOrder::Bgr,
            },
            resize: match spec.resize {
                frames::Resize::Stretch => inference::Resize::Stretch,
                frames::Resize::Letterbox(pad) => inference::Resize::Letterbox { pad },
            },
            mean: [spec.mean.0, spec.mean.1, spec.mean.2],
            std: [spec.std.0, spec.std.1, spec.std.2],
        };
        let bytes =
            match args::frame_tensor_bytes(spec.width, spec.height, self.config.max_tensor_dim) {
                Ok(b) => b,
                Err(e) => return Ok(Err(e.to_string())),
            };
        // Refused before the host allocates, so a loop of huge tensors is a trap, not an OOM.
        self.charge(bytes)?;
        let mut data = Vec::new();
        let prepared = inference::prepare(&f.rgb, f.width, f.height, &spec, &mut data);
        self.budget.release(bytes as usize);
        let placement = match prepared {
            Ok(p) => p,
            Err(e) => return Ok(Err(e.to_string())),
        };
        let dimensions = spec.shape().iter().map(|&d| d as u32).collect();
        let tensor = self.push_tensor(Tensor {
            dimensions,
            data: TensorData::F32(data),
        })?;
        Ok(Ok((
            tensor,
            frames::Placement {
                scale_x: placement.scale_x,
                scale_y: placement.scale_y,
                pad_x: placement.pad_x,
                pad_y: placement.pad_y,
            },
        )))
    }

    fn crop(
        &mut self,
        frame: Resource<Frame>,
        region: frames::Bbox,
    ) -> wasmtime::Result<Result<Resource<Frame>, String>> {
        let f = self.table.get(&frame)?.clone();
        let rect =
            match args::crop_rect(f.width, f.height, [region.x, region.y, region.w, region.h]) {
                Ok(r) => r,
                Err(e) => return Ok(Err(e.to_string())),
            };
        let (_, _, w, h) = rect;
        let bytes = w as u64 * h as u64 * 3;
        self.charge(bytes)?;
        let rgb = match args::crop_pixels(&f.rgb, f.width, f.height, rect) {
            Ok(rgb) => rgb,
            Err(e) => {
                self.budget.release(bytes as usize);
                return Ok(Err(e.to_string()));
            }
        };
        let cropped = Frame {
            width: w,
            height: h,
            rgb: Arc::new(rgb),
            ..f
        };
        Ok(Ok(self.table.push(cropped)?))
    }

    fn pixels(
        &mut self,
        frame: Resource<Frame>,
        format: frames::PixelFormat,
    ) -> wasmtime::Result<Vec<u8>> {
        let f = self.table.get(&frame)?;
        Ok(match format {
            frames::PixelFormat::Rgb8 => f.rgb.as_ref().clone(),
            frames::PixelFormat::Gray8 => f
                .rgb
                .chunks_exact(3)
                .map(|p| ((p[0] as u32 * 77 + p[1] as u32 * 150 + p[2] as u32 * 29) >> 8) as u8)
                .collect(),
        })
    }

    fn drop(&mut self, frame: Resource<Frame>) -> wasmtime::Result<()> {
        // Only crops can be dropped (the call's own frame is a borrow), and only crops are charged.
        let dropped = self.table.delete(frame)?;
        self.budget.release(dropped.rgb.len());
        Ok(())
    }
}

// ---- log ----

impl log::Host for CallState {
    fn log(&mut self, level: log::Level, message: String) -> wasmtime::Result<()> {
        #[cfg(test)]
        if message == crate::tests::PANIC_HOOK {
            panic!("the unit-test hook panicked inside a host call");
        }
        // Bounded like stdout: a chatty component cannot grow the host's memory.
        if self.log.len() < self.config.log_lines {
            let message = args::cut_on_char_boundary(&message, self.config.log_line_bytes);
            self.log.push(format!("{level:?}: {message}"));
        }
        Ok(())
    }
}

// ---- model outputs read in place ----

/// Rows one `tensors` call may return, at most.
const MAX_ROWS_READ: usize = 4096;
/// Values one `tensors.rows` call may return, at most (4 MiB of f32).
const MAX_VALUES_READ: usize = 1 << 20;

/// An f32 tensor's values as rows of `row_len`.
fn f32_rows(t: &Tensor, row_len: u32) -> Result<(&[f32], usize), String> {
    let TensorData::F32(values) = &t.data else {
        return Err("only f32 tensors are read by rows".into());
    };
    let row_len = row_len as usize;
    if row_len == 0 || values.len() % row_len != 0 {
        return Err(format!("{} values are not rows of {row_len}", values.len()));
    }
    Ok((values, row_len))
}

/// The rows (of `row_len` values) whose highest value is at least `threshold`, with that value
/// and its column (the last of equal highest values, as `Iterator::max_by` picks; NaN never
/// passes); at most `max` (and [`MAX_ROWS_READ`]), the highest, in row order.
fn rows_above(values: &[f32], row_len: usize, threshold: f32, max: u32) -> Vec<tensors::RowMax> {
    let mut found = Vec::new();
    for (row, values) in values.chunks_exact(row_len).enumerate() {
        let (column, value) =
            values
                .iter()
                .enumerate()
                .fold((0, f32::NEG_INFINITY), |best, (i, &v)| {
                    if v >= best.1 { (i, v) } else { best }
                });
        if value >= threshold {
            found.push(tensors::RowMax {
                row: row as u32,
                column: column as u32,
                value,
            });
        }
    }
    let max = (max as usize).min(MAX_ROWS_READ);
    if found.len() > max {
        found.sort_unstable_by(|a, b| b.value.total_cmp(&a.value));
        found.truncate(max);
        found.sort_unstable_by_key(|r| r.row);
    }
    found
}

impl tensors::Host for CallState {
    fn rows_above(
        &mut self,
        t: Resource<Tensor>,
        row_len: u32,
        threshold: f32,
        max: u32,
    ) -> wasmtime::Result<Result<Vec<tensors::RowMax>, String>> {
        let tensor = self.table.get(&t)?;
        let (values, row_len) = match f32_rows(tensor, row_len) {
            Ok(v) => v,
            Err(e) => return Ok(Err(e)),
        };
        Ok(Ok(rows_above(values, row_len, threshold, max)))
    }

    fn rows(
        &mut self,
        t: Resource<Tensor>,
        row_len: u32,
        rows: Vec<u32>,
    ) -> wasmtime::Result<Result<Vec<f32>, String>> {
        let tensor = self.table.get(&t)?;
        let (values, row_len) = match f32_rows(tensor, row_len) {
            Ok(v) => v,
            Err(e) => return Ok(Err(e)),
        };
        if rows.len() > MAX_ROWS_READ || rows.len() * row_len > MAX_VALUES_READ {
            return Ok(Err(format!(
                "{} rows of {row_len} are more than one call reads (at most {MAX_ROWS_READ} rows, {MAX_VALUES_READ} values)",
                rows.len()
            )));
        }
        let count = values.len() / row_len;
        let mut out = Vec::with_capacity(rows.len() * row_len);
        for row in rows {
            let row = row as usize;
            if row >= count {
                return Ok(Err(format!("row {row} of a tensor of {count} rows")));
            }
            out.extend_from_slice(&values[row * row_len..(row + 1) * row_len]);
        }
        Ok(Ok(out))
    }
}

// ---- wasi-nn ----

impl tensor::Host for CallState {}

impl tensor::HostTensor for CallState {
    fn new(
        &mut self,
        dimensions: Vec<u32>,
        ty: tensor::TensorType,
        data: Vec<u8>,
    ) -> wasmtime::Result<Resource<Tensor>> {
        // The constructor cannot return an error: bad arguments trap, naming the limit.
        let bad = |e: ArgError| wasmtime::Error::new(HostLimit::BadArgument(e));
        let element = match ty {
            tensor::TensorType::Fp32 => ElementType::F32,
            tensor::TensorType::I64 => ElementType::I64,
            tensor::TensorType::U8 => ElementType::U8,
            other => return Err(bad(ArgError::TensorType(format!("{other:?}")))),
        };
        let (rank, dim) = (self.config.max_tensor_rank, self.config.max_tensor_dim);
        let data = args::tensor_from_bytes(&dimensions, element, data, rank, dim).map_err(bad)?;
        self.push_tensor(Tensor { dimensions, data })
    }

    fn dimensions(&mut self, t: Resource<Tensor>) -> wasmtime::Result<Vec<u32>> {
        Ok(self.table.get(&t)?.dimensions.clone())
    }

    fn ty(&mut self, t: Resource<Tensor>) -> wasmtime::Result<tensor::TensorType> {
        Ok(match self.table.get(&t)?.data {
            TensorData::F32(_) => tensor::TensorType::Fp32,
            TensorData::I64(_) => tensor::TensorType::I64,
            TensorData::U8(_) => tensor::TensorType::U8,
        })
    }

    fn data(&mut self, t: Resource<Tensor>) -> wasmtime::Result<Vec<u8>> {
        Ok(match &self.table.get(&t)?.data {
            TensorData::F32(v) => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
            TensorData::I64(v) => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
            TensorData::U8(v) => v.clone(),
        })
    }

    fn drop(&mut self, t: Resource<Tensor>) -> wasmtime::Result<()> {
        let dropped = self.table.delete(t)?;
        self.budget.release(args::tensor_bytes(&dropped.data));
        Ok(())
    }
}

impl graph::Host for CallState {
    fn load(
        &mut self,
        _builder: Vec<Vec<u8>>,
        _encoding: graph::GraphEncoding,
        _target: graph::ExecutionTarget,
    ) -> wasmtime::Result<Result<Resource<Graph>, Resource<NnError>>> {
        // Components don't bring their own weights: models are owned by the host.
        Ok(Err(nn_error(
            &mut self.table,
            errors::ErrorCode::Security,
            "load models by name (graph.load-by-name)",
        )?))
    }

    fn load_by_name(
        &mut self,
        name: String,
    ) -> wasmtime::Result<Result<Resource<Graph>, Resource<NnError>>> {
        if self.models.get(&name).is_none() {
            let known = self.models.names().join(", ");
            return Ok(Err(nn_error(
                &mut self.table,
                errors::ErrorCode::NotFound,
                format!("no model '{name}' (known: {known})"),
            )?));
        }
        Ok(Ok(self.table.push(Graph { model: name })?))
    }
}

impl graph::HostGraph for CallState {
    fn init_execution_context(
        &mut self,
        g: Resource<Graph>,
    ) -> wasmtime::Result<Result<Resource<ExecutionContext>, Resource<NnError>>> {
        let model = self.table.get(&g)?.model.clone();
        Ok(Ok(self.table.push(ExecutionContext { model })?))
    }

    fn drop(&mut self, g: Resource<Graph>) -> wasmtime::Result<()> {
        self.table.delete(g)?;
        Ok(())
    }
}

impl nn_inference::Host for CallState {}

impl nn_inference::HostGraphExecutionContext for CallState {
    fn compute(
        &mut self,
        ctx: Resource<ExecutionContext>,
        inputs: Vec<(String, Resource<Tensor>)>,
    ) -> wasmtime::Result<Result<Vec<(String, Resource<Tensor>)>, Resource<NnError>>> {
        let name = self.table.get(&ctx)?.model.clone();
        let Some(model) = self.models.get(&name).cloned() else {
            return Ok(Err(nn_error(
                &mut self.table,
                errors::ErrorCode::NotFound,
                format!("no model '{name}'"),
            )?));
        };
        let mut tensors = Vec::with_capacity(inputs.len());
        let mut in_flight = 0;
        for (input, handle) in inputs {
            // Taken, not copied: `named-tensor` hands the tensor to the host. It stays charged to
            // the budget until the model is done with it.
            let t = self.table.delete(handle)?;
            in_flight += args::tensor_bytes(&t.data);
            tensors.push((input, t));
        }
        let checked = tensors.iter().try_for_each(|(input, t)| {
            let declared = model.inputs().iter().find(|i| &i.name == input);
            let shape = declared.map(|i| i.shape.as_slice()).unwrap_or_default();
            args::check_dynamic_dims(input, shape, &t.dimensions, self.config.max_dynamic_dim)
        });
        if let Err(e) = checked {
            self.budget.release(in_flight);
            return Ok(Err(nn_error(
                &mut self.table,
                errors::ErrorCode::InvalidArgument,
                e.to_string(),
            )?));
        }
        let tensors = tensors
            .into_iter()
            .map(|(name, t)| inference::Tensor {
                name,
                shape: t.dimensions.iter().map(|&d| d as i64).collect(),
                data: t.data,
            })
            .collect();
        let outcome = model.run_blocking(tensors);
        self.budget.release(in_flight);
        let outcome = match outcome {
            Ok(o) => o,
            Err(e @ inference::InferenceError::BadInput { .. }) => {
                return Ok(Err(nn_error(
                    &mut self.table,
                    errors::ErrorCode::InvalidArgument,
                    e.to_string(),
                )?));
            }
            Err(e @ inference::InferenceError::Busy(_)) => {
                return Ok(Err(nn_error(
                    &mut self.table,
                    errors::ErrorCode::Timeout,
                    e.to_string(),
                )?));
            }
            Err(e) => {
                return Ok(Err(nn_error(
                    &mut self.table,
                    errors::ErrorCode::RuntimeError,
                    e.to_string(),
                )?));
            }
        };
        self.inference += outcome.compute;
        let mut outputs = Vec::with_capacity(outcome.outputs.len());
        for t in outcome.outputs {
            let dimensions = t
                .shape
                .iter()
                .map(|&d| d.clamp(0, u32::MAX as i64) as u32)
                .collect();
            outputs.push((
                t.name,
                self.push_tensor(Tensor {
                    dimensions,
                    data: t.data,
                })?,
            ));
        }
        Ok(Ok(outputs))
    }

    fn drop(&mut self, ctx: Resource<ExecutionContext>) -> wasmtime::Result<()> {
        self.table.delete(ctx)?;
        Ok(())
    }
}

impl errors::Host for CallState {}

impl errors::HostError for CallState {
    fn code(&mut self, e: Resource<NnError>) -> wasmtime::Result<errors::ErrorCode> {
        Ok(self.table.get(&e)?.code)
    }

    fn data(&mut self, e: Resource<NnError>) -> wasmtime::Result<String> {
        Ok(self.table.get(&e)?.message.clone())
    }

    fn drop(&mut self, e: Resource<NnError>) -> wasmtime::Result<()> {
        self.table.delete(e)?;
        Ok(())
    }
}

#[cfg(test)]
mod rows_tests {
    use super::*;

    fn found(values: &[f32], row_len: usize, threshold: f32, max: u32) -> Vec<(u32, u32, f32)> {
        rows_above(values, row_len, threshold, max)
            .into_iter()
            .map(|r| (r.row, r.column, r.value))
            .collect()
    }

    /// Rows above the threshold with their best column; NaN never passes; ties take the last
    /// column (as the dense decoders' `max_by` does); a cap keeps the highest rows, in row order.
    #[test]
    fn rows_above_finds_each_rows_best_value() {
        let values = [
            0.1,
            0.9,
            0.2, // row 0: column 1
            0.5,
            0.5,
            0.1, // row 1: tie, the last
            f32::NAN,
            0.2,
            0.1, // row 2: NaN ignored, below
            0.3,
            0.1,
            0.7, // row 3
        ];
        assert_eq!(
            found(&values, 3, 0.4, 10),
            [(0, 1, 0.9), (1, 1, 0.5), (3, 2, 0.7)]
        );
        assert_eq!(found(&values, 3, 0.4, 2), [(0, 1, 0.9), (3, 2, 0.7)]);
        assert!(found(&values, 3, 0.95, 10).is_empty());
        let t = Tensor {
            dimensions: vec![1, 4, 3],
            data: TensorData::F32(values.to_vec()),
        };
        assert!(f32_rows(&t, 3).is_ok());
        assert!(f32_rows(&t, 5).is_err(), "12 values are not rows of 5");
        assert!(f32_rows(&t, 0).is_err());
        let bytes = Tensor {
            dimensions: vec![3],
            data: TensorData::U8(vec![1, 2, 3]),
        };
        assert!(f32_rows(&bytes, 1).is_err());
    }
}
