//! The long-running services of one process, supervised together in one `JoinSet`: each runs
//! until its stop token is cancelled; they stop one after the other in the order they were
//! added; one that ends by itself before it was asked to (an error, a panic, a closed input) is
//! logged and stops the whole process with a clear error — a host that has lost its RTMP server
//! or its bookkeeping must not keep answering health checks as if it were whole.

use std::collections::HashMap;
use std::future::Future;

use tokio::task::{Id, JoinSet};
use tokio_util::sync::CancellationToken;
use tracing::{error, info};

/// One service: its name for the log, what stops it, its task.
struct Service {
    name: &'static str,
    stop: CancellationToken,
    task: Id,
}

/// The services of a process, in their stop order.
#[derive(Default)]
pub struct Services {
    tasks: JoinSet<anyhow::Result<()>>,
    order: Vec<Service>,
}

impl Services {
    /// Starts `service`; it should return when `stop` is cancelled. Services stop in the order
    /// they are added.
    pub fn spawn<F>(&mut self, name: &'static str, stop: CancellationToken, service: F)
    where
        F: Future<Output = anyhow::Result<()>> + Send + 'static,
    {
        let task = self.tasks.spawn(service).id();
        self.order.push(Service { name, stop, task });
    }

    /// Runs until `shutdown` is cancelled or a service ends by itself, then stops every service
    /// in order and waits for each. `Err` names the service that ended by itself and why.
    pub async fn run(mut self, shutdown: CancellationToken) -> anyhow::Result<()> {
        let mut ended: HashMap<Id, anyhow::Result<()>> = HashMap::new();
        let early = tokio::select! {
            _ = shutdown.cancelled() => None,
            Some(done) = self.tasks.join_next_with_id() => Some(outcome(done)),
        };
        let failure = early.map(|(id, result)| {
            let name = self.name_of(id);
            let why = match &result {
                Ok(()) => "it returned".to_string(),
                Err(e) => format!("{e:#}"),
            };
            error!(
                service = name,
                "{name} stopped unexpectedly ({why}); shutting down"
            );
            ended.insert(id, Ok(()));
            anyhow::anyhow!("the {name} service stopped unexpectedly: {why}")
        });
        for service in &self.order {
            service.stop.cancel();
            while !ended.contains_key(&service.task) {
                let Some(done) = self.tasks.join_next_with_id().await else {
                    break;
                };
                let (id, result) = outcome(done);
                ended.insert(id, result);
            }
            match ended.get(&service.task) {
                Some(Err(e)) => error!(
                    service = service.name,
                    "{} stopped with an error: {e:#}", service.name
                ),
                _ => info!(service = service.name, "stopped"),
            }
        }
        match failure {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    fn name_of(&self, id: Id) -> &'static str {
        self.order
            .iter()
            .find(|s| s.task == id)
            .map_or("(unnamed)", |s| s.name)
    }
}

/// A finished task's id and result; a panic is an error that says so.
fn outcome(
    done: Result<(Id, anyhow::Result<()>), tokio::task::JoinError>,
) -> (Id, anyhow::Result<()>) {
    match done {
        Ok((id, result)) => (id, result),
        Err(e) if e.is_panic() => (e.id(), Err(anyhow::anyhow!("it panicked"))),
        Err(e) => (e.id(), Err(anyhow::anyhow!("it was cancelled: {e}"))),
    }
}

/// A service that runs until its stop token (it returns nothing to report).
pub async fn until_stopped(service: impl Future<Output = ()>) -> anyhow::Result<()> {
    service.await;
    Ok(())
}

/// A service that follows an input until `stop`; the input closing first is a failure.
pub async fn until_closed(
    service: impl Future<Output = ()>,
    stop: CancellationToken,
    input: &'static str,
) -> anyhow::Result<()> {
    tokio::select! {
        _ = stop.cancelled() => Ok(()),
        _ = service => anyhow::bail!("{input} closed"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    /// A service that records when it stops.
    fn service(
        name: &'static str,
        log: &Arc<Mutex<Vec<&'static str>>>,
        stop: &CancellationToken,
    ) -> impl Future<Output = anyhow::Result<()>> + Send + 'static {
        let (log, stop) = (log.clone(), stop.clone());
        async move {
            stop.cancelled().await;
            log.lock().unwrap().push(name);
            Ok(())
        }
    }

    #[tokio::test]
    async fn services_stop_in_the_order_they_were_added() {
        let log = Arc::new(Mutex::new(Vec::new()));
        let mut services = Services::default();
        for name in ["rtmp", "hls", "analysis", "http"] {
            let stop = CancellationToken::new();
            services.spawn(name, stop.clone(), service(name, &log, &stop));
        }
        let shutdown = CancellationToken::new();
        shutdown.cancel();
        services.run(shutdown).await.unwrap();
        assert_eq!(*log.lock().unwrap(), ["rtmp", "hls", "analysis", "http"]);
    }

    /// A service that fails or panics stops the others (in order) and the process's run ends
    /// with an error naming it.
    #[tokio::test]
    async fn a_service_that_dies_stops_the_process_with_its_name() {
        for (dying, why) in [("hls", "disk full"), ("books", "it panicked")] {
            let log = Arc::new(Mutex::new(Vec::new()));
            let mut services = Services::default();
            for name in ["rtmp", "hls", "books", "http"] {
                let stop = CancellationToken::new();
                if name == dying {
                    services.spawn(name, stop, async move {
                        if dying == "books" {
                            panic!("poisoned");
                        }
                        anyhow::bail!("disk full")
                    });
                } else {
                    services.spawn(name, stop.clone(), service(name, &log, &stop));
                }
            }
            let e = services
                .run(CancellationToken::new())
                .await
                .unwrap_err()
                .to_string();
            assert!(e.contains(dying) && e.contains(why), "{e}");
            let expected: Vec<_> = ["rtmp", "hls", "books", "http"]
                .into_iter()
                .filter(|n| *n != dying)
                .collect();
            assert_eq!(*log.lock().unwrap(), expected);
        }
    }
}
