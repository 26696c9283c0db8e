//! Which components run where: per key (a live stream), per world, the active versions —
//! swapped atomically, read as one snapshot per frame.
//!
//! Analysis takes a [`Pipeline`] snapshot for each frame and runs that frame with it to the end,
//! so a swap applies from the next frame: in-flight calls finish on the old versions, and no
//! frame has results from two pipelines. Keys without their own pipeline run the defaults (the
//! bundled components).

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

/// The component worlds a pipeline has a stage for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum World {
    Detector,
    Trigger,
    Effects,
}

impl World {
    pub fn as_str(self) -> &'static str {
        match self {
            World::Detector => "detector",
            World::Trigger => "trigger",
            World::Effects => "effects",
        }
    }
}

impl std::str::FromStr for World {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "detector" => Ok(World::Detector),
            "trigger" => Ok(World::Trigger),
            "effects" => Ok(World::Effects),
            other => Err(format!(
                "unknown world '{other}' (detector, trigger or effects)"
            )),
        }
    }
}

/// One component version in a pipeline.
#[derive(Debug, Clone, PartialEq)]
pub struct Active<C> {
    /// The name detections carry (`component`).
    pub name: String,
    /// 0 for a bundled component; uploads count from 1.
    pub version: u32,
    /// Its settings, as the component reads them (name, value).
    pub config: Vec<(String, String)>,
    pub component: C,
}

impl<C> Active<C> {
    /// What detections found by it carry as `component`: the name of a bundled component,
    /// `name@version` of an uploaded one (so results say which version found them).
    pub fn label(&self) -> String {
        if self.version == 0 {
            self.name.clone()
        } else {
            format!("{}@{}", self.name, self.version)
        }
    }
}

/// What runs on a tenant's frames: per world, the active components in order. Immutable; a
/// change makes a new one.
#[derive(Debug)]
pub struct Pipeline<C> {
    /// Counts the swaps of this key's pipeline (0: the defaults): which pipeline a frame ran.
    pub generation: u64,
    /// The stored change that made it (`None`: the defaults).
    pub change: Option<String>,
    stages: HashMap<World, Vec<Active<C>>>,
}

impl<C> Pipeline<C> {
    pub fn new(stages: impl IntoIterator<Item = (World, Vec<Active<C>>)>) -> Self {
        Self {
            generation: 0,
            change: None,
            stages: stages.into_iter().collect(),
        }
    }

    /// The world's components, in order (empty when it has none).
    pub fn stage(&self, world: World) -> &[Active<C>] {
        self.stages.get(&world).map_or(&[], Vec::as_slice)
    }
}

/// Per key, the active [`Pipeline`]; see the module docs.
#[derive(Debug)]
pub struct Registry<C> {
    defaults: Arc<Pipeline<C>>,
    keys: RwLock<HashMap<String, Arc<Pipeline<C>>>>,
}

impl<C> Registry<C> {
    pub fn new(defaults: Pipeline<C>) -> Self {
        Self {
            defaults: Arc::new(defaults),
            keys: RwLock::default(),
        }
    }

    /// The key's pipeline now: a snapshot that later swaps do not change.
    pub fn pipeline(&self, key: &str) -> Arc<Pipeline<C>> {
        let keys = self.keys.read().unwrap_or_else(|e| e.into_inner());
        keys.get(key)
            .cloned()
            .unwrap_or_else(|| self.defaults.clone())
    }

    /// The defaults' components for `world`.
    pub fn defaults(&self, world: World) -> &[Active<C>] {
        self.defaults.stage(world)
    }

    /// Replaces one world's components of the key's pipeline (the other worlds stay), in one
    /// step: a reader sees the old pipeline or the new one, never a mix. `change` names the
    /// stored change it comes from. Returns the new generation.
    pub fn swap(
        &self,
        key: &str,
        world: World,
        components: Vec<Active<C>>,
        change: Option<String>,
    ) -> u64
    where
        C: Clone,
    {
        let mut keys = self.keys.write().unwrap_or_else(|e| e.into_inner());
        let current = keys
            .get(key)
            .cloned()
            .unwrap_or_else(|| self.defaults.clone());
        let mut stages = current.stages.clone();
        stages.insert(world, components);
        let generation = current.generation + 1;
        keys.insert(
            key.to_string(),
            Arc::new(Pipeline {
                generation,
                change,
                stages,
            }),
        );
        generation
    }

