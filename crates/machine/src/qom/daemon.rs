//! The QOM types of qemu-storage-daemon 10.0: what its `qom-list-types` lists (it has no
//! machine, CPUs or devices), in the order it lists them, with each type's parent and the
//! interfaces it declares.

use super::types::{ancestry_in, TypeDef};

macro_rules! d {
    ($n:expr, $p:expr, $a:expr, $i:expr) => {
        TypeDef {
            name: $n,
            parent: $p,
            is_abstract: $a,
            interfaces: $i,
            props: &[],
            bus: None,
            user_creatable: false,
            hotpluggable: false,
        }
    };
}

/// Every type, in the daemon's order.
pub static TYPES: &[TypeDef] = &[
    d!("qio-channel-null", Some("qio-channel"), false, &[]),
    d!("authz-simple", Some("authz"), false, &["user-creatable"]),
    d!("qio-channel-socket", Some("qio-channel"), false, &[]),
    d!("secret_common", Some("object"), true, &["user-creatable"]),
    d!("container", Some("object"), false, &[]),
    d!("interface", None, true, &[]),
    d!("chardev-hub", Some("chardev"), false, &[]),
    d!(
        "tls-creds-anon",
        Some("tls-creds"),
        false,
        &["user-creatable"]
    ),
    d!("pr-manager-helper", Some("pr-manager"), false, &[]),
    d!("iothread", Some("event-loop-base"), false, &[]),
    d!("secret", Some("secret_common"), false, &[]),
    d!("authz", Some("object"), true, &[]),
    d!("chardev-serial", Some("chardev-fd"), false, &[]),
    d!("qio-channel", Some("object"), true, &[]),
    d!("chardev-mux", Some("chardev"), false, &[]),
    d!(
        "tls-creds-psk",
        Some("tls-creds"),
        false,
        &["user-creatable"]
    ),
    d!("tls-creds", Some("object"), true, &[]),
    d!("qio-channel-file", Some("qio-channel"), false, &[]),
    d!("qio-channel-command", Some("qio-channel"), false, &[]),
    d!("qio-channel-websock", Some("qio-channel"), false, &[]),
    d!("chardev-pipe", Some("chardev-fd"), false, &[]),
    d!("main-loop", Some("event-loop-base"), false, &[]),
    d!("chardev-parallel", Some("chardev"), false, &[]),
    d!("qio-channel-tls", Some("qio-channel"), false, &[]),
    d!("authz-list-file", Some("authz"), false, &["user-creatable"]),
    d!("qio-net-listener", Some("object"), false, &[]),
    d!("pr-manager", Some("object"), true, &["user-creatable"]),
    d!("chardev-null", Some("chardev"), false, &[]),
    d!("chardev-ringbuf", Some("chardev"), false, &[]),
    d!("authz-list", Some("authz"), false, &["user-creatable"]),
    d!("qio-dns-resolver", Some("object"), false, &[]),
    d!("event-loop-base", Some("object"), true, &["user-creatable"]),
    d!("chardev-fd", Some("chardev"), true, &[]),
    d!("chardev", Some("object"), true, &[]),
    d!("user-creatable", Some("interface"), true, &[]),
    d!("chardev-socket", Some("chardev"), false, &[]),
    d!("chardev-stdio", Some("chardev-fd"), false, &[]),
    d!("chardev-memory", Some("chardev-ringbuf"), false, &[]),
    d!("qio-channel-buffer", Some("qio-channel"), false, &[]),
    d!("object", None, true, &[]),
    d!("chardev-udp", Some("chardev"), false, &[]),
    d!(
        "tls-creds-x509",
        Some("tls-creds"),
        false,
        &["user-creatable"]
    ),
    d!("chardev-file", Some("chardev-fd"), false, &[]),
    d!("chardev-pty", Some("chardev"), false, &[]),
    d!("thread-context", Some("object"), false, &["user-creatable"]),
    d!("secret_keyring", Some("secret_common"), false, &[]),
    d!("throttle-group", Some("object"), false, &["user-creatable"]),
];

/// Whether `name` is `target`, derives from it, or declares (along its ancestry) an
/// interface that is or derives from it.
pub fn is_a(name: &str, target: &str) -> bool {
    ancestry_in(TYPES, name).any(|t| {
        t.name == target
            || t.interfaces
                .iter()
                .any(|i| ancestry_in(TYPES, i).any(|x| x.name == target))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interfaces_and_parents() {
        assert!(is_a("iothread", "user-creatable"));
        assert!(is_a("secret", "user-creatable"));
        assert!(is_a("secret", "interface"));
        assert!(!is_a("chardev-null", "user-creatable"));
        assert!(is_a("chardev-memory", "chardev"));
        assert!(!is_a("nothing", "object"));
        assert_eq!(TYPES.iter().filter(|t| !t.is_abstract).count(), 36);
    }
}
