//! `CoreStore` on SQLite: core tasks and items, cores, provisioning journals, the outbox.

use async_trait::async_trait;
use std::collections::BTreeMap;
use std::time::Duration;

use ggprov_domain::cores::{
    Core, CoreTaskOptions, DeploymentSpec, Device, Event, NewCore, StoredEvent, Task, TaskFamily, TaskItem, TaskKind,
    TemplateRef, VersionCounts,
};
use ggprov_domain::ports::{CoreFilter, CoreStore, DeploymentOutcome, StoreError};
use ggprov_domain::provisioning::ProvisioningJournal;
use ggprov_domain::{Page, PageRequest, TaskId, TaskStatus, TaskType, ThingName, Timestamp};
use sqlx::sqlite::SqliteRow;
use sqlx::{Row, Sqlite, Transaction};

use crate::{SqliteStore, unavailable};

fn corrupt(what: impl std::fmt::Display) -> StoreError {
    StoreError::unavailable(format!("stored data is invalid: {what}"))
}

fn ts(ms: i64) -> Result<Timestamp, StoreError> {
    Timestamp::from_millis(ms).ok_or_else(|| corrupt(format!("timestamp {ms}")))
}

fn opt_ts(ms: Option<i64>) -> Result<Option<Timestamp>, StoreError> {
    ms.map(ts).transpose()
}

fn thing(name: &str) -> Result<ThingName, StoreError> {
    ThingName::parse(name).map_err(|_| corrupt(format!("thing name {name}")))
}

fn status(text: &str) -> Result<TaskStatus, StoreError> {
    TaskStatus::parse(text).ok_or_else(|| corrupt(format!("status {text}")))
}

fn task_type(text: &str) -> Result<TaskType, StoreError> {
    match text {
        "Create" => Ok(TaskType::Create),
        "Delete" => Ok(TaskType::Delete),
        other => Err(corrupt(format!("task type {other}"))),
    }
}

/// A task's status from counts of its items' statuses.
fn status_from_counts(total: i64, waiting: i64, success: i64, failure: i64) -> TaskStatus {
    if total == 0 || waiting == total {
        TaskStatus::Waiting
    } else if success + failure == total {
        if failure > 0 { TaskStatus::Failure } else { TaskStatus::Success }
    } else {
        TaskStatus::InProgress
    }
}

pub(crate) fn item_from_row(row: &SqliteRow) -> Result<TaskItem<NewCore>, StoreError> {
    Ok(TaskItem {
        name: thing(row.try_get("name").map_err(unavailable)?)?,
        request: serde_json::from_str(row.try_get("request").map_err(unavailable)?).map_err(corrupt)?,
        status: status(row.try_get("status").map_err(unavailable)?)?,
        status_message: row.try_get("status_message").map_err(unavailable)?,
        created_at: ts(row.try_get("created_at").map_err(unavailable)?)?,
        updated_at: opt_ts(row.try_get("updated_at").map_err(unavailable)?)?,
    })
}

fn core_from_row(row: &SqliteRow) -> Result<Core, StoreError> {
    let get_str = |col: &str| row.try_get::<String, _>(col).map_err(unavailable);
    Ok(Core {
        name: thing(&get_str("name")?)?,
        provisioning_template: get_str("provisioning_template")?,
        desired: TemplateRef {
            name: get_str("desired_name")?,
            version: row.try_get::<i64, _>("desired_version").map_err(unavailable)? as u32,
        },
        reported: TemplateRef {
            name: get_str("reported_name")?,
            version: row.try_get::<i64, _>("reported_version").map_err(unavailable)? as u32,
        },
        deployment_status: get_str("deployment_status")?,
        deployment_status_message: row.try_get("deployment_status_message").map_err(unavailable)?,
        artifacts: serde_json::from_str(&get_str("artifacts")?).map_err(corrupt)?,
        desired_deployment_id: row.try_get("desired_deployment_id").map_err(unavailable)?,
        status_at: opt_ts(row.try_get("status_at").map_err(unavailable)?)?,
        created_at: ts(row.try_get("created_at").map_err(unavailable)?)?,
        updated_at: opt_ts(row.try_get("updated_at").map_err(unavailable)?)?,
    })
}

