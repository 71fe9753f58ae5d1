//! The incident store's tables on PostgreSQL: the [`Db`] that runs the
//! store's statements (`crate::write`, `read`, `marks`, recovery: the same
//! copy SQLite runs) on one connection, which [`crate::Store`] holds when
//! its `--db` is a `postgres://` URL.
//!
//! A lost connection is connected again at the next statement (one try;
//! [`crate::StoreWriter`] retries a whole batch with backoff while the
//! server is unreachable). Statements are prepared once per connection and
//! cached by their text.

use std::cell::{Cell, RefCell, RefMut};
use std::collections::HashMap;
use std::error::Error;

use postgres::types::{private::BytesMut, to_sql_checked, IsNull, ToSql, Type};
use postgres::{Client, Statement};

use crate::db::{numbered_for_postgres, Db, Row, Val};
use crate::StoreError;

/// One connection to the store's database.
pub(crate) struct Pg {
    /// Always there until the store is dropped (see `Drop`).
    client: RefCell<Option<Client>>,
    config: postgres::Config,
    /// The URL without its password, for messages.
    url: String,
    /// Prepared statements by their SQLite-dialect text.
    prepared: RefCell<HashMap<String, Statement>>,
    reconnects: Cell<u64>,
    /// A statement failed in a way that means the connection is gone
    /// before the client noticed ([`super::means_gone`]).
    broken: Cell<bool>,
}

impl std::fmt::Debug for Pg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pg").field("url", &self.url).finish()
    }
}

impl Pg {
    /// Connects to `url` and applies the missing migrations.
    pub(crate) fn open(url: &str) -> Result<Pg, StoreError> {
        let (mut client, config, shown) = super::connect(url)?;
        super::migrate(&mut client, &shown)?;
        Ok(Pg::new(client, config, shown))
    }

    /// Connects to `url` for reading: no migration. A database this heal
    /// has not migrated (or never migrated at all) is refused as too old.
    pub(crate) fn open_read_only(url: &str) -> Result<Pg, StoreError> {
        let (client, config, shown) = super::connect(url)?;
        let pg = Pg::new(client, config, shown);
        let supported = super::MIGRATIONS.len() as i64;
        let found = match pg.rows(
            "reading the schema version",
            "SELECT version FROM heal_schema WHERE id = 1",
            &[],
        ) {
            Ok(rows) => rows.first().and_then(|r| r.i64(0).ok()).unwrap_or(0),
            // No version table: a database heal never wrote.
            Err(StoreError::Postgres { ref source, .. })
                if source.code() == Some(&postgres::error::SqlState::UNDEFINED_TABLE) =>
            {
                0
            }
            Err(e) => return Err(e),
        };
        if found > supported {
            return Err(StoreError::PostgresTooNew {
                url: pg.url.clone(),
                found,
                supported,
            });
        }
        if found < supported {
            return Err(StoreError::TooOld {
                path: pg.url.clone().into(),
                found,
                supported,
            });
        }
        Ok(pg)
    }

    fn new(client: Client, config: postgres::Config, url: String) -> Pg {
        Pg {
            client: RefCell::new(Some(client)),
            config,
            url,
            prepared: RefCell::new(HashMap::new()),
            reconnects: Cell::new(0),
            broken: Cell::new(false),
        }
    }

    fn client(&self) -> RefMut<'_, Client> {
        RefMut::map(self.client.borrow_mut(), |c| {
            c.as_mut()
                .expect("the client is there until the store is dropped")
        })
    }

    /// How many times it connected again.
    pub(crate) fn reconnects(&self) -> u64 {
        self.reconnects.get()
    }

    /// The URL without its password.
    pub(crate) fn url(&self) -> &str {
        &self.url
    }

    /// The schema version of the database.
    pub(crate) fn version(&self) -> Result<i64, StoreError> {
        self.rows(
            "reading the schema version",
            "SELECT version FROM heal_schema WHERE id = 1",
            &[],
        )?
        .first()
        .map(|r| r.i64(0))
        .transpose()
        .map_err(|m| self.corrupt("heal_schema", "1", m))
        .map(Option::unwrap_or_default)
    }

    fn err(&self, doing: &'static str) -> impl FnOnce(postgres::Error) -> StoreError + '_ {
        move |source| super::failed(&self.url, &self.broken, doing, source)
    }

    /// Connects again if the connection was lost (one try: the error, if
    /// any, is the statement's).
    fn reconnect_if_lost(&self) {
        if !self.lost() {
            return;
        }
        match self.config.connect(postgres::NoTls) {
            Ok(client) => {
                *self.client() = client;
                self.broken.set(false);
                self.prepared.borrow_mut().clear();
                self.reconnects.set(self.reconnects.get() + 1);
                tracing::warn!(stage = "store", url = %self.url, "incident store: connected again to PostgreSQL");
            }
            Err(e) => {
                tracing::warn!(stage = "store", url = %self.url, error = %e, "incident store: PostgreSQL unreachable");
            }
        }
    }

    fn statement(&self, doing: &'static str, sql: &str) -> Result<Statement, StoreError> {
        self.reconnect_if_lost();
        if let Some(s) = self.prepared.borrow().get(sql) {
            return Ok(s.clone());
        }
        let statement = self
            .client()
            .prepare(&numbered_for_postgres(sql))
            .map_err(self.err(doing))?;
        self.prepared
            .borrow_mut()
            .insert(sql.to_owned(), statement.clone());
        Ok(statement)
    }
}

