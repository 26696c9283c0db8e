//! The shaders on a wgpu device: a hardware GPU, or Mesa's lavapipe (a software Vulkan device).
//! Per frame size, three textures (ping-pong plus the picture before a blur), one read-back
//! buffer and nine bind groups are made once (and, when the encoder takes YUV from here, one
//! single-channel target and its read-back buffer); per frame only the pixels and the uniforms
//! move.

use std::collections::HashMap;

use crate::{Error, MAX_PASSES, Params, Plan, RgbaFrame, Shader, Yuv420Frame};

const FORMAT: wgpu::TextureFormat = wgpu::TextureFormat::Rgba8Unorm;
/// The packed YUV 4:2:0 target of shaders/to_yuv.wgsl.
const YUV_FORMAT: wgpu::TextureFormat = wgpu::TextureFormat::R8Unorm;
/// Longest a frame may take on the device before it counts as failed.
const DEVICE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// Which kind of adapter [`Gpu::open`] takes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GpuKind {
    /// A discrete, integrated or virtual GPU.
    Hardware,
    /// A CPU-backed device (Mesa lavapipe, SwiftShader).
    Software,
}

struct FrameResources {
    width: u32,
    height: u32,
    textures: [wgpu::Texture; 3],
    views: [wgpu::TextureView; 3],
    /// `[source][original]`.
    bind_groups: Vec<wgpu::BindGroup>,
    readback: wgpu::Buffer,
    padded_row: u32,
    /// Made on the first [`Gpu::render_yuv`] at this size.
    yuv: Option<YuvTarget>,
    /// Made on the first [`Gpu::render_i420`] at this size.
    yuv_input: Option<YuvInput>,
}

/// What a frame is uploaded as.
#[derive(Clone, Copy)]
enum Upload<'a> {
    /// 8-bit RGBA, rows without padding.
    Rgba(&'a [u8]),
    /// I420 as the decoder gives it: Y, then U, then V, rows without padding; converted to RGBA
    /// by the first pass (shaders/from_yuv.wgsl).
    I420(&'a [u8]),
}

/// The packed I420 input (laid out as [`YuvTarget`]) and its bind group as `source`.
struct YuvInput {
    texture: wgpu::Texture,
    bind_group: wgpu::BindGroup,
}

/// width × height·3/2, one byte a pixel: the Y plane, then each chroma row's U and V rows side by
/// side (shaders/to_yuv.wgsl).
struct YuvTarget {
    texture: wgpu::Texture,
    view: wgpu::TextureView,
    readback: wgpu::Buffer,
    padded_row: u32,
}

pub struct Gpu {
    device: wgpu::Device,
    queue: wgpu::Queue,
    info: wgpu::AdapterInfo,
    layout: wgpu::BindGroupLayout,
    pipelines: HashMap<Shader, wgpu::RenderPipeline>,
    to_yuv: wgpu::RenderPipeline,
    from_yuv: wgpu::RenderPipeline,
    uniforms: wgpu::Buffer,
    uniform_slot: u64,
    uniform_bytes: Vec<u8>,
    frame: Option<FrameResources>,
    /// Whether frames go to and from the encoder as YUV converted here (see
    /// [`Gpu::converts_yuv`]).
    converts_yuv: bool,
}

impl std::fmt::Debug for Gpu {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gpu")
            .field("adapter", &self.info.name)
            .finish()
    }
}

fn is_software(t: wgpu::DeviceType) -> bool {
    t == wgpu::DeviceType::Cpu
}