fn device_from_row(row: &SqliteRow) -> Result<Device, StoreError> {
    let get_str = |col: &str| row.try_get::<String, _>(col).map_err(unavailable);
    Ok(Device {
        name: thing(&get_str("name")?)?,
        core_name: thing(&get_str("core_name")?)?,
        provisioning_template: get_str("provisioning_template")?,
        artifacts: serde_json::from_str(&get_str("artifacts")?).map_err(corrupt)?,
        created_at: ts(row.try_get("created_at").map_err(unavailable)?)?,
        updated_at: opt_ts(row.try_get("updated_at").map_err(unavailable)?)?,
    })
}

fn event_from_row(r: &SqliteRow) -> Result<StoredEvent, StoreError> {
    Ok(StoredEvent {
        id: r.get("id"),
        sequence: r.get::<i64, _>("sequence") as u64,
        event: Event {
            detail_type: r.get("detail_type"),
            detail: serde_json::from_str(r.get::<&str, _>("detail")).map_err(corrupt)?,
        },
        time: ts(r.get("created_at"))?,
    })
}

pub(crate) async fn write_event(
    tx: &mut Transaction<'static, Sqlite>,
    event: &Event,
    now: Timestamp,
) -> Result<(), StoreError> {
    sqlx::query("INSERT INTO outbox (id, detail_type, detail, created_at) VALUES (?, ?, ?, ?)")
        .bind(uuid::Uuid::new_v4().simple().to_string())
        .bind(&event.detail_type)
        .bind(event.detail.to_string())
        .bind(now.as_millis())
        .execute(&mut **tx)
        .await
        .map_err(unavailable)?;
    Ok(())
}

/// Ends an unfinished item; `false` when it had already ended (a duplicate delivery).
pub(crate) async fn end_item(
    tx: &mut Transaction<'static, Sqlite>,
    task: &TaskId,
    name: &ThingName,
    outcome: TaskStatus,
    message: Option<&str>,
    now: Timestamp,
) -> Result<bool, StoreError> {
    let ended = sqlx::query(
        "UPDATE task_items SET status = ?, status_message = ?, updated_at = ? \
         WHERE task_id = ? AND name = ? AND status NOT IN ('Success', 'Failure')",
    )
    .bind(outcome.as_str())
    .bind(message)
    .bind(now.as_millis())
    .bind(task.as_str())
    .bind(name.as_str())
    .execute(&mut **tx)
    .await
    .map_err(unavailable)?;
    Ok(ended.rows_affected() == 1)
}

const TASK_SUMMARY: &str = "SELECT t.id, t.kind, t.core_name, t.type, t.core_version, t.options, t.created_at, \
     t.template_name, t.template_version, t.targets, t.iot_job_config, t.expanded, t.batches_total, t.batch_size, t.status_message, \
     COUNT(i.name) AS total, \
     COALESCE(SUM(i.status = 'Waiting'), 0) AS waiting, \
     COALESCE(SUM(i.status = 'Success'), 0) AS success, \
     COALESCE(SUM(i.status = 'Failure'), 0) AS failure, \
     MAX(i.updated_at) AS updated_at \
     FROM tasks t LEFT JOIN task_items i ON i.task_id = t.id";

