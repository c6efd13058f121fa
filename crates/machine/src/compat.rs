//! Version-dependent behaviour, in one place: one named switch per behaviour that changed
//! between QEMU releases, set from the version the machine claims — as QEMU keeps per-version
//! compatibility properties for its machine types. Subsystems ask `m.compat().NAME`, never
//! the version number.
//!
//! Differences of interface (a command, member or event that a version does not have) are not
//! switches: the served schema decides them (see [`crate::view`]). These are differences of
//! behaviour and wording within one interface.

/// The behaviour switches of one QEMU version.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Compat {
    /// 1.1: a tray that opens or closes sends `DEVICE_TRAY_MOVED`.
    pub tray_moved_event: bool,
    /// 1.5: `DEVICE_DELETED` when a device's removal completes.
    pub device_deleted_event: bool,
    /// 2.0: `cont` refuses while migration finishes ("Migration is not finalized yet").
    pub cont_refuses_finish_migrate: bool,
    /// 2.1: `ACPI_DEVICE_OST` after the guest's hot-plug status report.
    pub acpi_ost_event: bool,
    /// Before 2.5, a guest panic needs a reset before `cont`.
    pub reset_after_panic: bool,
    /// 2.5: the block layer's newer wording ("Unknown driver", "… wait for tray to open and
    /// try again").
    pub block_errors_2_5: bool,
    /// 2.6: `DUMP_COMPLETED` when a dump ends.
    pub dump_completed_event: bool,
    /// 2.11: HMP `info vnc` lists every VNC server.
    pub hmp_info_vnc_servers: bool,
    /// 2.12: HMP `info cpus` prints thread ids only (from `query-cpus-fast`).
    pub hmp_info_cpus_fast: bool,
    /// 4.0: `system_wakeup` refuses unless the guest is suspended.
    pub wakeup_requires_suspended: bool,
    /// 5.0: HMP prefixes command errors with "Error: ".
    pub hmp_error_prefix: bool,
    /// 5.2: `netdev_add` takes QAPI's `Netdev` (a client type is "not compiled into this
    /// binary", checked before the id's uniqueness, which says "Duplicate ID 'X'").
    pub netdev_add_qapi: bool,
    /// 5.2: `nbd-server-add` makes its export as `block-export-add` does, and exports a
    /// read-only node read-only even when asked for `writable` (before: refused); and
    /// `nbd-server-remove` looks the export up among the block exports, with no check of the
    /// server first (10.0.2 without a server: "Export 'X' is not found").
    pub nbd_server_add_as_export: bool,
    /// 6.0: option strings spell flags `flag=on` (`server=on`); QOM answers as 6.0 does.
    pub options_6_0: bool,
    /// 6.2: a second `device_del` of a device being unplugged is refused.
    pub refuse_repeated_unplug: bool,
    /// `migrate` / `migrate-incoming` with an unknown scheme: "unknown migration protocol:
    /// URI" (before: "Parameter 'uri' expects a valid migration protocol").
    pub migrate_uri_words_8_2: bool,
    /// Every switchover passes through migration status `device` (before: only when it
    /// paused in `pre-switchover`).
    pub migration_device_state_always: bool,
    /// 10.0: what the binary describes (QOM types and properties, machine types, CPU models
    /// and their expansion, command-line options, migration capabilities, TPM lists) comes
    /// from the catalogue of QEMU 10.0.2's x86_64 build ([`crate::catalog`]).
    pub catalog_10_0: bool,
    /// 10.0: `migrate-set-capabilities` refuses the combinations QEMU 10.0 refuses, in its
    /// words (before: only postcopy with compression).
    pub migration_caps_10_0: bool,
    /// 4.1: `query-machines` says whether each type is deprecated and takes memory per NUMA
    /// node (no type of the 2.12-generation tables is, or does).
    pub machine_info_4_1: bool,
    /// 7.1: `query-cpu-definitions` says whether each model is deprecated (none of the
    /// 2.12-generation tables is).
    pub cpu_deprecated_7_1: bool,
    /// 5.2: commands run in the monitor's dispatcher coroutine, whose reply is sent after the
    /// main loop has served what the command requested: `quit`, `system_reset` and
    /// `system_powerdown` send SHUTDOWN, RESET, POWERDOWN before their `{"return": {}}`
    /// (before: the reply first).
    pub main_loop_events_before_reply: bool,
    /// 10.0: putting a medium in names no device in its errors ("Device is not removable",
    /// "Tray of the device is not open", "There already is a medium in the device"; taking
    /// one out still names it). Set from 10.0, the first version checked that words them so.
    pub insert_medium_unnamed: bool,
    /// 10.0: `set_password` for VNC with `connected` other than `keep` says "parameter
    /// 'connected' must be 'keep' when 'protocol' is 'vnc'", and `expire_password` without a
    /// VNC server "Could not set password expire time" without a full stop (before: "Invalid
    /// parameter 'connected'"; "….", as the 2.12 generation words them). Set from 10.0, the
    /// first version checked that words them so.
    pub display_words_10_0: bool,
}

impl Compat {
    /// The switches of QEMU `major.minor`.
    pub fn of(major: u64, minor: u64) -> Compat {
        let at = |a: u64, b: u64| (major, minor) >= (a, b);
        Compat {
            tray_moved_event: at(1, 1),
            device_deleted_event: at(1, 5),
            cont_refuses_finish_migrate: at(2, 0),
            acpi_ost_event: at(2, 1),
            reset_after_panic: !at(2, 5),
            block_errors_2_5: at(2, 5),
            dump_completed_event: at(2, 6),
            hmp_info_vnc_servers: at(2, 11),
            hmp_info_cpus_fast: at(2, 12),
            wakeup_requires_suspended: at(4, 0),
            hmp_error_prefix: at(5, 0),
            netdev_add_qapi: at(5, 2),
            nbd_server_add_as_export: at(5, 2),
            options_6_0: at(6, 0),
            refuse_repeated_unplug: at(6, 2),
            migrate_uri_words_8_2: at(8, 2),
            migration_device_state_always: at(9, 0),
            catalog_10_0: at(10, 0),
            migration_caps_10_0: at(10, 0),
            machine_info_4_1: at(4, 1),
            cpu_deprecated_7_1: at(7, 1),
            main_loop_events_before_reply: at(5, 2),
            insert_medium_unnamed: at(10, 0),
            display_words_10_0: at(10, 0),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn switches_follow_the_version() {
        let old = Compat::of(1, 0);
        assert!(!old.tray_moved_event && old.reset_after_panic && !old.options_6_0);
        let gen2 = Compat::of(2, 12);
        assert!(gen2.hmp_info_cpus_fast && !gen2.wakeup_requires_suspended);
        assert!(!gen2.reset_after_panic);
        let new = Compat::of(10, 0);
        assert!(new.refuse_repeated_unplug && new.hmp_error_prefix && new.options_6_0);
    }
}
