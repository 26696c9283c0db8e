//! The WGSL sources in shaders/ (one source of truth), and their GLSL ES 3.00 translation for
//! the dashboard's WebGL2 preview.

use crate::{Error, Shader};

const COMMON: &str = include_str!("../../../shaders/common.wgsl");
const FACE_BLUR: &str = include_str!("../../../shaders/face_blur.wgsl");
const HIGHLIGHT: &str = include_str!("../../../shaders/highlight.wgsl");
const COLOUR_GRADE: &str = include_str!("../../../shaders/colour_grade.wgsl");
const TO_YUV: &str = include_str!("../../../shaders/to_yuv.wgsl");
const FROM_YUV: &str = include_str!("../../../shaders/from_yuv.wgsl");

/// The shader files of shaders/ (without common.wgsl), by name. `to_yuv` and `from_yuv` (the
/// host's conversions between the decoder, the effects and the encoder) are no effects and have
/// no WebGL2 copy.
pub(crate) const FILES: [(&str, &str); 5] = [
    ("face_blur", FACE_BLUR),
    ("highlight", HIGHLIGHT),
    ("colour_grade", COLOUR_GRADE),
    ("to_yuv", TO_YUV),
    ("from_yuv", FROM_YUV),
];

/// `common.wgsl` followed by the named file: the module a pipeline is made from.
pub(crate) fn module_source(file: &str) -> String {
    let body = FILES
        .iter()
        .find(|(name, _)| *name == file)
        .map(|(_, s)| *s)
        .unwrap_or_default();
    format!("{COMMON}\n{body}")
}

/// One effect pass as WebGL2 needs it: the GLSL of the vertex and the fragment stage, and the
/// names the translation gave the uniform block and the two textures.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct WebglShader {
    /// The entry point in shaders/ (`fs_blur_rows`, …).
    pub entry: String,
    pub vertex: String,
    pub fragment: String,
    /// The uniform block holding `Params` (bind a 576-byte UBO to it).
    pub params_block: String,
    /// The sampler uniform for `source`.
    pub source_texture: String,
    /// The sampler uniform for `original` (only the blur's second pass has one).
    pub original_texture: Option<String>,
}

fn parse(file: &'static str) -> Result<(naga::Module, naga::valid::ModuleInfo), Error> {
    let source = module_source(file);
    let module = naga::front::wgsl::parse_str(&source).map_err(|e| Error::Shader {
        name: file,
        message: e.emit_to_string(&source),
    })?;
    let info = naga::valid::Validator::new(
        naga::valid::ValidationFlags::all(),
        naga::valid::Capabilities::empty(),
    )
    .validate(&module)
    .map_err(|e| Error::Shader {
        name: file,
        message: e.emit_to_string(&source),
    })?;
    Ok((module, info))
}

fn glsl(
    file: &'static str,
    module: &naga::Module,
    info: &naga::valid::ModuleInfo,
    stage: naga::ShaderStage,
    entry: &str,
) -> Result<(String, naga::back::glsl::ReflectionInfo), Error> {
    let options = naga::back::glsl::Options {
        version: naga::back::glsl::Version::new_gles(300),
        writer_flags: naga::back::glsl::WriterFlags::empty(),
        ..Default::default()
    };
    let pipeline = naga::back::glsl::PipelineOptions {
        shader_stage: stage,
        entry_point: entry.to_string(),
        multiview: None,
    };
    let mut out = String::new();
    let mut writer = naga::back::glsl::Writer::new(
        &mut out,
        module,
        info,
        &options,
        &pipeline,
        naga::proc::BoundsCheckPolicies::default(),
    )
    .map_err(|e| Error::Shader {
        name: file,
        message: format!("{entry} to GLSL: {e}"),
    })?;
    let reflection = writer.write().map_err(|e| Error::Shader {
        name: file,
        message: format!("{entry} to GLSL: {e}"),
    })?;
    Ok((out, reflection))
}

/// Every effect pass in GLSL ES 3.00, translated by naga from shaders/ (the dashboard's copy,
/// frontend/src/app/effects/shaders.generated.ts, is written from this; a test checks it is
/// current).
pub fn webgl2() -> Result<Vec<WebglShader>, Error> {
    let mut out = Vec::new();
    for shader in Shader::ALL {
        let (file, entry) = shader.source();
        let (module, info) = parse(file)?;
        let (vertex, _) = glsl(file, &module, &info, naga::ShaderStage::Vertex, "vs_main")?;
        let (fragment, reflection) =
            glsl(file, &module, &info, naga::ShaderStage::Fragment, entry)?;
        let global = |name: &str| {
            module
                .global_variables
                .iter()
                .find(|(_, g)| g.name.as_deref() == Some(name))
                .map(|(h, _)| h)
        };
        let texture = |name: &str| {
            let h = global(name)?;
            reflection
                .texture_mapping
                .iter()
                .find(|(_, m)| m.texture == h)
                .map(|(n, _)| n.clone())
        };
        let params_block = global("params")
            .and_then(|h| reflection.uniforms.get(&h).cloned())
            .ok_or_else(|| Error::Shader {
                name: file,
                message: format!("{entry}: no uniform block for params"),
            })?;
        let source_texture = texture("source").ok_or_else(|| Error::Shader {
            name: file,
            message: format!("{entry}: no sampler for source"),
        })?;
        out.push(WebglShader {
            entry: entry.to_string(),
            vertex,
            fragment,
            params_block,
            source_texture,
            original_texture: texture("original"),
        });
    }
    Ok(out)
}

/// The dashboard's TypeScript module with every pass's GLSL (what
/// frontend/src/app/effects/shaders.generated.ts holds).
pub fn webgl2_module() -> Result<String, Error> {
    let shaders = webgl2()?;
    let json = serde_json::to_string_pretty(&shaders).map_err(|e| Error::Shader {
        name: "webgl2",
        message: e.to_string(),
    })?;
    Ok(format!(
        "// Generated from shaders/*.wgsl by naga (GLSL ES 3.00): do not edit.\n\
         // Regenerate: cargo run -p effects --example webgl2 > frontend/src/app/effects/shaders.generated.ts\n\
         export interface WebglShader {{\n  entry: string;\n  vertex: string;\n  fragment: string;\n  \
         paramsBlock: string;\n  sourceTexture: string;\n  originalTexture: string | null;\n}}\n\n\
         export const PARAMS_FLOATS = 144;\n\n\
         export const SHADERS: WebglShader[] = {json};\n"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_pass_translates_to_glsl_es_300() {
        let shaders = webgl2().unwrap();
        assert_eq!(shaders.len(), Shader::ALL.len());
        for s in &shaders {
            assert!(s.fragment.starts_with("#version 300 es"), "{}", s.entry);
            assert!(s.fragment.contains("texelFetch"), "{}", s.entry);
            assert_eq!(
                s.original_texture.is_some(),
                s.entry == "fs_blur_columns",
                "{}",
                s.entry
            );
        }
    }

    #[test]
    fn every_file_is_valid_wgsl() {
        for (file, _) in FILES {
            parse(file).unwrap_or_else(|e| panic!("{e}"));
        }
    }

    #[test]
    fn the_dashboard_copy_is_current() {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../frontend/src/app/effects/shaders.generated.ts"
        );
        let committed = std::fs::read_to_string(path).unwrap_or_default();
        assert!(
            committed == webgl2_module().unwrap(),
            "{path} is not what shaders/ generates: run \
             cargo run -p effects --example webgl2 > frontend/src/app/effects/shaders.generated.ts"
        );
    }
}
