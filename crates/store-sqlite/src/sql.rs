//! Queries on [`crate::inline::Database`] connections in the shape the store's SQL was written
//! in (`query(sql).bind(..).fetch_optional(..)`), so that moving the store off sqlx's
//! connection threads (decision 86) changed where statements run, not how they read. Rows
//! come back owned, their columns looked up by name.

use std::borrow::Cow;
use std::sync::Arc;

use rusqlite::types::{ToSql, Value};
use rusqlite::{Connection, params_from_iter};

use crate::inline::Database;

/// A statement and its parameters, bound in order.
pub(crate) struct Query<'q> {
    sql: Cow<'q, str>,
    params: Vec<Box<dyn ToSql + Send + Sync + 'q>>,
}

/// A statement (cached per connection).
pub(crate) fn query<'q>(sql: impl Into<Cow<'q, str>>) -> Query<'q> {
    Query { sql: sql.into(), params: Vec::new() }
}

/// What `execute` reports.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Done(usize);

impl Done {
    pub(crate) fn rows_affected(self) -> u64 {
        self.0 as u64
    }
}

/// Where a read runs: a connection already in hand (a write transaction's), or a read
/// connection of the database.
pub(crate) trait Source {
    fn run<T>(self, f: impl FnOnce(&Connection) -> rusqlite::Result<T>) -> rusqlite::Result<T>;
}

impl Source for &Connection {
    fn run<T>(self, f: impl FnOnce(&Connection) -> rusqlite::Result<T>) -> rusqlite::Result<T> {
        f(self)
    }
}

impl Source for &Database {
    fn run<T>(self, f: impl FnOnce(&Connection) -> rusqlite::Result<T>) -> rusqlite::Result<T> {
        self.read(f)
    }
}

impl<'q> Query<'q> {
    pub(crate) fn bind(mut self, value: impl ToSql + Send + Sync + 'q) -> Self {
        self.params.push(Box::new(value));
        self
    }

    /// Runs a write on the transaction's connection (never on a read connection).
    pub(crate) fn execute(self, conn: &Connection) -> rusqlite::Result<Done> {
        conn.prepare_cached(&self.sql)?.execute(params_from_iter(self.params.iter())).map(Done)
    }

    /// Runs a write as a transaction of its own.
    pub(crate) async fn execute_write(self, db: &Database) -> rusqlite::Result<Done> {
        db.write(|tx| self.execute(tx)).await
    }

    /// Runs a write (`RETURNING` a row) as a transaction of its own.
    pub(crate) async fn fetch_optional_write(self, db: &Database) -> rusqlite::Result<Option<Row>> {
        db.write(|tx| self.fetch_optional(tx)).await
    }

    pub(crate) fn fetch_all(self, source: impl Source) -> rusqlite::Result<Vec<Row>> {
        source.run(|conn| {
            let mut statement = conn.prepare_cached(&self.sql)?;
            let columns = columns(&statement);
            let mut rows = statement.query(params_from_iter(self.params.iter()))?;
            let mut out = Vec::new();
            while let Some(row) = rows.next()? {
                out.push(Row::read(row, &columns)?);
            }
            Ok(out)
        })
    }

    pub(crate) fn fetch_optional(self, source: impl Source) -> rusqlite::Result<Option<Row>> {
        source.run(|conn| {
            let mut statement = conn.prepare_cached(&self.sql)?;
            let columns = columns(&statement);
            let mut rows = statement.query(params_from_iter(self.params.iter()))?;
            rows.next()?.map(|row| Row::read(row, &columns)).transpose()
        })
    }

    pub(crate) fn fetch_one(self, source: impl Source) -> rusqlite::Result<Row> {
        self.fetch_optional(source)?.ok_or(rusqlite::Error::QueryReturnedNoRows)
    }
}

fn columns(statement: &rusqlite::Statement<'_>) -> Arc<[String]> {
    statement.column_names().into_iter().map(str::to_owned).collect()
}

/// A row, owned.
#[derive(Debug, Clone)]
pub(crate) struct Row {
    columns: Arc<[String]>,
    values: Vec<Value>,
}

impl Row {
    fn read(row: &rusqlite::Row<'_>, columns: &Arc<[String]>) -> rusqlite::Result<Self> {
        let values = (0..columns.len()).map(|i| row.get::<_, Value>(i)).collect::<Result<_, _>>()?;
        Ok(Self { columns: columns.clone(), values })
    }

    fn value(&self, column: &str) -> rusqlite::Result<&Value> {
        self.columns
            .iter()
            .position(|c| c == column)
            .map(|i| &self.values[i])
            .ok_or_else(|| rusqlite::Error::InvalidColumnName(column.to_owned()))
    }

