//! The coordination store on etcd (feature `etcd`).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use etcd_client::{
    Client, Compare as EtcdCompare, CompareOp, ConnectOptions, EventType, GetOptions,
    LeaseKeepAliveStream, LeaseKeeper, PutOptions, Txn, TxnOp, WatchOptions,
};
use tokio::sync::{Mutex, mpsc};

use super::admin::ClusterAdmin;
use super::coordinator::{ClusterCoordinator, ClusterOptions};
use super::store::{Compare, KeyValue, LeaseId, Op, Store, WatchEvent, WatchStream};
use crate::error::{Error, Result};
use crate::future::BoxFuture;

/// etcd's client and the lease keep-alive streams opened on it.
struct EtcdStore {
    client: Client,
    keepers: Mutex<HashMap<LeaseId, (LeaseKeeper, LeaseKeepAliveStream)>>,
}

fn unavailable(error: etcd_client::Error) -> Error {
    Error::Unavailable(format!("etcd: {error}"))
}

fn key_value(kv: &etcd_client::KeyValue) -> KeyValue {
    KeyValue {
        key: String::from_utf8_lossy(kv.key()).into_owned(),
        value: kv.value().to_vec(),
        create_revision: kv.create_revision(),
        mod_revision: kv.mod_revision(),
    }
}

impl ClusterCoordinator {
    /// A coordinator for a node of a cluster on etcd, reached at any of
    /// `endpoints` (`http://host:2379`). Connects before returning.
    ///
    /// # Errors
    ///
    /// `UNAVAILABLE` when no endpoint can be reached.
    pub async fn etcd(endpoints: &[impl AsRef<str>], options: ClusterOptions) -> Result<Self> {
        Ok(Self::over(Arc::new(connect(endpoints).await?), options))
    }
}

impl ClusterAdmin {
    /// An operator's handle on the cluster under `prefix` on etcd, reached
    /// at any of `endpoints` (`http://host:2379`). Connects before
    /// returning.
    ///
    /// # Errors
    ///
    /// `UNAVAILABLE` when no endpoint can be reached.
    pub async fn etcd(endpoints: &[impl AsRef<str>], prefix: &str) -> Result<Self> {
        Ok(Self::over(Arc::new(connect(endpoints).await?), prefix))
    }
}

/// A client of etcd at any of `endpoints`.
async fn connect(endpoints: &[impl AsRef<str>]) -> Result<EtcdStore> {
    let connect = ConnectOptions::new()
        .with_connect_timeout(Duration::from_secs(3))
        .with_timeout(Duration::from_secs(5))
        .with_keep_alive(Duration::from_secs(2), Duration::from_secs(2))
        .with_keep_alive_while_idle(true);
    let endpoints: Vec<String> = endpoints.iter().map(|e| e.as_ref().to_string()).collect();
    if endpoints.is_empty() {
        return Err(Error::Config("no etcd endpoints given".into()));
    }
    let client = Client::connect(&endpoints, Some(connect))
        .await
        .map_err(unavailable)?;
    Ok(EtcdStore {
        client,
        keepers: Mutex::new(HashMap::new()),
    })
}