fn task_from_summary(row: &SqliteRow, items: Vec<TaskItem<NewCore>>) -> Result<Task, StoreError> {
    let count = |col: &str| row.try_get::<i64, _>(col).map_err(unavailable);
    let options: Option<String> = row.try_get("options").map_err(unavailable)?;
    let kind = match row.try_get::<&str, _>("kind").map_err(unavailable)? {
        "core" => TaskKind::Core,
        "device" => TaskKind::Device { core_name: thing(row.try_get("core_name").map_err(unavailable)?)? },
        "deployment" => {
            let json = |col: &str| -> Result<Option<serde_json::Value>, StoreError> {
                let text: Option<String> = row.try_get(col).map_err(unavailable)?;
                text.map(|t| serde_json::from_str(&t)).transpose().map_err(corrupt)
            };
            TaskKind::Deployment(DeploymentSpec {
                template: TemplateRef {
                    name: row.try_get("template_name").map_err(unavailable)?,
                    version: row.try_get::<i64, _>("template_version").map_err(unavailable)? as u32,
                },
                targets: json("targets")?.unwrap_or_default(),
                iot_job_config: json("iot_job_config")?,
                expanded: row.try_get::<i64, _>("expanded").map_err(unavailable)? != 0,
                batches_total: row.try_get::<Option<i64>, _>("batches_total").map_err(unavailable)?.map(|n| n as u32),
                batch_size: row.try_get::<Option<i64>, _>("batch_size").map_err(unavailable)?.map(|n| n as u32),
            })
        }
        other => return Err(corrupt(format!("task kind {other}"))),
    };
    let status_message: Option<String> = row.try_get("status_message").map_err(unavailable)?;
    let total = count("total")?;
    let status = match &kind {
        TaskKind::Deployment(spec) if !spec.expanded => TaskStatus::Waiting,
        _ if total == 0 && status_message.is_some() => TaskStatus::Failure,
        _ => status_from_counts(total, count("waiting")?, count("success")?, count("failure")?),
    };
    Ok(Task {
        id: TaskId::from_text(row.try_get("id").map_err(unavailable)?),
        kind,
        task_type: task_type(row.try_get("type").map_err(unavailable)?)?,
        core_version: row.try_get("core_version").map_err(unavailable)?,
        options: options.map(|o| serde_json::from_str::<CoreTaskOptions>(&o)).transpose().map_err(corrupt)?,
        items,
        status,
        status_message,
        created_at: ts(row.try_get("created_at").map_err(unavailable)?)?,
        updated_at: opt_ts(row.try_get("updated_at").map_err(unavailable)?)?,
    })
}

