//! The host side of Fermyon Spin's Redis trigger world (`wit/spin`, Spin 3.x / spin-sdk 5.x): a
//! component built for Spin exports `fermyon:spin/inbound-redis` and is called once per message,
//! in a fresh instance, under the same sandbox as every other component (memory, deadline, epoch
//! interruption, no files, no sockets). It may import:
//!
//! - `fermyon:spin/redis@2.0.0`: connections to the Redis addresses its manifest allows
//!   (`allowed_outbound_hosts`), with `publish`, `get`, `set`, `incr`, `del`, `sadd`, `smembers`,
//!   `srem`. Every command waits at most until the call's deadline; values read are bounded.
//!   `execute` (any command) is refused: it would reach past these bounds.
//! - `fermyon:spin/variables@2.0.0`: its variables, resolved from the manifest.
//!
//! [`crate::spin_app`] reads `spin.toml` and subscribes to the channels.

use std::collections::HashMap;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::time::{Duration, Instant};

use wasmtime::component::{HasSelf, Linker, Resource};

use crate::args::HostLimit;
use crate::{CallError, CallState, LoadError, ModelScope, Runtime};

mod bindings {
    wasmtime::component::bindgen!({
        path: "../../wit/spin",
        world: "fermyon:spin/redis-trigger",
        with: {
            "fermyon:spin/redis@2.0.0.connection": super::RedisConnection,
        },
        imports: { default: trappable },
    });
}

use bindings::fermyon::spin::redis_types;
use bindings::fermyon::spin2_0_0::{redis, variables};
use bindings::{RedisTrigger, RedisTriggerPre};

/// Connections one call may open at once.
pub const MAX_CONNECTIONS: usize = 4;
/// A value (or a set's members, together) read from Redis into a component, at most.
pub const MAX_VALUE_BYTES: usize = 1 << 20;
/// A message handed to a component, at most.
pub const MAX_MESSAGE_BYTES: usize = 1 << 20;
/// Longest a single Redis command may take, deadline permitting.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(5);

/// An open outbound Redis connection of one call.
pub struct RedisConnection {
    connection: ::redis::Connection,
}

/// What one call of a Spin component may reach: its variables and the Redis addresses allowed.
#[derive(Debug, Clone, Default)]
pub struct SpinScope {
    /// The component's variables, resolved (`{{ name }}` replaced by application variables).
    pub variables: HashMap<String, String>,
    /// `redis://HOST:PORT` addresses (`*` as host: any host on that port), from the manifest.
    pub allowed_outbound_hosts: Vec<String>,
    /// Connections open now.
    pub(crate) connections: usize,
}

impl SpinScope {
    /// Whether `address` (a `redis://` URL) is one the manifest allows.
    pub fn allows(&self, address: &str) -> bool {
        let Some((host, port)) = redis_host_port(address) else {
            return false;
        };
        self.allowed_outbound_hosts.iter().any(|allowed| {
            redis_host_port(allowed)
                .is_some_and(|(h, p)| (h == "*" || h.eq_ignore_ascii_case(&host)) && p == port)
        })
    }
}

/// `(host, port)` of `redis://[user[:password]@]HOST[:PORT][/DB]` (port 6379 when absent).
fn redis_host_port(address: &str) -> Option<(String, u16)> {
    let rest = address.strip_prefix("redis://")?;
    let authority = rest.split('/').next()?;
    let authority = authority.rsplit('@').next()?;
    let (host, port) = match authority.rsplit_once(':') {
        Some((h, p)) if !h.ends_with(']') || h.starts_with('[') => (h, p.parse().ok()?),
        _ => (authority, 6379),
    };
    (!host.is_empty()).then(|| (host.to_string(), port))
}

/// A Spin Redis component, compiled and linked.
#[derive(Clone)]
pub struct SpinRedisComponent {
    pub hash: String,
    pre: RedisTriggerPre<CallState>,
}

