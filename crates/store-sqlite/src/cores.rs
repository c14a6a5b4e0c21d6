//! `CoreRecords` on SQLite, and the one way a core row changes: read it inside the write
//! transaction, let the domain decide the new record (`Core::reprovisioned`,
//! `assign_deployment`, `apply_outcome`, ...), write it back whole with its deployment class,
//! and move the fleet counters by the domain's `FleetDelta` in the same transaction.

use async_trait::async_trait;
use ggprov_domain::certificates::ThingKind;
use ggprov_domain::cores::{Core, Event};
use ggprov_domain::deployment_state::FleetDelta;
use ggprov_domain::ports::{CoreDevice, CoreFilter, CoreRecords, StoreError};
use ggprov_domain::provisioning::ProvisioningJournal;
use ggprov_domain::software::SoftwareDelta;
use ggprov_domain::{Page, PageRequest, TaskId, TaskStatus, ThingName, Timestamp};
use rusqlite::Connection;

use crate::rows::{core_from_row, end_item, write_event};
use crate::sql::query;
use crate::{SqliteStore, unavailable};

/// The core as stored now, read inside the write transaction.
pub(crate) fn read_core(c: &Connection, name: &str) -> Result<Option<Core>, StoreError> {
    let row = query("SELECT * FROM cores WHERE name = ?").bind(name).fetch_optional(c).map_err(unavailable)?;
    row.as_ref().map(core_from_row).transpose()
}

/// Replaces the core read as `before` by `after` (`None`: deletes it), moving the fleet
/// counters by the difference of their contributions.
pub(crate) fn write_core(c: &Connection, before: Option<&Core>, after: Option<&Core>) -> Result<(), StoreError> {
    match (before, after) {
        (_, Some(core)) => {
            query(
                "INSERT INTO cores (name, provisioning_template, desired_name, desired_version, reported_name, reported_version, \
                 deployment_status, deployment_status_message, deployment_state, artifacts, desired_deployment_id, status_at, created_at, updated_at, \
                 software, nucleus_version, os, architecture, certificate) \
                 VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) \
                 ON CONFLICT (name) DO UPDATE SET provisioning_template = excluded.provisioning_template, \
                 desired_name = excluded.desired_name, desired_version = excluded.desired_version, \
                 reported_name = excluded.reported_name, reported_version = excluded.reported_version, \
                 deployment_status = excluded.deployment_status, deployment_status_message = excluded.deployment_status_message, \
                 deployment_state = excluded.deployment_state, artifacts = excluded.artifacts, \
                 desired_deployment_id = excluded.desired_deployment_id, status_at = excluded.status_at, \
                 created_at = excluded.created_at, updated_at = excluded.updated_at, software = excluded.software, \
                 nucleus_version = excluded.nucleus_version, os = excluded.os, architecture = excluded.architecture, \
                 certificate = excluded.certificate",
            )
            .bind(core.name.as_str())
            .bind(&core.provisioning_template)
            .bind(&core.desired.name)
            .bind(i64::from(core.desired.version))
            .bind(&core.reported.name)
            .bind(i64::from(core.reported.version))
            .bind(core.deployment_status.as_str())
            .bind(&core.deployment_status_message)
            .bind(core.deployment_status.state().as_str())
            .bind(serde_json::to_string(&core.artifacts).expect("artifacts serialise"))
            .bind(&core.desired_deployment_id)
            .bind(core.status_at.as_ref().map(Timestamp::as_millis))
            .bind(core.created_at.as_millis())
            .bind(core.updated_at.as_ref().map(Timestamp::as_millis))
            .bind(serde_json::to_string(&core.software).expect("software serialises"))
            .bind(&core.software.nucleus_version)
            .bind(&core.software.os)
            .bind(&core.software.architecture)
            .bind(core.certificate.as_ref().map(|c| serde_json::to_string(c).expect("certificates serialise")))
            .execute(c)
            .map_err(unavailable)?;
        }
        (Some(core), None) => {
            query("DELETE FROM cores WHERE name = ?").bind(core.name.as_str()).execute(c).map_err(unavailable)?;
        }
        (None, None) => {}
    }
    let (cert_before, cert_after) =
        (before.and_then(|c| c.certificate.as_ref()), after.and_then(|c| c.certificate.as_ref()));
    if cert_before != cert_after {
        let name = before.or(after).map(|c| c.name.as_str()).unwrap_or_default();
        crate::certificates::index(c, ThingKind::Core, name, cert_after)?;
    }
    crate::fleet::apply_delta(c, &FleetDelta::between(before, after))?;
    crate::fleet::apply_software_delta(c, &SoftwareDelta::between(before, after))?;
    if let Some(event) = Core::software_event(before, after) {
        write_event(c, &event, Timestamp::now())?;
    }
    Ok(())
}