#[async_trait]
impl CoreStore for SqliteStore {
    async fn create_task(&self, task: &Task) -> Result<(), StoreError> {
        let mut tx = self.begin_write().await?;
        let core_name = match &task.kind {
            TaskKind::Device { core_name } => Some(core_name.as_str()),
            _ => None,
        };
        let deployment = match &task.kind {
            TaskKind::Deployment(spec) => Some(spec),
            _ => None,
        };
        sqlx::query(
            "INSERT INTO tasks (id, kind, core_name, template_name, template_version, targets, iot_job_config, type, core_version, options, created_at) \
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(task.id.as_str())
        .bind(task.kind.family().as_str())
        .bind(core_name)
        .bind(deployment.map(|d| d.template.name.clone()))
        .bind(deployment.map(|d| i64::from(d.template.version)))
        .bind(deployment.map(|d| d.targets.to_string()))
        .bind(deployment.and_then(|d| d.iot_job_config.as_ref()).map(ToString::to_string))
            .bind(task.task_type.as_str())
            .bind(&task.core_version)
            .bind(task.options.as_ref().map(|o| serde_json::to_string(o).expect("options serialise")))
            .bind(task.created_at.as_millis())
            .execute(&mut *tx)
            .await
            .map_err(unavailable)?;
        for item in &task.items {
            sqlx::query(
                "INSERT INTO task_items (task_id, name, request, status, created_at) VALUES (?, ?, ?, 'Waiting', ?)",
            )
            .bind(task.id.as_str())
            .bind(item.name.as_str())
            .bind(serde_json::to_string(&item.request).expect("requests serialise"))
            .bind(item.created_at.as_millis())
            .execute(&mut *tx)
            .await
            .map_err(unavailable)?;
        }
        tx.commit().await.map_err(unavailable)
    }

    async fn task_header(&self, id: &TaskId) -> Result<Option<Task>, StoreError> {
        let sql = format!("{TASK_SUMMARY} WHERE t.id = ? GROUP BY t.id");
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(id.as_str())
            .fetch_optional(&self.pool)
            .await
            .map_err(unavailable)?;
        row.as_ref().map(|row| task_from_summary(row, Vec::new())).transpose()
    }

    async fn task(&self, id: &TaskId) -> Result<Option<Task>, StoreError> {
        let sql = format!("{TASK_SUMMARY} WHERE t.id = ? GROUP BY t.id");
        let Some(row) = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(id.as_str())
            .fetch_optional(&self.pool)
            .await
            .map_err(unavailable)?
        else {
            return Ok(None);
        };
        let items = sqlx::query("SELECT name, request, status, status_message, created_at, updated_at FROM task_items WHERE task_id = ? ORDER BY name")
            .bind(id.as_str())
            .fetch_all(&self.pool)
            .await
            .map_err(unavailable)?
            .iter()
            .map(item_from_row)
            .collect::<Result<Vec<_>, _>>()?;
        task_from_summary(&row, items).map(Some)
    }

    async fn list_tasks(
        &self,
        family: TaskFamily,
        page: PageRequest<TaskId>,
    ) -> Result<Page<Task, TaskId>, StoreError> {
        let sql = format!("{TASK_SUMMARY} WHERE t.kind = ? AND t.id > ? GROUP BY t.id ORDER BY t.id LIMIT ?");
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(family.as_str())
            .bind(page.exclusive_start.as_ref().map_or("", TaskId::as_str))
            .bind(i64::from(page.limit) + 1)
            .fetch_all(&self.pool)
            .await
            .map_err(unavailable)?;
        let tasks = rows.iter().map(|row| task_from_summary(row, Vec::new())).collect::<Result<Vec<_>, _>>()?;
        Ok(Page::from_overfetch(tasks, page.limit, |t| t.id.clone()))
    }

    async fn start_item(&self, task: &TaskId, name: &ThingName) -> Result<Option<TaskItem<NewCore>>, StoreError> {
        let now = Timestamp::now().as_millis();
        sqlx::query("UPDATE task_items SET status = 'InProgress', updated_at = ? WHERE task_id = ? AND name = ? AND status = 'Waiting'")
            .bind(now)
            .bind(task.as_str())
            .bind(name.as_str())
            .execute(&self.pool)
            .await
            .map_err(unavailable)?;
        let row = sqlx::query("SELECT name, request, status, status_message, created_at, updated_at FROM task_items WHERE task_id = ? AND name = ?")
            .bind(task.as_str())
            .bind(name.as_str())
            .fetch_optional(&self.pool)
            .await
            .map_err(unavailable)?;
        row.as_ref().map(item_from_row).transpose()
    }

    async fn fail_item(
        &self,
        task: &TaskId,
        name: &ThingName,
        message: &str,
        event: Option<&Event>,
    ) -> Result<(), StoreError> {
        let now = Timestamp::now();
        let mut tx = self.begin_write().await?;
        if end_item(&mut tx, task, name, TaskStatus::Failure, Some(message), now).await?
            && let Some(event) = event
        {
            write_event(&mut tx, event, now).await?;
        }
        tx.commit().await.map_err(unavailable)
    }

    async fn complete_core_create(&self, task: &TaskId, core: &Core, event: &Event) -> Result<(), StoreError> {
        let now = Timestamp::now();
        let mut tx = self.begin_write().await?;
        if !end_item(&mut tx, task, &core.name, TaskStatus::Success, None, now).await? {
            return Ok(()); // a duplicate delivery: the first one recorded everything
        }
        let before = crate::fleet::contribution(&mut tx, core.name.as_str()).await?;
        sqlx::query(
            "INSERT INTO cores (name, provisioning_template, desired_name, desired_version, reported_name, reported_version, \
             deployment_status, deployment_status_message, artifacts, created_at, updated_at) \
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) \
             ON CONFLICT (name) DO UPDATE SET provisioning_template = excluded.provisioning_template, \
             artifacts = excluded.artifacts, updated_at = excluded.updated_at",
        )
        .bind(core.name.as_str())
        .bind(&core.provisioning_template)
        .bind(&core.desired.name)
        .bind(i64::from(core.desired.version))
        .bind(&core.reported.name)
        .bind(i64::from(core.reported.version))
        .bind(&core.deployment_status)
        .bind(&core.deployment_status_message)
        .bind(serde_json::to_string(&core.artifacts).expect("artifacts serialise"))
        .bind(core.created_at.as_millis())
        .bind(now.as_millis())
        .execute(&mut *tx)
        .await
        .map_err(unavailable)?;
        let after = crate::fleet::contribution(&mut tx, core.name.as_str()).await?;
        crate::fleet::apply_delta(&mut tx, before.as_ref(), after.as_ref()).await?;
        write_event(&mut tx, event, now).await?;
        tx.commit().await.map_err(unavailable)
    }

    async fn complete_core_delete(&self, task: &TaskId, name: &ThingName, event: &Event) -> Result<(), StoreError> {
        let now = Timestamp::now();
        let mut tx = self.begin_write().await?;
        if !end_item(&mut tx, task, name, TaskStatus::Success, None, now).await? {
            return Ok(());
        }
        let before = crate::fleet::contribution(&mut tx, name.as_str()).await?;
        crate::fleet::apply_delta(&mut tx, before.as_ref(), None).await?;
        for sql in ["DELETE FROM cores WHERE name = ?", "DELETE FROM provisioning_journals WHERE name = ?"] {
            sqlx::query(sql).bind(name.as_str()).execute(&mut *tx).await.map_err(unavailable)?;
        }
        write_event(&mut tx, event, now).await?;
        tx.commit().await.map_err(unavailable)
    }

    async fn complete_device_create(&self, task: &TaskId, device: &Device, event: &Event) -> Result<(), StoreError> {
        let now = Timestamp::now();
        let mut tx = self.begin_write().await?;
        if !end_item(&mut tx, task, &device.name, TaskStatus::Success, None, now).await? {
            return Ok(());
        }
        sqlx::query(
            "INSERT INTO devices (name, core_name, provisioning_template, artifacts, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?) \
             ON CONFLICT (name) DO UPDATE SET core_name = excluded.core_name, provisioning_template = excluded.provisioning_template, \
             artifacts = excluded.artifacts, updated_at = excluded.updated_at",
        )
        .bind(device.name.as_str())
        .bind(device.core_name.as_str())
        .bind(&device.provisioning_template)
        .bind(serde_json::to_string(&device.artifacts).expect("artifacts serialise"))
        .bind(device.created_at.as_millis())
        .bind(now.as_millis())
        .execute(&mut *tx)
        .await
        .map_err(unavailable)?;
        write_event(&mut tx, event, now).await?;
        tx.commit().await.map_err(unavailable)
    }

    async fn complete_device_delete(
        &self,
        task: Option<&TaskId>,
        name: &ThingName,
        event: &Event,
    ) -> Result<(), StoreError> {
        let now = Timestamp::now();
        let mut tx = self.begin_write().await?;
        if let Some(task) = task
            && !end_item(&mut tx, task, name, TaskStatus::Success, None, now).await?
        {
            return Ok(());
        }
        let deleted = sqlx::query("DELETE FROM devices WHERE name = ?")
            .bind(name.as_str())
            .execute(&mut *tx)
            .await
            .map_err(unavailable)?;
        sqlx::query("DELETE FROM provisioning_journals WHERE name = ?")
            .bind(name.as_str())
            .execute(&mut *tx)
            .await
            .map_err(unavailable)?;
        // A direct delete of a device that is already gone changes nothing and says nothing.
        if task.is_some() || deleted.rows_affected() > 0 {
            write_event(&mut tx, event, now).await?;
        }
        tx.commit().await.map_err(unavailable)
    }

    async fn device(&self, name: &ThingName) -> Result<Option<Device>, StoreError> {
        let row = sqlx::query("SELECT * FROM devices WHERE name = ?")
            .bind(name.as_str())
            .fetch_optional(&self.pool)
            .await
            .map_err(unavailable)?;
        row.as_ref().map(device_from_row).transpose()
    }

    async fn list_devices_of_core(
        &self,
        core: &ThingName,
        page: PageRequest<ThingName>,
    ) -> Result<Page<Device, ThingName>, StoreError> {
        let rows = sqlx::query("SELECT * FROM devices WHERE core_name = ? AND name > ? ORDER BY name LIMIT ?")
            .bind(core.as_str())
            .bind(page.exclusive_start.as_ref().map_or("", ThingName::as_str))
            .bind(i64::from(page.limit) + 1)
            .fetch_all(&self.pool)
            .await
            .map_err(unavailable)?;
        let devices = rows.iter().map(device_from_row).collect::<Result<Vec<_>, _>>()?;
        Ok(Page::from_overfetch(devices, page.limit, |d| d.name.clone()))
    }

    async fn core(&self, name: &ThingName) -> Result<Option<Core>, StoreError> {
        let row = sqlx::query("SELECT * FROM cores WHERE name = ?")
            .bind(name.as_str())
            .fetch_optional(&self.pool)
            .await
            .map_err(unavailable)?;
        row.as_ref().map(core_from_row).transpose()
    }

    async fn list_cores(
        &self,
        filter: &CoreFilter,
        page: PageRequest<ThingName>,
    ) -> Result<Page<Core, ThingName>, StoreError> {
        let mut sql = String::from("SELECT * FROM cores WHERE name > ?");
        if filter.template_name.is_some() {
            sql.push_str(" AND desired_name = ?");
            if filter.template_version.is_some() {
                sql.push_str(" AND desired_version = ?");
            }
        }
        if filter.failed_only {
            sql.push_str(" AND deployment_status NOT IN ('None', 'SUCCESSFUL', 'IN_PROGRESS')");
        }
        sql.push_str(" ORDER BY name LIMIT ?");
        let mut query = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(page.exclusive_start.as_ref().map_or("", ThingName::as_str).to_owned());
        if let Some(name) = &filter.template_name {
            query = query.bind(name.clone());
            if let Some(version) = filter.template_version {
                query = query.bind(i64::from(version));
            }
        }
        let rows = query.bind(i64::from(page.limit) + 1).fetch_all(&self.pool).await.map_err(unavailable)?;
        let cores = rows.iter().map(core_from_row).collect::<Result<Vec<_>, _>>()?;
        Ok(Page::from_overfetch(cores, page.limit, |c| c.name.clone()))
    }

    async fn journal(&self, name: &ThingName) -> Result<ProvisioningJournal, StoreError> {
        let row = sqlx::query("SELECT journal FROM provisioning_journals WHERE name = ?")
            .bind(name.as_str())
            .fetch_optional(&self.pool)
            .await
            .map_err(unavailable)?;
        match row {
            Some(row) => serde_json::from_str(row.get::<&str, _>("journal")).map_err(corrupt),
            None => Ok(ProvisioningJournal::default()),
        }
    }

    async fn save_journal(&self, name: &ThingName, journal: &ProvisioningJournal) -> Result<(), StoreError> {
        sqlx::query("INSERT INTO provisioning_journals (name, journal) VALUES (?, ?) ON CONFLICT (name) DO UPDATE SET journal = excluded.journal")
            .bind(name.as_str())
            .bind(serde_json::to_string(journal).expect("journals serialise"))
            .execute(&self.pool)
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    async fn unexpanded_deployment_tasks(&self, before: Timestamp) -> Result<Vec<TaskId>, StoreError> {
        let rows = sqlx::query(
            "SELECT id FROM tasks WHERE kind = 'deployment' AND expanded = 0 AND created_at < ? ORDER BY id",
        )
        .bind(before.as_millis())
        .fetch_all(&self.pool)
        .await
        .map_err(unavailable)?;
        Ok(rows.iter().map(|r| TaskId::from_text(r.get("id"))).collect())
    }

    async fn unfinished_items(&self, before: Timestamp) -> Result<Vec<(TaskId, ThingName)>, StoreError> {
        let rows = sqlx::query(
            "SELECT task_id, name FROM task_items WHERE status IN ('Waiting', 'InProgress') \
             AND COALESCE(updated_at, created_at) < ? ORDER BY task_id, name",
        )
        .bind(before.as_millis())
        .fetch_all(&self.pool)
        .await
        .map_err(unavailable)?;
        rows.iter().map(|r| Ok((TaskId::from_text(r.get("task_id")), thing(r.get("name"))?))).collect()
    }

    async fn events(&self, page: PageRequest<u64>) -> Result<Page<StoredEvent, u64>, StoreError> {
        let before = page.exclusive_start.map_or(i64::MAX, |s| i64::try_from(s).unwrap_or(i64::MAX));
        let rows = sqlx::query("SELECT sequence, id, detail_type, detail, created_at FROM outbox WHERE sequence < ? ORDER BY sequence DESC LIMIT ?")
            .bind(before)
            .bind(i64::from(page.limit) + 1)
            .fetch_all(&self.pool)
            .await
            .map_err(unavailable)?;
        let events = rows.iter().map(event_from_row).collect::<Result<Vec<_>, StoreError>>()?;
        Ok(Page::from_overfetch(events, page.limit, |e| e.sequence))
    }

    async fn claim_unpublished_events(&self, limit: u32, lease: Duration) -> Result<Vec<StoredEvent>, StoreError> {
        let now = Timestamp::now().as_millis();
        let until = now.saturating_add(i64::try_from(lease.as_millis()).unwrap_or(i64::MAX));
        let mut tx = self.begin_write().await?;
        let rows = sqlx::query(
            "UPDATE outbox SET claimed_until = ? WHERE sequence IN (SELECT sequence FROM outbox WHERE published_at IS NULL \
             AND COALESCE(claimed_until, 0) <= ? ORDER BY sequence LIMIT ?) RETURNING sequence, id, detail_type, detail, created_at",
        )
        .bind(until)
        .bind(now)
        .bind(i64::from(limit))
        .fetch_all(&mut *tx)
        .await
        .map_err(unavailable)?;
        tx.commit().await.map_err(unavailable)?;
        let mut events = rows.iter().map(event_from_row).collect::<Result<Vec<_>, _>>()?;
        events.sort_by_key(|e| e.sequence);
        Ok(events)
    }

    async fn outbox_backlog(&self) -> Result<u64, StoreError> {
        let row = sqlx::query("SELECT COUNT(*) AS n FROM outbox WHERE published_at IS NULL")
            .fetch_one(&self.pool)
            .await
            .map_err(unavailable)?;
        Ok(row.get::<i64, _>("n") as u64)
    }

    async fn mark_events_published(&self, events: &[StoredEvent]) -> Result<(), StoreError> {
        let now = Timestamp::now().as_millis();
        let mut tx = self.begin_write().await?;
        for event in events {
            sqlx::query("UPDATE outbox SET published_at = ? WHERE id = ?")
                .bind(now)
                .bind(&event.id)
                .execute(&mut *tx)
                .await
                .map_err(unavailable)?;
        }
        tx.commit().await.map_err(unavailable)
    }

    async fn task_items(
        &self,
        task: &TaskId,
        page: PageRequest<ThingName>,
    ) -> Result<Page<TaskItem<NewCore>, ThingName>, StoreError> {
        self.deployment_task_items(task, page).await
    }

    async fn core_deployments(
        &self,
        core: &ThingName,
        page: PageRequest<TaskId>,
    ) -> Result<Page<(TaskId, TaskItem<NewCore>), TaskId>, StoreError> {
        self.deployments_of_core(core, page).await
    }

    async fn expand_deployment_task(
        &self,
        task: &TaskId,
        cores: &[ThingName],
        batch_size: u32,
        event: &Event,
    ) -> Result<bool, StoreError> {
        self.expand_deployment(task, cores, batch_size, event).await
    }

    async fn fail_deployment_task(&self, task: &TaskId, message: &str) -> Result<(), StoreError> {
        self.fail_deployment(task, message).await
    }

    async fn template_deployment(&self, template: &TemplateRef) -> Result<Option<String>, StoreError> {
        self.deployment_of_template(template).await
    }

    async fn save_template_deployment(
        &self,
        template: &TemplateRef,
        thing_group: &str,
        deployment_id: &str,
    ) -> Result<String, StoreError> {
        self.record_template_deployment(template, thing_group, deployment_id).await
    }

    async fn template_of_deployment(&self, deployment_id: &str) -> Result<Option<TemplateRef>, StoreError> {
        self.template_for_deployment(deployment_id).await
    }

    async fn complete_deployment_item(
        &self,
        task: &TaskId,
        core: &ThingName,
        template: &TemplateRef,
        deployment_id: &str,
    ) -> Result<(), StoreError> {
        self.set_desired(task, core, template, deployment_id).await
    }

    async fn fail_deployment_item(&self, task: &TaskId, core: &ThingName, message: &str) -> Result<(), StoreError> {
        self.fail_deployment_for_core(task, core, message).await
    }

    async fn apply_deployment_outcome(
        &self,
        outcome: &DeploymentOutcome,
        template: &TemplateRef,
        event: &Event,
    ) -> Result<bool, StoreError> {
        self.apply_outcome(outcome, template, event).await
    }

    async fn cores_in_progress(&self) -> Result<Vec<Core>, StoreError> {
        let rows = sqlx::query("SELECT * FROM cores WHERE deployment_status = 'IN_PROGRESS' ORDER BY name")
            .fetch_all(&self.pool)
            .await
            .map_err(unavailable)?;
        rows.iter().map(core_from_row).collect()
    }

    async fn fleet_counters(&self) -> Result<BTreeMap<(String, u32), VersionCounts>, StoreError> {
        crate::fleet::counters(&self.pool).await
    }

    async fn recount_fleet(&self) -> Result<BTreeMap<(String, u32), VersionCounts>, StoreError> {
        crate::fleet::recount(&self.pool).await
    }

    async fn ingest_cursor(&self, feed: &str) -> Result<u64, StoreError> {
        self.cursor(feed).await
    }

    async fn save_ingest_cursor(&self, feed: &str, position: u64) -> Result<(), StoreError> {
        self.save_cursor(feed, position).await
    }
}
