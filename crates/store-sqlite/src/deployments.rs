//! Deployment tasks, template deployments, per-core deployment state and the ingestion cursor
//! on SQLite (the `CoreStore` methods of that family delegate here).

use ggprov_domain::cores::{Event, IN_PROGRESS, NewCore, SUCCESSFUL, TaskItem, TemplateRef};
use ggprov_domain::ports::{DeploymentOutcome, StoreError};
use ggprov_domain::{Page, PageRequest, TaskId, TaskStatus, ThingName, Timestamp};
use sqlx::Row;

use crate::cores::{end_item, item_from_row, write_event};
use crate::fleet::{apply_delta, contribution};
use crate::{SqliteStore, unavailable};

impl SqliteStore {
    pub(crate) async fn deployment_task_items(
        &self,
        task: &TaskId,
        page: PageRequest<ThingName>,
    ) -> Result<Page<TaskItem<NewCore>, ThingName>, StoreError> {
        let rows = sqlx::query(
            "SELECT name, request, status, status_message, created_at, updated_at FROM task_items WHERE task_id = ? AND name > ? ORDER BY name LIMIT ?",
        )
        .bind(task.as_str())
        .bind(page.exclusive_start.as_ref().map_or("", ThingName::as_str))
        .bind(i64::from(page.limit) + 1)
        .fetch_all(&self.pool)
        .await
        .map_err(unavailable)?;
        let items = rows.iter().map(item_from_row).collect::<Result<Vec<_>, _>>()?;
        Ok(Page::from_overfetch(items, page.limit, |i| i.name.clone()))
    }

    pub(crate) async fn deployments_of_core(
        &self,
        core: &ThingName,
        page: PageRequest<TaskId>,
    ) -> Result<Page<(TaskId, TaskItem<NewCore>), TaskId>, StoreError> {
        let rows = sqlx::query(
            "SELECT i.task_id, i.name, i.request, i.status, i.status_message, i.created_at, i.updated_at FROM task_items i \
             JOIN tasks t ON t.id = i.task_id WHERE t.kind = 'deployment' AND i.name = ? AND i.task_id > ? ORDER BY i.task_id LIMIT ?",
        )
        .bind(core.as_str())
        .bind(page.exclusive_start.as_ref().map_or("", TaskId::as_str))
        .bind(i64::from(page.limit) + 1)
        .fetch_all(&self.pool)
        .await
        .map_err(unavailable)?;
        let items = rows
            .iter()
            .map(|r| Ok((TaskId::from_text(r.get("task_id")), item_from_row(r)?)))
            .collect::<Result<Vec<_>, StoreError>>()?;
        Ok(Page::from_overfetch(items, page.limit, |(id, _)| id.clone()))
    }

    pub(crate) async fn expand_deployment(
        &self,
        task: &TaskId,
        cores: &[ThingName],
        batch_size: u32,
        event: &Event,
    ) -> Result<bool, StoreError> {
        let now = Timestamp::now();
        let batches_total = cores.len().div_ceil(batch_size.max(1) as usize) as i64;
        let mut tx = self.begin_write().await?;
        let claimed = sqlx::query(
            "UPDATE tasks SET expanded = 1, batches_total = ?, batch_size = ? WHERE id = ? AND expanded = 0",
        )
        .bind(batches_total)
        .bind(i64::from(batch_size))
        .bind(task.as_str())
        .execute(&mut *tx)
        .await
        .map_err(unavailable)?;
        if claimed.rows_affected() == 0 {
            return Ok(false);
        }
        for core in cores {
            sqlx::query(
                "INSERT INTO task_items (task_id, name, request, status, created_at) VALUES (?, ?, ?, 'Waiting', ?)",
            )
            .bind(task.as_str())
            .bind(core.as_str())
            .bind(serde_json::json!({"name": core.as_str(), "provisioningTemplate": ""}).to_string())
            .bind(now.as_millis())
            .execute(&mut *tx)
            .await
            .map_err(unavailable)?;
        }
        write_event(&mut tx, event, now).await?;
        tx.commit().await.map_err(unavailable)?;
        Ok(true)
    }