    /// Forgets the key (its stream ended): it runs the defaults again if it comes back.
    pub fn remove(&self, key: &str) {
        self.keys
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .remove(key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn active(name: &str, version: u32) -> Active<String> {
        Active {
            name: name.into(),
            version,
            config: Vec::new(),
            component: format!("{name}@{version}"),
        }
    }

    fn names(stage: &[Active<String>]) -> Vec<&str> {
        stage.iter().map(|a| a.component.as_str()).collect()
    }

    /// A swap reaches the next snapshot of that key only: a snapshot taken before it (a frame in
    /// flight) keeps the old versions, other keys keep theirs, other worlds stay, and a removed
    /// key runs the defaults again.
    #[test]
    fn a_swap_applies_from_the_next_snapshot_of_that_key_only() {
        let registry = Registry::new(Pipeline::new([(
            World::Detector,
            vec![active("object-detector", 0), active("face-detector", 0)],
        )]));
        let in_flight = registry.pipeline("ten_a");
        assert_eq!(in_flight.generation, 0);

        let generation = registry.swap(
            "ten_a",
            World::Detector,
            vec![active("logo", 1)],
            Some("chg_1".into()),
        );
        assert_eq!(generation, 1);
        assert_eq!(registry.pipeline("ten_a").change.as_deref(), Some("chg_1"));
        assert_eq!(
            registry.pipeline("ten_a").stage(World::Detector)[0].label(),
            "logo@1"
        );
        assert_eq!(
            in_flight.stage(World::Detector)[0].label(),
            "object-detector"
        );
        assert_eq!(
            names(in_flight.stage(World::Detector)),
            ["object-detector@0", "face-detector@0"]
        );
        assert_eq!(
            names(registry.pipeline("ten_a").stage(World::Detector)),
            ["logo@1"]
        );
        assert_eq!(
            names(registry.pipeline("ten_b").stage(World::Detector)),
            ["object-detector@0", "face-detector@0"],
            "another tenant's pipeline is its own"
        );

        registry.swap(
            "ten_a",
            World::Trigger,
            vec![active("brand-rules", 0)],
            None,
        );
        let now = registry.pipeline("ten_a");
        assert_eq!(now.generation, 2);
        assert_eq!(
            names(now.stage(World::Detector)),
            ["logo@1"],
            "other worlds stay"
        );
        assert_eq!(names(now.stage(World::Trigger)), ["brand-rules@0"]);
        assert!(now.stage(World::Effects).is_empty());

        registry.remove("ten_a");
        let back = registry.pipeline("ten_a");
        assert_eq!(
            names(back.stage(World::Detector)),
            ["object-detector@0", "face-detector@0"]
        );
        assert_eq!((back.generation, back.change.as_deref()), (0, None));
        assert_eq!(names(registry.defaults(World::Detector)).len(), 2);
        assert_eq!("effects".parse::<World>().map(World::as_str), Ok("effects"));
        assert!("filesystem".parse::<World>().is_err());
    }

    /// Readers racing a writer only ever see whole pipelines.
    #[test]
    fn concurrent_readers_never_see_half_a_swap() {
        let registry = Registry::new(Pipeline::new([(World::Detector, vec![active("a", 0)])]));
        std::thread::scope(|s| {
            s.spawn(|| {
                for v in 1..=500 {
                    registry.swap(
                        "ten_a",
                        World::Detector,
                        vec![active("a", v), active("b", v)],
                        None,
                    );
                }
            });
            for _ in 0..2 {
                s.spawn(|| {
                    for _ in 0..2000 {
                        let p = registry.pipeline("ten_a");
                        let versions: Vec<u32> =
                            p.stage(World::Detector).iter().map(|a| a.version).collect();
                        assert!(
                            versions == [0] || (versions.len() == 2 && versions[0] == versions[1]),
                            "{versions:?}"
                        );
                        assert_eq!(p.generation, versions[0] as u64);
                    }
                });
            }
        });
    }
}
