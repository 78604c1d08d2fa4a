//! Reads from replicas, writes to the primary: [`PgCluster`].
//!
//! Each read goes to the next healthy replica in turn. A replica is healthy when it answers
//! and has replayed the primary's WAL to within `max_lag_bytes`; health is checked at most
//! every `recheck` (and at once after a failure). A read that fails on a replica marks it
//! unhealthy and is retried on the next one, and finally on the primary: a replica that is
//! down or too far behind costs a retry, never an error. Writes always go to the primary.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use tracing::{info, warn};

use folio_store::IndexModels;

use crate::{PgError, PgStore, redact};

/// How reads are routed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReadRouting {
    /// A replica more than this many bytes of WAL behind the primary serves no reads.
    pub max_lag_bytes: u64,
    /// How often a replica's health is checked again.
    pub recheck: Duration,
}

impl Default for ReadRouting {
    fn default() -> Self {
        ReadRouting {
            max_lag_bytes: 16 * 1024 * 1024,
            recheck: Duration::from_secs(5),
        }
    }
}

/// What is known of one replica.
#[derive(Debug, Clone, PartialEq)]
pub struct ReplicaHealth {
    /// Its URL, without password.
    pub url: String,
    /// Whether it takes reads.
    pub healthy: bool,
    /// WAL bytes behind the primary at the last check, when it answered.
    pub lag_bytes: Option<u64>,
    /// Why it takes no reads.
    pub reason: Option<String>,
}

struct Replica {
    url: String,
    store: Option<Arc<PgStore>>,
    health: ReplicaHealth,
    checked: Option<Instant>,
}

/// A primary and its read replicas: one collection.
pub struct PgCluster {
    primary: PgStore,
    /// The models the collection was built with (read from the primary at connection).
    models: IndexModels,
    replicas: Vec<Mutex<Replica>>,
    routing: ReadRouting,
    next: AtomicUsize,
    /// ef_search for replicas connected later.
    ef_search: AtomicUsize,
}

impl std::fmt::Debug for PgCluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgCluster")
            .field("primary", &self.primary)
            .field("replicas", &self.health())
            .finish()
    }
}

impl PgCluster {
    /// Connects to the primary (which must answer; migrations are applied, and the
    /// collection must have been given its models by a writer) and to the replicas at
    /// `read_urls` (which may be down: they are retried at each check).
    pub fn connect(
        primary_url: &str,
        read_urls: &[String],
        routing: ReadRouting,
    ) -> Result<Self, PgError> {
        let primary = PgStore::connect(primary_url)?;
        let models = primary.models()?.ok_or_else(|| {
            PgError::Schema(format!(
                "{} holds no Folio collection yet; index into it first (`folio index --store`)",
                primary.url()
            ))
        })?;
        let cluster = PgCluster {
            primary,
            models,
            replicas: read_urls
                .iter()
                .map(|url| {
                    Mutex::new(Replica {
                        url: url.clone(),
                        store: None,
                        health: ReplicaHealth {
                            url: redact(url),
                            healthy: false,
                            lag_bytes: None,
                            reason: Some("not checked yet".into()),
                        },
                        checked: None,
                    })
                })
                .collect(),
            routing,
            next: AtomicUsize::new(0),
            ef_search: AtomicUsize::new(crate::DEFAULT_EF_SEARCH),
        };
        cluster.check();
        Ok(cluster)
    }

    /// The primary, for writes.
    pub fn primary(&self) -> &PgStore {
        &self.primary
    }

    /// The models the collection was built with.
    pub fn models(&self) -> &IndexModels {
        &self.models
    }

    /// Checks every replica now.
    pub fn check(&self) {
        let primary_lsn = self.primary.wal_position();
        for slot in &self.replicas {
            self.check_one(&mut lock(slot), primary_lsn.as_ref().ok());
        }
    }

    /// The replicas' health as last checked.
    pub fn health(&self) -> Vec<ReplicaHealth> {
        self.replicas
            .iter()
            .map(|r| lock(r).health.clone())
            .collect()
    }

    /// Runs `read` on the next healthy replica, moving on to the others and finally to the
    /// primary when one fails. Only the primary's error is returned.
    pub fn read<T>(&self, read: impl Fn(&PgStore) -> Result<T, PgError>) -> Result<T, PgError> {
        let n = self.replicas.len();
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        for i in 0..n {
            let slot = &self.replicas[(start + i) % n];
            // The lock covers the health check, not the read: reads on one replica run
            // side by side on its pooled connections.
            let store = {
                let mut replica = lock(slot);
                let due = replica
                    .checked
                    .is_none_or(|at| at.elapsed() >= self.routing.recheck);
                if due {
                    let primary_lsn = self.primary.wal_position();
                    self.check_one(&mut replica, primary_lsn.as_ref().ok());
                }
                match &replica.store {
                    Some(s) if replica.health.healthy => s.clone(),
                    _ => continue,
                }
            };
            match read(&store) {
                Ok(v) => return Ok(v),
                Err(e) => {
                    let mut replica = lock(slot);
                    warn!(replica = %replica.health.url, error = %e, "read failed on a replica; trying the next");
                    replica.store = None;
                    replica.health.healthy = false;
                    replica.health.reason = Some(e.to_string());
                    replica.checked = None;
                }
            }
        }
        read(&self.primary)
    }

    /// Sets HNSW ef_search on the primary and every replica connected now or later.
    pub fn set_ef_search(&self, ef: usize) {
        self.ef_search.store(ef, Ordering::Relaxed);
        self.primary.set_ef_search(ef);
        for slot in &self.replicas {
            if let Some(s) = &lock(slot).store {
                s.set_ef_search(ef);
            }
        }
    }

    fn check_one(&self, replica: &mut Replica, primary_lsn: Option<&String>) {
        replica.checked = Some(Instant::now());
        if replica.store.is_none() {
            match PgStore::connect_replica(&replica.url) {
                Ok(s) => {
                    s.set_ef_search(self.ef_search.load(Ordering::Relaxed));
                    replica.store = Some(Arc::new(s));
                }
                Err(e) => return mark(replica, None, e.to_string()),
            }
        }
        let Some(store) = &replica.store else {
            return;
        };
        let lag = match primary_lsn {
            Some(lsn) => store.replay_lag_bytes(lsn),
            None => Err(PgError::Invalid(
                "the primary's WAL position is unknown".into(),
            )),
        };
        match lag {
            Ok(lag) if lag <= self.routing.max_lag_bytes => {
                if !replica.health.healthy {
                    info!(replica = %replica.health.url, lag, "replica takes reads");
                }
                replica.health.healthy = true;
                replica.health.lag_bytes = Some(lag);
                replica.health.reason = None;
            }
            Ok(lag) => mark(
                replica,
                Some(lag),
                format!(
                    "{lag} bytes of WAL behind the primary (at most {} allowed)",
                    self.routing.max_lag_bytes
                ),
            ),
            Err(e) => {
                replica.store = None;
                mark(replica, None, e.to_string());
            }
        }
    }
}

fn mark(replica: &mut Replica, lag: Option<u64>, reason: String) {
    if replica.health.healthy {
        warn!(replica = %replica.health.url, %reason, "replica takes no reads");
    }
    replica.health.healthy = false;
    replica.health.lag_bytes = lag;
    replica.health.reason = Some(reason);
}

fn lock(r: &Mutex<Replica>) -> MutexGuard<'_, Replica> {
    r.lock().unwrap_or_else(PoisonError::into_inner)
}
