//! `TaskStore` on SQLite: tasks of every family in `tasks`, their items in `task_items`. A
//! task's status is derived from counts of its items' statuses by the domain's rule.

use async_trait::async_trait;
use ggprov_domain::cores::{
    CoreTaskOptions, DeploymentSpec, Event, NewCore, Task, TaskFamily, TaskItem, TaskKind, TemplateRef,
};
use ggprov_domain::ports::{StartedItem, StoreError, TaskStore};
use ggprov_domain::thing::ThingKind;
use ggprov_domain::{ItemCounts, Page, PageRequest, TaskId, TaskStatus, TaskType, ThingName, Timestamp};
use rusqlite::Connection;

use crate::rows::{corrupt, end_item, item_from_row, opt_ts, task_type, thing, ts, write_event};
use crate::sql::{Row, query};
use crate::{SqliteStore, unavailable};

const TASK_SUMMARY: &str = "SELECT t.id, t.kind, t.core_name, t.type, t.core_version, t.options, t.created_at, \
     t.template_name, t.template_version, t.targets, t.iot_job_config, t.expanded, t.batches_total, t.batch_size, t.status_message, t.rollout, t.revision, \
     COUNT(i.name) AS total, \
     COALESCE(SUM(i.status = 'Waiting'), 0) AS waiting, \
     COALESCE(SUM(i.status = 'Success'), 0) AS success, \
     COALESCE(SUM(i.status = 'Failure'), 0) AS failure, \
     MAX(i.updated_at) AS updated_at \
     FROM tasks t LEFT JOIN task_items i ON i.task_id = t.id";

fn task_from_summary(row: &Row, items: Vec<TaskItem<NewCore>>) -> Result<Task, StoreError> {
    let count = |col: &str| row.try_get::<i64>(col).map_err(unavailable);
    let options: Option<String> = row.try_get("options").map_err(unavailable)?;
    let kind = match row.try_get_str("kind").map_err(unavailable)? {
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
                    version: row.try_get::<i64>("template_version").map_err(unavailable)? as u32,
                },
                targets: json("targets")?.unwrap_or_default(),
                iot_job_config: json("iot_job_config")?,
                expanded: row.try_get::<i64>("expanded").map_err(unavailable)? != 0,
                batches_total: row.try_get::<Option<i64>>("batches_total").map_err(unavailable)?.map(|n| n as u32),
                batch_size: row.try_get::<Option<i64>>("batch_size").map_err(unavailable)?.map(|n| n as u32),
                rollout: json("rollout")?.map(serde_json::from_value).transpose().map_err(corrupt)?,
                revision: row.try_get("revision").map_err(unavailable)?,
            })
        }
        "rotation" => {
            let spec: Option<String> = row.try_get("targets").map_err(unavailable)?;
            let spec = spec.ok_or_else(|| corrupt("rotation task without its spec"))?;
            let mut spec: ggprov_domain::rotation::RotationSpec = serde_json::from_str(&spec).map_err(corrupt)?;
            let rollout: Option<String> = row.try_get("rollout").map_err(unavailable)?;
            spec.rollout = rollout.map(|r| serde_json::from_str(&r)).transpose().map_err(corrupt)?;
            TaskKind::Rotation(spec)
        }
        other => return Err(corrupt(format!("task kind {other}"))),
    };
    let status_message: Option<String> = row.try_get("status_message").map_err(unavailable)?;
    let counts = ItemCounts {
        total: count("total")?,
        waiting: count("waiting")?,
        success: count("success")?,
        failure: count("failure")?,
    };
    let status = Task::derive_status(&kind, &counts, status_message.as_deref());
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

/// The task whose open item holds the claim on a name (a claim whose item ended holds nothing).
const CLAIM_HOLDER: &str = "SELECT c.task_id FROM thing_claims c JOIN task_items i ON i.task_id = c.task_id \
     AND i.name = c.name WHERE c.name = ? AND i.status IN ('Waiting', 'InProgress')";