impl Gpu {
    /// Opens the first adapter of that kind (Vulkan preferred over GL).
    pub fn open(kind: GpuKind) -> Result<Gpu, Error> {
        // Vulkan first; GL (EGL) only where Vulkan has no such adapter (probing GL is slower and
        // noisy on headless machines).
        let wanted = |a: &wgpu::Adapter| {
            let t = a.get_info().device_type;
            match kind {
                GpuKind::Hardware => !is_software(t) && t != wgpu::DeviceType::Other,
                GpuKind::Software => is_software(t),
            }
        };
        let mut seen = Vec::new();
        let mut candidates = Vec::new();
        for backends in [wgpu::Backends::VULKAN, wgpu::Backends::GL] {
            let mut desc = wgpu::InstanceDescriptor::new_without_display_handle();
            desc.backends = backends;
            let instance = wgpu::Instance::new(desc);
            for a in pollster::block_on(instance.enumerate_adapters(backends)) {
                let i = a.get_info();
                seen.push(format!("{} ({:?}, {:?})", i.name, i.device_type, i.backend));
                if wanted(&a) {
                    candidates.push(a);
                }
            }
            if !candidates.is_empty() {
                break;
            }
        }
        let Some(adapter) = candidates.first() else {
            return Err(Error::NoDevice(format!(
                "no {} adapter among [{}]{}",
                match kind {
                    GpuKind::Hardware => "hardware",
                    GpuKind::Software => "software",
                },
                seen.join(", "),
                match kind {
                    GpuKind::Software => " (Debian: apt-get install mesa-vulkan-drivers)",
                    GpuKind::Hardware => "",
                }
            )));
        };
        let info = adapter.get_info();
        let (device, queue) = pollster::block_on(adapter.request_device(&wgpu::DeviceDescriptor {
            label: Some("effects"),
            required_limits:
                wgpu::Limits::downlevel_webgl2_defaults().using_resolution(adapter.limits()),
            ..Default::default()
        }))
        .map_err(|e| Error::NoDevice(format!("{}: {e}", info.name)))?;
        // Errors come back through error scopes (render); never a panic on the device thread.
        device.on_uncaptured_error(std::sync::Arc::new(|e| {
            tracing::error!("effects device error: {e}");
        }));
        let layout = device.create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor {
            label: Some("effects"),
            entries: &[
                wgpu::BindGroupLayoutEntry {
                    binding: 0,
                    visibility: wgpu::ShaderStages::FRAGMENT,
                    ty: wgpu::BindingType::Buffer {
                        ty: wgpu::BufferBindingType::Uniform,
                        has_dynamic_offset: true,
                        min_binding_size: wgpu::BufferSize::new(Params::BYTES as u64),
                    },
                    count: None,
                },
                texture_entry(1),
                texture_entry(2),
            ],
        });
        let pipeline_layout = device.create_pipeline_layout(&wgpu::PipelineLayoutDescriptor {
            label: Some("effects"),
            bind_group_layouts: &[Some(&layout)],
            ..Default::default()
        });
        let mut modules = HashMap::new();
        for (file, _) in crate::shaders::FILES {
            let module = device.create_shader_module(wgpu::ShaderModuleDescriptor {
                label: Some(file),
                source: wgpu::ShaderSource::Wgsl(crate::shaders::module_source(file).into()),
            });
            modules.insert(file, module);
        }
        let pipeline = |module: &wgpu::ShaderModule, entry: &str, format| {
            device.create_render_pipeline(&wgpu::RenderPipelineDescriptor {
                label: Some(entry),
                layout: Some(&pipeline_layout),
                vertex: wgpu::VertexState {
                    module,
                    entry_point: Some("vs_main"),
                    compilation_options: Default::default(),
                    buffers: &[],
                },
                fragment: Some(wgpu::FragmentState {
                    module,
                    entry_point: Some(entry),
                    compilation_options: Default::default(),
                    targets: &[Some(wgpu::ColorTargetState {
                        format,
                        blend: None,
                        write_mask: wgpu::ColorWrites::ALL,
                    })],
                }),
                primitive: wgpu::PrimitiveState::default(),
                depth_stencil: None,
                multisample: wgpu::MultisampleState::default(),
                multiview_mask: None,
                cache: None,
            })
        };
        let pipelines = Shader::ALL
            .into_iter()
            .map(|shader| {
                let (file, entry) = shader.source();
                (shader, pipeline(&modules[file], entry, FORMAT))
            })
            .collect();
        let to_yuv = pipeline(&modules["to_yuv"], "fs_to_yuv", YUV_FORMAT);
        let from_yuv = pipeline(&modules["from_yuv"], "fs_from_yuv", FORMAT);
        let align = device.limits().min_uniform_buffer_offset_alignment as u64;
        let uniform_slot = (Params::BYTES as u64).div_ceil(align) * align;
        let uniforms = device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("effects params"),
            size: uniform_slot * MAX_PASSES as u64,
            usage: wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        tracing::info!(adapter = %info.name, backend = ?info.backend, kind = ?info.device_type, "effects device");
        let converts_yuv = !is_software(info.device_type);
        Ok(Gpu {
            converts_yuv,
            device,
            queue,
            info,
            layout,
            pipelines,
            to_yuv,
            from_yuv,
            uniforms,
            uniform_slot,
            uniform_bytes: vec![0; (uniform_slot * MAX_PASSES as u64) as usize],
            frame: None,
        })
    }

    /// The adapter, e.g. "llvmpipe (LLVM 15.0.6, 256 bits) (Vulkan, software)".
    pub fn describe(&self) -> String {
        format!(
            "{} ({:?}, {})",
            self.info.name,
            self.info.backend,
            if is_software(self.info.device_type) {
                "software"
            } else {
                "hardware"
            }
        )
    }

    pub fn is_software(&self) -> bool {
        is_software(self.info.device_type)
    }

    /// Whether [`crate::Renderer`] hands frames to and from the encoder as YUV converted on this
    /// device: by default on a hardware GPU, where the conversion passes cost next to nothing and
    /// the transfers and the CPU's conversions they replace are what a frame costs. On a software
    /// device the passes run on the CPU and cost more than libswscale's conversions (`bench
    /// rendition`: 0.65× at 720p), so frames go as RGBA there.
    pub fn converts_yuv(&self) -> bool {
        self.converts_yuv
    }

    /// Overrides [`Gpu::converts_yuv`].
    pub fn set_converts_yuv(&mut self, on: bool) {
        self.converts_yuv = on;
    }

    /// Makes the textures, bind groups and read-back buffer for this frame size, unless made.
    fn prepare(&mut self, width: u32, height: u32) {
        if self
            .frame
            .as_ref()
            .is_some_and(|f| f.width == width && f.height == height)
        {
            return;
        }
        let device = &self.device;
        let texture = |i: usize| {
            device.create_texture(&wgpu::TextureDescriptor {
                label: Some(["effects a", "effects b", "effects c"][i]),
                size: wgpu::Extent3d {
                    width,
                    height,
                    depth_or_array_layers: 1,
                },
                mip_level_count: 1,
                sample_count: 1,
                dimension: wgpu::TextureDimension::D2,
                format: FORMAT,
                usage: wgpu::TextureUsages::TEXTURE_BINDING
                    | wgpu::TextureUsages::RENDER_ATTACHMENT
                    | wgpu::TextureUsages::COPY_DST
                    | wgpu::TextureUsages::COPY_SRC,
                view_formats: &[],
            })
        };
        let textures = [texture(0), texture(1), texture(2)];
        let views = [0, 1, 2].map(|i| textures[i].create_view(&Default::default()));
        let mut bind_groups = Vec::with_capacity(9);
        for source in 0..3 {
            for original in 0..3 {
                bind_groups.push(bind_group(
                    device,
                    &self.layout,
                    &self.uniforms,
                    &views[source],
                    &views[original],
                ));
            }
        }
        let (readback, padded_row) =
            readback_buffer(device, "effects read-back", width * 4, height);
        self.frame = Some(FrameResources {
            width,
            height,
            textures,
            views,
            bind_groups,
            readback,
            padded_row,
            yuv: None,
            yuv_input: None,
        });
    }

    /// Uploads the frame, runs the plan's passes, reads the result back into the frame.
    pub fn render(&mut self, frame: &mut RgbaFrame, plan: &Plan) -> Result<(), Error> {
        let scope = self.device.push_error_scope(wgpu::ErrorFilter::Validation);
        let (width, height) = (frame.width, frame.height);
        let (encoder, current) = self.passes(Upload::Rgba(&frame.pixels), width, height, plan)?;
        let Some(res) = self.frame.as_ref() else {
            return Err(Error::Device("no frame resources".into()));
        };
        let (texture, padded) = (&res.textures[current], res.padded_row as usize);
        let read = (&res.readback, res.padded_row, height);
        self.read_back(encoder, scope, texture, read, |data| {
            let row = width as usize * 4;
            for (y, out) in frame.pixels.chunks_exact_mut(row).enumerate() {
                out.copy_from_slice(&data[y * padded..y * padded + row]);
            }
        })
    }

    /// Uploads the frame, runs the plan's passes and converts the result to YUV 4:2:0 on the
    /// device (shaders/to_yuv.wgsl), reading back only `yuv`'s 1.5 bytes a pixel. The frame's
    /// width and height must be even.
    pub fn render_yuv(
        &mut self,
        frame: &RgbaFrame,
        plan: &Plan,
        yuv: &mut Yuv420Frame,
    ) -> Result<(), Error> {
        let upload = Upload::Rgba(&frame.pixels);
        self.yuv_to_yuv(upload, frame.width, frame.height, plan, yuv)
    }

    /// [`Gpu::render_yuv`] for a frame as the decoder gives it, I420 (`width * height * 3 / 2`
    /// bytes: Y, U, V without padding): 1.5 bytes a pixel go up instead of 4 and the first pass
    /// converts it to RGB (shaders/from_yuv.wgsl), so the CPU converts nothing either way.
    pub fn render_i420(
        &mut self,
        width: u32,
        height: u32,
        i420: &[u8],
        plan: &Plan,
        yuv: &mut Yuv420Frame,
    ) -> Result<(), Error> {
        let luma = width as usize * height as usize;
        if i420.len() != luma * 3 / 2 {
            return Err(Error::Frame(format!(
                "{width}×{height} I420 needs {} bytes, got {}",
                luma * 3 / 2,
                i420.len()
            )));
        }
        self.yuv_to_yuv(Upload::I420(i420), width, height, plan, yuv)
    }

    fn yuv_to_yuv(
        &mut self,
        upload: Upload<'_>,
        width: u32,
        height: u32,
        plan: &Plan,
        yuv: &mut Yuv420Frame,
    ) -> Result<(), Error> {
        yuv.resize(width, height)?;
        let scope = self.device.push_error_scope(wgpu::ErrorFilter::Validation);
        let (mut encoder, current) = self.passes(upload, width, height, plan)?;
        self.prepare_yuv();
        let Some((res, target)) = self.frame.as_ref().and_then(|f| Some((f, f.yuv.as_ref()?)))
        else {
            return Err(Error::Device("no frame resources".into()));
        };
        let source = &res.bind_groups[current * 3 + current];
        whole_pass(&mut encoder, &target.view, &self.to_yuv, source);
        let padded = target.padded_row as usize;
        let read = (&target.readback, target.padded_row, height + height / 2);
        self.read_back(encoder, scope, &target.texture, read, |data| {
            let (w, h) = (width as usize, height as usize);
            for (y, out) in yuv.y.chunks_exact_mut(w).enumerate() {
                out.copy_from_slice(&data[y * padded..y * padded + w]);
            }
            let half = w / 2;
            for (r, (u, v)) in yuv
                .u
                .chunks_exact_mut(half)
                .zip(yuv.v.chunks_exact_mut(half))
                .enumerate()
            {
                let o = (h + r) * padded;
                u.copy_from_slice(&data[o..o + half]);
                v.copy_from_slice(&data[o + half..o + w]);
            }
        })
    }

    /// Makes the YUV target and its read-back buffer for the prepared frame size, unless made.
    fn prepare_yuv(&mut self) {
        let device = &self.device;
        let Some(res) = self.frame.as_mut().filter(|f| f.yuv.is_none()) else {
            return;
        };
        let rows = res.height + res.height / 2;
        let texture = device.create_texture(&wgpu::TextureDescriptor {
            label: Some("effects yuv"),
            size: extent(res.width, rows),
            mip_level_count: 1,
            sample_count: 1,
            dimension: wgpu::TextureDimension::D2,
            format: YUV_FORMAT,
            usage: wgpu::TextureUsages::RENDER_ATTACHMENT | wgpu::TextureUsages::COPY_SRC,
            view_formats: &[],
        });
        let (readback, padded_row) =
            readback_buffer(device, "effects yuv read-back", res.width, rows);
        res.yuv = Some(YuvTarget {
            view: texture.create_view(&Default::default()),
            texture,
            readback,
            padded_row,
        });
    }

    /// Makes the packed I420 input texture and its bind group for the prepared frame size,
    /// unless made.
    fn prepare_yuv_input(&mut self) {
        let device = &self.device;
        let Some(res) = self.frame.as_mut().filter(|f| f.yuv_input.is_none()) else {
            return;
        };
        let texture = device.create_texture(&wgpu::TextureDescriptor {
            label: Some("effects yuv input"),
            size: extent(res.width, res.height + res.height / 2),
            mip_level_count: 1,
            sample_count: 1,
            dimension: wgpu::TextureDimension::D2,
            format: YUV_FORMAT,
            usage: wgpu::TextureUsages::TEXTURE_BINDING | wgpu::TextureUsages::COPY_DST,
            view_formats: &[],
        });
        let view = texture.create_view(&Default::default());
        let bind_group = bind_group(device, &self.layout, &self.uniforms, &view, &view);
        res.yuv_input = Some(YuvInput {
            texture,
            bind_group,
        });
    }

    /// Uploads the frame and records the plan's passes; answers the encoder and which of the
    /// three textures holds the result.
    fn passes(
        &mut self,
        upload: Upload<'_>,
        width: u32,
        height: u32,
        plan: &Plan,
    ) -> Result<(wgpu::CommandEncoder, usize), Error> {
        let max = self.device.limits().max_texture_dimension_2d;
        let rows = match upload {
            Upload::Rgba(_) => height,
            Upload::I420(_) => height + height / 2,
        };
        if width > max || rows > max {
            return Err(Error::Frame(format!(
                "{width}×{height} is larger than this device's {max}×{max} textures"
            )));
        }
        let passes = &plan.passes[..plan.passes.len().min(MAX_PASSES)];
        for (i, pass) in passes.iter().enumerate() {
            let o = i * self.uniform_slot as usize;
            self.uniform_bytes[o..o + Params::BYTES].copy_from_slice(&pass.params.bytes());
        }
        let used = passes.len() * self.uniform_slot as usize;
        self.queue
            .write_buffer(&self.uniforms, 0, &self.uniform_bytes[..used]);
        let slot = self.uniform_slot;
        self.prepare(width, height);
        if let Upload::I420(_) = upload {
            self.prepare_yuv_input();
        }
        let Some(res) = self.frame.as_ref() else {
            return Err(Error::Device("no frame resources".into()));
        };
        let extent = extent(width, height);
        let mut encoder = self
            .device
            .create_command_encoder(&wgpu::CommandEncoderDescriptor { label: None });
        match upload {
            Upload::Rgba(pixels) => self.queue.write_texture(
                res.textures[0].as_image_copy(),
                pixels,
                wgpu::TexelCopyBufferLayout {
                    offset: 0,
                    bytes_per_row: Some(width * 4),
                    rows_per_image: Some(height),
                },
                extent,
            ),
            Upload::I420(planes) => {
                let Some(input) = res.yuv_input.as_ref() else {
                    return Err(Error::Device("no YUV input".into()));
                };
                // The planes into the packed layout: Y at the top, U and V side by side below.
                let (w, h) = (width as usize, height as usize);
                let chroma = (w / 2) * (h / 2);
                for (bytes, origin, (pw, ph)) in [
                    (&planes[..w * h], (0, 0), (width, height)),
                    (
                        &planes[w * h..w * h + chroma],
                        (0, height),
                        (width / 2, height / 2),
                    ),
                    (
                        &planes[w * h + chroma..],
                        (width / 2, height),
                        (width / 2, height / 2),
                    ),
                ] {
                    self.queue.write_texture(
                        wgpu::TexelCopyTextureInfo {
                            texture: &input.texture,
                            mip_level: 0,
                            origin: wgpu::Origin3d {
                                x: origin.0,
                                y: origin.1,
                                z: 0,
                            },
                            aspect: wgpu::TextureAspect::All,
                        },
                        bytes,
                        wgpu::TexelCopyBufferLayout {
                            offset: 0,
                            bytes_per_row: Some(pw),
                            rows_per_image: Some(ph),
                        },
                        self::extent(pw, ph),
                    );
                }
                whole_pass(
                    &mut encoder,
                    &res.views[0],
                    &self.from_yuv,
                    &input.bind_group,
                );
            }
        }
        let mut current = 0usize;
        let mut before_blur = 0usize;
        for (i, pass) in passes.iter().enumerate() {
            let (source, original) = match pass.shader {
                Shader::BlurColumns => (current, before_blur),
                Shader::BlurRows => {
                    before_blur = current;
                    (current, current)
                }
                _ => (current, current),
            };
            let target = (0..3)
                .find(|t| *t != source && *t != original)
                .expect("three textures, two in use");
            // A pass that changes only part of the frame starts from what it leaves as it is
            // and draws inside that part only.
            let touched = pass.touched(width, height);
            let load = match touched {
                Some(_) => {
                    let keep = if pass.shader == Shader::BlurColumns {
                        original
                    } else {
                        source
                    };
                    encoder.copy_texture_to_texture(
                        res.textures[keep].as_image_copy(),
                        res.textures[target].as_image_copy(),
                        extent,
                    );
                    wgpu::LoadOp::Load
                }
                None => wgpu::LoadOp::Clear(wgpu::Color::BLACK),
            };
            let mut rp = encoder.begin_render_pass(&wgpu::RenderPassDescriptor {
                label: None,
                color_attachments: &[Some(wgpu::RenderPassColorAttachment {
                    view: &res.views[target],
                    depth_slice: None,
                    resolve_target: None,
                    ops: wgpu::Operations {
                        load,
                        store: wgpu::StoreOp::Store,
                    },
                })],
                ..Default::default()
            });
            if let Some((x0, y0, x1, y1)) = touched {
                rp.set_scissor_rect(x0 as u32, y0 as u32, (x1 - x0) as u32, (y1 - y0) as u32);
            }
            rp.set_pipeline(&self.pipelines[&pass.shader]);
            rp.set_bind_group(
                0,
                &res.bind_groups[source * 3 + original],
                &[(i as u64 * slot) as u32],
            );
            rp.draw(0..3, 0..1);
            drop(rp);
            current = target;
        }
        Ok((encoder, current))
    }

    /// Ends the encoder by copying `texture` (`rows` rows) into `buffer` (rows `padded_row`
    /// bytes apart), submits it, waits for the device, and hands the mapped bytes to `copy`; a
    /// validation error in the scope fails the frame.
    fn read_back(
        &self,
        mut encoder: wgpu::CommandEncoder,
        scope: wgpu::ErrorScopeGuard,
        texture: &wgpu::Texture,
        (buffer, padded_row, rows): (&wgpu::Buffer, u32, u32),
        copy: impl FnOnce(&[u8]),
    ) -> Result<(), Error> {
        encoder.copy_texture_to_buffer(
            texture.as_image_copy(),
            wgpu::TexelCopyBufferInfo {
                buffer,
                layout: wgpu::TexelCopyBufferLayout {
                    offset: 0,
                    bytes_per_row: Some(padded_row),
                    rows_per_image: Some(rows),
                },
            },
            extent(texture.width(), rows),
        );
        self.queue.submit([encoder.finish()]);
        let (tx, rx) = std::sync::mpsc::channel();
        buffer.slice(..).map_async(wgpu::MapMode::Read, move |r| {
            let _ = tx.send(r);
        });
        self.device
            .poll(wgpu::PollType::Wait {
                submission_index: None,
                timeout: Some(DEVICE_TIMEOUT),
            })
            .map_err(|e| Error::Device(e.to_string()))?;
        let mapped = rx
            .recv()
            .map_err(|_| Error::Device("the read-back was dropped".into()))?;
        if let Some(e) = pollster::block_on(scope.pop()) {
            if mapped.is_ok() {
                buffer.unmap();
            }
            return Err(Error::Device(e.to_string()));
        }
        mapped.map_err(|e| Error::Device(format!("read-back: {e}")))?;
        let copied = buffer.slice(..).get_mapped_range().map(|data| copy(&data));
        buffer.unmap();
        copied.map_err(|e| Error::Device(format!("read-back: {e}")))
    }
}

