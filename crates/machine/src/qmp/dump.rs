//! Guest memory dumps: dump-guest-memory, query-dump, query-dump-guest-memory-capability.

use qmpkit_qapi::Empty;

use super::R;
use crate::api;
use crate::dump;
use crate::{Cx, Machine};

pub fn dump_guest_memory(m: &mut Machine, a: api::DumpGuestMemory, cx: &mut Cx) -> R<Empty> {
    dump::dump_guest_memory(m, &a, cx).map(|()| Empty)
}

pub fn query_dump(m: &mut Machine, _: api::QueryDump, _: &mut Cx) -> R<api::DumpQueryResult> {
    Ok(dump::query(m))
}

pub fn query_dump_guest_memory_capability(
    _: &mut Machine,
    _: api::QueryDumpGuestMemoryCapability,
    _: &mut Cx,
) -> R<api::DumpGuestMemoryCapability> {
    Ok(dump::capability())
}