    /// The column decoded as `T`.
    pub(crate) fn try_get<'r, T: Decode<'r>>(&'r self, column: &str) -> rusqlite::Result<T> {
        let value = self.value(column)?;
        T::decode(value).ok_or_else(|| {
            rusqlite::Error::InvalidColumnType(
                0,
                format!("{column} ({})", std::any::type_name::<T>()),
                value.data_type(),
            )
        })
    }

    /// The column decoded as `T`; a missing column or another type is a bug of the query.
    pub(crate) fn get<'r, T: Decode<'r>>(&'r self, column: &str) -> T {
        self.try_get(column).unwrap_or_else(|err| panic!("{err}"))
    }

    /// A text column, borrowed.
    pub(crate) fn try_get_str(&self, column: &str) -> rusqlite::Result<&str> {
        match self.value(column)? {
            Value::Text(text) => Ok(text),
            other => Err(rusqlite::Error::InvalidColumnType(0, column.to_owned(), other.data_type())),
        }
    }

    /// A text column, borrowed; see [`Row::get`].
    pub(crate) fn get_str(&self, column: &str) -> &str {
        self.try_get_str(column).unwrap_or_else(|err| panic!("{err}"))
    }
}

/// A column value as a Rust value (what the store's columns hold).
pub(crate) trait Decode<'r>: Sized {
    fn decode(value: &'r Value) -> Option<Self>;
}

impl<'r> Decode<'r> for &'r str {
    fn decode(value: &'r Value) -> Option<Self> {
        match value {
            Value::Text(text) => Some(text),
            _ => None,
        }
    }
}

impl Decode<'_> for String {
    fn decode(value: &Value) -> Option<Self> {
        <&str>::decode(value).map(str::to_owned)
    }
}

impl Decode<'_> for i64 {
    fn decode(value: &Value) -> Option<Self> {
        match value {
            Value::Integer(n) => Some(*n),
            _ => None,
        }
    }
}

impl Decode<'_> for u32 {
    fn decode(value: &Value) -> Option<Self> {
        i64::decode(value).and_then(|n| u32::try_from(n).ok())
    }
}

impl Decode<'_> for bool {
    fn decode(value: &Value) -> Option<Self> {
        i64::decode(value).map(|n| n != 0)
    }
}

impl Decode<'_> for f64 {
    fn decode(value: &Value) -> Option<Self> {
        match value {
            Value::Real(x) => Some(*x),
            Value::Integer(n) => Some(*n as f64),
            _ => None,
        }
    }
}

impl<'r, T: Decode<'r>> Decode<'r> for Option<T> {
    fn decode(value: &'r Value) -> Option<Self> {
        match value {
            Value::Null => Some(None),
            other => T::decode(other).map(Some),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn database() -> (Database, std::path::PathBuf) {
        let dir = std::env::temp_dir().join(format!("ggprov-sql-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        let db = Database::open(&dir.join("t.db")).unwrap();
        db.write(|tx| {
            tx.execute_batch("CREATE TABLE t (k TEXT PRIMARY KEY, n INTEGER, x REAL, flag INTEGER, note TEXT)")
        })
        .await
        .unwrap();
        (db, dir)
    }

    #[tokio::test]
    async fn rows_decode_by_column_name_and_say_which_column_did_not_fit() {
        let (db, dir) = database().await;
        db.write(|tx| {
            query("INSERT INTO t (k, n, x, flag, note) VALUES (?, ?, ?, ?, ?)")
                .bind("a")
                .bind(7_i64)
                .bind(1.5_f64)
                .bind(true)
                .bind(None::<String>)
                .execute(tx)
        })
        .await
        .unwrap();
        let row = query("SELECT * FROM t WHERE k = ?").bind("a").fetch_one(&db).unwrap();
        assert_eq!(row.get_str("k"), "a");
        assert_eq!((row.get::<i64>("n"), row.get::<u32>("n"), row.get::<f64>("x")), (7, 7, 1.5));
        assert!(row.get::<bool>("flag"));
        assert_eq!(row.get::<Option<String>>("note"), None);
        let wrong = row.try_get::<i64>("k").unwrap_err().to_string();
        assert!(wrong.contains('k'), "{wrong}");
        assert!(matches!(row.try_get::<i64>("missing"), Err(rusqlite::Error::InvalidColumnName(_))));
        assert!(query("SELECT * FROM t WHERE k = ?").bind("b").fetch_optional(&db).unwrap().is_none());
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[tokio::test]
    async fn a_read_connection_refuses_writes() {
        let (db, dir) = database().await;
        let err = db.read(|c| query("INSERT INTO t (k) VALUES ('r')").execute(c)).unwrap_err();
        assert_eq!(err.sqlite_error_code(), Some(rusqlite::ErrorCode::ReadOnly), "{err}");
        let rows = query("SELECT k FROM t").fetch_all(&db).unwrap();
        assert!(rows.is_empty());
        std::fs::remove_dir_all(dir).unwrap();
    }
}