/// One `handle-message` call: its outcome, what the component printed, and its time.
#[derive(Debug)]
pub struct SpinCall {
    pub result: Result<(), CallError>,
    pub log: Vec<String>,
    pub elapsed: Duration,
}

/// Links the Spin Redis world for components run by a [`Runtime`].
pub struct SpinHost {
    linker: Linker<CallState>,
}

impl SpinHost {
    pub fn new(runtime: &Runtime) -> wasmtime::Result<Self> {
        let mut linker = Linker::new(runtime.engine());
        wasmtime_wasi::p2::add_to_linker_sync(&mut linker)?;
        crate::poll::add_to_linker(&mut linker)?;
        RedisTrigger::add_to_linker::<CallState, HasSelf<CallState>>(&mut linker, |s| s)?;
        Ok(Self { linker })
    }

    /// Validates, compiles and links a component for Spin's Redis trigger.
    pub fn load(&self, runtime: &Runtime, bytes: &[u8]) -> Result<SpinRedisComponent, LoadError> {
        let (hash, component) = runtime.compile(bytes)?;
        let wrong_world = |e: wasmtime::Error| LoadError::WrongWorld {
            world: "fermyon:spin/redis-trigger",
            reason: format!("{e:#}"),
        };
        let instance_pre = self
            .linker
            .instantiate_pre(&component)
            .map_err(wrong_world)?;
        let pre = RedisTriggerPre::new(instance_pre).map_err(wrong_world)?;
        Ok(SpinRedisComponent { hash, pre })
    }

    /// Calls `handle-message` with `message` in a fresh instance, under the sandbox limits.
    /// Blocking: call it from a blocking thread.
    pub fn handle_message(
        &self,
        runtime: &Runtime,
        component: &SpinRedisComponent,
        scope: &SpinScope,
        message: &[u8],
    ) -> SpinCall {
        let started = Instant::now();
        if message.len() > MAX_MESSAGE_BYTES {
            return SpinCall {
                result: Err(CallError::InputTooLarge {
                    bytes: message.len(),
                    limit: MAX_MESSAGE_BYTES,
                }),
                log: Vec::new(),
                elapsed: started.elapsed(),
            };
        }
        let mut store = runtime.new_store(ModelScope::default());
        store.data_mut().spin = Some(SpinScope {
            connections: 0,
            ..scope.clone()
        });
        let result = catch_unwind(AssertUnwindSafe(|| {
            let trigger = component
                .pre
                .instantiate(&mut store)
                .map_err(|e| runtime.classify(e))?;
            trigger
                .fermyon_spin_inbound_redis()
                .call_handle_message(&mut store, &message.to_vec())
                .map_err(|e| runtime.classify(e))?
                .map_err(|_| {
                    CallError::Component("the handler returned an error (see its log)".into())
                })
        }))
        .unwrap_or_else(|panic| {
            let message = crate::panic_message(&*panic);
            tracing::error!(component = %component.hash, "a host call panicked: {message}");
            Err(CallError::HostPanic(message))
        });
        SpinCall {
            result,
            log: store.data_mut().take_log(),
            elapsed: started.elapsed(),
        }
    }
}

impl CallState {
    fn spin_scope(&mut self) -> wasmtime::Result<&mut SpinScope> {
        self.spin
            .as_mut()
            .ok_or_else(|| wasmtime::Error::msg("a Spin interface called outside a Spin call"))
    }

