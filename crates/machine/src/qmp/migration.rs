//! Migration commands: migrate and its incoming side, the status machine's controls,
//! capabilities and parameters (and their legacy setters), client_migrate_info; the
//! test-control knobs of the guest that migration sees (state and model in
//! [`crate::migration`]).

use super::R;
use crate::{api, generic, migration, Cx, Machine};
use qmpkit_qapi::{Empty, Enum};
use qmpkit_wire::{ErrorClass, QmpError};

pub fn migrate(m: &mut Machine, a: api::Migrate, cx: &mut Cx) -> R<Empty> {
    migration::migrate(
        m,
        cx,
        &a.uri,
        a.blk.unwrap_or(false),
        a.inc.unwrap_or(false),
    )
    .map(|()| Empty)
}

pub fn migrate_incoming(m: &mut Machine, a: api::MigrateIncoming, cx: &mut Cx) -> R<Empty> {
    migration::incoming(m, cx, &a.uri).map(|()| Empty)
}

pub fn query_migrate(m: &mut Machine, _: api::QueryMigrate, _: &mut Cx) -> R<api::MigrationInfo> {
    Ok(migration::info(m))
}

pub fn migrate_cancel(m: &mut Machine, _: api::MigrateCancel, _: &mut Cx) -> R<Empty> {
    migration::cancel(m);
    Ok(Empty)
}

pub fn migrate_continue(m: &mut Machine, a: api::MigrateContinue, _: &mut Cx) -> R<Empty> {
    migration::continue_(m, a.state).map(|()| Empty)
}

pub fn migrate_start_postcopy(
    m: &mut Machine,
    _: api::MigrateStartPostcopy,
    _: &mut Cx,
) -> R<Empty> {
    migration::start_postcopy(m).map(|()| Empty)
}

pub fn migrate_set_capabilities(
    m: &mut Machine,
    a: api::MigrateSetCapabilities,
    _: &mut Cx,
) -> R<Empty> {
    migration::set_capabilities(m, a.capabilities).map(|()| Empty)
}

pub fn query_migrate_capabilities(
    m: &mut Machine,
    _: api::QueryMigrateCapabilities,
    _: &mut Cx,
) -> R<Vec<api::MigrationCapabilityStatus>> {
    // The capabilities of the QEMU version served (an older one knows fewer).
    let schema = m.schema.clone();
    let known = |c: &api::MigrationCapability| {
        schema.lookup("MigrationCapability").is_none()
            || crate::shape::enum_has(&schema, "MigrationCapability", c.as_str())
    };
    Ok(m.migration
        .caps
        .iter()
        .filter(|(c, _)| known(c))
        .map(|(capability, state)| api::MigrationCapabilityStatus {
            capability: capability.clone(),
            state: *state,
        })
        .collect())
}

pub fn migrate_set_parameters(
    m: &mut Machine,
    a: api::MigrateSetParametersCommand,
    _: &mut Cx,
) -> R<Empty> {
    migration::set_parameters(m, a.0).map(|()| Empty)
}

pub fn query_migrate_parameters(
    m: &mut Machine,
    _: api::QueryMigrateParameters,
    _: &mut Cx,
) -> R<api::MigrationParameters> {
    Ok(m.migration.params.clone())
}

pub fn migrate_set_downtime(m: &mut Machine, a: api::MigrateSetDowntime, _: &mut Cx) -> R<Empty> {
    migration::set_downtime(m, a.value).map(|()| Empty)
}

pub fn migrate_set_speed(m: &mut Machine, a: api::MigrateSetSpeed, _: &mut Cx) -> R<Empty> {
    m.migration.params.max_bandwidth = Some(a.value);
    Ok(Empty)
}

pub fn migrate_set_cache_size(
    m: &mut Machine,
    a: api::MigrateSetCacheSize,
    _: &mut Cx,
) -> R<Empty> {
    migration::set_cache_size(m, a.value).map(|()| Empty)
}

