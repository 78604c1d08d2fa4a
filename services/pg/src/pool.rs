//! A small pool of connections to one server: a query takes an idle connection or opens a
//! new one, and gives it back when done unless it broke. Concurrent searches then run on
//! their own connections instead of queueing behind one.

use std::ops::{Deref, DerefMut};
use std::sync::{Mutex, PoisonError};

use postgres::{Client, NoTls};
use tracing::debug;

use crate::{PgError, redact, sql};

/// Idle connections kept at most; more may be open while busy.
const MAX_IDLE: usize = 32;

pub(crate) struct Pool {
    /// With the password: needed to open more connections.
    url: String,
    /// Without the password, for messages.
    shown: String,
    read_only: bool,
    idle: Mutex<Vec<Client>>,
}

impl Pool {
    /// Opens the first connection now, so that a wrong URL fails here.
    pub(crate) fn open(url: &str, read_only: bool) -> Result<Self, PgError> {
        let pool = Pool {
            url: url.to_string(),
            shown: redact(url),
            read_only,
            idle: Mutex::new(Vec::new()),
        };
        let first = pool.connect()?;
        pool.idle().push(first);
        Ok(pool)
    }

    pub(crate) fn shown(&self) -> &str {
        &self.shown
    }

    fn idle(&self) -> std::sync::MutexGuard<'_, Vec<Client>> {
        self.idle.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn connect(&self) -> Result<Client, PgError> {
        let mut client = Client::connect(&self.url, NoTls).map_err(|source| PgError::Connect {
            url: self.shown.clone(),
            source,
        })?;
        if self.read_only {
            client
                .batch_execute("SET default_transaction_read_only = on")
                .map_err(sql("making the replica connection read-only"))?;
        }
        debug!(url = %self.shown, "connected");
        Ok(client)
    }

    /// An idle connection, or a new one.
    pub(crate) fn get(&self) -> Result<Pooled<'_>, PgError> {
        let idle = self.idle().pop();
        let client = match idle {
            Some(c) if !c.is_closed() => c,
            _ => self.connect()?,
        };
        Ok(Pooled {
            pool: self,
            client: Some(client),
        })
    }
}

/// A connection taken from a [`Pool`]; back to it on drop.
pub(crate) struct Pooled<'a> {
    pool: &'a Pool,
    client: Option<Client>,
}

impl Deref for Pooled<'_> {
    type Target = Client;

    fn deref(&self) -> &Client {
        // Taken only in drop.
        self.client.as_ref().unwrap_or_else(|| unreachable!())
    }
}

impl DerefMut for Pooled<'_> {
    fn deref_mut(&mut self) -> &mut Client {
        self.client.as_mut().unwrap_or_else(|| unreachable!())
    }
}

impl Drop for Pooled<'_> {
    fn drop(&mut self) {
        if let Some(c) = self.client.take()
            && !c.is_closed()
        {
            let mut idle = self.pool.idle();
            if idle.len() < MAX_IDLE {
                idle.push(c);
            }
        }
    }
}
