//! What KVM on the host the machine runs on can give a vCPU, as the kernel tells it: the
//! CPUID leaves `KVM_GET_SUPPORTED_CPUID` returns and the feature MSRs
//! (`KVM_GET_MSR_FEATURE_INDEX_LIST`, read with `KVM_GET_MSRS` on `/dev/kvm`), and the
//! host CPU's identification from its own CPUID (vendor, family, model, stepping, brand
//! string), which is what `host` and `max` report under KVM.
//!
//! Asked once per process; `None` where `/dev/kvm` cannot be opened or does not answer
//! (then the catalogue's KVM answers are those of the host it was recorded on).

use std::collections::HashMap;
use std::sync::OnceLock;

/// One CPUID leaf (and subleaf) KVM supports: its registers.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Leaf {
    pub function: u32,
    pub index: u32,
    /// `KVM_CPUID_FLAG_SIGNIFCANT_INDEX`: the leaf has subleaves.
    pub indexed: bool,
    pub regs: [u32; 4],
}

/// The host's CPU as KVM offers it to a guest.
#[derive(Debug, Clone, Default)]
pub struct KvmHost {
    pub leaves: Vec<Leaf>,
    /// The feature MSRs KVM reports, by index.
    pub msrs: HashMap<u32, u64>,
    /// The host CPU's identification from its own CPUID.
    pub vendor: String,
    pub family: u32,
    pub model: u32,
    pub stepping: u32,
    pub model_id: String,
    /// The host's own CPUID leaf 7 EBX/EDX and leaf 1 ECX/EDX (for what QEMU takes from the
    /// host rather than from KVM's list; see `cpu.rs`).
    pub own: HashMap<(u32, u32), [u32; 4]>,
}

impl KvmHost {
    /// The registers of leaf `function`, subleaf `index` (the subleaf counts only for a
    /// leaf that has them), as KVM supports them.
    pub fn leaf(&self, function: u32, index: u32) -> Option<[u32; 4]> {
        self.leaves
            .iter()
            .find(|l| l.function == function && (!l.indexed || l.index == index))
            .map(|l| l.regs)
    }

    /// The host CPU's own CPUID leaf, where it was read.
    pub fn own_leaf(&self, function: u32, index: u32) -> Option<[u32; 4]> {
        self.own.get(&(function, index)).copied()
    }
}

/// The host's KVM, asked once per process.
pub fn probe() -> Option<&'static KvmHost> {
    static HOST: OnceLock<Option<KvmHost>> = OnceLock::new();
    HOST.get_or_init(ask_kernel).as_ref()
}

/// A register's index in [`Leaf::regs`].
pub fn reg_index(name: &str) -> Option<usize> {
    Some(match name {
        "EAX" => 0,
        "EBX" => 1,
        "ECX" => 2,
        "EDX" => 3,
        _ => return None,
    })
}