/// Claims every item's name for `task` (inside the transaction that stores the task), or says
/// who holds the first name that cannot be claimed, in item order: another task's open item,
/// or (creating) a thing of the other kind. A claim whose item has ended is stale and is taken
/// over. Three statements whatever the number of items (decision 86): a statement per item
/// cost a 5,000-core request 15,000 round trips to the connection's thread.
fn claim_all(c: &Connection, task: &Task, kind: ThingKind, names: &str) -> Result<(), StoreError> {
    // The table name comes from this crate only.
    let other = match (task.task_type, kind.other()) {
        (TaskType::Create, ThingKind::Core) => "EXISTS (SELECT 1 FROM cores o WHERE o.name = j.value)",
        (TaskType::Create, ThingKind::Device) => "EXISTS (SELECT 1 FROM devices o WHERE o.name = j.value)",
        (TaskType::Delete, _) => "0",
    };
    let conflict = format!(
        "SELECT name, holder, other FROM (SELECT j.key AS position, j.value AS name, \
         (SELECT c.task_id FROM thing_claims c JOIN task_items i ON i.task_id = c.task_id AND i.name = c.name \
          WHERE c.name = j.value AND i.status IN ('Waiting', 'InProgress')) AS holder, {other} AS other \
         FROM json_each(?) j) WHERE holder IS NOT NULL OR other ORDER BY position LIMIT 1"
    );
    let found = query(conflict).bind(names).fetch_optional(c).map_err(unavailable)?;
    if let Some(row) = found {
        let name = thing(row.get("name"))?;
        return Err(match row.get::<Option<String>>("holder") {
            Some(holder) => StoreError::Claimed { name, task: TaskId::from_text(&holder) },
            None => StoreError::OtherKind { name, is: kind.other() },
        });
    }
    query(
        "INSERT INTO thing_claims (name, task_id, kind, created_at) SELECT value, ?, ?, ? FROM json_each(?) WHERE true \
         ON CONFLICT (name) DO UPDATE SET task_id = excluded.task_id, kind = excluded.kind, created_at = excluded.created_at",
    )
    .bind(task.id.as_str())
    .bind(kind.as_str())
    .bind(task.created_at.as_millis())
    .bind(names)
    .execute(c)
    .map_err(unavailable)?;
    Ok(())
}

