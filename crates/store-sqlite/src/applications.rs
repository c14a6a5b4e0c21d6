//! `ApplicationStore` on SQLite: tables `application_heads` and `application_versions`.

use async_trait::async_trait;
use ggprov_domain::application::{Application, ApplicationName, ApplicationState};
use ggprov_domain::cores::Event;
use ggprov_domain::ports::{ApplicationStore, Publication, StoreError};
use ggprov_domain::{Page, PageRequest, Timestamp};

use rusqlite::Connection;

use crate::rows::write_event;
use crate::sql::{Row, query};
use crate::{SqliteStore, is_unique_violation, unavailable};

fn from_row(row: &Row) -> Result<Application, StoreError> {
    let doc: String = row.try_get("doc").map_err(unavailable)?;
    serde_json::from_str(&doc).map_err(|e| StoreError::unavailable(format!("a stored application is unreadable: {e}")))
}

fn doc(app: &Application) -> String {
    serde_json::to_string(app).expect("an application serialises")
}

fn insert_version(c: &Connection, app: &Application) -> Result<(), StoreError> {
    // A version row left by an interrupted delete is replaced, not a conflict.
    query("INSERT OR REPLACE INTO application_versions (name, version, published, doc) VALUES (?, ?, ?, ?)")
        .bind(app.name.as_str())
        .bind(i64::from(app.version))
        .bind(app.state == ApplicationState::Published)
        .bind(doc(app))
        .execute(c)
        .map_err(unavailable)?;
    Ok(())
}

/// Whether the application exists and is not being deleted.
fn is_live(c: &Connection, name: &ApplicationName) -> Result<bool, StoreError> {
    let row = query("SELECT 1 FROM application_heads WHERE name = ? AND deleting = 0")
        .bind(name.as_str())
        .fetch_optional(c)
        .map_err(unavailable)?;
    Ok(row.is_some())
}

#[async_trait]
impl ApplicationStore for SqliteStore {
    async fn create_application(&self, app: &Application) -> Result<(), StoreError> {
        self.write(|c| {
            let inserted = query("INSERT INTO application_heads (name, latest_version) VALUES (?, ?)")
                .bind(app.name.as_str())
                .bind(i64::from(app.version))
                .execute(c);
            match inserted {
                Err(err) if is_unique_violation(&err) => return Err(StoreError::AlreadyExists),
                other => other.map_err(unavailable)?,
            };
            insert_version(c, app)?;
            Ok(())
        })
        .await
    }

    async fn append_application_version(&self, app: &Application) -> Result<(), StoreError> {
        self.write(|c| {
            let moved = query(
                "UPDATE application_heads SET latest_version = ? WHERE name = ? AND latest_version = ? AND deleting = 0",
            )
            .bind(i64::from(app.version))
            .bind(app.name.as_str())
            .bind(i64::from(app.version) - 1)
            .execute(c)
            .map_err(unavailable)?;
            if moved.rows_affected() == 0 {
                // A head being deleted is as good as gone.
                return Err(if is_live(c, &app.name)? { StoreError::Conflict } else { StoreError::NotFound });
            }
            insert_version(c, app)?;
            Ok(())
        })
        .await
    }

    async fn publish_application_version(&self, app: &Application, event: &Event) -> Result<Publication, StoreError> {
        self.write(|c| {
            let updated = query(
                "UPDATE application_versions SET published = 1, doc = ? WHERE name = ? AND version = ? AND published = 0 \
                 AND EXISTS (SELECT 1 FROM application_heads WHERE name = ? AND deleting = 0)",
            )
            .bind(doc(app))
            .bind(app.name.as_str())
            .bind(i64::from(app.version))
            .bind(app.name.as_str())
            .execute(c)
            .map_err(unavailable)?;
            if updated.rows_affected() == 0 {
                return Ok(if is_live(c, &app.name)? {
                    Publication::AlreadyPublished
                } else {
                    Publication::Gone
                });
            }
            write_event(c, event, Timestamp::now())?;
            Ok(Publication::Published)
        })
        .await
    }