fn params(values: &[Val]) -> Vec<&(dyn ToSql + Sync)> {
    values.iter().map(|v| v as &(dyn ToSql + Sync)).collect()
}

impl Db for Pg {
    fn exec(&self, doing: &'static str, sql: &str, values: &[Val]) -> Result<u64, StoreError> {
        let statement = self.statement(doing, sql)?;
        self.client()
            .execute(&statement, &params(values))
            .map_err(self.err(doing))
    }

    fn rows(&self, doing: &'static str, sql: &str, values: &[Val]) -> Result<Vec<Row>, StoreError> {
        let statement = self.statement(doing, sql)?;
        let rows = self
            .client()
            .query(&statement, &params(values))
            .map_err(self.err(doing))?;
        rows.iter().map(|r| row(r, doing, &self.url)).collect()
    }

    fn batch(&self, doing: &'static str, sql: &str) -> Result<(), StoreError> {
        self.reconnect_if_lost();
        self.client().batch_execute(sql).map_err(self.err(doing))
    }

    fn corrupt(&self, table: &'static str, row: &str, message: String) -> StoreError {
        StoreError::PostgresCorrupt {
            url: self.url.clone(),
            table,
            row: row.to_owned(),
            message,
        }
    }

    fn lost(&self) -> bool {
        self.broken.get() || self.client().is_closed()
    }
}

/// The synchronous client closes its connection on drop by blocking on
/// its own runtime, which panics on a thread that runs async tasks: there,
/// the client is dropped on a thread of its own, so a store may be dropped
/// anywhere.
impl Drop for Pg {
    fn drop(&mut self) {
        if let Some(client) = self.client.get_mut().take() {
            if tokio::runtime::Handle::try_current().is_ok() {
                let _ = std::thread::Builder::new()
                    .name("heal-store-close".into())
                    .spawn(move || drop(client));
            }
        }
    }
}

/// A PostgreSQL row as [`Val`]s, by each column's type.
fn row(r: &postgres::Row, doing: &'static str, url: &str) -> Result<Row, StoreError> {
    let bad = |source: postgres::Error| StoreError::Postgres {
        url: url.to_owned(),
        doing,
        source,
    };
    let mut out = Vec::with_capacity(r.len());
    for (i, column) in r.columns().iter().enumerate() {
        let v = match *column.type_() {
            Type::INT8 => r.try_get::<_, Option<i64>>(i).map_err(bad)?.map(Val::Int),
            Type::INT4 => r
                .try_get::<_, Option<i32>>(i)
                .map_err(bad)?
                .map(|v| Val::Int(v.into())),
            Type::INT2 => r
                .try_get::<_, Option<i16>>(i)
                .map_err(bad)?
                .map(|v| Val::Int(v.into())),
            Type::FLOAT8 => r.try_get::<_, Option<f64>>(i).map_err(bad)?.map(Val::Real),
            Type::FLOAT4 => r
                .try_get::<_, Option<f32>>(i)
                .map_err(bad)?
                .map(|v| Val::Real(v.into())),
            Type::BOOL => r.try_get::<_, Option<bool>>(i).map_err(bad)?.map(Val::Bool),
            _ => r
                .try_get::<_, Option<String>>(i)
                .map_err(bad)?
                .map(Val::Text),
        };
        out.push(v.unwrap_or(Val::Null));
    }
    Ok(Row(out))
}

/// A value goes into whatever the column is: an integer into any integer
/// width (or a flag, 0/1), a flag into `BOOLEAN` (or an integer).
impl ToSql for Val {
    fn to_sql(
        &self,
        ty: &Type,
        out: &mut BytesMut,
    ) -> Result<IsNull, Box<dyn Error + Sync + Send>> {
        match self {
            Val::Null => Ok(IsNull::Yes),
            Val::Int(i) => match *ty {
                Type::INT4 => i32::try_from(*i)?.to_sql(ty, out),
                Type::INT2 => i16::try_from(*i)?.to_sql(ty, out),
                Type::BOOL => (*i != 0).to_sql(ty, out),
                Type::FLOAT8 => (*i as f64).to_sql(ty, out),
                _ => i.to_sql(ty, out),
            },
            Val::Real(x) => match *ty {
                Type::FLOAT4 => (*x as f32).to_sql(ty, out),
                _ => x.to_sql(ty, out),
            },
            Val::Text(s) => s.as_str().to_sql(ty, out),
            Val::Bool(b) => match *ty {
                Type::BOOL => b.to_sql(ty, out),
                Type::INT4 => i32::from(*b).to_sql(ty, out),
                _ => i64::from(*b).to_sql(ty, out),
            },
        }
    }

    fn accepts(_: &Type) -> bool {
        true
    }

    to_sql_checked!();
}