#[async_trait]
impl TaskStore for SqliteStore {
    async fn create_task(&self, task: &Task) -> Result<(), StoreError> {
        // Tasks that own their things claim the items' names (built before the write lock).
        let claims = task.kind.owns().map(|kind| {
            let names: Vec<&str> = task.items.iter().map(|i| i.name.as_str()).collect();
            (kind, serde_json::Value::from(names).to_string())
        });
        self.write(|c| {
            if let Some((kind, names)) = &claims {
                claim_all(c, task, *kind, names)?;
            }
            let core_name = match &task.kind {
                TaskKind::Device { core_name } => Some(core_name.as_str()),
                _ => None,
            };
            let deployment = match &task.kind {
                TaskKind::Deployment(spec) => Some(spec),
                _ => None,
            };
            query(
                "INSERT INTO tasks (id, kind, core_name, template_name, template_version, targets, iot_job_config, type, core_version, options, created_at, rollout, rollout_active, expanded) \
                 VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            )
            .bind(task.id.as_str())
            .bind(task.kind.family().as_str())
            .bind(core_name)
            .bind(deployment.map(|d| d.template.name.clone()))
            .bind(deployment.map(|d| i64::from(d.template.version)))
            .bind(match &task.kind {
                TaskKind::Rotation(spec) => Some(serde_json::to_string(spec).expect("specs serialise")),
                _ => deployment.map(|d| d.targets.to_string()),
            })
            .bind(deployment.and_then(|d| d.iot_job_config.as_ref()).map(ToString::to_string))
                .bind(task.task_type.as_str())
                .bind(&task.core_version)
                .bind(task.options.as_ref().map(|o| serde_json::to_string(o).expect("options serialise")))
                .bind(task.created_at.as_millis())
                .bind(task.rollout().map(|r| serde_json::to_string(r).expect("serialises")))
                // A rotation's rollout runs from the start (its items are known); a deployment's
                // once its targets are expanded.
                .bind(matches!(task.kind, TaskKind::Rotation(_)) && task.rollout().is_some_and(|r| r.is_active()))
                .bind(matches!(task.kind, TaskKind::Rotation(_)))
                .execute(c)
                .map_err(unavailable)?;
            // Every item in one statement: [name, request (its JSON text), created at, wave] each.
            let waves = task.item_waves().unwrap_or_default();
            let items: Vec<serde_json::Value> = task
                .items
                .iter()
                .map(|item| {
                    serde_json::json!([
                        item.name.as_str(),
                        serde_json::to_string(&item.request).expect("requests serialise"),
                        item.created_at.as_millis(),
                        waves.get(&item.name).copied().unwrap_or(0),
                    ])
                })
                .collect();
            query(
                "INSERT INTO task_items (task_id, name, request, status, created_at, wave) \
                 SELECT ?, value ->> 0, value ->> 1, 'Waiting', value ->> 2, value ->> 3 FROM json_each(?)",
            )
            .bind(task.id.as_str())
            .bind(serde_json::Value::from(items).to_string())
            .execute(c)
            .map_err(unavailable)?;
            for event in task.creation_events() {
                write_event(c, &event, task.created_at)?;
            }
            Ok(())
        })
        .await
    }

    async fn task_header(&self, id: &TaskId) -> Result<Option<Task>, StoreError> {
        let sql = format!("{TASK_SUMMARY} WHERE t.id = ? GROUP BY t.id");
        let row = query(sql).bind(id.as_str()).fetch_optional(self.reader()).map_err(unavailable)?;
        row.as_ref().map(|row| task_from_summary(row, Vec::new())).transpose()
    }

    async fn task(&self, id: &TaskId) -> Result<Option<Task>, StoreError> {
        let sql = format!("{TASK_SUMMARY} WHERE t.id = ? GROUP BY t.id");
        let Some(row) = query(sql).bind(id.as_str()).fetch_optional(self.reader()).map_err(unavailable)? else {
            return Ok(None);
        };
        let items = query("SELECT name, request, status, status_message, created_at, updated_at FROM task_items WHERE task_id = ? ORDER BY name")
            .bind(id.as_str())
            .fetch_all(self.reader())
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
        let rows = query(sql)
            .bind(family.as_str())
            .bind(page.exclusive_start.as_ref().map_or("", TaskId::as_str))
            .bind(i64::from(page.limit) + 1)
            .fetch_all(self.reader())
            .map_err(unavailable)?;
        let tasks = rows.iter().map(|row| task_from_summary(row, Vec::new())).collect::<Result<Vec<_>, _>>()?;
        Ok(Page::from_overfetch(tasks, page.limit, |t| t.id.clone()))
    }

    async fn task_items(
        &self,
        task: &TaskId,
        page: PageRequest<ThingName>,
    ) -> Result<Page<TaskItem<NewCore>, ThingName>, StoreError> {
        let rows = query(
            "SELECT name, request, status, status_message, created_at, updated_at FROM task_items WHERE task_id = ? AND name > ? ORDER BY name LIMIT ?",
        )
        .bind(task.as_str())
        .bind(page.exclusive_start.as_ref().map_or("", ThingName::as_str))
        .bind(i64::from(page.limit) + 1)
        .fetch_all(self.reader())
        .map_err(unavailable)?;
        let items = rows.iter().map(item_from_row).collect::<Result<Vec<_>, _>>()?;
        Ok(Page::from_overfetch(items, page.limit, |i| i.name.clone()))
    }

    async fn start_item(
        &self,
        task: &TaskId,
        name: &ThingName,
        holder: &str,
        lease: std::time::Duration,
    ) -> Result<Option<StartedItem>, StoreError> {
        let now = Timestamp::now().as_millis();
        let until = now.saturating_add(i64::try_from(lease.as_millis()).unwrap_or(i64::MAX));
        let claimed = query(
            "UPDATE task_items SET status = 'InProgress', holder = ?, lease_until = ?, updated_at = ? \
             WHERE task_id = ? AND name = ? AND (status = 'Waiting' OR (status = 'InProgress' \
             AND (holder IS NULL OR holder = ? OR COALESCE(lease_until, 0) <= ?))) \
             RETURNING name, request, status, status_message, created_at, updated_at",
        )
        .bind(holder)
        .bind(until)
        .bind(now)
        .bind(task.as_str())
        .bind(name.as_str())
        .bind(holder)
        .bind(now)
        .fetch_optional_write(&self.db)
        .await
        .map_err(unavailable)?;
        if let Some(row) = claimed {
            // Won: the claimed row comes back with the claim (one statement a started item).
            return Ok(Some(StartedItem { item: item_from_row(&row)?, won: true }));
        }
        // Not claimed: ended, held by another live lease, or not part of the task.
        let row = query("SELECT name, request, status, status_message, created_at, updated_at FROM task_items WHERE task_id = ? AND name = ?")
            .bind(task.as_str())
            .bind(name.as_str())
            .fetch_optional(self.reader())
            .map_err(unavailable)?;
        row.as_ref().map(|r| Ok(StartedItem { item: item_from_row(r)?, won: false })).transpose()
    }

    async fn fail_item(
        &self,
        task: &TaskId,
        name: &ThingName,
        message: &str,
        event: Option<&Event>,
    ) -> Result<(), StoreError> {
        let now = Timestamp::now();
        self.write(|c| {
            if end_item(c, task, name, TaskStatus::Failure, Some(message), now)?
                && let Some(event) = event
            {
                write_event(c, event, now)?;
            }
            Ok(())
        })
        .await
    }

    async fn open_claim(&self, name: &ThingName) -> Result<Option<TaskId>, StoreError> {
        let row = query(CLAIM_HOLDER).bind(name.as_str()).fetch_optional(self.reader()).map_err(unavailable)?;
        Ok(row.map(|r| TaskId::from_text(r.get("task_id"))))
    }

    async fn take_stale_items(
        &self,
        before: Timestamp,
        now: Timestamp,
    ) -> Result<Vec<(TaskId, ThingName)>, StoreError> {
        self.write(|c| {
            let rows = query(
                "UPDATE task_items SET requeued_at = ? WHERE status IN ('Waiting', 'InProgress') \
                 AND MAX(COALESCE(requeued_at, 0), COALESCE(updated_at, created_at)) < ? \
                 AND (status = 'Waiting' OR holder IS NULL OR COALESCE(lease_until, 0) <= ?) \
                 AND task_id IN (SELECT id FROM tasks) \
                 AND NOT EXISTS (SELECT 1 FROM tasks t WHERE t.id = task_items.task_id AND t.rollout IS NOT NULL \
                     AND (json_extract(t.rollout, '$.phase') <> 'Running' OR json_extract(t.rollout, '$.awaitingApproval') \
                          OR task_items.wave > json_extract(t.rollout, '$.currentWave'))) \
                 RETURNING task_id, name",
            )
            .bind(now.as_millis())
            .bind(before.as_millis())
            .bind(now.as_millis())
            .fetch_all(c)
            .map_err(unavailable)?;
                    let mut stale = rows
                .iter()
                .map(|r| Ok((TaskId::from_text(r.get("task_id")), thing(r.get("name"))?)))
                .collect::<Result<Vec<_>, StoreError>>()?;
            stale.sort();
            Ok(stale)
        })
        .await
    }
}
