//! `FleetCounters` on DynamoDB: counters sharded by core name (`FLEET#<shard>` /
//! `<template>#<version>`), moved by the domain's `FleetDelta` in each core's transaction; the
//! summary adds the shards up, the recount applies the domain's rule to every core record.

use std::collections::BTreeMap;

use async_trait::async_trait;
use aws_sdk_dynamodb::types::{TransactWriteItem, Update};
use ggprov_domain::cores::{Core, VersionCounts};
use ggprov_domain::deployment_state::FleetDelta;
use ggprov_domain::ports::{FleetCounters, StoreError};
use ggprov_domain::software::{SoftwareCounts, SoftwareDelta, SoftwareKey};

use super::{DynamoStore, Query, SHARDS, doc, get_n, get_s, key, n, opt_n, s, shard_of};

impl DynamoStore {
    /// The counter updates for a core's change (its shard is by core name).
    pub(crate) fn fleet_writes(&self, core_name: &str, delta: &FleetDelta) -> Vec<TransactWriteItem> {
        let shard = shard_of(core_name);
        delta
            .iter()
            .map(|((template, version), d)| {
                let update = Update::builder()
                    .table_name(&self.table)
                    .set_key(Some(key(format!("FLEET#{shard}"), format!("{template}#{version:010}"))))
                    .update_expression("SET tpl = :tpl, ver = :ver ADD d :d, r :r, s :s, f :f, p :p")
                    .expression_attribute_values(":tpl", s(template))
                    .expression_attribute_values(":ver", n(version))
                    .expression_attribute_values(":d", n(d.desired_in_use))
                    .expression_attribute_values(":r", n(d.reported_in_use))
                    .expression_attribute_values(":s", n(d.last_deployment_success))
                    .expression_attribute_values(":f", n(d.last_deployment_failed))
                    .expression_attribute_values(":p", n(d.last_deployment_in_progress))
                    .build()
                    .expect("complete update");
                TransactWriteItem::builder().update(update).build()
            })
            .collect()
    }
}

impl DynamoStore {
    /// The software counter updates for a core's change (`FLEETSW#<shard>` /
    /// `<nucleus>#<version>#<os>#<architecture>`, sharded by core name like the fleet's).
    pub(crate) fn software_writes(&self, core_name: &str, delta: &SoftwareDelta) -> Vec<TransactWriteItem> {
        let shard = shard_of(core_name);
        delta
            .iter()
            .map(|(k, d)| {
                let update = Update::builder()
                    .table_name(&self.table)
                    .set_key(Some(key(
                        format!("FLEETSW#{shard}"),
                        format!("{}#{}#{}#{}", k.nucleus, k.version, k.os, k.architecture),
                    )))
                    .update_expression("SET nuc = :nuc, ver = :ver, os = :os, arch = :arch ADD c :c, u :u")
                    .expression_attribute_values(":nuc", s(&k.nucleus))
                    .expression_attribute_values(":ver", s(&k.version))
                    .expression_attribute_values(":os", s(&k.os))
                    .expression_attribute_values(":arch", s(&k.architecture))
                    .expression_attribute_values(":c", n(d.cores))
                    .expression_attribute_values(":u", n(d.updating))
                    .build()
                    .expect("complete update");
                TransactWriteItem::builder().update(update).build()
            })
            .collect()
    }

    async fn all_cores(&self) -> Result<Vec<Core>, StoreError> {
        self.query(Query::partition(Some("gsi1"), "CORES")).await?.iter().map(doc).collect()
    }
}

#[async_trait]
impl FleetCounters for DynamoStore {
    async fn fleet_counters(&self) -> Result<BTreeMap<(String, u32), VersionCounts>, StoreError> {
        let mut counts: BTreeMap<(String, u32), VersionCounts> = BTreeMap::new();
        for shard in 0..SHARDS {
            for item in self.query(Query::partition(None, format!("FLEET#{shard}"))).await? {
                let c = counts.entry((get_s(&item, "tpl")?.to_owned(), get_n(&item, "ver")?)).or_default();
                c.desired_in_use += opt_n::<i64>(&item, "d")?.unwrap_or(0);
                c.reported_in_use += opt_n::<i64>(&item, "r")?.unwrap_or(0);
                c.last_deployment_success += opt_n::<i64>(&item, "s")?.unwrap_or(0);
                c.last_deployment_failed += opt_n::<i64>(&item, "f")?.unwrap_or(0);
                c.last_deployment_in_progress += opt_n::<i64>(&item, "p")?.unwrap_or(0);
            }
        }
        counts.retain(|_, c| !c.is_zero());
        Ok(counts)
    }

    async fn recount_fleet(&self) -> Result<BTreeMap<(String, u32), VersionCounts>, StoreError> {
        Ok(FleetDelta::recount(&self.all_cores().await?))
    }

    async fn software_counters(&self) -> Result<BTreeMap<SoftwareKey, SoftwareCounts>, StoreError> {
        let mut counts: BTreeMap<SoftwareKey, SoftwareCounts> = BTreeMap::new();
        for shard in 0..SHARDS {
            for item in self.query(Query::partition(None, format!("FLEETSW#{shard}"))).await? {
                let key = SoftwareKey {
                    nucleus: get_s(&item, "nuc")?.to_owned(),
                    version: get_s(&item, "ver")?.to_owned(),
                    os: get_s(&item, "os")?.to_owned(),
                    architecture: get_s(&item, "arch")?.to_owned(),
                };
                let c = counts.entry(key).or_default();
                c.cores += opt_n::<i64>(&item, "c")?.unwrap_or(0);
                c.updating += opt_n::<i64>(&item, "u")?.unwrap_or(0);
            }
        }
        counts.retain(|_, c| !c.is_zero());
        Ok(counts)
    }

    async fn recount_software(&self) -> Result<BTreeMap<SoftwareKey, SoftwareCounts>, StoreError> {
        Ok(SoftwareDelta::recount(&self.all_cores().await?))
    }
}
