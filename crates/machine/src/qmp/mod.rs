//! The machine's QMP handlers: one table binds every command of the machine's own schema
//! that the machine implements to the function that implements it.
//!
//! The trait [`api::Handlers`] and the function [`api::dispatch`] are generated from
//! `schema/` (see [`crate::api`]); [`handlers!`] writes the trait's implementation for
//! [`Machine`] from the table below, so which function serves a command is written once and
//! the compiler checks each one against the command's argument and return types. A command
//! of the schema that is not in the table answers "not implemented", and
//! [`implemented`] lists the table (for `--list-handlers`).
//!
//! Handlers live in one file per subsystem beside this one. They take the generated
//! argument struct and return the generated reply type; they read and change the
//! subsystems' typed state and never see JSON. Errors are QMP errors ([`QmpError`]) in
//! QEMU's words.

use qmpkit_qapi::server::{CommandError, Encode};
use qmpkit_qapi::Command;
use qmpkit_wire::{ErrorClass, QmpError};

use crate::api;
use crate::{Cx, Machine};

pub mod balloon;
pub mod block;
pub mod block_bitmap;
pub mod block_export;
pub mod block_node;
pub mod chardev;
pub mod devices;
pub mod display;
pub mod dump;
pub mod fds;
pub mod identity;
pub mod input;
pub mod jobs;
pub mod memory;
pub mod migration;
pub mod misc;
pub mod net;
pub mod qom;
pub mod runstate;
pub mod testctl;
pub mod transaction;

/// What a handler returns.
pub type R<T> = Result<T, QmpError>;

/// A QMP error as the generated dispatch carries it.
pub fn command_error(e: QmpError) -> CommandError {
    CommandError::new(e.class.as_str(), e.desc)
}

/// A dispatch error back as a QMP error. Errors the generated code makes itself are
/// `GenericError`s.
pub fn qmp_error(e: CommandError) -> QmpError {
    let class = ErrorClass::from_name(&e.class).unwrap_or(ErrorClass::GenericError);
    QmpError::new(class, e.desc)
}

macro_rules! handlers {
    ($($method:ident($ty:ident) => $path:path;)*) => {
        impl api::Handlers for Machine {
            type Cx = Cx;
            const IMPLEMENTED: &'static [&'static str] = &[$(<api::$ty as Command>::NAME),*];
            $(
                fn $method(
                    &mut self,
                    args: api::$ty,
                    cx: &mut Cx,
                ) -> qmpkit_qapi::server::Reply<<api::$ty as Command>::Returns> {
                    $path(self, args, cx).map_err(command_error)
                }
            )*
        }
    };
}