pub fn query_migrate_cache_size(
    m: &mut Machine,
    _: api::QueryMigrateCacheSize,
    _: &mut Cx,
) -> R<i64> {
    Ok(m.migration.params.xbzrle_cache_size.unwrap_or(0) as i64)
}

/// `client_migrate_info`: where SPICE viewers are to follow a migration; accepted with a
/// SPICE server (the viewers are test control's, which follow nothing; a completed
/// migration then says so, see [`crate::display::spice::migration_completed`]).
pub fn client_migrate_info(m: &mut Machine, a: api::ClientMigrateInfo, _: &mut Cx) -> R<Empty> {
    if a.protocol == "spice" && crate::display::spice::config(m).is_some() {
        m.display.spice.migrate_target = true;
        return Ok(Empty);
    }
    if a.protocol == "spice" {
        return Err(QmpError::new(
            ErrorClass::DeviceNotActive,
            "SPICE is not in use",
        ));
    }
    Err(generic("Parameter 'protocol' expects 'spice'"))
}

pub fn x_colo_lost_heartbeat(_: &mut Machine, _: api::XColoLostHeartbeat, _: &mut Cx) -> R<Empty> {
    Err(generic("VM is not in COLO mode"))
}

/// `xen-set-global-dirty-log`: the machine keeps no dirty log for a Xen toolstack; QEMU
/// without Xen answers success as well.
pub fn xen_set_global_dirty_log(
    _: &mut Machine,
    _: api::XenSetGlobalDirtyLog,
    _: &mut Cx,
) -> R<Empty> {
    Ok(Empty)
}

/// `xen-set-replication`: QEMU's check of `failover`, which only stopping takes.
pub fn xen_set_replication(_: &mut Machine, a: api::XenSetReplication, _: &mut Cx) -> R<Empty> {
    if a.enable && a.failover.is_some() {
        return Err(generic(
            "Parameter 'failover' is only for stopping replication",
        ));
    }
    Ok(Empty)
}

/// `query-xen-replication-status`: no block replication runs, so none has failed.
pub fn query_xen_replication_status(
    _: &mut Machine,
    _: api::QueryXenReplicationStatus,
    _: &mut Cx,
) -> R<api::ReplicationStatus> {
    Ok(api::ReplicationStatus {
        error: false,
        desc: None,
    })
}

/// `xen-save-devices-state` (`live` changes nothing for the machine).
pub fn xen_save_devices_state(
    m: &mut Machine,
    a: api::XenSaveDevicesState,
    _: &mut Cx,
) -> R<Empty> {
    crate::migration::save_devices_state(m, &a.filename).map(|()| Empty)
}

/// `xen-load-devices-state`.
pub fn xen_load_devices_state(
    m: &mut Machine,
    a: api::XenLoadDevicesState,
    _: &mut Cx,
) -> R<Empty> {
    crate::migration::load_devices_state(m, &a.filename).map(|()| Empty)
}

/// `xen-colo-do-checkpoint`: with no replication running there is nothing to checkpoint,
/// and QEMU answers success.
pub fn xen_colo_do_checkpoint(
    _: &mut Machine,
    _: api::XenColoDoCheckpoint,
    _: &mut Cx,
) -> R<Empty> {
    Ok(Empty)
}

/// Test control: the guest writes `data` at guest-physical `addr`.
pub fn guest_memory_write(
    m: &mut Machine,
    a: api::OrgQmpkitGuestMemoryWrite,
    _: &mut Cx,
) -> R<Empty> {
    crate::memory::write_phys(m, a.addr as u64, a.data.as_bytes());
    Ok(Empty)
}

/// Test control: how fast the running guest dirties pages.
pub fn guest_dirty_rate(m: &mut Machine, a: api::OrgQmpkitGuestDirtyRate, _: &mut Cx) -> R<Empty> {
    if a.pages_per_second < 0 {
        return Err(generic(
            "Parameter 'pages-per-second' expects a non-negative value",
        ));
    }
    m.migration.dirty_rate = a.pages_per_second as u64;
    Ok(Empty)
}