/// Records a conversion pass over the whole of `target` (no parameters of its own).
fn whole_pass(
    encoder: &mut wgpu::CommandEncoder,
    target: &wgpu::TextureView,
    pipeline: &wgpu::RenderPipeline,
    source: &wgpu::BindGroup,
) {
    let mut rp = encoder.begin_render_pass(&wgpu::RenderPassDescriptor {
        label: None,
        color_attachments: &[Some(wgpu::RenderPassColorAttachment {
            view: target,
            depth_slice: None,
            resolve_target: None,
            ops: wgpu::Operations {
                load: wgpu::LoadOp::Clear(wgpu::Color::BLACK),
                store: wgpu::StoreOp::Store,
            },
        })],
        ..Default::default()
    });
    rp.set_pipeline(pipeline);
    rp.set_bind_group(0, source, &[0]);
    rp.draw(0..3, 0..1);
}

/// The bind group of a pass: the parameters, `source` and `original`.
fn bind_group(
    device: &wgpu::Device,
    layout: &wgpu::BindGroupLayout,
    uniforms: &wgpu::Buffer,
    source: &wgpu::TextureView,
    original: &wgpu::TextureView,
) -> wgpu::BindGroup {
    device.create_bind_group(&wgpu::BindGroupDescriptor {
        label: None,
        layout,
        entries: &[
            wgpu::BindGroupEntry {
                binding: 0,
                resource: wgpu::BindingResource::Buffer(wgpu::BufferBinding {
                    buffer: uniforms,
                    offset: 0,
                    size: wgpu::BufferSize::new(Params::BYTES as u64),
                }),
            },
            wgpu::BindGroupEntry {
                binding: 1,
                resource: wgpu::BindingResource::TextureView(source),
            },
            wgpu::BindGroupEntry {
                binding: 2,
                resource: wgpu::BindingResource::TextureView(original),
            },
        ],
    })
}