// One line per command: `method(ArgumentStruct) => handler;`, grouped by subsystem.
handlers! {
    // Run state (qmp/runstate.rs)
    query_status(QueryStatus) => runstate::query_status;
    stop(Stop) => runstate::stop;
    cont(Cont) => runstate::cont;
    system_reset(SystemReset) => runstate::system_reset;
    system_powerdown(SystemPowerdown) => runstate::system_powerdown;
    system_wakeup(SystemWakeup) => runstate::system_wakeup;
    quit(Quit) => runstate::quit;
    inject_nmi(InjectNmi) => runstate::inject_nmi;
    watchdog_set_action(WatchdogSetAction) => runstate::watchdog_set_action;

    // Identity, memory, dumps, balloon, display, input, miscellany, test control
    // (qmp/identity.rs)
    query_version(QueryVersion) => identity::query_version;
    query_name(QueryName) => identity::query_name;
    query_uuid(QueryUuid) => identity::query_uuid;
    query_kvm(QueryKvm) => identity::query_kvm;
    query_target(QueryTarget) => identity::query_target;
    query_machines(QueryMachines) => identity::query_machines;
    query_cpu_definitions(QueryCpuDefinitions) => identity::query_cpu_definitions;
    query_cpu_model_expansion(QueryCpuModelExpansion) => identity::query_cpu_model_expansion;
    query_cpu_model_comparison(QueryCpuModelComparison) => identity::query_cpu_model_comparison;
    query_cpu_model_baseline(QueryCpuModelBaseline) => identity::query_cpu_model_baseline;
    query_sev_capabilities(QuerySevCapabilities) => identity::query_sev_capabilities;
    query_sgx_capabilities(QuerySgxCapabilities) => identity::query_sgx_capabilities;
    query_events(QueryEvents) => identity::query_events;
    query_command_line_options(QueryCommandLineOptions) => identity::query_command_line_options;
    query_cpus(QueryCpus) => identity::query_cpus;
    query_cpus_fast(QueryCpusFast) => identity::query_cpus_fast;
    query_hotpluggable_cpus(QueryHotpluggableCpus) => identity::query_hotpluggable_cpus;
    query_iothreads(QueryIothreads) => identity::query_iothreads;
    query_pci(QueryPci) => identity::query_pci;
    query_memory_size_summary(QueryMemorySizeSummary) => identity::query_memory_size_summary;
    query_memdev(QueryMemdev) => identity::query_memdev;
    query_memory_devices(QueryMemoryDevices) => identity::query_memory_devices;
    query_vm_generation_id(QueryVmGenerationId) => identity::query_vm_generation_id;
    query_tpm(QueryTpm) => identity::query_tpm;
    query_tpm_models(QueryTpmModels) => identity::query_tpm_models;
    query_tpm_types(QueryTpmTypes) => identity::query_tpm_types;
    query_acpi_ospm_status(QueryAcpiOspmStatus) => identity::query_acpi_ospm_status;
    // (qmp/memory.rs, qmp/dump.rs)
    memsave(Memsave) => memory::memsave;
    pmemsave(Pmemsave) => memory::pmemsave;
    dump_guest_memory(DumpGuestMemory) => dump::dump_guest_memory;
    query_dump(QueryDump) => dump::query_dump;
    query_dump_guest_memory_capability(QueryDumpGuestMemoryCapability) => dump::query_dump_guest_memory_capability;
    // (qmp/balloon.rs)
    balloon(Balloon) => balloon::balloon;
    query_balloon(QueryBalloon) => balloon::query_balloon;
    // (qmp/display.rs; `change vnc …` is `change` in qmp/misc.rs)
    screendump(Screendump) => display::screendump;
    query_vnc(QueryVnc) => display::query_vnc;
    query_vnc_servers(QueryVncServers) => display::query_vnc_servers;
    query_spice(QuerySpice) => display::query_spice;
    set_password(SetPassword) => display::set_password;
    expire_password(ExpirePassword) => display::expire_password;
    change_vnc_password(ChangeVncPassword) => display::change_vnc_password;
    org_qmpkit_viewer_connect(OrgQmpkitViewerConnect) => display::viewer_connect;
    org_qmpkit_viewer_disconnect(OrgQmpkitViewerDisconnect) => display::viewer_disconnect;
    add_client(AddClient) => display::add_client;
    // (qmp/input.rs)
    send_key(SendKey) => input::send_key;
    input_send_event(InputSendEvent) => input::input_send_event;
    query_mice(QueryMice) => input::query_mice;
    org_qmpkit_query_keyboard(OrgQmpkitQueryKeyboard) => input::query_keyboard;
    // (qmp/misc.rs)
    trace_event_get_state(TraceEventGetState) => misc::trace_event_get_state;
    trace_event_set_state(TraceEventSetState) => misc::trace_event_set_state;
    rtc_reset_reinjection(RtcResetReinjection) => misc::rtc_reset_reinjection;
    // (qmp/testctl.rs)
    org_qmpkit_guest_shutdown(OrgQmpkitGuestShutdown) => testctl::guest_shutdown;
    org_qmpkit_guest_panic(OrgQmpkitGuestPanic) => testctl::guest_panic;
    org_qmpkit_guest_suspend(OrgQmpkitGuestSuspend) => testctl::guest_suspend;
    org_qmpkit_guest_hibernate(OrgQmpkitGuestHibernate) => testctl::guest_hibernate;
    org_qmpkit_watchdog_fire(OrgQmpkitWatchdogFire) => testctl::watchdog_fire;
    org_qmpkit_io_error(OrgQmpkitIoError) => testctl::io_error;
    org_qmpkit_inject_failure(OrgQmpkitInjectFailure) => testctl::inject_failure;
    org_qmpkit_set_guest(OrgQmpkitSetGuest) => testctl::set_guest;

    human_monitor_command(HumanMonitorCommand) => misc::human_monitor_command;
    change(Change) => misc::change;

    // QOM and devices
    qom_list(QomList) => qom::qom_list;
    qom_get(QomGet) => qom::qom_get;
    qom_set(QomSet) => qom::qom_set;
    qom_list_types(QomListTypes) => qom::qom_list_types;
    device_list_properties(DeviceListProperties) => qom::device_list_properties;
    qom_list_properties(QomListProperties) => qom::qom_list_properties;
    device_add(DeviceAdd) => devices::device_add;
    device_del(DeviceDel) => devices::device_del;
    object_add(ObjectAdd) => devices::object_add;
    object_del(ObjectDel) => devices::object_del;
    cpu_add(CpuAdd) => devices::cpu_add;

    // Character devices and network
    query_chardev(QueryChardev) => chardev::query_chardev;
    query_chardev_backends(QueryChardevBackends) => chardev::query_chardev_backends;
    chardev_add(ChardevAdd) => chardev::chardev_add;
    chardev_change(ChardevChange) => chardev::chardev_change;
    chardev_remove(ChardevRemove) => chardev::chardev_remove;
    chardev_send_break(ChardevSendBreak) => chardev::chardev_send_break;
    ringbuf_write(RingbufWrite) => chardev::ringbuf_write;
    ringbuf_read(RingbufRead) => chardev::ringbuf_read;
    org_qmpkit_chardev_write(OrgQmpkitChardevWrite) => chardev::guest_write;
    org_qmpkit_chardev_read(OrgQmpkitChardevRead) => chardev::guest_read;
    org_qmpkit_guest_serial_port(OrgQmpkitGuestSerialPort) => chardev::guest_serial_port;
    netdev_add(NetdevAdd) => net::netdev_add;
    netdev_del(NetdevDel) => net::netdev_del;
    announce_self(AnnounceSelf) => net::announce_self;
    set_link(SetLink) => net::set_link;
    query_rx_filter(QueryRxFilter) => net::query_rx_filter;
    org_qmpkit_guest_rx_filter(OrgQmpkitGuestRxFilter) => net::guest_rx_filter;
    query_rocker(QueryRocker) => net::query_rocker;
    query_rocker_ports(QueryRockerPorts) => net::query_rocker_ports;
    query_rocker_of_dpa_flows(QueryRockerOfDpaFlows) => net::query_rocker_of_dpa_flows;
    query_rocker_of_dpa_groups(QueryRockerOfDpaGroups) => net::query_rocker_of_dpa_groups;

    // Migration and file descriptors
    getfd(Getfd) => fds::getfd;
    closefd(Closefd) => fds::closefd;
    add_fd(AddFd) => fds::add_fd;
    remove_fd(RemoveFd) => fds::remove_fd;
    query_fdsets(QueryFdsets) => fds::query_fdsets;
    migrate(Migrate) => migration::migrate;
    migrate_incoming(MigrateIncoming) => migration::migrate_incoming;
    query_migrate(QueryMigrate) => migration::query_migrate;
    migrate_cancel(MigrateCancel) => migration::migrate_cancel;
    migrate_continue(MigrateContinue) => migration::migrate_continue;
    migrate_start_postcopy(MigrateStartPostcopy) => migration::migrate_start_postcopy;
    migrate_set_capabilities(MigrateSetCapabilities) => migration::migrate_set_capabilities;
    query_migrate_capabilities(QueryMigrateCapabilities) => migration::query_migrate_capabilities;
    migrate_set_parameters(MigrateSetParametersCommand) => migration::migrate_set_parameters;
    query_migrate_parameters(QueryMigrateParameters) => migration::query_migrate_parameters;
    migrate_set_downtime(MigrateSetDowntime) => migration::migrate_set_downtime;
    migrate_set_speed(MigrateSetSpeed) => migration::migrate_set_speed;
    migrate_set_cache_size(MigrateSetCacheSize) => migration::migrate_set_cache_size;
    query_migrate_cache_size(QueryMigrateCacheSize) => migration::query_migrate_cache_size;
    client_migrate_info(ClientMigrateInfo) => migration::client_migrate_info;
    x_colo_lost_heartbeat(XColoLostHeartbeat) => migration::x_colo_lost_heartbeat;
    xen_set_global_dirty_log(XenSetGlobalDirtyLog) => migration::xen_set_global_dirty_log;
    xen_save_devices_state(XenSaveDevicesState) => migration::xen_save_devices_state;
    xen_load_devices_state(XenLoadDevicesState) => migration::xen_load_devices_state;
    xen_set_replication(XenSetReplication) => migration::xen_set_replication;
    query_xen_replication_status(QueryXenReplicationStatus) => migration::query_xen_replication_status;
    xen_colo_do_checkpoint(XenColoDoCheckpoint) => migration::xen_colo_do_checkpoint;
    org_qmpkit_guest_memory_write(OrgQmpkitGuestMemoryWrite) => migration::guest_memory_write;
    org_qmpkit_guest_dirty_rate(OrgQmpkitGuestDirtyRate) => migration::guest_dirty_rate;

    // The generic job interface (qmp/jobs.rs)
    query_jobs(QueryJobs) => jobs::query_jobs;
    job_pause(JobPause) => jobs::job_pause;
    job_resume(JobResume) => jobs::job_resume;
    job_cancel(JobCancel) => jobs::job_cancel;
    job_complete(JobComplete) => jobs::job_complete;
    job_finalize(JobFinalize) => jobs::job_finalize;
    job_dismiss(JobDismiss) => jobs::job_dismiss;
    block_job_finalize(BlockJobFinalize) => jobs::block_job_finalize;
    block_job_dismiss(BlockJobDismiss) => jobs::block_job_dismiss;
    x_debug_query_block_graph(XDebugQueryBlockGraph) => jobs::x_debug_query_block_graph;

    // Block layer and jobs (qmp/block.rs)
    query_block(QueryBlock) => block::query_block;
    query_blockstats(QueryBlockstats) => block::query_blockstats;
    eject(Eject) => block::eject;
    blockdev_open_tray(BlockdevOpenTray) => block::blockdev_open_tray;
    blockdev_close_tray(BlockdevCloseTray) => block::blockdev_close_tray;
    x_blockdev_remove_medium(XBlockdevRemoveMedium) => block::x_blockdev_remove_medium;
    x_blockdev_insert_medium(XBlockdevInsertMedium) => block::x_blockdev_insert_medium;
    blockdev_change_medium(BlockdevChangeMedium) => block::blockdev_change_medium;
    blockdev_add(BlockdevAdd) => block::blockdev_add;
    blockdev_del(BlockdevDel) => block::blockdev_del;
    query_named_block_nodes(QueryNamedBlockNodes) => block::query_named_block_nodes;
    block_resize(BlockResize) => block::block_resize;
    block_set_write_threshold(BlockSetWriteThreshold) => block::block_set_write_threshold;
    blockdev_snapshot_sync(BlockdevSnapshotSync) => transaction::blockdev_snapshot_sync;
    blockdev_snapshot(BlockdevSnapshot) => transaction::blockdev_snapshot;
    block_stream(BlockStream) => block::block_stream;
    block_commit(BlockCommit) => block::block_commit;
    drive_mirror(DriveMirrorCommand) => block::drive_mirror;
    blockdev_mirror(BlockdevMirror) => block::blockdev_mirror;
    drive_backup(DriveBackupCommand) => block::drive_backup;
    blockdev_backup(BlockdevBackupCommand) => block::blockdev_backup;
    query_block_jobs(QueryBlockJobs) => block::query_block_jobs;
    block_job_set_speed(BlockJobSetSpeed) => block::block_job_set_speed;
    block_job_cancel(BlockJobCancel) => block::block_job_cancel;
    block_job_pause(BlockJobPause) => block::block_job_pause;
    block_job_resume(BlockJobResume) => block::block_job_resume;
    block_job_complete(BlockJobComplete) => block::block_job_complete;
    nbd_server_start(NbdServerStart) => block::nbd_server_start;
    nbd_server_add(NbdServerAdd) => block::nbd_server_add;
    nbd_server_stop(NbdServerStop) => block::nbd_server_stop;
    transaction(Transaction) => transaction::transaction;
    block_dirty_bitmap_add(BlockDirtyBitmapAdd) => block_bitmap::block_dirty_bitmap_add;
    block_dirty_bitmap_remove(BlockDirtyBitmapRemove) => block_bitmap::block_dirty_bitmap_remove;
    block_dirty_bitmap_clear(BlockDirtyBitmapClear) => block_bitmap::block_dirty_bitmap_clear;
    block_dirty_bitmap_enable(BlockDirtyBitmapEnable) => block_bitmap::block_dirty_bitmap_enable;
    block_dirty_bitmap_disable(BlockDirtyBitmapDisable) => block_bitmap::block_dirty_bitmap_disable;
    block_dirty_bitmap_merge(BlockDirtyBitmapMerge) => block_bitmap::block_dirty_bitmap_merge;
    x_debug_block_dirty_bitmap_sha256(XDebugBlockDirtyBitmapSha256) => block_bitmap::x_debug_block_dirty_bitmap_sha256;
    change_backing_file(ChangeBackingFile) => block_node::change_backing_file;
    block_set_io_throttle(BlockSetIoThrottle) => block_node::block_set_io_throttle;
    blockdev_snapshot_internal_sync(BlockdevSnapshotInternalSync) => block_node::blockdev_snapshot_internal_sync;
    x_blockdev_set_iothread(XBlockdevSetIothread) => block_node::x_blockdev_set_iothread;
    x_blockdev_change(XBlockdevChange) => block_node::x_blockdev_change;
    blockdev_reopen(BlockdevReopen) => block_node::blockdev_reopen;
    blockdev_snapshot_delete_internal_sync(BlockdevSnapshotDeleteInternalSync) => block_node::blockdev_snapshot_delete_internal_sync;
    // (qmp/block_export.rs)
    query_block_exports(QueryBlockExports) => block_export::query_block_exports;
    block_export_add(BlockExportAdd) => block_export::block_export_add;
    block_export_del(BlockExportDel) => block_export::block_export_del;
    nbd_server_remove(NbdServerRemove) => block_export::nbd_server_remove;
    blockdev_create(BlockdevCreate) => block_export::blockdev_create;
    block_job_change(BlockJobChange) => block_export::block_job_change;
}

