//! Reaching Redis: one multiplexed connection per node, whatever the topology.
//!
//! * **Single**: a [`ConnectionManager`], which pipelines the requests of every task
//!   on one connection and reconnects with exponential backoff by itself.
//! * **Cluster**: the async cluster connection, which routes each call by its key's
//!   slot, follows `MOVED`/`ASK` and refreshes its slot map after a failover.
//! * **Sentinel**: a connection manager to the primary the Sentinels name; on a
//!   connection failure or a `READONLY` answer (the old primary came back as a replica)
//!   the primary is asked for again.
//!
//! Connections are opened lazily, on the first call: building a store never blocks and
//! never fails because Redis is down at start-up — the limiters' fail modes decide then.

use std::sync::Arc;
use std::time::Duration;

use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::cluster::{ClusterClient, ClusterConfig};
use redis::cluster_async::ClusterConnection;
use redis::cluster_routing::{RoutingInfo, SingleNodeRoutingInfo};
use redis::sentinel::{SentinelClient, SentinelNodeConnectionInfo, SentinelServerType};
use redis::{Client, Cmd, ErrorKind, RedisError, RedisResult, ServerErrorKind, Value};
use tokio::sync::{Mutex, OnceCell};

use crate::builder::{Settings, Topology};

/// The topology-specific connection.
pub(crate) struct Connection {
    settings: Arc<Settings>,
    single: OnceCell<ConnectionManager>,
    cluster: OnceCell<ClusterConnection>,
    sentinel: Option<SentinelState>,
}

struct SentinelState {
    client: Mutex<SentinelClient>,
    current: parking_lot::RwLock<Option<(u64, ConnectionManager)>>,
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection")
            .field("topology", &self.settings.topology.name())
            .finish()
    }
}

fn manager_config(settings: &Settings) -> ConnectionManagerConfig {
    ConnectionManagerConfig::new()
        .set_connection_timeout(Some(settings.connect_timeout))
        .set_response_timeout(Some(settings.command_timeout))
        // Reconnect quickly after an outage: 50 ms, doubling, at most 1 s apart. After
        // three failed attempts the error reaches the waiting calls (a TLS or
        // authentication failure should be seen, not retried forever), and the next
        // call starts a new round.
        .set_min_delay(Duration::from_millis(50))
        .set_max_delay(Duration::from_secs(1))
        .set_exponent_base(2.0)
        .set_number_of_retries(2)
}

impl Connection {
    pub(crate) fn new(settings: Arc<Settings>) -> RedisResult<Connection> {
        let sentinel = match &settings.topology {
            Topology::Sentinel { master, sentinels } => {
                let node = SentinelNodeConnectionInfo::default()
                    .set_redis_connection_info(settings.redis_info.clone());
                let client = SentinelClient::build(
                    sentinels.clone(),
                    master.clone(),
                    Some(node),
                    SentinelServerType::Master,
                )?;
                Some(SentinelState {
                    client: Mutex::new(client),
                    current: parking_lot::RwLock::new(None),
                })
            }
            _ => None,
        };
        Ok(Connection {
            settings,
            single: OnceCell::new(),
            cluster: OnceCell::new(),
            sentinel,
        })
    }

    /// Runs one command on the node that owns its key (or any node when keyless).
    pub(crate) async fn query(&self, cmd: &Cmd) -> RedisResult<Value> {
        let first = self.query_once(cmd).await;
        match first {
            Err(err) if err.is_timeout() && self.settings.retry_on_timeout => {
                self.query_once(cmd).await
            }
            other => other,
        }
    }