impl Store for EtcdStore {
    fn grant(&self, ttl: Duration) -> BoxFuture<'_, Result<(LeaseId, Duration)>> {
        Box::pin(async move {
            let seconds = i64::try_from(ttl.as_secs().max(2)).unwrap_or(i64::MAX);
            let granted = self
                .client
                .clone()
                .lease_grant(seconds, None)
                .await
                .map_err(unavailable)?;
            let ttl = Duration::from_secs(u64::try_from(granted.ttl()).unwrap_or(0));
            Ok((granted.id(), ttl))
        })
    }

    fn keep_alive(&self, lease: LeaseId) -> BoxFuture<'_, Result<Option<Duration>>> {
        Box::pin(async move {
            let mut keepers = self.keepers.lock().await;
            let (keeper, stream) = match keepers.entry(lease) {
                std::collections::hash_map::Entry::Occupied(entry) => entry.into_mut(),
                std::collections::hash_map::Entry::Vacant(entry) => {
                    let opened = self
                        .client
                        .clone()
                        .lease_keep_alive(lease)
                        .await
                        .map_err(unavailable)?;
                    entry.insert(opened)
                }
            };
            let renewed = async {
                keeper.keep_alive().await?;
                stream.message().await
            }
            .await;
            match renewed {
                Ok(Some(response)) if response.ttl() > 0 => Ok(Some(Duration::from_secs(
                    u64::try_from(response.ttl()).unwrap_or(0),
                ))),
                Ok(Some(_)) => {
                    keepers.remove(&lease);
                    Ok(None)
                }
                Ok(None) => {
                    keepers.remove(&lease);
                    Err(Error::Unavailable(
                        "etcd closed the keep-alive stream".into(),
                    ))
                }
                Err(error) => {
                    keepers.remove(&lease);
                    Err(unavailable(error))
                }
            }
        })
    }

    fn revoke(&self, lease: LeaseId) -> BoxFuture<'_, Result<()>> {
        Box::pin(async move {
            self.keepers.lock().await.remove(&lease);
            match self.client.clone().lease_revoke(lease).await {
                Ok(_) => Ok(()),
                // Already gone is what we wanted.
                Err(etcd_client::Error::GRpcStatus(status))
                    if status.code() == tonic::Code::NotFound =>
                {
                    Ok(())
                }
                Err(error) => Err(unavailable(error)),
            }
        })
    }

    fn get_prefix<'a>(&'a self, prefix: &'a str) -> BoxFuture<'a, Result<(Vec<KeyValue>, i64)>> {
        Box::pin(async move {
            let response = self
                .client
                .clone()
                .get(prefix, Some(GetOptions::new().with_prefix()))
                .await
                .map_err(unavailable)?;
            let revision = response.header().map_or(0, |h| h.revision());
            Ok((response.kvs().iter().map(key_value).collect(), revision))
        })
    }

    fn txn(&self, compares: Vec<Compare>, ops: Vec<Op>) -> BoxFuture<'_, Result<Option<i64>>> {
        Box::pin(async move {
            let compares: Vec<EtcdCompare> = compares
                .into_iter()
                .map(|c| EtcdCompare::mod_revision(c.key, CompareOp::Equal, c.mod_revision))
                .collect();
            let ops: Vec<TxnOp> = ops
                .into_iter()
                .map(|op| match op {
                    Op::Put { key, value, lease } => TxnOp::put(
                        key,
                        value,
                        lease.map(|lease| PutOptions::new().with_lease(lease)),
                    ),
                    Op::Delete { key } => TxnOp::delete(key, None),
                })
                .collect();
            let response = self
                .client
                .clone()
                .txn(Txn::new().when(compares).and_then(ops))
                .await
                .map_err(unavailable)?;
            Ok(response
                .succeeded()
                .then(|| response.header().map_or(0, |h| h.revision())))
        })
    }

    fn watch_prefix<'a>(
        &'a self,
        prefix: &'a str,
        from: i64,
    ) -> BoxFuture<'a, Result<WatchStream>> {
        Box::pin(async move {
            let options = WatchOptions::new().with_prefix().with_start_revision(from);
            let mut stream = self
                .client
                .clone()
                .watch(prefix, Some(options))
                .await
                .map_err(unavailable)?;
            let (events, receiver) = mpsc::unbounded_channel();
            tokio::spawn(async move {
                loop {
                    match stream.message().await {
                        Ok(Some(response)) => {
                            if response.canceled() {
                                let _ = events.send(Err(Error::Unavailable(format!(
                                    "etcd cancelled the watch (compacted at {})",
                                    response.compact_revision()
                                ))));
                                break;
                            }
                            let batch: Vec<WatchEvent> = response
                                .events()
                                .iter()
                                .filter_map(|event| {
                                    let kv = event.kv()?;
                                    Some(match event.event_type() {
                                        EventType::Put => WatchEvent::Put(key_value(kv)),
                                        EventType::Delete => WatchEvent::Delete {
                                            key: String::from_utf8_lossy(kv.key()).into_owned(),
                                            mod_revision: kv.mod_revision(),
                                        },
                                    })
                                })
                                .collect();
                            if !batch.is_empty() && events.send(Ok(batch)).is_err() {
                                break;
                            }
                        }
                        Ok(None) => {
                            let _ =
                                events.send(Err(Error::Unavailable("etcd ended the watch".into())));
                            break;
                        }
                        Err(error) => {
                            let _ = events.send(Err(unavailable(error)));
                            break;
                        }
                    }
                }
            });
            Ok(receiver)
        })
    }
}