/// The commands the table above implements.
pub fn implemented() -> &'static [&'static str] {
    <Machine as api::Handlers>::IMPLEMENTED
}

/// Run `cmd` through the generated dispatch, its reply as a JSON value. `None`: the table
/// does not implement it.
pub fn dispatch(
    m: &mut Machine,
    cmd: &str,
    args: &crate::Args,
    cx: &mut Cx,
) -> Option<R<serde_json::Value>> {
    dispatch_with(m, cmd, args, cx, &mut qmpkit_qapi::server::ToValue)
}

/// [`dispatch`], the reply encoded by `enc`.
pub fn dispatch_with<E: Encode>(
    m: &mut Machine,
    cmd: &str,
    args: &crate::Args,
    cx: &mut Cx,
    enc: &mut E,
) -> Option<R<E::Out>> {
    if !implemented().contains(&cmd) {
        return None;
    }
    let r = api::dispatch_with(m, cmd, serde_json::Value::Object(args.clone()), cx, enc)?;
    Some(r.map_err(qmp_error))
}

/// Replies in QEMU's output form, written straight from the handler's typed value.
pub struct WriteQemu;

impl Encode for WriteQemu {
    type Out = Vec<u8>;
    fn encode<T: serde::Serialize + ?Sized>(&mut self, reply: &T) -> Result<Vec<u8>, String> {
        let mut out = Vec::new();
        qmpkit_wire::write_qemu_serialized(reply, &mut out).map_err(|e| e.to_string())?;
        Ok(out)
    }
}

/// Replies both as a JSON value and written as [`WriteQemu`] writes them (for tests that
/// the two agree).
pub struct Both;

impl Encode for Both {
    type Out = (serde_json::Value, Vec<u8>);
    fn encode<T: serde::Serialize + ?Sized>(&mut self, reply: &T) -> Result<Self::Out, String> {
        Ok((
            qmpkit_qapi::server::ToValue.encode(reply)?,
            WriteQemu.encode(reply)?,
        ))
    }
}