    /// How long a Redis command may wait now: until the call's deadline, at most
    /// [`COMMAND_TIMEOUT`]; a trap once the deadline has passed.
    fn command_timeout(&self) -> wasmtime::Result<Duration> {
        let left = self.deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(wasmtime::Error::new(HostLimit::Deadline));
        }
        Ok(left.min(COMMAND_TIMEOUT))
    }

    /// Runs `command` on the connection `this` under the call's deadline.
    fn redis_command<T: ::redis::FromRedisValue>(
        &mut self,
        this: &Resource<RedisConnection>,
        command: &::redis::Cmd,
    ) -> wasmtime::Result<Result<T, redis::Error>> {
        let timeout = self.command_timeout()?;
        let connection = &mut self.table.get_mut(this)?.connection;
        if connection.set_read_timeout(Some(timeout)).is_err()
            || connection.set_write_timeout(Some(timeout)).is_err()
        {
            return Ok(Err(redis::Error::Other("the connection is closed".into())));
        }
        Ok(command.query(connection).map_err(|e| {
            if e.kind() == ::redis::ErrorKind::UnexpectedReturnType {
                redis::Error::TypeError
            } else {
                redis::Error::Other(e.to_string())
            }
        }))
    }
}

impl CallState {
    /// A command on a list that answers a count (DEL, SADD, SREM), after `key` when it has one:
    /// an empty list is 0 without a round trip (Redis refuses it).
    fn count_command(
        &mut self,
        this: &Resource<RedisConnection>,
        name: &str,
        key: Option<String>,
        items: Vec<String>,
    ) -> wasmtime::Result<Result<u32, redis::Error>> {
        if items.is_empty() {
            return Ok(Ok(0));
        }
        let mut command = ::redis::cmd(name);
        if let Some(key) = key {
            command.arg(key);
        }
        command.arg(items);
        self.redis_command(this, &command)
    }
}

impl redis_types::Host for CallState {}

impl redis::Host for CallState {}

impl redis::HostConnection for CallState {
    fn open(
        &mut self,
        address: String,
    ) -> wasmtime::Result<Result<Resource<RedisConnection>, redis::Error>> {
        let timeout = self.command_timeout()?;
        let scope = self.spin_scope()?;
        if !scope.allows(&address) {
            tracing::warn!(
                "a Spin component asked for {address}, which its manifest does not allow"
            );
            return Ok(Err(redis::Error::InvalidAddress));
        }
        if scope.connections >= MAX_CONNECTIONS {
            return Ok(Err(redis::Error::TooManyConnections));
        }
        let connection = match ::redis::Client::open(address.as_str())
            .and_then(|client| client.get_connection_with_timeout(timeout))
        {
            Ok(c) => c,
            Err(e) => return Ok(Err(redis::Error::Other(e.to_string()))),
        };
        scope.connections += 1;
        Ok(Ok(self.table.push(RedisConnection { connection })?))
    }

    fn publish(
        &mut self,
        this: Resource<RedisConnection>,
        channel: String,
        payload: Vec<u8>,
    ) -> wasmtime::Result<Result<(), redis::Error>> {
        let mut command = ::redis::cmd("PUBLISH");
        command.arg(channel).arg(payload);
        Ok(self.redis_command::<i64>(&this, &command)?.map(|_| ()))
    }

    fn get(
        &mut self,
        this: Resource<RedisConnection>,
        key: String,
    ) -> wasmtime::Result<Result<Option<Vec<u8>>, redis::Error>> {
        // STRLEN first: a huge value is refused without being read.
        let mut length = ::redis::cmd("STRLEN");
        length.arg(&key);
        match self.redis_command::<usize>(&this, &length)? {
            Ok(n) if n > MAX_VALUE_BYTES => {
                return Ok(Err(redis::Error::Other(format!(
                    "the value of {key} is {n} bytes, over {MAX_VALUE_BYTES}"
                ))));
            }
            Ok(_) => {}
            Err(e) => return Ok(Err(e)),
        }
        let mut command = ::redis::cmd("GET");
        command.arg(key);
        self.redis_command(&this, &command)
    }

    fn set(
        &mut self,
        this: Resource<RedisConnection>,
        key: String,
        value: Vec<u8>,
    ) -> wasmtime::Result<Result<(), redis::Error>> {
        let mut command = ::redis::cmd("SET");
        command.arg(key).arg(value);
        self.redis_command::<()>(&this, &command)
    }