/// A buffer to read `rows` rows of `row_bytes` back into, and its row pitch (`row_bytes` padded
/// to the copy alignment).
fn readback_buffer(
    device: &wgpu::Device,
    label: &str,
    row_bytes: u32,
    rows: u32,
) -> (wgpu::Buffer, u32) {
    let padded_row =
        row_bytes.div_ceil(wgpu::COPY_BYTES_PER_ROW_ALIGNMENT) * wgpu::COPY_BYTES_PER_ROW_ALIGNMENT;
    let buffer = device.create_buffer(&wgpu::BufferDescriptor {
        label: Some(label),
        size: padded_row as u64 * rows as u64,
        usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
        mapped_at_creation: false,
    });
    (buffer, padded_row)
}

fn extent(width: u32, height: u32) -> wgpu::Extent3d {
    wgpu::Extent3d {
        width,
        height,
        depth_or_array_layers: 1,
    }
}

fn texture_entry(binding: u32) -> wgpu::BindGroupLayoutEntry {
    wgpu::BindGroupLayoutEntry {
        binding,
        visibility: wgpu::ShaderStages::FRAGMENT,
        ty: wgpu::BindingType::Texture {
            sample_type: wgpu::TextureSampleType::Float { filterable: false },
            view_dimension: wgpu::TextureViewDimension::D2,
            multisampled: false,
        },
        count: None,
    }
}
