//! The host side of the detector world: frames, wasi-nn over the host's models, and log, all
//! against one call's [`CallState`]. A component gets no filesystem, no sockets, no environment
//! variables; its stdout and stderr are captured (bounded) as its log.

use std::collections::HashMap;
use std::sync::Arc;

use inference::{Model, TensorData, TensorSpec};
use runtime_wit::detector::media_analyzer::pipeline::{frames, log, types};
use runtime_wit::detector::wasi::nn::{errors, graph, inference as nn_inference, tensor};
use runtime_wit::{ExecutionContext, Frame, Graph, NnError, Tensor};
use wasmtime::component::{Resource, ResourceTable};
use wasmtime::{StoreLimits, StoreLimitsBuilder};
use wasmtime_wasi::p2::pipe::MemoryOutputPipe;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

/// Models a component may load by name.
pub type ModelRegistry = HashMap<String, Model>;

/// Everything one call can touch.
pub struct CallState {
    pub(crate) table: ResourceTable,
    pub(crate) wasi: WasiCtx,
    pub(crate) limits: StoreLimits,
    pub(crate) models: Arc<ModelRegistry>,
    pub(crate) output: MemoryOutputPipe,
    pub(crate) log: Vec<String>,
    /// Time spent inside model runs during this call.
    pub(crate) inference: std::time::Duration,
}

impl CallState {
    pub fn new(models: Arc<ModelRegistry>, memory_bytes: usize, log_bytes: usize) -> Self {
        let output = MemoryOutputPipe::new(log_bytes);
        let wasi = WasiCtx::builder()
            .stdout(output.clone())
            .stderr(output.clone())
            .allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false)
            .build();
        let limits = StoreLimitsBuilder::new()
            .memory_size(memory_bytes)
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
        let mut data = Vec::new();
        let placement = match inference::prepare(&f.rgb, f.width, f.height, &spec, &mut data) {
            Ok(p) => p,
            Err(e) => return Ok(Err(e.to_string())),
        };
        let dimensions = spec.shape().iter().map(|&d| d as u32).collect();
        let tensor = self.table.push(Tensor {
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
        let clamp = |v: f32| v.clamp(0.0, 1.0);
        let (x0, y0) = (clamp(region.x), clamp(region.y));
        let (x1, y1) = (clamp(region.x + region.w), clamp(region.y + region.h));
        let px0 = (x0 * f.width as f32).floor() as u32;
        let py0 = (y0 * f.height as f32).floor() as u32;
        let px1 = ((x1 * f.width as f32).ceil() as u32).min(f.width);
        let py1 = ((y1 * f.height as f32).ceil() as u32).min(f.height);
        if px1 <= px0 || py1 <= py0 {
            return Ok(Err(format!("crop region {region:?} is empty")));
        }
        let (w, h) = (px1 - px0, py1 - py0);
        let mut rgb = Vec::with_capacity((w * h * 3) as usize);
        for y in py0..py1 {
            let start = ((y * f.width + px0) * 3) as usize;
            rgb.extend_from_slice(&f.rgb[start..start + (w * 3) as usize]);
        }
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
        self.table.delete(frame)?;
        Ok(())
    }
}

// ---- log ----

impl log::Host for CallState {
    fn log(&mut self, level: log::Level, message: String) -> wasmtime::Result<()> {
        // Bounded like stdout: a chatty component cannot grow the host's memory.
        if self.log.len() < 1000 {
            let mut message = message;
            message.truncate(2000);
            self.log.push(format!("{level:?}: {message}"));
        }
        Ok(())
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
        let data = match ty {
            tensor::TensorType::Fp32 => TensorData::F32(
                data.chunks_exact(4)
                    .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                    .collect(),
            ),
            tensor::TensorType::I64 => TensorData::I64(
                data.chunks_exact(8)
                    .map(|b| i64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]))
                    .collect(),
            ),
            tensor::TensorType::U8 => TensorData::U8(data),
            other => wasmtime::bail!(
                "tensor type {other:?} is not supported by this host (FP32, I64, U8 are)"
            ),
        };
        Ok(self.table.push(Tensor { dimensions, data })?)
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
        self.table.delete(t)?;
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
        if !self.models.contains_key(&name) {
            let known = self.models.keys().cloned().collect::<Vec<_>>().join(", ");
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
        for (input, handle) in inputs {
            // Copied, not taken: the guest still owns the handle and may read it back. (A copy
            // of a 416×416 input is ~0.1 ms next to ~50 ms of inference.)
            let t = self.table.get(&handle)?;
            tensors.push(inference::Tensor {
                name: input,
                shape: t.dimensions.iter().map(|&d| d as i64).collect(),
                data: t.data.clone(),
            });
        }
        let outcome = match model.run_blocking(tensors) {
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
            let dimensions = t.shape.iter().map(|&d| d.max(0) as u32).collect();
            outputs.push((
                t.name,
                self.table.push(Tensor {
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
