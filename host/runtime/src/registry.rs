//! Which components run for whom: per tenant, per world, the active versions — swapped
//! atomically, read as one snapshot per frame.
//!
//! Analysis takes a [`Pipeline`] snapshot for each frame and runs that frame with it to the end,
//! so a swap applies from the next frame: in-flight calls finish on the old versions, and no
//! frame has results from two pipelines. Tenants without their own pipeline run the defaults
//! (the bundled components).

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
#[derive(Debug, Clone)]
pub struct Active<C> {
    /// The name detections carry (`component`).
    pub name: String,
    /// 0 for a bundled component; uploads count from 1.
    pub version: u32,
    pub component: C,
}

/// What runs on a tenant's frames: per world, the active components in order. Immutable; a
/// change makes a new one.
#[derive(Debug)]
pub struct Pipeline<C> {
    /// Counts the swaps of this tenant's pipeline (0: the defaults): which pipeline a frame ran.
    pub generation: u64,
    stages: HashMap<World, Vec<Active<C>>>,
}

impl<C> Pipeline<C> {
    pub fn new(stages: impl IntoIterator<Item = (World, Vec<Active<C>>)>) -> Self {
        Self {
            generation: 0,
            stages: stages.into_iter().collect(),
        }
    }

    /// The world's components, in order (empty when it has none).
    pub fn stage(&self, world: World) -> &[Active<C>] {
        self.stages.get(&world).map_or(&[], Vec::as_slice)
    }
}

/// Per tenant, the active [`Pipeline`]; see the module docs.
#[derive(Debug)]
pub struct Registry<C> {
    defaults: Arc<Pipeline<C>>,
    tenants: RwLock<HashMap<String, Arc<Pipeline<C>>>>,
}

impl<C> Registry<C> {
    pub fn new(defaults: Pipeline<C>) -> Self {
        Self {
            defaults: Arc::new(defaults),
            tenants: RwLock::default(),
        }
    }

    /// The tenant's pipeline now: a snapshot that later swaps do not change.
    pub fn pipeline(&self, tenant: &str) -> Arc<Pipeline<C>> {
        let tenants = self.tenants.read().unwrap_or_else(|e| e.into_inner());
        tenants
            .get(tenant)
            .cloned()
            .unwrap_or_else(|| self.defaults.clone())
    }

    /// Replaces one world's components of the tenant's pipeline (the other worlds stay), in one
    /// step: a reader sees the old pipeline or the new one, never a mix. Returns the new
    /// generation.
    pub fn swap(&self, tenant: &str, world: World, components: Vec<Active<C>>) -> u64
    where
        C: Clone,
    {
        let mut tenants = self.tenants.write().unwrap_or_else(|e| e.into_inner());
        let current = tenants
            .get(tenant)
            .cloned()
            .unwrap_or_else(|| self.defaults.clone());
        let mut stages = current.stages.clone();
        stages.insert(world, components);
        let generation = current.generation + 1;
        tenants.insert(
            tenant.to_string(),
            Arc::new(Pipeline { generation, stages }),
        );
        generation
    }

    /// The tenant runs the defaults again (as a new generation, so generations only grow).
    pub fn reset(&self, tenant: &str) -> u64
    where
        C: Clone,
    {
        let mut tenants = self.tenants.write().unwrap_or_else(|e| e.into_inner());
        let Some(current) = tenants.get(tenant) else {
            return self.defaults.generation;
        };
        let generation = current.generation + 1;
        let defaults = Pipeline {
            generation,
            stages: self.defaults.stages.clone(),
        };
        tenants.insert(tenant.to_string(), Arc::new(defaults));
        generation
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn active(name: &str, version: u32) -> Active<String> {
        Active {
            name: name.into(),
            version,
            component: format!("{name}@{version}"),
        }
    }

    fn names(stage: &[Active<String>]) -> Vec<&str> {
        stage.iter().map(|a| a.component.as_str()).collect()
    }

    /// A swap reaches the next snapshot of that tenant only: a snapshot taken before it (a frame
    /// in flight) keeps the old versions, other tenants keep theirs, other worlds stay, and a
    /// reset goes back to the defaults.
    #[test]
    fn a_swap_applies_from_the_next_snapshot_of_that_tenant_only() {
        let registry = Registry::new(Pipeline::new([(
            World::Detector,
            vec![active("object-detector", 0), active("face-detector", 0)],
        )]));
        let in_flight = registry.pipeline("ten_a");
        assert_eq!(in_flight.generation, 0);

        let generation = registry.swap("ten_a", World::Detector, vec![active("logo", 1)]);
        assert_eq!(generation, 1);
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

        registry.swap("ten_a", World::Trigger, vec![active("brand-rules", 0)]);
        let now = registry.pipeline("ten_a");
        assert_eq!(now.generation, 2);
        assert_eq!(
            names(now.stage(World::Detector)),
            ["logo@1"],
            "other worlds stay"
        );
        assert_eq!(names(now.stage(World::Trigger)), ["brand-rules@0"]);
        assert!(now.stage(World::Effects).is_empty());

        assert_eq!(
            registry.reset("ten_a"),
            3,
            "a reset is a swap too: generations only grow"
        );
        assert_eq!(
            names(registry.pipeline("ten_a").stage(World::Detector)),
            ["object-detector@0", "face-detector@0"]
        );
        assert_eq!(
            registry.reset("ten_b"),
            0,
            "a tenant on the defaults stays there"
        );
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