#[cfg(all(target_os = "linux", target_arch = "x86_64"))]
fn ask_kernel() -> Option<KvmHost> {
    use std::os::fd::AsRawFd;
    // _IOWR(KVMIO, 0x05, struct kvm_cpuid2), _IOWR(KVMIO, 0x0a, struct kvm_msr_list),
    // _IOWR(KVMIO, 0x88, struct kvm_msrs).
    const KVM_GET_SUPPORTED_CPUID: libc::c_ulong = 0xc008_ae05;
    const KVM_GET_MSR_FEATURE_INDEX_LIST: libc::c_ulong = 0xc004_ae0a;
    const KVM_GET_MSRS: libc::c_ulong = 0xc008_ae88;
    const KVM_CPUID_FLAG_SIGNIFCANT_INDEX: u32 = 1;
    const MAX_LEAVES: usize = 256;
    const MAX_MSRS: usize = 1024;

    let kvm = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/kvm")
        .ok()?;
    let fd = kvm.as_raw_fd();

    // struct kvm_cpuid2 { u32 nent; u32 padding; struct kvm_cpuid_entry2 entries[]; },
    // each entry { u32 function, index, flags, eax, ebx, ecx, edx, padding[3]; }.
    let mut buf = vec![0u32; 2 + MAX_LEAVES * 10];
    buf[0] = MAX_LEAVES as u32;
    // SAFETY: the buffer holds the header and MAX_LEAVES entries, as `nent` says.
    let r = unsafe { libc::ioctl(fd, KVM_GET_SUPPORTED_CPUID, buf.as_mut_ptr()) };
    if r < 0 {
        return None;
    }
    let n = (buf[0] as usize).min(MAX_LEAVES);
    let leaves = (0..n)
        .map(|i| {
            let e = &buf[2 + i * 10..2 + i * 10 + 7];
            Leaf {
                function: e[0],
                index: e[1],
                indexed: e[2] & KVM_CPUID_FLAG_SIGNIFCANT_INDEX != 0,
                regs: [e[3], e[4], e[5], e[6]],
            }
        })
        .collect();

    // struct kvm_msr_list { u32 nmsrs; u32 indices[]; }
    let mut list = vec![0u32; 1 + MAX_MSRS];
    list[0] = MAX_MSRS as u32;
    let mut msrs = HashMap::new();
    // SAFETY: the buffer holds the header and MAX_MSRS indices, as `nmsrs` says.
    let r = unsafe { libc::ioctl(fd, KVM_GET_MSR_FEATURE_INDEX_LIST, list.as_mut_ptr()) };
    if r >= 0 {
        for &index in &list[1..1 + (list[0] as usize).min(MAX_MSRS)] {
            // struct kvm_msrs { u32 nmsrs; u32 pad; struct kvm_msr_entry { u32 index;
            // u32 reserved; u64 data; } entries[]; }, one entry.
            let mut one = [0u64; 3];
            one[0] = 1;
            one[1] = u64::from(index);
            // SAFETY: the buffer holds the header and the one entry `nmsrs` says.
            let r = unsafe { libc::ioctl(fd, KVM_GET_MSRS, one.as_mut_ptr()) };
            if r == 1 {
                msrs.insert(index, one[2]);
            }
        }
    }

    let mut host = KvmHost {
        leaves,
        msrs,
        ..KvmHost::default()
    };
    identify(&mut host);
    Some(host)
}

#[cfg(not(all(target_os = "linux", target_arch = "x86_64")))]
fn ask_kernel() -> Option<KvmHost> {
    None
}

/// The host CPU's identification, from its own CPUID: the vendor (leaf 0), family, model
/// and stepping (leaf 1, with the extended family added to family 0xf and the extended
/// model above the model), and the brand string (leaves 0x80000002-4, up to its first NUL).
#[cfg(all(target_os = "linux", target_arch = "x86_64"))]
fn identify(host: &mut KvmHost) {
    use std::arch::x86_64::__cpuid_count;
    let cpuid = |leaf: u32, sub: u32| {
        let r = __cpuid_count(leaf, sub);
        [r.eax, r.ebx, r.ecx, r.edx]
    };
    let l0 = cpuid(0, 0);
    let mut vendor = Vec::with_capacity(12);
    for r in [l0[1], l0[3], l0[2]] {
        vendor.extend_from_slice(&r.to_le_bytes());
    }
    host.vendor = String::from_utf8_lossy(&vendor).into_owned();
    let eax = cpuid(1, 0)[0];
    let base_family = (eax >> 8) & 0xf;
    host.family = base_family
        + if base_family == 0xf {
            (eax >> 20) & 0xff
        } else {
            0
        };
    host.model = ((eax >> 4) & 0xf) | ((eax >> 12) & 0xf0);
    host.stepping = eax & 0xf;
    for leaf in [1, 7] {
        if leaf <= l0[0] {
            host.own.insert((leaf, 0), cpuid(leaf, 0));
        }
    }
    if cpuid(0x8000_0000, 0)[0] >= 0x8000_0004 {
        let mut brand = Vec::with_capacity(48);
        for leaf in 0x8000_0002..=0x8000_0004 {
            for r in cpuid(leaf, 0) {
                brand.extend_from_slice(&r.to_le_bytes());
            }
        }
        let end = brand.iter().position(|b| *b == 0).unwrap_or(brand.len());
        host.model_id = String::from_utf8_lossy(&brand[..end]).into_owned();
    }
}