#[async_trait]
impl CoreRecords for SqliteStore {
    fn data_state(&self) -> Option<ggprov_domain::ports::DataState> {
        self.read_models.current()
    }

    async fn existing_cores(&self, names: &[ThingName]) -> Result<std::collections::BTreeSet<ThingName>, StoreError> {
        crate::rows::existing(self.reader(), "cores", names)
    }

    async fn core(&self, name: &ThingName) -> Result<Option<Core>, StoreError> {
        // The state before the read: a commit during the read makes the entry stale at once.
        let at = self.read_models.current();
        if let Some(known) = self.read_models.cores.get(at, name.as_str()) {
            return Ok(known.map(|c| (*c).clone()));
        }
        let row = query("SELECT * FROM cores WHERE name = ?")
            .bind(name.as_str())
            .fetch_optional(self.reader())
            .map_err(unavailable)?;
        let core = row.as_ref().map(core_from_row).transpose()?;
        self.read_models.cores.put(at, name.as_str(), core.clone().map(std::sync::Arc::new));
        Ok(core)
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
            sql.push_str(" AND deployment_state = 'failed'");
        }
        let software =
            [("nucleus_version", &filter.nucleus_version), ("os", &filter.os), ("architecture", &filter.architecture)];
        let unknown = |v: &&Option<String>| v.as_deref() == Some(ggprov_domain::software::UNKNOWN);
        for (column, value) in &software {
            if unknown(value) {
                sql.push_str(&format!(" AND {column} IS NULL"));
            } else if value.is_some() {
                sql.push_str(&format!(" AND {column} = ?"));
            }
        }
        sql.push_str(" ORDER BY name LIMIT ?");
        let mut query = query(sql).bind(page.exclusive_start.as_ref().map_or("", ThingName::as_str).to_owned());
        if let Some(name) = &filter.template_name {
            query = query.bind(name.clone());
            if let Some(version) = filter.template_version {
                query = query.bind(i64::from(version));
            }
        }
        for value in software.iter().map(|(_, v)| v).filter(|v| !unknown(v)).filter_map(|v| v.as_ref()) {
            query = query.bind(value.clone());
        }
        let rows = query.bind(i64::from(page.limit) + 1).fetch_all(self.reader()).map_err(unavailable)?;
        let cores = rows.iter().map(core_from_row).collect::<Result<Vec<_>, _>>()?;
        Ok(Page::from_overfetch(cores, page.limit, |c| c.name.clone()))
    }

    async fn cores_in_progress(&self) -> Result<Vec<Core>, StoreError> {
        let rows = query("SELECT * FROM cores WHERE deployment_state = 'in_progress' ORDER BY name")
            .fetch_all(self.reader())
            .map_err(unavailable)?;
        rows.iter().map(core_from_row).collect()
    }

    async fn complete_core_create(
        &self,
        task: &TaskId,
        core: &Core,
        event: &Event,
        journal: Option<&ProvisioningJournal>,
    ) -> Result<(), StoreError> {
        let now = Timestamp::now();
        self.write(|c| {
            if !end_item(c, task, &core.name, TaskStatus::Success, None, now)? {
                return Ok(()); // a duplicate delivery: the first one recorded everything
            }
            if let Some(journal) = journal
                && !crate::journals::write_journal(c, &core.name, journal)?
            {
                return Err(StoreError::Conflict); // the error rolls the transaction back
            }
            let before = read_core(c, core.name.as_str())?;
            let after = Core::reprovisioned(before.as_ref(), core, now);
            write_core(c, before.as_ref(), Some(&after))?;
            write_event(c, event, now)?;
            Ok(())
        })
        .await
    }

    async fn complete_core_delete(&self, task: &TaskId, name: &ThingName, event: &Event) -> Result<(), StoreError> {
        let now = Timestamp::now();
        self.write(|c| {
            if !end_item(c, task, name, TaskStatus::Success, None, now)? {
                return Ok(());
            }
            let before = read_core(c, name.as_str())?;
            write_core(c, before.as_ref(), None)?;
            query("DELETE FROM provisioning_journals WHERE name = ?")
                .bind(name.as_str())
                .execute(c)
                .map_err(unavailable)?;
            write_event(c, event, now)?;
            Ok(())
        })
        .await
    }

    async fn observe_core(&self, name: &ThingName, device: &CoreDevice) -> Result<bool, StoreError> {
        self.write(|c| {
            let Some(before) = read_core(c, name.as_str())? else { return Ok(false) };
            let mut after = before.clone();
            after.observe(device, Timestamp::now());
            write_core(c, Some(&before), Some(&after))?;
            Ok(true)
        })
        .await
    }
}