    async fn latest_application(&self, name: &ApplicationName) -> Result<Option<Application>, StoreError> {
        let row = query(
            "SELECT v.doc FROM application_heads h JOIN application_versions v ON v.name = h.name AND v.version = h.latest_version WHERE h.name = ?",
        )
        .bind(name.as_str())
        .fetch_optional(self.reader())
        .map_err(unavailable)?;
        row.as_ref().map(from_row).transpose()
    }

    async fn application_version(
        &self,
        name: &ApplicationName,
        version: u32,
    ) -> Result<Option<Application>, StoreError> {
        let row = query(
            "SELECT v.doc FROM application_versions v JOIN application_heads h ON h.name = v.name WHERE v.name = ? AND v.version = ?",
        )
        .bind(name.as_str())
        .bind(i64::from(version))
        .fetch_optional(self.reader())
        .map_err(unavailable)?;
        row.as_ref().map(from_row).transpose()
    }

    async fn list_applications(
        &self,
        page: PageRequest<ApplicationName>,
    ) -> Result<Page<Application, ApplicationName>, StoreError> {
        let rows = query(
            "SELECT v.doc FROM application_heads h JOIN application_versions v ON v.name = h.name AND v.version = h.latest_version \
             WHERE h.name > ? ORDER BY h.name LIMIT ?",
        )
        .bind(page.exclusive_start.as_ref().map_or("", ApplicationName::as_str))
        .bind(i64::from(page.limit) + 1)
        .fetch_all(self.reader())
        .map_err(unavailable)?;
        let items = rows.iter().map(from_row).collect::<Result<Vec<_>, _>>()?;
        Ok(Page::from_overfetch(items, page.limit, |a| a.name.clone()))
    }

    async fn list_application_versions(
        &self,
        name: &ApplicationName,
        page: PageRequest<u32>,
    ) -> Result<Page<Application, u32>, StoreError> {
        let rows = query(
            "SELECT v.doc FROM application_versions v JOIN application_heads h ON h.name = v.name \
             WHERE v.name = ? AND v.version > ? AND v.version <= h.latest_version ORDER BY v.version LIMIT ?",
        )
        .bind(name.as_str())
        .bind(i64::from(page.exclusive_start.unwrap_or(0)))
        .bind(i64::from(page.limit) + 1)
        .fetch_all(self.reader())
        .map_err(unavailable)?;
        let items = rows.iter().map(from_row).collect::<Result<Vec<_>, _>>()?;
        Ok(Page::from_overfetch(items, page.limit, |a| a.version))
    }

    async fn begin_application_delete(&self, name: &ApplicationName) -> Result<Option<u32>, StoreError> {
        let row = query("UPDATE application_heads SET deleting = 1 WHERE name = ? RETURNING latest_version")
            .bind(name.as_str())
            .fetch_optional_write(&self.db)
            .await
            .map_err(unavailable)?;
        row.map(|row| row.try_get::<i64>("latest_version").map_err(unavailable).map(|v| v as u32)).transpose()
    }

    async fn delete_application(&self, name: &ApplicationName, event: &Event) -> Result<bool, StoreError> {
        self.write(|c| {
            let head = query("DELETE FROM application_heads WHERE name = ? RETURNING deleting")
                .bind(name.as_str())
                .fetch_optional(c)
                .map_err(unavailable)?;
            let Some(head) = head else {
                return Ok(false);
            };
            if !head.try_get::<bool>("deleting").map_err(unavailable)? {
                // Not marked: the caller skipped `begin_application_delete`; nothing is deleted.
                return Err(StoreError::Conflict);
            }
            query("DELETE FROM application_versions WHERE name = ?")
                .bind(name.as_str())
                .execute(c)
                .map_err(unavailable)?;
            write_event(c, event, Timestamp::now())?;
            Ok(true)
        })
        .await
    }
}