    pub(crate) async fn fail_deployment(&self, task: &TaskId, message: &str) -> Result<(), StoreError> {
        sqlx::query("UPDATE tasks SET expanded = 1, batches_total = 0, status_message = ? WHERE id = ?")
            .bind(message)
            .bind(task.as_str())
            .execute(&self.pool)
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    pub(crate) async fn deployment_of_template(&self, template: &TemplateRef) -> Result<Option<String>, StoreError> {
        let row = sqlx::query(
            "SELECT deployment_id FROM template_deployments WHERE template_name = ? AND template_version = ?",
        )
        .bind(&template.name)
        .bind(i64::from(template.version))
        .fetch_optional(&self.pool)
        .await
        .map_err(unavailable)?;
        Ok(row.map(|r| r.get("deployment_id")))
    }

    pub(crate) async fn record_template_deployment(
        &self,
        template: &TemplateRef,
        group: &str,
        deployment_id: &str,
    ) -> Result<String, StoreError> {
        sqlx::query("INSERT OR IGNORE INTO template_deployments (template_name, template_version, thing_group, deployment_id, created_at) VALUES (?, ?, ?, ?, ?)")
            .bind(&template.name)
            .bind(i64::from(template.version))
            .bind(group)
            .bind(deployment_id)
            .bind(Timestamp::now().as_millis())
            .execute(&self.pool)
            .await
            .map_err(unavailable)?;
        self.deployment_of_template(template)
            .await?
            .ok_or_else(|| StoreError::unavailable("template deployment vanished"))
    }

    pub(crate) async fn template_for_deployment(&self, deployment_id: &str) -> Result<Option<TemplateRef>, StoreError> {
        let row =
            sqlx::query("SELECT template_name, template_version FROM template_deployments WHERE deployment_id = ?")
                .bind(deployment_id)
                .fetch_optional(&self.pool)
                .await
                .map_err(unavailable)?;
        Ok(row
            .map(|r| TemplateRef { name: r.get("template_name"), version: r.get::<i64, _>("template_version") as u32 }))
    }

    pub(crate) async fn set_desired(
        &self,
        task: &TaskId,
        core: &ThingName,
        template: &TemplateRef,
        deployment_id: &str,
    ) -> Result<(), StoreError> {
        let now = Timestamp::now();
        let mut tx = self.begin_write().await?;
        if !end_item(&mut tx, task, core, TaskStatus::Success, None, now).await? {
            return Ok(());
        }
        let before = contribution(&mut tx, core.as_str()).await?;
        sqlx::query(
            "UPDATE cores SET desired_name = ?, desired_version = ?, desired_deployment_id = ?, deployment_status = ?, \
             deployment_status_message = NULL, status_at = ?, updated_at = ? WHERE name = ?",
        )
        .bind(&template.name)
        .bind(i64::from(template.version))
        .bind(deployment_id)
        .bind(IN_PROGRESS)
        .bind(now.as_millis())
        .bind(now.as_millis())
        .bind(core.as_str())
        .execute(&mut *tx)
        .await
        .map_err(unavailable)?;
        let after = contribution(&mut tx, core.as_str()).await?;
        apply_delta(&mut tx, before.as_ref(), after.as_ref()).await?;
        tx.commit().await.map_err(unavailable)
    }

    pub(crate) async fn fail_deployment_for_core(
        &self,
        task: &TaskId,
        core: &ThingName,
        message: &str,
    ) -> Result<(), StoreError> {
        let now = Timestamp::now();
        let mut tx = self.begin_write().await?;
        if !end_item(&mut tx, task, core, TaskStatus::Failure, Some(message), now).await? {
            return Ok(());
        }
        let before = contribution(&mut tx, core.as_str()).await?;
        if before.is_some() {
            sqlx::query("UPDATE cores SET deployment_status = 'Failure', deployment_status_message = ?, status_at = ?, updated_at = ? WHERE name = ?")
                .bind(message)
                .bind(now.as_millis())
                .bind(now.as_millis())
                .bind(core.as_str())
                .execute(&mut *tx)
                .await
                .map_err(unavailable)?;
            let after = contribution(&mut tx, core.as_str()).await?;
            apply_delta(&mut tx, before.as_ref(), after.as_ref()).await?;
        }
        tx.commit().await.map_err(unavailable)
    }

    pub(crate) async fn apply_outcome(
        &self,
        outcome: &DeploymentOutcome,
        template: &TemplateRef,
        event: &Event,
    ) -> Result<bool, StoreError> {
        let mut tx = self.begin_write().await?;
        let Some(row) = sqlx::query("SELECT desired_deployment_id, status_at FROM cores WHERE name = ?")
            .bind(&outcome.core_name)
            .fetch_optional(&mut *tx)
            .await
            .map_err(unavailable)?
        else {
            return Ok(false);
        };
        let desired: Option<String> = row.get("desired_deployment_id");
        let status_at: Option<i64> = row.get("status_at");
        if status_at.is_some_and(|at| outcome.time.as_millis() < at) {
            return Ok(false); // older than what is recorded
        }
        let is_desired = desired.as_deref() == Some(outcome.deployment_id.as_str());
        let before = contribution(&mut tx, &outcome.core_name).await?;
        let time = outcome.time.as_millis();
        match (is_desired, outcome.succeeded) {
            (true, true) => {
                sqlx::query(
                    "UPDATE cores SET reported_name = ?, reported_version = ?, deployment_status = ?, deployment_status_message = NULL, \
                     status_at = ?, updated_at = ? WHERE name = ?",
                )
                .bind(&template.name)
                .bind(i64::from(template.version))
                .bind(SUCCESSFUL)
                .bind(time)
                .bind(time)
                .bind(&outcome.core_name)
                .execute(&mut *tx)
                .await
                .map_err(unavailable)?;
            }
            (true, false) => {
                sqlx::query("UPDATE cores SET deployment_status = ?, deployment_status_message = ?, status_at = ?, updated_at = ? WHERE name = ?")
                    .bind(&outcome.detailed_status)
                    .bind(outcome.reason.as_deref())
                    .bind(time)
                    .bind(time)
                    .bind(&outcome.core_name)
                    .execute(&mut *tx)
                    .await
                    .map_err(unavailable)?;
            }
            // An older deployment finished: the core runs that version now; its desired one is still coming.
            (false, true) => {
                sqlx::query("UPDATE cores SET reported_name = ?, reported_version = ?, updated_at = ? WHERE name = ?")
                    .bind(&template.name)
                    .bind(i64::from(template.version))
                    .bind(time)
                    .bind(&outcome.core_name)
                    .execute(&mut *tx)
                    .await
                    .map_err(unavailable)?;
            }
            (false, false) => return Ok(false),
        }
        let after = contribution(&mut tx, &outcome.core_name).await?;
        apply_delta(&mut tx, before.as_ref(), after.as_ref()).await?;
        write_event(&mut tx, event, Timestamp::now()).await?;
        tx.commit().await.map_err(unavailable)?;
        Ok(true)
    }

    pub(crate) async fn cursor(&self, feed: &str) -> Result<u64, StoreError> {
        let row = sqlx::query("SELECT position FROM ingest_cursors WHERE feed = ?")
            .bind(feed)
            .fetch_optional(&self.pool)
            .await
            .map_err(unavailable)?;
        Ok(row.map_or(0, |r| r.get::<i64, _>("position") as u64))
    }

    pub(crate) async fn save_cursor(&self, feed: &str, position: u64) -> Result<(), StoreError> {
        sqlx::query("INSERT INTO ingest_cursors (feed, position) VALUES (?, ?) ON CONFLICT (feed) DO UPDATE SET position = MAX(position, excluded.position)")
            .bind(feed)
            .bind(i64::try_from(position).unwrap_or(i64::MAX))
            .execute(&self.pool)
            .await
            .map_err(unavailable)?;
        Ok(())
    }
}