    fn incr(
        &mut self,
        this: Resource<RedisConnection>,
        key: String,
    ) -> wasmtime::Result<Result<i64, redis::Error>> {
        let mut command = ::redis::cmd("INCR");
        command.arg(key);
        self.redis_command(&this, &command)
    }

    fn del(
        &mut self,
        this: Resource<RedisConnection>,
        keys: Vec<String>,
    ) -> wasmtime::Result<Result<u32, redis::Error>> {
        self.count_command(&this, "DEL", None, keys)
    }

    fn sadd(
        &mut self,
        this: Resource<RedisConnection>,
        key: String,
        values: Vec<String>,
    ) -> wasmtime::Result<Result<u32, redis::Error>> {
        self.count_command(&this, "SADD", Some(key), values)
    }

    fn smembers(
        &mut self,
        this: Resource<RedisConnection>,
        key: String,
    ) -> wasmtime::Result<Result<Vec<String>, redis::Error>> {
        // Bounded like a value: a set too large to hand over is refused before it is read.
        let mut memory = ::redis::cmd("MEMORY");
        memory.arg("USAGE").arg(&key);
        match self.redis_command::<Option<usize>>(&this, &memory)? {
            Ok(Some(n)) if n > MAX_VALUE_BYTES => {
                return Ok(Err(redis::Error::Other(format!(
                    "the set {key} holds {n} bytes, over {MAX_VALUE_BYTES}"
                ))));
            }
            Ok(_) => {}
            Err(e) => return Ok(Err(e)),
        }
        let mut command = ::redis::cmd("SMEMBERS");
        command.arg(key);
        self.redis_command(&this, &command)
    }

    fn srem(
        &mut self,
        this: Resource<RedisConnection>,
        key: String,
        values: Vec<String>,
    ) -> wasmtime::Result<Result<u32, redis::Error>> {
        self.count_command(&this, "SREM", Some(key), values)
    }

    fn execute(
        &mut self,
        _this: Resource<RedisConnection>,
        command: String,
        _arguments: Vec<redis::RedisParameter>,
    ) -> wasmtime::Result<Result<Vec<redis::RedisResult>, redis::Error>> {
        Ok(Err(redis::Error::Other(format!(
            "execute ({command}) is not offered by this host: use the typed commands"
        ))))
    }

    fn drop(&mut self, this: Resource<RedisConnection>) -> wasmtime::Result<()> {
        self.table.delete(this)?;
        if let Some(scope) = self.spin.as_mut() {
            scope.connections = scope.connections.saturating_sub(1);
        }
        Ok(())
    }
}

impl variables::Host for CallState {
    fn get(&mut self, name: String) -> wasmtime::Result<Result<String, variables::Error>> {
        let valid = !name.is_empty()
            && name.len() <= 64
            && name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
        if !valid {
            return Ok(Err(variables::Error::InvalidName(name)));
        }
        Ok(match self.spin_scope()?.variables.get(&name) {
            Some(value) => Ok(value.clone()),
            None => Err(variables::Error::Undefined(name)),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allowed_hosts_match_host_and_port() {
        let scope = SpinScope {
            allowed_outbound_hosts: vec!["redis://127.0.0.1:6379".into(), "redis://*:7000".into()],
            ..Default::default()
        };
        assert!(scope.allows("redis://127.0.0.1:6379"));
        assert!(scope.allows("redis://127.0.0.1"));
        assert!(scope.allows("redis://user:secret@127.0.0.1:6379/2"));
        assert!(scope.allows("redis://cache.internal:7000"));
        assert!(!scope.allows("redis://127.0.0.1:6380"));
        assert!(!scope.allows("redis://10.0.0.1:6379"));
        assert!(!scope.allows("rediss://127.0.0.1:6379"));
        assert!(!scope.allows("http://127.0.0.1:6379"));
        assert!(!scope.allows("redis://"));
    }
}