    async fn query_once(&self, cmd: &Cmd) -> RedisResult<Value> {
        // A command waits for a (re)connection first; neither may take forever, even
        // when no limiter timeout is around it (`state`, `reset`, health probes).
        let bound = self.settings.connect_timeout + self.settings.command_timeout;
        match tokio::time::timeout(bound, self.send(cmd)).await {
            // Error replies arrive as values; turn them into errors so callers see one kind.
            Ok(result) => result.and_then(Value::extract_error),
            Err(_) => Err(RedisError::from(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!("no connection and answer within {bound:?}"),
            ))),
        }
    }

    async fn send(&self, cmd: &Cmd) -> RedisResult<Value> {
        match &self.settings.topology {
            Topology::Single { url } => {
                let mut conn = self
                    .single
                    .get_or_try_init(|| async {
                        let client = match self.settings.tls_certificates() {
                            Some(certs) => Client::build_with_tls(url.clone(), certs)?,
                            None => Client::open(url.clone())?,
                        };
                        ConnectionManager::new_lazy_with_config(
                            client,
                            manager_config(&self.settings),
                        )
                    })
                    .await?
                    .clone();
                conn.req_packed_command(cmd).await
            }
            Topology::Cluster { .. } => {
                let mut conn = self.cluster().await?;
                conn.req_packed_command(cmd).await
            }
            Topology::Sentinel { .. } => self.sentinel_query(cmd).await,
        }
    }

    async fn cluster(&self) -> RedisResult<ClusterConnection> {
        let Topology::Cluster { nodes } = &self.settings.topology else {
            return Err(RedisError::from((
                ErrorKind::InvalidClientConfig,
                "not a cluster store",
            )));
        };
        Ok(self
            .cluster
            .get_or_try_init(|| async {
                let mut builder = ClusterClient::builder(nodes.clone())
                    .connection_timeout(self.settings.connect_timeout)
                    .response_timeout(self.settings.command_timeout)
                    .retries(3)
                    .min_retry_wait(20)
                    .max_retry_wait(500);
                if let Some(user) = &self.settings.redis_info.username() {
                    builder = builder.username(user);
                }
                if let Some(password) = &self.settings.redis_info.password() {
                    builder = builder.password(password);
                }
                if let Some(certs) = self.settings.tls_certificates() {
                    builder = builder.certs(certs);
                }
                let client = builder.build()?;
                let config = ClusterConfig::new()
                    .set_connection_timeout(self.settings.connect_timeout)
                    .set_response_timeout(self.settings.command_timeout);
                Ok::<_, RedisError>(client.get_pending_async_connection_with_config(config))
            })
            .await?
            .clone())
    }

    async fn sentinel_query(&self, cmd: &Cmd) -> RedisResult<Value> {
        let Some(state) = &self.sentinel else {
            return Err(RedisError::from((
                ErrorKind::InvalidClientConfig,
                "not a Sentinel store",
            )));
        };
        let current = state.current.read().clone();
        let (generation, mut conn) = match current {
            Some(found) => found,
            None => self.resolve_primary(state).await?,
        };
        let result = conn
            .req_packed_command(cmd)
            .await
            .and_then(Value::extract_error);
        if let Err(err) = &result {
            let stale = err.is_io_error()
                || err.is_connection_refusal()
                || err.is_connection_dropped()
                || err.is_timeout()
                || err.kind() == ErrorKind::Server(ServerErrorKind::ReadOnly)
                || err.kind() == ErrorKind::Server(ServerErrorKind::MasterDown);
            if stale {
                // Ask the Sentinels again on the next call, unless someone already did.
                let mut slot = state.current.write();
                if matches!(&*slot, Some((g, _)) if *g == generation) {
                    *slot = None;
                }
            }
        }
        result
    }

    async fn resolve_primary(
        &self,
        state: &SentinelState,
    ) -> RedisResult<(u64, ConnectionManager)> {
        let mut client = state.client.lock().await;
        if let Some(found) = state.current.read().clone() {
            return Ok(found);
        }
        let primary = client.async_get_client().await?;
        let manager =
            ConnectionManager::new_lazy_with_config(primary, manager_config(&self.settings))?;
        let generation = rand::random::<u64>();
        *state.current.write() = Some((generation, manager.clone()));
        Ok((generation, manager))
    }

    /// The addresses of the primaries to scan (one `None` entry: the only node).
    pub(crate) async fn primaries(&self) -> RedisResult<Vec<Option<(String, u16)>>> {
        if !matches!(self.settings.topology, Topology::Cluster { .. }) {
            return Ok(vec![None]);
        }
        let mut conn = self.cluster().await?;
        let shards = conn
            .route_command(
                redis::cmd("CLUSTER").arg("SLOTS").clone(),
                RoutingInfo::SingleNode(SingleNodeRoutingInfo::Random),
            )
            .await?;
        let mut out = Vec::new();
        if let Value::Array(ranges) = shards {
            for range in ranges {
                // [start, end, [host, port, id, ...], replicas...]
                if let Value::Array(fields) = range {
                    if let Some(Value::Array(primary)) = fields.get(2) {
                        let host = primary.first().and_then(|v| match v {
                            Value::BulkString(b) => String::from_utf8(b.clone()).ok(),
                            Value::SimpleString(s) => Some(s.clone()),
                            _ => None,
                        });
                        let port = primary.get(1).and_then(|v| match v {
                            Value::Int(p) => u16::try_from(*p).ok(),
                            _ => None,
                        });
                        if let (Some(host), Some(port)) = (host, port) {
                            if !out.contains(&Some((host.clone(), port))) {
                                out.push(Some((host, port)));
                            }
                        }
                    }
                }
            }
        }
        Ok(out)
    }

    /// Runs `cmd` on one given primary (cluster) or on the only node.
    pub(crate) async fn query_on(
        &self,
        node: Option<&(String, u16)>,
        cmd: &Cmd,
    ) -> RedisResult<Value> {
        match node {
            None => self.query(cmd).await,
            Some((host, port)) => {
                let mut conn = self.cluster().await?;
                conn.route_command(
                    cmd.clone(),
                    RoutingInfo::SingleNode(SingleNodeRoutingInfo::ByAddress {
                        host: host.clone(),
                        port: *port,
                    }),
                )
                .await
                .and_then(Value::extract_error)
            }
        }
    }
}
