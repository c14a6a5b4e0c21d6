//! `SoftwareUpdateRecords` on SQLite: one JSON document per task, its client token unique,
//! saved on condition of its revision.

use async_trait::async_trait;
use ggprov_domain::ports::{SoftwareUpdateRecords, StoreError};
use ggprov_domain::software_update::SoftwareUpdateTask;
use ggprov_domain::{Page, PageRequest, TaskId};

use crate::sql::query;
use crate::{SqliteStore, unavailable};

fn from_doc(text: &str) -> Result<SoftwareUpdateTask, StoreError> {
    serde_json::from_str(text).map_err(|e| StoreError::unavailable(format!("corrupt software update task: {e}")))
}

fn to_doc(task: &SoftwareUpdateTask) -> String {
    serde_json::to_string(task).expect("a software update task serialises")
}

#[async_trait]
impl SoftwareUpdateRecords for SqliteStore {
    async fn create_software_update(&self, task: &SoftwareUpdateTask) -> Result<(), StoreError> {
        let result = query("INSERT INTO software_updates (id, client_token, doc, rev) VALUES (?, ?, ?, ?)")
            .bind(task.id.as_str())
            .bind(&task.request.client_token)
            .bind(to_doc(task))
            .bind(i64::try_from(task.rev).unwrap_or(i64::MAX))
            .execute_write(&self.db)
            .await;
        match result {
            Ok(_) => Ok(()),
            Err(e) if crate::is_unique_violation(&e) => Err(StoreError::AlreadyExists),
            Err(e) => Err(unavailable(e)),
        }
    }

    async fn save_software_update(&self, task: &mut SoftwareUpdateTask) -> Result<(), StoreError> {
        let previous = task.rev;
        task.rev += 1;
        task.updated_at = ggprov_domain::Timestamp::now();
        let updated = query("UPDATE software_updates SET doc = ?, rev = ? WHERE id = ? AND rev = ?")
            .bind(to_doc(task))
            .bind(i64::try_from(task.rev).unwrap_or(i64::MAX))
            .bind(task.id.as_str())
            .bind(i64::try_from(previous).unwrap_or(i64::MAX))
            .execute_write(&self.db)
            .await
            .map_err(unavailable)?;
        if updated.rows_affected() == 0 {
            task.rev = previous;
            return Err(StoreError::Conflict);
        }
        Ok(())
    }

    async fn software_update(&self, id: &TaskId) -> Result<Option<SoftwareUpdateTask>, StoreError> {
        let row = query("SELECT doc FROM software_updates WHERE id = ?")
            .bind(id.as_str())
            .fetch_optional(self.reader())
            .map_err(unavailable)?;
        row.map(|r| from_doc(r.get("doc"))).transpose()
    }

    async fn software_update_by_token(&self, token: &str) -> Result<Option<SoftwareUpdateTask>, StoreError> {
        let row = query("SELECT doc FROM software_updates WHERE client_token = ?")
            .bind(token)
            .fetch_optional(self.reader())
            .map_err(unavailable)?;
        row.map(|r| from_doc(r.get("doc"))).transpose()
    }

    async fn list_software_updates(
        &self,
        page: PageRequest<TaskId>,
    ) -> Result<Page<SoftwareUpdateTask, TaskId>, StoreError> {
        let rows = query("SELECT doc FROM software_updates WHERE id > ? ORDER BY id LIMIT ?")
            .bind(page.exclusive_start.as_ref().map_or("", TaskId::as_str).to_owned())
            .bind(i64::from(page.limit) + 1)
            .fetch_all(self.reader())
            .map_err(unavailable)?;
        let tasks = rows.iter().map(|r| from_doc(r.get("doc"))).collect::<Result<Vec<_>, _>>()?;
        Ok(Page::from_overfetch(tasks, page.limit, |t| t.id.clone()))
    }
}
