//! What an uploaded component must be before it is stored: within the size limit, a component
//! (not a core module), compiled within the compile limits, importing only what its world allows
//! (no filesystem, no sockets, no HTTP), and exporting its world's interface with the right types.

use runtime_wit::detector::DetectorPre;
use runtime_wit::effect_selector::EffectSelectorPre;
use runtime_wit::trigger::TriggerPre;
use wasmtime::component::Linker;

use crate::{LoadError, Runtime, World};

/// An upload that passed every check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checked {
    /// SHA-256 of the bytes, hex: the name it is stored under.
    pub sha256: String,
    pub size: usize,
    /// What it imports (interface names with versions), for the component's listing.
    pub imports: Vec<String>,
}

/// The world's name in `wit/` (`effects` uploads target the `effect-selector` world).
pub fn wit_world(world: World) -> &'static str {
    match world {
        World::Detector => "detector",
        World::Trigger => "trigger",
        World::Effects => "effect-selector",
    }
}

/// WASI interfaces any component may import: what a Rust program built for wasm32-wasip2 imports
/// for its runtime (stdio, exit, environment, clocks, random, streams). The host gives them no
/// environment, no arguments and no stdin, and sends stdout/stderr to the tenant's log.
const WASI_RUNTIME: &[&str] = &[
    "wasi:cli/environment",
    "wasi:cli/exit",
    "wasi:cli/stdin",
    "wasi:cli/stdout",
    "wasi:cli/stderr",
    "wasi:cli/terminal-input",
    "wasi:cli/terminal-output",
    "wasi:cli/terminal-stdin",
    "wasi:cli/terminal-stdout",
    "wasi:cli/terminal-stderr",
    "wasi:io/error",
    "wasi:io/poll",
    "wasi:io/streams",
    "wasi:clocks/monotonic-clock",
    "wasi:clocks/wall-clock",
    "wasi:random/random",
    "wasi:random/insecure",
    "wasi:random/insecure-seed",
];

/// The interfaces the world itself imports (`wit/pipeline.wit`).
fn world_imports(world: World) -> &'static [&'static str] {
    match world {
        World::Detector => &[
            "wasi:nn/tensor",
            "wasi:nn/graph",
            "wasi:nn/inference",
            "wasi:nn/errors",
            "media-analyzer:pipeline/types",
            "media-analyzer:pipeline/frames",
            "media-analyzer:pipeline/tensors",
            "media-analyzer:pipeline/log",
        ],
        World::Trigger => &[
            "media-analyzer:pipeline/types",
            "media-analyzer:pipeline/log",
            "media-analyzer:pipeline/state",
        ],
        World::Effects => &[
            "media-analyzer:pipeline/types",
            "media-analyzer:pipeline/log",
        ],
    }
}

/// Whether `world`'s components may import `import` (`package/interface@version`; any version:
/// the linker checks the types).
pub fn import_allowed(world: World, import: &str) -> bool {
    let interface = import.split_once('@').map_or(import, |(name, _)| name);
    WASI_RUNTIME.contains(&interface) || world_imports(world).contains(&interface)
}

impl Runtime {
    /// Checks an upload for `world` (see the module docs). Blocking: compiles on the runtime's
    /// compile thread and waits at most `compile_timeout`. The compiled code stays in the
    /// compile cache, so activating the component later does not compile it again.
    pub fn check_upload(&self, world: World, bytes: &[u8]) -> Result<Checked, LoadError> {
        let (sha256, component) = self.compile(bytes)?;
        let imports: Vec<String> = component
            .component_type()
            .imports(&self.engine)
            .map(|(name, _)| name.to_string())
            .collect();
        if let Some(forbidden) = imports.iter().find(|i| !import_allowed(world, i)) {
            return Err(LoadError::ForbiddenImport {
                world: wit_world(world),
                import: forbidden.clone(),
            });
        }
        let wrong_world = |e: wasmtime::Error| LoadError::WrongWorld {
            world: wit_world(world),
            reason: format!("{e:#}"),
        };
        // Imports are stubbed (they are checked by name above and typed when the component is
        // activated); what is checked here is that the world's export is there with its types.
        let mut linker = Linker::<()>::new(&self.engine);
        linker
            .define_unknown_imports_as_traps(&component)
            .map_err(wrong_world)?;
        let pre = linker.instantiate_pre(&component).map_err(wrong_world)?;
        match world {
            World::Detector => DetectorPre::new(pre).map(drop),
            World::Trigger => TriggerPre::new(pre).map(drop),
            World::Effects => EffectSelectorPre::new(pre).map(drop),
        }
        .map_err(wrong_world)?;
        // Link it for real, as activation will (the trigger host adds its state import).
        match world {
            World::Detector => drop(self.load_detector(bytes)?),
            World::Effects => drop(self.load_selector(bytes)?),
            World::Trigger => {}
        }
        Ok(Checked {
            sha256,
            size: bytes.len(),
            imports,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_world_imports_its_own_interfaces_and_the_wasi_runtime_only() {
        for world in [World::Detector, World::Trigger, World::Effects] {
            assert!(import_allowed(world, "wasi:io/streams@0.2.6"));
            assert!(import_allowed(world, "media-analyzer:pipeline/log@0.1.0"));
            for forbidden in [
                "wasi:filesystem/preopens@0.2.6",
                "wasi:filesystem/types@0.2.0",
                "wasi:sockets/tcp@0.2.6",
                "wasi:sockets/ip-name-lookup@0.2.0",
                "wasi:http/outgoing-handler@0.2.6",
                "wasi:cli/environmentx@0.2.6",
                "",
            ] {
                assert!(!import_allowed(world, forbidden), "{forbidden}");
            }
        }
        assert!(import_allowed(
            World::Detector,
            "wasi:nn/graph@0.2.0-rc-2024-10-28"
        ));
        assert!(!import_allowed(
            World::Trigger,
            "wasi:nn/graph@0.2.0-rc-2024-10-28"
        ));
        assert!(import_allowed(
            World::Trigger,
            "media-analyzer:pipeline/state@0.1.0"
        ));
        assert!(!import_allowed(
            World::Effects,
            "media-analyzer:pipeline/state@0.1.0"
        ));
        assert!(!import_allowed(
            World::Effects,
            "media-analyzer:pipeline/frames@0.1.0"
        ));
    }
}
